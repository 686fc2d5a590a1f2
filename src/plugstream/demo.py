"""``plugstream demo``: PlugStream Cloud and a fleet of stations charging cars, on loopback.

One process, one event loop: the cloud (uvicorn, as ``plugstream cloud serve`` runs it)
on 127.0.0.1 on a free port with its SQLite database in a temporary dir, registering
the stations as they connect (auto-register) and accepting the drivers' RFID cards;
then a fleet of PlugStream 7 and 22 stations, half OCPP 1.6J and half 2.0.1, charging
cars on a fast clock. A live table shows each station; the cloud's REST API and its web
console stay open for as long as the demo runs. Ctrl-C (or SIGTERM) stops it all cleanly,
exit code 0.

The console (``/``, issue 16) shows the same fleet live. The demo adds two operator
accounts to its throwaway database: ``demo`` (admin) and ``viewer`` (read-only), each with
a password made for this run and printed beside the console's address -- never a fixed
one, which anyone who read this file could use on a demo left running. Everything listens
on 127.0.0.1 only.

The cloud starts with the 2.0.1 operator features in use (issue 15), so that a newcomer
sees them work without a call of their own: a default tariff prices every 2.0.1 session
(its running cost, CostUpdated, and the final totalCost are shown per station), a site
("Depot") divides its current among the sessions of a few 2.0.1 stations (one line under
the table), and one station gets a display message, reports its device model, watches its
EVSE's power with a monitor (its NotifyEvents are kept) and uploads its log (GetLog); the
first 2.0.1 station a driver leaves is reserved for a while (ReserveNow). One more line
shows the reservation's status, the events kept and the log's upload.

Like :mod:`plugstream.cli`, this module wires the station and the cloud together; they
still meet only on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
from plugstream.cloud.diagnostics.api import (
    ComponentIn,
    EvseIn,
    LogIn,
    MonitorIn,
    VariableIn,
    get_log,
    set_monitor,
)
from plugstream.cloud.display_messages.api import DisplayMessageIn, set_display_message
from plugstream.cloud.gateway import Gateway
from plugstream.cloud.reservations.api import ReservationIn, ReservationOut, create_reservation
from plugstream.cloud.serve import CloudServer, bound_port, uvicorn_config
from plugstream.cloud.smart_charging.division import allocation_of
from plugstream.cloud.smart_charging.site_limit import Allocation
from plugstream.cloud.storage import Store
from plugstream.cloud.storage.diagnostics import LogRequestRecord
from plugstream.cloud.storage.records import IdTokenRecord
from plugstream.cloud.storage.reservations import ACTIVE, ReservationRecord
from plugstream.cloud.storage.smart_charging import Site
from plugstream.cloud.storage.tariffs import Tariff, TariffData
from plugstream.station.clock import ScaledClock
from plugstream.station.connector import ConnectorStatus
from plugstream.station.fleet import DEFAULT_ID_TAGS, Fleet, FleetConfig, FleetSummary, SimStation
from plugstream.station.station201 import Station201

__all__ = [
    "DEMO_OPERATORS",
    "DEMO_TARIFF",
    "DemoCloud",
    "DemoFeatures",
    "DemoLogin",
    "add_demo_operators",
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
MONITOR_W = 1000.0  # an UpperThreshold on the EVSE's power: it fires as a car starts charging
MONITOR_SEVERITY = 5  # Alert; the stations report severities up to 9 by default
# A reservation must not meet a car: the fleet's drivers swipe cards of their own, and a
# connector reserved for another card refuses them (an error in the totals). So it is made
# on a 2.0.1 station its driver just left, and ends before the next car can come (the
# fleet's shortest idle while): Expired. Simulated seconds:
RESERVATION_HOLD_S = 180.0  # how long it holds the connector at most
RESERVATION_MARGIN_S = 60.0  # kept between its expiry and the earliest next car
RESERVATION_MIN_HOLD_S = 30.0  # a shorter chance is let go for the next one
RESERVE_POLL_S = 0.05  # wall seconds between two looks for a station its driver left
EVENTS_COUNTED = 1000  # station events counted at most (the view says "1000+")
DEMO_OPERATORS = (("demo", "admin"), ("viewer", "read-only"))
"""The console's accounts in the demo's database: user name and role."""
DEMO_PASSWORD_BYTES = 9  # 12 URL-safe characters: easy to copy, beyond guessing


@dataclass(frozen=True, slots=True)
class DemoCloud:
    port: int
    store: Store = field(compare=False, repr=False)
    gateway: Gateway = field(compare=False, repr=False)
    config: CloudConfig = field(compare=False, repr=False)

    @property
    def ocpp_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/"

    @property
    def docs_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/docs"

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@dataclass(frozen=True, slots=True)
class DemoLogin:
    """An operator account the demo made, with its password (shown once per run)."""

    username: str
    password: str
    role: str


async def add_demo_operators(store: Store) -> tuple[DemoLogin, ...]:
    """The :data:`DEMO_OPERATORS` in ``store``, each with a fresh random password: the
    database is the demo's own (a temporary dir), so they go when the demo does."""
    logins = tuple(
        DemoLogin(name, secrets.token_urlsafe(DEMO_PASSWORD_BYTES), role)
        for name, role in DEMO_OPERATORS
    )
    for login in logins:
        await store.operators.add(login.username, login.password, login.role)
    return logins


