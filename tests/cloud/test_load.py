"""PlugStream Cloud under a fleet's ramp-up: thousands of stations booting, authorizing and
starting sessions at once while an operator lists the stations (bench: a cloud and
``plugstream fleet`` of 5,000-10,000 stations). Reads wait their turn instead of failing,
the station list is what each station's own page shows, a StatusNotification is one
write, the message log writes its backlog in one go."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, WebSocket
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from plugstream.cloud.api.common import include_guarded
from plugstream.cloud.app import API_ROUTERS
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.context import HandlerContext
from plugstream.cloud.gateway import Gateway
from plugstream.cloud.handlers import csms_handlers
from plugstream.cloud.handlers16 import Csms16
from plugstream.cloud.handlers201 import Csms201
from plugstream.cloud.storage import IdTokenRecord, Store
from plugstream.ocpp import Handlers, OcppEndpoint, OcppVersion
from plugstream.ocpp.datetimes import format_time
from plugstream.ocpp.routing import dispatch
from tests.support import WAIT, count_reads, serving, until

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
TOKEN = "load-test-token-0123"
PASSWORD = "correct-horse-battery"


# -- reads ------------------------------------------------------------------------------


@pytest.mark.unit
async def test_a_thousand_reads_at_once_all_answer(store: Store) -> None:
    """A ramp-up's Authorizes and boots, and listings, at once: none fails (the pool's
    wait timed out under this before), each gets the right answer."""
    for n in range(20):
        await store.stations.register(f"CP{n}", security_profile=0)
    await store.id_tokens.put(IdTokenRecord("TAG1"))

    async def one(i: int) -> bool:
        kind = i % 4
        if kind == 0:
            station = await store.stations.get(f"CP{i % 20}")
            return station is not None and station.station_id == f"CP{i % 20}"
        if kind == 1:
            return (await store.id_tokens.authorize("TAG1", at=T0)).status == "Accepted"
        if kind == 2:
            return await store.stations.get_boot_status(f"CP{i % 20}") == "Accepted"
        return len(await store.stations.list()) == 20

    results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(1000))), 60)
    assert all(results)


@pytest.mark.unit
async def test_a_reconnect_storm_is_admitted_in_a_few_reads_each_station_its_own(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thousand handshakes at once, after a restart (nothing cached): registered and
    unknown ids alike are read in a few batched reads, not one each, and every handshake
    gets its own station's facts. A registration ending meanwhile is not undone by a
    batch read that began before it."""
    for n in range(500):
        await store.stations.register(f"CP{n}", security_profile=n % 2, lenient=n % 3 == 0)
    store.stations.forget_admissions()  # as after a restart
    reads = count_reads(store, monkeypatch)
    ids = [f"CP{n}" for n in range(500)] + [f"NEW{n}" for n in range(500)]
    found = await asyncio.wait_for(
        asyncio.gather(*(store.stations.admission(sid) for sid in ids)), 60
    )
    for sid, admission in zip(ids, found, strict=True):
        if sid.startswith("NEW"):
            assert admission is None
        else:
            n = int(sid[2:])
            assert admission is not None and admission.station_id == sid
            assert (admission.security_profile, admission.lenient) == (n % 2, n % 3 == 0)
    assert reads[0] <= 10, f"{reads[0]} reads for 1,000 admissions"
    again = reads[0]
    assert await store.stations.admission("CP7") is not None  # now from the cache
    assert reads[0] == again

    # an operator's change that ends while a batch read is under way wins
    store.stations.forget_admissions()
    pending = asyncio.ensure_future(store.stations.admission("CP1"))
    await store.stations.register("CP1", security_profile=2, lenient=False)
    await pending
    latest = await store.stations.admission("CP1")
    assert latest is not None and latest.security_profile == 2


@pytest.mark.unit
async def test_a_reconnect_storm_of_known_stations_writes_one_batch_not_one_each(
    store: Store,
) -> None:
    """What admission and the first heartbeat of 1,000 known stations write at once: the
    admission facts come from the cache (no write, no read) and their last_seen lands in
    a handful of commits, not a thousand."""
    for n in range(1000):
        await store.stations.register(f"CP{n}", security_profile=0)
    commits = store.db.stats.commits
    admitted = await asyncio.gather(*(store.stations.admission(f"CP{n}") for n in range(1000)))
    assert all(a is not None for a in admitted)
    assert store.db.stats.commits == commits  # admitting wrote nothing
    await asyncio.gather(*(store.stations.record_seen(f"CP{n}", at=T0) for n in range(1000)))
    assert store.db.stats.commits - commits <= 5
    seen = await store.stations.get("CP999")
    assert seen is not None and seen.last_seen == T0


