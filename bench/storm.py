"""Reconnect storm: N stations connect at once to PlugStream Cloud, one worker against two.

What it measures (issue "bench/storm.py"), on loopback, with the cloud
(``plugstream cloud serve``) in its own process tree and the stations in another (this
file run as ``bench/storm.py --generate``, a lean load generator in the manner of
``bench/loadgen.py``: plain ``websockets`` clients, hand-made OCPP 1.6J frames), for each
of ``--workers`` (``1,2``), one run after the other in one invocation:

* a fresh database for each run: in the cluster configuration (the default, ``--mode
  cluster``) a new PostgreSQL database on ``--pg`` that the bench creates, migrates
  (``plugstream cloud migrate``) and drops, with ``--bus`` ``--nats``; ``--mode sqlite``
  (no bus, one worker only) is for developing the bench;
* the stations are the network's own: registered once, through the REST API of a cloud
  started for that, at security profile 0 (no password to hash), in a template database
  that each run's database is a copy of; each run's cloud starts cold on its copy, so
  the storm meets a cloud whose stations are known: a restart of the whole cloud
  (``--admission auto``: unknown stations registered on first sight instead, with
  ``--auto-register-unsecured``: a first contact). In the cluster mode each run is a
  cluster of its own on the bus (``--cluster``, where the cloud offers it);
* the **storm**: all ``--stations`` (10,000) connect at once, each from its own loopback
  source address (127.16.0.0/12 and up: stations are not one host, and the cloud limits
  connections per source address), and send BootNotification, and once it is Accepted a
  StatusNotification and a Heartbeat. A station whose connect fails or is refused
  retries after OCPP's reconnect back-off (RetryBackOffWaitMinimum x 2^n + a random
  RetryBackOffRandomRange, OCPP 2.0.1 part 4 section 5.3; 3 s, 10 s and 5 doublings as
  our stations' defaults): a retry, not a loss. A boot not Accepted is a rejection (it
  boots again after the interval handed out). The storm ends when every station has its
  Heartbeat answered; its time, the retries (by kind), rejections (boot status, HTTP
  refusals), errors (CALLERRORs, timeouts) and stations lost (none heartbeating within
  ``--storm-budget``: a bench error) are reported;
* a **steady window** after it: ``--warmup`` (5) s uncounted, then ``--window`` (20) s
  in which every station loops MeterValues (10 sampled values) with every 10th message a
  Heartbeat, each awaited until its CALLRESULT (closed loop, as ``loadgen.py --max``);
  messages per second from each station's cycle time in the window (its answers - 1
  over the span from its first to its last: with thousands of stations in flight a round
  trip takes seconds, and a cloud that batches its writes answers them in lockstep, so
  the answers counted in a window come in whole rounds; that count per second is printed
  too, and the answers per station: fewer than 3 is too short a window), latency p50 /
  p99 (send to CALLRESULT);
* all along: the cloud's RSS (VmRSS summed over its process tree, the supervisor and its
  workers, sampled every 0.25 s: the peak) and each process's VmHWM; the CPU (utime +
  stime from ``/proc``) of the cloud's tree, of the load generator, of the PostgreSQL
  and NATS servers (their processes by name: whoever else uses them counts too) and of
  the whole machine (``/proc/stat``; what is left is anything else running), in cores,
  in the storm and in the window.

Goals (issue): all 10,000 stations booted and heartbeating within 15 s, none rejected or
lost; ``--workers 2`` carrying at least 1.5 times the messages per second of one worker.
The load generator shares the machine's cores with the cloud: its share is printed.

Run it from the repository root (PostgreSQL and NATS on loopback for the cluster mode:
``--pg`` / ``--nats``, or PLUGSTREAM_TEST_POSTGRES / PLUGSTREAM_TEST_NATS):

    python bench/storm.py                              # 10,000 stations, 1 and 2 workers
    python bench/storm.py --stations 2000 --window 10
    python bench/storm.py --quick                      # ~1 min smoke run (200 stations)
    python bench/storm.py --mode sqlite --workers 1    # no PostgreSQL, no NATS
    python bench/storm.py --cloud-args="--max-pending-handshakes 5000"

It prints a table, then as its last line one JSON object (``runs`` by workers,
``ratio``, ``goals``, ``meets_goals``, ...). Every process it starts is stopped by its
PID (SIGTERM, then SIGKILL), the cloud's workers too; the database it made is dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import platform
import queue
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from loadgen import (
    CALL_TIMEOUT,
    HEARTBEAT_EVERY,
    POOL,
    SUBPROTOCOL,
    CallFailed,
    Clock,
    boot_frame,
    call,
    check_loopback,
    ms,
    percentile,
    sampled_value_pool,
    status_frame,
)
from procs import (
    CLOUD_READY,
    HOST,
    ROOT,
    BenchError,
    commit,
    cpu_seconds,
    dist_version,
    free_port,
    last_json,
    launch,
    peak_rss_kb,
    print_summary,
    raise_nofile,
    rss_kb,
    stop_pid,
    tail,
    tree,
)

HERE: Final = Path(__file__).resolve().parent

GOAL_STATIONS: Final = 10_000
GOAL_STORM_S: Final = 15.0
GOAL_RATIO: Final = 1.5  # msgs/s of 2 workers over 1 worker's

DEFAULT_PG: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_NATS: Final = "nats://127.0.0.1:4222"
API_TOKEN: Final = "storm-bench-token"
TOKEN_ENV: Final = {"PLUGSTREAM_API_TOKEN": API_TOKEN}
PREFIX: Final = "STORM"
SOURCE_BASE: Final = ipaddress.IPv4Address("127.16.0.0")  # the stations' source addresses

OPEN_TIMEOUT: Final = 30.0  # s a station waits for its WebSocket handshake
MAX_TRIES: Final = 100  # connects, boots, Heartbeats of one station in the storm, at most
MIN_ROUNDS: Final = 3  # answers per station in the window, at least, for a steady figure
MAX_MESSAGES: Final = 10_000_000  # of one station in the window, at most (time bounds it first)
CLOUD_STOP_TIMEOUT: Final = 30.0  # s between SIGTERM and SIGKILL: 10,000 sockets to close
STOP_TIMEOUT_CHILD: Final = 10.0  # s for a worker left behind, after SIGTERM and SIGKILL
SAMPLE_EVERY: Final = 0.25  # s between RSS samples
EVENT_SLACK: Final = 60.0  # s beyond a phase's own bound before the bench gives up on it


# === the load generator: python bench/storm.py --generate ... ========================


def source_address(index: int, per_address: int) -> str:
    """The loopback address station ``index`` connects from (``per_address`` a site)."""
    return str(SOURCE_BASE + 1 + index // per_address)


@dataclass(slots=True)
class Tally:
    """What the storm's stations met, by kind; and when each was up."""

    attempts: int = 0  # connection attempts
    retries: dict[str, int] = field(default_factory=dict)  # failed attempts and drops
    refusals: dict[str, int] = field(default_factory=dict)  # HTTP status on the upgrade
    rejections: dict[str, int] = field(default_factory=dict)  # boot status not Accepted
    errors: dict[str, int] = field(default_factory=dict)  # CALLERRORs, timeouts, bad frames
    # s from the storm's start, by station: its first connection, boot, Heartbeat answered
    connected_at: dict[int, float] = field(default_factory=dict)
    booted_at: dict[int, float] = field(default_factory=dict)
    beat_at: dict[int, float] = field(default_factory=dict)
    intervals: set[int] = field(default_factory=set)  # heartbeat intervals handed out

    @staticmethod
    def add(kinds: dict[str, int], kind: str) -> None:
        kind = kind[:100]
        kinds[kind] = kinds.get(kind, 0) + 1


