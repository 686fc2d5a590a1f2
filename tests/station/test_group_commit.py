"""Group commit of the fleet's shared journal, and a fleet station's state kept in it.

The promise of a real station holds for a simulated fleet: a transaction message is
durable before it is sent, and nothing sent is lost on ``kill -9``. The writes of one
event-loop iteration share one commit, which runs before any task woken by them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

from plugstream.station.clock import ManualClock
from plugstream.station.ev import CITY_CAR, Ev
from plugstream.station.journal import JournalDatabase, UnknownEntryError
from plugstream.station.runtime import STATE_FILE, SharedEncoderDeflate, small_deflate
from tests.station.test_wire_levers import RawCsms, station16, station201
from tests.support import until, until_advancing

ROOT = Path(__file__).resolve().parents[2]


def _meter(i: int) -> dict[str, Any]:
    return {"connectorId": 1, "meterValue": [{"timestamp": f"t{i}", "sampledValue": []}]}


def committed(path: Path) -> int:
    """Entries another connection sees: only committed ones."""
    con = sqlite3.connect(path)
    try:
        return int(con.execute("SELECT COUNT(*) FROM journal").fetchone()[0])
    finally:
        con.close()


@pytest.mark.unit
async def test_one_commit_per_loop_iteration_before_any_woken_task(tmp_path: Path) -> None:
    path = tmp_path / "fleet.sqlite"
    with JournalDatabase(path) as db:
        journals = [db.journal(f"CP-{i}") for i in range(20)]
        woken = asyncio.Event()
        seen_by_sender: list[int] = []

        async def sender() -> None:  # what a station's delivery loop does
            await woken.wait()
            seen_by_sender.append(committed(path))

        task = asyncio.create_task(sender())
        await asyncio.sleep(0)  # the sender waits
        before = db.commits
        for i, journal in enumerate(journals):  # twenty stations sample in one iteration
            journal.append("MeterValues", _meter(i))
        woken.set()
        assert db.in_batch and committed(path) == 0  # not durable yet: nothing sent yet
        await asyncio.wait_for(task, 5)
        assert seen_by_sender == [20]  # the commit ran before the woken task
        assert db.commits == before + 1  # one commit for twenty appends


@pytest.mark.unit
async def test_flush_commits_at_once_and_a_failed_write_rolls_back_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fleet.sqlite"
    with JournalDatabase(path) as db:
        a, b = db.journal("CP-A"), db.journal("CP-B")
        a.append("MeterValues", _meter(1))
        with pytest.raises(UnknownEntryError):  # refers to an entry that does not exist
            b.append("StopTransaction", {"transactionId": {"$ref_result": 999, "key": "x"}})
        b.append("MeterValues", _meter(2))
        a.flush()
        assert not db.in_batch and committed(path) == 2
        assert [len(a), len(b)] == [1, 1]


def delivered(path: Path) -> int:
    """Acknowledged entries another connection sees."""
    con = sqlite3.connect(path)
    try:
        return int(
            con.execute("SELECT COUNT(*) FROM journal WHERE state = 'delivered'").fetchone()[0]
        )
    finally:
        con.close()


@pytest.mark.unit
async def test_acknowledgements_wait_for_the_ack_delay_and_an_append_takes_them_along(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fleet.sqlite"
    with JournalDatabase(path, ack_delay=0.2) as db:
        journal = db.journal("CP-1")
        first = journal.append("MeterValues", _meter(1))
        journal.flush()
        journal.acknowledge(first, {})
        before = db.commits
        assert db.in_batch and delivered(path) == 0  # the answer waits for its commit
        await until(lambda: not db.in_batch, timeout=5)  # within the delay, by itself
        assert delivered(path) == 1 and db.commits == before + 1

        db.ack_delay = 3600.0  # an acknowledgement alone would now wait an hour
        second = journal.append("MeterValues", _meter(2))
        journal.flush()
        journal.acknowledge(second, {})
        journal.append("MeterValues", _meter(3))  # must not wait: commits soon, both
        await until(lambda: not db.in_batch, timeout=5)
        assert delivered(path) == 2 and committed(path) == 3


@pytest.mark.unit
def test_an_ack_delay_is_never_negative(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ack_delay"):
        JournalDatabase(tmp_path / "fleet.sqlite", ack_delay=-1)


@pytest.mark.unit
def test_without_an_event_loop_every_write_commits(tmp_path: Path) -> None:
    path = tmp_path / "fleet.sqlite"
    with JournalDatabase(path) as db:
        db.journal("CP-1").append("MeterValues", _meter(1))
        assert not db.in_batch and committed(path) == 1


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from plugstream.station.journal import JournalDatabase

    async def main() -> None:
        db = JournalDatabase(sys.argv[1])
        journals = [db.journal(f"CP-{i}") for i in range(10)]
        woken = asyncio.Event()
        sent: list[int] = []

        async def sender() -> None:
            while True:
                await woken.wait()
                woken.clear()
                for journal in journals:
                    journal.flush()  # what a station does before it sends
                    for entry in journal.pending():
                        journal.acknowledge(entry.seq, {})
                        print(entry.seq, flush=True)  # "sent"

        task = asyncio.create_task(sender())
        for round_ in range(100000):
            for journal in journals:
                journal.append("MeterValues", {"n": round_})
            woken.set()
            await asyncio.sleep(0)

    asyncio.run(main())
    """
)


