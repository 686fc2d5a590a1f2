from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from plugstream.station.journal import (
    EntryState,
    Journal,
    JournalCounts,
    JournalDatabase,
    UnknownEntryError,
)
from plugstream.station.runtime import compact
from tests.support import read_until


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.sqlite") as j:
        yield j


def _meter(i: int) -> dict[str, object]:
    return {"connectorId": 1, "meterValue": [{"timestamp": f"t{i}", "sampledValue": []}]}


@pytest.mark.unit
def test_wal_and_synchronous_full(journal: Journal) -> None:
    assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


@pytest.mark.unit
def test_order_preserved(journal: Journal) -> None:
    seqs = [journal.append("MeterValues", _meter(i)) for i in range(20)]
    assert seqs == sorted(seqs)
    assert [e.seq for e in journal.pending()] == seqs
    assert [e.payload for e in journal.pending()] == [_meter(i) for i in range(20)]
    delivered = []
    while (entry := journal.next_due(now=0)) is not None:
        delivered.append(entry.seq)
        journal.acknowledge(entry.seq, {})
    assert delivered == seqs
    assert journal.counts() == JournalCounts(pending=0, delivered=20, undeliverable=0)
    assert len(journal) == 0


@pytest.mark.unit
def test_reopen_yields_pending_in_order(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        seqs = [j.append("MeterValues", _meter(i)) for i in range(5)]
        j.acknowledge(seqs[0], {})
        j.failed_attempt(seqs[1], 100.0, attempts_max=3, retry_interval=60)
    with Journal(path) as j:
        pending = j.pending()
        assert [e.seq for e in pending] == seqs[1:]
        assert pending[0].attempts == 1
        assert pending[0].next_attempt_at == 160.0
        # seq numbers are never reused after reopening
        assert j.append("MeterValues", _meter(9)) == seqs[-1] + 1


@pytest.mark.unit
def test_retry_intervals_follow_16_rule(journal: Journal) -> None:
    """1.6 §3.7.1 example: attempts 3, interval 60 -> wait 60, then 120, then discard."""
    seq = journal.append("StopTransaction", {"transactionId": 1, "meterStop": 10})
    now = 1000.0
    assert journal.next_due(now) is not None

    assert journal.failed_attempt(seq, now, attempts_max=3, retry_interval=60) == now + 60
    assert journal.next_due(now + 59.9) is None
    entry = journal.next_due(now + 60)
    assert entry is not None and entry.seq == seq and entry.attempts == 1

    now += 60
    assert journal.failed_attempt(seq, now, attempts_max=3, retry_interval=60) == now + 120
    assert journal.next_due(now + 119) is None
    assert journal.next_due(now + 120) is not None

    now += 120
    assert journal.failed_attempt(seq, now, attempts_max=3, retry_interval=60) is None
    assert journal.next_due(now + 10_000) is None
    assert journal.pending() == []
    [dropped] = journal.undeliverable()
    assert dropped.seq == seq and dropped.attempts == 3
    assert dropped.state is EntryState.UNDELIVERABLE
    assert journal.counts() == JournalCounts(pending=0, delivered=0, undeliverable=1)


@pytest.mark.unit
def test_drop_after_attempts_max_continues_with_next(journal: Journal) -> None:
    first = journal.append("MeterValues", _meter(0))
    second = journal.append("MeterValues", _meter(1))
    # head waiting for its retry holds back the next one (chronological order)
    journal.failed_attempt(first, 0, attempts_max=2, retry_interval=30)
    assert journal.next_due(10) is None
    entry = journal.next_due(30)
    assert entry is not None and entry.seq == first
    assert journal.failed_attempt(first, 30, attempts_max=2, retry_interval=30) is None
    entry = journal.next_due(30)
    assert entry is not None and entry.seq == second
    with pytest.raises(UnknownEntryError):
        journal.acknowledge(first, {})


@pytest.mark.unit
def test_attempts_max_below_one_discards_at_first_failure(journal: Journal) -> None:
    seq = journal.append("MeterValues", _meter(0))
    assert journal.failed_attempt(seq, 0, attempts_max=0, retry_interval=30) is None
    assert journal.pending() == []


@pytest.mark.unit
def test_result_reference_resolved_on_acknowledge(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        start = j.append("StartTransaction", {"connectorId": 1, "idTag": "ABC", "meterStart": 0})
        ref = {"$ref_result": start, "key": "transactionId", "default": -1}
        meter = j.append("MeterValues", {"connectorId": 1, "transactionId": ref, "meterValue": []})
        stop = j.append("StopTransaction", {"transactionId": ref, "meterStop": 500})
        assert not j.get(stop).resolved
    # placeholders survive a restart and are resolved afterwards
    with Journal(path) as j:
        head = j.next_due(0)
        assert head is not None and head.seq == start
        j.acknowledge(start, {"transactionId": 4711, "idTagInfo": {"status": "Accepted"}})
        assert j.get(start).result == {"transactionId": 4711, "idTagInfo": {"status": "Accepted"}}
        pending = j.pending()
        assert [e.seq for e in pending] == [meter, stop]
        assert pending[0].payload["transactionId"] == 4711
        assert pending[1].payload == {"transactionId": 4711, "meterStop": 500}
        assert all(e.resolved for e in pending)


@pytest.mark.unit
def test_reference_to_already_delivered_entry_resolved_on_append(journal: Journal) -> None:
    start = journal.append("StartTransaction", {"connectorId": 1})
    journal.acknowledge(start, {"transactionId": 7})
    stop = journal.append(
        "StopTransaction", {"transactionId": {"$ref_result": start, "key": "transactionId"}}
    )
    assert journal.get(stop).payload == {"transactionId": 7}


@pytest.mark.unit
def test_reference_to_discarded_entry_uses_default(journal: Journal) -> None:
    """1.6 errata §3.18: no transactionId known -> send with transactionId -1."""
    start = journal.append("StartTransaction", {"connectorId": 1})
    ref = {"$ref_result": start, "key": "transactionId", "default": -1}
    stop = journal.append("StopTransaction", {"transactionId": ref})
    assert journal.failed_attempt(start, 0, attempts_max=1, retry_interval=1) is None
    entry = journal.next_due(0)
    assert entry is not None and entry.seq == stop
    assert entry.payload == {"transactionId": -1}


@pytest.mark.unit
def test_reference_to_unknown_entry_rejected(journal: Journal) -> None:
    with pytest.raises(UnknownEntryError):
        journal.append("StopTransaction", {"transactionId": {"$ref_result": 99, "key": "x"}})
    assert journal.counts() == JournalCounts(0, 0, 0)


@pytest.mark.unit
def test_rewrite_pending_entry(journal: Journal) -> None:
    seq = journal.append("StopTransaction", {"transactionId": -1})
    journal.rewrite(seq, {"transactionId": 12})
    assert journal.get(seq).payload == {"transactionId": 12}
    journal.acknowledge(seq)
    with pytest.raises(UnknownEntryError):
        journal.rewrite(seq, {"transactionId": 13})


@pytest.mark.unit
def test_purge_delivered(journal: Journal) -> None:
    a = journal.append("MeterValues", _meter(0))
    journal.append("MeterValues", _meter(1))
    journal.acknowledge(a, {})
    assert journal.purge_delivered() == 1
    assert journal.counts() == JournalCounts(pending=1, delivered=0, undeliverable=0)


_WRITER = textwrap.dedent(
    """
    import sys
    from plugstream.station.journal import Journal

    j = Journal(sys.argv[1])
    for i in range(int(sys.argv[2])):
        seq = j.append("MeterValues", {"connectorId": 1, "i": i})
        print(seq, flush=True)
    """
)


@pytest.mark.socket
def test_durable_across_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite"
    limit = 100_000
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(limit)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    printed: list[int] = []
    try:
        # seqs 1, 2, ... each printed once committed: "200" is the first line with "200"
        printed += [int(line) for line in read_until(proc, "200").split()]
        assert len(printed) >= 200, "writer did not get going"
        os.kill(proc.pid, signal.SIGKILL)
        # lines printed before the kill landed: each one was committed
        for line in proc.stdout:
            printed.append(int(line))
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(printed) < limit, "killed mid-way"

    with Journal(path) as j:
        pending = j.pending()
    seqs = [e.seq for e in pending]
    assert seqs == list(range(1, len(seqs) + 1))  # in order, no holes
    assert set(printed) <= set(seqs)
    assert [e.payload["i"] for e in pending] == [s - 1 for s in seqs]


@pytest.mark.unit
def test_database_is_a_plain_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as j:
        j.append("MeterValues", _meter(0))
    con = sqlite3.connect(path)
    try:
        assert con.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 1
    finally:
        con.close()


# -- shared mode: many stations' journals in one SQLite file ------------------------------


@pytest.mark.unit
def test_shared_database_is_wal_and_synchronous_normal_unless_asked(tmp_path: Path) -> None:
    """A fleet's shared file survives kill -9 with NORMAL (WAL); FULL on request."""
    with JournalDatabase(tmp_path / "fleet.sqlite") as db:
        j = db.journal("CP-1")
        assert j._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with JournalDatabase(tmp_path / "full.sqlite", synchronous="FULL") as db:
        assert db.journal("CP-1")._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    with Journal(tmp_path / "own.sqlite") as own:  # a real station's own file: FULL
        assert own._db.execute("PRAGMA synchronous").fetchone()[0] == 2


@pytest.mark.unit
def test_shared_journals_do_not_see_each_other(tmp_path: Path) -> None:
    with JournalDatabase(tmp_path / "fleet.sqlite") as db:
        a, b = db.journal("CP-A"), db.journal("CP-B")
        a_seqs = [a.append("MeterValues", _meter(i)) for i in range(3)]
        b_seqs = [b.append("MeterValues", _meter(10 + i)) for i in range(2)]
        assert [e.payload for e in a.pending()] == [_meter(i) for i in range(3)]
        assert [e.payload for e in b.pending()] == [_meter(10), _meter(11)]
        assert a.counts() == JournalCounts(3, 0, 0) and len(b) == 2
        # another station's entry is unknown here, whatever the operation
        with pytest.raises(UnknownEntryError):
            a.acknowledge(b_seqs[0], {})
        with pytest.raises(UnknownEntryError):
            b.get(a_seqs[0])
        with pytest.raises(UnknownEntryError):
            b.append("StopTransaction", {"transactionId": {"$ref_result": a_seqs[0], "key": "x"}})
        a.acknowledge(a_seqs[0], {})
        assert a.purge_delivered() == 1
        assert b.counts() == JournalCounts(2, 0, 0)
        head = b.head()
        assert head is not None and head.seq == b_seqs[0]
        assert db.stations() == ["CP-A", "CP-B"]


@pytest.mark.unit
def test_shared_journals_keep_order_placeholders_and_retries_per_station(tmp_path: Path) -> None:
    with JournalDatabase(tmp_path / "fleet.sqlite") as db:
        a, b = db.journal("CP-A"), db.journal("CP-B")
        start_a = a.append("StartTransaction", {"connectorId": 1, "idTag": "A"})
        start_b = b.append("StartTransaction", {"connectorId": 1, "idTag": "B"})
        ref_a = {"$ref_result": start_a, "key": "transactionId", "default": -1}
        ref_b = {"$ref_result": start_b, "key": "transactionId", "default": -1}
        stop_a = a.append("StopTransaction", {"transactionId": ref_a, "meterStop": 5})
        stop_b = b.append("StopTransaction", {"transactionId": ref_b, "meterStop": 7})
        # A's head fails and waits for its retry: it holds back A's queue only
        assert a.failed_attempt(start_a, 100.0, attempts_max=2, retry_interval=60) == 160.0
        assert a.next_due(100.0) is None
        due_b = b.next_due(100.0)
        assert due_b is not None and due_b.seq == start_b
        b.acknowledge(start_b, {"transactionId": 42})
        assert b.get(stop_b).payload == {"transactionId": 42, "meterStop": 7}
        assert not a.get(stop_a).resolved  # B's answer resolves nothing of A's
        # A's second failure discards its StartTransaction: the placeholder gets the default
        assert a.failed_attempt(start_a, 160.0, attempts_max=2, retry_interval=60) is None
        due_a = a.next_due(160.0)
        assert due_a is not None and due_a.seq == stop_a
        assert due_a.payload == {"transactionId": -1, "meterStop": 5}
        assert [e.seq for e in a.undeliverable()] == [start_a] and b.undeliverable() == []


@pytest.mark.unit
def test_shared_journal_resolves_placeholders_after_its_queue_was_empty(tmp_path: Path) -> None:
    """A shared journal that has seen its queue empty skips the search for placeholders
    on acknowledgements; one appended later is still resolved (a fleet station's next
    session: StartTransaction, then samples that wait for its transactionId)."""
    with JournalDatabase(tmp_path / "fleet.sqlite") as db:
        journal = db.journal("CP-A")
        assert journal.head() is None  # seen empty: its queue is counted from here
        sample = journal.append("MeterValues", {"connectorId": 1, "transactionId": 7})
        journal.acknowledge(sample, {})
        start = journal.append("StartTransaction", {"connectorId": 1, "idTag": "A"})
        ref = {"$ref_result": start, "key": "transactionId", "default": -1}
        later = journal.append("MeterValues", {"connectorId": 1, "transactionId": ref})
        journal.acknowledge(start, {"transactionId": 42})
        head = journal.head()
        assert head is not None and head.seq == later
        assert head.payload == {"connectorId": 1, "transactionId": 42}
        journal.acknowledge(later, {})
        assert journal.head() is None and journal.pending() == []


@pytest.mark.unit
def test_shared_journals_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "fleet.sqlite"
    with JournalDatabase(path) as db:
        a, b = db.journal("CP-A"), db.journal("CP-B")
        start = a.append("StartTransaction", {"connectorId": 1})
        ref = {"$ref_result": start, "key": "transactionId", "default": -1}
        meter = a.append("MeterValues", {"transactionId": ref, "meterValue": []})
        b_seqs = [b.append("MeterValues", _meter(i)) for i in range(3)]
        b.acknowledge(b_seqs[0], {})
        a.close()  # one station stops; the others go on in the same file
        with pytest.raises(sqlite3.ProgrammingError):
            a.head()
        assert db.journal("CP-A").counts() == JournalCounts(2, 0, 0)
        b.append("MeterValues", _meter(3))
    with JournalDatabase(path) as db:
        a, b = db.journal("CP-A"), db.journal("CP-B")
        assert [e.seq for e in a.pending()] == [start, meter]
        a.acknowledge(start, {"transactionId": 9})
        assert a.pending()[0].payload == {"transactionId": 9, "meterValue": []}
        assert [e.payload for e in b.pending()] == [_meter(1), _meter(2), _meter(3)]
        assert b.counts() == JournalCounts(3, 1, 0)
        later = b.append("MeterValues", _meter(4))
        assert later > max(b_seqs)  # never reused


@pytest.mark.unit
def test_one_station_file_of_the_old_format_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE journal (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, action TEXT NOT NULL, payload TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL DEFAULT 0, has_refs INTEGER NOT NULL DEFAULT 0,
            result TEXT);
        CREATE INDEX journal_state_seq ON journal (state, seq);
        INSERT INTO journal (action, payload) VALUES ('MeterValues', '{"i": 1}');
        """
    )
    con.close()
    with Journal(path) as j:
        [entry] = j.pending()
        assert entry.payload == {"i": 1}
        assert j.append("MeterValues", {"i": 2}) == 2


@pytest.mark.unit
def test_shared_journal_needs_a_station_key(tmp_path: Path) -> None:
    with JournalDatabase(tmp_path / "fleet.sqlite") as db, pytest.raises(ValueError):
        db.journal("")


@pytest.mark.unit
@pytest.mark.parametrize("shared", [False, True])
def test_an_entry_is_bare_only_when_nothing_in_it_is_empty(tmp_path: Path, shared: bool) -> None:
    """``bare``: sent as it is, without a walk to drop empty fields; an entry with a
    null, an empty list or object inside (or a string that looks like one) is not."""
    full = {"connectorId": 1, "meterValue": [{"timestamp": "t", "sampledValue": [{"value": "1"}]}]}
    payloads = [
        (full, True),
        (_meter(1), False),  # an empty sampledValue list
        ({"connectorId": 1, "idTag": None}, False),
        ({"connectorId": 1, "data": {}}, False),
        ({"connectorId": 1, "data": "looks like {} but is text"}, False),
    ]
    with JournalDatabase(tmp_path / "fleet.sqlite") as db:
        journal = db.journal("S") if shared else Journal(tmp_path / "own.sqlite")
        for payload, bare in payloads:
            seq = journal.append("MeterValues", payload)
            head = journal.head()
            assert head is not None and head.seq == seq
            assert head.bare is bare and journal.get(seq).bare is bare  # kept, and read back
            if bare:
                assert compact(head.payload) == head.payload
            journal.acknowledge(seq, {})
        if not shared:
            journal.close()
