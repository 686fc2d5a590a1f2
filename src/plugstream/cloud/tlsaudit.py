"""Security events for connections that TLS refused before the app ever saw them.

A station whose client certificate fails verification (unknown CA, expired), or that
offers only TLS 1.0/1.1 or cipher suites the CSMS does not allow, is stopped in the TLS
handshake: the gateway never sees it, so ``gateway._admit`` cannot log it. OCPP 2.0.1
part 2 A00.FR.407/408 (and the 1.6 Security Whitepaper, same ids) RECOMMEND logging
``InvalidChargingStationCertificate`` when the CSMS terminates such a connection;
A00.FR.418 / A00.FR.425 are the TLS version and cipher suite cases, logged here as
``InvalidTLSVersion`` / ``InvalidTLSCipherSuite`` (part 2 appendices, security events).

The hook is :attr:`ssl.SSLContext.sslobject_class`: both asyncio's and uvloop's SSL
protocols make the server side of each connection with ``context.wrap_bio()``, which
instantiates that class, and drive the handshake with its ``do_handshake()``.
:class:`AuditedSSLObject` re-raises every error unchanged, so the handshake fails
exactly as before; it only reports the failure to a :class:`TlsAudit`.

The peer address is known on asyncio's loop (its SSL protocol is the caller of
``do_handshake``); uvloop's is compiled and keeps its transport private, so there the
event says "peer unknown". No peer certificate can be read after a failed handshake
(Python 3.11 has no ``get_unverified_chain``), so the station id of the event is "".

Bounded: :class:`RefusalLimiter` (sans-I/O) keeps at most one event per (peer host,
event, reason) per window and counts the rest, so a scanner costs no more than a few
rows a minute.
"""

from __future__ import annotations

import collections
import logging
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "AuditedSSLObject",
    "RefusalLimiter",
    "TlsAudit",
    "TlsRefusal",
    "classify",
]

log = logging.getLogger("plugstream.cloud.tlsaudit")

INVALID_CERTIFICATE = "InvalidChargingStationCertificate"
INVALID_TLS_VERSION = "InvalidTLSVersion"
INVALID_CIPHER_SUITE = "InvalidTLSCipherSuite"