def _console_line(cloud: DemoCloud, logins: Sequence[DemoLogin], *, was: bool = False) -> str:
    """One line: the console's address and how to log in to it (``was``: once stopped)."""
    accounts = ", ".join(f"{x.username} / {x.password} ({x.role})" for x in logins)
    if was:
        return f"PlugStream console was: {cloud.console_url}  ({accounts})"
    return f"PlugStream console: {cloud.console_url}  (log in as {accounts})"


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
        port = bound_port(server, 0)
        config.port = port  # the URLs stations are sent to (a GetLog's upload) name it
        yield DemoCloud(port, state.store, state.gateway, config)
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
    # the station given a display message, a monitor and a GetLog (None: no 2.0.1 station)
    display_station: str | None
    allocation: Allocation | None = None
    reservation_id: int | None = None  # the demo's ReserveNow, once sent
    reservation: ReservationRecord | None = None  # as last read
    reservation_status: str | None = None  # as the API shows it (Expired once past expiry)
    monitor_id: int | None = None  # the monitor the station Accepted
    events: int = 0  # the display station's events the cloud kept
    log_request: int | None = None  # the GetLog's requestId
    log: LogRequestRecord | None = None  # as last read

    def try_line(self) -> str:
        """One line: what a newcomer may GET to see the features at work."""
        paths = [f"/api/v1/sites/{self.site.site_id}/allocation"] if self.site else []
        paths.append("/api/v1/tariffs")
        if self.display_station is not None:
            station = f"/api/v1/stations/{self.display_station}"
            paths += [
                "/api/v1/reservations",
                f"{station}/device-model",
                "…/display-messages",
                "…/monitors",
                "…/events",
                "…/logs",
            ]
        return "Try: GET " + ", ".join(paths)

    async def refresh(self, cloud: DemoCloud) -> None:
        """Read the site and divide it as ``GET /sites/{id}/allocation`` does (two reads);
        an operator may have changed or deleted it meanwhile. Then the reservation, the
        events and the log request, as their GETs show them, while they may change."""
        store = cloud.store
        if self.site is not None:
            self.site = await store.smart_charging.site(self.site.site_id)
            self.allocation = await allocation_of(store, self.site) if self.site else None
        if self.reservation_id is not None and (
            self.reservation is None or self.reservation.status in ACTIVE
        ):
            self.reservation = await store.reservations.get(self.reservation_id)
        if self.reservation is not None:
            self.reservation_status = self.reservation.status_at(cloud.gateway.clock())
        station = self.display_station
        if station is None:
            return
        if self.monitor_id is not None:
            self.events = len(await store.device_model.events(station, limit=EVENTS_COUNTED))
        if self.log_request is not None:  # the file comes before the station says Uploaded
            self.log = await store.diagnostics.get_log(station, self.log_request)


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


def _connected(cloud: DemoCloud, sim: SimStation) -> bool:
    return sim.station.online and cloud.gateway.is_connected(sim.station_id)


async def _until_connected(cloud: DemoCloud, sim: SimStation) -> None:
    pause = 0.05
    while not _connected(cloud, sim):
        await asyncio.sleep(pause)
        pause = min(1.0, pause * 1.5)


