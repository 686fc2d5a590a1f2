"""The OCPP gateway of PlugStream Cloud: one WebSocket per station, on the ASGI server.

For each station that connects to ``/ocpp/{stationId}`` it

- checks the station id (OCPP-J 2.0.1 part 4 §3.1.1: an identifierString of at
  most 48 characters without ':'), refusing others with HTTP 400;
- refuses unknown stations with HTTP 404, unless auto-registration is on;
- checks HTTP Basic credentials (security profiles 1 and 2): the username is the
  station id, the password is checked by the store; HTTP 401 otherwise;
- for a station of security profile 3, checks the TLS client certificate instead
  (mutual TLS: its chain was verified against ``tls_client_ca`` in the handshake) and
  that its subject CN is the station id (2.0.1 part 2 A00.FR.405) and, when
  ``tls_client_organization`` is set, its O names the CSO (A00.FR.404); Basic credentials
  alone never admit it. Profiles 2 and 3 are refused over plain ``ws://``. Each
  refusal counts in ``failed_logins`` and is kept in ``security_events``;
- negotiates the subprotocol, newest first; a station that offers none we speak is
  refused at the upgrade with 400, no WebSocket (the OCA's test cases TC_B_58_CSMS of
  the 2.0.1 errata 2025-09 and TC_088 of 1.6, which the OCTT holds the CSMS to, over the
  older "complete the handshake, then close" of OCPP-J 1.6 §3.1.2 / 2.0.1 part 4 §3.1.2);
- runs an :class:`OcppEndpoint` over the socket with the version's handlers, and
  logs every frame in and out. A frame received is kept before it is answered: its
  row joins the message log's write that is queued already (or starts one) before
  the handler's data is written, so the writer (FIFO, group commit) commits both
  together or the row first; the answer waits for that commit, which only a handler
  that wrote nothing has not seen yet (``AsgiTransport.send``). When the log is behind, frames we send are dropped and
  counted, frames received wait for room (back-pressure on the station's socket).

What admission needs of a station (its profile, lenient flag, whether it has a
password) is remembered by ``store.stations`` for a while; registrations made in this
process replace it at once, and passwords are always checked against the stored hash.
Failed logins and unknown station ids are throttled per station id and per source
address (:mod:`plugstream.cloud.logins`): a locked one is refused with 429 and
``Retry-After`` before any store read or argon2 work, the refusal held back for up to
``login_tarpit_s`` so each guesser's next try waits too. With ``auto_register`` a new station's first Basic password
becomes its own; one without credentials is registered (profile 0) only with
``auto_register_unsecured``. The
gateway is a raw ASGI handler (``serve_asgi``) holding nothing of the handshake
once admitted: a server keeps tens of thousands of stations connected.

The newest connection of a station wins: the old one is closed with 1000
"replaced by a new connection", and its teardown leaves the new one alone. In a cluster
(``--bus``, :mod:`plugstream.cloud.bus.cluster`) that holds across nodes: a connection is
accepted only once presence names this node and the node that held the station let go,
and :meth:`Gateway.call` reaches a station on another node through its node.
Keep-alive is the server's WebSocket ping/pong (uvicorn drops a station whose
pongs stop for ``ping_timeout``); a late heartbeat never drops anyone.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from plugstream.cloud.config import CloudConfig
from plugstream.cloud.context import (
    CloudClock,
    HandlerContext,
    HandlersFactory,
    SecurityEvent,
    utc_now,
)
from plugstream.cloud.logins import LoginThrottle, PoolBusy, ThrottleLimits
from plugstream.cloud.stations import StationOffline, valid_station_id
from plugstream.ocpp import (
    CallReceived,
    CallTimeout,
    ConnectionLost,
    Event,
    OcppEndpoint,
    OcppVersion,
    ProtocolViolation,
    SendReceived,
)

if TYPE_CHECKING:
    from plugstream.cloud.bus.cluster import Cluster
    from plugstream.cloud.bus.presence import Holder
    from plugstream.cloud.storage import Store
    from plugstream.cloud.storage.stations import Admission

log = logging.getLogger("plugstream.cloud.gateway")

#: what a transport hands each frame it sends to: (station id, "out", text) → the future
#: of the row's commit, None when the frame was dropped
FrameLog = Callable[[str, str, str], "asyncio.Future[None] | None"]
#: what a transport hands each frame it receives to: (station id, text) → the future of
#: the row's commit, once the row is queued (after waiting for room)
ReceivedLog = Callable[[str, str], Awaitable["asyncio.Future[None]"]]


class EventPublisher(Protocol):
    async def publish(self, kind: str, station_id: str, data: dict[str, Any]) -> None: ...


REALM = "PlugStream"
REPLACED = "replaced by a new connection"
# Frames waiting to be written to the message log (``store.messages.pending``); beyond this
# a frame received waits for room. A ramp-up of 200 stations/s sends ~3,000 frames/s while
# the store's writer, busy with the stations' own writes, commits every second or two:
# 10,000 (3 s) overflowed at 10,000 stations. 50,000 frames hold ~15 s of a ramp-up in
# ~25 MB at most. All that wait are written at once, in the writer's next commit.
LOG_QUEUE_SIZE = 50_000
# Beyond this, frames we send are dropped and counted: the rest of the queue is kept for
# frames received, which are answered only once logged and so are never dropped.
LOG_OUT_LIMIT = LOG_QUEUE_SIZE * 4 // 5
SEEN_EVERY_S = 60.0  # last_seen is written at most this often per connection
#: why a login was refused, the keys of ``Gateway.login_refusals`` (the metrics' reasons):
#: an id that is no identifierString, an unknown station, wrong or missing credentials, a
#: TLS profile over plain ws://, a client certificate not the station's, a handshake TLS
#: refused, a station id or address locked by earlier failures (429), the pool busy (503)
LOGIN_REFUSAL_REASONS = (
    "invalid_station_id",
    "unknown_station",
    "credentials",
    "no_tls",
    "certificate",
    "tls_handshake",
    "throttled",
    "busy",
)
#: a command's outcome, as ``Gateway.on_call`` is told it
CALL_OUTCOMES = ("ok", "error", "timeout", "offline")


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(username, password)`` of an ``Authorization: Basic`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _is_call(message: str) -> bool:
    """Whether an OCPP-J frame we send is a CALL (``[2,...``), not an answer."""
    return message[1:2] == "2" or message.lstrip("[ \t\r\n")[:1] == "2"


def _failed(future: asyncio.Future[Any]) -> bool:
    return future.cancelled() or future.exception() is not None


def _call_action(message: str) -> str:
    """The action of a CALL we send (``[2,"id","Action",{...}]``)."""
    try:
        return str(orjson.loads(message)[2])
    except (orjson.JSONDecodeError, IndexError, TypeError):
        return "unknown"


class AsgiTransport:
    """One station's ASGI WebSocket as a :class:`plugstream.ocpp.Transport`.

    ``recv`` raises :class:`WebSocketDisconnect` once the socket has ended; a
    binary message is handed on as text when it is UTF-8 (else as bytes), so the
    core answers it. ``send`` on a socket that has gone drops the text: the
    reading side notices the end and fails what is still waiting. Every frame is
    handed to the gateway's message log (``log_received`` waits while the log is full;
    ``log_frame`` drops), and an answer (a frame other than a CALL) is sent only once
    the frames received before it are committed: it is the acknowledgement. What the
    station got wrong is counted in ``violations``. Slotted, and nothing of the
    handshake is kept: there are tens of thousands of these. The requests (CALLs, 2.1
    SENDs) received and the CALLs sent are counted by action in ``received`` and ``sent``,
    the gateway's counters that its metrics read.
    """

    __slots__ = (
        "_log_frame",
        "_log_received",
        "_logged",
        "_notify",
        "_receive",
        "_received",
        "_send",
        "_sent",
        "_violations",
        "close_code",
        "closed",
        "station_id",
    )

    def __init__(
        self,
        receive: Receive,
        send: Send,
        station_id: str,
        *,
        log_frame: FrameLog,
        log_received: ReceivedLog,
        violations: collections.Counter[str],
        notify: Callable[[str], None] = lambda station_id: None,
        received: collections.Counter[str] | None = None,
        sent: collections.Counter[str] | None = None,
    ) -> None:
        self._receive = receive
        self._received = received if received is not None else collections.Counter()
        self._sent = sent if sent is not None else collections.Counter()
        self._notify = notify
        self._send = send
        self._log_frame = log_frame
        self._log_received = log_received
        # the commit of the newest frame received's row (FIFO: of every one before it too)
        self._logged: asyncio.Future[Any] | None = None
        self._violations = violations
        self.station_id = station_id
        self.closed = False
        self.close_code: int | None = None

    async def send(self, message: str) -> None:
        if self.closed:
            return
        logged = self._logged
        answer = not _is_call(message)
        if logged is not None and answer:
            # An answer acknowledges: not before what was received is kept. Mostly done
            # already, committed with the handler's own write.
            if not logged.done():
                await asyncio.wait((logged,))  # not cancelled with us: its rows are many
            if _failed(logged):
                log.warning("station %s: message log failed, not answering", self.station_id)
                await self.close(1011, "message log unavailable")
                return
            if self._logged is logged:
                self._logged = None
            if self.closed:
                return
        self._log_frame(self.station_id, "out", message)
        try:
            await self._send({"type": "websocket.send", "text": message})
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.closed = True
            return
        if answer:
            # What the station reported is committed and acknowledged: watchers may read it.
            self._notify(self.station_id)
        else:
            self._sent[_call_action(message)] += 1  # our CALLs are few: parsed for the count

    async def recv(self) -> str | bytes:
        if self.closed:
            raise WebSocketDisconnect(self.close_code or 1006)
        try:
            message = await self._receive()
        except RuntimeError as exc:  # receive after the disconnect
            self.closed = True
            raise WebSocketDisconnect(1006) from exc
        if message["type"] == "websocket.disconnect":
            self.closed = True
            self.close_code = int(message.get("code", 1005))
            raise WebSocketDisconnect(self.close_code, message.get("reason"))
        text: str | None = message.get("text")
        if text is None:
            data: bytes = message.get("bytes") or b""
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                self._keep(
                    await self._log_received(self.station_id, data.decode("utf-8", "replace"))
                )
                return data
        self._keep(await self._log_received(self.station_id, text))
        return text

    def _keep(self, logged: asyncio.Future[Any]) -> None:
        """Await ``logged`` before the next answer, with what is not committed yet: the
        log's writes commit in order, but one that failed must not pass for kept."""
        previous = self._logged
        if previous is None or previous is logged:
            self._logged = logged
        elif not previous.done():
            self._logged = asyncio.gather(previous, logged)
        elif not _failed(previous):  # a failed one stays: the next answer is not sent
            self._logged = logged

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})

    def observe(self, event: Event) -> None:
        """Counts the station's requests by action; counts and logs what the station got
        wrong, a lenient station's accepted slips too."""
        if type(event) is CallReceived:
            self._received[event.action] += 1
            if event.violation is not None:
                self._violations[self.station_id] += 1
                log.warning(
                    "station %s (lenient): accepted %s despite %s",
                    self.station_id,
                    event.action,
                    event.violation,
                )
        elif type(event) is ProtocolViolation:
            self._violations[self.station_id] += 1
        elif type(event) is SendReceived:
            self._received[event.action] += 1


