"""The station's clock: the time it stamps and the pauses it takes, from one object.

Every timer of a station (tick, heartbeat, boot retry, reconnect back-off, meter
sampling, scheduled availability) asks its :class:`Clock`, never ``asyncio.sleep``
or ``datetime.now`` directly. That is what lets a fleet run a day of charging in
minutes (:class:`ScaledClock`) and a test run it without waiting.

Network timeouts (connect, CALL answer) are *not* scaled: the network is real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["CallableClock", "Clock", "ScaledClock", "SystemClock"]


class Clock(Protocol):
    """What a station needs of time."""

    def now(self) -> datetime:
        """The current time, aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Pause for ``seconds`` of this clock's time."""
        ...

    def real_seconds(self, seconds: float) -> float:
        """How many seconds of wall time ``seconds`` of this clock's time take."""
        ...


class SystemClock:
    """Wall time: what a real station runs on."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def real_seconds(self, seconds: float) -> float:
        return seconds


class ScaledClock:
    """Time that runs ``scale`` times as fast as the wall clock, from ``start``.

    One instance is shared by every station of a fleet, so they all see one time.
    """

    def __init__(self, scale: float = 1.0, start: datetime | None = None) -> None:
        if scale <= 0:
            raise ValueError(f"the time scale must be positive, not {scale}")
        self.scale = scale
        self.start = datetime.now(UTC) if start is None else start
        self._origin = time.monotonic()

    def elapsed(self) -> float:
        """Seconds of this clock's time since ``start``."""
        return (time.monotonic() - self._origin) * self.scale

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed())

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.scale)

    def real_seconds(self, seconds: float) -> float:
        return seconds / self.scale


class CallableClock:
    """Time from a ``now()`` callable, pauses in wall time: the clock of a station that
    was given only ``now`` (tests that control the time stamps, not the pauses)."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def real_seconds(self, seconds: float) -> float:
        return seconds
