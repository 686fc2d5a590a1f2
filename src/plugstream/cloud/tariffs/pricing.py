"""The running and final cost of a transaction, event by event, sans-I/O: what the
cost row becomes on a TransactionEvent, and whether a CostUpdated is due.

:func:`price_event` runs inside the store's write (``store.tariffs.update_cost``), so
the cost a station is answered with is exactly the one committed. An event the row has
seen (a retry: same or lower seqNo) or one after the final cost changes nothing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from plugstream.cloud.storage.tariffs import (
    PRICE_FIELDS,
    Tariff,
    TransactionCost,
    TransactionFacts,
)
from plugstream.cloud.tariffs.cost import (
    CHARGING,
    CostBreakdown,
    SessionClock,
    TariffPrices,
    price,
)

__all__ = ["breakdown", "cost_update_due", "price_event", "prices_of"]

ENDED = "Ended"


def prices_of(cost: TransactionCost) -> TariffPrices:
    """The prices the transaction was started under."""
    p = cost.prices
    return TariffPrices(
        currency=cost.currency,
        **{name: p.get(name, Decimal(0)) for name in PRICE_FIELDS},
    )


def _clock(cost: TransactionCost) -> SessionClock:
    return SessionClock(
        state=cost.charging_state,
        since=cost.state_since,
        charged=cost.charged,
        charging_s=cost.charging_s,
        idle_s=cost.idle_s,
    )


def breakdown(cost: TransactionCost) -> CostBreakdown:
    """The parts of the cost as stored (up to the last event)."""
    usage = _clock(cost).usage(cost.energy_wh)
    return price(prices_of(cost), usage)


def _first(facts: TransactionFacts, tariff: Tariff, now: datetime) -> TransactionCost:
    data = tariff.data
    zero = Decimal(0)
    return TransactionCost(
        transaction_pk=facts.pk,
        tariff_id=tariff.tariff_id,
        tariff_name=data.name,
        prices={name: getattr(data, name) for name in PRICE_FIELDS},
        currency=data.currency,
        last_seq_no=-1,
        charging_state=None,
        state_since=None,
        charged=False,
        charging_s=zero,
        idle_s=zero,
        energy_wh=zero,
        total_cost=zero,
        final=False,
        sent_cost=None,
        sent_at=None,
        updated_at=now,
        cost_updated_interval_s=data.cost_updated_interval_s,
        cost_updated_threshold=data.cost_updated_threshold,
        personal_message=data.personal_message,
    )


def price_event(
    facts: TransactionFacts,
    cost: TransactionCost | None,
    tariff: Tariff | None,
    *,
    seq_no: int,
    event_type: str,
    timestamp: datetime,
    charging_state: str | None,
    now: datetime,
) -> TransactionCost | None:
    """The cost row after a TransactionEvent (``timestamp``: the event's, which dates
    the charging state; ``now``: when it was received). None: no tariff prices it."""
    if cost is None:
        if tariff is None:
            return None
        cost = _first(facts, tariff, now)
    elif cost.final or seq_no <= cost.last_seq_no:
        return cost
    clock = _clock(cost).advance(timestamp, charging_state)
    energy = facts.energy_wh if facts.energy_wh is not None else Decimal(0)
    total = price(prices_of(cost), clock.usage(energy)).total
    return replace(
        cost,
        last_seq_no=seq_no,
        charging_state=clock.state,
        state_since=clock.since,
        charged=clock.charged,
        charging_s=clock.charging_s,
        idle_s=clock.idle_s,
        energy_wh=energy,
        total_cost=total,
        final=event_type == ENDED or not facts.active,
        updated_at=now,
    )


def cost_update_due(cost: TransactionCost, now: datetime) -> bool:
    """Whether to send the running cost in a CostUpdated (I02.FR.01): while charging,
    when it changed since the last one sent, by the tariff's threshold or once its
    interval passed (neither set: on every change). Nothing is sent for 0.00."""
    last = cost.sent_cost if cost.sent_cost is not None else Decimal(0)  # none sent: 0
    if cost.final or cost.charging_state != CHARGING or cost.total_cost == last:
        return False
    if cost.sent_at is None:
        return True
    threshold, interval = cost.cost_updated_threshold, cost.cost_updated_interval_s
    if threshold <= 0 and interval <= 0:
        return True
    if threshold > 0 and abs(cost.total_cost - last) >= threshold:
        return True
    return interval > 0 and (now - cost.sent_at).total_seconds() >= interval
