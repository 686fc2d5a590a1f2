"""The ``plugstream`` command as a person meets it: the self-check passes, a bad flag is one
line and exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.socket


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plugstream.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_selfcheck_runs_the_protocol_selfcheck_and_passes() -> None:
    done = run("selfcheck")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 failed" in done.stdout
    for version in ("1.6", "2.0.1", "2.1"):
        assert version in done.stdout


def test_bad_flag_is_one_line_and_exit_code_2() -> None:
    done = run("demo", "--no-such-flag")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == ["plugstream: error: No such option: --no-such-flag"] or (
        len(lines) == 1 and "--no-such-flag" in lines[0]
    )
    assert done.stdout == ""


def test_unknown_command_is_one_line_and_exit_code_2() -> None:
    done = run("teleport")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "teleport" in done.stderr


def test_version() -> None:
    done = run("version")
    assert done.returncode == 0 and done.stdout.startswith("plugstream ")


CSMS = "ws://127.0.0.1:9/ocpp"  # never contacted: every case fails before a station starts


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (("--stations", "0", "--csms", CSMS), "--stations"),
        (("--stations", "2", "--csms", "http://127.0.0.1:9/ocpp"), "ws://"),
        (("--stations", "2", "--csms", CSMS, "--ocpp", "1.5"), "1.5"),
        (("--stations", "2", "--csms", CSMS, "--time-scale", "0"), "--time-scale"),
        (("--stations", "2", "--csms", CSMS, "--session-minutes", "-1"), "--session-minutes"),
        (("--stations", "2"), "--csms"),
        (("--stations", "2", "--csms", CSMS, "--id-prefix", "a b"), "--id-prefix"),
        (("--stations", "2", "--csms", CSMS, "--id-tag", "X" * 21), "--id-tag"),
        (("--stations", "2", "--csms", CSMS, "--idle-minutes", "5", "2"), "--idle-minutes"),
        (("--stations", "2", "--csms", CSMS, "--connect-rate", "0"), "--connect-rate"),
        (("--stations", "2", "--csms", CSMS, "--fault-rate", "1.5"), "--fault-rate"),
    ],
)
def test_fleet_bad_flag_is_one_line_and_exit_code_2(args: tuple[str, ...], mentions: str) -> None:
    done = run("fleet", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plugstream: error: "), done.stderr
    assert mentions in lines[0]
    assert done.stdout == ""


def test_cloud_pings_every_300_s_by_default_so_an_idle_day_stays_small() -> None:
    """30 s pings alone would cost a station ~170 KB a day over TLS (see CloudConfig)."""
    done = run("cloud", "serve", "--help")
    assert done.returncode == 0
    assert (
        "[default: 300.0]" in done.stdout.split("--ping-interval", 1)[1].split("--ping-timeout")[0]
    )


PG = "postgresql://postgres@127.0.0.1:1/none"  # never reached: the flags are refused first


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (("--bus", "http://127.0.0.1:4222", "--db", PG), "nats://"),
        (("--bus", "nats://127.0.0.1:4222"), "--db postgresql://"),
        (("--bus", "nats://127.0.0.1:4222", "--db", PG, "--node-id", "a.b"), "--node-id"),
        (("--bus", "nats://127.0.0.1:4222", "--db", PG, "--cluster", "x y"), "--cluster"),
        (("--workers", "2"), "--bus"),
        (("--workers", "2", "--db", PG), "--bus"),
        (("--workers", "0"), "--workers"),
    ],
)
def test_cluster_bad_flag_is_one_line_and_exit_code_2(args: tuple[str, ...], mentions: str) -> None:
    done = run("cloud", "serve", "--port", "0", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plugstream: error: "), done.stderr
    assert mentions in lines[0]
    assert done.stdout == ""
