"""Commands to a connected station: an operator's OCPP CALL, checked against the official
schema before it goes out and answered with the station's own payload."""

from __future__ import annotations

import difflib
import functools
from typing import Annotated, Any

from fastapi import Body, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from plugstream.cloud.api.common import StoreDep, guarded_router, responses
from plugstream.cloud.api.deps import GatewayDep
from plugstream.cloud.api.station_calls import (
    CALL_RESPONSES,
    CallFailed,
    call_station,
    require_connected,
)
from plugstream.cloud.api.stations import station_or_404
from plugstream.ocpp import OcppVersion, csms_actions, schemas

__all__ = [
    "COMMAND_TIMEOUT_MAX",
    "COMMAND_TIMEOUT_MIN",
    "CommandCatalogueOut",
    "CommandOut",
    "router",
]

COMMAND_TIMEOUT_MIN, COMMAND_TIMEOUT_MAX = 1.0, 300.0

router = guarded_router(tags=["commands"])


class CommandOut(BaseModel):
    action: str = Field(description="The OCPP action, e.g. Reset, RemoteStartTransaction.")
    request_schema: dict[str, Any] = Field(
        description="The official JSON schema of its request payload (draft 4 for 1.6, "
        "draft 6 for 2.0.1; ``$ref`` points into its ``definitions``): the schema the "
        "payload is checked against before it is sent."
    )


class CommandCatalogueOut(BaseModel):
    station_id: str
    ocpp_version: str | None = Field(
        description="The live connection's OCPP version, else the last one seen; null for "
        "a station never seen (it has no actions yet)."
    )
    connected: bool
    actions: list[CommandOut] = Field(description="By action name.")


@functools.cache
def _catalogue(version: OcppVersion) -> tuple[CommandOut, ...]:
    # the same files for every station of a version: read and parsed once
    found = schemas(version)
    return tuple(
        CommandOut(action=action, request_schema=found.schema(action, "request"))
        for action in sorted(csms_actions(version))
    )


@router.get(
    "/stations/{station_id}/commands",
    response_model=CommandCatalogueOut,
    responses=responses(404, 422),
)
async def list_commands(
    station_id: str, store: StoreDep, gateway: GatewayDep
) -> CommandCatalogueOut:
    """Every action the CSMS may send this station, in its OCPP version, each with the
    JSON schema of its request: what a client (the console's command forms) needs to
    offer ``POST .../commands/{action}`` with a payload that passes the schema check."""
    record = await station_or_404(store, station_id)
    live = gateway.version_of(station_id)
    version = live or _version_of(record.ocpp_version)
    return CommandCatalogueOut(
        station_id=record.station_id,
        ocpp_version=None if version is None else version.value,
        connected=live is not None and gateway.is_connected(station_id),
        actions=list(_catalogue(version)) if version is not None else [],
    )


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
