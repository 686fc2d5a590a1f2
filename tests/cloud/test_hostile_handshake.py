"""The WebSocket handshake under attack (issue 14, points 1 and 14).

Peers that open connections and never finish the HTTP upgrade, floods beyond the cap of
pending handshakes, an address that connects too fast: each is shown on loopback and
then what the cloud does about it, while a legitimate station still connects and gets
its Heartbeat answered. And the subprotocol refused at the upgrade, as the OCA's test
cases TC_B_58_CSMS (2.0.1 errata 2025-09) and TC_088 (1.6) want it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from plugstream.cli import app as cli_app
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.handshake_guard import AddressRate, HandshakeGuard, Refusal, address_key
from plugstream.cloud.serve import FD_RESERVE, READY, handshake_guard
from plugstream.cloud.uvicorn_compat import GuardedHttpProtocol
from tests.support import (
    WAIT,
    Cloud,
    basic_auth,
    boot_and_heartbeat,
    cloud_serve_argv,
    free_port,
    read_until,
    running_cloud,
    stop_process,
    until,
)

DEADLINE = 0.5  # s: the handshake timeout of the socket tests (the default is 10 s)
MARGIN = 2.5  # s a closed connection may take to be seen closed, on a loaded machine
PASSWORD = "hostile-handshake-test-1"  # a station's first Basic password (auto_register)


def guard_of(cloud: Cloud) -> HandshakeGuard:
    protocol = cloud.server.config.http_protocol_class
    assert isinstance(protocol, type) and issubclass(protocol, GuardedHttpProtocol)
    assert protocol.guard is not None
    return protocol.guard


async def station_heartbeat(cloud: Cloud, station_id: str) -> None:
    """A legitimate 1.6 station: it connects, boots and gets its Heartbeat answered."""
    async with connect(
        cloud.url(station_id),
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers=basic_auth(station_id, PASSWORD),
    ) as ws:
        await boot_and_heartbeat(ws)


async def closed(reader: asyncio.StreamReader) -> bool:
    """Whether the server closed (or reset) the connection; waits for it."""
    try:
        return await reader.read(65536) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


@contextlib.asynccontextmanager
async def half_open(
    port: int, count: int, head: bytes = b"", source: str = "127.0.0.1"
) -> AsyncIterator[list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]:
    """``count`` connections that send ``head`` (nothing, or half a request) and stop."""
    peers: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(count):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(source, 0)
            )
            if head:
                writer.write(head)
            peers.append((reader, writer))
        yield peers
    finally:
        for _, writer in peers:
            writer.close()


def upgrade_request(station_id: str, protocols: str | None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET /ocpp/{station_id} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        f"Authorization: {basic_auth(station_id, PASSWORD)['Authorization']}",
    ]
    if protocols is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def upgrade_response(port: int, station_id: str, protocols: str | None) -> bytes:
    """The head of the server's answer to an upgrade with exactly this header value."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(upgrade_request(station_id, protocols))
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    finally:
        writer.close()


# -- the deadline ---------------------------------------------------------------------


@pytest.mark.socket
async def test_half_open_upgrades_are_closed_at_the_deadline_while_a_station_connects(
    tmp_path: Path,
) -> None:
    """200 connections that send nothing or half a request head are all closed within
    the deadline (+ margin); meanwhile a station connects and gets its Heartbeat."""
    async with running_cloud(tmp_path, auto_register=True, handshake_timeout=DEADLINE) as cloud:
        guard = guard_of(cloud)
        loop = asyncio.get_running_loop()
        half_head = b"GET /ocpp/EVIL HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websock"
        began = loop.time()
        async with (
            half_open(cloud.port, 100) as silent,
            half_open(cloud.port, 100, half_head) as slow,
        ):
            await station_heartbeat(cloud, "CP1")
            results = await asyncio.wait_for(
                asyncio.gather(*(closed(reader) for reader, _ in silent + slow)),
                DEADLINE + MARGIN,
            )
            took = loop.time() - began
        assert all(results)
        assert took < DEADLINE + MARGIN
        await until(lambda: guard.pending == 0, "no handshake pending")
        assert guard.timed_out == 200
        await station_heartbeat(cloud, "CP2")  # and the server is fine after


