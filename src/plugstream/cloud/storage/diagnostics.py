"""Diagnostics (2.0.1 block N): each station's variable monitors, its monitoring reports,
its log uploads and the customer information it reported.

Each request is kept as :mod:`.report_requests` keeps one (requestIds count from 1).
A station's multi-part answers (NotifyMonitoringReport, NotifyCustomerInformation) are
kept part by part as they arrive (N02.FR.09: seqNo counts from 0 per report), so a
connection lost half way loses nothing acknowledged; a report is complete once the part
with ``tbc`` false and every part before it are in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, Table, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from . import schema as s
from .coltypes import as_utc
from .database import Database
from .report_requests import (
    COMPLETE,
    REQUESTED,
    add_part,
    count_parts,
    create_request,
    find_or_add,
    find_request,
    newest_requests,
    record_answer,
    request_key,
)

__all__ = [
    "COMPLETE",
    "REQUESTED",
    "CustomerInformationRecord",
    "Diagnostics",
    "LogRequestRecord",
    "MonitorRecord",
    "MonitoringReportRecord",
]

_M = s.variable_monitors
_R = s.monitoring_reports
_RP = s.monitoring_report_parts
_L = s.log_requests
_C = s.customer_information
_CP = s.customer_information_parts


@dataclass(frozen=True, slots=True)
class MonitorRecord:
    """One VariableMonitoringType with the component and variable it watches."""

    monitor_id: int
    component_name: str
    variable_name: str
    type: str
    value: Decimal
    severity: int
    transaction: bool = False
    component_instance: str | None = None
    evse_id: int | None = None
    connector_id: int | None = None
    variable_instance: str | None = None
    source: str = "set"  # "set": accepted by SetVariableMonitoring; "report": reported
    request_id: int | None = None
    updated_at: datetime | None = None

    def component(self) -> dict[str, Any]:
        """The ComponentType in OCPP's shape."""
        out: dict[str, Any] = {"name": self.component_name}
        if self.component_instance is not None:
            out["instance"] = self.component_instance
        if self.evse_id is not None:
            out["evse"] = {"id": self.evse_id}
            if self.connector_id is not None:
                out["evse"]["connectorId"] = self.connector_id
        return out

    def variable(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.variable_name}
        if self.variable_instance is not None:
            out["instance"] = self.variable_instance
        return out


@dataclass(frozen=True, slots=True)
class MonitoringReportRecord:
    station_id: str
    request_id: int
    criteria: dict[str, Any] | None  # None: a report the cloud did not ask for
    status: str
    requested_at: datetime
    completed_at: datetime | None
    parts: int


@dataclass(frozen=True, slots=True)
class LogRequestRecord:
    station_id: str
    request_id: int
    log_type: str | None
    token: str | None
    requested_at: datetime
    status: str
    status_at: datetime
    filename: str | None
    upload_filename: str | None
    upload_size: int | None
    upload_sha256: str | None
    uploaded_at: datetime | None


@dataclass(frozen=True, slots=True)
class CustomerInformationRecord:
    station_id: str
    request_id: int
    report: bool
    clear: bool
    customer: dict[str, Any]  # idToken, customerIdentifier or customerCertificate
    status: str
    requested_at: datetime
    completed_at: datetime | None
    data: str | None  # the parts joined in seqNo order, once complete
    parts: int


def monitors_of_report(monitor: Sequence[Mapping[str, Any]]) -> list[MonitorRecord]:
    """The monitors of a NotifyMonitoringReport's ``monitor`` (MonitoringDataType list)."""
    out = []
    for data in monitor:
        component = data.get("component") or {}
        variable = data.get("variable") or {}
        evse = component.get("evse") or {}
        for vm in data.get("variableMonitoring") or ():
            out.append(
                MonitorRecord(
                    monitor_id=int(vm["id"]),
                    component_name=str(component.get("name", ""))[:50],
                    component_instance=component.get("instance"),
                    evse_id=evse.get("id"),
                    connector_id=evse.get("connectorId"),
                    variable_name=str(variable.get("name", ""))[:50],
                    variable_instance=variable.get("instance"),
                    type=str(vm["type"]),
                    value=Decimal(str(vm["value"])),
                    severity=int(vm["severity"]),
                    transaction=bool(vm.get("transaction", False)),
                    source="report",
                )
            )
    return out


