"""Load generator for OCPP 1.6J central systems: N stations on loopback WebSockets.

Independent of PlugStream: plain ``websockets`` client connections and hand-made
OCPP-J frames, so that it measures any CSMS the same way (``bench/cloud.py`` runs it
against PlugStream Cloud and against ``bench/peers/reference_csms.py``). It talks
only to loopback addresses.

Load mode (the default): each of ``--stations`` stations connects to
``URL/{station id}`` with the ``ocpp1.6`` subprotocol (no compression, as
chargers do), sends BootNotification and a StatusNotification, then, once all are
up, loops MeterValues (10 sampled values: energy register, power, current and
voltage of three phases, SoC) with a Heartbeat every 10th message, each awaited
until its CALLRESULT arrives before the next is sent (a closed loop). With
``--rate R`` the stations together send about R messages/s (each at R/N per
second, phases spread); with ``--max`` (the default) as fast as answers come.
The first ``--warmup`` seconds are not counted; then ``--seconds`` are measured:
messages answered, messages/s, latency percentiles (send to CALLRESULT), errors.

Idle mode (``--idle N``): opens N connections at a bounded pace and concurrency,
boots each, prints one JSON line ``{"event": "connected", ...}`` when all are up
(or failed), then holds them open for ``--hold`` seconds or until SIGTERM, so that
the server's memory per idle connection can be read meanwhile.

Either way the last line printed is one JSON object with the results.

    python bench/loadgen.py --url ws://127.0.0.1:9100/ocpp --stations 50 --seconds 10
    python bench/loadgen.py --url ws://127.0.0.1:9100/ocpp --stations 50 --rate 2000
    python bench/loadgen.py --url ws://127.0.0.1:9100/ocpp --idle 10000 --hold 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import math
import os
import random
import signal
import sys
import time
from array import array
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException
from websockets.typing import Subprotocol

from procs import print_summary, raise_nofile

SUBPROTOCOL: Final = Subprotocol("ocpp1.6")
HEARTBEAT_EVERY: Final = 10  # every 10th message of a station is a Heartbeat
POOL: Final = 256  # pre-made sampled-value sets, picked in turn
CALL_TIMEOUT: Final = 30.0  # s; an unanswered CALL is an error and ends the station


class Clock:
    """The stations' shared wall clock in OCPP form, refreshed by a ticker (cheap to read)."""

    def __init__(self) -> None:
        self.text = self.format()

    @staticmethod
    def format() -> str:
        at = datetime.now(UTC)
        return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            self.text = self.format()


def sampled_value_pool(rng: random.Random) -> list[str]:
    """JSON text of the sampled values after the energy register (power, I, U, SoC)."""
    out = []
    for _ in range(POOL):
        amps = [rng.uniform(14.0, 32.0) for _ in range(3)]
        volts = [rng.uniform(225.0, 235.0) for _ in range(3)]
        watts = sum(a * v for a, v in zip(amps, volts, strict=True))

        def sv(value: str, measurand: str, unit: str, phase: str | None = None) -> dict[str, str]:
            item = {"value": value, "context": "Sample.Periodic", "measurand": measurand}
            if phase is not None:
                item["phase"] = phase
            item["location"] = "EV" if measurand == "SoC" else "Outlet"
            item["unit"] = unit
            return item

        values = [
            sv(f"{watts:.1f}", "Power.Active.Import", "W"),
            *(
                sv(f"{a:.2f}", "Current.Import", "A", p)
                for a, p in zip(amps, ("L1", "L2", "L3"), strict=True)
            ),
            *(
                sv(f"{v:.1f}", "Voltage", "V", p)
                for v, p in zip(volts, ("L1-N", "L2-N", "L3-N"), strict=True)
            ),
            sv(str(rng.randrange(5, 100)), "SoC", "Percent"),
        ]
        out.append(orjson.dumps(values).decode()[1:-1])  # without the brackets
    return out


