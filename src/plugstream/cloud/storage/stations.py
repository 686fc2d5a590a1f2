"""The stations: registration (password, security profile, boot status), what each
station told us of itself at boot, when it was last heard from, its connectors."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Row, Table, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from plugstream.cloud.logins import PasswordPool, VerifiedCache

from . import schema as s
from .coltypes import as_utc
from .database import Database, dialect_insert
from .records import ConnectorStatus, StationRecord

__all__ = ["Admission", "Stations", "ensure_station", "password_pool"]

log = logging.getLogger("plugstream.cloud.storage.stations")

#: s a station's admission facts (profile, lenient, password, boot status) are trusted
#: without reading the store again; registrations in this process replace them at once.
ADMISSION_CACHE_S = 30.0

_POOL: PasswordPool | None = None


def password_pool() -> PasswordPool:
    """The process's pool for password hashing (two threads: this is a 2-core server's
    worth of argon2 without starving the event loop or the store's writer)."""
    global _POOL
    if _POOL is None:
        _POOL = PasswordPool(workers=2, max_waiting=64)
    return _POOL


@dataclass(frozen=True, slots=True)
class Admission:
    """What admitting a station and answering its boot need of its registration."""

    station_id: str
    security_profile: int
    lenient: bool
    has_password: bool
    boot_status: str | None


def _station_insert(make: Callable[[Table], Any]) -> Any:
    return make(s.stations).on_conflict_do_nothing(index_elements=["station_id"])


def _connector_upsert(make: Callable[[Table], Any]) -> Any:
    stmt = make(s.connectors)
    return stmt.on_conflict_do_update(
        index_elements=["station_id", "evse_id", "connector_id"],
        set_={
            "status": stmt.excluded.status,
            "error_code": stmt.excluded.error_code,
            "updated_at": stmt.excluded.updated_at,
        },
    )


# The statements of the writes every station makes, built once: a ramp-up of thousands
# of stations makes them thousands of times a second, and the writer is one thread.
_UPDATE_STATION = update(s.stations).where(s.stations.c.station_id == bindparam("sid"))
_SELECT_STATION_ID = select(s.stations.c.station_id).where(
    s.stations.c.station_id == bindparam("sid")
)
_INSERT_STATION = {
    "sqlite": _station_insert(sqlite_insert),
    "postgresql": _station_insert(pg_insert),
}
_UPSERT_CONNECTOR = {
    "sqlite": _connector_upsert(sqlite_insert),
    "postgresql": _connector_upsert(pg_insert),
}
_SELECT_BOOT_STATUS = select(s.stations.c.boot_status).where(
    s.stations.c.station_id == bindparam("sid")
)
_SELECT_ADMISSION = select(
    s.stations.c.station_id,
    s.stations.c.security_profile,
    s.stations.c.lenient,
    s.stations.c.password_hash,
    s.stations.c.boot_status,
).where(s.stations.c.station_id == bindparam("sid"))
_SELECT_HASH = select(s.stations.c.password_hash).where(s.stations.c.station_id == bindparam("sid"))
_SELECT_ADMISSIONS = select(*_SELECT_ADMISSION.selected_columns).where(
    s.stations.c.station_id.in_(bindparam("sids", expanding=True))
)
ADMISSION_READ_BATCH = 500  # ids per read (SQLite's bound parameters are limited)


def ensure_station(conn: Connection, station_id: str, at: datetime) -> None:
    """A row for a station first heard of (not registered): what it reports is kept."""
    if conn.execute(_SELECT_STATION_ID, {"sid": station_id}).first() is None:
        conn.execute(
            _INSERT_STATION[conn.dialect.name],
            {
                "station_id": station_id,
                "security_profile": 1,
                "lenient": False,
                "registered_at": as_utc(at),
            },
        )


def _station_record(row: Row[Any], connectors: list[ConnectorStatus]) -> StationRecord:
    return StationRecord(
        station_id=row.station_id,
        security_profile=row.security_profile,
        lenient=bool(row.lenient),
        has_password=row.password_hash is not None,
        registered_at=row.registered_at,
        vendor=row.vendor,
        model=row.model,
        serial_number=row.serial_number,
        firmware_version=row.firmware_version,
        ocpp_version=row.ocpp_version,
        last_boot=row.last_boot,
        last_seen=row.last_seen,
        clock_offset_s=row.clock_offset_s,
        connectors=connectors,
        boot_status=row.boot_status,
    )


