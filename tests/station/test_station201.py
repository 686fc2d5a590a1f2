"""Station201 against an independent 2.0.1 CSMS written with the ``ocpp`` library."""

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
from ocpp.v201 import ChargePoint as OcppChargePoint201
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action
from websockets.typing import Subprotocol

import plugstream.station.config as config_module
from plugstream.station.clock import Clock, ManualClock
from plugstream.station.ev import CITY_CAR, Ev
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.station201 import Station201
from tests.support import WAIT, running, until, until_advancing

pytestmark = pytest.mark.socket

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a ManualClock's start
HEARTBEAT = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}


def utc_now() -> datetime:
    return datetime.now(UTC)


class Csms(OcppChargePoint201):
    """Records what the station sends (payloads as the ``ocpp`` library hands them over)."""

    def __init__(self, cs_id: str, connection: Any, log: list[tuple[str, dict[str, Any]]]) -> None:
        super().__init__(cs_id, connection)
        self.log = log

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
        return call_result.Authorize(id_token_info={"status": "Accepted"})

    @on(Action.transaction_event)
    def on_transaction_event(self, **kwargs: Any) -> call_result.TransactionEvent:
        self._record("TransactionEvent", **kwargs)
        if "id_token" in kwargs:
            return call_result.TransactionEvent(id_token_info={"status": "Accepted"})
        return call_result.TransactionEvent()

    @on(Action.notify_report)
    def on_notify_report(self, **kwargs: Any) -> call_result.NotifyReport:
        self._record("NotifyReport", **kwargs)
        return call_result.NotifyReport()