@pytest.mark.socket
async def test_a_second_request_head_on_a_keep_alive_connection_has_a_deadline_too(
    tmp_path: Path,
) -> None:
    """A full HTTP request is answered; half a second request head on the same connection
    is closed at the deadline (uvicorn's own keep-alive timer stops at its first byte)."""
    async with running_cloud(tmp_path, handshake_timeout=DEADLINE) as cloud:
        reader, writer = await asyncio.open_connection("127.0.0.1", cloud.port)
        try:
            writer.write(b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            assert head.startswith(b"HTTP/1.1 200")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await asyncio.wait_for(reader.readexactly(length), WAIT)
            writer.write(b"GET /api/v1/openapi.json HTTP/1.1\r\nHos")
            assert await asyncio.wait_for(closed(reader), DEADLINE + MARGIN)
        finally:
            writer.close()
        await until(lambda: guard_of(cloud).pending == 0, "no handshake pending")
        assert guard_of(cloud).timed_out == 1


# -- the cap of pending handshakes ----------------------------------------------------


@pytest.mark.socket
async def test_beyond_the_pending_cap_new_connections_are_closed_at_once(
    tmp_path: Path,
) -> None:
    """With 20 handshakes pending (the cap; 10 each from two addresses) and no room to
    wait, 10 more are closed at once -- long before the deadline -- and a station
    connects as soon as the 20 are gone."""
    async with running_cloud(
        tmp_path,
        auto_register=True,
        handshake_timeout=WAIT * 2,
        max_pending_handshakes=20,
        max_waiting_handshakes=0,
    ) as cloud:
        guard = guard_of(cloud)
        async with (
            half_open(cloud.port, 10, source="127.0.0.2"),
            half_open(cloud.port, 10, source="127.0.0.3"),
        ):
            await until(lambda: guard.pending == 20, "20 handshakes pending")
            async with half_open(cloud.port, 10, source="127.0.0.4") as beyond:
                results = await asyncio.wait_for(
                    asyncio.gather(*(closed(reader) for reader, _ in beyond)), MARGIN
                )
            assert all(results)
            assert guard.refused[Refusal.TOO_MANY_PENDING] == 10
            assert guard.pending == 20
        await until(lambda: guard.pending == 0, "the 20 gone")
        await station_heartbeat(cloud, "CP1")


@pytest.mark.socket
async def test_beyond_the_pending_cap_a_storm_waits_its_turn_and_only_the_excess_is_closed(
    tmp_path: Path,
) -> None:
    """A cloud restart: 20 handshakes pending (the cap) and room for 5 to wait. 4
    connections and a station wait, unread, rather than being closed; 3 more beyond the
    room are closed at once. Once the 20 go, those waiting take the slots in order, and
    the station, which waited its turn, boots and gets its Heartbeat answered."""
    # (its connect's open timeout, 10 s, covers the wait)
    async with running_cloud(
        tmp_path,
        auto_register=True,
        handshake_timeout=WAIT * 2,
        max_pending_handshakes=20,
        max_waiting_handshakes=5,
    ) as cloud:
        guard = guard_of(cloud)
        async with (
            half_open(cloud.port, 10, source="127.0.0.2"),
            half_open(cloud.port, 10, source="127.0.0.3"),
        ):
            await until(lambda: guard.pending == 20, "20 handshakes pending")
            async with half_open(cloud.port, 4, source="127.0.0.4") as waiting:
                await until(lambda: guard.waiting == 4, "4 waiting for a slot")
                station = asyncio.create_task(station_heartbeat(cloud, "CP1"))
                await until(lambda: guard.waiting == 5, "the station waiting too")
                async with half_open(cloud.port, 3, source="127.0.0.5") as beyond:
                    results = await asyncio.wait_for(
                        asyncio.gather(*(closed(reader) for reader, _ in beyond)), MARGIN
                    )
                assert all(results)
                assert guard.refused[Refusal.TOO_MANY_PENDING] == 3
                assert not station.done()
                assert all(not reader.at_eof() for reader, _ in waiting)
        # Its turn came as the 20 went (the 4 before it, gone meanwhile, took a slot
        # each only to find their peer gone: unread, a waiting socket is not watched).
        await asyncio.wait_for(station, WAIT)
        assert guard.waited == 5
        assert guard.refused[Refusal.WAITED_TOO_LONG] == 0


@pytest.mark.socket
async def test_stations_that_waited_for_a_slot_keep_their_connections_past_the_deadline(
    tmp_path: Path,
) -> None:
    """The real server (uvloop, which reads a new socket once before it can be paused):
    12 stations at once against a cap of 3, so 9 wait for a slot. Once all are in and a
    deadline has had time to fire (a half-open connection opened after them is cut off
    by its own), every station is still connected and answered: no deadline was left
    running on a station that waited."""
    port = free_port()
    server = subprocess.Popen(
        cloud_serve_argv(
            port,
            tmp_path / "cloud.db",
            *["--auto-register-unsecured", "--max-pending-handshakes", "3"],
            *["--handshake-timeout", "2"],
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        read_until(server, READY)

        async def station(n: int) -> ClientConnection:
            ws = await connect(
                f"ws://127.0.0.1:{port}/ocpp/CS{n}",
                subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                local_addr=(f"127.0.1.{n + 1}", 0),
                ping_interval=None,
            )
            await boot_and_heartbeat(ws)
            return ws

        stations = await asyncio.gather(*(station(n) for n in range(12)))
        try:
            async with half_open(port, 1, source="127.0.2.1") as late:
                assert await asyncio.wait_for(closed(late[0][0]), WAIT)  # its deadline
            for ws in stations:
                await ws.send(orjson.dumps([2, "again", "Heartbeat", {}]).decode())
                assert orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))[:2] == [3, "again"]
        finally:
            for ws in stations:
                await ws.close()
    finally:
        stop_process(server)


@pytest.mark.socket
async def test_one_address_holds_at_most_half_the_pending_cap_while_a_station_connects(
    tmp_path: Path,
) -> None:
    """127.0.0.2 fills its share (10 of a cap of 20): its next ones are closed at once,
    and a station from 127.0.0.1 still connects and gets its Heartbeat answered."""
    async with running_cloud(
        tmp_path, auto_register=True, handshake_timeout=WAIT * 2, max_pending_handshakes=20
    ) as cloud:
        guard = guard_of(cloud)
        async with half_open(cloud.port, 10, source="127.0.0.2"):
            await until(lambda: guard.pending_from("127.0.0.2") == 10, "its share pending")
            async with half_open(cloud.port, 5, source="127.0.0.2") as beyond:
                results = await asyncio.wait_for(
                    asyncio.gather(*(closed(reader) for reader, _ in beyond)), MARGIN
                )
            assert all(results)
            assert guard.refused[Refusal.TOO_MANY_FROM_ADDRESS] == 5
            await station_heartbeat(cloud, "CP1")


# -- the rate per source address ------------------------------------------------------


@pytest.mark.socket
async def test_an_address_connecting_too_fast_is_refused_while_another_connects(
    tmp_path: Path,
) -> None:
    """127.0.0.2 has a burst of 3 and then (almost) no refill: its 4th to 6th connections
    are closed at once, while a station from 127.0.0.1 connects and is answered."""
    async with running_cloud(
        tmp_path, auto_register=True, connect_rate=0.001, connect_burst=3
    ) as cloud:
        guard = guard_of(cloud)
        async with half_open(cloud.port, 3, source="127.0.0.2"):
            await until(lambda: guard.pending == 3, "the burst of 127.0.0.2 pending")
            async with half_open(cloud.port, 3, source="127.0.0.2") as too_fast:
                results = await asyncio.wait_for(
                    asyncio.gather(*(closed(reader) for reader, _ in too_fast)), MARGIN
                )
            assert all(results)
            assert guard.refused[Refusal.TOO_FAST] == 3
            # 127.0.0.1 has its own bucket: 3 connections so far, its burst is 3.
            await station_heartbeat(cloud, "CP1")


# -- the subprotocol, refused at the upgrade ------------------------------------------


@pytest.mark.parametrize("offered", ["ocpp0.1", None])
@pytest.mark.socket
async def test_tc_b_58_csms_tc_088_an_unsupported_subprotocol_is_refused_at_the_upgrade(
    tmp_path: Path, offered: str | None
) -> None:
    """TC_B_58_CSMS step 2: "The CSMS rejects the connection attempt and does NOT upgrade
    the connection to a WebSocket connection" (TC_088 of 1.6 alike): 400, no WebSocket."""
    async with running_cloud(tmp_path, auto_register=True) as cloud:
        head = await upgrade_response(cloud.port, "CP1", offered)
        assert head.startswith(b"HTTP/1.1 400 ")
        assert b"sec-websocket-protocol" not in head.lower()
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                cloud.url("CP1"),
                subprotocols=["ocpp0.1"],  # type: ignore[list-item]
                additional_headers=basic_auth("CP1", PASSWORD),
            ):
                pass
        assert refused.value.response.status_code == 400
        assert not cloud.gateway.is_connected("CP1")


