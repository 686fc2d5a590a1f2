"""The operator's ISO 15118 (V2G) hierarchy: a V2G root CA and one sub-CA that signs the
stations' V2G (SECC) certificates and, for a local contract-certificate issuer, contract
certificates.

ISO 15118-2 asks for EC secp256r1 keys, SHA-256 signatures and at least one sub-CA between
the root and a leaf (TC_C_52_CSMS checks for one). Every certificate the sub-CA signs
carries the cloud's OCSP URL in its Authority Information Access, so a station or an EV's
backend can ask the cloud whether it was revoked (C07, M06).

Layout in the PKI directory (beside :mod:`.keystore`'s files)::

    v2g-root.pem / .key     the V2G root CA (what stations install as V2GRootCertificate)
    v2g-subca.pem / .key    the sub-CA that signs leaves, followed by nothing
    v2g-ocsp-url            the OCSP URL put in the certificates' AIA
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from plugstream.pki.authority import (
    IssuedCertificate,
    PKIError,
    load_pair,
)

__all__ = [
    "V2G_ROOT",
    "V2G_SUBCA",
    "V2GAuthority",
    "chain_pem",
    "configured_ocsp_url",
    "init_v2g",
    "load_v2g",
    "ocsp_url_of",
]

V2G_ROOT = "v2g-root"
V2G_SUBCA = "v2g-subca"
OCSP_URL_FILE = "v2g-ocsp-url"
ROOT_DAYS = 3650
SUBCA_DAYS = 1460  # ISO 15118-2 Annex F: a sub-CA lives at most four years
LEAF_DAYS = 365  # an SECC certificate: at most a year (ISO 15118-2 V2G2-669)
CONTRACT_DAYS = 730  # a contract certificate: at most two years
MIN_EC_BITS = 224  # TC_A_12_CSMS: the key must be at least 224 bits long
_CLOCK_SKEW = dt.timedelta(minutes=5)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organization: str, unit: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)]
    if unit:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _aia(ocsp_url: str | None) -> x509.AuthorityInformationAccess | None:
    if not ocsp_url:
        return None
    return x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
            )
        ]
    )


def ocsp_url_of(cert: x509.Certificate) -> str | None:
    """The OCSP responder named in ``cert``'s Authority Information Access, if any."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return None
    for description in aia:
        if description.access_method == AuthorityInformationAccessOID.OCSP:
            return str(description.access_location.value)
    return None


