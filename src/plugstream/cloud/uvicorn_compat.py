"""Everything of PlugStream Cloud that reaches into uvicorn's internals, in one place.

uvicorn's protocol classes and its server are subclassed here to hold less per
connection, to give HTTP requests the ASGI TLS extension and to own the signals. They
override and call methods and attributes that are not uvicorn's public API, so
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
import ssl
import sys
from collections.abc import Generator
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = [
    "UVICORN_TESTED",
    "CloudServer",
    "LeanWebSocketProtocol",
    "ReceiveQueue",
    "TlsHttpProtocol",
    "WritableFlag",
    "tls_extension",
]

UVICORN_TESTED = "0.55"
"""The uvicorn minor version this module is written against (pyproject.toml pins it)."""


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

    def data_received(self, data: bytes) -> None:
        self._heard = self.loop.time()
        super().data_received(data)

    def send_keepalive_ping(self) -> None:
        """Ping only a quiet station. Bytes from it within the interval -- its own pings
        (WebSocketPingInterval), any OCPP message -- already prove the connection lives, so
        a station that keeps itself alive costs one keep-alive exchange, not two (the
        article's data budget, LTE). A silent dead peer is still pinged and dropped after
        ``ping_interval`` + ``ping_timeout``."""
        interval = self.ping_interval
        if interval is not None and not self.close_sent:
            quiet = self.loop.time() - self._heard
            if quiet < interval:
                self.ping_timer = self.loop.call_later(interval - quiet, self.send_keepalive_ping)
                return
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


class CloudServer(uvicorn.Server):
    """uvicorn's server, stopped cleanly by SIGTERM / SIGINT without re-raising them after;
    with ``signals=False`` it installs no handlers at all (whoever runs it stops it)."""

    def __init__(self, config: uvicorn.Config, *, signals: bool = True) -> None:
        super().__init__(config)
        self.signals = signals

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
