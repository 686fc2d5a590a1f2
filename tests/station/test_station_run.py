"""``plugstream station run`` end to end: a person drives a station against PlugStream Cloud."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.support import WAIT, free_port, stop_process, until_sync

pytestmark = pytest.mark.socket

TOKEN = "t"
TAG = "04A2B3C4"


class Proc:
    """A subprocess whose stdout and stderr lines are collected by threads (bounded waits)."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "plugstream.cli", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env,
        )
        self.out: queue.Queue[str] = queue.Queue()
        self.err: queue.Queue[str] = queue.Queue()
        self.err_lines: list[str] = []
        for stream, sink in ((self.popen.stdout, self.out), (self.popen.stderr, self.err)):
            threading.Thread(target=_pump, args=(stream, sink), daemon=True).start()

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def expect(self, sink: queue.Queue[str], want: Callable[[str], bool]) -> str:
        deadline = time.monotonic() + WAIT
        seen: list[str] = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = sink.get(timeout=left)
            except queue.Empty:
                break
            seen.append(line)
            if want(line):
                return line
        raise AssertionError(f"no such line within {WAIT}s; saw {seen!r}")

    def stop(self) -> None:
        stop_process(self.popen)


def _pump(stream: IO[str] | None, sink: queue.Queue[str]) -> None:
    assert stream is not None
    for line in stream:
        sink.put(line.rstrip("\n"))


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    procs: list[Proc] = []

    def _start(*args: str) -> Proc:
        proc = Proc(list(args), tmp_path)
        procs.append(proc)
        return proc

    yield _start
    for proc in reversed(procs):
        proc.stop()


@pytest.fixture
def cloud(start: Callable[..., Proc], tmp_path: Path) -> Iterator[httpx.Client]:
    port = free_port()
    proc = start(
        "cloud", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--db", f"sqlite:///{tmp_path}/c.db", "--auto-register-unsecured", "--api-token", TOKEN,
    )  # fmt: skip
    proc.expect(proc.out, lambda line: "PlugStream Cloud listening" in line)
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    ) as client:
        yield client


def _csms(client: httpx.Client) -> str:
    return f"ws://127.0.0.1:{client.base_url.port}/ocpp"


def _station(
    start: Callable[..., Proc], client: httpx.Client, sid: str, *extra: str, ocpp: str = "1.6"
) -> Proc:
    if ocpp != "1.6":
        extra = (*extra, "--ocpp", ocpp)
    station = start(
        "station", "run", "--id", sid, "--model", "22", "--csms", _csms(client),
        "--data-dir", f"st-{sid}", *extra,
    )  # fmt: skip
    ready = station.expect(station.out, lambda line: line.startswith("PlugStream"))
    assert ready == f"PlugStream 22 station {sid} → {_csms(client)}/{sid} (OCPP {ocpp})"
    return station


def _connected(client: httpx.Client, sid: str) -> dict[str, Any] | None:
    """The station's record once it is connected and booted (its model reported)."""
    r = client.get(f"/api/v1/stations/{sid}")
    body: dict[str, Any] = r.json()
    return body if r.status_code == 200 and body["connected"] and body["model"] else None


