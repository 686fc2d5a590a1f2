"""The tariffs' storage: tariffs, their one default, assignments by station and by
id-token group, and a transaction's cost row, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from plugstream.cloud.storage import IdTokenRecord, Store
from plugstream.cloud.storage.tariffs import Tariff, TariffData, TransactionCost, TransactionFacts

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
D = Decimal


def data(name: str, **fields: object) -> TariffData:
    return TariffData(name=name, currency="EUR", **fields)  # type: ignore[arg-type]


async def test_a_tariff_is_kept_exactly_and_edited_and_deleted(store: Store) -> None:
    made = await store.tariffs.create(
        data("Standard", per_kwh=D("0.3912"), vat_percent=D("21"), personal_message="0.39/kWh"),
        at=T0,
    )
    got = await store.tariffs.get(made.tariff_id)
    assert got is not None and got.data == made.data
    assert got.data.per_kwh == D("0.3912")
    edited = await store.tariffs.replace(
        made.tariff_id, replace(made.data, per_kwh=D("0.45")), at=T0 + timedelta(hours=1)
    )
    assert edited is not None and edited.created_at == T0
    assert (await store.tariffs.get(made.tariff_id)).data.per_kwh == D("0.45")  # type: ignore[union-attr]
    assert await store.tariffs.replace(999, made.data, at=T0) is None
    assert await store.tariffs.delete(made.tariff_id)
    assert not await store.tariffs.delete(made.tariff_id)
    assert await store.tariffs.list() == []


async def test_there_is_one_default_tariff(store: Store) -> None:
    first = await store.tariffs.create(data("A", is_default=True), at=T0)
    second = await store.tariffs.create(data("B", is_default=True), at=T0)
    defaults = [t.tariff_id for t in await store.tariffs.list() if t.data.is_default]
    assert defaults == [second.tariff_id]
    await store.tariffs.replace(first.tariff_id, first.data, at=T0)
    defaults = [t.tariff_id for t in await store.tariffs.list() if t.data.is_default]
    assert defaults == [first.tariff_id]


async def test_the_station_tariff_beats_the_group_tariff_beats_the_default(store: Store) -> None:
    default = await store.tariffs.create(data("Default", is_default=True), at=T0)
    fleet = await store.tariffs.create(data("Fleet"), at=T0)
    site = await store.tariffs.create(data("Site"), at=T0)
    await store.id_tokens.put(IdTokenRecord("DRIVER1", parent_id_token="FLEET-A"))
    assert (await store.tariffs.applicable("CS1", "DRIVER1")) == default
    assert await store.tariffs.assign("group", "FLEET-A", fleet.tariff_id, at=T0)
    assert (await store.tariffs.applicable("CS1", "DRIVER1")) == fleet
    assert (await store.tariffs.applicable("CS1", "STRANGER")) == default
    assert await store.tariffs.assign("station", "CS1", site.tariff_id, at=T0)
    assert (await store.tariffs.applicable("CS1", "DRIVER1")) == site
    assert not await store.tariffs.assign("station", "CS2", 999, at=T0)  # no such tariff
    assert [(a.scope, a.key) for a in await store.tariffs.assignments()] == [
        ("group", "FLEET-A"),
        ("station", "CS1"),
    ]
    # deleting a tariff drops its assignments
    await store.tariffs.delete(site.tariff_id)
    assert (await store.tariffs.applicable("CS1", "DRIVER1")) == fleet
    assert await store.tariffs.unassign("group", "FLEET-A")
    assert not await store.tariffs.unassign("group", "FLEET-A")


async def _transaction(store: Store, tx_id: str = "tx-1") -> None:
    await store.transactions.transaction_event(
        "CS1",
        event={
            "eventType": "Started",
            "timestamp": T0.isoformat(),
            "triggerReason": "Authorized",
            "seqNo": 0,
            "transactionInfo": {"transactionId": tx_id},
            "evse": {"id": 1, "connectorId": 1},
        },
        received_at=T0,
    )


async def test_a_cost_row_is_written_by_the_callers_pricing_and_keeps_its_prices(
    store: Store,
) -> None:
    tariff = await store.tariffs.create(data("Std", per_kwh=D("0.30"), is_default=True), at=T0)
    await _transaction(store)
    seen: list[tuple[TransactionFacts, TransactionCost | None, Tariff | None]] = []

    def pricing(
        facts: TransactionFacts, cost: TransactionCost | None, found: Tariff | None
    ) -> TransactionCost | None:
        seen.append((facts, cost, found))
        assert found is not None
        return TransactionCost(
            transaction_pk=facts.pk, tariff_id=found.tariff_id, tariff_name=found.data.name,
            prices={"per_kwh": found.data.per_kwh}, currency="EUR", last_seq_no=0,
            charging_state="Charging", state_since=T0, charged=True, charging_s=D(0),
            idle_s=D("1.5"), energy_wh=D("12.5"), total_cost=D("1.23"), final=False,
            sent_cost=None, sent_at=None, updated_at=T0,
        )  # fmt: skip

    cost = await store.tariffs.update_cost("CS1", "tx-1", pricing)
    assert cost is not None and seen[0][1] is None and seen[0][2] == tariff
    stored = await store.tariffs.get_cost(cost.transaction_pk)
    assert stored is not None
    assert stored.total_cost == D("1.23") and stored.idle_s == D("1.5")
    assert stored.prices == {"per_kwh": D("0.30")}
    await store.tariffs.record_sent(cost.transaction_pk, D("1.23"), at=T0)
    assert (await store.tariffs.get_cost(cost.transaction_pk)).sent_cost == D("1.23")  # type: ignore[union-attr]
    # the tariff goes; the transaction's cost stays with the prices it began with
    await store.tariffs.delete(tariff.tariff_id)
    await store.tariffs.create(data("Other"), at=T0)
    kept = await store.tariffs.get_cost(cost.transaction_pk)
    assert kept is not None and kept.prices == {"per_kwh": D("0.30")}
    assert await store.tariffs.update_cost("CS1", "no-such-tx", pricing) is None
