"""Helpers and fixtures of the station security-profile and security-event tests: real TLS
from the project's own CA, a real PlugStream Cloud, real Station16 / Station201 objects."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugstream.pki.authority import CertificateAuthority, IssuedCertificate
from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.certificates import CSMS_ROOT
from plugstream.station.clock import SystemClock
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.runtime import Station
from plugstream.station.station16 import Station16
from plugstream.station.station201 import Station201
from tests.support import Cloud, running_cloud, until

PASSWORD = "correct-horse-battery-staple"
VERSIONS = ["1.6", "2.0.1"]


class ShiftedClock(SystemClock):
    """The station's clock: wall time plus ``offset`` (a station whose clock is wrong, and
    then set right); pauses in wall time."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Pki:
    ca: CertificateAuthority
    dir: Path

    @property
    def root_pem(self) -> bytes:
        return self.ca.root_pem

    def write(self, name: str, issued: IssuedCertificate) -> tuple[Path, Path]:
        cert, key = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        issued.write(cert, key)
        return cert, key


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    pki = Pki(CertificateAuthority.create(), tmp_path / "pki")
    pki.dir.mkdir()
    pki.ca.write_root(pki.dir / "root.pem")
    pki.write("server", pki.ca.issue_server())  # localhost and 127.0.0.1
    return pki


@pytest.fixture
async def cloud(tmp_path: Path, pki: Pki) -> AsyncIterator[Cloud]:
    """PlugStream Cloud over TLS, client certificates checked against the same CA."""
    async with running_cloud(
        tmp_path,
        tls_cert=pki.dir / "server.pem",
        tls_key=pki.dir / "server.key",
        tls_client_ca=pki.dir / "root.pem",
        tls_client_organization="PlugStream",
    ) as cloud:
        yield cloud


def wss(cloud: Cloud, host: str = "127.0.0.1") -> str:
    return f"wss://{host}:{cloud.port}/ocpp"


def make_station(
    version: str,
    data_dir: Path,
    station_id: str,
    *,
    clock: ShiftedClock | None = None,
) -> Station:
    """A station that retries fast (the tests wait for reconnects)."""
    kind = Station16 if version == "1.6" else Station201
    return kind(
        station_id,
        PLUGSTREAM_7,
        data_dir,
        clock=clock or ShiftedClock(),
        backoff=ReconnectBackoff(0.2, 0.0, 0, random.Random(1)),
        call_timeout=5.0,
    )


def trusting(station: Station, pki: Pki) -> Station:
    station.certificates.add_root(CSMS_ROOT, pki.root_pem)
    return station


def with_client_cert(station: Station, pki: Pki, common_name: str) -> Station:
    issued = pki.ca.issue_client(common_name, organization="PlugStream")
    station.certificates.set_station_certificate(issued.cert_pem, issued.key_pem)
    return station


async def api_events(cloud: Cloud, pki: Pki, **params: Any) -> list[dict[str, Any]]:
    """GET /api/v1/security-events, as an operator sees it."""
    context = ssl.create_default_context(cafile=str(pki.dir / "root.pem"))
    async with httpx.AsyncClient(verify=context) as http:
        reply = await http.get(
            f"https://127.0.0.1:{cloud.port}/api/v1/security-events", params=params, timeout=5
        )
    assert reply.status_code == 200, reply.text
    events: list[dict[str, Any]] = reply.json()
    return events


async def until_api(
    cloud: Cloud,
    pki: Pki,
    want: Callable[[list[dict[str, Any]]], bool],
    what: str,
    **params: Any,
) -> list[dict[str, Any]]:
    """The events once ``want`` holds for them (the station reports in the background)."""

    async def wanted() -> tuple[list[dict[str, Any]]] | None:
        events = await api_events(cloud, pki, **params)
        return (events,) if want(events) else None  # a tuple: true even for no events

    (events,) = await until(wanted, what, interval=0.1)
    return events


class _TlsLater(asyncio.Protocol):
    """A new TCP connection, not read until TLS takes it over: its ClientHello waits in
    the socket for the handshake rather than in a stream buffer TLS never sees."""

    def __init__(self, serve: Callable[[asyncio.Transport], Awaitable[None]]) -> None:
        self._serve = serve
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        self.task = asyncio.get_running_loop().create_task(self._serve(transport))


class TlsSink:
    """A TLS server on 127.0.0.1 with a given certificate that completes handshakes and
    records every byte a client sends after one: what a station let out before it
    decided about the server's certificate (nothing, it must be).

    ``ended`` counts the connections it is done with, whether their handshake completed
    or not (a station that refuses the certificate drops the connection, maybe before
    its last handshake message is out): once a connection is counted, whatever the
    client sent on it is in ``received``."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.handshakes = 0
        self.ended = 0
        self.received = b""
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: list[_TlsLater] = []

    async def __aenter__(self) -> TlsSink:
        def accept() -> _TlsLater:
            connection = _TlsLater(self._serve)
            self._connections.append(connection)
            return connection

        # TLS per connection (not ``ssl=``), so that a failed handshake is counted too
        self._server = await asyncio.get_running_loop().create_server(accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        tasks = [c.task for c in self._connections if c.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        tls: asyncio.BaseTransport | None = None
        try:
            tls = await loop.start_tls(
                transport, protocol, self.context, server_side=True, ssl_handshake_timeout=5
            )
            assert tls is not None
            protocol.connection_made(tls)
            self.handshakes += 1
            for _ in range(100):  # bounded: a client that talks gets cut off
                chunk = await asyncio.wait_for(reader.read(65536), 5)
                if not chunk:
                    break
                self.received += chunk
        except (TimeoutError, OSError, ssl.SSLError):
            pass
        finally:
            self.ended += 1
            (tls or transport).close()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"wss://{host}:{self.port}/ocpp"


class ThreadTlsServer:
    """A TLS server in a thread with blocking sockets, so that OpenSSL's alerts (protocol
    version, handshake failure) reach the client as a real server's would (asyncio's
    server drops the connection before its alert is flushed). Serves at most
    ``max_connections``; records what a client sent after a handshake."""

    def __init__(self, context: ssl.SSLContext, max_connections: int = 20) -> None:
        self.context = context
        self.max_connections = max_connections
        self.received = b""
        self.failures: list[str] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen()
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ThreadTlsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        served = 0
        while not self._stop.is_set() and served < self.max_connections:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            served += 1
            conn.settimeout(2)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    self.received += tls.recv(65536)
            except (ssl.SSLError, OSError) as exc:
                self.failures.append(str(exc))
            finally:
                conn.close()

    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/ocpp"
