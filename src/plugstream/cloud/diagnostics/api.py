"""Diagnostics of a 2.0.1 station as resources (bearer-guarded, under ``/api/v1``).

- ``/stations/{id}/monitors``: GET the monitors kept (set here or reported); POST sets
  one (SetVariableMonitoring, N04) and keeps it once Accepted, POST ``/batch`` several
  in one request; DELETE ``/{monitorId}``
  clears it (ClearVariableMonitoring, N06); POST ``/base`` (SetMonitoringBase, N03),
  ``/level`` (SetMonitoringLevel, N05); POST ``/refresh`` asks the station for its
  monitors (GetMonitoringReport, N02) and GET ``/reports`` lists those requests.
- ``/stations/{id}/logs``: POST asks for a log (GetLog, N01) whose remoteLocation is
  this server's own upload URL with a one-time token; GET lists the requests with their
  LogStatusNotification status and the file's size and SHA-256; GET
  ``/{requestId}/file`` downloads the file.
- ``/stations/{id}/customer-information``: POST sends CustomerInformation (N09 report,
  N10 clear) for exactly one of an idToken, a customerIdentifier or a customer
  certificate; GET lists the requests with the data assembled from their parts.

The upload URL (``PUT`` or ``POST /api/v1/log-uploads?token=...``, N01.FR.18) carries
no bearer token -- a station has none -- only the request's one-time token, spent by
the first complete upload. A raw body is the file; a ``multipart/form-data`` POST
(N01.FR.19) gives the file in its first part that names a filename.

Commands need the station connected: an offline station gets 409 and nothing is
stored, so nothing is lost silently. A station that refuses gets 422 with its status.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import HTTPException, Query, Request, Response
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, model_validator

from plugstream.cloud.api.common import (
    ConfigDep,
    StoreDep,
    UtcDateTime,
    UtcInput,
    guarded_router,
    responses,
)
from plugstream.cloud.api.deps import GatewayDep
from plugstream.cloud.api.limits import INTEGER_MAX
from plugstream.cloud.api.station_calls import (
    CALL_RESPONSES,
    CallFailed,
    call_station,
    connected_station,
)
from plugstream.cloud.api.stations import station_or_404
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.firmware.api import firmware_dir
from plugstream.cloud.firmware.rollouts import base_url
from plugstream.cloud.gateway import Gateway
from plugstream.cloud.storage import diagnostics as db
from plugstream.ocpp.datetimes import format_time
from plugstream.ocpp.v201 import IdTokenEnumType

if TYPE_CHECKING:
    from plugstream.cloud.storage import Store

__all__ = ["MAX_LOG_BYTES", "UPLOAD_PATH", "logs_dir", "router"]

MAX_LOG_BYTES = 64 << 20  # a log larger than this is refused with 413
WRITE_CHUNK = 1 << 20
UPLOAD_PATH = "/api/v1/log-uploads"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
_FILENAME = re.compile(r'filename="?([^";\r\n]+)"?', re.IGNORECASE)

router = guarded_router(tags=["diagnostics"])


def logs_dir(config: CloudConfig) -> Path:
    """``--logs-dir`` where the config has it, else ``logs`` beside the firmware directory."""
    return config.logs_dir if config.logs_dir is not None else firmware_dir(config).parent / "logs"


# -- talking to the station -------------------------------------------------------------


async def _connected(store: Store, gateway: Gateway, station_id: str) -> None:
    """404 unknown, 409 offline or not 2.0.1 / 2.1: nothing is sent or kept then."""
    await connected_station(store, gateway, station_id, why="no device model")


def _failure(failed: CallFailed) -> str:
    """The status a kept request gets when its CALL failed."""
    return {409: "Offline", 504: "NoAnswer", 502: "CallError"}.get(failed.status_code, "Failed")


# -- monitors -----------------------------------------------------------------------------

MonitorType = Literal[
    "UpperThreshold", "LowerThreshold", "Delta", "Periodic", "PeriodicClockAligned"
]


class EvseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int = Field(ge=0, le=INTEGER_MAX)
    connectorId: int | None = Field(default=None, ge=0, le=INTEGER_MAX)


class ComponentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=50)
    instance: str | None = Field(default=None, max_length=50)
    evse: EvseIn | None = None


class VariableIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=50)
    instance: str | None = Field(default=None, max_length=50)


class MonitorIn(BaseModel):
    """One SetMonitoringDataType; ``id`` replaces that monitor."""

    model_config = ConfigDict(extra="forbid")
    component: ComponentIn
    variable: VariableIn
    type: MonitorType
    value: float = Field(description="Threshold, delta or interval (s), per the type.")
    severity: int = Field(ge=0, le=9, description="0 Danger ... 9 Debug.")
    transaction: bool = Field(default=False, description="Only while a transaction runs.")
    id: int | None = Field(default=None, ge=0, le=INTEGER_MAX)


class MonitorOut(BaseModel):
    id: int
    component: dict[str, Any]
    variable: dict[str, Any]
    type: str
    value: float
    severity: int
    transaction: bool
    source: str = Field(description="set: through this API; report: the station reported it.")
    updated_at: UtcDateTime | None


def _monitor_out(m: db.MonitorRecord) -> MonitorOut:
    return MonitorOut(
        id=m.monitor_id,
        component=m.component(),
        variable=m.variable(),
        type=m.type,
        value=float(m.value),
        severity=m.severity,
        transaction=m.transaction,
        source=m.source,
        updated_at=m.updated_at,
    )


class StatusOut(BaseModel):
    status: str = Field(description="The station's answer.")
    status_info: dict[str, Any] | None = None


class MonitoringBaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    monitoring_base: Literal["All", "FactoryDefault", "HardWiredOnly"]


class MonitoringLevelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    severity: int = Field(ge=0, le=9, description="Events of this severity or worse are sent.")


class ComponentVariableIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    component: ComponentIn
    variable: VariableIn | None = None


class RefreshIn(BaseModel):
    """Both empty: every monitor (the kept list is then replaced by the report)."""

    model_config = ConfigDict(extra="forbid")
    monitoring_criteria: list[
        Literal["ThresholdMonitoring", "DeltaMonitoring", "PeriodicMonitoring"]
    ] = Field(default_factory=list, max_length=3)
    component_variables: list[ComponentVariableIn] = Field(default_factory=list, max_length=100)


class ReportOut(BaseModel):
    request_id: int
    criteria: dict[str, Any] | None = Field(description="What was asked; null: not asked here.")
    status: str = Field(description="The station's answer, then Complete with the last part.")
    requested_at: UtcDateTime
    completed_at: UtcDateTime | None
    parts: int


def _report_out(r: db.MonitoringReportRecord) -> ReportOut:
    return ReportOut.model_validate(r, from_attributes=True)


@router.get(
    "/stations/{station_id}/monitors", response_model=list[MonitorOut], responses=responses(404)
)
async def list_monitors(station_id: str, store: StoreDep) -> list[MonitorOut]:
    """The station's monitors as last set here or reported by it."""
    await station_or_404(store, station_id)
    return [_monitor_out(m) for m in await store.diagnostics.list_monitors(station_id)]


