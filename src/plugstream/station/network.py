"""The station's view of the site network: its NTP-corrected clock and the DNS priority list.

Why (vendor article, "Network Requirements"): "If the PlugStream's real-time clock is
wrong, the charge point cannot authenticate itself with PlugStream Cloud" -- so the
station keeps its own :class:`~plugstream.net.ntp.CorrectedClock`, checks the CSMS's
certificate by it, and does not open an authenticated connection while it is not
synchronized (OCPP 2.0.1 part 2, Security: a station without the correct time "cannot
validate the server certificate ... use NTP"). And the CSMS's host name is looked up with
the article's DNS order (DHCP primary, DHCP secondary, 1.1.1.1, 1.0.0.1) instead of the
operating system's resolver; TLS still checks the certificate for the host *name*.

:class:`StationNetwork` is a plain holder with two decisions the station's connection
loop asks before each attempt (:meth:`StationNetwork.route`): may it connect now, and to
which address. ``StationRuntime.network = None`` (the default) keeps the old behaviour:
system resolver, no time gate.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from plugstream.net.dns import (
    ARTICLE_FALLBACKS,
    DnsError,
    DnsResolver,
    DnsServer,
    Resolved,
    resolve,
)
from plugstream.net.dns import resolver_order as dns_order
from plugstream.net.ntp import MIN_POLL, NTP_HOST, NTP_PORT, CorrectedClock, keep_synchronized

__all__ = ["NetworkNotReady", "StationNetwork", "is_literal"]

log = logging.getLogger("plugstream.station.network")


class NetworkNotReady(Exception):
    """No connection attempt now; ``str()`` is the reason for the log and the operator
    (the clock is not synchronized, or no DNS server gave the CSMS's address)."""


def is_literal(host: str) -> bool:
    """An IP address (or ``localhost``, RFC 6761): nothing to look up."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


@dataclass
class StationNetwork:
    """The clock and DNS settings a station connects with.

    ``clock``: the station's NTP-corrected clock (None: no time gate, the station's own
    clock checks certificates). ``ntp_host``/``ntp_port``: polled in the background while
    the station runs (None: someone else keeps ``clock`` synchronized); the product uses
    :meth:`article`, tests a loopback responder. ``dhcp_dns`` are the lease's DNS servers,
    ``dns_fallbacks`` the article's Cloudflare pair (tests pass ``()``); ``resolver``
    keeps the TTL cache and last good answers between attempts.
    """

    clock: CorrectedClock | None = None
    ntp_host: str | None = None
    ntp_port: int = NTP_PORT
    ntp_poll: float = 1024.0
    ntp_min_retry: float = MIN_POLL
    ntp_timeout: float = 2.0
    dhcp_dns: Sequence[str | DnsServer] = ()
    dns_fallbacks: Sequence[str | DnsServer] = ARTICLE_FALLBACKS
    dns_timeout: float | None = None
    resolver: DnsResolver = field(default_factory=DnsResolver)
    monotonic: Callable[[], float] = time.monotonic
    last_resolved: Resolved | None = field(default=None, init=False)
    """The last DNS answer used (``stale`` when every server failed and an old one served)."""

    @classmethod
    def article(cls, dhcp_dns: Sequence[str | DnsServer] = ()) -> StationNetwork:
        """The product's settings: pool.ntp.org:123 (static, the article) and the DHCP
        lease's DNS servers followed by 1.1.1.1, 1.0.0.1."""
        return cls(clock=CorrectedClock(), ntp_host=NTP_HOST, ntp_port=NTP_PORT, dhcp_dns=dhcp_dns)

    def dns_servers(self) -> list[DnsServer]:
        """The servers in the article's priority order."""
        return dns_order(self.dhcp_dns, self.dns_fallbacks)

    def why_not_ready(self, *, authenticated: bool) -> str | None:
        """Why an ``authenticated`` (TLS or HTTP Basic) connection must wait, or None:
        with a wrong clock the certificate check is meaningless (article, NTP)."""
        if not authenticated or self.clock is None:
            return None
        why = self.clock.why_not_synchronized()
        return None if why is None else f"clock not synchronized: {why}"

    async def resolve(self, host: str) -> str:
        """The address to connect to for ``host``: IP literals as they are, names from the
        DNS servers in priority order. Raises :class:`NetworkNotReady` listing every
        server and why it failed."""
        if is_literal(host):
            return host
        try:
            found = await resolve(
                host,
                servers=self.dns_servers(),
                timeout=self.dns_timeout,
                now=self.monotonic,
                resolver=self.resolver,
            )
        except DnsError as exc:
            raise NetworkNotReady(f"DNS: {exc}") from None
        self.last_resolved = found
        if found.stale:
            tried = "; ".join(str(a) for a in found.attempts)
            log.warning(
                "DNS: every server failed (%s); using the last good address of %s, %.0f s old",
                tried,
                host,
                found.age,
            )
        return found.addresses[0]

    async def route(self, url: str, *, authenticated: bool) -> dict[str, Any]:
        """Extra ``websockets.connect`` arguments for ``url``, or :class:`NetworkNotReady`.

        ``host=`` the resolved address: only the TCP destination changes, the URL's host
        name stays the TLS server name and the ``Host`` header (websockets' ``connect``
        forwards it to ``loop.create_connection``). ``proxy=None``: the station's own
        stack connects directly, outgoing only (the article)."""
        why = self.why_not_ready(authenticated=authenticated)
        if why is not None:
            raise NetworkNotReady(why)
        host = urlsplit(url).hostname or ""
        if is_literal(host):
            return {}
        return {"host": await self.resolve(host), "proxy": None}

    async def keep_synchronized(self) -> None:
        """Poll the NTP server into ``clock`` until cancelled; returns at once when there
        is no clock or no server to poll."""
        if self.clock is None or self.ntp_host is None:
            return
        await keep_synchronized(
            self.clock,
            self.ntp_host,
            self.ntp_port,
            poll=self.ntp_poll,
            timeout=self.ntp_timeout,
            min_retry=self.ntp_min_retry,
        )
