"""What wakes a fleet's stations: one ticker for all their meter ticks, and a signal
without a deque per event.

A fleet of 10,000 stations ticks 10,000 times a minute; on one :class:`Ticker` the
ticks due within one beat run together (their journal entries share a commit) and the
event loop keeps one timer, never one early.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from plugstream.station.clock import ManualClock
from plugstream.station.wakeups import Signal, Ticker
from tests.support import until

START = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)


@pytest.mark.unit
async def test_timers_due_within_one_beat_fire_together_at_its_end_never_early() -> None:
    clock = ManualClock(START)
    ticker = Ticker(clock, beat=1.0)
    fired: list[tuple[str, float]] = []

    def at(name: str) -> None:
        fired.append((name, clock.elapsed()))

    ticker.call_later(0.2, lambda: at("a"))
    ticker.call_later(0.9, lambda: at("b"))
    ticker.call_later(1.5, lambda: at("c"))
    assert clock.waiting == 1  # one clock timer for three stations
    await clock.advance(0.95)
    assert fired == []  # due at 0.2 and 0.9: they wait for the beat, never fire early
    await clock.advance(0.05)
    assert fired == [("a", 1.0), ("b", 1.0)]  # together, on the beat
    await clock.advance(1.0)
    assert fired[-1] == ("c", 2.0)
    assert ticker.fired == 2 and ticker.waiting == 0


@pytest.mark.unit
async def test_a_cancelled_timer_never_fires_and_a_timer_set_while_firing_is_kept() -> None:
    clock = ManualClock(START)
    ticker = Ticker(clock, beat=1.0)
    fired: list[str] = []

    def again() -> None:
        fired.append("first")
        ticker.call_later(5.0, lambda: fired.append("second"))

    cancelled = ticker.call_later(1.0, lambda: fired.append("cancelled"))
    ticker.call_later(1.0, again)
    cancelled.cancel()
    await clock.advance(1.0)
    assert fired == ["first"]
    await clock.advance(5.0)
    assert fired == ["first", "second"]


@pytest.mark.unit
async def test_a_beat_of_zero_keeps_every_due_time() -> None:
    clock = ManualClock(START)
    ticker = Ticker(clock, beat=0.0)
    fired: list[float] = []
    for delay in (0.25, 0.5):
        ticker.call_later(delay, lambda: fired.append(clock.elapsed()))
    await clock.advance(1.0)
    assert fired == [0.25, 0.5]


@pytest.mark.unit
async def test_timers_rearmed_often_do_not_pile_up() -> None:
    """A station's next tick is set again at every wake-up: the cancelled ones go."""
    clock = ManualClock(START)
    ticker = Ticker(clock, beat=1.0)
    for _ in range(10_000):
        ticker.call_later(3600.0, lambda: None).cancel()
    assert ticker.waiting == 0
    assert len(ticker._heap) <= 64 + 2


@pytest.mark.unit
def test_a_beat_is_never_negative() -> None:
    with pytest.raises(ValueError, match="beat"):
        Ticker(ManualClock(START), beat=-1.0)


@pytest.mark.unit
async def test_a_signal_wakes_every_waiter_and_a_cancelled_waiter_leaves() -> None:
    signal = Signal()
    woken: list[str] = []

    async def waiter(name: str) -> None:
        await signal.wait()
        woken.append(name)

    tasks = [asyncio.create_task(waiter(n)) for n in ("a", "b", "c")]
    await until(lambda: len(signal._waiters or ()) == 3, "all three wait")
    tasks[2].cancel()
    await asyncio.gather(tasks[2], return_exceptions=True)
    signal.set()
    await asyncio.gather(*tasks[:2])
    assert sorted(woken) == ["a", "b"]
    assert signal.is_set() and await signal.wait()  # set: no wait at all
    signal.clear()
    assert not signal.is_set()
