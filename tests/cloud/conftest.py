"""The ``store`` fixture: every storage test runs on SQLite, and also on PostgreSQL when
PLUGSTREAM_TEST_POSTGRES names a server (as CI sets it). A PostgreSQL that is named but
down fails the tests; it never skips them.

And the fixtures the CSMS's test cases share, so that each file does not start its own:
``hop`` (a cloud and an operator's client), ``cloud``, ``api`` and ``cs`` (a raw 2.0.1
station booted on it, with the id of the ``station_id`` fixture)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from plugstream.cloud.storage import Store
from plugstream.cloud.storage.schema import metadata
from tests.cloud.raw_station201 import Hop, RawStation201, hop_cloud, station201
from tests.support import Cloud

T = TypeVar("T")
POSTGRES = os.environ.get("PLUGSTREAM_TEST_POSTGRES", "").strip()
# The PostgreSQL case talks to a server: a ``socket`` test whatever its module's kind.
BACKENDS = ["sqlite"] + ([pytest.param("postgresql", marks=pytest.mark.socket)] if POSTGRES else [])


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on its own loop, whether or not one is running."""

    async def main() -> T:
        return await coro_fn()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this test session's own on the PLUGSTREAM_TEST_POSTGRES server."""
    assert POSTGRES, "PLUGSTREAM_TEST_POSTGRES is not set"
    name = f"plugstream_storage_test_{os.getpid()}"
    admin = _asyncpg_dsn(POSTGRES)

    async def create() -> None:
        try:
            conn = await asyncpg.connect(admin, timeout=10)
        except Exception as exc:
            pytest.fail(f"PLUGSTREAM_TEST_POSTGRES={POSTGRES!r} is set but unreachable: {exc!r}")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(admin, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    _run(create)
    yield make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    _run(drop)


_FRESH = itertools.count()


@contextlib.contextmanager
def fresh_postgres(prefix: str, *, migrated: bool = False) -> Iterator[str]:
    """A new, empty database of its own on the PLUGSTREAM_TEST_POSTGRES server, brought
    to this code's schema by ``plugstream cloud migrate`` when ``migrated`` (what a
    cluster's nodes need before they start), and dropped afterwards. A server that is
    named but unreachable fails the test."""
    assert POSTGRES, "PLUGSTREAM_TEST_POSTGRES is not set"
    name = f"{prefix}_{os.getpid()}_{next(_FRESH)}"
    admin = _asyncpg_dsn(POSTGRES)

    async def execute(sql: str) -> None:
        try:
            conn = await asyncpg.connect(admin, timeout=10)
        except Exception as exc:
            pytest.fail(f"PLUGSTREAM_TEST_POSTGRES={POSTGRES!r} is set but unreachable: {exc!r}")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    _run(lambda: execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    _run(lambda: execute(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
        if migrated:
            done = subprocess.run(
                [sys.executable, "-m", "plugstream.cli", "cloud", "migrate", "--db", url],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, done.stderr
        yield url
    finally:
        _run(lambda: execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _truncate_postgres(url: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(url), timeout=10)
    try:
        tables = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
        await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(params=BACKENDS)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database's URL (the tables exist on PostgreSQL, not yet on SQLite)."""
    if request.param == "sqlite":
        return str(tmp_path / "cloud.db")
    url: str = request.getfixturevalue("postgres_url")
    opened = await Store.open(url)  # migrated (a no-op after the first test)
    await opened.close()
    await _truncate_postgres(url)
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(store_url)
    try:
        yield opened
    finally:
        await opened.close()


# -- a cloud on loopback, its REST API and a raw 2.0.1 station ------------------------------


@pytest.fixture
async def hop(tmp_path: Path) -> AsyncIterator[Hop]:
    """A cloud on loopback (on the wall clock, registering stations on first sight) and an
    operator's client of its REST API: what most of the CSMS's test cases run against."""
    async with hop_cloud(tmp_path, wall_clock=True) as served:
        yield served


@pytest.fixture
def cloud(hop: Hop) -> Cloud:
    """The cloud of :func:`hop`."""
    return hop.cloud


@pytest.fixture
def api(hop: Hop) -> httpx.AsyncClient:
    """The operator's client of :func:`hop`'s REST API, base /api/v1."""
    return hop.api


@pytest.fixture
def station_id() -> str:
    """The id :func:`cs` connects with (a module overrides it to name its own)."""
    return "CS-201"


@pytest.fixture
async def cs(hop: Hop, station_id: str) -> AsyncIterator[RawStation201]:
    """A raw 2.0.1 station, registered on first sight and booted, on :func:`hop`'s cloud."""
    async with station201(hop, station_id) as station:
        yield station