@pytest.mark.socket
def test_nothing_sent_is_lost_on_kill_9(tmp_path: Path) -> None:
    """A process appends and "sends" from many stations until SIGKILL: every entry it
    printed as sent is in the file afterwards (and was appended before)."""
    path = tmp_path / "fleet.sqlite"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    sent: list[int] = []
    watchdog = threading.Timer(30.0, proc.kill)  # bounds the read loop in time
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            sent.append(int(line))
            if len(sent) >= 3000:
                break
    finally:
        watchdog.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert len(sent) >= 3000
    with JournalDatabase(path) as db:
        rows = dict(db._db.execute("SELECT seq, station FROM journal"))
    missing = [seq for seq in sent if seq not in rows]
    assert missing == []


# -- a fleet station's state in the shared database --------------------------------------


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.socket
async def test_register_recovered_from_the_journal_after_a_crash(
    tmp_path: Path, version: str
) -> None:
    """state_in_journal: no state.json per sample; after a crash the register (and the
    transaction) come back from the shared database, and the restarted station ends the
    transaction with PowerLoss at that register."""
    csms = RawCsms(version)
    await csms.start()
    data_dir = tmp_path / "s"
    make = station16 if version == "1.6" else station201
    db = JournalDatabase(tmp_path / "fleet.sqlite")
    clock = ManualClock()
    try:
        first = make(data_dir, journal=db.journal("S"), state_in_journal=True, clock=clock)
        task = asyncio.create_task(first.run(csms.url))
        await until(lambda: first.online, "online")
        first.plug_in(Ev(CITY_CAR, soc=30.0))
        if version == "1.6":
            assert await first.swipe("TAG-1")
            action = "MeterValues"
        else:
            assert await first.swipe("TAG-1")
            action = "TransactionEvent"
        # the car charges on as fast as the samples (interval 1 s) are sent
        await until_advancing(
            clock, lambda: len(csms.actions(action)) >= 3, f"3 x {action}", step=0.5
        )
        task.cancel()  # a crash: no clean close
        with contextlib.suppress(asyncio.CancelledError):
            await task
        saved = db.journal("S").saved_state()
        assert saved is not None and saved["transaction"] is not None
        assert not (data_dir / STATE_FILE).exists()  # no file written per sample
        db.close()  # the process dies; the file stays

        db = JournalDatabase(tmp_path / "fleet.sqlite")
        second = make(data_dir, journal=db.journal("S"), state_in_journal=True, clock=clock)
        assert str(second.hardware.energy_wh) == saved["energy_wh"]
        assert second.hardware.energy_wh > 0
        second.close()
        ended = [p for p in db.journal("S").pending() if p.action != "MeterValues"]
        last = ended[-1].payload
        if version == "1.6":
            assert last["reason"] == "PowerLoss"
            assert last["meterStop"] == int(second.hardware.energy_wh)
        else:
            assert last["eventType"] == "Ended"
            assert last["transactionInfo"]["stoppedReason"] == "PowerLoss"
    finally:
        db.close()
        await csms.stop()


