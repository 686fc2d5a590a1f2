"""An RSA and an ECDSA server certificate at once (issue 14, point 15).

OCPP 2.0.1 A00.FR.318: the CSMS supports TLS_ECDHE_ECDSA_WITH_AES_{128,256}_GCM and
TLS_RSA_WITH_AES_{128,256}_GCM -- "the CSMS will have to provide 2 different
certificates". A station limited to one family (A00.FR.319 lets it be) must complete its
TLS 1.2 handshake with a cloud that holds both, and see the certificate of its family;
with one certificate only, the other family fails, as before.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from plugstream.cli import main
from plugstream.cloud.serve import READY
from plugstream.pki.authority import CertificateAuthority
from plugstream.pki.keystore import CSMS_ROOT, PKIStore
from plugstream.pki.tls import verify_server
from tests.support import WAIT, cloud_serve_argv, free_port, read_until, running_cloud, stop_process

ECDSA_SUITES = ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384")
RSA_SUITES = ("AES128-GCM-SHA256", "AES256-GCM-SHA384")  # TLS_RSA_WITH_AES_*_GCM
ECDHE_RSA_SUITES = ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384")


class Certs:
    """One CA's EC and RSA server certificates for localhost and 127.0.0.1, as files."""

    def __init__(self, folder: Path) -> None:
        self.ca = CertificateAuthority.create()
        folder.mkdir()
        self.root = folder / "root.pem"
        self.ca.write_root(self.root)
        self.ec = folder / "ec.pem", folder / "ec.key"
        self.rsa = folder / "rsa.pem", folder / "rsa.key"
        self.ca.issue_server().write(*self.ec)
        self.ca.issue_rsa_server().write(*self.rsa)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("dual") / "pki")