class SetResultOut(BaseModel):
    status: str = Field(description="The station's SetMonitoringResult status.")
    reason: str | None = Field(description="Its statusInfo.reasonCode, if any.")
    monitor: MonitorOut | None = Field(description="The monitor kept, when Accepted.")


class MonitorsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    monitors: list[MonitorIn] = Field(min_length=1, max_length=100)


def _monitoring_data(body: MonitorIn) -> dict[str, Any]:
    data: dict[str, Any] = {
        "transaction": body.transaction,
        "value": body.value,
        "type": body.type,
        "severity": body.severity,
        "component": body.component.model_dump(exclude_none=True),
        "variable": body.variable.model_dump(exclude_none=True),
    }
    if body.id is not None:
        data["id"] = body.id
    return data


async def _set_monitors(
    store: Store, gateway: Gateway, station_id: str, bodies: list[MonitorIn]
) -> list[SetResultOut]:
    """One SetVariableMonitoring for all of ``bodies`` (N04); the Accepted ones kept."""
    await _connected(store, gateway, station_id)
    answer = await call_station(
        gateway,
        station_id,
        "SetVariableMonitoring",
        {"setMonitoringData": [_monitoring_data(b) for b in bodies]},
    )
    results = list(answer.get("setMonitoringResult") or [])
    results += [{}] * (len(bodies) - len(results))
    kept: list[db.MonitorRecord | None] = []
    for body, result in zip(bodies, results, strict=False):
        if result.get("status") != "Accepted" or not isinstance(result.get("id"), int):
            kept.append(None)
            continue
        evse = body.component.evse
        kept.append(
            db.MonitorRecord(
                monitor_id=int(result["id"]),
                component_name=body.component.name,
                component_instance=body.component.instance,
                evse_id=None if evse is None else evse.id,
                connector_id=None if evse is None else evse.connectorId,
                variable_name=body.variable.name,
                variable_instance=body.variable.instance,
                type=body.type,
                value=Decimal(str(body.value)),
                severity=body.severity,
                transaction=body.transaction,
                source="set",
            )
        )
    now = gateway.clock()
    await store.diagnostics.put_monitors(station_id, [m for m in kept if m is not None], now)
    out = []
    for monitor, result in zip(kept, results, strict=False):
        shown = None
        if monitor is not None:
            found = await store.diagnostics.get_monitor(station_id, monitor.monitor_id)
            shown = None if found is None else _monitor_out(found)
        out.append(
            SetResultOut(
                status=str(result.get("status", "NoResult")),
                reason=(result.get("statusInfo") or {}).get("reasonCode"),
                monitor=shown,
            )
        )
    return out


