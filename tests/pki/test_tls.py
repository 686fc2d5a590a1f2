"""The station's check of a CSMS's TLS certificate (plugstream.pki.tls), over a real TLS
handshake on loopback: trust anchor, host name, validity by the station's clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from plugstream.pki.authority import CertificateAuthority
from plugstream.pki.tls import (
    OCPP_TLS12_CIPHERS,
    ServerRejected,
    peer_chain,
    station_context,
    verify_server,
)

pytestmark = pytest.mark.socket


def now() -> dt.datetime:
    """The time of the check, read when it is made: the certificates are issued by each
    test's fixture, later than this module was collected."""
    return dt.datetime.now(dt.UTC)


async def _handshake(
    cert: Path, key: Path, *, maximum: ssl.TLSVersion | None = None
) -> list[x509.Certificate]:
    """The chain a TLS server with ``cert`` sends to the station's context."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    if maximum is not None:
        server.maximum_version = maximum

    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    listener = await asyncio.start_server(close, "127.0.0.1", 0, ssl=server)
    port = listener.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=station_context(), server_hostname="127.0.0.1"
        )
        chain = peer_chain(writer.get_extra_info("ssl_object"))
        writer.close()
        return chain
    finally:
        listener.close()
        await listener.wait_closed()


@pytest.fixture
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("PlugStream CSMS Root")


@pytest.fixture
async def chain(ca: CertificateAuthority, tmp_path: Path) -> AsyncIterator[list[x509.Certificate]]:
    ca.issue_server(("csms.example",), ips=("127.0.0.1",)).write(
        tmp_path / "s.pem", tmp_path / "s.key"
    )
    yield await _handshake(tmp_path / "s.pem", tmp_path / "s.key")


def test_a_server_from_the_station_root_for_its_name_is_accepted(
    ca: CertificateAuthority, chain: list[x509.Certificate]
) -> None:
    for host in ("127.0.0.1", "csms.example"):
        leaf = verify_server(chain, host, [ca.root.certificate], now())
        assert leaf.subject == chain[0].subject


def test_a_server_from_an_unknown_ca_is_rejected(chain: list[x509.Certificate]) -> None:
    stranger = CertificateAuthority.create("Somebody Else's Root")
    with pytest.raises(ServerRejected, match="does not trust"):
        verify_server(chain, "127.0.0.1", [stranger.root.certificate], now())


def test_a_server_for_another_host_is_rejected(
    ca: CertificateAuthority, chain: list[x509.Certificate]
) -> None:
    with pytest.raises(
        ServerRejected, match=r"not for 'other\.example'.*csms\.example, 127\.0\.0\.1"
    ):
        verify_server(chain, "other.example", [ca.root.certificate], now())


def test_validity_is_judged_by_the_station_clock_not_the_host_clock(
    ca: CertificateAuthority, chain: list[x509.Certificate]
) -> None:
    """The certificate is valid by the machine's clock; a station whose clock is years
    ahead sees it expired, one whose clock is behind sees it not yet valid (A00.FR.411)."""
    ahead, behind = now() + dt.timedelta(days=3650), now() - dt.timedelta(days=2)
    with pytest.raises(ServerRejected, match=r"expired at .* the station's clock says"):
        verify_server(chain, "127.0.0.1", [ca.root.certificate], ahead)
    with pytest.raises(
        ServerRejected, match=r"not yet valid: valid from .* the station's clock says"
    ):
        verify_server(chain, "127.0.0.1", [ca.root.certificate], behind)


def test_no_trust_store_and_no_certificate_are_refused(
    ca: CertificateAuthority, chain: list[x509.Certificate]
) -> None:
    with pytest.raises(ServerRejected, match="trusts no root"):
        verify_server(chain, "127.0.0.1", [], now())
    with pytest.raises(ServerRejected, match="sent no certificate"):
        verify_server([], "127.0.0.1", [ca.root.certificate], now())


async def test_the_station_context_refuses_tls_below_1_2(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    """A00.FR.416/419: TLS 1.2 or above; a CSMS that only speaks 1.1 fails the handshake."""
    ca.issue_server(("localhost",)).write(tmp_path / "s.pem", tmp_path / "s.key")
    context = station_context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    offered = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert offered == set(OCPP_TLS12_CIPHERS)
    with pytest.raises(OSError):  # SSLError, or a reset by a server that gave up
        await _handshake(tmp_path / "s.pem", tmp_path / "s.key", maximum=ssl.TLSVersion.TLSv1_1)
