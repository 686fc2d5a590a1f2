from __future__ import annotations

import random

import pytest

from plugstream.station.backoff import ReconnectBackoff

pytestmark = pytest.mark.unit


class _Fixed:
    """A random source that always returns the same fraction of the range."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def uniform(self, a: float, b: float, /) -> float:
        return a + (b - a) * self.fraction


def test_first_delay_within_minimum_plus_range() -> None:
    rng = random.Random(1)
    for _ in range(200):
        backoff = ReconnectBackoff(30, 10, 3, rng)
        assert 30 <= backoff.next_delay() <= 40


def test_no_random_range_doubles_then_stays() -> None:
    # TC_B_57_CS: RetryBackOffRandomRange 0, RetryBackOffRepeatTimes 2.
    backoff = ReconnectBackoff(10, 0, 2, random.Random(0))
    assert [backoff.next_delay() for _ in range(6)] == [10, 20, 40, 40, 40, 40]


def test_repeat_times_zero_is_constant() -> None:
    backoff = ReconnectBackoff(5, 0, 0, random.Random(0))
    assert [backoff.next_delay() for _ in range(3)] == [5, 5, 5]


def test_new_random_value_added_to_every_attempt() -> None:
    backoff = ReconnectBackoff(10, 4, 3, _Fixed(0.5))
    assert [backoff.next_delay() for _ in range(5)] == [12, 22, 42, 82, 82]


def test_each_attempt_within_bounds_with_real_jitter() -> None:
    backoff = ReconnectBackoff(10, 4, 3, random.Random(7))
    for attempt in range(8):
        base = 10 * 2 ** min(attempt, 3)
        assert base <= backoff.next_delay() <= base + 4


def test_reset_after_successful_connection() -> None:
    backoff = ReconnectBackoff(10, 0, 5, random.Random(0))
    for _ in range(4):
        backoff.next_delay()
    assert backoff.attempts == 4
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() == 10


def test_thousand_stations_spread_over_the_range() -> None:
    rng = random.Random(2026)
    wait_minimum, random_range = 30, 60
    firsts = [
        ReconnectBackoff(wait_minimum, random_range, 3, rng).next_delay() for _ in range(1000)
    ]
    assert all(wait_minimum <= d <= wait_minimum + random_range for d in firsts)
    per_second: dict[int, int] = {}
    for d in firsts:
        per_second[int(d)] = per_second.get(int(d), 0) + 1
    # Not all in the same second: (nearly) every second of the range gets some.
    assert len(per_second) >= random_range - 1
    # Roughly uniform: expected ~16.7 per second; no second gets a big crowd.
    assert max(per_second.values()) < 50


@pytest.mark.parametrize(
    ("args", "name"),
    [((-1, 0, 0), "WaitMinimum"), ((0, -1, 0), "RandomRange"), ((0, 0, -1), "RepeatTimes")],
)
def test_rejects_negative_settings(args: tuple[int, int, int], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ReconnectBackoff(*args, rng=random.Random(0))
