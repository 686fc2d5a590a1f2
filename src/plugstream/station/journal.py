"""Durable outbound journal for transaction-related messages.

Every transaction-related message (1.6: ``StartTransaction``, ``StopTransaction``,
periodic / clock-aligned ``MeterValues``; 2.0.1: ``TransactionEvent``) is written
here, durably, *before* it is sent. The journal survives a disconnect, a CSMS
outage and a power loss (``kill -9``): reopening the file gives back every entry
that was not acknowledged, in the order it was appended.

Storage is stdlib :mod:`sqlite3` in WAL mode with ``synchronous=FULL``, so a
committed :meth:`Journal.append` survives a crash of the process and of the OS.

Spec rules implemented (the caller sends, the journal keeps the books):

- Order. 1.6 §3.7: transaction-related messages are delivered in chronological
  order; new ones wait until the queue is emptied. :meth:`Journal.next_due` only
  ever returns the *head* of the queue (lowest pending ``seq``), so a head that
  is waiting for its retry time holds back everything behind it.
- Retry. 1.6 §3.7.1 (keys ``TransactionMessageAttempts`` /
  ``TransactionMessageRetryInterval``) and 2.0.1 E13.FR.01-03
  (``OCPPCommCtrlr.MessageAttemptsTransactionEvent`` /
  ``MessageAttemptIntervalTransactionEvent``): after a *failure to process the
  message* the station waits ``retry_interval`` times the number of preceding
  transmissions of that message, then resends it -- with 3 attempts and 60 s:
  wait 60 s, resend, wait 120 s, resend. See :meth:`Journal.failed_attempt`.
  A lost connection is *not* a failure to process: the entry simply stays at
  the head of the queue and is resent after the reconnect.
- Discard. 1.6 §3.7.1 ("SHOULD discard the message and continue with the next
  transaction-related message") and 2.0.1 E13.FR.04 ("SHALL discard the message
  and continue with the next transaction-related message, if there is any"):
  after ``attempts_max`` failures the entry leaves the delivery queue. The spec
  says nothing about keeping it; we keep it recorded locally with state
  ``undeliverable`` (see :meth:`Journal.undeliverable`) for audit, it is never
  sent again.
- Unknown ``transactionId``. A 1.6 ``StopTransaction`` / ``MeterValues`` needs
  the ``transactionId`` that the Central System returns in
  ``StartTransaction.conf``. A payload may hold a placeholder
  ``{"$ref_result": seq, "key": "transactionId", "default": -1}``; it is
  replaced by ``result[key]`` when entry ``seq`` is acknowledged with its
  CALLRESULT payload (:meth:`Journal.acknowledge`). If entry ``seq`` is discarded
  instead, the placeholder becomes ``default`` (``None`` when absent) -- the 1.6
  errata sheet §3.18 says to send such messages with ``transactionId = -1``.

Times (``now``, ``next_attempt_at``) are persisted, so they must come from a
clock that survives a reboot (UNIX seconds), injected by the caller.

Shared mode. A simulated fleet runs thousands of stations in one process, and a
SQLite file per station costs 2-3 file descriptors (database, WAL, shm). A
:class:`JournalDatabase` keeps the journals of many stations in ONE SQLite file:
:meth:`JournalDatabase.journal` gives each station key its own :class:`Journal`,
with every rule above scoped to that station (a ``station`` column). ``seq``
numbers come from one counter per file, so a station's ``seq`` values are
increasing and never reused, but not contiguous; a placeholder may refer only to
an entry of its own station.

Group commit (shared mode only). A commit per append and per acknowledgement
costs more than the rest of a simulated station's work, so the writes of all
stations within one event-loop iteration go into ONE transaction: the first write
opens it and schedules the commit with ``loop.call_soon`` (FIFO: it runs before
any task woken by that write, e.g. the station's delivery loop). The promise
"durable before it is sent" is kept by the sender, not by timing: a station calls
:meth:`Journal.flush` right before it sends an entry, which commits at once if a
batch is still open. Each write runs in a SAVEPOINT, so a write that fails rolls
back only itself. Without a running event loop every write commits at once.

Durability of the shared file: ``synchronous=NORMAL`` by default (a choice for
simulated fleets). In WAL mode a NORMAL commit is written to the WAL before
``COMMIT`` returns, so it survives ``kill -9`` of the process; only an OS crash
or power cut may lose the last commits (they are fsynced at checkpoints). A
fleet's stations share one process and one machine, so the process is what dies;
``JournalDatabase(path, synchronous="FULL")`` buys OS-crash durability back. A
real station's ``Journal(path)`` keeps ``synchronous=FULL`` and commits every
write on its own.

Station state. :meth:`Journal.save_state` keeps a small JSON object per station
(a fleet keeps its stations' energy registers there, written in the same group
commit as the MeterValues that carry them, instead of a ``state.json`` rewrite
per sample); :meth:`Journal.saved_state` reads it back after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson

log = logging.getLogger(__name__)

__all__ = [
    "REF_KEY",
    "Entry",
    "EntryState",
    "Journal",
    "JournalCounts",
    "JournalDatabase",
    "UnknownEntryError",
]

REF_KEY = "$ref_result"
_REF_IN_TEXT = f'"{REF_KEY}"'  # how a placeholder's key shows in a payload's JSON
"""Key of a placeholder that refers to the CALLRESULT of an earlier entry."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    station         TEXT    NOT NULL DEFAULT '',
    action          TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL    NOT NULL DEFAULT 0,
    has_refs        INTEGER NOT NULL DEFAULT 0,
    result          TEXT
);
"""
# Created after the column check, so that a file of the one-station format is upgraded.
_INDEX = """
DROP INDEX IF EXISTS journal_state_seq;
CREATE INDEX IF NOT EXISTS journal_station_state_seq ON journal (station, state, seq);
CREATE TABLE IF NOT EXISTS station_state (
    station TEXT PRIMARY KEY,
    data    TEXT NOT NULL
);
"""
_SYNCHRONOUS = ("FULL", "NORMAL")


def _connect(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    if synchronous not in _SYNCHRONOUS:
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.executescript(_SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(journal)")}
    if "station" not in columns:  # a journal written before shared mode existed
        db.execute("ALTER TABLE journal ADD COLUMN station TEXT NOT NULL DEFAULT ''")
    db.executescript(_INDEX)
    return db


def _is_closed(db: sqlite3.Connection) -> bool:
    try:
        db.total_changes  # noqa: B018 -- raises on a closed connection
    except sqlite3.ProgrammingError:
        return True
    return False


def _closed_connection() -> sqlite3.Connection:
    """A closed connection: what a closed shared :class:`Journal` holds, so that
    using it raises :class:`sqlite3.ProgrammingError` as a closed file's does."""
    db = sqlite3.connect(":memory:")
    db.close()
    return db


class EntryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"


class UnknownEntryError(KeyError):
    """No entry with that ``seq`` in the state the operation needs."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One journalled message."""

    seq: int
    action: str
    payload: dict[str, Any]
    state: EntryState
    attempts: int
    """Failures to process this message so far (= preceding transmissions)."""
    next_attempt_at: float
    """Earliest time (caller's clock) at which it may be (re)sent."""
    result: dict[str, Any] | None = None
    """The CALLRESULT payload, once delivered."""
    bare: bool = False
    """True: the payload holds no null, empty list or empty object (its JSON text has
    none), so a sender that drops those (the station's ``compact``) may send it as it is."""

    @property
    def resolved(self) -> bool:
        """True when the payload holds no placeholder any more."""
        return not _has_refs(self.payload)


@dataclass(frozen=True, slots=True)
class JournalCounts:
    pending: int
    delivered: int
    undeliverable: int


def _has_refs(value: Any) -> bool:
    if isinstance(value, dict):
        return REF_KEY in value or any(_has_refs(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_refs(v) for v in value)
    return False


def _iter_refs(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if REF_KEY in value:
            yield value
        else:
            for v in value.values():
                yield from _iter_refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _iter_refs(v)


def _substitute(value: Any, target: int, result: dict[str, Any] | None) -> Any:
    """Replace placeholders referring to ``target``; ``result`` None = discarded."""
    if isinstance(value, dict):
        if REF_KEY in value:
            if value[REF_KEY] != target:
                return value
            key = value.get("key")
            if result is not None and isinstance(key, str) and key in result:
                return result[key]
            return value.get("default")
        return {k: _substitute(v, target, result) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, target, result) for v in value]
    return value


class Journal:
    """SQLite-backed, append-only-in-order queue of outbound transaction messages.

    ``Journal(path)`` owns its file; journals of a :class:`JournalDatabase` share one.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.station = ""  # the station key; "" in a file of its own
        self._db = _connect(self.path)
        self._database: JournalDatabase | None = None
        self._pending: int | None = None  # see head(); None: not known
        self._head: Entry | None = None
        self._refs_possible = True  # False: no pending entry holds a placeholder

    @classmethod
    def _shared(cls, database: JournalDatabase, station: str) -> Journal:
        journal = cls.__new__(cls)
        journal.path = database.path
        journal.station = station
        journal._db = database._db
        journal._database = database
        journal._pending = None
        journal._head = None
        journal._refs_possible = True
        return journal

    @property
    def database(self) -> JournalDatabase | None:
        """The shared database this journal is in (a fleet's); None: a file of its own."""
        return self._database

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Close the file; a shared journal only lets go of the database (its owner closes it)."""
        if self._database is None:
            self._db.close()
            return
        self._database._release(self)
        self._db = _closed_connection()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self, *, single: bool = False, lazy: bool = False) -> Iterator[None]:
        """One atomic write: its own committed transaction, or (shared) a savepoint in
        the database's open group-commit batch; ``single``: the write is one statement
        (after any checks), atomic by itself, so no savepoint is needed."""
        database = self._database
        if database is None:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return
        database._begin_batch(lazy=lazy)
        if single:
            try:
                yield
            finally:
                database._after_write()
            return
        self._db.execute("SAVEPOINT journal_write")
        try:
            yield
            self._db.execute("RELEASE journal_write")
        except BaseException:
            self._db.execute("ROLLBACK TO journal_write")
            self._db.execute("RELEASE journal_write")
            raise
        finally:
            database._after_write()

    def flush(self) -> None:
        """Make every write so far durable now (commits an open group-commit batch):
        call right before sending an entry."""
        if self._database is not None:
            self._database.commit()

    def save_state(self, data: dict[str, Any]) -> None:
        """Keep ``data`` (JSON) as this station's state, replacing the previous one."""
        with self._write(single=True):
            self._db.execute(
                "INSERT OR REPLACE INTO station_state (station, data) VALUES (?, ?)",
                (self.station, _dumps(data)),
            )

    def saved_state(self) -> dict[str, Any] | None:
        """What :meth:`save_state` kept last, or None."""
        row = self._db.execute(
            "SELECT data FROM station_state WHERE station = ?", (self.station,)
        ).fetchone()
        if row is None:
            return None
        data = orjson.loads(row[0])
        return data if isinstance(data, dict) else None

    def append(self, action: str, payload: dict[str, Any]) -> int:
        """Journal a message; returns its ``seq`` once committed durably (shared: once
        written; durable at the group commit or :meth:`flush`, before any send).

        Placeholders referring to an entry already delivered (or discarded) are
        resolved at once; a placeholder must refer to an existing earlier entry.
        ``payload`` (plain JSON types) may be kept as the head entry's: do not change it
        after.
        """
        text = _dumps(payload)
        # a placeholder is a key in the text: no walk through a payload without one (a
        # fleet journals ten thousand MeterValues a minute, none with a placeholder)
        refs = _REF_IN_TEXT in text
        with self._write(single=True):  # checks, then one INSERT
            for ref in _iter_refs(payload) if refs else ():
                target = ref[REF_KEY]
                if not isinstance(target, int):
                    raise ValueError(f"{REF_KEY} must be an int seq, got {target!r}")
                row = self._db.execute(
                    "SELECT state, result FROM journal WHERE seq = ? AND station = ?",
                    (target, self.station),
                ).fetchone()
                if row is None:
                    raise UnknownEntryError(target)
                state, result = EntryState(row[0]), row[1]
                if state is EntryState.DELIVERED:
                    payload = _substitute(payload, target, orjson.loads(result) if result else {})
                elif state is EntryState.UNDELIVERABLE:
                    payload = _substitute(payload, target, None)
            if refs:  # resolved ones are gone from it now
                text, refs = _dumps(payload), _has_refs(payload)
            cur = self._db.execute(
                "INSERT INTO journal (station, action, payload, has_refs) VALUES (?, ?, ?, ?)",
                (self.station, action, text, int(refs)),
            )
        seq = cur.lastrowid
        assert seq is not None
        if refs:
            self._refs_possible = True
        if self._pending is not None:
            self._pending += 1
            if self._pending == 1:  # the head now: as head() would read it back
                head = payload if not refs else orjson.loads(text)  # no parse of our own
                self._head = Entry(seq, action, head, EntryState.PENDING, 0, 0.0, None, _bare(text))
        return seq

    def _left(self, seq: int) -> None:
        """Entry ``seq`` left the queue (delivered or discarded)."""
        if self._pending is not None:
            self._pending -= 1
            if self._pending == 0:
                self._refs_possible = False
        if self._head is not None and self._head.seq == seq:
            self._head = None

    def acknowledge(self, seq: int, result: dict[str, Any] | None = None) -> None:
        """The CSMS accepted entry ``seq`` (CALLRESULT ``result``): it leaves the queue.

        Placeholders in later entries that refer to ``seq`` are resolved from
        ``result`` in the same transaction.
        """
        referring = self._referring(seq)  # usually none: then one UPDATE is the write
        # durable in the database's ack_delay (a fleet: a second), with what else is
        # written meanwhile; lost by a crash before that, the entry is sent again, as it
        # is after a crash between the CSMS's answer and this write
        with self._write(single=not referring, lazy=True):
            cur = self._db.execute(
                "UPDATE journal SET state = ?, result = ? WHERE seq = ? AND station = ? AND state = ?",
                (
                    EntryState.DELIVERED.value,
                    _dumps(result or {}),
                    seq,
                    self.station,
                    EntryState.PENDING.value,
                ),
            )
            if cur.rowcount != 1:
                raise UnknownEntryError(seq)
            self._resolve_refs(seq, result or {}, referring)
        self._left(seq)

    def failed_attempt(
        self, seq: int, now: float, *, attempts_max: int, retry_interval: float
    ) -> float | None:
        """The CSMS failed to process entry ``seq`` (e.g. a CALLERROR).

        Returns the time at which it may be resent -- ``now + retry_interval *
        attempts`` where ``attempts`` counts the transmissions so far (1.6 §3.7.1,
        2.0.1 E13.FR.03) -- or ``None`` when this was failure number
        ``attempts_max`` and the entry is discarded (E13.FR.04). ``attempts_max``
        below 1 is treated as 1.
        """
        with self._write():
            attempts = self._require_pending(seq) + 1
            if attempts >= max(attempts_max, 1):
                self._db.execute(
                    "UPDATE journal SET state = ?, attempts = ? WHERE seq = ?",
                    (EntryState.UNDELIVERABLE.value, attempts, seq),
                )
                self._resolve_refs(seq, None)
                due: float | None = None
            else:
                due = now + retry_interval * attempts
                self._db.execute(
                    "UPDATE journal SET attempts = ?, next_attempt_at = ? WHERE seq = ?",
                    (attempts, due, seq),
                )
        if due is None:
            self._left(seq)
        else:
            self._head = None  # read again, with its attempts
        return due

    def rewrite(self, seq: int, payload: dict[str, Any]) -> None:
        """Replace the payload of a pending entry (durably)."""
        with self._write():
            self._require_pending(seq)
            refs = _has_refs(payload)
            self._db.execute(
                "UPDATE journal SET payload = ?, has_refs = ? WHERE seq = ?",
                (_dumps(payload), int(refs), seq),
            )
            if refs:
                self._refs_possible = True
        self._head = None  # read again, with its new payload

    def purge_delivered(self) -> int:
        """Delete delivered entries; returns how many. Later placeholders may no
        longer refer to them."""
        cur = self._db.execute(
            "DELETE FROM journal WHERE station = ? AND state = ?",
            (self.station, EntryState.DELIVERED.value),
        )
        return cur.rowcount

    # -- reading ---------------------------------------------------------------

    def pending(self) -> list[Entry]:
        """Entries not yet delivered nor discarded, in order."""
        return self._select(EntryState.PENDING)

    def undeliverable(self) -> list[Entry]:
        """Entries discarded after ``attempts_max`` failures, in order."""
        return self._select(EntryState.UNDELIVERABLE)

    def get(self, seq: int) -> Entry:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM journal WHERE seq = ? AND station = ?", (seq, self.station)
        ).fetchone()
        if row is None:
            raise UnknownEntryError(seq)
        return _entry(row)

    def head(self) -> Entry | None:
        """The oldest pending entry, due or not.

        A shared journal keeps count of its pending entries, and its head, once it has
        seen it empty: its database has one writer (the fleet's loop), and a fleet asks
        for the head of ten thousand journals a minute."""
        if self._pending == 0:
            return None
        if self._head is not None:
            return self._head
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM journal WHERE station = ? AND state = ? ORDER BY seq LIMIT 1",
            (self.station, EntryState.PENDING.value),
        ).fetchone()
        if row is None:
            if self._database is not None:
                self._pending = 0
                self._refs_possible = False
            return None
        entry = _entry(row)
        if self._pending is not None:
            self._head = entry
        return entry

    def next_due(self, now: float) -> Entry | None:
        """The head of the queue if it may be sent at ``now``, else ``None``.

        Later entries are never returned ahead of the head (1.6 §3.7 order).
        """
        entry = self.head()
        if entry is None or entry.next_attempt_at > now:
            return None
        return entry

    def counts(self) -> JournalCounts:
        rows = dict(
            self._db.execute(
                "SELECT state, COUNT(*) FROM journal WHERE station = ? GROUP BY state",
                (self.station,),
            )
        )
        return JournalCounts(
            pending=rows.get(EntryState.PENDING.value, 0),
            delivered=rows.get(EntryState.DELIVERED.value, 0),
            undeliverable=rows.get(EntryState.UNDELIVERABLE.value, 0),
        )

    def __len__(self) -> int:
        return self.counts().pending

    # -- internals -------------------------------------------------------------

    def _select(self, state: EntryState) -> list[Entry]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM journal WHERE station = ? AND state = ? ORDER BY seq",
            (self.station, state.value),
        )
        return [_entry(row) for row in rows]

    def _require_pending(self, seq: int) -> int:
        row = self._db.execute(
            "SELECT attempts FROM journal WHERE seq = ? AND station = ? AND state = ?",
            (seq, self.station, EntryState.PENDING.value),
        ).fetchone()
        if row is None:
            raise UnknownEntryError(seq)
        return int(row[0])

    def _referring(self, target: int) -> list[tuple[int, str]]:
        """(seq, payload) of the later pending entries holding a placeholder."""
        if self._pending is not None and not self._refs_possible:
            return []  # known: none (a fleet acknowledges ten thousand entries a minute)
        rows = self._db.execute(
            "SELECT seq, payload FROM journal"
            " WHERE station = ? AND state = ? AND has_refs = 1 AND seq > ?",
            (self.station, EntryState.PENDING.value, target),
        ).fetchall()
        return [(int(seq), str(raw)) for seq, raw in rows]

    def _resolve_refs(
        self,
        target: int,
        result: dict[str, Any] | None,
        rows: list[tuple[int, str]] | None = None,
    ) -> None:
        if rows is None:
            rows = self._referring(target)
        for seq, raw in rows:
            payload = orjson.loads(raw)
            new = _substitute(payload, target, result)
            if new != payload:
                self._head = None  # its payload changed: read again
                self._db.execute(
                    "UPDATE journal SET payload = ?, has_refs = ? WHERE seq = ?",
                    (_dumps(new), int(_has_refs(new)), seq),
                )