def _transactions(client: httpx.Client, sid: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.get("/api/v1/transactions", params={"station": sid}).json()
    return found


def _started(client: httpx.Client, sid: str) -> list[dict[str, Any]]:
    """The station's transactions once the cloud has one under way: the session got there."""
    found = _transactions(client, sid)
    return found if any(t["stopped_at"] is None for t in found) else []


def _status(station: Proc, want: str, *, end: bool = False) -> str:
    """The station's ``status`` line once it contains ``want`` (ends with it, ``end``)."""

    def check() -> str | None:
        station.send("status")
        line = station.expect(station.out, lambda s: s.startswith("connector "))
        return line if (line.endswith(want) if end else want in line) else None

    found: str = until_sync(check, f"status {want!r}", interval=0.1)
    return found


def test_a_session_driven_on_stdin_reaches_the_cloud(
    start: Callable[..., Proc], cloud: httpx.Client, tmp_path: Path
) -> None:
    r = cloud.put(f"/api/v1/id-tokens/{TAG}", json={"status": "Accepted"})
    assert r.status_code in (200, 201), r.text
    station = _station(start, cloud, "CP1")
    info = until_sync(lambda: _connected(cloud, "CP1"), "CP1 connected")
    assert info["model"] == "PlugStream 22"
    _status(station, ", connected", end=True)  # registered: not "connected, not registered"

    station.send("plug family")
    station.expect(station.out, lambda s: s.startswith("plugged in"))
    station.send(f"swipe {TAG}")
    assert station.expect(station.out, lambda s: s.startswith("swipe")).endswith("accepted")
    line = _status(station, "Charging")
    assert f"({TAG})" in line
    until_sync(lambda: _started(cloud, "CP1"), "the session under way at the cloud")
    station.send(f"swipe {TAG}")  # the same card again: stop
    assert station.expect(station.out, lambda s: s.startswith("swipe")).endswith("accepted")
    station.send("unplug")
    station.expect(station.out, lambda s: s == "unplugged")
    station.send("quit")
    assert station.popen.wait(timeout=WAIT) == 0
    assert (tmp_path / "st-CP1" / "journal.sqlite").exists()

    txs = _transactions(cloud, "CP1")
    assert len(txs) == 1, txs
    assert txs[0]["id_token"] == TAG
    assert txs[0]["stopped_at"] is not None
    assert txs[0]["stop_reason"] == "Local"


def test_a_2_0_1_session_driven_on_stdin_reaches_the_cloud(
    start: Callable[..., Proc], cloud: httpx.Client, tmp_path: Path
) -> None:
    r = cloud.put(f"/api/v1/id-tokens/{TAG}", json={"status": "Accepted"})
    assert r.status_code in (200, 201), r.text
    station = _station(start, cloud, "CP5", ocpp="2.0.1")
    info = until_sync(lambda: _connected(cloud, "CP5"), "CP5 connected")
    assert info["model"] == "PlugStream 22"
    _status(station, ", connected", end=True)  # registered: not "connected, not registered"

    station.send("plug family")
    station.expect(station.out, lambda s: s.startswith("plugged in"))
    station.send(f"swipe {TAG}")
    assert station.expect(station.out, lambda s: s.startswith("swipe")).endswith("accepted")
    line = _status(station, "connector Occupied")
    assert f"({TAG})" in line
    until_sync(lambda: _started(cloud, "CP5"), "the session under way at the cloud")
    station.send(f"swipe {TAG}")  # the same card again: stop
    assert station.expect(station.out, lambda s: s.startswith("swipe")).endswith("accepted")
    station.send("unplug")
    station.expect(station.out, lambda s: s == "unplugged")
    _status(station, "connector Available")
    station.send("quit")
    assert station.popen.wait(timeout=WAIT) == 0
    assert (tmp_path / "st-CP5" / "journal.sqlite").exists()

    txs = _transactions(cloud, "CP5")
    assert len(txs) == 1, txs
    assert txs[0]["id_token"] == TAG
    assert txs[0]["stopped_at"] is not None


def test_unknown_command_is_one_error_line_and_the_station_runs_on(
    start: Callable[..., Proc], cloud: httpx.Client
) -> None:
    station = _station(start, cloud, "CP2")
    station.send("teleport now")
    error = station.expect(station.err, lambda s: "teleport" in s)
    assert error.startswith("plugstream: error: unknown command")
    station.send("fault groundfailure")
    station.expect(station.out, lambda s: s == "fault: GroundFailure")
    _status(station, "connector Faulted, error GroundFailure")
    station.send("clear")
    station.expect(station.out, lambda s: s == "fault cleared")
    _status(station, "connector Available, error NoError")
    station.popen.send_signal(signal.SIGTERM)
    assert station.popen.wait(timeout=WAIT) == 0


def test_end_of_stdin_runs_on_until_sigint(start: Callable[..., Proc], cloud: httpx.Client) -> None:
    station = _station(start, cloud, "CP3")
    assert station.popen.stdin is not None
    station.popen.stdin.close()  # before it connects: its input ends first

    def connected() -> dict[str, Any] | None:
        assert station.popen.poll() is None, "the station stopped at the end of its input"
        return _connected(cloud, "CP3")

    # it read the end of its input long before its boot went to the cloud and back
    until_sync(connected, "CP3 connected with its input closed")
    assert station.popen.poll() is None
    station.popen.send_signal(signal.SIGINT)
    assert station.popen.wait(timeout=WAIT) == 0


def test_password_is_sent_as_http_basic(start: Callable[..., Proc], cloud: httpx.Client) -> None:
    r = cloud.put("/api/v1/stations/CP4", json={"password": "s3cret-passw0rd:x/y"})
    assert r.status_code in (200, 201), r.text
    station = _station(start, cloud, "CP4", "--password", "s3cret-passw0rd:x/y")
    info = until_sync(lambda: _connected(cloud, "CP4"), "CP4 connected")
    assert info["has_password"] and info["model"] == "PlugStream 22"
    station.send("quit")
    assert station.popen.wait(timeout=WAIT) == 0


@pytest.mark.parametrize(
    ("flags", "word"),
    [
        (["--model", "11", "--csms", "ws://127.0.0.1:1/ocpp"], "--model"),
        (["--model", "7", "--csms", "http://127.0.0.1:1/ocpp"], "ws://"),
        (["--model", "7", "--csms", "ws://127.0.0.1:1/ocpp", "--ocpp", "1.5"], "--ocpp"),
        (["--model", "7", "--csms", "ws://127.0.0.1:1/ocpp", "--ocpp", "2.1"], "--ocpp"),
    ],
)
def test_bad_flags_are_one_line_and_exit_code_2(
    flags: list[str], word: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "plugstream.cli", "station", "run", "--id", "CP9", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and word in lines[0], done.stderr
    assert done.stdout == ""
    assert not (tmp_path / "station-CP9").exists()
