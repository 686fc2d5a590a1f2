"""Checking an EV's contract certificate for an Authorize (C07), sans-I/O: which OCSP
requests to make, and what their answers and the chain mean for the AuthorizeResponse.

The station sends either the OCSP data of the chain (``iso15118CertificateHashData``,
C07.FR.02: it validated the chain itself) or the chain in PEM (``certificate``, C07.FR.06:
central validation, the CSMS checks it against the V2G or MO roots it trusts). Either way
every certificate of the chain is checked with the OCSP responder named for it
(C07.FR.05), and the outcome decides ``certificateStatus``:

- revoked: CertificateRevoked, idToken Invalid (C07.FR.16);
- expired: CertificateExpired, idToken Expired (C07.FR.15);
- not verifiable (bad chain, unknown to or unreachable responder): CertChainError,
  idToken Invalid (C07.FR.17);
- valid: Accepted with the idToken's own status, or ContractCancelled when that status is
  Blocked, Expired, Invalid or Unknown (C07.FR.13/14).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from plugstream.pki.ocsp import CertStatus, OcspAnswer, OcspFailure, hash_data_of
from plugstream.pki.v2g import ocsp_url_of

__all__ = [
    "CANCELLED_STATUSES",
    "ChainError",
    "OcspCheck",
    "certificate_status",
    "checks_for_chain",
    "checks_for_hash_data",
]

MAX_HASH_DATA = 4  # iso15118CertificateHashData: 0..4
CANCELLED_STATUSES = frozenset({"Blocked", "Expired", "Invalid", "Unknown"})


class ChainError(ValueError):
    """A PEM chain that cannot be verified (C07.FR.17), or one that expired (FR.15)."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True, slots=True)
class OcspCheck:
    """One OCSP question: the OCPP hash data of a certificate and where to ask."""

    hash_data: dict[str, str]
    responder_url: str

    @property
    def serial(self) -> int:
        return int(self.hash_data["serialNumber"], 16)


def checks_for_hash_data(items: Sequence[Mapping[str, Any]]) -> list[OcspCheck]:
    """The OCSP questions of ``iso15118CertificateHashData``, as the station gave them."""
    checks = []
    for item in list(items)[:MAX_HASH_DATA]:
        data = {
            k: str(item[k])
            for k in ("hashAlgorithm", "issuerNameHash", "issuerKeyHash", "serialNumber")
            if k in item
        }
        checks.append(OcspCheck(data, str(item.get("responderURL", ""))))
    return checks


def _load_chain(pem: str) -> list[x509.Certificate]:
    try:
        chain = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise ChainError("the certificate is not a PEM chain") from None
    if not chain:
        raise ChainError("the certificate chain is empty")
    return chain


def checks_for_chain(
    pem: str, roots: Sequence[x509.Certificate], now: dt.datetime
) -> list[OcspCheck]:
    """Verify the PEM chain (leaf first, up to but without the root) against ``roots``
    at ``now`` and return its OCSP questions, one per certificate, at the responder its
    AIA names (C07.FR.05/06). :class:`ChainError` if it cannot be verified or expired."""
    chain = _load_chain(pem)
    for cert in chain:
        if now > cert.not_valid_after_utc:
            raise ChainError(f"{cert.subject.rfc4514_string()} expired", expired=True)
        if now < cert.not_valid_before_utc:
            raise ChainError(f"{cert.subject.rfc4514_string()} is not valid yet")
    issuers: list[x509.Certificate] = []
    for cert, parent in itertools.pairwise(chain):
        try:
            cert.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            raise ChainError(f"{cert.subject.rfc4514_string()} is not issued by the next") from None
        issuers.append(parent)
    top = chain[-1]
    root = next((r for r in roots if _issued_by(top, r)), None)
    if root is None:
        raise ChainError(f"{top.issuer.rfc4514_string()} is not a trusted V2G or MO root")
    if now > root.not_valid_after_utc:
        raise ChainError("the root expired", expired=True)
    issuers.append(root)
    checks = []
    for cert, issuer in zip(chain, issuers, strict=True):
        url = ocsp_url_of(cert)
        if url is None:
            raise ChainError(f"{cert.subject.rfc4514_string()} names no OCSP responder")
        checks.append(OcspCheck(hash_data_of(cert, issuer), url))
    return checks


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def certificate_status(
    answers: Sequence[OcspAnswer | OcspFailure], id_token_status: str
) -> tuple[str, str]:
    """(certificateStatus, idTokenInfo.status) from the OCSP answers of a valid chain."""
    if not answers:
        return "NoCertificateAvailable", "Invalid"
    if any(isinstance(a, OcspAnswer) and a.status is CertStatus.REVOKED for a in answers):
        return "CertificateRevoked", "Invalid"  # C07.FR.16
    if any(isinstance(a, OcspFailure) or a.status is not CertStatus.GOOD for a in answers):
        return "CertChainError", "Invalid"  # C07.FR.17: not verifiable
    if id_token_status in CANCELLED_STATUSES:
        return "ContractCancelled", id_token_status  # C07.FR.13
    return "Accepted", id_token_status  # C07.FR.14
