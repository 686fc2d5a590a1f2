"""The station's DNS priority resolver, as the vendor article orders it.

The article's table: DHCP primary (1), DHCP secondary (2), 1.1.1.1 (3), 1.0.0.1 (4),
all UDP port 53. A server that does not answer "promptly" (a per-server timeout,
2 s by default) or answers SERVFAIL/REFUSED/garbage is passed over at once for the
next one; NXDOMAIN (or NOERROR without data) from a working server is final, since
asking another server would only hide a wrong host name. Answers are cached by
TTL (clamped), and when every server fails the last good answer is served, flagged
stale, for a bounded time after its TTL ran out (RFC 8767, "serve-stale"), so a
DNS outage does not take a charging station offline; the failure is reported.

Layout, like :mod:`plugstream.ocpp`: :class:`DnsResolver` / :class:`Resolution`
are a sans-I/O core (datagrams and the time go in, :class:`Query` actions and
:class:`Resolved` / :class:`DnsFailure` outcomes come out); :func:`resolve` is the
thin asyncio shell over UDP. DNS messages are built and parsed by dnspython.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from .timeouts import within

__all__ = [
    "ARTICLE_FALLBACKS",
    "DEFAULT_MAX_TTL",
    "DEFAULT_MIN_TTL",
    "DEFAULT_STALE_FOR",
    "DEFAULT_TIMEOUT",
    "DNS_PORT",
    "Attempt",
    "DnsError",
    "DnsFailure",
    "DnsResolver",
    "DnsServer",
    "Outcome",
    "Query",
    "RdType",
    "Reason",
    "Resolution",
    "Resolved",
    "resolve",
    "resolver_order",
    "udp_socket_on",
]

ARTICLE_FALLBACKS: Final[tuple[str, str]] = ("1.1.1.1", "1.0.0.1")
"""The article's priorities 3 and 4: Cloudflare primary and secondary."""
DNS_PORT: Final = 53
"""The article's Table 2: DNS over UDP port 53."""
DEFAULT_TIMEOUT: Final = 2.0
"""Seconds a server has to answer: the article's "promptly"."""
DEFAULT_STALE_FOR: Final = 3600.0
"""Seconds a last good answer may still be served after its TTL ran out (RFC 8767)."""
DEFAULT_MIN_TTL: Final = 5.0
"""TTL floor: a TTL of 0 would send every connection attempt to the network."""
DEFAULT_MAX_TTL: Final = 86400.0
"""TTL ceiling: a moved cloud endpoint is picked up within a day at worst."""
_MAX_ENTRIES: Final = 256

RdType = Literal["A", "AAAA"]
Reason = Literal[
    "answer",  # addresses: final
    "nxdomain",  # the name does not exist: final
    "nodata",  # the name exists but has no record of this type: final
    "servfail",
    "refused",
    "rcode",  # another error rcode (FORMERR, NOTIMP, ...)
    "timeout",
    "malformed",
    "truncated",
    "unreachable",  # e.g. ICMP port unreachable, no route
]
_FINAL: Final[frozenset[str]] = frozenset({"answer", "nxdomain", "nodata"})
_SOURCE_LABELS: Final = {
    "dhcp-primary": "DHCP primary",
    "dhcp-secondary": "DHCP secondary",
}


@dataclass(frozen=True, slots=True)
class DnsServer:
    """One DNS server and where it came from (``dhcp-primary``, ``dhcp-secondary``, ``fallback``)."""

    address: str
    port: int = DNS_PORT
    source: str = field(default="fallback", kw_only=True)

    def __str__(self) -> str:
        label = _SOURCE_LABELS.get(self.source, self.source.replace("-", " "))
        host = f"[{self.address}]" if ":" in self.address else self.address
        where = self.address if self.port == DNS_PORT else f"{host}:{self.port}"
        return f"{label} {where}"


