"""Fleet capacity: how many charging stations one process sustains under half a core.

What it measures, on loopback, at the default intervals and time scale 1 (real time):
PlugStream Cloud (``plugstream cloud serve``, SQLite in a temporary directory,
``--auto-register-unsecured``) in its own process; then, one after the other against it:

* **ours**: ``plugstream fleet --stations N --csms ws://.../ocpp --ocpp V --sessions 1
  --session-minutes 600 --time-scale 1 --json`` (``--ours``, 10,000 stations): real
  :class:`Station16` / :class:`Station201` objects, 60 s meter samples, the cloud's
  heartbeat interval, WebSocket pings at WebSocketPingInterval (180 s);
* **theirs**: ``bench/peers/ocpplib_fleet.py`` (``--theirs``, 1,500), charge points
  written with the ``ocpp`` library sending the same messages in the same phase.

Each fleet is a subprocess. The bench polls the cloud's REST API
(``/api/v1/stations``) until every station of the fleet is connected with its
connector in a session (Charging, SuspendedEV/EVSE; 2.0.1: Occupied); the ramp-up is
timed by the fleet itself (``plugstream fleet`` prints when every station's session was
accepted by the cloud; the cloud's list, busy with the ramp, answers late). Then it
reads the fleet process's CPU time (``/proc/PID/stat`` utime + stime) over a steady
window (``--window``, 180 s: whole minutes, as every station samples its meter once in
any minute, and a whole keep-alive cycle, as the ocpp-library fleet pings every 180 s --
a 60 s window caught those pings in some runs and not in others, and the ratio moved by
a fifth between runs) and its RSS (whole process, divided by its stations):

    cpu_fraction = CPU seconds / wall seconds of the window
    stations_at_half_core = stations x 0.5 / cpu_fraction
    ratio = ours' stations_at_half_core / theirs'

The four goals of the lean fleet (issue 17), evaluated when ours are 10,000: its
cpu_fraction <= 0.5, its RSS <= 40 KB a station, its ramp-up <= 60 s, and ratio >= 2.
The cloud's own CPU during each window is printed too, and the load average (the
machine may be shared: compare ours with theirs in the same run).

``plugstream fleet`` runs with ``--idle-minutes 0 0`` (the first car at once, so the
ramp-up fits the time budget) and both fleets start ``--connect-rate`` stations a second
(500). The ocpp-library fleet pings every 180 s, our stations' WebSocketPingInterval
(websockets' own default, 20 s, would make it pay 9 times our keep-alive).

Run it from the repository root:

    python bench/fleet.py                    # ~10 minutes: 10,000 ours, 1,500 theirs
    python bench/fleet.py --quick            # ~2.5 min: 200 each, 60 s windows
    python bench/fleet.py --ours 2000 --theirs 1000 --window 60 --ocpp 2.0.1

Last line: one JSON object (``ours``, ``theirs`` figures, ``ratio``, ``goals``, ``meets_goal``).
Every process it starts is stopped by its PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from plugstream.cli import FLEET_RAMPED
from plugstream.cloud.config import CloudConfig
from plugstream.station.config import Config16
from procs import (
    CLOUD_READY,
    HOST,
    BenchError,
    cloud_argv,
    cpu_seconds,
    free_port,
    last_json,
    launch,
    print_summary,
    raise_nofile,
    rss_kb,
    stop_pid,
    tail,
)

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parent
PEER: Final = HERE / "peers" / "ocpplib_fleet.py"
API_TOKEN: Final = "fleet-bench-token"
ID_TAGS: Final = tuple(f"PSDEMO{n:04d}" for n in range(1, 9))  # what both fleets swipe
OURS_PREFIX: Final = "SIM-"
THEIRS_PREFIX: Final = "LIB-"
IN_SESSION: Final = frozenset({"Charging", "SuspendedEV", "SuspendedEVSE", "Occupied"})

GOAL_STATIONS: Final = 10_000
HALF_CORE: Final = 0.5
GOAL_KB_PER_STATION: Final = 40.0  # RSS of the fleet process over its stations
GOAL_RAMP_S: Final = 60.0  # from the fleet's start until all 10,000 are in a session
GOAL_RATIO: Final = 2.0  # ours' stations per CPU over the ocpp-library fleet's

STOP_TIMEOUT: Final = 60.0  # a fleet drains its journals (5 s) and closes 10,000 sockets
POLL: Final = 3.0  # s between looks at the cloud's station list during ramp-up, at least
POLL_PER_STATION: Final = 0.0005  # s more per station: listing 10,000 loads the cloud too
SETTLE: Final = 5.0  # s after the last station started its session, before the window
STATION_PING_INTERVAL: Final = float(Config16(None).websocket_ping_interval)
"""Our stations' WebSocketPingInterval (180 s); the ocpp-library fleet pings as often."""