def _dumps(value: Any) -> str:
    """JSON text, compact; orjson (a fleet journals ten thousand entries a minute)."""
    return orjson.dumps(value).decode()


def _bare(text: str) -> bool:
    """:attr:`Entry.bare` from a payload's JSON text (a string that merely contains one
    of these makes it False: the sender then looks for itself)."""
    return "null" not in text and "[]" not in text and "{}" not in text


_COLUMNS = "seq, action, payload, state, attempts, next_attempt_at, result"


def _entry(row: tuple[Any, ...]) -> Entry:
    seq, action, payload, state, attempts, next_attempt_at, result = row
    return Entry(
        seq=int(seq),
        action=str(action),
        payload=orjson.loads(payload),
        state=EntryState(state),
        attempts=int(attempts),
        next_attempt_at=float(next_attempt_at),
        result=None if result is None else orjson.loads(result),
        bare=_bare(payload),
    )


class JournalDatabase:
    """One SQLite file holding the journals of many stations (a simulated fleet).

    Three file descriptors for the whole fleet instead of three per station. Every
    :class:`Journal` it hands out sees only its own station's entries. Writes are
    group-committed and ``synchronous`` is NORMAL by default: see the module's
    docstring. Use from one thread (the fleet's event loop).
    """

    def __init__(
        self, path: str | Path, *, synchronous: str = "NORMAL", ack_delay: float = 0.0
    ) -> None:
        """``ack_delay``: seconds an acknowledgement may wait for the group commit (0:
        the same loop iteration, as every other write). A fleet's answers come one by
        one, and a commit of each was a tenth of its CPU."""
        if ack_delay < 0:
            raise ValueError(f"ack_delay is 0 or more seconds, not {ack_delay}")
        self.path = Path(path)
        self.synchronous = synchronous
        self.ack_delay = ack_delay
        self._commit_handle: asyncio.Handle | None = None
        self._commit_lazy = False  # the scheduled commit is ack_delay away
        self._db = _connect(self.path, synchronous)
        self._open: dict[str, Journal] = {}
        self._batch = False  # a group-commit transaction is open
        self._commit_scheduled = False
        self._durable: list[Callable[[], object]] = []  # see when_durable()
        self.commits = 0  # transactions committed: what group commit saves is visible here

    @property
    def in_batch(self) -> bool:
        """True while writes are waiting for the group commit (not durable yet)."""
        return self._batch

    def _begin_batch(self, *, lazy: bool = False) -> None:
        lazy = lazy and self.ack_delay > 0
        if self._batch:
            if self._commit_lazy and not lazy:  # a write that must not wait: commit soon
                self._schedule(lazy=False)
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._batch = True
        self._schedule(lazy=lazy)

    def _schedule(self, *, lazy: bool) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: _after_write commits at once
            return
        if self._commit_handle is not None:
            self._commit_handle.cancel()
        if lazy:
            self._commit_handle = loop.call_later(self.ack_delay, self.commit)
        else:
            self._commit_handle = loop.call_soon(self.commit)
        self._commit_lazy = lazy
        self._commit_scheduled = True

    def _after_write(self) -> None:
        if not self._commit_scheduled:
            self.commit()

    def commit(self) -> None:
        """Commit the open batch now (if any): every write so far becomes durable."""
        self._commit_scheduled = self._commit_lazy = False
        if self._commit_handle is not None:
            self._commit_handle.cancel()
            self._commit_handle = None
        if not self._batch:
            return
        self._batch = False
        self._db.execute("COMMIT")
        self.commits += 1
        durable, self._durable = self._durable, []
        for callback in durable:
            try:
                callback()
            except Exception:  # another's bug: not the commit's, nor the next callback's
                log.exception("a callback after the group commit failed")

    def when_durable(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` once every write so far is durable: right after the open
        batch's group commit, or soon (the event loop's next step) when none is open.
        A fleet's stations send what they journalled from here: the entries of one
        beat go out together after their one commit, with no task woken per entry."""
        if self._batch:
            self._durable.append(callback)
        else:
            asyncio.get_running_loop().call_soon(callback)

    def journal(self, station: str) -> Journal:
        """The journal of ``station`` (any non-empty key, e.g. its id); the same object
        while it is open."""
        if not station:
            raise ValueError("a shared journal needs a non-empty station key")
        journal = self._open.get(station)
        if journal is None:
            journal = self._open[station] = Journal._shared(self, station)
        return journal

    def stations(self) -> list[str]:
        """The station keys that have entries in the file, sorted."""
        rows = self._db.execute("SELECT DISTINCT station FROM journal WHERE station != ''")
        return sorted(str(row[0]) for row in rows)

    def _release(self, journal: Journal) -> None:
        if self._open.get(journal.station) is journal:
            del self._open[journal.station]

    def close(self) -> None:
        """Commit, close the file; the journals handed out can no longer be used."""
        for journal in list(self._open.values()):
            journal.close()
        if not _is_closed(self._db):
            self.commit()
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
