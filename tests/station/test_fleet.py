"""The fleet simulator against a real PlugStream Cloud on loopback: what the cloud records
is what the stations metered, every session completes, nothing fails."""

from __future__ import annotations

import asyncio
import gc
import json
import random
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugstream.cli import FLEET_RAMPED
from plugstream.demo import DemoCloud, running_cloud
from plugstream.station.connector import Reservation
from plugstream.station.ev import PRESETS, Ev
from plugstream.station.fleet import (
    DEFAULT_ID_TAGS,
    Fleet,
    FleetConfig,
    next_driver,
    seconds_to_full,
)
from plugstream.station.hardware import PLUGSTREAM_7, PLUGSTREAM_22, ChargePointHardware
from tests.support import WAIT, until

SUMMARY_KEYS = {
    "stations",
    "connected",
    "sessions_started",
    "sessions_completed",
    "energy_wh",
    "messages_sent",
    "messages_received",
    "bytes_total",
    "bytes_per_session",
    "bytes_per_idle_day",
    "errors",
    "ramp_s",
    "duration_wall_s",
    "duration_simulated_s",
}


async def api(cloud: DemoCloud, path: str) -> Any:
    async with httpx.AsyncClient(base_url=cloud.api_url, timeout=10) as client:
        response = await client.get(path)
        response.raise_for_status()
        return response.json()


@pytest.mark.socket
async def test_fleet_of_20_runs_every_session_and_the_cloud_recorded_the_same_energy(
    tmp_path: Path,
) -> None:
    async with running_cloud(tmp_path) as cloud:
        config = FleetConfig(
            csms=cloud.ocpp_url,
            stations=20,
            sessions=2,
            session_minutes=5,
            time_scale=600,
            idle_minutes=(0.5, 2.0),
            seed=20,
        )
        thresholds = gc.get_threshold()
        fleet = Fleet(config)
        summary = await fleet.run(duration=WAIT)  # a limit: it ends when all are done

        assert summary.errors == 0
        assert summary.stations == 20 and summary.connected == 20
        # its stations were kept out of the collector's sight while up, and given back
        assert fleet._ticker is not None and fleet._ticker.fired > 0
        assert gc.get_freeze_count() == 0 and gc.get_threshold() == thresholds
        assert summary.sessions_started == summary.sessions_completed == 40
        assert set(summary.sessions_per_station.values()) == {2}
        # every station's first session was accepted: the ramp-up is timed
        assert summary.ramp_s is not None and 0 < summary.ramp_s < summary.duration_wall_s
        transactions = await api(cloud, "transactions?limit=500")
        assert len(transactions) == 40
        assert not [t for t in transactions if t["active"]]
        assert {t["station_id"] for t in transactions} == set(summary.sessions_per_station)
        cloud_wh = sum(Decimal(str(t["energy_wh"])) for t in transactions)
        # 1.6 meterStart / meterStop are whole Wh: up to 1 Wh per session is cut off
        assert summary.energy_wh > 40 * 100  # 5 minutes at >= 3.6 kW
        assert abs(float(cloud_wh) - summary.energy_wh) <= 40
        stations = await api(cloud, "stations")
        assert {s["ocpp_version"] for s in stations} == {"1.6", "2.0.1"}
        assert {s["model"] for s in stations} == {"PlugStream 7", "PlugStream 22"}

    assert summary.messages_sent > 0 and summary.messages_received > 0
    assert summary.bytes_total > 0
    assert summary.bytes_per_session is not None and summary.bytes_per_session > 0
    assert summary.bytes_per_idle_day is not None and summary.bytes_per_idle_day < 3_000_000
    document = summary.to_json()
    assert document.keys() >= SUMMARY_KEYS
    assert json.loads(json.dumps(document)) == document


@pytest.mark.socket
async def test_one_handshake_at_a_time_still_brings_every_station_online(tmp_path: Path) -> None:
    """The fleet's connect gate: stations wait for it, none is refused or backs off."""
    async with running_cloud(tmp_path) as cloud:
        config = FleetConfig(
            csms=cloud.ocpp_url,
            stations=6,
            sessions=1,
            session_minutes=1,
            time_scale=600,
            idle_minutes=(0.0, 0.0),
            connect_rate=1000.0,  # all at once: five wait in the gate
            max_handshakes=1,
            seed=6,
        )
        summary = await Fleet(config).run(duration=WAIT)
    assert summary.errors == 0
    assert summary.ever_connected == 6 and summary.sessions_completed == 6
    assert summary.ramp_s is not None


@pytest.mark.unit
def test_a_fleet_needs_at_least_one_handshake_at_a_time() -> None:
    with pytest.raises(ValueError, match="handshake"):
        FleetConfig(csms="ws://127.0.0.1:9/ocpp", max_handshakes=0)