@router.post(
    "/stations/{station_id}/monitors",
    status_code=201,
    response_model=MonitorOut,
    responses=CALL_RESPONSES,
)
async def set_monitor(
    station_id: str, body: MonitorIn, store: StoreDep, gateway: GatewayDep
) -> MonitorOut:
    """SetVariableMonitoring of one monitor; kept once the station Accepted it (422 with
    its status otherwise: UnknownComponent, UnsupportedMonitorType, Duplicate ...)."""
    [result] = await _set_monitors(store, gateway, station_id, [body])
    if result.monitor is None:
        reason = f" ({result.reason})" if result.reason else ""
        raise HTTPException(422, f"station answered {result.status}{reason}")
    return result.monitor


@router.post(
    "/stations/{station_id}/monitors/batch",
    response_model=list[SetResultOut],
    responses=CALL_RESPONSES,
)
async def set_monitors(
    station_id: str, body: MonitorsIn, store: StoreDep, gateway: GatewayDep
) -> list[SetResultOut]:
    """Several monitors in one SetVariableMonitoring: each one's status, in order, and
    the monitor kept for each Accepted one."""
    return await _set_monitors(store, gateway, station_id, body.monitors)


@router.delete(
    "/stations/{station_id}/monitors/{monitor_id}",
    status_code=204,
    response_class=Response,
    responses=CALL_RESPONSES,
)
async def clear_monitor(
    station_id: str, monitor_id: int, store: StoreDep, gateway: GatewayDep
) -> Response:
    """ClearVariableMonitoring: 204 once cleared; 404 when the station has no such
    monitor (it is forgotten here too); 422 when it refuses (a hard-wired one)."""
    if not 0 <= monitor_id <= INTEGER_MAX:
        raise HTTPException(404, f"no monitor {monitor_id}")
    await _connected(store, gateway, station_id)
    answer = await call_station(
        gateway, station_id, "ClearVariableMonitoring", {"id": [monitor_id]}
    )
    results = answer.get("clearMonitoringResult") or [{}]
    status = str(results[0].get("status", "Rejected"))
    if status == "Rejected":
        raise HTTPException(422, f"station refused to clear monitor {monitor_id}")
    await store.diagnostics.delete_monitors(station_id, [monitor_id])
    if status == "NotFound":
        raise HTTPException(404, f"station {station_id!r} has no monitor {monitor_id}")
    return Response(status_code=204)


