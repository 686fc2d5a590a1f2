"""Everything of PlugStream Cloud that reaches into uvicorn's internals, in one place.

uvicorn's protocol classes and its server are subclassed here to hold less per
connection, to give HTTP requests the ASGI TLS extension, to bound what a connection
that is not yet a station may cost (:class:`GuardedHttpProtocol`: the handshake
deadline, the cap on pending handshakes, the per-address rate) and to own the signals.

Under TLS (wss://) asyncio and uvloop call the protocol's ``connection_made`` only once the
TLS handshake is done, so a peer that never finishes its ClientHello is out of the
protocol's sight. The deadline therefore counts from accept (when the loop makes the
protocol), so TLS and the HTTP upgrade together have ``handshake_timeout``, and
:class:`CloudServer` gives the listener an ``ssl_handshake_timeout`` of the same length
(uvicorn passes none: asyncio's default is 60 s), which closes a connection still in its
TLS handshake at the deadline. The cap, the per-address share and the rate apply from the
end of the TLS handshake: before it the protocol knows neither the peer's address nor
its transport, and hears nothing of a connection that dies in TLS.

They override and call methods and attributes that are not uvicorn's public API, so
``pyproject.toml`` pins uvicorn to the minor version this was written and tested
against (:data:`UVICORN_TESTED`), and ``tests/cloud/test_uvicorn_guard.py`` checks that
what is relied on is still there: re-read this module against uvicorn's source before
moving the pin.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import socket
import ssl
import sys
from collections.abc import Generator
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from plugstream.cloud.handshake_guard import HandshakeGuard

__all__ = [
    "UVICORN_TESTED",
    "CloudServer",
    "GuardedHttpProtocol",
    "LeanWebSocketProtocol",
    "PendingHandshake",
    "ReceiveQueue",
    "TlsHttpProtocol",
    "WritableFlag",
    "guarded_http_protocol",
    "tls_extension",
]

UVICORN_TESTED = "0.55"
"""The uvicorn minor version this module is written against (pyproject.toml pins it)."""
MAX_STATION_CADENCE_S = 3600.0
"""The longest station keep-alive the cloud waits on before pinging it itself."""


class ReceiveQueue:
    """What uvicorn's protocol needs of its ``asyncio.Queue`` of ASGI receive events
    (``put_nowait``, ``get``, ``empty``), without the four deques an idle queue holds."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: collections.deque[Any] | None = None
        self._waiters: list[asyncio.Future[None]] | None = None

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = collections.deque()
        self._items.append(item)
        self._wake()

    async def get(self) -> Any:
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)
                if not self._waiters:
                    self._waiters = None
                elif self._items:  # woken but cancelled, or more to come: the next one's turn
                    self._wake()
        items = self._items
        item = items.popleft()
        if items:
            self._wake()
        else:
            self._items = None
        return item

    def _wake(self) -> None:
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(None)
                return


