"""A feature's CALL to a connected station, as a REST route makes it: refused with 409
when the station is not connected in the OCPP version the feature speaks, checked
against the official schema (422), and a failure turned into the API's answer (504 for
no answer, 502 for a CALLERROR) that the route returns once it has recorded it."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse

from plugstream.cloud.api.common import error_response
from plugstream.cloud.gateway import Gateway
from plugstream.cloud.stations import StationOffline
from plugstream.ocpp import CallTimeout, OcppError, OcppVersion, schemas

__all__ = ["CALL_ERROR", "NOT_SENT", "NO_ANSWER", "CallFailed", "call_station", "require_connected"]

#: what a feature records of a CALL that got no answer in time / a CALLERROR / that the
#: station's connection lost before it answered
NO_ANSWER, CALL_ERROR, NOT_SENT = "NoAnswer", "CallError", "NotSent"

#: the versions whose messages a 2.0.1 feature sends (2.1 kept their shape)
V201_AND_LATER = (OcppVersion.V201, OcppVersion.V21)


class CallFailed(Exception):
    """The station did not answer (``status`` NoAnswer), refused (CallError) or went
    away (NotSent); ``response`` is the API's answer (504, 502, 409)."""

    def __init__(self, status: str, response: JSONResponse) -> None:
        super().__init__(status)
        self.status = status
        self.response = response


def require_connected(
    gateway: Gateway, station_id: str, versions: tuple[OcppVersion, ...] = V201_AND_LATER
) -> OcppVersion:
    """The station's live version; 409 when it is not connected or speaks another."""
    version = gateway.version_of(station_id)
    if version is None or not gateway.is_connected(station_id):
        raise HTTPException(409, f"station {station_id!r} is not connected")
    if version not in versions:
        spoken = " or ".join(v.value for v in versions)
        raise HTTPException(
            409, f"station {station_id!r} speaks OCPP {version.value}; this needs {spoken}"
        )
    return version


async def call_station(
    gateway: Gateway,
    station_id: str,
    version: OcppVersion,
    action: str,
    payload: dict[str, Any],
) -> dict[str, Any]:
    """The station's answer; HTTPException 422 for a payload the schema refuses (nothing
    is sent), :class:`CallFailed` when it was sent in vain or the station went away."""
    invalid = schemas(version).validate(action, "request", payload)
    if invalid is not None:
        raise HTTPException(422, f"{action}: {invalid.description}")
    try:
        return await gateway.call(station_id, action, payload)
    except StationOffline as exc:  # gone before it answered, or before it was sent
        raise CallFailed(
            NOT_SENT, error_response(409, f"station {station_id!r} is not connected: {exc}")
        ) from exc
    except CallTimeout as exc:
        raise CallFailed(
            NO_ANSWER, error_response(504, f"station {station_id!r}: {exc.description}")
        ) from exc
    except OcppError as exc:
        raise CallFailed(
            CALL_ERROR,
            error_response(
                502,
                f"station {station_id!r} refused {action}: {exc.description or exc.code.value}",
                error_code=exc.code.value,
                error_details=exc.details,
            ),
        ) from exc