@dataclass(slots=True)
class Storm:
    """The generator's settings and shared state."""

    url: str
    stations: int
    per_address: int
    backoff_min: float
    backoff_range: float
    backoff_repeat: int
    spread: float
    budget: float
    clock: Clock
    tally: Tally = field(default_factory=Tally)
    t0: float = 0.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """OCPP 2.0.1 part 4 section 5.3: the wait before reconnect ``attempt`` (0-based)."""
        base = self.backoff_min * (1 << min(attempt, self.backoff_repeat))
        return base + rng.uniform(0.0, self.backoff_range)


async def boot_and_beat(ws: ClientConnection, index: int, storm: Storm) -> None:
    """BootNotification until Accepted, then a StatusNotification and a Heartbeat."""
    tally, perf = storm.tally, time.perf_counter
    for n in range(1, MAX_TRIES + 1):
        async with asyncio.timeout(CALL_TIMEOUT):
            reply = await call(ws, f"b{n}", boot_frame(f"b{n}", index))
        frame = orjson.loads(reply)
        payload = frame[2] if isinstance(frame, list) and len(frame) > 2 else None
        status = payload.get("status") if isinstance(payload, dict) else None
        interval = payload.get("interval") if isinstance(payload, dict) else None
        if status == "Accepted":
            if isinstance(interval, int):
                tally.intervals.add(interval)
            break
        tally.add(tally.rejections, f"boot {status}")
        wait = float(interval) if isinstance(interval, int | float) and interval > 0 else 10.0
        await asyncio.sleep(wait)  # the storm's budget bounds it
    else:
        raise CallFailed(f"boot not Accepted in {MAX_TRIES} tries")
    tally.booted_at.setdefault(index, perf() - storm.t0)
    try:
        async with asyncio.timeout(CALL_TIMEOUT):
            await call(ws, "s", status_frame("s", storm.clock))
    except CallFailed as exc:  # answered, with an error: the station carries on
        tally.add(tally.errors, f"StatusNotification: {exc}")
    for n in range(1, MAX_TRIES + 1):
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                await call(ws, f"h{n}", f'[2,"h{n}","Heartbeat",{{}}]')
            break
        except CallFailed as exc:
            tally.add(tally.errors, f"Heartbeat: {exc}")
            await asyncio.sleep(1.0)
    else:
        raise CallFailed(f"Heartbeat not answered in {MAX_TRIES} tries")
    tally.beat_at[index] = perf() - storm.t0


async def storm_station(
    index: int, storm: Storm, rng: random.Random, station_id: str
) -> ClientConnection | None:
    """One station through the storm: connected, booted, heartbeating; its connection.
    Failures back off and retry until the budget (the caller cancels it then), at most
    MAX_TRIES times (then None: a station lost)."""
    tally, perf = storm.tally, time.perf_counter
    if storm.spread > 0:
        await asyncio.sleep(rng.uniform(0.0, storm.spread))
    local = (source_address(index, storm.per_address), 0)
    for failures in range(MAX_TRIES):
        tally.attempts += 1
        ws: ClientConnection | None = None
        try:
            ws = await connect(
                f"{storm.url}/{station_id}",
                subprotocols=[SUBPROTOCOL],
                compression=None,
                proxy=None,
                ping_interval=None,  # the CSMS pings; the library answers by itself
                open_timeout=OPEN_TIMEOUT,
                close_timeout=2,
                max_queue=4,
                local_addr=local,
            )
            tally.connected_at.setdefault(index, perf() - storm.t0)
            if ws.subprotocol != SUBPROTOCOL:
                raise CallFailed(f"subprotocol {ws.subprotocol!r}")
            await boot_and_beat(ws, index, storm)
            return ws
        except InvalidStatus as exc:  # an HTTP answer to the upgrade: a refusal
            tally.add(tally.refusals, f"HTTP {exc.response.status_code}")
        except ConnectionClosed as exc:  # closed by the server: the station reconnects
            code = exc.rcvd.code if exc.rcvd else "-"
            if ws is None:  # before its upgrade request was sent
                tally.add(tally.retries, "closed in the handshake")
            else:
                tally.add(tally.retries, f"dropped after open ({code})")
        except TimeoutError:
            if ws is None:
                tally.add(tally.retries, "open timeout")
            else:
                tally.add(tally.errors, "call timeout")
        except CallFailed as exc:
            tally.add(tally.errors, str(exc))
        except (OSError, WebSocketException) as exc:
            tally.add(tally.retries, f"{type(exc).__name__}: {exc}")
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2)
        await asyncio.sleep(storm.backoff(failures, rng))
    tally.add(tally.errors, f"gave up after {MAX_TRIES} attempts")
    return None


def meter_values(message_id: str, clock: Clock, energy: float, sampled: str) -> str:
    """``loadgen.py``'s MeterValues: the energy register and 9 more sampled values."""
    return (
        f'[2,"{message_id}","MeterValues",{{"connectorId":1,"meterValue":[{{'
        f'"timestamp":"{clock.text}","sampledValue":[{{"value":"{energy:.1f}",'
        '"context":"Sample.Periodic","measurand":"Energy.Active.Import.Register",'
        f'"location":"Outlet","unit":"Wh"}},{sampled}]}}]}}]'
    )


@dataclass(slots=True)
class Window:
    start: float = 0.0
    measure_from: float = 0.0
    measure_to: float = 0.0
    started: asyncio.Event = field(default_factory=asyncio.Event)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    answered: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    cycle_rates: array[float] = field(default_factory=lambda: array("d"))  # per station
    least: int = MAX_MESSAGES  # the fewest answers one station had in the window

    def msgs_per_s(self) -> float:
        """Messages per second from each station's cycle time: (answers - 1) over the span
        from its first answer in the window to its last, summed over the stations.

        A closed loop against a server that batches its writes moves in lockstep (all
        stations answered together, one round every few seconds with thousands of
        stations), so the answers counted in a fixed window come in whole rounds: +-1
        round per station, a quarter of the figure at 4 rounds. The cycle time does not
        depend on where the window's edges fall."""
        return sum(self.cycle_rates)


