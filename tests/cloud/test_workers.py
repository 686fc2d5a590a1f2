"""``plugstream cloud serve --workers K``: K gateway processes on one host, one port.

The supervisor's own logic (node ids, the ready line, replacement of a dead worker, a
worker that cannot start, one that will not stop) is tested on stand-in workers: small
scripts that read the configuration as a worker does and say they listen. The real
thing -- two cluster nodes sharing a port by SO_REUSEPORT, on PostgreSQL and NATS -- runs
when PLUGSTREAM_TEST_POSTGRES and PLUGSTREAM_TEST_NATS both name a server (a server named
but down fails those tests).

Which worker holds a connection is read from /proc: the socket inodes of each worker's
file descriptors, looked up in /proc/net/tcp, so nothing is added to the product for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from plugstream.cloud.config import CloudConfig
from plugstream.cloud.serve import READY
from plugstream.cloud.workers import Supervisor, supervise
from plugstream.pki.authority import CertificateAuthority
from tests.cloud.conftest import POSTGRES, fresh_postgres
from tests.support import (
    WAIT,
    boot_and_heartbeat,
    booted16,
    free_port,
    read_until,
    stop_process,
    until,
    until_sync,
)

pytestmark = pytest.mark.socket

NATS = os.environ.get("PLUGSTREAM_TEST_NATS", "").strip()
# The cluster's tests need both servers; without them they are not generated.
CLUSTER = ["cluster"] if POSTGRES and NATS else []
PLUGSTREAM = (sys.executable, "-m", "plugstream.cli")
_NAMES = itertools.count()

# -- the supervisor, on stand-in workers -----------------------------------------------------

# A worker's stand-in: reads its configuration as a worker does, records it (node id,
# workers, port, pid) in the file argv[2], then by argv[1]: "fail" (or "fail:NODE_ID")
# exits 1 at once; "crash" says it listens and exits 3; "stubborn" says it listens and
# ignores SIGTERM; anything else says it listens and stops on SIGTERM.
STAND_IN = """
import os, pickle, signal, sys
config = pickle.load(sys.stdin.buffer)
mode, record = sys.argv[1], sys.argv[2]
with open(record, "a") as f:
    f.write(f"{config.node_id} {config.workers} {config.port} {os.getpid()}\\n")
if mode in ("fail", f"fail:{config.node_id}"):
    sys.exit(1)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("PlugStream Cloud listening on a stand-in", flush=True)
print("a line of its own", flush=True)
if mode == "crash":
    sys.exit(3)
while True:
    signal.pause()