class WritableFlag:
    """What uvicorn's protocol needs of its ``writable`` ``asyncio.Event``, without its deque."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
                if not self._waiters:
                    self._waiters = None
        return True


class PendingHandshake:
    """One connection's unfinished handshake: its deadline timer and its place in the
    guard's count of pending ones. It passes from the HTTP protocol to the WebSocket
    protocol at the upgrade; whichever sees the end of it calls :meth:`finish`. The
    deadline is ``guard.timeout`` after ``started`` (loop time; default now): a TLS
    connection's started at accept, before its TLS handshake."""

    __slots__ = ("_guard", "_host", "_timer", "_transport")

    def __init__(
        self,
        guard: HandshakeGuard,
        host: str | None,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        started: float | None = None,
    ) -> None:
        self._guard: HandshakeGuard | None = guard
        self._host = host
        self._transport = transport
        if started is None:
            started = loop.time()
        # A deadline already past (a TLS handshake that took it all) fires at once.
        self._timer: asyncio.TimerHandle | None = loop.call_at(
            started + guard.timeout, self._expire
        )

    def _expire(self) -> None:
        self._timer = None
        guard, self._guard = self._guard, None
        if guard is not None:
            guard.release(self._host, expired=True)
            # abort, not close: nothing is owed to a peer that would not finish, and the
            # file descriptor is free now rather than after a lingering close.
            self._transport.abort()

    def finish(self) -> None:
        """The handshake is over (done or the connection gone): stop its deadline."""
        guard, self._guard = self._guard, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if guard is not None:
            guard.release(self._host)


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol with less held per connection: a slim receive
    queue and writable flag, and the handshake's parsed request (its headers) and response
    dropped once the handshake is done (uvicorn and websockets read them only until then).
    A refusal sent in full completes the handshake, as uvicorn would otherwise log an error
    for each."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = ReceiveQueue()  # type: ignore[assignment]
        self.writable = WritableFlag()  # type: ignore[assignment]
        self.writable.set()

    _heard = 0.0  # loop time of the last bytes from the station (set per connection)
    _own = 0.0  # loop time of the last bytes the station sent unasked (not a pong of ours)
    _cadence = 0.0  # the longest quiet the station ended on its own (its keep-alive), s
    _pinged = False  # a ping of ours is out: the next bytes may be its pong, not the station's
    _handshake: PendingHandshake | None = None  # handed over at the upgrade, until accept

    def take_handshake(self, handshake: PendingHandshake) -> None:
        """Hold the deadline of the upgrade the HTTP protocol started, until the app has
        accepted or refused the WebSocket (or the connection is gone)."""
        if self.handshake_complete:
            handshake.finish()
        else:
            self._handshake = handshake

    def _handshake_over(self) -> None:
        handshake = self._handshake
        if handshake is not None:
            self._handshake = None
            handshake.finish()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._handshake_over()

    def data_received(self, data: bytes) -> None:
        now = self.loop.time()
        if self._pinged:
            self._pinged = False  # our pong (or whatever came first): not the station's cadence
        else:
            if self._own:
                self._cadence = min(MAX_STATION_CADENCE_S, max(self._cadence, now - self._own))
            self._own = now
        self._heard = now
        super().data_received(data)

    def send_keepalive_ping(self) -> None:
        """Ping only a quiet station. Bytes from it within the interval -- its own pings
        (WebSocketPingInterval), any OCPP message -- already prove the connection lives, so
        a station that keeps itself alive costs one keep-alive exchange, not two (the
        article's data budget, LTE). A silent dead peer is still pinged and dropped after
        ``ping_interval`` + ``ping_timeout``.

        A station whose keep-alive learned a long interval (station/keepalive.py: up to 30
        minutes of quiet on a path that holds it) is not pinged in between either, nor
        while it learns: the cloud waits twice the longest quiet the station itself ended
        (at most :data:`MAX_STATION_CADENCE_S`, the default heartbeat interval), which
        leaves room for the station's next, 50 % longer, step. A dead station of that
        kind is noticed that much later."""
        interval = self.ping_interval
        if interval is not None and not self.close_sent:
            quiet = self.loop.time() - self._heard
            wait = max(interval, 2 * self._cadence)
            if quiet < wait:
                self.ping_timer = self.loop.call_later(wait - quiet, self.send_keepalive_ping)
                return
        self._pinged = True
        super().send_keepalive_ping()

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # The app runs later (a task): the scope can still be completed with what TLS knows.
        tls = tls_extension(self.transport.get_extra_info("ssl_object"))
        if tls is not None:
            extensions: dict[str, Any] = self.scope["extensions"]
            extensions["tls"] = tls

    async def send(self, message: Any) -> None:
        await super().send(message)
        kind = message["type"]
        if kind == "websocket.http.response.body" and self.close_sent:
            # A refusal (401, 404, ...) has been sent in full: the handshake is over, and
            # uvicorn is not to log "ASGI callable returned without completing handshake".
            self.handshake_complete = True
        if self.handshake_complete:
            self._handshake_over()
        elif kind == "websocket.accept" and self.handshake_complete:
            request = self.__dict__.pop("request", None)
            self.__dict__.pop("response", None)
            if request is not None:
                # The parser of websockets keeps the request object for as long as the
                # connection lives; its headers are read only during the handshake.
                request.headers.clear()