async def steady_station(
    ws: ClientConnection, window: Window, clock: Clock, pool: list[str], rng: random.Random
) -> None:
    """MeterValues, and every 10th a Heartbeat, as fast as answers come (closed loop)."""
    perf = time.perf_counter
    energy = rng.uniform(1e5, 9e6)  # Wh; the register only grows
    pick = rng.randrange(POOL)
    seq = answers = 0
    first = last = 0.0
    await window.started.wait()
    try:
        while perf() < window.measure_to and seq < MAX_MESSAGES:
            seq += 1
            message_id = f"m{seq}"
            if seq % HEARTBEAT_EVERY == 0:
                text = f'[2,"{message_id}","Heartbeat",{{}}]'
            else:
                energy += rng.uniform(0.5, 6.0)
                pick = (pick + 1) % POOL
                text = meter_values(message_id, clock, energy, pool[pick])
            sent = perf()
            async with asyncio.timeout(CALL_TIMEOUT):
                await call(ws, message_id, text)
            done = perf()
            # answers that arrive in the window count, whenever sent: with 10,000 stations
            # a round trip takes seconds, and counting only those sent in it too would miss
            # one per station at each end
            if window.measure_from <= done <= window.measure_to:
                window.latencies.append(done - sent)
                window.answered += 1
                answers += 1
                if answers == 1:
                    first = done
                last = done
    finally:
        window.least = min(window.least, answers)
        if answers >= 2:
            window.cycle_rates.append((answers - 1) / (last - first))
        elif answers == 1:  # a cycle as long as the window, at least
            window.cycle_rates.append(1.0 / (window.measure_to - window.measure_from))


def event(name: str, **figures: Any) -> None:
    """One line for the bench, which reads the cloud's CPU and RSS when it arrives."""
    print(json.dumps({"event": name, **figures}, separators=(",", ":")), flush=True)


def spread_figures(times: dict[int, float]) -> dict[str, float | None]:
    ordered = sorted(times.values())
    return {
        "p50_s": round(percentile(ordered, 0.5), 3) if ordered else None,
        "p90_s": round(percentile(ordered, 0.9), 3) if ordered else None,
        "last_s": round(ordered[-1], 3) if ordered else None,
    }


async def generate(args: argparse.Namespace) -> dict[str, Any]:
    clock = Clock()
    ticker = asyncio.ensure_future(clock.tick())
    rng = random.Random(args.seed)
    pool = sampled_value_pool(rng)
    storm = Storm(
        url=args.url,
        stations=args.stations,
        per_address=args.per_address,
        backoff_min=args.backoff_min,
        backoff_range=args.backoff_range,
        backoff_repeat=args.backoff_repeat,
        spread=args.spread,
        budget=args.storm_budget,
        clock=clock,
    )
    tally = storm.tally
    ids = [f"{args.prefix}{i:05d}" for i in range(args.stations)]
    rngs = [random.Random(rng.getrandbits(64)) for _ in range(args.stations)]
    event("ready", stations=args.stations)
    storm.t0 = time.perf_counter()
    cpu0 = time.process_time()
    tasks = [
        asyncio.ensure_future(storm_station(i, storm, rngs[i], ids[i]))
        for i in range(args.stations)
    ]
    done, pending = await asyncio.wait(tasks, timeout=args.storm_budget)
    storm_s = time.perf_counter() - storm.t0
    storm_cpu = time.process_time() - cpu0
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=10)
    connections: list[ClientConnection] = []
    for task in done:
        exc = None if task.cancelled() else task.exception()
        if exc is not None:  # a bug of the generator's, or an answer it cannot read
            tally.add(tally.errors, f"station: {type(exc).__name__}: {exc}")
        elif not task.cancelled() and (ws := task.result()) is not None:
            connections.append(ws)
    complete = len(connections) == args.stations
    storm_figures = {
        "stations": args.stations,
        "complete": complete,
        "heartbeating": len(tally.beat_at),
        "booted": len(tally.booted_at),
        "lost": args.stations - len(connections),
        "seconds": round(max(tally.beat_at.values()) if complete else storm_s, 3),
        "booted_s": spread_figures(tally.booted_at),
        "heartbeat_s": spread_figures(tally.beat_at),
        "connected_first_s": spread_figures(tally.connected_at),
        "attempts": tally.attempts,
        "retries": sum(tally.retries.values()) + sum(tally.refusals.values()),
        "retry_kinds": dict(sorted(tally.retries.items(), key=lambda kv: -kv[1])[:10]),
        "refused_http": dict(sorted(tally.refusals.items())),
        "rejected": sum(tally.refusals.values()) + sum(tally.rejections.values()),
        "boot_rejections": dict(sorted(tally.rejections.items())),
        "errors": sum(tally.errors.values()),
        "error_kinds": dict(sorted(tally.errors.items(), key=lambda kv: -kv[1])[:10]),
        "heartbeat_intervals": sorted(tally.intervals),
        "generator_cpu_s": round(storm_cpu, 2),
    }
    event("storm", **storm_figures)
    window_figures: dict[str, Any] | None = None
    if complete:
        window = Window()
        tasks = [
            asyncio.ensure_future(
                steady_station(ws, window, clock, pool, random.Random(rng.getrandbits(64)))
            )
            for ws in connections
        ]
        await asyncio.sleep(0)  # every station waits on the start
        window.start = time.perf_counter()
        window.measure_from = window.start + args.warmup
        window.measure_to = window.measure_from + args.window
        window.started.set()
        await asyncio.sleep(args.warmup)
        event("window-start")
        cpu1 = time.process_time()
        await asyncio.sleep(max(0.0, window.measure_to - time.perf_counter()))
        cpu2 = time.process_time()
        event("window-end")
        done, pending = await asyncio.wait(tasks, timeout=CALL_TIMEOUT + 5)
        for task in pending:
            task.cancel()
            Tally.add(window.errors, "station: over the time budget")
        for task in done:
            exc = task.exception()
            if exc is not None:
                Tally.add(window.errors, f"{type(exc).__name__}: {exc}")
        lat = sorted(window.latencies)
        window_figures = {
            "seconds": args.window,
            "warmup": args.warmup,
            "stations": len(connections),
            "messages": window.answered,
            "msgs_per_s": round(window.msgs_per_s(), 1),  # from the cycle times
            "answered_per_s": round(window.answered / args.window, 1),  # counted in it
            "per_station": round(window.answered / len(connections), 2),  # answers each
            "least_per_station": window.least,
            "p50_ms": ms(percentile(lat, 0.50)),
            "p99_ms": ms(percentile(lat, 0.99)),
            "max_ms": ms(lat[-1]) if lat else None,
            "errors": sum(window.errors.values()),
            "error_kinds": dict(sorted(window.errors.items(), key=lambda kv: -kv[1])[:10]),
            "generator_cpu_s": round(cpu2 - cpu1, 2),
        }
    closing = [asyncio.ensure_future(ws.close()) for ws in connections]
    if closing:
        await asyncio.wait(closing, timeout=10)
    ticker.cancel()
    return {"storm": storm_figures, "window": window_figures, "pid": os.getpid()}


