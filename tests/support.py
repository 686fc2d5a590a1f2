"""What the tests wait with: one way to wait for a condition, one way to run a station.

A test never sleeps for a fixed time and hopes: it waits for the condition it needs (an
answer recorded, a row stored, a process ready) with :func:`until` (in a coroutine) or
:func:`until_sync` (in plain code, such as the lab's), which poll and fail with what was
awaited. Timers of a station under test run on a
:class:`~plugstream.station.clock.ManualClock` that the test advances.

The limit is generous on purpose: it is how long a broken build takes to fail, not how
long a working one takes to pass, so a loaded machine does not turn it into a flake.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import itertools
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import orjson

if TYPE_CHECKING:
    import pytest
    import uvicorn
    from websockets.asyncio.client import ClientConnection

    from plugstream.cloud.config import CloudConfig
    from plugstream.cloud.gateway import Gateway
    from plugstream.cloud.storage import Store
    from plugstream.station.clock import ManualClock

T = TypeVar("T")

#: seconds a condition may take before the test fails (a hang, not a slow machine)
WAIT = 30.0
#: seconds between two looks at a condition
POLL = 0.02


async def ready_tasks_run(rounds: int = 1) -> None:
    """Let every task that is ready run, ``rounds`` times over, without waiting for any
    time to pass: each round is one pass of the event loop's ready queue. For asserting
    that something has NOT happened once everything that could run has run."""
    loop = asyncio.get_running_loop()
    for _ in range(rounds):
        turn: asyncio.Future[None] = loop.create_future()
        loop.call_soon(turn.set_result, None)
        await turn


async def until(
    check: Callable[[], T | Awaitable[T]],
    what: str = "",
    *,
    timeout: float = WAIT,
    interval: float = POLL,
) -> T:
    """``check()`` (plain or async) once it is truthy; AssertionError naming ``what``
    (and the last value seen) after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(
                f"not within {timeout:g} s: {what or getattr(check, '__name__', 'condition')}"
                f" (last: {value!r})"
            )
        await asyncio.sleep(interval)


def until_sync(
    check: Callable[[], T], what: str = "", *, timeout: float = WAIT, interval: float = 0.05
) -> T:
    """:func:`until` for plain code (a lab test drives processes, not a loop)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"not within {timeout:g} s: {what or getattr(check, '__name__', 'condition')}"
                f" (last: {value!r})"
            )
        time.sleep(interval)


async def until_advancing(
    clock: ManualClock,
    check: Callable[[], T | Awaitable[T]],
    what: str = "",
    *,
    up_to: float | None = None,
    step: float | None = None,
    timeout: float = WAIT,
) -> T:
    """:func:`until`, for a station on ``clock`` that needs its time to pass on the way;
    at each look that finds ``check`` false:

    - ``up_to``: a timer due within ``up_to`` seconds is made due (a reconnect back-off
      after a reboot); longer ones (a heartbeat, the deadline under test) are left for
      the test to reach with ``clock.advance``;
    - ``step``: time moves on by ``step`` seconds (meter samples while a car charges,
      when how many does not matter)."""
    if (up_to is None) == (step is None):
        raise ValueError("give up_to or step")

    async def moved_on() -> T:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if not value:
            due = clock.next_due_in() if step is None else step
            if due is not None and (up_to is None or due <= up_to):
                await clock.advance(due)
        return value

    return await until(moved_on, what, timeout=timeout)


class RunnableStation(Protocol):
    @property
    def online(self) -> bool: ...

    async def run(self, url: str) -> None: ...

    def close(self) -> None: ...


@contextlib.asynccontextmanager
async def running(
    station: RunnableStation, url: str, *, online: bool = False
) -> AsyncIterator[asyncio.Task[None]]:
    """``station.run(url)`` as a task for the body (once it is online, with ``online``);
    cancelled and the station closed after, whatever the body did."""
    task = asyncio.create_task(station.run(url))
    try:
        if online:
            await until(lambda: station.online or task.done(), "the station online")
            if task.done():
                task.result()  # what stopped it
                raise AssertionError("the station stopped before it was online")
        yield task
    finally:
        task.cancel()
        stopped, _ = await asyncio.wait({task}, timeout=WAIT)  # a hang fails, never blocks
        station.close()
        if not stopped:
            raise AssertionError(f"the station did not stop within {WAIT:g} s of its cancel")
        failed = None if task.cancelled() else task.exception()
        if failed is not None:
            raise failed


def read_until(process: subprocess.Popen[str], text: str, *, timeout: float = WAIT) -> str:
    """What ``process`` printed on stdout up to the first line with ``text``: a process
    is ready when it says so. Fails with all it printed when it does not in time."""
    stdout = process.stdout
    assert stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    reader = ThreadPoolExecutor(1)  # a pipe's readline has no timeout of its own
    try:
        while True:
            line = reader.submit(stdout.readline)
            try:
                got = line.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                break
            if not got:
                break
            seen.append(got)
            if text in got:
                return "".join(seen)
    finally:
        reader.shutdown(wait=False, cancel_futures=True)
    raise AssertionError(f"no {text!r} within {timeout:g} s in: {''.join(seen)!r}")


def stop_process(process: subprocess.Popen[Any], *, timeout: float = 10.0) -> None:
    """Stop what a test started, by its PID: SIGTERM, then SIGKILL."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


# -- servers on loopback --------------------------------------------------------------------


