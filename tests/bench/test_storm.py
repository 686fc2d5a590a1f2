"""bench/storm.py at a tiny size: a real cloud, 50 stations storming it, a 2 s window.

What the lead reads from the bench is its last line; this checks that line carries every
figure of each run (the storm, the window, CPU, memory) and that the bench cleans up
after itself. On SQLite with one worker, unless PLUGSTREAM_TEST_POSTGRES or
PLUGSTREAM_TEST_NATS names a server: then in the cluster configuration with one and two
workers, and a server named but unreachable fails the test (the bench exits 1 saying
so). It does not check the goals: the bench measures whatever the cloud does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import WAIT

pytestmark = pytest.mark.socket

BENCH = Path(__file__).resolve().parents[2] / "bench" / "storm.py"
POSTGRES = os.environ.get("PLUGSTREAM_TEST_POSTGRES", "").strip()
NATS = os.environ.get("PLUGSTREAM_TEST_NATS", "").strip()
CLUSTER = bool(POSTGRES or NATS)
STATIONS = 50

KEYS = {
    "bench",
    "mode",
    "stations",
    "workers",
    "runs",
    "storm_s",
    "msgs_per_s",
    "ratio",
    "goals",
    "meets_goals",
    "full_size",
    "register_s",
    "cpus",
    "took_s",
    "python",
}
RUN_KEYS = {
    "storm",
    "storm_cpu",
    "window",
    "window_cpu",
    "msgs_per_s",
    "generator_share_of_cpus_window",
    "cloud_rss_peak_kb",
    "cloud_vmhwm_kb",
    "generator_vmhwm_kb",
}
CPU_KEYS = {
    "seconds",
    "cloud_cores",
    "generator_cores",
    "database_cores",
    "bus_cores",
    "machine_cores",
    "other_cores",
}


def test_storm_bench_quick_boots_every_station_and_prints_its_figures_as_its_last_line(
    tmp_path: Path,
) -> None:
    if CLUSTER:
        mode = ["--mode", "cluster", "--workers", "1,2"]
        mode += ["--pg", POSTGRES] if POSTGRES else []
        mode += ["--nats", NATS] if NATS else []
    else:
        mode = ["--mode", "sqlite", "--workers", "1"]
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--stations",
            str(STATIONS),
            "--window",
            "2",
            "--warmup",
            "0.5",
            "--storm-budget",  # only a hang reaches it
            str(WAIT),
            "--workdir",
            str(tmp_path),
            *mode,
        ],
        capture_output=True,
        text=True,
        timeout=8 * WAIT,  # per run: a database, two cloud starts, the storm, the window
        cwd=BENCH.parents[1],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(figures) >= KEYS
    assert figures["bench"] == "storm"
    assert figures["mode"] == ("cluster" if CLUSTER else "sqlite")
    workers = [1, 2] if CLUSTER else [1]
    assert figures["workers"] == workers
    assert set(figures["runs"]) == {str(w) for w in workers}
    for key, run in figures["runs"].items():
        assert set(run) >= RUN_KEYS, key
        storm = run["storm"]
        assert storm["complete"] is True, key
        assert storm["heartbeating"] == storm["booted"] == STATIONS, key
        assert storm["lost"] == 0 and storm["rejected"] == 0, key
        assert 0 < storm["seconds"] < WAIT, key
        assert storm["attempts"] >= STATIONS, key
        assert storm["heartbeat_intervals"] == [60], key  # what the bench had it hand out
        window = run["window"]
        assert window["messages"] > 0 and window["msgs_per_s"] > 0, key
        assert window["answered_per_s"] > 0 and window["least_per_station"] >= 1, key
        assert window["errors"] == 0, key
        assert window["p50_ms"] is not None and window["p50_ms"] <= window["p99_ms"], key
        for phase in ("storm_cpu", "window_cpu"):
            assert set(run[phase]) >= CPU_KEYS, (key, phase)
            assert run[phase]["cloud_cores"] > 0, (key, phase)
            assert run[phase]["generator_cores"] >= 0, (key, phase)
        assert 0 <= run["generator_share_of_cpus_window"] <= 1, key
        assert run["cloud_rss_peak_kb"] > 0 and run["cloud_vmhwm_kb"]["main"] > 0, key
        assert run["generator_vmhwm_kb"] > 0, key
    assert figures["register_s"] > 0  # the stations were registered before the storm
    assert figures["full_size"] is False and figures["meets_goals"] is False
    if CLUSTER:
        assert figures["ratio"] is not None and figures["ratio"] > 0
        assert len(figures["runs"]["2"]["cloud_vmhwm_kb"]) >= 2  # the workers are measured
    assert list(tmp_path.iterdir()) == []  # its temporary directory is gone
