"""A transaction's row being changed inside one write: its energy register and the
hygiene checks of the issue on transaction hygiene (suspect data is flagged, stored and
shown, never dropped), and the storing of meter samples.

Shared by the transactions repository's writes for 1.6 (StartTransaction,
StopTransaction, MeterValues) and 2.0.1 (TransactionEvent)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import MAX_EMAX, MIN_EMIN, Context, Decimal
from typing import Any

from sqlalchemy import Row, bindparam, or_, select, update
from sqlalchemy.engine import Connection

from . import schema as s
from .bulk import STORED_FORMS, BulkInsert
from .coltypes import as_utc
from .database import dialect_insert
from .lifecycle import Phase, on_samples
from .records import MeterSample
from .writer import defer_rows

__all__ = [
    "BASELINE_SLACK_WH",
    "DUPLICATE_TIMESTAMP",
    "ENERGY_REGISTER",
    "EXACT",
    "FUTURE_TOLERANCE",
    "MAX_POWER_W",
    "OFFLINE_LATENESS",
    "SELECT_TX",
    "TransactionRow",
    "add_flag",
    "check_overlap_on_stop",
    "create_transaction",
    "is_register",
    "normalise",
    "store_samples",
]

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
#: register arithmetic is exact: stored values have at most 64 characters (meter.py)
EXACT = Context(prec=200, Emax=MAX_EMAX, Emin=MIN_EMIN)
#: a second sample of one measurand at one time with another value: the first is stored,
#: the second kept in the flag
DUPLICATE_TIMESTAMP = "DuplicateTimestamp"

#: statements built once (their SQL is cached by SQLAlchemy under a memoized key)
SELECT_TX = select(s.transactions).where(s.transactions.c.id == bindparam("pk"))
_UPDATE_TX = update(s.transactions).where(s.transactions.c.id == bindparam("tx_pk"))
# The statements of a transaction's start (StartTransaction, a first TransactionEvent),
# built once: SQLAlchemy's building and cache-key work was most of a start's ~2 ms.
_INSERT_TX = s.transactions.insert()
_SELECT_CONNECTOR_TXS = select(s.transactions).where(
    s.transactions.c.station_id == bindparam("sid"),
    s.transactions.c.evse_id == bindparam("evse_id"),
    s.transactions.c.connector_id == bindparam("connector_id"),
    s.transactions.c.id != bindparam("pk"),
    or_(s.transactions.c.active, s.transactions.c.stopped_at > bindparam("started_at")),
)
#: the samples already stored at one time, to find a second value at that time; run as
#: driver SQL with values in their stored form (this is on the hot path of MeterValues)
_SELECT_SAMPLES_AT = select(
    s.meter_values.c.measurand,
    s.meter_values.c.phase,
    s.meter_values.c.location,
    s.meter_values.c.value,
).where(
    s.meter_values.c.station_id == bindparam("sid"),
    s.meter_values.c.tx_key == bindparam("tx_key"),
    s.meter_values.c.evse_id == bindparam("evse_id"),
    s.meter_values.c.connector_id == bindparam("connector_id"),
    s.meter_values.c.timestamp == bindparam("at"),
)
_SAMPLES_AT_SQL: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}


def _samples_at_sql(conn: Connection) -> tuple[str, tuple[str, ...]]:
    dialect = conn.dialect
    key = (dialect.name, dialect.driver)
    found = _SAMPLES_AT_SQL.get(key)
    if found is None:
        compiled = _SELECT_SAMPLES_AT.compile(dialect=dialect)
        found = _SAMPLES_AT_SQL[key] = (str(compiled), tuple(compiled.positiontup or ()))
    return found


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


def is_register(sample: MeterSample) -> bool:
    """The connector's energy register, that a transaction's energy is counted from."""
    return (
        sample.measurand == ENERGY_REGISTER
        and sample.phase is None
        and sample.location in (None, "Outlet")
    )


def normalise(sample: MeterSample) -> MeterSample:
    """In UTC and in base units (kWh to Wh): as stored, and as the register is compared."""
    sample.timestamp = as_utc(sample.timestamp)
    if sample.unit in _UNIT_KILO:
        sample.value = EXACT.multiply(Decimal(sample.value), 1000)
        sample.unit = _UNIT_KILO[sample.unit]
    return sample


class TransactionRow:
    """A transaction row being changed inside one operation."""

    def __init__(self, conn: Connection, pk: int, row: Row[Any] | None = None) -> None:
        if row is None:
            row = conn.execute(SELECT_TX, {"pk": pk}).one()
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
            self.set("energy_wh", EXACT.subtract(last, baseline))

    def save(self, conn: Connection) -> None:
        """Write the changed columns and the new flags (a flag already stored is kept once)."""
        if self.changed:
            conn.execute(_UPDATE_TX, {"tx_pk": self.pk, **self.changed})
            self.changed = {}
        if self.new_flags:
            conn.execute(
                dialect_insert(conn, s.flags).on_conflict_do_nothing(
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


def create_transaction(
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
) -> TransactionRow:
    """Insert a transaction and flag what its start says of the connector's other
    transactions (still busy, overlapping); its flags are written by ``save``."""
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
    tx = TransactionRow(conn, pk)
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
            add_flag(
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


def add_flag(
    conn: Connection,
    station_id: str,
    transaction_pk: int | None,
    code: str,
    detail: str,
    at: datetime,
) -> None:
    """A flag on a transaction other than the row being changed, or on none (an unknown
    transaction id), written at once."""
    conn.execute(
        dialect_insert(conn, s.flags)
        .values(
            station_id=station_id,
            transaction_pk=transaction_pk,
            code=code,
            detail=detail[:500],
            at=as_utc(at),
        )
        .on_conflict_do_nothing(index_elements=["transaction_pk", "code", "detail"])
    )


def check_overlap_on_stop(conn: Connection, tx: TransactionRow, stopped_at: datetime) -> None:
    """Flag a stop that comes after a later transaction on the same connector started."""
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


def _sample_key(sample: MeterSample) -> tuple[datetime, str, str, str]:
    return (sample.timestamp, sample.measurand, sample.phase or "", sample.location or "")


def _duplicates(
    conn: Connection,
    station_id: str,
    tx_key: int,
    evse_id: int,
    connector_id: int,
    samples: Sequence[MeterSample],
) -> tuple[list[tuple[str, str, datetime]], set[int]]:
    """Samples whose key (time, measurand, phase, location) is already taken, in this
    message or stored before, by another value: the stored row keeps the first, the
    flag keeps the other (a sample sent again with its own value is no news). Also the
    positions in ``samples`` of those not kept: what is billed is what is stored."""
    first: dict[tuple[datetime, str, str, str], Decimal] = {}
    found: list[tuple[str, str, datetime]] = []
    not_kept: set[int] = set()

    def check(key: tuple[datetime, str, str, str], value: Decimal, where: str) -> bool:
        kept = first.setdefault(key, value)
        if kept != value:
            found.append(
                (
                    DUPLICATE_TIMESTAMP,
                    f"{key[1]}{' ' + key[2] if key[2] else ''} at {key[0].isoformat()}: "
                    f"{value} {where}, {kept} stored",
                    key[0],
                )
            )
            return False
        return True

    sql, order = _samples_at_sql(conn)
    form = STORED_FORMS[conn.dialect.name]
    values = {"sid": station_id, "tx_key": tx_key, "evse_id": evse_id}
    values["connector_id"] = connector_id
    for at in {sample.timestamp for sample in samples}:
        values["at"] = form.time(at)
        for row in conn.exec_driver_sql(sql, tuple(values[name] for name in order)):
            measurand, phase, location, value = row
            first[(at, measurand, phase, location)] = Decimal(str(value))
    for position, sample in enumerate(samples):
        if not check(_sample_key(sample), sample.value, "sent"):
            not_kept.add(position)
    return found, not_kept


def store_samples(
    conn: Connection,
    station_id: str,
    *,
    evse_id: int,
    connector_id: int,
    tx: TransactionRow | None,
    samples: Sequence[MeterSample],
    received_at: datetime,
    event_at: datetime | None = None,
    rejected: Sequence[tuple[str, str, datetime]] = (),
    what: str = "MeterValues",
) -> None:
    """Store samples once each; a transaction's energy registers update its energy while
    it runs (after its end they are late data, flagged, not billed). A sample at
    ``event_at`` (its event's own time, checked there) is not checked again for being in
    the future. ``rejected``: (code, detail, at) of values sent but not read, flagged."""
    for code, detail, at in rejected:
        if tx is not None:
            tx.flag(code, f"{what}: {detail}", at)
        else:
            add_flag(conn, station_id, None, code, f"{what}: {detail}", at)
    if not samples:
        return
    pk = tx.pk if tx is not None else None
    tx_key = pk or 0
    duplicates, not_kept = _duplicates(conn, station_id, tx_key, evse_id, connector_id, samples)
    for code, detail, at in duplicates:
        if tx is not None:
            tx.flag(code, f"{what}: {detail}", at)
        else:
            add_flag(conn, station_id, None, code, f"{what}: {detail}", at)
    received_at = as_utc(received_at)
    form = STORED_FORMS[conn.dialect.name]
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
    # Billed from what is stored: a duplicate's other value lives only in its flag.
    kept = (
        [sample for i, sample in enumerate(samples) if i not in not_kept] if not_kept else samples
    )
    ordered = sorted(kept, key=lambda sample: sample.timestamp)
    if not ordered:
        return
    decision = on_samples(
        Phase.of(active=bool(tx.v["active"])),
        len(ordered),
        ordered[0].timestamp,
        ordered[-1].timestamp,
        what,
    )
    for code, detail in decision.flags:
        tx.flag(code, detail, received_at)
    future_flagged = False
    for sample in ordered:
        if (
            not future_flagged
            and sample.timestamp != event_at
            and sample.timestamp > received_at + FUTURE_TOLERANCE
        ):
            tx.check_future(sample.timestamp, received_at, "a meter value")
            future_flagged = True
        if decision.billable and is_register(sample):
            tx.apply_register(sample.value, sample.timestamp)
