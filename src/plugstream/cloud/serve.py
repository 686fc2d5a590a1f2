"""Run PlugStream Cloud: uvicorn serving OCPP and HTTP on one port, until SIGTERM or SIGINT.

The WebSockets are uvicorn's websockets-sansio protocol, made lighter per connection
(:class:`LeanWebSocketProtocol`): a server holds tens of thousands of idle stations.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import ssl
import sys
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from plugstream.cloud.app import create_app
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.tlsaudit import TlsAudit, TlsRefusal
from plugstream.pki.tls import OCPP_TLS12_CIPHERS

READY = "PlugStream Cloud listening on"


class _ReceiveQueue:
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


class _Flag:
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
        self.queue = _ReceiveQueue()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]
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


# The TLS 1.2 cipher suites the CSMS supports (OCPP 2.0.1 part 2 A00.FR.318 / A00.FR.421,
# the 1.6 Security Whitepaper's list): AES-GCM with ECDHE-ECDSA or plain RSA key exchange.
# No other TLS 1.2 suite is offered, so a station that only speaks weaker ones is refused
# in the handshake (A00.FR.322). TLS 1.3 keeps OpenSSL's own (AEAD-only) suites.


def ocpp_server_context(
    cert: str,
    key: str | None,
    client_ca: str | None = None,
    extra_client_cas: Sequence[bytes] = (),
) -> ssl.SSLContext:
    """The CSMS's TLS context for security profiles 2 and 3: TLS 1.2 or 1.3 only
    (A00.FR.313), the spec's TLS 1.2 suites, no compression (A00.FR.321).

    With ``client_ca`` the server asks for a client certificate and verifies its chain
    against it (A00.FR.403); a certificate that fails fails the handshake (recorded as a
    security event by :mod:`plugstream.cloud.tlsaudit`, installed by the server). It is
    optional (``CERT_OPTIONAL``), not required: profile-2 and profile-3 stations share
    the one OCPP port, and the gateway refuses a profile-3 station that brought none.
    ``extra_client_cas`` (PEM) are trusted as well: the manufacturer root, whose
    certificates identify new stations at the setup service (and only there: the
    gateway admits only certificates issued by ``client_ca``).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    context.set_ciphers(":".join(OCPP_TLS12_CIPHERS))
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
    for pem in extra_client_cas:
        context.load_verify_locations(cadata=pem.decode("ascii"))
    if client_ca is not None or extra_client_cas:
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def setup_client_cas(cloud: CloudConfig) -> list[bytes]:
    """The manufacturer root (PEM) of ``--pki``, which the setup service identifies new
    stations by; none without a PKI."""
    if cloud.pki_dir is None:
        return []
    from plugstream.pki.keystore import MANUFACTURER_ROOT

    path = Path(cloud.pki_dir) / f"{MANUFACTURER_ROOT}.pem"
    return [path.read_bytes()] if path.is_file() else []


def _context_factory(
    cloud: CloudConfig, app: Any = None
) -> Callable[[uvicorn.Config, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
    def factory(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        assert cloud.tls_cert is not None
        # The setup service alone trusts only the manufacturer root for client certificates.
        client_ca = cloud.tls_client_ca if not cloud.setup_only else None
        context = ocpp_server_context(
            str(cloud.tls_cert),
            str(cloud.tls_key) if cloud.tls_key is not None else None,
            str(client_ca) if client_ca is not None else None,
            setup_client_cas(cloud),
        )
        return TlsAudit(_gateway_sink(app)).install(context)

    return factory


def _gateway_sink(app: Any) -> Callable[[TlsRefusal, str], None]:
    """Hand a refused handshake to the app's gateway (``app.state.gateway``, set in its
    lifespan; None for the setup service, where the refusal is only logged)."""

    def sink(refusal: TlsRefusal, tech_info: str) -> None:
        state = getattr(app, "state", None)
        gateway = getattr(state, "gateway", None) if state is not None else None
        if gateway is not None:
            gateway.record_tls_refusal(refusal.event, tech_info)

    return sink


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


def uvicorn_config(config: CloudConfig, app: Any | None = None) -> uvicorn.Config:
    tls = config.tls_cert is not None
    if app is None:
        app = create_app(config)
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        ws=LeanWebSocketProtocol,
        http=TlsHttpProtocol if tls else "auto",
        ws_max_size=config.max_frame_bytes,
        ws_ping_interval=config.ping_interval,
        ws_ping_timeout=config.ping_timeout,
        lifespan="on",
        log_level="warning",
        proxy_headers=False,
        server_header=False,
        ssl_certfile=str(config.tls_cert) if tls else None,
        ssl_keyfile=str(config.tls_key) if config.tls_key is not None else None,
        ssl_context_factory=_context_factory(config, app) if tls else None,
    )


class CloudServer(uvicorn.Server):
    """uvicorn's server, stopped cleanly by SIGTERM / SIGINT without re-raising them after."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if sys.platform == "win32":  # pragma: no cover
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


def ready_line(config: CloudConfig, port: int) -> str:
    host = f"[{config.host}]" if ":" in config.host else config.host
    http, ws = ("https", "wss") if config.tls_cert is not None else ("http", "ws")
    base = f"{host}:{port}"
    if config.setup_only:
        return f"{READY} {http}://{base} (setup service {http}://{base}/setup/v1/provision)"
    return f"{READY} {http}://{base} (OCPP {ws}://{base}/ocpp/{{id}}, API {http}://{base}/api/v1/)"


def bound_port(server: uvicorn.Server, default: int) -> int:
    for listener in getattr(server, "servers", []):
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    return default


async def serve(config: CloudConfig, *, ready: Callable[[str], None] | None = None) -> int:
    """Serve until stopped; 0 after a clean stop, 1 when the server could not start."""
    server = CloudServer(uvicorn_config(config))
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if server.started:
        line = ready_line(config, bound_port(server, config.port))
        if ready is not None:
            ready(line)
        else:
            print(line, flush=True)
    try:
        await task
    except SystemExit as exc:  # uvicorn exits when it cannot bind
        return int(exc.code) if isinstance(exc.code, int) else 1
    return 0 if server.started else 1


def run(config: CloudConfig) -> int:
    """Serve on uvloop where it is installed: libuv's loop carries a WebSocket message
    in about half the interpreter time of asyncio's own, and the loop is what limits
    a busy gateway once storage batches its writes."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(config))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(config))