def tls_extension(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> dict[str, Any] | None:
    """The ASGI TLS extension (``scope["extensions"]["tls"]``) of a connection: its TLS
    version, cipher suite and the client certificate it presented, verified, if any
    (``client_cert_chain``, PEM, the leaf only: Python exposes no more of the chain)."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    cipher = ssl_object.cipher()
    return {
        "tls_version": ssl_object.version(),
        "cipher_suite": cipher[0] if cipher else None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_error": None,
    }


class TlsHttpProtocol(H11Protocol):
    """uvicorn's h11 protocol that gives every HTTP request of a TLS connection the ASGI
    TLS extension (uvicorn itself gives none): the setup service identifies a station by
    the client certificate it presented."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        tls = tls_extension(transport.get_extra_info("ssl_object"))
        if tls is None:
            return
        app = self.app

        async def with_tls(scope: Any, receive: Any, send: Any) -> None:
            if scope.get("type") == "http":
                extensions = scope.get("extensions")
                if extensions is None:
                    extensions = scope["extensions"] = {}
                extensions["tls"] = tls
            await app(scope, receive, send)

        self.app = with_tls


class GuardedHttpProtocol(TlsHttpProtocol):
    """The HTTP protocol every connection starts in, under a :class:`HandshakeGuard`
    (``guard``, bound per server by :func:`guarded_http_protocol`).

    A new connection beyond the cap of pending handshakes waits for a slot, its socket not
    read, while fewer than ``guard.max_waiting`` wait; beyond that (or beyond its address's
    share of the cap), or from an address over its rate, it is aborted at once. An admitted one has ``guard.timeout`` seconds to send its
    whole request head and, when it asks for a WebSocket, to be upgraded (the deadline
    goes with it to :class:`LeanWebSocketProtocol`); a later request head on the same
    keep-alive connection gets a deadline of its own (uvicorn's keep-alive timer stops at
    its first byte). The first deadline counts from accept (``__init__``): under TLS,
    ``connection_made`` comes only after the TLS handshake, which is within it too."""

    guard: ClassVar[HandshakeGuard | None] = None
    _handshake: PendingHandshake | None = None
    _upgraded = False
    _waits = False  # beyond the cap, waiting for a slot (its socket not read meanwhile)
    _early: bytes = b""  # what came before reading stopped (uvloop reads once regardless)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # asyncio and uvloop make the protocol when they accept the connection, before
        # any TLS handshake: the handshake deadline counts from here.
        self._accepted = self.loop.time()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self.guard
        if guard is None:
            return
        host = self.client[0] if self.client else None
        if guard.admit(host, self if guard.max_waiting else None) is not None:
            transport.abort()
            return
        if guard.is_waiting(self):
            self._waits = True
            transport.pause_reading()
            return
        self._handshake = PendingHandshake(guard, host, transport, self.loop, self._accepted)

    # -- a connection waiting for a slot (handshake_guard.Waiter) --------------------------

    def start(self) -> None:
        """Its turn: the handshake's deadline counts from now, and what it sent is read
        (on the next turn of the loop: this runs inside another connection's callback)."""
        self._waits = False
        guard = self.guard
        assert guard is not None
        host = self.client[0] if self.client else None
        self._handshake = PendingHandshake(guard, host, self.transport, self.loop)
        self.loop.call_soon(self._read_again)

    def _read_again(self) -> None:
        if self.transport.is_closing():
            return
        early, self._early = self._early, b""
        self.transport.resume_reading()
        if early:
            self.data_received(early)

    def expire(self) -> None:
        self._waits = False
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._waits and self.guard is not None:
            self._waits = False
            self.guard.leave(self)
        self._head_over()

    def _head_over(self) -> None:
        handshake = self._handshake
        if handshake is not None:
            self._handshake = None
            handshake.finish()

    def data_received(self, data: bytes) -> None:
        if self._waits:
            # Reading does not stop before it has begun (uvloop): kept, and not read again
            # until its turn; a read is at most one buffer's worth.
            self._early += data
            self.transport.pause_reading()
            return
        super().data_received(data)
        if self._upgraded or self.transport.is_closing():
            return
        if self.conn.their_state is not h11.IDLE:  # the request head is in
            self._head_over()
        elif self._handshake is None and self.guard is not None:
            # The first bytes of another request head on a keep-alive connection.
            host = self.client[0] if self.client else None
            if self.guard.resume(host) is not None:
                self.transport.abort()
                return
            self._handshake = PendingHandshake(self.guard, host, self.transport, self.loop)

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._upgraded = True
        handshake, self._handshake = self._handshake, None
        super().handle_websocket_upgrade(event)
        if handshake is None:
            return
        protocol = self.transport.get_protocol()
        if isinstance(protocol, LeanWebSocketProtocol):
            protocol.take_handshake(handshake)
        else:  # another WebSocket protocol: the deadline ends at the upgrade
            handshake.finish()


def guarded_http_protocol(guard: HandshakeGuard) -> type[GuardedHttpProtocol]:
    """:class:`GuardedHttpProtocol` bound to one server's guard (uvicorn makes each
    connection's protocol from a class, and the guard is shared by them all)."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"guard": guard})


class CloudServer(uvicorn.Server):
    """uvicorn's server, stopped cleanly by SIGTERM / SIGINT without re-raising them after;
    with ``signals=False`` it installs no handlers at all (whoever runs it stops it).

    Under TLS its listener closes a connection whose TLS handshake is not done within the
    handshake deadline of its :class:`GuardedHttpProtocol` (:meth:`startup`)."""

    def __init__(self, config: uvicorn.Config, *, signals: bool = True) -> None:
        super().__init__(config)
        self.signals = signals

    @property
    def tls_handshake_timeout(self) -> float | None:
        """The ``ssl_handshake_timeout`` of the listener: the guard's deadline under TLS,
        None (asyncio's default) without TLS or without a guard."""
        protocol = getattr(self.config, "http_protocol_class", None)
        if not self.config.is_ssl or not isinstance(protocol, type):
            return None
        if not issubclass(protocol, GuardedHttpProtocol) or protocol.guard is None:
            return None
        return protocol.guard.timeout

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup, its ``loop.create_server`` given ``ssl_handshake_timeout``
        (uvicorn passes none, and asyncio's default is 60 s: a peer that never finishes
        its ClientHello would hold its connection that long, out of the guard's sight).
        The loop's method is shadowed only for the length of uvicorn's startup."""
        timeout = self.tls_handshake_timeout
        if timeout is None:
            await super().startup(sockets)
            return
        loop = asyncio.get_running_loop()
        create_server = loop.create_server

        def create_server_with_deadline(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("ssl"):
                kwargs.setdefault("ssl_handshake_timeout", timeout)
            return create_server(*args, **kwargs)

        loop.create_server = create_server_with_deadline  # type: ignore[method-assign]
        try:
            await super().startup(sockets)
        finally:
            del loop.create_server

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, after the app's ``state.on_server_shutdown`` hooks ran: uvicorn
        waits for every response to end, and an endless one (the console's event stream)
        ends only when told to."""
        state = getattr(self.config.app, "state", None)
        for hook in getattr(state, "on_server_shutdown", ()):
            hook()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if not self.signals or sys.platform == "win32":
            yield
            return
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
