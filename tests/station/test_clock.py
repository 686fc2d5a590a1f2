"""The station's clock: scaled time for a fleet, and stations that sleep when idle."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from plugstream.station.clock import CallableClock, ScaledClock, SystemClock
from plugstream.station.ev import CITY_CAR, Ev
from plugstream.station.station16 import Station16
from plugstream.station.station201 import Station201
from tests.station.test_wire_levers import RawCsms, running, station16, station201, until

START = datetime(2026, 1, 1, tzinfo=UTC)


async def test_scaled_clock_runs_faster_and_sleeps_shorter() -> None:
    clock = ScaledClock(100.0, START)
    began = time.monotonic()
    await clock.sleep(10.0)  # 10 s of station time
    wall = time.monotonic() - began
    assert 0.09 <= wall < 0.5
    assert clock.now() - START >= timedelta(seconds=9)
    assert clock.real_seconds(60.0) == pytest.approx(0.6)


def test_scaled_clock_rejects_a_non_positive_scale() -> None:
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(0)


async def test_callable_and_system_clocks() -> None:
    clock = CallableClock(lambda: START)
    assert clock.now() == START
    assert clock.real_seconds(5.0) == 5.0
    await clock.sleep(-1.0)  # never negative
    system = SystemClock()
    assert abs((system.now() - datetime.now(UTC)).total_seconds()) < 1.0
    assert system.real_seconds(3.0) == 3.0


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
async def test_idle_station_does_not_tick(tmp_path: Path, version: str) -> None:
    """No car, no transaction, nothing due: the tick loop sleeps until an event; a
    transaction makes it tick at tick_interval (0.05 s here)."""
    csms = RawCsms(version)
    await csms.start()
    try:
        station: CountingStation16 | CountingStation201
        if version == "1.6":
            station = station16(tmp_path / "s", CountingStation16)  # type: ignore[assignment]
        else:
            station = station201(tmp_path / "s", CountingStation201)  # type: ignore[assignment]
        async with running(station, csms.url):
            await until(lambda: station.online)
            await asyncio.sleep(0.1)
            idle_start = station.ticks
            await asyncio.sleep(1.0)  # 20 tick intervals
            assert station.ticks - idle_start <= 1
            assert station.next_tick_in() is None
            station.plug_in(Ev(CITY_CAR, soc=30.0))
            assert await station.swipe("TAG-1")
            charging_start = station.ticks
            await asyncio.sleep(0.5)
            assert station.ticks - charging_start >= 5
            assert station.next_tick_in() is not None
    finally:
        await csms.stop()
