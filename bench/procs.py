"""The process helpers every bench shares: start a server, read its figures, stop it.

Each bench used to carry its own copy of these, and the copies drifted (stop timeouts,
RLIMIT_NOFILE handling, one process or its whole tree); one module keeps the figures of
all the benches measured the same way. A bench runs as a script (``python
bench/cloud.py``), so ``bench/`` is first on ``sys.path`` and ``import procs`` finds this
file; a test that loads a bench by path puts ``bench/`` on ``sys.path`` likewise.

Everything here is for loopback and for processes the bench itself started: every one
is stopped by its PID, never by name.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
"""The repository root: the working directory of every child, so ``-m plugstream.cli``
runs the working tree's code."""
HOST: Final = "127.0.0.1"
CLOUD_READY: Final = "PlugStream Cloud listening"
"""The start of the line ``plugstream cloud serve`` prints once it accepts connections."""

READY_TIMEOUT: Final = 60.0  # s for a server to say it listens
STOP_TIMEOUT: Final = 10.0  # s between SIGTERM and SIGKILL (and after SIGKILL)
NOFILE_CAP: Final = 1 << 20  # what an unlimited RLIMIT_NOFILE counts as (fs.nr_open's default)


class BenchError(Exception):
    """The bench cannot measure (a server died, a child failed): its ``main`` prints this
    on one line and exits 1 instead of printing figures."""


# --- starting and stopping ---------------------------------------------------------


def free_port(host: str = HOST) -> int:
    """A TCP port free on ``host`` now, for a child to listen on (a race, but on loopback
    with the benches' own children only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def stop_pid(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    """Stop one process we started, by its PID: SIGTERM, then SIGKILL after ``timeout`` s
    (a fleet draining 10,000 sockets needs longer than a server)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def tail(log: Path, lines: int = 20) -> str:
    """The last ``lines`` of a child's log, for an error message ('' if there is none)."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def launch(
    argv: list[str],
    log: Path,
    ready: str,
    label: str,
    *,
    env: Mapping[str, str] | None = None,
    stop_timeout: float = STOP_TIMEOUT,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in the repository root, its stdout and stderr to ``log``, and return
    once a line of ``log`` starts with ``ready``: a bench measures a server that listens.

    If it exits first or stays silent for ``READY_TIMEOUT`` s it is stopped by its PID and
    ``BenchError`` says so, with the log's tail. ``env`` is added to this process's own.
    """
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if any(line.startswith(ready) for line in text.splitlines()):
            return proc
        if proc.poll() is not None:
            raise BenchError(f"{label} exited ({proc.returncode}):\n{tail(log)}")
        time.sleep(0.05)
    stop_pid(proc, stop_timeout)
    raise BenchError(f"{label} did not print {ready!r} in time:\n{tail(log)}")


def cloud_argv(port: int, db: Path, *options: str) -> list[str]:
    """``plugstream cloud serve`` of the working tree on loopback, on SQLite at ``db``."""
    argv = [sys.executable, "-m", "plugstream.cli", "cloud", "serve", "--host", HOST]
    return [*argv, "--port", str(port), "--db", f"sqlite:///{db}", *options]


@dataclass(slots=True)
class Server:
    """A server a bench starts, measures and stops, maybe more than once: each start
    begins with an empty database, so every run measures the same work."""

    label: str
    argv: list[str]
    ready: str  # the start of the stdout line that says it listens
    port: int
    db: Path
    log: Path
    key: str = ""  # what the bench calls it ("ours", "reference")
    env: dict[str, str] = field(default_factory=dict)  # added to this process's own
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for path in self.db.parent.glob(self.db.name + "*"):
            path.unlink()
        self.proc = launch(self.argv, self.log, self.ready, self.label, env=self.env)

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def tail(self, lines: int = 20) -> str:
        return tail(self.log, lines)

    def db_bytes(self) -> int:
        """The database's size on disk, with its WAL and journal."""
        return sum(p.stat().st_size for p in self.db.parent.glob(self.db.name + "*"))

    @contextlib.contextmanager
    def running(self) -> Iterator[Server]:
        """Started for the block, stopped by its PID after it, also on errors and Ctrl-C."""
        try:
            self.start()
            yield self
        finally:
            self.stop()


def raise_nofile(wanted: int | None = None) -> int:
    """Raise this process's RLIMIT_NOFILE (soft) to ``wanted``, or to the hard limit if
    None, before starting children: they inherit it, and thousands of stations need as
    many sockets. Returns the soft limit now (unlimited counts as ``NOFILE_CAP``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if wanted is None:
        if hard == resource.RLIM_INFINITY:
            hard = NOFILE_CAP
        if soft == resource.RLIM_INFINITY or soft < hard:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    elif soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return NOFILE_CAP if soft == resource.RLIM_INFINITY else int(soft)


# --- what a process costs (Linux /proc) --------------------------------------------


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants: a server might fork workers, and they count too."""
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 1000:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError):
                    text = Path(f"/proc/{p}/task/{task}/children").read_text()
                    todo.extend(int(c) for c in text.split())
    return out


def _status_kb(pid: int, key: str) -> int:
    """One ``kB`` line of ``/proc/PID/status`` (0 if it has none)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` and its descendants, in KB (a process gone counts 0)."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            total += _status_kb(p, "VmRSS")
    return total


def peak_rss_kb(pid: int) -> int:
    """VmHWM of one process, in KB: its peak resident set, which sampling would miss."""
    return _status_kb(pid, "VmHWM")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (a process gone counts 0);
    the difference over a window is the cores it used."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


# --- what a child said, and what was measured --------------------------------------


def last_json(text: str) -> dict[str, Any] | None:
    """The last line of ``text`` that is a JSON object: a child bench's or load
    generator's result (None if there is none)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out: dict[str, Any] = json.loads(line)
                return out
    return None


def print_summary(summary: Mapping[str, Any]) -> int:
    """Print ``summary`` as the bench's last line, one compact JSON object after all else
    (what scripts and tests read); returns 0 for ``main`` to exit with."""
    sys.stdout.flush()
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    return 0


def dist_version(dist: str) -> str:
    """The installed version of ``dist`` ('?' if not installed), for the report."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def commit() -> str | None:
    """``git rev-parse --short HEAD``, with ``+dirty`` when ``src/`` has uncommitted changes
    (the cloud measured is the working tree's)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=10,
        )
        if head.returncode == 0:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--", "src"],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=10,
            )
            return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    return None
