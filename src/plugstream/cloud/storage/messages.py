"""The message log: every OCPP-J frame to and from a station, as on the wire.

The log is the busiest write of all (two frames for every message a station exchanges),
so its rows are converted once to their stored form and handed to the writer as
deferred rows: one ``executemany`` for all the frames of a batch.

``append`` is the gateway's way in: the row joins the log's *open* write, an operation
already in the writer's queue that takes rows until the writer starts to run it, or
starts a new one at the end of the queue. Either way the row is committed no later than
any write queued after ``append`` returned (the writer commits in FIFO order): a frame
appended when it is received is in the same commit as its handler's data, or an earlier
one."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from . import schema as s
from .bulk import BulkInsert
from .database import Database
from .records import MessageRecord
from .writer import defer_rows

__all__ = ["MessageLog"]

log = logging.getLogger("plugstream.cloud.storage")

_MESSAGES = BulkInsert(s.messages, ("station_id", "at", "direction", "text"))


class _OpenWrite:
    """One queued write of appended rows; ``sealed`` once the writer runs it (its rows
    are final from then on, also when the writer runs it again, isolated)."""

    __slots__ = ("future", "rows", "sealed")

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.rows = [row]
        self.sealed = False
        self.future: asyncio.Future[None] | None = None


class MessageLog:
    """The message log's rows."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._sql = _MESSAGES.sql(db.dialect)
        self._open: _OpenWrite | None = None
        # The writer seals an open write in its thread while the event loop appends to it.
        self._seal = threading.Lock()
        self._room: list[asyncio.Future[None]] = []  # waiting in wait_for_room
        #: appended rows not yet committed (nor failed)
        self.pending = 0
        #: the newest open write's future: done once every row appended so far is
        self.last: asyncio.Future[None] | None = None

    def log(self, station_id: str, direction: str, text: str, at: datetime) -> asyncio.Future[None]:
        """Log one frame; the future completes once the row is committed."""
        return self.log_many([(station_id, direction, text, at)])

    def log_many(self, frames: Sequence[tuple[str, str, str, datetime]]) -> asyncio.Future[None]:
        """Log frames ``(station_id, direction, text, at)`` as one write: the gateway
        hands over hundreds at a time, and one future for all of them is what it waits on."""
        to_time = self._db.form.time
        try:
            rows = [(sid, to_time(at), direction, text) for sid, direction, text, at in frames]
        except Exception as exc:
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed
        sql = self._sql

        def op(conn: Connection) -> None:
            defer_rows(conn, sql, rows)

        return self._db.enqueue(op)

    def append(
        self, station_id: str, direction: str, text: str, at: datetime
    ) -> asyncio.Future[None]:
        """Log one frame with the open write (see the module); the future completes once
        its commit does. Shared by all the rows of the write: never cancel it (wait with
        ``asyncio.wait`` or ``asyncio.shield``)."""
        if "\x00" in text:  # only in a malformed frame; PostgreSQL's text cannot hold it
            text = text.replace("\x00", "\ufffd")
        row = (station_id, self._db.form.time(at), direction, text)
        self.pending += 1
        with self._seal:
            open_ = self._open
            future = None if open_ is None or open_.sealed else open_.future
            if future is not None and not future.done():
                open_.rows.append(row)  # type: ignore[union-attr]
                return future
        open_ = _OpenWrite(row)
        sql = self._sql

        def op(conn: Connection) -> None:
            with self._seal:
                open_.sealed = True
            defer_rows(conn, sql, open_.rows)

        future = self._db.enqueue(op)
        open_.future = future
        future.add_done_callback(lambda done: self._committed(open_, done))
        self._open = open_
        self.last = future
        return future

    def _committed(self, write: _OpenWrite, future: asyncio.Future[None]) -> None:
        with self._seal:
            write.sealed = True  # failed before it ran: take no more rows
        if self._open is write:
            self._open = None
        self.pending -= len(write.rows)
        failure = None if future.cancelled() else future.exception()
        if failure is not None:
            log.warning("could not log %d frames: %s", len(write.rows), failure)
        waiters, self._room = self._room, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_for_room(self, limit: int) -> None:
        """Return once fewer than ``limit`` appended rows wait for their commit."""
        while self.pending >= limit:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._room.append(waiter)
            await waiter

    async def delete_before(self, cutoff: datetime, *, batch: int = 5000) -> int:
        """Delete log rows older than ``cutoff`` among the ``batch`` oldest (by id): one
        short write that reads the primary key only, no index on ``at`` to keep up on the
        busiest table. Retention calls it until it deletes none: rows are logged in time
        order, so the old ones are at the head. The rows deleted."""
        head = s.messages.alias("head")  # not correlated with the DELETE's own table
        oldest = select(head.c.id).order_by(head.c.id).limit(batch)
        query = delete(s.messages).where(s.messages.c.id.in_(oldest), s.messages.c.at < cutoff)

        def op(conn: Connection) -> int:
            return int(conn.execute(query).rowcount)

        return await self._db.write(op)

    # last: below it, ``list`` in an annotation would name this method
    async def list(
        self, station_id: str, *, limit: int = 50, before_id: int | None = None
    ) -> list[MessageRecord]:
        """Newest first; the next page is ``before_id=<the last id of this one>``."""

        def read(conn: Connection) -> list[MessageRecord]:
            query = select(s.messages).where(s.messages.c.station_id == station_id)
            if before_id is not None:
                query = query.where(s.messages.c.id < before_id)
            rows = conn.execute(query.order_by(s.messages.c.id.desc()).limit(limit))
            return [
                MessageRecord(
                    id=row.id,
                    station_id=row.station_id,
                    at=row.at,
                    direction=row.direction,
                    text=row.text,
                )
                for row in rows
            ]

        return await self._db.read(read)