def generator_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="storm.py --generate")
    parser.add_argument("--url", required=True, help="ws://127.0.0.1:PORT/ocpp")
    parser.add_argument("--stations", type=int, required=True)
    parser.add_argument("--window", type=float, required=True)
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--storm-budget", type=float, required=True)
    parser.add_argument("--per-address", type=int, default=1)
    parser.add_argument("--spread", type=float, default=0.0)
    parser.add_argument("--backoff-min", type=float, default=3.0)
    parser.add_argument("--backoff-range", type=float, default=10.0)
    parser.add_argument("--backoff-repeat", type=int, default=5)
    parser.add_argument("--prefix", default=PREFIX)
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args(argv)
    check_loopback(args.url)
    args.url = args.url.rstrip("/")
    nofile = raise_nofile(args.stations + 256)
    if nofile < args.stations + 64:
        parser.error(f"RLIMIT_NOFILE is {nofile}: too low for {args.stations} connections")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped: unwind, exit
    try:
        import uvloop  # the cloud's loop: the lighter the stations, the more CPU is left
    except ImportError:
        summary = asyncio.run(generate(args))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            summary = runner.run(generate(args))
    return print_summary(summary)


# === the bench ==========================================================================


def check_local(url: str, what: str) -> None:
    """PostgreSQL and NATS must be on this host: the bench sends nothing elsewhere."""
    host = urlsplit(url).hostname
    if host in (None, "", "localhost"):
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise BenchError(f"{what} must be on loopback, not {host!r}")


def _asyncpg_dsn(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _pg_execute(admin_url: str, sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    async def run() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def check_nats(url: str) -> None:
    """A TCP connect to NATS and its INFO line: fail now, not in the cloud's log."""
    import socket

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or HOST, parts.port or 4222), 5) as s:
            s.settimeout(5)
            if not s.recv(4096).startswith(b"INFO"):
                raise BenchError(f"NATS at {url} did not greet with INFO")
    except OSError as exc:
        raise BenchError(f"NATS at {url} is unreachable: {exc}") from exc


