"""The device model of a 2.0.1 station as a resource, and the events it reported.

- ``GET /stations/{id}/device-model`` (``component``, ``variable``): what the station's
  reports, and the answers to the Get/SetVariables sent from here, say of it.
- ``POST /stations/{id}/device-model/refresh`` ``{"report_base": ...}``: GetBaseReport
  (FullInventory by default, B07); the answer names the ``request_id`` whose NotifyReport
  parts fill the model, followed at ``GET .../device-model/reports/{request_id}``.
- ``POST /stations/{id}/device-model/reports``: GetReport by component criteria and / or
  components and variables (B08).
- ``POST /stations/{id}/device-model/variables``: SetVariables (B05); what the station
  Accepted is stored. ``POST .../device-model/variables/read``: GetVariables (B06); the
  values read are stored. Both are split into messages of at most the station's
  ``DeviceDataCtrlr.ItemsPerMessage`` (B05.FR.04, B06.FR.05), as far as the model knows it.
- ``GET /stations/{id}/events``: its NotifyEvent events, newest first.

A request to a station that is not connected is refused with 409, never queued: what
it would have read or set may be stale by the time the station is back.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import Body, HTTPException, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from plugstream.cloud.api.common import StoreDep, UtcDateTime, guarded_router, responses
from plugstream.cloud.api.deps import GatewayDep
from plugstream.cloud.api.limits import INTEGER_MAX
from plugstream.cloud.api.station_calls import (
    CALL_ERROR,
    CALL_RESPONSES,
    NO_ANSWER,
    CallFailed,
    call_station,
    connected_station,
)
from plugstream.cloud.api.stations import station_or_404
from plugstream.cloud.device_model import model
from plugstream.cloud.gateway import Gateway
from plugstream.cloud.storage import Store
from plugstream.cloud.storage.device_model import (
    ACTUAL,
    ComponentVariable,
    DeviceReport,
    StationEvent,
    StoredAttribute,
)

__all__ = ["router"]

router = guarded_router(tags=["device model"])

AttributeType = Literal["Actual", "Target", "MinSet", "MaxSet"]
ReportBase = Literal["ConfigurationInventory", "FullInventory", "SummaryInventory"]
ComponentCriterion = Literal["Active", "Available", "Enabled", "Problem"]
Name = Annotated[str, Field(min_length=1, max_length=50)]
Instance = Annotated[str, Field(max_length=50)]


# -- models ---------------------------------------------------------------------------


class ComponentVariableIn(BaseModel):
    """A component (with its instance, EVSE and connector) and one of its variables."""

    model_config = ConfigDict(extra="forbid")

    component: Name = Field(examples=["OCPPCommCtrlr"])
    component_instance: Instance = ""
    evse_id: int = Field(default=0, ge=0, le=INTEGER_MAX, description="0: no EVSE.")
    connector_id: int = Field(default=0, ge=0, le=INTEGER_MAX, description="0: no connector.")
    variable: Name = Field(examples=["HeartbeatInterval"])
    variable_instance: Instance = ""

    @model_validator(mode="after")
    def _connector_on_an_evse(self) -> ComponentVariableIn:
        if self.connector_id and not self.evse_id:
            raise ValueError("a connector_id needs its evse_id")
        return self

    def key(self) -> ComponentVariable:
        return ComponentVariable(
            self.component,
            self.variable,
            self.component_instance,
            self.evse_id,
            self.connector_id,
            self.variable_instance,
        )


class GetVariableIn(ComponentVariableIn):
    attribute_type: AttributeType = "Actual"


class SetVariableIn(ComponentVariableIn):
    attribute_type: AttributeType = "Actual"
    value: str = Field(max_length=1000, description="SetVariableDataType.attributeValue.")


class GetVariablesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variables: list[GetVariableIn] = Field(min_length=1, max_length=1000)


class SetVariablesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variables: list[SetVariableIn] = Field(min_length=1, max_length=1000)


class RefreshIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    report_base: ReportBase = "FullInventory"


class GetReportIn(BaseModel):
    """At least one of the two (B08): what matches both is reported."""

    model_config = ConfigDict(extra="forbid")

    component_criteria: list[ComponentCriterion] = Field(default_factory=list, max_length=4)
    component_variables: list[ComponentVariableIn] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _something(self) -> GetReportIn:
        if not self.component_criteria and not self.component_variables:
            raise ValueError("give component_criteria, component_variables or both")
        return self


class CharacteristicsOut(BaseModel):
    data_type: str
    supports_monitoring: bool
    unit: str | None = None
    min_limit: float | None = None
    max_limit: float | None = None
    values_list: list[str] | None = None


class AttributeOut(BaseModel):
    type: str = Field(description="Actual, Target, MinSet or MaxSet.")
    value: str | None = Field(description="None: not reported (write-only).")
    mutability: str | None
    persistent: bool | None
    constant: bool | None
    source: str = Field(
        description="What last told the value: NotifyReport, GetVariables, SetVariables "
        "or NotifyEvent."
    )
    updated_at: UtcDateTime


class VariableOut(BaseModel):
    component: str
    component_instance: str
    evse_id: int
    connector_id: int
    variable: str
    variable_instance: str
    characteristics: CharacteristicsOut | None
    attributes: list[AttributeOut]


class DeviceModelOut(BaseModel):
    station_id: str
    variables: list[VariableOut]


class ReportOut(BaseModel):
    request_id: int
    report_base: str | None = Field(description="None for a GetReport.")
    requested_at: UtcDateTime | None = Field(description="None: the cloud did not ask for it.")
    status: str = Field(
        description="Requested, then the station's answer (Accepted, Rejected, NotSupported, "
        "EmptyResultSet), Receiving while parts come (tbc), Complete once every part up to "
        "the last one came, Incomplete when the last came but some before it did not; "
        "NoAnswer or CallError when the request failed."
    )
    parts: int = Field(description="NotifyReport messages received.")
    items: int = Field(description="reportData entries received.")
    final_seq_no: int | None = Field(
        description="seqNo of the last part (tbc false), once it came: parts 0 to it make "
        "the whole report."
    )
    updated_at: UtcDateTime


class VariableResultOut(BaseModel):
    component: str
    component_instance: str
    evse_id: int
    connector_id: int
    variable: str
    variable_instance: str
    attribute_type: str
    status: str = Field(description="The station's attributeStatus.")
    value: str | None = Field(default=None, description="GetVariables: the value read.")
    reason_code: str | None = Field(default=None, description="attributeStatusInfo.reasonCode.")


class StationEventOut(BaseModel):
    id: int = Field(description="Its row; newer events have larger ids.")
    event_id: int
    timestamp: UtcDateTime = Field(description="When the station says it happened.")
    received_at: UtcDateTime
    trigger: str = Field(description="Alerting, Delta or Periodic.")
    actual_value: str
    event_notification_type: str
    cause: int | None
    tech_code: str | None
    tech_info: str | None
    cleared: bool | None
    transaction_id: str | None
    variable_monitoring_id: int | None
    component: str
    component_instance: str
    evse_id: int
    connector_id: int
    variable: str
    variable_instance: str


# -- helpers --------------------------------------------------------------------------


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _model_out(station_id: str, rows: list[StoredAttribute]) -> DeviceModelOut:
    grouped: dict[ComponentVariable, list[StoredAttribute]] = defaultdict(list)
    for row in rows:
        grouped[row.attribute.key].append(row)
    out = []
    for key, attributes in grouped.items():
        c = next(
            (a.attribute.characteristics for a in attributes if a.attribute.characteristics),
            None,
        )
        out.append(
            VariableOut(
                component=key.component,
                component_instance=key.component_instance,
                evse_id=key.evse_id,
                connector_id=key.connector_id,
                variable=key.variable,
                variable_instance=key.variable_instance,
                characteristics=None
                if c is None
                else CharacteristicsOut(
                    data_type=c.data_type,
                    supports_monitoring=c.supports_monitoring,
                    unit=c.unit,
                    min_limit=_number(c.min_limit),
                    max_limit=_number(c.max_limit),
                    values_list=None if c.values_list is None else c.values_list.split(","),
                ),
                attributes=[
                    AttributeOut(
                        type=a.attribute.attribute_type,
                        value=a.attribute.value,
                        mutability=a.attribute.mutability,
                        persistent=a.attribute.persistent,
                        constant=a.attribute.constant,
                        source=a.source,
                        updated_at=a.updated_at,
                    )
                    for a in attributes
                ],
            )
        )
    return DeviceModelOut(station_id=station_id, variables=out)


def _report_out(r: DeviceReport) -> ReportOut:
    return ReportOut.model_validate(r, from_attributes=True)


def _event_out(e: StationEvent) -> StationEventOut:
    k = e.key
    assert e.received_at is not None
    return StationEventOut(
        id=e.id,
        event_id=e.event_id,
        timestamp=e.timestamp,
        received_at=e.received_at,
        trigger=e.trigger,
        actual_value=e.actual_value,
        event_notification_type=e.event_notification_type,
        cause=e.cause,
        tech_code=e.tech_code,
        tech_info=e.tech_info,
        cleared=e.cleared,
        transaction_id=e.transaction_id,
        variable_monitoring_id=e.variable_monitoring_id,
        component=k.component,
        component_instance=k.component_instance,
        evse_id=k.evse_id,
        connector_id=k.connector_id,
        variable=k.variable,
        variable_instance=k.variable_instance,
    )


async def _items_per_message(store: Store, station_id: str, instance: str) -> int | None:
    """``DeviceDataCtrlr.ItemsPerMessage[instance]`` as the stored model has it."""
    key = ComponentVariable("DeviceDataCtrlr", "ItemsPerMessage", variable_instance=instance)
    value = await store.device_model.value(station_id, key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _result(item: dict[str, Any]) -> tuple[ComponentVariable, str, str]:
    return (
        model.key_of(item.get("component"), item.get("variable")),
        str(item.get("attributeType") or ACTUAL),
        str(item.get("attributeStatus", "")),
    )


def _folded(key: ComponentVariable, attribute_type: str) -> tuple[object, ...]:
    """``key`` and the attribute type as OCPP compares them: names in any case."""
    return (
        key.component.lower(),
        key.component_instance.lower(),
        key.evse_id,
        key.connector_id,
        key.variable.lower(),
        key.variable_instance.lower(),
        attribute_type,
    )


def _result_out(item: dict[str, Any], *, read: bool) -> VariableResultOut:
    key, attribute_type, status = _result(item)
    info = item.get("attributeStatusInfo")
    value = item.get("attributeValue") if read else None
    return VariableResultOut(
        component=key.component,
        component_instance=key.component_instance,
        evse_id=key.evse_id,
        connector_id=key.connector_id,
        variable=key.variable,
        variable_instance=key.variable_instance,
        attribute_type=attribute_type,
        status=status,
        value=value if isinstance(value, str) else None,
        reason_code=info.get("reasonCode") if isinstance(info, dict) else None,
    )


async def _connected(store: Store, gateway: Gateway, station_id: str) -> None:
    """A registered 2.0.1 station connected now: a 1.6 one has no device model."""
    await connected_station(store, gateway, station_id, why="it has no device model")


def _now(gateway: Gateway) -> datetime:
    return gateway.clock()


# -- routes ---------------------------------------------------------------------------


@router.get(
    "/stations/{station_id}/device-model",
    response_model=DeviceModelOut,
    responses=responses(404, 422),
)
async def get_device_model(
    station_id: str,
    store: StoreDep,
    component: Annotated[
        str | None, Query(max_length=50, description="Only this component (any case).")
    ] = None,
    variable: Annotated[
        str | None, Query(max_length=50, description="Only this variable (any case).")
    ] = None,
) -> DeviceModelOut:
    """The station's device model as stored: its components and variables, with each
    attribute's value, mutability and persistence, and the variable's characteristics.
    Filled by NotifyReport (``POST .../refresh``), kept up to date by the Get/SetVariables
    sent from here and by the station's NotifyEvent."""
    await station_or_404(store, station_id)
    rows = await store.device_model.variables(station_id, component=component, variable=variable)
    return _model_out(station_id, rows)


