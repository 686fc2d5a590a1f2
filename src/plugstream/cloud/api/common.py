"""What every router of the REST API shares: the ``/api/v1`` prefix, the bearer-token
guard, the one-line wording of bad requests, the error bodies, the UTC and exact-energy
value types, and the dependencies that hand a handler the store and the config.

Every bad request gets a 4xx with a JSON body ``{"detail": "<the reason>"}``; times are
UTC, written ISO 8601 with ``Z``; energy is exact Wh, written as a JSON number.

The features' routers (firmware, setup, certificates) import this module, so it must not
import the gateway: the gateway's own modules are below it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from starlette.datastructures import State

from plugstream.cloud.config import CloudConfig
from plugstream.cloud.storage import Store

__all__ = [
    "API_PREFIX",
    "ConfigDep",
    "ErrorOut",
    "GuardedRoute",
    "OcppErrorOut",
    "StoreDep",
    "UtcDateTime",
    "UtcInput",
    "Wh",
    "as_utc",
    "bearer_refusal",
    "describe",
    "error_response",
    "get_config",
    "get_store",
    "guarded_router",
    "include_guarded",
    "responses",
]

API_PREFIX = "/api/v1"
REALM = "PlugStream Cloud"


# -- value types ------------------------------------------------------------------------


def as_utc(value: datetime) -> datetime:
    """Aware datetimes are moved to UTC; naive ones are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def exact_number(value: Decimal) -> int | float:
    """A Decimal as a JSON number with the same digits: an int when whole, else the float
    whose shortest repr reads back as exactly this Decimal (true for up to 15 significant
    digits, far beyond any meter register's resolution)."""
    if not value.is_finite():
        return float(value)  # NaN and infinities: pydantic writes null
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    if Decimal(repr(as_float)) != value:
        # More digits than a double carries: no JSON reader would keep them either.
        # Round once, here, to 15 significant digits, rather than let binary rounding pick.
        as_float = float(f"{value:.15g}")
    return as_float


UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]
"""Shown in UTC, ``2024-05-01T12:00:00Z``."""

UtcInput = Annotated[AwareDatetime, AfterValidator(as_utc)]
"""Input time: must carry its offset (``Z`` or ``+01:00``); stored in UTC."""

Wh = Annotated[
    Decimal,
    PlainSerializer(exact_number, return_type=Any, when_used="json"),
    WithJsonSchema({"type": "number"}, mode="serialization"),
]
"""Exact energy in Wh, written as a JSON number (1234.5 stays 1234.5)."""


# -- error bodies -----------------------------------------------------------------------


class ErrorOut(BaseModel):
    """Every 4xx and 5xx answer of the API."""

    detail: str = Field(description="Why the request failed, in words.")


class OcppErrorOut(ErrorOut):
    """A payload refused by the schema (422) or a CALLERROR from the station (502)."""

    error_code: str = Field(description="The OCPP RPC framework error code.")
    error_details: dict[str, Any] = Field(default_factory=dict)


def describe(errors: Any) -> str:
    """One readable line from pydantic's validation errors: ``where: what; ...``."""
    parts = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        where = ".".join(loc)
        if error.get("type") == "json_invalid":
            message = "the body is not valid JSON"
            where = ""
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts) or "invalid request"


def error_response(status: int, detail: str, **extra: Any) -> JSONResponse:
    """An error answer with more than the detail (an OCPP error code, say)."""
    return JSONResponse(status_code=status, content={"detail": detail, **extra})


_RESPONSE_TEXT = {
    400: "The request body cannot be read; the detail says why.",
    401: "Missing or wrong bearer token.",
    404: "No such resource.",
    409: "The station is not connected.",
    413: "The request body is over the limit.",
    422: "The request is invalid; the detail says why.",
    502: "The station answered with a CALLERROR.",
    504: "The station did not answer in time.",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route for these error codes."""
    models: dict[int, type[BaseModel]] = {422: ErrorOut, 502: OcppErrorOut}
    return {c: {"model": models.get(c, ErrorOut), "description": _RESPONSE_TEXT[c]} for c in codes}


# -- dependencies -----------------------------------------------------------------------


def _state(request: Request, name: str) -> Any:
    state: State = request.app.state
    try:
        return getattr(state, name)
    except AttributeError:
        raise RuntimeError(
            f"app.state.{name} is not set: create_app sets it (a test sets it itself)"
        ) from None


async def get_config(request: Request) -> CloudConfig:
    """The server's settings, set on ``app.state.config`` by ``create_app``."""
    config: CloudConfig = _state(request, "config")
    return config


async def get_store(request: Request) -> Store:
    """The store, opened in the app's lifespan (``app.state.store``)."""
    store: Store = _state(request, "store")
    return store


ConfigDep = Annotated[CloudConfig, Depends(get_config)]
StoreDep = Annotated[Store, Depends(get_store)]


# -- the bearer-token guard -------------------------------------------------------------


def bearer_refusal(request: Request) -> JSONResponse | None:
    """The 401 for a request without ``Authorization: Bearer <api_token>``; None when it
    carries the token, or when the server has none (``api_token=None``: local demos)."""
    api_token = _state(request, "config").api_token
    if api_token is None:
        return None
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return JSONResponse(
            status_code=401,
            content={"detail": "bearer token required (Authorization: Bearer <token>)"},
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
        )
    if not secrets.compare_digest(credentials.strip().encode(), api_token.encode()):
        return JSONResponse(
            status_code=401,
            content={"detail": "wrong bearer token"},
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'},
        )
    return None


class GuardedRoute(APIRoute):
    """A route that checks the bearer token before anything else -- before FastAPI reads
    the body, so a stranger learns nothing from validation errors -- and words request
    validation errors as one line (422)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            refused = bearer_refusal(request)
            if refused is not None:
                return refused
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return error_response(422, describe(exc.errors()))

        return guarded


def guarded_router(**kwargs: Any) -> APIRouter:
    """An ``/api/v1`` router of :class:`GuardedRoute` s; include it with
    :func:`include_guarded`. Every area's and feature's router is made here."""
    return APIRouter(prefix=kwargs.pop("prefix", API_PREFIX), route_class=GuardedRoute, **kwargs)


def include_guarded(app: FastAPI, *routers: APIRouter) -> None:
    """Include guarded routers in ``app``, whose ``state.config`` is set: with an API token
    its OpenAPI document shows the bearer scheme and the 401 on each of their routes (the
    check itself is :class:`GuardedRoute`'s, first)."""
    api_token = app.state.config.api_token
    security = [Depends(HTTPBearer(auto_error=False))] if api_token is not None else None
    for router in routers:
        app.include_router(
            router,
            dependencies=security,
            responses=responses(401) if api_token is not None else None,
        )
