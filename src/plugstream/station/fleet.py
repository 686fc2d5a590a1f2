"""The fleet simulator: N PlugStream stations in one process, charging cars on one clock.

Every station is a real :class:`Station16` or :class:`Station201` with its own data
dir, speaking OCPP over its own WebSocket to the CSMS; what is simulated is the world
around it: cars arrive (:func:`random_ev`), a driver plugs in and swipes an RFID
idTag, the car charges for ``session_minutes`` or until its curve ends, the driver
swipes again and unplugs, and the station stands idle for a random while.

Made to hold 10,000 stations in one process under a 20,000 file descriptor limit:

- one :class:`ScaledClock` for all, so a day of charging runs in minutes;
- one SQLite file for all journals (:class:`JournalDatabase`): a socket per station
  is then the only file descriptor it holds;
- one task per station (its driver) besides the station's run; it sleeps on the clock
  until the next thing the driver does, and never polls once connected (the time a car
  needs to be full is computed from its charging curve). A station's journal delivery
  is a task only while it has a backlog or a retry: a meter sample goes out from the
  group commit that made it durable, and its answer is handled in a callback.
  The station's meter ticks, heartbeats and keep-alive are timers; its firmware and
  security-event delivery are tasks only while they have work.

Made cheap per station (CPU is what limits a fleet, see ``bench/fleet.py``):

- the shared journal group-commits the writes of one event-loop iteration, with
  ``synchronous=NORMAL`` (survives ``kill -9``, not an OS crash; see
  :mod:`plugstream.station.journal`); a station still makes every entry durable
  before it sends it;
- a station's state (its energy register with each meter sample) goes into that
  database (``state_in_journal``), not into a ``state.json`` per sample;
- a charging station wakes for its next meter sample, a profile boundary, a
  clock-aligned slot or the earliest time its car may be full (``tick_interval``
  None), not every 10 s: energy is integrated from timestamps; and the wake-ups of all
  stations share one :class:`~plugstream.station.wakeups.Ticker` on a 1 s beat, so
  the samples due in one second are journalled in one group commit;
- the garbage collector leaves the stations' long-lived objects alone once they are
  up (:class:`_LongLivedObjects`: ``gc.freeze``): its full passes over 2.8 million
  objects had cost a quarter of the fleet's CPU;
- a delivered entry's acknowledgement waits up to :data:`ACK_DELAY_S` for the group
  commit instead of a commit of its own (a kill -9 within it sends the entry again);
- permessage-deflate with a 4 KB window, memLevel 4 and no context takeover either way
  (:func:`small_deflate`): no zlib state is held between messages (~35 KB a connection),
  and every connection's messages are compressed by the process's one zlib stream
  (:class:`~plugstream.station.runtime.SharedEncoderDeflate`);
- the files a station writes at its first boot and Authorize (its configuration, its
  authorization cache) are written as durably as its state (``sync_state``: no fsync),
  the configuration's keys and defaults are shared by all stations (copy-on-write), and
  websockets' proxy look-up is done once per CSMS host, not per connection.

:attr:`Fleet.ramp_s` is the ramp-up: the wall seconds until every station's first
session was accepted (``plugstream fleet`` prints it the moment it is reached).

Counting: the OCPP messages of each station are counted from its endpoint's events
(CALLERRORs, failed and timed-out calls are errors); bytes come from the station's
own :class:`~plugstream.net.accounting.ByteCounter` (``station.traffic``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from plugstream.ocpp import CallFailed, ErrorCode, Event, ProtocolViolation, Transmit
from plugstream.station.clock import ScaledClock
from plugstream.station.connector import ChargePointErrorCode, Reservation
from plugstream.station.ev import CHARGER_EFFICIENCY, Ev, random_ev
from plugstream.station.hardware import PLUGSTREAM_7, PLUGSTREAM_22, Model
from plugstream.station.journal import JournalDatabase
from plugstream.station.run import with_password
from plugstream.station.runtime import Station, small_deflate
from plugstream.station.station16 import Station16
from plugstream.station.station201 import Station201
from plugstream.station.wakeups import Ticker

__all__ = [
    "DEFAULT_ID_TAGS",
    "VERSIONS",
    "Fleet",
    "FleetConfig",
    "FleetSummary",
    "SimStation",
    "next_driver",
    "seconds_to_full",
]

log = logging.getLogger("plugstream.station.fleet")

VERSIONS = ("1.6", "2.0.1")
DEFAULT_ID_TAGS: tuple[str, ...] = tuple(f"PSDEMO{n:04d}" for n in range(1, 9))
"""RFID idTags the simulated drivers swipe; ``plugstream demo`` registers these in its cloud."""

FAULT_CODES: tuple[ChargePointErrorCode, ...] = (
    ChargePointErrorCode.GROUND_FAILURE,
    ChargePointErrorCode.OVER_CURRENT_FAILURE,
    ChargePointErrorCode.HIGH_TEMPERATURE,
)
"""What trips a simulated station: the faults a Type 2 charge point meets most."""

ACK_DELAY_S = 1.0
"""Wall seconds a delivered entry's acknowledgement may wait for the journals' group
commit (:class:`JournalDatabase`): a kill -9 within it sends that entry again."""

_FULL_CHECKS = 50  # bound on "is the car full yet?" re-checks after the predicted time
_SOC_STEP = 0.5  # %: integration step of the charging curve


def next_driver(held: Reservation | None, id_tags: Sequence[str], rng: random.Random) -> str:
    """The card of the next car's driver: a reserved connector waits for its driver (H01,
    1.6 5.13), so the next car is theirs; else any of the fleet's cards."""
    return held.id_tag if held is not None else rng.choice(list(id_tags))


