"""Firmware signing and verification: the cryptographic core of a secure update.

OCPP 2.0.1 part 2, use case L01 (and the 1.6 Security Whitepaper's
SignedUpdateFirmware): the CSMS sends ``signature`` (base64) and
``signingCertificate`` (PEM) with the firmware location. The station checks the
Firmware Signing certificate against its Manufacturer root before it accepts the
request (L01.FR.21/22: ``InvalidCertificate``) and the signature over the whole
downloaded image before it installs (L01.FR.04: ``InvalidSignature``).

The signature is ECDSA P-256 with SHA-256 (DER, then base64), computed over the
SHA-256 hash of the entire file, so an image of any size is hashed in chunks and
never held in memory. The manufacturer uses no intermediate certificates for
firmware signing (L01, remarks), so the signing certificate must be issued
directly by a trusted root. Pure functions; the caller passes the station's clock
as ``now`` (the station's corrected clock, not the host's).

Usage::

    signature = sign_firmware(image, signing_key)
    verify_firmware(image, signature, signing_cert_pem, manufacturer_roots_pem, now=clock.now())
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Final, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtendedKeyUsageOID

__all__ = [
    "CHUNK_SIZE",
    "FirmwareVerificationError",
    "InvalidCertificate",
    "InvalidSignature",
    "firmware_digest",
    "sign_digest",
    "sign_firmware",
    "verify_firmware",
    "verify_signing_certificate",
]

CHUNK_SIZE: Final = 1 << 20  # 1 MiB: bounded memory on a station, few calls in Python

Image = bytes | bytearray | memoryview | Path | BinaryIO | Iterable[bytes]
"""A firmware image: its bytes, a file path, an open binary file, or chunks."""


class FirmwareVerificationError(Exception):
    """A firmware update that must not be installed; ``status`` is the OCPP status to report."""

    status: str = ""
    security_event: str = ""


class InvalidCertificate(FirmwareVerificationError):
    """The Firmware Signing certificate is unusable, untrusted or not valid now.

    Reported as UpdateFirmwareResponse / SignedUpdateFirmware.conf status
    ``InvalidCertificate`` with security event ``InvalidFirmwareSigningCertificate``.
    """

    status = "InvalidCertificate"
    security_event = "InvalidFirmwareSigningCertificate"


class InvalidSignature(FirmwareVerificationError):
    """The signature is missing, malformed, or does not match the image.

    Reported as FirmwareStatusNotification status ``InvalidSignature`` with security
    event ``InvalidFirmwareSignature``.
    """

    status = "InvalidSignature"
    security_event = "InvalidFirmwareSignature"


# --------------------------------------------------------------------------- hashing


def _chunks(image: Image, chunk_size: int) -> Iterable[bytes]:
    if isinstance(image, bytes | bytearray | memoryview):
        yield bytes(image)
    elif isinstance(image, Path):
        with image.open("rb") as f:
            yield from _file_chunks(f, chunk_size)
    elif hasattr(image, "read"):
        yield from _file_chunks(image, chunk_size)  # type: ignore[arg-type]
    else:
        yield from image


def _file_chunks(f: BinaryIO, chunk_size: int) -> Iterable[bytes]:
    while chunk := f.read(chunk_size):
        yield chunk


def firmware_digest(image: Image, *, chunk_size: int = CHUNK_SIZE) -> bytes:
    """SHA-256 of the entire firmware file, read ``chunk_size`` bytes at a time."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    h = hashes.Hash(hashes.SHA256())
    for chunk in _chunks(image, chunk_size):
        h.update(chunk)
    return h.finalize()


# --------------------------------------------------------------------------- signing


def _check_signing_key(key: object) -> ec.EllipticCurvePrivateKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise TypeError("firmware is signed with an EC P-256 private key")
    return key


def sign_digest(digest: bytes, key: ec.EllipticCurvePrivateKey) -> str:
    """The base64 DER ECDSA signature of a precomputed SHA-256 ``digest``."""
    if len(digest) != hashes.SHA256.digest_size:
        raise ValueError("digest must be a SHA-256 digest (32 bytes)")
    der = _check_signing_key(key).sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    return base64.b64encode(der).decode("ascii")


def sign_firmware(
    image: Image, key: ec.EllipticCurvePrivateKey, *, chunk_size: int = CHUNK_SIZE
) -> str:
    """Sign a firmware image (bytes, path, file or chunks): base64 of the DER ECDSA signature.

    This is the value of UpdateFirmware's ``firmware.signature`` (2.0.1) and
    SignedUpdateFirmware's ``firmware.signature`` (1.6 security extension).
    """
    _check_signing_key(key)
    return sign_digest(firmware_digest(image, chunk_size=chunk_size), key)


# --------------------------------------------------------------------------- verification


def _load_certificates(pem: str | bytes, what: str) -> list[x509.Certificate]:
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise InvalidCertificate(f"{what} is not valid PEM: {exc}") from exc
    if not certs:  # pragma: no cover - cryptography raises on no certificate
        raise InvalidCertificate(f"{what} holds no certificate")
    return certs