def _upsert(conn: Connection, table: Table, values: dict[str, Any], keys: Sequence[str]) -> None:
    """Insert ``values``, or update the row with the same ``keys`` with them."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    ins = insert(table).values(values)
    changed = {k: ins.excluded[k] for k in values if k not in keys}
    conn.execute(ins.on_conflict_do_update(index_elements=list(keys), set_=changed))


def _monitor(row: Any) -> MonitorRecord:
    return MonitorRecord(
        monitor_id=int(row.monitor_id),
        component_name=row.component_name,
        component_instance=row.component_instance,
        evse_id=row.evse_id,
        connector_id=row.connector_id,
        variable_name=row.variable_name,
        variable_instance=row.variable_instance,
        type=row.type,
        value=Decimal(row.value),
        severity=int(row.severity),
        transaction=bool(row.transaction),
        source=row.source,
        request_id=row.request_id,
        updated_at=as_utc(row.updated_at),
    )


def _monitor_values(station_id: str, m: MonitorRecord, at: datetime) -> dict[str, Any]:
    return {
        "station_id": station_id,
        "monitor_id": m.monitor_id,
        "component_name": m.component_name,
        "component_instance": m.component_instance,
        "evse_id": m.evse_id,
        "connector_id": m.connector_id,
        "variable_name": m.variable_name,
        "variable_instance": m.variable_instance,
        "type": m.type,
        "value": m.value,
        "severity": m.severity,
        "transaction": m.transaction,
        "source": m.source,
        "request_id": m.request_id,
        "updated_at": at,
    }


def _log(row: Any) -> LogRequestRecord:
    return LogRequestRecord(
        station_id=row.station_id,
        request_id=int(row.request_id),
        log_type=row.log_type,
        token=row.token,
        requested_at=as_utc(row.requested_at),
        status=row.status,
        status_at=as_utc(row.status_at),
        filename=row.filename,
        upload_filename=row.upload_filename,
        upload_size=None if row.upload_size is None else int(row.upload_size),
        upload_sha256=row.upload_sha256,
        uploaded_at=None if row.uploaded_at is None else as_utc(row.uploaded_at),
    )


def _keep_part(
    conn: Connection,
    requests: Table,
    parts: Table,
    station_id: str,
    request_id: int,
    part: Mapping[str, Any],
    *,
    at: datetime,
    unasked: Mapping[str, Any],
) -> tuple[Row[Any], list[Row[Any]] | None]:
    """Keep one part of a NotifyMonitoringReport or NotifyCustomerInformation: the
    request's row (one made of ``unasked``, Accepted, for a requestId the cloud did not
    send: a raw command's) and, once every part is in, the parts, the request Complete."""
    complete = add_part(conn, parts, station_id, request_id, received_at=at, **part)
    request = find_or_add(
        conn, requests, station_id, request_id, status="Accepted", requested_at=at, **unasked
    )
    if complete is not None:
        conn.execute(
            update(requests)
            .where(request_key(requests, station_id, request_id))
            .values(status=COMPLETE, completed_at=at)
        )
    return request, complete


