"""The ``@on`` / ``@after`` handler tables: one handler per action, whichever mixin has it."""

from __future__ import annotations

import pytest

from plugstream.ocpp import Handlers, on
from plugstream.ocpp.routing import after, dispatch

pytestmark = pytest.mark.unit


class _Reports:
    @on("NotifyReport")
    async def keep_report(self, payload: dict[str, object]) -> dict[str, object]:
        return {"kept": True}


class _Placeholder:
    @on("NotifyReport")
    async def notify_report(self, payload: dict[str, object]) -> dict[str, object]:
        return {}


class _Tariffs:
    @after("TransactionEvent")
    async def price(self, payload: dict[str, object]) -> None: ...


class _Reservations:
    @after("TransactionEvent")
    async def mark_used(self, payload: dict[str, object]) -> None: ...


async def test_two_mixins_handling_one_action_are_refused_naming_both() -> None:
    """Which of two handlers ran depended on the alphabetical order of their names: a
    block's NotifyReport handler only won over a placeholder by being named after it."""

    class Csms(_Reports, _Placeholder, Handlers):
        pass

    with pytest.raises(
        TypeError, match="two @on handlers for NotifyReport: keep_report and notify_report"
    ):
        await dispatch(Csms(), "NotifyReport", {})

    class Station(_Tariffs, _Reservations, Handlers):
        pass

    with pytest.raises(TypeError, match="two @after handlers for TransactionEvent"):
        Station().after_handler("TransactionEvent")


async def test_a_subclass_overriding_a_handler_by_its_name_is_one_handler() -> None:
    class Base(_Reports, Handlers):
        pass

    class Derived(Base):
        async def keep_report(self, payload: dict[str, object]) -> dict[str, object]:
            return {"kept": "by the subclass"}

        keep_report = on("NotifyReport")(keep_report)  # type: ignore[assignment]

    assert await dispatch(Derived(), "NotifyReport", {}) == {"kept": "by the subclass"}
