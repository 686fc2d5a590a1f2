"""A minimal certificate authority: one root, server certificates, station certificates.

Enough PKI for TLS between stations and PlugStream Cloud today (security profile 2:
the station checks the server against our root) and for client certificates later
(security profile 3: the cloud checks a station's certificate, whose CN is its
station id). Keys are EC P-256: small handshakes (a station pays for every byte
on its cellular link) and accepted by every TLS stack a charger runs.

Usage::

    ca = CertificateAuthority.create("PlugStream Test Root")
    server = ca.issue_server(["localhost"], ips=["127.0.0.1"])
    server.write(Path("server.pem"), Path("server.key"))
    ca.write_root(Path("root.pem"))
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertificateAuthority",
    "IssuedCertificate",
    "PKIError",
    "RsaServerCertificate",
    "check_validity",
    "load_certificate",
    "load_pair",
    "load_private_key",
    "read_pem",
]

ROOT_DAYS = 3650  # the root outlives the certificates it issues
LEAF_DAYS = 397  # the longest a publicly trusted TLS certificate may live; good practice
MIN_RSA_BITS = 2048  # OCPP 2.0.1 A00.FR.502
RSA_SERVER_BITS = 2048  # the RSA server certificate's key: the spec's minimum, a station's cost
_CLOCK_SKEW = dt.timedelta(minutes=5)  # valid a little before now: clocks disagree


class PKIError(ValueError):
    """A key, certificate or CSR that cannot be used; the message names the file or source."""


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write a key readable by its owner only (0600), from the moment it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    def write(self, cert_path: Path, key_path: Path, *, chain: Iterable[bytes] = ()) -> None:
        """Write the certificate (followed by ``chain``, PEM) and its key (mode 0600)."""
        cert_path.write_bytes(self.cert_pem + b"".join(chain))
        _write_private(key_path, self.key_pem)


@dataclass(frozen=True, slots=True)
class RsaServerCertificate:
    """A TLS server certificate with an RSA key: what the TLS 1.2 RSA suites of OCPP 2.0.1
    A00.FR.318 (TLS_RSA_WITH_AES_*_GCM) need, beside the EC one for the ECDHE-ECDSA suites
    ("the CSMS will have to provide 2 different certificates")."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    def write(self, cert_path: Path, key_path: Path, *, chain: Iterable[bytes] = ()) -> None:
        """Write the certificate (followed by ``chain``, PEM) and its key (mode 0600)."""
        cert_path.write_bytes(self.cert_pem + b"".join(chain))
        _write_private(key_path, self.key_pem)