# OpenSSL reasons (ssl.SSLError.reason) a server sees when the client's TLS is too old,
# or when no suite is shared. Anything else (plain HTTP on the TLS port, a client that
# hangs up or distrusts our certificate) is not a station security event: not recorded.
_VERSION_REASONS = frozenset(
    {"UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "VERSION_TOO_LOW"}
)
_CIPHER_REASONS = frozenset(
    {"NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE", "NO_SUITABLE_SIGNATURE_ALGORITHM"}
)

TECH_INFO_MAX = 255  # SecurityEventNotification techInfo: string[0..255]


@dataclass(frozen=True, slots=True)
class TlsRefusal:
    """A handshake the CSMS refused, as recorded: ``event`` is the OCPP security event,
    ``reason`` what OpenSSL said (e.g. "certificate has expired"), ``peer`` "host:port"
    or None where the loop does not tell."""

    event: str
    reason: str
    peer: str | None

    def tech_info(self, suppressed: int = 0) -> str:
        where = f"peer {self.peer}" if self.peer else "peer unknown"
        more = f"; {suppressed} more like it not recorded" if suppressed else ""
        return f"TLS handshake refused: {self.reason}; {where}{more}"[:TECH_INFO_MAX]


def classify(exc: ssl.SSLError) -> tuple[str, str] | None:
    """(security event, reason) of a failed server-side handshake; None when it is not
    a station's security failure."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = exc.verify_message or exc.reason or "certificate verify failed"
        return INVALID_CERTIFICATE, f"client certificate: {message}"
    reason = exc.reason or ""
    if reason in _VERSION_REASONS:
        return INVALID_TLS_VERSION, f"client offers only TLS versions below 1.2 ({reason})"
    if reason in _CIPHER_REASONS:
        return INVALID_CIPHER_SUITE, f"client offers no allowed cipher suite ({reason})"
    return None


class RefusalLimiter:
    """One record per key per ``window`` seconds, at most ``max_keys`` keys tracked;
    refusals over the limit are counted, and the count goes into the next record of
    the key. Sans-I/O: the caller passes the time."""

    def __init__(self, window: float = 60.0, max_keys: int = 4096) -> None:
        self.window = window
        self.max_keys = max_keys
        self._until: collections.OrderedDict[tuple[str, ...], tuple[float, int]] = (
            collections.OrderedDict()
        )
        self._pending: dict[tuple[str, ...], int] = {}  # counts of expired keys
        self.suppressed = 0  # refusals not recorded, since start

    def admit(self, key: tuple[str, ...], now: float) -> int | None:
        """None when this refusal is not to be recorded; else how many like it were not."""
        self._expire(now)
        held = self._until.get(key)
        if held is not None:
            until, count = held
            self._until[key] = (until, count + 1)
            self.suppressed += 1
            return None
        if len(self._until) >= self.max_keys:
            self.suppressed += 1
            return None
        self._until[key] = (now + self.window, 0)
        return self._pending.pop(key, 0)

    def _expire(self, now: float) -> None:
        # Keys are kept in the order they were admitted, which is their expiry order.
        while self._until:
            key, (until, count) = next(iter(self._until.items()))
            if until > now:
                break
            del self._until[key]
            if count and len(self._pending) < self.max_keys:
                self._pending[key] = count


Sink = Callable[[TlsRefusal, str], None]


class TlsAudit:
    """Reports refused handshakes to ``sink(refusal, tech_info)``, rate-limited; the sink
    must not block (schedule the store write)."""

    def __init__(
        self, sink: Sink, *, window: float = 60.0, clock: Callable[[], float] | None = None
    ) -> None:
        self.sink = sink
        self.limiter = RefusalLimiter(window)
        self._clock = clock or time.monotonic
        self.refused = 0  # every refused handshake seen, recorded or not

    def install(self, context: ssl.SSLContext) -> ssl.SSLContext:
        """Make ``context`` report its failed server handshakes here."""
        context.sslobject_class = type("AuditedSSLObject", (AuditedSSLObject,), {"audit": self})
        return context

    def handshake_failed(self, exc: ssl.SSLError, peer: str | None) -> None:
        found = classify(exc)
        if found is None:
            return
        event, reason = found
        self.refused += 1
        host = peer.rsplit(":", 1)[0] if peer else ""
        suppressed = self.limiter.admit((host, event, reason), self._clock())
        if suppressed is None:
            return
        refusal = TlsRefusal(event, reason, peer)
        tech_info = refusal.tech_info(suppressed)
        log.warning("TLS refusal, %s: %s", event, tech_info)
        try:
            self.sink(refusal, tech_info)
        except Exception:  # the handshake's own error is what the loop must see
            log.warning("could not record a TLS refusal", exc_info=True)


class AuditedSSLObject(ssl.SSLObject):
    """The server side of a TLS connection that reports a failed handshake to ``audit``
    (set on the subclass :meth:`TlsAudit.install` makes) and then re-raises it."""

    audit: ClassVar[TlsAudit | None] = None

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            audit = type(self).audit
            if audit is not None and self.server_side:
                audit.handshake_failed(exc, _caller_peer())
            raise


def _caller_peer() -> str | None:
    """The peer of the connection whose handshake failed, where the loop lets it be known:
    asyncio's ``SSLProtocol._do_handshake`` is the caller and holds the transport.
    uvloop's protocol is compiled (no Python frame): None."""
    try:
        caller: Any = sys._getframe(2).f_locals.get("self")
    except ValueError:
        return None
    if type(caller).__module__ != "asyncio.sslproto":
        return None
    try:
        peer = caller._get_extra_info("peername")
    except Exception:
        return None
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return None