def resolver_order(
    dhcp_servers: Sequence[str | DnsServer],
    fallbacks: Sequence[str | DnsServer] = ARTICLE_FALLBACKS,
) -> list[DnsServer]:
    """The article's order: DHCP primary, DHCP secondary (any further DHCP servers
    next), then the fallbacks; duplicates dropped, first place kept.

    Strings are IP addresses on port 53; a :class:`DnsServer` keeps its port (tests
    point the order at loopback servers this way). No DHCP servers: fallbacks only.
    """
    order: list[DnsServer] = []
    seen: set[tuple[str, int]] = set()

    def add(item: str | DnsServer, source: str) -> None:
        server = (
            replace(item, source=source)
            if isinstance(item, DnsServer)
            else DnsServer(item.strip(), source=source)
        )
        if not server.address:
            return
        address = str(ipaddress.ip_address(server.address))  # ValueError for a host name
        key = (address, server.port)
        if key not in seen:
            seen.add(key)
            order.append(replace(server, address=address))

    for i, item in enumerate(dhcp_servers):
        add(item, "dhcp-primary" if i == 0 else "dhcp-secondary" if i == 1 else f"dhcp-{i + 1}")
    for item in fallbacks:
        add(item, "fallback")
    return order


@dataclass(frozen=True, slots=True)
class Attempt:
    """One server asked once: what came of it and how long it took."""

    server: DnsServer
    reason: Reason
    elapsed: float
    detail: str = ""

    def __str__(self) -> str:
        took = f"after {self.elapsed:.1f} s" if self.elapsed >= 0.1 else "at once"
        what = {
            "answer": "answered",
            "nxdomain": "answered NXDOMAIN (no such name)",
            "nodata": "answered with no record of this type",
            "servfail": "answered SERVFAIL",
            "refused": "answered REFUSED",
            "rcode": f"answered {self.detail}",
            "timeout": "timed out",
            "malformed": "sent a malformed answer",
            "truncated": "sent a truncated answer",
            "unreachable": f"was unreachable ({self.detail})",
        }[self.reason]
        return f"{self.server} {what} {took}"


@dataclass(frozen=True, slots=True)
class Resolved:
    """Addresses for a name, and how we got them.

    ``stale``: every server failed (see ``attempts``) and this is the last good
    answer, ``age`` seconds old. ``from_cache``: served within its TTL, nobody asked.
    """

    name: str
    rdtype: RdType
    addresses: tuple[str, ...]
    server: DnsServer
    ttl: float
    attempts: tuple[Attempt, ...] = ()
    from_cache: bool = False
    stale: bool = False
    age: float = 0.0


@dataclass(frozen=True, slots=True)
class DnsFailure:
    """No addresses: the name does not exist (``nxdomain``/``nodata``, final) or no
    server gave a usable answer (``unreachable``); ``attempts`` say who failed and why."""

    name: str
    rdtype: RdType
    kind: Literal["nxdomain", "nodata", "unreachable"]
    attempts: tuple[Attempt, ...] = ()
    from_cache: bool = False

    def __str__(self) -> str:
        what = {
            "nxdomain": "does not exist",
            "nodata": "has no record",
            "unreachable": "could not be resolved",
        }[self.kind]
        tried = "; ".join(str(a) for a in self.attempts) or (
            "answer cached" if self.from_cache else "no DNS servers"
        )
        return f"{self.name} {self.rdtype} {what}: {tried}"


Outcome = Resolved | DnsFailure


@dataclass(frozen=True, slots=True)
class Query:
    """Action: send ``wire`` to ``server`` over UDP and wait up to ``timeout`` s."""

    server: DnsServer
    wire: bytes
    timeout: float


@dataclass(slots=True)
class _Entry:
    addresses: tuple[str, ...]
    server: DnsServer
    received: float
    expires: float
    kind: Literal["answer", "nxdomain", "nodata"] = "answer"


