"""The console's pages: server-rendered HTML shells (Jinja2) that draw their data from the
REST API with the operator's session, and the console's own static files.

A page holds no data of its own: its script reads the same ``/api/v1`` routes a script
with the API token would, so what the console shows and what the API answers cannot
drift apart, and a role's rules are the API's (a read-only user's page disables what the
API would refuse with 403). Everything is served from this origin; the Content-Security-
Policy lets a page load nothing from any other host, run no inline script, and be framed
by no one.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from plugstream import __version__
from plugstream.cloud.api.common import API_PREFIX, CSRF_FIELD, session_of
from plugstream.cloud.storage.operators import SessionRecord

__all__ = ["CSP", "NAV", "STATIC_PREFIX", "Page", "mount_console", "router"]

STATIC_PREFIX = "/console/static"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class Page:
    """One entry of the navigation: its path, its name, its template."""

    path: str
    title: str
    template: str


NAV: tuple[Page, ...] = (
    Page("/", "Fleet", "fleet.html"),
    Page("/transactions", "Transactions", "transactions.html"),
    Page("/id-tokens", "Id tokens", "id_tokens.html"),
    Page("/firmware", "Firmware", "firmware.html"),
    Page("/security-events", "Security events", "security_events.html"),
    Page("/claims", "Setup claims", "claims.html"),
    Page("/reservations", "Reservations", "reservations.html"),
    Page("/tariffs", "Tariffs", "tariffs.html"),
    Page("/sites", "Sites and limits", "sites.html"),
    Page("/display-messages", "Display messages", "display_messages.html"),
)
"""The console's top-level pages, in the order of its navigation."""

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("plugstream.cloud.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _static_dir() -> Path:
    return Path(str(importlib.resources.files("plugstream.cloud.console") / "static"))


def render(
    template: str,
    *,
    title: str,
    session: SessionRecord | None,
    nav: str | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page with the console's layout and security headers; ``context`` goes to its
    template (and, through ``data-`` attributes, to its script)."""
    html = _TEMPLATES.get_template(template).render(
        title=title,
        session=session,
        can_write=session is not None and session.role in ("admin", "operator"),
        is_admin=session is not None and session.role == "admin",
        nav=NAV,
        current=nav,
        static=STATIC_PREFIX,
        version=__version__,
        api=API_PREFIX,
        csrf_field=CSRF_FIELD,
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


PageHandler = Callable[..., Coroutine[Any, Any, Response]]

router = APIRouter(include_in_schema=False)


async def _for_session(
    request: Request, template: str, title: str, nav: str | None, **context: Any
) -> Response:
    """``template`` for the operator of the request's session; the login page without one."""
    session = await session_of(request)
    if session is None:
        return _login_redirect(request)
    return render(template, title=title, session=session, nav=nav, **context)


def _page(page: Page) -> PageHandler:
    async def show(request: Request) -> Response:
        return await _for_session(request, page.template, page.title, page.path)

    show.__name__ = "page_" + (page.path.strip("/").replace("-", "_") or "fleet")
    return show


for _entry in NAV:
    router.add_api_route(_entry.path, _page(_entry), methods=["GET"], response_class=HTMLResponse)


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/") -> Response:
    """The login form; a logged-in operator goes straight on."""
    # Only a path of this origin: "//host" and "/\\host" are other hosts to a browser.
    target = next if next.startswith("/") and not next.startswith(("//", "/\\")) else "/"
    session = await session_of(request)
    if session is not None:
        return RedirectResponse(target, status_code=303)
    store = request.app.state.store
    has_operators = bool(await store.operators.list())
    return render(
        "login.html", title="Log in", session=None, next=target, has_operators=has_operators
    )


@router.get("/stations/{station_id}", response_class=HTMLResponse)
async def station_page(request: Request, station_id: str) -> Response:
    title = f"Station {station_id}"
    return await _for_session(request, "station.html", title, None, station_id=station_id)


@router.get("/transactions/{tx_id}", response_class=HTMLResponse)
async def transaction_page(request: Request, tx_id: str) -> Response:
    title = f"Transaction {tx_id}"
    return await _for_session(request, "transaction.html", title, "/transactions", tx_id=tx_id)


@functools.cache
def _favicon() -> bytes:
    return (_static_dir() / "favicon.svg").read_bytes()


@router.get("/favicon.ico")
async def favicon() -> Response:
    """The console's icon where a browser looks for it by itself (on a page of JSON, say)."""
    return Response(
        _favicon(), media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"}
    )


def mount_console(app: FastAPI) -> None:
    """The pages and ``/console/static`` into ``app`` (after the API's routes)."""
    app.include_router(router)
    app.mount(
        STATIC_PREFIX,
        StaticFiles(directory=_static_dir(), follow_symlink=False),
        name="console-static",
    )
