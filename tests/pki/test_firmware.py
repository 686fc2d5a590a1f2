"""Firmware signing and verification: what a station would install, and what it refuses."""

from __future__ import annotations

import base64
import datetime as dt
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from plugstream.pki.authority import CertificateAuthority
from plugstream.pki.firmware import (
    InvalidCertificate,
    InvalidSignature,
    firmware_digest,
    sign_firmware,
    verify_firmware,
    verify_signing_certificate,
)

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)  # the station's (injected) clock
IMAGE = b"PlugStream 7 firmware 2.4.1\n" + bytes(range(256)) * 64


@dataclass(frozen=True)
class Signer:
    key: ec.EllipticCurvePrivateKey
    cert_pem: bytes


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PlugStream Manufacturing"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make_root(
    cn: str = "PlugStream Manufacturer Root", *, ca: bool = True
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=365))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_signer(
    root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    *,
    not_before: dt.datetime = NOW - dt.timedelta(days=1),
    not_after: dt.datetime = NOW + dt.timedelta(days=365),
    usage: x509.ObjectIdentifier | None = ExtendedKeyUsageOID.CODE_SIGNING,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> Signer:
    root_key, root_cert = root
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("PlugStream Firmware Signing"))
        .issuer_name(root_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    cert = builder.sign(root_key, hashes.SHA256())
    return Signer(key, cert.public_bytes(serialization.Encoding.PEM))


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def root() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    return make_root()


@pytest.fixture(scope="module")
def signer(root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]) -> Signer:
    return make_signer(root)


def test_good_image_verifies(
    root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], signer: Signer
) -> None:
    signature = sign_firmware(IMAGE, signer.key)
    der = base64.b64decode(signature, validate=True)
    assert der[0] == 0x30  # a DER SEQUENCE (r, s), as the spec's base64 carries
    verify_firmware(IMAGE, signature, signer.cert_pem, pem(root[1]), now=NOW)
    verify_firmware(IMAGE, signature, signer.cert_pem.decode(), [pem(root[1]).decode()], now=NOW)


def test_one_flipped_byte_is_invalid_signature(
    root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], signer: Signer
) -> None:
    signature = sign_firmware(IMAGE, signer.key)
    tampered = bytearray(IMAGE)
    tampered[len(tampered) // 2] ^= 0x01
    with pytest.raises(InvalidSignature) as caught:
        verify_firmware(bytes(tampered), signature, signer.cert_pem, pem(root[1]), now=NOW)
    assert caught.value.status == "InvalidSignature"
    assert caught.value.security_event == "InvalidFirmwareSignature"


def test_signature_by_another_key_under_a_trusted_cert_is_invalid_signature(
    root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], signer: Signer
) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidSignature):
        verify_firmware(IMAGE, sign_firmware(IMAGE, other), signer.cert_pem, pem(root[1]), now=NOW)


def test_valid_signature_from_untrusted_signer_is_invalid_certificate(
    root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
) -> None:
    # Same subject name as the real root: only the issuer's signature tells them apart.
    impostor_root = make_root()
    impostor = make_signer(impostor_root)
    signature = sign_firmware(IMAGE, impostor.key)
    verify_firmware(IMAGE, signature, impostor.cert_pem, pem(impostor_root[1]), now=NOW)
    with pytest.raises(InvalidCertificate) as caught:
        verify_firmware(IMAGE, signature, impostor.cert_pem, pem(root[1]), now=NOW)
    assert caught.value.status == "InvalidCertificate"
    assert caught.value.security_event == "InvalidFirmwareSigningCertificate"
    # A CSMS root (another hierarchy) is no manufacturer root either.
    csms = CertificateAuthority.create("PlugStream CSMS Root")
    with pytest.raises(InvalidCertificate, match="untrusted"):
        verify_firmware(IMAGE, signature, impostor.cert_pem, csms.root_pem, now=NOW)


def test_self_signed_signer_is_invalid_certificate(
    root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
) -> None:
    leaf_key, leaf = make_root("PlugStream Manufacturer Root", ca=False)
    with pytest.raises(InvalidCertificate):
        verify_firmware(IMAGE, sign_firmware(IMAGE, leaf_key), pem(leaf), pem(root[1]), now=NOW)


@pytest.mark.parametrize(
    ("not_before", "not_after", "message"),
    [
        (NOW - dt.timedelta(days=400), NOW - dt.timedelta(seconds=1), "expired"),
        (NOW + dt.timedelta(seconds=1), NOW + dt.timedelta(days=400), "not yet valid"),
    ],
)
def test_signing_certificate_outside_validity_by_station_clock(
    root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    not_before: dt.datetime,
    not_after: dt.datetime,
    message: str,
) -> None:
    signer = make_signer(root, not_before=not_before, not_after=not_after)
    signature = sign_firmware(IMAGE, signer.key)
    with pytest.raises(InvalidCertificate, match=message):
        verify_firmware(IMAGE, signature, signer.cert_pem, pem(root[1]), now=NOW)
    # The same certificate is fine once the station's clock says it is in its window.
    inside = not_before + (not_after - not_before) / 2
    verify_firmware(IMAGE, signature, signer.cert_pem, pem(root[1]), now=inside)