@pytest.mark.unit
async def test_charging_station_without_tick_interval_wakes_for_samples_and_full(
    tmp_path: Path,
) -> None:
    """tick_interval None (a fleet): a charging car is looked at when a meter sample is
    due or when it may be full, not every 10 s; a car about to be full is looked at soon."""
    station = station16(
        tmp_path / "s", config={"MeterValueSampleInterval": "60"}, clock=ManualClock()
    )
    station.tick_interval = None
    try:
        station.plug_in(Ev(CITY_CAR, soc=30.0))
        station.start_transaction("TAG-1")
        station.tick()
        wake = station.next_tick_in()
        assert wake is not None and 55.0 <= wake <= 60.0  # the next sample, not 10 s
        station.unplug()
        station.plug_in(Ev(CITY_CAR, soc=99.99))
        station.start_transaction("TAG-1")
        station.tick()
        wake = station.next_tick_in()
        assert wake is not None and wake < 30.0  # about to be full (~22 s): SuspendedEV is due
    finally:
        station.close()


@pytest.mark.socket
async def test_small_deflate_is_negotiated_and_still_compresses(tmp_path: Path) -> None:
    """A fleet station offers permessage-deflate with a 4 KB window both ways (zlib
    state of a few KB per connection, not ~150 KB); the CSMS accepts it."""
    csms = RawCsms("1.6")
    await csms.start()
    station = station16(tmp_path / "s", compression=small_deflate())
    task = asyncio.create_task(station.run(csms.url))
    try:
        await until(lambda: station.online, "online")
        (deflate,) = station.websocket.protocol.extensions
        assert isinstance(deflate, PerMessageDeflate)
        assert (deflate.local_max_window_bits, deflate.remote_max_window_bits) == (12, 12)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        station.close()
        await csms.stop()


@pytest.mark.unit
def test_shared_deflate_encoder_compresses_each_message_on_its_own() -> None:
    """The fleet's connections share one zlib stream (no context takeover on our side):
    every message, whichever connection sends it and whatever was sent before, decodes
    with a fresh decoder, as the CSMS decodes it, and is what websockets would send."""
    first, second = (SharedEncoderDeflate(True, True, 12, 12, {"memLevel": 4}) for _ in "ab")
    websockets_own = PerMessageDeflate(True, True, 12, 12, {"memLevel": 4})
    rnd = random.Random(7)
    for i in range(300):
        text = json.dumps([2, str(i), "MeterValues", {"v": rnd.random(), "p": "Wh" * i}]).encode()
        frame = (first if i % 2 else second).encode(Frame(Opcode.TEXT, text))
        assert frame.rsv1  # compressed
        assert frame.data == websockets_own.encode(Frame(Opcode.TEXT, text)).data
        assert zlib.decompressobj(wbits=-12).decompress(frame.data + b"\x00\x00\xff\xff") == text