async def handshake(
    port: int, root: Path, suites: str, *, maximum: ssl.TLSVersion | None = None
) -> tuple[str, str, str, str]:
    """A client that offers only ``suites`` (TLS 1.2 unless ``maximum``) and checks the
    server against ``root``: the version, suite and key type it got, and the status line
    of an HTTPS request on the same connection."""
    context = ssl.create_default_context(cafile=str(root))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = maximum or ssl.TLSVersion.TLSv1_2
    context.set_ciphers(suites)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context), WAIT
    )
    try:
        tls: ssl.SSLObject = writer.get_extra_info("ssl_object")
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        public = x509.load_der_x509_certificate(der).public_key()
        kind = "rsa" if isinstance(public, rsa.RSAPublicKey) else "ec"
        writer.write(b"GET /api/v1/stations HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status = (await asyncio.wait_for(reader.readline(), WAIT)).decode().strip()
        version, cipher = tls.version(), tls.cipher()
        assert version is not None and cipher is not None
        return version, cipher[0], kind, status
    finally:
        writer.close()


@pytest.mark.socket
async def test_one_cloud_with_both_certificates_serves_each_suite_family(
    tmp_path: Path, certs: Certs
) -> None:
    async with running_cloud(
        tmp_path, tls_cert=certs.ec[0], tls_key=certs.ec[1], tls_extra_certs=(certs.rsa,)
    ) as cloud:
        for suite in ECDSA_SUITES:
            got = await handshake(cloud.port, certs.root, suite)
            assert got == ("TLSv1.2", suite, "ec", "HTTP/1.1 200 OK")
        for suite in RSA_SUITES + ECDHE_RSA_SUITES:
            got = await handshake(cloud.port, certs.root, suite)
            assert got == ("TLSv1.2", suite, "rsa", "HTTP/1.1 200 OK")
        # a client of each family offering both of its suites; and TLS 1.3 as before
        assert (await handshake(cloud.port, certs.root, ":".join(ECDSA_SUITES)))[2] == "ec"
        assert (await handshake(cloud.port, certs.root, ":".join(RSA_SUITES)))[2] == "rsa"
        tls13 = await handshake(
            cloud.port, certs.root, ":".join(ECDSA_SUITES), maximum=ssl.TLSVersion.TLSv1_3
        )
        assert tls13[0] == "TLSv1.3" and tls13[3] == "HTTP/1.1 200 OK"


@pytest.mark.socket
async def test_with_one_certificate_the_other_family_fails_as_before(
    tmp_path: Path, certs: Certs
) -> None:
    for name in ("ec", "rsa"):
        (tmp_path / name).mkdir()
    async with running_cloud(tmp_path / "ec", tls_cert=certs.ec[0], tls_key=certs.ec[1]) as cloud:
        assert (await handshake(cloud.port, certs.root, ECDSA_SUITES[0]))[2] == "ec"
        for suites in (RSA_SUITES, ECDHE_RSA_SUITES):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await handshake(cloud.port, certs.root, ":".join(suites))
    async with running_cloud(
        tmp_path / "rsa", tls_cert=certs.rsa[0], tls_key=certs.rsa[1]
    ) as cloud:
        assert (await handshake(cloud.port, certs.root, RSA_SUITES[0]))[2] == "rsa"
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await handshake(cloud.port, certs.root, ":".join(ECDSA_SUITES))


@pytest.mark.socket
async def test_pki_issues_both_and_cloud_serve_takes_both_pairs(tmp_path: Path) -> None:
    """The operator's way: `pki issue-server --key-type rsa` beside the EC one, then
    `cloud serve` with --tls-cert/--tls-key twice."""
    pki = tmp_path / "pki"
    assert main(["pki", "init", "--dir", str(pki), "--operator", "ACME"]) == 0
    for key_type in ("ec", "rsa"):
        issue = ["pki", "issue-server", "--dir", str(pki), "--name", "localhost"]
        assert main([*issue, "--ip", "127.0.0.1", "--key-type", key_type]) == 0
    server = pki / "server"
    port = free_port()
    proc = subprocess.Popen(
        cloud_serve_argv(
            port,
            tmp_path / "cloud.db",
            *["--tls-cert", str(server / "localhost.rsa.pem")],
            *["--tls-key", str(server / "localhost.rsa.key")],
            *["--tls-cert", str(server / "localhost.pem")],
            *["--tls-key", str(server / "localhost.key")],
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert "https://" in read_until(proc, READY)
        root = pki / f"{CSMS_ROOT}.pem"
        ecdsa = await handshake(port, root, ":".join(ECDSA_SUITES))
        assert ecdsa[1] in ECDSA_SUITES and ecdsa[2:] == ("ec", "HTTP/1.1 200 OK")
        plain_rsa = await handshake(port, root, ":".join(RSA_SUITES))
        assert plain_rsa[1] in RSA_SUITES and plain_rsa[2:] == ("rsa", "HTTP/1.1 200 OK")
    finally:
        stop_process(proc)
    assert proc.returncode is not None


@pytest.mark.unit
def test_the_rsa_server_certificate_passes_the_stations_check(certs: Certs) -> None:
    cert = x509.load_pem_x509_certificate(certs.rsa[0].read_bytes())
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size >= 2048  # A00.FR.502
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_encipherment and usage.digital_signature
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    now = cert.not_valid_before_utc + (cert.not_valid_after_utc - cert.not_valid_before_utc) / 2
    assert verify_server([cert], "127.0.0.1", [certs.ca.root.certificate], now) == cert
    assert isinstance(certs.ca.root.key, ec.EllipticCurvePrivateKey)  # signed by the EC root


@pytest.mark.unit
def test_pki_keeps_the_rsa_certificate_beside_the_ec_one(tmp_path: Path) -> None:
    store = PKIStore(tmp_path / "pki")
    store.init("ACME")
    ec_pair = store.issue_server("csms.example", ips=["192.0.2.1"])
    rsa_pair = store.issue_server("csms.example", ips=["192.0.2.1"], key_type="rsa")
    assert [p.name for p in ec_pair] == ["csms.example.pem", "csms.example.key"]
    assert [p.name for p in rsa_pair] == ["csms.example.rsa.pem", "csms.example.rsa.key"]
    assert oct(rsa_pair[1].stat().st_mode & 0o777) == "0o600"
    shown = {e.path.name: e.subject for e in store.show()}
    assert shown["csms.example.rsa.pem"] == shown["csms.example.pem"] == "csms.example"


@pytest.mark.unit
def test_cloud_serve_refuses_tls_pairs_that_do_not_pair_up(
    certs: Certs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ec_cert, ec_key = (str(p) for p in certs.ec)
    rsa_cert, rsa_key = (str(p) for p in certs.rsa)
    other = CertificateAuthority.create().issue_server()
    other.write(tmp_path / "o.pem", tmp_path / "o.key")
    cases = {
        "go together: 2 certificate(s), 1 key(s)": [
            *("--tls-cert", ec_cert, "--tls-cert", rsa_cert, "--tls-key", ec_key),
        ],
        "must be an EC and an RSA one, not ec and ec": [
            *("--tls-cert", ec_cert, "--tls-key", ec_key),
            *("--tls-cert", str(tmp_path / "o.pem"), "--tls-key", str(tmp_path / "o.key")),
        ],
        "not the key of the certificate": [
            *("--tls-cert", ec_cert, "--tls-key", rsa_key),
            *("--tls-cert", rsa_cert, "--tls-key", ec_key),
        ],
        "at most two --tls-cert/--tls-key pairs": [
            *("--tls-cert", ec_cert, "--tls-key", ec_key) * 3,
        ],
    }
    for reason, flags in cases.items():
        assert main(["cloud", "serve", "--port", "0", *flags]) == 2, reason
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and reason in err, err
