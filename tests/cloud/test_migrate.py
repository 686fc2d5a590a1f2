"""``plugstream cloud migrate`` and the schema a node starts on (issue 18).

The same Alembic migrations build the schema on SQLite and on PostgreSQL. A PostgreSQL
database, which the nodes of a cluster share, is migrated once by the operator; a node
then refuses to start on any other schema, older or newer than its code, with one line
that says what to do. SQLite, the embedded single node, keeps migrating its own file."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from plugstream.cloud.serve import READY
from plugstream.cloud.storage import normalize_url
from plugstream.cloud.storage.database import _alembic_config, _code_head
from plugstream.cloud.storage.schema import metadata
from tests.cloud.conftest import BACKENDS, _run, fresh_postgres
from tests.support import free_port, read_until, stop_process

HEAD = _code_head()
PLUGSTREAM = (sys.executable, "-m", "plugstream.cli")
_NAMES = itertools.count()


def plugstream(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PLUGSTREAM, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def starts(*args: str) -> None:
    """``plugstream *args`` says it is serving (then it is stopped by its PID)."""
    node = subprocess.Popen(
        [*PLUGSTREAM, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        read_until(node, READY)
    finally:
        stop_process(node)


@pytest.fixture(params=BACKENDS)
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cloud.db'}"
        return
    yield from _postgres_database()


@pytest.fixture(params=BACKENDS[1:])  # PostgreSQL's, when PLUGSTREAM_TEST_POSTGRES names one
def empty_postgres() -> Iterator[str]:
    yield from _postgres_database()


def _postgres_database() -> Iterator[str]:
    with fresh_postgres("plugstream_migrate") as url:
        yield url


def _tables(url: str) -> set[str]:
    async def read() -> set[str]:
        engine = create_async_engine(normalize_url(url))
        try:
            async with engine.connect() as conn:
                return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        finally:
            await engine.dispose()

    return _run(read)


def _upgrade_to(url: str, revision: str) -> None:
    async def write() -> None:
        engine = create_async_engine(normalize_url(url))
        try:
            async with engine.begin() as conn:
                await conn.run_sync(lambda c: command.upgrade(_alembic_config(c), revision))
        finally:
            await engine.dispose()

    _run(write)


def _stamp(url: str, revision: str) -> None:
    """Say the schema is at ``revision`` (one of newer code's, say) without changing it."""

    async def write() -> None:
        engine = create_async_engine(normalize_url(url))
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE alembic_version SET version_num = :v"), {"v": revision}
                )
        finally:
            await engine.dispose()

    _run(write)


@pytest.mark.socket
def test_cloud_migrate_builds_the_codes_schema_once_on_either_database(empty_db: str) -> None:
    first = plugstream("cloud", "migrate", "--db", empty_db)
    assert first.returncode == 0, first.stderr
    assert f"migrated the schema from revision none to {HEAD}" in first.stdout
    assert _tables(empty_db) == {*metadata.tables, "alembic_version"}
    again = plugstream("cloud", "migrate", "--db", empty_db)
    assert again.returncode == 0, again.stderr
    assert f"the schema is up to date (revision {HEAD})" in again.stdout


@pytest.mark.socket
def test_a_node_refuses_a_postgresql_schema_other_than_its_codes(empty_postgres: str) -> None:
    """Empty, one revision behind, or from newer code: one line, exit 1, nothing listens;
    once migrated the node starts."""
    port = str(free_port())
    serve = ("cloud", "serve", "--port", port, "--db", empty_postgres)
    refused = plugstream(*serve)
    assert refused.returncode == 1
    assert refused.stderr.strip().endswith(
        "the database has no PlugStream schema yet; run: plugstream cloud migrate --db URL"
    )
    assert READY not in refused.stdout

    before_head = ScriptDirectory.from_config(_alembic_config()).get_revision(HEAD).down_revision
    assert isinstance(before_head, str)
    _upgrade_to(empty_postgres, before_head)
    refused = plugstream(*serve)
    assert refused.returncode == 1
    assert f"at schema revision {before_head}, older than this code's {HEAD}" in refused.stderr
    assert "run: plugstream cloud migrate" in refused.stderr

    _stamp(empty_postgres, "future_0099")
    refused = plugstream(*serve)
    assert refused.returncode == 1
    assert f"future_0099, newer than this code's {HEAD}; upgrade this node" in refused.stderr

    _stamp(empty_postgres, before_head)
    migrated = plugstream("cloud", "migrate", "--db", empty_postgres)
    assert migrated.returncode == 0, migrated.stderr
    assert f"from revision {before_head} to {HEAD}" in migrated.stdout
    starts(*serve)


@pytest.mark.socket
def test_sqlite_the_embedded_single_node_still_migrates_its_own_file(tmp_path: Path) -> None:
    db = tmp_path / "cloud.db"
    starts("cloud", "serve", "--port", str(free_port()), "--db", f"sqlite:///{db}")
    assert _tables(f"sqlite:///{db}") == {*metadata.tables, "alembic_version"}