@pytest.mark.parametrize(
    ("offered", "selected"),
    [("ocpp0.1,ocpp2.0.1", b"ocpp2.0.1"), ("ocpp0.1,ocpp1.6", b"ocpp1.6")],
)
@pytest.mark.socket
async def test_tc_b_58_csms_tc_088_the_supported_one_of_a_list_is_selected(
    tmp_path: Path, offered: str, selected: bytes
) -> None:
    """TC_B_58_CSMS step 4: with ``Sec-WebSocket-Protocol: ocpp0.1,ocpp<version>`` the
    CSMS upgrades, and its response carries ``Sec-WebSocket-Protocol: ocpp<version>``."""
    async with running_cloud(tmp_path, auto_register=True) as cloud:
        head = await upgrade_response(cloud.port, "CP1", offered)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"\r\nsec-websocket-protocol: " + selected + b"\r\n" in head.lower()


# -- the sans-I/O guard, the start-up and the flags -----------------------------------


@pytest.mark.unit
def test_the_token_bucket_of_an_address_refills_at_its_rate() -> None:
    now = [0.0]
    rate = AddressRate(2.0, 3, clock=lambda: now[0])
    assert [rate.allow("192.0.2.1") for _ in range(4)] == [True, True, True, False]
    assert rate.allow("192.0.2.2")  # another address has its own bucket
    now[0] = 0.4  # 0.8 of a token: not yet
    assert not rate.allow("192.0.2.1")
    now[0] = 0.5
    assert rate.allow("192.0.2.1")


