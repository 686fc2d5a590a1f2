"""The event outbox: what stations reported, kept until NATS JetStream has it.

A handler's event is a row here, written through the store's writer (group commit) and
committed before the station is answered; :class:`~plugstream.cloud.bus.events.EventRelay`
publishes the rows in id order and deletes those JetStream acknowledged. A row's id is
the event's ``seq``.

The nodes of a cluster share the table (PostgreSQL): their relays take turns with a
transaction-scoped advisory lock (:func:`take_turn`), held while a batch is published and
deleted. One relay at a time, and not merely rows claimed with ``SKIP LOCKED``: two
relays publishing disjoint batches at once would interleave a station's events out of
order in the stream. A dead node's lock goes with its connection, so the rows it had not
relayed are relayed by the others. SQLite is one node's alone: no turn to take.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, text
from sqlalchemy.engine import Connection

from . import schema as s
from .bulk import BulkInsert
from .coltypes import as_utc
from .database import Database
from .writer import defer_rows

__all__ = ["RELAY_LOCK", "EventOutboxRows", "OutboxRow", "delete_rows", "read_head", "take_turn"]

_T = s.event_outbox
_APPEND = BulkInsert(_T, ("kind", "station_id", "node", "at", "data"))
_HEAD = select(_T.c.id, _T.c.kind, _T.c.station_id, _T.c.node, _T.c.at, _T.c.data).order_by(_T.c.id)

#: the advisory lock the relays of one PostgreSQL database take turns with ("PSoutbox")
RELAY_LOCK = 0x50536F7574626F78


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int  # the event's seq
    kind: str
    station_id: str
    node: str
    at: datetime  # when the cloud took it in, UTC
    data: str  # one JSON object


class EventOutboxRows:
    """The event outbox's rows."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._sql = _APPEND.sql(db.dialect)

    def append(
        self, kind: str, station_id: str, node: str, at: datetime, data: str
    ) -> asyncio.Future[None]:
        """Keep one event; the future completes once its row is committed. A deferred row
        of the writer's batch: many events cost one ``executemany``, not a statement each."""
        row = (kind, station_id[:255], node, self._db.form.time(at), data)
        sql = self._sql

        def op(conn: Connection) -> None:
            defer_rows(conn, sql, [row])

        return self._db.enqueue(op)

    async def head(self, *, limit: int = 100, max_bytes: int = 1 << 22) -> list[OutboxRow]:
        """The oldest rows (see :func:`read_head`)."""
        return await self._db.read(lambda conn: read_head(conn, limit, max_bytes))

    async def delete(self, ids: Sequence[int]) -> int:
        """Delete the rows of ``ids`` (relayed); how many there were."""
        return await self._db.write(lambda conn: delete_rows(conn, ids))

    async def count(self) -> int:
        """Rows not yet relayed."""
        return await self._db.read(
            lambda conn: int(conn.execute(select(func.count()).select_from(_T)).scalar_one())
        )


def read_head(conn: Connection, limit: int, max_bytes: int) -> list[OutboxRow]:
    """The oldest rows, in id order: at most ``limit`` of them and, past the first, no
    more than ``max_bytes`` of data in all (a relay's batch is bounded in memory). Read
    a few rows at a time, so that a batch cut short by its bytes reads no more."""
    rows: list[OutboxRow] = []
    size = 0
    result = conn.execute(_HEAD.limit(max(1, limit)).execution_options(yield_per=16))
    try:
        for row in result:
            size += len(row.data)
            if rows and size > max_bytes:
                break
            rows.append(
                OutboxRow(int(row.id), row.kind, row.station_id, row.node, as_utc(row.at), row.data)
            )
    finally:
        result.close()
    return rows


def delete_rows(conn: Connection, ids: Sequence[int]) -> int:
    if not ids:
        return 0
    return int(conn.execute(delete(_T).where(_T.c.id.in_(list(ids)))).rowcount)


def take_turn(conn: Connection, wait_s: float) -> None:
    """PostgreSQL: wait up to ``wait_s`` seconds for the relays' turn (:data:`RELAY_LOCK`),
    held until this transaction ends; past that, the database's lock_timeout error
    (SQLSTATE 55P03) and the transaction is to be rolled back."""
    conn.execute(text(f"SET LOCAL lock_timeout = {max(1, round(wait_s * 1000))}"))
    conn.execute(select(func.pg_advisory_xact_lock(RELAY_LOCK)))
