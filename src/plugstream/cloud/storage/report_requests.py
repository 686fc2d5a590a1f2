"""A request the CSMS sent and the station answers in numbered parts, stored the one way.

GetBaseReport / GetReport (NotifyReport), GetMonitoringReport (NotifyMonitoringReport),
CustomerInformation (NotifyCustomerInformation), GetDisplayMessages and
GetChargingProfiles each carry a ``requestId``, the CALLRESULT says whether the station
will report, and the report comes in parts (``tbc`` true until the last; ``seqNo`` from 0
where the message has one). GetLog and PublishFirmware take their requestIds the same
way. Each repository keeps its own tables and columns (the schema differs per block);
these functions are the logic they share, SQLAlchemy Core run inside a repository's
``op(conn)``.

The writer runs one operation at a time, so a ``max + 1`` requestId taken inside one is
never handed out twice. The row is written before the CALL goes out, because the first
part may arrive before its CALLRESULT is read: the answer then must not undo the parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, Table, and_, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from .database import dialect_insert

__all__ = [
    "COMPLETE",
    "INCOMPLETE",
    "RECEIVING",
    "REQUESTED",
    "add_part",
    "count_parts",
    "create_request",
    "find_or_add",
    "find_request",
    "last_request_id",
    "newest_requests",
    "record_answer",
    "report_status",
    "request_key",
]

#: a request sent, its answer not recorded yet
REQUESTED = "Requested"
#: parts are coming (tbc true)
RECEIVING = "Receiving"
#: the part with ``tbc`` false and every part before it are in
COMPLETE = "Complete"
#: the last part came, but not every part before it
INCOMPLETE = "Incomplete"


def request_key(table: Table, station_id: str, request_id: int) -> ColumnElement[bool]:
    """The row of one request: requestIds are per station."""
    return and_(table.c.station_id == station_id, table.c.request_id == request_id)


def last_request_id(conn: Connection, table: Table, station_id: str) -> int | None:
    """The station's newest requestId in ``table``; None before its first."""
    last = conn.execute(
        select(func.max(table.c.request_id)).where(table.c.station_id == station_id)
    ).scalar()
    return None if last is None else int(last)


def create_request(
    conn: Connection,
    table: Table,
    station_id: str,
    *,
    first: int = 1,
    status: str = REQUESTED,
    **values: Any,
) -> int:
    """Keep a request about to be sent with the station's next requestId (``first`` for
    its first one), ``status`` and the row's other ``values``; the requestId."""
    last = last_request_id(conn, table, station_id)
    request_id = first if last is None else last + 1
    row = {"station_id": station_id, "request_id": request_id, "status": status, **values}
    conn.execute(insert(table).values(row))
    return request_id


def record_answer(
    conn: Connection,
    table: Table,
    key: ColumnElement[bool],
    status: str,
    *,
    waiting: str = REQUESTED,
    **values: Any,
) -> None:
    """The station's answer (or NoAnswer, CallError), kept only while the request is still
    ``waiting``: a part that came before the CALLRESULT was read has moved it on."""
    conn.execute(
        update(table).where(key, table.c.status == waiting).values(status=status[:32], **values)
    )


def find_request(
    conn: Connection, table: Table, station_id: str, request_id: int
) -> Row[Any] | None:
    """The request's row, None when there is none."""
    return conn.execute(select(table).where(request_key(table, station_id, request_id))).first()


def find_or_add(
    conn: Connection, table: Table, station_id: str, request_id: int, **unasked: Any
) -> Row[Any]:
    """The request's row. A part of a request the cloud did not send (another tool's
    requestId) gets one made of ``unasked``: the station sent it, so it is kept."""
    query = select(table).where(request_key(table, station_id, request_id))
    row = conn.execute(query).first()
    if row is None:
        conn.execute(insert(table).values(station_id=station_id, request_id=request_id, **unasked))
        row = conn.execute(query).one()
    return row


def report_status(parts: int, final_seq_no: int | None) -> str:
    """Receiving until the last part (``tbc`` false) is in; then Complete when every
    part 0 .. its seqNo came (seqNo counts from 0), else Incomplete."""
    if final_seq_no is None:
        return RECEIVING
    return COMPLETE if parts >= final_seq_no + 1 else INCOMPLETE


def add_part(
    conn: Connection,
    parts: Table,
    station_id: str,
    request_id: int,
    *,
    seq_no: int,
    tbc: bool,
    **values: Any,
) -> list[Row[Any]] | None:
    """Keep one part, with its other ``values``, in a table of one row per (station,
    requestId, seqNo), a part sent again replacing itself; every part in seqNo order once
    the report is complete (the part with ``tbc`` false and each seqNo from 0 up to it),
    else None."""
    part = {"station_id": station_id, "request_id": request_id, "seq_no": seq_no, "tbc": tbc}
    ins = dialect_insert(conn, parts).values({**part, **values})
    conn.execute(
        ins.on_conflict_do_update(
            index_elements=["station_id", "request_id", "seq_no"],
            set_={k: ins.excluded[k] for k in ("tbc", *values)},
        )
    )
    key = request_key(parts, station_id, request_id)
    rows = conn.execute(select(parts).where(key).order_by(parts.c.seq_no)).all()
    final = next((int(r.seq_no) for r in rows if not r.tbc), None)
    if final is None:
        return None
    wanted = [r for r in rows if r.seq_no <= final]
    return wanted if [r.seq_no for r in wanted] == list(range(final + 1)) else None


def count_parts(
    conn: Connection, parts: Table, station_id: str, request_ids: Sequence[int]
) -> dict[int, int]:
    """How many parts of each request are in (a request with none is absent)."""
    if not request_ids:
        return {}
    rows = conn.execute(
        select(parts.c.request_id, func.count())
        .where(parts.c.station_id == station_id, parts.c.request_id.in_(list(request_ids)))
        .group_by(parts.c.request_id)
    )
    return {int(r[0]): int(r[1]) for r in rows}


def newest_requests(table: Table, station_id: str, limit: int) -> Select[Any]:
    """The station's requests, newest requestId first."""
    return (
        select(table)
        .where(table.c.station_id == station_id)
        .order_by(table.c.request_id.desc())
        .limit(limit)
    )
