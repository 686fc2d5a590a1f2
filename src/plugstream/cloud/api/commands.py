"""Commands to a connected station: an operator's OCPP CALL, checked against the official
schema before it goes out and answered with the station's own payload."""

from __future__ import annotations

import difflib
from typing import Annotated, Any

from fastapi import Body, HTTPException, Query, Response
from fastapi.responses import JSONResponse

from plugstream.cloud.api.common import StoreDep, guarded_router
from plugstream.cloud.api.deps import GatewayDep
from plugstream.cloud.api.station_calls import (
    CALL_RESPONSES,
    CallFailed,
    call_station,
    require_connected,
)
from plugstream.cloud.api.stations import station_or_404
from plugstream.ocpp import OcppVersion, csms_actions

__all__ = ["COMMAND_TIMEOUT_MAX", "COMMAND_TIMEOUT_MIN", "router"]

COMMAND_TIMEOUT_MIN, COMMAND_TIMEOUT_MAX = 1.0, 300.0

router = guarded_router(tags=["commands"])


@router.post(
    "/stations/{station_id}/commands/{action}",
    response_model=None,
    responses={
        200: {
            "description": "The station's response payload, exactly as it sent it.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **CALL_RESPONSES,
    },
)
async def command(
    station_id: str,
    action: str,
    payload: Annotated[
        dict[str, Any],
        Body(
            description="The OCPP request payload of the action.",
            openapi_examples={"Reset (1.6)": {"value": {"type": "Soft"}}},
        ),
    ],
    store: StoreDep,
    gateway: GatewayDep,
    timeout: Annotated[
        float | None,
        Query(
            ge=COMMAND_TIMEOUT_MIN,
            le=COMMAND_TIMEOUT_MAX,
            description="Seconds the station has to answer (default: the server's).",
        ),
    ] = None,
) -> Response:
    """Send an OCPP CALL to a connected station and return its answer.

    The payload is checked against the official schema of the station's OCPP
    version first. 404: not an action the CSMS sends; 409: the station is not
    connected; 422: the payload is invalid; 504: no answer in time; 502: the
    station answered with a CALLERROR.
    """
    record = await station_or_404(store, station_id)
    version = gateway.version_of(station_id) or _version_of(record.ocpp_version)
    versions = [version] if version is not None else list(OcppVersion)
    if not any(action in csms_actions(v) for v in versions):
        raise HTTPException(404, _unknown_action(action, versions))
    require_connected(gateway, station_id, versions=tuple(OcppVersion))
    try:
        answer = await call_station(gateway, station_id, action, payload, timeout=timeout)
    except CallFailed as failed:
        return failed.response
    return JSONResponse(answer)


def _version_of(text: str | None) -> OcppVersion | None:
    if text is None:
        return None
    try:
        return OcppVersion.parse(text)
    except ValueError:
        return None


def _unknown_action(action: str, versions: list[OcppVersion]) -> str:
    known = frozenset().union(*(csms_actions(v) for v in versions))
    spoken = " or ".join(f"OCPP {v.value}" for v in versions)
    why = f"{action!r} is not an action the CSMS sends in {spoken}"
    close = difflib.get_close_matches(action, sorted(known), n=3)
    if close:
        why += f"; did you mean {', '.join(close)}?"
    return why
