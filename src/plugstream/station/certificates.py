"""The station's certificate store: the roots it trusts and its own client certificate.

Layout under ``data_dir/certs`` (directory 0700, keys 0600)::

    roots/CSMSRootCertificate/<sha256 of DER, 16 hex>.pem      trusted for the CSMS's TLS
    roots/ManufacturerRootCertificate/<...>.pem                trusted for firmware signers
    roots/MORootCertificate/, roots/V2GRootCertificate/        (kept, not used here)
    station.pem / station.key     the ChargingStationCertificate (leaf first) and its key
    station.previous.pem / .key   the one it replaced: a fallback (A02.FR.10)
    pending.key                   the key of the CSR sent last, until its certificate comes

Root kinds are OCPP 2.0.1's InstallCertificateUseEnumType names; 1.6's
``CentralSystemRootCertificate`` is the same thing as ``CSMSRootCertificate``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509 import ocsp

__all__ = [
    "CSMS_ROOT",
    "MANUFACTURER_ROOT",
    "ROOT_KINDS",
    "CertificateStore",
    "InstalledRoot",
    "hash_data",
    "matches",
    "root_kind",
]

CSMS_ROOT = "CSMSRootCertificate"
MANUFACTURER_ROOT = "ManufacturerRootCertificate"
ROOT_KINDS = (CSMS_ROOT, MANUFACTURER_ROOT, "MORootCertificate", "V2GRootCertificate")
_ALIASES = {"CentralSystemRootCertificate": CSMS_ROOT}


def root_kind(name: str) -> str:
    """The store's kind for a 1.6 or 2.0.1 certificate type name; ValueError if none."""
    kind = _ALIASES.get(name, name)
    if kind not in ROOT_KINDS:
        raise ValueError(f"not a root certificate type: {name!r}")
    return kind


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
}


def hash_data(
    cert: x509.Certificate, issuer: x509.Certificate | None = None, algorithm: str = "SHA256"
) -> dict[str, str]:
    """CertificateHashDataType of ``cert`` (2.0.1 part 2 2.6 / 1.6 whitepaper 6.1): the
    hashes of the issuer's DER name and of its public key's bits (as OCSP's CertID, RFC
    6960), the serial in hex without ``0x`` or leading zeroes. ``issuer`` defaults to
    ``cert`` itself: a root is its own issuer."""
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert, issuer or cert, _HASHES[algorithm]())
        .build()
    )
    return {
        "hashAlgorithm": algorithm,
        "issuerNameHash": request.issuer_name_hash.hex(),
        "issuerKeyHash": request.issuer_key_hash.hex(),
        "serialNumber": format(cert.serial_number, "x"),
    }


def matches(
    wanted: Mapping[str, Any], cert: x509.Certificate, issuer: x509.Certificate | None = None
) -> bool:
    """Whether ``wanted`` (a CertificateHashDataType from the CSMS) names ``cert``, in the
    hash algorithm the CSMS chose (M04.FR.07); hex compared case-insensitively, the serial
    without leading zeroes."""
    algorithm = str(wanted.get("hashAlgorithm", ""))
    if algorithm not in _HASHES:
        return False
    ours = hash_data(cert, issuer, algorithm)
    serial = str(wanted.get("serialNumber", "")).lower().removeprefix("0x").lstrip("0") or "0"
    return (
        serial == ours["serialNumber"]
        and str(wanted.get("issuerNameHash", "")).lower() == ours["issuerNameHash"]
        and str(wanted.get("issuerKeyHash", "")).lower() == ours["issuerKeyHash"]
    )


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class InstalledRoot:
    """One installed root certificate: its kind, file and certificate."""

    __slots__ = ("certificate", "kind", "path")

    def __init__(self, kind: str, path: Path, certificate: x509.Certificate) -> None:
        self.kind = kind
        self.path = path
        self.certificate = certificate