def chain_pem(*certificates: x509.Certificate) -> bytes:
    """The PEM chain, leaf first, as CertificateSigned carries it."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _build(
    subject: x509.Name,
    public: ec.EllipticCurvePublicKey,
    issuer: IssuedCertificate | None,
    signer: ec.EllipticCurvePrivateKey,
    *,
    days: int,
    ca: bool,
    path_length: int | None,
    ocsp_url: str | None,
    now: dt.datetime,
) -> x509.Certificate:
    issuer_name = issuer.certificate.subject if issuer is not None else subject
    not_after = now + dt.timedelta(days=days)
    if issuer is not None:
        not_after = min(not_after, issuer.certificate.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(_key_usage(ca=ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        aia = _aia(ocsp_url)
        if aia is not None:
            builder = builder.add_extension(aia, critical=False)
    return builder.sign(signer, hashes.SHA256())


@dataclass(frozen=True, slots=True)
class V2GAuthority:
    """The V2G root and its sub-CA; the sub-CA signs, the root only vouches for it."""

    root: IssuedCertificate
    sub_ca: IssuedCertificate

    @classmethod
    def create(
        cls, operator: str, *, ocsp_url: str | None = None, now: dt.datetime | None = None
    ) -> V2GAuthority:
        now = now or dt.datetime.now(dt.UTC)
        root_key, sub_key = _new_key(), _new_key()
        root_name = _name(f"{operator} V2G Root CA", operator)
        root_cert = _build(
            root_name,
            root_key.public_key(),
            None,
            root_key,
            days=ROOT_DAYS,
            ca=True,
            path_length=1,
            ocsp_url=None,
            now=now,
        )
        root = IssuedCertificate(root_cert, root_key)
        sub_cert = _build(
            _name(f"{operator} V2G Sub-CA", operator),
            sub_key.public_key(),
            root,
            root_key,
            days=SUBCA_DAYS,
            ca=True,
            path_length=0,
            ocsp_url=ocsp_url,
            now=now,
        )
        return cls(root, IssuedCertificate(sub_cert, sub_key))

    def sign_csr(
        self,
        csr_pem: bytes,
        *,
        ocsp_url: str | None = None,
        now: dt.datetime | None = None,
        source: str = "CSR",
    ) -> x509.Certificate:
        """An SECC (V2G) certificate for the key and subject of ``csr_pem`` (A02.FR.11):
        the CSR's own subject (C, O, OU, CN as the station made it), an EC key of at least
        224 bits, signed by the sub-CA."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError:
            raise PKIError(f"{source}: not a PEM certificate signing request") from None
        if not csr.is_signature_valid:
            raise PKIError(f"{source}: the CSR's signature is invalid")
        public = csr.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise PKIError(f"{source}: {type(public).__name__}; a V2G certificate needs EC")
        if public.curve.key_size < MIN_EC_BITS:
            raise PKIError(f"{source}: EC key of {public.curve.key_size} bits; at least 224")
        if not csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            raise PKIError(f"{source}: the CSR has no CN")
        return _build(
            csr.subject,
            public,
            self.sub_ca,
            self.sub_ca.key,
            days=LEAF_DAYS,
            ca=False,
            path_length=None,
            ocsp_url=ocsp_url,
            now=now or dt.datetime.now(dt.UTC),
        )

    def issue_contract(
        self, emaid: str, *, ocsp_url: str | None = None, now: dt.datetime | None = None
    ) -> IssuedCertificate:
        """A contract certificate and its key, CN the eMAID (erratum to TC_C_50_CSMS):
        what a mobility operator's backend would hand an EV."""
        key = _new_key()
        cert = _build(
            _name(emaid, self.organization),
            key.public_key(),
            self.sub_ca,
            self.sub_ca.key,
            days=CONTRACT_DAYS,
            ca=False,
            path_length=None,
            ocsp_url=ocsp_url,
            now=now or dt.datetime.now(dt.UTC),
        )
        return IssuedCertificate(cert, key)

    @property
    def organization(self) -> str:
        names = self.root.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        return str(names[0].value) if names else "PlugStream"


def _path(directory: Path, stem: str, suffix: str) -> Path:
    return directory / f"{stem}.{suffix}"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)


def init_v2g(
    directory: Path,
    operator: str,
    *,
    ocsp_url: str | None = None,
    now: dt.datetime | None = None,
) -> V2GAuthority:
    """Create the V2G root and sub-CA in ``directory``; never overwrite existing keys."""
    if not operator.strip():
        raise PKIError(f"{directory}: the operator name is empty")
    root_key = _path(directory, V2G_ROOT, "key")
    if root_key.exists():
        raise PKIError(f"{root_key}: a V2G PKI already exists here; not overwriting its keys")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    authority = V2GAuthority.create(operator, ocsp_url=ocsp_url, now=now)
    authority.sub_ca.write(_path(directory, V2G_SUBCA, "pem"), _path(directory, V2G_SUBCA, "key"))
    if ocsp_url:
        (directory / OCSP_URL_FILE).write_text(ocsp_url + "\n")
    # The root key last: its presence marks a complete V2G PKI.
    _path(directory, V2G_ROOT, "pem").write_bytes(authority.root.cert_pem)
    _write_private(root_key, authority.root.key_pem)
    return authority


def load_v2g(directory: Path, *, now: dt.datetime | None = None) -> V2GAuthority:
    """The V2G hierarchy of ``directory``; PKIError naming the file if missing or broken."""
    root = load_pair(_path(directory, V2G_ROOT, "pem"), _path(directory, V2G_ROOT, "key"), now=now)
    sub = load_pair(_path(directory, V2G_SUBCA, "pem"), _path(directory, V2G_SUBCA, "key"), now=now)
    if sub.certificate.issuer != root.certificate.subject:
        raise PKIError(f"{_path(directory, V2G_SUBCA, 'pem')}: not issued by the V2G root")
    return V2GAuthority(root, sub)


def configured_ocsp_url(directory: Path) -> str | None:
    """The OCSP URL ``init_v2g`` was given, if any."""
    try:
        text = (directory / OCSP_URL_FILE).read_text().strip()
    except OSError:
        return None
    return text or None
