"""bench/firmware.py at a tiny size: a real cloud, 2 real stations, a 1 MB signed image.

What the lead reads from the bench is its last line; this checks that line carries every
figure, that each station reached Installed (TC_L_01_CS, L01.FR.01) and that the station's
download client resumed from half the image (L01.FR.30: a retry continues, Range).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import WAIT

pytestmark = pytest.mark.socket

BENCH = Path(__file__).resolve().parents[2] / "bench" / "firmware.py"

KEYS = {
    "bench",
    "stations",
    "size_mb",
    "upload_s",
    "upload_cloud_cpu_s",
    "boot_s",
    "boot_cloud_cpu_s",
    "rollout_s",
    "installed",
    "counts",
    "station_download_s_mean",
    "station_download_s_max",
    "station_mbps_mean",
    "rollout_cloud_cpu_s",
    "cloud_peak_rss_kb",
    "cloud_peak_rss_kb_by_step",
    "peer",
    "peer_download_s_mean",
    "peer_mbps_mean",
    "peer_cloud_cpu_s",
    "resumed",
    "ratio",
    "goal",
    "meets_goal",
    "took_s",
    "cpus",
    "python",
}


def test_TC_L_01_CS_firmware_bench_rolls_out_to_every_station_and_prints_its_figures(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--stations",
            "2",
            "--size-mb",
            "1",
            "--timeout",  # for each step (boot, rollout, peer): only a hang reaches it
            str(WAIT),
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=4 * WAIT,  # its three steps and its setup
        cwd=BENCH.parents[1],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    figures = json.loads(last)
    assert set(figures) >= KEYS
    assert figures["bench"] == "firmware"
    assert figures["installed"] == 2
    assert figures["counts"] == {"Installed": 2}
    assert figures["station_download_s_mean"] > 0 and figures["station_mbps_mean"] > 0
    assert figures["peer_download_s_mean"] > 0 and figures["ratio"] > 0
    assert figures["upload_s"] > 0 and figures["cloud_peak_rss_kb"] > 0
    assert figures["resumed"] is True
    assert list(tmp_path.iterdir()) == []  # its temporary directory is gone
