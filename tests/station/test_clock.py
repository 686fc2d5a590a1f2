"""The station's clock: scaled time for a fleet, manual time for a test, and stations
that sleep when idle."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from plugstream.station.clock import CallableClock, ManualClock, ScaledClock, SystemClock
from plugstream.station.ev import CITY_CAR, Ev
from plugstream.station.station16 import Station16
from plugstream.station.station201 import Station201
from tests.station.test_wire_levers import RawCsms, station16, station201
from tests.support import running, until

START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.unit
async def test_scaled_clock_runs_faster_and_sleeps_shorter() -> None:
    clock = ScaledClock(100.0, START)
    began = time.monotonic()
    await clock.sleep(10.0)  # 10 s of station time
    wall = time.monotonic() - began
    assert 0.09 <= wall < 0.5
    assert clock.now() - START >= timedelta(seconds=9)
    assert clock.real_seconds(60.0) == pytest.approx(0.6)


@pytest.mark.unit
def test_scaled_clock_rejects_a_non_positive_scale() -> None:
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(0)


@pytest.mark.unit
async def test_callable_and_system_clocks() -> None:
    clock = CallableClock(lambda: START)
    assert clock.now() == START
    assert clock.real_seconds(5.0) == 5.0
    await clock.sleep(-1.0)  # never negative
    system = SystemClock()
    assert abs((system.now() - datetime.now(UTC)).total_seconds()) < 1.0
    assert system.real_seconds(3.0) == 3.0


@pytest.mark.socket
async def test_heartbeat_runs_on_the_scaled_clock(tmp_path: Path) -> None:
    """HeartbeatInterval 60 s at a time scale of 300: one every 0.2 s of wall time."""
    csms = RawCsms("2.0.1", interval=60)
    await csms.start()
    try:
        clock = ScaledClock(300.0)
        station = station201(tmp_path / "s", clock=clock)
        async with running(station, csms.url):
            await until(lambda: station.online)
            began = time.monotonic()
            await until(lambda: len(csms.actions("Heartbeat")) >= 3, timeout=5.0)
            assert time.monotonic() - began < 2.0
    finally:
        await csms.stop()


class CountingStation16(Station16):
    ticks = 0

    def tick(self) -> None:
        self.ticks += 1
        super().tick()


class CountingStation201(Station201):
    ticks = 0

    def tick(self) -> None:
        self.ticks += 1
        super().tick()


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.socket
async def test_idle_station_does_not_tick(tmp_path: Path, version: str) -> None:
    """No car, no transaction, nothing due: the tick loop sleeps until an event; a
    transaction makes it tick at tick_interval (0.05 s here)."""
    csms = RawCsms(version)
    await csms.start()
    try:
        clock = ManualClock(START)
        station: CountingStation16 | CountingStation201
        if version == "1.6":
            station = station16(tmp_path / "s", CountingStation16, clock=clock)  # type: ignore[assignment]
        else:
            station = station201(tmp_path / "s", CountingStation201, clock=clock)  # type: ignore[assignment]
        async with running(station, csms.url, online=True):
            # what the start wakes the station for is over: the boot's status and its
            # security event (StartupOfTheDevice) delivered, nothing left to send
            await until(
                lambda: (
                    csms.actions("StatusNotification")
                    and csms.actions("SecurityEventNotification")
                    and station.settled
                ),
                "the station settled after its boot",
            )
            idle_start = station.ticks
            await clock.advance(1.0)  # 20 tick intervals
            assert station.ticks - idle_start <= 1
            assert station.next_tick_in() is None
            station.plug_in(Ev(CITY_CAR, soc=30.0))
            assert await station.swipe("TAG-1")
            charging_start = station.ticks
            await clock.advance(0.5)
            assert station.ticks - charging_start >= 5
            assert station.next_tick_in() is not None
    finally:
        await csms.stop()


# -- the manual clock ------------------------------------------------------------------


@pytest.mark.unit
async def test_manual_clock_fires_timers_in_order_each_at_its_due_time() -> None:
    clock = ManualClock(START)
    fired: list[tuple[str, datetime]] = []
    for name, delay in (("c", 3.0), ("a", 1.0), ("b", 2.0)):
        clock.call_later(delay, lambda name=name: fired.append((name, clock.now())))
    assert clock.waiting == 3 and clock.next_due_in() == 1.0
    assert fired == []  # time stands still until the test moves it
    await clock.advance(2.5)
    assert fired == [("a", START + timedelta(seconds=1)), ("b", START + timedelta(seconds=2))]
    assert clock.now() == START + timedelta(seconds=2.5) and clock.elapsed() == 2.5
    assert clock.waiting == 1 and clock.next_due_in() == 0.5
    await clock.advance(0.5)
    assert fired[-1] == ("c", START + timedelta(seconds=3))
    assert clock.waiting == 0 and clock.next_due_in() is None


@pytest.mark.unit
async def test_manual_clock_lets_a_woken_sleeper_sleep_again_before_time_moves_on() -> None:
    """A loop that sleeps again at once gets each of its wake-ups, on time; twenty sleeps
    of 0.05 s end at 1 s exactly (not a float's error later, past the advance)."""
    clock = ManualClock(START)
    woke: list[datetime] = []

    async def every(seconds: float) -> None:
        while True:
            await clock.sleep(seconds)
            woke.append(clock.now())

    task = asyncio.create_task(every(0.05))
    try:
        await until(lambda: clock.waiting == 1, "the first sleep")
        await clock.advance(1.0)
        assert len(woke) == 20
        assert woke[-1] == START + timedelta(seconds=1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert clock.waiting == 0  # a cancelled sleep leaves no timer behind


@pytest.mark.unit
async def test_manual_clock_runs_what_is_ready_before_time_moves() -> None:
    """A loop an event woke just before the advance sets its timer at the time it was
    woken, not at the end of the advance (a station woken by a plug-in, then advanced)."""
    clock = ManualClock(START)
    woke: list[datetime] = []

    async def sleep_once() -> None:
        await clock.sleep(1)
        woke.append(clock.now())

    task = asyncio.create_task(sleep_once())  # ready, not yet run
    await clock.advance(1)
    assert woke == [START + timedelta(seconds=1)]
    await task


@pytest.mark.unit
async def test_manual_clock_timeout_expires_when_advanced_past_it() -> None:
    clock = ManualClock(START)
    never = asyncio.Event()

    async def wait() -> None:
        async with clock.timeout(10):
            await never.wait()

    task = asyncio.create_task(wait())
    await until(lambda: clock.waiting == 1, "the timeout set")
    await clock.advance(9.5)
    assert not task.done()
    await clock.advance(0.5)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(task, 5)
    # a body done in time cancels its timeout; None is no timeout
    async with clock.timeout(5):
        pass
    async with clock.timeout(None):
        pass
    assert clock.waiting == 0


@pytest.mark.unit
async def test_manual_clock_cancelled_timers_do_not_fire() -> None:
    clock = ManualClock(START)
    fired: list[str] = []
    dropped = clock.call_later(1, lambda: fired.append("cancelled"))
    clock.call_later(2, lambda: fired.append("kept"))
    dropped.cancel()
    assert clock.waiting == 1 and clock.next_due_in() == 2.0
    await clock.advance(5)
    assert fired == ["kept"]


@pytest.mark.unit
async def test_manual_clock_step_sets_the_time_without_firing_timers() -> None:
    clock = ManualClock(START)
    fired: list[datetime] = []
    clock.call_later(1, lambda: fired.append(clock.now()))
    clock.step(24 * 3600)  # the clock was set a day on: no time passed
    assert clock.now() == START + timedelta(days=1)
    assert fired == [] and clock.next_due_in() == 1.0
    await clock.advance(1)
    assert fired == [START + timedelta(days=1, seconds=1)]
    with pytest.raises(ValueError, match="forward"):
        await clock.advance(-1)
