"""The unit of work under every repository: ``await db.write(op)`` and ``await db.read(fn)``.

An operation is a plain function of a sync SQLAlchemy ``Connection`` (Core code).

Every write goes through one writer task (``writer.BatchWriter``) that applies the
operations queued by many callers in one database transaction and commits once (group
commit): a ramp-up of thousands of stations writes thousands of times a second, and one
commit (one fsync) for a batch is what keeps up. SQLite admits one writer at a time
anyway. Operations run one after another, never at once: a ``max(id) + 1`` taken inside
one is unique.

Each operation is all-or-nothing: if one fails, the batch runs again with a SAVEPOINT
around each operation, so that it fails alone and leaves no row behind.

*Durable before acknowledged*: ``write`` returns (or its future completes) only once the
transaction holding the operation is committed — on SQLite in WAL mode with
``synchronous=FULL``, so on disk. The gateway therefore sends its CALLRESULT for a
transaction event or a security event only after the awaited write has returned.

A read runs ``fn`` on a connection of its own in one transaction (a consistent
snapshot); at most ``READERS`` run at once, and a read waits its turn without holding
a connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Dialect, Table, create_engine, event, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from . import schema as s
from .bulk import STORED_FORMS, StoredForm
from .writer import BatchWriter, WriterStats

__all__ = [
    "MIGRATIONS",
    "READERS",
    "Database",
    "SchemaMismatch",
    "dialect_insert",
    "migrate",
    "normalize_url",
    "schema_revisions",
]

T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations"

#: reads that run at once. A read waits its turn for one of these (as long as it takes),
#: never for a pooled connection: a pool's wait times out (30 s), and a REST listing or a
#: station's Authorize must not fail because a ramp-up of thousands of stations is reading
#: too. The pools hold a connection for each reader and the writer, so none ever waits.
READERS = 4
_POOL = {"pool_size": READERS + 1, "max_overflow": 4}


def normalize_url(url: str) -> str:
    """``sqlite:///x.db``, a bare path, ``postgresql://…`` or an async URL → an async URL."""
    if "://" not in url:
        return f"sqlite+aiosqlite:///{Path(url).expanduser().absolute()}"
    scheme, rest = url.split("://", 1)
    base, _, driver = scheme.partition("+")
    if base == "sqlite" and driver != "aiosqlite":
        return f"sqlite+aiosqlite://{rest}"
    if base in ("postgresql", "postgres") and driver != "asyncpg":
        return f"postgresql+asyncpg://{rest}"
    return url


def dialect_insert(conn: Connection, table: Table) -> Any:
    """The INSERT of the connection's dialect: both have ``ON CONFLICT``, not Core's."""
    if conn.dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)


