"""The device model's messages read into rows, and requests split to what a station takes:
sans-I/O, no store, no socket.

- :func:`report_attributes`: a NotifyReport's ``reportData`` (B07/B08), one
  :class:`VariableAttribute` per VariableAttributeType, each with its variable's
  characteristics;
- :func:`events`: a NotifyEvent's ``eventData`` (N07/N08);
- :func:`component_json` / :func:`key_of`: a :class:`ComponentVariable` to and from OCPP's
  ComponentType / VariableType, as requests carry them and results echo them;
- :func:`chunks`: a GetVariables / SetVariables request split into messages of at most
  ``DeviceDataCtrlr.ItemsPerMessage`` items (B06.FR.05, B05.FR.04).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from plugstream.cloud.meter import parse_time_or
from plugstream.cloud.payloads import int_or, str_or_none
from plugstream.cloud.storage.device_model import (
    Characteristics,
    ComponentVariable,
    StationEvent,
    VariableAttribute,
)

__all__ = [
    "chunks",
    "component_json",
    "events",
    "key_of",
    "report_attributes",
    "variable_json",
]

T = TypeVar("T")


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _bool_or_none(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _decimal_or_none(value: object) -> Decimal | None:
    """A JSON number as the exact decimal it was written as (the float's shortest repr)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        return None


def key_of(component: object, variable: object) -> ComponentVariable:
    """The key of a ComponentType and a VariableType."""
    c = _mapping(component)
    v = _mapping(variable)
    evse = _mapping(c.get("evse"))
    return ComponentVariable(
        component=str_or_none(c.get("name")) or "",
        variable=str_or_none(v.get("name")) or "",
        component_instance=str_or_none(c.get("instance")) or "",
        evse_id=int_or(evse.get("id"), 0),
        connector_id=int_or(evse.get("connectorId"), 0),
        variable_instance=str_or_none(v.get("instance")) or "",
    )


def component_json(key: ComponentVariable) -> dict[str, Any]:
    """The ComponentType of ``key``."""
    out: dict[str, Any] = {"name": key.component}
    if key.component_instance:
        out["instance"] = key.component_instance
    if key.evse_id:
        evse: dict[str, Any] = {"id": key.evse_id}
        if key.connector_id:
            evse["connectorId"] = key.connector_id
        out["evse"] = evse
    return out


def variable_json(key: ComponentVariable) -> dict[str, Any]:
    """The VariableType of ``key``."""
    out: dict[str, Any] = {"name": key.variable}
    if key.variable_instance:
        out["instance"] = key.variable_instance
    return out


def _characteristics(value: object) -> Characteristics | None:
    c = _mapping(value)
    data_type = str_or_none(c.get("dataType"))
    if data_type is None:
        return None
    return Characteristics(
        data_type=data_type,
        supports_monitoring=bool(c.get("supportsMonitoring")),
        unit=str_or_none(c.get("unit")),
        min_limit=_decimal_or_none(c.get("minLimit")),
        max_limit=_decimal_or_none(c.get("maxLimit")),
        values_list=str_or_none(c.get("valuesList")),
    )


def report_attributes(report_data: object) -> list[VariableAttribute]:
    """Every VariableAttributeType of a NotifyReport's ``reportData``."""
    out: list[VariableAttribute] = []
    if not isinstance(report_data, Sequence):
        return out
    for item in report_data:
        entry = _mapping(item)
        key = key_of(entry.get("component"), entry.get("variable"))
        if not key.component or not key.variable:
            continue
        characteristics = _characteristics(entry.get("variableCharacteristics"))
        attributes = entry.get("variableAttribute")
        for attribute in attributes if isinstance(attributes, Sequence) else ():
            a = _mapping(attribute)
            value = a.get("value")
            out.append(
                VariableAttribute(
                    key,
                    str_or_none(a.get("type")) or "Actual",
                    value if isinstance(value, str) else None,
                    str_or_none(a.get("mutability")) or "ReadWrite",  # the schema's default
                    _bool_or_none(a.get("persistent")),
                    _bool_or_none(a.get("constant")),
                    characteristics,
                )
            )
    return out


def events(event_data: object, default_time: datetime) -> list[StationEvent]:
    """Every EventDataType of a NotifyEvent's ``eventData``."""
    out: list[StationEvent] = []
    if not isinstance(event_data, Sequence):
        return out
    for item in event_data:
        e = _mapping(item)
        key = key_of(e.get("component"), e.get("variable"))
        if not key.component or not key.variable:
            continue
        cause = e.get("cause")
        monitor = e.get("variableMonitoringId")
        actual = e.get("actualValue")
        out.append(
            StationEvent(
                key=key,
                event_id=int_or(e.get("eventId"), 0),
                timestamp=parse_time_or(e.get("timestamp"), default_time),
                trigger=str_or_none(e.get("trigger")) or "Alerting",
                actual_value=actual if isinstance(actual, str) else "",
                event_notification_type=str_or_none(e.get("eventNotificationType")) or "",
                cause=int_or(cause, 0) if cause is not None else None,
                tech_code=str_or_none(e.get("techCode")),
                tech_info=str_or_none(e.get("techInfo")),
                cleared=_bool_or_none(e.get("cleared")),
                transaction_id=str_or_none(e.get("transactionId")),
                variable_monitoring_id=int_or(monitor, 0) if monitor is not None else None,
            )
        )
    return out


def chunks(items: Sequence[T], per_message: int | None) -> Iterator[Sequence[T]]:
    """``items`` in runs of at most ``per_message`` (all at once when not known)."""
    size = per_message if per_message is not None and per_message > 0 else len(items) or 1
    for start in range(0, len(items), size):
        yield items[start : start + size]
