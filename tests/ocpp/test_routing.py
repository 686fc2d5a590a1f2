"""The ``@on`` / ``@after`` handler tables: one handler per action, whichever mixin has it."""

from __future__ import annotations

import pytest

from plugstream.ocpp import Handlers, on
from plugstream.ocpp.routing import after, dispatch, invoke

pytestmark = pytest.mark.unit


class _Reports:
    @on("NotifyReport")
    async def keep_report(self, payload: dict[str, object]) -> dict[str, object]:
        return {"kept": True}


class _Placeholder:
    @on("NotifyReport")
    async def notify_report(self, payload: dict[str, object]) -> dict[str, object]:
        return {}


ran: list[str] = []


class _Tariffs:
    @after("TransactionEvent")
    async def price(self, payload: dict[str, object]) -> None:
        ran.append(f"price {payload['seqNo']}")


class _Reservations:
    @after("TransactionEvent")
    def mark_used(self, payload: dict[str, object]) -> None:
        ran.append("reservation")
        raise RuntimeError("the reservation hook failed")


class _SmartCharging:
    @after("TransactionEvent")
    async def redivide(self, payload: dict[str, object]) -> None:
        ran.append("site limit")


async def test_two_mixins_handling_one_action_are_refused_naming_both() -> None:
    """Which of two handlers ran depended on the alphabetical order of their names: a
    block's NotifyReport handler only won over a placeholder by being named after it."""

    class Csms(_Reports, _Placeholder, Handlers):
        pass

    with pytest.raises(
        TypeError, match="two @on handlers for NotifyReport: keep_report and notify_report"
    ):
        await dispatch(Csms(), "NotifyReport", {})


async def test_every_mixins_after_hook_runs_in_class_order_despite_one_failing() -> None:
    """Reservations, tariffs and smart charging each follow a TransactionEvent: all of
    their hooks run, in the order of the class's bases, and one that fails (logged)
    does not keep the next from running."""

    class Csms(_Reservations, _Tariffs, _SmartCharging, Handlers):
        pass

    hook = Csms().after_handler("TransactionEvent")
    assert hook is not None
    ran.clear()
    await invoke(hook, {"seqNo": 3})
    assert ran == ["reservation", "price 3", "site limit"]
    assert Csms().after_handler("BootNotification") is None


async def test_a_subclass_overriding_a_handler_by_its_name_is_one_handler() -> None:
    class Base(_Reports, Handlers):
        pass

    class Derived(Base):
        async def keep_report(self, payload: dict[str, object]) -> dict[str, object]:
            return {"kept": "by the subclass"}

        keep_report = on("NotifyReport")(keep_report)  # type: ignore[assignment]

    assert await dispatch(Derived(), "NotifyReport", {}) == {"kept": "by the subclass"}
