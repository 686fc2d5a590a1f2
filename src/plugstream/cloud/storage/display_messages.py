"""Display messages (2.0.1 O01-O06): what each station shows its drivers, as the CSMS set
it and as the station reported it.

A SetDisplayMessage is kept as ``Pending`` before it is sent, then with its answer
(Accepted, NotSupportedMessageFormat, Rejected, NotSupportedPriority, NotSupportedState,
UnknownTransaction). A GetDisplayMessages is a request row (its key is the
``requestId``); its NotifyDisplayMessages parts (``tbc`` true until the last, O03.FR.05)
are stored as they come, each message keyed by (station, id) so a later report
replaces an earlier one. When the last part of a report of *all* messages arrives, the
messages that it did not name are gone from the station, and so from here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from . import schema as s
from .coltypes import as_utc
from .database import Database, dialect_insert
from .report_requests import COMPLETE, record_answer

__all__ = [
    "COMPLETE",
    "PENDING",
    "REPORTED",
    "DisplayMessageRecord",
    "DisplayMessageRequest",
    "DisplayMessages",
]

PENDING = "Pending"
ACCEPTED = "Accepted"
#: a message the station listed in a NotifyDisplayMessages that the CSMS had not set
REPORTED = "Reported"

_M = s.display_messages
_R = s.display_message_requests


@dataclass(frozen=True, slots=True)
class DisplayMessageRecord:
    station_id: str
    message_id: int
    priority: str
    state: str | None
    info: dict[str, Any]  # the MessageInfoType as sent or reported
    status: str
    request_id: int | None  # the GetDisplayMessages that last reported it
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class DisplayMessageRequest:
    request_id: int
    station_id: str
    criteria: dict[str, Any]  # id / priority / state asked for; {} for all
    status: str  # Pending, the answer (Accepted, Unknown; NoAnswer, CallError), Complete
    parts: int
    requested_at: datetime
    updated_at: datetime


def _message(row: Any) -> DisplayMessageRecord:
    return DisplayMessageRecord(
        station_id=row.station_id,
        message_id=int(row.message_id),
        priority=row.priority,
        state=row.state,
        info=json.loads(row.info),
        status=row.status,
        request_id=None if row.request_id is None else int(row.request_id),
        updated_at=as_utc(row.updated_at),
    )


def _request(row: Any) -> DisplayMessageRequest:
    return DisplayMessageRequest(
        request_id=int(row.request_id),
        station_id=row.station_id,
        criteria=json.loads(row.criteria),
        status=row.status,
        parts=int(row.parts),
        requested_at=as_utc(row.requested_at),
        updated_at=as_utc(row.updated_at),
    )


def _columns(info: Mapping[str, Any]) -> dict[str, Any]:
    state = info.get("state")
    return {
        "priority": str(info.get("priority", ""))[:16],
        "state": str(state)[:16] if state is not None else None,
        "info": json.dumps(dict(info), separators=(",", ":"), sort_keys=True),
    }


def _upsert(
    conn: Connection, station_id: str, info: Mapping[str, Any], values: dict[str, Any]
) -> None:
    row = {"station_id": station_id, "message_id": int(info["id"]), **_columns(info), **values}
    ins = dialect_insert(conn, _M).values(row)
    conn.execute(
        ins.on_conflict_do_update(
            index_elements=[_M.c.station_id, _M.c.message_id],
            set_={k: ins.excluded[k] for k in row if k not in ("station_id", "message_id")},
        )
    )


def _get_request(conn: Connection, request_id: int) -> DisplayMessageRequest | None:
    row = conn.execute(select(_R).where(_R.c.request_id == request_id)).first()
    return None if row is None else _request(row)


class DisplayMessages:
    """The display messages' and their requests' rows."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- SetDisplayMessage / ClearDisplayMessage

    async def set_pending(self, station_id: str, info: Mapping[str, Any], at: datetime) -> None:
        """Keep a message about to be sent in a SetDisplayMessage (replacing one with its
        id, as the station will, O06)."""

        def keep(conn: Connection) -> None:
            _upsert(conn, station_id, info, {"status": PENDING, "updated_at": as_utc(at)})

        await self._db.write(keep)

    async def set_status(
        self, station_id: str, message_id: int, status: str, at: datetime
    ) -> DisplayMessageRecord | None:
        """The station's answer to the SetDisplayMessage of ``message_id``."""

        def change(conn: Connection) -> DisplayMessageRecord | None:
            where = (_M.c.station_id == station_id, _M.c.message_id == message_id)
            values = {"status": status[:32], "updated_at": as_utc(at)}
            if conn.execute(update(_M).where(*where).values(values)).rowcount == 0:
                return None
            row = conn.execute(select(_M).where(*where)).first()
            return None if row is None else _message(row)

        return await self._db.write(change)

    async def remove(self, station_id: str, message_id: int) -> bool:
        """The station cleared ``message_id`` (ClearDisplayMessage Accepted)."""

        def drop(conn: Connection) -> bool:
            where = (_M.c.station_id == station_id, _M.c.message_id == message_id)
            return bool(conn.execute(delete(_M).where(*where)).rowcount)

        return await self._db.write(drop)

    async def get(self, station_id: str, message_id: int) -> DisplayMessageRecord | None:
        def read(conn: Connection) -> DisplayMessageRecord | None:
            where = (_M.c.station_id == station_id, _M.c.message_id == message_id)
            row = conn.execute(select(_M).where(*where)).first()
            return None if row is None else _message(row)

        return await self._db.read(read)

    async def list_messages(self, station_id: str) -> list[DisplayMessageRecord]:
        query = select(_M).where(_M.c.station_id == station_id).order_by(_M.c.message_id)

        def read(conn: Connection) -> list[DisplayMessageRecord]:
            return [_message(row) for row in conn.execute(query)]

        return await self._db.read(read)

    # -- GetDisplayMessages / NotifyDisplayMessages

    async def new_request(
        self, station_id: str, criteria: Mapping[str, Any], at: datetime
    ) -> DisplayMessageRequest:
        """A Pending GetDisplayMessages, durably, with the requestId it is to carry."""
        values = {
            "station_id": station_id,
            "criteria": json.dumps(dict(criteria), separators=(",", ":"), sort_keys=True),
            "status": PENDING,
            "parts": 0,
            "requested_at": as_utc(at),
            "updated_at": as_utc(at),
        }

        def add(conn: Connection) -> DisplayMessageRequest:
            key = conn.execute(insert(_R).values(values).returning(_R.c.request_id)).scalar_one()
            found = _get_request(conn, int(key))
            assert found is not None
            return found

        return await self._db.write(add)

    async def request_answered(self, request_id: int, status: str, at: datetime) -> None:
        """The GetDisplayMessages answer, kept only while the request is Pending: a report
        already complete stays Complete (the station may send its NotifyDisplayMessages
        before its answer is read)."""

        def change(conn: Connection) -> None:
            key = _R.c.request_id == request_id  # requestIds are the cloud's, not per station
            record_answer(conn, _R, key, status, waiting=PENDING, updated_at=as_utc(at))

        await self._db.write(change)

    async def report(
        self,
        station_id: str,
        request_id: int,
        messages: Sequence[Mapping[str, Any]],
        *,
        tbc: bool,
        at: datetime,
    ) -> DisplayMessageRequest | None:
        """One NotifyDisplayMessages part; the request as it now stands (None when the
        cloud sent no such request to this station: the messages are kept all the same)."""
        at = as_utc(at)

        def keep(conn: Connection) -> DisplayMessageRequest | None:
            for info in messages:
                old = conn.execute(
                    select(_M.c.status).where(
                        _M.c.station_id == station_id, _M.c.message_id == int(info["id"])
                    )
                ).scalar_one_or_none()
                status = ACCEPTED if old in (ACCEPTED, PENDING) else REPORTED
                _upsert(
                    conn,
                    station_id,
                    info,
                    {"status": status, "request_id": request_id, "updated_at": at},
                )
            request = _get_request(conn, request_id)
            if request is None or request.station_id != station_id:
                return None
            progress: dict[str, Any] = {"parts": _R.c.parts + 1, "updated_at": at}
            if not tbc:
                progress["status"] = COMPLETE
                if not request.criteria:  # a report of all: the unnamed ones are gone
                    conn.execute(
                        delete(_M).where(
                            _M.c.station_id == station_id,
                            _M.c.status.in_((ACCEPTED, REPORTED)),
                            (_M.c.request_id.is_(None)) | (_M.c.request_id != request_id),
                        )
                    )
            conn.execute(update(_R).where(_R.c.request_id == request_id).values(progress))
            return _get_request(conn, request_id)

        return await self._db.write(keep)

    async def get_request(self, request_id: int) -> DisplayMessageRequest | None:
        return await self._db.read(lambda conn: _get_request(conn, request_id))

    async def reported(self, station_id: str, request_id: int) -> list[DisplayMessageRecord]:
        """The messages that the parts of ``request_id`` named."""
        query = (
            select(_M)
            .where(_M.c.station_id == station_id, _M.c.request_id == request_id)
            .order_by(_M.c.message_id)
        )

        def read(conn: Connection) -> list[DisplayMessageRecord]:
            return [_message(row) for row in conn.execute(query)]

        return await self._db.read(read)