def boot_frame(message_id: str, index: int) -> str:
    payload = {
        "chargePointVendor": "PlugStream",
        "chargePointModel": "PlugStream 22",
        "chargePointSerialNumber": f"LG{index:08d}",
        "firmwareVersion": "1.0.0",
    }
    return orjson.dumps([2, message_id, "BootNotification", payload]).decode()


def status_frame(message_id: str, clock: Clock) -> str:
    payload = {
        "connectorId": 1,
        "errorCode": "NoError",
        "status": "Available",
        "timestamp": clock.text,
    }
    return orjson.dumps([2, message_id, "StatusNotification", payload]).decode()


class CallFailed(Exception):
    """The CSMS answered a CALL with a CALLERROR or with something that is not its answer."""


@dataclass(slots=True)
class Results:
    latencies: array[float] = field(default_factory=lambda: array("d"))
    answered: int = 0  # CALLRESULTs received inside the measured window
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    connected: int = 0
    booted: int = 0

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


async def call(ws: ClientConnection, message_id: str, text: str) -> str | bytes:
    """Send one CALL and wait for its CALLRESULT, which is returned (a BootNotification's
    sender reads its status); answer (refuse) CALLs of the CSMS meanwhile."""
    await ws.send(text)
    prefix = f'[3,"{message_id}"'
    for _ in range(100):  # bounded: at most 100 unrelated frames before our answer
        reply = await ws.recv()
        if isinstance(reply, str) and reply.startswith(prefix):
            return reply
        try:
            frame = orjson.loads(reply)
        except orjson.JSONDecodeError as exc:
            raise CallFailed("bad frame") from exc
        if not isinstance(frame, list) or len(frame) < 3:
            raise CallFailed("bad frame")
        if frame[0] == 3 and frame[1] == message_id:
            return reply
        if frame[0] == 4 and frame[1] == message_id:
            raise CallFailed(f"CALLERROR {frame[2]}")
        if frame[0] == 2:  # the CSMS asks something of the station: not supported here
            await ws.send(orjson.dumps([4, frame[1], "NotImplemented", "", {}]).decode())
    raise CallFailed("no answer among 100 frames")


@dataclass(slots=True)
class Plan:
    url: str
    stations: int
    start: float = 0.0  # perf_counter when the load starts (set once all stations are up)
    measure_from: float = 0.0
    measure_to: float = 0.0
    rate: float | None = None  # messages/s over all stations; None: closed loop, flat out
    started: asyncio.Event = field(default_factory=asyncio.Event)


async def open_station(
    url: str, index: int, prefix: str, clock: Clock, results: Results
) -> ClientConnection:
    ws = await connect(
        f"{url}/{prefix}{index:05d}",
        subprotocols=[SUBPROTOCOL],
        compression=None,
        ping_interval=None,  # the CSMS pings; the library answers by itself
        open_timeout=CALL_TIMEOUT,
        close_timeout=2,
        max_queue=4,
    )
    results.connected += 1
    if ws.subprotocol != SUBPROTOCOL:
        await ws.close()
        raise CallFailed(f"subprotocol {ws.subprotocol!r}")
    async with asyncio.timeout(CALL_TIMEOUT):
        await call(ws, "b", boot_frame("b", index))
    results.booted += 1
    return ws


