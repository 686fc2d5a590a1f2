"""TLS for OCPP security profiles 2 and 3 as a station sees it: the context it connects
with and the check of the server it reached, against its own trust store and its own
clock.

OpenSSL checks a certificate's validity against the host's system time, and a station's
system time is not what it trusts: its clock is the NTP-corrected one (the site-network
issue), and "a wrong clock cannot authenticate" must be decided by that clock. So the
station's context does the handshake without OpenSSL's verification
(:func:`station_context`), and :func:`verify_server` checks the chain the server sent
-- trust anchor, signatures, validity at ``now``, serverAuth, the host name or IP -- with
``cryptography``'s RFC 5280 verifier before a single byte of OCPP (or a password) is
sent (A00.FR.308/309/310, 1.6 Security Whitepaper 2.4).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

__all__ = [
    "OCPP_TLS12_CIPHERS",
    "OCPP_TLS12_SERVER_CIPHERS",
    "ServerRejected",
    "peer_chain",
    "resumable",
    "resuming",
    "server_key_type",
    "station_context",
    "verify_server",
]

# OCPP 2.0.1 part 2 A00.FR.318/319 (and the 1.6 whitepaper): the TLS 1.2 suites a
# station and a CSMS support; TLS 1.3 suites are OpenSSL's (all AEAD).
OCPP_TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
)

# The CSMS's: the spec's four, and the ECDHE-RSA pair for a station whose certificate
# family is RSA and that can keep its traffic secret later on (forward secrecy, "RECOMMENDED"
# by A00.FR.319 note 1; required in some jurisdictions, A00.FR.422). Which of them a
# handshake can use depends on the server's certificates: ECDHE-ECDSA needs an EC one,
# the other four an RSA one (OpenSSL keeps one of each, A00.FR.318's note).
OCPP_TLS12_SERVER_CIPHERS = (
    *OCPP_TLS12_CIPHERS,
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
)

MAX_CHAIN_DEPTH = 4


class ServerRejected(Exception):
    """The server's certificate failed the station's check; ``reason`` says why in words
    an installer can act on. The security event is InvalidCsmsCertificate (2.0.1) /
    InvalidCentralSystemCertificate (1.6), or InvalidFirmwareServerCertificate-like
    failures for downloads -- the caller names it."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"server certificate of {host} rejected: {reason}")
        self.host = host
        self.reason = reason


def station_context(
    client_cert: Path | str | None = None, client_key: Path | str | None = None
) -> ssl.SSLContext:
    """A client context: TLS 1.2 or 1.3 only (A00.FR.313), the spec's TLS 1.2 suites, no
    compression, and the station's certificate for profile 3 (A00.FR.401).

    OpenSSL's own verification is off: :func:`verify_server` must run on every connection
    made with it (see the module's docstring), before anything is sent.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    context.set_ciphers(":".join(OCPP_TLS12_CIPHERS))
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client_cert is not None:
        context.load_cert_chain(client_cert, client_key)
    return context


def peer_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[x509.Certificate]:
    """The certificates the server sent, leaf first.

    Python 3.13 has ``get_unverified_chain()``; 3.11 and 3.12 have it on the C object
    only. Without either, only the leaf: intermediates must then be in the trust store.
    """
    getter = getattr(ssl_object, "get_unverified_chain", None)
    if getter is None:
        inner = getattr(ssl_object, "_sslobj", None)
        getter = getattr(inner, "get_unverified_chain", None)
    if getter is not None:
        chain = getter() or []
        ders = [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]  # type: ignore[attr-defined]
        if ders:
            return [x509.load_der_x509_certificate(d) for d in ders]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [] if leaf is None else [x509.load_der_x509_certificate(leaf)]


def server_key_type(cert: Path, key: Path) -> str:
    """ "rsa" or "ec" (else the key's type name) for a server certificate and its key;
    ValueError with the reason in one line when either cannot be read or the key is not
    the certificate's."""
    try:
        certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError):
        raise ValueError(f"{cert}: not a PEM certificate") from None
    try:
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        raise ValueError(f"{key}: not an unencrypted PEM private key") from None
    if private.public_key() != certificate.public_key():
        raise ValueError(f"{key}: not the key of the certificate {cert}")
    if isinstance(private, rsa.RSAPrivateKey):
        return "rsa"
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return "ec"
    return type(private).__name__


