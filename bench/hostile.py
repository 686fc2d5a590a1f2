"""PlugStream Cloud on a hostile network: a legitimate station's Heartbeat under attack.

What it measures (issue 14), on loopback, with the cloud in its own process, the
legitimate station (the *probe*) in another and the attackers in this one:

* the **probe**: one station registered through the REST API with a password
  (security profile 1, HTTP Basic over ``ws://``), a plain ``websockets`` client
  speaking OCPP 1.6J, boots and then has a Heartbeat due every ``--interval``
  (0.1 s), one CALL at a time as OCPP-J requires; each one's latency is counted
  from when it was *due*. One that falls due while the previous is still
  unanswered is not sent (a second CALL in flight would break the protocol) but
  counts with the time from when it was due until that answer, so a stall of the
  server weighs with its length, not as one slow sample. A Heartbeat answered
  with a CALLERROR or not at all (30 s) counts as lost, slower than any answered
  one in the percentiles. If the server drops the probe, it logs in again and
  says so;
* a quiet **baseline** (``--baseline`` s), then three phases against the same
  process, each bounded in time and count, with ``--settle`` s between them:

  (a) **half-open**: ``--half-open`` (3,000) TCP connections opened to the cloud's
      port and held for ``--hold`` (20) s: a third send nothing, a third send half
      an HTTP upgrade request (no blank line) and then nothing, a third send half
      a request and then one more header byte every 2 s (slowloris). Each one's
      close by the server is timed from its connect. Goal: every one closed
      within 15 s;
  (b) **flood**: one admitted station sends Heartbeat CALLs at ``--flood-rate``
      (10,000) per second for ``--flood-seconds`` (10), without waiting for the
      answers (a reader counts them, and CALLERRORs, and a close); then up to
      ``--drain`` (5) s for late answers. What the flooder could send shows
      back-pressure;
  (c) **bad logins**: ``--bad-clients`` (200) clients, each in a loop for
      ``--bad-seconds`` (10): a WebSocket upgrade with HTTP Basic credentials and
      a wrong password, half for registered station ids, half for unknown ones;
      the answers are counted by HTTP status;

  and for each phase: the probe's p50 / p99 / max, the cloud's RSS growth (VmRSS
  from ``/proc``, the peak sampled every 0.25 s during the phase minus the value
  before it), the cloud's CPU (utime + stime) in cores. Goals: p99 under 100 ms
  in each phase, RSS growth under 50 MB in each phase;
* the **storm** (``--storm``, 10,000; 0 skips it): a fresh cloud with
  ``--auto-register`` and, after it, a fresh ``ocpp``-library reference
  (``bench/peers/reference_csms.py``), each started the way ``bench/cloud.py``
  starts it; ``bench/loadgen.py --idle N --hold 0`` connects and boots the
  stations (BootNotification answered) as fast as the server lets it
  (``--storm-concurrency`` in flight). Time until all booted, stations/s, errors.
  Goal: ours all booted within 15 s.

The hostile phases run against a cloud *without* ``--auto-register`` (its stations
registered through the REST API), so an unknown station id is a refusal, not a
registration. This process raises its RLIMIT_NOFILE to the hard limit (the cloud
inherits it); if that is too low for ``--half-open`` it scales the phase down and
says so. The machine is shared with whatever else runs: figures from a busy machine
are worse than the server's own.

Run it from the repository root:

    python bench/hostile.py                 # ~3-4 minutes (about 1 of them the storm)
    python bench/hostile.py --quick         # ~40 s smoke run (50 half-open, 500 msgs/s,
                                            # 10 bad-login clients, 100 storm stations)
    python bench/hostile.py --storm 0       # the hostile phases only

It prints a table, then as its last line one JSON object (``phases``, ``storm``,
``goals``, ``meets_goals``, ...). Every process it starts is stopped by its PID
(SIGTERM, then SIGKILL), also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.typing import Subprotocol

from procs import (
    CLOUD_READY,
    HOST,
    BenchError,
    Server,
    cloud_argv,
    commit,
    cpu_seconds,
    dist_version,
    free_port,
    last_json,
    print_summary,
    raise_nofile,
    rss_kb,
    stop_pid,
)

HERE: Final = Path(__file__).resolve().parent
LOADGEN: Final = HERE / "loadgen.py"
REFERENCE: Final = HERE / "peers" / "reference_csms.py"
SUBPROTOCOL: Final = Subprotocol("ocpp1.6")

API_TOKEN: Final = "hostile-bench-token"
TOKEN_ENV: Final = {"PLUGSTREAM_API_TOKEN": API_TOKEN}  # what the servers are started with
PASSWORD: Final = "hostile-bench-password-ok"  # 16..40 characters
WRONG: Final = "hostile-bench-password-WRONG"
PROBE_ID: Final = "HOSTILE-PROBE"
FLOOD_ID: Final = "HOSTILE-FLOOD"
VICTIMS: Final = 20  # registered ids the bad logins aim at (half of the clients)

GOAL_P99_MS: Final = 100.0
GOAL_RSS_MB: Final = 50.0
GOAL_CLOSE_S: Final = 15.0
GOAL_STORM_S: Final = 15.0
FULL_HALF_OPEN: Final = 3_000
FULL_FLOOD_RATE: Final = 10_000.0
FULL_BAD_CLIENTS: Final = 200
FULL_STORM: Final = 10_000

SAMPLE_EVERY: Final = 0.25  # s between RSS samples
DRIBBLE_EVERY: Final = 2.0  # s between the slowloris' header bytes
CONNECT_TIMEOUT: Final = 10.0
LOGIN_TIMEOUT: Final = 10.0  # s one bad login may take before it counts as a timeout
PROBE_CALL_TIMEOUT: Final = 30.0


def cloud_server(workdir: Path, name: str, auto_register: bool) -> Server:
    port = free_port()
    db = workdir / f"{name}.db"
    argv = cloud_argv(port, db, "--ping-interval", "30")
    if auto_register:
        argv.append("--auto-register")
        if cloud_offers("--auto-register-unsecured"):
            # the load generator's stations bring no credentials (as the reference takes them)
            argv.append("--auto-register-unsecured")
    log = workdir / f"{name}.log"
    return Server("PlugStream Cloud", argv, CLOUD_READY, port, db, log, env=TOKEN_ENV)


def cloud_offers(option: str) -> bool:
    """Whether ``plugstream cloud serve --help`` lists ``option`` (the cloud is changing)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            [sys.executable, "-m", "plugstream.cli", "cloud", "serve", "--help"],
            capture_output=True,
            text=True,
            cwd=HERE.parent,
            env=dict(os.environ, COLUMNS="300", NO_COLOR="1", TERM="dumb"),
            timeout=60,
        )
        return option in done.stdout.split()
    return False