class Diagnostics:
    """Monitors, monitoring reports, log requests and customer information, per station."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def _create(self, table: Table, station_id: str, **values: Any) -> int:
        """A request about to be sent, kept as Requested: its new requestId."""
        return await self._db.write(lambda conn: create_request(conn, table, station_id, **values))

    async def _answered(self, table: Table, station_id: str, request_id: int, status: str) -> None:
        """The station's answer, unless a part or a LogStatusNotification came first."""
        key = request_key(table, station_id, request_id)
        await self._db.write(lambda conn: record_answer(conn, table, key, status))

    # -- monitors ---------------------------------------------------------------------

    async def list_monitors(self, station_id: str) -> list[MonitorRecord]:
        query = select(_M).where(_M.c.station_id == station_id).order_by(_M.c.monitor_id)
        return await self._db.read(lambda conn: [_monitor(r) for r in conn.execute(query)])

    async def get_monitor(self, station_id: str, monitor_id: int) -> MonitorRecord | None:
        query = select(_M).where(_M.c.station_id == station_id, _M.c.monitor_id == monitor_id)

        def op(conn: Connection) -> MonitorRecord | None:
            row = conn.execute(query).first()
            return None if row is None else _monitor(row)

        return await self._db.read(op)

    async def put_monitors(
        self, station_id: str, monitors: Sequence[MonitorRecord], at: datetime
    ) -> None:
        """Keep monitors the station accepted (a monitor id set again replaces its row)."""

        def op(conn: Connection) -> None:
            for m in monitors:
                _upsert(conn, _M, _monitor_values(station_id, m, at), ("station_id", "monitor_id"))

        await self._db.write(op)

    async def delete_monitors(self, station_id: str, monitor_ids: Sequence[int]) -> int:
        """Forget monitors the station cleared; how many rows went."""
        stmt = delete(_M).where(_M.c.station_id == station_id, _M.c.monitor_id.in_(monitor_ids))
        return await self._db.write(lambda conn: int(conn.execute(stmt).rowcount))

    # -- monitoring reports -----------------------------------------------------------

    async def create_monitoring_report(
        self, station_id: str, criteria: Mapping[str, Any], at: datetime
    ) -> int:
        """A GetMonitoringReport about to be sent: its new requestId."""
        criteria_json = json.dumps(dict(criteria), sort_keys=True)
        return await self._create(_R, station_id, criteria=criteria_json, requested_at=at)

    async def set_report_status(self, station_id: str, request_id: int, status: str) -> None:
        """The station's answer to the GetMonitoringReport (a part may be in already)."""
        await self._answered(_R, station_id, request_id, status)

    async def add_monitoring_report_part(
        self,
        station_id: str,
        request_id: int,
        seq_no: int,
        tbc: bool,
        generated_at: datetime,
        monitor: Sequence[Mapping[str, Any]],
        at: datetime,
    ) -> bool:
        """Keep one NotifyMonitoringReport part and its monitors as the station's; True
        once the report is complete. A complete report the cloud asked of every monitor
        (no criteria) also forgets the monitors it did not name: the station has none."""
        monitors = monitors_of_report(monitor)
        reported = json.dumps(list(monitor), sort_keys=True)

        def op(conn: Connection) -> bool:
            for m in monitors:
                values = _monitor_values(station_id, m, at) | {"request_id": request_id}
                _upsert(conn, _M, values, ("station_id", "monitor_id"))
            part = {"seq_no": seq_no, "tbc": tbc, "generated_at": generated_at}
            report, complete = _keep_part(
                conn,
                _R,
                _RP,
                station_id,
                request_id,
                part | {"monitors": reported},
                at=at,
                unasked={"criteria": "null"},  # criteria unknown
            )
            if complete is None:
                return False
            if json.loads(report.criteria) == {}:
                conn.execute(
                    delete(_M).where(
                        _M.c.station_id == station_id,
                        or_(_M.c.request_id.is_(None), _M.c.request_id != request_id),
                    )
                )
            return True

        return await self._db.write(op)

    async def list_monitoring_reports(
        self, station_id: str, *, limit: int = 50
    ) -> list[MonitoringReportRecord]:
        query = newest_requests(_R, station_id, limit)

        def op(conn: Connection) -> list[MonitoringReportRecord]:
            rows = conn.execute(query).all()
            counts = count_parts(conn, _RP, station_id, [int(r.request_id) for r in rows])
            return [
                MonitoringReportRecord(
                    station_id=r.station_id,
                    request_id=int(r.request_id),
                    criteria=json.loads(r.criteria),
                    status=r.status,
                    requested_at=as_utc(r.requested_at),
                    completed_at=None if r.completed_at is None else as_utc(r.completed_at),
                    parts=counts.get(int(r.request_id), 0),
                )
                for r in rows
            ]

        return await self._db.read(op)

    # -- logs -------------------------------------------------------------------------

    async def create_log_request(
        self, station_id: str, log_type: str, token: str, at: datetime
    ) -> int:
        """A GetLog about to be sent, with the one-time token of its upload URL."""
        return await self._create(
            _L, station_id, log_type=log_type, token=token, requested_at=at, status_at=at
        )

    async def log_answered(
        self, station_id: str, request_id: int, status: str, filename: str | None, at: datetime
    ) -> None:
        """The GetLogResponse; a LogStatusNotification that came first is not overwritten.
        A request the station will not upload for loses its token."""
        values: dict[str, Any] = {"filename": filename}
        if status not in ("Accepted", "AcceptedCanceled"):
            values["token"] = None

        def op(conn: Connection) -> None:
            key = request_key(_L, station_id, request_id)
            conn.execute(update(_L).where(key).values(values))
            record_answer(conn, _L, key, status, status_at=at)

        await self._db.write(op)

    async def log_status(self, station_id: str, request_id: int, status: str, at: datetime) -> None:
        """A LogStatusNotification: the request's status (a requestId the cloud did not
        send gets a row of its own)."""

        def op(conn: Connection) -> None:
            done = conn.execute(
                update(_L)
                .where(_L.c.station_id == station_id, _L.c.request_id == request_id)
                .values(status=status[:32], status_at=at)
            ).rowcount
            if not done:
                conn.execute(
                    _L.insert().values(
                        station_id=station_id,
                        request_id=request_id,
                        requested_at=at,
                        status=status[:32],
                        status_at=at,
                    )
                )

        await self._db.write(op)

    async def log_by_token(self, token: str) -> LogRequestRecord | None:
        def op(conn: Connection) -> LogRequestRecord | None:
            row = conn.execute(select(_L).where(_L.c.token == token)).first()
            return None if row is None else _log(row)

        return await self._db.read(op)

    async def log_uploaded(
        self,
        token: str,
        *,
        filename: str | None,
        size: int,
        sha256: str,
        at: datetime,
    ) -> LogRequestRecord | None:
        """The file of a token arrived: kept, and the token is spent. None when the token
        was spent meanwhile."""

        def op(conn: Connection) -> LogRequestRecord | None:
            row = conn.execute(select(_L).where(_L.c.token == token)).first()
            if row is None:
                return None
            conn.execute(
                update(_L)
                .where(_L.c.station_id == row.station_id, _L.c.request_id == row.request_id)
                .values(
                    token=None,
                    upload_filename=None if filename is None else filename[:255],
                    upload_size=size,
                    upload_sha256=sha256,
                    uploaded_at=at,
                )
            )
            found = conn.execute(
                select(_L).where(
                    _L.c.station_id == row.station_id, _L.c.request_id == row.request_id
                )
            ).one()
            return _log(found)

        return await self._db.write(op)

    async def list_logs(self, station_id: str, *, limit: int = 50) -> list[LogRequestRecord]:
        query = newest_requests(_L, station_id, limit)
        return await self._db.read(lambda conn: [_log(r) for r in conn.execute(query)])

    async def get_log(self, station_id: str, request_id: int) -> LogRequestRecord | None:
        def op(conn: Connection) -> LogRequestRecord | None:
            row = find_request(conn, _L, station_id, request_id)
            return None if row is None else _log(row)

        return await self._db.read(op)

    # -- customer information ---------------------------------------------------------

    async def create_customer_request(
        self,
        station_id: str,
        *,
        report: bool,
        clear: bool,
        customer: Mapping[str, Any],
        at: datetime,
    ) -> int:
        """A CustomerInformation about to be sent: its new requestId."""
        customer_json = json.dumps(dict(customer), sort_keys=True)
        return await self._create(
            _C, station_id, report=report, clear=clear, customer=customer_json, requested_at=at
        )

    async def customer_answered(self, station_id: str, request_id: int, status: str) -> None:
        await self._answered(_C, station_id, request_id, status)

    async def add_customer_part(
        self,
        station_id: str,
        request_id: int,
        seq_no: int,
        tbc: bool,
        generated_at: datetime,
        data: str,
        at: datetime,
    ) -> CustomerInformationRecord | None:
        """Keep one NotifyCustomerInformation part; the request, assembled, once its every
        part is in (else None)."""
        where = request_key(_C, station_id, request_id)

        def op(conn: Connection) -> CustomerInformationRecord | None:
            part = {"seq_no": seq_no, "tbc": tbc, "generated_at": generated_at, "data": data}
            _, parts = _keep_part(
                conn,
                _C,
                _CP,
                station_id,
                request_id,
                part,
                at=at,
                unasked={"report": True, "clear": False, "customer": "{}"},
            )
            if parts is None:
                return None
            joined = "".join(str(p.data) for p in parts)
            conn.execute(update(_C).where(where).values(data=joined))
            return _customer(conn.execute(select(_C).where(where)).one(), len(parts))

        return await self._db.write(op)

    async def list_customer_requests(
        self, station_id: str, *, limit: int = 50
    ) -> list[CustomerInformationRecord]:
        query = newest_requests(_C, station_id, limit)

        def op(conn: Connection) -> list[CustomerInformationRecord]:
            rows = conn.execute(query).all()
            counts = count_parts(conn, _CP, station_id, [int(r.request_id) for r in rows])
            return [_customer(r, counts.get(int(r.request_id), 0)) for r in rows]

        return await self._db.read(op)

    async def get_customer_request(
        self, station_id: str, request_id: int
    ) -> CustomerInformationRecord | None:
        def op(conn: Connection) -> CustomerInformationRecord | None:
            row = find_request(conn, _C, station_id, request_id)
            if row is None:
                return None
            counts = count_parts(conn, _CP, station_id, [request_id])
            return _customer(row, counts.get(request_id, 0))

        return await self._db.read(op)


def _customer(row: Any, parts: int) -> CustomerInformationRecord:
    return CustomerInformationRecord(
        station_id=row.station_id,
        request_id=int(row.request_id),
        report=bool(row.report),
        clear=bool(row.clear),
        customer=json.loads(row.customer),
        status=row.status,
        requested_at=as_utc(row.requested_at),
        completed_at=None if row.completed_at is None else as_utc(row.completed_at),
        data=row.data,
        parts=parts,
    )
