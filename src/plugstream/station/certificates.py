"""The station's certificate store: the roots it trusts and its own client certificate.

Layout under ``data_dir/certs`` (directory 0700, keys 0600)::

    roots/CSMSRootCertificate/<sha256 of DER, 16 hex>.pem      trusted for the CSMS's TLS
    roots/ManufacturerRootCertificate/<...>.pem                trusted for firmware signers
    roots/MORootCertificate/, roots/V2GRootCertificate/        (kept, not used here)
    station.pem / station.key     the ChargingStationCertificate (leaf first) and its key

Root kinds are OCPP 2.0.1's InstallCertificateUseEnumType names; 1.6's
``CentralSystemRootCertificate`` is the same thing as ``CSMSRootCertificate``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = [
    "CSMS_ROOT",
    "MANUFACTURER_ROOT",
    "ROOT_KINDS",
    "CertificateStore",
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
