"""The certificate authority: what it issues passes (or fails) a real TLS handshake."""

from __future__ import annotations

import asyncio
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from plugstream.pki.authority import CertificateAuthority

HOST = "127.0.0.1"


def server_context(
    tmp_path: Path, ca: CertificateAuthority, *, client_ca: bool = False
) -> ssl.SSLContext:
    server = ca.issue_server(["localhost"], ips=[HOST])
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    server.write(cert, key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=ca.root_pem.decode())
    return context


def client_context(root: CertificateAuthority) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=root.root_pem.decode())
    return context


async def handshake(
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    server_hostname: str,
) -> bytes:
    """Connect over TLS to an echo server on loopback; what came back."""
    seen: list[str | None] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            peer = writer.get_extra_info("peercert")
            seen.append(None if not peer else dict(x[0] for x in peer["subject"])["commonName"])
            writer.write(await reader.readexactly(5))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, HOST, 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(HOST, port, ssl=client_ctx, server_hostname=server_hostname),
            5,
        )
        try:
            writer.write(b"hello")
            await writer.drain()
            return await asyncio.wait_for(reader.readexactly(5), 5)
        finally:
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("PlugStream Test Root")


async def test_a_client_trusting_the_root_completes_the_handshake_by_ip_and_by_name(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    context = server_context(tmp_path, ca)
    assert await handshake(context, client_context(ca), HOST) == b"hello"
    assert await handshake(context, client_context(ca), "localhost") == b"hello"


async def test_a_client_trusting_another_root_refuses_the_server(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    other = CertificateAuthority.create("Someone Else's Root")
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(server_context(tmp_path, ca), client_context(other), HOST)


async def test_a_name_the_certificate_does_not_carry_is_refused(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        await handshake(server_context(tmp_path, ca), client_context(ca), "csms.example.com")


async def test_a_station_certificate_proves_its_station_id_to_the_server(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    station = ca.issue_client("CP-0001")
    cert, key = tmp_path / "station.pem", tmp_path / "station.key"
    station.write(cert, key)
    client = client_context(ca)
    client.load_cert_chain(cert, key)
    assert await handshake(server_context(tmp_path, ca, client_ca=True), client, HOST) == b"hello"
    usage = station.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    subject = station.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert subject[0].value == "CP-0001"


def test_the_root_is_a_ca_and_the_server_certificate_is_for_servers_only(
    ca: CertificateAuthority,
) -> None:
    root = ca.root.certificate
    constraints = root.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    assert root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    server = ca.issue_server(["csms.local"], ips=[HOST]).certificate
    assert server.issuer == root.subject
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["csms.local"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [HOST]


def test_keys_are_written_for_their_owner_only_and_the_root_loads_back(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    ca.write_root(tmp_path / "root.pem", tmp_path / "root.key")
    ca.issue_server().write(tmp_path / "s.pem", tmp_path / "s.key")
    for key in ("root.key", "s.key"):
        assert stat.S_IMODE((tmp_path / key).stat().st_mode) == 0o600
    again = CertificateAuthority.load(tmp_path / "root.pem", tmp_path / "root.key")
    assert again.root_pem == ca.root_pem
    issued = again.issue_client("CP-2").certificate
    issued.verify_directly_issued_by(ca.root.certificate)
