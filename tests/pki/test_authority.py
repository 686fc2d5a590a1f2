"""The certificate authority: what it issues passes (or fails) a real TLS handshake."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ssl
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from plugstream.pki.authority import (
    LEAF_DAYS,
    ROOT_DAYS,
    CertificateAuthority,
    IssuedCertificate,
    PKIError,
    load_certificate,
    load_pair,
    load_private_key,
)
from plugstream.pki.keystore import PKIStore

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


@pytest.mark.socket
async def test_a_client_trusting_the_root_completes_the_handshake_by_ip_and_by_name(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    context = server_context(tmp_path, ca)
    assert await handshake(context, client_context(ca), HOST) == b"hello"
    assert await handshake(context, client_context(ca), "localhost") == b"hello"


@pytest.mark.socket
async def test_a_client_trusting_another_root_refuses_the_server(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    other = CertificateAuthority.create("Someone Else's Root")
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(server_context(tmp_path, ca), client_context(other), HOST)


@pytest.mark.socket
async def test_a_name_the_certificate_does_not_carry_is_refused(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        await handshake(server_context(tmp_path, ca), client_context(ca), "csms.example.com")


@pytest.mark.socket
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


@pytest.mark.unit
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


@pytest.mark.unit
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


# --- CSR signing, firmware signer, the PKI directory and its errors -------------------

OPERATOR = "ACME Charging"


def make_csr(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    common_name: str | None = "SN-000123",
    organization: str | None = None,
) -> bytes:
    """A CSR as a station makes it in SignCertificate (A02/A03)."""
    attributes = []
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if common_name is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(attributes))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> PKIStore:
    pki = PKIStore(tmp_path_factory.mktemp("pki") / "pki")
    pki.init(OPERATOR, manufacturer="PlugStream Manufacturing")
    return pki


def subject_of(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


@pytest.mark.socket
async def test_a_station_certificate_signed_from_its_csr_passes_mutual_tls(
    tmp_path: Path, store: PKIStore
) -> None:
    station_key = ec.generate_private_key(ec.SECP256R1())
    csr = tmp_path / "station.csr"
    csr.write_bytes(make_csr(station_key, "SN-000123", organization="Someone Else"))
    pem, kept = store.sign_csr(csr)
    cert = x509.load_pem_x509_certificate(pem)
    ca = store.csms_root()
    cert.verify_directly_issued_by(ca.root.certificate)
    assert subject_of(cert, NameOID.COMMON_NAME) == ["SN-000123"]
    assert subject_of(cert, NameOID.ORGANIZATION_NAME) == [OPERATOR]  # A00.FR.509, not the CSR's
    assert kept.read_bytes() == pem and kept.name == "SN-000123.pem"
    (tmp_path / "s.pem").write_bytes(pem)
    (tmp_path / "s.key").write_bytes(IssuedCertificate(cert, station_key).key_pem)
    client = client_context(ca)
    client.load_cert_chain(tmp_path / "s.pem", tmp_path / "s.key")
    assert await handshake(server_context(tmp_path, ca, client_ca=True), client, HOST) == b"hello"


@pytest.mark.unit
def test_an_rsa_2048_csr_is_signed(store: PKIStore) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = store.csms_root().sign_csr(make_csr(key, "SN-RSA"))
    assert subject_of(cert, NameOID.COMMON_NAME) == ["SN-RSA"]
    assert cert.public_key() == key.public_key()


def _flip_signature(csr_pem: bytes) -> bytes:
    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the signature
    body = base64.encodebytes(bytes(der)).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    text = "\n".join(["-----BEGIN CERTIFICATE REQUEST-----", *lines])
    return (text + "\n-----END CERTIFICATE REQUEST-----\n").encode()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: _flip_signature(make_csr(ec.generate_private_key(ec.SECP256R1()))), "signature"),
        (
            lambda: make_csr(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
            "RSA key of 1024 bits",
        ),
        (lambda: make_csr(ec.generate_private_key(ec.SECP384R1())), "P-256"),
        (lambda: make_csr(ec.generate_private_key(ec.SECP256R1()), None), "no CN"),
        (lambda: make_csr(ec.generate_private_key(ec.SECP256R1()), "  "), "no CN"),
        (lambda: make_csr(ec.generate_private_key(ec.SECP256R1()), "10.0.0.7"), "IP address"),
        (lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", "not a PEM"),
        (lambda: b"hello", "not a PEM"),
    ],
    ids=["bad-signature", "rsa-1024", "p-384", "no-cn", "blank-cn", "ip-cn", "broken", "not-pem"],
)
@pytest.mark.unit
def test_a_csr_that_breaks_the_rules_is_refused_naming_the_file(
    tmp_path: Path, store: PKIStore, make: Callable[[], bytes], message: str
) -> None:
    csr = tmp_path / "bad.csr"
    csr.write_bytes(make())
    stations = store.directory / "stations"
    before = sorted(stations.glob("*"))
    with pytest.raises(PKIError, match=message) as caught:
        store.sign_csr(csr)
    assert str(caught.value).startswith(str(csr))
    assert sorted(stations.glob("*")) == before  # nothing issued


@pytest.mark.unit
def test_the_firmware_signer_is_a_p256_code_signing_certificate_under_the_manufacturer_root(
    store: PKIStore,
) -> None:
    signer = store.firmware_signing()
    cert = signer.certificate
    cert.verify_directly_issued_by(store.manufacturer_root().root.certificate)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CODE_SIGNING]
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    assert subject_of(cert, NameOID.ORGANIZATION_NAME) == ["PlugStream Manufacturing"]
    image = b"firmware image v2"
    signature = signer.key.sign(image, ec.ECDSA(hashes.SHA256()))
    public.verify(signature, image, ec.ECDSA(hashes.SHA256()))
    # The PEM carries the manufacturer root after the signer: the chain a station checks.
    chain = x509.load_pem_x509_certificates((store.directory / "firmware-signing.pem").read_bytes())
    assert [c.subject for c in chain] == [
        cert.subject,
        store.manufacturer_root().root.certificate.subject,
    ]


@pytest.mark.unit
def test_a_firmware_signer_from_another_ca_is_refused(tmp_path: Path) -> None:
    pki = PKIStore(tmp_path / "pki")
    pki.init(OPERATOR)
    impostor = pki.csms_root().issue_firmware_signing("Impostor")
    impostor.write(pki.directory / "firmware-signing.pem", pki.directory / "firmware-signing.key")
    with pytest.raises(PKIError, match=r"firmware-signing\.pem: not issued by the manufacturer"):
        pki.firmware_signing()


@pytest.mark.unit
def test_the_csms_root_and_the_manufacturer_root_are_different_cas(store: PKIStore) -> None:
    csms, maker = store.csms_root(), store.manufacturer_root()
    assert csms.organization == OPERATOR == store.operator
    assert maker.organization == "PlugStream Manufacturing"
    assert csms.root.certificate.public_key() != maker.root.certificate.public_key()
    server = csms.issue_server(["csms.example"], ips=[]).certificate
    assert subject_of(server, NameOID.ORGANIZATION_NAME) == [OPERATOR]
    with pytest.raises((ValueError, InvalidSignature)):
        server.verify_directly_issued_by(maker.root.certificate)


@pytest.mark.unit
def test_the_directory_is_0700_and_every_key_0600(tmp_path: Path) -> None:
    pki = PKIStore(tmp_path / "pki")
    pki.init(OPERATOR)
    cert, key = pki.issue_server("setup.example", ips=["127.0.0.1"])
    assert stat.S_IMODE(pki.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((pki.directory / "server").stat().st_mode) == 0o700
    keys = sorted(pki.directory.rglob("*.key"))
    assert [k.name for k in keys] == [
        "csms-root.key",
        "firmware-signing.key",
        "manufacturer-root.key",
        "setup.example.key",
    ]
    for k in keys:
        assert stat.S_IMODE(k.stat().st_mode) == 0o600, k
    assert (
        load_pair(cert, key).certificate.subject
        == x509.load_pem_x509_certificate(cert.read_bytes()).subject
    )


@pytest.mark.unit
def test_init_never_overwrites_an_existing_pki(store: PKIStore) -> None:
    root = (store.directory / "csms-root.key").read_bytes()
    with pytest.raises(PKIError, match="already exists") as caught:
        store.init("Another Operator")
    assert str(store.directory / "csms-root.key") in str(caught.value)
    assert (store.directory / "csms-root.key").read_bytes() == root


@pytest.mark.unit
def test_a_missing_key_or_certificate_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(PKIError, match="missing private key") as caught:
        load_private_key(tmp_path / "nope.key")
    assert str(tmp_path / "nope.key") in str(caught.value)
    with pytest.raises(PKIError, match="missing certificate"):
        load_certificate(tmp_path / "nope.pem")
    with pytest.raises(PKIError, match=r"csms-root\.pem: missing"):
        PKIStore(tmp_path / "empty").csms_root()


@pytest.mark.unit
def test_a_file_that_is_not_pem_is_refused_naming_it(tmp_path: Path, store: PKIStore) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("this is not a certificate\n")
    with pytest.raises(PKIError, match=r"junk\.pem: not a PEM certificate"):
        load_certificate(junk)
    with pytest.raises(PKIError, match=r"junk\.pem: not a PEM private key"):
        load_private_key(junk)
    rsa_key = tmp_path / "rsa.key"
    rsa_key.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(PKIError, match="not an EC private key"):
        load_private_key(rsa_key)


@pytest.mark.unit
def test_a_key_that_is_not_the_certificates_is_refused(tmp_path: Path, store: PKIStore) -> None:
    ca = store.csms_root()
    ca.issue_server(["a.example"], ips=[]).write(tmp_path / "a.pem", tmp_path / "a.key")
    ca.issue_server(["b.example"], ips=[]).write(tmp_path / "b.pem", tmp_path / "b.key")
    with pytest.raises(PKIError, match=r"b\.key: key does not match the certificate .*a\.pem"):
        load_pair(tmp_path / "a.pem", tmp_path / "b.key")
    with pytest.raises(PKIError, match="does not match"):
        CertificateAuthority.load(tmp_path / "a.pem", tmp_path / "b.key")


@pytest.mark.unit
def test_an_expired_or_not_yet_valid_certificate_is_refused_by_the_given_clock(
    tmp_path: Path,
) -> None:
    now = dt.datetime.now(dt.UTC)
    ca = CertificateAuthority.create("Short Root", now=now)
    ca.write_root(tmp_path / "root.pem", tmp_path / "root.key")
    path = tmp_path / "root.pem"
    assert load_certificate(path, now=now).subject == ca.root.certificate.subject
    with pytest.raises(PKIError, match=r"root\.pem: certificate expired"):
        load_certificate(path, now=now + dt.timedelta(days=ROOT_DAYS + 1))
    with pytest.raises(PKIError, match=r"root\.pem: certificate not valid before"):
        load_certificate(path, now=now - dt.timedelta(days=1))
    # Loading the CA checks its root the same way: an expired root issues nothing.
    with pytest.raises(PKIError, match="expired"):
        load_pair(path, tmp_path / "root.key", now=now + dt.timedelta(days=ROOT_DAYS + 1))


@pytest.mark.unit
def test_show_lists_every_certificate_with_its_status(tmp_path: Path) -> None:
    pki = PKIStore(tmp_path / "pki")
    pki.init(OPERATOR)
    pki.issue_server("csms.example", ips=["127.0.0.1"])
    entries = {str(e.path.relative_to(pki.directory)): e for e in pki.show()}
    assert set(entries) == {
        "csms-root.pem",
        "manufacturer-root.pem",
        "firmware-signing.pem",
        "server/csms.example.pem",
    }
    assert {e.status for e in entries.values()} == {"valid"}
    assert entries["server/csms.example.pem"].issuer == f"{OPERATOR} CSMS Root CA"
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=LEAF_DAYS + 2)
    assert {e.path.name: e.status for e in pki.show(now=later)}["csms.example.pem"] == "expired"
