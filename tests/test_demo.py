"""``plugstream demo`` as a person runs it: the cloud and a fleet on loopback, stopped by
a timer or by Ctrl-C, exit code 0 either way and nothing left running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from tests.support import read_until, stop_process, until_sync

pytestmark = pytest.mark.socket

DEMO = [sys.executable, "-m", "plugstream.cli", "demo"]


def test_demo_runs_sessions_against_the_cloud_and_shows_its_api() -> None:
    done = subprocess.run(
        [*DEMO, "--stations", "4", "--duration", "8", "--time-scale", "120"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"API: http://127\.0\.0\.1:\d+/api/v1/", out)
    assert "/api/v1/docs" in out
    last = [line for line in out.splitlines() if line.startswith("PlugStream demo stopped")]
    assert len(last) == 1, out
    started = re.search(r"sessions (\d+) started", last[0])
    energy = re.search(r"energy ([\d.,]+) kWh", last[0])
    assert started is not None and int(started.group(1)) >= 1, last[0]
    assert energy is not None and float(energy.group(1).replace(",", "")) > 0, last[0]
    assert "connected 4/4" in last[0] and "errors 0" in last[0]
    assert "Traceback" not in done.stderr


def _wait_for(proc: subprocess.Popen[str], text: str, timeout: float) -> str:
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if text in line:
            return seen
    pytest.fail(f"no {text!r} in {seen!r}")


def test_ctrl_c_stops_the_demo_cleanly() -> None:
    proc = subprocess.Popen(
        [*DEMO, "--stations", "4", "--time-scale", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: whatever it started is in there
    )
    try:
        _wait_for(proc, "connected 4/4", 20)
        began = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        assert time.monotonic() - began < 8
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    assert "PlugStream demo stopped" in out
    assert "Traceback" not in err
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # no process of the demo's group is left


def test_demo_transactions_carry_no_flags_of_the_demos_own_making() -> None:
    """The stations run 120 times as fast as the wall, and so does the demo's cloud: what a
    newcomer browses in the demo's API is clean data, no TimeInFuture the demo caused."""
    proc = subprocess.Popen(
        [*DEMO, "--stations", "4", "--time-scale", "120", "--session-minutes", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out = read_until(proc, "PlugStream Cloud API:", timeout=30)
        found = re.search(r"(http://127\.0\.0\.1:\d+/api/v1)/", out)
        assert found is not None, out
        api = found.group(1)

        def ended() -> list[dict[str, Any]]:
            try:
                got = httpx.get(f"{api}/transactions", params={"limit": 500}, timeout=5)
            except httpx.TransportError:
                return []
            assert got.status_code == 200, got.text
            txs: list[dict[str, Any]] = got.json()
            # once two sessions have ended: a start, meter values and a stop each
            return txs if sum(1 for t in txs if not t["active"]) >= 2 else []

        transactions = until_sync(ended, "two demo sessions ended", timeout=60)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=15)
        finally:
            stop_process(proc)
    assert transactions
    for tx in transactions:
        assert tx["flags"] == [], tx
        assert tx["energy_wh"] is None or float(tx["energy_wh"]) >= 0, tx