async def _report(
    store: Store,
    gateway: Gateway,
    station_id: str,
    action: str,
    payload: dict[str, Any],
    report_base: str | None,
) -> ReportOut | JSONResponse:
    await _connected(store, gateway, station_id)
    request_id = await store.device_model.begin_report(station_id, report_base, _now(gateway))
    payload = {"requestId": request_id, **payload}
    try:
        answer = await call_station(gateway, station_id, action, payload)
    except CallFailed as failed:
        status = NO_ANSWER if failed.outcome == NO_ANSWER else CALL_ERROR
        await store.device_model.report_answered(station_id, request_id, status, _now(gateway))
        return failed.response
    await store.device_model.report_answered(
        station_id, request_id, str(answer.get("status", "")), _now(gateway)
    )
    found = await store.device_model.get_report(station_id, request_id)
    assert found is not None
    return _report_out(found)


@router.post(
    "/stations/{station_id}/device-model/refresh",
    response_model=ReportOut,
    responses=CALL_RESPONSES,
)
async def refresh_device_model(
    station_id: str,
    store: StoreDep,
    gateway: GatewayDep,
    body: Annotated[RefreshIn | None, Body()] = None,
) -> ReportOut | JSONResponse:
    """GetBaseReport (B07): the station answers, then sends its report in NotifyReport
    parts that replace what the model held. The answer is the request and its status;
    ``GET .../device-model/reports/{request_id}`` says when the last part is in."""
    base = (body or RefreshIn()).report_base
    return await _report(store, gateway, station_id, "GetBaseReport", {"reportBase": base}, base)


