"""A cloud with a PKI for the C/M/L test cases (test_v2g_certificates.py,
test_publish_firmware.py), and their raw 2.0.1 station: :mod:`tests.cloud.raw_station201`'s,
with every frame checked against the official schemas."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from tests.cloud.raw_station201 import Answer, RawStation201
from tests.cloud.raw_station201 import station201 as raw_station201
from tests.support import WAIT, Cloud, serving


@contextlib.asynccontextmanager
async def station201(
    cloud: Cloud, station_id: str, answers: Mapping[str, Answer] | None = None
) -> AsyncIterator[RawStation201]:
    """A booted 2.0.1 station connected to ``cloud`` (which registers it on first use),
    every frame checked against the official schemas."""
    async with raw_station201(cloud, station_id, answers, checked=True) as station:
        yield station


@contextlib.asynccontextmanager
async def cloud_with_pki(tmp_path: Path, pki_dir: Path, **overrides: Any) -> AsyncIterator[Cloud]:
    """:func:`tests.support.running_cloud` with ``pki_dir`` and unsecured auto-registration."""
    from plugstream.cloud.app import create_app
    from plugstream.cloud.config import CloudConfig
    from plugstream.cloud.handlers import csms_handlers
    from plugstream.cloud.serve import CloudServer, bound_port, uvicorn_config

    config = replace(
        CloudConfig(
            host="127.0.0.1",
            port=0,
            db=f"sqlite:///{tmp_path / 'cloud.db'}",
            call_timeout=5.0,
            pki_dir=pki_dir,
            auto_register_unsecured=True,
        ),
        **overrides,
    )
    app = create_app(config, handlers=csms_handlers())
    server = CloudServer(uvicorn_config(config, app))
    async with serving(server):
        yield Cloud(config, bound_port(server, 0), app.state.store, app.state.gateway, server)


def api(cloud: Cloud) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{cloud.port}", timeout=WAIT)