# --- the cloud ---------------------------------------------------------------------


@dataclass(slots=True)
class Cloud:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    api_errors: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/ocpp"

    def tail(self, lines: int = 20) -> str:
        return tail(self.log, lines)

    def api(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> Any:
        request = urllib.request.Request(
            f"http://{HOST}:{self.port}/api/v1{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())


def start_cloud(workdir: Path) -> Cloud:
    port = free_port()
    log = workdir / "cloud.log"
    argv = cloud_argv(port, workdir / "cloud.db", "--auto-register-unsecured")
    argv += ["--api-token", API_TOKEN]
    # the cloud's default keep-alive (the CLI flag's own default may lag behind it)
    argv += ["--ping-interval", f"{CloudConfig().ping_interval:g}"]
    proc = launch(argv, log, CLOUD_READY, "the cloud", stop_timeout=STOP_TIMEOUT)
    cloud = Cloud(port, proc, log)
    try:
        for tag in ID_TAGS:
            cloud.api("PUT", f"/id-tokens/{tag}", {"status": "Accepted"})
    except BaseException:
        stop_pid(proc, STOP_TIMEOUT)
        raise
    return cloud


def in_session(cloud: Cloud, prefix: str) -> tuple[int, int] | None:
    """(connected, connected with the connector in a session) of the stations ``prefix*``;
    None when the cloud could not answer this time (it is busy with the ramp-up)."""
    connected = charging = 0
    try:
        stations = cloud.api("GET", "/stations")
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        cloud.api_errors.append(f"{type(exc).__name__}: {exc}")
        return None
    for station in stations:
        if not station["station_id"].startswith(prefix) or not station["connected"]:
            continue
        connected += 1
        if any(c.get("status") in IN_SESSION for c in station.get("connectors") or ()):
            charging += 1
    return connected, charging


def gone(cloud: Cloud, prefix: str, timeout: float = 120.0) -> None:
    """Until the cloud has seen every station of ``prefix`` go (their last messages and
    disconnects written): the next fleet ramps up against an idle cloud, not one still
    busy with 10,000 StopTransactions (handshakes slow down, and past 500 unfinished
    from one address the cloud refuses them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = in_session(cloud, prefix)
        if seen is not None and seen[0] == 0:
            cloud.api_errors.clear()
            return
        time.sleep(POLL)
    print(f"    the cloud still holds stations {prefix}* after {timeout:.0f} s", flush=True)


# --- one fleet ---------------------------------------------------------------------


@dataclass(slots=True)
class Figures:
    key: str
    label: str
    stations: int
    charging: int = 0
    connected: int = 0
    ramp_s: float = 0.0
    fleet_ramp_s: float | None = None  # the fleet's own: start until all in a session
    window_s: float = 0.0
    cpu_s: float = 0.0
    rss_kb: int = 0
    cloud_cpu_s: float = 0.0
    summary: dict[str, Any] | None = None
    argv: list[str] = field(default_factory=list)

    @property
    def cpu_fraction(self) -> float:
        return self.cpu_s / self.window_s if self.window_s > 0 else 0.0

    @property
    def at_half_core(self) -> float | None:
        if self.cpu_fraction <= 0:
            return None
        return self.charging * HALF_CORE / self.cpu_fraction

    @property
    def steady(self) -> bool:
        """Every station was in its session through the window (none still ramping up)."""
        return self.charging >= self.stations

    @property
    def kb_per_station(self) -> float:
        """RSS of the whole process over the stations it holds (connected)."""
        return self.rss_kb / self.connected if self.connected else 0.0


def ours_argv(args: argparse.Namespace, cloud: Cloud, duration: float) -> list[str]:
    common = ["--stations", str(args.ours), "--csms", cloud.url, "--ocpp", args.ocpp]
    common += ["--sessions", "1", "--session-minutes", "600", "--time-scale", "1"]
    common += ["--duration", f"{duration:.0f}", "--json"]
    # the first car at once (else within 5 simulated minutes: a longer ramp-up)
    common += ["--idle-minutes", "0", "0", "--connect-rate", f"{args.connect_rate:g}"]
    return [sys.executable, "-m", "plugstream.cli", "fleet", *common]


def theirs_argv(args: argparse.Namespace, cloud: Cloud, duration: float) -> list[str]:
    argv = [sys.executable, str(PEER), "--stations", str(args.theirs), "--csms", cloud.url]
    argv += ["--ocpp", args.ocpp, "--duration", f"{duration:.0f}", "--json"]
    argv += ["--ping-interval", f"{STATION_PING_INTERVAL:g}", "--connect-rate"]
    argv += [f"{args.connect_rate:g}"]
    return [*argv, "--id-prefix", THEIRS_PREFIX, "--id-tag", ID_TAGS[0]]


def fleet_ramped(out: Path) -> float | None:
    """The ramp-up ``plugstream fleet`` printed (s from its start until every station had
    a session accepted by the cloud), None while it has not: exact, where the bench's look
    at the cloud's list comes every few seconds and waits on a cloud busy with the ramp."""
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith(FLEET_RAMPED):
            return float(line.rsplit(" after ", 1)[1].split()[0])
    return None


def measure(
    figures: Figures, argv: list[str], cloud: Cloud, prefix: str, args: argparse.Namespace
) -> None:
    """Run one fleet: wait until all are in a session, then measure a steady window."""
    figures.argv = argv
    out_path = Path(args.workdir_path) / f"{figures.key}.out"
    print(f"[{figures.label}] {figures.stations:,} stations, OCPP {args.ocpp}", flush=True)
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    try:
        began = time.monotonic()
        deadline = began + args.ramp_timeout
        connected = charging = 0
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(
                    f"{figures.label} exited ({proc.returncode}):\n"
                    f"{out_path.read_text(errors='replace')[-2000:]}"
                )
            if figures.fleet_ramp_s is None:
                figures.fleet_ramp_s = fleet_ramped(out_path)
            seen = in_session(cloud, prefix)
            if seen is not None:
                connected, charging = seen
                if charging >= figures.stations:
                    break
            time.sleep(max(POLL, POLL_PER_STATION * figures.stations))
        figures.ramp_s = time.monotonic() - began
        if figures.fleet_ramp_s is None:
            figures.fleet_ramp_s = fleet_ramped(out_path)
        own = (
            ""
            if figures.fleet_ramp_s is None
            else f" (the fleet's own: {figures.fleet_ramp_s:.1f} s)"
        )
        print(
            f"    ramp-up {figures.ramp_s:.0f} s{own}: {connected:,} connected, {charging:,} in "
            f"a session",
            flush=True,
        )
        if cloud.api_errors:
            print(
                f"    the cloud's station list failed {len(cloud.api_errors)} times, last: "
                f"{cloud.api_errors[-1]}\n{cloud.tail(10)}",
                flush=True,
            )
            cloud.api_errors.clear()
        if charging == 0:
            raise BenchError(f"no station of {figures.label} started a session")
        figures.charging, figures.connected = charging, connected
        if not figures.steady:
            print(
                f"    not all in a session after --ramp-timeout: the window measures "
                f"{charging:,} in a session and {figures.stations - charging:,} still ramping up",
                flush=True,
            )
        time.sleep(SETTLE)
        cpu0, cloud0 = cpu_seconds(proc.pid), cpu_seconds(cloud.proc.pid)
        t0 = time.monotonic()
        time.sleep(args.window)
        cpu1, rss = cpu_seconds(proc.pid), rss_kb(proc.pid)
        cloud1 = cpu_seconds(cloud.proc.pid)
        figures.window_s = time.monotonic() - t0
        figures.cpu_s, figures.rss_kb = cpu1 - cpu0, rss
        figures.cloud_cpu_s = cloud1 - cloud0
        if proc.poll() is not None:
            raise BenchError(f"{figures.label} ended during the window")
        print(
            f"    {figures.cpu_fraction:.3f} of a core over {figures.window_s:.0f} s, "
            f"RSS {rss / 1024:.0f} MB",
            flush=True,
        )
    finally:
        stop_pid(proc, STOP_TIMEOUT)
        gone(cloud, prefix)
    text = out_path.read_text(errors="replace")
    figures.summary = last_json(text)
    if figures.summary is None:
        print(f"    no summary from {figures.label} (exit {proc.returncode}):", flush=True)
        print("\n".join("      " + line for line in text.splitlines()[-8:]), flush=True)


# --- report ------------------------------------------------------------------------


def evaluate(ours: Figures, ratio: float | None) -> dict[str, dict[str, Any]]:
    """The four goals of issue 17's lean fleet, each with its figure and whether it is met
    (None: not evaluated -- fewer than 10,000 stations of ours in the run; the ratio is
    evaluated at any size, both fleets being measured in the same run)."""
    full = ours.stations >= GOAL_STATIONS
    ramp = ours.fleet_ramp_s if ours.fleet_ramp_s is not None else ours.ramp_s
    at_goal = full and ours.steady
    return {
        "cpu_fraction_at_10000": {
            "value": round(ours.cpu_fraction, 4) if at_goal else None,
            "goal": f"<= {HALF_CORE:g} core",
            "met": (ours.cpu_fraction <= HALF_CORE) if at_goal else (False if full else None),
        },
        "rss_kb_per_station": {
            "value": round(ours.kb_per_station, 1),
            "goal": f"<= {GOAL_KB_PER_STATION:g} KB",
            "met": (ours.kb_per_station <= GOAL_KB_PER_STATION) if full else None,
        },
        "ramp_s_10000": {
            "value": round(ramp, 1) if full else None,
            "goal": f"<= {GOAL_RAMP_S:g} s",
            "met": (ours.steady and ramp <= GOAL_RAMP_S) if full else None,
        },
        "stations_per_cpu_ratio": {
            "value": None if ratio is None else round(ratio, 2),
            "goal": f">= {GOAL_RATIO:g}x the ocpp-library fleet",
            "met": None if ratio is None else ratio >= GOAL_RATIO,
        },
    }


def report(ours: Figures, theirs: Figures, args: argparse.Namespace, took: float) -> dict[str, Any]:
    o_half, t_half = ours.at_half_core, theirs.at_half_core
    ratio = o_half / t_half if o_half and t_half else None
    rows = [
        ("stations connected", f"{ours.connected:,}", f"{theirs.connected:,}"),
        ("stations in a session", f"{ours.charging:,}", f"{theirs.charging:,}"),
        ("ramp-up s (not in the window)", f"{ours.ramp_s:.0f}", f"{theirs.ramp_s:.0f}"),
        ("window s", f"{ours.window_s:.0f}", f"{theirs.window_s:.0f}"),
        ("CPU of one core", f"{ours.cpu_fraction:.3f}", f"{theirs.cpu_fraction:.3f}"),
        (
            "stations at half a core",
            "-" if o_half is None else f"{o_half:,.0f}",
            "-" if t_half is None else f"{t_half:,.0f}",
        ),
        ("RSS MB", f"{ours.rss_kb / 1024:,.0f}", f"{theirs.rss_kb / 1024:,.0f}"),
        ("RSS KB per station", f"{ours.kb_per_station:.1f}", f"{theirs.kb_per_station:.1f}"),
        (
            "cloud CPU of one core",
            f"{ours.cloud_cpu_s / ours.window_s:.3f}" if ours.window_s else "-",
            f"{theirs.cloud_cpu_s / theirs.window_s:.3f}" if theirs.window_s else "-",
        ),
        (
            "fleet errors (its summary)",
            str((ours.summary or {}).get("errors", "-")),
            str((theirs.summary or {}).get("errors", "-")),
        ),
    ]
    print()
    print(
        f"Fleet capacity, OCPP {args.ocpp}, time scale 1, 60 s meter samples, against "
        f"PlugStream Cloud on loopback"
    )
    print(
        f"{platform.python_implementation()} {platform.python_version()}; {os.cpu_count()} CPUs; "
        f"{took:.0f} s in all; ours: {' '.join(Path(a).name for a in ours.argv[1:3])} ..."
    )
    width = max(len(r[0]) for r in rows) + 2
    head = f"{'':<{width}}{'ours (plugstream fleet)':>26}{'theirs (ocpp library)':>24}"
    print(head)
    print("-" * len(head))
    for name, o, t in rows:
        print(f"{name:<{width}}{o:>26}{t:>24}")
    print()
    print(
        f"ours / theirs stations per CPU: {'-' if ratio is None else f'{ratio:.1f}x'}; "
        f"load average {os.getloadavg()[0]:.2f} at the end ({args.load_start:.2f} at the "
        f"start; {os.cpu_count()} CPUs: other work on the machine takes CPU from both)"
    )
    goals = evaluate(ours, ratio)
    for name, goal in goals.items():
        met = goal["met"]
        verdict = (
            "not evaluated (fewer stations)" if met is None else ("meets" if met else "MISSES")
        )
        print(f"goal {name}: {goal['value']} (goal {goal['goal']}): {verdict}")
    meets = (
        None
        if any(g["met"] is None for g in goals.values())
        else all(g["met"] for g in goals.values())
    )

    def out(f: Figures) -> dict[str, Any]:
        return {
            "stations": f.stations,
            "connected": f.connected,
            "in_session": f.charging,
            "steady": f.steady,
            "ramp_s": round(f.ramp_s, 1),
            "fleet_ramp_s": f.fleet_ramp_s,
            "window_s": round(f.window_s, 1),
            "cpu_fraction": round(f.cpu_fraction, 4),
            "stations_at_half_core": None if f.at_half_core is None else round(f.at_half_core),
            "rss_kb": f.rss_kb,
            "rss_kb_per_station": round(f.kb_per_station, 2),
            "cloud_cpu_fraction": round(f.cloud_cpu_s / f.window_s, 4) if f.window_s else None,
            "errors": (f.summary or {}).get("errors"),
            "argv": [Path(a).name if a.startswith("/") else a for a in f.argv],
        }

    return {
        "bench": "fleet",
        "ocpp": args.ocpp,
        "ours": out(ours),
        "theirs": out(theirs),
        "ratio": None if ratio is None else round(ratio, 2),
        "goals": goals,
        "meets_goal": meets,
        "took_s": round(took, 1),
        "loadavg": {"start": round(args.load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--ours", type=int, default=GOAL_STATIONS, help="our stations (10000)")
    parser.add_argument("--theirs", type=int, default=1500, help="ocpp-lib stations (1500)")
    parser.add_argument("--ocpp", choices=("1.6", "2.0.1"), default="1.6")
    parser.add_argument(
        "--window",
        type=float,
        default=180.0,
        help="measured s each (180: whole minutes, each station samples its meter once in "
        "any; a whole keep-alive cycle of the ocpp-library fleet)",
    )
    parser.add_argument("--ramp-timeout", type=float, default=300.0, help="s to ramp up (300)")
    parser.add_argument(
        "--connect-rate",
        type=float,
        default=500.0,
        help="stations each fleet starts per second (500: 10,000 in 20 s)",
    )
    parser.add_argument("--quick", action="store_true", help="200 stations each, 60 s windows")
    parser.add_argument("--workdir", type=Path, help="where the temporary directory goes")
    args = parser.parse_args(argv)
    if args.quick:
        args.ours, args.theirs, args.window, args.ramp_timeout = 200, 200, 60.0, 60.0
    if args.ours < 1 or args.theirs < 1 or args.window <= 0 or args.ramp_timeout <= 0:
        parser.error("need --ours >= 1, --theirs >= 1, --window > 0, --ramp-timeout > 0")
    limit = raise_nofile(20_000)
    if limit < max(args.ours, args.theirs) + 1024:
        parser.error(f"the open-files limit ({limit}) is too low for {args.ours:,} stations")

    began = time.monotonic()
    args.load_start = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="plugstream-fleet-bench-", dir=args.workdir))
    args.workdir_path = str(workdir)
    duration = args.ramp_timeout + SETTLE + args.window + 60.0  # a bound; stopped before
    cloud: Cloud | None = None
    try:
        cloud = start_cloud(workdir)
        ours = Figures("ours", "ours: plugstream fleet", args.ours)
        measure(ours, ours_argv(args, cloud, duration), cloud, OURS_PREFIX, args)
        theirs = Figures("theirs", "theirs: ocpp-library fleet", args.theirs)
        measure(theirs, theirs_argv(args, cloud, duration), cloud, THEIRS_PREFIX, args)
        summary = report(ours, theirs, args, time.monotonic() - began)
    except BenchError as exc:
        print(f"bench/fleet.py: {exc}", file=sys.stderr)
        return 1
    finally:
        if cloud is not None:
            stop_pid(cloud.proc, STOP_TIMEOUT)
        shutil.rmtree(workdir, ignore_errors=True)
    return print_summary(summary)


if __name__ == "__main__":
    sys.exit(main())