class Server:
    """A CSMS on 127.0.0.1 that can be stopped and started again on its port."""

    def __init__(self) -> None:
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.port = 0
        self.cp: Csms | None = None
        self._server: Any = None

    async def _handler(self, ws: Any) -> None:
        cp = Csms(ws.request.path.strip("/"), ws, self.log)
        self.cp = cp
        with contextlib.suppress(websockets.ConnectionClosed):
            await cp.start()

    async def start(self) -> None:
        self._server = await websockets.serve(
            self._handler,
            "127.0.0.1",
            self.port,
            subprotocols=[Subprotocol("ocpp2.0.1")],
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


def make_station(tmp_path: Path, clock: Clock | None = None) -> Station201:
    """A station with short intervals; on the wall clock unless given ``clock``."""
    return Station201(
        "PS-2001",
        PLUGSTREAM_7,
        tmp_path / "station",
        utc_now,
        clock=clock,
        rng=random.Random(7),
        device_model_defaults={
            "SampledDataCtrlr.TxUpdatedInterval": "1",
            "OCPPCommCtrlr.RetryBackOffWaitMinimum": "1",
            "OCPPCommCtrlr.RetryBackOffRandomRange": "0",
            "OCPPCommCtrlr.RetryBackOffRepeatTimes": "0",
        },
        call_timeout=5.0,
        tick_interval=0.05,
    )


async def cs_call(srv: Server, request: Any) -> Any:
    cp = await until(lambda: srv.cp)
    result: Awaitable[Any] = cp.call(request)
    return await asyncio.wait_for(result, WAIT)


def check_sequence(events: list[dict[str, Any]]) -> str:
    """One transaction: Started, Updated..., Ended; seqNo 0, 1, 2...; one transactionId."""
    assert events[0]["event_type"] == "Started"
    assert events[-1]["event_type"] == "Ended"
    assert all(e["event_type"] == "Updated" for e in events[1:-1])
    assert [e["seq_no"] for e in events] == list(range(len(events)))
    ids = {str(e["transaction_info"]["transaction_id"]) for e in events}
    assert len(ids) == 1
    return ids.pop()


async def test_boot_accepted_then_heartbeat(tmp_path: Path, server: Server) -> None:
    clock = ManualClock(START)
    station = make_station(tmp_path, clock)
    async with running(station, server.url, online=True):
        await until(lambda: server.actions("StatusNotification"), "the boot status")
        await clock.advance(1)  # the interval of the BootNotification answer
        await until(lambda: server.actions("Heartbeat"), "a Heartbeat")
        boot = server.actions("BootNotification")
        assert len(boot) == 1
        assert boot[0]["reason"] == "PowerUp"
        assert boot[0]["charging_station"]["model"] == "PlugStream 7"
        assert station.online and station.heartbeat_interval == 1
        assert station.config.heartbeat_interval == 1
        assert server.log[0][0] == "BootNotification"
        status = server.actions("StatusNotification")[0]
        assert (status["evse_id"], status["connector_id"]) == (1, 1)
        assert status["connector_status"] == "Available"


async def test_remote_start_updated_remote_stop(tmp_path: Path, server: Server) -> None:
    clock = ManualClock(START)
    station = make_station(tmp_path, clock)
    async with running(station, server.url, online=True):
        station.plug_in(Ev(CITY_CAR, soc=30.0))
        answer = await cs_call(
            server,
            call.RequestStartTransaction(
                id_token={"idToken": "TAG-1", "type": "Central"}, remote_start_id=7, evse_id=1
            ),
        )
        assert answer.status == "Accepted"
        started = (await until(lambda: server.actions("TransactionEvent")))[0]
        assert server.actions("Authorize")[0]["id_token"]["id_token"] == "TAG-1"
        assert started["event_type"] == "Started"
        assert started["transaction_info"]["remote_start_id"] == 7
        assert started["id_token"]["id_token"] == "TAG-1"
        assert "offline" not in started
        await clock.advance(1)  # TxUpdatedInterval
        updated = await until(
            lambda: [e for e in server.actions("TransactionEvent") if e["event_type"] == "Updated"]
        )
        assert updated[0]["trigger_reason"] == "MeterValuePeriodic"
        assert updated[0]["meter_value"][0]["sampled_value"]
        # the event happened when the sample was taken: one time, written twice (deflated
        # to a back-reference)
        assert updated[0]["timestamp"] == updated[0]["meter_value"][0]["timestamp"]
        tx_id = started["transaction_info"]["transaction_id"]
        await until(lambda: station.journal.counts().pending == 0)
        answer = await cs_call(server, call.RequestStopTransaction(transaction_id=tx_id))
        assert answer.status == "Accepted"
        ended = await until(
            lambda: [e for e in server.actions("TransactionEvent") if e["event_type"] == "Ended"]
        )
        assert ended[0]["trigger_reason"] == "RemoteStop"
        assert ended[0]["transaction_info"]["stopped_reason"] == "Remote"
        assert ended[0]["meter_value"]
        events = server.actions("TransactionEvent")
        assert check_sequence(events) == tx_id
        statuses = [s["connector_status"] for s in server.actions("StatusNotification")]
        assert "Occupied" in statuses
        await until(lambda: station.journal.counts().pending == 0)


async def test_get_set_variables(tmp_path: Path, server: Server) -> None:
    station = make_station(tmp_path)
    async with running(station, server.url):
        await until(lambda: station.online)
        got = await cs_call(server, call.GetVariables(get_variable_data=[HEARTBEAT]))
        assert got.get_variable_result[0]["attribute_status"] == "Accepted"
        assert got.get_variable_result[0]["attribute_value"] == "1"
        res = await cs_call(
            server, call.SetVariables(set_variable_data=[{**HEARTBEAT, "attributeValue": "7"}])
        )
        assert res.set_variable_result[0]["attribute_status"] == "Accepted"
        assert station.heartbeat_interval == 7
        got = await cs_call(
            server,
            call.GetVariables(
                get_variable_data=[
                    HEARTBEAT,
                    {"component": {"name": "Nope"}, "variable": {"name": "X"}},
                ]
            ),
        )
        assert got.get_variable_result[0]["attribute_value"] == "7"
        assert got.get_variable_result[1]["attribute_status"] == "UnknownComponent"
        report = await cs_call(
            server, call.GetBaseReport(request_id=3, report_base="ConfigurationInventory")
        )
        assert report.status == "Accepted"
        reports = await until(lambda: server.actions("NotifyReport"))
        await until(lambda: not server.actions("NotifyReport")[-1]["tbc"])
        assert reports[0]["request_id"] == 3
        data = await cs_call(server, call.DataTransfer(vendor_id="x"))
        assert data.status == "UnknownVendorId"
        trig = await cs_call(server, call.TriggerMessage(requested_message="StatusNotification"))
        assert trig.status == "Accepted"
        avail = await cs_call(server, call.ChangeAvailability(operational_status="Inoperative"))
        assert avail.status == "Accepted"
        await until(
            lambda: (
                "Unavailable"
                in [s["connector_status"] for s in server.actions("StatusNotification")]
            )
        )
        sched = await cs_call(server, call.GetCompositeSchedule(duration=60, evse_id=1))
        assert sched.status == "Accepted"
        cleared = await cs_call(server, call.ClearCache())
        assert cleared.status == "Accepted"


async def test_offline_session_delivered_after_reconnect(tmp_path: Path, server: Server) -> None:
    clock = ManualClock(START)
    station = make_station(tmp_path, clock)
    async with running(station, server.url, online=True):
        answer = await cs_call(
            server,
            call.SendLocalList(
                version_number=1,
                update_type="Full",
                local_authorization_list=[
                    {
                        "idToken": {"idToken": "CARD-1", "type": "ISO14443"},
                        "idTokenInfo": {"status": "Accepted"},
                    }
                ],
            ),
        )
        assert answer.status == "Accepted"
        version = await cs_call(server, call.GetLocalListVersion())
        assert version.version_number == 1

        await server.stop()
        await until(lambda: not station.online)

        station.plug_in(Ev(CITY_CAR, soc=30.0))
        assert await station.swipe("CARD-1")
        assert station.transaction is not None
        await clock.advance(2)  # two TxUpdatedIntervals, offline
        await until(lambda: len(station.journal.pending()) >= 3)  # Started and Updated
        station.unplug()
        assert station.transaction is None
        pending = [e.payload for e in station.journal.pending()]
        assert pending[0]["eventType"] == "Started" and pending[-1]["eventType"] == "Ended"
        assert all(p["offline"] is True for p in pending)
        assert not server.actions("TransactionEvent")

        server.log.clear()
        await server.start()  # the same port
        # past the reconnect back-off (RetryBackOffWaitMinimum 1 s, no random range)
        await until_advancing(clock, lambda: station.online, "back online", up_to=1)
        await until(lambda: station.journal.counts().pending == 0)
        events = server.actions("TransactionEvent")
        assert len(events) == len(pending)  # each exactly once
        check_sequence(events)
        assert [e["seq_no"] for e in events] == [p["seqNo"] for p in pending]
        assert all(e["offline"] is True for e in events)
        assert events[0]["trigger_reason"] == "Authorized"
        assert events[0]["id_token"]["id_token"] == "CARD-1"
        assert events[-1]["trigger_reason"] == "EVCommunicationLost"
        assert events[-1]["transaction_info"]["stopped_reason"] == "EVDisconnected"
        # a plain reconnect in the same run: no BootNotification (B01/B02: only when booted)
        assert not server.actions("BootNotification")
        # the status changed while offline: the current one is sent once registered
        statuses = server.actions("StatusNotification")
        assert [s["connector_status"] for s in statuses] == ["Available"]


async def test_TC_C_ev_connection_timeout_201(tmp_path: Path, server: Server) -> None:
    """EVConnectionTimeOut (C01.FR.26): authorized but no cable in time → the
    authorization ends, the connector is Available, a later plug-in starts nothing."""
    clock = ManualClock(START)
    station = make_station(tmp_path, clock)
    station.config.set_value("TxCtrlr", "EVConnectionTimeOut", "1")
    async with running(station, server.url, online=True):
        # the boot's status first: a change sent meanwhile could overtake it
        await until(lambda: statuses(server) == ["Available"], "the boot status")
        assert await station.swipe("TAG-1")
        assert station.connector.status_16.value == "Preparing"
        assert station.connector.status_201.value == "Available"  # no cable: not Occupied
        # the deadline is the authorization's time + 1 s whenever the tick loop looks
        await clock.advance(1)  # EVConnectionTimeOut
        await until(lambda: station.connector.status_16.value == "Available")
        station.plug_in(Ev(CITY_CAR, soc=30.0))
        # the plug-in's status came after anything it would have started
        await until(lambda: statuses(server) == ["Available", "Occupied"])
        assert station.transaction is None
        assert not server.actions("TransactionEvent")


def statuses(server: Server) -> list[str]:
    return [s["connector_status"] for s in server.actions("StatusNotification")]


def test_install_security_writes_the_variables_unchecked(tmp_path: Path) -> None:
    """Setup writes SecurityCtrlr.SecurityProfile and BasicAuthPassword as they are."""
    station = Station201("CS-INSTALL", PLUGSTREAM_7, tmp_path, clock=ManualClock())
    station.install_security(1, "a-password-of-16-chars")
    assert station.security_profile == 1
    assert station.password() == "a-password-of-16-chars"
    station.close()


def test_fleet_stations_share_the_device_model_and_keep_their_own_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fleet's 2.0.1 stations hold the device model's definitions and defaults once;
    a value the CSMS sets on one is that station's alone, and a station that does not
    fsync its state does not fsync its new device model file either."""
    writes: list[bool] = []
    write = config_module.atomic_write_json

    def recording(path: Path, data: Any, *, sync: bool = True) -> None:
        writes.append(sync)
        write(path, data, sync=sync)

    monkeypatch.setattr(config_module, "atomic_write_json", recording)
    a = Station201("CS-A", PLUGSTREAM_7, tmp_path / "a", clock=ManualClock(), sync_state=False)
    b = Station201("CS-B", PLUGSTREAM_7, tmp_path / "b", clock=ManualClock(), sync_state=False)
    try:
        assert writes == [False, False]  # each fresh station's file, no fsync
        assert a.config._shared is b.config._shared
        assert a.config._own is None and b.config._own is None
        (result,) = a.config.set_variables([{**HEARTBEAT, "attributeValue": "120"}])
        assert result["attributeStatus"] == "Accepted"
        assert a.config.heartbeat_interval == 120
        assert b.config.heartbeat_interval == 300 and b.config._own is None
        identity = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "Identity"}}
        for station, expected in ((a, "CS-A"), (b, "CS-B")):
            (found,) = station.config.get_variables([identity])
            assert found["attributeValue"] == expected
        again = Station201("CS-A", PLUGSTREAM_7, tmp_path / "a", clock=ManualClock())
        assert again.config.heartbeat_interval == 120  # persisted across a restart
        again.close()
    finally:
        a.close()
        b.close()
