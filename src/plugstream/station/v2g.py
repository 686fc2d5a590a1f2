"""The station's V2G (ISO 15118 SECC) certificate (A02 for certificateType V2GCertificate):
it makes a key and sends its CSR with SignCertificate, and installs the chain that
CertificateSigned(V2GCertificate) brings back, once the chain is its key's and, when V2G
roots are installed, issued under one of them.

Kept apart from the ChargingStationCertificate (the TLS client certificate of
:mod:`.certmgmt`): a V2G certificate never changes the OCPP connection. Files, in the
station's certificate directory::

    v2g/pending.key    the key of the CSR in flight (0600)
    v2g/secc.pem       the SECC chain: leaf, then its sub-CA(s)
    v2g/secc.key       its key (0600)
"""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from plugstream.ocpp import after, on, v201
from plugstream.station.certmgmt import CertificateHandlers201
from plugstream.station.ports import StationPort

__all__ = [
    "V2G_CERTIFICATE",
    "V2GCertificateHandlers201",
    "V2GCertificates",
    "v2g_of",
]

log = logging.getLogger("plugstream.station.v2g")

V2G_CERTIFICATE = "V2GCertificate"
V2G_ROOT = "V2GRootCertificate"
SECURITY_EVENT = "InvalidChargingStationCertificate"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)


class V2GCertificates:
    """One station's V2G certificate: the CSR in flight and the installed chain."""

    def __init__(self, station: StationPort) -> None:
        self.station = station

    @property
    def directory(self) -> Path:
        return self.station.certificates.directory / "v2g"

    @property
    def pending_key_path(self) -> Path:
        return self.directory / "pending.key"

    @property
    def chain_path(self) -> Path:
        return self.directory / "secc.pem"

    def chain(self) -> list[x509.Certificate]:
        """The installed SECC chain, leaf first; empty when there is none."""
        try:
            return x509.load_pem_x509_certificates(self.chain_path.read_bytes())
        except (OSError, ValueError):
            return []

    def make_csr(self) -> str:
        """A new P-256 key (kept as pending) and its CSR: CN the station id, O the
        operator as the station knows it (ISO 15118-2: an SECC certificate)."""
        key = ec.generate_private_key(ec.SECP256R1())
        names = [x509.NameAttribute(NameOID.COMMON_NAME, self.station.station_id)]
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name(names))
            .sign(key, hashes.SHA256())
        )
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(
            self.pending_key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    async def request(self) -> str | None:
        """SignCertificate(V2GCertificate) with a new CSR; the CSMS's status, or None if
        it was not answered."""
        payload = {"csr": self.make_csr(), "certificateType": V2G_CERTIFICATE}
        try:
            answer = await self.station.call("SignCertificate", payload)
        except Exception as exc:  # OcppError, CallTimeout, offline: the CSR is not answered
            log.info("SignCertificate(V2GCertificate) not delivered: %s", exc)
            return None
        return str(answer.get("status"))

    def install(self, chain_pem: str) -> str | None:
        """Install a signed SECC chain; None if installed, else why it was refused."""
        try:
            chain = x509.load_pem_x509_certificates(chain_pem.encode())
            key_pem = self.pending_key_path.read_bytes()
            key = serialization.load_pem_private_key(key_pem, password=None)
        except ValueError:
            return "not a PEM certificate chain"
        except OSError:
            return "no V2G CSR is pending"
        if not chain or chain[0].public_key() != key.public_key():
            return "the certificate is not for the pending key"
        now = self.station.now()
        for cert in chain:
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                return f"{cert.subject.rfc4514_string()} is not valid now"
        for cert, issuer in itertools.pairwise(chain):
            if not _issued_by(cert, issuer):
                return f"{cert.subject.rfc4514_string()} is not issued by the next"
        roots = self.station.certificates.roots(V2G_ROOT)
        if roots and not any(_issued_by(chain[-1], root) for root in roots):
            return "not issued under an installed V2GRootCertificate"
        self.chain_path.write_bytes(chain_pem.encode())
        _write_private(self.directory / "secc.key", key_pem)
        self.pending_key_path.unlink(missing_ok=True)
        log.info("new V2G certificate installed, serial %x", chain[0].serial_number)
        return None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


V2G_ATTRIBUTE = "v2g_certificates"


def v2g_of(station: StationPort) -> V2GCertificates:
    """The station's :class:`V2GCertificates`, made on first use."""
    found = getattr(station, V2G_ATTRIBUTE, None)
    if not isinstance(found, V2GCertificates):
        found = V2GCertificates(station)
        setattr(station, V2G_ATTRIBUTE, found)
    return found


class V2GCertificateHandlers201(CertificateHandlers201):
    """CertificateSigned of either type: a V2GCertificate is installed here, the
    ChargingStationCertificate as before (:class:`CertificateHandlers201`)."""

    @on(v201.Action.CertificateSigned)
    def certificate_signed(self, payload: v201.CertificateSignedRequest) -> dict[str, Any]:
        if payload.get("certificateType") != V2G_CERTIFICATE:
            return super().certificate_signed(payload)
        self._certificate_installed = False  # no reconnect: TLS to the CSMS is unchanged
        refused = v2g_of(self.station).install(payload["certificateChain"])
        if refused is not None:
            log.warning("CertificateSigned(V2GCertificate) rejected: %s", refused)
            self.station.security_event(SECURITY_EVENT, refused[:255])
            return {"status": "Rejected"}
        return {"status": "Accepted"}

    @after(v201.Action.CertificateSigned)
    async def certificate_signed_done(self, payload: v201.CertificateSignedRequest) -> None:
        await super().certificate_signed_done(payload)
