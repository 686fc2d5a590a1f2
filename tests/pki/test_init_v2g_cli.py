"""`plugstream pki init-v2g`: the V2G (ISO 15118) root and sub-CA an operator creates once,
which sign the stations' V2G certificates (A02.FR.11) and name the cloud's OCSP responder."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from plugstream.cli import main

pytestmark = pytest.mark.unit


def test_init_v2g_creates_a_root_and_sub_ca_naming_the_ocsp_url_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = tmp_path / "pki"
    argv = ["pki", "init-v2g", "--dir", str(pki), "--operator", "ACME"]
    assert main([*argv, "--ocsp-url", "https://cloud.example/ocsp"]) == 0
    pems = sorted(p for p in pki.rglob("*.pem") if "key" not in p.name)
    assert pems, "no certificate written"
    urls = set()
    for pem in pems:
        for cert in x509.load_pem_x509_certificates(pem.read_bytes()):
            try:
                aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
            except x509.ExtensionNotFound:
                continue
            urls |= {
                d.access_location.value
                for d in aia.value
                if d.access_method == AuthorityInformationAccessOID.OCSP
            }
    assert urls == {"https://cloud.example/ocsp"}
    keys = [p for p in pki.rglob("*") if p.is_file() and "key" in p.name]
    assert keys and all(p.stat().st_mode & 0o077 == 0 for p in keys)  # 0600
    before = {p: p.read_bytes() for p in keys}
    capsys.readouterr()
    assert main(argv) == 1  # a V2G PKI exists: its keys are kept
    assert "already exists" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in keys} == before


def test_init_v2g_refuses_a_non_http_ocsp_url_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["pki", "init-v2g", "--dir", str(tmp_path), "--operator", "ACME"]
    assert main([*argv, "--ocsp-url", "ftp://cloud.example/ocsp"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "http" in err[0]
    assert not list(tmp_path.rglob("*.pem"))