class CertificateStore:
    """Files under one directory; every read goes to disk, so a change made by a handler
    is what the next connection uses."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)

    # -- roots -------------------------------------------------------------------------

    def _root_dir(self, kind: str) -> Path:
        return self.directory / "roots" / root_kind(kind)

    def roots(self, kind: str) -> list[x509.Certificate]:
        """The installed roots of ``kind`` (oldest file first)."""
        folder = self._root_dir(kind)
        if not folder.is_dir():
            return []
        files = sorted(folder.glob("*.pem"), key=lambda p: (p.stat().st_mtime, p.name))
        return [x509.load_pem_x509_certificate(p.read_bytes()) for p in files]

    def root_files(self, kind: str) -> list[Path]:
        folder = self._root_dir(kind)
        return sorted(folder.glob("*.pem")) if folder.is_dir() else []

    def add_root(self, kind: str, pem: bytes | str) -> x509.Certificate:
        """Install one root certificate of ``kind``; ValueError if ``pem`` is not one
        PEM certificate. Installing the same certificate twice keeps one copy."""
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            cert = x509.load_pem_x509_certificate(data)
        except ValueError:
            raise ValueError("not a PEM certificate") from None
        folder = self._root_dir(kind)
        folder.mkdir(parents=True, exist_ok=True)
        der = cert.public_bytes(serialization.Encoding.DER)
        name = hashlib.sha256(der).hexdigest()[:16] + ".pem"
        _write_public(folder / name, cert.public_bytes(serialization.Encoding.PEM))
        return cert

    def installed(self, kind: str | None = None) -> list[InstalledRoot]:
        """Every installed root (of ``kind``, else of every kind), oldest file first per kind."""
        kinds = ROOT_KINDS if kind is None else (root_kind(kind),)
        found = []
        for k in kinds:
            folder = self._root_dir(k)
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.pem"), key=lambda p: (p.stat().st_mtime, p.name)):
                try:
                    cert = x509.load_pem_x509_certificate(path.read_bytes())
                except ValueError:
                    continue  # a damaged file trusts nothing
                found.append(InstalledRoot(k, path, cert))
        return found

    def root_count(self) -> int:
        """How many roots of all kinds are installed (CertificateStoreMaxLength counts these)."""
        return len(self.installed())

    def find_root(self, wanted: Mapping[str, Any]) -> InstalledRoot | None:
        """The installed root that the CertificateHashDataType ``wanted`` names, if any."""
        for root in self.installed():
            if matches(wanted, root.certificate):
                return root
        return None

    def remove_root(self, root: InstalledRoot) -> None:
        root.path.unlink()

    # -- the station's own certificate --------------------------------------------------

    @property
    def station_cert_path(self) -> Path:
        return self.directory / "station.pem"

    @property
    def station_key_path(self) -> Path:
        return self.directory / "station.key"

    def station_certificate(self) -> tuple[Path, Path] | None:
        """(certificate chain, key) files of the ChargingStationCertificate, if installed."""
        cert, key = self.station_cert_path, self.station_key_path
        return (cert, key) if cert.is_file() and key.is_file() else None

    def set_station_certificate(self, chain_pem: bytes, key_pem: bytes) -> None:
        """Install the station's certificate (leaf first) and its private key; the key
        first, so a crash in between leaves a key with no certificate, never the
        reverse."""
        _write_private(self.station_key_path, key_pem)
        _write_public(self.station_cert_path, chain_pem)

    def station_chain(self) -> list[x509.Certificate]:
        """The installed ChargingStationCertificate chain, leaf first (empty: none)."""
        if self.station_certificate() is None:
            return []
        try:
            return x509.load_pem_x509_certificates(self.station_cert_path.read_bytes())
        except ValueError:
            return []

    def replace_station_certificate(self, chain_pem: bytes, key_pem: bytes) -> None:
        """Install a renewed certificate, keeping the one it replaces as
        ``station.previous.pem`` / ``.key``: a fallback until the new one has worked
        (A02.FR.10 recommends keeping it a month)."""
        current = self.station_certificate()
        if current is not None:
            _write_private(self.directory / "station.previous.key", current[1].read_bytes())
            _write_public(self.directory / "station.previous.pem", current[0].read_bytes())
        self.set_station_certificate(chain_pem, key_pem)

    # -- the key of a certificate signing request in flight -----------------------------

    @property
    def pending_key_path(self) -> Path:
        return self.directory / "pending.key"

    def set_pending_key(self, key_pem: bytes) -> None:
        """Keep the key of the CSR just sent (0600): it never leaves the station (A02.FR.05)."""
        _write_private(self.pending_key_path, key_pem)

    def pending_key(self) -> PrivateKeyTypes | None:
        """The key of the CSR in flight, if any."""
        path = self.pending_key_path
        if not path.is_file():
            return None
        try:
            return serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError):
            return None

    def take_pending_key(self) -> bytes | None:
        """The pending key's PEM, removed from its place: its certificate has arrived."""
        path = self.pending_key_path
        if not path.is_file():
            return None
        data = path.read_bytes()
        path.unlink()
        return data
