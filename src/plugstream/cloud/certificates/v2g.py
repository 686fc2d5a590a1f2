"""The cloud's V2G (ISO 15118) PKI: signing a station's V2G CSR with the V2G sub-CA
(A02.FR.11) and recording what it issued, so that its OCSP responder can answer for it.

The PKI directory (``--pki``) holds the hierarchy (``plugstream pki init-v2g``); the OCSP
URL put in each certificate is the one it was created with, else the cloud's
``public_url`` + ``/ocsp``.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from plugstream.cloud.certificates.signing import CsrRefused
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.storage.certificate_status import IssuedCertificate as IssuedRecord
from plugstream.pki.authority import PKIError
from plugstream.pki.ocsp import key_id
from plugstream.pki.v2g import V2GAuthority, chain_pem, configured_ocsp_url, load_v2g

if TYPE_CHECKING:
    from plugstream.cloud.storage import Store

__all__ = [
    "OCSP_PATH",
    "V2G_CERTIFICATE",
    "issued_record",
    "ocsp_url",
    "sign_v2g_csr",
    "v2g_authority",
]

log = logging.getLogger("plugstream.cloud.certificates")

OCSP_PATH = "/ocsp"
V2G_CERTIFICATE = "V2GCertificate"


def v2g_authority(config: CloudConfig, now: dt.datetime | None = None) -> V2GAuthority | None:
    """The V2G hierarchy of the PKI directory, or None when the cloud has none."""
    if config.pki_dir is None:
        return None
    directory = Path(config.pki_dir)
    if not (directory / "v2g-root.key").exists():
        return None
    try:
        return load_v2g(directory, now=now)
    except PKIError as exc:
        log.warning("V2G PKI unusable: %s", exc)
        return None


def ocsp_url(config: CloudConfig) -> str | None:
    """The OCSP URL the V2G certificates name (AIA)."""
    if config.pki_dir is not None:
        found = configured_ocsp_url(Path(config.pki_dir))
        if found:
            return found
    if config.public_url:
        return config.public_url.rstrip("/") + OCSP_PATH
    return None


def issued_record(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    certificate_type: str,
    station_id: str | None,
    at: dt.datetime,
) -> IssuedRecord:
    return IssuedRecord(
        issuer_key_id=key_id(issuer),
        serial_number=format(cert.serial_number, "x"),
        certificate_type=certificate_type,
        subject=cert.subject.rfc4514_string(),
        station_id=station_id,
        issued_at=at,
        not_valid_after=cert.not_valid_after_utc,
    )


async def sign_v2g_csr(
    store: Store, config: CloudConfig, station_id: str, csr_pem: str, now: dt.datetime
) -> bytes:
    """The PEM chain (SECC leaf, sub-CA) for ``csr_pem``, recorded as issued before it is
    returned; :class:`CsrRefused` if the cloud has no V2G PKI or the CSR is not fit."""
    authority = v2g_authority(config)
    if authority is None:
        raise CsrRefused("no V2G PKI configured (plugstream pki init-v2g)")
    try:
        cert = authority.sign_csr(
            csr_pem.encode(), ocsp_url=ocsp_url(config), source=f"V2G CSR of {station_id}"
        )
    except PKIError as exc:
        raise CsrRefused(str(exc)) from None
    sub_ca = authority.sub_ca.certificate
    await store.certificate_status.record_issued(
        issued_record(cert, sub_ca, V2G_CERTIFICATE, station_id, now)
    )
    log.info("station %s: V2G certificate signed, serial %x", station_id, cert.serial_number)
    return chain_pem(cert, sub_ca)
