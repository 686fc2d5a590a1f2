"""What a connection may cost before it is a station: the handshake guard, sans I/O.

On a hostile network a peer opens TCP connections and never finishes them (no request,
half a request head, an upgrade it never completes); each holds a file descriptor and
memory for as long as the server lets it. :class:`HandshakeGuard` decides, for each new
connection, whether it may start (at most ``max_pending`` unfinished handshakes at once,
at most half of them from one source address, and a token bucket per source address,
:class:`AddressRate`) and counts what it refused and timed out. The deadline itself is a timer of the asyncio shell
(:mod:`plugstream.cloud.uvicorn_compat`); time here comes from an injected clock.

Under TLS the deadline counts from accept and covers the TLS handshake too (the shell
closes a connection still in TLS at it, uncounted here: the guard first hears of a TLS
connection, and admits or refuses it, once its TLS handshake is done).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

__all__ = ["AddressRate", "HandshakeGuard", "Refusal", "Waiter", "address_key"]

log = logging.getLogger(__name__)


class Refusal(Enum):
    """Why a new connection was closed at once."""

    TOO_MANY_PENDING = "too many pending handshakes"
    TOO_MANY_FROM_ADDRESS = "too many pending handshakes from the address"
    TOO_FAST = "too many connections from the address"
    WAITED_TOO_LONG = "waited too long for a handshake slot"


class Waiter(Protocol):
    """A connection waiting for a slot (its socket not read meanwhile)."""

    def start(self) -> None:
        """A slot is the connection's: its handshake begins (and its deadline)."""

    def expire(self) -> None:
        """It waited too long: it is to be closed."""


def address_key(host: str) -> str:
    """The bucket of a source address: the address for IPv4, its /64 for IPv6 (what one
    subscriber is routed, so a peer cannot dodge the limit by walking its own prefix)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return str(mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class AddressRate:
    """A token bucket per source address: ``burst`` connections at once, refilled at
    ``rate`` a second. The table is bounded: buckets that are full again are forgotten
    (they admit the same as a new one), and beyond ``max_addresses`` the oldest go."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 100_000,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a connection rate needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.max_addresses = max_addresses
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, host: str) -> bool:
        """Take a token for a new connection from ``host``; False when it has none."""
        now = self.clock()
        key = address_key(host)
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)  # re-inserted: the dict is oldest-first
        if len(self._buckets) > self.max_addresses:
            self._prune(now)
        return allowed

    def _prune(self, now: float) -> None:
        refill = self.burst / self.rate
        for key, (_, at) in list(self._buckets.items()):
            if now - at >= refill:
                del self._buckets[key]
        while len(self._buckets) > self.max_addresses:
            del self._buckets[next(iter(self._buckets))]


def _count(counts: dict[str, int], key: str | None, delta: int) -> None:
    """Add ``delta`` to ``key``'s count; a count that reaches 0 leaves the table."""
    if key is None:
        return
    left = counts.get(key, 0) + delta
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


