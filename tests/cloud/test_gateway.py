"""The OCPP gateway of PlugStream Cloud over real sockets on loopback: the server is uvicorn
(in-process, or ``plugstream cloud serve`` as a subprocess), the stations are plain
``websockets`` clients or raw TCP."""

from __future__ import annotations

import asyncio
import base64
import functools
import itertools
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Opcode

from plugstream.cloud.gateway import basic_credentials
from plugstream.cloud.serve import READY, uvicorn_config
from plugstream.cloud.stations import StationOffline
from plugstream.cloud.storage import MessageRecord, Store
from plugstream.cloud.uvicorn_compat import ReceiveQueue
from plugstream.ocpp import CallTimeout, ErrorCode, OcppError, OcppVersion
from tests.support import (
    WAIT,
    basic_auth,
    cloud_serve_argv,
    free_port,
    running_cloud,
    stop_process,
    until,
)

V16, V201, V21 = "ocpp1.6", "ocpp2.0.1", "ocpp2.1"


async def answer_calls(
    ws: ClientConnection, answer: Callable[[str, dict[str, Any]], dict[str, Any]]
) -> None:
    """A station that answers every CALL of the CSMS (until its socket closes)."""
    try:
        async for message in ws:
            frame = orjson.loads(message)
            if frame[0] == 2:
                await ws.send(orjson.dumps([3, frame[1], answer(frame[2], frame[3])]).decode())
    except ConnectionClosed:
        pass


async def logged(store: Store, station_id: str, count: int) -> list[MessageRecord] | None:
    """The station's message log, once it holds ``count`` frames."""
    messages = await store.messages.list(station_id)
    return messages if len(messages) >= count else None


def count_pings(ws: ClientConnection) -> list[float]:
    """The loop times at which ``ws`` receives the server's pings, from now on."""
    loop = asyncio.get_running_loop()
    times: list[float] = []
    seen = ws.process_event

    def counting(event: Any) -> None:
        if getattr(event, "opcode", None) is Opcode.PING:
            times.append(loop.time())
        seen(event)

    ws.process_event = counting  # type: ignore[method-assign]
    return times


async def closed_code(ws: ClientConnection, timeout: float = WAIT) -> int | None:
    """Read until the server closes; the close code it sent."""
    async with asyncio.timeout(timeout):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None


# -- subprotocols ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        ([V16], V16),
        ([V201], V201),
        ([V16, V201], V201),
        ([V201, V16], V201),
        ([V21, V201, V16], V21),
        (["ocpp1.5", V16], V16),
    ],
)
@pytest.mark.socket
async def test_the_newest_offered_subprotocol_is_chosen(
    tmp_path: Path, offered: list[str], chosen: str
) -> None:
    async with (
        running_cloud(tmp_path, auto_register_unsecured=True) as cloud,
        connect(cloud.url("CP1"), subprotocols=offered) as ws,  # type: ignore[arg-type]
    ):
        assert ws.subprotocol == chosen
        await until(lambda: cloud.gateway.is_connected("CP1"), "CP1 connected")
        assert cloud.gateway.version_of("CP1") is OcppVersion.from_subprotocol(chosen)
        assert cloud.gateway.connected_ids() == ["CP1"]


@pytest.mark.parametrize("offered", [["ocpp1.5", "chat"], None])
@pytest.mark.socket
async def test_no_subprotocol_we_speak_is_refused_at_the_upgrade(
    tmp_path: Path, offered: list[str] | None
) -> None:
    """TC_B_58_CSMS (2.0.1 errata 2025-09), TC_088 (1.6): the CSMS "rejects the connection
    attempt and does NOT upgrade the connection to a WebSocket connection" (this used to
    be a 101 then a close with 1002, per OCPP-J §3.1.2; the test cases are what counts)."""
    async with running_cloud(tmp_path, auto_register_unsecured=True) as cloud:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(cloud.url("CP1"), subprotocols=offered):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 400
        assert b"ocpp2.0.1, ocpp1.6" in refused.value.response.body
        assert not cloud.gateway.is_connected("CP1")


# -- who may connect ------------------------------------------------------------------------


@pytest.mark.parametrize("station_id", ["bad:id", "x" * 49, "sp%20ace", "a%2Fb", "%C3%A9"])
@pytest.mark.socket
async def test_an_invalid_station_id_is_refused_with_400(tmp_path: Path, station_id: str) -> None:
    async with running_cloud(tmp_path, auto_register_unsecured=True) as cloud:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(cloud.url(station_id), subprotocols=[V16]):  # type: ignore[list-item]
                pass
        assert refused.value.response.status_code == 400