def _read_stations(
    conn: Connection, station_id: str | None, among: Sequence[str] | None = None
) -> list[StationRecord]:
    """One station, those ``among`` the ids given, or (neither) every one."""
    query = select(s.stations).order_by(s.stations.c.station_id)
    cquery = select(s.connectors).order_by(
        s.connectors.c.station_id, s.connectors.c.evse_id, s.connectors.c.connector_id
    )
    if station_id is not None:
        query = query.where(s.stations.c.station_id == station_id)
        cquery = cquery.where(s.connectors.c.station_id == station_id)
    elif among is not None:
        query = query.where(s.stations.c.station_id.in_(among))
        cquery = cquery.where(s.connectors.c.station_id.in_(among))
    by_station: dict[str, list[ConnectorStatus]] = {}
    for c in conn.execute(cquery):
        by_station.setdefault(c.station_id, []).append(
            ConnectorStatus(
                evse_id=c.evse_id,
                connector_id=c.connector_id,
                status=c.status,
                error_code=c.error_code,
                updated_at=c.updated_at,
                charging_state=c.charging_state,
            )
        )
    return [_station_record(row, by_station.get(row.station_id, [])) for row in conn.execute(query)]


def _seen(station_id: str, at: datetime, station_time: datetime) -> dict[str, Any]:
    """The parameters of ``_UPDATE_STATION`` for a station heard from at ``at`` whose clock
    said ``station_time``: its clock offset, station minus server, in seconds."""
    return {
        "sid": station_id,
        "last_seen": as_utc(at),
        "clock_offset_s": (as_utc(station_time) - as_utc(at)).total_seconds(),
    }


def _admission_of(row: Any) -> Admission:
    return Admission(
        row.station_id,
        row.security_profile,
        bool(row.lenient),
        row.password_hash is not None,
        row.boot_status,
    )


def _admission(conn: Connection, station_id: str) -> Admission | None:
    row = conn.execute(_SELECT_ADMISSION, {"sid": station_id}).first()
    return None if row is None else _admission_of(row)


def _admissions(conn: Connection, station_ids: list[str]) -> dict[str, Admission]:
    rows = conn.execute(_SELECT_ADMISSIONS, {"sids": station_ids})
    return {row.station_id: _admission_of(row) for row in rows}


class _AdmissionReads:
    """The admission lookups that miss the cache, many stations in ONE read: in a
    reconnect storm thousands arrive at once, and a read each (a thread hop and a
    transaction) cost more than the rest of their handshake. While one read runs, the
    ids that arrive wait for the next; each caller gets its own station's row."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[asyncio.Future[Admission | None]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def get(self, db: Database, station_id: str) -> Admission | None:
        future: asyncio.Future[Admission | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(station_id, []).append(future)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(db))
        return await future

    async def _read(self, db: Database) -> None:
        await asyncio.sleep(0)  # the handshakes ready in this turn of the loop join
        while self._waiting:
            batch = dict(list(self._waiting.items())[:ADMISSION_READ_BATCH])
            for station_id in batch:
                del self._waiting[station_id]
            ids = list(batch)
            try:
                found = await db.read(functools.partial(_admissions, station_ids=ids))
            except BaseException as exc:
                failure = exc if isinstance(exc, Exception) else ConnectionError("cancelled")
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(failure)
                if not isinstance(exc, Exception):
                    raise
                continue
            for station_id, futures in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(found.get(station_id))


class _SeenBatch:
    """The ``last_seen`` (and clock offset) updates of many stations as ONE write of the
    group-committing writer: a ramp-up of thousands of stations makes one executemany a
    commit, not thousands of queued operations. The newest value per station wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, dict[str, Any]] = {}
        self._future: asyncio.Future[None] | None = None

    def add(self, db: Database, values: dict[str, Any]) -> asyncio.Future[None]:
        """Queue ``values`` (``_UPDATE_STATION`` parameters); the future of the write."""
        with self._lock:
            self._pending[values["sid"]] = values
            if self._future is not None and not self._future.done():
                return self._future
            taken: list[dict[str, Any]] | None = None

            def op(conn: Connection) -> None:
                nonlocal taken
                if taken is None:  # taken once: a batch re-run (savepoints) writes the same
                    with self._lock:
                        taken = list(self._pending.values())
                        self._pending.clear()
                        self._future = None
                # one statement per column set: a row without an offset keeps its old one
                with_offset = [v for v in taken if "clock_offset_s" in v]
                without = [v for v in taken if "clock_offset_s" not in v]
                for rows in (with_offset, without):
                    if rows:
                        conn.execute(_UPDATE_STATION, rows)

            future = db.enqueue(op)
            self._future = future
            return future


