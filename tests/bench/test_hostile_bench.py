"""bench/hostile.py at a tiny size: a real cloud, a real probe, every attack small.

What the lead reads from the bench is its last line; this checks that line carries every
figure for each phase (baseline, half-open, flood, bad logins) and the storm against both
servers, and that the bench cleans up after itself. It does not check the goals: the
bench measures whatever the cloud does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import WAIT

pytestmark = pytest.mark.socket

BENCH = Path(__file__).resolve().parents[2] / "bench" / "hostile.py"

KEYS = {
    "bench",
    "commit",
    "phases",
    "probe",
    "storm",
    "goals",
    "meets_goals",
    "full_size",
    "notes",
    "cpus",
    "took_s",
    "python",
}
PHASE_KEYS = {
    "heartbeats",
    "lost",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "rss_before_kb",
    "rss_peak_kb",
    "rss_growth_mb",
    "cloud_cores",
    "seconds",
}
GOALS = {
    "half_open_p99_under_100ms",
    "half_open_rss_under_50mb",
    "half_open_all_closed_within_15s",
    "flood_p99_under_100ms",
    "flood_rss_under_50mb",
    "bad_logins_p99_under_100ms",
    "bad_logins_rss_under_50mb",
    "storm_within_15s",
}


def test_hostile_bench_quick_prints_every_phase_and_the_storm_as_its_last_line(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--storm-budget",  # only a hang reaches it
            str(WAIT),
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=10 * WAIT,  # its phases, two servers for the storm, and their setup
        cwd=BENCH.parents[1],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(figures) >= KEYS
    assert figures["bench"] == "hostile"
    assert set(figures["phases"]) == {"baseline", "half_open", "flood", "bad_logins"}
    for name, phase in figures["phases"].items():
        assert set(phase) >= PHASE_KEYS, name
        assert phase["heartbeats"] > 0, name  # the probe beat in every phase
    assert figures["phases"]["half_open"]["opened"] == 50
    assert figures["phases"]["flood"]["sent"] > 0
    assert figures["phases"]["bad_logins"]["attempts"] > 0
    assert figures["phases"]["bad_logins"]["admitted"] == 0  # a wrong password never gets in
    for side in ("ours", "reference"):
        assert figures["storm"][side]["stations"] == 100, side
        assert figures["storm"][side]["booted"] > 0, side
    assert set(figures["goals"]["met"]) == GOALS
    assert figures["full_size"] is False and figures["meets_goals"] is False
    assert list(tmp_path.iterdir()) == []  # its temporary directory is gone