class DnsResolver:
    """Long-lived resolver state: the TTL cache and the last good answers.

    One per station; :meth:`lookup` starts a :class:`Resolution` for one query.
    TTLs are clamped to ``[min_ttl, max_ttl]``; when every server fails, the last
    good answer is served (flagged stale) until ``stale_for`` seconds after its
    TTL ran out (RFC 8767 measures from expiry too). Negative answers (NXDOMAIN,
    no data) are cached by their SOA's TTL (RFC 2308) and drop the last good one.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        stale_for: float = DEFAULT_STALE_FOR,
        min_ttl: float = DEFAULT_MIN_TTL,
        max_ttl: float = DEFAULT_MAX_TTL,
    ) -> None:
        if not timeout > 0 or not 0 <= min_ttl <= max_ttl or stale_for < 0:
            raise ValueError("need timeout > 0, 0 <= min_ttl <= max_ttl, stale_for >= 0")
        self.timeout = timeout
        self.stale_for = stale_for
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self._cache: dict[tuple[str, RdType], _Entry] = {}
        self._last_good: dict[tuple[str, RdType], _Entry] = {}

    def lookup(
        self,
        name: str,
        servers: Sequence[DnsServer],
        *,
        rdtype: RdType = "A",
        timeout: float | None = None,
    ) -> Resolution:
        """A resolution of ``name`` asking ``servers`` in order; call its ``start``."""
        return Resolution(self, name, rdtype, servers, self.timeout if timeout is None else timeout)

    def clamp(self, ttl: float) -> float:
        """The TTL we honour: a server's 0 or a week both make poor station behaviour."""
        return min(max(ttl, self.min_ttl), self.max_ttl)

    def _cached(self, name: str, rdtype: RdType, now: float) -> _Entry | None:
        entry = self._cache.get((_key(name), rdtype))
        return entry if entry is not None and now < entry.expires else None

    def _store(self, key: tuple[str, RdType], entry: _Entry) -> None:
        for table in (self._cache, self._last_good) if entry.kind == "answer" else (self._cache,):
            table.pop(key, None)
            table[key] = entry
            while len(table) > _MAX_ENTRIES:
                del table[next(iter(table))]
        if entry.kind != "answer":
            # A working server says the name is gone: its old address must not come back.
            self._last_good.pop(key, None)

    def _stale(self, key: tuple[str, RdType], now: float) -> _Entry | None:
        entry = self._last_good.get(key)
        if entry is None or now - entry.expires > self.stale_for:
            return None
        return entry


def _key(name: str) -> str:
    return name.lower().rstrip(".")


