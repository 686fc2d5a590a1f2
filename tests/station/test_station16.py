"""Station16 against an independent 1.6J central system written with the ``ocpp`` library."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as OcppChargePoint16
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action
from websockets.typing import Subprotocol

from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.clock import Clock, ManualClock
from plugstream.station.ev import CITY_CAR, Ev
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.station16 import Station16
from tests.support import WAIT, running, until, until_advancing

pytestmark = pytest.mark.socket

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a ManualClock's start


def utc_now() -> datetime:
    return datetime.now(UTC)


class CentralSystem(OcppChargePoint16):
    """Records what the station sends; transactionIds are assigned from ``next_tx``."""

    def __init__(self, cs_id: str, connection: Any, log: list[tuple[str, dict[str, Any]]]) -> None:
        super().__init__(cs_id, connection)
        self.log = log
        self.next_tx = 4242

    def _record(self, action: str, **kwargs: Any) -> None:
        self.log.append((action, kwargs))

    @on(Action.boot_notification)
    def on_boot(self, **kwargs: Any) -> call_result.BootNotification:
        self._record("BootNotification", **kwargs)
        return call_result.BootNotification(
            current_time=utc_now().isoformat(), interval=1, status="Accepted"
        )

    @on(Action.heartbeat)
    def on_heartbeat(self, **kwargs: Any) -> call_result.Heartbeat:
        self._record("Heartbeat", **kwargs)
        return call_result.Heartbeat(current_time=utc_now().isoformat())

    @on(Action.status_notification)
    def on_status(self, **kwargs: Any) -> call_result.StatusNotification:
        self._record("StatusNotification", **kwargs)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, **kwargs: Any) -> call_result.Authorize:
        self._record("Authorize", **kwargs)
        return call_result.Authorize(id_tag_info={"status": "Accepted"})

    @on(Action.start_transaction)
    def on_start(self, **kwargs: Any) -> call_result.StartTransaction:
        self._record("StartTransaction", **kwargs)
        tx = self.next_tx
        self.next_tx += 1
        return call_result.StartTransaction(transaction_id=tx, id_tag_info={"status": "Accepted"})

    @on(Action.meter_values)
    def on_meter_values(self, **kwargs: Any) -> call_result.MeterValues:
        self._record("MeterValues", **kwargs)
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    def on_stop(self, **kwargs: Any) -> call_result.StopTransaction:
        self._record("StopTransaction", **kwargs)
        return call_result.StopTransaction()


class Server:
    """A central system on 127.0.0.1 that can be stopped and started again on its port."""

    def __init__(self) -> None:
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.port = 0
        self.cp: CentralSystem | None = None
        self._server: Any = None

    async def _handler(self, ws: Any) -> None:
        cp = CentralSystem(ws.request.path.strip("/"), ws, self.log)
        self.cp = cp
        with contextlib.suppress(websockets.ConnectionClosed):
            await cp.start()

    async def start(self) -> None:
        self._server = await websockets.serve(
            self._handler,
            "127.0.0.1",
            self.port,
            subprotocols=[Subprotocol("ocpp1.6")],
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            self.cp = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    def actions(self, name: str) -> list[dict[str, Any]]:
        return [payload for action, payload in self.log if action == name]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def make_station(tmp_path: Path, clock: Clock | None = None, **defaults: str) -> Station16:
    """A station with short intervals; on the wall clock unless given ``clock``."""
    config = {
        "MeterValueSampleInterval": "1",
        "StopTxnSampledData": "Energy.Active.Import.Register",
        **defaults,
    }
    return Station16(
        "PS-0001",
        PLUGSTREAM_7,
        tmp_path / "station",
        utc_now,
        clock=clock,
        rng=random.Random(7),
        config_defaults=config,
        call_timeout=5.0,
        backoff=ReconnectBackoff(0.1, 0.05, 2, random.Random(1)),
        tick_interval=0.05,
    )


async def cs_call(srv: Server, request: Any) -> Any:
    cp = await until(lambda: srv.cp)
    result: Awaitable[Any] = cp.call(request)
    return await asyncio.wait_for(result, WAIT)


async def test_boot_accepted_then_heartbeat(tmp_path: Path, server: Server) -> None:
    clock = ManualClock(START)
    station = make_station(tmp_path, clock)
    async with running(station, server.url, online=True):
        await until(lambda: len(server.actions("StatusNotification")) == 2, "the boot statuses")
        await clock.advance(1)  # the interval of the BootNotification answer
        await until(lambda: server.actions("Heartbeat"), "a Heartbeat")
        boot = server.actions("BootNotification")
        assert len(boot) == 1
        assert boot[0]["charge_point_model"] == "PlugStream 7"
        assert station.online and station.heartbeat_interval == 1
        # only Heartbeat after Accepted: the boot came first
        assert server.log[0][0] == "BootNotification"
        assert [s["connector_id"] for s in server.actions("StatusNotification")] == [0, 1]


async def test_remote_start_meter_values_remote_stop(tmp_path: Path, server: Server) -> None:
    clock = ManualClock(START)
    station = make_station(tmp_path, clock)
    async with running(station, server.url, online=True):
        station.plug_in(Ev(CITY_CAR, soc=30.0))
        answer = await cs_call(server, call.RemoteStartTransaction(id_tag="TAG-1", connector_id=1))
        assert answer.status == "Accepted"
        start = (await until(lambda: server.actions("StartTransaction")))[0]
        assert start["id_tag"] == "TAG-1"
        assert server.actions("Authorize")[0]["id_tag"] == "TAG-1"  # AuthorizeRemoteTxRequests
        await until(lambda: station.transaction and station.transaction.transaction_id == 4242)
        await clock.advance(1)  # MeterValueSampleInterval
        meter = (await until(lambda: server.actions("MeterValues")))[0]
        assert meter["transaction_id"] == 4242
        answer = await cs_call(server, call.RemoteStopTransaction(transaction_id=4242))
        assert answer.status == "Accepted"
        stop = (await until(lambda: server.actions("StopTransaction")))[0]
        assert stop["transaction_id"] == 4242
        assert stop["reason"] == "Remote"
        assert stop["meter_stop"] >= start["meter_start"]
        assert stop["transaction_data"]
        statuses = [s["status"] for s in server.actions("StatusNotification")]
        assert "Charging" in statuses
        await until(
            lambda: "Finishing" in [s["status"] for s in server.actions("StatusNotification")]
        )
        assert station.journal.counts().pending == 0


async def test_offline_session_delivered_after_reconnect(tmp_path: Path, server: Server) -> None:
    clock = ManualClock(START)
    station = make_station(tmp_path, clock)
    async with running(station, server.url, online=True):
        answer = await cs_call(
            server,
            call.SendLocalList(
                list_version=1,
                update_type="Full",
                local_authorization_list=[{"idTag": "CARD-1", "idTagInfo": {"status": "Accepted"}}],
            ),
        )
        assert answer.status == "Accepted"
        version = await cs_call(server, call.GetLocalListVersion())
        assert version.list_version == 1

        await server.stop()
        await until(lambda: not station.online)

        station.plug_in(Ev(CITY_CAR, soc=30.0))
        assert await station.swipe("CARD-1")
        assert station.transaction is not None
        await clock.advance(2)  # two MeterValueSampleIntervals, offline
        await until(lambda: len(station.journal) >= 3)  # Start and MeterValues
        station.unplug()
        assert station.transaction is None
        pending = [e.action for e in station.journal.pending()]
        assert pending[0] == "StartTransaction" and pending[-1] == "StopTransaction"
        assert not server.actions("StartTransaction")

        server.log.clear()
        await server.start()  # the same port
        # past the reconnect back-off (0.1 s, doubling twice, + up to 0.05 s)
        await until_advancing(clock, lambda: station.online, "back online", up_to=0.5)
        await until(lambda: server.actions("StopTransaction"))
        await until(lambda: station.journal.counts().pending == 0)
        tx_log = [(a, p) for a, p in server.log if a in ("StartTransaction", "StopTransaction")]
        assert [a for a, _ in tx_log] == ["StartTransaction", "StopTransaction"]
        assert tx_log[0][1]["id_tag"] == "CARD-1"
        stop = tx_log[1][1]
        assert stop["transaction_id"] == 4242
        assert stop["reason"] == "EVDisconnected"
        assert stop["meter_stop"] >= tx_log[0][1]["meter_start"]
        assert stop["transaction_data"]
        meters = server.actions("MeterValues")
        assert meters and all(m["transaction_id"] == 4242 for m in meters)
        # a plain reconnect in the same run: no BootNotification (1.6 §4.2 "after start-up")
        assert not server.actions("BootNotification")
        # the status changed while offline (Charging, then Available): the current one is sent
        assert [s["status"] for s in server.actions("StatusNotification")] == ["Available"]


async def test_configuration_and_misc_calls(tmp_path: Path, server: Server) -> None:
    station = make_station(tmp_path)
    async with running(station, server.url):
        await until(lambda: station.online)
        changed = await cs_call(
            server, call.ChangeConfiguration(key="HeartbeatInterval", value="7")
        )
        assert changed.status == "Accepted"
        conf = await cs_call(server, call.GetConfiguration(key=["HeartbeatInterval", "Nope"]))
        assert conf.configuration_key[0]["value"] == "7"
        assert conf.unknown_key == ["Nope"]
        data = await cs_call(server, call.DataTransfer(vendor_id="x"))
        assert data.status == "UnknownVendorId"
        trig = await cs_call(server, call.TriggerMessage(requested_message="StatusNotification"))
        assert trig.status == "Accepted"
        avail = await cs_call(server, call.ChangeAvailability(connector_id=1, type="Inoperative"))
        assert avail.status == "Accepted"
        await until(
            lambda: "Unavailable" in [s["status"] for s in server.actions("StatusNotification")]
        )
        sched = await cs_call(server, call.GetCompositeSchedule(connector_id=1, duration=60))
        assert sched.status == "Accepted"
        cleared = await cs_call(server, call.ClearCache())
        assert cleared.status == "Accepted"


async def test_TC_C_connection_timeout_16(tmp_path: Path, server: Server) -> None:
    """ConnectionTimeOut: plugged in without an idTag → Finishing (B6); an idTag without
    a cable → Available (B1), and the authorization is gone."""
    clock = ManualClock(START)
    station = make_station(tmp_path, clock, ConnectionTimeOut="1")
    async with running(station, server.url, online=True):
        # the boot's status first: a change sent meanwhile could overtake it
        await until(lambda: connector_statuses(server) == ["Available"], "the boot status")
        station.plug_in(Ev(CITY_CAR, soc=30.0))
        await until(lambda: station.connector.status_16.value == "Preparing")
        await timeout_started(station)
        await clock.advance(1)  # ConnectionTimeOut
        await until(lambda: station.connector.status_16.value == "Finishing")
        station.unplug()
        assert station.connector.status_16.value == "Available"

        assert await station.swipe("TAG-1")  # Authorize: Accepted, but no cable follows
        assert station.connector.status_16.value == "Preparing"
        await timeout_started(station)
        await clock.advance(1)
        await until(lambda: station.connector.status_16.value == "Available")
        station.plug_in(Ev(CITY_CAR, soc=30.0))
        want = ["Available", "Preparing", "Finishing", "Available", "Preparing", "Available"]
        want.append("Preparing")
        # the plug-in's status came after anything it would have started
        await until(lambda: connector_statuses(server)[:7] == want)
        assert station.transaction is None  # the authorization was cancelled
        assert not server.actions("StartTransaction")


async def timeout_started(station: Station16) -> None:
    """Until the tick loop started the ConnectionTimeOut (and set its timer): from then
    on the next tick is the timeout's, a whole ConnectionTimeOut away."""
    timeout = float(station.config.connection_timeout)
    await until(lambda: station.next_tick_in() == timeout, "the ConnectionTimeOut timer")


def connector_statuses(server: Server) -> list[str]:
    return [s["status"] for s in server.actions("StatusNotification") if s["connector_id"] == 1]


def test_install_security_writes_the_keys_unchecked(tmp_path: Path) -> None:
    """Setup writes SecurityProfile and AuthorizationKey as they are (no events)."""
    station = Station16("CP-INSTALL", PLUGSTREAM_7, tmp_path, clock=ManualClock())
    station.install_security(1, "a-password-of-16-chars")
    assert station.security_profile == 1
    assert station.password() == "a-password-of-16-chars"
    assert station.security_log.pending() == []
    station.close()
