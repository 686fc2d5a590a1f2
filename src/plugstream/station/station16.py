"""The OCPP 1.6J charge point runtime of a PlugStream station, with one connector.

:class:`Station16` wires the sans-I/O building blocks of :mod:`plugstream.station`
(hardware, connector status machine, journal, configuration, local authorization,
metering, smart charging) to an :class:`~plugstream.ocpp.OcppEndpoint` running over
a ``websockets`` connection:

- BootNotification (when one is due, see below), retried after ``interval`` while the
  Central System answers Pending or Rejected; only once Accepted the station sends
  anything else (1.6 §4.2): the status of its connectors, Heartbeat when nothing else
  was sent for the interval the Central System asked for (at least one a day), and the
  transaction-related messages of the journal. Empty optional fields are left out.
- Sessions: plug in, present an idTag (a swipe, or RemoteStartTransaction), Authorize
  when the local rules say so, StartTransaction, MeterValues every
  ``MeterValueSampleInterval``, StopTransaction with ``transactionData``. Every
  transaction-related message is written to the durable :class:`Journal` first and
  delivered in order by :meth:`Station16.deliver_journal`; the ``transactionId`` of
  MeterValues and StopTransaction is a ``$ref_result`` placeholder resolved when the
  Central System answers StartTransaction. Charging goes on while offline. The register
  goes on the wire in whole Wh, the resolution of meterStart and meterStop.
- Clock-aligned MeterValues (``ClockAlignedDataInterval`` > 0, measurands
  ``MeterValuesAlignedData``, context ``Sample.Clock``) run always, stamped with their
  grid point: during a transaction they carry its transactionId and go through the
  journal like the sampled ones (§3.7: transaction-related); outside one they have no
  transactionId, are not transaction-related and are sent at once when online and
  dropped when offline. They name connectorId 1: the station's one meter is the
  connector's (location Outlet), there is no separate main meter for connectorId 0.
- :meth:`Station16.run` connects (subprotocol ``ocpp1.6``, permessage-deflate offered)
  and reconnects with :class:`ReconnectBackoff` after a connection loss. BootNotification
  is sent on the first connection of a process, after a Reset, and until one was
  Accepted; a plain reconnect goes straight on (1.6 §4.2: "after start-up"), with the
  StatusNotifications of connectors whose status changed meanwhile.

Time: every timestamp and every pause (tick, heartbeat, boot retry, back-off) comes
from the injected :class:`~plugstream.station.clock.Clock`, so a fleet runs scaled;
network timeouts stay real. An idle station sleeps until an event (``_wake``) or its
next due time, so ten thousand idle stations cost next to nothing.

Restart safety: ``state.json`` in the data dir holds the energy register, the running
transaction, the charging profiles and the availability, written atomically at every
journalled transaction message. A transaction that was running when the process died
is ended on the next start with StopTransaction reason PowerLoss (Reboot after a clean
stop) and meterStop = the last persisted register.

Traffic: every byte of the OCPP connection is counted in :attr:`Station16.traffic`
(see :class:`CountingConnection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import random
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from ssl import SSLContext, SSLError
from typing import Any, ClassVar, cast
from urllib.parse import urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.headers import build_authorization_basic
from websockets.typing import Subprotocol

from plugstream.net.accounting import ByteCounter, Direction, Link
from plugstream.net.links import LinkPolicy
from plugstream.net.ntp import CorrectedClock
from plugstream.ocpp import (
    ErrorCode,
    Event,
    Handlers,
    OcppEndpoint,
    OcppError,
    OcppVersion,
    after,
    on,
    v16,
)
from plugstream.ocpp.datetimes import format_time
from plugstream.pki.tls import ServerRejected, peer_chain, station_context, verify_server
from plugstream.station.auth import AuthCache, AuthConfig, Authorizer, LocalAuthList, TokenKey
from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.certificates import CSMS_ROOT, CertificateStore
from plugstream.station.certmgmt import CertificateHandlers16, renew_if_expiring
from plugstream.station.clock import CallableClock, Clock, SystemClock
from plugstream.station.config import Config16, atomic_write_json
from plugstream.station.connector import (
    Action,
    ChargePointErrorCode,
    ChargePointStatus,
    Connector,
    InvalidTransition,
    StatusChanged,
)
from plugstream.station.ev import Ev
from plugstream.station.firmware import FIRMWARE_KEYS16, FirmwareHandlers16, FirmwareUpdater
from plugstream.station.hardware import ChargePointHardware, Measurements, Model
from plugstream.station.journal import REF_KEY, Entry, Journal, UnknownEntryError
from plugstream.station.metering import (
    ClockAligned,
    MeterSchedule,
    ReadingContext,
    TransactionData,
    build_meter_value_16,
)
from plugstream.station.network import NetworkNotReady, StationNetwork, default_port
from plugstream.station.security import FILENAME as SECURITY_LOG_FILE
from plugstream.station.security import SecurityLog, canonical, event_name
from plugstream.station.smartcharging import ChargingProfiles

__all__ = [
    "CONNECTOR_ID",
    "STATE_FILE",
    "CountingConnection",
    "Station16",
    "StationHandlers16",
    "compact",
]

log = logging.getLogger("plugstream.station")

CONNECTOR_ID = 1
FIRMWARE_VERSION = "0.1.0"
DEFAULT_BOOT_RETRY_S = 30.0  # when a Pending/Rejected answer gives interval 0
DEFAULT_TICK_S = 10.0  # while energy flows: follows the EV's curve (hardware.MAX_STEP_S)
MIN_CHARGING_WAKE_S = 1.0  # tick_interval None: the closest look at a car about to be full
MAX_HEARTBEAT_GAP_S = 86_400.0  # G02.FR.07: one Heartbeat a day even on a busy link
TRAFFIC_SAVE_S = 900.0  # traffic.json at most this stale (station time), besides cycle ends
STATE_FILE = "state.json"
SECURITY_RETRY_S = 60.0  # a SecurityEventNotification the CSMS failed to process: again after
SECURITY_ATTEMPTS = 5  # ... at most this many times (a NotImplemented: never again)


Compression = str | ClientPerMessageDeflateFactory | None
"""``"deflate"`` (websockets' defaults), None (off), or tuned permessage-deflate."""


def small_deflate(window_bits: int = 12, mem_level: int = 4) -> ClientPerMessageDeflateFactory:
    """permessage-deflate with small buffers (a fleet: thousands of connections in one
    process). websockets' defaults keep ~150 KB of zlib state per connection (a 32 KB
    window each way, memLevel 5); OCPP messages are well under a KB, so a 4 KB window
    (both ways: the CSMS is asked for it too) and memLevel 4 keep almost all the
    compression for a fraction of the memory."""
    return ClientPerMessageDeflateFactory(
        server_max_window_bits=window_bits,
        client_max_window_bits=window_bits,
        compress_settings={"memLevel": mem_level},
    )


def compact(value: Any) -> Any:
    """``value`` without None, empty lists and empty objects inside it: optional fields
    that say nothing cost bytes on a metered link and are never required empty."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = compact(item)
            if item is None or item == {} or item == []:
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        return [compact(item) for item in value]
    return value


class _CountingTransport:
    """Delegates to an asyncio transport and counts what is written to it."""

    def __init__(self, transport: Any, count: Callable[[Direction, int], None]) -> None:
        self._transport = transport
        self._count = count

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._count("tx", len(data))
        self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CountingConnection(ClientConnection):
    """A websockets client connection that reports every byte it sends and receives.

    Counted: the WebSocket stream as the connection hands it to its transport and gets
    it back — the HTTP Upgrade handshake, frame headers, (deflated) payloads, pings,
    pongs and close frames. Not counted: TLS record overhead and the TLS handshake (the
    SSL transport sits below this layer) and TCP/IP headers. Over ``wss://`` the bytes
    on the wire are therefore somewhat more (about 22 bytes a TLS 1.3 record, plus a
    few KB of handshake per connection).
    """

    count: Callable[[Direction, int], None] = staticmethod(lambda direction, n: None)
    verify: Callable[[asyncio.BaseTransport], None] | None = None
    """Checks the TLS peer once the handshake is done, before websockets sends the HTTP
    Upgrade (and so any password): if it raises, the connection is aborted unsent (the
    verifier keeps its own record of why)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.verify is not None:
            try:
                self.verify(transport)
            except Exception:
                cast(asyncio.Transport, transport).abort()
                return
        self.transport = cast(Any, _CountingTransport(self.transport, self.count))

    def data_received(self, data: bytes) -> None:
        self.count("rx", len(data))
        super().data_received(data)


def counting_factory(
    count: Callable[[Direction, int], None],
    verify: Callable[[asyncio.BaseTransport], None] | None = None,
) -> Any:
    """A ``create_connection=`` for :func:`websockets.connect` that counts into ``count``
    (and checks the TLS peer with ``verify``)."""

    def factory(*args: Any, **kwargs: Any) -> CountingConnection:
        connection = CountingConnection(*args, **kwargs)
        connection.count = count
        connection.verify = verify
        return connection

    return factory


def load_state(path: Path) -> dict[str, Any]:
    """The persisted runtime state, or an empty one (first start, or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError:
        log.warning("%s is unreadable: starting from a blank state", path)
        return {}
    return data if isinstance(data, dict) else {}


def restored_energy(state: Mapping[str, Any]) -> Decimal:
    """The persisted energy register (Wh), 0 when there is none."""
    try:
        energy = Decimal(str(state.get("energy_wh", "0")))
    except InvalidOperation:
        return Decimal(0)
    return energy if energy >= 0 else Decimal(0)


_TRIGGERABLE = frozenset({"BootNotification", "Heartbeat", "StatusNotification", "MeterValues"})
_SECURITY_KEYS = frozenset({"AuthorizationKey", "SecurityProfile"})
# OpenSSL's reasons for a handshake the CSMS's TLS version / cipher suites made fail
_TLS_VERSION_REASONS = frozenset(
    {"UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "WRONG_VERSION_NUMBER"}
)
_TLS_CIPHER_REASONS = frozenset(
    {"SSLV3_ALERT_HANDSHAKE_FAILURE", "NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE"}
)


@dataclass(slots=True)
class _Transaction:
    """The transaction running on the connector."""

    id_tag: str
    start_seq: int  # journal entry of its StartTransaction
    meter_start: int
    started_at: datetime
    data: TransactionData
    schedule: MeterSchedule
    transaction_id: int | None = None  # once the Central System answered StartTransaction

    def reference(self) -> int | dict[str, Any]:
        """The transactionId, or a placeholder for it until it is known."""
        if self.transaction_id is not None:
            return self.transaction_id
        return {REF_KEY: self.start_seq, "key": "transactionId", "default": -1}

    def to_json(self) -> dict[str, Any]:
        """What a restart needs to end this transaction (state.json)."""
        return {
            "id_tag": self.id_tag,
            "start_seq": self.start_seq,
            "meter_start": self.meter_start,
            "started_at": self.started_at.isoformat(),
            "transaction_id": self.transaction_id,
        }


ROUTINE_EVENTS = frozenset(
    {
        "StartupOfTheDevice",
        "ResetOrReboot",
        "FirmwareUpdated",
        "SettingSystemTime",
        "ReconfigurationOfSecurityParameters",
    }
)


def _endpoint(url: str, route: dict[str, Any]) -> str:
    """``host:port (address)`` of a connection attempt, for the operator's diagnosis."""
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or default_port(parts.scheme)}"
    address = route.get("host")
    if address is None and route.get("sock") is not None:
        with contextlib.suppress(OSError):
            address = route["sock"].getpeername()[0]
    return where if address in (None, parts.hostname) else f"{where} ({address})"


