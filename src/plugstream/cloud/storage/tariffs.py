"""The tariffs, which station or id-token group pays which, and each priced transaction's
running and final cost.

Which tariff prices a transaction is decided once, at its first priced event: the
station's tariff, else the tariff of the id token's group (its parent id token), else the
default tariff. Its prices are copied onto the transaction's cost row, so editing or
deleting a tariff never changes what a session already running or ended costs.

The pricing itself is not here (storage knows no tariff rules): :meth:`Tariffs.update_cost`
runs the caller's pure function inside the write that keeps its result, so the cost a
station is answered with is the one committed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from . import schema as s
from .coltypes import as_utc
from .database import Database

__all__ = [
    "NO_TARIFF_TTL_S",
    "PRICE_FIELDS",
    "Assignment",
    "Scope",
    "Tariff",
    "TariffData",
    "Tariffs",
    "TransactionCost",
    "TransactionFacts",
]

Scope = Literal["station", "group"]
#: how long "there is no tariff" is believed without reading again
NO_TARIFF_TTL_S = 5.0
#: the tariff's price columns, excluding VAT, and the VAT rate
PRICE_FIELDS = ("start_fee", "per_kwh", "per_charging_minute", "per_idle_minute", "vat_percent")


@dataclass(frozen=True, slots=True)
class TariffData:
    """What an operator sets on a tariff."""

    name: str
    currency: str
    start_fee: Decimal = Decimal(0)
    per_kwh: Decimal = Decimal(0)
    per_charging_minute: Decimal = Decimal(0)
    per_idle_minute: Decimal = Decimal(0)
    vat_percent: Decimal = Decimal(0)
    personal_message: str | None = None
    language: str | None = None
    is_default: bool = False
    cost_updated_interval_s: int = 0
    cost_updated_threshold: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Tariff:
    tariff_id: int
    data: TariffData
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Assignment:
    scope: Scope
    key: str  # the station id, or the group's (parent) id token
    tariff_id: int
    assigned_at: datetime


@dataclass(frozen=True, slots=True)
class TransactionFacts:
    """What the pricing needs of a stored transaction, read in the same write."""

    pk: int
    energy_wh: Decimal | None
    active: bool


@dataclass(frozen=True, slots=True)
class TransactionCost:
    """A transaction's cost row: the tariff's prices as they were, the session clock,
    and the cost (running while ``final`` is False)."""

    transaction_pk: int
    tariff_id: int | None
    tariff_name: str
    prices: dict[str, Decimal]  # PRICE_FIELDS
    currency: str
    last_seq_no: int
    charging_state: str | None
    state_since: datetime | None
    charged: bool
    charging_s: Decimal
    idle_s: Decimal
    energy_wh: Decimal
    total_cost: Decimal
    final: bool
    sent_cost: Decimal | None
    sent_at: datetime | None
    updated_at: datetime
    # the tariff's CostUpdated rules, when it still exists (else: none sent)
    cost_updated_interval_s: int = 0
    cost_updated_threshold: Decimal = Decimal(0)
    personal_message: str | None = None


#: the caller's pricing: the transaction, its cost row so far (None: not priced yet) and
#: the tariff that applies (for a first event); the new cost row, or None to keep none
CostUpdate = Callable[
    [TransactionFacts, TransactionCost | None, Tariff | None], TransactionCost | None
]


def _tariff(row: Any) -> Tariff:
    return Tariff(
        tariff_id=int(row.tariff_id),
        data=TariffData(
            name=row.name,
            currency=row.currency,
            start_fee=row.start_fee,
            per_kwh=row.per_kwh,
            per_charging_minute=row.per_charging_minute,
            per_idle_minute=row.per_idle_minute,
            vat_percent=row.vat_percent,
            personal_message=row.personal_message,
            language=row.language,
            is_default=bool(row.is_default),
            cost_updated_interval_s=int(row.cost_updated_interval_s),
            cost_updated_threshold=row.cost_updated_threshold,
        ),
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


def _values(data: TariffData) -> dict[str, Any]:
    return {
        "name": data.name,
        "currency": data.currency,
        "start_fee": data.start_fee,
        "per_kwh": data.per_kwh,
        "per_charging_minute": data.per_charging_minute,
        "per_idle_minute": data.per_idle_minute,
        "vat_percent": data.vat_percent,
        "personal_message": data.personal_message,
        "language": data.language,
        "is_default": data.is_default,
        "cost_updated_interval_s": data.cost_updated_interval_s,
        "cost_updated_threshold": data.cost_updated_threshold,
    }


def _cost(row: Any, tariff: Tariff | None) -> TransactionCost:
    return TransactionCost(
        transaction_pk=int(row.transaction_pk),
        tariff_id=int(row.tariff_id) if row.tariff_id is not None else None,
        tariff_name=row.tariff_name,
        prices={k: Decimal(v) for k, v in json.loads(row.prices).items()},
        currency=row.currency,
        last_seq_no=int(row.last_seq_no),
        charging_state=row.charging_state,
        state_since=as_utc(row.state_since) if row.state_since is not None else None,
        charged=bool(row.charged),
        charging_s=row.charging_s,
        idle_s=row.idle_s,
        energy_wh=row.energy_wh,
        total_cost=row.total_cost,
        final=bool(row.final),
        sent_cost=row.sent_cost,
        sent_at=as_utc(row.sent_at) if row.sent_at is not None else None,
        updated_at=as_utc(row.updated_at),
        cost_updated_interval_s=tariff.data.cost_updated_interval_s if tariff else 0,
        cost_updated_threshold=tariff.data.cost_updated_threshold if tariff else Decimal(0),
        personal_message=tariff.data.personal_message if tariff else None,
    )


def _cost_values(cost: TransactionCost) -> dict[str, Any]:
    return {
        "tariff_id": cost.tariff_id,
        "tariff_name": cost.tariff_name,
        "prices": json.dumps({k: str(v) for k, v in cost.prices.items()}, sort_keys=True),
        "currency": cost.currency,
        "last_seq_no": cost.last_seq_no,
        "charging_state": cost.charging_state,
        "state_since": cost.state_since,
        "charged": cost.charged,
        "charging_s": cost.charging_s,
        "idle_s": cost.idle_s,
        "energy_wh": cost.energy_wh,
        "total_cost": cost.total_cost,
        "final": cost.final,
        "sent_cost": cost.sent_cost,
        "sent_at": cost.sent_at,
        "updated_at": cost.updated_at,
    }


def _get_tariff(conn: Connection, tariff_id: int | None) -> Tariff | None:
    if tariff_id is None:
        return None
    row = conn.execute(select(s.tariffs).where(s.tariffs.c.tariff_id == tariff_id)).first()
    return _tariff(row) if row is not None else None


def _applicable(conn: Connection, station_id: str, id_token: str | None) -> Tariff | None:
    """The station's tariff, else its driver's group's, else the default."""
    a = s.tariff_assignments
    found = conn.execute(
        select(a.c.tariff_id).where(a.c.scope == "station", a.c.key == station_id)
    ).scalar()
    if found is None and id_token is not None:
        group = conn.execute(
            select(s.id_tokens.c.parent_id_token).where(s.id_tokens.c.id_token == id_token)
        ).scalar()
        if group:
            found = conn.execute(
                select(a.c.tariff_id).where(a.c.scope == "group", a.c.key == group)
            ).scalar()
    if found is None:
        found = conn.execute(
            select(s.tariffs.c.tariff_id)
            .where(s.tariffs.c.is_default.is_(True))
            .order_by(s.tariffs.c.tariff_id)
            .limit(1)
        ).scalar()
    return _get_tariff(conn, found)


