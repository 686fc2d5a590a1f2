"""How a REST route sends a station an OCPP CALL: one way, so that every feature refuses
and fails in the same words and an operator's client reads one kind of error.

A route first makes sure of the station: registered (404), connected (409) and speaking a
version that has the feature (409; 422 where a route said so first). It may check a
payload before it keeps anything (422: nothing is sent). :func:`call_station` then checks
the payload, sends it through the gateway and turns a failure into :class:`CallFailed`:
409 when the station went away, 504 when it did not answer, 502 for its CALLERROR.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse

from plugstream.cloud.api.common import error_response, responses
from plugstream.cloud.api.stations import station_or_404
from plugstream.cloud.gateway import Gateway
from plugstream.cloud.stations import StationOffline
from plugstream.cloud.storage import Store
from plugstream.ocpp import CallTimeout, OcppError, OcppVersion, schemas

__all__ = [
    "CALL_ERROR",
    "CALL_RESPONSES",
    "NOT_SENT",
    "NO_ANSWER",
    "V201_AND_LATER",
    "CallFailed",
    "call_station",
    "check_request",
    "connected_station",
    "require_connected",
]

#: what a feature records of a CALL that got no answer in time / a CALLERROR / that was
#: never sent (its payload invalid, or the station gone before it went out)
NO_ANSWER, CALL_ERROR, NOT_SENT = "NoAnswer", "CallError", "NotSent"

#: the versions whose messages a 2.0.1 feature sends (2.1 kept their shape)
V201_AND_LATER = (OcppVersion.V201, OcppVersion.V21)

#: the OpenAPI errors of a route that checks a station and calls it
CALL_RESPONSES = responses(404, 409, 422, 502, 504)


class CallFailed(HTTPException):
    """A CALL not sent (``outcome`` NotSent: 422 invalid, 409 offline) or sent in vain
    (NoAnswer 504, CallError 502). Raised, it answers ``{"detail"}`` like any
    HTTPException; a route that also names the OCPP ``error_code`` and ``error_details``
    returns :attr:`response` instead."""

    def __init__(self, outcome: str, status_code: int, detail: str, **extra: Any) -> None:
        super().__init__(status_code, detail)
        self.outcome = outcome
        self.extra = extra

    @property
    def response(self) -> JSONResponse:
        return error_response(self.status_code, str(self.detail), **self.extra)


def require_connected(
    gateway: Gateway,
    station_id: str,
    *,
    versions: tuple[OcppVersion, ...] = V201_AND_LATER,
    why: str | None = None,
    wrong_version: int = 409,
) -> OcppVersion:
    """The station's live version. 409 when it is not connected; ``wrong_version`` when it
    speaks another, worded ``station 'X' speaks OCPP 1.6: <why>`` so the operator learns
    what the feature needs (default: the versions)."""
    version = gateway.version_of(station_id)
    if version is None or not gateway.is_connected(station_id):
        raise HTTPException(409, f"station {station_id!r} is not connected")
    if version not in versions:
        why = why or "this needs OCPP " + " or ".join(v.value for v in versions)
        raise HTTPException(
            wrong_version, f"station {station_id!r} speaks OCPP {version.value}: {why}"
        )
    return version


async def connected_station(
    store: Store,
    gateway: Gateway,
    station_id: str,
    why: str | None = None,
    wrong_version: int = 409,
) -> OcppVersion:
    """:func:`require_connected` to 2.0.1 or later of a registered station (404 first): what
    a feature's route checks before it keeps or sends anything."""
    await station_or_404(store, station_id)
    return require_connected(gateway, station_id, why=why, wrong_version=wrong_version)


def check_request(version: OcppVersion, action: str, payload: dict[str, Any]) -> None:
    """:class:`CallFailed` 422 (NotSent) for a payload the official schema refuses, so a
    route can check before it keeps a request or spends an id. An action the version does
    not have is left to the session, which refuses it as NotImplemented (502)."""
    table = schemas(version)
    if action not in table.call_actions:
        return
    invalid = table.validate(action, "request", payload)
    if invalid is not None:
        raise CallFailed(
            NOT_SENT,
            422,
            invalid.description,
            error_code=invalid.code.value,
            error_details=invalid.details,
        )


async def call_station(
    gateway: Gateway,
    station_id: str,
    action: str,
    payload: dict[str, Any],
    *,
    timeout: float | None = None,
) -> dict[str, Any]:
    """The station's answer to ``action``, checked first (:func:`check_request`);
    :class:`CallFailed` when it was not sent or sent in vain. ``timeout``: seconds the
    station has (default: the server's call timeout)."""
    version = gateway.version_of(station_id)
    if version is None:
        raise CallFailed(NOT_SENT, 409, f"station {station_id!r} is not connected")
    check_request(version, action, payload)
    try:
        return await gateway.call(station_id, action, payload, timeout=timeout)
    except StationOffline as exc:  # gone before it answered, or before it was sent
        raise CallFailed(NOT_SENT, 409, f"station {station_id!r} is not connected") from exc
    except CallTimeout as exc:
        raise CallFailed(NO_ANSWER, 504, f"station {station_id!r}: {exc.description}") from exc
    except OcppError as exc:
        raise CallFailed(
            CALL_ERROR,
            502,
            f"station {station_id!r} refused {action}: {exc.description or exc.code.value}",
            error_code=exc.code.value,
            error_details=exc.details,
        ) from exc
