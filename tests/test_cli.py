"""The ``plugstream`` command as a person meets it: the demo passes, a bad flag is one line and exit 2."""

from __future__ import annotations

import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plugstream.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_runs_the_protocol_selfcheck_and_passes() -> None:
    done = run("demo")
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