async def operate(cloud: DemoCloud, sim: SimStation, features: DemoFeatures) -> None:
    """What the demo's operator does on ``sim`` once it is registered, one call after
    another (:func:`message_and_report`, then :func:`monitor_and_log`)."""
    await message_and_report(cloud, sim)
    await monitor_and_log(cloud, sim, features)


async def message_and_report(cloud: DemoCloud, sim: SimStation) -> None:
    """Once ``sim`` is registered: a display message on it (SetDisplayMessage) and its
    device model (GetBaseReport), through the REST API's own operations, so the cloud
    keeps them exactly as for an operator's POSTs. It needs the station connected, and
    the demo does not wait for it to start."""
    await _until_connected(cloud, sim)
    message = DisplayMessageIn(content=DISPLAY_TEXT)
    try:
        await set_display_message(sim.station_id, message, cloud.store, cloud.gateway)
        await refresh_device_model(sim.station_id, cloud.store, cloud.gateway, RefreshIn())
    except HTTPException as exc:  # it went away meanwhile: the demo goes on without
        log.warning("%s: no display message or device model: %s", sim.station_id, exc.detail)


async def monitor_and_log(cloud: DemoCloud, sim: SimStation, features: DemoFeatures) -> None:
    """Once ``sim`` is registered: an UpperThreshold monitor on its EVSE's power
    (SetVariableMonitoring), so that each car starting (and stopping) to charge makes it
    send a NotifyEvent, and its diagnostics log (GetLog), which it uploads to the cloud's
    own upload URL; through the REST API's operations, as for an operator's POSTs."""
    await _until_connected(cloud, sim)
    sid, store, gateway = sim.station_id, cloud.store, cloud.gateway
    watch = MonitorIn(
        component=ComponentIn(name="EVSE", evse=EvseIn(id=1)),
        variable=VariableIn(name="Power"),
        type="UpperThreshold",
        value=MONITOR_W,
        severity=MONITOR_SEVERITY,
    )
    try:
        features.monitor_id = (await set_monitor(sid, watch, store, gateway)).id
        asked = await get_log(sid, LogIn(log_type="DiagnosticsLog"), store, gateway, cloud.config)
        features.log_request = asked.request_id
    except HTTPException as exc:  # refused, or it went away meanwhile: the demo goes on
        log.warning("%s: no monitor or log: %s", sid, exc.detail)


async def reserve_between_sessions(
    cloud: DemoCloud, fleet: Fleet, features: DemoFeatures, clock: ScaledClock, id_tag: str
) -> None:
    """One reservation for ``id_tag`` (ReserveNow, H01) through the REST API's operation,
    on the first 2.0.1 station whose driver has just left, held until shortly before the
    next car may come (see :data:`RESERVATION_HOLD_S`): the connector shows Reserved, then
    the station reports it Expired. Looks every :data:`RESERVE_POLL_S`; cheap reads."""
    sims = [sim for sim in fleet.sims if sim.ocpp == "2.0.1"]
    next_car_s = fleet.config.idle_minutes[0] * 60.0  # after a session, at the earliest
    busy_at: dict[str, float] = {}  # simulated time each station was last seen with a car
    while sims:
        now = clock.elapsed()
        for sim in sims:
            sid = sim.station_id
            if sim.session_start_at is not None:
                busy_at[sid] = now
                continue
            seen = busy_at.pop(sid, None)  # None: no session yet (the first car comes any time)
            if seen is None or not _connected(cloud, sim):
                continue
            hold = min(RESERVATION_HOLD_S, seen + next_car_s - RESERVATION_MARGIN_S - now)
            if hold < RESERVATION_MIN_HOLD_S:
                continue
            if sim.station.connector.status_201 is not ConnectorStatus.AVAILABLE:
                continue
            expiry = clock.start + timedelta(seconds=now + hold)
            wanted = ReservationIn(station_id=sid, id_token=id_tag, expiry_date_time=expiry)
            try:
                made = await create_reservation(wanted, cloud.store, cloud.gateway)
            except HTTPException as exc:  # it went away meanwhile: the next one
                log.warning("%s: not reserved: %s", sid, exc.detail)
                continue
            if isinstance(made, ReservationOut):
                features.reservation_id = made.reservation_id
            else:  # kept as NoAnswer or CallError: shown so
                found = await cloud.store.reservations.list_reservations(station_id=sid, limit=1)
                features.reservation_id = found[0].reservation_id if found else None
            return
        await asyncio.sleep(RESERVE_POLL_S)


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