async def station_load(
    index: int,
    ws: ClientConnection,
    plan: Plan,
    clock: Clock,
    pool: list[str],
    results: Results,
    rng: random.Random,
) -> None:
    perf = time.perf_counter
    latencies = results.latencies
    energy = rng.uniform(1e5, 9e6)  # Wh; the register only grows
    pick = rng.randrange(POOL)
    seq = 0
    async with asyncio.timeout(CALL_TIMEOUT):
        await call(ws, "s", status_frame("s", clock))
    await plan.started.wait()
    interval = plan.stations / plan.rate if plan.rate else 0.0
    next_at = plan.start + rng.uniform(0, interval)
    while True:
        now = perf()
        if now >= plan.measure_to:
            return
        if interval:
            if next_at > now:
                await asyncio.sleep(next_at - now)
            next_at = max(next_at + interval, perf() - interval)  # catch up one at most
        seq += 1
        message_id = f"{seq}"
        if seq % HEARTBEAT_EVERY == 0:
            text = f'[2,"{message_id}","Heartbeat",{{}}]'
        else:
            energy += rng.uniform(0.5, 6.0)
            pick = (pick + 1) % POOL
            text = (
                f'[2,"{message_id}","MeterValues",{{"connectorId":1,"meterValue":[{{'
                f'"timestamp":"{clock.text}","sampledValue":[{{"value":"{energy:.1f}",'
                '"context":"Sample.Periodic","measurand":"Energy.Active.Import.Register",'
                f'"location":"Outlet","unit":"Wh"}},{pool[pick]}]}}]}}]'
            )
        sent = perf()
        async with asyncio.timeout(CALL_TIMEOUT):
            await call(ws, message_id, text)
        done = perf()
        if plan.measure_from <= sent and done <= plan.measure_to:
            latencies.append(done - sent)
            results.answered += 1


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    k = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def ms(seconds: float) -> float | None:
    """Milliseconds, rounded; None (JSON null) when there was nothing to measure."""
    return None if math.isnan(seconds) else round(seconds * 1e3, 3)


async def open_all(
    count: int,
    url: str,
    prefix: str,
    clock: Clock,
    results: Results,
    concurrency: int,
    pace: float,
    budget: float,
) -> list[ClientConnection]:
    """Open and boot ``count`` stations, ``concurrency`` at a time, at most ``pace`` per second."""
    gate = asyncio.Semaphore(concurrency)
    began = time.perf_counter()

    async def one(i: int) -> ClientConnection | None:
        delay = began + i / pace - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        async with gate:
            try:
                return await open_station(url, i, prefix, clock, results)
            except (OSError, TimeoutError, WebSocketException, CallFailed) as exc:
                results.error(f"connect: {type(exc).__name__}: {exc}"[:120])
                return None

    tasks = [asyncio.ensure_future(one(i)) for i in range(count)]
    done, pending = await asyncio.wait(tasks, timeout=budget)
    for task in pending:
        task.cancel()
        results.error("connect: over the time budget")
    return [ws for task in done if (ws := task.result()) is not None]


async def close_all(connections: list[ClientConnection], timeout: float) -> None:
    if connections:
        await asyncio.wait(
            [asyncio.ensure_future(ws.close()) for ws in connections], timeout=timeout
        )


async def run_load(args: argparse.Namespace) -> dict[str, Any]:
    clock = Clock()
    ticker = asyncio.ensure_future(clock.tick())
    rng = random.Random(args.seed)
    pool = sampled_value_pool(rng)
    results = Results()
    began = time.perf_counter()
    connections = await open_all(
        args.stations,
        args.url,
        args.prefix,
        clock,
        results,
        args.concurrency,
        args.connect_rate,
        args.connect_budget,
    )
    connect_seconds = time.perf_counter() - began
    plan = Plan(args.url, len(connections), rate=args.rate)
    tasks = [
        asyncio.ensure_future(
            station_load(i, ws, plan, clock, pool, results, random.Random(rng.getrandbits(64)))
        )
        for i, ws in enumerate(connections)
    ]
    await asyncio.sleep(0.2)  # let every station send its StatusNotification first
    cpu0 = time.process_time()
    plan.start = time.perf_counter()
    plan.measure_from = plan.start + args.warmup
    plan.measure_to = plan.measure_from + args.seconds
    plan.started.set()
    await asyncio.sleep(args.warmup)
    cpu1 = time.process_time()
    done, pending = await asyncio.wait(tasks, timeout=args.seconds + CALL_TIMEOUT + 5)
    cpu2 = time.process_time()
    for task in pending:
        task.cancel()
        results.error("station: over the time budget")
    for task in done:
        exc = task.exception()
        if exc is not None:
            results.error(f"station: {type(exc).__name__}: {exc}"[:120])
    await close_all(connections, 5.0)
    ticker.cancel()
    lat = sorted(results.latencies)
    measured = args.seconds
    return {
        "mode": "rate" if args.rate else "max",
        "url": args.url,
        "stations": args.stations,
        "stations_up": len(connections),
        "rate_target": args.rate,
        "seconds": measured,
        "warmup": args.warmup,
        "messages": results.answered,
        "msgs_per_s": round(results.answered / measured, 1),
        "p50_ms": ms(percentile(lat, 0.50)),
        "p90_ms": ms(percentile(lat, 0.90)),
        "p99_ms": ms(percentile(lat, 0.99)),
        "max_ms": ms(lat[-1]) if lat else None,
        "mean_ms": ms(sum(lat) / len(lat)) if lat else None,
        "errors": results.errors,
        "error_kinds": dict(sorted(results.error_kinds.items())[:10]),
        "connect_seconds": round(connect_seconds, 2),
        "loadgen_cpu": round((cpu2 - cpu1) / measured, 3),  # cores used while measuring
        "loadgen_cpu_warmup": round((cpu1 - cpu0) / max(args.warmup, 1e-9), 3),
    }