@dataclass
class HandshakeGuard:
    """Admission of new connections before they are stations.

    ``timeout`` is the deadline of a handshake, from accept (the TLS handshake under
    wss://, the whole HTTP request head, and the upgrade of a WebSocket), ``max_pending``
    how many may be unfinished at once, ``rate`` the per-address limit (None: none). One address may hold at most half of
    ``max_pending`` (``max_pending_per_address``): a single flooding peer cannot take
    every slot from the stations connecting meanwhile."""

    timeout: float = 10.0
    max_pending: int = 1000
    rate: AddressRate | None = None
    # Beyond max_pending, up to max_waiting new connections wait for a slot, in the order
    # they came, their sockets unread (the kernel keeps what they send): a fleet that
    # reconnects at once after a restart is served as fast as handshakes complete, not
    # closed to come back after its back-off. One that waited wait_limit s is closed.
    max_waiting: int = 0
    wait_limit: float = 30.0
    clock: Callable[[], float] = time.monotonic
    pending: int = 0
    refused: dict[Refusal, int] = field(default_factory=lambda: dict.fromkeys(Refusal, 0))
    timed_out: int = 0
    waited: int = 0  # connections that waited for a slot and got one
    _by_address: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    # insertion-ordered: waiter -> (its address, when it began to wait)
    _waiting: dict[Waiter, tuple[str | None, float]] = field(
        default_factory=dict, init=False, repr=False
    )
    _waiting_from: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError("the handshake timeout must be > 0")
        if self.max_pending < 1:
            raise ValueError("max_pending must be >= 1")

    @property
    def max_pending_per_address(self) -> int:
        return max(1, self.max_pending // 2)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def is_waiting(self, waiter: Waiter) -> bool:
        return waiter in self._waiting

    def admit(self, host: str | None, waiter: Waiter | None = None) -> Refusal | None:
        """A new connection from ``host``: None when it may start its handshake (it is
        then pending until :meth:`release`) or, with ``waiter``, when it waits for a slot
        (``waiter.start()`` when it has one); else why it is to be closed at once."""
        refusal: Refusal | None = None
        key = address_key(host) if host is not None else None
        if self.pending >= self.max_pending or (self._waiting and waiter is not None):
            if waiter is not None and len(self._waiting) < self.max_waiting:
                if self._at_share(self._waiting_from, key):
                    return self._refuse(Refusal.TOO_MANY_FROM_ADDRESS, host)
                if self.rate is not None and host is not None and not self.rate.allow(host):
                    return self._refuse(Refusal.TOO_FAST, host)
                self._waiting[waiter] = (host, self.clock())
                _count(self._waiting_from, key, 1)
                return None
            refusal = Refusal.TOO_MANY_PENDING
        elif self._at_share(self._by_address, key):
            refusal = Refusal.TOO_MANY_FROM_ADDRESS
        elif self.rate is not None and host is not None and not self.rate.allow(host):
            refusal = Refusal.TOO_FAST
        if refusal is None:
            self._hold(key)
            return None
        return self._refuse(refusal, host)

    def _refuse(self, refusal: Refusal, host: str | None) -> Refusal:
        count = self.refused[refusal] + 1
        self.refused[refusal] = count
        if count == 1 or count % 1000 == 0:  # a flood is not to flood the log too
            log.warning("connection from %s closed: %s (%d so far)", host, refusal.value, count)
        return refusal

    def leave(self, waiter: Waiter) -> None:
        """A waiting connection went away before its turn."""
        found = self._waiting.pop(waiter, None)
        if found is not None:
            self._unwait(found[0])

    def _unwait(self, host: str | None) -> None:
        _count(self._waiting_from, address_key(host) if host is not None else None, -1)

    def _at_share(self, counts: dict[str, int], key: str | None) -> bool:
        """Whether ``key``'s address holds its share of ``counts`` (pending or waiting)."""
        return key is not None and counts.get(key, 0) >= self.max_pending_per_address

    def _next(self) -> None:
        """Slots are free: the connections waiting longest take them (those from an
        address over its share wait on; those that waited too long are closed)."""
        if not self._waiting:
            return
        now = self.clock()
        skipped: list[tuple[Waiter, tuple[str | None, float]]] = []
        # Each address waits with at most its share: the skipped are bounded by that.
        while self._waiting and self.pending < self.max_pending and len(skipped) < 64:
            waiter = next(iter(self._waiting))
            host, since = self._waiting.pop(waiter)
            if now - since > self.wait_limit:
                self._unwait(host)
                self._refuse(Refusal.WAITED_TOO_LONG, host)
                waiter.expire()
                continue
            key = address_key(host) if host is not None else None
            if self._at_share(self._by_address, key):
                skipped.append((waiter, (host, since)))
                continue
            self._unwait(host)
            self._hold(key)
            self.waited += 1
            waiter.start()
        if skipped:  # back at the head, in their order
            self._waiting = dict(skipped) | self._waiting

    def resume(self, host: str | None) -> Refusal | None:
        """A connection already admitted starts another request head (HTTP keep-alive):
        pending again, within the caps only (no new token: it is no new connection)."""
        key = address_key(host) if host is not None else None
        refusal: Refusal | None = None
        if self.pending >= self.max_pending:
            refusal = Refusal.TOO_MANY_PENDING
        elif self._at_share(self._by_address, key):
            refusal = Refusal.TOO_MANY_FROM_ADDRESS
        if refusal is not None:
            self.refused[refusal] += 1
            return refusal
        self._hold(key)
        return None

    def _hold(self, key: str | None) -> None:
        self.pending += 1
        _count(self._by_address, key, 1)

    def pending_from(self, host: str) -> int:
        return self._by_address.get(address_key(host), 0)

    def release(self, host: str | None, *, expired: bool = False) -> None:
        """A pending handshake from ``host`` is over: done, gone, or (``expired``) out
        of time. Its slot goes to the connection waiting longest."""
        self.pending -= 1
        _count(self._by_address, address_key(host) if host is not None else None, -1)
        if expired:
            self.timed_out += 1
            if self.timed_out == 1 or self.timed_out % 1000 == 0:
                log.warning(
                    "connection closed: no complete handshake within %g s (%d so far)",
                    self.timeout,
                    self.timed_out,
                )
        self._next()