@pytest.mark.unit
def test_an_ipv6_slash_64_is_one_address_and_the_table_is_bounded() -> None:
    assert (
        address_key("2001:db8:1:2::1")
        == address_key("2001:db8:1:2:ffff::9")
        == ("2001:db8:1:2::/64")
    )
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    now = [0.0]
    rate = AddressRate(1.0, 1, clock=lambda: now[0], max_addresses=100)
    for i in range(1000):
        now[0] += 0.0001
        rate.allow(f"2001:db8:{i:x}::1")
    assert len(rate) <= 100


class Waiting:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def start(self) -> None:
        self.log.append(f"start {self.name}")

    def expire(self) -> None:
        self.log.append(f"expire {self.name}")


@pytest.mark.unit
def test_beyond_the_cap_connections_wait_in_order_within_bounds() -> None:
    now = [0.0]
    guard = HandshakeGuard(
        timeout=1.0, max_pending=2, max_waiting=3, wait_limit=30.0, clock=lambda: now[0]
    )
    log: list[str] = []
    w = {name: Waiting(name, log) for name in ("a", "b", "c", "d", "gone")}
    assert guard.admit("192.0.2.1") is None and guard.admit("192.0.2.2") is None
    assert guard.admit("192.0.2.3", w["a"]) is None and guard.is_waiting(w["a"])
    assert guard.admit("192.0.2.4", w["gone"]) is None
    assert guard.admit("192.0.2.5", w["b"]) is None
    assert guard.admit("192.0.2.6", w["c"]) is Refusal.TOO_MANY_PENDING  # no room to wait
    guard.leave(w["gone"])  # gave up before its turn
    assert guard.admit("192.0.2.6", w["c"]) is None
    assert guard.waiting == 3 and log == []
    guard.release("192.0.2.1")  # a slot: the one waiting longest takes it
    assert log == ["start a"] and guard.pending == 2 and guard.waiting == 2
    now[0] += 31.0  # the rest waited too long: closed as slots come
    guard.release("192.0.2.2")
    assert log == ["start a", "expire b", "expire c"]
    assert guard.refused[Refusal.WAITED_TOO_LONG] == 2 and guard.waiting == 0
    assert guard.admit("192.0.2.7", w["d"]) is None and not guard.is_waiting(w["d"])
    assert guard.waited == 1