@dataclass(slots=True)
class Database:
    """A database of the bench's own: a new PostgreSQL database, or a SQLite file. The
    stations are registered once, in a template; each run gets a copy of it."""

    url: str
    admin_url: str | None = None  # PostgreSQL: where it is created and dropped from
    name: str = ""
    path: Path | None = None  # SQLite

    @classmethod
    def create(
        cls, args: argparse.Namespace, workdir: Path, key: str, template: Database | None = None
    ) -> Database:
        """An empty database at this code's schema, or a copy of ``template``."""
        if args.mode == "sqlite":
            path = workdir / f"{key}.db"
            if template is not None and template.path is not None:
                for part in template.path.parent.glob(template.path.name + "*"):  # WAL too
                    shutil.copyfile(
                        part, path.parent / part.name.replace(template.path.name, path.name)
                    )
            return cls(f"sqlite:///{path}", path=path)  # the cloud migrates SQLite itself
        from sqlalchemy.engine import make_url

        name = f"plugstream_storm_{os.getpid()}_{key}"
        url = make_url(args.pg).set(database=name).render_as_string(hide_password=False)
        db = cls(url, args.pg, name)
        copy = f' TEMPLATE "{template.name}"' if template is not None else ""
        try:
            _pg_execute(args.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for attempt in range(20):  # the template's last sessions may still be closing
                try:
                    _pg_execute(args.pg, f'CREATE DATABASE "{name}"{copy}')
                    break
                except Exception as exc:
                    if not copy or "being accessed" not in str(exc) or attempt == 19:
                        raise
                    time.sleep(0.5)
        except Exception as exc:
            raise BenchError(f"PostgreSQL at {args.pg_shown}: {exc!r}") from exc
        if template is not None:
            return db
        try:
            done = subprocess.run(
                [sys.executable, "-m", "plugstream.cli", "cloud", "migrate", "--db", url],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=120,
            )
        except subprocess.TimeoutExpired as exc:
            db.drop()
            raise BenchError("plugstream cloud migrate took over 120 s") from exc
        if done.returncode != 0:
            db.drop()
            raise BenchError(f"plugstream cloud migrate failed:\n{done.stderr[-2000:]}")
        return db

    def drop(self) -> None:
        if self.admin_url is not None:
            with contextlib.suppress(Exception):
                _pg_execute(self.admin_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        elif self.path is not None:
            for part in self.path.parent.glob(self.path.name + "*"):
                part.unlink(missing_ok=True)


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (its start time): a PID is the same process only if this
    is the same too."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[19]


@dataclass(slots=True)
class Cloud:
    """``plugstream cloud serve`` with its workers, started and stopped by PID."""

    argv: list[str]
    port: int
    log: Path
    label: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/ocpp"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.proc = launch(self.argv, self.log, CLOUD_READY, self.label, env=TOKEN_ENV)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 20) -> str:
        return tail(self.log, lines)

    def stop(self) -> None:
        """SIGTERM to the cloud, SIGKILL after CLOUD_STOP_TIMEOUT; then any of its
        descendants still there (a worker it did not reap), each by its PID."""
        if self.proc is None:
            return
        family = [(p, _start_time(p)) for p in tree(self.proc.pid)[1:]]
        stop_pid(self.proc, CLOUD_STOP_TIMEOUT)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = [(p, s) for p, s in family if s is not None and _start_time(p) == s]
            for pid, _ in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if not left:
                break
            deadline = time.monotonic() + STOP_TIMEOUT_CHILD
            while time.monotonic() < deadline and any(_start_time(p) == s for p, s in left):
                time.sleep(0.1)
        self.proc = None


def cloud_offers(option: str) -> bool:
    """Whether ``plugstream cloud serve --help`` lists ``option`` (the cloud is changing)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            [sys.executable, "-m", "plugstream.cli", "cloud", "serve", "--help"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=dict(os.environ, COLUMNS="300", NO_COLOR="1", TERM="dumb"),
            timeout=60,
        )
        return option in done.stdout.split()
    return False


def cloud_argv(
    args: argparse.Namespace, port: int, db: Database, workers: int, name: str
) -> list[str]:
    argv = [sys.executable, "-m", "plugstream.cli", "cloud", "serve", "--host", HOST]
    argv += ["--port", str(port), "--db", db.url, "--workers", str(workers)]
    argv += ["--heartbeat-interval", str(args.heartbeat_interval)]
    if args.mode == "cluster":
        argv += ["--bus", args.nats, "--node-id", f"storm-{name}"]
        if args.cluster_option:  # a cluster of its own on a NATS that others may share
            argv += ["--cluster", f"storm-{os.getpid()}-{name}"]
    if args.admission == "auto":
        argv.append("--auto-register-unsecured")
    return argv + shlex.split(args.cloud_args)


async def _register(cloud: Cloud, ids: list[str], concurrency: int) -> None:
    import httpx

    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    base = f"http://{HOST}:{cloud.port}/api/v1"
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as c:

        async def one(station_id: str) -> None:
            async with gate:
                response = await c.put(f"/stations/{station_id}", json={"security_profile": 0})
                if response.status_code not in (200, 201):
                    raise BenchError(
                        f"PUT /stations/{station_id}: {response.status_code} {response.text[:200]}"
                    )

        await asyncio.gather(*(one(s) for s in ids))


def register(cloud: Cloud, ids: list[str], concurrency: int = 16) -> None:
    """Register every station at security profile 0 through the REST API."""
    try:
        asyncio.run(_register(cloud, ids, concurrency))
    except OSError as exc:  # httpx's transport errors are not OSErrors; both end here
        raise BenchError(f"registering the stations failed: {exc!r}") from exc
    except Exception as exc:
        if isinstance(exc, BenchError):
            raise
        raise BenchError(f"registering the stations failed: {exc!r}") from exc


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores; /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


SERVICES: Final = {"postgres": "database", "nats-server": "bus"}
"""The shared servers of the cluster mode, by process name: not started by the bench and
shared with whatever else uses them, but their CPU is the cloud's work too."""


def services_cpu_s() -> dict[str, dict[int, float]]:
    """CPU seconds of every process named in SERVICES, by PID (read from /proc only)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, dict[int, float]] = {name: {} for name in SERVICES}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        if name in out:
            fields = stat[stat.rindex(")") + 2 :].split()
            out[name][int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


@dataclass(slots=True)
class Snapshot:
    at: float
    cloud_cpu: float
    generator_cpu: float
    machine_cpu: float
    services: dict[str, dict[int, float]]


def snapshot(cloud: Cloud, generator: subprocess.Popen[bytes]) -> Snapshot:
    return Snapshot(
        time.monotonic(),
        cpu_seconds(cloud.pid),
        cpu_seconds(generator.pid),
        machine_busy_s(),
        services_cpu_s(),
    )


def cores(a: Snapshot, b: Snapshot) -> dict[str, float]:
    """Cores each used between two snapshots (CPU seconds over wall seconds). A service's
    process started in between counts from its start; one that ended is missed."""
    wall = max(b.at - a.at, 1e-9)
    out = {
        "seconds": round(wall, 2),
        "cloud_cores": round((b.cloud_cpu - a.cloud_cpu) / wall, 3),
        "generator_cores": round((b.generator_cpu - a.generator_cpu) / wall, 3),
    }
    for name, role in SERVICES.items():
        before = a.services.get(name, {})
        used = sum(cpu - before.get(pid, 0.0) for pid, cpu in b.services.get(name, {}).items())
        out[f"{role}_cores"] = round(max(used, 0.0) / wall, 3)
    out["machine_cores"] = round((b.machine_cpu - a.machine_cpu) / wall, 3)
    ours = sum(out[k] for k in out if k.endswith("_cores") and k != "machine_cores")
    out["other_cores"] = round(max(out["machine_cores"] - ours, 0.0), 3)  # anything else
    return out


class Sampler(threading.Thread):
    """The cloud's RSS (its process tree) every SAMPLE_EVERY s, and each process's VmHWM;
    the load generator's too."""

    def __init__(self, cloud_pid: int) -> None:
        super().__init__(daemon=True)
        self.cloud_pid = cloud_pid
        self.generator_pid: int | None = None
        self.peak_kb = 0
        self.hwm_kb: dict[int, int] = {}
        self.processes = 0
        self.generator_peak_kb = 0
        self.done = threading.Event()

    def sample(self) -> None:
        with contextlib.suppress(OSError):
            pids = tree(self.cloud_pid)
            self.processes = max(self.processes, len(pids))
            self.peak_kb = max(self.peak_kb, rss_kb(self.cloud_pid))
            for pid in pids:
                with contextlib.suppress(OSError):
                    self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), peak_rss_kb(pid))
        if self.generator_pid is not None:
            with contextlib.suppress(OSError):
                self.generator_peak_kb = max(
                    self.generator_peak_kb, peak_rss_kb(self.generator_pid)
                )

    def run(self) -> None:
        while not self.done.wait(SAMPLE_EVERY):
            self.sample()

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=5)
        self.sample()


def read_lines(stream: IO[bytes], into: queue.Queue[str | None]) -> None:
    for raw in stream:
        into.put(raw.decode(errors="replace"))
    into.put(None)


@dataclass(slots=True)
class Run:
    workers: int
    label: str
    storm: dict[str, Any] = field(default_factory=dict)
    window: dict[str, Any] | None = None
    storm_cpu: dict[str, float] = field(default_factory=dict)
    window_cpu: dict[str, float] = field(default_factory=dict)
    rss_peak_kb: int = 0
    hwm_kb: dict[int, int] = field(default_factory=dict)
    cloud_processes: int = 0
    generator_peak_kb: int = 0
    cloud_pid: int = 0

    @property
    def msgs_per_s(self) -> float | None:
        return None if self.window is None else float(self.window["msgs_per_s"])


def generator_argv(args: argparse.Namespace, cloud: Cloud) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--generate", "--url", cloud.url]
    argv += ["--stations", str(args.stations), "--window", f"{args.window:g}"]
    argv += ["--warmup", f"{args.warmup:g}", "--storm-budget", f"{args.storm_budget:g}"]
    argv += ["--per-address", str(args.per_address), "--spread", f"{args.spread:g}"]
    argv += ["--backoff-min", f"{args.backoff_min:g}", "--backoff-range"]
    argv += [f"{args.backoff_range:g}", "--backoff-repeat", str(args.backoff_repeat)]
    return argv


