"""The CSMS side of tariff and cost (2.0.1 functional block I).

- I02.FR.01: every TransactionEvent a tariff prices is answered with the running cost in
  ``totalCost`` (I02's alternative scenario), and while charging a CostUpdated follows
  the answer when the cost moved by the tariff's threshold or its interval passed.
- I03.FR.02 / I03.FR.04: the Ended event is answered with the final cost, ``0.00`` for
  a free session; a transaction no tariff prices gets no ``totalCost`` (its omission
  says the cost is unknown, not that it is free).
- I01.FR.01: the tariff's text goes to the driver in ``idTokenInfo.personalMessage``
  of the Authorize answer and of a TransactionEvent answer that carries idTokenInfo,
  unless the station reported it can show neither tariffs nor messages (I01.FR.02).

Every cost is committed before the answer that carries it (``store.tariffs.update_cost``).
The handlers of Authorize and TransactionEvent are Csms201's own: this mixin adds to their
answers through :meth:`TariffHandlers201.handler`, so Csms201 needs no tariff code.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from plugstream.cloud.context import HandlerContext
from plugstream.cloud.meter import parse_time_or
from plugstream.cloud.station_handlers import StationHandlers
from plugstream.cloud.stations import StationOffline
from plugstream.cloud.storage.device_model import ComponentVariable
from plugstream.cloud.storage.tariffs import Tariff, TransactionCost
from plugstream.cloud.tariffs.pricing import cost_update_due, price_event
from plugstream.ocpp import OcppError, after, v201
from plugstream.ocpp.routing import Handler, invoke

__all__ = ["TariffHandlers201", "personal_message"]

log = logging.getLogger("plugstream.cloud.tariffs")

_AUTHORIZE = v201.Action.Authorize.value
_TRANSACTION_EVENT = v201.Action.TransactionEvent.value
MAX_MESSAGE = 512  # MessageContentType.content
#: I01.FR.02: what says a station can show a driver the tariff
_SHOWS_TARIFFS = (
    ComponentVariable("TariffCostCtrlr", "Available", variable_instance="Tariff"),
    ComponentVariable("DisplayMessageCtrlr", "Available"),
)


def personal_message(tariff: Tariff) -> v201.MessageContentType | None:
    """The tariff's text as the driver is shown it, if it has one."""
    text = tariff.data.personal_message
    if not text:
        return None
    message: v201.MessageContentType = {"format": "UTF8", "content": text[:MAX_MESSAGE]}
    if tariff.data.language:
        message["language"] = tariff.data.language
    return message


def _token(payload: Mapping[str, Any]) -> str | None:
    token = payload.get("idToken")
    value = token.get("idToken") if isinstance(token, Mapping) else None
    return value if isinstance(value, str) else None