class Resolution:
    """One (name, type) query walking the server list: sans-I/O.

    ``start(now)`` returns a :class:`Query` to send or an :class:`Outcome` (cache
    hit). Then feed ``datagram`` (returns ``None`` for a datagram that is not the
    answer: wrong source, id or question; spoofed or stray) and ``timed_out`` /
    ``unreachable``; each returns the next :class:`Query` or the :class:`Outcome`.
    """

    def __init__(
        self,
        resolver: DnsResolver,
        name: str,
        rdtype: RdType,
        servers: Sequence[DnsServer],
        timeout: float,
    ) -> None:
        self.name = name.rstrip(".")
        self.rdtype: RdType = rdtype
        self.timeout = timeout
        self.attempts: list[Attempt] = []
        self.outcome: Outcome | None = None
        self._resolver = resolver
        self._key = (_key(name), rdtype)
        self._qname = dns.name.from_text(self.name)
        self._servers = list(servers)
        self._index = -1
        self._query: dns.message.Message | None = None
        self._sent_at = 0.0

    @property
    def server(self) -> DnsServer | None:
        """The server being asked now."""
        return self._servers[self._index] if 0 <= self._index < len(self._servers) else None

    @property
    def deadline(self) -> float:
        """When the server being asked has timed out."""
        return self._sent_at + self.timeout

    def start(self, now: float) -> Query | Outcome:
        entry = self._resolver._cached(self.name, self.rdtype, now)
        if entry is not None:
            if entry.kind == "answer":
                return self._finish(
                    Resolved(
                        self.name,
                        self.rdtype,
                        entry.addresses,
                        entry.server,
                        ttl=entry.expires - now,
                        from_cache=True,
                        age=now - entry.received,
                    )
                )
            return self._finish(DnsFailure(self.name, self.rdtype, entry.kind, from_cache=True))
        return self._next(now)

    def datagram(self, data: bytes, source: tuple[str, int], now: float) -> Query | Outcome | None:
        """A UDP datagram from ``source``; ``None``: ignored (not the answer to our query)."""
        server, query = self.server, self._query
        if server is None or query is None or self.outcome is not None:
            return None
        if not _same_endpoint(source, server) or len(data) < 2:
            return None
        if int.from_bytes(data[:2], "big") != query.id:
            return None  # stray or spoofed: the id is our only 16 bits of defence
        try:
            response = dns.message.from_wire(data)
        except Exception as exc:  # untrusted bytes: whatever the parser trips on is "malformed"
            return self._fail(now, "malformed", type(exc).__name__)
        if not query.is_response(response):
            return None  # right id, wrong question: not ours
        return self._answer(response, now)

    def timed_out(self, now: float) -> Query | Outcome:
        """The shell says the current server's ``timeout`` has passed."""
        return self._fail(now, "timeout")

    def unreachable(self, now: float, detail: str) -> Query | Outcome:
        """The shell could not reach the current server (ICMP error, no route, ...)."""
        return self._fail(now, "unreachable", detail)

    def _answer(self, response: dns.message.Message, now: float) -> Query | Outcome:
        rcode = response.rcode()
        if rcode == dns.rcode.SERVFAIL:
            return self._fail(now, "servfail")
        if rcode == dns.rcode.REFUSED:
            return self._fail(now, "refused")
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return self._fail(now, "rcode", dns.rcode.to_text(rcode))
        if response.flags & dns.flags.TC:
            return self._fail(now, "truncated")
        if not isinstance(response, dns.message.QueryMessage):
            return self._fail(now, "malformed", "not a query response")
        try:
            chain = response.resolve_chaining()
        except dns.exception.DNSException as exc:
            return self._fail(now, "malformed", type(exc).__name__)
        server = self._current()
        ttl = self._resolver.clamp(float(chain.minimum_ttl))
        if chain.answer is None or len(chain.answer) == 0:
            kind: Literal["nxdomain", "nodata"] = (
                "nxdomain" if rcode == dns.rcode.NXDOMAIN else "nodata"
            )
            self._record(server, kind, now)
            self._resolver._store(self._key, _Entry((), server, now, now + ttl, kind))
            return self._finish(
                DnsFailure(self.name, self.rdtype, kind, attempts=tuple(self.attempts))
            )
        addresses = tuple(rd.to_text() for rd in chain.answer)
        self._record(server, "answer", now)
        self._resolver._store(self._key, _Entry(addresses, server, now, now + ttl))
        return self._finish(
            Resolved(self.name, self.rdtype, addresses, server, ttl, attempts=tuple(self.attempts))
        )

    def _current(self) -> DnsServer:
        server = self.server
        assert server is not None, "no server is being asked"
        return server

    def _record(self, server: DnsServer, reason: Reason, now: float, detail: str = "") -> None:
        self.attempts.append(Attempt(server, reason, max(0.0, now - self._sent_at), detail))

    def _fail(self, now: float, reason: Reason, detail: str = "") -> Query | Outcome:
        if self.outcome is not None:
            return self.outcome
        self._record(self._current(), reason, now, detail)
        return self._next(now)

    def _next(self, now: float) -> Query | Outcome:
        self._index += 1
        server = self.server
        if server is None:
            return self._exhausted(now)
        rdtype = dns.rdatatype.from_text(self.rdtype)
        self._query = dns.message.make_query(self._qname, rdtype)
        self._sent_at = now
        return Query(server, self._query.to_wire(), self.timeout)

    def _exhausted(self, now: float) -> Outcome:
        self._query = None
        attempts = tuple(self.attempts)
        entry = self._resolver._stale(self._key, now)
        if entry is not None:
            return self._finish(
                Resolved(
                    self.name,
                    self.rdtype,
                    entry.addresses,
                    entry.server,
                    ttl=0.0,
                    attempts=attempts,
                    stale=True,
                    age=now - entry.received,
                )
            )
        return self._finish(DnsFailure(self.name, self.rdtype, "unreachable", attempts=attempts))

    def _finish(self, outcome: Outcome) -> Outcome:
        self.outcome = outcome
        self._query = None
        return outcome