def _read_cost(conn: Connection, pk: int) -> TransactionCost | None:
    row = conn.execute(
        select(s.transaction_costs).where(s.transaction_costs.c.transaction_pk == pk)
    ).first()
    if row is None:
        return None
    return _cost(row, _get_tariff(conn, row.tariff_id))


class Tariffs:
    """The tariffs, their assignments and the transactions' costs."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # Whether any tariff exists (None: not read yet). Without one nothing is priced,
        # and a cloud with no tariffs pays no write per TransactionEvent for it. "None"
        # is read again after NO_TARIFF_TTL_S: another process may have made one.
        self._any: bool | None = None
        self._any_read_at = 0.0

    # -- tariffs --------------------------------------------------------------------

    async def create(self, data: TariffData, *, at: datetime) -> Tariff:
        def op(conn: Connection) -> Tariff:
            if data.is_default:
                conn.execute(update(s.tariffs).values(is_default=False))
            key = conn.execute(
                s.tariffs.insert().values(**_values(data), created_at=at, updated_at=at)
            ).inserted_primary_key
            assert key is not None
            return Tariff(int(key[0]), data, at, at)

        self._any = True
        return await self._db.write(op)

    async def get(self, tariff_id: int) -> Tariff | None:
        return await self._db.read(lambda conn: _get_tariff(conn, tariff_id))

    async def replace(self, tariff_id: int, data: TariffData, *, at: datetime) -> Tariff | None:
        """Set all of a tariff; None when there is no such tariff. The one default: making
        this one the default makes the old one not."""

        def op(conn: Connection) -> Tariff | None:
            old = _get_tariff(conn, tariff_id)
            if old is None:
                return None
            if data.is_default:
                conn.execute(update(s.tariffs).values(is_default=False))
            conn.execute(
                update(s.tariffs)
                .where(s.tariffs.c.tariff_id == tariff_id)
                .values(**_values(data), updated_at=at)
            )
            return Tariff(tariff_id, data, old.created_at, at)

        return await self._db.write(op)

    async def delete(self, tariff_id: int) -> bool:
        """Forget a tariff and its assignments (explicitly: SQLite may not cascade);
        costs priced by it keep their copy of its prices."""

        def op(conn: Connection) -> bool:
            conn.execute(
                delete(s.tariff_assignments).where(s.tariff_assignments.c.tariff_id == tariff_id)
            )
            gone = conn.execute(delete(s.tariffs).where(s.tariffs.c.tariff_id == tariff_id))
            return bool(gone.rowcount)

        self._any = None
        return await self._db.write(op)

    async def any(self) -> bool:
        """Whether any tariff exists (cached: a TransactionEvent asks every time)."""
        if self._any is False and time.monotonic() - self._any_read_at > NO_TARIFF_TTL_S:
            self._any = None
        if self._any is None:
            found = await self._db.read(
                lambda conn: conn.execute(select(s.tariffs.c.tariff_id).limit(1)).first()
            )
            if self._any is None:
                self._any = found is not None
                self._any_read_at = time.monotonic()
        return self._any

    # -- assignments ----------------------------------------------------------------

    async def assign(self, scope: Scope, key: str, tariff_id: int, *, at: datetime) -> bool:
        """Let ``tariff_id`` price the station's (or the group's) next transactions;
        False when there is no such tariff."""

        def op(conn: Connection) -> bool:
            if _get_tariff(conn, tariff_id) is None:
                return False
            a = s.tariff_assignments
            conn.execute(delete(a).where(a.c.scope == scope, a.c.key == key))
            conn.execute(
                a.insert().values(scope=scope, key=key, tariff_id=tariff_id, assigned_at=at)
            )
            return True

        return await self._db.write(op)

    async def unassign(self, scope: Scope, key: str) -> bool:
        def op(conn: Connection) -> bool:
            a = s.tariff_assignments
            return bool(conn.execute(delete(a).where(a.c.scope == scope, a.c.key == key)).rowcount)

        return await self._db.write(op)

    async def assignments(self) -> list[Assignment]:
        def read(conn: Connection) -> list[Assignment]:
            a = s.tariff_assignments
            rows = conn.execute(select(a).order_by(a.c.scope, a.c.key))
            return [
                Assignment(r.scope, r.key, int(r.tariff_id), as_utc(r.assigned_at)) for r in rows
            ]

        return await self._db.read(read)

    async def applicable(self, station_id: str, id_token: str | None) -> Tariff | None:
        """The tariff that would price a transaction of ``id_token`` at the station now."""
        if not await self.any():
            return None
        return await self._db.read(lambda conn: _applicable(conn, station_id, id_token))

    # -- costs ----------------------------------------------------------------------

    async def update_cost(
        self, station_id: str, transaction_id: str, fn: CostUpdate
    ) -> TransactionCost | None:
        """Run ``fn`` on the stored transaction (the station's transactionId) and keep
        the cost row it returns, in one write; None when the transaction is unknown or
        ``fn`` prices nothing."""

        def op(conn: Connection) -> TransactionCost | None:
            t = s.transactions
            row = conn.execute(
                select(t.c.id, t.c.energy_wh, t.c.active, t.c.id_token).where(
                    t.c.station_id == station_id, t.c.transaction_id == transaction_id
                )
            ).first()
            if row is None:
                return None
            facts = TransactionFacts(int(row.id), row.energy_wh, bool(row.active))
            cost = _read_cost(conn, facts.pk)
            tariff = (
                _applicable(conn, station_id, row.id_token)
                if cost is None
                else _get_tariff(conn, cost.tariff_id)
            )
            new = fn(facts, cost, tariff)
            if new is None or new == cost:
                return new
            values = _cost_values(new)
            if cost is None:
                conn.execute(s.transaction_costs.insert().values(transaction_pk=facts.pk, **values))
            else:
                conn.execute(
                    update(s.transaction_costs)
                    .where(s.transaction_costs.c.transaction_pk == facts.pk)
                    .values(**values)
                )
            return new

        if not await self.any():
            return None
        return await self._db.write(op)

    async def get_cost(self, transaction_pk: int) -> TransactionCost | None:
        return await self._db.read(lambda conn: _read_cost(conn, transaction_pk))

    async def record_sent(self, transaction_pk: int, cost: Decimal, *, at: datetime) -> None:
        """A CostUpdated with ``cost`` was accepted by the station at ``at``."""

        def op(conn: Connection) -> None:
            c = s.transaction_costs
            conn.execute(
                update(c)
                .where(c.c.transaction_pk == transaction_pk)
                .values(sent_cost=cost, sent_at=at)
            )

        await self._db.write(op)

    # last: below it, ``list`` in an annotation would name this method
    async def list(self) -> list[Tariff]:
        def read(conn: Connection) -> list[Tariff]:
            rows = conn.execute(select(s.tariffs).order_by(s.tariffs.c.tariff_id))
            return [_tariff(r) for r in rows]

        return await self._db.read(read)
