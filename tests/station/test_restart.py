"""Nothing is lost across a restart: power loss (``kill -9``) or a clean stop.

A "crash" in process stops the station's tasks and drops it without :meth:`close`
(which is what marks a clean stop); the end-to-end case kills ``plugstream station
run`` with SIGKILL and starts it again on the same data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from plugstream.net.accounting import ByteCounter
from plugstream.station.clock import ManualClock
from plugstream.station.ev import CITY_CAR, Ev
from plugstream.station.runtime import STATE_FILE
from plugstream.station.station16 import Station16
from plugstream.station.station201 import Station201
from tests.station.test_wire_levers import RawCsms, station16, station201
from tests.support import until, until_advancing

pytestmark = pytest.mark.socket

TAG = "TAG-1"
#: station time per look while a test waits for meter samples (interval 1 s): the car
#: charges on as fast as the samples are sent, however loaded the machine
SAMPLE_STEP_S = 0.5


async def crash(station: Station16 | Station201, task: asyncio.Task[None]) -> None:
    """Stop like a power loss: no clean close, only the file handles go."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    station.journal.close()


def persisted_energy(data_dir: Path) -> Decimal:
    return Decimal(json.loads((data_dir / STATE_FILE).read_text())["energy_wh"])


@pytest.mark.parametrize("sync_state", [True, False], ids=["fsync", "no-fsync"])
async def test_TC_E_power_loss_stop_transaction_16(tmp_path: Path, sync_state: bool) -> None:
    """1.6: StopTransaction reason PowerLoss, meterStop = the last persisted register, and
    the register goes on from there (state.json fsynced, or only replaced: a fleet)."""
    csms = RawCsms("1.6")
    await csms.start()
    data_dir = tmp_path / "s"
    try:
        clock = ManualClock()
        first = station16(data_dir, sync_state=sync_state, clock=clock)
        task = asyncio.create_task(first.run(csms.url))
        await until(lambda: first.online, "online")
        first.plug_in(Ev(CITY_CAR, soc=30.0))
        assert await first.swipe(TAG)
        await until_advancing(
            clock,
            lambda: len(csms.actions("MeterValues")) >= 2,
            "2 MeterValues",
            step=SAMPLE_STEP_S,
        )
        await crash(first, task)
        energy = persisted_energy(data_dir)
        assert energy > 0

        second = station16(data_dir, clock=clock)
        assert second.hardware.energy_wh == energy  # monotonic across the restart
        async with asyncio.timeout(10):
            task = asyncio.create_task(second.run(csms.url))
            try:
                stop = (await until(lambda: csms.actions("StopTransaction"), "StopTransaction"))[0]
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                second.close()
        assert stop["reason"] == "PowerLoss"
        assert stop["transactionId"] == csms.next_tx == 101  # the one StartTransaction got
        assert stop["meterStop"] == int(energy)
        assert stop["meterStop"] >= csms.actions("StartTransaction")[0]["meterStart"]
        assert len(csms.actions("BootNotification")) == 2  # a restart boots again
    finally:
        await csms.stop()


async def test_TC_E_power_loss_before_start_answered_16(tmp_path: Path) -> None:
    """The StartTransaction was never answered: after the restart it is delivered and the
    StopTransaction carries the transactionId the Central System gave it."""
    csms = RawCsms("1.6")
    data_dir = tmp_path / "s"
    clock = ManualClock()
    first = station16(data_dir, config={"AllowOfflineTxForUnknownId": "true"}, clock=clock)
    task = asyncio.create_task(first.run("ws://127.0.0.1:9/ocpp"))  # nobody listens
    first.plug_in(Ev(CITY_CAR, soc=30.0))
    assert await first.swipe(TAG)
    await until_advancing(  # StartTransaction and a MeterValues
        clock, lambda: len(first.journal) >= 2, "2 journal entries", step=SAMPLE_STEP_S
    )
    await crash(first, task)
    energy = persisted_energy(data_dir)

    await csms.start()
    try:
        second = station16(data_dir, clock=clock)
        task = asyncio.create_task(second.run(csms.url))
        try:
            await until(lambda: csms.actions("StopTransaction"), "StopTransaction")
            await until(lambda: second.journal.counts().pending == 0, "the journal delivered")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            second.close()
        started = csms.actions("StartTransaction")
        assert len(started) == 1
        stop = csms.actions("StopTransaction")[0]
        assert stop["transactionId"] == csms.next_tx
        assert (stop["reason"], stop["meterStop"]) == ("PowerLoss", int(energy))
        assert all(m["transactionId"] == csms.next_tx for m in csms.actions("MeterValues"))
    finally:
        await csms.stop()


