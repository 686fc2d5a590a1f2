"""The ASGI application of PlugStream Cloud: OCPP WebSockets and the REST API on one port.

- ``/ocpp/{stationId}``: the OCPP-J gateway (:mod:`plugstream.cloud.gateway`);
- ``/``: the operator's console (:mod:`plugstream.cloud.console`), its pages and their
  live updates (``/api/v1/live``);
- ``/api/v1/``: the REST API (:mod:`plugstream.cloud.api`), its OpenAPI document at
  ``/api/v1/openapi.json`` and the docs at ``/api/v1/docs``, Swagger UI from the installed
  package, never a CDN (:mod:`plugstream.cloud.api.docs`);
- ``/metrics``, ``/healthz``, ``/readyz``: for Prometheus and load balancers, without a
  token (:mod:`plugstream.cloud.metrics`, :mod:`plugstream.cloud.health`).

The store is opened in the lifespan and closed on shutdown, after the gateway
has written out its message log.

A station's WebSocket goes straight to the gateway's ASGI handler, past FastAPI's
middleware, exception handlers and routing: a connection lasts for days, and
every frame of that stack would be held for each of tens of thousands of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI
from starlette.types import Receive, Scope, Send

from plugstream import __version__
from plugstream.cloud import health, metrics
from plugstream.cloud.api import (
    commands,
    id_tokens,
    messages,
    security_events,
    stations,
    transactions,
)
from plugstream.cloud.api.common import API_PREFIX, include_guarded
from plugstream.cloud.api.docs import serve_docs
from plugstream.cloud.api.limits import BodyLimit
from plugstream.cloud.certificates import api as certificates_api
from plugstream.cloud.certificates import ocsp
from plugstream.cloud.certificates import status_api as certificate_status_api
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.console import auth as console_auth
from plugstream.cloud.console import live as console_live
from plugstream.cloud.console.pages import mount_console
from plugstream.cloud.context import CloudClock, HandlersFactory, utc_now
from plugstream.cloud.data_transfer import api as data_transfer_api
from plugstream.cloud.device_model import api as device_model_api
from plugstream.cloud.diagnostics import api as diagnostics_api
from plugstream.cloud.display_messages import api as display_messages_api
from plugstream.cloud.firmware import api as firmware_api
from plugstream.cloud.firmware import publish as firmware_publish
from plugstream.cloud.gateway import Gateway
from plugstream.cloud.handlers import csms_handlers
from plugstream.cloud.reservations import api as reservations_api
from plugstream.cloud.retention import retention_loop
from plugstream.cloud.setup import api as setup_api
from plugstream.cloud.smart_charging import api as smart_charging_api
from plugstream.cloud.tariffs import api as tariffs_api
from plugstream.ocpp import OcppVersion

if TYPE_CHECKING:
    from plugstream.cloud.bus.cluster import Cluster
    from plugstream.cloud.storage import Store

log = logging.getLogger(__name__)

OCPP_PREFIX = "/ocpp/"

API_ROUTERS: tuple[APIRouter, ...] = (
    stations.router,
    messages.router,
    security_events.router,
    commands.router,
    transactions.router,
    id_tokens.router,
    device_model_api.router,
    diagnostics_api.router,
    reservations_api.router,
    display_messages_api.router,
    data_transfer_api.router,
    tariffs_api.router,
    smart_charging_api.router,
    certificate_status_api.router,
    firmware_publish.router,
    console_live.router,
)
"""The REST API's own routers, bearer-guarded, in the order of its OpenAPI document."""


class CloudApp(FastAPI):
    """The REST API's FastAPI app, which hands ``/ocpp/{stationId}`` WebSockets to the gateway
    (``state.gateway``) itself; everything else (HTTP, the lifespan) goes through FastAPI."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            if path.startswith(OCPP_PREFIX):
                gateway: Gateway = self.state.gateway
                await gateway.serve_asgi(scope, receive, send, path[len(OCPP_PREFIX) :])
                return
        await super().__call__(scope, receive, send)


async def _open_store(url: str) -> Store:
    """SQLite, the embedded single node, migrates its own file; a PostgreSQL database,
    which several nodes may share, must be at this code's schema already (``plugstream
    cloud migrate``): see :class:`~plugstream.cloud.storage.SchemaMismatch`."""
    from plugstream.cloud.storage import Store

    return await Store.open(url, migrate=migrates_itself(url))


def migrates_itself(url: str) -> bool:
    """Whether ``cloud serve`` brings the database's schema up to date by itself."""
    from plugstream.cloud.storage import normalize_url

    return normalize_url(url).startswith("sqlite")


