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
from urllib.parse import parse_qsl

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
from plugstream.cloud.storage.operators import SessionRecord

__all__ = [
    "API_PREFIX",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "ConfigDep",
    "ErrorOut",
    "GuardedRoute",
    "OcppErrorOut",
    "StoreDep",
    "UtcDateTime",
    "UtcInput",
    "Wh",
    "as_utc",
    "auth_refusal",
    "bearer_refusal",
    "csrf_refusal",
    "describe",
    "error_response",
    "form_fields",
    "get_config",
    "get_store",
    "guarded_router",
    "include_guarded",
    "responses",
    "role_refusal",
    "session_of",
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


# -- operators' sessions: the console's login on the same API ----------------------------

SESSION_COOKIE = "plugstream_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: paths only an admin's session may use: operator-account management
ADMIN_ONLY_PREFIXES: tuple[str, ...] = (f"{API_PREFIX}/operators",)
FORM_TYPE = "application/x-www-form-urlencoded"


async def session_of(request: Request) -> SessionRecord | None:
    """The live session of the request's ``plugstream_session`` cookie, if any (looked up
    once per request and kept on ``request.state.operator_session``)."""
    if hasattr(request.state, "operator_session"):
        found: SessionRecord | None = request.state.operator_session
        return found
    session_id = request.cookies.get(SESSION_COOKIE)
    session = None
    if session_id and len(session_id) <= 128:
        store: Store = _state(request, "store")
        session = await store.operators.get_session(session_id)
    request.state.operator_session = session
    return session


async def form_fields(request: Request) -> dict[str, str]:
    """An url-encoded form body's fields (the first value of each); {} for other bodies.
    The body is read once and kept, so the route's handler can still read it."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_TYPE:
        return {}
    body = await request.body()
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        return {}
    fields: dict[str, str] = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    return fields


async def csrf_refusal(request: Request, session: SessionRecord) -> JSONResponse | None:
    """The 403 for an unsafe request of a session without its CSRF token (the header
    ``X-CSRF-Token`` or the form field ``csrf_token``); None when safe or it matches."""
    if request.method.upper() in SAFE_METHODS:
        return None
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        given = (await form_fields(request)).get(CSRF_FIELD)
    if given and secrets.compare_digest(given.encode(), session.csrf_token.encode()):
        return None
    return JSONResponse(status_code=403, content={"detail": "missing or wrong CSRF token"})


def role_refusal(role: str, method: str, path: str) -> JSONResponse | None:
    """The 403 for what a session's role may not do: a read-only user only reads; only
    an admin manages operator accounts."""
    if role == "admin":
        return None
    if role != "operator" and method.upper() not in SAFE_METHODS:
        return JSONResponse(
            status_code=403, content={"detail": f"role {role} may only read, not change"}
        )
    if any(path == p or path.startswith(p + "/") for p in ADMIN_ONLY_PREFIXES):
        return JSONResponse(
            status_code=403, content={"detail": "only an admin manages operator accounts"}
        )
    return None


async def auth_refusal(request: Request) -> JSONResponse | None:
    """The guard: the bearer token (full rights, checked exactly as
    :func:`bearer_refusal` does) or, with no ``Authorization`` header, a logged-in
    session's cookie with its role's rules and, for an unsafe method, its CSRF token."""
    if "authorization" not in request.headers and SESSION_COOKIE in request.cookies:
        session = await session_of(request)
        if session is not None:
            refused = role_refusal(session.role, request.method, request.url.path)
            return refused if refused is not None else await csrf_refusal(request, session)
        if _state(request, "config").api_token is not None:
            return JSONResponse(
                status_code=401,
                content={"detail": "session expired or unknown: log in again"},
                headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
            )
    return bearer_refusal(request)


class GuardedRoute(APIRoute):
    """A route that checks the bearer token or an operator's session (:func:`auth_refusal`)
    before anything else -- before FastAPI reads the body, so a stranger learns nothing
    from validation errors -- and words request validation errors as one line (422)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            refused = await auth_refusal(request)
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
