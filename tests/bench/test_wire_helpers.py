"""The byte counting of bench/wire.py: what its figures rest on, at tiny sizes."""

from __future__ import annotations

import asyncio
import importlib.util
import ssl
import sys
from pathlib import Path
from types import ModuleType

import pytest

from plugstream.pki.authority import CertificateAuthority
from tests.support import WAIT

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # a bench imports its neighbour procs.py, as when run as a script


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


wire = load("wire")


def record(length: int, kind: int = 23) -> bytes:
    return bytes([kind, 3, 3]) + length.to_bytes(2, "big") + b"x" * length


@pytest.mark.unit
def test_tls_records_are_counted_whatever_the_tcp_chunks() -> None:
    stream = record(10) + record(300) + record(0) + record(27)
    for size in (1, 2, 5, 7, 64, len(stream)):
        direction = wire.Direction()
        for i in range(0, len(stream), size):
            direction.feed(stream[i : i + size])
        assert direction.bytes == len(stream)
        assert dict(direction.sizes) == {15: 1, 305: 1, 5: 1, 32: 1}


@pytest.mark.unit
def test_keepalive_is_told_apart_and_a_day_counts_every_ping_on_time() -> None:
    up, down = wire.Direction(), wire.Direction()
    for _ in range(3):  # three pings from the station, answered
        up.feed(record(wire.KEEPALIVE_UP - 5))
        down.feed(record(wire.KEEPALIVE_DOWN - 5))
    up.feed(record(200))  # a Heartbeat, say
    tally = wire.Tally(up.bytes, down.bytes, up.sizes, down.sizes, 1)
    assert tally.keepalive_records == (3, 3)
    assert tally.payload == 205
    run = wire.Run("1.6", True, "x", ping_interval=60)
    # over a measured hour: 205 bytes of payload; a day: 24 x that, plus 1440 station
    # pings, 60 bytes each; the cloud (every 300 s) pings only a quiet station: not this one
    day = run.real_equivalent(tally, 3600.0, 86_400.0, 300.0, scale=True)
    assert day == pytest.approx(205 * 24 + 1440 * 60)
    # a station that does not ping is pinged by the cloud: 288 a day
    quiet = wire.Run("1.6", True, "x", ping_interval=0)
    assert quiet.real_equivalent(tally, 3600.0, 86_400.0, 300.0, scale=True) == pytest.approx(
        205 * 24 + 288 * 60
    )


@pytest.mark.socket
async def test_the_relay_counts_both_ways_of_a_tls_connection(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("Relay Test Root")
    cert, key = tmp_path / "s.pem", tmp_path / "s.key"
    ca.issue_server(ips=["127.0.0.1"]).write(cert, key)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(1000))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
    relay = wire.Relay(server.sockets[0].getsockname()[1])
    await relay.start()
    try:
        client_ctx = ssl.create_default_context(cadata=ca.root_pem.decode())
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", relay.port, ssl=client_ctx), WAIT
        )
        writer.write(b"a" * 1000)
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(1000), WAIT) == b"a" * 1000
        # the server closed after its echo: its end reaches us only through the relay, so
        # at our end of the stream the relay has counted all it sent (and all we sent
        # came before the echo)
        await asyncio.wait_for(reader.read(), WAIT)
        writer.close()
        tally = relay.tally()
        assert tally.connections == 1
        # the payload, plus the TLS handshake and record overhead, each way
        assert tally.up > 1000 and tally.down > 1000 + 300
        assert sum(tally.up_sizes.values()) >= 2 and sum(tally.down_sizes.values()) >= 2
    finally:
        await relay.stop()
        server.close()
        await server.wait_closed()
