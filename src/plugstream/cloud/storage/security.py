"""The security events table: what stations reported, and the connections the gateway refused.

``source`` is "station" for a SecurityEventNotification (1.6 security extension, 2.0.1
A04) and "gateway" for a refusal (1.6 whitepaper A00.FR.323 / A00.FR.408: the CSMS logs
a security event when it terminates a connection for a security reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from . import schema as s
from .coltypes import as_utc
from .database import Database

__all__ = [
    "SecurityEventRecord",
    "SecurityEvents",
    "Source",
]

Source = Literal["station", "gateway"]
MAX_TYPE = 50  # the column width (SecurityEventNotification: string[0..50])


@dataclass(frozen=True, slots=True)
class SecurityEventRecord:
    id: int
    station_id: str
    type: str
    timestamp: datetime  # station events: the station's timestamp; refusals: when refused
    tech_info: str | None
    source: str


class SecurityEvents:
    """The security events' rows."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_event(
        self, station_id: str, type: str, at: datetime, tech_info: str | None, source: Source
    ) -> None:
        """Keep one event, durably before returning (before the station gets its answer)."""
        values = {
            "station_id": station_id[:255],
            "type": type[:MAX_TYPE],
            "at": as_utc(at),
            "tech_info": tech_info,
            "source": source,
        }

        def op(conn: Connection) -> None:
            conn.execute(insert(s.security_events).values(**values))

        await self._db.write(op)

    async def list_events(
        self, *, station_id: str | None = None, limit: int = 100
    ) -> list[SecurityEventRecord]:
        """Both sources, newest first (by id: the order they were stored in)."""
        t = s.security_events
        query = select(t.c.id, t.c.station_id, t.c.type, t.c.at, t.c.tech_info, t.c.source)
        if station_id is not None:
            query = query.where(t.c.station_id == station_id)
        query = query.order_by(t.c.id.desc()).limit(limit)

        def op(conn: Connection) -> list[SecurityEventRecord]:
            return [
                SecurityEventRecord(
                    int(row.id),
                    str(row.station_id),
                    str(row.type),
                    as_utc(row.at),
                    row.tech_info,
                    str(row.source),
                )
                for row in conn.execute(query)
            ]

        return await self._db.read(op)