async def run_idle(args: argparse.Namespace) -> dict[str, Any]:
    clock = Clock()
    ticker = asyncio.ensure_future(clock.tick())
    results = Results()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    began = time.perf_counter()
    connections = await open_all(
        args.idle,
        args.url,
        args.prefix,
        clock,
        results,
        args.concurrency,
        args.connect_rate,
        args.connect_budget,
    )
    took = time.perf_counter() - began
    alive = sum(1 for ws in connections if ws.close_code is None)
    event = {
        "event": "connected",
        "stations": args.idle,
        "booted": results.booted,
        "open": alive,
        "errors": results.errors,
        "seconds": round(took, 2),
    }
    print(json.dumps(event), flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=args.hold)
    alive_end = sum(1 for ws in connections if ws.close_code is None)
    ticker.cancel()
    return {
        "mode": "idle",
        "url": args.url,
        "stations": args.idle,
        "booted": results.booted,
        "open_after_connect": alive,
        "open_at_end": alive_end,
        "connect_seconds": round(took, 2),
        "errors": results.errors,
        "error_kinds": dict(sorted(results.error_kinds.items())[:10]),
    }


def check_loopback(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None:
        raise SystemExit(f"loadgen: need a ws:// URL, not {url!r}")
    host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"loadgen: only loopback addresses, not {parts.hostname!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", required=True, help="ws://127.0.0.1:PORT/ocpp (station id added)")
    parser.add_argument("--stations", type=int, default=50, help="stations under load (50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="uncounted seconds first (2)")
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--rate", type=float, help="messages/s of all stations together")
    load.add_argument("--max", action="store_true", help="as fast as answers come (default)")
    load.add_argument("--idle", type=int, metavar="N", help="hold N idle stations instead")
    parser.add_argument("--hold", type=float, default=60.0, help="idle: seconds to hold (60)")
    parser.add_argument("--concurrency", type=int, default=100, help="connects in flight (100)")
    parser.add_argument("--connect-rate", type=float, default=2000.0, help="connects/s at most")
    parser.add_argument("--connect-budget", type=float, default=120.0, help="s to connect all")
    parser.add_argument("--prefix", default="LG", help="station id prefix (LG)")
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args(argv)
    check_loopback(args.url)
    count = args.idle if args.idle is not None else args.stations
    if (
        count < 1
        or args.seconds <= 0
        or args.warmup < 0
        or (args.rate is not None and args.rate <= 0)
    ):
        parser.error("need at least one station, --seconds > 0, --warmup >= 0, --rate > 0")
    args.url = args.url.rstrip("/")
    nofile = raise_nofile(count + 256)
    if nofile < count + 64:
        parser.error(f"RLIMIT_NOFILE is {nofile}: too low for {count} connections")
    runner = run_idle if args.idle is not None else run_load
    summary = asyncio.run(runner(args))
    summary["pid"] = os.getpid()
    return print_summary(summary)


if __name__ == "__main__":
    sys.exit(main())
