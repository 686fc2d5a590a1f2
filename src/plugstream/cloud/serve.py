"""Run PlugStream Cloud: uvicorn serving OCPP and HTTP on one port, until SIGTERM or SIGINT.

The WebSockets are uvicorn's websockets-sansio protocol, made lighter per connection
(:class:`~plugstream.cloud.uvicorn_compat.LeanWebSocketProtocol`): a server holds tens
of thousands of idle stations. What reaches into uvicorn's internals is in
:mod:`plugstream.cloud.uvicorn_compat`; this module only configures and runs it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from plugstream.cloud.app import create_app
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.handshake_guard import AddressRate, HandshakeGuard
from plugstream.cloud.tlsaudit import TlsAudit, TlsRefusal
from plugstream.cloud.uvicorn_compat import (
    CloudServer,
    LeanWebSocketProtocol,
    guarded_http_protocol,
)
from plugstream.pki.tls import OCPP_TLS12_CIPHERS, OCPP_TLS12_SERVER_CIPHERS

__all__ = [
    "OCPP_TLS12_CIPHERS",
    "READY",
    "CloudServer",
    "bound_port",
    "handshake_guard",
    "ocpp_server_context",
    "raise_open_file_limit",
    "ready_line",
    "run",
    "serve",
    "setup_client_cas",
    "uvicorn_config",
]

READY = "PlugStream Cloud listening on"

log = logging.getLogger(__name__)

FD_RESERVE = 256
"""File descriptors kept out of the handshake budget: the listening sockets, the
database, the log, the REST API's own connections."""


# The TLS 1.2 cipher suites the CSMS supports (OCPP 2.0.1 part 2 A00.FR.318 / A00.FR.421,
# the 1.6 Security Whitepaper's list): AES-GCM with ECDHE-ECDSA or plain RSA key exchange,
# and ECDHE-RSA for forward secrecy with an RSA certificate (OCPP_TLS12_SERVER_CIPHERS).
# No other TLS 1.2 suite is offered, so a station that only speaks weaker ones is refused
# in the handshake (A00.FR.322). TLS 1.3 keeps OpenSSL's own (AEAD-only) suites. With an
# EC and an RSA certificate (A00.FR.318's note), both families are negotiable.


def ocpp_server_context(
    cert: str,
    key: str | None,
    client_ca: str | None = None,
    extra_client_cas: Sequence[bytes] = (),
    extra_certs: Sequence[tuple[str, str]] = (),
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

    ``extra_certs`` are more (certificate, key) pairs, each of another key type than
    ``cert`` (an RSA one beside an EC one): OpenSSL keeps one certificate per key type
    and serves the one that the suite it picked needs, in TLS 1.2 and in TLS 1.3.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    context.set_ciphers(":".join(OCPP_TLS12_SERVER_CIPHERS))
    context.load_cert_chain(cert, key)
    for extra_cert, extra_key in extra_certs:
        context.load_cert_chain(extra_cert, extra_key)
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
            [(str(c), str(k)) for c, k in cloud.tls_extra_certs],
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


def raise_open_file_limit() -> int | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit (every station and every pending
    handshake holds a descriptor; distributions start services at 1,024); the soft limit
    now, None where there is none to read."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return None if soft == resource.RLIM_INFINITY else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, wanted, exc)
        return soft
    return wanted


def handshake_guard(config: CloudConfig, open_files: int | None = None) -> HandshakeGuard:
    """The server's guard of unfinished handshakes. With ``open_files`` (the process's
    open-file limit) the cap of pending handshakes leaves at least as many descriptors to
    stations as it takes, with a warning naming the figures when the limit is that low:
    a flood of half-open connections must not starve every legitimate connect."""
    cap = config.max_pending_handshakes
    if open_files is not None:
        needed = 2 * cap + FD_RESERVE
        if open_files < needed:
            lowered = max(1, (open_files - FD_RESERVE) // 2)
            log.warning(
                "the open-file limit (RLIMIT_NOFILE) is %d, below the %d that %d pending "
                "handshakes and as many stations need: pending handshakes are capped at %d; "
                "raise the hard limit (ulimit -Hn, systemd LimitNOFILE=)",
                open_files,
                needed,
                cap,
                lowered,
            )
            cap = min(cap, lowered)
    rate = None
    if config.connect_rate > 0 and config.connect_burst > 0:
        rate = AddressRate(config.connect_rate, config.connect_burst)
    waiting = config.max_waiting_handshakes
    if open_files is not None:  # each waits on a descriptor of its own
        waiting = min(waiting, max(0, open_files - 2 * cap - FD_RESERVE))
    return HandshakeGuard(
        timeout=config.handshake_timeout,
        max_pending=cap,
        rate=rate,
        max_waiting=waiting,
        wait_limit=3 * config.handshake_timeout,
    )


def uvicorn_config(
    config: CloudConfig, app: Any | None = None, *, open_files: int | None = None
) -> uvicorn.Config:
    """uvicorn's configuration for ``config``; ``open_files`` the process's open-file
    limit, which bounds the cap of pending handshakes (:func:`handshake_guard`)."""
    tls = config.tls_cert is not None
    if app is None:
        app = create_app(config)
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        ws=LeanWebSocketProtocol,
        # Every connection starts under the handshake guard (h11, uvicorn's "auto" here
        # too, as httptools is not a dependency); TLS ones get the ASGI TLS extension.
        http=guarded_http_protocol(handshake_guard(config, open_files)),
        ws_max_size=config.max_frame_bytes,
        ws_ping_interval=config.ping_interval,
        ws_ping_timeout=config.ping_timeout,
        lifespan="on",
        log_level="warning",
        # --log-format json: uvicorn's loggers keep no handlers of their own, and their
        # records reach the root logger's JSON handler (plugstream.cloud.logs)
        log_config=None if config.log_format == "json" else LOGGING_CONFIG,
        proxy_headers=False,
        server_header=False,
        ssl_certfile=str(config.tls_cert) if tls else None,
        ssl_keyfile=str(config.tls_key) if config.tls_key is not None else None,
        ssl_context_factory=_context_factory(config, app) if tls else None,
    )


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


async def serve(
    config: CloudConfig,
    *,
    ready: Callable[[str], None] | None = None,
    sockets: list[socket.socket] | None = None,
) -> int:
    """Serve until stopped; 0 after a clean stop, 1 when the server could not start.

    ``sockets``: bound sockets to listen on instead of ``config.host`` and ``config.port``
    (a worker of :mod:`plugstream.cloud.workers`: its own SO_REUSEPORT socket on the
    shared port); TLS applies to them as to the server's own."""
    open_files = raise_open_file_limit()
    server = CloudServer(uvicorn_config(config, open_files=open_files))
    task = asyncio.create_task(server.serve(sockets=sockets))
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


def run(config: CloudConfig, *, sockets: list[socket.socket] | None = None) -> int:
    """Serve on uvloop where it is installed: libuv's loop carries a WebSocket message
    in about half the interpreter time of asyncio's own, and the loop is what limits
    a busy gateway once storage batches its writes. ``sockets`` as in :func:`serve`."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(config, sockets=sockets))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(config, sockets=sockets))
