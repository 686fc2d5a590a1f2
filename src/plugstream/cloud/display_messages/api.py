"""Display messages as an operator's resource (2.0.1 O01-O06), per station:

- ``POST /stations/{id}/display-messages``: SetDisplayMessage; kept before it is sent,
  201 with the station's answer as its status (Accepted, Rejected, NotSupported...).
  Without ``id`` the next free one is taken.
- ``GET /stations/{id}/display-messages``, ``GET .../{message_id}``: what the cloud
  knows the station shows: set and Accepted, or Reported by the station.
- ``DELETE /stations/{id}/display-messages/{message_id}``: ClearDisplayMessage; 204, or
  404 when the station answers Unknown (the cloud forgets it too).
- ``POST /stations/{id}/display-messages/reports`` ``{"id"?, "priority"?, "state"?}``:
  GetDisplayMessages; 201 with its requestId and answer. The station's
  NotifyDisplayMessages parts come after; ``GET .../reports/{request_id}`` shows how
  many came, ``Complete`` after the last, and the messages they named.

A station that is not connected (or speaks 1.6) is refused with 409 and nothing is
kept; one that does not answer gives 504, a CALLERROR 502, and that is kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import HTTPException, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from plugstream.cloud.api.common import StoreDep, UtcDateTime, UtcInput, guarded_router, responses
from plugstream.cloud.api.deps import GatewayDep
from plugstream.cloud.api.limits import INTEGER_MAX
from plugstream.cloud.api.station_calls import (
    CALL_RESPONSES,
    CallFailed,
    call_station,
    check_request,
    require_connected,
)
from plugstream.cloud.api.stations import station_or_404
from plugstream.cloud.storage import Store
from plugstream.cloud.storage.display_messages import (
    DisplayMessageRecord,
    DisplayMessageRequest,
)
from plugstream.ocpp.datetimes import format_time

__all__ = ["router"]

router = guarded_router(tags=["display messages"])

Priority = Literal["AlwaysFront", "InFront", "NormalCycle"]
State = Literal["Charging", "Faulted", "Idle", "Unavailable"]
MessageId = Annotated[int, Path(ge=0, le=INTEGER_MAX, description="MessageInfo.id.")]
RequestId = Annotated[int, Path(ge=1, le=INTEGER_MAX, description="The requestId.")]


class DisplayMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int | None = Field(
        default=None, ge=0, le=INTEGER_MAX, description="Default: one more than the highest."
    )
    priority: Priority = "NormalCycle"
    state: State | None = Field(default=None, description="Shown only in this state.")
    start_date_time: UtcInput | None = None
    end_date_time: UtcInput | None = None
    transaction_id: str | None = Field(default=None, min_length=1, max_length=36)
    format: Literal["ASCII", "HTML", "URI", "UTF8"] = "UTF8"
    language: str | None = Field(default=None, min_length=1, max_length=8)
    content: str = Field(min_length=1, max_length=512)


class DisplayMessageOut(BaseModel):
    message_id: int
    priority: str
    state: str | None
    message: dict[str, Any] = Field(description="The MessageInfo, as sent or reported.")
    status: str = Field(
        description="Pending; the SetDisplayMessage answer (Accepted, Rejected, "
        "NotSupportedMessageFormat, NotSupportedPriority, NotSupportedState, "
        "UnknownTransaction; NoAnswer, CallError, NotSent); Reported: listed by the "
        "station in a NotifyDisplayMessages."
    )
    request_id: int | None = Field(description="The report that last named it.")
    updated_at: UtcDateTime


class ReportIn(BaseModel):
    """What to ask for; nothing: all the station's messages (TC_O_02)."""

    model_config = ConfigDict(extra="forbid")

    id: list[Annotated[int, Field(ge=0, le=INTEGER_MAX)]] | None = Field(
        default=None, min_length=1, max_length=100
    )
    priority: Priority | None = None
    state: State | None = None


class ReportOut(BaseModel):
    request_id: int
    criteria: dict[str, Any]
    status: str = Field(
        description="Pending; the GetDisplayMessages answer (Accepted, Unknown; NoAnswer, "
        "CallError, NotSent); Complete once the last NotifyDisplayMessages arrived."
    )
    parts: int = Field(description="NotifyDisplayMessages received.")
    requested_at: UtcDateTime
    updated_at: UtcDateTime
    messages: list[DisplayMessageOut]


def _out(r: DisplayMessageRecord) -> DisplayMessageOut:
    return DisplayMessageOut(
        message_id=r.message_id,
        priority=r.priority,
        state=r.state,
        message=r.info,
        status=r.status,
        request_id=r.request_id,
        updated_at=r.updated_at,
    )


def _report_out(r: DisplayMessageRequest, messages: list[DisplayMessageRecord]) -> ReportOut:
    return ReportOut(
        request_id=r.request_id,
        criteria=r.criteria,
        status=r.status,
        parts=r.parts,
        requested_at=r.requested_at,
        updated_at=r.updated_at,
        messages=[_out(m) for m in messages],
    )


def _time(value: datetime) -> str:
    return format_time(value, always_ms=True)


