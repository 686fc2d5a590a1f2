"""What two independent CSMSs showed of the station (issue 17), each against a central
system written with the ``ocpp`` library: a triggered BootNotification's reason, a Reset
while a SecurityEventNotification is in flight, GetChargingProfiles, the connector's
status after a remote start without a car, a 1.6 TriggerMessage for one connector, and a
1.6 central system without the security extension."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import websockets
from ocpp.charge_point import ChargePoint as LibChargePoint
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.typing import Subprotocol

from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.ev import CITY_CAR, Ev
from plugstream.station.fleet import SimStation
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.station16 import Station16
from plugstream.station.station201 import Station201
from tests.support import WAIT, ready_tasks_run, running, until

pytestmark = pytest.mark.socket

Log = list[tuple[str, dict[str, Any]]]


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Csms201(ChargePoint201):
    """A 2.0.1 CSMS that records the CALLs it gets; ``boot_status`` answers the first
    BootNotification (Pending: a CSMS that wants to look at the station first)."""

    def __init__(self, cs_id: str, connection: Any, log: Log, boot_status: str) -> None:
        super().__init__(cs_id, connection)
        self.log = log
        self.boot_status = boot_status

    @on("BootNotification")
    def on_boot(self, **kwargs: Any) -> Any:
        self.log.append(("BootNotification", kwargs))
        boots = sum(1 for action, _ in self.log if action == "BootNotification")
        status = self.boot_status if boots == 1 else "Accepted"
        return result201.BootNotification(current_time=_now(), interval=3600, status=status)

    @on("StatusNotification")
    def on_status(self, **kwargs: Any) -> Any:
        self.log.append(("StatusNotification", kwargs))
        return result201.StatusNotification()

    @on("Heartbeat")
    def on_heartbeat(self, **kwargs: Any) -> Any:
        return result201.Heartbeat(current_time=_now())

    @on("Authorize")
    def on_authorize(self, **kwargs: Any) -> Any:
        return result201.Authorize(id_token_info={"status": "Accepted"})

    @on("TransactionEvent")
    def on_transaction_event(self, **kwargs: Any) -> Any:
        self.log.append(("TransactionEvent", kwargs))
        return result201.TransactionEvent()

    @on("SecurityEventNotification")
    def on_security_event(self, **kwargs: Any) -> Any:
        self.log.append(("SecurityEventNotification", kwargs))
        return result201.SecurityEventNotification()

    @on("ReportChargingProfiles")
    def on_report(self, **kwargs: Any) -> Any:
        self.log.append(("ReportChargingProfiles", kwargs))
        return result201.ReportChargingProfiles()


class Csms16(ChargePoint16):
    """A 1.6 central system WITHOUT the security extension: no SecurityEventNotification
    handler, so the library answers it with a CALLERROR NotImplemented. Records every
    CALL as it came (action, raw payload)."""

    def __init__(self, cs_id: str, connection: Any, log: Log) -> None:
        super().__init__(cs_id, connection)
        self.log = log

    async def route_message(self, raw_msg: str) -> None:
        frame = json.loads(raw_msg)
        if frame[0] == 2:
            self.log.append((frame[2], frame[3]))
        await super().route_message(raw_msg)

    @on("BootNotification")
    def on_boot(self, **kwargs: Any) -> Any:
        return result16.BootNotification(current_time=_now(), interval=3600, status="Accepted")

    @on("StatusNotification")
    def on_status(self, **kwargs: Any) -> Any:
        return result16.StatusNotification()

    @on("Heartbeat")
    def on_heartbeat(self, **kwargs: Any) -> Any:
        return result16.Heartbeat(current_time=_now())


class Server:
    """A CSMS on 127.0.0.1 made of ``factory``'s connections; the newest is ``cp``."""

    def __init__(self, subprotocol: str, factory: Callable[[str, Any, Log], LibChargePoint]):
        self.subprotocol = subprotocol
        self.factory = factory
        self.log: Log = []
        self.connections: list[LibChargePoint] = []
        self.port = 0
        self._server: Any = None

    async def _handler(self, ws: Any) -> None:
        cp = self.factory(ws.request.path.strip("/"), ws, self.log)
        self.connections.append(cp)
        with contextlib.suppress(websockets.ConnectionClosed):
            await cp.start()

    async def start(self) -> None:
        self._server = await websockets.serve(
            self._handler, "127.0.0.1", self.port, subprotocols=[Subprotocol(self.subprotocol)]
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    @property
    def cp(self) -> LibChargePoint:
        return self.connections[-1]

    async def call(self, request: Any) -> Any:
        await until(lambda: self.connections, "a station connected")
        return await asyncio.wait_for(self.cp.call(request), WAIT)

    def actions(self, name: str) -> list[dict[str, Any]]:
        return [payload for action, payload in self.log if action == name]


@contextlib.asynccontextmanager
async def serving(server: Server) -> AsyncIterator[Server]:
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def csms201(boot_status: str = "Accepted") -> Server:
    return Server("ocpp2.0.1", lambda cs_id, ws, log: Csms201(cs_id, ws, log, boot_status))


def station201(data_dir: Path) -> Station201:
    return Station201(
        "PS-F201",
        PLUGSTREAM_7,
        data_dir,
        rng=random.Random(17),
        device_model_defaults={
            "OCPPCommCtrlr.RetryBackOffWaitMinimum": "1",
            "OCPPCommCtrlr.RetryBackOffRandomRange": "0",
            "OCPPCommCtrlr.RetryBackOffRepeatTimes": "0",
        },
        call_timeout=5.0,
    )


def station16(data_dir: Path) -> Station16:
    return Station16(
        "PS-F16",
        PLUGSTREAM_7,
        data_dir,
        rng=random.Random(16),
        call_timeout=5.0,
        backoff=ReconnectBackoff(0.1, 0.05, 2, random.Random(1)),
    )


# -- 1. B01 / F06: a triggered BootNotification says Triggered ---------------------------


async def test_TC_B_02_CS_triggered_boot_notification_has_reason_triggered(
    tmp_path: Path,
) -> None:
    """Pending first; the CSMS triggers a BootNotification: it says reason Triggered (not
    PowerUp), its Accepted answer registers the station at once (no wait for the
    interval of the Pending answer) and the connector's status follows; once Accepted, a
    trigger of BootNotification is Rejected (F06.FR.17)."""
    async with serving(csms201(boot_status="Pending")) as server:
        station = station201(tmp_path / "st")
        async with running(station, server.url):
            await until(lambda: station.registration == "Pending", "the Pending answer")
            answer = await server.call(call201.TriggerMessage(requested_message="BootNotification"))
            assert answer.status == "Accepted"
            await until(lambda: station.online, "registered by the triggered boot")
            await until(lambda: server.actions("StatusNotification"), "the connector's status")
            boots = server.actions("BootNotification")
            assert [b["reason"] for b in boots] == ["PowerUp", "Triggered"]
            assert server.actions("StatusNotification")[0]["connector_status"] == "Available"
            again = await server.call(call201.TriggerMessage(requested_message="BootNotification"))
            assert again.status == "Rejected"
            await ready_tasks_run(5)
            assert len(server.actions("BootNotification")) == 2


# -- 2. a Reset while a SecurityEventNotification is in flight ---------------------------


def resets_reported(server: Server) -> int:
    events = server.actions("SecurityEventNotification")
    return sum(1 for e in events if e["type"] == "ResetOrReboot")


async def test_reset_while_a_security_event_is_in_flight_leaves_no_unretrieved_future(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """B11 Reset: the station logs ResetOrReboot and closes the connection while its
    SecurityEventNotification is being sent. The call's future, failed by the closing
    connection, is retrieved (asyncio logs no "Future exception was never retrieved"),
    and the event is sent after the reconnect."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    async with serving(csms201()) as server:
        station = station201(tmp_path / "st")
        async with running(station, server.url, online=True):
            for n in range(1, 4):
                await until(lambda: not station.security_log.pending(), "the events reported")
                answer = await server.call(call201.Reset(type="Immediate"))
                assert answer.status == "Accepted"
                await until(lambda: len(server.connections) > n, "the reconnect")  # noqa: B023
                await until(
                    lambda: resets_reported(server) == n,  # noqa: B023
                    "ResetOrReboot reported after the reconnect",
                )
            gc.collect()
            await ready_tasks_run(3)
    assert [e.state for e in station.security_log.entries()] == ["sent"] * 4
    assert "never retrieved" not in caplog.text


# -- 3. K09 GetChargingProfiles ----------------------------------------------------------


TX_DEFAULT = {
    "id": 11,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxDefaultProfile",
    "chargingProfileKind": "Relative",
    "chargingSchedule": [
        {
            "id": 1,
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
        }
    ],
}


async def test_TC_K_30_CS_get_charging_profiles_is_answered_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """K09: NoProfiles while none matches; with one installed, Accepted and a
    ReportChargingProfiles with the requestId and the profile (K09.FR.01/02); never an
    "OCPP protocol violation" (nor a CALLERROR) for the request."""
    caplog.set_level(logging.WARNING, logger="plugstream")
    async with serving(csms201()) as server:
        station = station201(tmp_path / "st")
        async with running(station, server.url, online=True):
            empty = await server.call(
                call201.GetChargingProfiles(request_id=1, evse_id=1, charging_profile={})
            )
            assert empty.status == "NoProfiles"
            installed = await server.call(
                call201.SetChargingProfile(evse_id=1, charging_profile=TX_DEFAULT)
            )
            assert installed.status == "Accepted"
            answer = await server.call(
                call201.GetChargingProfiles(
                    request_id=2,
                    evse_id=1,
                    charging_profile={"charging_profile_purpose": "TxDefaultProfile"},
                )
            )
            assert answer.status == "Accepted"
            (report,) = await until(lambda: server.actions("ReportChargingProfiles"))
    assert report["request_id"] == 2 and report["evse_id"] == 1
    assert report["charging_limit_source"] == "CSO"
    assert [p["id"] for p in report["charging_profile"]] == [11]
    assert not report.get("tbc")
    assert "protocol violation" not in caplog.text


async def test_an_action_the_station_does_not_implement_is_not_a_protocol_violation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What GetChargingProfiles got before K09 was built: a known action the station does
    not implement is answered NotSupported, and that is no "OCPP protocol violation"."""
    caplog.set_level(logging.INFO, logger="plugstream")
    async with serving(csms201()) as server:
        station = station201(tmp_path / "st")
        async with running(station, server.url, online=True):
            # the library hands a CALLERROR over as None
            assert await server.call(call201.GetTransactionStatus()) is None
    assert "protocol violation" not in caplog.text
    assert "answered NotSupported: GetTransactionStatus is not supported" in caplog.text


# -- 4. E02 / F02: Occupied when the EV connects, not at the remote start ----------------


async def test_TC_F_02_CS_remote_start_first_connector_occupied_only_when_the_ev_connects(
    tmp_path: Path,
) -> None:
    """RequestStartTransaction with no car: Accepted, and no StatusNotification Occupied
    (the connector is still Available: nothing is plugged in). The car connects: Occupied,
    and the transaction starts (triggerReason CablePluggedIn, remoteStartId)."""
    async with serving(csms201()) as server:
        station = station201(tmp_path / "st")
        async with running(station, server.url, online=True):
            await until(lambda: server.actions("StatusNotification"), "the boot status")
            answer = await server.call(
                call201.RequestStartTransaction(
                    id_token={"idToken": "TAG-F02", "type": "Central"}, remote_start_id=42
                )
            )
            assert answer.status == "Accepted"
            await until(lambda: station.connector.id_tag == "TAG-F02", "the remote start taken")
            await ready_tasks_run(5)
            statuses = [s["connector_status"] for s in server.actions("StatusNotification")]
            assert statuses == ["Available"]
            assert station.connector_status() == "Available"
            assert not server.actions("TransactionEvent")
            station.plug_in(Ev(CITY_CAR, soc=40.0))
            await until(lambda: len(server.actions("StatusNotification")) == 2, "the car's status")
            started = (await until(lambda: server.actions("TransactionEvent")))[0]
    statuses = [s["connector_status"] for s in server.actions("StatusNotification")]
    assert statuses == ["Available", "Occupied"]
    assert started["event_type"] == "Started"
    assert started["trigger_reason"] == "CablePluggedIn"
    assert started["transaction_info"]["remote_start_id"] == 42


# -- 5. 1.6 TriggerMessage StatusNotification: the requested connector only --------------


def csms16() -> Server:
    return Server("ocpp1.6", Csms16)


async def test_trigger_message_16_status_notification_for_the_requested_connector_only(
    tmp_path: Path,
) -> None:
    """1.6 §5.17: TriggerMessage(StatusNotification, connectorId 1) is answered with the
    StatusNotification of connector 1 only; without a connectorId, with one for the
    Charge Point (0) and one for each connector."""
    async with serving(csms16()) as server:
        station = station16(tmp_path / "st")
        async with running(station, server.url, online=True):
            await until(lambda: len(server.actions("StatusNotification")) == 2, "boot statuses")
            del server.log[:]
            one = await server.call(
                call16.TriggerMessage(requested_message="StatusNotification", connector_id=1)
            )
            assert one.status == "Accepted"
            await until(lambda: server.actions("StatusNotification"), "the triggered status")
            await ready_tasks_run(5)
            assert [s["connectorId"] for s in server.actions("StatusNotification")] == [1]
            del server.log[:]
            every = await server.call(call16.TriggerMessage(requested_message="StatusNotification"))
            assert every.status == "Accepted"
            await until(lambda: len(server.actions("StatusNotification")) == 2, "all statuses")
            await ready_tasks_run(5)
            assert [s["connectorId"] for s in server.actions("StatusNotification")] == [0, 1]


# -- 6. 1.6: a central system without the security extension -----------------------------


async def test_a_csms_without_the_security_extension_gets_one_security_event_never_again(
    tmp_path: Path,
) -> None:
    """The 1.6 central system answers the first SecurityEventNotification NotImplemented:
    the station sends it no other -- not for new events, not after a reconnect, not after
    a restart (remembered with the station's state) --, keeps every event in its own
    security log, and a fleet counts no error for it."""
    data_dir = tmp_path / "st"
    async with serving(csms16()) as server:
        station = station16(data_dir)
        sim = SimStation(station, "1.6")
        station.observer = sim.observe  # what a fleet counts
        async with running(station, server.url, online=True):
            await until(lambda: not station.security_log.pending(), "the first event settled")
            assert len(server.actions("SecurityEventNotification")) == 1
            station.security_event("InvalidFirmwareSignature", "a new event")
            # a reconnect (the central system restarts): still nothing for it
            await server.stop()
            await until(lambda: not station.online, "the station offline")
            await server.start()
            await until(lambda: station.online, "the station online again")
            station.security_event("SettingSystemTime", "one more")
            await until(lambda: not station.security_log.pending(), "the events settled")
            await server.call(call16.TriggerMessage(requested_message="Heartbeat"))
            await until(lambda: server.actions("Heartbeat"), "a round trip after the events")
        assert sim.errors == 0
        assert station.csms_without_security_events == {f"{server.url}/PS-F16"}
        # a restart of the station: it still remembers
        again = station16(data_dir)
        async with running(again, server.url, online=True):
            again.security_event("InvalidFirmwareSignature", "after the restart")
            await until(lambda: not again.security_log.pending(), "the restart's events settled")
    assert len(server.actions("SecurityEventNotification")) == 1
    entries = again.security_log.entries()
    assert [e.type for e in entries] == [
        "StartupOfTheDevice",
        "InvalidFirmwareSignature",
        "SettingSystemTime",
        "StartupOfTheDevice",
        "InvalidFirmwareSignature",
    ]
    assert {e.state for e in entries} == {"unsupported"}