def seconds_to_full(ev: Ev, model: Model, max_current_a: float | None = None) -> float:
    """Seconds of charging until ``ev`` stops drawing current on ``model``.

    Integrates the car's curve (:meth:`Ev.requested_current`, capped by the station)
    over its state of charge at nominal voltage, so a driver knows when to come back
    without asking the station every minute.
    """
    offered = model.max_current_a if max_current_a is None else max_current_a
    phases = min(ev.phases, model.phases)
    end = min(ev.target_soc, 100.0)
    soc, seconds = ev.soc, 0.0
    while soc < end:
        nxt = min(end, soc + _SOC_STEP)
        amps = min(ev.requested_current((soc + nxt) / 2), offered)
        watts = model.nominal_voltage_v * amps * phases
        if watts <= 0:
            break
        grid_wh = (nxt - soc) / 100.0 * ev.capacity_wh / CHARGER_EFFICIENCY
        seconds += grid_wh / watts * 3600.0
        soc = nxt
    return seconds


@dataclass(slots=True)
class FleetConfig:
    """What to simulate; the flags of ``plugstream fleet``."""

    csms: str  # ws:// or wss:// URL; the station id is appended
    stations: int = 20
    ocpp: str | None = None  # "1.6", "2.0.1", or None: every other station each
    sessions: int | None = 2  # per station; None: sessions until stopped
    session_minutes: float | None = None  # None: until the car is full
    time_scale: float = 60.0
    password: str | None = None  # HTTP Basic password of every station
    data_dir: Path | None = None  # None: a temporary dir, removed at the end
    id_prefix: str = "SIM-"
    id_tags: tuple[str, ...] = DEFAULT_ID_TAGS
    idle_minutes: tuple[float, float] = (5.0, 30.0)  # simulated gap before each session
    connect_rate: float = 200.0  # stations started per wall second (staggered start)
    fault_rate: float = 0.0  # share of sessions in which the station faults mid-charge
    fault_minutes: float = 10.0  # simulated minutes until a fault is cleared
    drain_s: float = 5.0  # wall seconds the journals get to reach the CSMS at the end
    # WebSocket handshakes under way at once: all the fleet's stations come from one
    # address, and PlugStream Cloud closes those past 500 unfinished from one address
    max_handshakes: int = 200
    # seconds of simulated time: the meter ticks of all stations on one timer, on this
    # beat (a sample is up to a beat late, with its own time stamp; 0: exact)
    tick_beat: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.stations < 1:
            raise ValueError("a fleet has at least one station")
        if self.ocpp is not None and self.ocpp not in VERSIONS:
            raise ValueError(f"use 1.6 or 2.0.1, not {self.ocpp!r}")
        if self.sessions is not None and self.sessions < 0:
            raise ValueError("sessions cannot be negative")
        if self.session_minutes is not None and self.session_minutes <= 0:
            raise ValueError("session minutes must be positive")
        if self.time_scale <= 0:
            raise ValueError("the time scale must be positive")
        if not self.id_tags:
            raise ValueError("the drivers need at least one idTag")
        low, high = self.idle_minutes
        if not 0 <= low <= high:
            raise ValueError(f"idle minutes must be 0 <= low <= high, not {self.idle_minutes}")
        if self.tick_beat < 0:
            raise ValueError("the tick beat is 0 or more seconds")
        if self.max_handshakes < 1:
            raise ValueError("at least one handshake at a time")
        if self.connect_rate <= 0:
            raise ValueError("the connect rate must be positive")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError(f"the fault rate is a share from 0 to 1, not {self.fault_rate}")
        if self.fault_minutes <= 0:
            raise ValueError("fault minutes must be positive")


