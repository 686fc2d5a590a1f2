"""Bytes on the wire, TLS on: one charging session and one idle day of a PlugStream station.

What it measures, on loopback: PlugStream Cloud (``plugstream cloud serve`` in its own
process, SQLite in a temporary directory, ``--auto-register-unsecured``, wss with a server
certificate from :mod:`plugstream.pki.authority`) behind a TCP relay that counts every
TCP payload byte both ways (TLS records included: handshakes, record headers, AEAD tags).
One :class:`~plugstream.station.station16.Station16` and one
:class:`~plugstream.station.station201.Station201` run in this process, one after the
other, on a :class:`~plugstream.station.clock.ScaledClock` (``--scale``, 1440: a day in a
minute), trusting our root, through the relay:

* **connect**: TLS handshake, WebSocket upgrade, BootNotification, StatusNotification;
* **session**: plug-in to unplug of a ``--session-minutes`` (120) charge of a family car
  on a PlugStream 22, with meter samples every 60 s (MeterValueSampleInterval /
  SampledDataCtrlr.TxUpdatedInterval = 60) of ``--measurands`` (energy register, power,
  current, SoC by default; ``station``: the station's factory defaults), and every
  message it entails (Authorize, StartTransaction / TransactionEvent, statuses, the
  Heartbeats and WebSocket pings of those two hours);
* **idle day**: connected, no car, ``--idle-hours`` (24) of Heartbeats at the cloud's
  interval and WebSocket pings of both sides.

The station's keep-alive learns the path (station/keepalive.py): it pings after
WebSocketPingInterval (180 s) of quiet and lengthens the interval while pongs come back, up
to PlugStreamPingIntervalMax (1,800 s), which the idle day reaches in its first 1.5 hours;
the cloud does not ping a station that keeps itself alive. The station's pings run on its
scaled clock, the cloud's on ``--ping-interval`` = its default / scale. At a high scale a
ping is late by the loop's own latency now and then, so the idle day reported is the
*real-time equivalent*: the bytes of every other record as measured, plus the keep-alive
records (a ping or pong is one fixed-size TLS record: 32 bytes up, 28 down with TLS 1.3)
counted at exactly the number a real day would send at the interval learned (86,400 s /
interval). A session is counted as measured: its samples keep the connection busy, so the
station pings only in its quiet minutes. The raw measured figure is printed too, with the
pings seen against those expected. TCP/IP headers and ACKs are not counted (about 40-60
bytes a segment on the link itself: tests/lab/test_traffic_lab.py counts them).

With ``--compression both`` (default) each station runs with and without
permessage-deflate when the station lets it be turned off.

The peer: the same session by a charge point written with the ``ocpp`` library as its
examples are (``bench/peers/ocpplib_session.py``: websockets' defaults, pings every 20 s,
uuid4 message ids) through the same relay, after ours; ``ratio`` in the JSON is its
session bytes over ours (the smaller of the versions run).

Goals: < 80 KB a session and < 100 KB an idle day (KB = 1,000 bytes). The vendor article
(seed/network-requirements.txt) says 5 MB a charge cycle and 3 MB a day: the ratio
article / ours is printed.

Run it from the repository root:

    python bench/wire.py                  # ~4.5 minutes (2 versions x 2 compressions)
    python bench/wire.py --quick          # ~15 s: 1.6, compression on, 2 h idle
    python bench/wire.py --versions 2.0.1 --compression on --scale 720

Last line: one JSON object (``session_bytes``, ``idle_day_bytes`` per version and
compression, ``meets_goals``, ...). The cloud is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib.util
import inspect
import json
import os
import platform
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from plugstream.cloud.config import CloudConfig
from plugstream.pki.authority import CertificateAuthority
from plugstream.station.clock import ScaledClock
from plugstream.station.ev import FAMILY_CAR, Ev
from plugstream.station.hardware import PLUGSTREAM_22
from plugstream.station.runtime import Station, StationOptions
from plugstream.station.station16 import Station16
from plugstream.station.station201 import Station201
from procs import (
    CLOUD_READY,
    HOST,
    BenchError,
    cloud_argv,
    free_port,
    launch,
    print_summary,
    stop_pid,
    tail,
)

HERE: Final = Path(__file__).resolve().parent
ID_TAG: Final = "BENCHTAG01"
API_TOKEN: Final = "wire-bench-token"

GOAL_SESSION: Final = 80_000  # bytes
GOAL_IDLE_DAY: Final = 100_000
ARTICLE_SESSION: Final = 5_000_000  # "approx. 5MB for each charge cycle"
ARTICLE_DAY: Final = 3_000_000  # "around 3 MB a day"
DAY: Final = 86_400.0


MAX_STATION_CADENCE_S: Final = 3600.0  # cloud/uvicorn_compat.py


def keepalive_exchanges(seconds: float, station_ping_s: float, cloud_ping_s: float) -> float:
    """Ping exchanges in ``seconds`` of quiet: the station's, and the cloud's only for a
    station that does not keep itself alive (the cloud waits twice the longest quiet a
    station ended on its own, up to an hour: a station whose keep-alive learned 30 minutes
    is not pinged by the cloud)."""
    station = seconds / station_ping_s if station_ping_s > 0 else 0.0
    keeps_itself = 0 < station_ping_s <= MAX_STATION_CADENCE_S
    return station + (0.0 if keeps_itself else seconds / cloud_ping_s)


FULL_MEASURANDS: Final = "Energy.Active.Import.Register,Power.Active.Import,Current.Import,SoC"
# One WebSocket ping or pong with websockets' and uvicorn's 4-byte payload, as one TLS 1.3
# record (5 header + frame + 1 content type + 16 AEAD tag): masked from the station (2 + 4
# + 4 = 10 bytes of frame), unmasked from the cloud (2 + 4 = 6).
KEEPALIVE_UP: Final = 5 + 10 + 1 + 16
KEEPALIVE_DOWN: Final = 5 + 6 + 1 + 16


def _load_peer() -> Any:
    """bench/peers/ocpplib_session.py, by path: bench/ is scripts, not a package."""
    path = HERE / "peers" / "ocpplib_session.py"
    spec = importlib.util.spec_from_file_location("ocpplib_session", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PEER: Final = _load_peer()
LIBRARY_PING_INTERVAL: Final[float] = PEER.LIBRARY_PING_INTERVAL

ONLINE_TIMEOUT: Final = 30.0  # real s for a station to connect and be Accepted
SETTLE: Final = 0.5  # real s of quiet after the last journalled message is answered


# --- counting relay ----------------------------------------------------------------


class Direction:
    """The bytes one way of one TCP connection, and the TLS records they make up."""

    __slots__ = ("_body", "_head", "bytes", "sizes")

    def __init__(self) -> None:
        self.bytes = 0
        self.sizes: collections.Counter[int] = collections.Counter()  # record size -> count
        self._head = bytearray()
        self._body = 0

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        i, n = 0, len(data)
        while i < n:
            if self._body:
                take = min(self._body, n - i)
                self._body -= take
                i += take
                continue
            chunk = data[i : i + 5 - len(self._head)]
            self._head += chunk
            i += len(chunk)
            if len(self._head) == 5:
                length = int.from_bytes(self._head[3:5], "big")
                self.sizes[5 + length] += 1
                self._body = length
                self._head.clear()


@dataclass(slots=True)
class Tally:
    """Bytes and TLS record sizes both ways, summed over connections."""

    up: int = 0
    down: int = 0
    up_sizes: collections.Counter[int] = field(default_factory=collections.Counter)
    down_sizes: collections.Counter[int] = field(default_factory=collections.Counter)
    connections: int = 0

    def __sub__(self, other: Tally) -> Tally:
        return Tally(
            self.up - other.up,
            self.down - other.down,
            self.up_sizes - other.up_sizes,
            self.down_sizes - other.down_sizes,
            self.connections - other.connections,
        )

    @property
    def total(self) -> int:
        return self.up + self.down

    @property
    def payload(self) -> int:
        """Bytes other than keep-alive pings and pongs."""
        return self.total - self.keepalive_bytes

    @property
    def keepalive_records(self) -> tuple[int, int]:
        return self.up_sizes[KEEPALIVE_UP], self.down_sizes[KEEPALIVE_DOWN]

    @property
    def keepalive_bytes(self) -> int:
        up, down = self.keepalive_records
        return up * KEEPALIVE_UP + down * KEEPALIVE_DOWN


class Relay:
    """A loopback TCP relay in front of the cloud that counts every payload byte."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.conns: list[tuple[Direction, Direction]] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def tally(self) -> Tally:
        out = Tally(connections=len(self.conns))
        for up, down in self.conns:
            out.up += up.bytes
            out.down += down.bytes
            out.up_sizes.update(up.sizes)
            out.down_sizes.update(down.sizes)
        return out

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up, down = Direction(), Direction()
        self.conns.append((up, down))
        try:
            r2, w2 = await asyncio.open_connection(HOST, self.upstream_port)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(self._pipe(reader, w2, up), self._pipe(r2, writer, down))
        except asyncio.CancelledError:
            pass  # the relay stops: end quietly (asyncio would log a cancelled handler)
        finally:
            for w in (writer, w2):
                w.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: Direction) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                data = await src.read(65536)
                if not data:
                    break
                count.feed(data)
                dst.write(data)
                await dst.drain()
        with contextlib.suppress(ConnectionError, OSError):
            if dst.can_write_eof():
                dst.write_eof()