class TariffHandlers201(StationHandlers):
    """Adds the cost and the tariff text to Csms201's answers, and sends CostUpdated."""

    def __init__(self, station_id: str, context: HandlerContext) -> None:
        super().__init__(station_id, context)
        # the running cost of a TransactionEvent just answered, by transactionId, when a
        # CostUpdated is due once the answer is sent
        self._cost_updates: dict[str, TransactionCost] = {}

    def handler(self, action: str) -> Handler | None:
        """Csms201's Authorize and TransactionEvent, their answers completed here: the
        CSMS's own handler stores and answers first, then the tariff adds to it."""
        found = super().handler(action)
        if found is None:
            return None
        if action == _TRANSACTION_EVENT:
            return functools.partial(self._priced_transaction_event, found)
        if action == _AUTHORIZE:
            return functools.partial(self._authorize_with_tariff, found)
        return found

    async def _priced_transaction_event(
        self, answer_of: Handler, payload: dict[str, Any]
    ) -> dict[str, Any]:
        answer: dict[str, Any] = await invoke(answer_of, payload)
        return await self.tariff_transaction_answer(payload, answer)

    async def _authorize_with_tariff(
        self, answer_of: Handler, payload: dict[str, Any]
    ) -> dict[str, Any]:
        answer: dict[str, Any] = await invoke(answer_of, payload)
        return await self.tariff_authorize_answer(payload, answer)

    async def tariff_authorize_answer(
        self, payload: Mapping[str, Any], answer: dict[str, Any]
    ) -> dict[str, Any]:
        """I01.FR.01: an accepted driver is told the tariff that will price the session."""
        info = answer.get("idTokenInfo")
        if not isinstance(info, dict) or info.get("status") != "Accepted":
            return answer
        tariff = await self.context.store.tariffs.applicable(self.station_id, _token(payload))
        message = personal_message(tariff) if tariff is not None else None
        if message is not None and await self.shows_tariffs():
            info["personalMessage"] = message
        return answer

    async def shows_tariffs(self) -> bool:
        """I01.FR.02: tariff text only to a station that can show it. A station whose
        device model report says it has neither tariff nor display messages is sent none;
        one that never reported is given the benefit of the doubt (a station that cannot
        show the text ignores it)."""
        values = [
            await self.context.store.device_model.value(self.station_id, key)
            for key in _SHOWS_TARIFFS
        ]
        return not all(value is not None and value.lower() == "false" for value in values)

    async def tariff_transaction_answer(
        self, payload: Mapping[str, Any], answer: dict[str, Any]
    ) -> dict[str, Any]:
        """The answer with ``totalCost``: running, or final for Ended (I02.FR.01, I03.FR.02)."""
        info = payload.get("transactionInfo")
        tx_id = info.get("transactionId") if isinstance(info, Mapping) else None
        if not isinstance(tx_id, str) or not isinstance(info, Mapping):
            return answer
        token_info = answer.get("idTokenInfo")
        state = info.get("chargingState")
        now = self.now()
        timestamp = parse_time_or(payload.get("timestamp"), now)
        pricing = functools.partial(
            price_event,
            seq_no=int(payload.get("seqNo", 0)),
            event_type=str(payload.get("eventType")),
            timestamp=timestamp,
            charging_state=state if isinstance(state, str) else None,
            now=now,
        )
        cost = await self.context.store.tariffs.update_cost(self.station_id, tx_id, pricing)
        if cost is None:
            return answer
        answer["totalCost"] = float(cost.total_cost)
        accepted = isinstance(token_info, dict) and token_info.get("status") == "Accepted"
        if (
            accepted
            and cost.personal_message
            and isinstance(token_info, dict)
            and await self.shows_tariffs()
        ):
            # I01: the tariff of the session the driver just began
            token_info["personalMessage"] = {
                "format": "UTF8",
                "content": cost.personal_message[:MAX_MESSAGE],
            }
        if cost_update_due(cost, now):
            self._cost_updates[tx_id] = cost
        return answer

    @after(v201.Action.TransactionEvent)
    async def send_cost_updated(self, payload: dict[str, Any]) -> None:
        """I02.FR.01: the running cost, once the answer is sent (the station's CostUpdated
        handler may need the transaction it just reported)."""
        tx_id = payload.get("transactionInfo", {}).get("transactionId")
        cost = self._cost_updates.pop(tx_id, None) if isinstance(tx_id, str) else None
        if cost is None:
            return
        request: v201.CostUpdatedRequest = {
            "totalCost": float(cost.total_cost),
            "transactionId": tx_id,
        }
        try:
            await self.context.commands.call(self.station_id, "CostUpdated", dict(request))
        except (OcppError, StationOffline) as exc:
            # not lost: the next TransactionEvent's answer carries the running cost
            log.info(
                "station %s: CostUpdated for %s not delivered: %s", self.station_id, tx_id, exc
            )
            return
        await self.context.store.tariffs.record_sent(
            cost.transaction_pk, cost.total_cost, at=self.now()
        )
