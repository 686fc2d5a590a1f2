"""The handshake guard under TLS (wss://): half-open TLS connections (issue 14, point 1).

asyncio and uvloop call the app protocol's ``connection_made`` only after the TLS
handshake, and close a connection stuck in it after 60 s by default: a peer that opens
TCP and sends nothing, or the first bytes of a ClientHello, was held that long, outside
the 10 s handshake deadline. Here it is held no longer than the deadline, which counts
from accept and covers TLS and the HTTP upgrade together -- on uvloop (the cloud process)
and on asyncio (the cloud in the test's loop) -- while a legitimate wss station
connects. The cap of pending handshakes applies from the end of the TLS handshake (before
it the protocol knows neither the peer nor its transport).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState
from websockets.asyncio.client import connect

from plugstream.cloud.handshake_guard import HandshakeGuard, Refusal
from plugstream.cloud.serve import READY
from plugstream.cloud.uvicorn_compat import GuardedHttpProtocol, guarded_http_protocol
from plugstream.pki.authority import CertificateAuthority
from tests.support import (
    WAIT,
    Cloud,
    basic_auth,
    boot_and_heartbeat,
    cloud_serve_argv,
    free_port,
    read_until,
    running_cloud,
    stop_process,
)

DEADLINE = 1.0  # s: the handshake timeout of these tests (the default is 10 s)
MARGIN = 2.5  # s a closed connection may take to be seen closed, on a loaded machine
EARLY = 0.1  # s a timer may fire before its time, by the loop's clock resolution
PASSWORD = "hostile-tls-handshake-1"  # a station's first Basic password (auto_register)
# A TLS record header (handshake, 512 bytes to come) and the start of a ClientHello:
# what a peer sends that stops in the middle of its first flight.
PARTIAL_CLIENT_HELLO = bytes.fromhex("1603010200" + "010001fc" + "0303") + bytes(8)


class Certs:
    """The cloud's server certificate for 127.0.0.1 and the root that clients trust."""

    def __init__(self, folder: Path) -> None:
        ca = CertificateAuthority.create()
        self.root = folder / "root.pem"
        self.cert, self.key = folder / "server.pem", folder / "server.key"
        ca.write_root(self.root)
        ca.issue_server().write(self.cert, self.key)

    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.root))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("tls-pki"))


async def wss_station_heartbeat(port: int, station_id: str, certs: Certs) -> None:
    """A legitimate 1.6 station over wss://: it connects, boots, gets its Heartbeat."""
    async with connect(
        f"wss://127.0.0.1:{port}/ocpp/{station_id}",
        ssl=certs.client(),
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers=basic_auth(station_id, PASSWORD),
        open_timeout=WAIT,
    ) as ws:
        await boot_and_heartbeat(ws)


class Peer:
    """One connection to the cloud and the loop time it was opened at."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.opened = asyncio.get_running_loop().time()

    async def held(self) -> float:
        """Seconds from its opening to the server's close (or reset); waits for it."""
        with contextlib.suppress(OSError):  # a reset, or TLS cut short: closed too
            while await self.reader.read(65536):
                pass
        return asyncio.get_running_loop().time() - self.opened


@contextlib.asynccontextmanager
async def peers(
    port: int,
    count: int,
    *,
    head: bytes = b"",
    tls: ssl.SSLContext | None = None,
    source: str = "127.0.0.1",
) -> AsyncIterator[list[Peer]]:
    """``count`` connections that send ``head`` (raw TCP) or finish TLS (``tls``), and
    then nothing; closed after."""
    opened: list[Peer] = []
    try:
        for _ in range(count):
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    "127.0.0.1",
                    port,
                    local_addr=(source, 0),
                    ssl=tls,
                    server_hostname="127.0.0.1" if tls else None,
                ),
                WAIT,
            )
            if head:
                writer.write(head)
            opened.append(Peer(reader, writer))
        yield opened
    finally:
        for peer in opened:
            peer.writer.close()


async def held_for(group: list[Peer], within: float) -> list[float]:
    """How long the server held each of ``group``; fails if any is held past ``within``."""
    return await asyncio.wait_for(asyncio.gather(*(p.held() for p in group)), within)


def guard_of(cloud: Cloud) -> HandshakeGuard:
    protocol = cloud.server.config.http_protocol_class
    assert isinstance(protocol, type) and issubclass(protocol, GuardedHttpProtocol)
    assert protocol.guard is not None
    return protocol.guard


# -- the deadline, on uvloop (the cloud process) and on asyncio -----------------------


@pytest.mark.socket
async def test_half_open_tls_connections_are_closed_at_the_deadline_while_a_wss_station_connects(
    tmp_path: Path, certs: Certs
) -> None:
    """`plugstream cloud serve --tls-cert ... --handshake-timeout 1` (uvloop): 50 peers
    that open TCP and send nothing and 50 that send half a ClientHello are each closed
    one deadline after they connected (+ margin, not before it); meanwhile, and after,
    a station connects over wss:// and gets its Heartbeat answered."""
    port = free_port()
    tls = ["--tls-cert", str(certs.cert), "--tls-key", str(certs.key)]
    deadline = ["--handshake-timeout", str(DEADLINE)]
    argv = cloud_serve_argv(port, tmp_path / "cloud.db", *tls, *deadline, "--auto-register")
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "wss://" in read_until(process, READY)
        async with (
            peers(port, 50) as silent,
            peers(port, 50, head=PARTIAL_CLIENT_HELLO) as partial,
        ):
            await wss_station_heartbeat(port, "CP1", certs)
            held = await held_for(silent + partial, DEADLINE + MARGIN)
        assert min(held) >= DEADLINE - EARLY and max(held) < DEADLINE + MARGIN, held
        await wss_station_heartbeat(port, "CP2", certs)  # and the cloud is fine after
        assert process.poll() is None
    finally:
        stop_process(process)