# --- the cloud ---------------------------------------------------------------------


@dataclass(slots=True)
class Cloud:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    ping_interval: float  # real s
    heartbeat_interval: int

    def tail(self, lines: int = 20) -> str:
        return tail(self.log, lines)


def start_cloud(workdir: Path, cert: Path, key: Path, scale: float, heartbeat: int) -> Cloud:
    port = free_port()
    log = workdir / "cloud.log"
    ping_interval = CloudConfig().ping_interval / scale
    argv = cloud_argv(
        port,
        workdir / "cloud.db",
        "--auto-register-unsecured",
        "--api-token",
        API_TOKEN,
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--heartbeat-interval",
        str(heartbeat),
        "--ping-interval",
        f"{ping_interval:.6g}",
        "--ping-timeout",
        "30",  # real: a pong is late because the loop is busy, not because a day went by
    )
    proc = launch(argv, log, CLOUD_READY, "the cloud")
    return Cloud(port, proc, log, ping_interval, heartbeat)


def register_id_tag(cloud: Cloud, context: ssl.SSLContext) -> None:
    request = urllib.request.Request(
        f"https://{HOST}:{cloud.port}/api/v1/id-tokens/{ID_TAG}",
        data=json.dumps({"status": "Accepted"}).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        if response.status not in (200, 201):
            raise BenchError(f"registering {ID_TAG}: HTTP {response.status}")


# --- one station -------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    version: str
    compression: bool
    measurands: str
    ping_interval: float  # the station's keep-alive after the idle day (learned), s of station time
    ping_start: float = 0.0  # ... its WebSocketPingInterval, where the learning started
    connect: Tally = field(default_factory=Tally)
    session: Tally = field(default_factory=Tally)
    session_s: float = 0.0  # station time
    idle: Tally = field(default_factory=Tally)
    idle_s: float = 0.0
    deflate: bool | None = None  # permessage-deflate negotiated, where the station tells
    # the station's own count (station.traffic: WebSocket bytes above TLS), where it has one
    ws_session: int | None = None
    ws_idle: int | None = None
    reconnects: int = 0

    def expected_keepalive_bytes(self, seconds: float, cloud_ping_s: float) -> float:
        pings = keepalive_exchanges(seconds, self.ping_interval, cloud_ping_s)
        return pings * (KEEPALIVE_UP + KEEPALIVE_DOWN)

    def real_equivalent(
        self, tally: Tally, seconds: float, per: float, cloud_ping_s: float, *, scale: bool
    ) -> float:
        """Bytes in ``per`` s of station time with every ping sent on time: the other
        bytes as measured (``scale``: per ``seconds`` measured), keep-alive as expected
        at the learned interval (``scale``, an idle day), or as seen (a session: its
        samples keep the connection busy, the station pings only after quiet)."""
        if not scale:
            return float(tally.total)
        return tally.payload * per / seconds + self.expected_keepalive_bytes(per, cloud_ping_s)

    def pings_seen(self, tally: Tally, seconds: float, per: float) -> float:
        up, down = tally.keepalive_records
        return (up + down) / 2 * per / seconds


def _accepts(cls: type, name: str) -> bool:
    """``name`` is a keyword of ``cls``: its own, or one of every station's options."""
    return name in inspect.signature(cls).parameters or name in StationOptions.__annotations__


def make_station(
    version: str,
    data_dir: Path,
    clock: ScaledClock,
    context: ssl.SSLContext,
    compression: bool,
    measurands: str | None,
    ping_interval: int | None = None,
) -> Station16 | Station201:
    cls: type[Station16] | type[Station201] = Station16 if version == "1.6" else Station201
    if not _accepts(cls, "clock"):
        raise BenchError(f"{cls.__name__} takes no clock= yet: the bench needs a scaled station")
    kwargs: dict[str, Any] = {"clock": clock}
    if _accepts(cls, "ssl"):
        kwargs["ssl"] = context
    if not compression:
        kwargs["compression"] = None
    if _accepts(cls, "traffic_autosave"):
        kwargs["traffic_autosave"] = False
    station_id = f"WIRE-{version.replace('.', '')}-{'z' if compression else 'p'}"
    if version == "1.6":
        defaults = {"MeterValueSampleInterval": "60"}
        if ping_interval is not None:
            defaults["WebSocketPingInterval"] = str(ping_interval)
        if measurands:
            defaults["MeterValuesSampledData"] = measurands
        return Station16(
            station_id, PLUGSTREAM_22, data_dir, clock.now, config_defaults=defaults, **kwargs
        )
    dm = {"SampledDataCtrlr.TxUpdatedInterval": "60"}
    if ping_interval is not None:
        dm["OCPPCommCtrlr.WebSocketPingInterval"] = str(ping_interval)
    if measurands:
        dm["SampledDataCtrlr.TxUpdatedMeasurands"] = measurands
    return Station201(
        station_id, PLUGSTREAM_22, data_dir, clock.now, device_model_defaults=dm, **kwargs
    )


def supports_no_compression() -> bool:
    return _accepts(Station16, "compression") and _accepts(Station201, "compression")


async def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def quiet(station: Station, relay: Relay, timeout: float = 30.0) -> None:
    """Until the journal is delivered and nothing but keep-alive moved for SETTLE real s."""
    await wait_for(lambda: station.journal.head() is None, timeout, "the journal to drain")
    deadline = time.monotonic() + timeout
    last = relay.tally().payload
    while time.monotonic() < deadline:
        await asyncio.sleep(SETTLE)
        now = relay.tally().payload
        if now == last:
            return
        last = now
    raise BenchError("the connection never went quiet")


async def sleep_station_time(clock: ScaledClock, seconds: float) -> None:
    end = clock.elapsed() + seconds
    while clock.elapsed() < end:
        await asyncio.sleep(min(1.0, clock.real_seconds(end - clock.elapsed())))


def _ws_bytes(station: Station) -> int | None:
    traffic = getattr(station, "traffic", None)
    return None if traffic is None else int(sum(traffic.totals()))


def _deflate(station: Station) -> bool | None:
    ws = station.websocket
    protocol = getattr(ws, "protocol", None)
    extensions = getattr(protocol, "extensions", None)
    if extensions is None:
        return None
    return any(getattr(e, "name", "") == "permessage-deflate" for e in extensions)


async def run_station(
    version: str,
    compression: bool,
    args: argparse.Namespace,
    workdir: Path,
    relay: Relay,
    context: ssl.SSLContext,
) -> Run:
    clock = ScaledClock(args.scale)
    measurands = FULL_MEASURANDS if args.measurands == "full" else None
    data_dir = workdir / f"station-{version}-{int(compression)}"
    station = make_station(
        version, data_dir, clock, context, compression, measurands, args.station_ping_interval
    )
    run = Run(
        version,
        compression,
        measurands or "station defaults",
        station.ping_interval_now,
        float(station.config.websocket_ping_interval),
    )
    url = f"wss://{HOST}:{relay.port}/ocpp"
    before = relay.tally()
    task = asyncio.get_running_loop().create_task(station.run(url))
    try:
        await wait_for(lambda: station.online or task.done(), ONLINE_TIMEOUT, "Accepted")
        if task.done():
            task.result()
        await quiet(station, relay)
        run.deflate = _deflate(station)
        t0, w0 = relay.tally(), _ws_bytes(station)
        run.connect = t0 - before

        s0 = clock.elapsed()
        station.plug_in(Ev(FAMILY_CAR))
        if not await station.swipe(ID_TAG):
            raise BenchError(f"{ID_TAG} was not accepted")
        await sleep_station_time(clock, args.session_minutes * 60.0)
        station.unplug()
        await quiet(station, relay)
        t1, w1 = relay.tally(), _ws_bytes(station)
        run.session, run.session_s = t1 - t0, clock.elapsed() - s0

        i0 = clock.elapsed()
        await sleep_station_time(clock, args.idle_hours * 3600.0)
        t2, w2 = relay.tally(), _ws_bytes(station)
        run.idle, run.idle_s = t2 - t1, clock.elapsed() - i0
        run.ping_interval = station.ping_interval_now  # learned: 1,800 s on a path that holds
        if w0 is not None and w1 is not None and w2 is not None:
            run.ws_session, run.ws_idle = w1 - w0, w2 - w1
        run.reconnects = t2.connections - before.connections - 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        station.close()
    return run


@dataclass(slots=True)
class PeerRun:
    """The same session by an ``ocpp``-library charge point (bench/peers/ocpplib_session.py)."""

    version: str
    connect: int = 0
    session: int = 0  # without keep-alive
    heartbeat: int = 0  # one Heartbeat exchange

    def keepalive(self, seconds: float, cloud_ping_s: float) -> float:
        pings = keepalive_exchanges(seconds, LIBRARY_PING_INTERVAL, cloud_ping_s)
        return pings * (KEEPALIVE_UP + KEEPALIVE_DOWN)

    def session_bytes(self, seconds: float, cloud_ping_s: float) -> float:
        return self.session + self.keepalive(seconds, cloud_ping_s)

    def idle_day_bytes(self, heartbeat_interval: float, cloud_ping_s: float) -> float:
        return self.heartbeat * DAY / heartbeat_interval + self.keepalive(DAY, cloud_ping_s)


async def run_peer(
    version: str, args: argparse.Namespace, relay: Relay, context: ssl.SSLContext, cloud: Cloud
) -> PeerRun:
    async def settle() -> None:
        last = relay.tally().payload
        for _ in range(int(30.0 / SETTLE)):
            await asyncio.sleep(SETTLE)
            now = relay.tally().payload
            if now == last:
                return
            last = now
        raise BenchError("the peer's connection never went quiet")

    marks = await PEER.run_session(
        f"wss://{HOST}:{relay.port}/ocpp",
        f"WIRE-LIB-{version.replace('.', '')}",
        version,
        ID_TAG,
        lambda: relay.tally().payload,
        ssl_context=context,
        session_minutes=args.session_minutes,
        heartbeat_interval=float(cloud.heartbeat_interval),
        settle=settle,
    )
    return PeerRun(
        version,
        connect=marks["connected"] - marks["start"],
        session=marks["session"] - marks["connected"],
        heartbeat=marks["heartbeat"] - marks["session"],
    )


# --- report ------------------------------------------------------------------------


def kb(value: float) -> str:
    return f"{value / 1000:,.1f}"


def report(
    runs: list[Run],
    peers: list[PeerRun],
    cloud: Cloud,
    args: argparse.Namespace,
    took: float,
) -> dict[str, Any]:
    cloud_ping_s = CloudConfig().ping_interval
    session_period = args.session_minutes * 60.0
    rows: list[dict[str, Any]] = []
    print()
    print("Bytes on the wire, TLS on (TCP payload through a loopback relay), KB = 1,000 bytes")
    print(
        f"{platform.python_implementation()} {platform.python_version()}; scale {args.scale:g}; "
        f"cloud heartbeat {cloud.heartbeat_interval} s, cloud pings every {cloud_ping_s:g} s; "
        f"{took:.0f} s in all"
    )
    head = (
        f"{'OCPP':<7}{'deflate':<9}{'connect':>9}{'session':>10}{'(raw)':>9}"
        f"{'idle day':>10}{'(raw)':>9}{'pings/day seen/expected':>26}"
    )
    print(head)
    print("-" * len(head))
    for run in runs:
        session = run.real_equivalent(
            run.session, run.session_s, session_period, cloud_ping_s, scale=False
        )
        session_raw = run.session.total
        idle = run.real_equivalent(run.idle, run.idle_s, DAY, cloud_ping_s, scale=True)
        idle_raw = run.idle.total * DAY / run.idle_s
        seen = run.pings_seen(run.idle, run.idle_s, DAY)
        expected = keepalive_exchanges(DAY, run.ping_interval, cloud_ping_s)
        deflate = "on" if run.compression else "off"
        if run.deflate is not None:
            deflate += "" if run.deflate == run.compression else "(!)"
        print(
            f"{run.version:<7}{deflate:<9}{kb(run.connect.total):>9}{kb(session):>10}"
            f"{kb(session_raw):>9}{kb(idle):>10}{kb(idle_raw):>9}"
            f"{f'{seen:,.0f} / {expected:,.0f}':>26}"
        )
        rows.append(
            {
                "ocpp": run.version,
                "compression": run.compression,
                "deflate_negotiated": run.deflate,
                "measurands": run.measurands,
                "station_ping_interval_s": run.ping_interval,
                "station_ping_interval_start_s": run.ping_start,
                "connect_bytes": run.connect.total,
                "session_bytes": round(session),
                "session_bytes_raw": round(session_raw),
                "session_up_down": [run.session.up, run.session.down],
                "idle_day_bytes": round(idle),
                "idle_day_bytes_raw": round(idle_raw),
                "idle_keepalive_bytes_per_day": round(
                    run.expected_keepalive_bytes(DAY, cloud_ping_s)
                ),
                "idle_pings_per_day_seen": round(seen),
                "idle_pings_per_day_expected": round(expected),
                "reconnects": run.reconnects,
                "station_counted_session_bytes": run.ws_session,
                "station_counted_idle_bytes": run.ws_idle,
                "relay_counted_session_bytes": run.session.total,
                "relay_counted_idle_bytes": run.idle.total,
                "session_ok": session < GOAL_SESSION,
                "idle_day_ok": idle < GOAL_IDLE_DAY,
                "article_ratio_session": round(ARTICLE_SESSION / session, 1),
                "article_ratio_day": round(ARTICLE_DAY / idle, 1),
            }
        )
    print()
    print(
        f"goals: session < {kb(GOAL_SESSION)} KB, idle day < {kb(GOAL_IDLE_DAY)} KB; "
        f"article: {ARTICLE_SESSION / 1e6:g} MB a charge cycle, {ARTICLE_DAY / 1e6:g} MB a day"
    )
    for row in rows:
        verdict = "meets" if row["session_ok"] and row["idle_day_ok"] else "MISSES"
        print(
            f"  {row['ocpp']:<6} deflate {'on ' if row['compression'] else 'off'}: "
            f"{verdict} (session {kb(row['session_bytes'])} KB, idle day "
            f"{kb(row['idle_day_bytes'])} KB, of which keep-alive "
            f"{kb(row['idle_keepalive_bytes_per_day'])} KB); article / ours: "
            f"{row['article_ratio_session']:g}x a session, {row['article_ratio_day']:g}x a day"
        )
    if not args.no_compression_supported and args.compression != "on":
        print("  (stations cannot turn permessage-deflate off yet: compression 'off' not run)")
    for run in runs:
        if run.ws_session is not None and run.ws_session > 0:
            print(
                f"  {run.version:<6} the station's own count (WebSocket bytes, above TLS) in the "
                f"same windows: session {kb(run.ws_session)} KB vs {kb(run.session.total)} KB "
                f"on the wire; idle {kb(run.ws_idle or 0)} KB vs {kb(run.idle.total)} KB"
            )
    print(
        "  raw = as counted at this scale; the other figures count keep-alive pings at the "
        "number a real day sends. TCP/IP headers and ACKs are not counted."
    )
    on = [r for r in rows if r["compression"]]
    peer_rows: dict[str, dict[str, Any]] = {}
    if peers:
        print()
        print(
            f"The same session by an ocpp-library charge point (websockets' defaults: deflate "
            f"offered, pings every {LIBRARY_PING_INTERVAL:g} s), through the same relay:"
        )
    for peer in peers:
        session = peer.session_bytes(session_period, cloud_ping_s)
        idle = peer.idle_day_bytes(cloud.heartbeat_interval, cloud_ping_s)
        ours = next((r for r in on if r["ocpp"] == peer.version), None)
        peer_row: dict[str, Any] = {
            "connect_bytes": peer.connect,
            "session_bytes": round(session),
            "idle_day_bytes": round(idle),
        }
        if ours is not None:
            peer_row["ratio_session"] = round(session / ours["session_bytes"], 2)
            peer_row["ratio_idle_day"] = round(idle / ours["idle_day_bytes"], 2)
        peer_rows[peer.version] = peer_row
        print(
            f"  {peer.version:<6} connect {kb(peer.connect)} KB, session {kb(session)} KB, "
            f"idle day {kb(idle)} KB"
            + (
                f"; theirs / ours: {peer_row['ratio_session']:g}x a session, "
                f"{peer_row['ratio_idle_day']:g}x an idle day"
                if ours is not None
                else ""
            )
        )
    ratios = [r["ratio_session"] for r in peer_rows.values() if "ratio_session" in r]
    return {
        "bench": "wire",
        "runs": rows,
        "session_bytes": {r["ocpp"]: r["session_bytes"] for r in on},
        "idle_day_bytes": {r["ocpp"]: r["idle_day_bytes"] for r in on},
        "goals": {"session_bytes": GOAL_SESSION, "idle_day_bytes": GOAL_IDLE_DAY},
        "meets_goals": bool(on) and all(r["session_ok"] and r["idle_day_ok"] for r in on),
        "peer": peer_rows,
        "ratio": min(ratios) if ratios else None,  # the ocpp-library peer's session bytes / ours
        "article": {"session_bytes": ARTICLE_SESSION, "day_bytes": ARTICLE_DAY},
        "scale": args.scale,
        "session_minutes": args.session_minutes,
        "idle_hours": args.idle_hours,
        "cloud_ping_interval_s": cloud_ping_s,
        "cloud_heartbeat_interval_s": cloud.heartbeat_interval,
        "took_s": round(took, 1),
        "python": platform.python_version(),
    }


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    ca = CertificateAuthority.create("PlugStream Bench Root")
    root, cert, key = workdir / "root.pem", workdir / "server.pem", workdir / "server.key"
    ca.write_root(root)
    ca.issue_server(["localhost"], ips=[HOST]).write(cert, key)
    context = ssl.create_default_context(cafile=str(root))
    if not (_accepts(Station16, "ssl") and _accepts(Station201, "ssl")):
        # a station without ssl=: websockets' default context reads the trusted roots here
        os.environ["SSL_CERT_FILE"] = str(root)
    began = time.monotonic()
    cloud = start_cloud(workdir, cert, key, args.scale, args.heartbeat_interval)
    relay = Relay(cloud.port)
    try:
        await asyncio.to_thread(register_id_tag, cloud, context)
        await relay.start()
        args.no_compression_supported = supports_no_compression()
        modes = {"on": [True], "off": [False], "both": [True, False]}[args.compression]
        if not args.no_compression_supported:
            modes = [m for m in modes if m] or [True]
        runs: list[Run] = []
        for version in args.versions:
            for compression in modes:
                print(
                    f"[OCPP {version}, deflate {'on' if compression else 'off'}] "
                    f"{args.session_minutes:g} min session + {args.idle_hours:g} h idle "
                    f"at x{args.scale:g}",
                    flush=True,
                )
                runs.append(await run_station(version, compression, args, workdir, relay, context))
                if cloud.proc.poll() is not None:
                    raise BenchError(f"the cloud died:\n{cloud.tail()}")
        peers: list[PeerRun] = []
        for version in args.versions:
            print(f"[OCPP {version}, ocpp-library peer] the same session", flush=True)
            peers.append(await run_peer(version, args, relay, context, cloud))
        return report(runs, peers, cloud, args, time.monotonic() - began)
    finally:
        await relay.stop()
        stop_pid(cloud.proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--scale", type=float, default=1440.0, help="station time / wall (1440)")
    parser.add_argument("--versions", default="1.6,2.0.1", help="OCPP versions (1.6,2.0.1)")
    parser.add_argument("--compression", choices=("on", "off", "both"), default="both")
    parser.add_argument("--measurands", choices=("full", "station"), default="full")
    parser.add_argument("--session-minutes", type=float, default=120.0)
    parser.add_argument("--idle-hours", type=float, default=24.0)
    parser.add_argument(
        "--station-ping-interval",
        type=int,
        help="the stations' WebSocketPingInterval in s (default: the station's own)",
    )
    parser.add_argument("--heartbeat-interval", type=int, default=CloudConfig().heartbeat_interval)
    parser.add_argument("--quick", action="store_true", help="~15 s: 1.6, deflate on, 2 h idle")
    parser.add_argument("--workdir", type=Path, help="where the temporary directory goes")
    args = parser.parse_args(argv)
    args.versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    if args.quick:
        args.versions, args.compression, args.idle_hours = ["1.6"], "on", 2.0
    if (
        any(v not in ("1.6", "2.0.1") for v in args.versions)
        or args.scale <= 0
        or args.session_minutes <= 0
        or args.idle_hours <= 0
    ):
        parser.error("versions are 1.6 and 2.0.1; scale, session and idle must be positive")
    workdir = Path(tempfile.mkdtemp(prefix="plugstream-wire-", dir=args.workdir))
    try:
        summary = asyncio.run(measure(args, workdir))
    except BenchError as exc:
        print(f"bench/wire.py: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return print_summary(summary)


if __name__ == "__main__":
    sys.exit(main())
