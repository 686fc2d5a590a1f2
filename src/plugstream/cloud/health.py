"""``GET /healthz`` and ``GET /readyz``: a load balancer's and an orchestrator's probes.

- ``/healthz``: 200 ``ok`` while the process serves HTTP (liveness: restart it when not);
- ``/readyz``: 200 ``ok`` when the store is open, a trivial database read answers within
  :data:`READY_TIMEOUT_S` and the server is not shutting down; otherwise 503 with the
  reason, one line of plain text (readiness: send it no new stations or requests).

No token, as a balancer has none, and nothing about stations in the answers. A node that
loses its database is taken out of the pool by ``/readyz`` and put back when the database
answers again, without a restart. The lifespan tells this module where the node stands
(:func:`serving`, :func:`stopping`); the server's shutdown turns ``/readyz`` to 503 before
the listener closes, so requests on open keep-alive connections learn it too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy.engine import Connection
from starlette.datastructures import State

if TYPE_CHECKING:
    from plugstream.cloud.storage import Store

__all__ = ["READY_TIMEOUT_S", "not_ready", "router", "serving", "stopping"]

log = logging.getLogger(__name__)

#: s the database has to answer /readyz's read
READY_TIMEOUT_S = 2.0

router = APIRouter(include_in_schema=False)
"""``/healthz`` and ``/readyz``, unguarded; not in the REST API's OpenAPI document."""


@router.get("/healthz", response_class=PlainTextResponse)
async def healthz() -> str:
    return "ok\n"


@router.get("/readyz", response_class=PlainTextResponse)
async def readyz(request: Request) -> PlainTextResponse:
    state = request.app.state
    reason = await not_ready(state)
    if reason != getattr(state, "readyz_reason", None):  # logged when it changes, not per probe
        state.readyz_reason = reason
        if reason is not None:
            log.warning("not ready: %s", reason)
        else:
            log.info("ready")
    if reason is None:
        return PlainTextResponse("ok\n")
    return PlainTextResponse(f"{reason}\n", status_code=503)


async def not_ready(state: State) -> str | None:
    """Why the app whose state is ``state`` should get no new work, or None."""
    if getattr(state, "draining", False):
        return "shutting down"
    store: Store | None = getattr(state, "store", None)
    if store is None or not getattr(state, "ready", False):
        return "starting: the store is not open yet"
    try:
        await asyncio.wait_for(store.db.read(_select_one), READY_TIMEOUT_S)
    except TimeoutError:
        return f"the database did not answer within {READY_TIMEOUT_S:g} s"
    except Exception as exc:  # the class only: its text may name hosts and users
        log.debug("the readiness read failed", exc_info=True)
        return f"the database failed: {type(exc).__name__}"
    # The shutdown may have begun while the read waited: a probe in flight then (the
    # server waits for it, the listener closed) hears that the node is going.
    return "shutting down" if getattr(state, "draining", False) else None


def _select_one(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT 1").scalar_one())


def serving(app: FastAPI) -> None:
    """The lifespan has opened the store: ``/readyz`` may answer ok. Adds the server's
    shutdown hook (``state.on_server_shutdown``, run by ``CloudServer.shutdown`` before
    it stops listening) that turns it to 503."""
    state = app.state
    state.ready, state.draining = True, False
    hooks = getattr(state, "on_server_shutdown", None)
    if hooks is None:
        hooks = state.on_server_shutdown = []
    hooks.append(lambda: stopping(app))


def stopping(app: FastAPI) -> None:
    """The node is shutting down: ``/readyz`` answers 503 from now on."""
    app.state.draining = True
