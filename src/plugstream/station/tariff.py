"""Tariff and cost on the station (2.0.1 functional block I): what the driver is shown.

:class:`CostDisplay` is the station's display of tariff and cost, sans-I/O: the tariff
text of the Authorize answer (I01.FR.03), the running cost of a CostUpdated (I02.FR.03)
or of a TransactionEvent answer (I02.FR.04), and the final cost of the Ended answer when
the station was online as the transaction ended (I03.FR.03). Each line shown is kept, in
order, so the console and tests can read the display back.

:class:`TariffHandlers201` answers CostUpdated (I02.FR.02).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Protocol

from plugstream.ocpp import on, v201
from plugstream.station.config import VariableDef

__all__ = ["TARIFF_VARIABLES201", "CostDisplay", "TariffHandlers201", "tariff_settings"]

log = logging.getLogger("plugstream.station")

#: lines the display keeps (the newest last)
KEPT_LINES = 50
COMPONENT: Final = "TariffCostCtrlr"

TARIFF_VARIABLES201: Final = (
    VariableDef(COMPONENT, "Available", "boolean", "true", "ReadOnly", instance="Tariff"),
    VariableDef(COMPONENT, "Available", "boolean", "true", "ReadOnly", instance="Cost"),
    VariableDef(COMPONENT, "Enabled", "boolean", "true", instance="Tariff"),
    VariableDef(COMPONENT, "Enabled", "boolean", "true", instance="Cost"),
    VariableDef(COMPONENT, "Currency", "string", "EUR", max_limit=3, min_length=3),
    VariableDef(COMPONENT, "TariffFallbackMessage", "string", "", max_limit=255),
    VariableDef(COMPONENT, "TotalCostFallbackMessage", "string", "", max_limit=255),
)
"""2.0.1 TariffCostCtrlr (part 2, the referenced components and variables)."""

#: a TariffCostCtrlr variable's value by its name ("Enabled.Cost": with its instance);
#: None when the station's device model does not have it
Settings = Callable[[str], str | None]


def tariff_settings(config: Any) -> Settings:
    """The live TariffCostCtrlr values of a 2.0.1 device model (SetVariables changes
    them), None for a variable it does not define."""

    def setting(name: str) -> str | None:
        variable, _, instance = name.partition(".")
        try:
            value: str = config.value(COMPONENT, variable, instance=instance or None)
        except KeyError:
            return None
        return value

    return setting


def _no_settings(name: str) -> str | None:
    return None


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        found = Decimal(str(value))
    except ArithmeticError:
        return None
    return found if found.is_finite() else None


@dataclass(slots=True)
class CostDisplay:
    """The tariff and cost the driver sees, in TariffCostCtrlr.Currency."""

    settings: Settings = _no_settings
    transaction_id: str | None = None
    running_cost: Decimal | None = None  # of ``transaction_id``, while it runs
    total_cost: Decimal | None = None  # the final cost of ``transaction_id``
    personal_message: str | None = None  # the tariff text of the last Authorize
    shown: list[str] = field(default_factory=list)

    def _enabled(self, instance: str) -> bool:
        return self.settings(f"Enabled.{instance}") != "false"

    def _show(self, line: str) -> None:
        self.shown.append(line)
        del self.shown[:-KEPT_LINES]
        log.info("display: %s", line)

    def _money(self, amount: Decimal) -> str:
        return f"{amount} {self.settings('Currency') or ''}".rstrip()

    def fallback_tariff(self) -> None:
        """I04: the driver was authorized without the CSMS's tariff (offline)."""
        text = self.settings("TariffFallbackMessage")
        if text and self._enabled("Tariff"):
            self._show(text)

    def id_token_info(self, info: Mapping[str, Any]) -> None:
        """An idTokenInfo from the CSMS: its personalMessage is the driver's tariff."""
        message = info.get("personalMessage")
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str) and content:
            self.personal_message = content
            if self._enabled("Tariff"):
                self._show(content)

    def cost_updated(self, transaction_id: str, total_cost: object) -> None:
        """CostUpdated: the running cost (I02.FR.03)."""
        cost = _decimal(total_cost)
        if cost is None:
            return
        if transaction_id != self.transaction_id:
            self.transaction_id, self.total_cost = transaction_id, None
        self.running_cost = cost
        if self._enabled("Cost"):
            self._show(f"cost so far {self._money(cost)}")

    def transaction_answer(self, request: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        """A TransactionEvent's answer: the running cost (I02.FR.04), or the final one of
        Ended, shown only when the event was sent online (I03.FR.03: a driver is not
        waiting for the cost of a session that ended while the station was offline)."""
        info = result.get("idTokenInfo")
        if isinstance(info, Mapping):
            self.id_token_info(info)
        cost = _decimal(result.get("totalCost"))
        tx = request.get("transactionInfo")
        tx_id = tx.get("transactionId") if isinstance(tx, Mapping) else None
        ended, online = request.get("eventType") == "Ended", not request.get("offline", False)
        show = self._enabled("Cost")
        if cost is None or not isinstance(tx_id, str):
            fallback = self.settings("TotalCostFallbackMessage")
            if ended and online and show and fallback:  # I05: no total cost came
                self._show(fallback)
            return
        if tx_id != self.transaction_id:
            self.transaction_id, self.running_cost, self.total_cost = tx_id, None, None
        if ended:
            self.total_cost = cost
            if online and show:
                self._show(f"total cost {self._money(cost)}")
            return
        if cost != self.running_cost:
            self.running_cost = cost
            if show:
                self._show(f"cost so far {self._money(cost)}")

    def describe(self) -> str:
        """One line for the console's status; "" while no cost is known."""
        if self.total_cost is not None:
            return f"cost {self._money(self.total_cost)} (final)"
        if self.running_cost is not None:
            return f"cost {self._money(self.running_cost)} (running)"
        return ""


class _WithCostDisplay(Protocol):
    @property
    def cost_display(self) -> CostDisplay: ...


class TariffHandlers201:
    """OCPP 2.0.1 I02: CostUpdated."""

    station: _WithCostDisplay

    @on(v201.Action.CostUpdated)
    def cost_updated(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.station.cost_display.cost_updated(str(payload["transactionId"]), payload["totalCost"])
        return {}
