"""The console's login: ``POST /login``, ``POST /logout`` and ``GET /api/v1/session``.

A login checks an operator's account (:class:`~plugstream.cloud.storage.Store`'s
``operators``) and sets the ``plugstream_session`` cookie: HttpOnly (no script reads
it), SameSite=Strict (no other site's page sends it), Path=/, and Secure when the request
came over TLS. The REST API's guard (:func:`~plugstream.cloud.api.common.auth_refusal`)
then takes that cookie in place of the bearer token, with the session's role rules and
its CSRF token on every unsafe method.

Logins are throttled like the stations' (:class:`~plugstream.cloud.logins.LoginThrottle`,
per user name and per source address, with the cloud's login limits), and a wrong one is
one 401 whatever was wrong: the answer never tells whether the name exists.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from plugstream.cloud.api.common import (
    API_PREFIX,
    SESSION_COOKIE,
    csrf_refusal,
    form_fields,
    session_of,
)
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.logins import LoginThrottle, PoolBusy, ThrottleLimits
from plugstream.cloud.storage import Store

__all__ = ["LOGIN_PATH", "LOGOUT_PATH", "SESSION_PATH", "router"]

LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
SESSION_PATH = f"{API_PREFIX}/session"
MAX_USERNAME = 64
MAX_PASSWORD = 1024  # longer is no password of ours: refused before any hash work
WRONG_LOGIN = "wrong username or password"

router = APIRouter(tags=["console"])


def _throttle(request: Request) -> LoginThrottle:
    """The app's throttle of console logins, made on first use from its login limits."""
    state = request.app.state
    throttle: LoginThrottle | None = getattr(state, "console_login_throttle", None)
    if throttle is None:
        config: CloudConfig = state.config
        throttle = LoginThrottle(
            time.monotonic,
            per_station=ThrottleLimits(
                config.login_failures_per_station, config.login_lock_s, config.login_lock_max_s
            ),
            per_address=ThrottleLimits(
                config.login_failures_per_address, config.login_lock_s, config.login_lock_max_s
            ),
        )
        state.console_login_throttle = throttle
    return throttle


async def _credentials(request: Request) -> tuple[str, str]:
    """The user name and password of a login form (url-encoded, or JSON for scripts)."""
    if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
        try:
            body: Any = json.loads(await request.body())
        except ValueError:
            body = None
        fields = body if isinstance(body, dict) else {}
    else:
        fields = await form_fields(request)
    username, password = fields.get("username"), fields.get("password")
    return (
        username if isinstance(username, str) else "",
        password if isinstance(password, str) else "",
    )


def _session_body(username: str, role: str, csrf_token: str) -> dict[str, str]:
    return {"username": username, "role": role, "csrf_token": csrf_token}


@router.post(LOGIN_PATH, summary="Log in to the console (sets the session cookie)")
async def login(request: Request) -> Response:
    """Form fields ``username`` and ``password``; 200 with the session's user, role and
    CSRF token, 401 for any wrong login, 429 while throttled."""
    username, password = await _credentials(request)
    address = request.client.host if request.client is not None else "?"
    throttle = _throttle(request)
    attempt = throttle.allow(username, address)
    if attempt.wait > 0:
        return JSONResponse(
            status_code=429,
            content={"detail": "too many failed logins: try again later"},
            headers={"Retry-After": str(max(1, math.ceil(attempt.wait)))},
        )
    store: Store = request.app.state.store
    operator = None
    try:
        if (
            username
            and password
            and len(username) <= MAX_USERNAME
            and len(password) <= MAX_PASSWORD
        ):
            operator = await store.operators.verify(username, password)
    except PoolBusy:
        throttle.done(attempt, ok=None)
        return JSONResponse(
            status_code=503,
            content={"detail": "busy: try again later"},
            headers={"Retry-After": "1"},
        )
    except BaseException:
        throttle.done(attempt, ok=None)
        raise
    throttle.done(attempt, ok=operator is not None)
    if operator is None:
        return JSONResponse(status_code=401, content={"detail": WRONG_LOGIN})
    session_id, session = await store.operators.create_session(operator)
    response = JSONResponse(_session_body(session.username, session.role, session.csrf_token))
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme in ("https", "wss"),
    )
    return response


@router.post(LOGOUT_PATH, status_code=204, summary="Log out (ends the session)")
async def logout(request: Request) -> Response:
    """Ends the session of the cookie (its CSRF token required) and clears the cookie;
    303 to the login page for a browser's plain form post."""
    session = await session_of(request)
    if session is not None:
        refused = await csrf_refusal(request, session)
        if refused is not None:
            return refused
        store: Store = request.app.state.store
        await store.operators.delete_session(request.cookies[SESSION_COOKIE])
    # A page's script asks for JSON and is told 204; a plain form post (no script) is sent
    # on to the login page, as a browser expects after a form.
    wants_page = "text/html" in request.headers.get("accept", "")
    response = RedirectResponse(LOGIN_PATH, 303) if wants_page else Response(status_code=204)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme in ("https", "wss"),
    )
    return response


@router.get(SESSION_PATH, summary="Who is logged in: user, role and CSRF token")
async def whoami(request: Request) -> Response:
    """The session's user, role and CSRF token (what a page puts in its forms); 401
    without a live session."""
    session = await session_of(request)
    if session is None:
        return JSONResponse(status_code=401, content={"detail": "not logged in"})
    return JSONResponse(_session_body(session.username, session.role, session.csrf_token))
