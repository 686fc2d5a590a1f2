"""Stand-ins for the outside world's servers in the lab: an SNTP server for pool.ntp.org, and a
TLS-inspecting middlebox that answers on 443 with a certificate from another CA.

Why: the lab has no route to the outside, so pool.ntp.org and the path to the cloud are played
by small servers on documentation addresses. Each runs as its own process in a lab host::

    python -m plugstream.lab.standins ntp --address 198.51.100.123 [--port 123] [--shift S]
    python -m plugstream.lab.standins tls --address 0.0.0.0 --port 8443 --cert C --key K

Layout: :func:`ntp_reply` is the sans-I/O core (request bytes and a time in, reply bytes out);
the asyncio shells around it only move datagrams and connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import Final, cast

from plugstream.net.ntp import to_ntp_timestamp

__all__ = ["main", "ntp_reply", "serve_ntp", "serve_tls"]

_PACKET: Final = struct.Struct("!BBbbII4sQQQQ")
_MODE_CLIENT: Final = 3
_MODE_SERVER: Final = 4
STRATUM: Final = 2
"""A secondary server, as the pool's are."""
REFERENCE_ID: Final = b"LAB\0"


def ntp_reply(request: bytes, received: float, transmit: float) -> bytes | None:
    """The RFC 5905 server-mode answer to a client ``request``; None for anything else (not a
    client packet, too short), which a server silently drops. ``received`` and ``transmit``
    are the server's clock (Unix seconds) when the request came in and when the reply leaves."""
    if len(request) < _PACKET.size:
        return None
    first = request[0]
    version, mode = (first >> 3) & 0b111, first & 0b111
    if mode != _MODE_CLIENT or version not in (3, 4):
        return None
    poll = struct.unpack_from("!b", request, 2)[0]
    client_transmit = struct.unpack_from("!Q", request, 40)[0]
    reference = to_ntp_timestamp(received - 16.0)
    return _PACKET.pack(
        (0 << 6) | (version << 3) | _MODE_SERVER,  # leap 0: synchronized
        STRATUM,
        poll,
        -20,  # precision: about a microsecond
        0,  # root delay
        1 << 8,  # root dispersion: 1/256 s
        REFERENCE_ID,
        reference,
        client_transmit,  # origin: echoes the client's transmit timestamp
        to_ntp_timestamp(received),
        to_ntp_timestamp(transmit),
    )


class _NtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        received = self.clock()
        reply = ntp_reply(data, received, self.clock())
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def serve_ntp(address: str, port: int, shift: float, stop: asyncio.Event) -> None:
    """Answer SNTP requests on ``address:port`` with the wall clock plus ``shift`` s, until
    ``stop``. A shift plays a pool server whose time disagrees with the station's clock."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _NtpProtocol(lambda: time.time() + shift), local_addr=(address, port)
    )
    try:
        await stop.wait()
    finally:
        transport.close()


async def _handshake_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The TLS handshake is done by now; read what the client says for a moment and hang up."""
    with contextlib.suppress(TimeoutError, OSError, ssl.SSLError):
        await asyncio.wait_for(reader.read(4096), 2.0)
    writer.close()
    with contextlib.suppress(TimeoutError, OSError, ssl.SSLError):
        await asyncio.wait_for(writer.wait_closed(), 2.0)


async def serve_tls(address: str, port: int, cert: str, key: str, stop: asyncio.Event) -> None:
    """A TLS server with ``cert`` (another CA's, for the cloud's names): what a TLS-inspecting
    firewall or captive portal shows a station in the cloud's place."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = await asyncio.start_server(_handshake_and_close, address, port, ssl=context)
    try:
        await stop.wait()
    finally:
        server.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m plugstream.lab.standins")
    commands = parser.add_subparsers(dest="command", required=True)
    ntp = commands.add_parser("ntp", help="SNTP server (pool.ntp.org's stand-in)")
    ntp.add_argument("--address", required=True)
    ntp.add_argument("--port", type=int, default=123)
    ntp.add_argument("--shift", type=float, default=0.0, help="seconds added to the wall clock")
    tls = commands.add_parser("tls", help="TLS server with a foreign certificate (interception)")
    tls.add_argument("--address", required=True)
    tls.add_argument("--port", type=int, default=443)
    tls.add_argument("--cert", required=True)
    tls.add_argument("--key", required=True)
    return parser


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.command == "ntp":
        await serve_ntp(args.address, args.port, args.shift, stop)
    else:
        await serve_tls(args.address, args.port, args.cert, args.key, stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one stand-in until SIGTERM / SIGINT; 0 after a clean stop, 1 if it cannot bind."""
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_main(args))
    except OSError as exc:
        print(f"plugstream lab: {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
