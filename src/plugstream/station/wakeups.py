"""What wakes a station: a :class:`Signal` (an event) and a :class:`Ticker` (a timer).

A fleet holds 10,000 stations in one process, and each station waits on a few wake-ups
all its life. ``asyncio.Event`` allocates a deque of waiters (760 bytes) per event and
a task per loop that waits on it; :class:`Signal` keeps a list only while someone
waits. A :class:`Ticker` puts the meter ticks of many stations on one timer, rounded up
to a common beat: the stations due in the same beat tick together, their journal
entries share one group commit, and the event loop keeps one timer, not 10,000.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable

from plugstream.station.clock import Clock, Timer

__all__ = ["Signal", "Ticker"]


class Signal:
    """``asyncio.Event`` without the per-event deque: set, clear, wait, is_set."""

    __slots__ = ("_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self) -> bool:
        if self._flag:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = [waiter]
        else:
            self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            waiters = self._waiters  # set() handed the list over: nothing to remove then
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    self._waiters = None


class _Entry:
    __slots__ = ("callback", "cancelled", "ticker")

    def __init__(self, callback: Callable[[], object], ticker: Ticker) -> None:
        self.callback = callback
        self.cancelled = False
        self.ticker = ticker

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.ticker._live -= 1


class Ticker:
    """Timers of many stations on one clock timer, due times rounded up to ``beat``.

    Has the clock's ``call_later``, so a station takes a ticker where it would take its
    clock. A callback may run up to ``beat`` seconds late, never early: a meter sample
    due at 12:00:00.3 is taken at 12:00:01 with that time stamp (energy is integrated
    from time stamps, so nothing is lost). ``beat`` 0 keeps every due time exact.
    """

    def __init__(self, clock: Clock, beat: float = 1.0) -> None:
        if beat < 0:
            raise ValueError(f"a beat is 0 or more seconds, not {beat}")
        self.clock = clock
        self.beat = beat
        self._heap: list[tuple[float, int, _Entry]] = []
        self._order = itertools.count()
        self._timer: Timer | None = None
        self._armed_for: float | None = None
        self._live = 0  # entries neither fired nor cancelled (the heap keeps cancelled ones)
        self.fired = 0  # clock timers that fired: what sharing saves is visible here

    def _now(self) -> float:
        return self.clock.now().timestamp()

    def _slot(self, at: float) -> float:
        return math.ceil(at / self.beat) * self.beat if self.beat > 0 else at

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Timer:
        entry = _Entry(callback, self)
        due = self._slot(self._now() + max(0.0, seconds))
        self._live += 1
        if len(self._heap) > 2 * self._live + 64:  # mostly cancelled: drop them
            self._heap = [item for item in self._heap if not item[2].cancelled]
            heapq.heapify(self._heap)
        heapq.heappush(self._heap, (due, next(self._order), entry))
        if self._armed_for is None or due < self._armed_for:
            self._arm(due)
        return entry

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_for = due
        self._timer = self.clock.call_later(due - self._now(), self._fire)

    def _fire(self) -> None:
        self._timer = self._armed_for = None
        self.fired += 1
        now = self._now()
        # self._heap, not a local: a callback sets its next timer, which may rebuild it
        while self._heap and self._heap[0][0] <= now:
            _, _, entry = heapq.heappop(self._heap)
            if not entry.cancelled:
                entry.cancel()  # a timer fires once
                entry.callback()
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        if self._heap:
            due = max(self._heap[0][0], now)
            if self._armed_for is None or due < self._armed_for:
                self._arm(due)

    @property
    def waiting(self) -> int:
        """Timers set and not cancelled."""
        return self._live
