"""``plugstream pki`` as an operator uses it: init, issue-server, sign-csr, show; errors are
one line (exit 2 for a bad flag, exit 1 for a PKI problem such as a missing key)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from plugstream.cli import main

pytestmark = pytest.mark.unit


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def csr(path: Path, common_name: str, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> Path:
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(request.public_bytes(serialization.Encoding.PEM))
    return path


def error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("plugstream: error: "), err
    return lines[0]


def test_init_issue_server_sign_csr_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "pki"
    code, out, err = run(capsys, "pki", "init", "--dir", str(d), "--operator", "ACME Charging")
    assert code == 0, err
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for key in ("csms-root.key", "manufacturer-root.key", "firmware-signing.key"):
        assert stat.S_IMODE((d / key).stat().st_mode) == 0o600

    code, out, err = run(
        capsys, "pki", "issue-server", "--dir", str(d), "--name", "ocpp.example",
        "--ip", "127.0.0.1", "--ip", "::1",
    )  # fmt: skip
    assert code == 0, err
    server = x509.load_pem_x509_certificate((d / "server" / "ocpp.example.pem").read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["ocpp.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert stat.S_IMODE((d / "server" / "ocpp.example.key").stat().st_mode) == 0o600

    station = csr(tmp_path / "st.csr", "SN-42", ec.generate_private_key(ec.SECP256R1()))
    code, out, err = run(capsys, "pki", "sign-csr", "--dir", str(d), "--csr", str(station))
    assert code == 0, err
    cert = x509.load_pem_x509_certificate(out.encode())
    assert cert.subject.rfc4514_string() == "CN=SN-42,O=ACME Charging"

    out_file = tmp_path / "st.pem"
    code, _, err = run(
        capsys, "pki", "sign-csr", "--dir", str(d), "--csr", str(station), "--out", str(out_file)
    )
    assert code == 0, err
    assert x509.load_pem_x509_certificate(out_file.read_bytes()).subject == cert.subject

    code, out, err = run(capsys, "pki", "show", "--dir", str(d))
    assert code == 0, err
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert set(lines) == {
        "csms-root.pem",
        "manufacturer-root.pem",
        "firmware-signing.pem",
        "server/ocpp.example.pem",
        "stations/SN-42.pem",
    }
    assert all(line.split()[1] == "valid" for line in lines.values())
    assert "issued by CN=ACME Charging CSMS Root CA" in lines["stations/SN-42.pem"]
    assert "issued by CN=PlugStream Manufacturer Root CA" in lines["firmware-signing.pem"]


def test_a_weak_or_forged_csr_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "pki"
    assert run(capsys, "pki", "init", "--dir", str(d), "--operator", "ACME")[0] == 0
    weak = csr(tmp_path / "weak.csr", "SN-1", rsa.generate_private_key(65537, 1024))
    code, _, err = run(capsys, "pki", "sign-csr", "--dir", str(d), "--csr", str(weak))
    assert code == 1
    assert "weak.csr: RSA key of 1024 bits" in error_line(err)
    code, _, err = run(capsys, "pki", "sign-csr", "--dir", str(d), "--csr", str(tmp_path / "x"))
    assert code == 1
    assert "x: missing CSR" in error_line(err)
    assert not (d / "stations").exists()


def test_a_pki_problem_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "pki"
    code, _, err = run(capsys, "pki", "show", "--dir", str(d))
    assert code == 1 and "csms-root.pem: missing" in error_line(err)
    code, _, err = run(capsys, "pki", "issue-server", "--dir", str(d), "--name", "a.example")
    assert code == 1 and "csms-root.pem: missing certificate" in error_line(err)

    assert run(capsys, "pki", "init", "--dir", str(d), "--operator", "ACME")[0] == 0
    code, _, err = run(capsys, "pki", "init", "--dir", str(d), "--operator", "ACME")
    assert code == 1 and "already exists" in error_line(err)
    (d / "csms-root.key").unlink()
    code, _, err = run(capsys, "pki", "issue-server", "--dir", str(d), "--name", "a.example")
    assert code == 1 and "csms-root.key: missing private key" in error_line(err)
    (d / "csms-root.key").write_text("garbage")
    code, _, err = run(capsys, "pki", "issue-server", "--dir", str(d), "--name", "a.example")
    assert code == 1 and "csms-root.key: not a PEM private key" in error_line(err)
    assert not (d / "server" / "a.example.pem").exists()


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (("pki", "init", "--dir", "D"), "--operator"),
        (("pki", "init", "--dir", "D", "--operator", "X", "--bogus"), "--bogus"),
        (("pki", "issue-server", "--dir", "D", "--name", "a", "--ip", "not-an-ip"), "--ip"),
        (("pki", "init", "--dir", "D", "--operator", " "), "--operator"),
        (("pki", "sign-csr", "--dir", "D"), "--csr"),
        (("pki", "nope"), "nope"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], mentions: str
) -> None:
    args = tuple(str(tmp_path / "pki") if a == "D" else a for a in args)
    code, _, err = run(capsys, *args)
    assert code == 2
    assert mentions in error_line(err)
    assert not (tmp_path / "pki").exists()