@pytest.mark.unit
def test_one_address_waits_with_at_most_its_share_and_waits_on_while_over_it() -> None:
    guard = HandshakeGuard(timeout=1.0, max_pending=4, max_waiting=10)
    log: list[str] = []
    assert guard.admit("192.0.2.1") is None and guard.admit("192.0.2.1") is None  # its share
    assert guard.admit("192.0.2.2") is None and guard.admit("192.0.2.3") is None
    first, second, third = (Waiting(n, log) for n in ("1a", "1b", "1c"))
    assert guard.admit("192.0.2.1", first) is None
    assert guard.admit("192.0.2.1", second) is None
    assert guard.admit("192.0.2.1", third) is Refusal.TOO_MANY_FROM_ADDRESS
    other = Waiting("4", log)
    assert guard.admit("192.0.2.4", other) is None
    guard.release("192.0.2.2")  # 192.0.2.1 still holds its share: 192.0.2.4 goes first
    assert log == ["start 4"]
    guard.release("192.0.2.1")
    assert log == ["start 4", "start 1a"] and guard.is_waiting(second)


@pytest.mark.unit
def test_the_guard_caps_pending_handshakes_and_counts_what_it_refused() -> None:
    guard = HandshakeGuard(timeout=1.0, max_pending=4)
    assert guard.admit("192.0.2.1") is None and guard.admit("192.0.2.1") is None
    assert guard.admit("192.0.2.1") is Refusal.TOO_MANY_FROM_ADDRESS  # half the cap each
    assert guard.admit("192.0.2.2") is None and guard.admit("2001:db8::1") is None
    assert guard.admit("192.0.2.3") is Refusal.TOO_MANY_PENDING
    assert guard.resume("192.0.2.3") is Refusal.TOO_MANY_PENDING
    guard.release("192.0.2.1", expired=True)
    assert guard.pending_from("192.0.2.1") == 1
    assert guard.resume("192.0.2.1") is None
    assert (guard.pending, guard.timed_out, guard.refused[Refusal.TOO_MANY_PENDING]) == (4, 1, 2)
    for host in ("192.0.2.1", "192.0.2.1", "192.0.2.2", "2001:db8::1"):
        guard.release(host)
    assert guard.pending == 0 and guard.pending_from("192.0.2.1") == 0
    with pytest.raises(ValueError, match="timeout"):
        HandshakeGuard(timeout=0)


@pytest.mark.unit
def test_a_low_open_file_limit_lowers_the_cap_with_a_warning_naming_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The issue's figures: at 1,024 open files, 1,000 pending handshakes would leave no
    descriptor to stations; the cap is lowered to leave as many as it takes."""
    with caplog.at_level(logging.WARNING, "plugstream.cloud.serve"):
        guard = handshake_guard(CloudConfig(), open_files=1024)
    assert guard.max_pending == (1024 - FD_RESERVE) // 2 == 384
    assert "1024" in caplog.text and "384" in caplog.text
    caplog.clear()
    assert handshake_guard(CloudConfig(), open_files=20000).max_pending == 1000
    assert caplog.text == ""
    assert handshake_guard(CloudConfig(connect_rate=0)).rate is None


@pytest.mark.socket
def test_at_start_the_open_file_limit_is_raised_to_the_hard_limit() -> None:
    """A child process started with a soft limit of 256 has it raised to its hard one."""
    code = (
        "import resource\n"
        "from plugstream.cloud.serve import raise_open_file_limit\n"
        "limit = raise_open_file_limit()\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "print(limit, soft, hard)\n"
    )

    def lower() -> None:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    done = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=lower,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )
    limit, soft, hard = done.stdout.split()
    assert soft == hard == limit != "256"


@pytest.mark.unit
@pytest.mark.parametrize(
    "flag",
    [
        ["--handshake-timeout", "0"],
        ["--max-pending-handshakes", "0"],
        ["--connect-rate", "-1"],
        ["--connect-burst", "0"],
    ],
)
def test_a_bad_handshake_flag_is_refused_with_exit_code_2(flag: list[str]) -> None:
    result = CliRunner().invoke(cli_app, ["cloud", "serve", *flag])
    assert result.exit_code == 2
    assert flag[0] in result.output