async def test_TC_E_power_loss_transaction_event_ended_201(tmp_path: Path) -> None:
    """2.0.1: TransactionEvent Ended, stoppedReason PowerLoss, triggerReason
    AbnormalCondition, offline, the seqNo after the last one, the persisted register."""
    csms = RawCsms("2.0.1")
    await csms.start()
    data_dir = tmp_path / "s"
    try:
        clock = ManualClock()
        first = station201(data_dir, clock=clock)
        task = asyncio.create_task(first.run(csms.url))
        await until(lambda: first.online, "online")
        first.plug_in(Ev(CITY_CAR, soc=30.0))
        assert await first.swipe(TAG)
        await until_advancing(
            clock,
            lambda: len(csms.actions("TransactionEvent")) >= 3,
            "3 TransactionEvents",
            step=SAMPLE_STEP_S,
        )
        await crash(first, task)
        energy = persisted_energy(data_dir)
        sent = csms.actions("TransactionEvent")

        second = station201(data_dir, clock=clock)
        assert second.hardware.energy_wh == energy
        task = asyncio.create_task(second.run(csms.url))
        try:
            ended = await until(
                lambda: [e for e in csms.actions("TransactionEvent") if e["eventType"] == "Ended"],
                "TransactionEvent Ended",
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            second.close()
        events = csms.actions("TransactionEvent")
        end = ended[0]
        tx_id = sent[0]["transactionInfo"]["transactionId"]
        assert end["transactionInfo"]["transactionId"] == tx_id
        assert end["transactionInfo"]["stoppedReason"] == "PowerLoss"
        assert end["triggerReason"] == "AbnormalCondition"
        assert end["offline"] is True
        assert end["seqNo"] == max(e["seqNo"] for e in events if e is not end) + 1
        # no gap (an event in flight at the crash may arrive twice: at least once)
        numbers = sorted({e["seqNo"] for e in events})
        assert numbers == list(range(len(numbers)))
        value = end["meterValue"][0]["sampledValue"][0]
        assert Decimal(str(value["value"])) == energy
        assert value["context"] == "Transaction.End"
    finally:
        await csms.stop()


async def test_clean_stop_ends_with_reboot_201(tmp_path: Path) -> None:
    csms = RawCsms("2.0.1")
    await csms.start()
    data_dir = tmp_path / "s"
    try:
        first = station201(data_dir)
        task = asyncio.create_task(first.run(csms.url))
        await until(lambda: first.online, "online")
        first.plug_in(Ev(CITY_CAR, soc=30.0))
        assert await first.swipe(TAG)
        await until(lambda: csms.actions("TransactionEvent"), "TransactionEvent")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        first.close()  # a clean stop

        second = station201(data_dir)
        task = asyncio.create_task(second.run(csms.url))
        try:
            ended = await until(
                lambda: [e for e in csms.actions("TransactionEvent") if e["eventType"] == "Ended"],
                "TransactionEvent Ended",
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            second.close()
        assert ended[0]["transactionInfo"]["stoppedReason"] == "Reboot"
    finally:
        await csms.stop()


async def test_profiles_and_scheduled_availability_survive_16(tmp_path: Path) -> None:
    """SetChargingProfile and a Scheduled ChangeAvailability outlive a power loss; after
    the boot the station reports the connector Unavailable."""
    csms = RawCsms("1.6")
    await csms.start()
    data_dir = tmp_path / "s"
    profile = {
        "chargingProfileId": 7,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "startSchedule": "2020-01-01T00:00:00Z",
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}],
        },
    }
    try:
        first = station16(data_dir)
        task = asyncio.create_task(first.run(csms.url))
        await until(lambda: first.online, "online")
        answer = await csms.call(
            "SetChargingProfile", {"connectorId": 0, "csChargingProfiles": profile}
        )
        assert answer == {"status": "Accepted"}
        first.plug_in(Ev(CITY_CAR, soc=30.0))
        assert await first.swipe(TAG)
        answer = await csms.call("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
        assert answer == {"status": "Scheduled"}
        await crash(first, task)

        csms.calls.clear()
        second = station16(data_dir)
        task = asyncio.create_task(second.run(csms.url))
        try:
            await until(lambda: second.online, "online again")
            statuses = await until(
                lambda: [s for s in csms.actions("StatusNotification") if s["connectorId"] == 1],
                "connector 1's status",
            )
            assert statuses[0]["status"] == "Unavailable"
            schedule = await csms.call("GetCompositeSchedule", {"connectorId": 1, "duration": 60})
            assert schedule["status"] == "Accepted"
            periods = schedule["chargingSchedule"]["chargingSchedulePeriod"]
            assert periods[0]["limit"] == 10.0
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            second.close()
    finally:
        await csms.stop()


async def test_kill_9_station_run_then_restart_16(tmp_path: Path) -> None:
    """`plugstream station run` killed with SIGKILL mid-session and run again: the
    Central System gets StopTransaction PowerLoss with the persisted meterStop."""
    csms = RawCsms("1.6")
    await csms.start()
    data_dir = tmp_path / "station"
    args = [
        "-m", "plugstream.cli", "station", "run", "--id", "PS-KILL", "--model", "7",
        "--csms", csms.url, "--ocpp", "1.6", "--data-dir", str(data_dir),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs: list[asyncio.subprocess.Process] = []

    async def start() -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )
        procs.append(proc)
        return proc

    def send(proc: asyncio.subprocess.Process, line: str) -> None:
        assert proc.stdin is not None
        proc.stdin.write(line.encode() + b"\n")

    try:
        proc = await start()
        await until(
            lambda: csms.ws is not None and csms.actions("StatusNotification"), "the station up"
        )
        answer = await csms.call(
            "ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "1"}
        )
        assert answer == {"status": "Accepted"}
        send(proc, "plug city")
        send(proc, f"swipe {TAG}")
        await until(lambda: len(csms.actions("MeterValues")) >= 2, "2 MeterValues")
        proc.kill()  # SIGKILL: no clean stop
        await asyncio.wait_for(proc.wait(), 10)
        energy = persisted_energy(data_dir)
        assert energy > 0

        proc = await start()
        stop = (await until(lambda: csms.actions("StopTransaction"), "StopTransaction"))[0]
        assert stop["reason"] == "PowerLoss"
        assert stop["meterStop"] == int(energy)
        assert stop["transactionId"] == csms.next_tx
        send(proc, "quit")
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        # the charge cycle cut by the kill (on file since plug-in) was closed on restart
        traffic = ByteCounter.load(data_dir)
        cycles = traffic.cycles()
        assert len(cycles) == 1 and all(c.ended is not None for c in cycles.values())
        assert traffic.totals()[0] > 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await csms.stop()