@router.post(
    "/stations/{station_id}/device-model/reports",
    response_model=ReportOut,
    responses=CALL_RESPONSES,
)
async def get_report(
    station_id: str, body: GetReportIn, store: StoreDep, gateway: GatewayDep
) -> ReportOut | JSONResponse:
    """GetReport (B08): the variables matching the component criteria and / or the
    components and variables given. EmptyResultSet when nothing matches."""
    payload: dict[str, Any] = {}
    if body.component_criteria:
        payload["componentCriteria"] = list(body.component_criteria)
    if body.component_variables:
        payload["componentVariable"] = [
            {"component": model.component_json(k), "variable": model.variable_json(k)}
            for k in (item.key() for item in body.component_variables)
        ]
    return await _report(store, gateway, station_id, "GetReport", payload, None)


@router.get(
    "/stations/{station_id}/device-model/reports",
    response_model=list[ReportOut],
    responses=responses(404, 422),
)
async def list_reports(
    station_id: str,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ReportOut]:
    """The station's report requests, newest first."""
    await station_or_404(store, station_id)
    return [_report_out(r) for r in await store.device_model.list_reports(station_id, limit=limit)]


@router.get(
    "/stations/{station_id}/device-model/reports/{request_id}",
    response_model=ReportOut,
    responses=responses(404, 422),
)
async def get_report_status(
    station_id: str,
    request_id: Annotated[int, Path(ge=0, le=INTEGER_MAX)],
    store: StoreDep,
) -> ReportOut:
    """One report request: the station's answer and the NotifyReport parts received."""
    await station_or_404(store, station_id)
    found = await store.device_model.get_report(station_id, request_id)
    if found is None:
        raise HTTPException(404, f"station {station_id!r} has no report {request_id}")
    return _report_out(found)