"""


@dataclass
class StandIns:
    supervisor: Supervisor
    record: Path
    ready: list[str]

    def started(self) -> list[tuple[str, int, int, int]]:
        """(node id, workers, port, pid) of every stand-in started so far."""
        if not self.record.exists():
            return []
        return [
            (node, int(workers), int(port), int(pid))
            for node, workers, port, pid in (
                line.split() for line in self.record.read_text().splitlines()
            )
        ]


def stand_ins(tmp_path: Path, mode: str, *, workers: int = 2, **options: Any) -> StandIns:
    record = tmp_path / f"started-{mode}"
    ready: list[str] = []
    config = CloudConfig(host="127.0.0.1", port=free_port(), workers=workers)
    supervisor = Supervisor(
        config,
        command=(sys.executable, "-c", STAND_IN, mode, str(record)),
        ready=ready.append,
        **options,
    )
    return StandIns(supervisor, record, ready)


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def test_each_worker_is_its_own_node_and_the_ready_line_comes_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workers = stand_ins(tmp_path, "serve", workers=3)
    run = asyncio.create_task(workers.supervisor.run())
    await until(lambda: workers.ready or run.done(), "the ready line")
    port = workers.supervisor.config.port
    assert workers.ready == [
        f"{READY} http://127.0.0.1:{port} "
        f"(OCPP ws://127.0.0.1:{port}/ocpp/{{id}}, "
        f"API http://127.0.0.1:{port}/api/v1/)"
    ]
    started = workers.started()
    assert sorted(node for node, *_ in started) == ["node-1-1", "node-1-2", "node-1-3"]
    assert {(n, p) for _, n, p, _ in started} == {(1, port)}  # one node each, on the port
    assert workers.supervisor.pids() == {node: pid for node, _, _, pid in started}
    workers.supervisor.stop()
    assert await asyncio.wait_for(run, WAIT) == 0
    assert not any(alive(pid) for *_, pid in started)
    out = capsys.readouterr()
    assert READY not in out.out  # the workers' own ready lines are not passed on
    assert out.out.count("a line of its own") == 3  # anything else they print is
    assert out.err == ""


async def test_a_dead_worker_is_replaced_under_the_same_node_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "plugstream.cloud.workers")
    workers = stand_ins(tmp_path, "serve", restart_delay=0.05)
    run = asyncio.create_task(workers.supervisor.run())
    await until(lambda: workers.ready or run.done(), "the ready line")
    before = workers.supervisor.pids()
    os.kill(before["node-1-1"], signal.SIGKILL)

    def replaced() -> bool:
        now = workers.supervisor.pids()
        return now.keys() == before.keys() and now["node-1-1"] != before["node-1-1"]

    await until(replaced, "a new node-1-1")
    assert workers.supervisor.pids()["node-1-2"] == before["node-1-2"]
    await until(
        lambda: [node for node, *_ in workers.started()].count("node-1-1") == 2,
        "the new node-1-1 started with its configuration",
    )
    assert f"worker node-1-1 (pid {before['node-1-1']}) killed by SIGKILL" in caplog.text
    assert workers.ready == [workers.ready[0]]  # no second ready line
    workers.supervisor.stop()
    assert await asyncio.wait_for(run, WAIT) == 0


async def test_a_worker_that_cannot_start_stops_the_others_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workers = stand_ins(tmp_path, "fail:node-1-2")
    assert await asyncio.wait_for(workers.supervisor.run(), WAIT) == 1
    assert workers.ready == []
    assert capsys.readouterr().err.splitlines() == [
        "plugstream: error: worker node-1-2 could not start (exit code 1)"
    ]
    assert "node-1-2" in {node for node, *_ in workers.started()}
    assert workers.supervisor.pids() == {}  # node-1-1 stopped, at whatever stage it was
    assert not any(alive(pid) for *_, pid in workers.started())


async def test_a_worker_that_keeps_dying_is_given_up_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workers = stand_ins(tmp_path, "crash", workers=1, restart_delay=0.01, restarts_per_minute=2)
    assert await asyncio.wait_for(workers.supervisor.run(), WAIT) == 1
    assert len(workers.started()) == 3  # the first and two replacements
    assert capsys.readouterr().err.splitlines()[-1] == (
        "plugstream: error: worker node-1-1 died 3 times within a minute, the last time "
        "exit code 3: giving up"
    )


async def test_a_worker_that_will_not_stop_is_killed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workers = stand_ins(tmp_path, "stubborn", workers=1, stop_timeout=0.3)
    run = asyncio.create_task(workers.supervisor.run())
    await until(lambda: workers.ready or run.done(), "the ready line")
    workers.supervisor.stop()
    assert await asyncio.wait_for(run, WAIT) == 1
    [(_, _, _, pid)] = workers.started()
    assert not alive(pid)
    assert "did not stop within 0.3 s of SIGTERM and was killed" in capsys.readouterr().err


def test_an_address_in_use_is_one_line_before_any_worker_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:  # a listener of someone else's, without SO_REUSEPORT
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = CloudConfig(host="127.0.0.1", port=port, workers=2, bus="nats://127.0.0.1:9")
        assert supervise(config) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"plugstream: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_node_ids_too_long_for_the_workers_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    config = CloudConfig(port=free_port(), workers=10, node_id="n" * 30)
    assert supervise(config) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "--node-id" in line and "--workers 10" in line


@pytest.mark.parametrize(
    "options",
    [("--workers", "2"), ("--workers", "2", "--bus", "nats://127.0.0.1:4222")],
    ids=["no bus", "sqlite"],
)
def test_workers_need_a_bus_and_postgresql(options: tuple[str, ...], tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cloud.db'}"
    done = subprocess.run(
        [*PLUGSTREAM, "cloud", "serve", "--port", "0", "--db", db, *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plugstream: error: "), done.stderr
    assert "--bus" in lines[0]
    assert done.stdout == ""


# -- the real thing: worker processes that are cluster nodes ----------------------------------


@pytest.fixture(scope="module", params=CLUSTER)
def cluster_db() -> Iterator[str]:
    """A PostgreSQL database of this module's own, migrated (the workers' shared one)."""
    with fresh_postgres("plugstream_workers", migrated=True) as url:
        yield url


@pytest.fixture(scope="module")
def bus(cluster_db: str) -> str:
    """PLUGSTREAM_TEST_NATS, checked to answer as a NATS server does (INFO first)."""
    url = urlsplit(NATS)
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 4222), 10) as sock:
            sock.settimeout(10)
            assert sock.recv(4).startswith(b"INFO")
    except (OSError, AssertionError) as exc:
        pytest.fail(f"PLUGSTREAM_TEST_NATS={NATS!r} is set but unreachable: {exc!r}")
    return NATS


@dataclass
class Served:
    """A ``cloud serve --workers`` process: the supervisor, its port, its stderr's file."""

    process: subprocess.Popen[str]
    port: int
    stderr: Path

    def workers(self) -> set[int]:
        return children(self.process.pid)


def children(pid: int) -> set[int]:
    """The PIDs of ``pid``'s child processes (/proc/PID/task/*/children)."""
    found: set[int] = set()
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found.update(int(child) for child in path.read_text().split())
    return found


