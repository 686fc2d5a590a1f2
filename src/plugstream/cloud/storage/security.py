"""The security events table: what stations reported, and the connections the gateway refused.

``source`` is "station" for a SecurityEventNotification (1.6 security extension, 2.0.1
A04) and "gateway" for a refusal (1.6 whitepaper A00.FR.323 / A00.FR.408: the CSMS logs
a security event when it terminates a connection for a security reason).

A station's event is its own row, always: the station was told it is kept. A refusal is
the cloud's own observation, and a hostile network can make millions of them, so
refusals are *aggregated*: one row per (station id, peer address, event type), counted,
with its first and last time and the latest tech info, written with one upsert. And
*capped*: past ``max_refusals`` rows the ones least worth keeping go -- those of ids
that are no registered station first, oldest ``last_seen`` first, and only then a
known station's -- so a flood of made-up ids cannot push a real station's refusals out.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import bindparam, case, delete, exists, func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from . import schema as s
from .coltypes import as_utc
from .database import Database

__all__ = [
    "MAX_REFUSALS",
    "SecurityEventRecord",
    "SecurityEvents",
    "Source",
]

Source = Literal["station", "gateway"]
MAX_TYPE = 50  # the column width (SecurityEventNotification: string[0..50])
MAX_ADDRESS = 64  # the column width: an IPv6 address with its zone fits
#: refusal rows kept at most, by default (a few tens of MB at most)
MAX_REFUSALS = 100_000

_T = s.security_events
_REFUSAL = _T.c.source == "gateway"


@dataclass(frozen=True, slots=True)
class SecurityEventRecord:
    id: int
    station_id: str
    type: str
    timestamp: datetime  # station events: the station's timestamp; refusals: the latest
    tech_info: str | None
    source: str
    count: int = 1  # refusals: how many; a station's event: 1
    first_seen: datetime | None = None  # refusals: the first; station events: = timestamp
    last_seen: datetime | None = None  # refusals: the latest; station events: = timestamp
    address: str = ""  # the refused peer's address; "" when not known


def _next_seq() -> Any:
    """The next write's place in "newest first": one more than the last (the writer runs
    one operation at a time, so it is unique on one node)."""
    return select(func.coalesce(func.max(_T.c.seq), 0) + 1).scalar_subquery()


_NAMES = ("station_id", "type", "at", "last_seen", "tech_info", "source", "address", "count")
#: the statements' values: bound parameters named as the columns, and the next seq
_VALUES = {**{name: bindparam(name, type_=_T.c[name].type) for name in _NAMES}, "seq": _next_seq()}
#: a station's event; built once (building a statement costs more than running it)
_INSERT = insert(_T).values(_VALUES)


@functools.cache
def _upsert(dialect: str) -> Any:
    """A refusal's upsert, built once per dialect."""
    ins = (pg_insert if dialect == "postgresql" else sqlite_insert)(_T).values(_VALUES)
    return ins.on_conflict_do_update(
        index_elements=[_T.c.station_id, _T.c.address, _T.c.type],
        # as text: PostgreSQL matches the partial index only by a literal predicate
        index_where=text("source = 'gateway'"),
        set_={
            "count": _T.c.count + 1,
            "last_seen": case(
                (ins.excluded.last_seen > _T.c.last_seen, ins.excluded.last_seen),
                else_=_T.c.last_seen,
            ),
            "tech_info": ins.excluded.tech_info,
            "seq": ins.excluded.seq,
        },
    ).returning(_T.c.count)