def _variable_data(
    item: GetVariableIn | SetVariableIn, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One SetVariableData / GetVariableData: the attribute type only when not Actual."""
    k = item.key()
    entry: dict[str, Any] = {
        "component": model.component_json(k),
        "variable": model.variable_json(k),
        **(extra or {}),
    }
    if item.attribute_type != ACTUAL:
        entry["attributeType"] = item.attribute_type
    return entry


@router.post(
    "/stations/{station_id}/device-model/variables",
    response_model=list[VariableResultOut],
    responses=CALL_RESPONSES,
)
async def set_variables(
    station_id: str, body: SetVariablesIn, store: StoreDep, gateway: GatewayDep
) -> list[VariableResultOut] | JSONResponse:
    """SetVariables (B05): each value and the station's attributeStatus for it. What it
    Accepted is stored in the model at once; RebootRequired values are not (they take
    effect after a reboot, and a report then tells them)."""
    await _connected(store, gateway, station_id)
    per_message = await _items_per_message(store, station_id, "SetVariables")
    out: list[VariableResultOut] = []
    for chunk in model.chunks(body.variables, per_message):
        data = [_variable_data(item, {"attributeValue": item.value}) for item in chunk]
        try:
            answer = await call_station(
                gateway, station_id, "SetVariables", {"setVariableData": data}
            )
        except CallFailed as failed:
            return failed.response
        results = [r for r in answer.get("setVariableResult", []) if isinstance(r, dict)]
        # each result names what it is about (results need not come in the request's order)
        sent = {_folded(item.key(), item.attribute_type): item.value for item in chunk}
        accepted = []
        for result in results:
            key, attribute_type, status = _result(result)
            value = sent.get(_folded(key, attribute_type))
            if status == "Accepted" and value is not None:
                accepted.append((key, attribute_type, value))
        await store.device_model.set_values(station_id, accepted, "SetVariables", _now(gateway))
        out.extend(_result_out(r, read=False) for r in results)
    return out


@router.post(
    "/stations/{station_id}/device-model/variables/read",
    response_model=list[VariableResultOut],
    responses=CALL_RESPONSES,
)
async def get_variables(
    station_id: str, body: GetVariablesIn, store: StoreDep, gateway: GatewayDep
) -> list[VariableResultOut] | JSONResponse:
    """GetVariables (B06): each value as the station reads it now, stored in the model."""
    await _connected(store, gateway, station_id)
    per_message = await _items_per_message(store, station_id, "GetVariables")
    out: list[VariableResultOut] = []
    for chunk in model.chunks(body.variables, per_message):
        data = [_variable_data(item) for item in chunk]
        try:
            answer = await call_station(
                gateway, station_id, "GetVariables", {"getVariableData": data}
            )
        except CallFailed as failed:
            return failed.response
        results = [r for r in answer.get("getVariableResult", []) if isinstance(r, dict)]
        read = []
        for result in results:
            key, attribute_type, status = _result(result)
            value = result.get("attributeValue")
            if status == "Accepted" and isinstance(value, str):
                read.append((key, attribute_type, value))
        await store.device_model.set_values(station_id, read, "GetVariables", _now(gateway))
        out.extend(_result_out(r, read=True) for r in results)
    return out


@router.get(
    "/stations/{station_id}/events",
    response_model=list[StationEventOut],
    responses=responses(404, 422),
)
async def list_events(
    station_id: str,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Events to return.")] = 100,
    component: Annotated[str | None, Query(max_length=50)] = None,
    variable: Annotated[str | None, Query(max_length=50)] = None,
    trigger: Annotated[Literal["Alerting", "Delta", "Periodic"] | None, Query()] = None,
    before_id: Annotated[
        int | None, Query(ge=1, description="Only events older than this id (the next page).")
    ] = None,
) -> list[StationEventOut]:
    """The events the station reported with NotifyEvent (N07, N08), newest first."""
    await station_or_404(store, station_id)
    found = await store.device_model.events(
        station_id,
        limit=limit,
        component=component,
        variable=variable,
        trigger=trigger,
        before_id=before_id,
    )
    return [_event_out(e) for e in found]
