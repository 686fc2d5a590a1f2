"""``plugstream demo``: PlugStream Cloud and a fleet of stations charging cars, on loopback.

One process, one event loop: the cloud (uvicorn, as ``plugstream cloud serve`` runs it)
on 127.0.0.1 on a free port with its SQLite database in a temporary dir, registering
the stations as they connect (auto-register) and accepting the drivers' RFID cards;
then a fleet of PlugStream 7 and 22 stations, half OCPP 1.6J and half 2.0.1, charging
cars on a fast clock. A live table shows each station; the cloud's REST API stays open
for as long as the demo runs. Ctrl-C (or SIGTERM) stops it all cleanly, exit code 0.

The cloud starts with the 2.0.1 operator features in use (issue 15), so that a newcomer
sees them work without a call of their own: a default tariff prices every 2.0.1 session
(its running cost, CostUpdated, and the final totalCost are shown per station), a site
("Depot") divides its current among the sessions of a few 2.0.1 stations (one line under
the table), and one station gets a display message and reports its device model.

Like :mod:`plugstream.cli`, this module wires the station and the cloud together; they
still meet only on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from fastapi import HTTPException
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from plugstream.cloud.app import create_app
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.device_model.api import RefreshIn, refresh_device_model
from plugstream.cloud.display_messages.api import DisplayMessageIn, set_display_message
from plugstream.cloud.gateway import Gateway
from plugstream.cloud.serve import CloudServer, bound_port, uvicorn_config
from plugstream.cloud.smart_charging.division import allocation_of
from plugstream.cloud.smart_charging.site_limit import Allocation
from plugstream.cloud.storage import Store
from plugstream.cloud.storage.records import IdTokenRecord
from plugstream.cloud.storage.smart_charging import Site
from plugstream.cloud.storage.tariffs import Tariff, TariffData
from plugstream.station.clock import ScaledClock
from plugstream.station.fleet import DEFAULT_ID_TAGS, Fleet, FleetConfig, FleetSummary, SimStation
from plugstream.station.station201 import Station201

__all__ = [
    "DEMO_TARIFF",
    "DemoCloud",
    "DemoFeatures",
    "run_demo",
    "running_cloud",
    "set_up_features",
]

log = logging.getLogger("plugstream.demo")

REFRESH_PER_S = 2.0
PLAIN_EVERY_S = 2.0  # a status line this often when stdout is not a terminal
MAX_ROWS = 30  # stations shown in the live table; the totals count them all
DEMO_FAULT_RATE = 0.05  # one session in twenty trips a fault: the view shows Faulted too
CLOUD_START_S = 15.0
CLOUD_STOP_S = 10.0

DEMO_TARIFF = TariffData(
    name="PlugStream demo",
    currency="EUR",
    start_fee=Decimal("0.50"),
    per_kwh=Decimal("0.35"),
    per_idle_minute=Decimal("0.10"),
    vat_percent=Decimal(21),
    personal_message="0.50 EUR start, 0.35 EUR/kWh, 0.10 EUR/min idle when full, plus 21% VAT",
    is_default=True,
    # a CostUpdated every 5 simulated minutes while charging, not one per meter sample:
    # each TransactionEvent answer carries the running cost anyway
    cost_updated_interval_s=300,
)
"""Prices every 2.0.1 session of the demo (1.6 has no cost messages)."""
SITE_NAME = "Depot"
SITE_LIMIT_A = Decimal(32)  # per phase: one PlugStream's maximum, so two sessions get 16 A
SITE_PHASES = 3
SITE_STATIONS = 4  # the first 2.0.1 stations of the fleet
DISPLAY_TEXT = "Depot: the site's current is shared among its chargers"


@dataclass(frozen=True, slots=True)
class DemoCloud:
    port: int
    store: Store = field(compare=False, repr=False)
    gateway: Gateway = field(compare=False, repr=False)

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
        state = app.state
        yield DemoCloud(bound_port(server, 0), state.store, state.gateway)
    finally:
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, CLOUD_STOP_S)


@dataclass(slots=True)
class DemoFeatures:
    """The 2.0.1 operator features the demo set up in its cloud, and the site's division
    as last read (the view is drawn without awaiting anything)."""

    tariff: Tariff
    site: Site | None  # None: the fleet has no 2.0.1 station
    display_station: str | None  # the station given a display message
    allocation: Allocation | None = None

    def try_line(self) -> str:
        """One line: what a newcomer may GET to see the features at work."""
        paths = [f"/api/v1/sites/{self.site.site_id}/allocation"] if self.site else []
        paths.append("/api/v1/tariffs")
        if self.display_station is not None:
            station = f"/api/v1/stations/{self.display_station}"
            paths += [f"{station}/device-model", "…/display-messages"]
        return "Try: GET " + ", ".join(paths)

    async def refresh(self, store: Store) -> None:
        """Read the site and divide it as ``GET /sites/{id}/allocation`` does (two reads);
        an operator may have changed or deleted it meanwhile."""
        if self.site is None:
            return
        self.site = await store.smart_charging.site(self.site.site_id)
        self.allocation = await allocation_of(store, self.site) if self.site else None


async def set_up_features(
    cloud: DemoCloud, sims: Sequence[SimStation], at: datetime
) -> DemoFeatures:
    """The default tariff and the site of the first 2.0.1 stations, written straight to the
    cloud's store: two writes, so the demo starts no slower, done while the stations are
    still connecting, so their first transactions are priced and divided from the start."""
    store = cloud.store
    tariff = await store.tariffs.create(DEMO_TARIFF, at=at)
    members = [sim for sim in sims if sim.ocpp == "2.0.1"][:SITE_STATIONS]
    site = None
    if members:
        site = await store.smart_charging.create_site(
            SITE_NAME,
            max_current_a=SITE_LIMIT_A,
            phases=SITE_PHASES,
            stations={m.station_id: Decimal(str(m.station.model.max_current_a)) for m in members},
            at=at,
        )
    return DemoFeatures(tariff, site, members[0].station_id if members else None)


async def message_and_report(cloud: DemoCloud, sim: SimStation) -> None:
    """Once ``sim`` is registered: a display message on it (SetDisplayMessage) and its
    device model (GetBaseReport), through the REST API's own operations, so the cloud
    keeps them exactly as for an operator's POSTs. It needs the station connected, and
    the demo does not wait for it to start."""
    pause = 0.05
    while not (sim.station.online and cloud.gateway.is_connected(sim.station_id)):
        await asyncio.sleep(pause)
        pause = min(1.0, pause * 1.5)
    message = DisplayMessageIn(content=DISPLAY_TEXT)
    try:
        await set_display_message(sim.station_id, message, cloud.store, cloud.gateway)
        await refresh_device_model(sim.station_id, cloud.store, cloud.gateway, RefreshIn())
    except HTTPException as exc:  # it went away meanwhile: the demo goes on without
        log.warning("%s: no display message or device model: %s", sim.station_id, exc.detail)


def _cost(sim: SimStation, currency: str) -> str:
    """What the station's display shows the driver: the running cost, or the final one
    of the session that ended last (2.0.1 only: 1.6 has no cost messages)."""
    station = sim.station
    if not isinstance(station, Station201):
        return ""
    shown = station.cost_display
    if shown.total_cost is not None:
        return f"{shown.total_cost:.2f} {currency} final"
    if shown.running_cost is not None:
        return f"{shown.running_cost:.2f} {currency}"
    return ""


def _amps(value: Decimal) -> str:
    return f"{value.normalize():f} A"


def _site_line(features: DemoFeatures) -> str | None:
    """One line: the site's limit, its stations and each running session's share."""
    site, allocation = features.site, features.allocation
    if site is None:
        return None
    head = (
        f"site {site.name}: {_amps(site.max_current_a)} per phase shared by "
        f"{' '.join(site.stations) or 'no station'}"
    )
    if allocation is None or not allocation.shares:
        return f"{head} · no session charging"
    shares = " · ".join(f"{s.station_id} {_amps(share)}" for s, share in allocation.shares)
    waiting = " (oversubscribed)" if allocation.oversubscribed else ""
    return f"{head} · {shares} = {_amps(allocation.total_a)}{waiting}"


def _costs_line(fleet: Fleet, currency: str) -> str:
    """The 2.0.1 stations' costs in one line (the status line's companion off a terminal)."""
    costs = [f"{sim.station_id} {cost}" for sim in fleet.sims if (cost := _cost(sim, currency))]
    return f"costs incl. VAT: {' · '.join(costs) if costs else 'none yet'}"


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


def _view(fleet: Fleet, cloud: DemoCloud, features: DemoFeatures) -> Group:
    summary = fleet.summary()
    currency = features.tariff.data.currency
    table = Table(title="PlugStream demo: stations", expand=False)
    for column, justify in (
        ("station", "left"),
        ("model", "left"),
        ("OCPP", "left"),
        ("connector", "left"),
        ("session energy", "right"),
        ("cost", "right"),
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
            _cost(sim, currency),
            str(sim.sessions_completed),
            f"{sim.bytes:,}",
        )
    more = len(fleet.sims) - MAX_ROWS
    lines: list[RenderableType] = [table]
    if more > 0:
        lines.append(Text(f"… and {more} more stations"))
    site = _site_line(features)
    if site is not None:
        lines.append(Text(site))
    lines.append(Text(_totals(summary)))
    lines.append(Text(f"PlugStream Cloud API: {cloud.api_url}  (docs: {cloud.docs_url})"))
    lines.append(Text(features.try_line(), style="dim"))
    lines.append(Text("Ctrl-C stops the demo.", style="dim"))
    return Group(*lines)


async def run_demo(
    *,
    stations: int = 20,
    time_scale: float = 60.0,
    duration: float | None = None,
    session_minutes: float | None = None,
    console: Console | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run the demo until Ctrl-C, SIGTERM, ``duration`` wall seconds or ``stop`` is set
    (a caller in the same loop: tests); exit code 0."""
    console = console if console is not None else Console()
    loop = asyncio.get_running_loop()
    stop = stop if stop is not None else asyncio.Event()
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
                fleet.start()  # its stations connect once this task awaits
                greeter: asyncio.Task[None] | None = None
                try:
                    features = await set_up_features(cloud, fleet.sims, clock.now())
                    console.print(
                        f"PlugStream Cloud API: {cloud.api_url}  (docs: {cloud.docs_url})",
                        soft_wrap=True,
                    )
                    console.print(features.try_line(), soft_wrap=True)
                    shown = features.display_station
                    for sim in fleet.sims:
                        if sim.station_id == shown:
                            greeter = asyncio.create_task(message_and_report(cloud, sim))
                    await _show(fleet, cloud, features, console, stop, duration)
                finally:
                    if greeter is not None:
                        greeter.cancel()
                        await asyncio.gather(greeter, return_exceptions=True)
                    summary = await fleet.close()
        console.print(f"PlugStream demo stopped. {_totals(summary)}", soft_wrap=True)
        console.print(f"PlugStream Cloud API was: {cloud.api_url}", soft_wrap=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0


async def _show(
    fleet: Fleet,
    cloud: DemoCloud,
    features: DemoFeatures,
    console: Console,
    stop: asyncio.Event,
    duration: float | None,
) -> None:
    """Refresh the view until ``stop`` or ``duration``: a Live table on a terminal,
    else a plain status line every few seconds, with the site's and the costs' lines."""
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
        with Live(_view(fleet, cloud, features), console=console, auto_refresh=False) as live:
            while await tick():
                await features.refresh(cloud.store)
                live.update(_view(fleet, cloud, features), refresh=True)
        return
    currency = features.tariff.data.currency
    while await tick():
        await features.refresh(cloud.store)
        console.print(_totals(fleet.summary()), soft_wrap=True)
        site = _site_line(features)
        if site is not None:
            console.print(site, soft_wrap=True)
        console.print(_costs_line(fleet, currency), soft_wrap=True)
