"""Helpers and fixtures of the station security-profile and security-event tests: real TLS
from the project's own CA, a real PlugStream Cloud, real Station16 / Station201 objects."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugstream.pki.authority import CertificateAuthority, IssuedCertificate
from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.certificates import CSMS_ROOT
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.station16 import Station16
from plugstream.station.station201 import Station201
from tests.cloud.test_gateway import Cloud, running

PASSWORD = "correct-horse-battery-staple"
WAIT = 15.0
Station = Station16 | Station201
VERSIONS = ["1.6", "2.0.1"]


class ShiftedClock:
    """The station's clock: wall time plus ``offset`` (a station whose clock is wrong, and
    then set right); pauses in wall time."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def real_seconds(self, seconds: float) -> float:
        return seconds


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
    async with running(
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


@contextlib.asynccontextmanager
async def running_station(station: Station, url: str) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(station.run(url))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        station.close()


async def until(check: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            found = check()
            if found:
                return found
            await asyncio.sleep(0.02)


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
    cloud: Cloud, pki: Pki, want: Callable[[list[dict[str, Any]]], bool], **params: Any
) -> list[dict[str, Any]]:
    """The events once ``want`` holds for them (the station reports in the background)."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        events = await api_events(cloud, pki, **params)
        if want(events) or asyncio.get_running_loop().time() > deadline:
            return events
        await asyncio.sleep(0.1)


class TlsSink:
    """A TLS server on 127.0.0.1 with a given certificate that completes handshakes and
    records every byte a client sends after one: what a station let out before it
    decided about the server's certificate (nothing, it must be)."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.handshakes = 0
        self.received = b""
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> TlsSink:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        try:
            for _ in range(100):  # bounded: a client that talks gets cut off
                chunk = await asyncio.wait_for(reader.read(65536), 5)
                if not chunk:
                    break
                self.received += chunk
        except (TimeoutError, OSError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

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
