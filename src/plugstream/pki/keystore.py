"""The PKI directory behind ``plugstream pki``: roots, firmware signer, issued certificates.

Layout (directory 0700, every ``*.key`` 0600)::

    csms-root.pem / .key           the operator's root: TLS servers and stations
    manufacturer-root.pem / .key   the manufacturer's root: firmware signing
    firmware-signing.pem / .key    codeSigning leaf, followed by the manufacturer root
    server/NAME.pem / .key         TLS server certificates (the OCPP and setup names)
    server/NAME.rsa.pem / .rsa.key the same name's RSA certificate, for the TLS_RSA suites
    stations/CN.pem                station certificates signed from CSRs (no key: it stays
                                   on the station)

Every failure is a :class:`PKIError` whose message starts with the file it is about, so
a person can fix it without reading code. Time is passed in (``now``) for the validity
checks: a station checks against its own, corrected clock.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from plugstream.pki.authority import (
    CertificateAuthority,
    IssuedCertificate,
    PKIError,
    RsaServerCertificate,
    load_pair,
    read_pem,
)

__all__ = ["CertEntry", "PKIStore"]

CSMS_ROOT = "csms-root"
MANUFACTURER_ROOT = "manufacturer-root"
FIRMWARE_SIGNING = "firmware-signing"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


@dataclass(frozen=True, slots=True)
class CertEntry:
    """One certificate in the directory, as ``plugstream pki show`` lists it."""

    path: Path
    subject: str
    issuer: str
    not_after: dt.datetime
    status: str  # "valid", "expired", "not yet valid"


def _cn(name: x509.Name) -> str:
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else name.rfc4514_string()


class PKIStore:
    """A PKI directory: creates the roots once, then issues from them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, stem: str, suffix: str) -> Path:
        return self.directory / f"{stem}.{suffix}"

    def init(
        self, operator: str, *, manufacturer: str = "PlugStream", now: dt.datetime | None = None
    ) -> None:
        """Create both roots and the firmware signer; never overwrite an existing PKI."""
        if not operator.strip():
            raise PKIError(f"{self.directory}: the operator name is empty")
        existing = self._path(CSMS_ROOT, "key")
        if existing.exists():
            raise PKIError(f"{existing}: a PKI already exists here; not overwriting its keys")
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        csms = CertificateAuthority.create(
            f"{operator} CSMS Root CA", organization=operator, now=now
        )
        maker = CertificateAuthority.create(
            f"{manufacturer} Manufacturer Root CA", organization=manufacturer, now=now
        )
        signer = maker.issue_firmware_signing(f"{manufacturer} Firmware Signing")
        maker.write_root(self._path(MANUFACTURER_ROOT, "pem"), self._path(MANUFACTURER_ROOT, "key"))
        signer.write(
            self._path(FIRMWARE_SIGNING, "pem"),
            self._path(FIRMWARE_SIGNING, "key"),
            chain=[maker.root_pem],
        )
        # The CSMS root key last: its presence marks a complete PKI.
        csms.write_root(self._path(CSMS_ROOT, "pem"), existing)

    def csms_root(self, *, now: dt.datetime | None = None) -> CertificateAuthority:
        return CertificateAuthority(
            load_pair(self._path(CSMS_ROOT, "pem"), self._path(CSMS_ROOT, "key"), now=now)
        )

    def manufacturer_root(self, *, now: dt.datetime | None = None) -> CertificateAuthority:
        return CertificateAuthority(
            load_pair(
                self._path(MANUFACTURER_ROOT, "pem"), self._path(MANUFACTURER_ROOT, "key"), now=now
            )
        )

    def firmware_signing(self, *, now: dt.datetime | None = None) -> IssuedCertificate:
        """The firmware signer, checked to be issued by the manufacturer root."""
        pair = load_pair(
            self._path(FIRMWARE_SIGNING, "pem"), self._path(FIRMWARE_SIGNING, "key"), now=now
        )
        root = self.manufacturer_root(now=now).root.certificate
        try:
            pair.certificate.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise PKIError(
                f"{self._path(FIRMWARE_SIGNING, 'pem')}: not issued by the manufacturer root"
            ) from exc
        return pair

    @property
    def operator(self) -> str:
        org = self.csms_root().organization
        if org is None:
            raise PKIError(f"{self._path(CSMS_ROOT, 'pem')}: the root has no O (operator)")
        return org

    def issue_server(
        self,
        name: str,
        *,
        ips: Iterable[str] = (),
        key_type: Literal["ec", "rsa"] = "ec",
        now: dt.datetime | None = None,
    ) -> tuple[Path, Path]:
        """A TLS server certificate for DNS ``name`` (and ``ips``); its cert and key paths.

        ``key_type`` "rsa" issues the RSA one (``NAME.rsa.pem``) that the TLS_RSA suites of
        A00.FR.318 need, kept beside the EC one: the CSMS serves both."""
        if not _SAFE_NAME.match(name):
            raise PKIError(f"{self.directory}: not a host name: {name!r}")
        try:
            root = self.csms_root(now=now)
            if key_type == "rsa":
                issued: IssuedCertificate | RsaServerCertificate = root.issue_rsa_server(
                    [name], ips=list(ips)
                )
            else:
                issued = root.issue_server([name], ips=list(ips))
        except ValueError as exc:
            if isinstance(exc, PKIError):
                raise
            raise PKIError(f"{self.directory}: {exc}") from None
        folder = self.directory / "server"
        folder.mkdir(mode=0o700, exist_ok=True)
        stem = f"{name}.rsa" if key_type == "rsa" else name
        cert, key = folder / f"{stem}.pem", folder / f"{stem}.key"
        issued.write(cert, key)
        return cert, key

    def sign_csr(self, csr_path: Path, *, now: dt.datetime | None = None) -> tuple[bytes, Path]:
        """Sign a station's CSR (CN = its serial, O = the operator); the PEM and where kept."""
        ca = self.csms_root(now=now)
        cert = ca.sign_csr(read_pem(csr_path, "CSR"), source=str(csr_path), now=now)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        cn = _cn(cert.subject)
        folder = self.directory / "stations"
        folder.mkdir(mode=0o700, exist_ok=True)
        kept = folder / f"{cn if _SAFE_NAME.match(cn) else cert.serial_number}.pem"
        kept.write_bytes(pem)
        return pem, kept

    def show(self, *, now: dt.datetime | None = None) -> list[CertEntry]:
        """Every certificate in the directory with its validity at ``now``."""
        if not self._path(CSMS_ROOT, "pem").exists():
            raise PKIError(f"{self._path(CSMS_ROOT, 'pem')}: missing; run `plugstream pki init`")
        now = now or dt.datetime.now(dt.UTC)
        entries = []
        paths = sorted(self.directory.glob("*.pem")) + sorted(self.directory.glob("*/*.pem"))
        for path in paths:
            try:
                cert = x509.load_pem_x509_certificate(path.read_bytes())
            except ValueError:
                raise PKIError(f"{path}: not a PEM certificate") from None
            if now < cert.not_valid_before_utc:
                status = "not yet valid"
            elif now > cert.not_valid_after_utc:
                status = "expired"
            else:
                status = "valid"
            entries.append(
                CertEntry(
                    path, _cn(cert.subject), _cn(cert.issuer), cert.not_valid_after_utc, status
                )
            )
        return entries
