"""The station's clock: the time it stamps and the pauses it takes, from one object.

Every timer of a station (tick, heartbeat, boot retry, reconnect back-off, meter
sampling, scheduled availability) asks its :class:`Clock`, never ``asyncio.sleep``,
``asyncio.timeout``, ``loop.call_later`` or ``datetime.now`` directly. That is what lets
a fleet run a day of charging in minutes (:class:`ScaledClock`) and a test run it
without waiting (:class:`ManualClock`: time moves only when the test moves it).

Network timeouts (connect, CALL answer) are *not* the clock's: the network is real.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

__all__ = ["CallableClock", "Clock", "ManualClock", "ScaledClock", "SystemClock", "Timer"]


class Timer(Protocol):
    """A callback the clock will call, until cancelled (``asyncio.TimerHandle`` is one)."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """What a station needs of time."""

    def now(self) -> datetime:
        """The current time, aware UTC."""
        ...

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Pause for ``seconds`` of this clock's time (await it)."""
        ...

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[Any]:
        """Raise ``TimeoutError`` in the body after ``seconds`` of this clock's time
        (None: never), as ``asyncio.timeout`` does in wall time."""
        ...

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Timer:
        """Call ``callback`` after ``seconds`` of this clock's time."""
        ...

    def real_seconds(self, seconds: float) -> float:
        """How many seconds of wall time ``seconds`` of this clock's time take (for what
        runs on the wall's time whatever the clock: the WebSocket's pings)."""
        ...


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _WallPauses:
    """Pauses of a clock that runs ``scale`` times as fast as the wall."""

    scale: float = 1.0

    def sleep(self, seconds: float) -> Awaitable[None]:
        """A future and a timer, no coroutine: a fleet's 10,000 drivers sleep through
        their sessions, and two coroutine frames each (this and asyncio.sleep's) were
        a kilobyte a station."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(max(0.0, seconds) / self.scale, _wake, future)
        future.add_done_callback(lambda _: timer.cancel())  # woken, or its waiter cancelled
        return future

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[Any]:
        return asyncio.timeout(None if seconds is None else max(0.0, seconds) / self.scale)

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Timer:
        return asyncio.get_running_loop().call_later(max(0.0, seconds) / self.scale, callback)

    def real_seconds(self, seconds: float) -> float:
        return seconds / self.scale


class SystemClock(_WallPauses):
    """Wall time: what a real station runs on."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ScaledClock(_WallPauses):
    """Time that runs ``scale`` times as fast as the wall clock, from ``start``.

    One instance is shared by every station of a fleet, so they all see one time.
    """

    def __init__(self, scale: float = 1.0, start: datetime | None = None) -> None:
        if scale <= 0:
            raise ValueError(f"the time scale must be positive, not {scale}")
        self.scale = scale
        self.start = datetime.now(UTC) if start is None else start
        self._origin = time.monotonic()
        self._start_ts = self.start.timestamp()
        self._tz = self.start.tzinfo

    def elapsed(self) -> float:
        """Seconds of this clock's time since ``start``."""
        return (time.monotonic() - self._origin) * self.scale

    def now(self) -> datetime:
        # from a POSIX time stamp: half the cost of start + timedelta, and a fleet's
        # stations read the time some ten times per meter sample
        return datetime.fromtimestamp(self._start_ts + self.elapsed(), self._tz)


class CallableClock(_WallPauses):
    """Time from a ``now()`` callable, pauses in wall time: the clock of a station that
    was given only ``now`` (tests that control the time stamps, not the pauses)."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now()


class _ManualTimer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


#: loop iterations :meth:`ManualClock.advance` gives what a timer woke, so that a loop
#: that sleeps again without I/O in between has set its next timer before time moves on
_SETTLE_STEPS = 20


class ManualClock:
    """Time that moves only when :meth:`advance` moves it: a test's clock.

    A station on this clock waits for its heartbeat, back-off or meter interval exactly
    as long as the test says, whatever the machine's load; the test then waits for what
    the station did (a message arrived), never for the wall clock. Timers fire in the
    order of their due times, each with :meth:`now` at its own due time.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self.start = datetime.now(UTC).replace(microsecond=0) if start is None else start
        self._elapsed = 0.0
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._order = itertools.count()

    def elapsed(self) -> float:
        """Seconds of this clock's time since ``start``."""
        return self._elapsed

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self._elapsed)

    def step(self, seconds: float) -> None:
        """Set the time of day ``seconds`` on (back, when negative) with no time passing:
        a clock that was set (NTP, an operator). Timers keep their distance; none fires."""
        self.start += timedelta(seconds=seconds)

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Timer:
        if seconds <= 0:  # due now: as soon as the loop runs, as asyncio would
            return asyncio.get_running_loop().call_soon(callback)
        timer = _ManualTimer(callback)
        due = _microseconds(self._elapsed + seconds)
        heapq.heappush(self._timers, (due, next(self._order), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        timer = self.call_later(seconds, wake)
        try:
            await future
        finally:
            timer.cancel()

    @contextlib.asynccontextmanager
    async def timeout(self, seconds: float | None) -> AsyncIterator[None]:
        async with asyncio.timeout(None) as wall:
            if seconds is None:
                yield
                return
            loop = asyncio.get_running_loop()

            def expire() -> None:
                if wall.expired() is False and wall.when() is None:
                    wall.reschedule(loop.time())

            timer = self.call_later(seconds, expire)
            try:
                yield
            finally:
                timer.cancel()

    def real_seconds(self, seconds: float) -> float:
        return seconds

    @property
    def waiting(self) -> int:
        """How many timers are set: a test advances once the station waits on the clock."""
        return sum(1 for _, _, timer in self._timers if not timer.cancelled)

    def next_due_in(self) -> float | None:
        """Seconds of this clock's time until the next timer fires (None: none is set)."""
        for when, _, timer in sorted(self._timers):
            if not timer.cancelled:
                return max(0.0, when - self._elapsed)
        return None

    async def advance(self, seconds: float) -> None:
        """Move time on by ``seconds``, firing each timer due on the way at its own time
        and letting what it woke run before the next. What was ready to run (a loop that
        an event woke just before) runs first, at the current time, and sets its timers."""
        if seconds < 0:
            raise ValueError(f"time moves forward only, not by {seconds}")
        await _settle()
        target = _microseconds(self._elapsed + seconds)
        while self._timers and self._timers[0][0] <= target:
            when, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._elapsed = max(self._elapsed, when)
            timer.callback()
            await _settle()
        self._elapsed = target
        await _settle()


def _microseconds(seconds: float) -> float:
    """``seconds`` in whole microseconds, as a datetime holds them: a timer set for the
    gap between two datetimes fires at the second one, not a float's error after it."""
    return round(seconds, 6)


async def _settle() -> None:
    for _ in range(_SETTLE_STEPS):
        await asyncio.sleep(0)
