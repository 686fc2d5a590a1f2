"""The stations: registration (password, security profile, boot status), what each
station told us of itself at boot, when it was last heard from, its connectors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Row, Table, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from . import schema as s
from .coltypes import as_utc
from .database import Database, dialect_insert
from .records import ConnectorStatus, StationRecord

__all__ = ["Stations", "ensure_station"]


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


def _read_stations(conn: Connection, station_id: str | None) -> list[StationRecord]:
    query = select(s.stations).order_by(s.stations.c.station_id)
    cquery = select(s.connectors).order_by(
        s.connectors.c.station_id, s.connectors.c.evse_id, s.connectors.c.connector_id
    )
    if station_id is not None:
        query = query.where(s.stations.c.station_id == station_id)
        cquery = cquery.where(s.connectors.c.station_id == station_id)
    by_station: dict[str, list[ConnectorStatus]] = {}
    for c in conn.execute(cquery):
        by_station.setdefault(c.station_id, []).append(
            ConnectorStatus(
                evse_id=c.evse_id,
                connector_id=c.connector_id,
                status=c.status,
                error_code=c.error_code,
                updated_at=c.updated_at,
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


class Stations:
    """The stations' rows and their connectors'."""

    def __init__(self, db: Database) -> None:
        self._db = db
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
            await asyncio.to_thread(self._hasher.hash, password) if password is not None else None
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

        for listener in self.listeners:
            listener(station_id)
        try:
            return await self._db.write(op)
        finally:
            for listener in self.listeners:
                listener(station_id)

    async def get(self, station_id: str) -> StationRecord | None:
        found = await self._db.read(lambda conn: _read_stations(conn, station_id))
        return found[0] if found else None

    async def get_boot_status(self, station_id: str) -> str | None:
        """What a BootNotification of the station is answered (None: not registered);
        one column, as every station's boot reads it."""
        return await self._db.read(
            lambda conn: conn.execute(_SELECT_BOOT_STATUS, {"sid": station_id}).scalar()
        )

    async def check_password(self, station_id: str, password: str) -> bool:
        def read(conn: Connection) -> str | None:
            return conn.execute(
                select(s.stations.c.password_hash).where(s.stations.c.station_id == station_id)
            ).scalar()

        password_hash = await self._db.read(read)
        if password_hash is None:
            return False
        try:
            return await asyncio.to_thread(self._hasher.verify, password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

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
            ensure_station(conn, station_id, at)
            conn.execute(_UPDATE_STATION, values)

        await self._db.write(op)

    async def record_seen(
        self, station_id: str, *, at: datetime, station_time: datetime | None = None
    ) -> None:
        """The station was heard from at ``at``; with ``station_time`` (its clock, e.g. a
        Heartbeat's or a boot's) also its clock offset, station minus server, in seconds."""
        if station_time is not None:
            values = _seen(station_id, at, station_time)
        else:
            values = {"sid": station_id, "last_seen": as_utc(at)}

        def op(conn: Connection) -> None:
            conn.execute(_UPDATE_STATION, values)

        await self._db.write(op)

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
