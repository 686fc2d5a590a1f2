"""PlugStream Cloud's durable storage: SQLite (default) or PostgreSQL through SQLAlchemy
Core (async), migrated with Alembic, written through a group-committing writer.

Every write returns only after its database transaction is committed, so the gateway
may send its CALLRESULT as soon as the awaited call returns."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    Row,
    Table,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from . import schema as s
from .bulk import BulkInsert, StoredForm
from .coltypes import as_utc
from .records import (
    AuthResult,
    ConnectorStatus,
    Flag,
    IdTokenRecord,
    MessageRecord,
    MeterSample,
    StationRecord,
    TransactionRecord,
)
from .writer import BatchWriter, WriterStats, defer_rows

T = TypeVar("T")

ENERGY_REGISTER = "Energy.Active.Import.Register"
#: a timestamp this far ahead of the server's clock is flagged TimeInFuture
FUTURE_TOLERANCE = timedelta(minutes=5)
#: 1.6 has no offline flag: a StartTransaction this late is taken as an offline one
OFFLINE_LATENESS = timedelta(minutes=5)
#: plausibility of a first register reading counted from zero: one 22 kW station
#: charging since the start, plus 1 kWh
MAX_POWER_W = Decimal(22000)
BASELINE_SLACK_WH = Decimal(1000)
_UNIT_KILO = {"kWh": "Wh", "kW": "W", "kvarh": "varh", "kvar": "var", "kVA": "VA"}

MIGRATIONS = Path(__file__).parent / "migrations"

#: reads that run at once. A read waits its turn for one of these (as long as it takes),
#: never for a pooled connection: a pool's wait times out (30 s), and a REST listing or a
#: station's Authorize must not fail because a ramp-up of thousands of stations is reading
#: too. The pools hold a connection for each reader and the writer, so none ever waits.
READERS = 4
_POOL = {"pool_size": READERS + 1, "max_overflow": 4}

#: statements built once (their SQL is cached by SQLAlchemy under a memoized key)
_SELECT_TX = select(s.transactions).where(s.transactions.c.id == bindparam("pk"))
_SELECT_STATION_TX = select(s.transactions).where(
    s.transactions.c.id == bindparam("pk"),
    s.transactions.c.station_id == bindparam("station_id"),
)
_UPDATE_TX = update(s.transactions).where(s.transactions.c.id == bindparam("tx_pk"))
_UPDATE_STATION = update(s.stations).where(s.stations.c.station_id == bindparam("sid"))
# The statements of a transaction's start (StartTransaction, a first TransactionEvent),
# built once: SQLAlchemy's building and cache-key work was most of a start's ~2 ms.
_SELECT_ID_TOKEN = select(s.id_tokens).where(s.id_tokens.c.id_token == bindparam("token"))
_SELECT_START_KEY = select(s.transactions.c.id, s.transactions.c.active).where(
    s.transactions.c.station_id == bindparam("sid"),
    s.transactions.c.start_key == bindparam("start_key"),
)
_INSERT_TX = s.transactions.insert()
_SELECT_CONNECTOR_TXS = select(s.transactions).where(
    s.transactions.c.station_id == bindparam("sid"),
    s.transactions.c.evse_id == bindparam("evse_id"),
    s.transactions.c.connector_id == bindparam("connector_id"),
    s.transactions.c.id != bindparam("pk"),
    or_(s.transactions.c.active, s.transactions.c.stopped_at > bindparam("started_at")),
)
_SELECT_TX_FLAGS = (
    select(s.flags)
    .where(s.flags.c.transaction_pk.in_(bindparam("pks", expanding=True)))
    .order_by(s.flags.c.id)
)
_FORMS = {"sqlite": StoredForm("sqlite"), "postgresql": StoredForm("postgresql")}
_MESSAGES = BulkInsert(s.messages, ("station_id", "at", "direction", "text"))
_METER_SAMPLE_KEY = (
    "station_id",
    "tx_key",
    "evse_id",
    "connector_id",
    "timestamp",
    "measurand",
    "phase",
    "location",
)
_METER_VALUES = BulkInsert(
    s.meter_values,
    (
        "station_id",
        "transaction_pk",
        "tx_key",
        "evse_id",
        "connector_id",
        "timestamp",
        "measurand",
        "phase",
        "location",
        "context",
        "value",
        "unit",
        "received_at",
    ),
    conflict=_METER_SAMPLE_KEY,
)


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


def _run_upgrade(conn: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def _insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)


def _auth(row: Row[Any] | None, at: datetime) -> AuthResult:
    if row is None:
        return AuthResult(status="Invalid")
    status = row.status
    if status == "Accepted" and row.expiry is not None and row.expiry <= as_utc(at):
        status = "Expired"
    return AuthResult(status=status, expiry=row.expiry, parent_id_token=row.parent_id_token)


def _lookup_auth(conn: Connection, id_token: str, at: datetime) -> AuthResult:
    row = conn.execute(_SELECT_ID_TOKEN, {"token": id_token}).first()
    return _auth(row, at)


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


def _ensure_station(conn: Connection, station_id: str, at: datetime) -> None:
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


def _is_register(sample: MeterSample) -> bool:
    return (
        sample.measurand == ENERGY_REGISTER
        and sample.phase is None
        and sample.location in (None, "Outlet")
    )


def _normalise(sample: MeterSample) -> MeterSample:
    sample.timestamp = as_utc(sample.timestamp)
    if sample.unit in _UNIT_KILO:
        sample.value = Decimal(sample.value) * 1000
        sample.unit = _UNIT_KILO[sample.unit]
    return sample


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return as_utc(value)
    return as_utc(datetime.fromisoformat(str(value)))


class _Tx:
    """A transaction row being changed inside one operation."""

    def __init__(self, conn: Connection, pk: int, row: Row[Any] | None = None) -> None:
        if row is None:
            row = conn.execute(_SELECT_TX, {"pk": pk}).one()
        self.v: dict[str, Any] = dict(row._mapping)
        self.changed: dict[str, Any] = {}
        self.new_flags: list[tuple[str, str, datetime]] = []

    @property
    def pk(self) -> int:
        return int(self.v["id"])

    def set(self, key: str, value: Any) -> None:
        if self.v[key] != value:
            self.v[key] = value
            self.changed[key] = value

    def flag(self, code: str, detail: str, at: datetime) -> None:
        self.new_flags.append((code, detail[:500], as_utc(at)))

    def check_future(self, at: datetime, received_at: datetime, what: str) -> None:
        if at > as_utc(received_at) + FUTURE_TOLERANCE:
            self.flag(
                "TimeInFuture",
                f"{what} at {at.isoformat()} is ahead of the server ({as_utc(received_at).isoformat()})",
                received_at,
            )

    def apply_register(self, value: Decimal, at: datetime) -> None:
        """One reading of the energy register: baseline, last reading, decreases."""
        v = self.v
        if v["baseline_pending"] and value == 0:  # still the zero start: nothing to tell
            if v["last_register_wh"] is None:
                self.set("last_register_wh", value)
                self.set("last_register_at", at)
                self.set("energy_wh", Decimal(0))
            return
        if v["baseline_pending"]:
            started = v["started_at"] or at
            hours = Decimal(max((at - started).total_seconds(), 0.0)) / 3600
            plausible = MAX_POWER_W * hours + BASELINE_SLACK_WH
            self.set("baseline_pending", False)
            if value > plausible:
                self.set("baseline_wh", value)
                self.flag(
                    "BaselineFromFirstReading",
                    f"meter start {v['meter_start_wh']} Wh; first reading {value} Wh at "
                    f"{at.isoformat()} is more than {plausible:.0f} Wh: baseline {value} Wh",
                    at,
                )
            else:
                self.set("baseline_wh", v["meter_start_wh"] or Decimal(0))
        last, last_at = v["last_register_wh"], v["last_register_at"]
        if last is None:
            self.set("last_register_wh", value)
            self.set("last_register_at", at)
        elif at >= last_at:
            if value >= last:
                self.set("last_register_wh", value)
                self.set("last_register_at", at)
            else:
                self.flag(
                    "RegisterDecreased",
                    f"{value} Wh at {at.isoformat()} after {last} Wh at {last_at.isoformat()}",
                    at,
                )
        elif value > last:  # an older reading above a newer one
            self.flag(
                "RegisterDecreased",
                f"{last} Wh at {last_at.isoformat()} after {value} Wh at {at.isoformat()}",
                at,
            )
        baseline, last = v["baseline_wh"], v["last_register_wh"]
        if baseline is not None and last is not None:
            self.set("energy_wh", last - baseline)

    def save(self, conn: Connection) -> None:
        if self.changed:
            conn.execute(_UPDATE_TX, {"tx_pk": self.pk, **self.changed})
            self.changed = {}
        if self.new_flags:
            conn.execute(
                _insert(conn, s.flags).on_conflict_do_nothing(
                    index_elements=["transaction_pk", "code", "detail"]
                ),
                [
                    {
                        "station_id": self.v["station_id"],
                        "transaction_pk": self.pk,
                        "code": code,
                        "detail": detail,
                        "at": at,
                    }
                    for code, detail, at in self.new_flags
                ],
            )
            self.new_flags = []


def _create_tx(
    conn: Connection,
    station_id: str,
    *,
    transaction_id: str | None,
    evse_id: int,
    connector_id: int,
    id_token: str | None,
    started_at: datetime,
    meter_start: Decimal | None,
    offline: bool,
    received_at: datetime,
    start_key: str | None = None,
) -> _Tx:
    pending = meter_start is None or (offline and meter_start == 0)
    result = conn.execute(
        _INSERT_TX,
        {
            "station_id": station_id,
            "transaction_id": transaction_id,
            "evse_id": evse_id,
            "connector_id": connector_id,
            "id_token": id_token,
            "started_at": started_at,
            "meter_start_wh": meter_start,
            "baseline_wh": None if pending else meter_start,
            "baseline_pending": pending,
            "offline": offline,
            "active": True,
            "start_key": start_key,
            "created_at": as_utc(received_at),
        },
    )
    inserted = result.inserted_primary_key
    assert inserted is not None
    pk = int(inserted[0])
    if transaction_id is None:
        conn.execute(_UPDATE_TX, {"tx_pk": pk, "transaction_id": str(pk)})
    tx = _Tx(conn, pk)
    if meter_start is not None and not pending:
        tx.apply_register(meter_start, started_at)
    tx.check_future(started_at, received_at, "the start")
    # the connector: still busy, or its other transactions' times overlap this start?
    others = conn.execute(
        _SELECT_CONNECTOR_TXS,
        {
            "sid": station_id,
            "evse_id": evse_id,
            "connector_id": connector_id,
            "pk": pk,
            "started_at": started_at,
        },
    ).all()
    for other in others:
        if other.active and (other.started_at is None or other.started_at <= started_at):
            tx.flag(
                "SecondStartOnBusyConnector",
                f"transaction {other.id} ({other.transaction_id}) is still active on "
                f"evse {evse_id} connector {connector_id}",
                started_at,
            )
            _flag(
                conn,
                station_id,
                other.id,
                "SecondStartOnBusyConnector",
                f"transaction {pk} ({tx.v['transaction_id']}) started on its connector "
                f"at {started_at.isoformat()}",
                started_at,
            )
        elif (
            not other.active
            and other.started_at is not None
            and other.started_at <= started_at < other.stopped_at
        ):
            tx.flag(
                "Overlap",
                f"starts at {started_at.isoformat()} inside transaction {other.id} "
                f"({other.started_at.isoformat()} - {other.stopped_at.isoformat()})",
                started_at,
            )
    return tx


def _flag(
    conn: Connection,
    station_id: str,
    transaction_pk: int | None,
    code: str,
    detail: str,
    at: datetime,
) -> None:
    conn.execute(
        _insert(conn, s.flags)
        .values(
            station_id=station_id,
            transaction_pk=transaction_pk,
            code=code,
            detail=detail[:500],
            at=as_utc(at),
        )
        .on_conflict_do_nothing(index_elements=["transaction_pk", "code", "detail"])
    )


def _check_overlap_on_stop(conn: Connection, tx: _Tx, stopped_at: datetime) -> None:
    started = tx.v["started_at"]
    if started is None:
        return
    later = conn.execute(
        select(s.transactions.c.id, s.transactions.c.started_at).where(
            s.transactions.c.station_id == tx.v["station_id"],
            s.transactions.c.evse_id == tx.v["evse_id"],
            s.transactions.c.connector_id == tx.v["connector_id"],
            s.transactions.c.id != tx.pk,
            s.transactions.c.started_at > started,
            s.transactions.c.started_at < stopped_at,
        )
    ).all()
    for other in later:
        tx.flag(
            "Overlap",
            f"runs until {stopped_at.isoformat()}, past the start of transaction "
            f"{other.id} at {other.started_at.isoformat()}",
            stopped_at,
        )


def _store_samples(
    conn: Connection,
    station_id: str,
    *,
    evse_id: int,
    connector_id: int,
    tx: _Tx | None,
    samples: Sequence[MeterSample],
    received_at: datetime,
    event_at: datetime | None = None,
) -> None:
    """Store samples once each; a transaction's energy registers update its energy. A
    sample at ``event_at`` (its event's own time, checked there) is not checked again
    for being in the future."""
    if not samples:
        return
    pk = tx.pk if tx is not None else None
    tx_key = pk or 0
    received_at = as_utc(received_at)
    form = _FORMS[conn.dialect.name]
    to_time, to_decimal = form.time, form.decimal
    stored_received = to_time(received_at)
    last_at: datetime | None = None
    stored_at: Any = None
    rows = []
    for sample in samples:
        if sample.timestamp is not last_at:
            last_at = sample.timestamp
            stored_at = to_time(last_at)
        rows.append(
            (
                station_id,
                pk,
                tx_key,
                evse_id,
                connector_id,
                stored_at,
                sample.measurand,
                sample.phase or "",
                sample.location or "",
                sample.context,
                to_decimal(sample.value),
                sample.unit,
                stored_received,
            )
        )
    defer_rows(conn, _METER_VALUES.sql(conn.dialect), rows)
    if tx is None:
        return
    future_flagged = False
    for sample in sorted(samples, key=lambda sample: sample.timestamp):
        if (
            not future_flagged
            and sample.timestamp != event_at
            and sample.timestamp > received_at + FUTURE_TOLERANCE
        ):
            tx.check_future(sample.timestamp, received_at, "a meter value")
            future_flagged = True
        if _is_register(sample):
            tx.apply_register(sample.value, sample.timestamp)


# --- reading -----------------------------------------------------------------------


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


def _tx_records(
    conn: Connection, rows: Sequence[Row[Any]], *, with_values: bool = False
) -> list[TransactionRecord]:
    if not rows:
        return []
    pks = [row.id for row in rows]
    flags_by_tx: dict[int, list[Flag]] = {}
    for f in conn.execute(_SELECT_TX_FLAGS, {"pks": pks}):
        flags_by_tx.setdefault(f.transaction_pk, []).append(
            Flag(code=f.code, detail=f.detail, at=f.at)
        )
    values_by_tx: dict[int, list[MeterSample]] = {}
    if with_values:
        for m in conn.execute(
            select(s.meter_values)
            .where(s.meter_values.c.transaction_pk.in_(pks))
            .order_by(s.meter_values.c.timestamp, s.meter_values.c.id)
        ):
            values_by_tx.setdefault(m.transaction_pk, []).append(
                MeterSample(
                    timestamp=m.timestamp,
                    measurand=m.measurand,
                    value=m.value,
                    unit=m.unit,
                    phase=m.phase or None,
                    context=m.context,
                    location=m.location or None,
                )
            )
    return [
        TransactionRecord(
            id=row.id,
            station_id=row.station_id,
            transaction_id=row.transaction_id,
            evse_id=row.evse_id,
            connector_id=row.connector_id,
            id_token=row.id_token,
            started_at=row.started_at,
            stopped_at=row.stopped_at,
            meter_start_wh=row.meter_start_wh,
            meter_stop_wh=row.meter_stop_wh,
            energy_wh=row.energy_wh,
            stop_reason=row.stop_reason,
            offline=bool(row.offline),
            active=bool(row.active),
            flags=flags_by_tx.get(row.id, []),
            meter_values=values_by_tx.get(row.id, []),
        )
        for row in rows
    ]


def _tx_record(conn: Connection, pk: int, *, with_values: bool = False) -> TransactionRecord:
    row = conn.execute(_SELECT_TX, {"pk": pk}).one()
    return _tx_records(conn, [row], with_values=with_values)[0]


def _token_record(row: Row[Any]) -> IdTokenRecord:
    return IdTokenRecord(
        id_token=row.id_token,
        status=row.status,
        expiry=row.expiry,
        parent_id_token=row.parent_id_token,
        token_type=row.token_type,
    )


class Store:
    """The storage of PlugStream Cloud. Open with ``await Store.open(url)``."""

    url: str
    stats: WriterStats

    def __init__(self, engine: AsyncEngine, url: str, sync_engine: Engine | None = None) -> None:
        self.url = url
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
        # Called with a station id as a registration starts and again once it has
        # ended (committed or failed): caches of station settings drop the entry.
        self.station_listeners: list[Callable[[str], None]] = []
        # OWASP's argon2id setting (19 MiB, 2 passes): argon2-cffi's default takes 64 MiB
        # and ~0.2 CPU s a check, so a fleet reconnecting after an outage would need
        # 64 MiB per check in flight. Hashes made with other settings still verify.
        self._hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
        self._readers = asyncio.Semaphore(READERS)
        # SQLite: a read runs whole in one of these threads on a plain pysqlite connection,
        # one thread hop per read (aiosqlite hops once per cursor call, on the event loop).
        self._read_pool = (
            ThreadPoolExecutor(READERS, thread_name_prefix="plugstream-read")
            if sync_engine is not None
            else None
        )
        self._form = _FORMS[engine.dialect.name]
        self._messages_sql = _MESSAGES.sql(engine.dialect)

    @classmethod
    async def open(cls, url: str) -> Store:
        url = normalize_url(url)
        engine = create_async_engine(url, **_POOL)
        sync_engine = None
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine.sync_engine)
            sync_engine = create_engine(make_url(url).set(drivername="sqlite+pysqlite"), **_POOL)
            _configure_sqlite(sync_engine)
        try:
            async with engine.execution_options(plugstream_writer=True).begin() as conn:
                await conn.run_sync(_run_upgrade)
        except BaseException:
            await engine.dispose()
            if sync_engine is not None:
                sync_engine.dispose()
            raise
        store = cls(engine, url, sync_engine)
        store._writer.start()
        return store

    async def close(self) -> None:
        await self._writer.close()
        if self._read_pool is not None:
            self._read_pool.shutdown(wait=True)
        await self._engine.dispose()
        if self._sync_engine is not None:
            self._sync_engine.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _write(self, op: Callable[[Connection], T]) -> T:
        return await self._writer.enqueue(op)

    async def _read(self, fn: Callable[[Connection], T]) -> T:
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

    # --- stations ----------------------------------------------------------------

    async def register_station(
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
                _insert(conn, s.stations)
                .values(station_id=station_id, registered_at=now, **values)
                .on_conflict_do_update(index_elements=["station_id"], set_=values)
            )
            return _read_stations(conn, station_id)[0]

        for listener in self.station_listeners:
            listener(station_id)
        try:
            return await self._write(op)
        finally:
            for listener in self.station_listeners:
                listener(station_id)

    async def get_station(self, station_id: str) -> StationRecord | None:
        found = await self._read(lambda conn: _read_stations(conn, station_id))
        return found[0] if found else None

    async def get_boot_status(self, station_id: str) -> str | None:
        """What a BootNotification of the station is answered (None: not registered);
        one column, as every station's boot reads it."""
        return await self._read(
            lambda conn: conn.execute(_SELECT_BOOT_STATUS, {"sid": station_id}).scalar()
        )

    async def list_stations(self) -> list[StationRecord]:
        return await self._read(lambda conn: _read_stations(conn, None))

    async def check_password(self, station_id: str, password: str) -> bool:
        def read(conn: Connection) -> str | None:
            return conn.execute(
                select(s.stations.c.password_hash).where(s.stations.c.station_id == station_id)
            ).scalar()

        password_hash = await self._read(read)
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
            _ensure_station(conn, station_id, at)
            conn.execute(_UPDATE_STATION, values)

        await self._write(op)

    async def record_seen(
        self, station_id: str, *, at: datetime, station_time: datetime | None = None
    ) -> None:
        """The station was heard from at ``at``; with ``station_time`` (its clock, e.g. a
        Heartbeat's or a boot's) also its clock offset, station minus server, in seconds."""
        values: dict[str, Any] = {"last_seen": as_utc(at)}
        if station_time is not None:
            values["clock_offset_s"] = (as_utc(station_time) - as_utc(at)).total_seconds()

        values["sid"] = station_id

        def op(conn: Connection) -> None:
            conn.execute(_UPDATE_STATION, values)

        await self._write(op)

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
        seen: dict[str, Any] | None = None
        if station_time is not None:
            seen = {
                "sid": station_id,
                "last_seen": as_utc(at),
                "clock_offset_s": (as_utc(station_time) - as_utc(at)).total_seconds(),
            }

        def op(conn: Connection) -> None:
            _ensure_station(conn, station_id, at)
            conn.execute(_UPSERT_CONNECTOR[conn.dialect.name], values)
            if seen is not None:
                conn.execute(_UPDATE_STATION, seen)

        await self._write(op)

    # --- id tokens ---------------------------------------------------------------

    async def put_id_token(self, token: IdTokenRecord) -> IdTokenRecord:
        values = {
            "status": token.status,
            "expiry": as_utc(token.expiry) if token.expiry is not None else None,
            "parent_id_token": token.parent_id_token,
            "token_type": token.token_type,
        }

        def op(conn: Connection) -> IdTokenRecord:
            conn.execute(
                _insert(conn, s.id_tokens)
                .values(id_token=token.id_token, **values)
                .on_conflict_do_update(index_elements=["id_token"], set_=values)
            )
            row = conn.execute(
                select(s.id_tokens).where(s.id_tokens.c.id_token == token.id_token)
            ).one()
            return _token_record(row)

        return await self._write(op)

    async def get_id_token(self, id_token: str) -> IdTokenRecord | None:
        def read(conn: Connection) -> IdTokenRecord | None:
            row = conn.execute(
                select(s.id_tokens).where(s.id_tokens.c.id_token == id_token)
            ).first()
            return _token_record(row) if row is not None else None

        return await self._read(read)

    async def list_id_tokens(self) -> list[IdTokenRecord]:
        def read(conn: Connection) -> list[IdTokenRecord]:
            rows = conn.execute(select(s.id_tokens).order_by(s.id_tokens.c.id_token))
            return [_token_record(row) for row in rows]

        return await self._read(read)

    async def delete_id_token(self, id_token: str) -> bool:
        def op(conn: Connection) -> bool:
            result = conn.execute(delete(s.id_tokens).where(s.id_tokens.c.id_token == id_token))
            return bool(result.rowcount)

        return await self._write(op)

    async def authorize(self, id_token: str, *, at: datetime) -> AuthResult:
        """The answer to an id token at ``at``; unknown tokens are Invalid, an Accepted
        token past its expiry is Expired."""
        return await self._read(lambda conn: _lookup_auth(conn, id_token, at))

    # --- transactions, OCPP 1.6 ----------------------------------------------------

    async def start_transaction(
        self,
        station_id: str,
        *,
        connector_id: int,
        id_token: str,
        meter_start_wh: Decimal,
        timestamp: datetime,
        received_at: datetime,
        reservation_id: int | None = None,
    ) -> tuple[TransactionRecord, AuthResult]:
        """StartTransaction. A retry (same connector, id tag, timestamp, meter start)
        returns the transaction already stored."""
        timestamp, received_at = as_utc(timestamp), as_utc(received_at)
        meter_start = Decimal(meter_start_wh)
        start_key = f"{connector_id}|{id_token}|{timestamp.isoformat()}|{meter_start.normalize()}"

        def op(conn: Connection) -> tuple[TransactionRecord, AuthResult]:
            auth = _lookup_auth(conn, id_token, received_at)
            existing = conn.execute(
                _SELECT_START_KEY, {"sid": station_id, "start_key": start_key}
            ).first()
            if existing is not None:
                if not existing.active:
                    _flag(
                        conn,
                        station_id,
                        existing.id,
                        "StartAfterStop",
                        f"StartTransaction repeated at {received_at.isoformat()} after the stop",
                        received_at,
                    )
                return _tx_record(conn, existing.id), auth
            _ensure_station(conn, station_id, received_at)
            tx = _create_tx(
                conn,
                station_id,
                transaction_id=None,
                evse_id=connector_id,
                connector_id=connector_id,
                id_token=id_token,
                started_at=timestamp,
                meter_start=meter_start,
                offline=received_at - timestamp > OFFLINE_LATENESS,
                received_at=received_at,
                start_key=start_key,
            )
            tx.save(conn)
            return _tx_record(conn, tx.pk), auth

        return await self._write(op)

    async def stop_transaction(
        self,
        station_id: str,
        *,
        transaction_id: int,
        meter_stop_wh: Decimal,
        timestamp: datetime,
        received_at: datetime,
        reason: str | None = None,
        id_token: str | None = None,
        samples: list[MeterSample] | None = None,
    ) -> tuple[TransactionRecord | None, AuthResult | None]:
        """StopTransaction; a retry changes nothing. An unknown transaction id is
        flagged (UnknownTransaction, with no transaction) and answered ``None``."""
        timestamp, received_at = as_utc(timestamp), as_utc(received_at)
        meter_stop = Decimal(meter_stop_wh)
        normalised = [_normalise(sample) for sample in samples or []]

        def op(conn: Connection) -> tuple[TransactionRecord | None, AuthResult | None]:
            auth = _lookup_auth(conn, id_token, received_at) if id_token is not None else None
            row = conn.execute(
                select(s.transactions.c.id).where(
                    s.transactions.c.id == transaction_id,
                    s.transactions.c.station_id == station_id,
                )
            ).first()
            if row is None:
                _flag(
                    conn,
                    station_id,
                    None,
                    "UnknownTransaction",
                    f"StopTransaction for unknown transaction {transaction_id} "
                    f"(meter stop {meter_stop} Wh at {timestamp.isoformat()})",
                    received_at,
                )
                return None, auth
            tx = _Tx(conn, row.id)
            if not tx.v["active"]:  # a retry, or a second stop: the first one counts
                return _tx_record(conn, tx.pk), auth
            _store_samples(
                conn,
                station_id,
                evse_id=tx.v["evse_id"],
                connector_id=tx.v["connector_id"],
                tx=tx,
                samples=normalised,
                received_at=received_at,
            )
            started = tx.v["started_at"]
            if started is not None and timestamp < started:
                tx.flag(
                    "TimeBackwards",
                    f"stop at {timestamp.isoformat()} before the start at {started.isoformat()}",
                    timestamp,
                )
            tx.check_future(timestamp, received_at, "the stop")
            tx.apply_register(meter_stop, timestamp)
            tx.set("meter_stop_wh", meter_stop)
            tx.set("stopped_at", timestamp)
            tx.set("stop_reason", reason or "Local")
            tx.set("active", False)
            _check_overlap_on_stop(conn, tx, timestamp)
            tx.save(conn)
            return _tx_record(conn, tx.pk), auth

        return await self._write(op)

    async def add_meter_values(
        self,
        station_id: str,
        *,
        evse_id: int,
        connector_id: int,
        transaction_id: int | None,
        samples: list[MeterSample],
        received_at: datetime,
    ) -> None:
        """MeterValues; ``transaction_id`` is our numeric id. A sample already stored
        (same transaction, timestamp, measurand, phase) is stored once."""
        normalised = [_normalise(sample) for sample in samples]

        def op(conn: Connection) -> None:
            tx = None
            if transaction_id is not None:
                found = conn.execute(
                    _SELECT_STATION_TX, {"pk": transaction_id, "station_id": station_id}
                ).first()
                if found is None:
                    _flag(
                        conn,
                        station_id,
                        None,
                        "UnknownTransaction",
                        f"MeterValues for unknown transaction {transaction_id}",
                        received_at,
                    )
                else:
                    tx = _Tx(conn, found.id, found)
            _store_samples(
                conn,
                station_id,
                evse_id=evse_id,
                connector_id=connector_id,
                tx=tx,
                samples=normalised,
                received_at=received_at,
            )
            if tx is not None:
                tx.save(conn)

        await self._write(op)

    # --- transactions, OCPP 2.0.1 --------------------------------------------------

    async def transaction_event(
        self, station_id: str, *, event: dict[str, Any], received_at: datetime
    ) -> tuple[TransactionRecord, AuthResult | None]:
        """TransactionEvent, idempotent on (station, transactionId, seqNo)."""
        received_at = as_utc(received_at)
        info = event["transactionInfo"]
        station_tx_id = str(info["transactionId"])
        seq_no = int(event.get("seqNo", 0))
        event_type = str(event["eventType"])
        timestamp = _parse_time(event["timestamp"])
        offline = bool(event.get("offline", False))
        evse = event.get("evse") or {}
        evse_id = int(evse.get("id", 0))
        connector_id = int(evse.get("connectorId", 1 if evse_id else 0))
        token = (event.get("idToken") or {}).get("idToken")
        # The handlers' own reader of 2.0.1 sampled values, so both paths agree; imported
        # here because meter.py imports this package's records.
        from plugstream.cloud.meter import samples_201

        samples = samples_201(event.get("meterValue"), timestamp)
        registers = [sample for sample in samples if _is_register(sample)]

        def op(conn: Connection) -> tuple[TransactionRecord, AuthResult | None]:
            auth = _lookup_auth(conn, token, received_at) if token is not None else None
            found = conn.execute(
                select(s.transactions.c.id).where(
                    s.transactions.c.station_id == station_id,
                    s.transactions.c.transaction_id == station_tx_id,
                )
            ).first()
            if found is not None:
                replay = conn.execute(
                    select(s.transaction_events.c.id).where(
                        s.transaction_events.c.transaction_pk == found.id,
                        s.transaction_events.c.seq_no == seq_no,
                    )
                ).first()
                if replay is not None:
                    return _tx_record(conn, found.id), auth
                tx = _Tx(conn, found.id)
                if event_type == "Started" and not tx.v["active"]:
                    tx.flag(
                        "StartAfterStop",
                        f"Started (seqNo {seq_no}) at {timestamp.isoformat()} after the "
                        "transaction ended",
                        timestamp,
                    )
                if evse and tx.v["evse_id"] == 0:
                    tx.set("evse_id", evse_id)
                    tx.set("connector_id", connector_id)
            else:
                _ensure_station(conn, station_id, received_at)
                meter_start = registers[0].value if event_type == "Started" and registers else None
                tx = _create_tx(
                    conn,
                    station_id,
                    transaction_id=station_tx_id,
                    evse_id=evse_id,
                    connector_id=connector_id,
                    id_token=token,
                    started_at=timestamp,
                    meter_start=meter_start,
                    offline=offline,
                    received_at=received_at,
                )
                if event_type != "Started":
                    tx.flag(
                        "MissingStarted",
                        f"first heard of in a {event_type} event (seqNo {seq_no})",
                        timestamp,
                    )
            previous = conn.execute(
                select(s.transaction_events.c.seq_no, s.transaction_events.c.timestamp).where(
                    s.transaction_events.c.transaction_pk == tx.pk
                )
            ).all()
            for other in previous:
                if (other.seq_no < seq_no and other.timestamp > timestamp) or (
                    other.seq_no > seq_no and other.timestamp < timestamp
                ):
                    tx.flag(
                        "TimeBackwards",
                        f"seqNo {seq_no} at {timestamp.isoformat()} against seqNo "
                        f"{other.seq_no} at {other.timestamp.isoformat()}",
                        timestamp,
                    )
            if found is not None:
                tx.check_future(timestamp, received_at, f"{event_type} (seqNo {seq_no})")
            conn.execute(
                s.transaction_events.insert().values(
                    transaction_pk=tx.pk,
                    seq_no=seq_no,
                    event_type=event_type,
                    timestamp=timestamp,
                    trigger_reason=event.get("triggerReason"),
                    offline=offline,
                    received_at=received_at,
                )
            )
            if token is not None and tx.v["id_token"] is None:
                tx.set("id_token", token)
            _store_samples(
                conn,
                station_id,
                evse_id=tx.v["evse_id"],
                connector_id=tx.v["connector_id"],
                tx=tx,
                samples=samples,
                received_at=received_at,
                event_at=timestamp,
            )
            if event_type == "Ended" and tx.v["active"]:
                if registers:
                    tx.set("meter_stop_wh", registers[-1].value)
                tx.set("stopped_at", timestamp)
                tx.set("stop_reason", info.get("stoppedReason") or "Local")
                tx.set("active", False)
                _check_overlap_on_stop(conn, tx, timestamp)
            tx.save(conn)
            return _tx_record(conn, tx.pk), auth

        return await self._write(op)

    # --- reading transactions --------------------------------------------------------

    async def list_transactions(
        self, station_id: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[TransactionRecord]:
        """Newest first, with flags, without meter values."""

        def read(conn: Connection) -> list[TransactionRecord]:
            query = select(s.transactions).order_by(s.transactions.c.id.desc())
            if station_id is not None:
                query = query.where(s.transactions.c.station_id == station_id)
            rows = conn.execute(query.limit(limit).offset(offset)).all()
            return _tx_records(conn, rows)

        return await self._read(read)

    async def get_transaction(self, id: int) -> TransactionRecord | None:
        """With meter values (chronological) and flags."""

        def read(conn: Connection) -> TransactionRecord | None:
            row = conn.execute(select(s.transactions).where(s.transactions.c.id == id)).first()
            if row is None:
                return None
            return _tx_records(conn, [row], with_values=True)[0]

        return await self._read(read)

    async def find_transaction(
        self, station_id: str, transaction_id: str
    ) -> TransactionRecord | None:
        def read(conn: Connection) -> TransactionRecord | None:
            row = conn.execute(
                select(s.transactions).where(
                    s.transactions.c.station_id == station_id,
                    s.transactions.c.transaction_id == transaction_id,
                )
            ).first()
            return _tx_records(conn, [row])[0] if row is not None else None

        return await self._read(read)

    async def list_flags(self, station_id: str) -> list[Flag]:
        """All of a station's flags, including those of no known transaction."""

        def read(conn: Connection) -> list[Flag]:
            rows = conn.execute(
                select(s.flags).where(s.flags.c.station_id == station_id).order_by(s.flags.c.id)
            )
            return [Flag(code=row.code, detail=row.detail, at=row.at) for row in rows]

        return await self._read(read)

    # --- message log -----------------------------------------------------------------

    def log_message(
        self, station_id: str, direction: str, text: str, at: datetime
    ) -> asyncio.Future[None]:
        """Log one frame; the future completes once the row is committed."""
        return self.log_messages([(station_id, direction, text, at)])

    def log_messages(
        self, frames: Sequence[tuple[str, str, str, datetime]]
    ) -> asyncio.Future[None]:
        """Log frames ``(station_id, direction, text, at)`` as one write: the gateway
        hands over hundreds at a time, and one future for all of them is what it waits on."""
        try:
            rows = [
                (sid, self._form.time(at), direction, text) for sid, direction, text, at in frames
            ]
        except Exception as exc:
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed
        sql = self._messages_sql

        def op(conn: Connection) -> None:
            defer_rows(conn, sql, rows)

        return self._writer.enqueue(op)

    async def list_messages(
        self, station_id: str, *, limit: int = 50, before_id: int | None = None
    ) -> list[MessageRecord]:
        """Newest first; the next page is ``before_id=<the last id of this one>``."""

        def read(conn: Connection) -> list[MessageRecord]:
            query = select(s.messages).where(s.messages.c.station_id == station_id)
            if before_id is not None:
                query = query.where(s.messages.c.id < before_id)
            rows = conn.execute(query.order_by(s.messages.c.id.desc()).limit(limit))
            return [
                MessageRecord(
                    id=row.id,
                    station_id=row.station_id,
                    at=row.at,
                    direction=row.direction,
                    text=row.text,
                )
                for row in rows
            ]

        return await self._read(read)

    async def count_rows(self, table: str) -> int:
        """How many rows ``table`` holds (for tests and diagnostics)."""
        t = s.metadata.tables[table]
        return await self._read(
            lambda conn: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
        )


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