class SecurityEvents:
    """The security events' rows."""

    def __init__(self, db: Database, *, max_refusals: int = MAX_REFUSALS) -> None:
        self._db = db
        #: refusal rows kept at most (``CloudConfig.max_refusal_rows``); at least 1
        self.max_refusals = max_refusals
        # refusal rows, as last counted plus those added since (None: not counted yet).
        # Only the writer's operations touch it, one at a time.
        self._refusals: int | None = None

    async def add_event(
        self,
        station_id: str,
        type: str,
        at: datetime,
        tech_info: str | None,
        source: Source,
        *,
        address: str | None = None,
    ) -> None:
        """Keep one event, durably before returning (before the station gets its answer).
        A refusal (source "gateway") adds to its (station id, address, type) row."""
        at = as_utc(at)
        values: dict[str, Any] = {
            "station_id": station_id[:255],
            "type": type[:MAX_TYPE],
            "at": at,
            "last_seen": at,
            "tech_info": tech_info,
            "source": source,
            "address": (address or "")[:MAX_ADDRESS],
            "count": 1,
        }
        if source != "gateway":

            def keep(conn: Connection) -> None:
                conn.execute(_INSERT, values)

            await self._db.write(keep)
            return

        def count(conn: Connection) -> None:
            if conn.execute(_upsert(conn.dialect.name), values).scalar_one() == 1:  # new
                self._added(conn)

        await self._db.write(count)

    def _added(self, conn: Connection) -> None:
        if self._refusals is not None:
            self._refusals += 1
        if self._refusals is None or self._refusals > self.max_refusals:
            self._refusals = _trim(conn, self.max_refusals)

    async def trim(self) -> int:
        """Hold the refusals to ``max_refusals`` rows now (other nodes add rows this one
        does not count; the retention task calls this); the rows deleted."""

        def op(conn: Connection) -> int:
            before = _count_refusals(conn)
            self._refusals = _trim(conn, self.max_refusals, before)
            return before - self._refusals

        return await self._db.write(op)

    async def delete_refusals_before(self, cutoff: datetime, *, batch: int = 1000) -> int:
        """Delete at most ``batch`` refusal rows last seen before ``cutoff`` (one short
        write: the retention task calls it until it returns less than ``batch``). A
        station's own events are never deleted here."""
        e = _T.alias("e")  # not correlated with the DELETE's own table
        old = (
            select(e.c.id)
            .where(e.c.source == "gateway", e.c.last_seen < as_utc(cutoff))
            .limit(batch)
        )

        def op(conn: Connection) -> int:
            deleted = int(conn.execute(delete(_T).where(_T.c.id.in_(old))).rowcount)
            if self._refusals is not None:
                self._refusals = max(0, self._refusals - deleted)
            return deleted

        return await self._db.write(op)

    async def list_events(
        self, *, station_id: str | None = None, limit: int = 100
    ) -> list[SecurityEventRecord]:
        """Both sources, newest first: in the order of their last write (a refusal that
        happens again comes back to the top), never by a station's own clock."""
        query = select(
            _T.c.id,
            _T.c.station_id,
            _T.c.type,
            _T.c.at,
            _T.c.last_seen,
            _T.c.tech_info,
            _T.c.source,
            _T.c.count.label("n"),  # not Row.count, the tuple's method
            _T.c.address,
        )
        if station_id is not None:
            query = query.where(_T.c.station_id == station_id)
        query = query.order_by(_T.c.seq.desc(), _T.c.id.desc()).limit(limit)

        def op(conn: Connection) -> list[SecurityEventRecord]:
            return [
                SecurityEventRecord(
                    int(row.id),
                    str(row.station_id),
                    str(row.type),
                    as_utc(row.last_seen if row.source == "gateway" else row.at),
                    row.tech_info,
                    str(row.source),
                    count=int(row.n),
                    first_seen=as_utc(row.at),
                    last_seen=as_utc(row.last_seen),
                    address=str(row.address),
                )
                for row in conn.execute(query)
            ]

        return await self._db.read(op)


def _count_refusals(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(_T).where(_REFUSAL)).scalar_one())


def _trim(conn: Connection, cap: int, rows: int | None = None) -> int:
    """Delete refusal rows beyond ``cap``, and a twentieth of it more, so that the next
    trim is that many new rows away (one sort per many rows, not one per row): first
    those of ids that are no registered station, then a known station's, oldest
    ``last_seen`` first. The refusal rows left."""
    cap = max(1, cap)
    if rows is None:
        rows = _count_refusals(conn)
    if rows <= cap:
        return rows
    excess = rows - cap + cap // 20
    e = _T.alias("e")  # not correlated with the DELETE's own table
    known = exists().where(s.stations.c.station_id == e.c.station_id)
    victims = (
        select(e.c.id)
        .where(e.c.source == "gateway")
        .order_by(case((known, 1), else_=0), e.c.last_seen, e.c.id)
        .limit(excess)
    )
    deleted = int(conn.execute(delete(_T).where(_T.c.id.in_(victims))).rowcount)
    return rows - deleted
