"""Firmware published on Local Controllers (L03): each PublishFirmware the cloud sent,
per (station, requestId), with the last PublishFirmwareStatusNotification about it.

Its requestId is the station's next, as :mod:`.report_requests` hands them out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from . import schema as s
from .coltypes import as_utc
from .database import Database
from .report_requests import (
    create_request,
    find_request,
    last_request_id,
    newest_requests,
    request_key,
)

__all__ = ["FirmwarePublication", "FirmwarePublications"]

_T = s.firmware_publications


@dataclass(frozen=True, slots=True)
class FirmwarePublication:
    station_id: str
    request_id: int
    image_id: str | None
    location: str
    checksum: str
    status: str  # Requested, then PublishFirmware's answer, then the last notification
    published_locations: list[str]
    requested_at: datetime
    updated_at: datetime


def _row(row: Any) -> FirmwarePublication:
    return FirmwarePublication(
        station_id=row.station_id,
        request_id=int(row.request_id),
        image_id=row.image_id,
        location=row.location,
        checksum=row.checksum,
        status=row.status,
        published_locations=json.loads(row.published_locations or "[]"),
        requested_at=as_utc(row.requested_at),
        updated_at=as_utc(row.updated_at),
    )


class FirmwarePublications:
    """PublishFirmware requests and their progress."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        station_id: str,
        *,
        image_id: str | None,
        location: str,
        checksum: str,
        status: str,
        at: datetime,
    ) -> FirmwarePublication:
        """A new publication with the station's next requestId, kept before it is sent."""

        def op(conn: Connection) -> FirmwarePublication:
            request_id = create_request(
                conn,
                _T,
                station_id,
                image_id=image_id,
                location=location,
                checksum=checksum,
                status=status,
                published_locations=None,
                requested_at=at,
                updated_at=at,
            )
            return FirmwarePublication(
                station_id, request_id, image_id, location, checksum, status, [], at, at
            )

        return await self._db.write(op)

    async def record_status(
        self,
        station_id: str,
        request_id: int | None,
        status: str,
        at: datetime,
        locations: list[str] | None = None,
    ) -> FirmwarePublication | None:
        """Move the publication of ``request_id`` (without one: the station's newest) to
        ``status``; None when there is none to move."""

        def op(conn: Connection) -> FirmwarePublication | None:
            rid = last_request_id(conn, _T, station_id) if request_id is None else request_id
            if rid is None:
                return None
            where = request_key(_T, station_id, rid)
            values: dict[str, Any] = {"status": status, "updated_at": at}
            if locations is not None:
                values["published_locations"] = json.dumps(locations)
            if conn.execute(update(_T).where(where).values(**values)).rowcount == 0:
                return None
            row = conn.execute(select(_T).where(where)).first()
            return _row(row) if row is not None else None

        return await self._db.write(op)

    async def of_station(self, station_id: str, limit: int = 50) -> list[FirmwarePublication]:
        def fn(conn: Connection) -> list[FirmwarePublication]:
            return [_row(r) for r in conn.execute(newest_requests(_T, station_id, limit))]

        return await self._db.read(fn)

    async def get(self, station_id: str, request_id: int) -> FirmwarePublication | None:
        def fn(conn: Connection) -> FirmwarePublication | None:
            row = find_request(conn, _T, station_id, request_id)
            return _row(row) if row is not None else None

        return await self._db.read(fn)