class Connection:
    """One live station connection."""

    __slots__ = (
        "_call_lock",
        "connected_at",
        "endpoint",
        "last_seen_write",
        "station_id",
        "transport",
        "version",
    )

    def __init__(
        self,
        station_id: str,
        version: OcppVersion,
        transport: AsgiTransport,
        endpoint: OcppEndpoint,
        connected_at: datetime,
    ) -> None:
        self.station_id = station_id
        self.version = version
        self.transport = transport
        self.endpoint = endpoint
        self.connected_at = connected_at
        self.last_seen_write = 0.0
        self._call_lock: asyncio.Lock | None = None

    @property
    def call_lock(self) -> asyncio.Lock:
        """Made on the first call: most stations are never called."""
        if self._call_lock is None:
            self._call_lock = asyncio.Lock()
        return self._call_lock


SECURITY_EVENTS_KEPT = 1000  # the newest refusals kept in Gateway.security_events


def _client_address(scope: Scope) -> str:
    """The source address of the connection (the key of its login throttle)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _seen_written(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("could not record last_seen: %s", future.exception())


def client_certificate_subject(scope: Scope) -> tuple[str | None, str | None] | None:
    """(CN, O) of the subject of the client certificate the station presented (its chain
    verified by TLS), from the ASGI TLS extension; None without one."""
    tls = scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    try:
        subject = x509.load_pem_x509_certificate(chain[0].encode("ascii")).subject
    except ValueError:
        return None
    cn = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    org = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (str(cn[0].value) if cn else None, str(org[0].value) if org else None)


@functools.lru_cache(maxsize=4)
def _client_cas(path: Path, mtime_ns: int) -> tuple[x509.Certificate, ...]:
    """The CA file, parsed once per version of the file (a reconnect storm reads it once)."""
    return tuple(x509.load_pem_x509_certificates(path.read_bytes()))


def issued_by_client_ca(scope: Scope, client_ca: Any) -> bool:
    """Whether the client certificate was issued by a CA of ``tls_client_ca`` (the CSMS
    root): the TLS layer also trusts the manufacturer root, for the setup service, and a
    manufacturer certificate must not pass for a station certificate (A00.FR.403)."""
    tls = scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain or client_ca is None:
        return False
    try:
        leaf = x509.load_pem_x509_certificate(chain[0].encode("ascii"))
        path = Path(client_ca)
        cas = _client_cas(path, path.stat().st_mtime_ns)
    except (OSError, ValueError):
        return False
    for ca in cas:
        try:
            leaf.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


class Gateway:
    """The live OCPP connections of this node, and the way to call a station.

    It speaks the OCPP versions whose handlers are registered (``handlers=`` or
    :meth:`register`); it is the :class:`~plugstream.cloud.context.CommandSender` and the
    :class:`~plugstream.cloud.context.EventSink` of the context they are made with."""

    def __init__(
        self,
        store: Store,
        config: CloudConfig,
        *,
        handlers: Mapping[OcppVersion, HandlersFactory] | None = None,
        clock: CloudClock | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.clock: CloudClock = clock if clock is not None else utc_now
        self._handlers: dict[OcppVersion, HandlersFactory] = dict(handlers or {})
        self.context = HandlerContext(store, config, self.clock, commands=self, events=self)
        # one bound method for every transport, not one each: tens of thousands of them
        self._frame_log: FrameLog = self.log_frame
        self._received_log: ReceivedLog = self.log_received
        self._live: dict[str, Connection] = {}
        self.failed_logins: collections.Counter[str] = collections.Counter()
        self.security_events: collections.deque[SecurityEvent] = collections.deque(
            maxlen=SECURITY_EVENTS_KEPT
        )
        # Frames that broke the protocol or the schemas, per station since start:
        # refused for strict stations, accepted (and still counted) for lenient ones.
        self.violations: collections.Counter[str] = collections.Counter()
        self.frames_dropped = 0  # message-log entries dropped because the log fell behind
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        # Failed logins per station id and per source address (monotonic time).
        self.login_throttle = LoginThrottle(
            time.monotonic,
            per_station=ThrottleLimits(
                config.login_failures_per_station, config.login_lock_s, config.login_lock_max_s
            ),
            per_address=ThrottleLimits(
                config.login_failures_per_address, config.login_lock_s, config.login_lock_max_s
            ),
        )
        self.throttled_logins = 0  # logins refused (429/503) before their password was checked
        # Refused logins since start by reason (LOGIN_REFUSAL_REASONS), for the metrics.
        self.login_refusals: collections.Counter[str] = collections.Counter(
            dict.fromkeys(LOGIN_REFUSAL_REASONS, 0)
        )
        self.frames_received = 0  # OCPP frames received since start (the console's rate)
        # The stations' requests (CALLs, 2.1 SENDs) received and our CALLs sent, by action.
        self.calls_received: collections.Counter[str] = collections.Counter()
        self.calls_sent: collections.Counter[str] = collections.Counter()
        # Told (action, outcome of CALL_OUTCOMES, seconds) when a call() ends: the metrics'
        # command latency (plugstream.cloud.metrics sets it).
        self.on_call: Callable[[str, str, float], None] | None = None
        # Told the id of a station whose state may have changed: it connected, went away,
        # or had a message answered (its data committed). The console's live view sets it.
        self.on_station_change: Callable[[str], None] | None = None
        self._notify: Callable[[str], None] = self._station_changed
        # Where events go on a node with a bus (plugstream.cloud.bus.events.EventOutbox).
        self.event_outbox: EventPublisher | None = None
        # This node's part in a cluster (join_cluster); None: a node alone holds every station.
        self.cluster: Cluster | None = None

    # -- what the REST API uses ----------------------------------------------------

    def is_connected(self, station_id: str) -> bool:
        """Connected to this node, or to another live node of the cluster."""
        return station_id in self._live or self._holder(station_id) is not None

    def version_of(self, station_id: str) -> OcppVersion | None:
        version = self.holds(station_id)
        if version is not None:
            return version
        holder = self._holder(station_id)
        return holder.version if holder is not None else None

    def live_versions(self) -> dict[str, OcppVersion]:
        """The OCPP version of every connected station, by station id (a snapshot), on
        every node of the cluster."""
        local = self.local_versions()
        if self.cluster is None:
            return local
        return self.cluster.versions() | local

    def local_versions(self) -> dict[str, OcppVersion]:
        """The OCPP version of every station connected to this node."""
        return {sid: conn.version for sid, conn in self._live.items()}

    def node_of(self, station_id: str) -> str | None:
        """The node (``--node-id``) holding the station's connection, if one does."""
        if station_id in self._live:
            return self.config.node_id
        holder = self._holder(station_id)
        return holder.node if holder is not None else None

    def _holder(self, station_id: str) -> Holder | None:
        """The other live node holding the station, as the cluster knows it."""
        cluster = self.cluster
        return cluster.holder(station_id) if cluster is not None else None

    def live_nodes(self) -> dict[str, str]:
        """The node holding each connected station, by station id (a snapshot)."""
        here = self.config.node_id
        local = dict.fromkeys(self._live, here)
        if self.cluster is None:
            return local
        return {sid: holder.node for sid, holder in self.cluster.presence.held()} | local

    def connected_ids(self) -> list[str]:
        return sorted(self.live_versions())

    @property
    def frames_received_all(self) -> int:
        """OCPP frames received since start, by every node of the cluster."""
        cluster = self.cluster
        extra = cluster.frames_elsewhere() if cluster is not None else 0
        return self.frames_received + extra

    # -- what the cluster uses (plugstream.cloud.bus.cluster.LocalStations) -----------

    def join_cluster(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.store.stations.listeners.append(cluster.admission_changed)
        self.store.firmware.listeners.append(cluster.firmware_targets)

    def holds(self, station_id: str) -> OcppVersion | None:
        conn = self._live.get(station_id)
        return conn.version if conn is not None else None

    def evict(self, station_id: str) -> bool:
        """The station connected to another node: its connection here ends now (no
        command runs on it from here on). Whether there was one."""
        conn = self._live.pop(station_id, None)
        if conn is None:
            return False
        self._spawn(conn.transport.close(1000, REPLACED))
        self._station_changed(station_id)
        return True

    async def call_local(
        self, station_id: str, action: str, payload: dict[str, Any], timeout: float | None
    ) -> dict[str, Any]:
        """A command from another node for a station of this one."""
        return await self.call(station_id, action, payload, timeout=timeout, local=True)

    def changed_elsewhere(self, station_id: str) -> None:
        watcher = self.on_station_change
        if watcher is not None:
            watcher(station_id)

    def forget_admission(self, station_id: str) -> None:
        self.store.stations.forget(station_id)

    def firmware_pending(self, station_ids: list[str]) -> None:
        self.store.firmware.mark_pending(station_ids)

    async def call(
        self,
        station_id: str,
        action: str,
        payload: dict[str, Any],
        *,
        timeout: float | None = None,
        local: bool = False,
    ) -> dict[str, Any]:
        """Call the station; its CALLRESULT payload, or OcppError / CallTimeout / StationOffline.
        A station on another node of the cluster is called through its node (unless
        ``local``: the call came from there). How it ended and how long it took (waiting
        for an earlier call included: that is what the caller waited) goes to
        :attr:`on_call`."""
        started = time.perf_counter()
        outcome = "error"  # a CALLERROR, our own request refused, or the caller cancelled
        try:
            conn = self._live.get(station_id)
            if conn is None and self.cluster is not None and not local:
                wait = timeout if timeout is not None else self.config.call_timeout
                try:
                    result = await self.cluster.call(station_id, action, payload, wait)
                except StationOffline:
                    outcome = "offline"
                    raise
                except CallTimeout:
                    outcome = "timeout"
                    raise
                outcome = "ok"
                return result
            if conn is None:
                outcome = "offline"
                raise StationOffline(station_id)
            # One CALL in flight per direction (OCPP-J §4.1.1): the lock keeps our calls in
            # line, so that each one's timeout starts when it is sent.
            async with conn.call_lock:
                if conn.transport.closed or self._live.get(station_id) is not conn:
                    outcome = "offline"
                    raise StationOffline(station_id)
                try:
                    result = await conn.endpoint.call(
                        action,
                        payload,
                        timeout=timeout if timeout is not None else self.config.call_timeout,
                    )
                except ConnectionLost as exc:  # gone before it answered, or before it was sent
                    outcome = "offline"
                    raise StationOffline(station_id) from exc
                except CallTimeout:
                    outcome = "timeout"
                    raise
                outcome = "ok"
                return result
        finally:
            observe = self.on_call
            if observe is not None:
                observe(action, outcome, time.perf_counter() - started)

    # -- versions --------------------------------------------------------------------

    def register(self, version: OcppVersion, factory: HandlersFactory) -> None:
        """Speak ``version`` with stations, each connection answered by ``factory``'s
        handlers (made with :attr:`context`)."""
        self._handlers[version] = factory

    @property
    def handlers(self) -> Mapping[OcppVersion, HandlersFactory]:
        return self._handlers

    def subprotocols(self) -> list[str]:
        """The subprotocols we speak, newest first."""
        order = sorted(self.handlers, key=lambda v: [int(p) for p in v.value.split(".")])
        return [v.subprotocol for v in reversed(order)]

    def choose_version(self, offered: Iterable[str]) -> OcppVersion | None:
        offered_set = set(offered)
        for token in self.subprotocols():
            if token in offered_set:
                return OcppVersion.from_subprotocol(token)
        return None

    # -- one station's connection -----------------------------------------------------

    async def serve(self, websocket: WebSocket, station_id: str) -> None:
        """Run one station's WebSocket, from the handshake to its end (for an app that routes
        ``/ocpp/{stationId}`` itself; :meth:`serve_asgi` is the same without Starlette's wrapper)."""
        await self.serve_asgi(websocket.scope, websocket.receive, websocket.send, station_id)

    async def serve_asgi(self, scope: Scope, receive: Receive, send: Send, station_id: str) -> None:
        """Run one station's WebSocket, from the handshake to its end."""
        if (await receive())["type"] != "websocket.connect":
            return  # gone before the handshake
        if not valid_station_id(station_id):
            self.login_refusals["invalid_station_id"] += 1
            await self._deny(scope, send, 400, "invalid station id")
            return
        lenient = await self._admit(scope, send, station_id)
        if lenient is None:
            return
        version = self.choose_version(scope.get("subprotocols", ()))
        # Admission is over: what the handshake brought is not needed any more.
        scope["headers"] = []
        scope.get("extensions", {}).pop("tls", None)
        if version is None:
            # TC_B_58_CSMS (2.0.1 errata 2025-09) and TC_088 (1.6): "The CSMS rejects the
            # connection attempt and does NOT upgrade the connection to a WebSocket
            # connection." A list with one version we speak (ocpp0.1,ocpp2.0.1) picks it.
            offered = ", ".join(self.subprotocols())
            reason = f"no supported OCPP subprotocol; offer one of {offered}"
            await self._deny(scope, send, 400, reason)
            log.warning("station %s offered no OCPP version we speak", station_id)
            return
        accept: Message = {"type": "websocket.accept", "subprotocol": version.subprotocol}
        try:
            handlers = self._handlers[version](station_id, self.context)
        except Exception:
            log.exception("could not set up the %s handlers of %s", version.value, station_id)
            await send(accept)
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await send({"type": "websocket.close", "code": 1011, "reason": "internal error"})
            return
        if self.cluster is not None:
            # Named this node's in the cluster, and let go of by any other node, before
            # the station may send or be sent anything here.
            await self.cluster.claim(station_id, version)
        await send(accept)
        transport = AsgiTransport(
            receive,
            send,
            station_id,
            log_frame=self._frame_log,
            log_received=self._received_log,
            violations=self.violations,
            notify=self._notify,
            received=self.calls_received,
            sent=self.calls_sent,
        )
        endpoint = OcppEndpoint(
            transport,
            version,
            handlers,
            call_timeout=self.config.call_timeout,
            lenient=lenient,
            observer=transport.observe,
        )
        conn = Connection(station_id, version, transport, endpoint, self.clock())
        old = self._live.get(station_id)
        self._live[station_id] = conn
        if old is not None:
            log.info("station %s reconnected: closing its old connection", station_id)
            await old.transport.close(1000, REPLACED)
        self._touch(conn)
        self._station_changed(station_id)
        try:
            await endpoint.run()
        except WebSocketDisconnect:
            pass
        except Exception:
            log.exception("connection of %s failed", station_id)
        finally:
            if self._live.get(station_id) is conn:
                del self._live[station_id]
                if self.cluster is not None:
                    self.cluster.release(station_id)
                self._station_changed(station_id)
            await transport.close(1011 if not self._closing else 1001, "")

    async def _admit(self, scope: Scope, send: Send, station_id: str) -> bool | None:
        """Whether the station is lenient, if it may connect; else the refusal has been sent."""
        creds = basic_credentials(_header(scope, b"authorization"))
        address = _client_address(scope)
        wait = self.login_throttle.retry_after(station_id, address)
        if wait > 0:
            # Locked by earlier failures: refused before any read, write or hash.
            await self._throttled(scope, send, station_id, 429, "too many failed logins", wait)
            return None
        lenient = await self._admission(scope, send, station_id, creds)
        if lenient is not None:
            self.login_throttle.admitted(station_id, address)
        return lenient

    async def _admission(
        self, scope: Scope, send: Send, station_id: str, creds: tuple[str, str] | None
    ) -> bool | None:
        station = await self.store.stations.admission(station_id)
        if station is None:
            if not (self.config.auto_register or self.config.auto_register_unsecured):
                address = _client_address(scope)
                self.login_throttle.unknown(address)  # a scan of ids is throttled too
                self.login_refusals["unknown_station"] += 1
                await self._keep_event(
                    station_id, "FailedToAuthenticate", "unknown station", address
                )
                await self._deny(scope, send, 404, "unknown station")
                return None
            registered = await self._register(scope, send, station_id, creds)
            if registered is None:
                return None  # refused
            new, station = registered
            if new:
                return station.lenient
            # registered by another connection meanwhile: its password must be given
        security_profile, lenient = station.security_profile, station.lenient
        if security_profile >= 2 and scope.get("scheme") != "wss":
            # Profiles 2 and 3 are TLS profiles (A00.FR.312 / A00.FR.415).
            await self._refuse(
                scope,
                send,
                station_id,
                "FailedToAuthenticate",
                f"profile {security_profile} without TLS",
                kind="no_tls",
            )
            return None
        if security_profile == 3:
            subject = client_certificate_subject(scope)
            organization = self.config.tls_client_organization
            if subject is None:
                reason = "no client certificate"
            elif subject[0] != station_id:
                reason = f"certificate CN {subject[0]!r}"
            elif not issued_by_client_ca(scope, self.config.tls_client_ca):
                reason = "certificate not issued by the CSMS root"
            elif organization is not None and organization not in (subject[1] or ""):
                reason = f"certificate O {subject[1]!r}"  # not the CSO's (A00.FR.404)
            else:
                return lenient
            await self._refuse(
                scope, send, station_id, "InvalidChargingStationCertificate", reason, "certificate"
            )
            return None
        if not station.has_password:
            # No password: only security profile 0 (no authentication) gets in.
            if security_profile == 0:
                return lenient
            await self._refuse(scope, send, station_id, "FailedToAuthenticate", "no password set")
            return None
        return lenient if await self._check_password(scope, send, station_id, creds) else None

    async def _check_password(
        self, scope: Scope, send: Send, station_id: str, creds: tuple[str, str] | None
    ) -> bool:
        """The Basic password of a station that has one, throttled: a station id or source
        address locked by earlier failures is refused with 429 before any argon2 work, and
        a busy password pool with 503; both with ``Retry-After``."""
        attempt = self.login_throttle.allow(station_id, _client_address(scope))
        if attempt.wait > 0:
            await self._throttled(
                scope, send, station_id, 429, "too many failed logins", attempt.wait
            )
            return False
        ok: bool | None = False
        try:
            if creds is None:
                reason = "no credentials"
            elif creds[0] != station_id:
                reason = "username is not the station id"
            else:
                reason = "wrong credentials"
                try:
                    ok = await self.store.stations.check_password(station_id, creds[1])
                except PoolBusy:
                    ok = None  # not checked: neither a failure nor a success
        finally:
            self.login_throttle.done(attempt, ok=ok)
        if ok is None:
            await self._throttled(scope, send, station_id, 503, "busy", 1.0)
            return False
        if not ok:
            await self._refuse(scope, send, station_id, "FailedToAuthenticate", reason)
        return ok

    async def _throttled(
        self, scope: Scope, send: Send, station_id: str, status: int, text: str, wait: float
    ) -> None:
        """Refuse a login without looking at its password: counted, logged (not stored: a
        flood of these must cost no writes), answered with ``Retry-After``. A 429 is held
        back (the tarpit, a timer and no CPU) so the client's next guess waits as well."""
        self.failed_logins[station_id] += 1
        self.throttled_logins += 1
        self.login_refusals["throttled" if status == 429 else "busy"] += 1
        if self.throttled_logins % 1000 == 1:
            log.warning(
                "station %s: login throttled (%d so far)", station_id, self.throttled_logins
            )
        if status == 429:
            hold = min(wait, self.config.login_tarpit_s, self.config.handshake_timeout / 2)
            if hold > 0:
                await asyncio.sleep(hold)
        await self._deny(scope, send, status, text, (b"retry-after", str(max(1, math.ceil(wait)))))

    async def _refuse(
        self,
        scope: Scope,
        send: Send,
        station_id: str,
        event: str,
        reason: str,
        kind: str = "credentials",
    ) -> None:
        """Count (``kind``: one of LOGIN_REFUSAL_REASONS), log and keep the failed login as
        a security event; answer HTTP 401."""
        self.failed_logins[station_id] += 1
        self.login_refusals[kind] += 1
        await self._keep_event(station_id, event, reason, _client_address(scope))
        log.warning("station %s: failed login, %s (%s)", station_id, event, reason)
        await self._deny(
            scope, send, 401, "unauthorized", (b"www-authenticate", f'Basic realm="{REALM}"')
        )

    async def _keep_event(
        self, station_id: str, event: str, reason: str, address: str | None = None
    ) -> None:
        """Keep a refusal in memory and in the security_events table (source "gateway";
        1.6 whitepaper A00.FR.323 / A00.FR.408), stored before the refusal is answered:
        whoever was refused can find it in the REST API at once. The store's writer
        commits such rows in batches, so a flood of bad logins costs no commit each."""
        record = SecurityEvent(self.clock(), station_id, event, reason)
        self.security_event(record)
        try:
            await self.store.security.add_event(
                record.station_id,
                record.type,
                record.timestamp,
                record.tech_info,
                "gateway",
                address=address,
            )
        except Exception:
            log.warning(
                "could not store the security event of %s", record.station_id, exc_info=True
            )

    async def _register(
        self, scope: Scope, send: Send, station_id: str, creds: tuple[str, str] | None
    ) -> tuple[bool, Admission] | None:
        """Auto-registration, trust on first use: a station that brings Basic credentials
        for itself keeps that password (hashed); credentials for another username are
        refused; one without credentials is registered at profile 0 only when the operator
        allowed it (``auto_register_unsecured``). (registered now?, its admission facts),
        or None once a refusal has been sent. Never replaces a registration: when another
        connection registered the id first, that one's password stands."""
        tls = scope.get("scheme") == "wss"
        password: str | None
        if creds is not None and creds[0] != station_id:
            await self._refuse(
                scope, send, station_id, "FailedToAuthenticate", "username is not the station id"
            )
            return None
        if creds is not None and creds[1]:
            password, profile = creds[1], (2 if tls else 1)
        elif self.config.auto_register_unsecured:
            password, profile = None, 0
        else:
            await self._refuse(scope, send, station_id, "FailedToAuthenticate", "no credentials")
            return None
        try:
            registered = await self.store.stations.register_new(
                station_id, password=password, security_profile=profile
            )
        except PoolBusy:
            await self._throttled(scope, send, station_id, 503, "busy", 1.0)
            return None
        except Exception:
            log.warning("auto-registration of %s failed", station_id, exc_info=True)
            await self._deny(scope, send, 500, "could not register the station")
            return None
        if registered[0]:
            log.info("station %s auto-registered (security profile %d)", station_id, profile)
        return registered

    @staticmethod
    async def _deny(
        scope: Scope, send: Send, status: int, text: str, *headers: tuple[bytes, str]
    ) -> None:
        """Refuse the handshake with an HTTP response (the ASGI denial-response extension)."""
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1000})  # the server answers 403
            return
        body = text.encode()
        head = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"text/plain; charset=utf-8"),
        ]
        head += [(name, value.encode("latin-1")) for name, value in headers]
        await send({"type": "websocket.http.response.start", "status": status, "headers": head})
        await send({"type": "websocket.http.response.body", "body": body})

    def _station_changed(self, station_id: str) -> None:
        watcher = self.on_station_change
        if watcher is not None:
            watcher(station_id)
        cluster = self.cluster
        if cluster is not None:
            cluster.changed(station_id)

    def security_event(self, event: SecurityEvent) -> None:
        """Keep an event the cloud found (already stored) with the newest refusals."""
        self.security_events.append(event)

    async def publish(self, kind: str, station_id: str, data: dict[str, Any]) -> None:
        """Hand an event of what a station reported to the bus's outbox (a cluster's
        node), once durable; nothing on a node without a bus."""
        outbox = self.event_outbox
        if outbox is not None:
            await outbox.publish(kind, station_id, data)

    # -- side work: message log, last seen ---------------------------------------------

    def log_frame(self, station_id: str, direction: str, text: str) -> asyncio.Future[None] | None:
        """Log a frame (``direction`` "in" or "out"); the future of its row's commit. A
        frame in also tells that the station is alive. Never waits: when the log is behind
        (a frame out beyond ``LOG_OUT_LIMIT``, in beyond ``LOG_QUEUE_SIZE``), the frame is
        dropped, counted in ``frames_dropped``, and None returned."""
        messages = self.store.messages
        if direction == "in":
            conn = self._live.get(station_id)
            if conn is not None:
                self._touch(conn)
        if messages.pending >= (LOG_QUEUE_SIZE if direction == "in" else LOG_OUT_LIMIT):
            self.frames_dropped += 1
            if self.frames_dropped % 1000 == 1:
                log.warning("message log behind: %d frames dropped", self.frames_dropped)
            return None
        return messages.append(station_id, direction, text, self.clock())

    async def log_received(self, station_id: str, text: str) -> asyncio.Future[None]:
        """Log a frame received, never dropped: while ``LOG_QUEUE_SIZE`` frames wait, wait
        for room (the station's next frame waits meanwhile). The future of its row's
        commit, once the row is queued: before its handler writes anything."""
        messages = self.store.messages
        if messages.pending >= LOG_QUEUE_SIZE:
            await messages.wait_for_room(LOG_QUEUE_SIZE)
        conn = self._live.get(station_id)
        if conn is not None:
            self._touch(conn)
        self.frames_received += 1
        return messages.append(station_id, "in", text, self.clock())

    def _touch(self, conn: Connection) -> None:
        """Note that the station is alive, at most every ``SEEN_EVERY_S`` per connection;
        the notes of many stations are written together (``store.stations.note_seen``)."""
        now = time.monotonic()
        if now - conn.last_seen_write < SEEN_EVERY_S:
            return
        conn.last_seen_write = now
        try:
            self.store.stations.note_seen(conn.station_id, at=self.clock()).add_done_callback(
                _seen_written
            )
        except Exception:
            log.warning("could not record that %s was seen", conn.station_id, exc_info=True)

    def record_tls_refusal(self, event: str, tech_info: str) -> None:
        """Keep a handshake that TLS refused (:mod:`plugstream.cloud.tlsaudit`) like a
        refused login, station unknown (""); stored in a task, off the handshake's path."""
        self.login_refusals["tls_handshake"] += 1
        if not self._closing:
            self._spawn(self._keep_event("", event, tech_info))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, flush_timeout: float = 5.0) -> None:
        """Close every connection and write out the message log (before the store closes)."""
        self._closing = True
        for conn in list(self._live.values()):
            await conn.transport.close(1001, "server shutting down")
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=flush_timeout)
        last = self.store.messages.last  # FIFO: committed last of all the log's rows
        if last is not None and not last.done():
            await asyncio.wait((last,), timeout=flush_timeout)
            if not last.done():
                log.warning("message log: %d frames not written", self.store.messages.pending)