@pytest.mark.socket
async def test_the_longest_valid_station_id_is_accepted(tmp_path: Path) -> None:
    station_id = "A-z0.9_*=+|@" + "x" * 36
    assert len(station_id) == 48
    async with (
        running_cloud(tmp_path, auto_register_unsecured=True) as cloud,
        connect(cloud.url(station_id), subprotocols=[V16]) as ws,  # type: ignore[list-item]
    ):
        assert ws.subprotocol == V16
        await until(lambda: cloud.gateway.is_connected(station_id), f"{station_id} connected")


@pytest.mark.socket
async def test_an_unknown_station_is_refused_without_auto_register(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(cloud.url("NEW1"), subprotocols=[V16]):  # type: ignore[list-item]
                pass
        assert refused.value.response.status_code == 404
        assert await cloud.store.stations.get("NEW1") is None


@pytest.mark.socket
async def test_auto_register_accepts_and_registers_an_unknown_station(tmp_path: Path) -> None:
    async with running_cloud(tmp_path, auto_register_unsecured=True) as cloud:
        async with connect(cloud.url("NEW1"), subprotocols=[V201]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == V201
            record = await cloud.store.stations.get("NEW1")
            assert record is not None and record.security_profile == 0
        # With Basic credentials, the station keeps its password (trust on first use).
        async with connect(
            cloud.url("NEW2"),
            subprotocols=[V16],  # type: ignore[list-item]
            additional_headers=basic_auth("NEW2", "first-secret-1234"),
        ):
            record = await cloud.store.stations.get("NEW2")
            assert record is not None and record.has_password and record.security_profile == 1
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                cloud.url("NEW2"),
                subprotocols=[V16],  # type: ignore[list-item]
                additional_headers=basic_auth("NEW2", "another-password"),
            ):
                pass
        assert refused.value.response.status_code == 401


@pytest.mark.socket
async def test_basic_auth_lets_the_right_password_in_and_refuses_others_with_401(
    tmp_path: Path,
) -> None:
    async with running_cloud(tmp_path) as cloud:
        await cloud.store.stations.register("CP7", password="s3cret-pass-word", security_profile=1)
        async with connect(
            cloud.url("CP7"),
            subprotocols=[V16],  # type: ignore[list-item]
            additional_headers=basic_auth("CP7", "s3cret-pass-word"),
        ) as ws:
            assert ws.subprotocol == V16
            await until(lambda: cloud.gateway.is_connected("CP7"), "CP7 connected")
        # Credentials in the URL, as many chargers give them.
        url = f"ws://CP7:s3cret-pass-word@127.0.0.1:{cloud.port}/ocpp/CP7"
        async with connect(url, subprotocols=[V16]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == V16

        for headers in (
            basic_auth("CP7", "wrong"),
            basic_auth("CP8", "s3cret-pass-word"),  # the username must be the station id
            {},
            {"Authorization": "Bearer s3cret-pass-word"},
            {"Authorization": "Basic !!!"},
        ):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(
                    cloud.url("CP7"),
                    subprotocols=[V16],  # type: ignore[list-item]
                    additional_headers=headers,
                ):
                    pass
            response = refused.value.response
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"] == 'Basic realm="PlugStream"'
        assert cloud.gateway.failed_logins["CP7"] == 5


@pytest.mark.socket
async def test_a_station_without_password_needs_security_profile_0(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        await cloud.store.stations.register("OPEN", security_profile=0)
        await cloud.store.stations.register("NOPW", security_profile=1)
        async with connect(cloud.url("OPEN"), subprotocols=[V16]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == V16
        with pytest.raises(InvalidStatus) as refused:
            async with connect(cloud.url("NOPW"), subprotocols=[V16]):  # type: ignore[list-item]
                pass
        assert refused.value.response.status_code == 401


@pytest.mark.socket
async def test_a_change_through_the_api_applies_to_the_next_login(tmp_path: Path) -> None:
    # The gateway remembers what admission needs of a station; a registration (the REST
    # API's, or the store's own) replaces that at once.
    async with (
        running_cloud(tmp_path, api_token="t0ken") as cloud,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{cloud.port}", headers={"Authorization": "Bearer t0ken"}
        ) as http,
    ):
        created = await http.put("/api/v1/stations/CP9", json={"security_profile": 0}, timeout=WAIT)
        assert created.status_code == 201
        async with connect(cloud.url("CP9"), subprotocols=[V16]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == V16
        changed = await http.put(
            "/api/v1/stations/CP9",
            json={"security_profile": 1, "password": "n3w-pass-word-1234"},
            timeout=WAIT,
        )
        assert changed.status_code == 200
        with pytest.raises(InvalidStatus) as refused:
            async with connect(cloud.url("CP9"), subprotocols=[V16]):  # type: ignore[list-item]
                pass
        assert refused.value.response.status_code == 401
        async with connect(
            cloud.url("CP9"),
            subprotocols=[V16],  # type: ignore[list-item]
            additional_headers=basic_auth("CP9", "n3w-pass-word-1234"),
        ) as ws:
            assert ws.subprotocol == V16
        assert cloud.gateway.failed_logins["CP9"] == 1


@pytest.mark.socket
async def test_a_refusal_is_a_plain_text_http_response(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    async with running_cloud(tmp_path) as cloud:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(cloud.url("NOPE1"), subprotocols=[V16]):  # type: ignore[list-item]
                pass
        response = refused.value.response
        assert response.status_code == 404
        assert response.body == b"unknown station"
        assert response.headers["Content-Type"].startswith("text/plain")
    assert "without completing handshake" not in capfd.readouterr().err


@pytest.mark.socket
async def test_other_paths_are_not_the_gateways(tmp_path: Path) -> None:
    async with running_cloud(tmp_path, auto_register_unsecured=True) as cloud:
        # A WebSocket elsewhere goes to the API app, which has no WebSocket route: 403.
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                f"ws://127.0.0.1:{cloud.port}/api/v1/CP1",
                subprotocols=[V16],  # type: ignore[list-item]
            ):
                pass
        assert refused.value.response.status_code == 403
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cloud.port}") as http:
            assert (await http.get("/ocpp/CP1", timeout=WAIT)).status_code == 404
        assert not cloud.gateway.is_connected("CP1")
        assert await cloud.store.stations.get("CP1") is None


@pytest.mark.unit
async def test_the_slim_receive_queue_keeps_order_and_loses_nothing_to_a_cancelled_get() -> None:
    queue = ReceiveQueue()
    assert queue.empty()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert await getter == 1
    assert await queue.get() == 2
    assert queue.empty()
    cancelled = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait(3)  # wakes the getter, which is cancelled before it runs
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await asyncio.wait_for(queue.get(), WAIT) == 3


@pytest.mark.unit
def test_basic_credentials_are_parsed() -> None:
    assert basic_credentials(basic_auth("CP1", "a:b")["Authorization"]) == ("CP1", "a:b")
    assert basic_credentials(None) is None
    assert basic_credentials("Basic") is None
    assert basic_credentials("Basic " + base64.b64encode(b"nocolon").decode()) is None


# -- one connection per station, liveness -----------------------------------------------------


@pytest.mark.socket
async def test_a_reconnect_replaces_the_old_connection(tmp_path: Path) -> None:
    async with running_cloud(tmp_path, auto_register_unsecured=True) as cloud:
        async with connect(cloud.url("CP1"), subprotocols=[V16]) as old:  # type: ignore[list-item]
            await until(lambda: cloud.gateway.is_connected("CP1"), "CP1 connected")
            async with connect(cloud.url("CP1"), subprotocols=[V201]) as new:  # type: ignore[list-item]
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(WAIT):
                        await old.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1000
                assert closed.value.rcvd.reason == "replaced by a new connection"
                # The old one's teardown has run (its handler returned: one connection
                # served) and left the new one alone.
                await until(
                    lambda: len(cloud.server.server_state.tasks) == 1,
                    "the old connection's handler returned",
                )
                assert cloud.gateway.is_connected("CP1")
                assert cloud.gateway.version_of("CP1") is OcppVersion.V201
                station = asyncio.create_task(
                    answer_calls(new, lambda action, payload: {"status": "Accepted"})
                )
                answer = await cloud.gateway.call("CP1", "Reset", {"type": "OnIdle"})
                assert answer == {"status": "Accepted"}
                station.cancel()
        await until(lambda: not cloud.gateway.is_connected("CP1"), "CP1 gone")


@pytest.mark.socket
async def test_a_peer_that_stops_answering_pings_is_dropped_after_ping_timeout(
    tmp_path: Path,
) -> None:
    async with running_cloud(
        tmp_path, auto_register_unsecured=True, ping_interval=0.2, ping_timeout=0.5
    ) as cloud:
        # A raw TCP peer: completes the handshake, then never reads nor answers a ping.
        reader, writer = await asyncio.open_connection("127.0.0.1", cloud.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /ocpp/DEAD1 HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{cloud.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert head.startswith(b"HTTP/1.1 101")
        # Meanwhile a live station (its client answers pings) stays, though it sends nothing.
        async with connect(cloud.url("LIVE1"), subprotocols=[V16]) as live:  # type: ignore[list-item]
            pinged = count_pings(live)
            await until(lambda: cloud.gateway.is_connected("DEAD1"), "DEAD1 connected")
            started = time.monotonic()
            await until(lambda: not cloud.gateway.is_connected("DEAD1"), "DEAD1 dropped")
            assert time.monotonic() - started < 3
            # Two ping timeouts without a single OCPP message: pings over 1 s (0.5 s
            # each), which the cloud sends only while LIVE1 answers them.
            await until(
                lambda: len(pinged) >= 2 and pinged[-1] - pinged[0] > 2 * 0.5,
                "LIVE1 pinged for two ping timeouts",
            )
            assert cloud.gateway.is_connected("LIVE1")
            assert live.state.name == "OPEN"
        writer.close()


@pytest.mark.socket
async def test_a_station_that_pings_itself_is_not_pinged_a_quiet_one_is(tmp_path: Path) -> None:
    """Keep-alive costs bytes (the article's 3 MB a day, LTE): a station whose own pings
    (WebSocketPingInterval) keep the connection busy is not pinged by the cloud as well;
    one that sends nothing is, at the cloud's interval."""
    async with (
        running_cloud(
            tmp_path, auto_register_unsecured=True, ping_interval=0.3, ping_timeout=1.0
        ) as cloud,
        connect(cloud.url("SELF1"), subprotocols=[V16], ping_interval=0.1) as pinger,  # type: ignore[list-item]
        connect(cloud.url("QUIET1"), subprotocols=[V16], ping_interval=None) as quiet,  # type: ignore[list-item]
    ):
        times = {"SELF1": count_pings(pinger), "QUIET1": count_pings(quiet)}
        # The window is what is measured (pings per 1.5 s), so it is slept out; pings after
        # it (a late wake-up on a busy machine) are not counted.
        end = asyncio.get_running_loop().time() + 1.5
        await asyncio.sleep(1.5)
        pings = {name: sum(1 for t in seen if t <= end) for name, seen in times.items()}
        assert pings["SELF1"] == 0
        assert 3 <= pings["QUIET1"] <= 6
        assert cloud.gateway.is_connected("SELF1") and cloud.gateway.is_connected("QUIET1")


@pytest.mark.socket
async def test_a_station_with_a_long_keepalive_of_its_own_is_not_pinged_between(
    tmp_path: Path,
) -> None:
    """A station whose learned keep-alive is longer than the cloud's interval (issue 17:
    up to 30 minutes) keeps the connection alive itself: the cloud, having seen it end
    quiet gaps of 0.5 s on its own, does not ping it every 0.2 s as well.

    The station's keep-alive is played by the test: it pings once the cloud's clock says
    0.5 s of quiet has passed (a condition on the loop's time, not a fixed sleep). A late
    wake-up on a loaded machine makes a gap longer, and the cloud may then ping, rightly:
    so what is checked is that no ping of the cloud's came within twice the station's
    cadence of its last own bytes."""
    loop = asyncio.get_running_loop()
    async with (
        running_cloud(
            tmp_path, auto_register_unsecured=True, ping_interval=0.2, ping_timeout=1.0
        ) as cloud,
        connect(cloud.url("LEARN1"), subprotocols=[V16], ping_interval=None) as station,  # type: ignore[list-item]
    ):
        times = count_pings(station)
        own = [loop.time()]  # when the station last sent bytes unasked (the upgrade, then pings)
        for _ in range(4):
            quiet = functools.partial(lambda due: loop.time() >= due, own[-1] + 0.5)
            await until(quiet, "0.5 s of quiet", interval=0.01)
            pong = await station.ping()  # the station's own keep-alive
            own.append(loop.time())
            await pong
        cadence = min(b - a for a, b in itertools.pairwise(own))  # its own gaps, >= 0.5
        for t in (t for t in times if t > own[2]):  # once it has ended a 0.5 s gap itself
            last_own = max(o for o in own if o <= t)
            assert t - last_own >= 2 * cadence - 0.05, (t - last_own, cadence)
        assert cloud.gateway.is_connected("LEARN1")


@pytest.mark.socket
async def test_an_oversized_frame_closes_with_1009_and_others_are_served(tmp_path: Path) -> None:
    async with (
        running_cloud(tmp_path, auto_register_unsecured=True, max_frame_bytes=4096) as cloud,
        connect(cloud.url("OTHER"), subprotocols=[V16]) as other,  # type: ignore[list-item]
        connect(cloud.url("BIG1"), subprotocols=[V16], max_size=None) as big,  # type: ignore[list-item]
    ):
        await until(lambda: cloud.gateway.is_connected("BIG1"), "BIG1 connected")
        await big.send(orjson.dumps([2, "1", "DataTransfer", {"data": "x" * 10_000}]).decode())
        assert await closed_code(big) == 1009
        await until(lambda: not cloud.gateway.is_connected("BIG1"), "BIG1 gone")
        station = asyncio.create_task(
            answer_calls(other, lambda action, payload: {"status": "Accepted"})
        )
        answer = await cloud.gateway.call("OTHER", "Reset", {"type": "Soft"})
        assert answer == {"status": "Accepted"}
        station.cancel()


# -- frames and calls ---------------------------------------------------------------------------


@pytest.mark.socket
async def test_gateway_call_round_trip_and_the_message_log(tmp_path: Path) -> None:
    async with running_cloud(tmp_path, auto_register_unsecured=True) as cloud:
        async with connect(cloud.url("CP1"), subprotocols=[V16]) as ws:  # type: ignore[list-item]
            await until(lambda: cloud.gateway.is_connected("CP1"), "CP1 connected")
            seen: list[tuple[str, dict[str, Any]]] = []

            def answer(action: str, payload: dict[str, Any]) -> dict[str, Any]:
                seen.append((action, payload))
                return {"status": "Accepted"}

            station = asyncio.create_task(answer_calls(ws, answer))
            result = await cloud.gateway.call("CP1", "Reset", {"type": "Hard"})
            assert result == {"status": "Accepted"}
            assert seen == [("Reset", {"type": "Hard"})]
            # An invalid request never leaves: the core's constraint error.
            with pytest.raises(OcppError) as invalid:
                await cloud.gateway.call("CP1", "Reset", {"type": "Sideways"})
            assert invalid.value.code is not ErrorCode.GenericError
            station.cancel()
        await until(lambda: not cloud.gateway.is_connected("CP1"), "CP1 gone")
        # The log is written on the side: both frames are there once it has caught up.
        messages = await until(
            lambda: logged(cloud.store, "CP1", 2), "the call and its answer logged"
        )
        directions = sorted(m.direction for m in messages)
        assert directions == ["in", "out"]


@pytest.mark.socket
async def test_a_station_callerror_and_a_call_timeout_reach_the_caller(tmp_path: Path) -> None:
    async with (
        running_cloud(tmp_path, auto_register_unsecured=True, call_timeout=30.0) as cloud,
        connect(cloud.url("CP1"), subprotocols=[V201]) as ws,  # type: ignore[list-item]
    ):
        await until(lambda: cloud.gateway.is_connected("CP1"), "CP1 connected")
        started = time.monotonic()
        with pytest.raises(CallTimeout):
            await cloud.gateway.call("CP1", "Reset", {"type": "Immediate"}, timeout=0.3)
        assert time.monotonic() - started < 3
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
        assert frame[2] == "Reset"

        async def refuse() -> None:
            call = orjson.loads(await ws.recv())
            await ws.send(orjson.dumps([4, call[1], "NotSupported", "no", {}]).decode())

        station = asyncio.create_task(refuse())
        with pytest.raises(OcppError) as refused:
            await cloud.gateway.call("CP1", "Reset", {"type": "Immediate"}, timeout=WAIT)
        assert refused.value.code is ErrorCode.NotSupported
        await station


@pytest.mark.socket
async def test_a_call_to_a_station_that_is_not_connected_raises_station_offline(
    tmp_path: Path,
) -> None:
    async with running_cloud(tmp_path, auto_register_unsecured=True) as cloud:
        with pytest.raises(StationOffline):
            await cloud.gateway.call("NOWHERE", "Reset", {"type": "Soft"})
        assert not cloud.gateway.is_connected("NOWHERE")
        assert cloud.gateway.version_of("NOWHERE") is None


@pytest.mark.socket
async def test_a_binary_message_is_read_as_text_and_answered(tmp_path: Path) -> None:
    async with (
        running_cloud(tmp_path, auto_register_unsecured=True) as cloud,
        connect(cloud.url("CP1"), subprotocols=[V16]) as ws,  # type: ignore[list-item]
    ):
        await ws.send(orjson.dumps([2, "b1", "Heartbeat", {}]))  # bytes: a binary frame
        answer = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
        assert answer[0] in (3, 4) and answer[1] == "b1"


@pytest.mark.socket
async def test_openapi_is_served(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cloud.port}") as http:
            response = await http.get("/api/v1/openapi.json", timeout=WAIT)
        assert response.status_code == 200
        assert response.json()["info"]["title"] == "PlugStream Cloud"


def self_signed(cert: Path, key: Path) -> None:
    """A P-256 server certificate for 127.0.0.1, valid for a day (the PKI comes later)."""
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), critical=False
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.mark.socket
async def test_tls_serves_wss_with_tls_1_2_or_newer_only(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    self_signed(cert, key)
    async with running_cloud(
        tmp_path, auto_register_unsecured=True, tls_cert=cert, tls_key=key
    ) as cloud:
        trusted = ssl.create_default_context(cafile=str(cert))
        async with connect(
            f"wss://127.0.0.1:{cloud.port}/ocpp/TLS1",
            subprotocols=[V201],  # type: ignore[list-item]
            ssl=trusted,
        ) as ws:
            assert ws.subprotocol == V201
            tls = ws.transport.get_extra_info("ssl_object")
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        tls12 = ssl.create_default_context(cafile=str(cert))
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        async with connect(
            f"wss://127.0.0.1:{cloud.port}/ocpp/TLS1",
            subprotocols=[V16],  # type: ignore[list-item]
            ssl=tls12,
        ) as ws:
            assert ws.transport.get_extra_info("ssl_object").version() == "TLSv1.2"
    # Nothing older than TLS 1.2 is offered.
    served = uvicorn_config(replace(cloud.config), app=object())
    served.load()
    assert served.ssl is not None
    assert served.ssl.minimum_version is ssl.TLSVersion.TLSv1_2


# -- the command -------------------------------------------------------------------------------


@pytest.mark.socket
async def test_cloud_serve_as_a_subprocess_serves_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    db = tmp_path / "sub.db"
    proc = subprocess.Popen(
        cloud_serve_argv(
            port,
            db,
            *["--auto-register-unsecured", "--ping-interval", "1", "--ping-timeout", "2"],
            host="127.0.0.1",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PLUGSTREAM_API_TOKEN": "t0ken"},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), WAIT)
        if not line:
            proc.wait(10)
            pytest.fail(f"cloud serve did not start: {proc.stderr.read() if proc.stderr else ''}")
        assert line.strip() == (
            f"{READY} http://127.0.0.1:{port} (OCPP ws://127.0.0.1:{port}/ocpp/{{id}}, "
            f"API http://127.0.0.1:{port}/api/v1/)"
        )
        async with connect(
            f"ws://127.0.0.1:{port}/ocpp/SUB1",
            subprotocols=[V16],  # type: ignore[list-item]
        ) as ws:
            await ws.send(orjson.dumps([2, "h1", "Heartbeat", {}]).decode())
            answer = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
            assert answer[1] == "h1"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                spec = await http.get("/api/v1/openapi.json", timeout=WAIT)
                assert spec.status_code == 200
            proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(asyncio.to_thread(proc.wait), WAIT)
        assert rc == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        stop_process(proc)
    # The store was closed cleanly and the frames were written out.
    store = await Store.open(f"sqlite:///{db}")
    try:
        assert await store.stations.get("SUB1") is not None
        messages = await store.messages.list("SUB1")
        assert {m.direction for m in messages} == {"in", "out"}
    finally:
        await store.close()


@pytest.mark.socket
async def test_cloud_serve_with_a_bad_flag_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "plugstream.cli", "cloud", "serve", "--ping-timeout", "-1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""