@pytest.mark.socket
async def test_on_asyncio_a_connection_in_or_just_past_tls_is_closed_at_the_deadline(
    tmp_path: Path, certs: Certs
) -> None:
    """The cloud on asyncio's loop: silent and half-ClientHello peers, and TLS clients
    that finish the TLS handshake and send no request, are all closed one deadline after
    they connected; only the last are the guard's to time out (it sees a connection once
    TLS is done). A wss station connects meanwhile."""
    async with running_cloud(
        tmp_path,
        auto_register=True,
        handshake_timeout=DEADLINE,
        tls_cert=certs.cert,
        tls_key=certs.key,
    ) as cloud:
        guard = guard_of(cloud)
        async with (
            peers(cloud.port, 20) as silent,
            peers(cloud.port, 20, head=PARTIAL_CLIENT_HELLO) as partial,
            peers(cloud.port, 5, tls=certs.client()) as mute,
        ):
            await wss_station_heartbeat(cloud.port, "CP1", certs)
            held = await held_for(silent + partial + mute, DEADLINE + MARGIN)
        assert min(held) >= DEADLINE - EARLY and max(held) < DEADLINE + MARGIN, held
        assert guard.timed_out == 5
        assert guard.pending == 0
        # the loop's create_server was shadowed for the start-up only
        assert "create_server" not in vars(asyncio.get_running_loop())
        await wss_station_heartbeat(cloud.port, "CP2", certs)


# -- the cap of pending handshakes, from the end of the TLS handshake -----------------


@pytest.mark.socket
async def test_beyond_the_pending_cap_a_tls_connection_is_closed_as_soon_as_its_tls_is_done(
    tmp_path: Path, certs: Certs
) -> None:
    """With 4 TLS connections pending (the cap; 2 each from two addresses), 3 more are
    closed right after their TLS handshake -- long before the deadline -- and a wss
    station connects once the 4 are gone. Peers still in their TLS handshake are not in
    the count (their deadline closes them)."""
    async with running_cloud(
        tmp_path,
        auto_register=True,
        handshake_timeout=WAIT * 2,
        max_pending_handshakes=4,
        max_waiting_handshakes=0,
        tls_cert=certs.cert,
        tls_key=certs.key,
    ) as cloud:
        guard = guard_of(cloud)
        async with (
            peers(cloud.port, 2, tls=certs.client(), source="127.0.0.2"),
            peers(cloud.port, 2, tls=certs.client(), source="127.0.0.3"),
            peers(cloud.port, 5, source="127.0.0.5"),  # in TLS: uncounted
        ):
            assert guard.pending == 4
            async with peers(cloud.port, 3, tls=certs.client(), source="127.0.0.4") as beyond:
                await held_for(beyond, MARGIN)
            assert guard.refused[Refusal.TOO_MANY_PENDING] == 3
            assert guard.pending == 4
        await wss_station_heartbeat(cloud.port, "CP1", certs)
        assert guard.pending == 0


# -- the deadline counts from accept (the protocol, without a loop or sockets) --------


class Timer:
    def cancel(self) -> None:
        pass


class ManualLoop:
    """What the guarded protocol asks of its loop: the time, and timers (recorded)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Callable[..., Any]]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Timer:
        self.timers.append((when, callback))
        return Timer()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        return self.call_at(self.now + delay, callback, *args)


class TlsTransport:
    """A connection whose TLS handshake is done (what asyncio hands the protocol then)."""

    def __init__(self) -> None:
        self.aborted = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("192.0.2.7", 50000), "sockname": ("192.0.2.1", 443)}.get(name, default)

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted


async def ignore(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    """An ASGI app the protocol is made with and never calls here."""


@pytest.mark.unit
def test_the_deadline_of_a_tls_connection_counts_from_accept_not_from_the_end_of_tls() -> None:
    """Made at accept (t=0), the protocol is told of the connection when TLS is done
    (t=0.6): its deadline is still t=1. One whose TLS took past the deadline is closed
    as soon as it is told, and counted as timed out."""
    guard = HandshakeGuard(timeout=DEADLINE)
    protocol_class = guarded_http_protocol(guard)
    config = uvicorn.Config(ignore, log_config=None, lifespan="off")
    loop = ManualLoop()

    def accepted() -> GuardedHttpProtocol:
        return protocol_class(config=config, server_state=ServerState(), app_state={}, _loop=loop)

    protocol = accepted()
    loop.now = 0.6
    transport = TlsTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    assert guard.pending == 1
    assert [when for when, _ in loop.timers] == [DEADLINE]

    late = accepted()  # at 0.6: its deadline is 1.6
    loop.now = 1.7
    slow = TlsTransport()
    late.connection_made(slow)  # type: ignore[arg-type]
    due, expire = loop.timers[-1]
    assert due == pytest.approx(1.6) and due < loop.now  # the loop runs it at once
    expire()
    assert slow.aborted and not transport.aborted
    assert (guard.pending, guard.timed_out) == (1, 1)