def _check_validity(cert: x509.Certificate, now: dt.datetime, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise InvalidCertificate(
            f"{what} is not yet valid (from {cert.not_valid_before_utc.isoformat()},"
            f" station clock {now.isoformat()})"
        )
    if now > cert.not_valid_after_utc:
        raise InvalidCertificate(
            f"{what} expired at {cert.not_valid_after_utc.isoformat()}"
            f" (station clock {now.isoformat()})"
        )


_E = TypeVar("_E", bound=x509.ExtensionType)


def _extension(cert: x509.Certificate, kind: type[_E]) -> _E | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _check_leaf(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidCertificate(
            "the signing certificate's key is not EC P-256 (ECDSA with SHA-256 is supported)"
        )
    constraints = _extension(cert, x509.BasicConstraints)
    if constraints is not None and constraints.ca:
        raise InvalidCertificate("the signing certificate is a CA certificate, not a signer")
    usage = _extension(cert, x509.KeyUsage)
    if usage is not None and not usage.digital_signature:
        raise InvalidCertificate("the signing certificate's keyUsage lacks digitalSignature")
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if eku is not None and ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise InvalidCertificate("the signing certificate's extendedKeyUsage lacks codeSigning")
    return key


def _check_root(root: x509.Certificate) -> bool:
    """Whether a trust anchor may issue certificates (CA:TRUE, keyCertSign if keyUsage)."""
    constraints = _extension(root, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        return False
    usage = _extension(root, x509.KeyUsage)
    return usage is None or usage.key_cert_sign


def verify_signing_certificate(
    signing_certificate_pem: str | bytes,
    trusted_roots_pem: str | bytes | Iterable[str | bytes],
    *,
    now: dt.datetime,
) -> x509.Certificate:
    """Check a Firmware Signing certificate (L01.FR.21) and return it.

    It must be issued directly by one of the Manufacturer roots (signature and
    name), both must be valid at ``now`` (the station's clock), the root must be a
    CA, and the certificate must be fit for signing firmware. Raises
    :class:`InvalidCertificate` otherwise.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (the station's UTC clock)")
    leaf = _load_certificates(signing_certificate_pem, "signingCertificate")[0]
    if isinstance(trusted_roots_pem, str | bytes):
        roots = _load_certificates(trusted_roots_pem, "the manufacturer root store")
    else:
        roots = [
            c for pem in trusted_roots_pem for c in _load_certificates(pem, "a manufacturer root")
        ]
    _check_validity(leaf, now, "the signing certificate")
    _check_leaf(leaf)

    reasons: list[str] = []
    for root in roots:
        if root.subject != leaf.issuer:
            continue
        try:
            leaf.verify_directly_issued_by(root)
        except (ValueError, TypeError, _CryptoInvalidSignature, UnsupportedAlgorithm) as exc:
            reasons.append(
                f"not signed by {root.subject.rfc4514_string()}: {exc or 'bad signature'}"
            )
            continue
        if not _check_root(root):
            reasons.append(f"{root.subject.rfc4514_string()} is not a CA")
            continue
        _check_validity(root, now, f"the manufacturer root {root.subject.rfc4514_string()}")
        return leaf
    detail = "; ".join(reasons) if reasons else "no trusted manufacturer root issued it"
    raise InvalidCertificate(
        f"the signing certificate (issuer {leaf.issuer.rfc4514_string()}) is untrusted: {detail}"
    )


def _decode_signature(signature_b64: str | bytes) -> bytes:
    if not signature_b64:
        raise InvalidSignature("the firmware signature is missing")
    text = (
        signature_b64
        if isinstance(signature_b64, bytes)
        else signature_b64.encode("latin-1", "replace")
    )
    try:
        # Line-wrapped base64 (as some tools emit it) is tolerated; anything else is not.
        return base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSignature(f"the firmware signature is not valid base64: {exc}") from exc


def verify_firmware(
    image: Image,
    signature_b64: str | bytes,
    signing_certificate_pem: str | bytes,
    trusted_roots_pem: str | bytes | Iterable[str | bytes],
    *,
    now: dt.datetime,
    chunk_size: int = CHUNK_SIZE,
) -> None:
    """Verify the signing certificate, then the signature over the entire image.

    ``image`` is the bytes, a file path or an open file (read in ``chunk_size``
    chunks), or an iterable of chunks. Returns normally when the firmware may be
    installed; raises :class:`InvalidCertificate` or :class:`InvalidSignature`,
    whose ``status`` is the OCPP status to report. The certificate is checked
    first, so an untrusted signer never costs a pass over a large image.
    """
    cert = verify_signing_certificate(signing_certificate_pem, trusted_roots_pem, now=now)
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)  # _check_leaf made sure
    der = _decode_signature(signature_b64)
    digest = firmware_digest(image, chunk_size=chunk_size)
    try:
        key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    except _CryptoInvalidSignature as exc:
        raise InvalidSignature(
            "the firmware signature does not match the image and signing certificate"
        ) from exc
    except ValueError as exc:  # pragma: no cover - OpenSSL reports bad DER as InvalidSignature
        raise InvalidSignature(f"the firmware signature is malformed: {exc}") from exc
