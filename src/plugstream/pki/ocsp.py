"""OCSP (RFC 6960), sans-I/O: the responder's side (which issuer a request names, the
signed answer) and the client's side (the request for a CertificateHashData, reading an
answer). The cloud serves the responder over HTTP and asks other responders for the
stations (M06) and for contract certificates (C07); both only move bytes.

A response is signed by the issuing CA itself (RFC 6960 4.2.2.2: no delegated responder
certificate to keep), with the request's nonce echoed when it sent one.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp

from plugstream.pki.authority import IssuedCertificate

__all__ = [
    "HASH_ALGORITHMS",
    "CertStatus",
    "OcspAnswer",
    "OcspFailure",
    "build_response",
    "error_response",
    "find_issuer",
    "key_id",
    "parse_request",
    "read_response",
    "request_for_hash_data",
]

#: OCPP's HashAlgorithmEnumType to the hash OCSP's CertID uses
HASH_ALGORITHMS: Mapping[str, type[hashes.HashAlgorithm]] = {
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
}
_NEXT_UPDATE = dt.timedelta(days=1)  # a station caches it, and asks again within a week


class OcspFailure(ValueError):
    """A request or answer that cannot be used; the message says why."""


class CertStatus(enum.Enum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class OcspAnswer:
    """What an OCSP response said about one certificate."""

    status: CertStatus
    revoked_at: dt.datetime | None = None
    reason: str | None = None


def key_id(cert: x509.Certificate) -> str:
    """A stable id of a certificate's key (SHA-256 of its SubjectPublicKeyInfo, hex): how
    storage names an issuer whatever hash a request used."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return digest.finalize().hex()


def parse_request(der: bytes) -> ocsp.OCSPRequest:
    try:
        return ocsp.load_der_ocsp_request(der)
    except ValueError as exc:
        raise OcspFailure(f"not a DER OCSP request: {exc}") from None


def _cert_id(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) that name ``cert`` as an issuer (RFC 6960 4.1.1):
    the hashes of its DER subject and of its public key's bits."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_bits = _subject_public_key_bits(spki)
    return _digest(algorithm, cert.subject.public_bytes()), _digest(algorithm, key_bits)


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


def _subject_public_key_bits(spki: bytes) -> bytes:
    """The BIT STRING's contents of a DER SubjectPublicKeyInfo, without its unused-bits
    octet: what issuerKeyHash hashes."""

    def header(data: bytes, at: int) -> tuple[int, int]:  # (content start, length)
        length = data[at + 1]
        if length < 0x80:
            return at + 2, length
        n = length & 0x7F
        return at + 2 + n, int.from_bytes(data[at + 2 : at + 2 + n], "big")

    start, _ = header(spki, 0)  # the outer SEQUENCE
    algo_start, algo_len = header(spki, start)  # AlgorithmIdentifier
    bits_start, bits_len = header(spki, algo_start + algo_len)  # BIT STRING
    return spki[bits_start + 1 : bits_start + bits_len]


def find_issuer(
    request: ocsp.OCSPRequest, issuers: Iterable[IssuedCertificate]
) -> IssuedCertificate | None:
    """The CA of ``issuers`` whose name and key hashes the request names, if one does."""
    algorithm = request.hash_algorithm
    for issuer in issuers:
        name_hash, key_hash = _cert_id(issuer.certificate, algorithm)
        if (name_hash, key_hash) == (request.issuer_name_hash, request.issuer_key_hash):
            return issuer
    return None


def _nonce(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        return request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


_REASONS = {r.name: r for r in x509.ReasonFlags}


def build_response(
    request: ocsp.OCSPRequest,
    issuer: IssuedCertificate,
    answer: OcspAnswer,
    now: dt.datetime,
) -> bytes:
    """The DER OCSPResponse (successful) for the one certificate of ``request``."""
    status = {
        CertStatus.GOOD: ocsp.OCSPCertStatus.GOOD,
        CertStatus.REVOKED: ocsp.OCSPCertStatus.REVOKED,
        CertStatus.UNKNOWN: ocsp.OCSPCertStatus.UNKNOWN,
    }[answer.status]
    revoked = answer.status is CertStatus.REVOKED
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            serial_number=request.serial_number,
            algorithm=request.hash_algorithm,
            cert_status=status,
            this_update=now,
            next_update=now + _NEXT_UPDATE,
            revocation_time=(answer.revoked_at or now) if revoked else None,
            revocation_reason=_REASONS.get(answer.reason or "") if revoked else None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.certificate)
        .certificates([issuer.certificate])  # the signer, for a client that lacks it
    )
    nonce = _nonce(request)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    response = builder.sign(issuer.key, hashes.SHA256())
    return response.public_bytes(serialization.Encoding.DER)