@pytest.mark.socket
async def test_fleet_deflate_without_context_takeover_reaches_the_csms(tmp_path: Path) -> None:
    """A fleet station's messages, compressed by the process's one encoder, arrive whole
    at a CSMS that decodes each message on its own."""
    from plugstream.station.runtime import SharedEncoderDeflate

    csms = RawCsms("1.6")
    await csms.start()
    station = station16(tmp_path / "s", compression=small_deflate(no_context_takeover=True))
    task = asyncio.create_task(station.run(csms.url))
    try:
        await until(lambda: station.online, "online")
        (deflate,) = station.websocket.protocol.extensions
        assert isinstance(deflate, SharedEncoderDeflate)
        await station.call("Heartbeat", {})
        assert csms.actions("BootNotification") and csms.actions("Heartbeat")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        station.close()
        await csms.stop()


# -- a fleet station's direct delivery -------------------------------------------------


class _UnsteadyCsms(RawCsms):
    """A RawCsms that drops the connection at one meter sample (the ``drop_at``-th),
    unanswered, and answers another (the ``fail_at``-th) with a CALLERROR; it notes
    which of the samples it received were not yet durable in the fleet's database."""

    def __init__(self, version: str, database: Path, *, drop_at: int, fail_at: int) -> None:
        super().__init__(version)
        self.database = database
        self.fail_at, self.drop_at = fail_at, drop_at
        self.samples: list[str] = []  # the meter samples' timestamps, as received
        self.not_durable: list[str] = []

    def sample_action(self) -> str:
        return "MeterValues" if self.version == "1.6" else "TransactionEvent"

    async def _handler(self, ws: Any) -> None:
        self.ws = ws
        with contextlib.suppress(websockets.ConnectionClosed):
            async for text in ws:
                _, mid, action, payload = json.loads(text)
                self.calls.append((mid, action, payload))
                if action == self.sample_action() and "meterValue" in payload:
                    stamp = payload["meterValue"][0]["timestamp"]
                    self.samples.append(stamp)
                    if not _committed_with(self.database, stamp):
                        self.not_durable.append(stamp)
                    if len(self.samples) == self.drop_at:
                        await ws.close()
                        return
                    if len(self.samples) == self.fail_at:
                        await ws.send(json.dumps([4, mid, "InternalError", "try again", {}]))
                        continue
                await ws.send(json.dumps([3, mid, self.answer(action, payload)]))


def _committed_with(path: Path, text: str) -> bool:
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT payload FROM journal").fetchall()
    finally:
        con.close()
    return any(text in row[0] for row in rows)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.socket
async def test_fleet_samples_go_out_after_their_commit_in_order_and_are_retried(
    tmp_path: Path, version: str
) -> None:
    """A fleet station sends each meter sample straight after the group commit that made
    it durable. A sample the CSMS fails (CALLERROR) is sent again after the retry
    interval, in its place; one lost with the connection is sent again on the next one,
    not counted as a failure; every sample arrives, none twice otherwise, in order."""
    path = tmp_path / "fleet.sqlite"
    csms = _UnsteadyCsms(version, path, drop_at=3, fail_at=6)
    await csms.start()
    db = JournalDatabase(path)
    clock = ManualClock()
    make = station16 if version == "1.6" else station201
    station = make(tmp_path / "s", journal=db.journal("S"), state_in_journal=True, clock=clock)
    task = asyncio.create_task(station.run(csms.url))
    try:
        await until(lambda: station.online, "online")
        station.plug_in(Ev(CITY_CAR, soc=30.0))
        assert await station.swipe("TAG-1")
        await until_advancing(clock, lambda: len(set(csms.samples)) >= 9, "9 samples", step=0.5)
        await until(lambda: station.settled, "the journal delivered")
        stamps = csms.samples
        assert stamps[2] == stamps[3]  # the one lost with the connection, on the next one
        assert stamps[5] == stamps[6]  # the failed sample, again, before any later one
        rest = stamps[:3] + stamps[4:6] + stamps[7:]
        assert rest == sorted(rest) and len(set(rest)) == len(rest)  # in order, once each
        assert csms.not_durable == []  # nothing went out before it was committed
        assert db.journal("S").undeliverable() == []
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        station.close()
        db.close()
        await csms.stop()