@pytest.mark.unit
async def test_boot_status_is_read_for_the_boot(store: Store) -> None:
    assert await store.stations.get_boot_status("NOPE") is None
    await store.stations.register("HELD", security_profile=0, boot_status="Pending")
    assert await store.stations.get_boot_status("HELD") == "Pending"
    csms = Csms16("HELD", HandlerContext(store, CloudConfig(), clock=lambda: T0))
    answer = await dispatch(
        csms, "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}
    )
    assert answer["status"] == "Pending"


# -- writes -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.unit
async def test_status_notification_is_one_write_with_the_clock(store: Store, version: str) -> None:
    """The connector's status and the station's clock offset, committed together: each
    write a station waits for is a commit of the writer."""
    csms: Csms16 | Csms201
    if version == "1.6":
        csms = Csms16("CP1", HandlerContext(store, CloudConfig(), clock=lambda: T0))
        boot: dict[str, Any] = {"chargePointVendor": "V", "chargePointModel": "M"}
        status: dict[str, Any] = {
            "connectorId": 1,
            "errorCode": "NoError",
            "status": "Charging",
            "timestamp": format_time(T0 + timedelta(seconds=7)),
        }
    else:
        csms = Csms201("CP1", HandlerContext(store, CloudConfig(), clock=lambda: T0))
        boot = {"reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M"}}
        status = {
            "timestamp": format_time(T0 + timedelta(seconds=7)),
            "connectorStatus": "Occupied",
            "evseId": 1,
            "connectorId": 1,
        }
    await dispatch(csms, "BootNotification", boot)
    commits = store.db.stats.commits
    assert await dispatch(csms, "StatusNotification", status) == {}
    assert store.db.stats.commits == commits + 1
    station = await store.stations.get("CP1")
    assert station is not None
    assert [c.status for c in station.connectors] == [status.get("status", "Occupied")]
    assert station.clock_offset_s == pytest.approx(7.0)
    assert station.last_seen == T0


@pytest.mark.unit
async def test_status_without_a_timestamp_keeps_the_clock(store: Store) -> None:
    await store.stations.register("CP1", security_profile=0)
    await store.stations.record_seen("CP1", at=T0, station_time=T0 + timedelta(seconds=3))
    await store.stations.set_connector_status(
        "CP1", evse_id=1, connector_id=1, status="Faulted", error_code="GroundFailure", at=T0
    )
    station = await store.stations.get("CP1")
    assert station is not None
    assert station.clock_offset_s == pytest.approx(3.0)
    assert [(c.status, c.error_code) for c in station.connectors] == [("Faulted", "GroundFailure")]


# -- the message log --------------------------------------------------------------------


@pytest.mark.unit
async def test_message_log_writes_its_backlog_in_one_go(store: Store) -> None:
    """A burst of frames (a ramp-up sends thousands a second) is written in a commit or
    two, not 500 frames a commit: the log keeps up and drops nothing."""
    gateway = Gateway(store, CloudConfig())
    frames = 5000  # ten batches of the old 500
    commits = store.db.stats.commits
    try:
        for n in range(frames):
            gateway.log_frame(f"CP{n % 50}", "in", f'[2,"{n}","Heartbeat",{{}}]')
    finally:
        await gateway.close()
    assert gateway.frames_dropped == 0
    assert await store.db.count_rows("messages") == frames
    assert store.db.stats.commits - commits <= 2
    newest = await store.messages.list("CP49", limit=1)
    assert newest[0].text == f'[2,"{frames - 1}","Heartbeat",{{}}]'


# -- the station list -------------------------------------------------------------------


@pytest.fixture
async def api(store: Store) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway, int]]:
    """The REST API and the gateway on a loopback port: (client, gateway, port)."""
    gateway = Gateway(store, CloudConfig(call_timeout=5.0), handlers=csms_handlers())
    app = FastAPI()
    app.state.store, app.state.gateway = store, gateway
    app.state.config = CloudConfig(api_token=TOKEN)
    include_guarded(app, *API_ROUTERS)

    @app.websocket("/ocpp/{station_id:path}")
    async def ocpp(websocket: WebSocket, station_id: str) -> None:
        await gateway.serve(websocket, station_id)

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    )
    async with serving(server):
        port: int = server.servers[0].sockets[0].getsockname()[1]
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}/api/v1",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=WAIT,
            ) as client:
                yield client, gateway, port
        finally:
            await gateway.close()  # before the server stops, as the app's lifespan does


