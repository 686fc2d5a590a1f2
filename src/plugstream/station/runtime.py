"""The runtime of a PlugStream station: one for OCPP 1.6J and 2.0.1 alike.

:class:`StationRuntime` wires the sans-I/O building blocks of :mod:`plugstream.station`
(hardware, connector status machine, journal, local authorization, metering, smart
charging, the connection state of :mod:`~plugstream.station.connection`) to an
:class:`~plugstream.ocpp.OcppEndpoint` running over a ``websockets`` connection: the
connection loop and its reconnect back-off, BootNotification and Heartbeat, the
delivery of the durable journal, the network (links, data saving, NTP), the firmware
updater, the TLS and security profiles, and the security events. What differs between
the versions -- message shapes, configuration keys, status mapping, the handlers of
the CSMS's CALLs -- is in the adapters :class:`~plugstream.station.station16.Station16`
and :class:`~plugstream.station.station201.Station201`, through the hooks at the end of
the class.

Time: every timestamp and every pause (tick, heartbeat, boot retry, back-off) comes
from the injected :class:`~plugstream.station.clock.Clock`, so a fleet runs scaled;
network timeouts stay real. An idle station sleeps until an event (:meth:`wake`) or
its next due time, so ten thousand idle stations cost next to nothing.

Restart safety: ``state.json`` in the data dir holds the energy register, the running
transaction, the charging profiles and the availability, written atomically at every
journalled transaction message; a transaction that was running when the process died
is ended on the next start (the adapter says with which message).

Traffic: every byte of the OCPP connection is counted in :attr:`StationRuntime.traffic`
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
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from ssl import SSLContext, SSLError, SSLSession
from typing import Any, ClassVar, Final, Generic, Protocol, TypedDict, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)
from websockets.frames import Frame, Opcode
from websockets.headers import build_authorization_basic
from websockets.protocol import State
from websockets.proxy import get_proxy
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from plugstream.net.accounting import ByteCounter, Direction, Link
from plugstream.net.links import LinkPolicy
from plugstream.net.ntp import CorrectedClock
from plugstream.ocpp import (
    ConnectionLost,
    ErrorCode,
    Event,
    Handlers,
    OcppEndpoint,
    OcppError,
    OcppVersion,
)
from plugstream.ocpp.datetimes import format_time
from plugstream.pki.tls import (
    ServerRejected,
    peer_chain,
    resumable,
    resuming,
    station_context,
    verify_server,
)
from plugstream.station.auth import AuthCache, AuthConfig, Authorizer, LocalAuthList, TokenKey
from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.certificates import CSMS_ROOT, CertificateStore
from plugstream.station.certmgmt import renew_if_expiring
from plugstream.station.clock import CallableClock, Clock, SystemClock, Timer
from plugstream.station.config import atomic_write_json
from plugstream.station.connection import (
    DEFAULT_BOOT_RETRY_S,
    BootAnswered,
    BootFailed,
    CallAnswered,
    CloseConnection,
    Connected,
    ConnectFailed,
    ConnectionAction,
    ConnectionState,
    Disconnected,
    HeartbeatSent,
    MessageSent,
    Reconnect,
    Registered,
    ResetRequested,
    SecurityChanged,
    SendBootNotification,
)
from plugstream.station.connector import (
    Action,
    ChargePointErrorCode,
    Connector,
    InvalidTransition,
    ReservationEnded,
    StatusChanged,
)
from plugstream.station.ev import Ev
from plugstream.station.firmware import FirmwareUpdater
from plugstream.station.hardware import ChargePointHardware, Measurements, Model
from plugstream.station.journal import Entry, Journal
from plugstream.station.keepalive import KeepaliveLearner
from plugstream.station.metering import (
    ClockAligned,
    MeterSchedule,
    ReadingContext,
    TransactionData,
)
from plugstream.station.network import NetworkNotReady, StationNetwork, default_port
from plugstream.station.security import FILENAME as SECURITY_LOG_FILE
from plugstream.station.security import SecurityLog, canonical, event_name
from plugstream.station.smartcharging import ChargingProfiles
from plugstream.station.wakeups import Signal, Ticker

__all__ = [
    "CONNECTOR_ID",
    "FIRMWARE_VERSION",
    "STATE_FILE",
    "Compression",
    "CountingConnection",
    "Station",
    "StationOptions",
    "StationRuntime",
    "compact",
    "load_state",
    "newest_state",
    "saved_at",
    "small_deflate",
]

log = logging.getLogger("plugstream.station")

CONNECTOR_ID = 1
FIRMWARE_VERSION = "0.1.0"
DEFAULT_TICK_S = 10.0  # while energy flows: follows the EV's curve (hardware.MAX_STEP_S)
MIN_CHARGING_WAKE_S = 1.0  # tick_interval None: the closest look at a car about to be full
TRAFFIC_SAVE_S = 900.0  # traffic.json at most this stale (station time), besides cycle ends
STATE_FILE = "state.json"
SECURITY_RETRY_S = 60.0  # a SecurityEventNotification the CSMS failed to process: again after
SECURITY_ATTEMPTS = 5  # ... at most this many times (a NotImplemented: never again)
PONG_WAIT_S = 20.0  # station seconds a keep-alive ping waits for its pong (websockets' default)
MIN_PONG_WAIT_REAL_S = 2.0  # ... and never less in real time (a scaled clock, a busy loop)


Compression = str | ClientPerMessageDeflateFactory | None
"""``"deflate"`` (websockets' defaults), None (off), or tuned permessage-deflate."""


_EMPTY_UNCOMPRESSED_BLOCK: Final = b"\x00\x00\xff\xff"


class SharedEncoderDeflate(PerMessageDeflate):
    """permessage-deflate without context takeover on our side, its messages compressed
    by one zlib stream of the whole process instead of one made (and dropped) per
    message: ~24 KB of zlib state allocated, cleared and freed for every message a fleet
    sends was a tenth of its CPU. ``Z_FULL_FLUSH`` after each message resets the
    stream's dictionary, so no message refers to an earlier one: each decompresses on
    its own, as no context takeover promises the peer (RFC 7692 §7.1.1.1)."""

    _encoders: ClassVar[dict[tuple[int, tuple[tuple[str, Any], ...]], Any]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._key = (self.local_max_window_bits, tuple(sorted(self.compress_settings.items())))

    def encode(self, frame: Frame) -> Frame:
        if (frame.opcode is not Opcode.TEXT and frame.opcode is not Opcode.BINARY) or not frame.fin:
            return super().encode(frame)  # control frames, fragments: websockets' own way
        key = self._key
        encoder = self._encoders.get(key)
        if encoder is None:
            encoder = self._encoders[key] = zlib.compressobj(
                wbits=-self.local_max_window_bits, **self.compress_settings
            )
        try:
            data = encoder.compress(frame.data) + encoder.flush(zlib.Z_FULL_FLUSH)
        except BaseException:
            del self._encoders[key]  # in an unknown state: the next message makes another
            raise
        if data[-4:] != _EMPTY_UNCOMPRESSED_BLOCK:  # what a full flush always ends with
            del self._encoders[key]
            raise RuntimeError("zlib full flush did not end in an empty stored block")
        return Frame(frame.opcode, data[:-4], True, True, frame.rsv2, frame.rsv3)


class _SharedEncoderFactory(ClientPerMessageDeflateFactory):
    """Negotiates as websockets does; without context takeover on our side, the process's
    one encoder compresses (:class:`SharedEncoderDeflate`)."""

    def process_response_params(
        self, params: Sequence[tuple[str, str | None]], accepted_extensions: Sequence[Extension]
    ) -> PerMessageDeflate:
        made = super().process_response_params(params, accepted_extensions)
        if not made.local_no_context_takeover:
            return made
        return SharedEncoderDeflate(
            made.remote_no_context_takeover,
            made.local_no_context_takeover,
            made.remote_max_window_bits,
            made.local_max_window_bits,
            made.compress_settings,
        )


def small_deflate(
    window_bits: int = 12, mem_level: int = 4, *, no_context_takeover: bool = False
) -> ClientPerMessageDeflateFactory:
    """permessage-deflate with small buffers (a fleet: thousands of connections in one
    process). websockets' defaults keep ~150 KB of zlib state per connection (a 32 KB
    window each way, memLevel 5); OCPP messages are well under a KB, so a 4 KB window
    (both ways: the CSMS is asked for it too) and memLevel 4 keep almost all the
    compression for a fraction of the memory.

    ``no_context_takeover`` (both ways, the CSMS is asked for it too): each message is
    compressed on its own, and websockets frees the zlib state after each message, so
    an idle connection holds none -- a 4 KB window still takes ~35 KB of zlib state a
    connection, more than a whole lean fleet station (``bench/fleet.py``). A message
    then compresses somewhat less (no dictionary from the last one), and all of the
    process's connections compress with one zlib stream (:class:`SharedEncoderDeflate`)."""
    factory = _SharedEncoderFactory if no_context_takeover else ClientPerMessageDeflateFactory
    return factory(
        server_no_context_takeover=no_context_takeover,
        client_no_context_takeover=no_context_takeover,
        server_max_window_bits=window_bits,
        client_max_window_bits=window_bits,
        compress_settings={"memLevel": mem_level},
    )


def _env_proxy(address: str) -> str | None:
    """The proxy websockets would use for ``address`` (the environment's; None: direct).

    websockets looks it up on every connect by scanning ``os.environ``; a process's
    environment does not change while it runs, so once a CSMS host is enough (a fleet of
    10,000 connecting spent a tenth of its CPU here)."""
    uri = parse_uri(address)
    return _host_proxy(uri.secure, uri.host, uri.port)


@functools.lru_cache(maxsize=64)
def _host_proxy(secure: bool, host: str, port: int) -> str | None:
    scheme = "wss" if secure else "ws"
    return get_proxy(parse_uri(f"{scheme}://{host}:{port}/"))


def compact(value: Any) -> Any:
    """``value`` without None, empty lists and empty objects inside it: optional fields
    that say nothing cost bytes on a metered link and are never required empty.

    Payloads are plain JSON (dict, list, scalars): exact type checks, a third cheaper
    than isinstance on every sample of a fleet's meter values."""
    kind = value.__class__
    if kind is dict:
        out = {}
        for key, item in value.items():
            if item is None:
                continue
            item_kind = item.__class__
            if item_kind is dict or item_kind is list:  # scalars, most of a payload, as they are
                item = compact(item)
                if not item:
                    continue
            out[key] = item
        return out
    if kind is list:
        return [
            compact(item) if (item.__class__ is dict or item.__class__ is list) else item
            for item in value
        ]
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


class _SmallQueue(list[Any]):
    """The part of a deque websockets uses, on a list: a list starts at 56 bytes, a deque
    at 760, and these queues hold a frame or a waiter at a time."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)

    def extendleft(self, items: Any) -> None:
        for item in items:
            self.insert(0, item)


class CountingConnection(ClientConnection):
    """A websockets client connection that reports every byte it sends and receives.

    Counted: the WebSocket stream as the connection hands it to its transport and gets
    it back — the HTTP Upgrade handshake, frame headers, (deflated) payloads, pings,
    pongs and close frames. Not counted: TLS record overhead and the TLS handshake (the
    SSL transport sits below this layer) and TCP/IP headers. Over ``wss://`` the bytes
    on the wire are therefore somewhat more (about 22 bytes a TLS 1.3 record, plus a
    few KB of handshake per connection).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # a deque of waiters, empty nearly always: 760 bytes a connection
        self.drain_waiters = cast(Any, _SmallQueue())

    async def send(self, message: Any, text: bool | None = None) -> None:
        """A whole text message on an open connection goes straight to the protocol and
        the transport (:meth:`send_now`); everything else takes websockets' own way. Its
        send context is an async generator per message: a tenth of a fleet's CPU."""
        if type(message) is not str or text is not None:
            await super().send(message, text=text)
            return
        try:
            sent = self.send_now(message)
        except Exception as exc:  # as websockets' send context: the connection is done
            await asyncio.shield(self.connection_lost_waiter)
            raise self.close_exc from exc
        if not sent:
            await super().send(message)
        elif self.paused:  # the transport's buffer is full: wait as websockets would
            await self.drain()

    def send_now(self, message: str) -> bool:
        """Send a text message in this step if nothing stands in its way (the connection
        open, no other send under way, the transport's buffer not full); False: not sent,
        :meth:`send` it. Raises when the transport fails: the connection is then aborted.
        What :meth:`OcppEndpoint.call_soon` sends with, from a callback."""
        if (
            self.protocol.state is not State.OPEN
            or self.protocol.close_expected()
            or self.paused
            or getattr(self, "send_in_progress", None) is not None
            or self.transport.is_closing()
        ):
            return False
        try:
            self.protocol.send_text(message.encode())
            self.send_data()
        except Exception as exc:
            self.set_connection_exc(exc)
            self.transport.abort()
            raise
        return True

    count: Callable[[Direction, int], None] = staticmethod(lambda direction, n: None)
    take_text: Callable[[str], bool] | None = None
    """Offered each whole text message as it arrives, before ``recv()`` would see it;
    True: taken (:meth:`OcppEndpoint.take_response`: an answer to one of our CALLs)."""
    verify: Callable[[asyncio.BaseTransport], None] | None = None
    """Checks the TLS peer once the handshake is done, before websockets sends the HTTP
    Upgrade (and so any password): if it raises, the connection is aborted unsent (the
    verifier keeps its own record of why)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # the incoming frames' deque (made here), a frame at a time: 760 bytes less
        frames = getattr(getattr(self, "recv_messages", None), "frames", None)
        if frames is not None and isinstance(getattr(frames, "queue", None), deque):
            frames.queue = _SmallQueue()
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

    def process_event(self, event: Any) -> None:
        take = self.take_text
        if (
            take is not None
            and type(event) is Frame
            and event.opcode is Opcode.TEXT
            and event.fin  # a whole message in one frame
            and not self.recv_messages.frames.queue  # none before it waits for recv()
            and not self.recv_messages.closed
        ):
            try:
                text = bytes(event.data).decode()
            except UnicodeDecodeError:  # websockets' own way closes the connection
                pass
            else:
                try:
                    if take(text):
                        return
                except Exception:  # a bug of ours: not the connection's end
                    log.exception("a received message was not handled")
                    return
        super().process_event(event)


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


# OpenSSL's reasons for a handshake the CSMS's TLS version / cipher suites made fail
_TLS_VERSION_REASONS = frozenset(
    {"UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "WRONG_VERSION_NUMBER"}
)
_TLS_CIPHER_REASONS = frozenset(
    {"SSLV3_ALERT_HANDSHAKE_FAILURE", "NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE"}
)


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


class StationOptions(TypedDict, total=False):
    """The keyword options of a station, the same in both versions.

    ``clock`` (default: one built from ``now``, else the system clock) times everything;
    ``journal`` may be a shared-database journal (default: ``journal.sqlite`` in
    ``data_dir``); ``backoff`` replaces the version's reconnect back-off; ``traffic``
    counts the connection's bytes on ``link``, saved to ``traffic.json`` at each cycle's
    start and end and every 15 minutes unless ``traffic_autosave`` is off (a fleet reads
    ``traffic`` itself); ``ssl`` and ``compression`` go to ``websockets.connect``;
    ``sync_state`` fsyncs ``state.json``, ``state_in_journal`` keeps it in the journal's
    database (a fleet).
    """

    clock: Clock | None
    journal: Journal | None
    rng: random.Random | None
    call_timeout: float
    backoff: ReconnectBackoff | None
    tick_interval: float | None
    serial_number: str | None
    traffic_autosave: bool
    link: Link
    ssl: SSLContext | None
    compression: Compression
    sync_state: bool
    state_in_journal: bool


class RunningTransaction(Protocol):
    """What the runtime reads of either version's running transaction."""

    @property
    def started_at(self) -> datetime: ...

    @property
    def data(self) -> TransactionData: ...

    @property
    def schedule(self) -> MeterSchedule: ...

    def to_json(self) -> dict[str, Any]: ...

    def describe(self) -> str:
        """One line for a person: the transaction's id and who started it."""
        ...


ConfigT = TypeVar("ConfigT")
"""The version's configuration: :class:`~plugstream.station.config.Config16` or
:class:`~plugstream.station.config.DeviceModel201`."""


class StationRuntime(Generic[ConfigT]):
    """One PlugStream charge point with one connector: the OCPP connection, the journal,
    boot and heartbeat, the network, firmware, certificates and security events.

    An adapter subclass (:class:`~plugstream.station.station16.Station16`,
    :class:`~plugstream.station.station201.Station201`) loads its version's
    configuration (``config``) and implements the hooks at the end of the class:
    message shapes, configuration keys and the status mapping.
    """

    skip_unchanged_status: ClassVar[bool] = False
    """A StatusNotification only when the reported status changes (2.0.1's Occupied
    covers several 1.6 statuses)."""

    def __init__(
        self,
        station_id: str,
        model: Model,
        data_dir: Path,
        config: ConfigT,
        now: Callable[[], datetime] | None = None,
        *,
        clock: Clock | None = None,
        journal: Journal | None = None,
        rng: random.Random | None = None,
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
        self.data_dir = data_dir
        self.config = config
        cast(Any, config).sync = sync_state  # its file is as durable as state.json
        if clock is None:
            clock = SystemClock() if now is None else CallableClock(now)
        self.clock: Clock = clock
        self.now: Callable[[], datetime] = clock.now
        self.rng = rng if rng is not None else random.Random()
        self.call_timeout = call_timeout
        self.tick_interval = tick_interval
        self.serial_number = serial_number
        self.link: Link = link
        self.traffic_autosave = traffic_autosave
        self.ssl = ssl  # for wss:// with a private CA or a client certificate
        self.compression = compression  # permessage-deflate offered; None: not
        self.sync_state = sync_state  # fsync state.json: survives an OS crash, not only kill -9
        self.state_in_journal = state_in_journal  # state in the journal's database, no file
        self.validate_outgoing = True
        """Check each CALL we send against its schema first. A fleet turns it off: its
        CSMS checks every frame anyway (a malformed one comes back as a CALLERROR, which
        the fleet counts), and ten thousand stations checking again cost more CPU than
        any other step of a meter sample."""
        self.connect_gate: asyncio.Semaphore | None = None
        """Held from the TCP connect until the WebSocket handshake is done (None: no
        gate). A fleet shares one among its stations: all of them come from one address,
        and a CSMS bounds the unfinished handshakes of an address (PlugStream Cloud: 500);
        past that it closes them, and each station so refused backs off for seconds --
        a 10,000-station ramp took minutes. Waiting in the gate costs nothing."""
        self.observer: Callable[[Event], None] | None = None
        """Sees every event of every connection's endpoint (a fleet counts messages)."""
        self.network: StationNetwork | None = None
        """The NTP-corrected clock and DNS priority list to connect with (None: the
        system's resolver and no time gate -- fleets, tests, benchmarks). Read when
        :meth:`run` starts."""
        self.offline_reason: str | None = None
        """Why the last connection attempt was not made or failed (None: connected)."""
        self.tls_rejected: ServerRejected | None = None
        """Why the CSMS's certificate was refused on the last attempt (None: it was not)."""

        self.journal = journal if journal is not None else Journal(data_dir / "journal.sqlite")
        state = self._load_state()
        refusing = state.get("csms_without_security_events")
        self.csms_without_security_events: frozenset[str] = (
            frozenset(str(url) for url in refusing) if isinstance(refusing, list) else _NONE
        )
        """The CSMSs (:meth:`csms_identity`) that answered a SecurityEventNotification
        NotImplemented: none is sent to them (saved with the state)."""
        self.hardware = ChargePointHardware(
            model, self.rng, now=self._seconds(), energy_wh=restored_energy(state)
        )
        operative = state.get("pending_operative")
        if operative is None:
            operative = state.get("operative", True)
        self.connector = Connector(CONNECTOR_ID, operative=bool(operative))
        self.local_list = LocalAuthList.load(data_dir / "local_list.json")
        self.cache = AuthCache.load(data_dir / "auth_cache.json")
        self.local_list.sync = self.cache.sync = sync_state  # as durable as state.json
        self.authorizer = Authorizer(self.local_list, self.cache, self._auth_config())
        max_profiles, max_stack_level = self._profile_limits()
        profile_options: dict[str, Any] = {
            "max_profiles": max_profiles,
            "max_stack_level": max_stack_level,
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
        self.connection = ConnectionState(
            self._seconds(), backoff if backoff is not None else self._default_backoff()
        )
        """Registered or not, boot and heartbeat due times, the reconnect back-off."""
        self.heartbeat_interval = self._configured_heartbeat_interval()
        self.transaction: RunningTransaction | None = None
        self._changed = Signal()  # the journal's and the session's wake-up
        # journal delivery: deliver_journal's (an entry out and answered in that task), or
        # the direct one of a shared journal (_journal_appended: sent after the group
        # commit, answered in a callback); never both at once
        self._delivering = False  # deliver_journal has an entry out (or is about to)
        self._direct_due = False  # _send_head_now waits for the group commit
        self._in_flight: Entry | None = None  # sent by _send_head_now, not yet answered
        self._delivery_task: asyncio.Task[None] | None = None  # deliver_journal, with work
        self._security_changed = Signal()  # the security events' wake-up
        self._security_task: asyncio.Task[None] | None = None  # while events are sent
        self._ka: _KeepaliveRun | None = None  # the keep-alive of the open connection
        self._heartbeat_timer: Timer | None = None  # the next look at the heartbeat
        self._heartbeat_task: asyncio.Task[None] | None = None  # a Heartbeat out
        self._security_failures: dict[int, int] = {}  # event seq -> CSMS failures so far
        self._boot_wake = Signal()  # a triggered BootNotification was Accepted
        self.ticker: Ticker | Clock = clock
        """Whose ``call_later`` times the meter ticks: the clock itself, or a fleet's
        :class:`Ticker` shared by all its stations (one timer, ticks on a common beat)."""
        self._running = False  # run() is running: ticks are timed, events start delivery
        self._tick_timer: Timer | None = None  # the next tick, when one is due
        self._tick_soon: asyncio.Handle | None = None  # a tick asked for by wake()
        self._tasks: set[asyncio.Task[Any]] | None = None  # while spawn()'s tasks run
        self._session_task: asyncio.Task[None] | None = None  # a connection's boot, status
        self._ws: Any = None
        self._ws_link: Link | None = None  # the managed link the open connection runs over
        self._link_switched = False  # closed for another link: reconnect at once
        self._data_saving: dict[str, Any] | None = None
        self._network_clock: CorrectedClock | None = None  # the clock whose steps we follow
        self._target: str | None = None  # the URL run() connects to (the profile checks)
        self._started_up = False  # StartupOfTheDevice logged (the first run)
        self._dropped: Reconnect | None = None  # the back-off after the last connection
        self._reported: dict[int, str] = {}  # connectorId -> status last sent
        self._cycle: str | None = None  # the open charge cycle of self.traffic
        # in and outside transactions; the transaction's own schedule is sampled only
        self.aligned = ClockAligned(self._aligned_interval(), self.now())

        self._last_heard = self._seconds()  # station time of the last byte either way
        keepalive = state.get("keepalive")
        keepalive = keepalive if isinstance(keepalive, dict) else {}
        self._ping_from_csms = keepalive.get("csms_set") is True
        """WebSocketPingInterval was set by the CSMS: used as it is, not learned."""
        links = keepalive.get("links")
        self._keepalive_saved: dict[str, Any] = links if isinstance(links, dict) else {}
        self._learners: dict[str, KeepaliveLearner] = {}
        self._tls_contexts: dict[tuple[Any, ...], SSLContext] = {}  # one per CSMS and cert
        self._tls_sessions: dict[str, SSLSession] = {}  # host:port -> the last TLS session
        self.tls_resumed: bool | None = None
        """The last TLS connection resumed a session (no full handshake); None: no TLS."""
        self.pong_timeout: float | None = None
        """Real seconds a keep-alive ping waits for its pong (None: PONG_WAIT_S of station
        time, at least MIN_PONG_WAIT_REAL_S)."""
        self.traffic = self._load_traffic()
        self._traffic_saved_at = self._seconds()
        self.firmware = FirmwareUpdater.for_station(self, FIRMWARE_VERSION)
        """The running firmware (A/B slots) and a signed update in progress."""
        self._recover(state)

    # -- the connection's state ------------------------------------------------------

    @property
    def accepted(self) -> bool:
        """BootNotification accepted (or not needed) on the current connection."""
        return self.connection.registered

    @property
    def registration(self) -> str | None:
        """The status of the last BootNotification answer."""
        return self.connection.registration

    @property
    def boot_reason(self) -> str:
        """The reason of the next BootNotification (2.0.1 BootReason)."""
        return self.connection.boot_reason

    @boot_reason.setter
    def boot_reason(self, reason: str) -> None:
        self.connection.boot_reason = reason

    @property
    def backoff(self) -> ReconnectBackoff:
        """The reconnect back-off (OCPP 2.0.1 part 4 §5.3)."""
        return self.connection.backoff

    @property
    def target(self) -> str | None:
        """The CSMS URL :meth:`run` connects to, station id included (None: not running)."""
        return self._target

    @property
    def websocket(self) -> Any:
        """The open WebSocket connection, None when offline."""
        return self._ws

    def request_boot(self, reason: str = "RemoteReset") -> None:
        """A BootNotification is due on the next connection, as after a Reset."""
        self.connection.handle(ResetRequested(reason))

    def request_reconnect(self) -> None:
        """A security setting changed: reconnect once the current CALL is answered."""
        self.connection.handle(SecurityChanged())

    async def reconnect_if_due(self) -> None:
        """The CALL that changed a security setting is answered: reconnect with it
        (the whitepaper's A01 / A05.FR.06/07 / 2.0.1 A01)."""
        for action in self.connection.handle(CallAnswered()):
            if isinstance(action, CloseConnection):
                await self.disconnect()

    def close(self) -> None:
        """Save the state (a clean stop) and release the files; call after :meth:`run`."""
        for task in list(self._tasks or ()):
            task.cancel()
        self.save_state(clean=True)
        if self.traffic_autosave:
            self._save_traffic()
        self.journal.close()

    # -- what survives a restart ---------------------------------------------------

    def save_state(self, *, clean: bool = False, advanced: bool = False) -> None:
        """Persist the register, the transaction, profiles and availability atomically;
        ``advanced``: the meter was brought up to now a moment ago (a tick's sample)."""
        if not advanced:
            self.hardware.advance(self._seconds())
        tx = self.transaction
        self._write_state(
            {
                "energy_wh": str(self.hardware.energy_wh),
                "saved_at": self.now().isoformat(),
                "clean": clean,
                "operative": self.connector.operative,
                "pending_operative": self.connector.pending_operative,
                "profiles": self.profiles.to_json(),
                "transaction": None if tx is None else tx.to_json(),
                "csms_without_security_events": sorted(self.csms_without_security_events),
                "keepalive": self._keepalive_state(),
            },
        )

    def _recover(self, state: Mapping[str, Any]) -> None:
        """End the transaction that was running when the process stopped; close the
        charge cycles that were open (the car is gone as far as we know)."""
        saved = state.get("transaction")
        if isinstance(saved, dict):
            self._end_interrupted_transaction(state, saved)
            self.profiles.end_transaction(CONNECTOR_ID)
        for cycle in self.traffic.open_cycles:
            self.traffic.end_cycle(cycle, self.now())
        self.save_state()

    # -- messages that are not journalled ---------------------------------------------

    def emit(self, actions: list[Action]) -> None:
        """Send a StatusNotification for each status change; while offline the change is
        kept in the connector and its current status is sent on reconnect."""
        for action in actions:
            if isinstance(action, ReservationEnded):
                self.reservation_ended(action)
                continue
            if not isinstance(action, StatusChanged):
                continue
            if not action.changed_16 and self.ocpp_version is OcppVersion.V16:
                continue  # only 2.0.1's status changed (Preparing, then the cable)
            if self.online:
                status = self._status_value(action)
                if self.skip_unchanged_status and self._reported.get(action.connector_id) == status:
                    continue  # e.g. Preparing -> Charging: Occupied both, nothing to tell
                self._reported[action.connector_id] = status
                payload = self._status_payload(action)
                self.spawn(self.call_quietly("StatusNotification", payload))
            else:  # changed while offline: the current status goes out on reconnect
                self._reported.pop(action.connector_id, None)
        if actions:
            self.wake()

    def reservation_ended(self, ended: ReservationEnded) -> None:
        """A reservation ended in the connector (expired, or removed by a fault); the
        version adapter tells the CSMS where its version has a message for it."""

    # -- the user and the car ----------------------------------------------------------

    def plug_in(self, ev: Ev) -> None:
        """A car is plugged in; a session starts if an id is authorized already."""
        self.hardware.advance(self._seconds())
        if not self.hardware.plug_in(ev):
            raise InvalidTransition("a cable is plugged in already")
        self._start_cycle()
        self.emit(self.connector.plug_in(self.now()))
        self._plugged_in()
        self.wake()

    def unplug(self) -> None:
        """The car is unplugged: an ongoing transaction stops (EVDisconnected)."""
        now = self.now()
        if self.transaction is not None:
            self._end_on_unplug()
        self.hardware.open_contactor()
        self.hardware.unlock_cable()
        self.hardware.unplug()
        self.emit(self.connector.unplug(now))
        self._end_cycle()
        self._after_end()
        self.wake()

    def fault(self, code: ChargePointErrorCode) -> None:
        """A fault trips the contactor: an ongoing transaction stops (Other); Faulted."""
        if self.transaction is not None:
            self._stop_on_fault()
        self.hardware.raise_fault(code.value)
        self.emit(self.connector.fault(code, self.now()))

    def clear_fault(self) -> None:
        """The fault is resolved: the connector returns to what the facts call for."""
        actions = self.connector.clear_fault(self.now())
        self.hardware.clear_fault()
        self.emit(actions)

    async def authorize_token(
        self, key: TokenKey, request: dict[str, Any], info_field: str
    ) -> bool:
        """Authorize ``key`` by the local rules, asking the CSMS (Authorize ``request``,
        its answer's ``info_field``) when they say so; True when accepted."""
        decision = self.authorizer.authorize(key, online=self.online, now=self.now())
        if not decision.ask_csms:
            if decision.accept_locally:
                self._on_authorize_answer(None)
            return decision.accept_locally
        try:
            result = await self.call("Authorize", request)
        except OcppError:  # the connection went away meanwhile: decide offline
            decision = self.authorizer.authorize(key, online=False, now=self.now())
            return decision.accept_locally
        info = result[info_field]
        self.authorizer.on_csms_info(key, info, now=self.now())
        self._on_authorize_answer(info)
        return bool(info.get("status") == "Accepted")

    def _on_authorize_answer(self, info: Mapping[str, Any] | None) -> None:
        """The CSMS's idTokenInfo for a token presented here (2.0.1: a personalMessage),
        or None when the token was accepted without asking the CSMS."""

    def _begin_transaction(self) -> tuple[datetime, Measurements]:
        """Lock the cable and close the contactor: the time and meter a transaction
        starts with."""
        now = self.now()
        self.hardware.advance(now.timestamp())
        self.hardware.lock_cable()
        self.hardware.close_contactor()
        return now, self._measurements()

    def _connector_started(self, now: datetime) -> None:
        """The connector's status once a transaction started (Charging, Suspended...)."""
        self.emit(
            self.connector.start_transaction(
                now,
                ev_ready=self.ev_ready(),
                evse_ready=self.hardware.offered_current_a > 0,
            )
        )

    def _end_metering(self, data: TransactionData) -> tuple[datetime, Measurements]:
        """Close the transaction's meter ``data``, open the contactor, unlock the cable:
        the time and meter the transaction ends with."""
        now = self.now()
        self.hardware.advance(now.timestamp())
        measurements = self._measurements()
        data.end(now, measurements)
        self.hardware.open_contactor()
        self.hardware.unlock_cable()
        return now, measurements

    def _transaction_ended(self) -> None:
        """The end of the transaction is journalled: no transaction, no limit of its own."""
        self.transaction = None
        self.profiles.end_transaction(CONNECTOR_ID)
        self.hardware.set_current_limit(None)
        self.save_state()
        self.wake()

    def profiles_changed(self) -> None:
        """The charging profiles changed: apply them now and keep them."""
        self.tick()
        self.save_state()
        self.wake()

    def ev_ready(self) -> bool:
        """The car asks for current."""
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
        self.emit(self.connector.tick(now))
        self._connection_timeout(now)
        slot = self.aligned.due(now)
        if tx is None:
            if slot is not None:
                self._send_aligned(slot)
            return
        measurements = self._measurements()
        tx.data.tick(now, measurements)
        self._journal_meter_values(measurements, now, slot)
        evse_ready = self.hardware.offered_current_a > 0
        actions = (
            self.connector.evse_resumed(now) if evse_ready else self.connector.evse_suspended(now)
        )
        actions += (
            self.connector.ev_resumed(now) if self.ev_ready() else self.connector.ev_suspended(now)
        )
        self.emit(actions)

    def _send_aligned(self, slot: datetime) -> None:
        """Clock-aligned MeterValues outside a transaction (1.6 §3.7, 2.0.1 J01.FR.14): not
        transaction-related, so sent at once when online and not queued offline."""
        value = self._build_meter_value(
            self._measurements(),
            self._aligned_measurands(),
            ReadingContext.SAMPLE_CLOCK.value,
            slot,
        )
        if value is None:
            return
        if not self.online:
            log.debug("clock-aligned MeterValues of %s dropped: offline", slot)
            return
        self.spawn(self.call_quietly("MeterValues", self._meter_values_request(value)))

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
        due.extend(self._timeouts_due(now))
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

    def _meter_value(self, measurands: list[str], context: str) -> dict[str, Any] | None:
        """A reading of ``measurands`` now (a TriggerMessage's, say)."""
        self.hardware.advance(self._seconds())
        return self._build_meter_value(self._measurements(), measurands, context, self.now())

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
        self._deliver_soon()
        if self._running and self._tick_soon is None:
            self._tick_soon = asyncio.get_running_loop().call_soon(self._on_tick)
        if self.accepted and self.endpoint is not None:
            self._security_poke()

    def _security_poke(self) -> None:
        """Security events may be sent: wake their delivery, or start it (a task only while
        there are events to send: a fleet's thousands of stations have none nearly always)."""
        self._security_changed.set()
        task = self._security_task
        if self._running and (task is None or task.done()):
            task = asyncio.get_running_loop().create_task(self.deliver_security_events())
            task.add_done_callback(self._security_done)
            self._security_task = task

    def _deliver_soon(self) -> None:
        """Wake deliver_journal, or start it (while run() runs)."""
        self._changed.set()
        task = self._delivery_task
        if self._running and (task is None or task.done()):
            task = asyncio.get_running_loop().create_task(self.deliver_journal())
            task.add_done_callback(self._delivery_done)
            self._delivery_task = task

    def _delivery_done(self, task: asyncio.Task[None]) -> None:
        if self._delivery_task is task:  # a done task keeps its coroutine: let both go
            self._delivery_task = None
        if not task.cancelled() and task.exception() is not None:
            log.error("journal delivery failed", exc_info=task.exception())

    def _security_done(self, task: asyncio.Task[None]) -> None:
        if self._security_task is task:  # a done task keeps its coroutine: let both go
            self._security_task = None

    def _wait_change(self, timeout: float | None) -> Awaitable[None]:
        """Until :meth:`wake`, or ``timeout`` seconds of station time (await it: one
        coroutine frame less for each of a fleet's 10,000 idle deliveries)."""
        return _wait_event(self._changed, self.clock, timeout)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        tasks = self._tasks
        if tasks is None:
            tasks = self._tasks = set()
        tasks.add(task)
        task.add_done_callback(self._spawned_done)

    def _spawned_done(self, task: asyncio.Task[Any]) -> None:
        tasks = self._tasks
        if tasks is not None:
            tasks.discard(task)
            if not tasks:  # an empty set is 216 bytes, and most stations have none running
                self._tasks = None

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
        self._last_heard = now.timestamp()
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
        self, endpoint: OcppEndpoint, action: str, payload: dict[str, Any], bare: bool = False
    ) -> dict[str, Any]:
        """Every CALL of the station: empty optional fields dropped (``bare``: there are
        none, a journal entry's), heartbeat timer reset."""
        self.connection.handle(MessageSent(self._seconds()))
        return await endpoint.call(action, payload if bare else compact(payload))

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.endpoint
        if endpoint is None:
            raise OcppError(ErrorCode.GenericError, "not connected")
        return await self._send(endpoint, action, payload)

    async def call_quietly(self, action: str, payload: dict[str, Any]) -> None:
        """:meth:`call`, logging (not raising) a failure: for messages nobody waits on."""
        try:
            await self.call(action, payload)
        except OcppError as exc:
            log.info("%s not delivered: %s", action, exc)

    def _load_state(self) -> dict[str, Any]:
        """The newest of state.json and the state kept in the journal (a fleet's)."""
        return newest_state(load_state(self.state_path), self.journal.saved_state())

    @property
    def state_path(self) -> Path:
        """``state.json`` (made when asked: a fleet keeps its state in the journal)."""
        return self.data_dir / STATE_FILE

    def _write_state(self, data: dict[str, Any]) -> None:
        """Replace :attr:`state_path` atomically; with ``sync_state`` fsynced (a real
        station: power loss), without it only safe against the process dying (a fleet of
        thousands, where an fsync per meter sample would cost more than the whole
        simulation).
        With ``state_in_journal`` (a fleet) the state goes into the journal's database
        instead, in the same group commit as the MeterValues sample that carries the
        register: no file write per sample at all."""
        if self.state_in_journal:
            self.journal.save_state(data)
            return
        path = self.state_path
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

    @property
    def security_profile(self) -> int:
        """The security profile the station connects with (0: none, 1: Basic auth, 2: TLS +
        Basic auth, 3: TLS with a client certificate)."""
        return self._security_profile()

    def set_security_profile(self, profile: int) -> None:
        """Raise the security profile (never lower it: 1.6 whitepaper §7.6 / A05.FR.01);
        ValueError when lower, or when its prerequisites are missing (A05.FR.02-04)."""
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
        self._store_security_profile(profile)

    def install_security(self, profile: int, password: str | None) -> None:
        """Write the security profile and (when given) the HTTP Basic password into the
        configuration as an installer does (setup, commissioning): as they are, without
        the checks and events of a change by the CSMS. 1.6: SecurityProfile /
        AuthorizationKey (security whitepaper); 2.0.1: SecurityCtrlr.SecurityProfile /
        BasicAuthPassword."""
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

    def connection_target(self, target: str) -> tuple[str, dict[str, str]]:
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

    def _tls_options(self, target: str) -> dict[str, Any]:
        """``ssl=`` and the peer check for websockets.connect.

        A given ``ssl`` context is used as it is (tests, benchmarks). Otherwise a wss://
        URL gets the station's own TLS (:func:`~plugstream.pki.tls.station_context`),
        with its client certificate at security profile 3, and the server is checked
        against the CSMS roots of :attr:`certificates` and the station's clock before
        anything is sent. A ws:// URL takes no ssl argument.
        """
        if self.ssl is not None:
            return {"ssl": resumable(self.ssl)}
        parts = urlsplit(target)
        if parts.scheme != "wss":
            return {}
        client = self.certificates.station_certificate() if self._security_profile() >= 3 else None
        # one context per CSMS and client certificate: a TLS session resumes only with the
        # context it was made with (a renewed certificate is a new context, a new session)
        key: tuple[Any, ...] = (parts.netloc,)
        if client is not None:
            key += tuple((str(path), path.stat().st_mtime_ns) for path in client)
        context = self._tls_contexts.get(key)
        if context is None:
            context = station_context(*client) if client is not None else station_context()
            self._tls_contexts = {key: resumable(context)}  # the others are stale
        host = parts.hostname or ""

        def verify(transport: asyncio.BaseTransport) -> None:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None and ssl_object.session_reused:
                # the server holds the keys of a session only a server that passed this
                # check (on an earlier connection) was given: no chain was sent to check
                self.tls_rejected = None
                return
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
            self._security_poke()

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
        """Send the queued SecurityEventNotifications in order while registered; returns
        when none is left to send now (:meth:`_security_poke` starts it again). Apart from
        the journal: a CSMS without the 1.6 security extension answers NotImplemented, and
        that must not hold up a transaction message."""
        failures = self._security_failures
        while True:
            wake = self._security_changed
            wake.clear()
            endpoint = self.endpoint
            pending = self.security_log.pending() if endpoint is not None and self.accepted else []
            if endpoint is None or not pending:
                return
            if self.csms_identity() in self.csms_without_security_events:
                # this CSMS said it does not take them: logged here, never sent to it
                self.security_log.unsupported(*(e.seq for e in pending))
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
                    self._csms_refuses_security_events()
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

    def csms_identity(self) -> str | None:
        """The CSMS the station talks to, as remembered about it: the URL it connects
        to (station id included, no password in it); None when not running."""
        target = self._target
        if target is None:
            return None
        parts = urlsplit(target)
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

    def _csms_refuses_security_events(self) -> None:
        """The CSMS answered a SecurityEventNotification NotImplemented/NotSupported (a
        1.6 central system without the security extension): it does not take them, so
        none is sent to it again -- remembered in the saved state, across reconnects and
        restarts; the events stay in the station's own security log."""
        csms = self.csms_identity()
        if csms is None or csms in self.csms_without_security_events:
            return
        log.info(
            "%s does not take SecurityEventNotification: none is sent to it again;"
            " the events stay in the security log",
            csms,
        )
        self.csms_without_security_events = self.csms_without_security_events | {csms}
        self.save_state()

    def _ping_interval(self, interval: int) -> float | None:
        """websockets' own ping interval in wall seconds (the clock may run scaled); None:
        off -- WebSocketPingInterval 0, or the learning keep-alive pings instead."""
        if interval <= 0 or self._learning():
            return None
        return self.clock.real_seconds(interval)

    # -- the keep-alive that learns the path (station/keepalive.py) -------------------

    def _learning(self) -> bool:
        """The keep-alive learns: pings on, not set by the CSMS, a ceiling above the start."""
        start = self._ping_setting()
        return start > 0 and not self._ping_from_csms and self._ping_ceiling() > start

    def ping_interval_set_by_csms(self) -> None:
        """ChangeConfiguration / SetVariables of WebSocketPingInterval: the CSMS's value wins
        over what was learned, from the next connection on (and across restarts)."""
        self._ping_from_csms = True
        self.save_state()

    def learner(self, link: Link | None = None) -> KeepaliveLearner:
        """What the keep-alive learned on ``link`` (default: the link in use)."""
        name = str(link or self.link)
        start, ceiling = float(self._ping_setting()), float(self._ping_ceiling())
        learner = self._learners.get(name)
        if learner is None:
            learner = KeepaliveLearner.from_json(self._keepalive_saved.get(name), start, ceiling)
            self._learners[name] = learner
        else:
            learner.configure(start, ceiling)
        return learner

    def _keepalive_state(self) -> dict[str, Any]:
        links = dict(self._keepalive_saved)
        links.update({name: learner.to_json() for name, learner in self._learners.items()})
        return {"csms_set": self._ping_from_csms, "links": links}

    @property
    def ping_interval_now(self) -> float:
        """The keep-alive interval in use, s of station time (0: off)."""
        if self._learning():
            learner = self.learner(self._ws_link)
            return learner.trial if learner.trial is not None else learner.connected()
        return float(self._ping_setting())

    def _keepalive_start(self, ws: Any, link: Link) -> None:
        """Ping after the learned interval of quiet (bytes either way keep a NAT mapping as
        well as a ping does: a charging station's meter values need no pings). A timer,
        and a task only while a ping waits for its pong: a fleet holds 10,000 of these."""
        self._ka = _KeepaliveRun(ws, link, self.learner(link).connected())
        self._keepalive_due()

    def _keepalive_stop(self) -> None:
        run, self._ka = self._ka, None
        if run is not None:
            run.stop()

    def _keepalive_due(self) -> None:
        run = self._ka
        if run is None:
            return
        run.timer = None
        quiet = self._seconds() - self._last_heard
        if quiet < run.interval:
            run.timer = self.clock.call_later(run.interval - quiet, self._keepalive_due)
            return
        run.ping = asyncio.get_running_loop().create_task(self._keepalive_ping(run, quiet))

    async def _keepalive_ping(self, run: _KeepaliveRun, quiet: float) -> None:
        """A pong proves the interval holds and the next one is longer; no pong means the
        path dropped the connection at that interval: back to the last that held, and
        close."""
        learner = self.learner(run.link)
        try:
            pong = await run.ws.ping()
            wait = self.pong_timeout
            if wait is None:
                wait = max(self.clock.real_seconds(PONG_WAIT_S), MIN_PONG_WAIT_REAL_S)
            async with asyncio.timeout(wait):
                await pong
        except (TimeoutError, websockets.exceptions.ConnectionClosed):
            failed = learner.dropped(quiet)
            log.warning(
                "keep-alive over %s: no pong after %.0f s of quiet; back to %.0f s",
                run.link,
                quiet,
                failed,
            )
            self.save_state()
            transport = getattr(run.ws, "transport", None)
            if transport is not None:
                transport.abort()  # the path dropped it: no closing handshake
            return
        before = learner.trial
        run.interval = learner.held_after(quiet)
        if run.interval != before:
            log.info(
                "keep-alive over %s: %.0f s of quiet held; next %.0f s",
                run.link,
                quiet,
                run.interval,
            )
        self.save_state()  # what was learned survives a power cut (once per ping: cheap)
        run.ping = None
        if self._ka is run:
            self._keepalive_due()

    def _heartbeats_due(self) -> None:
        """Heartbeat after HeartbeatInterval without any other CALL (G02.FR.05), and at
        least once a day however busy the link is (G02.FR.07). A timer, and a task only
        while a Heartbeat is out: a fleet holds 10,000 of these."""
        self._heartbeat_timer = None
        if self.endpoint is None:
            return
        self._refresh_data_saving()
        interval = self.effective_heartbeat_interval()
        if interval <= 0:  # heartbeats off: look again now and then
            self._heartbeat_timer = self.clock.call_later(
                DEFAULT_BOOT_RETRY_S, self._heartbeats_due
            )
            return
        now = self._seconds()
        due = self.connection.heartbeat_due_at(interval)
        assert due is not None
        if now < due:
            self._heartbeat_timer = self.clock.call_later(due - now, self._heartbeats_due)
            return
        self.connection.handle(HeartbeatSent(now))
        self._heartbeat_task = asyncio.get_running_loop().create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        await self.call_quietly("Heartbeat", {})
        self._heartbeat_task = None
        self._heartbeats_due()

    def _heartbeats_stop(self) -> None:
        timer, self._heartbeat_timer = self._heartbeat_timer, None
        if timer is not None:
            timer.cancel()
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None:
            task.cancel()

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
        tx = self.transaction
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

    def _on_tick(self) -> None:
        """Tick, then time the next tick (none when nothing is due: :meth:`wake` asks).

        A timer callback, not a task per station: a fleet's stations tick thousands of
        times a minute, and with a shared :attr:`ticker` those due in one beat tick
        together (their journal entries in one group commit)."""
        self._tick_soon = None
        if self._tick_timer is not None:
            self._tick_timer.cancel()
            self._tick_timer = None
        if not self._running:
            return
        try:
            self.tick()
            delay = self.next_tick_in()
        except Exception:
            log.exception("station tick failed")
            delay = self.tick_interval or DEFAULT_TICK_S
        if delay is not None and self._running and self._tick_timer is None:
            self._tick_timer = self.ticker.call_later(delay, self._on_tick)

    def _start_ticking(self) -> None:
        self._running = True
        if self._tick_soon is None:
            self._tick_soon = asyncio.get_running_loop().call_soon(self._on_tick)

    def _stop_ticking(self) -> None:
        self._running = False
        for timer in (self._tick_timer, self._tick_soon):
            if timer is not None:
                timer.cancel()
        self._tick_timer = self._tick_soon = None

    # -- the journal and the connection, the same in both versions ---------------------

    async def deliver_journal(self) -> None:
        """Send journal entries in order while registered; returns when there is nothing
        to send now (:meth:`_deliver_soon` starts it again: a registration, an entry, the
        direct delivery's answer). A task only while it has work: a fleet's ten thousand
        stations would each hold one idle."""
        while True:
            self._changed.clear()
            endpoint = self.endpoint
            if endpoint is None or not self.accepted or self._in_flight is not None:
                return
            now = self._seconds()
            entry = self.journal.head()  # next_due(now), in one query
            if entry is None:
                return
            if entry.next_attempt_at > now:  # a retry: waits here, or for an earlier wake
                await self._wait_change(entry.next_attempt_at - now)
                continue
            self._delivering = True
            try:
                self.journal.flush()  # durable before it is sent (a fleet's group commit)
                try:
                    result = await self._send(endpoint, entry.action, entry.payload, entry.bare)
                except OcppError as exc:
                    self._delivery_failed(entry, endpoint, exc)
                    continue
                self._delivered(entry, result)
            finally:
                self._delivering = False

    def _delivered(self, entry: Entry, result: dict[str, Any]) -> None:
        self.journal.acknowledge(entry.seq, result)
        self._on_delivered(entry, result)

    def _delivery_failed(self, entry: Entry, endpoint: OcppEndpoint, exc: OcppError) -> None:
        if endpoint is not self.endpoint or isinstance(exc, ConnectionLost):
            return  # the connection was lost: not a failure, resend after reconnect
        log.warning("%s (journal %d) failed: %s", entry.action, entry.seq, exc)
        # a CALLERROR, or no answer on a live connection: a failure to process
        attempts_max, retry_interval = self._retry_rules()
        self.journal.failed_attempt(
            entry.seq,
            self._seconds(),
            attempts_max=attempts_max,
            retry_interval=retry_interval,
        )

    def _send_head_now(self) -> None:
        """The direct delivery of a shared journal's entry, after its group commit: sent
        from this callback and answered in :meth:`_head_answered`, where deliver_journal
        would wake twice per entry (a fleet journals ten thousand samples a minute).
        Anything out of the ordinary is left to deliver_journal."""
        self._direct_due = False
        endpoint = self.endpoint
        if self._delivering or self._in_flight is not None:
            return  # one entry out at a time; whoever has one out looks at the head next
        entry = self.journal.head()
        if entry is None:
            return
        now = self._seconds()
        if endpoint is None or not self.accepted or entry.next_attempt_at > now:
            self._deliver_soon()
            return
        try:
            payload = entry.payload if entry.bare else compact(entry.payload)
            answer = endpoint.call_soon(entry.action, payload)
        except OcppError:  # the request itself is refused: deliver_journal records that
            self._deliver_soon()
            return
        self.connection.handle(MessageSent(now))
        self._in_flight = entry
        answer.add_done_callback(functools.partial(self._head_answered, entry, endpoint))

    def _head_answered(
        self, entry: Entry, endpoint: OcppEndpoint, answer: asyncio.Future[dict[str, Any]]
    ) -> None:
        self._in_flight = None
        try:
            if answer.cancelled():
                pass
            elif (exc := answer.exception()) is None:
                self._delivered(entry, answer.result())
                if self.journal.head() is None:
                    return  # nothing more: deliver_journal sleeps on
            elif isinstance(exc, OcppError):
                self._delivery_failed(entry, endpoint, exc)
            else:
                log.error("%s (journal %d) failed", entry.action, entry.seq, exc_info=exc)
        except Exception:
            log.exception("%s (journal %d): its answer was not handled", entry.action, entry.seq)
        self._deliver_soon()  # what is left (the next entry, a retry) is deliver_journal's

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
        if not self._started_up:
            self._started_up = True
            self.security_event("StartupOfTheDevice", f"firmware {self.firmware.version}")
        self._start_ticking()
        self.firmware.start()
        self._security_poke()
        self._deliver_soon()
        loops: list[asyncio.Task[None]] = []
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
                    await self.clock.sleep(self._failed_attempt().delay)
                    continue
                address, headers = self.connection_target(target)
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
                        await self._pause(self._failed_attempt().delay)
                        continue
                    if link is not None and link != network.active_link:
                        sock = route.get("sock")
                        if sock is not None:
                            sock.close()
                        continue  # the link changed while connecting: use the new one
                if link is not None:
                    self.link = link
                    self._ws_link = link
                session_key = _session_key(target)
                offered = self._tls_sessions.get(session_key) if tls else None
                gate = _Gate(self.connect_gate)
                try:
                    await gate.enter()
                    # awaited, not "async with": the connect object and the resuming
                    # block are dropped once connected (~1 KB a connection of a fleet)
                    with resuming(offered):
                        ws = await websockets.connect(
                            address,
                            subprotocols=[Subprotocol(self.ocpp_version.subprotocol)],
                            additional_headers=headers or None,
                            open_timeout=self.call_timeout,
                            ping_interval=self._ping_interval(self._ping_setting()),
                            **self._compression_options(),
                            create_connection=counting_factory(self._count, verify),
                            **({"proxy": _env_proxy(address)} | route),
                            **tls,
                        )
                    try:
                        gate.leave()
                        _forget_handshake(ws)
                        self._set_offline(None)
                        if tls:
                            self._remember_session(session_key, ws)
                        if link is not None and network is not None:
                            if link != network.active_link:  # it changed while connecting
                                self._link_switched = True
                                ws.transport.abort()  # no closing handshake on a dead link
                                continue
                            log.warning("connected to %s over %s", target, link)
                        try:
                            await self.serve(ws)
                        finally:
                            if tls:  # TLS 1.3: the tickets come after the handshake
                                self._remember_session(session_key, ws)
                    finally:
                        await ws.close()
                        del ws
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
                    gate.leave()
                    self._ws_link = None
                dropped, self._dropped = self._dropped, None
                if self._link_switched:
                    self._set_offline(f"moving to {self.link}")
                    continue  # closed for a better or working link: no back-off
                await self._pause((dropped or self._failed_attempt()).delay)
        finally:
            if network is not None and self._on_link_change in network.link_listeners:
                network.link_listeners.remove(self._on_link_change)
            if network is not None and network.clock is not None:
                # the clock (and network) may serve the next station (setup re-pointed)
                network.clock.off_step(self.clock_changed)
                self._network_clock = None
            self._stop_ticking()
            await self.firmware.stop()
            security, self._security_task = self._security_task, None
            await _cancel(security)
            delivery, self._delivery_task = self._delivery_task, None
            await _cancel(delivery)
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    def _remember_session(self, key: str, ws: Any) -> None:
        """Keep the connection's TLS session for the next connection to this CSMS (a
        resumed handshake: no certificate chain, one round trip less)."""
        transport = getattr(ws, "transport", None)
        ssl_object = None if transport is None else transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        self.tls_resumed = bool(ssl_object.session_reused)
        session = ssl_object.session
        if session is not None:
            self._tls_sessions[key] = session

    def _failed_attempt(self) -> Reconnect:
        """A connection attempt was not made or failed: when to try again."""
        (action,) = self.connection.handle(ConnectFailed(self._seconds()))
        assert isinstance(action, Reconnect)
        return action

    async def serve(self, ws: Any) -> None:
        """Run one connection until it closes."""
        endpoint = OcppEndpoint(
            ws,
            self.ocpp_version,
            self._handlers(),
            call_timeout=self.call_timeout,
            observer=self.observer,
            validate_outgoing=self.validate_outgoing,
        )
        if isinstance(ws, CountingConnection):
            ws.take_text = endpoint.take_response
        self._ws = ws
        self.endpoint = endpoint
        actions = self.connection.handle(Connected(self._seconds(), self._boot_data()))
        # not held once done (boot and status take a moment, the connection lives long)
        session = asyncio.get_running_loop().create_task(self._session(endpoint, actions))
        session.add_done_callback(self._session_done)
        self._session_task = session
        del session
        if self._learning():
            self._last_heard = self._seconds()
            self._keepalive_start(ws, self._ws_link or self.link)
        try:
            await endpoint.run()
        finally:
            self._keepalive_stop()
            self._heartbeats_stop()
            # in the same step as run()'s end: the failed calls see that the connection went
            self.endpoint = None
            for action in self.connection.handle(Disconnected(self._seconds())):
                if isinstance(action, Reconnect):
                    self._dropped = action
            self._ws = None
            self.wake()
            await _cancel(self._session_task)

    def _session_done(self, task: asyncio.Task[None]) -> None:
        if self._session_task is task:
            self._session_task = None

    async def disconnect(self) -> None:
        """Close the connection (run() reconnects): after a Reset or a security change."""
        ws = self._ws
        if ws is not None:
            await ws.close()

    # -- boot, status, heartbeat -----------------------------------------------------------

    async def _session(self, endpoint: OcppEndpoint, actions: list[ConnectionAction]) -> None:
        """What the station does on a new connection: boot if needed (else go straight
        on), the status of its connectors, heartbeats."""
        booted = any(isinstance(action, SendBootNotification) for action in actions)
        if booted:
            await self._boot(endpoint)
        else:
            self.wake()
        for payload in self._status_payloads():
            # after a boot every connector; after a reconnect those that changed
            connector_id = payload["connectorId"]
            status = payload[self.status_field]
            if booted or self._reported.get(connector_id) != status:
                self._reported[connector_id] = status
                await self.call_quietly("StatusNotification", payload)
        if self._security_profile() >= 3:
            self.spawn(renew_if_expiring(self))  # A03: renew a certificate near its expiry
        if self.endpoint is endpoint:
            self._heartbeats_due()  # from here on a timer, not this task

    async def _boot(self, endpoint: OcppEndpoint) -> None:
        """BootNotification until Accepted, after the interval the CSMS asks for (or
        sooner: a BootNotification the CSMS triggered meanwhile was Accepted)."""
        while not self.connection.registered:
            payload = self._boot_payload()
            try:
                result = await self._send(endpoint, "BootNotification", payload)
            except OcppError as exc:
                log.info("BootNotification failed: %s", exc)
                self.connection.handle(BootFailed(self._seconds()))
            else:
                if self._boot_answered(result, payload):
                    return
            delay = self.connection.boot_retry_in(self._seconds())
            self._boot_wake.clear()
            await _wait_event(
                self._boot_wake, self.clock, DEFAULT_BOOT_RETRY_S if delay is None else delay
            )

    def _boot_answered(self, result: dict[str, Any], payload: dict[str, Any]) -> bool:
        """The CSMS answered the BootNotification ``payload`` with ``result``: True when
        it Accepted it (the station is registered, with the CSMS's heartbeat interval)."""
        answer = BootAnswered(
            self._seconds(),
            str(result["status"]),
            int(result["interval"]),
            self._boot_data(payload),
        )
        for action in self.connection.handle(answer):
            if isinstance(action, Registered):
                if action.interval > 0:
                    self.heartbeat_interval = action.interval
                    self._store_heartbeat_interval(action.interval)
                self.firmware.on_boot_accepted()  # a new firmware proved itself
                self.wake()
                return True
        return False

    def boot_needed(self) -> bool:
        """BootNotification on the next connection? Yes after a (re)start or a Reset, when
        the boot data changed, or while not yet Accepted; a plain reconnect: no."""
        return self.connection.boot_due(self._boot_data())

    async def send_triggered(self, message: str, connector_id: int | None = None) -> None:
        """Send the message a TriggerMessage asked for; ``connector_id``: the connector
        it named (a StatusNotification of that connector only), None: all of them."""
        if message == "BootNotification":
            payload = self._triggered_boot_payload()
            try:
                result = await self.call("BootNotification", payload)
            except OcppError:
                return
            if self._boot_answered(result, payload):
                self._boot_wake.set()  # a boot waiting for its retry: registered now
        elif message == "Heartbeat":
            await self.call_quietly("Heartbeat", {})
        elif message == "StatusNotification":
            for payload in self._status_payloads():
                if connector_id is None or payload["connectorId"] == connector_id:
                    await self.call_quietly("StatusNotification", payload)
        else:
            await self._send_triggered(message)

    def _triggered_boot_payload(self) -> dict[str, Any]:
        """The BootNotification a TriggerMessage asked for (2.0.1: reason Triggered)."""
        return self._boot_payload()

    # -- the journal and the delivery of its entries -----------------------------------

    def _journal_appended(self) -> None:
        """A journal entry is waiting: a shared journal's (a fleet's) is sent right after
        its group commit when nothing else is out (:meth:`_send_head_now`); otherwise
        deliver_journal is woken."""
        database = self.journal.database
        if database is None or self._delivering or self._in_flight is not None or not self.online:
            self._deliver_soon()
        elif not self._direct_due:
            self._direct_due = True
            database.when_durable(self._send_head_now)

    # -- the version's hooks ------------------------------------------------------------

    @property
    def ocpp_version(self) -> OcppVersion:
        """The OCPP version the station speaks."""
        raise NotImplementedError

    @property
    def status_field(self) -> str:
        """The field of a StatusNotification that holds the status (1.6 ``status``, 2.0.1
        ``connectorStatus``)."""
        raise NotImplementedError

    def _handlers(self) -> Handlers:
        """The handlers of the CSMS's CALLs on a new connection."""
        raise NotImplementedError

    def _auth_config(self) -> AuthConfig:
        """The local authorization rules of the configuration."""
        raise NotImplementedError

    def _profile_limits(self) -> tuple[int, int]:
        """(charging profiles installed at most, highest stack level)."""
        raise NotImplementedError

    def _default_backoff(self) -> ReconnectBackoff:
        """The reconnect back-off when none was given."""
        raise NotImplementedError

    def _configured_heartbeat_interval(self) -> int:
        """The heartbeat interval of the configuration."""
        raise NotImplementedError

    def _store_heartbeat_interval(self, interval: int) -> None:
        """Keep the interval an Accepted BootNotification gave in the configuration."""
        raise NotImplementedError

    def _aligned_interval(self) -> int:
        """The clock-aligned meter values interval, 0: off."""
        raise NotImplementedError

    def _aligned_measurands(self) -> list[str]:
        """The measurands of clock-aligned meter values."""
        raise NotImplementedError

    def _ping_setting(self) -> int:
        """WebSocketPingInterval, s of station time."""
        raise NotImplementedError

    def _ping_ceiling(self) -> int:
        """PlugStreamPingIntervalMax: the learning keep-alive's ceiling, s (0: no learning)."""
        raise NotImplementedError

    def _retry_rules(self) -> tuple[int, int]:
        """(attempts, retry interval) of a transaction message that failed to process."""
        raise NotImplementedError

    def _security_profile(self) -> int:
        """SecurityProfile (1.6) / SecurityCtrlr.SecurityProfile (2.0.1)."""
        raise NotImplementedError

    def _store_security_profile(self, profile: int) -> None:
        """Keep a raised (and checked) security profile."""
        raise NotImplementedError

    def password(self) -> str | None:
        """The HTTP Basic password: AuthorizationKey (1.6) / SecurityCtrlr.BasicAuthPassword
        (2.0.1), None when not set."""
        raise NotImplementedError

    def set_password(self, password: str) -> None:
        """Store a new HTTP Basic password (16..40 printable characters, 1.6 whitepaper
        A00.FR.304 / 2.0.1 A00.FR.205); ValueError if it is not one. Used from the next
        connection on."""
        raise NotImplementedError

    def _boot_payload(self) -> dict[str, Any]:
        """The BootNotification request."""
        raise NotImplementedError

    def _boot_data(self, payload: dict[str, Any] | None = None) -> object:
        """What a BootNotification (``payload``, default: the next one) says of the
        station: when it changes, the station boots again."""
        raise NotImplementedError

    async def _send_triggered(self, message: str) -> None:
        """Send a triggered message other than BootNotification, Heartbeat and
        StatusNotification."""
        raise NotImplementedError

    def _status_value(self, change: StatusChanged) -> str:
        """The status a StatusNotification reports for ``change``."""
        raise NotImplementedError

    def connector_status(self) -> str:
        """The connector's status now, as this station's OCPP version names it."""
        return self._status_value(self.connector.current_status(self.now()))

    async def swipe(self, id_token: str) -> bool:
        """A driver presents ``id_token`` at the reader: whether it was accepted."""
        raise NotImplementedError

    def _status_payload(self, change: StatusChanged) -> dict[str, Any]:
        """The StatusNotification of ``change``."""
        raise NotImplementedError

    def _status_payloads(self) -> list[dict[str, Any]]:
        """The StatusNotifications of the current status of every connector."""
        raise NotImplementedError

    def _end_interrupted_transaction(self, state: Mapping[str, Any], saved: dict[str, Any]) -> None:
        """Journal the end of the transaction ``saved`` that was running when the
        process stopped (``state``: the whole saved state)."""
        raise NotImplementedError

    def _on_delivered(self, entry: Entry, result: dict[str, Any]) -> None:
        """A journal entry was answered with ``result``."""
        raise NotImplementedError

    def _plugged_in(self) -> None:
        """A car was plugged in: start a transaction if an id is authorized already."""
        raise NotImplementedError

    def _end_on_unplug(self) -> None:
        """Journal the end of the running transaction: the car was unplugged."""
        raise NotImplementedError

    def _after_end(self) -> None:
        """A transaction ended or the car left: what waited for it (2.0.1 OnIdle Reset)."""

    def _stop_on_fault(self) -> None:
        """Stop the running transaction: a fault tripped the contactor."""
        raise NotImplementedError

    def _connection_timeout(self, now: datetime) -> None:
        """Forget an authorization without a car after the configured timeout."""
        raise NotImplementedError

    def _timeouts_due(self, now: datetime) -> list[datetime]:
        """When the timeouts of :meth:`_connection_timeout` are due."""
        raise NotImplementedError

    def _measurements(self) -> Measurements:
        """The meter as the version sends it."""
        raise NotImplementedError

    def _build_meter_value(
        self, measurements: Measurements, measurands: list[str], context: str, at: datetime
    ) -> dict[str, Any] | None:
        """A MeterValue of ``measurands`` (None: nothing to send)."""
        raise NotImplementedError

    def _meter_values_request(self, value: dict[str, Any]) -> dict[str, Any]:
        """A MeterValues request of one reading, outside a transaction."""
        raise NotImplementedError

    def _journal_meter_values(
        self, measurements: Measurements, now: datetime, slot: datetime | None
    ) -> None:
        """Journal the running transaction's meter values that are due (``slot``: a
        clock-aligned grid point that is due)."""
        raise NotImplementedError


Station = StationRuntime[Any]
"""A PlugStream station of either OCPP version."""


def _session_key(target: str) -> str:
    """The CSMS a TLS session belongs to: host and port, without credentials or path."""
    parts = urlsplit(target)
    return f"{parts.hostname}:{parts.port or default_port(parts.scheme)}"


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


_NONE: Final[frozenset[str]] = frozenset()  # what nearly every station holds: shared


class _KeepaliveRun:
    """The keep-alive of one connection: its interval now, its timer, a ping out."""

    __slots__ = ("interval", "link", "ping", "timer", "ws")

    def __init__(self, ws: Any, link: Link, interval: float) -> None:
        self.ws = ws
        self.link = link
        self.interval = interval
        self.timer: Timer | None = None
        self.ping: asyncio.Task[None] | None = None

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.ping is not None:
            self.ping.cancel()
            self.ping = None


_NO_HEADERS: Final = Headers()


def _forget_handshake(ws: Any) -> None:
    """Drop the HTTP Upgrade's headers, which websockets keeps for the connection's life
    (3.7 KB a connection: a fleet's stations hold more in them than in their state).
    The response object stays: websockets tells the handshake from frames by it."""
    ws.request = None
    response = getattr(ws, "response", None)
    if response is not None:
        response.headers = _NO_HEADERS


class _Gate:
    """One connection attempt's hold on a :attr:`StationRuntime.connect_gate`: entered
    before connecting, left once, when the handshake is done or the attempt failed."""

    __slots__ = ("_held", "_semaphore")

    def __init__(self, semaphore: asyncio.Semaphore | None) -> None:
        self._semaphore = semaphore
        self._held = False

    async def enter(self) -> None:
        if self._semaphore is not None:
            await self._semaphore.acquire()
            self._held = True

    def leave(self) -> None:
        if self._held and self._semaphore is not None:
            self._held = False
            self._semaphore.release()


async def _cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has ended, whatever it ended with."""
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _wait_event(event: Signal, clock: Clock, timeout: float | None) -> None:
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
