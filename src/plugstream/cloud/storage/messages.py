"""The message log: every OCPP-J frame to and from a station, as on the wire.

The log is the busiest write of all (two frames for every message a station exchanges),
so its rows are converted once to their stored form and handed to the writer as
deferred rows: one ``executemany`` for all the frames of a batch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from . import schema as s
from .bulk import BulkInsert
from .database import Database
from .records import MessageRecord
from .writer import defer_rows

__all__ = ["MessageLog"]

_MESSAGES = BulkInsert(s.messages, ("station_id", "at", "direction", "text"))


class MessageLog:
    """The message log's rows."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._sql = _MESSAGES.sql(db.dialect)

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