@contextlib.asynccontextmanager
async def connected(port: int, gateway: Gateway, station_id: str) -> AsyncIterator[None]:
    url = f"ws://127.0.0.1:{port}/ocpp/{station_id}"
    async with connect(url, subprotocols=[Subprotocol("ocpp1.6")]) as ws:
        task = asyncio.create_task(OcppEndpoint(ws, OcppVersion.V16, Handlers()).run())
        await until(lambda: gateway.is_connected(station_id), f"{station_id} connected")
        try:
            yield
        finally:
            await ws.close()
            await task


@pytest.mark.socket
async def test_station_list_is_what_each_station_shows(
    store: Store, api: tuple[httpx.AsyncClient, Gateway, int]
) -> None:
    """The list is written without a model per station (it is fast at 10,000): every
    field of every station is what the station's own page shows, word for word."""
    client, gateway, port = api
    await store.stations.register("LIVE", security_profile=0)
    await store.stations.register("KEYED", password=PASSWORD, security_profile=1)
    await store.stations.register("HELD", security_profile=0, lenient=True, boot_status="Pending")
    await store.stations.record_boot(
        "KEYED",
        ocpp_version="1.6",
        vendor="PlugStream",
        model="PlugStream 22",
        serial_number="PS22-1",
        firmware_version="1.4.2",
        at=T0,
    )
    for connector, state in ((1, "Charging"), (2, "Available")):
        await store.stations.set_connector_status(
            "KEYED",
            evse_id=connector,
            connector_id=connector,
            status=state,
            error_code=None,
            at=T0 + timedelta(microseconds=123456),
            station_time=T0 + timedelta(seconds=1.5),
        )
    gateway.failed_logins["KEYED"] += 2
    gateway.violations["HELD"] += 1
    async with connected(port, gateway, "LIVE"):

        async def seen() -> bool:
            live = await store.stations.get("LIVE")
            return live is not None and live.last_seen is not None

        # the gateway records a new connection as seen, on the side
        await until(seen, "LIVE recorded as seen")
        listing = await client.get("/stations")
        assert listing.status_code == 200
        stations = listing.json()
        assert [s["station_id"] for s in stations] == ["HELD", "KEYED", "LIVE"]
        for station in stations:
            own = await client.get(f"/stations/{station['station_id']}")
            assert station == own.json()
    by_id = {s["station_id"]: s for s in stations}
    assert by_id["LIVE"]["connected"] is True and by_id["LIVE"]["ocpp_version"] == "1.6"
    assert by_id["KEYED"]["connected"] is False
    assert by_id["KEYED"]["connectors"][0]["updated_at"] == "2026-11-25T10:00:00.123456Z"
    assert by_id["KEYED"]["last_boot"] == "2026-11-25T10:00:00Z"
    assert by_id["KEYED"]["clock_offset_s"] == pytest.approx(1.5 - 0.123456)
    assert by_id["KEYED"]["failed_logins"] == 2 and by_id["HELD"]["protocol_violations"] == 1
    assert by_id["HELD"]["boot_status"] == "Pending" and by_id["HELD"]["lenient"] is True


@pytest.mark.socket
async def test_station_list_of_thousands_answers_while_stations_write(
    store: Store, api: tuple[httpx.AsyncClient, Gateway, int]
) -> None:
    """Listing 2,000 stations while 2,000 status writes are under way: every listing
    answers 200, none waits for the writes to end."""
    client, _gateway, _port = api
    writes = [
        store.stations.set_connector_status(
            f"SIM-{n:04d}", evse_id=1, connector_id=1, status="Charging", error_code=None, at=T0
        )
        for n in range(2000)
    ]
    listings = [client.get("/stations") for _ in range(5)]
    answers = await asyncio.wait_for(asyncio.gather(*listings), 30)
    await asyncio.wait_for(asyncio.gather(*writes), 30)
    assert [a.status_code for a in answers] == [200] * 5
    listed = (await client.get("/stations")).json()
    assert len(listed) == 2000
    assert {s["connectors"][0]["status"] for s in listed} == {"Charging"}