def storm_run(cloud: Cloud, run: Run, args: argparse.Namespace, workdir: Path) -> None:
    """The load generator against a running cloud: the storm, then the window; the
    cloud's CPU and RSS read as the generator reports each phase."""
    sampler = Sampler(cloud.pid)
    sampler.start()
    err = workdir / f"generator-{run.workers}.err"
    snaps: dict[str, Snapshot] = {}
    lines: queue.Queue[str | None] = queue.Queue()
    result: dict[str, Any] | None = None
    out_lines: list[str] = []
    with err.open("wb") as errors:
        proc = subprocess.Popen(
            generator_argv(args, cloud),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        sampler.generator_pid = proc.pid
        assert proc.stdout is not None
        threading.Thread(target=read_lines, args=(proc.stdout, lines), daemon=True).start()
        bounds = {
            "ready": 60.0,
            "storm": args.storm_budget + EVENT_SLACK,
            "window-start": args.warmup + EVENT_SLACK,
            "window-end": args.window + EVENT_SLACK,
            "done": CALL_TIMEOUT + EVENT_SLACK,
        }
        expect = "ready"
        deadline = time.monotonic() + bounds[expect]
        while expect:
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{run.label}: the load generator said nothing of {expect!r} within "
                    f"{bounds[expect]:.0f} s:\n{err.read_text(errors='replace')[-2000:]}"
                )
            if not cloud.alive():
                raise BenchError(
                    f"{run.label}: the cloud died (the generator's next step: {expect}):\n"
                    f"{cloud.tail()}"
                )
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:  # the generator's stdout closed
                if proc.wait(timeout=30) != 0 or expect != "done":
                    raise BenchError(
                        f"{run.label}: the load generator exited ({proc.returncode}) before "
                        f"{expect!r}:\n{err.read_text(errors='replace')[-2000:]}"
                    )
                break
            out_lines.append(line)
            if not line.startswith('{"event":'):
                continue
            name = json.loads(line)["event"]
            snaps[name] = snapshot(cloud, proc)
            if name == "storm":
                run.storm = json.loads(line)
                run.storm.pop("event")
                report_storm(run)
                expect = "window-start" if run.storm["complete"] else "done"
            elif name == "ready":
                expect = "storm"
            elif name == "window-start":
                expect = "window-end"
            elif name == "window-end":
                expect = "done"
            deadline = time.monotonic() + bounds[expect]
        result = last_json("".join(out_lines))
    finally:
        stop_pid(proc, CLOUD_STOP_TIMEOUT)
        sampler.stop()
    run.rss_peak_kb, run.hwm_kb = sampler.peak_kb, dict(sampler.hwm_kb)
    run.cloud_processes, run.generator_peak_kb = sampler.processes, sampler.generator_peak_kb
    run.cloud_pid = cloud.pid
    if len(run.hwm_kb) > run.cloud_processes:
        print(
            f"    the cloud ran {len(run.hwm_kb)} processes, at most {run.cloud_processes} at "
            "once: one was replaced (a worker died?)",
            flush=True,
        )
    if result is None or "storm" not in result:
        raise BenchError(f"{run.label}: no result from the load generator")
    if not run.storm.get("complete"):
        s = run.storm
        raise BenchError(
            f"{run.label}: the storm did not end within --storm-budget {args.storm_budget:g} s: "
            f"{s['heartbeating']:,} of {s['stations']:,} heartbeating, {s['booted']:,} booted; "
            f"retries {s['retry_kinds']}, refused {s['refused_http']}, "
            f"boot rejections {s['boot_rejections']}, errors {s['error_kinds']}"
        )
    run.window = result["window"]
    run.storm_cpu = cores(snaps["ready"], snaps["storm"])
    run.window_cpu = cores(snaps["window-start"], snaps["window-end"])
    if run.window is not None and run.window["least_per_station"] < MIN_ROUNDS:
        print(
            f"    a station had {run.window['least_per_station']} answers in the window: "
            f"too few for a steady figure (a round trip takes about "
            f"{args.window / max(run.window['per_station'], 1e-9):.1f} s); lengthen --window",
            flush=True,
        )
    if run.window is not None:
        print(
            f"    window: {run.window['msgs_per_s']:,.0f} messages/s over {args.window:g} s, "
            f"p99 {_f(run.window['p99_ms'], '.0f')} ms, {run.window['errors']} errors; cloud "
            f"{run.window_cpu['cloud_cores']:.2f} cores, load generator "
            f"{run.window_cpu['generator_cores']:.2f}",
            flush=True,
        )


def report_storm(run: Run) -> None:
    s = run.storm
    print(
        f"    storm: {s['heartbeating']:,} of {s['stations']:,} heartbeating after "
        f"{s['seconds']:.1f} s; {s['retries']:,} retries, {s['rejected']} rejected, "
        f"{s['errors']} errors, {s['lost']} lost",
        flush=True,
    )


def registered(args: argparse.Namespace, workdir: Path) -> tuple[Database, float]:
    """The template database: every station registered at profile 0 through the REST API
    of a cloud started on it for that (one worker), then stopped; and the seconds it took."""
    print(f"registering {args.stations:,} stations in a template database", flush=True)
    db = Database.create(args, workdir, "template")
    try:
        port = free_port()
        argv, log = cloud_argv(args, port, db, 1, "reg"), workdir / "cloud-reg.log"
        cloud = Cloud(argv, port, log, "the cloud registering the stations")
        try:
            cloud.start()
            began = time.monotonic()
            register(cloud, [f"{PREFIX}{i:05d}" for i in range(args.stations)])
            took = time.monotonic() - began
        finally:
            cloud.stop()
    except BaseException:
        db.drop()
        raise
    print(f"    registered in {took:.1f} s", flush=True)
    return db, took


def measure(
    args: argparse.Namespace, workdir: Path, workers: int, template: Database | None
) -> Run:
    """One run: a fresh database (a copy of ``template``, the stations registered), a
    cold cloud, the storm and the window; everything it started stopped, its database
    dropped."""
    label = f"{workers} worker{'s' if workers > 1 else ''}"
    run = Run(workers, label)
    print(f"[{label}] {args.stations:,} stations, {args.mode} mode", flush=True)
    db = Database.create(args, workdir, f"{workers}w", template)
    try:
        port = free_port()
        log = workdir / f"cloud-{workers}.log"
        cloud = Cloud(cloud_argv(args, port, db, workers, f"{workers}w"), port, log, label)
        try:
            cloud.start()
            time.sleep(1.0)  # settled: its first seconds are not the storm's
            storm_run(cloud, run, args, workdir)
            if not cloud.alive():
                raise BenchError(f"{label}: the cloud died:\n{cloud.tail()}")
        finally:
            cloud.stop()
    finally:
        db.drop()
    return run


# --- report --------------------------------------------------------------------------


