"""``plugstream demo``: PlugStream Cloud and a fleet of stations charging cars, on loopback.

One process, one event loop: the cloud (uvicorn, as ``plugstream cloud serve`` runs it)
on 127.0.0.1 on a free port with its SQLite database in a temporary dir, registering
the stations as they connect (auto-register) and accepting the drivers' RFID cards;
then a fleet of PlugStream 7 and 22 stations, half OCPP 1.6J and half 2.0.1, charging
cars on a fast clock. A live table shows each station; the cloud's REST API stays open
for as long as the demo runs. Ctrl-C (or SIGTERM) stops it all cleanly, exit code 0.

Like :mod:`plugstream.cli`, this module wires the station and the cloud together; they
still meet only on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from plugstream.cloud.app import create_app
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.serve import CloudServer, bound_port, uvicorn_config
from plugstream.cloud.storage.records import IdTokenRecord
from plugstream.station.clock import ScaledClock
from plugstream.station.fleet import DEFAULT_ID_TAGS, Fleet, FleetConfig, FleetSummary

__all__ = ["DemoCloud", "run_demo", "running_cloud"]

REFRESH_PER_S = 2.0
PLAIN_EVERY_S = 2.0  # a status line this often when stdout is not a terminal
MAX_ROWS = 30  # stations shown in the live table; the totals count them all
DEMO_FAULT_RATE = 0.05  # one session in twenty trips a fault: the view shows Faulted too
CLOUD_START_S = 15.0
CLOUD_STOP_S = 10.0


@dataclass(frozen=True, slots=True)
class DemoCloud:
    port: int

    @property
    def ocpp_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/"

    @property
    def docs_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/docs"


@contextlib.asynccontextmanager
async def running_cloud(
    directory: Path,
    id_tags: tuple[str, ...] = DEFAULT_ID_TAGS,
    *,
    clock: Callable[[], datetime] | None = None,
) -> AsyncIterator[DemoCloud]:
    """PlugStream Cloud on 127.0.0.1 (a free port), its database in ``directory``,
    auto-registering stations and accepting ``id_tags``; stopped on exit. ``clock``: the
    time the cloud receives at (the fleet's scaled one in the demo; default the wall's)."""
    config = CloudConfig(
        host="127.0.0.1",
        port=0,
        db=f"sqlite:///{directory / 'cloud.db'}",
        auto_register_unsecured=True,
    )
    app = create_app(config, clock=clock)
    server = CloudServer(uvicorn_config(config, app), signals=False)  # the demo stops it
    task = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + CLOUD_START_S
        while not server.started and not task.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if not server.started:
            raise RuntimeError("PlugStream Cloud did not start")
        for token in id_tags:
            await app.state.store.id_tokens.put(IdTokenRecord(id_token=token))
        yield DemoCloud(bound_port(server, 0))
    finally:
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, CLOUD_STOP_S)


def _kwh(wh: float) -> str:
    return f"{wh / 1000:,.2f} kWh"


def _bytes(n: float | None) -> str:
    return "-" if n is None else f"{n:,.0f} B"


def _clock(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}"


def _totals(summary: FleetSummary) -> str:
    return (
        f"sessions {summary.sessions_started} started, {summary.sessions_completed} completed, "
        f"{summary.sessions_faulted} ended by a fault · "
        f"energy {_kwh(summary.energy_all_wh)} ({_kwh(summary.energy_wh)} in completed sessions)"
        f" · bytes/session {_bytes(summary.bytes_per_session)}"
        f" · connected {summary.connected}/{summary.stations}"
        f" · simulated {_clock(summary.duration_simulated_s)} (x{summary.time_scale:g})"
        f" · errors {summary.errors}"
    )


def _view(fleet: Fleet, cloud: DemoCloud) -> Group:
    summary = fleet.summary()
    table = Table(title="PlugStream demo: stations", expand=False)
    for column, justify in (
        ("station", "left"),
        ("model", "left"),
        ("OCPP", "left"),
        ("connector", "left"),
        ("session energy", "right"),
        ("sessions", "right"),
        ("bytes on the wire", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for sim in fleet.sims[:MAX_ROWS]:
        status = sim.status if sim.station.online else f"{sim.status} (offline)"
        table.add_row(
            sim.station_id,
            sim.model,
            sim.ocpp,
            status,
            _kwh(float(sim.session_energy_wh)) if sim.session_start_wh is not None else "",
            str(sim.sessions_completed),
            f"{sim.bytes:,}",
        )
    more = len(fleet.sims) - MAX_ROWS
    lines: list[RenderableType] = [table]
    if more > 0:
        lines.append(Text(f"… and {more} more stations"))
    lines.append(Text(_totals(summary)))
    lines.append(Text(f"PlugStream Cloud API: {cloud.api_url}  (docs: {cloud.docs_url})"))
    lines.append(Text("Ctrl-C stops the demo.", style="dim"))
    return Group(*lines)


async def run_demo(
    *,
    stations: int = 20,
    time_scale: float = 60.0,
    duration: float | None = None,
    session_minutes: float | None = None,
    console: Console | None = None,
) -> int:
    """Run the demo until Ctrl-C, SIGTERM or ``duration`` wall seconds; exit code 0."""
    console = console if console is not None else Console()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        # One time for the stations and the cloud: the stations run `time_scale` times as
        # fast as the wall, and a cloud on the wall's time would flag all they report as
        # TimeInFuture.
        clock = ScaledClock(time_scale)
        with tempfile.TemporaryDirectory(prefix="plugstream-demo-") as tmp:
            async with running_cloud(Path(tmp), clock=clock.now) as cloud:
                console.print(
                    f"PlugStream Cloud: OCPP {cloud.ocpp_url}/{{stationId}}", soft_wrap=True
                )
                console.print(
                    f"PlugStream Cloud API: {cloud.api_url}  (docs: {cloud.docs_url})",
                    soft_wrap=True,
                )
                fleet = Fleet(
                    FleetConfig(
                        csms=cloud.ocpp_url,
                        stations=stations,
                        sessions=None,
                        session_minutes=session_minutes,
                        time_scale=time_scale,
                        data_dir=Path(tmp) / "stations",
                        id_prefix="PS-",
                        fault_rate=DEMO_FAULT_RATE,
                    ),
                    clock=clock,
                )
                fleet.start()
                try:
                    await _show(fleet, cloud, console, stop, duration)
                finally:
                    summary = await fleet.close()
        console.print(f"PlugStream demo stopped. {_totals(summary)}", soft_wrap=True)
        console.print(f"PlugStream Cloud API was: {cloud.api_url}", soft_wrap=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0


async def _show(
    fleet: Fleet, cloud: DemoCloud, console: Console, stop: asyncio.Event, duration: float | None
) -> None:
    """Refresh the view until ``stop`` or ``duration``: a Live table on a terminal,
    else a plain status line every few seconds."""
    loop = asyncio.get_running_loop()
    deadline = None if duration is None else loop.time() + duration
    interval = 1.0 / REFRESH_PER_S if console.is_terminal else PLAIN_EVERY_S

    async def tick() -> bool:
        """Sleep one interval (or less); False when it is time to stop."""
        timeout = interval if deadline is None else min(interval, deadline - loop.time())
        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout)
        return not stop.is_set() and (deadline is None or loop.time() < deadline)

    if console.is_terminal:
        with Live(_view(fleet, cloud), console=console, auto_refresh=False) as live:
            while await tick():
                live.update(_view(fleet, cloud), refresh=True)
        return
    while await tick():
        console.print(_totals(fleet.summary()), soft_wrap=True)
