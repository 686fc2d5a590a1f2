"""The ASGI application of PlugStream Cloud: OCPP WebSockets and the REST API on one port.

- ``/ocpp/{stationId}``: the OCPP-J gateway (:mod:`plugstream.cloud.gateway`);
- ``/api/v1/``: the REST API (:mod:`plugstream.cloud.api`), its OpenAPI document at
  ``/api/v1/openapi.json`` and the docs at ``/api/v1/docs``.

The store is opened in the lifespan and closed on shutdown, after the gateway
has written out its message log.

A station's WebSocket goes straight to the gateway's ASGI handler, past FastAPI's
middleware, exception handlers and routing: a connection lasts for days, and
every frame of that stack would be held for each of tens of thousands of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from plugstream import __version__
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.context import CloudClock, HandlersFactory
from plugstream.cloud.gateway import Gateway
from plugstream.cloud.handlers import csms_handlers
from plugstream.ocpp import OcppVersion

if TYPE_CHECKING:
    from plugstream.cloud.storage import Store

API_PREFIX = "/api/v1"
OCPP_PREFIX = "/ocpp/"


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
    from plugstream.cloud.storage import Store

    return await Store.open(url)


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
        try:
            yield
        finally:
            try:
                await gateway.close()
            finally:
                await store.close()

    app = CloudApp(
        title="PlugStream Cloud",
        version=__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )

    _include_api(app, config)
    return app


def _create_setup_app(config: CloudConfig, opener: Callable[[str], Awaitable[Store]]) -> FastAPI:
    """``plugstream cloud serve --setup``: the setup service alone, on its own name and port,
    with the cloud's database: ``/setup/v1/provision``, ``/setup/v1/health`` and its
    OpenAPI document at ``/setup/v1/openapi.json``. No OCPP gateway, no REST API."""
    from plugstream.cloud.setup.api import SETUP_PREFIX, build_setup_router

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await opener(config.db)
        app.state.store = store
        app.state.gateway = None
        try:
            yield
        finally:
            await store.close()

    app = FastAPI(
        title="PlugStream setup service",
        version=__version__,
        openapi_url=f"{SETUP_PREFIX}/openapi.json",
        docs_url=f"{SETUP_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.include_router(build_setup_router(lambda: app.state.store, config))
    return app


def _include_api(app: FastAPI, config: CloudConfig) -> None:
    try:
        from plugstream.cloud.api import build_router
    except ModuleNotFoundError as exc:  # the REST API is not there yet
        if exc.name != "plugstream.cloud.api":
            raise
        return

    def store_getter() -> Any:
        return app.state.store

    def gateway_getter() -> Any:
        return app.state.gateway

    router = build_router(store_getter, gateway_getter, config.api_token)
    if router.prefix.startswith(API_PREFIX):
        app.include_router(router)
    else:
        app.include_router(router, prefix=API_PREFIX)
    _include_features(app, config, store_getter, gateway_getter)


def _include_features(
    app: FastAPI,
    config: CloudConfig,
    store_getter: Callable[[], Any],
    gateway_getter: Callable[[], Any],
) -> None:
    """The routers of the trust features: certificates, the firmware repository (its API
    and its downloads), the setup service's claims. Each gives its own prefixes."""
    from plugstream.cloud.certificates.api import build_router as certificates
    from plugstream.cloud.firmware.api import build_router as firmware
    from plugstream.cloud.setup.api import build_router as setup

    for build in (certificates, firmware, setup):
        feature = build(store_getter, gateway_getter, config)
        if feature is not None:
            app.include_router(feature)