@dataclass(slots=True, eq=False)
class SimStation:
    """One station of the fleet and what its driver has seen: the demo's table row."""

    station: Station
    ocpp: str
    sessions_started: int = 0
    sessions_completed: int = 0
    sessions_faulted: int = 0  # ended by a station fault, not by the driver
    energy_wh: Decimal = Decimal(0)  # delivered in completed sessions, per the meter
    energy_all_wh: Decimal = Decimal(0)  # also sessions cut short when the fleet stopped
    messages_sent: int = 0
    messages_received: int = 0
    errors: int = 0
    ever_online: bool = False
    done: bool = False  # every session it was to run has been run
    session_start_wh: Decimal | None = None  # the register when the current car plugged in
    session_start_at: float | None = None  # simulated time of that plug-in
    cycle_seconds: float = 0.0  # simulated seconds spent in sessions since the idle baseline
    idle_base_bytes: int | None = None  # bytes outside cycles when it first came online
    idle_base_at: float = 0.0  # simulated time of that baseline

    @property
    def station_id(self) -> str:
        return self.station.station_id

    @property
    def model(self) -> str:
        return self.station.model.name

    @property
    def status(self) -> str:
        """The connector status in the station's OCPP version's words (2.0.1's Occupied
        with the 1.6 detail: Charging, SuspendedEV, ...)."""
        connector = self.station.connector
        status_16 = connector.status_16.value
        if self.ocpp == "1.6":
            return status_16
        status_201 = connector.status_201.value
        return status_201 if status_201 == status_16 else f"{status_201} ({status_16})"

    @property
    def session_energy_wh(self) -> Decimal:
        """Energy of the car plugged in now (0 when none)."""
        if self.session_start_wh is None:
            return Decimal(0)
        return self.station.hardware.energy_wh - self.session_start_wh

    @property
    def bytes(self) -> int:
        tx, rx = self.station.traffic.totals()
        return tx + rx

    def observe(self, event: Event) -> None:
        """Counts the OCPP messages of the station's connection (endpoint observer)."""
        if isinstance(event, Transmit):
            self.messages_sent += 1
            if event.text.startswith("[4"):  # we answered a CALL with a CALLERROR
                self.errors += 1
        elif isinstance(event, CallFailed):
            # a CALLERROR, an invalid CALLRESULT, or no answer on a live connection
            if not event.timed_out:
                self.messages_received += 1
            if not _refused_security_event(event):
                self.errors += 1
        elif isinstance(event, ProtocolViolation):
            self.messages_received += 1
            self.errors += 1
        else:
            self.messages_received += 1


def _refused_security_event(event: CallFailed) -> bool:
    """A CSMS without the security extension said it does not take SecurityEventNotification
    (NotImplemented / NotSupported): an answer, not an error -- the station stops sending
    them to that CSMS (:meth:`StationRuntime.deliver_security_events`)."""
    return event.action == "SecurityEventNotification" and event.error.code in (
        ErrorCode.NotImplemented,
        ErrorCode.NotSupported,
    )


