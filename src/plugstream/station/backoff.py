"""Reconnect back-off with random jitter (OCPP 2.0.1 part 4 §5.3 "Reconnecting").

The rule, from OCPP-J 2.0.1 §5.3 (edition 3, with errata 2025-09 §4.12):

- The first reconnection attempt is made after ``RetryBackOffWaitMinimum`` seconds
  plus a random value of at most ``RetryBackOffRandomRange`` seconds.
- After every failed reconnection attempt the previous back-off time is doubled, at
  most ``RetryBackOffRepeatTimes`` times, and a *new* random value (maximum
  ``RetryBackOffRandomRange``) is added to every attempt.
- After ``RetryBackOffRepeatTimes`` doublings the station keeps reconnecting with
  the last back-off time, not increasing it any further.
- After a successful connection the back-off is reset to ``RetryBackOffWaitMinimum``
  (errata §4.12) -- call :meth:`ReconnectBackoff.reset`.

The doubling applies to the deterministic part (``RetryBackOffWaitMinimum``); the
random part is drawn fresh for every attempt and is not itself doubled, so the
spread between stations stays bounded by the range. Attempt *n* (0-based) waits::

    RetryBackOffWaitMinimum * 2 ** min(n, RetryBackOffRepeatTimes)
        + uniform(0, RetryBackOffRandomRange)

The class is sans-I/O: it computes delays and never sleeps; the random source is
injected (a :class:`random.Random` or anything with ``uniform``).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["RandomSource", "ReconnectBackoff"]


class RandomSource(Protocol):
    """The part of :class:`random.Random` that the back-off uses."""

    def uniform(self, a: float, b: float, /) -> float: ...


class ReconnectBackoff:
    """Delays between reconnection attempts, per OCPP 2.0.1 part 4 §5.3.

    Call :meth:`next_delay` before each reconnection attempt (the first call gives
    the wait before the first reconnect after a connection loss) and :meth:`reset`
    after a successful connection.
    """

    def __init__(
        self,
        wait_minimum: float,
        random_range: float,
        repeat_times: int,
        rng: RandomSource,
    ) -> None:
        if wait_minimum < 0:
            raise ValueError("RetryBackOffWaitMinimum must be >= 0")
        if random_range < 0:
            raise ValueError("RetryBackOffRandomRange must be >= 0")
        if repeat_times < 0:
            raise ValueError("RetryBackOffRepeatTimes must be >= 0")
        self.wait_minimum = wait_minimum
        self.random_range = random_range
        self.repeat_times = repeat_times
        self._rng = rng
        self._attempts = 0

    @property
    def attempts(self) -> int:
        """Number of delays handed out since construction or the last reset."""
        return self._attempts

    def base_delay(self, attempt: int) -> float:
        """The deterministic part of the wait before attempt ``attempt`` (0-based)."""
        return float(self.wait_minimum * 2 ** min(attempt, self.repeat_times))

    def next_delay(self) -> float:
        """Seconds to wait before the next reconnection attempt."""
        base = self.base_delay(self._attempts)
        jitter = self._rng.uniform(0.0, self.random_range) if self.random_range > 0 else 0.0
        self._attempts += 1
        return base + jitter

    def reset(self) -> None:
        """Back to ``RetryBackOffWaitMinimum`` after a successful connection."""
        self._attempts = 0
