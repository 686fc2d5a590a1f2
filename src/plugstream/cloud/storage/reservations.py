"""Reservations (2.0.1 H01-H04): every ReserveNow the cloud sends, and what became of it.

A row is written before the ReserveNow goes out, with status ``Pending``: its
autoincremented key is the ReserveNow ``id``, so no two reservations share one, and a
call that gets no answer is still on record. The answer (Accepted, Faulted, Occupied,
Rejected, Unavailable; NoAnswer, CallError) replaces ``Pending``; later a
ReservationStatusUpdate (Expired, Removed), a CancelReservation (Cancelled) or a
TransactionEvent naming the reservation (Used, H01.FR.15) ends it.

What is stored is what was reported. What is *shown* (:func:`shown_status`) also
counts the cloud's clock: an Accepted reservation past its expiry is Expired even
before the station says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from . import schema as s
from .coltypes import as_utc
from .database import Database

__all__ = [
    "ACTIVE",
    "PENDING",
    "ReservationRecord",
    "Reservations",
    "shown_status",
]

#: stored before the ReserveNow is sent
PENDING = "Pending"
#: statuses of a reservation that holds an EVSE until its expiry
ACTIVE = frozenset({PENDING, "Accepted"})
EXPIRED = "Expired"

_T = s.reservations


def shown_status(status: str, expiry: datetime, now: datetime) -> str:
    """The status an operator sees: an active reservation past its expiry has expired,
    whether or not the station has told us yet (it may be offline)."""
    if status in ACTIVE and as_utc(now) >= as_utc(expiry):
        return EXPIRED
    return status


@dataclass(frozen=True, slots=True)
class ReservationRecord:
    reservation_id: int
    station_id: str
    evse_id: int | None
    id_token: str
    id_token_type: str
    group_id_token: str | None
    expiry: datetime
    status: str  # as stored: see shown_status for what to show
    transaction_id: str | None
    created_at: datetime
    updated_at: datetime

    def status_at(self, now: datetime) -> str:
        return shown_status(self.status, self.expiry, now)


def _record(row: Any) -> ReservationRecord:
    return ReservationRecord(
        reservation_id=int(row.reservation_id),
        station_id=row.station_id,
        evse_id=None if row.evse_id is None else int(row.evse_id),
        id_token=row.id_token,
        id_token_type=row.id_token_type,
        group_id_token=row.group_id_token,
        expiry=as_utc(row.expiry),
        status=row.status,
        transaction_id=row.transaction_id,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


def _get(conn: Connection, reservation_id: int) -> ReservationRecord | None:
    row = conn.execute(select(_T).where(_T.c.reservation_id == reservation_id)).first()
    return None if row is None else _record(row)


class Reservations:
    """The reservations' rows."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        station_id: str,
        *,
        evse_id: int | None,
        id_token: str,
        id_token_type: str,
        group_id_token: str | None,
        expiry: datetime,
        at: datetime,
    ) -> ReservationRecord:
        """A new Pending reservation, durably, with the id its ReserveNow is to carry."""
        values = {
            "station_id": station_id,
            "evse_id": evse_id,
            "id_token": id_token,
            "id_token_type": id_token_type,
            "group_id_token": group_id_token,
            "expiry": as_utc(expiry),
            "status": PENDING,
            "transaction_id": None,
            "created_at": as_utc(at),
            "updated_at": as_utc(at),
        }

        def add(conn: Connection) -> ReservationRecord:
            key = conn.execute(
                insert(_T).values(values).returning(_T.c.reservation_id)
            ).scalar_one()
            found = _get(conn, int(key))
            assert found is not None
            return found

        return await self._db.write(add)

    async def set_status(
        self,
        reservation_id: int,
        status: str,
        at: datetime,
        *,
        station_id: str | None = None,
        transaction_id: str | None = None,
        if_status: str | None = None,
    ) -> ReservationRecord | None:
        """Record what the station answered or reported; None when there is no such
        reservation (of ``station_id``, when given: a station speaks only of its own;
        with ``if_status``, in that status: an answer does not undo a later update)."""
        where = [_T.c.reservation_id == reservation_id]
        if station_id is not None:
            where.append(_T.c.station_id == station_id)
        if if_status is not None:
            where.append(_T.c.status == if_status)
        values: dict[str, Any] = {"status": status[:32], "updated_at": as_utc(at)}
        if transaction_id is not None:
            values["transaction_id"] = transaction_id[:36]

        def change(conn: Connection) -> ReservationRecord | None:
            if conn.execute(update(_T).where(*where).values(values)).rowcount == 0:
                return None
            return _get(conn, reservation_id)

        return await self._db.write(change)

    async def get(self, reservation_id: int) -> ReservationRecord | None:
        return await self._db.read(lambda conn: _get(conn, reservation_id))

    async def list_reservations(
        self, *, station_id: str | None = None, limit: int = 100, before: int | None = None
    ) -> list[ReservationRecord]:
        """Newest first; ``before``: only those with a smaller id (the next page)."""
        query = select(_T).order_by(_T.c.reservation_id.desc()).limit(limit)
        if station_id is not None:
            query = query.where(_T.c.station_id == station_id)
        if before is not None:
            query = query.where(_T.c.reservation_id < before)

        def read(conn: Connection) -> list[ReservationRecord]:
            return [_record(row) for row in conn.execute(query)]

        return await self._db.read(read)
