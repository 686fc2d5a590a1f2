"""The station's display of tariff and cost (station/tariff.py): the tariff text, the
running cost of CostUpdated and of TransactionEvent answers, the final cost, shown only
when the transaction ended online, and the TariffCostCtrlr settings (I01.FR.03,
I02.FR.02-04, I03.FR.03, I04, I05)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from plugstream.ocpp import Handlers
from plugstream.ocpp.routing import dispatch
from plugstream.station.config import DeviceModel201
from plugstream.station.tariff import (
    TARIFF_VARIABLES201,
    CostDisplay,
    TariffHandlers201,
    tariff_settings,
)

pytestmark = pytest.mark.unit


def ended(tx_id: str, *, offline: bool = False) -> dict[str, Any]:
    return {"eventType": "Ended", "offline": offline, "transactionInfo": {"transactionId": tx_id}}


def updated(tx_id: str) -> dict[str, Any]:
    return {"eventType": "Updated", "transactionInfo": {"transactionId": tx_id}}


def settings(**values: str) -> Any:
    return lambda name: values.get(name.replace(".", "_"))


def test_the_tariff_text_and_the_running_then_final_cost_are_shown() -> None:
    display = CostDisplay(settings(Currency="EUR"))
    assert display.describe() == ""  # nothing to show yet
    display.id_token_info({"status": "Accepted", "personalMessage": {"format": "UTF8",
                           "content": "0.35 EUR/kWh"}})  # fmt: skip
    display.transaction_answer(updated("T1"), {"totalCost": 1.2})
    display.transaction_answer(updated("T1"), {"totalCost": 1.2})  # unchanged: shown once
    display.cost_updated("T1", 1.45)
    assert display.running_cost == Decimal("1.45")
    assert display.describe() == "cost 1.45 EUR (running)"
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


def test_the_fallback_texts_and_the_enabled_switches_are_obeyed() -> None:
    display = CostDisplay(
        settings(TariffFallbackMessage="Ask us: 0800 123", TotalCostFallbackMessage="Bill follows")
    )
    display.fallback_tariff()  # I04: authorized without the CSMS
    display.transaction_answer(ended("T5"), {})  # I05: no totalCost in the Ended answer
    assert display.shown == ["Ask us: 0800 123", "Bill follows"]
    quiet = CostDisplay(settings(Enabled_Cost="false", Enabled_Tariff="false"))
    quiet.id_token_info({"status": "Accepted", "personalMessage": {"format": "UTF8",
                         "content": "tariff"}})  # fmt: skip
    quiet.cost_updated("T6", 1)
    quiet.transaction_answer(ended("T6"), {"totalCost": 2})
    assert quiet.shown == [] and quiet.total_cost == 2  # kept, not shown


def test_the_device_model_has_the_tariffcostctrlr_variables(tmp_path: Path) -> None:
    def model(extra: tuple[Any, ...]) -> DeviceModel201:
        return DeviceModel201.load(
            tmp_path / f"dm{len(extra)}.json",
            evses={1: 1},
            identity="CS",
            vendor_name="PlugStream",
            model="PlugStream 7",
            supply_phases=1,
            max_power_w=7400.0,
            extra=extra,
        )

    setting = tariff_settings(model(TARIFF_VARIABLES201))
    assert setting("Currency") == "EUR" and setting("Enabled.Cost") == "true"
    assert setting("Available.Tariff") == "true" and setting("TariffFallbackMessage") == ""
    assert tariff_settings(model(()))("Currency") is None  # a model without them


class _Station:
    def __init__(self) -> None:
        self.cost_display = CostDisplay(settings(Currency="EUR"))


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
