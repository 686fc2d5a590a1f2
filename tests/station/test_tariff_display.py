"""The station's display of tariff and cost (station/tariff.py): the tariff text, the
running cost of CostUpdated and of TransactionEvent answers, and the final cost, shown
only when the transaction ended online (I01.FR.03, I02.FR.02-04, I03.FR.03)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from plugstream.ocpp import Handlers
from plugstream.ocpp.routing import dispatch
from plugstream.station.tariff import CostDisplay, TariffHandlers201

pytestmark = pytest.mark.unit


def ended(tx_id: str, *, offline: bool = False) -> dict[str, Any]:
    return {"eventType": "Ended", "offline": offline, "transactionInfo": {"transactionId": tx_id}}


def updated(tx_id: str) -> dict[str, Any]:
    return {"eventType": "Updated", "transactionInfo": {"transactionId": tx_id}}


def test_the_tariff_text_and_the_running_then_final_cost_are_shown() -> None:
    display = CostDisplay(currency="EUR")
    assert display.describe() == ""  # nothing to show yet
    display.id_token_info({"status": "Accepted", "personalMessage": {"format": "UTF8",
                           "content": "0.35 EUR/kWh"}})  # fmt: skip
    display.transaction_answer(updated("T1"), {"totalCost": 1.2})
    display.transaction_answer(updated("T1"), {"totalCost": 1.2})  # unchanged: shown once
    display.cost_updated("T1", 1.45)
    assert (
        display.running_cost == Decimal("1.45") and display.describe() == "cost 1.45 EUR (running)"
    )
    display.transaction_answer(ended("T1"), {"totalCost": 2.0})
    assert display.total_cost == Decimal("2.0")
    assert display.shown == [
        "0.35 EUR/kWh",
        "cost so far 1.2 EUR",
        "cost so far 1.45 EUR",
        "total cost 2.0 EUR",
    ]
    assert display.describe() == "cost 2.0 EUR (final)"


def test_a_final_cost_of_a_session_ended_offline_is_kept_not_shown() -> None:
    display = CostDisplay()
    display.transaction_answer(ended("T2", offline=True), {"totalCost": 3.1})
    assert display.total_cost == Decimal("3.1") and display.shown == []
    # an answer without totalCost says the cost is unknown: nothing changes
    display.transaction_answer(updated("T3"), {})
    assert display.transaction_id == "T2" and display.describe() == "cost 3.1 (final)"


class _Station:
    def __init__(self) -> None:
        self.cost_display = CostDisplay(currency="EUR")


class _Handlers(TariffHandlers201, Handlers):
    def __init__(self, station: _Station) -> None:
        self.station = station


async def test_cost_updated_is_answered_and_shown() -> None:
    station = _Station()
    answer = await dispatch(
        _Handlers(station), "CostUpdated", {"totalCost": 4.56, "transactionId": "T4"}
    )
    assert answer == {}
    assert station.cost_display.running_cost == Decimal("4.56")
    assert station.cost_display.shown == ["cost so far 4.56 EUR"]