class StationRuntime:
    """What :class:`Station16` and the 2.0.1 station share: the clock's pauses, the
    wake-ups, sending, the heartbeat timer and the byte counting."""

    clock: Clock
    now: Callable[[], datetime]
    endpoint: OcppEndpoint | None
    accepted: bool
    heartbeat_interval: int
    tick_interval: float | None
    traffic: ByteCounter
    traffic_autosave: bool
    link: Link
    data_dir: Path
    _changed: asyncio.Event
    _tick_event: asyncio.Event
    _tasks: set[asyncio.Task[Any]]
    _ws: Any
    _last_sent: float
    _last_heartbeat: float
    _traffic_saved_at: float
    _cycle: str | None
    ssl: SSLContext | None
    compression: Compression
    sync_state: bool
    state_in_journal: bool
    journal: Journal
    state_path: Path
    hardware: ChargePointHardware
    station_id: str
    call_timeout: float
    backoff: ReconnectBackoff
    ocpp_version: ClassVar[OcppVersion]
    observer: Callable[[Event], None] | None = None
    """Sees every event of every connection's endpoint (a fleet counts messages)."""
    _target: str | None = None  # the URL run() connects to (the profile checks need it)
    _reconnect_due = False  # a security setting changed: reconnect once the CALL is answered
    firmware: FirmwareUpdater
    """The running firmware (A/B slots) and a signed update in progress."""
    tls_rejected: ServerRejected | None = None
    """Why the CSMS's certificate was refused on the last attempt (None: it was not)."""
    network: StationNetwork | None = None
    """The NTP-corrected clock and DNS priority list to connect with (None: the system's
    resolver and no time gate -- fleets, tests, benchmarks). Read when :meth:`run` starts."""
    offline_reason: str | None = None
    """Why the last connection attempt was not made or failed (None: connected)."""
    _ws_link: Link | None = None  # the managed link the open connection runs over
    _link_switched = False  # the connection was closed for another link: reconnect at once
    _data_saving: dict[str, Any] | None = None
    _network_clock: CorrectedClock | None = None  # the clock whose steps we listen to

    def tick(self) -> None:
        raise NotImplementedError

    def next_tick_in(self) -> float | None:
        raise NotImplementedError

    def save_state(self, *, clean: bool = False) -> None:
        """Persist what survives a restart (``state.json``), atomically."""
        raise NotImplementedError

    @property
    def online(self) -> bool:
        """Connected and registered: messages other than BootNotification may be sent."""
        return self.endpoint is not None and self.accepted

    @property
    def settled(self) -> bool:
        """Nothing waits to be sent: the journal is empty and no status update is in flight
        (what a clean shutdown waits for)."""
        return not self._tasks and self.journal.head() is None

    def _seconds(self) -> float:
        return self.now().timestamp()

    def wake(self) -> None:
        self._changed.set()
        self._tick_event.set()
        if self.accepted and self.endpoint is not None:
            security = self.__dict__.get("_security_changed")
            if security is not None:
                security.set()

    async def _wait_change(self, timeout: float | None) -> None:
        """Until :meth:`_wake`, or ``timeout`` seconds of station time."""
        await _wait_event(self._changed, self.clock, timeout)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _load_traffic(self) -> ByteCounter:
        if not self.traffic_autosave:
            return ByteCounter()
        try:
            return ByteCounter.load(self.data_dir)
        except ValueError as exc:
            log.warning("traffic counters unreadable, starting afresh: %s", exc)
            return ByteCounter()

    def _save_traffic(self) -> None:
        self._traffic_saved_at = self._seconds()
        try:
            self.traffic.save(self.data_dir)
        except OSError as exc:
            log.warning("traffic.json not saved: %s", exc)

    def _count(self, direction: Direction, nbytes: int) -> None:
        now = self.now()
        self.traffic.record(direction, nbytes, link=self.link, at=now)
        if self.traffic_autosave and now.timestamp() - self._traffic_saved_at >= TRAFFIC_SAVE_S:
            self._save_traffic()

    def _start_cycle(self) -> None:
        """A charge cycle opens at plug-in (or at a transaction start without one)."""
        if self._cycle is not None:
            return
        now = self.now()
        cycle = f"{now:%Y%m%dT%H%M%S}-{len(self.traffic.per_cycle()) + 1}"
        while cycle in self.traffic.per_cycle():
            cycle += "x"
        self.traffic.start_cycle(cycle, now)
        self._cycle = cycle
        if self.traffic_autosave:  # a power loss mid-cycle still leaves the cycle on file
            self._save_traffic()

    def _end_cycle(self) -> None:
        if self._cycle is None:
            return
        self.traffic.end_cycle(self._cycle, self.now())
        self._cycle = None
        if self.traffic_autosave:
            self._save_traffic()

    async def _send(
        self, endpoint: OcppEndpoint, action: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        """Every CALL of the station: empty optional fields dropped, heartbeat timer reset."""
        self._last_sent = self._seconds()
        return await endpoint.call(action, compact(payload))

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.endpoint
        if endpoint is None:
            raise OcppError(ErrorCode.GenericError, "not connected")
        return await self._send(endpoint, action, payload)

    async def _call_quietly(self, action: str, payload: dict[str, Any]) -> None:
        try:
            await self.call(action, payload)
        except OcppError as exc:
            log.info("%s not delivered: %s", action, exc)

    def _load_state(self) -> dict[str, Any]:
        """The newest of state.json and the state kept in the journal (a fleet's)."""
        return newest_state(load_state(self.state_path), self.journal.saved_state())

    def _write_state(self, path: Path, data: dict[str, Any]) -> None:
        """Replace ``path`` atomically; with ``sync_state`` fsynced (a real station: power
        loss), without it only safe against the process dying (a fleet of thousands,
        where an fsync per meter sample would cost more than the whole simulation).
        With ``state_in_journal`` (a fleet) the state goes into the journal's database
        instead, in the same group commit as the MeterValues sample that carries the
        register: no file write per sample at all."""
        if self.state_in_journal:
            self.journal.save_state(data)
            return
        if self.sync_state:
            atomic_write_json(path, data)
            return
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, sort_keys=True))
        os.replace(tmp, path)

    def _compression_options(self) -> dict[str, Any]:
        """``compression=`` (or, for tuned deflate settings, ``extensions=``) for
        websockets.connect."""
        if isinstance(self.compression, ClientPerMessageDeflateFactory):
            return {"compression": None, "extensions": [self.compression]}
        return {"compression": self.compression}

    @functools.cached_property
    def certificates(self) -> CertificateStore:
        """The roots the station trusts and its own certificate (``data_dir/certs``)."""
        return CertificateStore(self.data_dir / "certs")

    def _security_profile(self) -> int:
        """SecurityProfile (1.6) / SecurityCtrlr.SecurityProfile (2.0.1)."""
        return int(self.config.security_profile)  # type: ignore[attr-defined]

    @property
    def security_profile(self) -> int:
        """The security profile the station connects with (0: none, 1: Basic auth, 2: TLS +
        Basic auth, 3: TLS with a client certificate)."""
        return self._security_profile()

    def password(self) -> str | None:
        """The HTTP Basic password: AuthorizationKey (1.6) / SecurityCtrlr.BasicAuthPassword
        (2.0.1), None when not set."""
        raise NotImplementedError

    def set_password(self, password: str) -> None:
        """Store a new HTTP Basic password (16..40 printable characters, 1.6 whitepaper
        A00.FR.304 / 2.0.1 A00.FR.205); ValueError if it is not one. Used from the next
        connection on."""
        raise NotImplementedError

    def set_security_profile(self, profile: int) -> None:
        """Raise the security profile (never lower it: 1.6 whitepaper §7.6 / A05.FR.01);
        ValueError when lower, or when its prerequisites are missing (A05.FR.02-04)."""
        raise NotImplementedError

    def security_problem(self, profile: int, url: str | None = None) -> str | None:
        """Why the station cannot connect with security ``profile`` (to ``url``), or None:
        the prerequisites of A05.FR.02-04 (1.6 whitepaper) and the transport of the
        profile (2 and 3 are TLS profiles, A00.FR.311 / A00.FR.415)."""
        if not 0 <= profile <= 3:
            return f"security profile {profile}: use 0, 1, 2 or 3"
        if url is not None and profile >= 2 and urlsplit(url).scheme != "wss":
            return f"security profile {profile} needs a wss:// CSMS URL, not {url!r}"
        if profile in (1, 2) and self.password() is None:
            return f"security profile {profile} needs a password (--password)"
        tls = profile >= 2 or (url is not None and urlsplit(url).scheme == "wss")
        if tls and self.ssl is None and not self.certificates.roots(CSMS_ROOT):
            what = f"security profile {profile}" if profile >= 2 else "a wss:// CSMS URL"
            return f"{what} needs a CSMS root certificate (--trust)"
        if profile == 3 and self.ssl is None and self.certificates.station_certificate() is None:
            return "security profile 3 needs a station certificate (--client-cert/--client-key)"
        return None

    def _connection_target(self, target: str) -> tuple[str, dict[str, str]]:
        """The URL to connect to and the HTTP headers of the Upgrade for the security
        profile: HTTP Basic with the station id and the configured password at profiles
        0-2 (A00.FR.201-204 / A00.FR.301-304; at 0 only if one is configured), none at
        profile 3, where the client certificate authenticates the station. A configured
        password replaces one in the URL; at profile 3 a password in the URL is dropped."""
        profile = self._security_profile()
        password = self.password()
        parts = urlsplit(target)
        if profile < 3 and password is None:
            return target, {}  # a password in the URL (if any) is websockets' to send
        netloc = parts.netloc.rpartition("@")[2]
        bare = urlunsplit(parts._replace(netloc=netloc))
        if profile >= 3 or password is None:
            return bare, {}
        return bare, {"Authorization": build_authorization_basic(self.station_id, password)}

    @functools.cached_property
    def security_log(self) -> SecurityLog:
        """The security log and the queue of reports to the CSMS (``security_log.json``)."""
        return SecurityLog(
            self.data_dir / SECURITY_LOG_FILE,
            sync=self.sync_state,
            ocpp_version=self.ocpp_version.value,
        )

    @functools.cached_property
    def _security_changed(self) -> asyncio.Event:
        return asyncio.Event()

    def _tls_options(self, target: str) -> dict[str, Any]:
        """``ssl=`` and the peer check for websockets.connect.

        A given ``ssl`` context is used as it is (tests, benchmarks). Otherwise a wss://
        URL gets the station's own TLS (:func:`~plugstream.pki.tls.station_context`),
        with its client certificate at security profile 3, and the server is checked
        against the CSMS roots of :attr:`certificates` and the station's clock before
        anything is sent. A ws:// URL takes no ssl argument.
        """
        if self.ssl is not None:
            return {"ssl": self.ssl}
        parts = urlsplit(target)
        if parts.scheme != "wss":
            return {}
        client = self.certificates.station_certificate() if self._security_profile() >= 3 else None
        context = station_context(*client) if client is not None else station_context()
        host = parts.hostname or ""

        def verify(transport: asyncio.BaseTransport) -> None:
            ssl_object = transport.get_extra_info("ssl_object")
            roots = self.certificates.roots(CSMS_ROOT)
            try:
                verify_server(peer_chain(ssl_object), host, roots, self._tls_now())
            except ServerRejected as exc:
                self.tls_rejected = exc
                self._on_server_rejected(exc)
                raise
            self.tls_rejected = None

        return {"ssl": context, "verify": verify}

    def _tls_now(self) -> datetime:
        """The time certificates are checked at: the network's NTP-corrected clock when the
        station has one (article: a wrong clock cannot authenticate), else its own."""
        network = self.network
        if network is not None and network.clock is not None:
            return network.clock.now()
        return self.now()

    def _authenticated(self, address: str) -> bool:
        """A connection the clock matters for: TLS, or HTTP Basic (profile >= 1)."""
        return urlsplit(address).scheme == "wss" or self._security_profile() >= 1

    def _use_network(self, network: StationNetwork) -> None:
        """Once per station: a step of the network's clock is SettingSystemTime."""
        if network.clock is not None and self._network_clock is not network.clock:
            self._network_clock = network.clock
            network.clock.on_step(self.clock_changed)

    def _on_server_rejected(self, exc: ServerRejected) -> None:
        """The CSMS's certificate failed the check: nothing was sent. InvalidCsmsCertificate
        (2.0.1 A00.FR.309 / A00.FR.413) / InvalidCentralSystemCertificate (1.6 whitepaper),
        reported once the station reaches a CSMS it trusts."""
        log.warning("%s", exc)
        self.security_event("InvalidCsmsCertificate", f"{exc.host}: {exc.reason}")

    def _on_tls_failure(self, exc: SSLError, host: str) -> None:
        """A TLS handshake that failed on the version or the suites the CSMS allows:
        InvalidTLSVersion (A00.FR.315 / A00.FR.419) or InvalidTLSCipherSuite (A00.FR.322 /
        A00.FR.426); other failures (a reset, a certificate) are not these events."""
        reason = str(getattr(exc, "reason", "") or "")
        if reason in _TLS_VERSION_REASONS:
            self.security_event("InvalidTLSVersion", f"{host}: {reason}")
        elif reason in _TLS_CIPHER_REASONS:
            self.security_event("InvalidTLSCipherSuite", f"{host}: {reason}")

    def security_event(self, kind: str, tech_info: str | None = None) -> None:
        """Record a security event (2.0.1 part 2 appendix 1 or 1.6 whitepaper §8 name, e.g.
        InvalidFirmwareSignature; either spelling) in the security log, durably, and queue
        its SecurityEventNotification (A04.FR.01/02/04): sent now when online, else after
        the next accepted boot, restarts included. Never the password in ``tech_info``
        (A01.FR.12)."""
        entry = self.security_log.record(kind, self.now(), tech_info)
        # routine events are information; the others want a person's attention
        level = logging.INFO if canonical(kind) in ROUTINE_EVENTS else logging.WARNING
        log.log(level, "security event %s: %s", entry.type, tech_info or "")
        if entry.state == "pending":
            self._security_changed.set()

    def clock_changed(self, old: datetime, new: datetime) -> None:
        """The station's clock was set from ``old`` to ``new`` (NTP, a Heartbeat's time):
        SettingSystemTime when the step is larger than ClockCtrlr.TimeAdjustmentReporting
        Threshold (2.0.1; 1.6 has no threshold: every change)."""
        step = (new - old).total_seconds()
        if abs(step) <= self._time_adjustment_threshold():
            return
        self.security_event(
            "SettingSystemTime",
            f"clock set from {format_time(old)} to {format_time(new)} ({step:+.0f} s)",
        )

    def _time_adjustment_threshold(self) -> float:
        """Steps of at most this many seconds are not security events."""
        return 0.0

    async def deliver_security_events(self) -> None:
        """Send the queued SecurityEventNotifications in order while registered; never
        returns. Apart from the journal: a CSMS without the 1.6 security extension answers
        NotImplemented, and that must not hold up a transaction message."""
        failures: dict[int, int] = {}
        while True:
            wake = self._security_changed
            wake.clear()
            endpoint = self.endpoint
            pending = self.security_log.pending() if endpoint is not None and self.accepted else []
            if endpoint is None or not pending:
                await wake.wait()
                continue
            entry = pending[0]
            try:
                payload = entry.payload()  # logged before the version was known (setup): its name
                payload["type"] = event_name(payload["type"], self.ocpp_version.value)
                await self._send(endpoint, "SecurityEventNotification", payload)
            except OcppError as exc:
                if endpoint is not self.endpoint:
                    continue  # the connection went: sent again after the next boot
                if exc.code in (ErrorCode.NotImplemented, ErrorCode.NotSupported):
                    log.info("the CSMS does not take SecurityEventNotification: kept in the log")
                    self.security_log.unsupported(entry.seq)
                    continue
                failures[entry.seq] = failures.get(entry.seq, 0) + 1
                if failures[entry.seq] >= SECURITY_ATTEMPTS:
                    log.warning("security event %d not accepted by the CSMS: %s", entry.seq, exc)
                    self.security_log.unsupported(entry.seq)
                    continue
                # again in a while, or at once on a new connection (this one may be going)
                self._security_changed.clear()
                await _wait_event(self._security_changed, self.clock, SECURITY_RETRY_S)
                continue
            self.security_log.delivered(entry.seq)

    def _ping_interval(self, interval: int) -> float | None:
        """The WebSocket ping interval in wall seconds (the clock may run scaled); 0 = off."""
        return self.clock.real_seconds(interval) if interval > 0 else None

    async def _heartbeats(self) -> None:
        """Heartbeat after HeartbeatInterval without any other CALL (G02.FR.05), and at
        least once a day however busy the link is (G02.FR.07)."""
        while True:
            self._refresh_data_saving()
            interval = self.effective_heartbeat_interval()
            if interval <= 0:  # heartbeats off: look again now and then
                await self.clock.sleep(DEFAULT_BOOT_RETRY_S)
                continue
            now = self._seconds()
            due = min(self._last_sent + interval, self._last_heartbeat + MAX_HEARTBEAT_GAP_S)
            if now >= due:
                self._last_heartbeat = now
                await self._call_quietly("Heartbeat", {})
                continue
            await self.clock.sleep(due - now)

    # -- links: data saving on a metered link (LTE) ------------------------------------

    def _link_policy(self) -> LinkPolicy | None:
        network = self.network
        return None if network is None else network.policy

    def effective_heartbeat_interval(self) -> int:
        """The CSMS's heartbeat interval, lengthened to the active link's floor while it
        saves data (LTE: hourly; the link's :class:`LinkPolicy`); 0 (off) stays off."""
        policy = self._link_policy()
        interval = self.heartbeat_interval
        return interval if policy is None or interval <= 0 else policy.heartbeat(interval)

    def _meter_interval(self, configured: int) -> int:
        """The configured meter-values interval, lengthened likewise (LTE: 5 min)."""
        policy = self._link_policy()
        return configured if policy is None else policy.meter(configured)

    def _configured_meter_interval(self) -> int:
        """The CSMS's sampled meter-values interval (1.6 MeterValueSampleInterval, 2.0.1
        SampledDataCtrlr.TxUpdatedInterval)."""
        raise NotImplementedError

    def _refresh_data_saving(self) -> None:
        """Apply the active link's policy to the running transaction's meter schedule and
        show it (log line, ``network.json``) when it changed. Optional uploads: the
        station has none (no diagnostics or log upload; firmware updates are not
        optional), so there is nothing to defer."""
        network = self.network
        if network is None or network.manager is None:
            return
        policy = self._link_policy()
        configured = self._configured_meter_interval()
        meter = self._meter_interval(configured)
        tx = getattr(self, "transaction", None)
        if tx is not None and tx.schedule.sample_interval != meter:
            tx.schedule.configure(sample_interval=meter, now=self.now())
            self.wake()
        saving: dict[str, Any] | None = None
        if network.manager.data_saving and policy is not None:
            saving = {
                "link": network.active_link,
                "heartbeat_interval_s": self.effective_heartbeat_interval(),
                "csms_heartbeat_interval_s": self.heartbeat_interval,
                "meter_interval_s": meter,
                "csms_meter_interval_s": configured,
                "optional_uploads": policy.optional_uploads,
                "deferred": [],  # the station has no optional uploads to defer
            }
        if saving != self._data_saving:
            if saving is not None:
                log.warning(
                    "data saving on %s: heartbeat every %d s (CSMS: %d s), meter values every "
                    "%d s (configured: %d s), no optional uploads",
                    saving["link"],
                    saving["heartbeat_interval_s"],
                    self.heartbeat_interval,
                    meter,
                    configured,
                )
            elif self._data_saving is not None:
                log.warning(
                    "data saving off on %s: heartbeat every %d s, meter values every %d s "
                    "(the CSMS's values)",
                    network.active_link,
                    self.heartbeat_interval,
                    meter,
                )
            self._data_saving = saving
        network.data_saving = saving
        network.offline_reason = self.offline_reason
        network.write_status()

    def _on_link_change(self, link: Link, reason: str) -> None:
        """The link manager moved to ``link``: count bytes there, apply its data policy,
        and close a connection open over another link at once -- the old link may be
        dead and TCP would take minutes to notice -- so :meth:`run` reconnects now."""
        self.link = link
        self._refresh_data_saving()
        ws = self._ws
        if ws is not None and self._ws_link is not None and self._ws_link != link:
            log.warning("closing the OCPP connection over %s: %s", self._ws_link, reason)
            self._link_switched = True
            transport = getattr(ws, "transport", None)
            if transport is not None:
                transport.abort()

    async def _pause(self, delay: float) -> None:
        """The back-off pause between attempts; what the last attempt waited for -- a
        link, a DHCP lease, a synchronized clock (``network.changed``) -- ends it early."""
        network = self.network
        if network is None:
            await self.clock.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):  # cleared when the attempt began
            async with self.clock.timeout(delay):
                await network.changed.wait()

    def _set_offline(self, reason: str | None) -> None:
        if self.network is not None and reason is not None and reason != self.offline_reason:
            log.warning("offline: %s", reason)  # once per change: what a technician reads
        self.offline_reason = reason
        if self.network is not None:
            self.network.offline_reason = reason
            self.network.write_status()

    def _charging_wake(self) -> float | None:
        """Seconds until the charging car needs a look: every ``tick_interval``, or
        (``tick_interval`` None, a fleet) when it may be full at the earliest -- the
        energy it still takes at today's power; its curve only tapers, so never late."""
        if not self.hardware.charging:
            return None
        if self.tick_interval is not None:
            return self.tick_interval
        full = self.hardware.seconds_to_ev_full()
        return None if full is None else max(MIN_CHARGING_WAKE_S, full)

    async def tick_loop(self) -> None:
        """Tick when something is due or happened; an idle station does not wake.

        Only this loop waits on ``_tick_event``, so a timer may set it: cheaper than a
        timeout that cancels the wait (a fleet's stations tick thousands of times a minute).
        """
        while True:
            try:
                self.tick()
                delay = self.next_tick_in()
            except Exception:
                log.exception("station tick failed")
                delay = self.tick_interval or DEFAULT_TICK_S
            self._tick_event.clear()
            if delay is None:
                await self._tick_event.wait()
                continue
            timer = self.clock.call_later(delay, self._tick_event.set)
            try:
                await self._tick_event.wait()
            finally:
                timer.cancel()

    def _handlers(self) -> Handlers:
        """The handlers of the CSMS's CALLs on a new connection."""
        raise NotImplementedError

    async def _session(self, endpoint: OcppEndpoint) -> None:
        """What the station does on a new connection: boot if needed, status, heartbeats."""
        raise NotImplementedError

    def _ping_setting(self) -> int:
        """WebSocketPingInterval, s of station time."""
        raise NotImplementedError

    def _retry_rules(self) -> tuple[int, int]:
        """(attempts, retry interval) of a transaction message that failed to process."""
        raise NotImplementedError

    def _on_delivered(self, entry: Entry, result: dict[str, Any]) -> None:
        """A journal entry was answered with ``result``."""
        raise NotImplementedError

    # -- the journal and the connection, the same in both versions ---------------------

    async def deliver_journal(self) -> None:
        """Send journal entries in order while registered; never returns."""
        while True:
            self._changed.clear()
            endpoint = self.endpoint
            if endpoint is None or not self.accepted:
                await self._wait_change(None)
                continue
            now = self._seconds()
            entry = self.journal.head()  # next_due(now), in one query
            if entry is None or entry.next_attempt_at > now:
                await self._wait_change(None if entry is None else entry.next_attempt_at - now)
                continue
            self.journal.flush()  # durable before it is sent (a fleet's group commit)
            try:
                result = await self._send(endpoint, entry.action, entry.payload)
            except OcppError as exc:
                if endpoint is not self.endpoint:
                    continue  # the connection was lost: not a failure, resend after reconnect
                log.warning("%s (journal %d) failed: %s", entry.action, entry.seq, exc)
                # a CALLERROR, or no answer on a live connection: a failure to process
                attempts_max, retry_interval = self._retry_rules()
                self.journal.failed_attempt(
                    entry.seq,
                    self._seconds(),
                    attempts_max=attempts_max,
                    retry_interval=retry_interval,
                )
                continue
            self.journal.acknowledge(entry.seq, result)
            self._on_delivered(entry, result)

    async def run(self, url: str) -> None:
        """Connect to ``url`` + ``/`` + station id, serve, reconnect forever (cancel to stop).

        ValueError at once when the security profile cannot be used with ``url`` (2 and 3
        need wss://). The first run of a Station object is the device's start-up: a
        StartupOfTheDevice security event. Each connection takes the profile and password
        configured at that moment (a changed password is used on the next one)."""
        target = url.rstrip("/") + "/" + self.station_id
        if urlsplit(target).scheme == "ws" and self._security_profile() >= 2:
            raise ValueError(
                f"security profile {self._security_profile()} needs a wss:// CSMS URL, not {url!r}"
            )
        self._target = target
        if not self.__dict__.get("_started_up"):
            self.__dict__["_started_up"] = True
            self.security_event("StartupOfTheDevice", f"firmware {self.firmware.version}")
        loops = [
            asyncio.get_running_loop().create_task(self.tick_loop()),
            asyncio.get_running_loop().create_task(self.deliver_journal()),
            asyncio.get_running_loop().create_task(self.deliver_security_events()),
            asyncio.get_running_loop().create_task(self.firmware.run()),
        ]
        network = self.network
        if network is not None:
            self._use_network(network)
            loops.append(asyncio.get_running_loop().create_task(network.keep_synchronized()))
            loops.append(asyncio.get_running_loop().create_task(network.keep_dhcp()))
            if network.manager is not None:
                network.link_listeners.append(self._on_link_change)
                loops.append(
                    asyncio.get_running_loop().create_task(
                        network.watch_links(target, lambda: self._ws_link)
                    )
                )
            network.write_status()
        try:
            while True:
                if not self.firmware.network:  # this firmware cannot open connections
                    await self.clock.sleep(self.backoff.next_delay())
                    continue
                address, headers = self._connection_target(target)
                tls = self._tls_options(address)
                verify = tls.pop("verify", None)
                route: dict[str, Any] = {}
                link: Link | None = None
                self._link_switched = False
                if network is not None:
                    network.changed.clear()
                    link = network.active_link
                    try:
                        route = await network.route(
                            address, authenticated=self._authenticated(address)
                        )
                    except NetworkNotReady as exc:
                        self._set_offline(str(exc))
                        log.info("not connecting to %s: %s", target, exc)
                        await self._pause(self.backoff.next_delay())
                        continue
                    if link is not None and link != network.active_link:
                        sock = route.get("sock")
                        if sock is not None:
                            sock.close()
                        continue  # the link changed while connecting: use the new one
                if link is not None:
                    self.link = link
                    self._ws_link = link
                try:
                    async with websockets.connect(
                        address,
                        subprotocols=[Subprotocol(self.ocpp_version.subprotocol)],
                        additional_headers=headers or None,
                        open_timeout=self.call_timeout,
                        ping_interval=self._ping_interval(self._ping_setting()),
                        **self._compression_options(),
                        create_connection=counting_factory(self._count, verify),
                        **route,
                        **tls,
                    ) as ws:
                        self.backoff.reset()
                        self._set_offline(None)
                        if link is not None and network is not None:
                            if link != network.active_link:  # it changed while connecting
                                self._link_switched = True
                                ws.transport.abort()  # no closing handshake on a dead link
                                continue
                            log.warning("connected to %s over %s", target, link)
                        await self.serve(ws)
                except InvalidStatus as exc:
                    status = exc.response.status_code
                    log.info("connection to %s refused: HTTP %d", target, status)
                    self._set_offline(f"refused by the CSMS: HTTP {status}")
                    if status == 401:  # the CSMS rejected the credentials
                        self.security_event(
                            "FailedToAuthenticationAtCsms",
                            f"HTTP 401 from {urlsplit(target).hostname} at security profile "
                            f"{self._security_profile()}",
                        )
                except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                    log.info("connection to %s failed: %s", target, exc)
                    self._set_offline(f"connection failed: {_endpoint(address, route)}: {exc}")
                    if isinstance(exc, SSLError):
                        self._on_tls_failure(exc, urlsplit(target).hostname or "")
                finally:
                    self._ws_link = None
                if self._link_switched:
                    self._set_offline(f"moving to {self.link}")
                    continue  # closed for a better or working link: no back-off
                await self._pause(self.backoff.next_delay())
        finally:
            if network is not None and self._on_link_change in network.link_listeners:
                network.link_listeners.remove(self._on_link_change)
            if network is not None and network.clock is not None:
                # the clock (and network) may serve the next station (setup re-pointed)
                network.clock.off_step(self.clock_changed)
                self._network_clock = None
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def serve(self, ws: Any) -> None:
        """Run one connection until it closes."""
        endpoint = OcppEndpoint(
            ws,
            self.ocpp_version,
            self._handlers(),
            call_timeout=self.call_timeout,
            observer=self.observer,
        )
        self._ws = ws
        self.endpoint = endpoint
        self.accepted = False
        session = asyncio.get_running_loop().create_task(self._session(endpoint))
        try:
            await endpoint.run()
        finally:
            # in the same step as run()'s end: the failed calls see that the connection went
            self.endpoint = None
            self.accepted = False
            self._ws = None
            self.wake()
            session.cancel()
            await asyncio.gather(session, return_exceptions=True)

    async def disconnect(self) -> None:
        """Close the connection (run() reconnects): after a Reset or a security change."""
        ws = self._ws
        if ws is not None:
            await ws.close()

    def request_boot(self) -> None:
        """A BootNotification is due on the next connection, as after a Reset."""
        self._boot_needed = True

    # the names before issue 13, until every caller uses the public ones
    _call = call
    _spawn = spawn
    _disconnect = disconnect
    _wake = wake

    def _save_state(self, *, clean: bool = False) -> None:
        self.save_state(clean=clean)