class CertificateAuthority:
    """A self-signed root (CA:TRUE, keyCertSign) that signs server and station certificates."""

    def __init__(self, root: IssuedCertificate) -> None:
        self.root = root

    @classmethod
    def create(
        cls,
        common_name: str = "PlugStream Root CA",
        *,
        organization: str = "PlugStream",
        now: dt.datetime | None = None,
    ) -> CertificateAuthority:
        key = _new_key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        now = now or dt.datetime.now(dt.UTC)
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + dt.timedelta(days=ROOT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(IssuedCertificate(cert, key))

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CertificateAuthority:
        """The authority whose root :meth:`write_root` (with ``key_path``) wrote.

        Raises :class:`PKIError` naming the file for a missing, non-PEM, expired or
        not-yet-valid root, or a key that is not the root's.
        """
        return cls(load_pair(cert_path, key_path))

    @property
    def root_pem(self) -> bytes:
        return self.root.cert_pem

    def write_root(self, cert_path: Path, key_path: Path | None = None) -> None:
        """Write the root certificate (what clients trust) and, if asked, its key (0600)."""
        cert_path.write_bytes(self.root_pem)
        if key_path is not None:
            _write_private(key_path, self.root.key_pem)

    def issue_server(
        self,
        hostnames: Iterable[str] = ("localhost",),
        *,
        ips: Iterable[str] = ("127.0.0.1",),
        days: int = LEAF_DAYS,
    ) -> IssuedCertificate:
        """A TLS server certificate (serverAuth) for DNS ``hostnames`` and ``ips``."""
        names = _server_names(list(hostnames), list(ips))
        return self._issue(
            _server_cn(names),
            ExtendedKeyUsageOID.SERVER_AUTH,
            names,
            days,
            organization=self.organization,
            key_agreement=True,
        )

    def issue_rsa_server(
        self,
        hostnames: Iterable[str] = ("localhost",),
        *,
        ips: Iterable[str] = ("127.0.0.1",),
        days: int = LEAF_DAYS,
    ) -> RsaServerCertificate:
        """:meth:`issue_server` with an RSA key (:data:`RSA_SERVER_BITS`), signed by the
        same root: its key usage has keyEncipherment (TLS_RSA key transport) and
        digitalSignature (ECDHE-RSA)."""
        names = _server_names(list(hostnames), list(ips))
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_SERVER_BITS)
        cert = self._build(
            _subject(_server_cn(names), self.organization),
            key.public_key(),
            ExtendedKeyUsageOID.SERVER_AUTH,
            names,
            days,
            key_encipherment=True,
        )
        return RsaServerCertificate(cert, key)

    def issue_client(
        self, common_name: str, *, organization: str | None = None, days: int = LEAF_DAYS
    ) -> IssuedCertificate:
        """A TLS client certificate (clientAuth) whose CN is ``common_name``: a station id."""
        return self._issue(
            common_name, ExtendedKeyUsageOID.CLIENT_AUTH, [], days, organization=organization
        )

    def issue_firmware_signing(
        self, common_name: str = "PlugStream Firmware Signing", *, days: int = LEAF_DAYS
    ) -> IssuedCertificate:
        """A codeSigning certificate: what a station checks a firmware signature against."""
        return self._issue(
            common_name,
            ExtendedKeyUsageOID.CODE_SIGNING,
            [],
            days,
            organization=self.organization,
        )

    @property
    def organization(self) -> str | None:
        """The O of the root: the operator for the CSMS root, the manufacturer for the other."""
        names = self.root.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        return str(names[0].value) if names else None

    def sign_csr(
        self,
        csr_pem: bytes,
        *,
        organization: str | None = None,
        days: int = LEAF_DAYS,
        source: str = "CSR",
        now: dt.datetime | None = None,
    ) -> x509.Certificate:
        """A Charging Station certificate (clientAuth) for the key in ``csr_pem``.

        OCPP 2.0.1 A00.FR.509/511 and A02/A03: CN is the station's serial number (taken
        from the CSR, which must carry one, not a URL or IP address), O is the operator
        (``organization``, default the root's O) whatever the CSR asked for. The CSR must be
        signed by its own key, which must be EC P-256 or RSA of 2048 bits or more
        (A00.FR.501-503). ``source`` (a file name) starts every error message.
        """
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError:
            raise PKIError(f"{source}: not a PEM certificate signing request") from None
        if not csr.is_signature_valid:
            raise PKIError(f"{source}: the CSR's signature is invalid")
        public = csr.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            if not isinstance(public.curve, ec.SECP256R1):
                raise PKIError(f"{source}: EC key on {public.curve.name}; use P-256 (secp256r1)")
        elif isinstance(public, rsa.RSAPublicKey):
            if public.key_size < MIN_RSA_BITS:
                raise PKIError(
                    f"{source}: RSA key of {public.key_size} bits; at least {MIN_RSA_BITS}"
                )
        else:
            raise PKIError(f"{source}: {type(public).__name__}; use EC P-256 or RSA >= 2048")
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common_name = str(cns[0].value).strip() if cns else ""
        if not common_name:
            raise PKIError(f"{source}: the CSR has no CN (the station's serial number)")
        if "://" in common_name or _is_ip(common_name):
            raise PKIError(f"{source}: CN {common_name!r} is a URL or IP address, not a serial")
        return self._build(
            _subject(common_name, organization or self.organization),
            public,
            ExtendedKeyUsageOID.CLIENT_AUTH,
            [],
            days,
            now=now,
            key_agreement=isinstance(public, ec.EllipticCurvePublicKey),
        )

    def _issue(
        self,
        common_name: str,
        usage: x509.ObjectIdentifier,
        alt_names: list[x509.GeneralName],
        days: int,
        *,
        organization: str | None = None,
        key_agreement: bool = False,
    ) -> IssuedCertificate:
        key = _new_key()
        cert = self._build(
            _subject(common_name, organization),
            key.public_key(),
            usage,
            alt_names,
            days,
            key_agreement=key_agreement,
        )
        return IssuedCertificate(cert, key)

    def _build(
        self,
        subject: x509.Name,
        public: CertificateIssuerPublicKeyTypes,
        usage: x509.ObjectIdentifier,
        alt_names: list[x509.GeneralName],
        days: int,
        *,
        key_agreement: bool = False,
        key_encipherment: bool = False,
        now: dt.datetime | None = None,
    ) -> x509.Certificate:
        now = now or dt.datetime.now(dt.UTC)
        root = self.root.certificate
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(root.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(min(now + dt.timedelta(days=days), root.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=key_encipherment,
                    data_encipherment=False,
                    key_agreement=key_agreement,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.root.key.public_key()),
                critical=False,
            )
        )
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        return builder.sign(self.root.key, hashes.SHA256())