def test_expired_manufacturer_root_is_invalid_certificate(
    root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], signer: Signer
) -> None:
    later = root[1].not_valid_after_utc + dt.timedelta(days=1)
    long_lived = make_signer(root, not_after=later + dt.timedelta(days=1))
    with pytest.raises(InvalidCertificate, match="root"):
        verify_signing_certificate(long_lived.cert_pem, pem(root[1]), now=later)


def test_root_that_is_not_a_ca_cannot_vouch(
    root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
) -> None:
    not_ca = make_root("Not A CA", ca=False)
    signer = make_signer(not_ca)
    with pytest.raises(InvalidCertificate, match="not a CA"):
        verify_signing_certificate(signer.cert_pem, pem(not_ca[1]), now=NOW)


def test_signing_certificate_needs_code_signing_usage_if_it_names_one(
    root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
) -> None:
    tls = make_signer(root, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    with pytest.raises(InvalidCertificate, match="codeSigning"):
        verify_signing_certificate(tls.cert_pem, pem(root[1]), now=NOW)
    unrestricted = make_signer(root, usage=None)
    verify_signing_certificate(unrestricted.cert_pem, pem(root[1]), now=NOW)
    # The CSMS authority's TLS certificates cannot sign firmware either.
    csms = CertificateAuthority.create("PlugStream CSMS Root")
    server = csms.issue_server(["localhost"])
    with pytest.raises(InvalidCertificate, match="codeSigning"):
        verify_signing_certificate(server.cert_pem, csms.root_pem, now=dt.datetime.now(dt.UTC))


@pytest.mark.parametrize(
    "garbage",
    [b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", b"", b"hello"],
)
def test_malformed_certificate_pem_is_invalid_certificate(
    root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], signer: Signer, garbage: bytes
) -> None:
    signature = sign_firmware(IMAGE, signer.key)
    with pytest.raises(InvalidCertificate):
        verify_firmware(IMAGE, signature, garbage, pem(root[1]), now=NOW)


def test_signing_certificate_with_rsa_key_is_invalid_certificate() -> None:
    root_key, root_cert = make_root()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("RSA signer"))
        .issuer_name(root_cert.subject)
        .public_key(rsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(root_key, hashes.SHA256())
    )
    with pytest.raises(InvalidCertificate, match="P-256"):
        verify_signing_certificate(pem(cert), pem(root_cert), now=NOW)


@pytest.mark.parametrize(
    "bad_signature",
    [
        "",  # missing entirely (L01: "or if a signature is missing entirely")
        "not base64 at all!",
        base64.b64encode(b"\x30\x03\x02\x01").decode(),  # truncated DER
        base64.b64encode(os.urandom(64)).decode(),  # raw r||s, not DER
        # A signature of the right image, but by a key of the wrong type (Ed25519).
        base64.b64encode(ed25519.Ed25519PrivateKey.generate().sign(IMAGE)).decode(),
    ],
    # ids that do not change between collections (parallel workers must agree on them)
    ids=["missing", "not-base64", "truncated-der", "raw-r-s", "ed25519"],
)
def test_garbage_or_wrong_type_signature_is_invalid_signature(
    root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], signer: Signer, bad_signature: str
) -> None:
    with pytest.raises(InvalidSignature):
        verify_firmware(IMAGE, bad_signature, signer.cert_pem, pem(root[1]), now=NOW)


def test_signing_refuses_a_key_that_is_not_p256() -> None:
    with pytest.raises(TypeError):
        sign_firmware(IMAGE, ec.generate_private_key(ec.SECP384R1()))


def test_chunked_multi_megabyte_file_matches_whole_image(
    tmp_path: Path, root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], signer: Signer
) -> None:
    image = os.urandom(5 * 1024 * 1024 + 123)  # not a multiple of the chunk size
    path = tmp_path / "firmware.bin"
    path.write_bytes(image)
    assert firmware_digest(path, chunk_size=64 * 1024) == firmware_digest(image)
    assert firmware_digest(iter([image[:7], image[7:]])) == firmware_digest(image)

    from_file = sign_firmware(path, signer.key, chunk_size=64 * 1024)
    whole = sign_firmware(image, signer.key)
    roots = pem(root[1])
    # Either signature verifies either way: the file, an open file, chunks, or the bytes.
    for signature in (from_file, whole):
        verify_firmware(image, signature, signer.cert_pem, roots, now=NOW)
        verify_firmware(path, signature, signer.cert_pem, roots, now=NOW, chunk_size=4096)
        with path.open("rb") as f:
            verify_firmware(f, signature, signer.cert_pem, roots, now=NOW)
        verify_firmware(io.BytesIO(image), signature, signer.cert_pem, roots, now=NOW)

    # The last byte of the file flipped on disk: refused from the file too.
    with path.open("r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(InvalidSignature):
        verify_firmware(path, whole, signer.cert_pem, roots, now=NOW, chunk_size=64 * 1024)


def test_naive_clock_is_a_programming_error(
    root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], signer: Signer
) -> None:
    with pytest.raises(ValueError, match="timezone"):
        verify_signing_certificate(signer.cert_pem, pem(root[1]), now=NOW.replace(tzinfo=None))


def test_line_wrapped_base64_signature_verifies(
    root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], signer: Signer
) -> None:
    signature = sign_firmware(IMAGE, signer.key)
    wrapped = "\n".join(signature[i : i + 32] for i in range(0, len(signature), 32))
    verify_firmware(IMAGE, wrapped, signer.cert_pem, pem(root[1]), now=NOW)