def tcp_sockets(pid: int, port: int, state: str) -> int:
    """How many TCP sockets of ``pid`` on local port ``port`` are in ``state`` (as in
    /proc/net/tcp: "01" established, "0A" listening)."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == state and fields[9] in inodes:
                count += 1
    return count


@contextlib.contextmanager
def serving_workers(db: str, bus: str, tmp_path: Path, *options: str) -> Iterator[Served]:
    """``cloud serve --workers 2 --port 0`` on ``db`` and ``bus``, in a cluster of its own
    name, once it says it listens; stopped after (its workers too, should any be left)."""
    n = next(_NAMES)
    stderr = tmp_path / f"serve-{n}.stderr"
    argv = [
        *PLUGSTREAM,
        *("cloud", "serve", "--workers", "2", "--port", "0", "--db", db, "--bus", bus),
        *("--cluster", f"workers_{os.getpid()}_{n}", "--auto-register-unsecured", *options),
    ]
    with stderr.open("w") as err:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
    seen: set[int] = set()
    try:
        line = read_until(process, READY, timeout=2 * WAIT)  # two nodes start on a busy CI
        found = re.search(r"listening on \w+://127\.0\.0\.1:(\d+)", line)
        assert found is not None, line
        served = Served(process, int(found.group(1)), stderr)
        seen = served.workers()
        yield served
        seen |= served.workers()
    finally:
        stop_process(process)
        for pid in seen:  # a safety net: the supervisor stops them
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def stations(port: int, prefix: str, count: int, stack: contextlib.AsyncExitStack) -> None:
    """``count`` 1.6 stations connected to ``port`` and booted, held open by ``stack``."""
    for i in range(count):
        await stack.enter_async_context(booted16(f"ws://127.0.0.1:{port}/ocpp/{prefix}-{i}"))


async def test_workers_share_the_port_and_stop_with_the_supervisor(
    cluster_db: str, bus: str, tmp_path: Path
) -> None:
    with serving_workers(cluster_db, bus, tmp_path) as served:
        workers = served.workers()
        assert len(workers) == 2
        for pid in workers:
            assert tcp_sockets(pid, served.port, "0A") == 1  # each listens itself
        assert tcp_sockets(served.process.pid, served.port, "0A") == 0  # the supervisor not
        async with contextlib.AsyncExitStack() as stack:
            await stations(served.port, "SHARE", 40, stack)
            held = {pid: tcp_sockets(pid, served.port, "01") for pid in workers}
            assert sum(held.values()) == 40 and all(held.values()), held

        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(WAIT) == 0
        assert served.process.stdout is not None
        assert READY not in served.process.stdout.read()  # the one ready line only
        assert not any(alive(pid) for pid in workers)


async def test_a_killed_worker_is_replaced_and_the_port_keeps_serving(
    cluster_db: str, bus: str, tmp_path: Path
) -> None:
    with serving_workers(cluster_db, bus, tmp_path) as served:
        victim, survivor = sorted(served.workers())
        os.kill(victim, signal.SIGKILL)

        def replacement() -> int | None:
            now = served.workers()
            new = now - {survivor, victim}
            return new.pop() if len(now) == 2 and survivor in now and new else None

        new = until_sync(replacement, "a replacement worker", timeout=2 * WAIT)
        assert new is not None
        until_sync(lambda: tcp_sockets(new, served.port, "0A"), "the replacement listening")
        async with contextlib.AsyncExitStack() as stack:
            await stations(served.port, "AFTER", 30, stack)
            held = {pid: tcp_sockets(pid, served.port, "01") for pid in (new, survivor)}
            assert sum(held.values()) == 30 and all(held.values()), held
        assert f"(pid {victim}) killed by SIGKILL; a replacement starts in" in (
            served.stderr.read_text()
        )


async def test_workers_serve_wss(cluster_db: str, bus: str, tmp_path: Path) -> None:
    """TLS applies to the workers' own listening sockets as to the server's."""
    ca = CertificateAuthority.create()
    root, cert, key = tmp_path / "root.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca.write_root(root)
    ca.issue_server().write(cert, key)
    tls = ("--tls-cert", str(cert), "--tls-key", str(key))
    with serving_workers(cluster_db, bus, tmp_path, *tls) as served:
        client = ssl.create_default_context(cafile=str(root))
        for i in range(4):
            async with connect(
                f"wss://127.0.0.1:{served.port}/ocpp/WSS-{i}",
                ssl=client,
                subprotocols=[Subprotocol("ocpp1.6")],
                open_timeout=WAIT,
            ) as ws:
                await boot_and_heartbeat(ws)


def test_a_port_taken_without_reuseport_is_exit_1_and_one_line(cluster_db: str, bus: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                *PLUGSTREAM,
                *("cloud", "serve", "--workers", "2", "--port", str(port)),
                *("--db", cluster_db, "--bus", bus),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"plugstream: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert done.stdout == ""
