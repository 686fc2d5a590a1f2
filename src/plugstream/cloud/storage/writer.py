"""Group commit: one writer task applies the queued write operations of many callers in
one database transaction, commits once, then answers every caller.

An operation is a plain function of a sync SQLAlchemy ``Connection`` (Core code), run
through ``AsyncConnection.run_sync``. A batch first runs without savepoints; if an
operation raises, the transaction is rolled back and the batch runs again with a
SAVEPOINT around each operation, so that one failing operation fails alone.

An operation may hand rows to ``defer_rows``: in a batch without savepoints they are
inserted at the end of it, before the commit, one ``executemany`` per statement for
all operations together; with a savepoint per operation, at once, inside its
savepoint.

On PostgreSQL the batch runs as ``await conn.run_sync(batch)`` on the async engine. On
SQLite it runs in a worker thread on a sync (pysqlite) engine for the same file: the
database work is the same, without aiosqlite's thread hop per cursor call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")
Op = Callable[[Connection], Any]

#: ``Connection.info`` key of the rows deferred to the end of the running batch
_DEFERRED = "plugstream_deferred_rows"


def defer_rows(conn: Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` with the driver-level statement ``sql`` (``BulkInsert.sql``):
    at the end of the batch, or at once when no batch collects them."""
    deferred: dict[str, list[tuple[Any, ...]]] | None = conn.info.get(_DEFERRED)
    if deferred is None:
        conn.exec_driver_sql(sql, rows)
        return
    found = deferred.get(sql)
    if found is None:
        deferred[sql] = list(rows)
    else:
        found.extend(rows)


@dataclass(slots=True)
class WriterStats:
    ops: int = 0  # operations committed or failed
    commits: int = 0  # database transactions committed
    max_batch: int = 0  # the largest batch so far
    retried_batches: int = 0  # batches re-run with a savepoint per operation


class _Retry(Exception):
    pass


def _run_fast(conn: Connection, ops: list[Op]) -> list[tuple[bool, Any]]:
    results: list[tuple[bool, Any]] = []
    deferred: dict[str, list[tuple[Any, ...]]] = {}
    conn.info[_DEFERRED] = deferred
    try:
        for op in ops:
            results.append((True, op(conn)))
        for sql, rows in deferred.items():
            conn.exec_driver_sql(sql, rows)
    except Exception as exc:
        if len(ops) == 1:
            raise
        raise _Retry from exc
    finally:
        conn.info.pop(_DEFERRED, None)
    return results


def _run_isolated(conn: Connection, ops: list[Op]) -> list[tuple[bool, Any]]:
    results: list[tuple[bool, Any]] = []
    for op in ops:
        savepoint = conn.begin_nested()
        try:
            result = op(conn)
        except Exception as exc:
            savepoint.rollback()
            results.append((False, exc))
        else:
            savepoint.commit()
            results.append((True, result))
    return results


class BatchWriter:
    def __init__(
        self, engine: AsyncEngine, *, sync_engine: Engine | None = None, max_batch: int = 2000
    ) -> None:
        """With ``sync_engine`` (SQLite), a batch runs in a worker thread on a plain
        sync connection: aiosqlite would hop threads for every cursor call."""
        self._engine = engine
        self._sync_engine = sync_engine
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[Op, asyncio.Future[Any]] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = WriterStats()
        self.on_batch: Callable[[float], None] | None = None
        """Told the seconds each batch took to run and commit (or fail): the metrics'."""

    @property
    def queued(self) -> int:
        """Operations waiting for a batch (not those of the batch being applied)."""
        return self._queue.qsize()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="plugstream-storage-writer")

    async def submit(self, op: Callable[[Connection], T]) -> T:
        """Queue ``op``; return its result (or raise its exception) once committed."""
        return await self.enqueue(op)

    def enqueue(self, op: Callable[[Connection], T]) -> asyncio.Future[T]:
        """Queue ``op``; a future of its result once committed (a closed writer's
        ``RuntimeError`` too comes through the future). Cheaper than ``submit`` for
        callers that gather many writes: no coroutine, no task."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if self._closed or self._task is None or self._task.done():
            future.set_exception(RuntimeError("the store is closed"))
        else:
            self._queue.put_nowait((op, future))
        return future

    async def close(self) -> None:
        """Apply everything queued so far, then stop."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None and not self._task.done():
            self._queue.put_nowait(None)
            await self._task

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            batch: list[tuple[Op, asyncio.Future[Any]]] = []
            stop = False
            while True:
                if item is None:
                    stop = True
                else:
                    batch.append(item)
                if len(batch) >= self._max_batch or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                await self._apply(batch)
            if stop:
                return

    async def _transaction(
        self, fn: Callable[[Connection, list[Op]], list[tuple[bool, Any]]], ops: list[Op]
    ) -> list[tuple[bool, Any]]:
        """Run ``fn(conn, ops)`` in one database transaction and commit it."""
        if self._sync_engine is not None:
            return await asyncio.to_thread(self._sync_transaction, fn, ops)
        async with self._engine.begin() as conn:
            return await conn.run_sync(fn, ops)

    def _sync_transaction(
        self, fn: Callable[[Connection, list[Op]], list[tuple[bool, Any]]], ops: list[Op]
    ) -> list[tuple[bool, Any]]:
        assert self._sync_engine is not None
        with self._sync_engine.begin() as conn:
            return fn(conn, ops)

    async def _apply(self, batch: list[tuple[Op, asyncio.Future[Any]]]) -> None:
        ops = [op for op, _ in batch]
        started = time.perf_counter()
        try:
            try:
                results = await self._transaction(_run_fast, ops)
            except _Retry:
                self.stats.retried_batches += 1
                results = await self._transaction(_run_isolated, ops)
        except Exception as exc:  # the commit (or a lone operation) failed: all fail
            results = [(False, exc)] * len(batch)
        else:
            self.stats.commits += 1
        if self.on_batch is not None:
            self.on_batch(time.perf_counter() - started)
        self.stats.ops += len(batch)
        self.stats.max_batch = max(self.stats.max_batch, len(batch))
        for (_, future), (ok, value) in zip(batch, results, strict=True):
            if future.done():  # the caller was cancelled; the data is committed anyway
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
