"""PlugStream Cloud under load, against a reference CSMS built on the ``ocpp`` library.

What it measures, on loopback, with each server in its own process and the load
generator (``bench/loadgen.py``, plain ``websockets`` clients) in another:

* **sustained messages/s** at full load: ``--stations`` OCPP 1.6J stations (50)
  each sending MeterValues with 10 sampled values, and every 10th message a
  Heartbeat, each awaited until its CALLRESULT arrives before the next (closed
  loop), for ``--seconds`` (10) after a warm-up, in ``--rounds`` (2) rounds that
  alternate between the servers (both up, one loaded at a time); the best round
  counts, as the machine may be busy with other work. Storage is durable on both sides:
  SQLite in a temporary directory on disk, every meter value committed before it
  is acknowledged;
* **latency** p50 / p99 (send to CALLRESULT) at half load: the same stations
  rate-limited to half of PlugStream Cloud's measured messages/s. The reference
  runs at half of its own (it could not carry ours);
* **memory per idle station**: a fresh server, a short warm-up, its RSS (VmRSS
  from ``/proc``, the process and its children), then ``--idle`` (10,000)
  stations connected and booted and left idle, RSS again; the growth divided
  by the stations that stayed connected.

The two servers:

* **ours**: ``python -m plugstream.cli cloud serve --db sqlite:///... --auto-register-unsecured``;
* **reference**: ``bench/peers/reference_csms.py``, an ``ocpp.v16.ChargePoint`` +
  ``websockets.serve`` central system with the same handlers and the same durable
  work, written the way the library's examples write one (stdlib ``sqlite3``, WAL,
  ``synchronous=FULL``, one commit per message, made in the handler).

Goals (on a 2-core machine): ours at least 5x the reference's messages/s with
durability on; p99 under 50 ms at half of ours' load; 10,000 idle stations in one
server process at under 40 KB RSS each.

Run it from the repository root:

    python bench/cloud.py                   # ~3-4 minutes
    python bench/cloud.py --quick           # ~30 s smoke run (10 stations, 500 idle)
    python bench/cloud.py --stations 100 --seconds 20 --idle 10000

It prints a table, then as its last line one JSON object (``ours_msgs_per_s``,
``reference_msgs_per_s``, ``ratio``, ``p50_ms``, ``p99_ms``, ...) for scripts to read.
Every process it starts is stopped by its PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from procs import (
    CLOUD_READY,
    HOST,
    BenchError,
    Server,
    cloud_argv,
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

GOAL_RATIO: Final = 5.0
GOAL_P99_MS: Final = 50.0
GOAL_IDLE_STATIONS: Final = 10_000
GOAL_KB_PER_IDLE: Final = 40.0

SETTLE: Final = 2.0  # s to let a server settle before reading its RSS


def make_server(key: str, impl: str, workdir: Path, ping_interval: float) -> Server:
    port = free_port()
    db = workdir / f"{key}.db"
    log = workdir / f"{key}.log"
    if impl == "plugstream":
        options = ["--auto-register-unsecured", "--ping-interval", f"{ping_interval:g}"]
        argv = cloud_argv(port, db, *options)
        return Server("PlugStream Cloud", argv, CLOUD_READY, port, db, log, key=key)
    argv = [sys.executable, str(REFERENCE), "--host", HOST, "--port", str(port), "--db", str(db)]
    label = "reference (ocpp lib)" if key == "reference" else f"reference as {key}"
    return Server(label, argv, "ready", port, db, log, key=key)


def loadgen_argv(server: Server, *args: str) -> list[str]:
    return [sys.executable, str(LOADGEN), "--url", f"ws://{HOST}:{server.port}/ocpp", *args]


def loadgen_result(text: str) -> dict[str, Any]:
    result = last_json(text)
    if result is None:
        raise BenchError(f"no JSON line from the load generator:\n{text[-2000:]}")
    return result


# --- phases ----------------------------------------------------------------------


@dataclass(slots=True)
class Load:
    result: dict[str, Any]
    server_cpu: float  # cores the server used during the run
    rss_kb: int


def run_load(server: Server, workdir: Path, timeout: float, *args: str) -> Load:
    """One load generator run against a running server; its JSON result."""
    err = workdir / "loadgen.err"
    cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
    with err.open("wb") as errors:
        proc = subprocess.Popen(
            loadgen_argv(server, *args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            cwd=HERE.parent,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            stop_pid(proc)
            raise BenchError(
                f"load generator over its {timeout:.0f} s against {server.label}"
            ) from exc
        finally:
            stop_pid(proc)
    cpu1, t1 = cpu_seconds(server.pid), time.monotonic()
    if proc.returncode != 0:
        raise BenchError(f"load generator failed ({proc.returncode}):\n{err.read_text()[-2000:]}")
    if not server.alive():
        raise BenchError(f"{server.label} died under load:\n{server.tail()}")
    return Load(loadgen_result(out.decode()), (cpu1 - cpu0) / (t1 - t0), rss_kb(server.pid))


@dataclass(slots=True)
class Idle:
    stations: int
    open: int
    connect_seconds: float
    rss_before_kb: int
    rss_after_kb: int
    errors: int
    error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def kb_per_station(self) -> float | None:
        if self.open <= 0:
            return None
        return (self.rss_after_kb - self.rss_before_kb) / self.open


def read_lines(stream: IO[bytes], into: queue.Queue[str | None]) -> None:
    for raw in stream:
        into.put(raw.decode(errors="replace"))
    into.put(None)


def run_idle(server: Server, workdir: Path, count: int, budget: float) -> Idle:
    """A fresh server: warm-up, RSS, ``count`` idle stations connected, RSS again."""
    with server.running():
        warm = run_load(server, workdir, 60, "--idle", "20", "--hold", "0", "--prefix", "WARM")
        if warm.result.get("booted") != 20:
            raise BenchError(f"warm-up of {server.label} failed: {warm.result}")
        time.sleep(SETTLE)
        before = rss_kb(server.pid)
        err = workdir / "loadgen-idle.err"
        with err.open("wb") as errors:
            proc = subprocess.Popen(
                loadgen_argv(
                    server,
                    "--idle",
                    str(count),
                    "--hold",
                    f"{budget + 60:.0f}",
                    "--connect-budget",
                    f"{budget:.0f}",
                ),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
                cwd=HERE.parent,
            )
            try:
                assert proc.stdout is not None
                lines: queue.Queue[str | None] = queue.Queue()
                threading.Thread(target=read_lines, args=(proc.stdout, lines), daemon=True).start()
                event: dict[str, Any] | None = None
                deadline = time.monotonic() + budget + 30
                while event is None and time.monotonic() < deadline:
                    try:
                        line = lines.get(timeout=1.0)
                    except queue.Empty:
                        continue
                    if line is None:
                        break
                    if line.startswith("{") and '"connected"' in line:
                        event = json.loads(line)
                if event is None:
                    raise BenchError(
                        f"idle stations never all connected to {server.label}:\n"
                        f"{err.read_text()[-2000:]}\n{server.tail()}"
                    )
                time.sleep(SETTLE)
                after = rss_kb(server.pid)
                if not server.alive():
                    raise BenchError(f"{server.label} died with idle stations:\n{server.tail()}")
            finally:
                stop_pid(proc)
    return Idle(
        stations=count,
        open=int(event["open"]),
        connect_seconds=float(event["seconds"]),
        rss_before_kb=before,
        rss_after_kb=after,
        errors=int(event["errors"]),
    )


@dataclass(slots=True)
class Figures:
    server: Server
    impl: str
    fulls: list[Load] = field(default_factory=list)  # one per round
    half: Load | None = None
    half_rate: float = 0.0
    idle: Idle | None = None
    db_bytes: int = 0

    @property
    def full(self) -> Load:
        """The best round at full load (the others were disturbed by something else)."""
        return max(self.fulls, key=lambda load: float(load.result["msgs_per_s"]))


def measure(workdir: Path, args: argparse.Namespace) -> tuple[Figures, Figures]:
    """Both servers up; full load in alternating rounds; half load; then idle on fresh ones."""
    ours = Figures(
        make_server("ours", args.ours_server, workdir, args.ping_interval), args.ours_server
    )
    ref = Figures(make_server("reference", "reference", workdir, args.ping_interval), "reference")
    budget = args.seconds + args.warmup + 90
    common = ["--stations", str(args.stations), "--seconds", f"{args.seconds:g}"]
    common += ["--warmup", f"{args.warmup:g}"]
    with ours.server.running(), ref.server.running():
        for r in range(args.rounds):
            for figures in (ours, ref) if r % 2 == 0 else (ref, ours):
                label = figures.server.label
                print(
                    f"[{label}] full load, round {r + 1}: {args.stations} stations, "
                    f"{args.seconds:g} s",
                    flush=True,
                )
                load = run_load(figures.server, workdir, budget, *common, "--max")
                figures.fulls.append(load)
                print(f"    {load.result['msgs_per_s']:,.0f} messages/s", flush=True)
        for figures in (ours, ref):
            # the reference at half of its own load: at half of ours' it would be overloaded
            figures.half_rate = figures.full.result["msgs_per_s"] / 2
            label = figures.server.label
            print(f"[{label}] half load: {figures.half_rate:,.0f} messages/s", flush=True)
            if figures.half_rate > 0:
                figures.half = run_load(
                    figures.server, workdir, budget, *common, "--rate", f"{figures.half_rate:.1f}"
                )
            figures.db_bytes = figures.server.db_bytes()
    if args.idle > 0:
        for figures in (ours, ref):
            print(f"[{figures.server.label}] idle: {args.idle:,} stations", flush=True)
            fresh = make_server(figures.server.key, figures.impl, workdir, args.ping_interval)
            figures.idle = run_idle(fresh, workdir, args.idle, args.idle_budget)
    return ours, ref


# --- report ----------------------------------------------------------------------


def _f(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def report(ours: Figures, ref: Figures, args: argparse.Namespace, took: float) -> dict[str, Any]:
    o_full, r_full = ours.full.result, ref.full.result
    o_half = ours.half.result if ours.half else {}
    r_half = ref.half.result if ref.half else {}
    ratio = o_full["msgs_per_s"] / r_full["msgs_per_s"] if r_full["msgs_per_s"] else None
    o_kb = ours.idle.kb_per_station if ours.idle else None
    r_kb = ref.idle.kb_per_station if ref.idle else None

    rows: list[tuple[str, str, str]] = [
        (
            f"full load: messages/s (best of {args.rounds})",
            _f(o_full["msgs_per_s"]),
            _f(r_full["msgs_per_s"]),
        ),
        (
            "  latency p50 / p99 ms",
            f"{_f(o_full['p50_ms'], '.1f')} / {_f(o_full['p99_ms'], '.1f')}",
            f"{_f(r_full['p50_ms'], '.1f')} / {_f(r_full['p99_ms'], '.1f')}",
        ),
        ("  server CPU (cores)", f"{ours.full.server_cpu:.2f}", f"{ref.full.server_cpu:.2f}"),
        (
            "  load generator CPU (cores)",
            f"{o_full['loadgen_cpu']:.2f}",
            f"{r_full['loadgen_cpu']:.2f}",
        ),
        ("  errors", str(o_full["errors"]), str(r_full["errors"])),
        ("half load: target messages/s", _f(ours.half_rate), _f(ref.half_rate)),
        ("  achieved messages/s", _f(o_half.get("msgs_per_s")), _f(r_half.get("msgs_per_s"))),
        (
            "  latency p50 / p99 ms",
            f"{_f(o_half.get('p50_ms'), '.1f')} / {_f(o_half.get('p99_ms'), '.1f')}",
            f"{_f(r_half.get('p50_ms'), '.1f')} / {_f(r_half.get('p99_ms'), '.1f')}",
        ),
        (
            "  server CPU (cores)",
            _f(ours.half.server_cpu if ours.half else None, ".2f"),
            _f(ref.half.server_cpu if ref.half else None, ".2f"),
        ),
        ("  errors", str(o_half.get("errors", "-")), str(r_half.get("errors", "-"))),
        ("database after load (MB)", f"{ours.db_bytes / 1e6:.1f}", f"{ref.db_bytes / 1e6:.1f}"),
    ]
    if ours.idle or ref.idle:
        rows += [
            (
                "idle stations connected",
                _f(ours.idle.open if ours.idle else None),
                _f(ref.idle.open if ref.idle else None),
            ),
            (
                "  connect + boot seconds",
                _f(ours.idle.connect_seconds if ours.idle else None, ".1f"),
                _f(ref.idle.connect_seconds if ref.idle else None, ".1f"),
            ),
            (
                "  server RSS before / after MB",
                (f"{ours.idle.rss_before_kb / 1024:.0f} / {ours.idle.rss_after_kb / 1024:.0f}")
                if ours.idle
                else "-",
                (f"{ref.idle.rss_before_kb / 1024:.0f} / {ref.idle.rss_after_kb / 1024:.0f}")
                if ref.idle
                else "-",
            ),
            ("  RSS KB per idle station", _f(o_kb, ".1f"), _f(r_kb, ".1f")),
        ]

    py = f"{platform.python_implementation()} {platform.python_version()}"
    print()
    print("PlugStream Cloud vs a reference CSMS (ocpp library + websockets), OCPP 1.6J on loopback")
    print(
        f"{py}; {os.cpu_count()} CPUs; ocpp {dist_version('ocpp')}, websockets "
        f"{dist_version('websockets')}; SQLite durable (commit before CALLRESULT) in {args.workdir_shown}"
    )
    print(
        f"{args.stations} stations, MeterValues (10 sampled values) + every 10th a Heartbeat, "
        f"closed loop; {args.warmup:g} s warm-up + {args.seconds:g} s measured per run; "
        f"{took:.0f} s in all"
    )
    print()
    width = max(len(r[0]) for r in rows) + 2
    head = f"{'':<{width}}{ours.server.label:>22}{ref.server.label:>24}"
    print(head)
    print("-" * len(head))
    for name, o, r in rows:
        print(f"{name:<{width}}{o:>22}{r:>24}")
    print()

    goals: dict[str, bool | None] = {
        "ratio_at_least_5x": None if ratio is None else ratio >= GOAL_RATIO,
        "p99_under_50ms_at_half_load": (
            None
            if not o_half
            else (
                o_half["p99_ms"] is not None
                and o_half["p99_ms"] < GOAL_P99_MS
                and o_half["errors"] == 0
            )
        ),
        "idle_10000_under_40kb": (
            None
            if ours.idle is None or args.idle < GOAL_IDLE_STATIONS or o_kb is None
            else ours.idle.open >= GOAL_IDLE_STATIONS and o_kb < GOAL_KB_PER_IDLE
        ),
    }
    evaluated = {k: v for k, v in goals.items() if v is not None}
    meets = bool(evaluated) and all(evaluated.values()) and len(evaluated) == len(goals)
    ratio_text = "-" if ratio is None else f"{ratio:.1f}x"
    print(
        f"ours / reference messages/s: {ratio_text} (goal >= {GOAL_RATIO:g}x); "
        f"ours p99 at half load: {_f(o_half.get('p99_ms'), '.1f')} ms (goal < {GOAL_P99_MS:g}); "
        f"ours RSS per idle station: {_f(o_kb, '.1f')} KB over {args.idle:,} "
        f"(goal < {GOAL_KB_PER_IDLE:g} KB over {GOAL_IDLE_STATIONS:,})"
    )
    for name, ok in goals.items():
        verdict = "not evaluated" if ok is None else ("meets" if ok else "MISSES")
        print(f"  {name}: {verdict}")

    return {
        "bench": "cloud",
        "ours_msgs_per_s": o_full["msgs_per_s"],
        "reference_msgs_per_s": r_full["msgs_per_s"],
        "ratio": None if ratio is None else round(ratio, 2),
        "p50_ms": o_half.get("p50_ms"),
        "p99_ms": o_half.get("p99_ms"),
        "half_load_msgs_per_s": round(ours.half_rate, 1),
        "half_load_achieved_msgs_per_s": o_half.get("msgs_per_s"),
        "reference_p50_ms": r_half.get("p50_ms"),
        "reference_p99_ms": r_half.get("p99_ms"),
        "reference_half_load_msgs_per_s": round(ref.half_rate, 1),
        "full_load_p50_ms": o_full["p50_ms"],
        "full_load_p99_ms": o_full["p99_ms"],
        "reference_full_load_p50_ms": r_full["p50_ms"],
        "reference_full_load_p99_ms": r_full["p99_ms"],
        "idle_stations": args.idle,
        "idle_stations_connected": ours.idle.open if ours.idle else None,
        "reference_idle_stations_connected": ref.idle.open if ref.idle else None,
        "rss_kb_per_idle_station": None if o_kb is None else round(o_kb, 2),
        "reference_rss_kb_per_idle_station": None if r_kb is None else round(r_kb, 2),
        "rss_idle_kb": (
            {"before": ours.idle.rss_before_kb, "after": ours.idle.rss_after_kb}
            if ours.idle
            else None
        ),
        "reference_rss_idle_kb": (
            {"before": ref.idle.rss_before_kb, "after": ref.idle.rss_after_kb} if ref.idle else None
        ),
        "ours_msgs_per_s_rounds": [load.result["msgs_per_s"] for load in ours.fulls],
        "reference_msgs_per_s_rounds": [load.result["msgs_per_s"] for load in ref.fulls],
        "server_cpu_full_load": round(ours.full.server_cpu, 2),
        "reference_server_cpu_full_load": round(ref.full.server_cpu, 2),
        "loadgen_cpu_full_load": o_full["loadgen_cpu"],
        "errors": {
            "ours": o_full["errors"] + o_half.get("errors", 0),
            "reference": r_full["errors"] + r_half.get("errors", 0),
            "ours_idle": ours.idle.errors if ours.idle else None,
            "reference_idle": ref.idle.errors if ref.idle else None,
        },
        "goals": {
            "ratio": GOAL_RATIO,
            "p99_ms_at_half_load": GOAL_P99_MS,
            "idle_stations": GOAL_IDLE_STATIONS,
            "kb_per_idle_station": GOAL_KB_PER_IDLE,
            "met": goals,
        },
        "meets_goals": meets,
        "ours_server": args.ours_server,
        "stations": args.stations,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "durability": "sqlite WAL, commit before CALLRESULT",
        "cpus": os.cpu_count(),
        "took_s": round(took, 1),
        "python": platform.python_version(),
        "versions": {d: dist_version(d) for d in ("ocpp", "websockets", "orjson", "plugstream")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--stations", type=int, default=50, help="stations under load (50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured s per run (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="uncounted s per run (2)")
    parser.add_argument("--rounds", type=int, default=2, help="full-load rounds each (2)")
    parser.add_argument("--idle", type=int, default=10_000, help="idle stations (10000; 0: skip)")
    parser.add_argument("--idle-budget", type=float, default=150.0, help="s to connect them (150)")
    parser.add_argument("--ping-interval", type=float, default=30.0, help="ours' ping s (30)")
    parser.add_argument("--quick", action="store_true", help="~30 s smoke run: small figures")
    parser.add_argument(
        "--ours-server",
        choices=("plugstream", "reference"),
        default="plugstream",
        help="what runs as 'ours' (reference: test the bench itself)",
    )
    parser.add_argument("--workdir", type=Path, help="where the databases go (a temporary dir)")
    args = parser.parse_args(argv)
    if args.quick:
        args.stations, args.seconds, args.warmup, args.rounds = 10, 3.0, 1.0, 1
        args.idle = min(args.idle, 500)
    if (
        args.stations < 1
        or args.rounds < 1
        or args.seconds <= 0
        or args.warmup < 0
        or args.idle < 0
    ):
        parser.error(
            "need --stations >= 1, --rounds >= 1, --seconds > 0, --warmup >= 0, --idle >= 0"
        )
    raise_nofile(2 * args.idle + 1024)  # inherited by the servers and the load generator

    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="plugstream-bench-", dir=args.workdir))
    args.workdir_shown = str(workdir.parent)
    try:
        ours, ref = measure(workdir, args)
        summary = report(ours, ref, args, time.monotonic() - began)
    except BenchError as exc:
        print(f"bench/cloud.py: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return print_summary(summary)


if __name__ == "__main__":
    sys.exit(main())
