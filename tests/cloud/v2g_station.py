"""A cloud with a PKI for the C/M/L test cases (test_v2g_certificates.py,
test_publish_firmware.py), and their raw 2.0.1 station: :mod:`tests.cloud.raw_station201`'s,
with every frame checked against the official schemas."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.cloud.raw_station201 import Answer, RawStation201
from tests.cloud.raw_station201 import station201 as raw_station201
from tests.support import WAIT, Cloud, running_cloud


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
    overrides.setdefault("auto_register_unsecured", True)
    async with running_cloud(tmp_path, pki_dir=pki_dir, **overrides) as cloud:
        yield cloud


def api(cloud: Cloud) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{cloud.port}", timeout=WAIT)