def _operations_line(features: DemoFeatures) -> str | None:
    """One line: the reservation's status, the monitor's events kept, the log's upload."""
    station = features.display_station
    if station is None:
        return None
    r = features.reservation
    if r is None:
        reserved = "reservation: once a driver leaves a 2.0.1 station"
    else:
        reserved = f"reservation {r.reservation_id} {r.station_id} for {r.id_token}: "
        reserved += features.reservation_status or r.status
    if features.monitor_id is None:
        watched = f"{station} monitor: not set yet"
    else:
        more = "+" if features.events >= EVENTS_COUNTED else ""
        watched = (
            f"{station} monitor EVSE Power > {MONITOR_W:,.0f} W: "
            f"{features.events}{more} event{'' if features.events == 1 else 's'} kept"
        )
    got = features.log
    if got is None:
        logged = f"{station} log: not asked yet"
    elif got.upload_size is not None:
        logged = f"{station} log: {got.status}, {got.upload_size:,} B"
    else:
        logged = f"{station} log: {got.status}"
    return f"{reserved} · {watched} · {logged}"


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


def _view(
    fleet: Fleet, cloud: DemoCloud, features: DemoFeatures, logins: Sequence[DemoLogin]
) -> Group:
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
    for line in (_site_line(features), _operations_line(features)):
        if line is not None:
            lines.append(Text(line))
    lines.append(Text(_totals(summary)))
    lines.append(Text(f"PlugStream Cloud API: {cloud.api_url}  (docs: {cloud.docs_url})"))
    lines.append(Text(_console_line(cloud, logins)))
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
                operators: list[asyncio.Task[None]] = []
                try:
                    features = await set_up_features(cloud, fleet.sims, clock.now())
                    logins = await add_demo_operators(cloud.store)
                    console.print(
                        f"PlugStream Cloud API: {cloud.api_url}  (docs: {cloud.docs_url})",
                        soft_wrap=True,
                    )
                    console.print(_console_line(cloud, logins), soft_wrap=True)
                    console.print(features.try_line(), soft_wrap=True)
                    shown = features.display_station
                    for sim in fleet.sims:
                        if sim.station_id == shown:
                            operators.append(asyncio.create_task(operate(cloud, sim, features)))
                    if shown is not None:
                        reserve = reserve_between_sessions(
                            cloud, fleet, features, clock, fleet.config.id_tags[0]
                        )
                        operators.append(asyncio.create_task(reserve))
                    await _show(fleet, cloud, features, logins, console, stop, duration)
                finally:
                    for task in operators:
                        task.cancel()
                    await asyncio.gather(*operators, return_exceptions=True)
                    summary = await fleet.close()
        console.print(f"PlugStream demo stopped. {_totals(summary)}", soft_wrap=True)
        console.print(f"PlugStream Cloud API was: {cloud.api_url}", soft_wrap=True)
        console.print(_console_line(cloud, logins, was=True), soft_wrap=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0


async def _show(
    fleet: Fleet,
    cloud: DemoCloud,
    features: DemoFeatures,
    logins: Sequence[DemoLogin],
    console: Console,
    stop: asyncio.Event,
    duration: float | None,
) -> None:
    """Refresh the view until ``stop`` or ``duration``: a Live table on a terminal,
    else a plain status line every few seconds, with the site's, the operations' and
    the costs' lines."""
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
        with Live(
            _view(fleet, cloud, features, logins), console=console, auto_refresh=False
        ) as live:
            while await tick():
                await features.refresh(cloud)
                live.update(_view(fleet, cloud, features, logins), refresh=True)
        return
    currency = features.tariff.data.currency
    while await tick():
        await features.refresh(cloud)
        console.print(_totals(fleet.summary()), soft_wrap=True)
        for line in (_site_line(features), _operations_line(features)):
            if line is not None:
                console.print(line, soft_wrap=True)
        console.print(_costs_line(fleet, currency), soft_wrap=True)
