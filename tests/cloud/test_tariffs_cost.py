"""The sans-I/O pricing of a session (cloud/tariffs/cost.py, pricing.py): exact Decimal,
the stated rounding, VAT, the charging and idle clock, and when a CostUpdated is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugstream.cloud.storage.tariffs import (
    Tariff,
    TariffData,
    TransactionCost,
    TransactionFacts,
)
from plugstream.cloud.tariffs.cost import SessionClock, TariffPrices, Usage, minor_unit, price
from plugstream.cloud.tariffs.pricing import breakdown, cost_update_due, price_event

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
D = Decimal

EUR = TariffPrices(
    currency="EUR",
    start_fee=D("1.00"),
    per_kwh=D("0.40"),
    per_charging_minute=D("0.02"),
    per_idle_minute=D("0.10"),
    vat_percent=D("21"),
)


def test_a_session_is_priced_part_by_part_then_vat_on_the_net() -> None:
    cost = price(EUR, Usage(energy_wh=D("12345"), charging_s=D(3600), idle_s=D(900)))
    assert cost.start_fee == D("1.00")
    assert cost.energy == D("4.94")  # 12.345 kWh x 0.40 = 4.938
    assert cost.charging_time == D("1.20")  # 60 min x 0.02
    assert cost.idle_time == D("1.50")  # 15 min x 0.10
    assert cost.net == D("8.64")
    assert cost.vat == D("1.81")  # 21 % of 8.64 = 1.8144
    assert cost.total == D("10.45")
    assert cost.total == cost.net + cost.vat


def test_rounding_is_half_up_to_the_currencys_minor_unit() -> None:
    half = TariffPrices(currency="EUR", per_kwh=D("0.25"))  # 10 Wh -> 0.0025
    assert price(half, Usage(energy_wh=D(10))).energy == D("0.00")
    assert price(half, Usage(energy_wh=D(20))).energy == D("0.01")  # 0.005 rounds up
    vat = TariffPrices(currency="EUR", start_fee=D("0.50"), vat_percent=D("19"))
    assert price(vat, Usage()).vat == D("0.10")  # 0.095 rounds up
    assert minor_unit("JPY") == D(1) and minor_unit("kwd") == D("0.001")
    yen = TariffPrices(currency="JPY", per_kwh=D("35.5"))
    assert price(yen, Usage(energy_wh=D(1000))).total == D(36)


def test_a_free_session_costs_zero_with_its_decimals() -> None:
    # I03.FR.04: a free transaction is 0.00, not an omitted cost
    cost = price(TariffPrices(currency="EUR"), Usage(energy_wh=D(5000), charging_s=D(60)))
    assert cost.total == D("0.00")
    assert str(cost.total) == "0.00"


amounts = st.decimals(min_value=0, max_value=10_000, places=3)
rates = st.decimals(min_value=0, max_value=100, places=4)


@given(
    prices=st.builds(
        TariffPrices,
        currency=st.sampled_from(["EUR", "JPY", "KWD"]),
        start_fee=rates,
        per_kwh=rates,
        per_charging_minute=rates,
        per_idle_minute=rates,
        vat_percent=st.decimals(min_value=0, max_value=50, places=2),
    ),
    energy=amounts,
    charging=amounts,
    idle=amounts,
    more_energy=amounts,
    more_charging=amounts,
    more_idle=amounts,
)
def test_the_cost_never_decreases_as_energy_and_time_grow(
    prices: TariffPrices,
    energy: Decimal,
    charging: Decimal,
    idle: Decimal,
    more_energy: Decimal,
    more_charging: Decimal,
    more_idle: Decimal,
) -> None:
    before = price(prices, Usage(energy, charging, idle))
    after = price(prices, Usage(energy + more_energy, charging + more_charging, idle + more_idle))
    assert after.total >= before.total
    assert after.net >= before.net and after.vat >= before.vat
    for cost in (before, after):
        assert cost.total == cost.net + cost.vat
        assert cost.net == cost.start_fee + cost.energy + cost.charging_time + cost.idle_time
        assert cost.total == cost.total.quantize(minor_unit(prices.currency))


def test_the_clock_counts_charging_and_idle_after_charging_only() -> None:
    clock = SessionClock().advance(T0, "EVConnected")  # waiting before the first kWh: free
    clock = clock.advance(T0 + timedelta(minutes=5), "Charging")
    clock = clock.advance(T0 + timedelta(minutes=35), "SuspendedEV")  # 30 min charging
    clock = clock.advance(T0 + timedelta(minutes=45), None)  # 10 min idle, state unchanged
    clock = clock.advance(T0 + timedelta(minutes=50), "Idle")  # 5 more idle, then unplugged
    usage = clock.usage(D(1000), T0 + timedelta(hours=2))  # no EV: no more idle
    assert usage.charging_s == D(1800)
    assert usage.idle_s == D(900)
    # the open interval counts up to the time asked for
    running = SessionClock().advance(T0, "Charging").usage(None, T0 + timedelta(seconds=90))
    assert running.charging_s == D(90) and running.energy_wh == 0


def test_an_event_older_than_the_last_adds_no_time() -> None:
    clock = SessionClock().advance(T0, "Charging").advance(T0 + timedelta(minutes=10), None)
    late = clock.advance(T0 + timedelta(minutes=2), None)
    assert late.charging_s == D(600)


def _tariff(**fields: object) -> Tariff:
    data = TariffData(name="Standard", currency="EUR", **fields)  # type: ignore[arg-type]
    return Tariff(7, data, T0, T0)


def test_events_price_the_transaction_and_a_retry_changes_nothing() -> None:
    tariff = _tariff(start_fee=D("0.50"), per_kwh=D("0.30"), per_charging_minute=D("0.01"))
    facts = TransactionFacts(pk=1, energy_wh=D(0), active=True)
    started = price_event(
        facts, None, tariff, seq_no=0, event_type="Started", timestamp=T0,
        charging_state="Charging", now=T0,
    )  # fmt: skip
    assert started is not None and started.total_cost == D("0.50") and not started.final
    facts = TransactionFacts(pk=1, energy_wh=D(2000), active=True)
    updated = price_event(
        facts, started, None, seq_no=1, event_type="Updated",
        timestamp=T0 + timedelta(minutes=10), charging_state=None, now=T0,
    )  # fmt: skip
    assert updated is not None
    assert updated.total_cost == D("1.20")  # 0.50 + 2 kWh x 0.30 + 10 min x 0.01
    retry = price_event(
        TransactionFacts(pk=1, energy_wh=D(9000), active=True), updated, None, seq_no=1,
        event_type="Updated", timestamp=T0 + timedelta(hours=1), charging_state=None, now=T0,
    )  # fmt: skip
    assert retry == updated
    ended = price_event(
        TransactionFacts(pk=1, energy_wh=D(3000), active=False), updated, None, seq_no=2,
        event_type="Ended", timestamp=T0 + timedelta(minutes=20), charging_state="Idle", now=T0,
    )  # fmt: skip
    assert ended is not None and ended.final and ended.total_cost == D("1.60")
    parts = breakdown(ended)
    assert (parts.start_fee, parts.energy, parts.charging_time) == (
        D("0.50"), D("0.90"), D("0.20"),
    )  # fmt: skip
    # after the final cost, nothing changes it
    assert price_event(
        facts, ended, None, seq_no=3, event_type="Updated", timestamp=T0 + timedelta(hours=3),
        charging_state="Charging", now=T0,
    ) == ended  # fmt: skip


def test_no_tariff_prices_nothing() -> None:
    facts = TransactionFacts(pk=1, energy_wh=D(100), active=True)
    assert price_event(
        facts, None, None, seq_no=0, event_type="Started", timestamp=T0,
        charging_state="Charging", now=T0,
    ) is None  # fmt: skip


def _cost(**fields: object) -> TransactionCost:
    base = dict(
        transaction_pk=1, tariff_id=1, tariff_name="x", prices={}, currency="EUR",
        last_seq_no=3, charging_state="Charging", state_since=T0, charged=True,
        charging_s=D(0), idle_s=D(0), energy_wh=D(0), total_cost=D("2.00"), final=False,
        sent_cost=None, sent_at=None, updated_at=T0,
    )  # fmt: skip
    base.update(fields)
    return TransactionCost(**base)  # type: ignore[arg-type]


def test_a_cost_update_is_due_while_charging_by_threshold_or_interval() -> None:
    now = T0 + timedelta(minutes=1)
    assert cost_update_due(_cost(), now)  # never sent
    assert not cost_update_due(_cost(total_cost=D("0.00")), now)  # nothing to tell yet
    assert not cost_update_due(_cost(charging_state="SuspendedEV"), now)
    assert not cost_update_due(_cost(final=True), now)
    assert not cost_update_due(_cost(sent_cost=D("2.00"), sent_at=T0), now)  # unchanged
    assert cost_update_due(_cost(sent_cost=D("1.99"), sent_at=T0), now)  # no rule: any change
    rules = {"cost_updated_threshold": D("0.50"), "cost_updated_interval_s": 300}
    assert not cost_update_due(_cost(sent_cost=D("1.80"), sent_at=T0, **rules), now)
    assert cost_update_due(_cost(sent_cost=D("1.50"), sent_at=T0, **rules), now)
    later = T0 + timedelta(minutes=5)
    assert cost_update_due(_cost(sent_cost=D("1.99"), sent_at=T0, **rules), later)