def cloud_serve_argv(port: int, db: Path, *options: str, host: str | None = None) -> list[str]:
    """``plugstream cloud serve`` on ``port`` with SQLite in ``db``, then ``options``: the
    one spelling of the cloud's command line that the tests start it with."""
    where = ["--host", host] if host is not None else []
    return [
        *[sys.executable, "-m", "plugstream.cli", "cloud", "serve", *where],
        *["--port", str(port), "--db", f"sqlite:///{db}", *options],
    ]


async def boot_and_heartbeat(ws: ClientConnection) -> None:
    """A 1.6 station on ``ws`` boots and gets its Heartbeat answered: how a test shows a
    legitimate station still served."""
    boot = {"chargePointVendor": "PlugStream", "chargePointModel": "Test"}
    await ws.send(orjson.dumps([2, "b1", "BootNotification", boot]).decode())
    assert orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))[:2] == [3, "b1"]
    await ws.send(orjson.dumps([2, "h1", "Heartbeat", {}]).decode())
    answer = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
    assert answer[:2] == [3, "h1"] and "currentTime" in answer[2]


@contextlib.asynccontextmanager
async def booted16(url: str) -> AsyncIterator[ClientConnection]:
    """A raw 1.6 station connected to ``url`` (the cloud's /ocpp/<id>), booted and
    Accepted: how a test shows a 2.0.1-only feature refused to a 1.6 station."""
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    async with connect(url, subprotocols=[Subprotocol("ocpp1.6")]) as ws:
        boot = {"chargePointVendor": "PlugStream", "chargePointModel": "Test"}
        await ws.send(orjson.dumps([2, "b1", "BootNotification", boot]).decode())
        assert orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))[2]["status"] == "Accepted"
        yield ws


def count_reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The database reads of ``store`` from now on, counted in the list's one item: how a
    test tells an answer from a cache from one that cost a read."""
    reads = [0]
    read = store.db.read

    async def counted(fn: Any) -> Any:
        reads[0] += 1
        return await read(fn)

    monkeypatch.setattr(store.db, "read", counted)
    return reads


def free_port() -> int:
    """A loopback TCP port nobody listens on (bound, then released), for a subprocess to
    bind or for a connection to be refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def basic_auth(user: str, password: str) -> dict[str, str]:
    """The HTTP Basic ``Authorization`` header a station logs in with."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@contextlib.asynccontextmanager
async def serving(server: uvicorn.Server) -> AsyncIterator[asyncio.Task[None]]:
    """``server.serve()`` as a task for the body, once it is listening; stopped after."""
    task = asyncio.create_task(server.serve())
    try:
        await until(lambda: server.started or task.done(), "the server listening")
        if not server.started:
            raise AssertionError("the server stopped before it was listening")
        yield task
    finally:  # awaiting the task raises what stopped it, if anything did
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)


@dataclass
class Cloud:
    """A PlugStream Cloud in this process (:func:`running_cloud`)."""

    config: CloudConfig
    port: int
    store: Store
    gateway: Gateway
    server: uvicorn.Server  # its server_state: the connections being served

    def url(self, station_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp/{station_id}"


@contextlib.asynccontextmanager
async def running_cloud(
    tmp_path: Path, *, clock: Callable[[], datetime] | None = None, **overrides: Any
) -> AsyncIterator[Cloud]:
    """The app ``plugstream cloud serve`` runs, on a loopback port with SQLite in
    ``tmp_path``; ``overrides`` are CloudConfig fields, ``clock`` the cloud's wall clock."""
    from plugstream.cloud.app import create_app
    from plugstream.cloud.config import CloudConfig
    from plugstream.cloud.serve import CloudServer, bound_port, uvicorn_config

    config = replace(
        CloudConfig(
            host="127.0.0.1",
            port=0,
            db=f"sqlite:///{tmp_path / 'cloud.db'}",
            ping_interval=5.0,
            ping_timeout=10.0,
            call_timeout=5.0,
        ),
        **overrides,
    )
    app = create_app(config, clock=clock)
    server = CloudServer(uvicorn_config(config, app))
    async with serving(server):
        yield Cloud(config, bound_port(server, 0), app.state.store, app.state.gateway, server)


__all__ = [
    "POLL",
    "WAIT",
    "Cloud",
    "basic_auth",
    "boot_and_heartbeat",
    "booted16",
    "cloud_serve_argv",
    "count_reads",
    "free_port",
    "read_until",
    "running",
    "running_cloud",
    "serving",
    "stop_process",
    "until",
    "until_advancing",
    "until_sync",
]


#: heartbeats a wall-clock interval check spans (see :func:`assert_every`)
HEARTBEATS_TIMED = 4


def assert_every(times: list[float], interval: float, what: str) -> None:
    """A station process (wall time) sends ``what`` every ``interval`` s: the mean spacing
    of ``times`` (arrivals, the first the message the timer started from) is within
    -0.5/+1.0 s of it. The mean of several gaps, not one: a message held up by a loaded
    machine shortens the gap after it by as much, which a mean over four divides."""
    assert len(times) >= HEARTBEATS_TIMED + 1, times
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(times)]
    mean = (times[-1] - times[0]) / len(gaps)
    assert interval - 0.5 <= mean <= interval + 1.0, (
        f"{what} every {mean:.2f} s on average, not {interval:g} s (gaps {gaps})"
    )
