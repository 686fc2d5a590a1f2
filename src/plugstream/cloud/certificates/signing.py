"""Signing the stations' CSRs with the CSMS root (OCPP 2.0.1 part 2 A02/A03, 1.6 Security
Whitepaper A02/A03), and the record of what was signed (the PKI directory's ``stations/``).

The CN is kept (the station's identity) and O set to the operator (A00.FR.509/511); the
CN must be the station id of the connection, so one station cannot get a certificate for
another.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from plugstream.cloud.config import CloudConfig
from plugstream.pki.authority import PKIError
from plugstream.pki.keystore import PKIStore

__all__ = ["SAFE_NAME", "CsrRefused", "sign_station_csr", "signed_file"]

log = logging.getLogger("plugstream.cloud.certificates")

#: station ids that may name a file of the PKI directory
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class CsrRefused(ValueError):
    """A CSR the cloud does not sign; the message says why."""


def sign_station_csr(config: CloudConfig, station_id: str, csr_pem: str) -> bytes:
    """The PEM certificate for ``csr_pem`` of ``station_id``, signed by the CSMS root of
    ``config.pki_dir``; :class:`CsrRefused` if the cloud has no PKI, the CSR is invalid
    or its CN is not ``station_id`` (the gateway admits a profile-3 station by its CN,
    A00.FR.405/406)."""
    if config.pki_dir is None:
        raise CsrRefused("no PKI configured (start the cloud with --pki)")
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError:
        raise CsrRefused("not a PEM certificate signing request") from None
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else ""
    if cn != station_id:
        raise CsrRefused(f"CSR CN {cn!r} is not the station id {station_id!r}")
    pki = PKIStore(Path(config.pki_dir))
    try:
        authority = pki.csms_root()
        organization = config.tls_client_organization or authority.organization
        cert = authority.sign_csr(
            csr_pem.encode(), organization=organization, source=f"CSR of {station_id}"
        )
    except PKIError as exc:
        raise CsrRefused(str(exc)) from None
    pem = cert.public_bytes(serialization.Encoding.PEM)
    if SAFE_NAME.match(station_id):  # the record of what was issued: `plugstream pki show`
        try:
            folder = Path(config.pki_dir) / "stations"
            folder.mkdir(mode=0o700, exist_ok=True)
            (folder / f"{station_id}.pem").write_bytes(pem)
        except OSError as exc:
            log.warning("station %s: signed certificate not kept: %s", station_id, exc)
    log.info(
        "station %s: certificate signed, serial %x, valid until %s",
        station_id,
        cert.serial_number,
        f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}",
    )
    return pem


def signed_file(config: CloudConfig, station_id: str) -> bytes | None:
    if config.pki_dir is None or not SAFE_NAME.match(station_id):
        return None
    try:
        return (Path(config.pki_dir) / "stations" / f"{station_id}.pem").read_bytes()
    except OSError:
        return None