@pytest.mark.socket
async def test_stop_mid_session_ends_the_transactions_at_the_cloud(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        config = FleetConfig(
            csms=cloud.ocpp_url,
            stations=4,
            sessions=None,
            session_minutes=600,
            time_scale=600,
            idle_minutes=(0.1, 0.2),
            data_dir=tmp_path / "fleet",
            seed=4,
        )
        fleet = Fleet(config)
        stop = asyncio.Event()
        run = asyncio.create_task(fleet.run(stop, duration=30))

        async def mid_session() -> bool:
            if run.done():
                run.result()  # what stopped it
                raise AssertionError("the fleet stopped by itself")
            figures = fleet.summary()
            if figures.sessions_started < 4 or not figures.energy_all_wh > 0:
                return False
            return len([t for t in await api(cloud, "transactions") if t["active"]]) == 4

        try:
            await until(mid_session, "4 sessions charging, at the cloud too")
        finally:
            stop.set()
        stopped = time.monotonic()
        summary = await run
        assert time.monotonic() - stopped < 8  # at once, not after the 30 s
        assert summary.sessions_started == 4 and summary.sessions_completed == 0
        assert summary.energy_wh == 0 and summary.energy_all_wh > 0
        assert summary.errors == 0
        transactions = await api(cloud, "transactions")
        assert len(transactions) == 4
        assert not [t for t in transactions if t["active"]]  # the stops reached the cloud
    # one SQLite file holds every journal; each station keeps its own data dir
    assert (tmp_path / "fleet" / "journals.sqlite").is_file()
    assert sorted(p.name for p in (tmp_path / "fleet").iterdir() if p.is_dir()) == [
        "SIM-001",
        "SIM-002",
        "SIM-003",
        "SIM-004",
    ]


@pytest.mark.socket
async def test_faults_end_sessions_and_the_cloud_sees_faulted_then_available(
    tmp_path: Path,
) -> None:
    async with running_cloud(tmp_path) as cloud:
        config = FleetConfig(
            csms=cloud.ocpp_url,
            stations=4,
            sessions=1,
            session_minutes=10,
            time_scale=600,
            idle_minutes=(0.1, 0.2),
            fault_rate=1.0,
            fault_minutes=2.0,
            seed=7,
        )
        summary = await Fleet(config).run(duration=WAIT)  # a limit: it ends when all are done
        assert summary.errors == 0
        assert summary.sessions_started == summary.sessions_faulted == 4
        assert summary.sessions_completed == 0 and summary.energy_all_wh > 0
        transactions = await api(cloud, "transactions")
        assert len(transactions) == 4
        assert not [t for t in transactions if t["active"]]  # a fault ends the transaction
        assert all(t["stop_reason"] for t in transactions)
        for station in await api(cloud, "stations"):
            log = json.dumps(
                await api(cloud, f"stations/{station['station_id']}/messages?limit=200")
            )
            assert "Faulted" in log  # StatusNotification on the fault
            assert station["connectors"] and all(
                c["status"] == "Available" for c in station["connectors"]
            ), station  # cleared, car gone
    assert summary.to_json()["sessions_faulted"] == 4


@pytest.mark.unit
def test_seconds_to_full_follows_the_hardware() -> None:
    """The driver's estimate of when a car is full matches the meter's integration."""
    rng = random.Random(3)
    for model in (PLUGSTREAM_7, PLUGSTREAM_22):
        for preset in PRESETS:
            ev = Ev(preset, soc=rng.uniform(10, 70), target_soc=rng.choice((80.0, 100.0)))
            predicted = seconds_to_full(ev, model)
            hardware = ChargePointHardware(model, random.Random(0), now=0.0)
            hardware.plug_in(ev)
            hardware.lock_cable()
            hardware.close_contactor()
            t = 0.0
            while not ev.done and t < 48 * 3600:
                t += 60.0
                hardware.advance(t)
            assert ev.done
            assert abs(t - predicted) <= max(120.0, 0.02 * predicted), (model, preset, t)


@pytest.mark.socket
async def test_fleet_command_prints_the_figures_as_its_last_json_line(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "plugstream.cli",
            "fleet",
            "--stations",
            "4",
            "--csms",
            cloud.ocpp_url,
            "--sessions",
            "1",
            "--session-minutes",
            "3",
            "--time-scale",
            "600",
            "--duration",
            "20",
            "--password",
            "fleet-password-0123",
            "--json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), 40)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        stations = await api(cloud, "stations")
    assert process.returncode == 0, err.decode()
    lines = out.decode().strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures.keys() >= SUMMARY_KEYS
    assert figures["stations"] == 4 and figures["sessions_completed"] == 4
    assert figures["errors"] == 0 and figures["energy_wh"] > 0
    assert "sessions completed" in out.decode()  # the human summary comes first
    # the ramp-up is printed the moment it is done (bench/fleet.py reads it while it runs)
    assert any(line.startswith(FLEET_RAMPED + " 4 stations after ") for line in lines)
    assert {s["has_password"] for s in stations} == {True}  # registered with --password


@pytest.mark.unit
def test_a_reserved_connector_gets_the_reserving_driver_and_others_any_card() -> None:
    """A simulated driver at a reserved connector is the one who reserved it: a random
    card there would be refused, and counted as the fleet's error."""
    held = Reservation(7, "PSDEMO0003", datetime(2026, 12, 5, 12, tzinfo=UTC))
    rng = random.Random(1)
    assert {next_driver(held, DEFAULT_ID_TAGS, rng) for _ in range(20)} == {"PSDEMO0003"}
    drivers = {next_driver(None, DEFAULT_ID_TAGS, rng) for _ in range(200)}
    assert drivers == set(DEFAULT_ID_TAGS)