class Station16(StationRuntime):
    """One PlugStream charge point speaking OCPP 1.6J, with one connector.

    ``clock`` (default: one built from ``now``, else the system clock) times everything;
    ``journal`` may be a shared-database journal (default: ``journal.sqlite`` in
    ``data_dir``); ``traffic`` counts the connection's bytes on ``link``, saved to
    ``traffic.json`` at each cycle's start and end and every 15 minutes unless
    ``traffic_autosave`` is off (a fleet reads ``traffic`` itself); ``ssl`` and
    ``compression`` go to ``websockets.connect``.
    """

    ocpp_version = OcppVersion.V16

    def __init__(
        self,
        station_id: str,
        model: Model,
        data_dir: Path | str,
        now: Callable[[], datetime] | None = None,
        *,
        clock: Clock | None = None,
        journal: Journal | None = None,
        rng: random.Random | None = None,
        config_defaults: Mapping[str, str] | None = None,
        call_timeout: float = 30.0,
        backoff: ReconnectBackoff | None = None,
        tick_interval: float | None = DEFAULT_TICK_S,
        serial_number: str | None = None,
        traffic_autosave: bool = True,
        link: Link = "ethernet",
        ssl: SSLContext | None = None,
        compression: Compression = "deflate",
        sync_state: bool = True,
        state_in_journal: bool = False,
    ) -> None:
        self.station_id = station_id
        self.model = model
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if clock is None:
            clock = SystemClock() if now is None else CallableClock(now)
        self.clock: Clock = clock
        self.now: Callable[[], datetime] = clock.now
        self.rng = rng if rng is not None else random.Random()
        self.call_timeout = call_timeout
        self.backoff = backoff if backoff is not None else ReconnectBackoff(5.0, 5.0, 5, self.rng)
        self.tick_interval = tick_interval
        self.serial_number = serial_number
        self.link: Link = link
        self.traffic_autosave = traffic_autosave
        self.ssl = ssl  # for wss:// with a private CA or a client certificate
        self.compression = compression  # permessage-deflate offered; None: not
        self.sync_state = sync_state  # fsync state.json: survives an OS crash, not only kill -9
        self.state_in_journal = state_in_journal  # state in the journal's database, no file

        self.config = Config16.load(
            self.data_dir / Config16.FILENAME, defaults=config_defaults, extra_keys=FIRMWARE_KEYS16
        )
        self.config.add_listener(self._on_config_change)
        self.journal = journal if journal is not None else Journal(self.data_dir / "journal.sqlite")
        self.state_path = self.data_dir / STATE_FILE
        state = self._load_state()
        self.hardware = ChargePointHardware(
            model, self.rng, now=self._seconds(), energy_wh=restored_energy(state)
        )
        operative = state.get("pending_operative")
        if operative is None:
            operative = state.get("operative", True)
        self.connector = Connector(CONNECTOR_ID, operative=bool(operative))
        self.local_list = LocalAuthList.load(self.data_dir / "local_list.json")
        self.cache = AuthCache.load(self.data_dir / "auth_cache.json")
        self.authorizer = Authorizer(self.local_list, self.cache, self._auth_config())
        profile_options: dict[str, Any] = {
            "max_profiles": self.config.max_charging_profiles_installed,
            "max_stack_level": self.config.charge_profile_max_stack_level,
            "max_current": model.max_current_a,
        }
        self.profiles = ChargingProfiles((CONNECTOR_ID,), **profile_options)
        if isinstance(state.get("profiles"), str):
            try:
                self.profiles = ChargingProfiles.from_json(
                    state["profiles"], (CONNECTOR_ID,), **profile_options
                )
            except (ValueError, KeyError, TypeError):
                log.warning("persisted charging profiles unreadable: dropped")

        self.endpoint: OcppEndpoint | None = None
        self.accepted = False  # BootNotification accepted on the current connection
        self.registration: str | None = None  # the last BootNotification status
        self.heartbeat_interval = self.config.heartbeat_interval
        self.transaction: _Transaction | None = None
        self._changed = asyncio.Event()  # the journal's and the session's wake-up
        self._tick_event = asyncio.Event()  # the tick loop's wake-up
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ws: Any = None
        self._boot_needed = True  # a process start: BootNotification on the first connection
        self._accepted_boot: dict[str, Any] | None = None
        self._reported: dict[int, str] = {}  # connectorId -> status last sent
        self._last_sent = self._seconds()  # any CALL to the Central System: resets heartbeat
        self._last_heartbeat = self._seconds()
        self._preparing_since: datetime | None = None  # ConnectionTimeOut
        self._cycle: str | None = None  # the open charge cycle of self.traffic
        # in and outside transactions; the transaction's own schedule is sampled only
        self.aligned = ClockAligned(self.config.clock_aligned_data_interval, self.now())

        self.traffic = self._load_traffic()
        self._traffic_saved_at = self._seconds()
        self.firmware = FirmwareUpdater.for_station(self, FIRMWARE_VERSION)
        self._recover(state)

    # -- state -----------------------------------------------------------------------

    def _configured_meter_interval(self) -> int:
        return self.config.meter_value_sample_interval

    def _auth_config(self) -> AuthConfig:
        c = self.config
        return AuthConfig(
            local_authorize_offline=c.local_authorize_offline,
            local_pre_authorize=c.local_pre_authorize,
            cache_enabled=c.authorization_cache_enabled,
            local_list_enabled=c.local_auth_list_enabled,
            allow_offline_tx_for_unknown_id=c.allow_offline_tx_for_unknown_id,
        )

    def _on_config_change(self, key: str, value: str) -> None:
        self.authorizer.config = self._auth_config()
        if key in _SECURITY_KEYS:
            # A01.FR.11 (2.0.1; the whitepaper's A01): logged, never with the value (A01.FR.12)
            self.security_event("ReconfigurationOfSecurityParameters", f"{key} changed")
        if key == "MeterValueSampleInterval" and self.transaction is not None:
            self.transaction.schedule.configure(
                sample_interval=self._meter_interval(int(value)), now=self.now()
            )
        if key == "HeartbeatInterval":
            self.heartbeat_interval = int(value)
        if key == "ClockAlignedDataInterval":
            self.aligned.configure(int(value), self.now())
        self.wake()

    def close(self) -> None:
        """Save the state (a clean stop) and release the files; call after :meth:`run`."""
        for task in list(self._tasks):
            task.cancel()
        self.save_state(clean=True)
        if self.traffic_autosave:
            self._save_traffic()
        self.journal.close()

    # -- what survives a restart ---------------------------------------------------

    def save_state(self, *, clean: bool = False) -> None:
        """Persist the register, the transaction, profiles and availability atomically."""
        self.hardware.advance(self._seconds())
        tx = self.transaction
        self._write_state(
            self.state_path,
            {
                "energy_wh": str(self.hardware.energy_wh),
                "saved_at": self.now().isoformat(),
                "clean": clean,
                "operative": self.connector.operative,
                "pending_operative": self.connector.pending_operative,
                "profiles": self.profiles.to_json(),
                "transaction": None if tx is None else tx.to_json(),
            },
        )

    def _recover(self, state: Mapping[str, Any]) -> None:
        """End the transaction that was running when the process stopped (1.6: the
        StopTransaction reason is PowerLoss, or Reboot after a clean stop)."""
        saved = state.get("transaction")
        if isinstance(saved, dict):
            reason = "Reboot" if state.get("clean") else "PowerLoss"
            transaction_id: Any = saved.get("transaction_id")
            if transaction_id is None:
                transaction_id = {
                    REF_KEY: int(saved["start_seq"]),
                    "key": "transactionId",
                    "default": -1,
                }
            payload = {
                "transactionId": transaction_id,
                "idTag": saved["id_tag"],
                "meterStop": int(self.hardware.energy_wh),
                "timestamp": format_time(saved_at(state, self.now())),
                "reason": reason,
            }
            try:
                self.journal.append("StopTransaction", payload)
            except UnknownEntryError:  # the journal lost its StartTransaction: unknown id
                payload["transactionId"] = -1
                self.journal.append("StopTransaction", payload)
            log.info("transaction of %s ended on restart: %s", saved["id_tag"], reason)
            self.profiles.end_transaction(CONNECTOR_ID)
        for cycle in self.traffic.open_cycles:  # the car is gone as far as we know
            self.traffic.end_cycle(cycle, self.now())
        self.save_state()

    # -- messages that are not journalled ---------------------------------------------

    def _emit(self, actions: list[Action]) -> None:
        """Send a StatusNotification for each status change; while offline the change is
        kept in the connector and its current status is sent on reconnect."""
        for action in actions:
            if not isinstance(action, StatusChanged):
                continue
            if self.online:
                self._reported[action.connector_id] = action.status_16.value
                self.spawn(self._call_quietly("StatusNotification", _status_payload(action)))
            else:  # changed while offline: the current status goes out on reconnect
                self._reported.pop(action.connector_id, None)
        if actions:
            self.wake()

    def _status_payloads(self) -> list[dict[str, Any]]:
        now = self.now()
        zero = {
            "connectorId": 0,
            "errorCode": "NoError",
            "status": "Available",
            "timestamp": format_time(now),
        }
        return [zero, _status_payload(self.connector.current_status(now))]

    def _measurements(self) -> Measurements:
        """The meter as 1.6 sends it: the register in whole Wh (rounded down), the
        resolution of meterStart and meterStop, so that no MeterValues sample reads above
        a later meterStop (nor above the meterStop sent after a power loss)."""
        measurements = self.hardware.measurements()
        return replace(measurements, energy_wh=Decimal(int(measurements.energy_wh)))

    def _meter_value(self, context: str) -> dict[str, Any] | None:
        self.hardware.advance(self._seconds())
        return build_meter_value_16(
            self._measurements(),
            self.config.meter_values_sampled_data,
            context,
            self.now(),
        )

    # -- the user and the car ----------------------------------------------------------

    def plug_in(self, ev: Ev) -> None:
        """A car is plugged in; a session starts if an idTag is authorized already."""
        self.hardware.advance(self._seconds())
        if not self.hardware.plug_in(ev):
            raise InvalidTransition("a cable is plugged in already")
        self._start_cycle()
        self._emit(self.connector.plug_in(self.now()))
        self._maybe_start()
        self.wake()

    def unplug(self) -> None:
        """The car is unplugged: an ongoing transaction stops (EVDisconnected)."""
        now = self.now()
        if self.transaction is not None:
            self._journal_stop("EVDisconnected")
        self.hardware.open_contactor()
        self.hardware.unlock_cable()
        self.hardware.unplug()
        self._emit(self.connector.unplug(now))
        self._end_cycle()
        self.wake()

    async def swipe(self, id_tag: str) -> bool:
        """A card is presented: starts (or, same idTag, stops) a session; True if accepted."""
        tx = self.transaction
        if tx is not None:
            if tx.id_tag.casefold() != id_tag.casefold():
                return False
            self.stop_transaction("Local")
            return True
        if not await self._authorize(id_tag):
            return False
        return self._accept_id(id_tag)

    async def _authorize(self, id_tag: str) -> bool:
        key = TokenKey.id_tag(id_tag)
        decision = self.authorizer.authorize(key, online=self.online, now=self.now())
        if not decision.ask_csms:
            return decision.accept_locally
        try:
            result = await self.call("Authorize", {"idTag": id_tag})
        except OcppError:  # the connection went away meanwhile: decide offline
            decision = self.authorizer.authorize(key, online=False, now=self.now())
            return decision.accept_locally
        info = result["idTagInfo"]
        self.authorizer.on_csms_info(key, info, now=self.now())
        return bool(info.get("status") == "Accepted")

    def _accept_id(self, id_tag: str) -> bool:
        try:
            self._emit(self.connector.authorized(id_tag, self.now()))
        except InvalidTransition:
            return False
        self._maybe_start()
        return True

    def _maybe_start(self) -> None:
        id_tag = self.connector.id_tag
        if self.transaction is not None or id_tag is None or not self.hardware.ev:
            return
        if not self.connector.may_start_transaction(id_tag):
            return
        self.start_transaction(id_tag)

    def start_transaction(self, id_tag: str) -> None:
        """Lock, close the contactor and journal StartTransaction."""
        now = self.now()
        self.hardware.advance(now.timestamp())
        self.hardware.lock_cable()
        self.hardware.close_contactor()
        measurements = self._measurements()
        meter_start = int(measurements.energy_wh)
        seq = self.journal.append(
            "StartTransaction",
            {
                "connectorId": CONNECTOR_ID,
                "idTag": id_tag,
                "meterStart": meter_start,
                "timestamp": format_time(now),
            },
        )
        c = self.config
        data = TransactionData(
            sampled_measurands=c.stop_txn_sampled_data,
            sampled_interval=c.meter_value_sample_interval,
            aligned_measurands=c.stop_txn_aligned_data,
            aligned_interval=c.clock_aligned_data_interval,
        )
        data.begin(now, measurements)
        schedule = MeterSchedule(self._meter_interval(c.meter_value_sample_interval), 0, now)
        schedule.start_transaction(now)
        self.transaction = _Transaction(id_tag, seq, meter_start, now, data, schedule)
        self._start_cycle()
        self.save_state()
        self._emit(
            self.connector.start_transaction(
                now,
                ev_ready=self._ev_ready(),
                evse_ready=self.hardware.offered_current_a > 0,
            )
        )
        self.wake()

    def stop_transaction(self, reason: str) -> None:
        """Stop the ongoing transaction (the cable stays in: Finishing)."""
        if self.transaction is None:
            return
        self._journal_stop(reason)
        self._emit(self.connector.stop_transaction(self.now()))

    def fault(self, code: ChargePointErrorCode) -> None:
        """A fault trips the contactor: an ongoing transaction stops (Other); Faulted."""
        if self.transaction is not None:
            self.stop_transaction("Other")
        self.hardware.raise_fault(code.value)
        self._emit(self.connector.fault(code, self.now()))

    def clear_fault(self) -> None:
        """The fault is resolved: the connector returns to what the facts call for."""
        actions = self.connector.clear_fault(self.now())
        self.hardware.clear_fault()
        self._emit(actions)

    def _journal_stop(self, reason: str) -> None:
        tx = self.transaction
        assert tx is not None
        now = self.now()
        self.hardware.advance(now.timestamp())
        measurements = self._measurements()
        tx.data.end(now, measurements)
        self.hardware.open_contactor()
        self.hardware.unlock_cable()
        payload: dict[str, Any] = {
            "transactionId": tx.reference(),
            "idTag": tx.id_tag,
            "meterStop": int(measurements.energy_wh),
            "timestamp": format_time(now),
            "reason": reason,
        }
        transaction_data = tx.data.meter_values_16()
        if transaction_data:
            payload["transactionData"] = transaction_data
        self.journal.append("StopTransaction", payload)
        self.transaction = None
        self.profiles.end_transaction(CONNECTOR_ID)
        self.hardware.set_current_limit(None)
        self.save_state()
        self.wake()

    def _ev_ready(self) -> bool:
        ev = self.hardware.ev
        return ev is not None and ev.requested_current() > 0

    # -- time ---------------------------------------------------------------------------

    def tick(self) -> None:
        """Integrate energy, apply smart charging, journal (or, outside a transaction,
        send) the meter values that are due."""
        now = self.now()
        self.hardware.advance(now.timestamp())
        tx = self.transaction
        limit = self.profiles.limit_at(
            CONNECTOR_ID,
            now,
            transaction_start=None if tx is None else tx.started_at,
            voltage=self.model.nominal_voltage_v,
            phases=self.model.phases,
        )
        self.hardware.set_current_limit(limit)
        self._emit(self.connector.tick(now))
        self._connection_timeout(now)
        slot = self.aligned.due(now)
        if tx is None:
            if slot is not None:
                self._send_aligned(slot)
            return
        measurements = self._measurements()
        tx.data.tick(now, measurements)
        readings: list[tuple[str, list[str], datetime]] = [
            (kind.value, self.config.meter_values_sampled_data, now)
            for kind in tx.schedule.due(now)
        ]
        if slot is not None:
            readings.insert(
                0, (ReadingContext.SAMPLE_CLOCK.value, self.config.meter_values_aligned_data, slot)
            )
        journalled = False
        for context, measurands, at in readings:
            value = build_meter_value_16(measurements, measurands, context, at)
            if value is not None:
                self.journal.append(
                    "MeterValues",
                    {
                        "connectorId": CONNECTOR_ID,
                        "transactionId": tx.reference(),
                        "meterValue": [value],
                    },
                )
                journalled = True
        if journalled:
            self.save_state()
            self._changed.set()
        evse_ready = self.hardware.offered_current_a > 0
        actions = (
            self.connector.evse_resumed(now) if evse_ready else self.connector.evse_suspended(now)
        )
        actions += (
            self.connector.ev_resumed(now) if self._ev_ready() else self.connector.ev_suspended(now)
        )
        self._emit(actions)

    def _send_aligned(self, slot: datetime) -> None:
        """Clock-aligned MeterValues outside a transaction: no transactionId, not
        transaction-related (§3.7), so sent at once when online, not queued offline."""
        value = build_meter_value_16(
            self._measurements(),
            self.config.meter_values_aligned_data,
            ReadingContext.SAMPLE_CLOCK.value,
            slot,
        )
        if value is None:
            return
        if not self.online:
            log.debug("clock-aligned MeterValues of %s dropped: offline", slot)
            return
        payload = {"connectorId": CONNECTOR_ID, "meterValue": [value]}
        self.spawn(self._call_quietly("MeterValues", payload))

    def _connection_timeout(self, now: datetime) -> None:
        """ConnectionTimeOut (1.6 §4.9 B1/B6): Preparing without a transaction for that
        long ends the usage; an authorized idTag without a cable is forgotten."""
        if (
            self.transaction is not None
            or self.connector.status_16 is not ChargePointStatus.PREPARING
        ):
            self._preparing_since = None
            return
        if self._preparing_since is None:
            self._preparing_since = now
            return
        if now - self._preparing_since >= timedelta(seconds=self.config.connection_timeout):
            self._preparing_since = None
            self._emit(self.connector.connection_timeout(now))

    def next_tick_in(self) -> float | None:
        """Seconds (station time) until something is due, None when only an event can
        change anything: no transaction, no reservation, nothing waiting for a timeout,
        no clock-aligned interval (an idle station then wakes only at its grid points)."""
        now = self.now()
        due: list[datetime] = []
        if self.aligned.next_due is not None:
            due.append(self.aligned.next_due)
        reservation = self.connector.reservation
        if reservation is not None:
            due.append(reservation.expiry)
        if self._preparing_since is not None:
            due.append(self._preparing_since + timedelta(seconds=self.config.connection_timeout))
        elif self.connector.status_16 is ChargePointStatus.PREPARING and self.transaction is None:
            due.append(now)  # start the ConnectionTimeOut timer
        tx = self.transaction
        if tx is not None:
            for when in (tx.schedule.next_due, tx.data.next_due):
                if when is not None:
                    due.append(when)
            change = self.profiles.next_change(CONNECTOR_ID, now, transaction_start=tx.started_at)
            if change is not None:
                due.append(change)
            wake = self._charging_wake()
            if wake is not None:  # follow the EV's curve (taper, full)
                due.append(now + timedelta(seconds=wake))
        if not due:
            return None
        return max(0.0, (min(due) - now).total_seconds())

    # -- security profile and password ---------------------------------------------------

    def password(self) -> str | None:
        return self.config.authorization_key

    def set_password(self, password: str) -> None:
        if password == self.password():
            return
        if self.config.change("AuthorizationKey", password) != "Accepted":
            raise ValueError(
                "the password must be 16 to 40 printable ASCII characters "
                "(1.6 security whitepaper, AuthorizationKey)"
            )

    def set_security_profile(self, profile: int) -> None:
        current = self._security_profile()
        if profile == current:
            return
        if profile < current:
            raise ValueError(
                f"the security profile can only be raised: it is {current}, not {profile}"
            )
        problem = self.security_problem(profile, self._target)
        if problem is not None:
            raise ValueError(problem)
        self.config.set_internal("SecurityProfile", str(profile))
        self._on_config_change("SecurityProfile", str(profile))

    # -- the journal ---------------------------------------------------------------------

    def _handlers(self) -> Handlers:
        return StationHandlers16(self)

    def _ping_setting(self) -> int:
        return self.config.websocket_ping_interval

    def _retry_rules(self) -> tuple[int, int]:
        return (
            self.config.transaction_message_attempts,
            self.config.transaction_message_retry_interval,
        )

    def _on_delivered(self, entry: Entry, result: dict[str, Any]) -> None:
        self._delivered(entry.action, entry.seq, entry.payload, result)

    def _delivered(
        self, action: str, seq: int, payload: dict[str, Any], result: dict[str, Any]
    ) -> None:
        info = result.get("idTagInfo")
        id_tag = payload.get("idTag")
        if isinstance(info, dict) and isinstance(id_tag, str):
            self.authorizer.on_csms_info(TokenKey.id_tag(id_tag), info, now=self.now())
        tx = self.transaction
        if action == "StartTransaction" and tx is not None and tx.start_seq == seq:
            tx.transaction_id = int(result["transactionId"])
            self.save_state()
            status = info.get("status") if isinstance(info, dict) else "Accepted"
            if status != "Accepted" and self.config.stop_transaction_on_invalid_id:
                self.stop_transaction("DeAuthorized")

    # -- the connection ------------------------------------------------------------------

    def boot_needed(self) -> bool:
        """BootNotification on this connection? Yes after a (re)start or a Reset, when
        the boot data changed, or while not yet Accepted; a plain reconnect: no."""
        return self._boot_needed or self._accepted_boot != self._boot_payload()

    async def _session(self, endpoint: OcppEndpoint) -> None:
        booted = self.boot_needed()
        if booted:
            await self._boot(endpoint)
        else:
            self.accepted = True
            self.wake()
        for payload in self._status_payloads():
            # after a boot every connector; after a reconnect those that changed
            if booted or self._reported.get(payload["connectorId"]) != payload["status"]:
                self._reported[payload["connectorId"]] = payload["status"]
                await self._call_quietly("StatusNotification", payload)
        if self._security_profile() >= 3:
            self.spawn(renew_if_expiring(self))  # A03: renew a certificate near its expiry
        await self._heartbeats()

    async def _boot(self, endpoint: OcppEndpoint) -> None:
        while True:
            payload = self._boot_payload()
            try:
                result = await self._send(endpoint, "BootNotification", payload)
            except OcppError as exc:
                log.info("BootNotification failed: %s", exc)
                await self.clock.sleep(DEFAULT_BOOT_RETRY_S)
                continue
            self.registration = str(result["status"])
            interval = int(result["interval"])
            if self.registration == "Accepted":
                if interval > 0:
                    self.heartbeat_interval = interval
                    self.config.set_internal("HeartbeatInterval", str(interval))
                self._boot_needed = False
                self._accepted_boot = payload
                self._last_heartbeat = self._seconds()  # the answer carried the time
                self.accepted = True
                self.firmware.on_boot_accepted()  # a new firmware proved itself
                self.wake()
                return
            self._boot_needed = True
            await self.clock.sleep(interval if interval > 0 else DEFAULT_BOOT_RETRY_S)

    def _boot_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "chargePointVendor": self.model.vendor,
            "chargePointModel": self.model.name,
            "firmwareVersion": self.firmware.version,
        }
        if self.serial_number is not None:
            payload["chargePointSerialNumber"] = self.serial_number
        return payload

    async def send_triggered(self, message: str) -> None:
        """Send the message a TriggerMessage asked for."""
        if message == "BootNotification":
            try:
                result = await self.call("BootNotification", self._boot_payload())
            except OcppError:
                return
            if result.get("status") == "Accepted" and int(result["interval"]) > 0:
                self.heartbeat_interval = int(result["interval"])
        elif message == "Heartbeat":
            await self._call_quietly("Heartbeat", {})
        elif message == "StatusNotification":
            for payload in self._status_payloads():
                await self._call_quietly("StatusNotification", payload)
        elif message == "MeterValues":
            value = self._meter_value(ReadingContext.TRIGGER.value)
            if value is None:
                return
            meter: dict[str, Any] = {"connectorId": CONNECTOR_ID, "meterValue": [value]}
            tx = self.transaction
            if tx is not None and tx.transaction_id is not None:
                meter["transactionId"] = tx.transaction_id
            await self._call_quietly("MeterValues", meter)