def _same_endpoint(source: tuple[str, int], server: DnsServer) -> bool:
    try:
        host = ipaddress.ip_address(source[0].split("%")[0])
        want = ipaddress.ip_address(server.address)
    except ValueError:
        return False
    if isinstance(host, ipaddress.IPv6Address) and host.ipv4_mapped is not None:
        host = host.ipv4_mapped
    return host == want and source[1] == server.port


class DnsError(Exception):
    """Raised by :func:`resolve` with the :class:`DnsFailure` (``str`` lists each server)."""

    def __init__(self, failure: DnsFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


def udp_socket_on(device: str, remote: tuple[str, int]) -> socket.socket:
    """A non-blocking UDP socket sending over ``device`` only, connected to ``remote``."""
    family = socket.AF_INET6 if ":" in remote[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        sock.setblocking(False)
        sock.connect(remote)
    except OSError:
        sock.close()
        raise
    return sock


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]] | OSError] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.queue.put_nowait(exc)


async def resolve(
    name: str,
    *,
    servers: Sequence[DnsServer],
    timeout: float | None = None,
    now: Callable[[], float] = time.monotonic,
    rdtype: RdType = "A",
    resolver: DnsResolver | None = None,
    device: str | None = None,
) -> Resolved:
    """Resolve ``name`` over UDP asking ``servers`` in order (see :func:`resolver_order`).

    ``resolver`` carries the cache and last good answers between calls (a fresh one,
    so no cache, if omitted); ``timeout`` per server defaults to the resolver's
    (:data:`DEFAULT_TIMEOUT`, the article's "promptly"). ``now`` times the attempts and the cache; the waiting
    itself uses the event loop's clock. Raises :class:`DnsError` when there is no
    address. A fresh socket (random source port) per server, connected so the
    kernel drops datagrams from other hosts and reports ICMP errors. ``device``: the
    interface to send over (SO_BINDTODEVICE, needs CAP_NET_RAW): the station's active link,
    so a lookup does not follow a route over a link that just died.
    """
    resolver = resolver or DnsResolver()
    resolution = resolver.lookup(name, servers, rdtype=rdtype, timeout=timeout)
    loop = asyncio.get_running_loop()
    step = resolution.start(now())
    while isinstance(step, Query):
        step = await _ask(loop, resolution, step, now, device)
    if isinstance(step, DnsFailure):
        raise DnsError(step)
    return step


async def _ask(
    loop: asyncio.AbstractEventLoop,
    resolution: Resolution,
    query: Query,
    now: Callable[[], float],
    device: str | None = None,
) -> Query | Outcome:
    try:
        remote = (query.server.address, query.server.port)
        if device is None:
            transport, inbox = await loop.create_datagram_endpoint(_Inbox, remote_addr=remote)
        else:
            sock = udp_socket_on(device, remote)
            transport, inbox = await loop.create_datagram_endpoint(_Inbox, sock=sock)
    except OSError as exc:
        return resolution.unreachable(now(), exc.strerror or type(exc).__name__)
    try:
        transport.sendto(query.wire)
        until = loop.time() + query.timeout
        while (left := until - loop.time()) > 0:
            try:
                item = await within(inbox.queue.get(), left)
            except TimeoutError:
                break
            if isinstance(item, OSError):
                return resolution.unreachable(now(), item.strerror or type(item).__name__)
            step = resolution.datagram(item[0], item[1], now())
            if step is not None:
                return step
        return resolution.timed_out(now())
    finally:
        with contextlib.suppress(Exception):
            transport.close()
