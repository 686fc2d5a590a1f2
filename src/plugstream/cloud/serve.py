"""Run PlugStream Cloud: uvicorn serving OCPP and HTTP on one port, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import sys
from collections.abc import Callable, Generator
from typing import Any

import uvicorn

from plugstream.cloud.app import create_app
from plugstream.cloud.config import CloudConfig

READY = "PlugStream Cloud listening on"


def _tls12_context(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    context = default()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def uvicorn_config(config: CloudConfig, app: Any | None = None) -> uvicorn.Config:
    tls = config.tls_cert is not None
    return uvicorn.Config(
        app if app is not None else create_app(config),
        host=config.host,
        port=config.port,
        ws="websockets-sansio",
        ws_max_size=config.max_frame_bytes,
        ws_ping_interval=config.ping_interval,
        ws_ping_timeout=config.ping_timeout,
        lifespan="on",
        log_level="warning",
        proxy_headers=False,
        server_header=False,
        ssl_certfile=str(config.tls_cert) if tls else None,
        ssl_keyfile=str(config.tls_key) if config.tls_key is not None else None,
        ssl_context_factory=_tls12_context if tls else None,
    )


class CloudServer(uvicorn.Server):
    """uvicorn's server, stopped cleanly by SIGTERM / SIGINT without re-raising them after."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if sys.platform == "win32":  # pragma: no cover
            yield
            return
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def ready_line(config: CloudConfig, port: int) -> str:
    host = f"[{config.host}]" if ":" in config.host else config.host
    http, ws = ("https", "wss") if config.tls_cert is not None else ("http", "ws")
    base = f"{host}:{port}"
    return f"{READY} {http}://{base} (OCPP {ws}://{base}/ocpp/{{id}}, API {http}://{base}/api/v1/)"


def bound_port(server: uvicorn.Server, default: int) -> int:
    for listener in getattr(server, "servers", []):
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    return default


async def serve(config: CloudConfig, *, ready: Callable[[str], None] | None = None) -> int:
    """Serve until stopped; 0 after a clean stop, 1 when the server could not start."""
    server = CloudServer(uvicorn_config(config))
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if server.started:
        line = ready_line(config, bound_port(server, config.port))
        if ready is not None:
            ready(line)
        else:
            print(line, flush=True)
    try:
        await task
    except SystemExit as exc:  # uvicorn exits when it cannot bind
        return int(exc.code) if isinstance(exc.code, int) else 1
    return 0 if server.started else 1


def run(config: CloudConfig) -> int:
    return asyncio.run(serve(config))