def error_response(status: ocsp.OCSPResponseStatus) -> bytes:
    """An unsigned OCSPResponse with only an error status (malformedRequest, unauthorized)."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )


# -- the client's side ------------------------------------------------------------------


def request_for_hash_data(hash_data: Mapping[str, Any]) -> bytes:
    """The DER OCSP request for an OCPP CertificateHashData / OCSPRequestData: the hashes
    are those of the issuer, the serial the certificate's (hex)."""
    kind = HASH_ALGORITHMS.get(str(hash_data.get("hashAlgorithm")))
    if kind is None:
        raise OcspFailure(f"hash algorithm {hash_data.get('hashAlgorithm')!r} is not one of OCPP's")
    try:
        name_hash = bytes.fromhex(str(hash_data["issuerNameHash"]))
        key_hash = bytes.fromhex(str(hash_data["issuerKeyHash"]))
        serial = int(str(hash_data["serialNumber"]), 16)
    except (KeyError, ValueError):
        raise OcspFailure("issuerNameHash, issuerKeyHash and serialNumber must be hex") from None
    algorithm = kind()
    size = algorithm.digest_size
    if len(name_hash) != size or len(key_hash) != size:
        raise OcspFailure(f"the hashes are not {size}-byte {algorithm.name} digests")
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(name_hash, key_hash, serial, algorithm)
        .build()
    )
    return request.public_bytes(serialization.Encoding.DER)


def hash_data_of(
    cert: x509.Certificate, issuer: x509.Certificate, algorithm: str = "SHA256"
) -> dict[str, str]:
    """The OCPP OCSPRequestData hashes (without responderURL) of ``cert``."""
    probe = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert, issuer, HASH_ALGORITHMS[algorithm]())
        .build()
    )
    return {
        "hashAlgorithm": algorithm,
        "issuerNameHash": probe.issuer_name_hash.hex(),
        "issuerKeyHash": probe.issuer_key_hash.hex(),
        "serialNumber": format(cert.serial_number, "x"),
    }


def read_response(
    der: bytes,
    serial_number: int,
    *,
    trusted: Sequence[x509.Certificate] | None = None,
    now: dt.datetime | None = None,
) -> OcspAnswer:
    """What a DER OCSPResponse says about ``serial_number``; OcspFailure if it is not a
    successful response about that certificate. With ``trusted`` (CA certificates) the
    response must also be signed by one of them or by a responder certificate it carries
    that one of them issued (RFC 6960 4.2.2.2), and with ``now`` be current."""
    try:
        response = ocsp.load_der_ocsp_response(der)
    except ValueError as exc:
        raise OcspFailure(f"not a DER OCSP response: {exc}") from None
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise OcspFailure(f"the responder answered {response.response_status.name}")
    if trusted is not None:
        _check_signer(response, trusted)
    for single in response.responses:
        if single.serial_number != serial_number:
            continue
        if now is not None and (
            single.this_update_utc > now + _SKEW
            or (single.next_update_utc is not None and single.next_update_utc < now)
        ):
            raise OcspFailure(f"the response about serial {serial_number:x} is not current")
        if single.certificate_status is ocsp.OCSPCertStatus.GOOD:
            return OcspAnswer(CertStatus.GOOD)
        if single.certificate_status is ocsp.OCSPCertStatus.REVOKED:
            reason = single.revocation_reason
            return OcspAnswer(
                CertStatus.REVOKED,
                single.revocation_time_utc,
                reason.name if reason is not None else None,
            )
        return OcspAnswer(CertStatus.UNKNOWN)
    raise OcspFailure(f"the response says nothing of serial {serial_number:x}")


_SKEW = dt.timedelta(minutes=5)


def _names_signer(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if response.responder_name is not None:
        return response.responder_name == cert.subject
    key_hash = _cert_id(cert, hashes.SHA1())[1]  # ResponderID byKey is a SHA-1 (RFC 6960)
    return response.responder_key_hash == key_hash


def _signed_by(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    public = cert.public_key()
    algorithm = response.signature_hash_algorithm
    if algorithm is None:
        return False
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm))
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(
                response.signature, response.tbs_response_bytes, padding.PKCS1v15(), algorithm
            )
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_signer(response: ocsp.OCSPResponse, trusted: Sequence[x509.Certificate]) -> None:
    carried = list(response.certificates)
    for signer in [*trusted, *carried]:
        if not _names_signer(response, signer) or not _signed_by(response, signer):
            continue
        if signer in trusted or any(_issued_by(signer, ca) for ca in trusted):
            return
    raise OcspFailure("the response is not signed by a responder this CSMS trusts")


def b64(der: bytes) -> str:
    return base64.b64encode(der).decode()
