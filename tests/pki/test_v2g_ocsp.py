"""The V2G hierarchy (pki/v2g.py) and the sans-I/O OCSP core (pki/ocsp.py), and the C07
rules that read its answers (cloud/certificates/contract.py): no sockets."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from plugstream.cloud.certificates.contract import (
    ChainError,
    certificate_status,
    checks_for_chain,
    checks_for_hash_data,
)
from plugstream.pki.authority import PKIError
from plugstream.pki.ocsp import (
    CertStatus,
    OcspAnswer,
    OcspFailure,
    build_response,
    error_response,
    find_issuer,
    hash_data_of,
    parse_request,
    read_response,
    request_for_hash_data,
)
from plugstream.pki.v2g import (
    V2GAuthority,
    configured_ocsp_url,
    init_v2g,
    load_v2g,
    ocsp_url_of,
)

pytestmark = pytest.mark.unit

URL = "http://127.0.0.1:9/ocsp"
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def v2g() -> V2GAuthority:
    return V2GAuthority.create("Test CPO", ocsp_url=URL)


def test_init_v2g_makes_a_root_and_a_sub_ca_and_never_overwrites(tmp_path: Path) -> None:
    made = init_v2g(tmp_path / "pki", "Test CPO", ocsp_url=URL)
    loaded = load_v2g(tmp_path / "pki")
    assert loaded.root.certificate == made.root.certificate
    sub = loaded.sub_ca.certificate
    sub.verify_directly_issued_by(loaded.root.certificate)
    assert sub.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert ocsp_url_of(sub) == URL == configured_ocsp_url(tmp_path / "pki")
    assert (tmp_path / "pki" / "v2g-root.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(PKIError, match="already exists"):
        init_v2g(tmp_path / "pki", "Other")
    with pytest.raises(PKIError, match="operator name is empty"):
        init_v2g(tmp_path / "other", " ")


def test_a_v2g_csr_keeps_its_subject_and_gets_the_aia(v2g: V2GAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CPO"),
            x509.NameAttribute(NameOID.COMMON_NAME, "DEPST001"),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    cert = v2g.sign_csr(csr.public_bytes(serialization.Encoding.PEM), ocsp_url=URL)
    assert cert.subject == subject and cert.public_key() == key.public_key()
    cert.verify_directly_issued_by(v2g.sub_ca.certificate)
    assert ocsp_url_of(cert) == URL
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_agreement and not usage.key_cert_sign
    with pytest.raises(PKIError, match="not a PEM"):
        v2g.sign_csr(b"nonsense")


@pytest.mark.parametrize("algorithm", ["SHA256", "SHA384", "SHA512"])
def test_an_ocsp_round_trip_in_each_of_ocpps_hashes(v2g: V2GAuthority, algorithm: str) -> None:
    contract = v2g.issue_contract("DEPSTC000001", ocsp_url=URL)
    data = hash_data_of(contract.certificate, v2g.sub_ca.certificate, algorithm)
    request = parse_request(request_for_hash_data(data))
    issuer = find_issuer(request, [v2g.root, v2g.sub_ca])
    assert issuer is v2g.sub_ca
    der = build_response(request, issuer, OcspAnswer(CertStatus.GOOD), NOW)
    trusted = [v2g.root.certificate, v2g.sub_ca.certificate]
    answer = read_response(der, contract.certificate.serial_number, trusted=trusted, now=NOW)
    assert answer.status is CertStatus.GOOD


def test_an_answer_from_a_responder_nobody_trusts_does_not_count(v2g: V2GAuthority) -> None:
    rogue = V2GAuthority.create("Rogue")
    contract = v2g.issue_contract("DEPSTC000002")
    data = hash_data_of(contract.certificate, v2g.sub_ca.certificate)
    request = parse_request(request_for_hash_data(data))
    forged = build_response(request, rogue.sub_ca, OcspAnswer(CertStatus.GOOD), NOW)
    serial = contract.certificate.serial_number
    assert read_response(forged, serial).status is CertStatus.GOOD  # unchecked: as it says
    with pytest.raises(OcspFailure, match="not signed by a responder this CSMS trusts"):
        read_response(forged, serial, trusted=[v2g.root.certificate, v2g.sub_ca.certificate])
    stale = build_response(request, v2g.sub_ca, OcspAnswer(CertStatus.GOOD), NOW)
    with pytest.raises(OcspFailure, match="not current"):
        read_response(stale, serial, now=NOW + dt.timedelta(days=2))
    with pytest.raises(OcspFailure, match="says nothing of serial"):
        read_response(stale, serial + 1)
    with pytest.raises(OcspFailure, match="UNAUTHORIZED"):
        read_response(error_response(ocsp.OCSPResponseStatus.UNAUTHORIZED), serial)
    with pytest.raises(OcspFailure, match="not a DER"):
        read_response(b"junk", serial)


def test_bad_hash_data_is_refused_with_a_reason() -> None:
    good = {"hashAlgorithm": "SHA256", "issuerNameHash": "00" * 32, "issuerKeyHash": "00" * 32}
    with pytest.raises(OcspFailure, match="not one of OCPP's"):
        request_for_hash_data({**good, "hashAlgorithm": "MD5", "serialNumber": "1"})
    with pytest.raises(OcspFailure, match="must be hex"):
        request_for_hash_data({**good, "serialNumber": "xyz"})
    with pytest.raises(OcspFailure, match="32-byte"):
        request_for_hash_data({**good, "issuerNameHash": "00" * 20, "serialNumber": "1"})


def test_a_central_chain_is_checked_to_a_trusted_root(v2g: V2GAuthority) -> None:
    contract = v2g.issue_contract("DEPSTC000003", ocsp_url=URL)
    chain = (contract.cert_pem + v2g.sub_ca.cert_pem).decode()
    checks = checks_for_chain(chain, [v2g.root.certificate], NOW)
    assert [c.serial for c in checks] == [
        contract.certificate.serial_number,
        v2g.sub_ca.certificate.serial_number,
    ]
    assert {c.responder_url for c in checks} == {URL}
    with pytest.raises(ChainError, match="not a trusted"):
        checks_for_chain(chain, [V2GAuthority.create("Other").root.certificate], NOW)
    with pytest.raises(ChainError) as expired:
        checks_for_chain(chain, [v2g.root.certificate], NOW + dt.timedelta(days=3000))
    assert expired.value.expired
    with pytest.raises(ChainError, match="not a PEM"):
        checks_for_chain("-----BEGIN nonsense", [v2g.root.certificate], NOW)
    no_aia = v2g.issue_contract("DEPSTC000004")  # names no responder
    with pytest.raises(ChainError, match="names no OCSP responder"):
        checks_for_chain(
            (no_aia.cert_pem + v2g.sub_ca.cert_pem).decode(), [v2g.root.certificate], NOW
        )


def test_hash_data_is_taken_four_at_most() -> None:
    item = {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": "aa",
        "issuerKeyHash": "bb",
        "serialNumber": "1",
        "responderURL": URL,
    }
    assert len(checks_for_hash_data([item] * 6)) == 4


def test_c07_outcomes() -> None:
    good, revoked = OcspAnswer(CertStatus.GOOD), OcspAnswer(CertStatus.REVOKED, NOW)
    assert certificate_status([good, good], "Accepted") == ("Accepted", "Accepted")
    assert certificate_status([good], "ConcurrentTx") == ("Accepted", "ConcurrentTx")
    assert certificate_status([good, revoked], "Accepted") == ("CertificateRevoked", "Invalid")
    assert certificate_status([good], "Blocked") == ("ContractCancelled", "Blocked")
    assert certificate_status([good], "Unknown") == ("ContractCancelled", "Unknown")
    unknown = OcspAnswer(CertStatus.UNKNOWN)
    assert certificate_status([unknown], "Accepted") == ("CertChainError", "Invalid")
    assert certificate_status([OcspFailure("down")], "Accepted") == ("CertChainError", "Invalid")
    assert certificate_status([], "Accepted") == ("NoCertificateAvailable", "Invalid")