def reference_server(workdir: Path) -> Server:
    port = free_port()
    db = workdir / "reference.db"
    argv = [sys.executable, str(REFERENCE), "--host", HOST, "--port", str(port), "--db", str(db)]
    log = workdir / "reference.log"
    return Server("reference (ocpp lib)", argv, "ready", port, db, log, env=TOKEN_ENV)


def register(server: Server, station_id: str) -> None:
    """PUT /api/v1/stations/{id}: security profile 1, our password."""
    body = json.dumps({"password": PASSWORD, "security_profile": 1}).encode()
    request = urllib.request.Request(
        f"http://{HOST}:{server.port}/api/v1/stations/{station_id}",
        data=body,
        method="PUT",
        headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            if answer.status not in (200, 201):
                raise BenchError(f"register {station_id}: HTTP {answer.status}")
    except urllib.error.HTTPError as exc:
        raise BenchError(f"register {station_id}: {exc.code} {exc.read()[:300]!r}") from exc


def basic(station_id: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{station_id}:{password}".encode()).decode()


# --- the probe: a legitimate station in its own process ----------------------------


async def answer_of(
    ws: ClientConnection, message_id: str, give_up: float, stop: asyncio.Event
) -> bool:
    """Wait for the answer to our CALL ``message_id``: True for a CALLRESULT, False for a
    CALLERROR; TimeoutError at ``give_up`` (monotonic), or 2 s after ``stop`` is set."""
    stopping_at: float | None = None
    while True:
        now = time.monotonic()
        if stop.is_set() and stopping_at is None:
            stopping_at = now + 2.0
        end = min(give_up, stopping_at or give_up)
        if now >= end:
            raise TimeoutError
        try:
            raw = await asyncio.wait_for(ws.recv(), min(0.5, end - now))
        except TimeoutError:
            continue
        frame = orjson.loads(raw)
        if frame[0] in (3, 4) and frame[1] == message_id:
            return bool(frame[0] == 3)
        if frame[0] == 2:  # the CSMS asks something of the station: not supported here
            await ws.send(orjson.dumps([4, frame[1], "NotImplemented", "", {}]).decode())


async def probe_main(url: str, interval: float) -> dict[str, Any]:
    """A Heartbeat due every ``interval`` s, one CALL at a time as OCPP-J wants, until
    SIGTERM; for each its due time and its latency from then (``None``: unanswered).

    A Heartbeat falls due while the previous one is still unanswered is not sent (that
    would be a second CALL in flight): it counts with the time from when it was due
    until that answer came, the least a station would have waited, so a stall of the
    server weighs with its length and not as one slow sample."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    samples: list[tuple[float, float | None]] = []  # (monotonic due, seconds or None)
    reconnects: list[dict[str, Any]] = []
    seq = 0
    announced = False
    while not stop.is_set():
        try:
            ws = await connect(
                f"{url}/{PROBE_ID}",
                subprotocols=[SUBPROTOCOL],
                compression=None,
                additional_headers={"Authorization": basic(PROBE_ID, PASSWORD)},
                ping_interval=None,
                open_timeout=PROBE_CALL_TIMEOUT,
                max_queue=None,
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            reconnects.append({"at": time.monotonic(), "error": f"{type(exc).__name__}: {exc}"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            continue
        pending: float | None = None  # when the Heartbeat in flight fell due
        try:
            boot = {"chargePointVendor": "PlugStream", "chargePointModel": "Probe"}
            await ws.send(orjson.dumps([2, "boot", "BootNotification", boot]).decode())
            await answer_of(ws, "boot", time.monotonic() + PROBE_CALL_TIMEOUT, stop)
            if not announced:
                print(json.dumps({"event": "booted", "at": time.monotonic()}), flush=True)
                announced = True
            tick = time.monotonic()
            while not stop.is_set():
                seq += 1
                message_id = f"h{seq}"
                pending = tick
                await ws.send(f'[2,"{message_id}","Heartbeat",{{}}]')
                ok = await answer_of(ws, message_id, tick + PROBE_CALL_TIMEOUT, stop)
                pending = None
                at = time.monotonic()
                samples.append((tick, at - tick if ok else None))
                tick += interval
                while tick <= at:  # fell due while we waited: the wait it would have had
                    samples.append((tick, at - tick))
                    tick += interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), tick - time.monotonic())
        except (OSError, TimeoutError, WebSocketException, orjson.JSONDecodeError) as exc:
            if pending is not None:
                samples.append((pending, None))  # never answered
            if not stop.is_set():
                why = f"{type(exc).__name__}: {exc}"
                reconnects.append({"at": time.monotonic(), "error": why})
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await ws.close()
    return {"samples": samples, "reconnects": reconnects, "sent": seq}


def run_probe(url: str, interval: float) -> int:
    result = asyncio.run(probe_main(url, interval))
    sys.stdout.flush()
    print(json.dumps(result, separators=(",", ":")), flush=True)
    return 0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    k = min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))
    return values[k]


def latency_figures(
    samples: list[tuple[float, float | None]], t0: float, t1: float
) -> dict[str, Any]:
    """p50/p99/max of the Heartbeats due in [t0, t1); unanswered ones count as slowest."""
    inside = [lat for at, lat in samples if t0 <= at < t1]
    answered = sorted(lat for lat in inside if lat is not None)
    lost = len(inside) - len(answered)
    ranked = answered + [math.inf] * lost

    def msec(v: float) -> float | None:
        return None if math.isnan(v) or math.isinf(v) else round(v * 1e3, 2)

    return {
        "heartbeats": len(inside),
        "lost": lost,
        "p50_ms": msec(percentile(ranked, 0.50)),
        "p99_ms": msec(percentile(ranked, 0.99)),
        "max_ms": msec(ranked[-1]) if ranked else None,
    }


# --- the attackers -----------------------------------------------------------------


@dataclass(slots=True)
class Phase:
    name: str
    t0: float = 0.0
    t1: float = 0.0
    rss_before_kb: int = 0
    rss_peak_kb: int = 0
    rss_after_kb: int = 0
    cpu_s: float = 0.0
    loadavg: float = 0.0  # the machine's 1-minute load average at the phase's end
    detail: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)

    @property
    def growth_mb(self) -> float:
        return (self.rss_peak_kb - self.rss_before_kb) / 1024

    @property
    def cores(self) -> float:
        return self.cpu_s / max(self.t1 - self.t0, 1e-9)


async def sampling(pid: int, phase: Phase, stop: asyncio.Event) -> None:
    while not stop.is_set():
        phase.rss_peak_kb = max(phase.rss_peak_kb, rss_kb(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)


@contextlib.asynccontextmanager
async def measured(pid: int, phase: Phase) -> Any:
    phase.rss_before_kb = phase.rss_peak_kb = rss_kb(pid)
    cpu0 = cpu_seconds(pid)
    phase.t0 = time.monotonic()
    stop = asyncio.Event()
    sampler = asyncio.ensure_future(sampling(pid, phase, stop))
    try:
        yield phase
    finally:
        phase.t1 = time.monotonic()
        phase.loadavg = os.getloadavg()[0]
        stop.set()
        await sampler
        phase.cpu_s = cpu_seconds(pid) - cpu0
        phase.rss_after_kb = rss_kb(pid)
        phase.rss_peak_kb = max(phase.rss_peak_kb, phase.rss_after_kb)


def partial_request(port: int, n: int) -> bytes:
    key = base64.b64encode(n.to_bytes(16, "big")).decode()
    return (
        f"GET /ocpp/HALFOPEN{n:05d} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
    ).encode()


async def half_open(port: int, count: int, hold: float, phase: Phase) -> None:
    """``count`` connections: silent, half a request, half a request then a byte every 2 s;
    the time from connect to the server's close, for each."""
    kinds = ("silent", "partial", "dribble")
    closed_after: dict[str, list[float]] = {k: [] for k in kinds}
    failed: Counter[str] = Counter()
    gate = asyncio.Semaphore(200)
    opened = 0
    end = time.monotonic() + hold

    async def one(n: int) -> None:
        nonlocal opened
        kind = kinds[n % 3]
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(HOST, port), CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError) as exc:
                failed[type(exc).__name__] += 1
                return
        opened += 1
        began = time.monotonic()
        try:
            if kind != "silent":
                writer.write(partial_request(port, n))
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    return  # still held when the phase ended
                wait = min(left, DRIBBLE_EVERY) if kind == "dribble" else left
                try:
                    data = await asyncio.wait_for(reader.read(4096), wait)
                except TimeoutError:
                    if kind == "dribble":
                        writer.write(b"X")
                    continue
                if not data:  # the server closed it
                    closed_after[kind].append(time.monotonic() - began)
                    return
                # an answer (say 408 or 400): read on until the close
        except OSError:  # reset by the server: closed too
            closed_after[kind].append(time.monotonic() - began)
        finally:
            writer.transport.abort()

    await asyncio.gather(*(one(n) for n in range(count)))
    every = sorted(t for ts in closed_after.values() for t in ts)
    phase.detail = {
        "connections": count,
        "opened": opened,
        "connect_errors": dict(failed),
        "closed_by_server": len(every),
        "still_open_at_end": opened - len(every),
        "closed_within_15s": sum(1 for t in every if t <= GOAL_CLOSE_S),
        "close_after_s_max": round(every[-1], 2) if every else None,
        "close_after_s_p50": round(percentile(every, 0.5), 2) if every else None,
        "by_kind": {
            k: {
                "closed": len(v),
                "max_s": round(max(v), 2) if v else None,
            }
            for k, v in closed_after.items()
        },
        "hold_s": hold,
    }


async def flood(url: str, rate: float, seconds: float, drain: float, phase: Phase) -> None:
    """One admitted station sends Heartbeats at ``rate``/s without waiting for the answers,
    for ``seconds``; if the server closes it, it logs in again and goes on (an attacker
    would), each close counted with its code and reason."""
    answers = 0
    late = 0.0
    errors: Counter[str] = Counter()
    closes: Counter[str] = Counter()
    connect_errors: Counter[str] = Counter()
    sent = 0
    sent_at: dict[str, float] = {}
    blocked = 0.0
    connections = 0
    began = time.monotonic()
    stop_at = began + seconds

    async def read_answers(ws: ClientConnection) -> None:
        nonlocal answers, late
        async for raw in ws:
            frame = orjson.loads(raw)
            if frame[0] == 3:
                answers += 1
                t = sent_at.pop(str(frame[1]), None)
                if t is not None:
                    late = max(late, time.monotonic() - t)
            elif frame[0] == 4:
                errors[str(frame[2])] += 1
                sent_at.pop(str(frame[1]), None)
            elif frame[0] == 2:
                await ws.send(orjson.dumps([4, frame[1], "NotImplemented", "", {}]).decode())

    async def reader(ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            await read_answers(ws)

    boot = {"chargePointVendor": "PlugStream", "chargePointModel": "Flood"}
    batch = max(1, int(rate / 100))  # in batches every 10 ms
    while (left := stop_at - time.monotonic()) > 0:
        try:
            ws = await connect(
                f"{url}/{FLOOD_ID}",
                subprotocols=[SUBPROTOCOL],
                compression=None,
                additional_headers={"Authorization": basic(FLOOD_ID, PASSWORD)},
                ping_interval=None,
                open_timeout=max(left, 0.1),
                max_queue=None,
                close_timeout=2,
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            connect_errors[f"{type(exc).__name__}: {exc}"[:80]] += 1
            await asyncio.sleep(min(0.2, max(stop_at - time.monotonic(), 0)))
            continue
        connections += 1
        reading = asyncio.ensure_future(reader(ws))
        try:
            await ws.send(
                orjson.dumps([2, f"boot{connections}", "BootNotification", boot]).decode()
            )
            async with asyncio.timeout(max(stop_at - time.monotonic(), 0.01)):
                while not reading.done():
                    due = int((time.monotonic() - began) * rate) + 1
                    for _ in range(min(batch, due - sent)):
                        sent += 1
                        sent_at[str(sent)] = t = time.monotonic()
                        await ws.send(f'[2,"{sent}","Heartbeat",{{}}]')
                        blocked += time.monotonic() - t
                    if sent >= due:
                        await asyncio.sleep(0.01)
        except (TimeoutError, ConnectionClosed):
            pass
        if time.monotonic() >= stop_at - 0.01:  # the window is over: answers still on the way
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reading), drain)
        if reading.done():  # the connection ended before we closed it
            closes[f"{ws.close_code} {ws.close_reason or ''}"[:100]] += 1
        reading.cancel()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(3):
                await ws.close()
    send_s = min(time.monotonic(), stop_at) - began
    phase.detail = {
        "rate_target": rate,
        "sent": sent,
        "sent_per_s": round(sent / max(send_s, 1e-9), 1),
        "send_blocked_s": round(blocked, 2),
        "answered": answers,
        "call_errors": dict(errors),
        "unanswered": len(sent_at),
        "slowest_answer_s": round(late, 2),
        "connections": connections,
        "closed_by_server": sum(closes.values()),
        "closes": dict(closes),
        "connect_errors": dict(connect_errors),
        "flood_seconds": seconds,
    }


async def bad_logins(port: int, clients: int, seconds: float, phase: Phase) -> None:
    """``clients`` loops of WebSocket upgrades with wrong passwords; answers by status."""
    statuses: Counter[str] = Counter()
    took: list[float] = []
    end = time.monotonic() + seconds

    async def attempt(station_id: str, n: int) -> str:
        key = base64.b64encode(n.to_bytes(16, "big")).decode()
        request = (
            f"GET /ocpp/{station_id} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
            f"Authorization: {basic(station_id, WRONG)}\r\n\r\n"
        ).encode()
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(request)
            line = await reader.readline()
            parts = line.split()
            return parts[1].decode() if len(parts) >= 2 else "closed"
        finally:
            writer.transport.abort()

    async def client(c: int) -> None:
        n = 0
        while (left := end - time.monotonic()) > 0:
            n += 1
            known = c % 2 == 0
            station_id = f"HOSTILE-V{c % VICTIMS:03d}" if known else f"HOSTILE-U{c:03d}-{n}"
            t = time.monotonic()
            try:
                status = await asyncio.wait_for(
                    attempt(station_id, c * 100_000 + n), min(left, LOGIN_TIMEOUT)
                )
            except TimeoutError:
                if left < LOGIN_TIMEOUT:
                    status = "unanswered at the end"  # cut by the phase's end
                    statuses[f"{'known' if known else 'unknown'} {status}"] += 1
                    continue
                status = "timeout"
            except OSError as exc:
                status = type(exc).__name__
            took.append(time.monotonic() - t)
            statuses[f"{'known' if known else 'unknown'} {status}"] += 1

    cpu0 = time.process_time()
    await asyncio.gather(*(client(c) for c in range(clients)))
    took.sort()
    phase.detail = {
        "clients": clients,
        "attempts": sum(statuses.values()),
        "attempts_per_s": round(sum(statuses.values()) / seconds, 1),
        "answers": dict(sorted(statuses.items())),
        "admitted": sum(v for k, v in statuses.items() if k.endswith(" 101")),
        "answer_p50_ms": round(percentile(took, 0.5) * 1e3, 1) if took else None,
        "answer_p99_ms": round(percentile(took, 0.99) * 1e3, 1) if took else None,
        "loadgen_cpu": round((time.process_time() - cpu0) / seconds, 2),
        "bad_seconds": seconds,
    }


# --- the run -----------------------------------------------------------------------


async def hostile(
    server: Server, args: argparse.Namespace, workdir: Path
) -> tuple[list[Phase], dict[str, Any]]:
    url = f"ws://{HOST}:{server.port}/ocpp"
    out = (workdir / "probe.out").open("wb")
    err = (workdir / "probe.err").open("wb")
    probe = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--probe-url",
            url,
            "--interval",
            f"{args.interval:g}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        cwd=HERE.parent,
    )
    phases: list[Phase] = []
    try:
        deadline = time.monotonic() + 60
        while b'"booted"' not in (workdir / "probe.out").read_bytes():
            if probe.poll() is not None or time.monotonic() > deadline:
                raise BenchError(
                    f"the probe did not boot:\n{(workdir / 'probe.err').read_text()[-2000:]}\n"
                    f"the cloud says:\n{server.tail()}"
                )
            await asyncio.sleep(0.05)
        pid = server.pid

        base = Phase("baseline")
        print(f"baseline: {args.baseline:g} s quiet", flush=True)
        async with measured(pid, base):
            await asyncio.sleep(args.baseline)
        phases.append(base)

        a = Phase("half_open")
        print(f"(a) {args.half_open:,} half-open connections held {args.hold:g} s", flush=True)
        async with measured(pid, a):
            await half_open(server.port, args.half_open, args.hold, a)
        phases.append(a)
        await asyncio.sleep(args.settle)

        b = Phase("flood")
        print(
            f"(b) one station floods {args.flood_rate:,.0f} msgs/s for {args.flood_seconds:g} s",
            flush=True,
        )
        async with measured(pid, b):
            await flood(url, args.flood_rate, args.flood_seconds, args.drain, b)
        phases.append(b)
        await asyncio.sleep(args.settle)

        c = Phase("bad_logins")
        print(
            f"(c) {args.bad_clients} clients try bad passwords for {args.bad_seconds:g} s",
            flush=True,
        )
        async with measured(pid, c):
            await bad_logins(server.port, args.bad_clients, args.bad_seconds, c)
        phases.append(c)
        await asyncio.sleep(1.0)  # the probe's last Heartbeats of phase (c) come back
        if not server.alive():
            raise BenchError(f"the cloud died:\n{server.tail()}")
    finally:
        stop_pid(probe)
        out.close()
        err.close()
    text = (workdir / "probe.out").read_text()
    result: dict[str, Any] = {}
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{") and '"samples"' in line:
            result = json.loads(line)
            break
    if not result:
        raise BenchError(
            f"no result from the probe:\n{(workdir / 'probe.err').read_text()[-2000:]}"
        )
    samples = [(float(at), None if lat is None else float(lat)) for at, lat in result["samples"]]
    for phase in phases:
        phase.latency = latency_figures(samples, phase.t0, phase.t1)
    probe_info = {
        "heartbeats_sent": result["sent"],
        "reconnects": len(result["reconnects"]),
        "reconnect_reasons": [r["error"][:100] for r in result["reconnects"][:5]],
    }
    return phases, probe_info


def storm(server: Server, count: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """``count`` stations connect and boot against a fresh server; seconds until all are up."""
    with server.running():
        argv = [sys.executable, str(LOADGEN), "--url", f"ws://{HOST}:{server.port}/ocpp"]
        argv += ["--idle", str(count), "--hold", "0", "--prefix", "STORM"]
        argv += ["--concurrency", str(args.storm_concurrency)]
        argv += ["--connect-rate", "1000000", "--connect-budget", f"{args.storm_budget:g}"]
        cpu0 = cpu_seconds(server.pid)
        err = workdir / "storm.err"
        with err.open("wb") as errors:
            try:
                done = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=errors,
                    cwd=HERE.parent,
                    timeout=args.storm_budget + 60,
                )
            except subprocess.TimeoutExpired as exc:
                raise BenchError(f"the storm against {server.label} over its budget") from exc
        cpu = cpu_seconds(server.pid) - cpu0
        rss = rss_kb(server.pid)
        alive = server.alive()
    if done.returncode != 0:
        raise BenchError(f"load generator failed ({done.returncode}):\n{err.read_text()[-2000:]}")
    result = last_json(done.stdout.decode()) or {}
    seconds = float(result.get("connect_seconds", math.nan))
    booted = int(result.get("booted", 0))
    return {
        "stations": count,
        "booted": booted,
        "seconds": round(seconds, 2),
        "per_s": round(booted / seconds, 1) if seconds > 0 else None,
        "errors": int(result.get("errors", 0)),
        "error_kinds": result.get("error_kinds", {}),
        "server_cpu_s": round(cpu, 1),
        "server_rss_kb": rss,
        "server_alive": alive,
    }


# --- report ------------------------------------------------------------------------


def _f(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def report(
    phases: list[Phase],
    probe: dict[str, Any],
    storms: dict[str, dict[str, Any] | None],
    args: argparse.Namespace,
    took: float,
    notes: list[str],
) -> dict[str, Any]:
    by = {p.name: p for p in phases}
    print()
    print(
        "PlugStream Cloud on a hostile network (OCPP 1.6J, loopback); probe: 1 Heartbeat "
        f"due every {args.interval * 1e3:g} ms, one at a time"
    )
    print(
        f"{platform.python_implementation()} {platform.python_version()}; {os.cpu_count()} CPUs; "
        f"commit {commit() or '?'}; {took:.0f} s in all (a shared machine: noisy)"
    )
    for note in notes:
        print(f"NOTE: {note}")
    print()
    head = f"{'phase':<12}{'beats':>7}{'lost':>6}{'p50 ms':>9}{'p99 ms':>10}{'max ms':>10}{'RSS +MB':>9}{'cores':>7}{'load':>7}"
    print(head)
    print("-" * len(head))
    for p in phases:
        lat = p.latency
        print(
            f"{p.name:<12}{lat['heartbeats']:>7}{lat['lost']:>6}{_f(lat['p50_ms']):>9}"
            f"{_f(lat['p99_ms']):>10}{_f(lat['max_ms']):>10}{p.growth_mb:>9.1f}{p.cores:>7.2f}"
            f"{p.loadavg:>7.1f}"
        )
    print("(cores: the cloud's CPU in the phase; load: the machine's 1-minute load average)")
    print()
    if "half_open" in by:
        d = by["half_open"].detail
        print(
            f"(a) half-open: {d['opened']:,} of {d['connections']:,} opened; closed by the server "
            f"{d['closed_by_server']:,} ({d['closed_within_15s']:,} within 15 s, last after "
            f"{_f(d['close_after_s_max'])} s); still open after {d['hold_s']:g} s: "
            f"{d['still_open_at_end']:,}; by kind {d['by_kind']}"
        )
    if "flood" in by:
        d = by["flood"].detail
        print(
            f"(b) flood: sent {d['sent']:,} ({d['sent_per_s']:,.0f}/s of {d['rate_target']:,.0f}; "
            f"{d['send_blocked_s']:.1f} s blocked in send), answered {d['answered']:,}, "
            f"CALLERRORs {d['call_errors']}, unanswered {d['unanswered']:,}, slowest answer "
            f"{d['slowest_answer_s']:.2f} s; {d['connections']} logins, closed by the server "
            f"{d['closed_by_server']}x {d['closes'] or ''} {d['connect_errors'] or ''}"
        )
    if "bad_logins" in by:
        d = by["bad_logins"].detail
        print(
            f"(c) bad logins: {d['attempts']:,} attempts ({d['attempts_per_s']:,.0f}/s), answers "
            f"{d['answers']}, admitted {d['admitted']}, answer p50/p99 {_f(d['answer_p50_ms'])}/"
            f"{_f(d['answer_p99_ms'])} ms; the cloud used {by['bad_logins'].cores:.2f} cores"
        )
    print(
        f"probe: {probe['heartbeats_sent']:,} Heartbeats sent, {probe['reconnects']} reconnects "
        f"{probe['reconnect_reasons'] or ''}"
    )
    ours, ref = storms.get("ours"), storms.get("reference")
    if ours or ref:
        print()
        print(
            f"storm: {args.storm:,} stations connect and boot, {args.storm_concurrency} in flight"
        )
        for label, s in (("PlugStream Cloud", ours), ("reference (ocpp lib)", ref)):
            if s:
                print(
                    f"  {label:<22}{s['booted']:>7,} booted in {s['seconds']:>7.1f} s "
                    f"({_f(s['per_s'], ',.0f')}/s), {s['errors']} errors {s['error_kinds'] or ''}"
                )
    print()

    def p99_ok(name: str) -> bool | None:
        p = by.get(name)
        if p is None:
            return None
        v = p.latency["p99_ms"]
        return v is not None and v < GOAL_P99_MS

    def rss_ok(name: str) -> bool | None:
        p = by.get(name)
        return None if p is None else p.growth_mb < GOAL_RSS_MB

    a = by.get("half_open")
    goals: dict[str, bool | None] = {
        "half_open_p99_under_100ms": p99_ok("half_open"),
        "half_open_rss_under_50mb": rss_ok("half_open"),
        "half_open_all_closed_within_15s": (
            None
            if a is None or args.hold < GOAL_CLOSE_S
            else a.detail["opened"] > 0 and a.detail["closed_within_15s"] == a.detail["connections"]
        ),
        "flood_p99_under_100ms": p99_ok("flood"),
        "flood_rss_under_50mb": rss_ok("flood"),
        "bad_logins_p99_under_100ms": p99_ok("bad_logins"),
        "bad_logins_rss_under_50mb": rss_ok("bad_logins"),
        "storm_within_15s": (
            None
            if ours is None
            else ours["booted"] == ours["stations"] and ours["seconds"] <= GOAL_STORM_S
        ),
    }
    full_size = (
        args.half_open >= FULL_HALF_OPEN
        and args.flood_rate >= FULL_FLOOD_RATE
        and args.bad_clients >= FULL_BAD_CLIENTS
        and args.storm >= FULL_STORM
    )
    evaluated = [v for v in goals.values() if v is not None]
    meets = full_size and len(evaluated) == len(goals) and all(evaluated)
    for name, ok in goals.items():
        verdict = "not evaluated" if ok is None else ("meets" if ok else "MISSES")
        print(f"  {name}: {verdict}")
    if not full_size:
        print("  (not the full-size attack: meets_goals stays false)")

    return {
        "bench": "hostile",
        "commit": commit(),
        "phases": {
            p.name: {
                **p.latency,
                "rss_before_kb": p.rss_before_kb,
                "rss_peak_kb": p.rss_peak_kb,
                "rss_after_kb": p.rss_after_kb,
                "rss_growth_mb": round(p.growth_mb, 1),
                "cloud_cores": round(p.cores, 2),
                "loadavg": round(p.loadavg, 2),
                "seconds": round(p.t1 - p.t0, 1),
                **p.detail,
            }
            for p in phases
        },
        "probe": probe,
        "storm": storms,
        "goals": {
            "p99_ms": GOAL_P99_MS,
            "rss_growth_mb": GOAL_RSS_MB,
            "half_open_closed_s": GOAL_CLOSE_S,
            "storm_s": GOAL_STORM_S,
            "met": goals,
        },
        "meets_goals": meets,
        "full_size": full_size,
        "notes": notes,
        "interval_s": args.interval,
        "cpus": os.cpu_count(),
        "took_s": round(took, 1),
        "python": platform.python_version(),
        "versions": {d: dist_version(d) for d in ("ocpp", "websockets", "uvicorn", "plugstream")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--interval", type=float, default=0.1, help="probe Heartbeat s (0.1)")
    parser.add_argument("--baseline", type=float, default=5.0, help="quiet s first (5)")
    parser.add_argument("--settle", type=float, default=3.0, help="s between phases (3)")
    parser.add_argument(
        "--half-open", type=int, default=FULL_HALF_OPEN, help="(a) connections (3000)"
    )
    parser.add_argument("--hold", type=float, default=20.0, help="(a) s to hold them (20)")
    parser.add_argument(
        "--flood-rate", type=float, default=FULL_FLOOD_RATE, help="(b) msgs/s (10000)"
    )
    parser.add_argument("--flood-seconds", type=float, default=10.0, help="(b) s (10)")
    parser.add_argument("--drain", type=float, default=5.0, help="(b) s for late answers (5)")
    parser.add_argument(
        "--bad-clients", type=int, default=FULL_BAD_CLIENTS, help="(c) clients (200)"
    )
    parser.add_argument("--bad-seconds", type=float, default=10.0, help="(c) s (10)")
    parser.add_argument(
        "--storm", type=int, default=FULL_STORM, help="storm stations (10000; 0: skip)"
    )
    parser.add_argument(
        "--storm-concurrency", type=int, default=100, help="connects in flight (100)"
    )
    parser.add_argument("--storm-budget", type=float, default=150.0, help="s for the storm (150)")
    parser.add_argument("--no-reference", action="store_true", help="storm against ours only")
    parser.add_argument("--quick", action="store_true", help="~40 s smoke run: small figures")
    parser.add_argument("--workdir", type=Path, help="where the databases go (a temporary dir)")
    parser.add_argument("--probe-url", help=argparse.SUPPRESS)  # runs as the probe
    args = parser.parse_args(argv)
    if args.probe_url:
        return run_probe(args.probe_url, args.interval)
    if args.quick:
        args.baseline, args.settle = 2.0, 1.0
        args.half_open, args.hold = min(args.half_open, 50), 3.0
        args.flood_rate, args.flood_seconds, args.drain = min(args.flood_rate, 500.0), 2.0, 2.0
        args.bad_clients, args.bad_seconds = min(args.bad_clients, 10), 2.0
        args.storm = min(args.storm, 100)
    if min(args.half_open, args.bad_clients, args.storm) < 0 or args.interval <= 0:
        parser.error("need counts >= 0 and --interval > 0")
    notes: list[str] = []
    nofile = raise_nofile()  # inherited by the cloud, the probe and the load generator
    if args.half_open + args.bad_clients + 256 > nofile:
        scaled = max(0, nofile - args.bad_clients - 256)
        notes.append(
            f"RLIMIT_NOFILE is {nofile}: half-open connections scaled down from "
            f"{args.half_open:,} to {scaled:,}"
        )
        args.half_open = scaled

    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="plugstream-hostile-", dir=args.workdir))
    try:
        server = cloud_server(workdir, "hostile", auto_register=False)
        with server.running():
            for sid in (PROBE_ID, FLOOD_ID, *(f"HOSTILE-V{n:03d}" for n in range(VICTIMS))):
                register(server, sid)
            phases, probe = asyncio.run(hostile(server, args, workdir))
        storms: dict[str, dict[str, Any] | None] = {"ours": None, "reference": None}
        if args.storm > 0:
            print(f"storm: {args.storm:,} stations against a fresh PlugStream Cloud", flush=True)
            storms["ours"] = storm(
                cloud_server(workdir, "storm", auto_register=True), args.storm, args, workdir
            )
            if not args.no_reference:
                print(f"storm: {args.storm:,} stations against the reference", flush=True)
                storms["reference"] = storm(reference_server(workdir), args.storm, args, workdir)
        summary = report(phases, probe, storms, args, time.monotonic() - began, notes)
    except BenchError as exc:
        print(f"bench/hostile.py: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return print_summary(summary)


if __name__ == "__main__":
    sys.exit(main())