class Stations:
    """The stations' rows and their connectors'."""

    def __init__(
        self,
        db: Database,
        *,
        pool: PasswordPool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._clock = clock
        self.pool = pool if pool is not None else password_pool()
        # (station id, password) pairs that verified lately: a reconnect storm of a fleet
        # costs one argon2 check per station, not one per connect.
        self.verified = VerifiedCache(clock)
        # Admission facts read or written lately, with when they stop being trusted.
        self._admissions: dict[str, tuple[float, Admission]] = {}
        self._changing: dict[str, int] = {}  # registrations under way, per station
        self._seen = _SeenBatch()
        self._reads = _AdmissionReads()
        self._generation = 0  # registrations ended: a read begun before one may be stale
        self.argon2_checks = 0  # password hashes verified (not answered from the cache)
        self.admission_reads = 0  # admissions read from the database (not the cache)
        # Called with a station id as a registration starts and again once it has
        # ended (committed or failed): caches of station settings drop the entry.
        self.listeners: list[Callable[[str], None]] = []
        # OWASP's argon2id setting (19 MiB, 2 passes): argon2-cffi's default takes 64 MiB
        # and ~0.2 CPU s a check, so a fleet reconnecting after an outage would need
        # 64 MiB per check in flight. Hashes made with other settings still verify.
        self._hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

    async def register(
        self,
        station_id: str,
        *,
        password: str | None = None,
        security_profile: int = 1,
        lenient: bool = False,
        boot_status: str = "Accepted",
    ) -> StationRecord:
        """Create or update a station; ``password=None`` keeps the stored hash."""
        password_hash = (
            await self.pool.run(self._hasher.hash, password) if password is not None else None
        )
        now = datetime.now(UTC)

        def op(conn: Connection) -> StationRecord:
            values: dict[str, Any] = {
                "security_profile": security_profile,
                "lenient": lenient,
                "boot_status": boot_status,
            }
            if password_hash is not None:
                values["password_hash"] = password_hash
            conn.execute(
                dialect_insert(conn, s.stations)
                .values(station_id=station_id, registered_at=now, **values)
                .on_conflict_do_update(index_elements=["station_id"], set_=values)
            )
            return _read_stations(conn, station_id)[0]

        self._changing[station_id] = self._changing.get(station_id, 0) + 1
        self._admissions.pop(station_id, None)
        self.verified.forget(station_id)
        for listener in self.listeners:
            listener(station_id)
        try:
            record = await self._db.write(op)
        finally:
            self._generation += 1
            left = self._changing.pop(station_id, 1) - 1
            if left:
                self._changing[station_id] = left
            self._admissions.pop(station_id, None)
            self.verified.forget(station_id)
            for listener in self.listeners:
                listener(station_id)
        if not left:
            self._keep_admission(
                Admission(
                    station_id,
                    record.security_profile,
                    record.lenient,
                    record.has_password,
                    record.boot_status,
                )
            )
        return record

    async def register_new(
        self, station_id: str, *, password: str | None, security_profile: int
    ) -> tuple[bool, Admission]:
        """Register a station not registered yet (auto-registration): never replaces a
        registration. (True, its facts) when this call made it; (False, the facts of the
        one another connection made meanwhile) otherwise."""
        password_hash = (
            await self.pool.run(self._hasher.hash, password) if password is not None else None
        )
        now = datetime.now(UTC)
        values = {
            "station_id": station_id,
            "security_profile": security_profile,
            "lenient": False,
            "boot_status": "Accepted",
            "password_hash": password_hash,
            "registered_at": now,
        }

        made = Admission(station_id, security_profile, False, password_hash is not None, "Accepted")

        def op(conn: Connection) -> tuple[bool, Admission]:
            if conn.execute(_INSERT_STATION[conn.dialect.name], values).rowcount == 1:
                return True, made
            found = _admission(conn, station_id)  # registered by another connection
            assert found is not None
            return False, found

        inserted, admission = await self._db.write(op)
        self._keep_admission(admission)
        return inserted, admission

    def _keep_admission(self, admission: Admission) -> None:
        if admission.station_id in self._changing:
            return  # a registration is under way: what was read may be stale already
        now = self._clock()
        self._admissions[admission.station_id] = (now + ADMISSION_CACHE_S, admission)
        if len(self._admissions) > 200_000:
            self._admissions = {k: v for k, v in self._admissions.items() if v[0] > now}

    def forget(self, station_id: str) -> None:
        """Another node changed the station's registration: what is remembered of it for
        admission goes, without telling :attr:`listeners` (they told that node's)."""
        self._admissions.pop(station_id, None)
        self.verified.forget(station_id)

    def forget_admissions(self) -> None:
        """Drop every cached admission: the next handshakes read them (as after a start)."""
        self._admissions.clear()

    def cached_admission(self, station_id: str) -> Admission | None:
        """The station's admission facts if read or written lately (no database work)."""
        found = self._admissions.get(station_id)
        if found is None or found[0] < self._clock():
            return None
        return found[1]

    async def admission(self, station_id: str) -> Admission | None:
        """What admitting the station needs (None: not registered): from the cache when
        fresh, else one row read by its key (no connectors, no write)."""
        cached = self.cached_admission(station_id)
        if cached is not None:
            return cached
        self.admission_reads += 1
        generation = self._generation
        found = await self._reads.get(self._db, station_id)
        if found is not None and generation == self._generation:
            self._keep_admission(found)
        return found

    async def get(self, station_id: str) -> StationRecord | None:
        found = await self._db.read(lambda conn: _read_stations(conn, station_id))
        return found[0] if found else None

    async def get_many(self, station_ids: Sequence[str]) -> list[StationRecord]:
        """The stations of ``station_ids`` that are registered, in one read (ordered by id)."""
        if not station_ids:
            return []
        return await self._db.read(lambda conn: _read_stations(conn, None, station_ids))

    async def get_boot_status(self, station_id: str) -> str | None:
        """What a BootNotification of the station is answered (None: not registered);
        one column, as every station's boot reads it."""
        cached = self.cached_admission(station_id)
        if cached is not None:
            return cached.boot_status
        return await self._db.read(
            lambda conn: conn.execute(_SELECT_BOOT_STATUS, {"sid": station_id}).scalar()
        )

    async def check_password(self, station_id: str, password: str) -> bool:
        """Whether ``password`` is the station's. A pair that verified lately against the
        same stored hash is answered from :attr:`verified` without argon2; otherwise the
        check runs on :attr:`pool` (``PoolBusy`` when too many are waiting)."""
        password_hash = await self._db.read(
            lambda conn: conn.execute(_SELECT_HASH, {"sid": station_id}).scalar()
        )
        if password_hash is None:
            return False
        if self.verified.hit(station_id, password, password_hash):
            return True
        try:
            ok = await self.pool.run(self._hasher.verify, password_hash, password)
        except (VerificationError, InvalidHashError):
            self.argon2_checks += 1
            return False
        self.argon2_checks += 1
        if ok and station_id not in self._changing:
            self.verified.add(station_id, password, password_hash)
        return bool(ok)

    async def record_boot(
        self,
        station_id: str,
        *,
        ocpp_version: str,
        vendor: str,
        model: str,
        serial_number: str | None,
        firmware_version: str | None,
        at: datetime,
    ) -> None:
        values = {
            "sid": station_id,
            "ocpp_version": ocpp_version,
            "vendor": vendor,
            "model": model,
            "serial_number": serial_number,
            "firmware_version": firmware_version,
            "last_boot": as_utc(at),
            "last_seen": as_utc(at),
        }

        def op(conn: Connection) -> None:
            # one statement for a registered station (the rule); a row first otherwise
            if conn.execute(_UPDATE_STATION, values).rowcount == 0:
                ensure_station(conn, station_id, at)
                conn.execute(_UPDATE_STATION, values)

        await self._db.write(op)

    async def record_seen(
        self, station_id: str, *, at: datetime, station_time: datetime | None = None
    ) -> None:
        """The station was heard from at ``at``; with ``station_time`` (its clock, e.g. a
        Heartbeat's or a boot's) also its clock offset, station minus server, in seconds."""
        # shielded: the write's future is shared by every station noted meanwhile, and
        # awaiting it bare would cancel it for all of them when one connection closes
        await asyncio.shield(self.note_seen(station_id, at=at, station_time=station_time))

    def note_seen(
        self, station_id: str, *, at: datetime, station_time: datetime | None = None
    ) -> asyncio.Future[None]:
        """:meth:`record_seen` without waiting: the stations seen meanwhile are written
        together, in one statement of the writer's next commit; the future of that write."""
        if station_time is not None:
            values = _seen(station_id, at, station_time)
        else:
            values = {"sid": station_id, "last_seen": as_utc(at)}
        return self._seen.add(self._db, values)

    async def set_connector_status(
        self,
        station_id: str,
        *,
        evse_id: int,
        connector_id: int,
        status: str,
        error_code: str | None,
        at: datetime,
        station_time: datetime | None = None,
    ) -> None:
        """A connector's status; with ``station_time`` (the StatusNotification's own
        timestamp) also, in the same write, what :meth:`record_seen` records."""
        values = {
            "station_id": station_id,
            "evse_id": evse_id,
            "connector_id": connector_id,
            "status": status,
            "error_code": error_code,
            "updated_at": as_utc(at),
        }
        seen = _seen(station_id, at, station_time) if station_time is not None else None

        def op(conn: Connection) -> None:
            ensure_station(conn, station_id, at)
            conn.execute(_UPSERT_CONNECTOR[conn.dialect.name], values)
            if seen is not None:
                conn.execute(_UPDATE_STATION, seen)

        await self._db.write(op)

    # last: below it, ``list`` in an annotation would name this method
    async def list(self) -> list[StationRecord]:
        return await self._db.read(lambda conn: _read_stations(conn, None))