def message_info(body: DisplayMessageIn, message_id: int) -> dict[str, Any]:
    """The MessageInfoType of a SetDisplayMessage."""
    content: dict[str, Any] = {"format": body.format, "content": body.content}
    if body.language is not None:
        content["language"] = body.language
    info: dict[str, Any] = {"id": message_id, "priority": body.priority, "message": content}
    if body.state is not None:
        info["state"] = body.state
    if body.start_date_time is not None:
        info["startDateTime"] = _time(body.start_date_time)
    if body.end_date_time is not None:
        info["endDateTime"] = _time(body.end_date_time)
    if body.transaction_id is not None:
        info["transactionId"] = body.transaction_id
    return info


@router.post(
    "/stations/{station_id}/display-messages",
    status_code=201,
    response_model=DisplayMessageOut,
    responses=CALL_RESPONSES,
)
async def set_display_message(
    station_id: str, body: DisplayMessageIn, store: StoreDep, gateway: GatewayDep
) -> DisplayMessageOut | Response:
    """Show a message on a connected 2.0.1 station (SetDisplayMessage, O01)."""
    await station_or_404(store, station_id)
    if (
        body.start_date_time is not None
        and body.end_date_time is not None
        and body.end_date_time <= body.start_date_time
    ):
        raise HTTPException(422, "end_date_time: must be after start_date_time")
    version = require_connected(gateway, station_id)
    message_id = body.id
    if message_id is None:
        known = await store.display_messages.list_messages(station_id)
        message_id = max((m.message_id for m in known), default=0) + 1
    payload = {"message": message_info(body, message_id)}
    try:
        check_request(version, "SetDisplayMessage", payload)  # invalid: nothing is kept
    except CallFailed as failed:
        return failed.response
    await store.display_messages.set_pending(station_id, payload["message"], gateway.clock())
    try:
        answer = await call_station(gateway, station_id, "SetDisplayMessage", payload)
        status = str(answer.get("status", "Rejected"))
    except CallFailed as failed:
        await store.display_messages.set_status(
            station_id, message_id, failed.outcome, gateway.clock()
        )
        return failed.response
    found = await store.display_messages.set_status(station_id, message_id, status, gateway.clock())
    if found is None:  # cleared meanwhile
        raise HTTPException(404, f"display message {message_id} is gone")
    return _out(found)


@router.get(
    "/stations/{station_id}/display-messages",
    response_model=list[DisplayMessageOut],
    responses=responses(404),
)
async def list_display_messages(station_id: str, store: StoreDep) -> list[DisplayMessageOut]:
    await station_or_404(store, station_id)
    return [_out(m) for m in await store.display_messages.list_messages(station_id)]


@router.get(
    "/stations/{station_id}/display-messages/{message_id}",
    response_model=DisplayMessageOut,
    responses=responses(404),
)
async def get_display_message(
    station_id: str, message_id: MessageId, store: StoreDep
) -> DisplayMessageOut:
    await station_or_404(store, station_id)
    found = await store.display_messages.get(station_id, message_id)
    if found is None:
        raise HTTPException(404, f"station {station_id!r} has no display message {message_id}")
    return _out(found)


@router.delete(
    "/stations/{station_id}/display-messages/{message_id}",
    status_code=204,
    responses=responses(404, 409, 502, 504),
)
async def clear_display_message(
    station_id: str, message_id: MessageId, store: StoreDep, gateway: GatewayDep
) -> Response:
    """Remove a message from the station (ClearDisplayMessage, O05)."""
    await station_or_404(store, station_id)
    require_connected(gateway, station_id)
    try:
        answer = await call_station(gateway, station_id, "ClearDisplayMessage", {"id": message_id})
    except CallFailed as failed:
        return failed.response
    await store.display_messages.remove(station_id, message_id)
    if answer.get("status") != "Accepted":
        raise HTTPException(
            404, f"station {station_id!r} has no display message {message_id} (Unknown)"
        )
    return Response(status_code=204)


@router.post(
    "/stations/{station_id}/display-messages/reports",
    status_code=201,
    response_model=ReportOut,
    responses=CALL_RESPONSES,
)
async def request_display_messages(
    station_id: str, body: ReportIn, store: StoreDep, gateway: GatewayDep
) -> ReportOut | Response:
    """Ask the station for its messages (GetDisplayMessages, O03, O04); they arrive in
    NotifyDisplayMessages, shown by ``GET .../reports/{request_id}``."""
    await station_or_404(store, station_id)
    require_connected(gateway, station_id)
    criteria = body.model_dump(exclude_none=True)
    request = await store.display_messages.new_request(station_id, criteria, gateway.clock())
    payload: dict[str, Any] = {"requestId": request.request_id, **criteria}
    try:
        answer = await call_station(gateway, station_id, "GetDisplayMessages", payload)
        status = str(answer.get("status", "Unknown"))
    except CallFailed as failed:
        await store.display_messages.request_answered(
            request.request_id, failed.outcome, gateway.clock()
        )
        return failed.response
    await store.display_messages.request_answered(request.request_id, status, gateway.clock())
    return await _report(store, station_id, request.request_id)


async def _report(store: Store, station_id: str, request_id: int) -> ReportOut:
    found = await store.display_messages.get_request(request_id)
    if found is None or found.station_id != station_id:
        raise HTTPException(
            404, f"station {station_id!r} has no display message report {request_id}"
        )
    return _report_out(found, await store.display_messages.reported(station_id, request_id))


@router.get(
    "/stations/{station_id}/display-messages/reports/{request_id}",
    response_model=ReportOut,
    responses=responses(404),
)
async def get_display_message_report(
    station_id: str, request_id: RequestId, store: StoreDep
) -> ReportOut:
    return await _report(store, station_id, request_id)
