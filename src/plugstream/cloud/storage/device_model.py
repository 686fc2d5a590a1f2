"""Each station's device model (2.0.1 B07/B08, B05/B06) and the events it reports (N07).

``device_variables`` holds one row per (station, component, EVSE/connector, variable,
attribute type): what NotifyReport said of it, its value then kept up to date by the
answers to GetVariables and SetVariables the cloud sent and by NotifyEvent. Component
and variable names are case-insensitive in OCPP (B06.FR.15 for instances): a value
update finds its row whatever the case it was asked in. An absent instance is "" and an
absent EVSE or connector 0 (EVSEType ids are > 0), so the key has no NULL.

``device_reports`` tracks the GetBaseReport / GetReport requests the cloud sent by their
requestId, and the NotifyReport parts received for each (B07.FR.05: the last part has
``tbc`` false), as every request answered in parts is (:mod:`.report_requests`); its
requestIds count from 0.

``station_events`` keeps every NotifyEvent eventData, newest first by id.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from . import schema as s
from .coltypes import as_utc
from .database import Database
from .report_requests import (
    COMPLETE,
    INCOMPLETE,
    RECEIVING,
    REQUESTED,
    create_request,
    find_or_add,
    find_request,
    newest_requests,
    record_answer,
    report_status,
    request_key,
)

__all__ = [
    "ACTUAL",
    "COMPLETE",
    "FULL_INVENTORY",
    "INCOMPLETE",
    "RECEIVING",
    "REQUESTED",
    "Characteristics",
    "ComponentVariable",
    "DeviceModel",
    "DeviceReport",
    "StationEvent",
    "StoredAttribute",
    "VariableAttribute",
    "report_status",
]

ACTUAL = "Actual"
#: the report of every component and variable (B07.FR.08)
FULL_INVENTORY = "FullInventory"

_V = s.device_variables
_R = s.device_reports
_E = s.station_events
_KEY = (
    "station_id",
    "component",
    "component_instance",
    "evse_id",
    "connector_id",
    "variable",
    "variable_instance",
    "attribute_type",
)


@dataclass(frozen=True, slots=True)
class ComponentVariable:
    """A component (with its instance and EVSE/connector) and one of its variables."""

    component: str
    variable: str
    component_instance: str = ""
    evse_id: int = 0  # 0: no EVSE
    connector_id: int = 0  # 0: no connector
    variable_instance: str = ""


@dataclass(frozen=True, slots=True)
class Characteristics:
    """VariableCharacteristicsType."""

    data_type: str
    supports_monitoring: bool
    unit: str | None = None
    min_limit: Decimal | None = None
    max_limit: Decimal | None = None
    values_list: str | None = None


@dataclass(frozen=True, slots=True)
class VariableAttribute:
    """One VariableAttributeType of a NotifyReport's reportData, with its variable's
    characteristics."""

    key: ComponentVariable
    attribute_type: str = ACTUAL
    value: str | None = None
    mutability: str | None = None
    persistent: bool | None = None
    constant: bool | None = None
    characteristics: Characteristics | None = None


@dataclass(frozen=True, slots=True)
class StoredAttribute:
    """A row of the device model as stored: the attribute, where its value last came from
    (NotifyReport, GetVariables, SetVariables, NotifyEvent) and when."""

    attribute: VariableAttribute
    source: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class DeviceReport:
    station_id: str
    request_id: int
    report_base: str | None  # None: a GetReport, or a report the cloud did not ask for
    requested_at: datetime | None
    status: str  # Requested, the station's answer, Receiving, Complete
    parts: int  # NotifyReport messages received
    items: int  # reportData entries received
    updated_at: datetime
    final_seq_no: int | None = None  # seqNo of the part with tbc false, once it came


@dataclass(frozen=True, slots=True)
class StationEvent:
    """One EventDataType of a NotifyEvent."""

    key: ComponentVariable
    event_id: int
    timestamp: datetime
    trigger: str
    actual_value: str
    event_notification_type: str
    cause: int | None = None
    tech_code: str | None = None
    tech_info: str | None = None
    cleared: bool | None = None
    transaction_id: str | None = None
    variable_monitoring_id: int | None = None
    id: int = 0  # the row's, once stored
    received_at: datetime | None = None


def _key_values(station_id: str, key: ComponentVariable) -> dict[str, Any]:
    return {
        "station_id": station_id,
        "component": key.component[:50],
        "component_instance": key.component_instance[:50],
        "evse_id": key.evse_id,
        "connector_id": key.connector_id,
        "variable": key.variable[:50],
        "variable_instance": key.variable_instance[:50],
    }


def _row(station_id: str, a: VariableAttribute, source: str, at: datetime) -> dict[str, Any]:
    c = a.characteristics
    return {
        **_key_values(station_id, a.key),
        "attribute_type": a.attribute_type,
        "value": a.value,
        "mutability": a.mutability,
        "persistent": a.persistent,
        "constant": a.constant,
        "unit": None if c is None else c.unit,
        "data_type": None if c is None else c.data_type,
        "min_limit": None if c is None else c.min_limit,
        "max_limit": None if c is None else c.max_limit,
        "values_list": None if c is None else c.values_list,
        "supports_monitoring": None if c is None else c.supports_monitoring,
        "source": source,
        "updated_at": at,
    }


@functools.cache
def _report_upsert(dialect: str) -> Any:
    """A reported attribute replaces what was kept of it, built once per dialect."""
    ins = (pg_insert if dialect == "postgresql" else sqlite_insert)(_V)
    return ins.on_conflict_do_update(
        index_elements=[_V.c[name] for name in _KEY],
        set_={c.name: ins.excluded[c.name] for c in _V.columns if c.name not in _KEY},
    )


def _same_key(station_id: str, key: ComponentVariable, attribute_type: str) -> ColumnElement[bool]:
    """The row of ``key``, its names compared case-insensitively."""
    v = _key_values(station_id, key)
    return and_(
        _V.c.station_id == station_id,
        func.lower(_V.c.component) == v["component"].lower(),
        func.lower(_V.c.component_instance) == v["component_instance"].lower(),
        _V.c.evse_id == key.evse_id,
        _V.c.connector_id == key.connector_id,
        func.lower(_V.c.variable) == v["variable"].lower(),
        func.lower(_V.c.variable_instance) == v["variable_instance"].lower(),
        _V.c.attribute_type == attribute_type,
    )


def _set_value(
    conn: Connection,
    station_id: str,
    key: ComponentVariable,
    attribute_type: str,
    value: str,
    source: str,
    at: datetime,
) -> None:
    """The value of one attribute; a variable never reported gets a row of its own. A
    WriteOnly value is never kept (B07: write-only values are never reported)."""
    where = _same_key(station_id, key, attribute_type)
    changed = conn.execute(
        update(_V)
        .where(where, (_V.c.mutability.is_(None)) | (_V.c.mutability != "WriteOnly"))
        .values(value=value, source=source, updated_at=at)
    ).rowcount
    if changed:
        return
    if conn.execute(select(_V.c.station_id).where(where).limit(1)).first() is not None:
        return  # write-only
    conn.execute(
        insert(_V).values(
            _row(station_id, VariableAttribute(key, attribute_type, value), source, at)
        )
    )


def _attribute(row: Any) -> StoredAttribute:
    characteristics = None
    if row.data_type is not None:
        characteristics = Characteristics(
            data_type=row.data_type,
            supports_monitoring=bool(row.supports_monitoring),
            unit=row.unit,
            min_limit=row.min_limit,
            max_limit=row.max_limit,
            values_list=row.values_list,
        )
    key = ComponentVariable(
        component=row.component,
        variable=row.variable,
        component_instance=row.component_instance,
        evse_id=int(row.evse_id),
        connector_id=int(row.connector_id),
        variable_instance=row.variable_instance,
    )
    attribute = VariableAttribute(
        key,
        row.attribute_type,
        row.value,
        row.mutability,
        row.persistent,
        row.constant,
        characteristics,
    )
    return StoredAttribute(attribute, row.source, as_utc(row.updated_at))


def _report(row: Any) -> DeviceReport:
    return DeviceReport(
        station_id=row.station_id,
        request_id=int(row.request_id),
        report_base=row.report_base,
        requested_at=None if row.requested_at is None else as_utc(row.requested_at),
        status=row.status,
        parts=int(row.parts),
        items=int(row.items),
        updated_at=as_utc(row.updated_at),
        final_seq_no=row.final_seq_no,
    )


def _event(row: Any) -> StationEvent:
    return StationEvent(
        key=ComponentVariable(
            component=row.component,
            variable=row.variable,
            component_instance=row.component_instance,
            evse_id=int(row.evse_id),
            connector_id=int(row.connector_id),
            variable_instance=row.variable_instance,
        ),
        event_id=int(row.event_id),
        timestamp=as_utc(row.timestamp),
        trigger=row.trigger,
        actual_value=row.actual_value,
        event_notification_type=row.event_notification_type,
        cause=row.cause,
        tech_code=row.tech_code,
        tech_info=row.tech_info,
        cleared=row.cleared,
        transaction_id=row.transaction_id,
        variable_monitoring_id=row.variable_monitoring_id,
        id=int(row.id),
        received_at=as_utc(row.received_at),
    )


class DeviceModel:
    """The stations' device models, their report requests and their events."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- reports ----------------------------------------------------------------------

    async def begin_report(self, station_id: str, report_base: str | None, at: datetime) -> int:
        """A new requestId for a GetBaseReport (``report_base``) or GetReport (None),
        kept as Requested before the request goes out: its NotifyReport may arrive before
        the answer is recorded."""
        at = as_utc(at)

        def op(conn: Connection) -> int:
            return create_request(
                conn,
                _R,
                station_id,
                first=0,
                report_base=report_base,
                requested_at=at,
                parts=0,
                items=0,
                updated_at=at,
            )

        return await self._db.write(op)

    async def report_answered(
        self, station_id: str, request_id: int, status: str, at: datetime
    ) -> None:
        """The station's answer (Accepted, Rejected, NotSupported, EmptyResultSet; or
        NoAnswer, CallError): kept unless NotifyReport parts came first."""
        at = as_utc(at)

        def op(conn: Connection) -> None:
            record_answer(conn, _R, request_key(_R, station_id, request_id), status, updated_at=at)

        await self._db.write(op)

    async def add_report(
        self,
        station_id: str,
        request_id: int,
        *,
        seq_no: int,
        tbc: bool,
        attributes: Sequence[VariableAttribute],
        items: int,
        at: datetime,
    ) -> None:
        """One NotifyReport part: each attribute replaces what was kept of it, and the
        request counts the part (see :func:`report_status`), in one transaction, before
        the station is answered. The last part of a FullInventory the cloud asked for
        completes the whole model: rows nothing has told since the request was made are
        of variables the station no longer has, and go."""
        at = as_utc(at)
        # one row per key, the last reported winning: an upsert must not meet its own row
        by_key = {(a.key, a.attribute_type): a for a in attributes}
        rows = [_row(station_id, a, "NotifyReport", at) for a in by_key.values()]

        def op(conn: Connection) -> None:
            if rows:
                conn.execute(_report_upsert(conn.dialect.name), rows)
            row = find_or_add(  # a report the cloud did not ask for gets a row
                conn,
                _R,
                station_id,
                request_id,
                report_base=None,
                requested_at=None,
                status=RECEIVING,
                parts=0,
                items=0,
                updated_at=at,
            )
            parts = int(row.parts) + 1
            final = row.final_seq_no if tbc else seq_no
            status = report_status(parts, final)
            conn.execute(
                update(_R)
                .where(request_key(_R, station_id, request_id))
                .values(
                    parts=parts,
                    items=_R.c["items"] + items,
                    final_seq_no=final,
                    status=status,
                    updated_at=at,
                )
            )
            if (
                status == COMPLETE
                and row.report_base == FULL_INVENTORY
                and row.requested_at is not None
            ):
                # the whole model, complete: what it no longer has is gone from the station
                conn.execute(
                    delete(_V).where(
                        _V.c.station_id == station_id,
                        _V.c.updated_at < as_utc(row.requested_at),
                    )
                )

        await self._db.write(op)

    async def get_report(self, station_id: str, request_id: int) -> DeviceReport | None:
        def op(conn: Connection) -> DeviceReport | None:
            row = find_request(conn, _R, station_id, request_id)
            return None if row is None else _report(row)

        return await self._db.read(op)

    async def list_reports(self, station_id: str, *, limit: int = 100) -> list[DeviceReport]:
        """Newest requestId first."""
        query = newest_requests(_R, station_id, limit)

        def op(conn: Connection) -> list[DeviceReport]:
            return [_report(row) for row in conn.execute(query)]

        return await self._db.read(op)

    # -- values -----------------------------------------------------------------------

    async def set_values(
        self,
        station_id: str,
        values: Sequence[tuple[ComponentVariable, str, str]],
        source: str,
        at: datetime,
    ) -> None:
        """(key, attribute type, value) as the station confirmed them (GetVariables
        Accepted, SetVariables Accepted), in one transaction."""
        at = as_utc(at)

        def op(conn: Connection) -> None:
            for key, attribute_type, value in values:
                _set_value(conn, station_id, key, attribute_type, value, source, at)

        if values:
            await self._db.write(op)

    async def variables(
        self,
        station_id: str,
        *,
        component: str | None = None,
        variable: str | None = None,
    ) -> list[StoredAttribute]:
        """The station's device model, in component / variable order; ``component`` and
        ``variable`` (case-insensitive) narrow it."""
        query = select(_V).where(_V.c.station_id == station_id)
        if component is not None:
            query = query.where(func.lower(_V.c.component) == component.lower())
        if variable is not None:
            query = query.where(func.lower(_V.c.variable) == variable.lower())
        query = query.order_by(*(_V.c[name] for name in _KEY[1:]))

        def op(conn: Connection) -> list[StoredAttribute]:
            return [_attribute(row) for row in conn.execute(query)]

        return await self._db.read(op)

    async def value(
        self, station_id: str, key: ComponentVariable, attribute_type: str = ACTUAL
    ) -> str | None:
        """One stored value; None when not known."""
        query = select(_V.c.value).where(_same_key(station_id, key, attribute_type)).limit(1)

        def op(conn: Connection) -> str | None:
            found = conn.execute(query).scalar()
            return None if found is None else str(found)

        return await self._db.read(op)

    # -- events -----------------------------------------------------------------------

    async def add_events(
        self, station_id: str, events: Sequence[StationEvent], received_at: datetime
    ) -> None:
        """One NotifyEvent: each event kept, and its actualValue made its variable's Actual
        value, in one transaction, before the station is answered."""
        received_at = as_utc(received_at)
        rows = [
            {
                **_key_values(station_id, e.key),
                "event_id": e.event_id,
                "timestamp": as_utc(e.timestamp),
                "received_at": received_at,
                "trigger": e.trigger[:16],
                "cause": e.cause,
                "actual_value": e.actual_value,
                "tech_code": None if e.tech_code is None else e.tech_code[:50],
                "tech_info": e.tech_info,
                "cleared": e.cleared,
                "transaction_id": None if e.transaction_id is None else e.transaction_id[:36],
                "variable_monitoring_id": e.variable_monitoring_id,
                "event_notification_type": e.event_notification_type[:32],
            }
            for e in events
        ]

        def op(conn: Connection) -> None:
            if not rows:
                return
            conn.execute(insert(_E), rows)
            for e in events:
                _set_value(
                    conn, station_id, e.key, ACTUAL, e.actual_value, "NotifyEvent", received_at
                )

        await self._db.write(op)

    async def events(
        self,
        station_id: str,
        *,
        limit: int = 100,
        component: str | None = None,
        variable: str | None = None,
        trigger: str | None = None,
        before_id: int | None = None,
    ) -> list[StationEvent]:
        """The station's events, newest first (in the order received); ``before_id``
        pages back."""
        query = select(_E).where(_E.c.station_id == station_id)
        if component is not None:
            query = query.where(func.lower(_E.c.component) == component.lower())
        if variable is not None:
            query = query.where(func.lower(_E.c.variable) == variable.lower())
        if trigger is not None:
            query = query.where(_E.c.trigger == trigger)
        if before_id is not None:
            query = query.where(_E.c.id < before_id)
        query = query.order_by(_E.c.id.desc()).limit(limit)

        def op(conn: Connection) -> list[StationEvent]:
            return [_event(row) for row in conn.execute(query)]

        return await self._db.read(op)