async def _join_cluster(config: CloudConfig, gateway: Gateway) -> Cluster:
    """Join the cluster on ``config.bus`` as ``config.node_id``; one line and the
    start fails when the bus cannot be reached or the node id is taken."""
    from plugstream.cloud.bus.cluster import NodeIdInUse, join
    from plugstream.cloud.bus.events import start_events

    assert config.bus is not None
    try:
        cluster = await join(config.bus, config.node_id, gateway, name=config.cluster)
    except NodeIdInUse as exc:
        log.error("%s: give each node its own --node-id", exc)
        raise
    except Exception as exc:
        log.error("cannot join the cluster on the bus at %s: %s", config.bus, exc)
        raise
    gateway.join_cluster(cluster)
    try:
        outbox, relay = await start_events(
            gateway.store,
            cluster.nc,
            config.node_id,
            prefix=f"{config.cluster}.events",
            stream=f"{config.cluster.upper()}_EVENTS",
            clock=gateway.clock,
        )
    except BaseException as exc:
        log.error("cannot set up the event stream on the bus at %s: %s", config.bus, exc)
        await cluster.leave()
        raise
    gateway.event_outbox = outbox
    cluster.on_close.append(relay.close)
    log.info("node %s joined the cluster on %s", config.node_id, config.bus)
    return cluster


def create_app(
    config: CloudConfig,
    *,
    open_store: Callable[[str], Awaitable[Store]] | None = None,
    handlers: Mapping[OcppVersion, HandlersFactory] | None = None,
    clock: CloudClock | None = None,
) -> FastAPI:
    """The application; ``open_store`` and ``handlers`` replace the real ones in tests,
    ``clock`` the wall clock that what stations report is stamped and checked with."""
    opener = open_store if open_store is not None else _open_store
    if config.setup_only:
        return _create_setup_app(config, opener)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await opener(config.db)
        versions = handlers if handlers is not None else csms_handlers()
        gateway = Gateway(store, config, handlers=versions, clock=clock)
        app.state.store = store
        app.state.gateway = gateway
        cluster = None
        if config.bus is not None:
            try:
                cluster = await _join_cluster(config, gateway)
            except BaseException:
                await store.close()
                raise
        app.state.metrics.watch(store, gateway)
        live = console_live.LiveHub(store, gateway)
        app.state.live = live
        live.start()
        app.state.on_server_shutdown = [live.close]  # open event streams end: see serve.py
        store.security.max_refusals = config.max_refusal_rows
        retention = asyncio.create_task(
            retention_loop(store, config, clock if clock is not None else utc_now)
        )
        health.serving(app)
        try:
            yield
        finally:
            health.stopping(app)
            live.close()
            await live.wait_closed()
            retention.cancel()
            await asyncio.gather(retention, return_exceptions=True)
            try:
                await gateway.close()
            finally:
                try:
                    if cluster is not None:
                        await cluster.leave()
                finally:
                    await store.close()

    app = CloudApp(
        title="PlugStream Cloud",
        version=__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN: serve_docs serves it
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.config = config
    include_operations(app)
    serve_docs(app, API_PREFIX)
    include_api(app)
    mount_console(app)
    limit_bodies(app, config)
    return app


def _create_setup_app(config: CloudConfig, opener: Callable[[str], Awaitable[Store]]) -> FastAPI:
    """``plugstream cloud serve --setup``: the setup service alone, on its own name and port,
    with the cloud's database: ``/setup/v1/provision``, ``/setup/v1/health`` and its
    OpenAPI document at ``/setup/v1/openapi.json``. No OCPP gateway, no REST API."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await opener(config.db)
        app.state.store = store
        app.state.gateway = None
        app.state.metrics.watch(store)
        health.serving(app)
        try:
            yield
        finally:
            health.stopping(app)
            await store.close()

    app = FastAPI(
        title="PlugStream setup service",
        version=__version__,
        openapi_url=f"{setup_api.SETUP_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.config = config
    include_operations(app)
    serve_docs(app, setup_api.SETUP_PREFIX)
    app.include_router(setup_api.router)
    limit_bodies(app, config)
    return app


def include_operations(app: FastAPI) -> None:
    """``/metrics`` (the app's own registry: a process may hold several apps), ``/healthz``
    and ``/readyz``, unguarded: Prometheus and load balancers bring no token."""
    app.state.metrics = metrics.CloudMetrics(app.state)
    app.include_router(metrics.router)
    app.include_router(health.router)


def include_api(app: FastAPI) -> None:
    """The REST API and the routers of the trust features -- certificates, the firmware
    repository (its API and the stations' downloads), the setup service's claims and
    its setup call -- into ``app``, whose ``state.config`` is set (the bearer token)."""
    include_guarded(app, *API_ROUTERS, certificates_api.router, firmware_api.router)
    app.include_router(firmware_api.downloads)
    app.include_router(ocsp.router)  # OCSP clients (stations, EVs' chargers) bring no token
    include_guarded(app, setup_api.claims)
    app.include_router(setup_api.router)
    app.include_router(console_auth.router)  # /login, /logout, /api/v1/session


def limit_bodies(app: FastAPI, config: CloudConfig) -> None:
    """Refuse request bodies over ``config.max_body_bytes`` (413) before FastAPI reads
    them into memory; a firmware upload, streamed to disk, up to its own limit."""
    upload = ("POST", f"{API_PREFIX}/firmware")
    app.add_middleware(
        BodyLimit,
        limit=config.max_body_bytes,
        routes={
            upload: max(config.max_body_bytes, firmware_api.MAX_IMAGE_BYTES),
            **{
                (method, diagnostics_api.UPLOAD_PATH): max(
                    config.max_body_bytes, diagnostics_api.MAX_LOG_BYTES
                )
                for method in ("PUT", "POST")
            },
        },
    )