def _f(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def run_json(run: Run, ncpu: int) -> dict[str, Any]:
    gen_share = run.window_cpu.get("generator_cores")
    return {
        "workers": run.workers,
        "storm": run.storm,
        "storm_cpu": run.storm_cpu,
        "window": run.window,
        "window_cpu": run.window_cpu,
        "msgs_per_s": run.msgs_per_s,
        "generator_share_of_cpus_window": None if gen_share is None else round(gen_share / ncpu, 3),
        "generator_share_of_cpus_storm": (
            round(run.storm_cpu["generator_cores"] / ncpu, 3) if run.storm_cpu else None
        ),
        "cloud_rss_peak_kb": run.rss_peak_kb,
        "cloud_vmhwm_kb": {
            ("main" if pid == run.cloud_pid else str(pid)): kb for pid, kb in run.hwm_kb.items()
        },
        "cloud_vmhwm_sum_kb": sum(run.hwm_kb.values()),
        "cloud_processes": run.cloud_processes,  # at most at once
        "cloud_processes_seen": len(run.hwm_kb),  # more: a worker was replaced
        "generator_vmhwm_kb": run.generator_peak_kb,
    }


def report(runs: list[Run], args: argparse.Namespace, took: float) -> dict[str, Any]:
    ncpu = os.cpu_count() or 1
    by = {run.workers: run for run in runs}
    one, two = by.get(1), by.get(2)
    ratio = None
    if one and two and one.msgs_per_s and two.msgs_per_s is not None:
        ratio = two.msgs_per_s / one.msgs_per_s

    def row(name: str, get: Any) -> tuple[str, list[str]]:
        return name, [get(run) for run in runs]

    def pct(cores: float | None) -> str:
        return "-" if cores is None else f"{cores:.2f} ({100 * cores / ncpu:.0f}%)"

    rows = [
        row("stations heartbeating", lambda r: f"{r.storm['heartbeating']:,}"),
        row("storm: s until all heartbeating", lambda r: f"{r.storm['seconds']:.2f}"),
        row("  s until all booted", lambda r: _f(r.storm["booted_s"]["last_s"], ".2f")),
        row(
            "  heartbeat s p50 / p90",
            lambda r: (
                f"{_f(r.storm['heartbeat_s']['p50_s'], '.2f')} / "
                f"{_f(r.storm['heartbeat_s']['p90_s'], '.2f')}"
            ),
        ),
        row("  connect attempts", lambda r: f"{r.storm['attempts']:,}"),
        row("  retries (attempts failed/refused)", lambda r: f"{r.storm['retries']:,}"),
        row("  rejected (HTTP, boot)", lambda r: f"{r.storm['rejected']:,}"),
        row("  errors", lambda r: f"{r.storm['errors']:,}"),
        row("  lost", lambda r: f"{r.storm['lost']:,}"),
        row("  cloud cores (share)", lambda r: pct(r.storm_cpu.get("cloud_cores"))),
        row("  load generator cores (share)", lambda r: pct(r.storm_cpu.get("generator_cores"))),
        row("  PostgreSQL cores (all its users)", lambda r: pct(r.storm_cpu.get("database_cores"))),
        row("  NATS cores", lambda r: pct(r.storm_cpu.get("bus_cores"))),
        row("  machine busy cores", lambda r: pct(r.storm_cpu.get("machine_cores"))),
        row("    of which anything else", lambda r: pct(r.storm_cpu.get("other_cores"))),
        row("window: messages/s (cycle times)", lambda r: _f(r.msgs_per_s)),
        row("  answers in it / s", lambda r: _f((r.window or {}).get("answered_per_s"))),
        row(
            "  latency p50 / p99 ms",
            lambda r: (
                f"{_f((r.window or {}).get('p50_ms'), '.0f')} / "
                f"{_f((r.window or {}).get('p99_ms'), '.0f')}"
            ),
        ),
        row(
            "  answers per station (fewest)",
            lambda r: (
                f"{_f((r.window or {}).get('per_station'), '.1f')} "
                f"({(r.window or {}).get('least_per_station', '-')})"
            ),
        ),
        row("  errors", lambda r: str((r.window or {}).get("errors", "-"))),
        row("  cloud cores (share)", lambda r: pct(r.window_cpu.get("cloud_cores"))),
        row("  load generator cores (share)", lambda r: pct(r.window_cpu.get("generator_cores"))),
        row(
            "  PostgreSQL cores (all its users)", lambda r: pct(r.window_cpu.get("database_cores"))
        ),
        row("  NATS cores", lambda r: pct(r.window_cpu.get("bus_cores"))),
        row("  machine busy cores", lambda r: pct(r.window_cpu.get("machine_cores"))),
        row("    of which anything else", lambda r: pct(r.window_cpu.get("other_cores"))),
        row("cloud peak RSS MB (tree, sampled)", lambda r: f"{r.rss_peak_kb / 1024:,.0f}"),
        row("  sum of VmHWM MB (processes)", lambda r: f"{sum(r.hwm_kb.values()) / 1024:,.0f}"),
        row("  processes at once / seen", lambda r: f"{r.cloud_processes} / {len(r.hwm_kb)}"),
        row("load generator VmHWM MB", lambda r: f"{r.generator_peak_kb / 1024:,.0f}"),
    ]
    print()
    print(f"Reconnect storm against PlugStream Cloud, OCPP 1.6J on loopback, {args.mode} mode")
    where = f"PostgreSQL {args.pg_shown}, NATS {args.nats}" if args.mode == "cluster" else "SQLite"
    print(
        f"{platform.python_implementation()} {platform.python_version()}; {ncpu} CPUs (shared "
        f"by the cloud, the load generator, the database and the bus); {where}; websockets "
        f"{dist_version('websockets')}; admission: {args.admission}; {took:.0f} s in all"
    )
    print(
        f"{args.stations:,} stations at once, back-off {args.backoff_min:g} s x 2^n (n <= "
        f"{args.backoff_repeat}) + up to {args.backoff_range:g} s; then {args.warmup:g} s + "
        f"{args.window:g} s of MeterValues (every 10th a Heartbeat), closed loop"
    )
    print()
    width = max(len(name) for name, _ in rows) + 2
    head = f"{'':<{width}}" + "".join(f"{run.label:>20}" for run in runs)
    print(head)
    print("-" * len(head))
    for name, values in rows:
        print(f"{name:<{width}}" + "".join(f"{v:>20}" for v in values))
    print()

    full = args.stations >= GOAL_STATIONS
    goals: dict[str, bool | None] = {
        "storm_within_15s_at_10000": (
            all(r.storm["complete"] and r.storm["seconds"] <= GOAL_STORM_S for r in runs)
            if full
            else None
        ),
        "none_rejected_or_lost": all(
            r.storm["rejected"] == 0 and r.storm["lost"] == 0 for r in runs
        ),
        "two_workers_at_least_1_5x": None if ratio is None else ratio >= GOAL_RATIO,
    }
    meets = all(v is True for v in goals.values())
    ratio_text = "-" if ratio is None else f"{ratio:.2f}x"
    print(
        f"messages/s of 2 workers over 1 worker: {ratio_text} (goal >= {GOAL_RATIO:g}x); "
        f"storm goal: all {GOAL_STATIONS:,} heartbeating within {GOAL_STORM_S:g} s, none "
        "rejected or lost"
    )
    for name, ok in goals.items():
        verdict = "not evaluated" if ok is None else ("meets" if ok else "MISSES")
        print(f"  {name}: {verdict}")
    return {
        "bench": "storm",
        "mode": args.mode,
        "admission": args.admission,
        "stations": args.stations,
        "workers": [run.workers for run in runs],
        "runs": {str(run.workers): run_json(run, ncpu) for run in runs},
        "storm_s": {str(run.workers): run.storm["seconds"] for run in runs},
        "msgs_per_s": {str(run.workers): run.msgs_per_s for run in runs},
        "ratio": None if ratio is None else round(ratio, 3),
        "ratios_to_1_worker": {
            str(r.workers): round(r.msgs_per_s / one.msgs_per_s, 3)
            for r in runs
            if one and one.msgs_per_s and r.msgs_per_s is not None
        },
        "goals": {
            "stations": GOAL_STATIONS,
            "storm_s": GOAL_STORM_S,
            "ratio": GOAL_RATIO,
            "met": goals,
        },
        "meets_goals": meets,
        "full_size": full,
        "window": args.window,
        "warmup": args.warmup,
        "heartbeat_interval": args.heartbeat_interval,
        "backoff": {
            "min_s": args.backoff_min,
            "range_s": args.backoff_range,
            "repeat": args.backoff_repeat,
        },
        "per_address": args.per_address,
        "spread_s": args.spread,
        "register_s": None if args.register_s is None else round(args.register_s, 1),
        "cloud_args": args.cloud_args,
        "cpus": ncpu,
        "loadavg": {"start": round(args.load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "took_s": round(took, 1),
        "python": platform.python_version(),
        "commit": commit(),
        "versions": {d: dist_version(d) for d in ("websockets", "uvicorn", "asyncpg", "nats-py")},
    }


def parse_workers(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a comma-separated list of counts, not {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"worker counts are 1 or more, not {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--generate"]:
        return generator_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--stations", type=int, default=GOAL_STATIONS, help="(10000)")
    parser.add_argument(
        "--workers",
        type=parse_workers,
        default=None,
        help="worker counts to run, in order (1,2; sqlite mode: 1)",
    )
    parser.add_argument("--window", type=float, default=20.0, help="measured s after it (20)")
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="uncounted s first (5: a few round trips)"
    )
    parser.add_argument("--mode", choices=("cluster", "sqlite"), default="cluster")
    parser.add_argument(
        "--pg",
        default=os.environ.get("PLUGSTREAM_TEST_POSTGRES") or DEFAULT_PG,
        help="PostgreSQL server the run's databases are made on (PLUGSTREAM_TEST_POSTGRES)",
    )
    parser.add_argument(
        "--nats",
        default=os.environ.get("PLUGSTREAM_TEST_NATS") or DEFAULT_NATS,
        help="NATS URL of the cluster's bus (PLUGSTREAM_TEST_NATS)",
    )
    parser.add_argument(
        "--admission",
        choices=("registered", "auto"),
        default="registered",
        help="registered: at profile 0 through the API, then a cloud restart (a restart); "
        "auto: --auto-register-unsecured (a first contact)",
    )
    parser.add_argument(
        "--heartbeat-interval", type=int, default=60, help="handed out in Boot (60 s)"
    )
    parser.add_argument(
        "--storm-budget", type=float, default=180.0, help="s for all to heartbeat (180)"
    )
    parser.add_argument("--per-address", type=int, default=1, help="stations per source address")
    parser.add_argument(
        "--spread", type=float, default=0.0, help="first attempts spread over s (0: at once)"
    )
    parser.add_argument("--backoff-min", type=float, default=3.0, help="RetryBackOffWaitMinimum")
    parser.add_argument("--backoff-range", type=float, default=10.0, help="RetryBackOffRandomRange")
    parser.add_argument("--backoff-repeat", type=int, default=5, help="RetryBackOffRepeatTimes")
    parser.add_argument(
        "--cloud-args", default="", help='more options of cloud serve: --cloud-args="--opt value"'
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 stations, 5 s")
    parser.add_argument("--workdir", type=Path, help="where the temporary directory goes")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the temporary directory (cloud logs)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.stations = min(args.stations, 200)
        args.window, args.warmup = min(args.window, 5.0), min(args.warmup, 1.0)
        args.storm_budget = min(args.storm_budget, 120.0)
    if args.workers is None:
        args.workers = [1] if args.mode == "sqlite" else [1, 2]
    if args.stations < 1 or args.window <= 0 or args.warmup < 0 or args.storm_budget <= 0:
        parser.error("need --stations >= 1, --window > 0, --warmup >= 0, --storm-budget > 0")
    if args.per_address < 1 or args.stations // args.per_address > 1_000_000:
        parser.error("--per-address must be >= 1 (and the stations fit 127.16.0.0/12)")
    if args.mode == "sqlite" and max(args.workers) > 1:
        parser.error("--workers above 1 needs the cluster mode (PostgreSQL and NATS)")
    limit = raise_nofile(args.stations + 1024)  # inherited by the cloud and the generator
    if limit < args.stations + 512:
        parser.error(f"the open-files limit ({limit}) is too low for {args.stations:,} stations")
    args.pg_shown = args.pg.split("@")[-1]  # no password in the report
    args.register_s = None

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped: clean up, then exit
    began = time.monotonic()
    args.load_start = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="plugstream-storm-", dir=args.workdir))
    runs: list[Run] = []
    try:
        args.cluster_option = args.mode == "cluster" and cloud_offers("--cluster")
        if args.mode == "cluster":
            check_local(args.pg, "PostgreSQL (--pg)")
            check_local(args.nats, "NATS (--nats)")
            check_nats(args.nats)
        template: Database | None = None
        if args.admission == "registered":
            template, args.register_s = registered(args, workdir)
        try:
            for workers in args.workers:
                runs.append(measure(args, workdir, workers, template))
        finally:
            if template is not None:
                template.drop()
        summary = report(runs, args, time.monotonic() - began)
    except BenchError as exc:
        print(f"bench/storm.py: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench/storm.py: interrupted", file=sys.stderr)
        return 130
    finally:
        if args.keep_logs:
            print(f"bench/storm.py: logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return print_summary(summary)


if __name__ == "__main__":
    sys.exit(main())