@router.post(
    "/stations/{station_id}/monitors/base",
    response_model=StatusOut,
    responses=CALL_RESPONSES,
)
async def set_monitoring_base(
    station_id: str, body: MonitoringBaseIn, store: StoreDep, gateway: GatewayDep
) -> StatusOut:
    """SetMonitoringBase (N03). FactoryDefault and HardWiredOnly clear the custom
    monitors, so the kept list is dropped; ``/refresh`` reads the station's anew."""
    await _connected(store, gateway, station_id)
    answer = await call_station(
        gateway,
        station_id,
        "SetMonitoringBase",
        {"monitoringBase": body.monitoring_base},
    )
    status = str(answer.get("status"))
    if status == "Accepted" and body.monitoring_base != "All":
        kept = await store.diagnostics.list_monitors(station_id)
        await store.diagnostics.delete_monitors(station_id, [m.monitor_id for m in kept])
    return StatusOut(status=status, status_info=answer.get("statusInfo"))


@router.post(
    "/stations/{station_id}/monitors/level",
    response_model=StatusOut,
    responses=CALL_RESPONSES,
)
async def set_monitoring_level(
    station_id: str, body: MonitoringLevelIn, store: StoreDep, gateway: GatewayDep
) -> StatusOut:
    """SetMonitoringLevel (N05): the station reports events of ``severity`` or worse."""
    await _connected(store, gateway, station_id)
    answer = await call_station(
        gateway, station_id, "SetMonitoringLevel", {"severity": body.severity}
    )
    return StatusOut(status=str(answer.get("status")), status_info=answer.get("statusInfo"))


@router.post(
    "/stations/{station_id}/monitors/refresh",
    status_code=202,
    response_model=ReportOut,
    responses=CALL_RESPONSES,
)
async def refresh_monitors(
    station_id: str, body: RefreshIn, store: StoreDep, gateway: GatewayDep
) -> ReportOut:
    """GetMonitoringReport (N02): the station sends its monitors in NotifyMonitoringReport
    parts, kept as they arrive. Fields not asked for are left out of the request
    (EmptyResultSet is an answer too: nothing matched)."""
    await _connected(store, gateway, station_id)
    criteria: dict[str, Any] = {}
    if body.monitoring_criteria:
        criteria["monitoringCriteria"] = list(dict.fromkeys(body.monitoring_criteria))
    if body.component_variables:
        criteria["componentVariable"] = [
            cv.model_dump(exclude_none=True) for cv in body.component_variables
        ]
    request_id = await store.diagnostics.create_monitoring_report(
        station_id, criteria, gateway.clock()
    )
    try:
        answer = await call_station(
            gateway,
            station_id,
            "GetMonitoringReport",
            {"requestId": request_id, **criteria},
        )
    except CallFailed as failed:
        await store.diagnostics.set_report_status(station_id, request_id, _failure(failed))
        raise
    await store.diagnostics.set_report_status(station_id, request_id, str(answer.get("status")))
    reports = await store.diagnostics.list_monitoring_reports(station_id, limit=1_000)
    return _report_out(next(r for r in reports if r.request_id == request_id))