def _subject(host: str) -> x509.DNSName | x509.IPAddress:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def verify_server(
    chain: Sequence[x509.Certificate],
    host: str,
    roots: Iterable[x509.Certificate],
    now: dt.datetime,
) -> x509.Certificate:
    """Check ``chain`` (leaf first, as sent) for ``host`` against ``roots`` at ``now``.

    Returns the leaf; raises :class:`ServerRejected` with the specific reason: no
    certificate, no trust anchor, not yet valid or expired by the station's clock,
    wrong host, or no path to a trusted root.
    """
    anchors = list(roots)
    if not chain:
        raise ServerRejected(host, "the server sent no certificate")
    if not anchors:
        raise ServerRejected(host, "the station trusts no root certificate (install a CSMS root)")
    leaf, intermediates = chain[0], list(chain[1:])
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    # cryptography's own reasons are terse; the two an installer most needs, spelled out
    if now < leaf.not_valid_before_utc:
        raise ServerRejected(
            host,
            f"not yet valid: valid from {leaf.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}, "
            f"the station's clock says {now:%Y-%m-%dT%H:%M:%SZ}",
        )
    if now > leaf.not_valid_after_utc:
        raise ServerRejected(
            host,
            f"expired at {leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}, "
            f"the station's clock says {now:%Y-%m-%dT%H:%M:%SZ}",
        )
    verifier = (
        PolicyBuilder()
        .store(Store(anchors))
        .time(now)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .build_server_verifier(_subject(host))
    )
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        text = str(exc)
        if "subject" in text.lower() or "san" in text.lower() or "name" in text.lower():
            raise ServerRejected(
                host, f"the certificate is not for {host!r} ({_names(leaf)}): {text}"
            ) from None
        if "issuer" in text.lower() or "candidates" in text.lower():
            raise ServerRejected(
                host,
                f"issued by {leaf.issuer.rfc4514_string()!r}, which the station does not "
                f"trust: {text}",
            ) from None
        raise ServerRejected(host, text) from None
    return leaf


def _names(cert: x509.Certificate) -> str:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "no subjectAltName"
    names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return "for " + ", ".join(names)


# -- session resumption: a reconnect without a full handshake ---------------------------------

_RESUME: ContextVar[ssl.SSLSession | None] = ContextVar("plugstream_tls_resume", default=None)


class _ResumingSSLObject(ssl.SSLObject):
    """An SSLObject that offers the session of :func:`resuming` (asyncio creates its
    SSLObject itself, with no ``session=``: this is the way in). A session of another
    context, or one OpenSSL refuses, is not offered: a full handshake, as without it."""

    @classmethod
    def _create(
        cls,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
        context: ssl.SSLContext | None = None,
    ) -> Any:
        create = super()._create  # type: ignore[misc]
        offered = _RESUME.get() if session is None and not server_side else session
        if offered is not None:
            with contextlib.suppress(ValueError, ssl.SSLError):
                return create(incoming, outgoing, server_side, server_hostname, offered, context)
        return create(incoming, outgoing, server_side, server_hostname, session, context)


def resumable(context: ssl.SSLContext) -> ssl.SSLContext:
    """Let ``context``'s asyncio connections offer the session given by :func:`resuming`
    (a TLS 1.3 ticket or a TLS 1.2 session id): the reconnect of a station costs a short
    handshake, no certificate chain. Nothing changes outside :func:`resuming`."""
    context.sslobject_class = _ResumingSSLObject
    return context


@contextlib.contextmanager
def resuming(session: ssl.SSLSession | None) -> Iterator[None]:
    """Connections made in this block (this task) with a :func:`resumable` context offer
    ``session``. A context variable, so stations sharing one context (a fleet) each offer
    their own."""
    token = _RESUME.set(session)
    try:
        yield
    finally:
        _RESUME.reset(token)