@dataclass(slots=True)
class FleetSummary:
    """What a fleet run did; :meth:`to_json` is the last line of ``plugstream fleet --json``."""

    stations: int
    connected: int  # online (registered) when the summary was taken
    ever_connected: int
    sessions_started: int
    sessions_completed: int
    sessions_faulted: int
    energy_wh: float  # delivered in completed sessions, per the stations' meters
    energy_all_wh: float  # also in sessions under way or cut short by the stop
    messages_sent: int
    messages_received: int
    bytes_total: int
    bytes_per_session: float | None  # mean bytes of the ended charge cycles
    bytes_per_idle_day: float | None  # bytes outside cycles per 24 h of simulated idle time
    sessions_per_station: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    ramp_s: float | None = None  # wall s until every station had started its first session
    duration_wall_s: float = 0.0
    duration_simulated_s: float = 0.0
    time_scale: float = 1.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        del out["sessions_per_station"]  # large for a big fleet; the table has it
        return out


class _ErrorCounter(logging.Handler):
    """Counts the errors the stations log (a failed tick, a crashed handler)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _trim_heap() -> None:
    """glibc's ``malloc_trim``: free pages inside the heap are returned, not only its top
    (10,000 handshakes leave megabytes of them); nothing elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim(0)


class _LongLivedObjects:
    """Keeps the garbage collector off the objects a fleet holds for its whole run.

    CPython's full collection walks every tracked object. 10,000 stations are 2.8 million
    objects: each full collection took over a second, a quarter of a steady fleet's CPU
    and ten seconds of its ramp-up. So what a young collection leaves alive is frozen
    (:func:`gc.freeze`: out of the collector's sight) once the stations are made, every
    few seconds while they connect, and when the last one is in its session; garbage
    made after that is collected as usual. A frozen cycle that becomes garbage later
    (the connection a station had before a reconnect) is kept until :meth:`close`.
    """

    PERIOD = 5.0  # wall s between freezes while the stations connect
    YOUNG = 10_000  # allocations between young collections (CPython's 700: a collection
    # per message or two, where most of a message's objects die by reference count soon)

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._thresholds: tuple[int, int, int] | None = None
        self.freezes = 0

    def freeze(self) -> None:
        gc.collect(1)  # the young garbage, cycles included, goes first
        gc.freeze()
        self.freezes += 1

    def start(self) -> None:
        self._thresholds = gc.get_threshold()
        gc.set_threshold(self.YOUNG, *self._thresholds[1:])
        self.freeze()
        self._task = asyncio.get_running_loop().create_task(self._while_ramping())

    async def _while_ramping(self) -> None:
        while True:
            await asyncio.sleep(self.PERIOD)
            self.freeze()

    def settled(self) -> None:
        """Every station is up: one last freeze, then the collector works as usual; the
        heap pages the ramp-up's handshakes left free go back to the system."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self.freeze()
            _trim_heap()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        gc.unfreeze()  # what the run left behind is the collector's again
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None


class Fleet:
    """Runs the stations of a :class:`FleetConfig` on the running event loop.

    ``await fleet.run(stop)`` does it all; the demo uses :meth:`start`, reads
    :attr:`sims` and :meth:`summary` while it runs, and ends with :meth:`close`.
    """

    def __init__(self, config: FleetConfig, *, clock: ScaledClock | None = None) -> None:
        """``clock``: the fleet's time (one at ``config.time_scale`` by default), shared
        with whatever else must see the same time (the demo's cloud)."""
        self.config = config
        self.clock = ScaledClock(config.time_scale) if clock is None else clock
        self.rng = random.Random(config.seed)
        self.sims: list[SimStation] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._runners: list[asyncio.Task[None]] = []
        self._database: JournalDatabase | None = None
        self._connect_gate: asyncio.Semaphore | None = None
        self._ticker: Ticker | None = None
        self._gc: _LongLivedObjects | None = None
        self._temp_dir: Path | None = None
        self._errors = _ErrorCounter()
        self._started_at = 0.0
        self._all_done = asyncio.Event()
        self._remaining = 0
        self._first_sessions = 0  # stations that have started their first session
        self.ramp_s: float | None = None
        """Wall seconds from :meth:`start` until every station had started its first
        session (its CSMS accepted the card): the fleet's ramp-up; None until then."""
        self.on_ramped: Callable[[float], None] | None = None
        """Called once with :attr:`ramp_s` (``plugstream fleet`` prints it at once)."""
        self.data_dir: Path | None = None

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Make the stations and start their drivers (staggered); returns at once."""
        config = self.config
        if config.data_dir is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="plugstream-fleet-"))
            self.data_dir = self._temp_dir
        else:
            self.data_dir = Path(config.data_dir)
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self._database = JournalDatabase(self.data_dir / "journals.sqlite", ack_delay=ACK_DELAY_S)
        self._connect_gate = asyncio.Semaphore(config.max_handshakes)
        self._ticker = Ticker(self.clock, config.tick_beat)
        self._gc = _LongLivedObjects()
        logging.getLogger("plugstream.station").addHandler(self._errors)
        self._started_at = time.monotonic()
        width = max(3, len(str(config.stations)))
        loop = asyncio.get_running_loop()
        self._remaining = config.stations
        for i in range(config.stations):
            station_id = f"{config.id_prefix}{i + 1:0{width}d}"
            ocpp = config.ocpp if config.ocpp is not None else VERSIONS[i % 2]
            model = (PLUGSTREAM_7, PLUGSTREAM_22)[(i // 2) % 2]
            sim = self._make(station_id, model, ocpp, self.rng)  # one generator: 2.5 KB each
            self.sims.append(sim)
            delay = i / config.connect_rate
            self._tasks.append(loop.create_task(self._drive(sim, delay), name=station_id))
        if self._gc is not None:
            self._gc.start()

    def _make(self, station_id: str, model: Model, ocpp: str, rng: random.Random) -> SimStation:
        assert self.data_dir is not None and self._database is not None
        data_dir = self.data_dir / station_id
        journal = self._database.journal(station_id)
        kind: type[Station16] | type[Station201] = Station16 if ocpp == "1.6" else Station201
        station = kind(
            station_id,
            model,
            data_dir,
            now=self.clock.now,
            clock=self.clock,
            journal=journal,
            rng=rng,
            traffic_autosave=False,  # the fleet reads station.traffic; no file per station
            sync_state=False,  # state.json survives kill -9 without an fsync per meter sample
            state_in_journal=True,  # no state.json: the state goes in the group commit
            tick_interval=None,  # a charging car is looked at when a sample or "full" is due
            # no zlib state held between messages: ~35 KB less a connection (a 4 KB window
            # still costs that much, more than all the rest of a fleet station)
            compression=small_deflate(no_context_takeover=True),
        )
        station.connect_gate = self._connect_gate
        station.validate_outgoing = False  # the CSMS validates (see the attribute)
        if self._ticker is not None:
            station.ticker = self._ticker
        sim = SimStation(station, ocpp)
        station.observer = sim.observe
        return sim

    async def wait(self, stop: asyncio.Event | None = None, duration: float | None = None) -> None:
        """Until every station has run its sessions, ``stop`` is set, or ``duration``
        wall seconds have passed (each of them optional)."""
        waits: list[asyncio.Task[Any]] = [asyncio.ensure_future(self._all_done.wait())]
        if self.config.sessions is None:
            waits.clear()
        if stop is not None:
            waits.append(asyncio.ensure_future(stop.wait()))
        if duration is not None:
            waits.append(asyncio.ensure_future(asyncio.sleep(duration)))
        if not waits:
            waits.append(asyncio.ensure_future(asyncio.Event().wait()))  # until cancelled
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def close(self) -> FleetSummary:
        """Stop the drivers, let the journals drain briefly, stop the stations; the summary."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._drain(self.config.drain_s)
        summary = self.summary()
        for runner in self._runners:
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)
        for sim in self.sims:
            with contextlib.suppress(Exception):
                sim.station.close()
        if self._database is not None:
            self._database.close()
            self._database = None
        if self._gc is not None:
            self._gc.close()
            self._gc = None
        logging.getLogger("plugstream.station").removeHandler(self._errors)
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
        return summary

    async def run(
        self, stop: asyncio.Event | None = None, duration: float | None = None
    ) -> FleetSummary:
        """Start, wait (see :meth:`wait`), close: the summary."""
        self.start()
        try:
            await self.wait(stop, duration)
        finally:
            summary = await self.close()
        return summary

    async def _drain(self, timeout: float) -> None:
        """Give the journals (StopTransaction, TransactionEvent Ended) and the last status
        updates a bounded time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            waiting = [s for s in self.sims if s.station.online and not s.station.settled]
            if not waiting:
                return
            await asyncio.sleep(0.1)

    # -- the driver of one station -----------------------------------------------------

    async def _drive(self, sim: SimStation, delay: float) -> None:
        config = self.config
        try:
            await asyncio.sleep(delay)
            url = config.csms
            if config.password is not None:
                url = with_password(url, sim.station_id, config.password)
            runner = asyncio.get_running_loop().create_task(
                sim.station.run(url), name=f"{sim.station_id} runner"
            )
            runner.add_done_callback(self._runner_done)
            self._runners.append(runner)
            await self._until_online(sim)
            traffic = sim.station.traffic
            sim.idle_base_bytes = sum(traffic.outside_cycles())
            sim.idle_base_at = self.clock.elapsed()
            number = 0
            low, high = config.idle_minutes
            while config.sessions is None or number < config.sessions:
                # the first cars arrive soon after the start; later ones after an idle while
                gap = self.rng.uniform(0.0, low) if number == 0 else self.rng.uniform(low, high)
                number += 1
                await self.clock.sleep(gap * 60.0)
                await self._session(sim)
        except asyncio.CancelledError:
            raise
        except Exception:  # counted as an error by the log handler
            log.exception("the driver of %s failed", sim.station_id)
        finally:
            sim.done = True
            self._remaining -= 1
            if self._remaining <= 0:
                self._all_done.set()

    def _runner_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:  # counted by the log handler
            log.error("%s stopped: %r", task.get_name(), task.exception())

    async def _until_online(self, sim: SimStation) -> None:
        """Wait for the first registration; polls, with a growing pause, only until then."""
        pause = 0.05
        while not sim.station.online:
            await asyncio.sleep(pause)
            pause = min(2.0, pause * 1.5)
        sim.ever_online = True

    async def _session(self, sim: SimStation) -> None:
        station, clock, config = sim.station, self.clock, self.config
        ev = random_ev(self.rng)
        id_tag = next_driver(station.connector.reservation, config.id_tags, self.rng)
        sim.session_start_wh = station.hardware.energy_wh
        sim.session_start_at = clock.elapsed()
        station.plug_in(ev)
        completed = False
        try:
            if not await station.swipe(id_tag):
                log.warning("%s: idTag %s was not accepted", sim.station_id, id_tag)
                sim.errors += 1
                return
            sim.sessions_started += 1
            if sim.sessions_started == 1:
                self._first_sessions += 1
                if self._first_sessions == len(self.sims):
                    self.ramp_s = time.monotonic() - self._started_at
                    if self._gc is not None:
                        self._gc.settled()
                    if self.on_ramped is not None:
                        self.on_ramped(self.ramp_s)
            faults = config.fault_rate > 0 and self.rng.random() < config.fault_rate
            if faults:
                await self._fault(sim, ev)
                return
            if config.session_minutes is not None:
                await clock.sleep(config.session_minutes * 60.0)
            else:
                await self._until_full(sim, ev)
            if station.transaction is not None:
                await station.swipe(id_tag)  # the driver ends the session with the card
            completed = True
        finally:
            self._end_session(sim, completed=completed)

    async def _fault(self, sim: SimStation, ev: Ev) -> None:
        """A fault trips the contactor part-way: the transaction ends (1.6 reason Other,
        2.0.1 per the station), the connector is Faulted until the fault clears, then the
        driver unplugs."""
        station, config = sim.station, self.config
        length = (
            config.session_minutes * 60.0
            if config.session_minutes is not None
            else seconds_to_full(ev, station.model)
        )
        await self.clock.sleep(self.rng.uniform(0.1, 0.9) * length)
        code = self.rng.choice(FAULT_CODES)
        station.fault(code)
        sim.sessions_faulted += 1
        await self.clock.sleep(config.fault_minutes * 60.0)
        station.clear_fault()

    def _end_session(self, sim: SimStation, *, completed: bool) -> None:
        """The driver unplugs; also when the fleet stops mid-session, so that the CSMS
        is told the transaction ended (it is then not counted as completed)."""
        station = sim.station
        if station.hardware.ev is not None:
            station.unplug()
        if sim.session_start_wh is not None:
            energy = station.hardware.energy_wh - sim.session_start_wh
            sim.energy_all_wh += energy
            if completed:
                sim.energy_wh += energy
                sim.sessions_completed += 1
        if sim.session_start_at is not None:
            sim.cycle_seconds += self.clock.elapsed() - sim.session_start_at
        sim.session_start_wh = None
        sim.session_start_at = None

    async def _until_full(self, sim: SimStation, ev: Ev) -> None:
        """Sleep until the car's curve has ended (it draws nothing more)."""
        station = sim.station
        await self.clock.sleep(seconds_to_full(ev, station.model) + 30.0)
        for _ in range(_FULL_CHECKS):
            station.tick()  # integrates the energy up to now
            if ev.done or station.transaction is None:
                return
            await self.clock.sleep(max(60.0, seconds_to_full(ev, station.model)))

    # -- figures -----------------------------------------------------------------------

    def summary(self) -> FleetSummary:
        """The figures so far (cheap enough to call twice a second for a small fleet)."""
        now = self.clock.elapsed()
        bytes_total = 0
        cycle_bytes: list[int] = []
        idle_bytes = 0
        idle_seconds = 0.0
        for sim in self.sims:
            traffic = sim.station.traffic
            tx, rx = traffic.totals()
            bytes_total += tx + rx
            cycle_bytes += [c.tx + c.rx for c in traffic.cycles().values() if c.ended is not None]
            if sim.idle_base_bytes is not None:
                idle_bytes += sum(traffic.outside_cycles()) - sim.idle_base_bytes
                in_cycles = sim.cycle_seconds
                if sim.session_start_at is not None:
                    in_cycles += now - sim.session_start_at
                idle_seconds += max(0.0, now - sim.idle_base_at - in_cycles)
        return FleetSummary(
            stations=len(self.sims),
            connected=sum(1 for s in self.sims if s.station.online),
            ever_connected=sum(1 for s in self.sims if s.ever_online),
            sessions_started=sum(s.sessions_started for s in self.sims),
            sessions_completed=sum(s.sessions_completed for s in self.sims),
            sessions_faulted=sum(s.sessions_faulted for s in self.sims),
            energy_wh=float(sum((s.energy_wh for s in self.sims), Decimal(0))),
            energy_all_wh=float(
                sum((s.energy_all_wh + s.session_energy_wh for s in self.sims), Decimal(0))
            ),
            messages_sent=sum(s.messages_sent for s in self.sims),
            messages_received=sum(s.messages_received for s in self.sims),
            bytes_total=bytes_total,
            bytes_per_session=sum(cycle_bytes) / len(cycle_bytes) if cycle_bytes else None,
            bytes_per_idle_day=idle_bytes / idle_seconds * 86400.0 if idle_seconds > 0 else None,
            sessions_per_station={s.station_id: s.sessions_completed for s in self.sims},
            errors=sum(s.errors for s in self.sims) + self._errors.count,
            ramp_s=self.ramp_s,
            duration_wall_s=time.monotonic() - self._started_at if self._started_at else 0.0,
            duration_simulated_s=now,
            time_scale=self.config.time_scale,
        )
