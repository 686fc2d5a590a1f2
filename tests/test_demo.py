"""``plugstream demo`` as a person runs it: the cloud and a fleet on loopback, stopped by
a timer or by Ctrl-C, exit code 0 either way and nothing left running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

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
