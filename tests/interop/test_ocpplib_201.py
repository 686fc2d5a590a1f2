"""OCPP 2.0.1 journeys: ``plugstream station run --ocpp 2.0.1`` against the independent
``ocpp``-library CSMS, named after the OCTT test cases (part 6) they follow."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.interop.ocpplib_csms import OcppLibCsms, Received
from tests.interop.station_process import StationProcess
from tests.support import HEARTBEATS_TIMED, assert_every, until

pytestmark = pytest.mark.socket

TAG = "04A2B3C4"
HEARTBEAT_S = 2
REGISTER = "Energy.Active.Import.Register"
FAST_RECONNECT = {
    "OCPPCommCtrlr.RetryBackOffWaitMinimum": "1",
    "OCPPCommCtrlr.RetryBackOffRandomRange": "0",
    "OCPPCommCtrlr.RetryBackOffRepeatTimes": "0",
}

Start = Callable[[str], Awaitable[StationProcess]]


@pytest.fixture
async def csms() -> AsyncIterator[OcppLibCsms]:
    server = OcppLibCsms(heartbeat_interval=HEARTBEAT_S, tags={TAG: "Accepted"})
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def stations() -> AsyncIterator[list[StationProcess]]:
    made: list[StationProcess] = []
    try:
        yield made
    finally:
        for station in made:
            await station.close()


@pytest.fixture
def start(csms: OcppLibCsms, stations: list[StationProcess], tmp_path: Path) -> Start:
    async def _start(station_id: str) -> StationProcess:
        station = StationProcess(station_id, csms.url, tmp_path / station_id, ocpp="2.0.1")
        stations.append(station)
        await station.start()
        return station

    return _start


async def booted(csms: OcppLibCsms, station_id: str, boots: int = 1) -> None:
    """Wait until the station has booted ``boots`` times and then reported its connector."""

    def check(rs: list[Received]) -> bool:
        actions = [r.action for r in rs]
        if actions.count("BootNotification") < boots:
            return False
        last = len(actions) - 1 - actions[::-1].index("BootNotification")
        return any(r.action == "StatusNotification" for r in rs[last:])

    await csms.wait_for(station_id, check, what=f"boot #{boots} and StatusNotification")


async def set_variables(csms: OcppLibCsms, station_id: str, values: dict[str, str]) -> None:
    results = await csms.set_variables(station_id, values)
    assert [r["attributeStatus"] for r in results] == ["Accepted"] * len(values), results


def registers(meter_values: list[dict[str, Any]]) -> list[tuple[datetime, str, Decimal]]:
    """(timestamp, context, Wh) of every energy register sample, in order."""
    out: list[tuple[datetime, str, Decimal]] = []
    for value in meter_values:
        at = datetime.fromisoformat(value["timestamp"])
        for sample in value["sampledValue"]:
            if sample.get("measurand", REGISTER) == REGISTER:
                wh = Decimal(str(sample["value"]))
                unit = sample.get("unitOfMeasure", {})
                multiplier = int(unit.get("multiplier", 0)) + (
                    3 if unit.get("unit") == "kWh" else 0
                )
                out.append((at, sample.get("context", "Sample.Periodic"), wh.scaleb(multiplier)))
    return out


def transactions(messages: list[Received]) -> list[list[Received]]:
    """The TransactionEvents, one list per transactionId, in order of their first event."""
    by_id: dict[str, list[Received]] = {}
    for r in messages:
        if r.action == "TransactionEvent":
            by_id.setdefault(r.payload["transactionInfo"]["transactionId"], []).append(r)
    return list(by_id.values())


def check_transaction(events: list[Received]) -> tuple[Decimal, Decimal]:
    """seqNo 0, 1, 2... without gaps or repeats; Started, Updated..., Ended; a register that
    never goes backwards; the (first, last) register reading."""
    assert [e.payload["seqNo"] for e in events] == list(range(len(events))), [
        e.payload["seqNo"] for e in events
    ]
    kinds = [e.payload["eventType"] for e in events]
    assert kinds[0] == "Started" and kinds[-1] == "Ended", kinds
    assert set(kinds[1:-1]) <= {"Updated"}, kinds
    # the Ended event repeats the Transaction.Begin reading: order by the readings' time
    timed = sorted(
        (at, wh) for e in events for at, _, wh in registers(e.payload.get("meterValue", []))
    )
    readings = [wh for _, wh in timed]
    assert readings, "no energy register in any TransactionEvent"
    assert readings == sorted(readings), f"the register went backwards: {timed}"
    return readings[0], readings[-1]


def no_duplicates(messages: list[Received]) -> None:
    keys = [
        (r.payload["transactionInfo"]["transactionId"], r.payload["seqNo"])
        for r in messages
        if r.action == "TransactionEvent"
    ]
    assert len(keys) == len(set(keys)), f"a TransactionEvent arrived twice: {keys}"


# -- 1. boot ---------------------------------------------------------------------------------


async def test_TC_B_01_CS_cold_boot_accepted_available_and_heartbeat(
    csms: OcppLibCsms, start: Start
) -> None:
    station = await start("CP2B")
    await booted(csms, "CP2B")
    boot = csms.messages("CP2B", "BootNotification")[0]
    assert boot.payload["reason"] == "PowerUp"
    assert boot.payload["chargingStation"]["model"] == "PlugStream 22"
    assert boot.answer is not None and boot.answer["status"] == "Accepted"
    (status, *_) = csms.payloads("CP2B", "StatusNotification")
    assert status["connectorStatus"] == "Available"
    assert (status["evseId"], status["connectorId"]) == (1, 1)
    # the first Heartbeat comes one interval after the last message before it, the
    # next ones one interval after each other
    await csms.wait_action("CP2B", "Heartbeat", HEARTBEATS_TIMED)
    messages = csms.messages("CP2B")
    first = next(i for i, r in enumerate(messages) if r.action == "Heartbeat")
    timed = messages[first - 1 : first + HEARTBEATS_TIMED]
    assert [r.action for r in timed[1:]] == ["Heartbeat"] * HEARTBEATS_TIMED
    assert_every([r.at for r in timed], HEARTBEAT_S, "Heartbeat")
    results = await csms.get_variables("CP2B", ["OCPPCommCtrlr.HeartbeatInterval"])
    assert results[0]["attributeValue"] == str(HEARTBEAT_S)
    assert "connected" in await station.status()
    assert csms.refused() == []


# -- 2. remote start and stop ----------------------------------------------------------------


async def test_TC_F_01_CS_remote_start_cable_plugin_first_then_remote_stop(
    csms: OcppLibCsms, start: Start
) -> None:
    station = await start("CP2R")
    await booted(csms, "CP2R")
    await set_variables(csms, "CP2R", {"SampledDataCtrlr.TxUpdatedInterval": "1"})
    await station.plug()
    assert await csms.request_start("CP2R", TAG, remote_start_id=77) == {"status": "Accepted"}
    started = await csms.wait_for(
        "CP2R",
        lambda rs: any(r.action == "TransactionEvent" for r in rs),
        what="TransactionEvent Started",
    )
    event = next(r for r in started if r.action == "TransactionEvent").payload
    assert event["eventType"] == "Started"
    assert event["triggerReason"] == "RemoteStart"
    assert event["transactionInfo"]["remoteStartId"] == 77  # F01.FR.25... the CSMS can match it
    assert event["idToken"]["idToken"] == TAG
    assert "offline" not in event or event["offline"] is False
    transaction_id = event["transactionInfo"]["transactionId"]
    await csms.wait_for(
        "CP2R",
        lambda rs: sum(r.payload.get("eventType") == "Updated" for r in rs) >= 2,
        what="2 x TransactionEvent Updated",
    )
    assert await csms.request_stop("CP2R", transaction_id) == {"status": "Accepted"}
    await csms.wait_for(
        "CP2R",
        lambda rs: any(r.payload.get("eventType") == "Ended" for r in rs),
        what="TransactionEvent Ended",
    )
    (events,) = transactions(csms.messages("CP2R"))
    updated = [e.payload for e in events if e.payload["eventType"] == "Updated"]
    assert all(u["triggerReason"] == "MeterValuePeriodic" for u in updated)
    ended = events[-1].payload
    assert ended["triggerReason"] == "RemoteStop"
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"
    begin, end = check_transaction(events)
    assert end > begin, "no energy was delivered"
    contexts = [c for _, c, _ in registers(ended.get("meterValue", []))]
    assert "Transaction.End" in contexts, ended
    await station.wait_status("transaction none")
    assert csms.refused() == []


# -- 3. RFID session, unplug ends it ---------------------------------------------------------


async def test_TC_E_03_CS_local_start_cable_first_and_TC_E_20_CS_ev_side_disconnect(
    csms: OcppLibCsms, start: Start
) -> None:
    station = await start("CP2S")
    await booted(csms, "CP2S")
    await set_variables(csms, "CP2S", {"SampledDataCtrlr.TxUpdatedInterval": "1"})
    await station.plug()
    assert not await station.swipe("DEADBEEF")
    assert csms.messages("CP2S", "TransactionEvent") == []
    assert await station.swipe(TAG)
    authorizes = csms.messages("CP2S", "Authorize")
    assert [a.payload["idToken"]["idToken"] for a in authorizes] == ["DEADBEEF", TAG]
    assert [a.answer and a.answer["idTokenInfo"]["status"] for a in authorizes] == [
        "Invalid",
        "Accepted",
    ]
    await csms.wait_for(
        "CP2S",
        lambda rs: sum(r.payload.get("eventType") == "Updated" for r in rs) >= 1,
        what="TransactionEvent Updated",
    )
    await station.unplug()
    await csms.wait_for(
        "CP2S",
        lambda rs: any(r.payload.get("eventType") == "Ended" for r in rs),
        what="TransactionEvent Ended",
    )
    (events,) = transactions(csms.messages("CP2S"))
    assert events[0].payload["idToken"]["idToken"] == TAG
    assert events[-1].payload["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    begin, end = check_transaction(events)
    assert end > begin
    await csms.wait_for(
        "CP2S",
        lambda rs: (
            rs[-1].action != "TransactionEvent"
            and any(
                r.action == "StatusNotification" and r.payload["connectorStatus"] == "Available"
                for r in rs[rs.index(events[0]) :]
            )
        ),
        what="StatusNotification Available after unplug",
    )
    assert csms.refused() == []


# -- 4. device model -------------------------------------------------------------------------


async def test_TC_B_09_B_39_B_36_B_35_set_variables_and_get_variables_survive_a_restart(
    csms: OcppLibCsms, start: Start
) -> None:
    station = await start("CP2C")
    await booted(csms, "CP2C")
    results = await csms.set_variables(
        "CP2C",
        {
            "SampledDataCtrlr.TxUpdatedInterval": "7",  # TC_B_09_CS
            "SecurityCtrlr.Identity": "someone-else",  # TC_B_39_CS: read-only
            "OCPPCommCtrlr.NoSuchVariable": "1",  # TC_B_36_CS
            "NoSuchCtrlr.Enabled": "true",  # TC_B_35_CS
        },
    )
    assert [r["attributeStatus"] for r in results] == [
        "Accepted",
        "Rejected",
        "UnknownVariable",
        "UnknownComponent",
    ], results
    got = await csms.get_variables(
        "CP2C", ["SampledDataCtrlr.TxUpdatedInterval", "SecurityCtrlr.Identity"]
    )
    assert [(r["attributeStatus"], r.get("attributeValue")) for r in got] == [
        ("Accepted", "7"),
        ("Accepted", "CP2C"),
    ]
    assert await station.quit() == 0
    await station.start()  # same --data-dir
    await booted(csms, "CP2C", boots=2)
    got = await csms.get_variables("CP2C", ["SampledDataCtrlr.TxUpdatedInterval"])
    assert got[0]["attributeValue"] == "7"
    assert csms.refused() == []


# -- 5. offline: two transactions, a kill -9, exactly-once delivery -------------------------


async def _prepare_offline(csms: OcppLibCsms, start: Start, station_id: str) -> StationProcess:
    station = await start(station_id)
    await booted(csms, station_id)
    await set_variables(
        csms,
        station_id,
        {
            "SampledDataCtrlr.TxUpdatedInterval": "1",
            "AuthCtrlr.LocalAuthorizeOffline": "true",
            **FAST_RECONNECT,
        },
    )
    assert await csms.send_local_list_201(station_id, 1, {TAG: "Accepted"}) == {
        "status": "Accepted"
    }
    await csms.stop()
    await station.wait_status("offline")
    return station


async def _offline_session(station: StationProcess) -> None:
    await station.plug()
    assert await station.swipe(TAG), "the local list's token was not accepted offline"
    await station.wait_status("transaction ")
    await station.wait_meter_sample()  # energy delivered, an Updated event in the journal
    await station.unplug()


async def _all_delivered(csms: OcppLibCsms, station: StationProcess) -> None:
    """Quit the station cleanly: it empties its journal before it exits (each entry
    answered, so recorded here), and once its connection is gone nothing more can come:
    whatever it would send twice is in :attr:`OcppLibCsms.received` now."""
    assert await station.quit() == 0
    await until(lambda: station.station_id not in csms.connections, "the station gone")


def _check_offline_delivery(
    csms: OcppLibCsms, station_id: str, stopped: list[str]
) -> list[tuple[Decimal, Decimal]]:
    messages = csms.messages(station_id)
    no_duplicates(messages)
    found = transactions(messages)
    assert [t[-1].payload["transactionInfo"].get("stoppedReason") for t in found] == stopped
    for events in found:
        flags = [e.payload.get("offline", False) for e in events]
        assert all(flags), f"events generated offline must say offline=true: {flags}"
    bounds = [check_transaction(t) for t in found]
    flat = [b for pair in bounds for b in pair]
    assert flat == sorted(flat), f"the energy register went backwards: {bounds}"
    assert csms.refused() == []
    return bounds


async def test_TC_E_43_CS_offline_transactions_with_kill_9_between_them_arrive_exactly_once(
    csms: OcppLibCsms, start: Start
) -> None:
    station = await _prepare_offline(csms, start, "CP2O")
    await _offline_session(station)
    energy = await station.energy_wh()
    await station.kill()
    await station.start()  # same --data-dir, the CSMS is still away
    assert await station.energy_wh() >= energy, "the energy register restarted lower"
    await _offline_session(station)
    await csms.start()  # back on the same port
    await csms.wait_for(
        "CP2O",
        lambda rs: sum(r.payload.get("eventType") == "Ended" for r in rs) >= 2,
        what="2 x TransactionEvent Ended",
    )
    await _all_delivered(csms, station)
    bounds = _check_offline_delivery(csms, "CP2O", ["EVDisconnected", "EVDisconnected"])
    assert all(end > begin for begin, end in bounds)


async def test_offline_kill_9_in_the_middle_of_a_transaction_ends_it_with_power_loss(
    csms: OcppLibCsms, start: Start
) -> None:
    station = await _prepare_offline(csms, start, "CP2K")
    await _offline_session(station)
    await station.plug()
    assert await station.swipe(TAG)
    await station.wait_status("transaction ")
    await station.wait_meter_sample()  # so the register persisted is past the Begin reading
    energy = await station.energy_wh()
    await station.kill()  # mid-transaction
    await csms.start()
    await station.start()
    await csms.wait_for(
        "CP2K",
        lambda rs: sum(r.payload.get("eventType") == "Ended" for r in rs) >= 2,
        what="2 x TransactionEvent Ended",
    )
    await station.wait_status("transaction none", "connected")
    await _all_delivered(csms, station)
    bounds = _check_offline_delivery(csms, "CP2K", ["EVDisconnected", "PowerLoss"])
    begin, end = bounds[1]
    assert begin < end <= energy + 5