@router.get(
    "/stations/{station_id}/monitors/reports",
    response_model=list[ReportOut],
    responses=responses(404),
)
async def list_reports(
    station_id: str, store: StoreDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[ReportOut]:
    """The GetMonitoringReport requests, newest first, with their progress."""
    await station_or_404(store, station_id)
    found = await store.diagnostics.list_monitoring_reports(station_id, limit=limit)
    return [_report_out(r) for r in found]


# -- logs ---------------------------------------------------------------------------------


class LogIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    log_type: Literal["DiagnosticsLog", "SecurityLog"] = "DiagnosticsLog"
    oldest: UtcInput | None = Field(default=None, description="oldestTimestamp")
    latest: UtcInput | None = Field(default=None, description="latestTimestamp")
    retries: int | None = Field(default=None, ge=0, le=1000)
    retry_interval: int | None = Field(default=None, ge=0, le=INTEGER_MAX, description="s")


class LogOut(BaseModel):
    request_id: int
    log_type: str | None = Field(description="null: a requestId this API did not send.")
    status: str = Field(
        description="The GetLog answer (Accepted, Rejected, AcceptedCanceled), then the "
        "last LogStatusNotification (Uploading, Uploaded, UploadFailure ...)."
    )
    status_at: UtcDateTime
    requested_at: UtcDateTime
    filename: str | None = Field(description="The file name the station gave in GetLogResponse.")
    upload_filename: str | None
    size: int | None = Field(description="Bytes of the uploaded file.")
    sha256: str | None = Field(description="Hex SHA-256 of the uploaded file.")
    uploaded_at: UtcDateTime | None
    file_url: str | None = Field(description="Where to download the file, once uploaded.")


def _log_out(r: db.LogRequestRecord) -> LogOut:
    uploaded = r.uploaded_at is not None
    return LogOut(
        request_id=r.request_id,
        log_type=r.log_type,
        status=r.status,
        status_at=r.status_at,
        requested_at=r.requested_at,
        filename=r.filename,
        upload_filename=r.upload_filename,
        size=r.upload_size,
        sha256=r.upload_sha256,
        uploaded_at=r.uploaded_at,
        file_url=(
            f"/api/v1/stations/{r.station_id}/logs/{r.request_id}/file" if uploaded else None
        ),
    )


def _log_path(config: CloudConfig, station_id: str, request_id: int) -> Path:
    folder = hashlib.sha256(station_id.encode()).hexdigest()[:32]
    return logs_dir(config) / folder / f"{request_id}.log"


@router.post(
    "/stations/{station_id}/logs",
    status_code=202,
    response_model=LogOut,
    responses=CALL_RESPONSES,
)
async def get_log(
    station_id: str, body: LogIn, store: StoreDep, gateway: GatewayDep, config: ConfigDep
) -> LogOut:
    """GetLog (N01): the station uploads the log to this server's upload URL, with a
    one-time token; its LogStatusNotifications move the request's status."""
    await _connected(store, gateway, station_id)
    token = secrets.token_urlsafe(32)
    request_id = await store.diagnostics.create_log_request(
        station_id, body.log_type, token, gateway.clock()
    )
    log: dict[str, Any] = {"remoteLocation": f"{base_url(config)}{UPLOAD_PATH}?token={token}"}
    if body.oldest is not None:
        log["oldestTimestamp"] = format_time(body.oldest, always_ms=True)
    if body.latest is not None:
        log["latestTimestamp"] = format_time(body.latest, always_ms=True)
    payload: dict[str, Any] = {"log": log, "logType": body.log_type, "requestId": request_id}
    if body.retries is not None:
        payload["retries"] = body.retries
    if body.retry_interval is not None:
        payload["retryInterval"] = body.retry_interval
    now = gateway.clock()
    try:
        answer = await call_station(gateway, station_id, "GetLog", payload)
    except CallFailed as failed:
        await store.diagnostics.log_answered(station_id, request_id, _failure(failed), None, now)
        raise
    await store.diagnostics.log_answered(
        station_id, request_id, str(answer.get("status")), answer.get("filename"), now
    )
    found = await store.diagnostics.get_log(station_id, request_id)
    assert found is not None
    return _log_out(found)


@router.get("/stations/{station_id}/logs", response_model=list[LogOut], responses=responses(404))
async def list_logs(
    station_id: str, store: StoreDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[LogOut]:
    """The log requests, newest first."""
    await station_or_404(store, station_id)
    return [_log_out(r) for r in await store.diagnostics.list_logs(station_id, limit=limit)]


async def _log_or_404(store: Store, station_id: str, request_id: int) -> db.LogRequestRecord:
    await station_or_404(store, station_id)
    found = (
        await store.diagnostics.get_log(station_id, request_id)
        if 0 <= request_id <= INTEGER_MAX
        else None
    )
    if found is None:
        raise HTTPException(404, f"no log request {request_id} of station {station_id!r}")
    return found


@router.get(
    "/stations/{station_id}/logs/{request_id}", response_model=LogOut, responses=responses(404)
)
async def get_log_request(station_id: str, request_id: int, store: StoreDep) -> LogOut:
    return _log_out(await _log_or_404(store, station_id, request_id))


@router.get(
    "/stations/{station_id}/logs/{request_id}/file",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The log file."},
        **responses(404),
    },
)
async def download_log(
    station_id: str, request_id: int, store: StoreDep, config: ConfigDep
) -> FileResponse:
    """The uploaded file, as the station sent it."""
    found = await _log_or_404(store, station_id, request_id)
    path = _log_path(config, station_id, request_id)
    if found.uploaded_at is None or not path.is_file():
        raise HTTPException(404, f"log {request_id} has not been uploaded (status {found.status})")
    name = found.upload_filename or found.filename or f"{station_id}-{request_id}.log"
    return FileResponse(path, media_type="application/octet-stream", filename=name)


# -- the station's upload (no bearer: the one-time token) ---------------------------------


async def _receive(request: Request, part: Path, limit: int) -> None:
    """Stream the body to ``part``; 413 past ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the log is {declared} bytes; the limit is {limit}")
    size = 0
    buffer = bytearray()
    with part.open("wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"the log is over the limit of {limit} bytes")
            buffer += chunk
            if len(buffer) >= WRITE_CHUNK:
                data, buffer = bytes(buffer), bytearray()
                await asyncio.to_thread(out.write, data)
        if buffer:
            await asyncio.to_thread(out.write, bytes(buffer))
        await asyncio.to_thread(os.fsync, out.fileno())


def extract_multipart(raw: bytes, content_type: str) -> tuple[bytes, str | None]:
    """The first part of a ``multipart/form-data`` body that names a filename (N01.FR.19),
    else its first part: its bytes and filename. ValueError when it is not one."""
    match = re.search(r'boundary="?([^";]+)"?', content_type, re.IGNORECASE)
    if match is None:
        raise ValueError("multipart/form-data without a boundary")
    delimiter = b"--" + match.group(1).encode("latin-1")
    chunks = raw.split(delimiter)
    parts: list[tuple[bytes, str | None]] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, body = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        body = body.removesuffix(b"\r\n")
        name = _FILENAME.search(head.decode("latin-1"))
        parts.append((body, name.group(1) if name else None))
    if not parts:
        raise ValueError("multipart/form-data without a part")
    return next((p for p in parts if p[1] is not None), parts[0])


async def upload_log(
    request: Request,
    store: StoreDep,
    config: ConfigDep,
    token: Annotated[str, Query(description="The one-time token of the GetLog's URL.")],
) -> Response:
    """A station's log file for a GetLog (N01.FR.18: PUT or POST): the raw body, or a
    ``multipart/form-data`` POST. 201 once kept; 404 for a token spent or unknown."""
    found = await store.diagnostics.log_by_token(token) if _TOKEN.match(token) else None
    if found is None:
        raise HTTPException(404, "no log upload expected at this URL (token unknown or spent)")
    path = _log_path(config, found.station_id, found.request_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(f".{secrets.token_hex(4)}.part")
    try:
        await _receive(request, part, MAX_LOG_BYTES)
        content_type = request.headers.get("content-type", "")
        disposition = _FILENAME.search(request.headers.get("content-disposition", ""))
        filename = disposition.group(1) if disposition else None
        if content_type.lower().startswith("multipart/form-data"):
            try:
                data, filename = extract_multipart(part.read_bytes(), content_type)
            except ValueError as exc:
                raise HTTPException(400, str(exc)) from exc
            await asyncio.to_thread(part.write_bytes, data)
        digest = hashlib.sha256()
        size = 0
        with part.open("rb") as f:
            while chunk := f.read(WRITE_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)
    kept = await store.diagnostics.log_uploaded(
        token,
        filename=None if filename is None else os.path.basename(filename),
        size=size,
        sha256=digest.hexdigest(),
        at=request.app.state.gateway.clock(),
    )
    if kept is None:
        raise HTTPException(404, "this upload URL was used meanwhile")
    return Response(status_code=201)


for _method in ("PUT", "POST"):
    # Not a GuardedRoute: a station brings no bearer token, only the URL's own token.
    router.add_api_route(
        UPLOAD_PATH.removeprefix("/api/v1"),
        upload_log,
        methods=[_method],
        status_code=201,
        response_class=Response,
        route_class_override=APIRoute,
        responses={201: {"description": "Kept."}, **responses(400, 404, 413)},
        openapi_extra={
            "security": [],
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"uploadfile": {"type": "string", "format": "binary"}},
                        }
                    },
                },
            },
        },
        name=f"upload_log_{_method.lower()}",
        operation_id=f"upload_log_{_method.lower()}",
    )


# -- customer information ------------------------------------------------------------------


class IdTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    idToken: str = Field(min_length=1, max_length=36)
    type: IdTokenEnumType


class CertificateHashIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hashAlgorithm: Literal["SHA256", "SHA384", "SHA512"]
    issuerNameHash: str = Field(min_length=1, max_length=128)
    issuerKeyHash: str = Field(min_length=1, max_length=128)
    serialNumber: str = Field(min_length=1, max_length=40)


class CustomerInformationIn(BaseModel):
    """Exactly one of ``id_token``, ``customer_identifier``, ``customer_certificate``
    (N09.FR.04, N10.FR.08); ``report`` or ``clear`` or both (N09.FR.07)."""

    model_config = ConfigDict(extra="forbid")
    report: bool = True
    clear: bool = False
    id_token: IdTokenIn | None = None
    customer_identifier: str | None = Field(default=None, min_length=1, max_length=64)
    customer_certificate: CertificateHashIn | None = None

    @model_validator(mode="after")
    def _one_customer(self) -> CustomerInformationIn:
        given = [
            x
            for x in (self.id_token, self.customer_identifier, self.customer_certificate)
            if x is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of id_token, customer_identifier and customer_certificate"
            )
        if not (self.report or self.clear):
            raise ValueError("report or clear (or both) must be true")
        return self

    def customer(self) -> dict[str, Any]:
        if self.id_token is not None:
            return {"idToken": self.id_token.model_dump()}
        if self.customer_certificate is not None:
            return {"customerCertificate": self.customer_certificate.model_dump()}
        return {"customerIdentifier": self.customer_identifier}


class CustomerInformationOut(BaseModel):
    request_id: int
    report: bool
    clear: bool
    customer: dict[str, Any] = Field(description="The idToken, customerIdentifier or certificate.")
    status: str = Field(description="The station's answer, then Complete with the last part.")
    requested_at: UtcDateTime
    completed_at: UtcDateTime | None
    parts: int = Field(description="NotifyCustomerInformation parts received.")
    data: str | None = Field(description="The parts' data in seqNo order, once all are in.")


def _customer_out(r: db.CustomerInformationRecord) -> CustomerInformationOut:
    return CustomerInformationOut.model_validate(r, from_attributes=True)


@router.post(
    "/stations/{station_id}/customer-information",
    status_code=202,
    response_model=CustomerInformationOut,
    responses=CALL_RESPONSES,
)
async def customer_information(
    station_id: str, body: CustomerInformationIn, store: StoreDep, gateway: GatewayDep
) -> CustomerInformationOut:
    """CustomerInformation (N09 report, N10 clear): the station answers in
    NotifyCustomerInformation parts, assembled here. A clear of an idToken also removes
    it from the station's local list (N10.FR.02) once the answer is complete."""
    await _connected(store, gateway, station_id)
    customer = body.customer()
    request_id = await store.diagnostics.create_customer_request(
        station_id, report=body.report, clear=body.clear, customer=customer, at=gateway.clock()
    )
    payload = {"requestId": request_id, "report": body.report, "clear": body.clear, **customer}
    try:
        answer = await call_station(gateway, station_id, "CustomerInformation", payload)
    except CallFailed as failed:
        await store.diagnostics.customer_answered(station_id, request_id, _failure(failed))
        raise
    await store.diagnostics.customer_answered(station_id, request_id, str(answer.get("status")))
    found = await store.diagnostics.get_customer_request(station_id, request_id)
    assert found is not None
    return _customer_out(found)


@router.get(
    "/stations/{station_id}/customer-information",
    response_model=list[CustomerInformationOut],
    responses=responses(404),
)
async def list_customer_information(
    station_id: str, store: StoreDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[CustomerInformationOut]:
    """The CustomerInformation requests, newest first, with their assembled data."""
    await station_or_404(store, station_id)
    found = await store.diagnostics.list_customer_requests(station_id, limit=limit)
    return [_customer_out(r) for r in found]


@router.get(
    "/stations/{station_id}/customer-information/{request_id}",
    response_model=CustomerInformationOut,
    responses=responses(404),
)
async def get_customer_information(
    station_id: str, request_id: int, store: StoreDep
) -> CustomerInformationOut:
    await station_or_404(store, station_id)
    found = (
        await store.diagnostics.get_customer_request(station_id, request_id)
        if 0 <= request_id <= INTEGER_MAX
        else None
    )
    if found is None:
        raise HTTPException(404, f"no customer information request {request_id}")
    return _customer_out(found)