def _alembic_config(conn: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        config.attributes["connection"] = conn
    return config


def _run_upgrade(conn: Connection) -> None:
    command.upgrade(_alembic_config(conn), "head")


def _code_head() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "the migrations have one head"
    return head


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


class SchemaMismatch(RuntimeError):
    """The database's schema is not the one this code was written for: older (run
    ``plugstream cloud migrate``) or newer (this node runs older code than the one that
    migrated it). A node of a cluster does not migrate on its own: several starting at
    once would race, and an operator upgrades the schema once, on purpose."""

    def __init__(self, current: str | None, head: str) -> None:
        self.current, self.head = current, head
        older = current is None or _is_known(current)
        if current is None:
            why = "has no PlugStream schema yet"
        elif older:
            why = f"is at schema revision {current}, older than this code's {head}"
        else:
            why = f"is at schema revision {current}, newer than this code's {head}"
        hint = "run: plugstream cloud migrate --db URL" if older else "upgrade this node"
        super().__init__(f"the database {why}; {hint}")


def _is_known(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(_alembic_config()).get_revision(revision) is not None
    except Exception:  # alembic's ResolutionError and kin: not one of ours
        return False


async def schema_revisions(url: str) -> tuple[str | None, str]:
    """(the database's schema revision, None if it has none; this code's newest)."""
    engine = create_async_engine(normalize_url(url))
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(_current)
    finally:
        await engine.dispose()
    return current, _code_head()


async def migrate(url: str) -> tuple[str | None, str]:
    """Bring the database's schema to this code's newest (the same migrations for SQLite
    and PostgreSQL); (the revision before, the revision now). Idempotent."""
    url = normalize_url(url)
    engine = create_async_engine(url)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine.sync_engine)
    try:
        async with engine.execution_options(plugstream_writer=True).begin() as conn:
            before = await conn.run_sync(_current)
            await conn.run_sync(_run_upgrade)
            after = await conn.run_sync(_current)
    finally:
        await engine.dispose()
    assert after is not None
    return before, after


def _configure_sqlite(engine: Engine) -> None:
    """WAL, synchronous=FULL, a busy timeout and foreign keys on every connection; and
    transactions begun by SQLAlchemy (so that SAVEPOINTs and DDL behave)."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=FULL",
            "PRAGMA busy_timeout=30000",
            "PRAGMA foreign_keys=ON",
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if _is_writer(conn) else "BEGIN")


def _is_writer(conn: Connection) -> bool:
    return bool(conn.get_execution_options().get("plugstream_writer", False))


class Database:
    """A migrated database with its writer and readers. Open with ``await Database.open(url)``."""

    url: str
    dialect: Dialect
    #: how the dialect stores times and decimals, for rows written in bulk
    form: StoredForm
    stats: WriterStats

    def __init__(self, engine: AsyncEngine, url: str, sync_engine: Engine | None = None) -> None:
        self.url = url
        self.dialect = engine.dialect
        self.form = STORED_FORMS[engine.dialect.name]
        self._engine = engine
        self._sync_engine = sync_engine
        self._writer = BatchWriter(
            engine.execution_options(plugstream_writer=True),
            sync_engine=(
                sync_engine.execution_options(plugstream_writer=True)
                if sync_engine is not None
                else None
            ),
        )
        self.stats = self._writer.stats
        self._readers = asyncio.Semaphore(READERS)
        # SQLite: a read runs whole in one of these threads on a plain pysqlite connection,
        # one thread hop per read (aiosqlite hops once per cursor call, on the event loop).
        self._read_pool = (
            ThreadPoolExecutor(READERS, thread_name_prefix="plugstream-read")
            if sync_engine is not None
            else None
        )

    @property
    def queued(self) -> int:
        """Writes waiting for the writer's next batch."""
        return self._writer.queued

    def observe_batches(self, callback: Callable[[float], None] | None) -> None:
        """``callback(seconds)`` after each batch of writes is run and committed (or
        failed): the database's write latency, for the metrics."""
        self._writer.on_batch = callback

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> Database:
        """Connect, migrate to the newest schema (``migrate`` False: check that it is
        the newest, else :class:`SchemaMismatch`), start the writer."""
        url = normalize_url(url)
        engine = create_async_engine(url, **_POOL)
        sync_engine = None
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine.sync_engine)
            sync_engine = create_engine(make_url(url).set(drivername="sqlite+pysqlite"), **_POOL)
            _configure_sqlite(sync_engine)
        try:
            async with engine.execution_options(plugstream_writer=True).begin() as conn:
                if migrate:
                    await conn.run_sync(_run_upgrade)
                else:
                    current, head = await conn.run_sync(_current), _code_head()
                    if current != head:
                        raise SchemaMismatch(current, head)
        except BaseException:
            await engine.dispose()
            if sync_engine is not None:
                sync_engine.dispose()
            raise
        db = cls(engine, url, sync_engine)
        db._writer.start()
        return db

    async def close(self) -> None:
        """Commit everything queued so far, then let go of the database."""
        await self._writer.close()
        if self._read_pool is not None:
            self._read_pool.shutdown(wait=True)
        await self._engine.dispose()
        if self._sync_engine is not None:
            self._sync_engine.dispose()

    async def write(self, op: Callable[[Connection], T]) -> T:
        """``op``'s result (or exception) once its transaction is committed."""
        return await self._writer.enqueue(op)

    def enqueue(self, op: Callable[[Connection], T]) -> asyncio.Future[T]:
        """What ``write`` does, as a future: no coroutine, no task, for a caller that
        hands over many writes (the message log). A closed database's ``RuntimeError``
        comes through the future too."""
        return self._writer.enqueue(op)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """``fn`` on a connection of its own, in one transaction (a consistent snapshot);
        no connection is held while waiting for a turn."""
        async with self._readers:
            if self._read_pool is not None:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._read_pool, self._sync_read, fn)
            async with self._engine.connect() as conn:
                return await conn.run_sync(fn)

    def _sync_read(self, fn: Callable[[Connection], T]) -> T:
        assert self._sync_engine is not None
        with self._sync_engine.connect() as conn:
            return fn(conn)

    async def count_rows(self, table: str) -> int:
        """How many rows ``table`` holds (for tests and diagnostics)."""
        t = s.metadata.tables[table]
        return await self.read(
            lambda conn: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
        )