def _server_names(dns: list[str], addresses: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in addresses]
    if not names:
        raise ValueError("a server certificate needs at least one host name or address")
    return names


def _server_cn(names: list[x509.GeneralName]) -> str:
    """The CN of a server certificate: its first host name, else its first address."""
    dns = [n.value for n in names if isinstance(n, x509.DNSName)]
    return str(dns[0]) if dns else str(names[0].value)


def _subject(common_name: str, organization: str | None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# --- PEM files: what the authority and the PKI directory read back ---


def read_pem(path: Path, what: str) -> bytes:
    """The bytes of a PEM file; a missing or unreadable one is a PKIError naming it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PKIError(f"{path}: missing {what}") from None
    except OSError as exc:
        raise PKIError(f"{path}: cannot read {what}: {exc.strerror}") from None


def check_validity(cert: x509.Certificate, path: Path, now: dt.datetime | None = None) -> None:
    """Refuse a certificate outside its validity period at ``now`` (default: the wall clock)."""
    now = now or dt.datetime.now(dt.UTC)
    if now < cert.not_valid_before_utc:
        raise PKIError(
            f"{path}: certificate not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    if now > cert.not_valid_after_utc:
        raise PKIError(f"{path}: certificate expired {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")


def load_certificate(path: Path, *, now: dt.datetime | None = None) -> x509.Certificate:
    """The first certificate in a PEM file, checked to be valid at ``now``."""
    data = read_pem(path, "certificate")
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise PKIError(f"{path}: not a PEM certificate") from None
    check_validity(cert, path, now)
    return cert


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """An unencrypted EC private key (PEM); every key this PKI makes is one."""
    data = read_pem(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise PKIError(f"{path}: not a PEM private key (or it is encrypted)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PKIError(f"{path}: not an EC private key")
    return key


def load_pair(
    cert_path: Path, key_path: Path, *, now: dt.datetime | None = None
) -> IssuedCertificate:
    """A certificate and its key, refused if the key is not the certificate's."""
    cert = load_certificate(cert_path, now=now)
    key = load_private_key(key_path)
    if key.public_key() != cert.public_key():
        raise PKIError(f"{key_path}: key does not match the certificate {cert_path}")
    return IssuedCertificate(cert, key)