def _status_payload(change: StatusChanged) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "connectorId": change.connector_id,
        "errorCode": change.error_code.value,
        "status": change.status_16.value,
        "timestamp": format_time(change.timestamp),
    }
    if change.info:
        payload["info"] = change.info[:50]
    return payload


class StationHandlers16(CertificateHandlers16, FirmwareHandlers16, Handlers):
    """The answers of a :class:`Station16` to the Central System's CALLs."""

    def __init__(self, station: Station16) -> None:
        self.station = station

    # -- transactions

    @on("RemoteStartTransaction")
    def remote_start(
        self, payload: v16.RemoteStartTransactionRequest
    ) -> v16.RemoteStartTransactionResponse:
        st = self.station
        connector_id = payload.get("connectorId", CONNECTOR_ID)
        ok = (
            connector_id == CONNECTOR_ID
            and st.transaction is None
            and st.connector.may_start_transaction(payload["idTag"])
        )
        return {"status": "Accepted" if ok else "Rejected"}

    @after("RemoteStartTransaction")
    async def remote_start_done(self, payload: v16.RemoteStartTransactionRequest) -> None:
        st = self.station
        if st.transaction is not None or payload.get("connectorId", 1) != CONNECTOR_ID:
            return
        id_tag = payload["idTag"]
        if st.config.authorize_remote_tx_requests and not await st._authorize(id_tag):
            return
        st._accept_id(id_tag)

    @on("RemoteStopTransaction")
    def remote_stop(
        self, payload: v16.RemoteStopTransactionRequest
    ) -> v16.RemoteStopTransactionResponse:
        tx = self.station.transaction
        ok = tx is not None and tx.transaction_id == payload["transactionId"]
        return {"status": "Accepted" if ok else "Rejected"}

    @after("RemoteStopTransaction")
    def remote_stop_done(self, payload: v16.RemoteStopTransactionRequest) -> None:
        tx = self.station.transaction
        if tx is not None and tx.transaction_id == payload["transactionId"]:
            self.station.stop_transaction("Remote")

    @on("Reset")
    def reset(self, payload: v16.ResetRequest) -> v16.ResetResponse:
        return {"status": "Accepted"}

    @after("Reset")
    async def reset_done(self, payload: v16.ResetRequest) -> None:
        st = self.station
        st.security_event("ResetOrReboot", f"{payload['type']} Reset from the Central System")
        st.stop_transaction("HardReset" if payload["type"] == "Hard" else "SoftReset")
        st._boot_needed = True
        await st.disconnect()  # a reboot: reconnect and boot again

    @on("UnlockConnector")
    def unlock(self, payload: v16.UnlockConnectorRequest) -> v16.UnlockConnectorResponse:
        st = self.station
        if payload["connectorId"] != CONNECTOR_ID:
            return {"status": "NotSupported"}
        st.stop_transaction("UnlockCommand")
        return {"status": "Unlocked" if st.hardware.unlock_cable() else "UnlockFailed"}

    @on("ChangeAvailability")
    def change_availability(
        self, payload: v16.ChangeAvailabilityRequest
    ) -> v16.ChangeAvailabilityResponse:
        st = self.station
        if payload["connectorId"] not in (0, CONNECTOR_ID):
            return {"status": "Rejected"}
        reply = st.connector.change_availability(payload["type"] == "Operative", st.now())
        st._emit(reply.actions)
        st.save_state()
        return {"status": reply.status.value}

    # -- configuration

    @on("ChangeConfiguration")
    def change_configuration(
        self, payload: v16.ChangeConfigurationRequest
    ) -> v16.ChangeConfigurationResponse:
        st = self.station
        key, value = payload["key"], payload["value"]
        if key.lower() == "securityprofile":
            # 1.6 whitepaper A05.FR.01-05: only higher, and only with its prerequisites
            try:
                profile = int(value)
            except ValueError:
                return {"status": "Rejected"}
            if profile <= st.security_profile or st.security_problem(profile, st._target):
                return {"status": "Rejected"}
        status = st.config.change(key, value)
        if status == "Accepted" and key.lower() in ("securityprofile", "authorizationkey"):
            st._reconnect_due = True
        return {"status": status}

    @after("ChangeConfiguration")
    async def change_configuration_done(self, payload: v16.ChangeConfigurationRequest) -> None:
        """A new SecurityProfile (A05.FR.06/07) or AuthorizationKey (the whitepaper's A01):
        disconnect once answered, reconnect with it."""
        st = self.station
        if st._reconnect_due:
            st._reconnect_due = False
            await st.disconnect()

    @on("GetConfiguration")
    def get_configuration(self, payload: v16.GetConfigurationRequest) -> dict[str, Any]:
        return self.station.config.response(payload.get("key"))

    @on("TriggerMessage")
    def trigger(self, payload: v16.TriggerMessageRequest) -> v16.TriggerMessageResponse:
        if payload.get("connectorId", CONNECTOR_ID) not in (0, CONNECTOR_ID):
            return {"status": "Rejected"}
        if payload["requestedMessage"] not in _TRIGGERABLE:
            return {"status": "NotImplemented"}
        return {"status": "Accepted"}

    @after("TriggerMessage")
    async def trigger_done(self, payload: v16.TriggerMessageRequest) -> None:
        if payload.get("connectorId", CONNECTOR_ID) in (0, CONNECTOR_ID):
            await self.station.send_triggered(payload["requestedMessage"])

    @on("DataTransfer")
    def data_transfer(self, payload: v16.DataTransferRequest) -> v16.DataTransferResponse:
        return {"status": "UnknownVendorId"}

    # -- local authorization

    @on("ClearCache")
    def clear_cache(self, payload: v16.ClearCacheRequest) -> v16.ClearCacheResponse:
        return {"status": self.station.authorizer.clear_cache()}

    @on("SendLocalList")
    def send_local_list(self, payload: v16.SendLocalListRequest) -> v16.SendLocalListResponse:
        st = self.station
        if not st.config.local_auth_list_enabled:
            return {"status": "NotSupported"}
        status = st.local_list.send_local_list(
            payload["listVersion"],
            payload["updateType"],
            list(payload.get("localAuthorizationList", [])),
            max_length=st.config.local_auth_list_max_length,
            max_per_message=st.config.send_local_list_max_length,
        )
        return {"status": status}

    @on("GetLocalListVersion")
    def get_local_list_version(
        self, payload: v16.GetLocalListVersionRequest
    ) -> v16.GetLocalListVersionResponse:
        st = self.station
        if not st.config.local_auth_list_enabled:
            return {"listVersion": -1}
        return {"listVersion": st.authorizer.get_local_list_version()}

    # -- smart charging

    @on("SetChargingProfile")
    def set_charging_profile(
        self, payload: v16.SetChargingProfileRequest
    ) -> v16.SetChargingProfileResponse:
        st = self.station
        tx = st.transaction
        status = st.profiles.set_16(
            payload["connectorId"],
            payload["csChargingProfiles"],
            transaction_id_active=None if tx is None else tx.transaction_id,
        )
        st.tick()
        st.save_state()
        st.wake()
        return {"status": status}

    @on("ClearChargingProfile")
    def clear_charging_profile(
        self, payload: v16.ClearChargingProfileRequest
    ) -> v16.ClearChargingProfileResponse:
        st = self.station
        status = st.profiles.clear_16(payload)
        st.tick()
        st.save_state()
        st.wake()
        return {"status": status}

    @on("GetCompositeSchedule")
    def get_composite_schedule(self, payload: v16.GetCompositeScheduleRequest) -> dict[str, Any]:
        st = self.station
        tx = st.transaction
        return st.profiles.composite_16(
            payload["connectorId"],
            payload["duration"],
            payload.get("chargingRateUnit"),
            st.now(),
            transaction_start=None if tx is None else tx.started_at,
            voltage=st.model.nominal_voltage_v,
            phases=st.model.phases,
        )


def newest_state(
    file_state: dict[str, Any], journal_state: dict[str, Any] | None
) -> dict[str, Any]:
    """The state saved last (by ``saved_at``): state.json, or the journal's (a fleet's)."""
    if not journal_state:
        return file_state
    if not file_state:
        return journal_state
    epoch = datetime.min.replace(tzinfo=UTC)
    if saved_at(journal_state, epoch) >= saved_at(file_state, epoch):
        return journal_state
    return file_state


def saved_at(state: Mapping[str, Any], default: datetime) -> datetime:
    """When ``state`` was saved: the time its energy register was read."""
    try:
        return datetime.fromisoformat(str(state["saved_at"]))
    except (KeyError, ValueError):
        return default


async def _wait_event(event: asyncio.Event, clock: Clock, timeout: float | None) -> None:
    """Until ``event`` is set, or ``timeout`` seconds of ``clock``'s time (None: no limit)."""
    if event.is_set():
        return
    if timeout is None:
        await event.wait()
        return
    # a timeout, not wait_for: no extra task per wait (a fleet waits a lot)
    with contextlib.suppress(TimeoutError):
        async with clock.timeout(timeout):
            await event.wait()
