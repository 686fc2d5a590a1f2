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

Links (article, Table 1: Ethernet, WiFi 2.4 GHz, optional LTE): with ``links`` set
(link type -> interface), :meth:`StationNetwork.watch_links` runs the
:class:`~plugstream.net.links.LinkManager` -- carrier from ``/sys/class/net`` every
second, a TCP connect to the CSMS bound to each interface (``SO_BINDTODEVICE``) every few
seconds -- and :meth:`StationNetwork.route` hands ``websockets.connect`` a socket already
connected over the active link's interface, so the kernel's routing table (which keeps a
dead cable's route) cannot send the OCPP connection elsewhere. Listeners
(:attr:`StationNetwork.link_listeners`) learn of each switch: the station closes its
connection at once and reconnects over the new link. ``network.json`` in
``status_dir`` shows it all to operators and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from plugstream.net.accounting import LINKS as LINK_TYPES
from plugstream.net.accounting import Link
from plugstream.net.dhcp import Lease, keep_lease, read_system_lease
from plugstream.net.dns import (
    ARTICLE_FALLBACKS,
    DnsError,
    DnsResolver,
    DnsServer,
    Resolved,
    resolve,
)
from plugstream.net.dns import resolver_order as dns_order
from plugstream.net.links import (
    Action,
    LinkManager,
    LinkPolicy,
    ReportLinkDown,
    UseLink,
    WifiConfig,
    monitor,
    policy_for,
)
from plugstream.net.ntp import MIN_POLL, NTP_HOST, NTP_PORT, CorrectedClock, keep_synchronized
from plugstream.net.timeouts import within

__all__ = [
    "STATION_NTP_POLL",
    "STATUS_FILE",
    "NetworkNotReady",
    "StationNetwork",
    "carrier_of",
    "default_port",
    "is_literal",
    "parse_links",
]

STATUS_FILE: Final = "network.json"
"""The status file in the station's data dir (:meth:`StationNetwork.status`)."""

log = logging.getLogger("plugstream.station.network")


SYSTEM_LEASE_POLL = 30.0
"""Seconds between reads of the system DHCP client's lease (it renews on its own)."""


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


def parse_links(specs: Sequence[str]) -> dict[Link, str]:
    """``["eth0=ethernet", "lte0=lte"]`` (the command line's ``--link``) as
    ``{"ethernet": "eth0", "lte": "lte0"}``; ValueError with one line when a spec is bad."""
    links: dict[Link, str] = {}
    for spec in specs:
        iface, sep, kind = spec.partition("=")
        iface, kind = iface.strip(), kind.strip().lower()
        if not sep or not iface:
            raise ValueError(f"--link takes IFACE=TYPE (e.g. eth0=ethernet), not {spec!r}")
        link = next((t for t in LINK_TYPES if t == kind), None)
        if link is None:
            raise ValueError(f"link type {kind!r} of {spec!r}: use ethernet, wifi or lte")
        if link in links:
            raise ValueError(f"two {link} links ({links[link]}, {iface}): give one of each type")
        links[link] = iface
    _check_interfaces(links)
    if len(set(links.values())) != len(links):
        raise ValueError(f"one link type per interface, got {' '.join(specs)}")
    return links


def _check_interfaces(links: Mapping[Link, str]) -> None:
    """Known link types and interface names (one interface serving two link types is
    allowed here -- a loopback test does it -- but not on the command line)."""
    for link, iface in links.items():
        if link not in LINK_TYPES:
            raise ValueError(f"unknown link type {link!r}: use ethernet, wifi or lte")
        if not 1 <= len(iface.encode()) <= 15 or "/" in iface or iface in (".", ".."):
            raise ValueError(f"not an interface name: {iface!r} (Linux: 1 to 15 bytes, no '/')")


def carrier_of(iface: str, sys_net: Path = Path("/sys/class/net")) -> tuple[bool, str]:
    """Whether ``iface`` has a carrier (cable in, WiFi associated, LTE attached), and a
    word for the status: the kernel's ``carrier`` (unreadable while the interface is
    administratively down) and ``operstate``."""
    base = sys_net / iface
    try:
        operstate = (base / "operstate").read_text().strip()
    except OSError:
        return False, "no such interface"
    try:
        carrier = (base / "carrier").read_text().strip() == "1"
    except OSError:  # EINVAL while the interface is down
        carrier = False
    up = carrier and operstate not in ("down", "lowerlayerdown", "notpresent", "dormant")
    return up, operstate if up or operstate != "up" else "no carrier"


def default_port(scheme: str) -> int:
    """The TCP port of a URL without one: 443 for wss:// and https:// (the setup
    service), else 80."""
    return 443 if scheme in ("wss", "https") else 80


@contextlib.contextmanager
def _once(running: set[str], name: str) -> Iterator[bool]:
    """Whether this call is the one running loop ``name``: a second call while it runs gets
    False (and returns at once), so two owners -- ``run_with_setup`` and the station it
    starts -- never poll NTP or hold a DHCP lease twice."""
    if name in running:
        yield False
        return
    running.add(name)
    try:
        yield True
    finally:
        running.discard(name)


def _bound_socket(family: int, iface: str) -> socket.socket:
    """A non-blocking TCP socket whose packets leave by ``iface`` only."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    except OSError:
        sock.close()
        raise
    return sock


async def connect_over(iface: str, address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to ``address:port`` leaving by ``iface`` (SO_BINDTODEVICE, needs
    CAP_NET_RAW), within ``timeout`` s; the caller owns the socket."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = _bound_socket(family, iface)
    try:
        await within(asyncio.get_running_loop().sock_connect(sock, (address, port)), timeout)
    except BaseException:
        sock.close()
        raise
    return sock


STATION_NTP_POLL: Final = 2048.0
"""Seconds between the station's NTP polls while all is well: systemd-timesyncd's
PollIntervalMaxSec default. Each poll is 152 bytes of IP on the uplink (a 48-byte SNTP
message each way); at 1,024 s they were 12.8 KB of an idle day and 1 KB of a 2-hour session.
A crystal's 20-50 ppm drift over 2,048 s is 0.04-0.1 s: within what a CSMS checks a
station's clock to (the cloud flags a second or more)."""


@dataclass
class StationNetwork:
    """The clock and DNS settings a station connects with.

    ``clock``: the station's NTP-corrected clock (None: no time gate, the station's own
    clock checks certificates). ``ntp_host``/``ntp_port``: polled in the background while
    the station runs (None: someone else keeps ``clock`` synchronized); the product uses
    :meth:`article`, tests a loopback responder. ``dhcp_dns`` are the lease's DNS servers,
    ``dns_fallbacks`` the article's Cloudflare pair (tests pass ``()``); ``resolver``
    keeps the TTL cache and last good answers between attempts.

    ``links``: link type -> interface (empty: the operating system's routing, no link
    management). Carrier is read every ``carrier_interval`` s, the health probe (a TCP
    connect to the CSMS over that interface, ``link_timeout`` s at most) runs every
    ``link_check_interval`` s; a metered link (LTE) that is not carrying the OCPP
    connection is probed at most every ``metered_probe_interval`` s (each probe costs
    ~200 bytes: every 5 s that would be 3.4 MB a day, the article's whole budget).
    ``link_hold_down``: how long a better link must stay healthy before failback.
    ``status_dir``: where ``network.json`` is written (None: nowhere).
    ``dhcp_dns`` is the hook for a DHCP lease: set it (primary first) and the next
    resolution uses it.
    """

    clock: CorrectedClock | None = None
    ntp_host: str | None = None
    ntp_port: int = NTP_PORT
    ntp_poll: float = STATION_NTP_POLL
    ntp_min_retry: float = MIN_POLL
    ntp_timeout: float = 2.0
    dhcp_dns: Sequence[str | DnsServer] = ()
    dns_fallbacks: Sequence[str | DnsServer] = ARTICLE_FALLBACKS
    dns_timeout: float | None = None
    resolver: DnsResolver = field(default_factory=DnsResolver)
    monotonic: Callable[[], float] = time.monotonic
    links: Mapping[Link, str] = field(default_factory=dict)
    wifi: WifiConfig | None = None
    carrier_interval: float = 1.0
    link_check_interval: float = 5.0
    link_timeout: float = 2.0
    link_failures_to_down: int = 2
    link_hold_down: float = 60.0
    metered_probe_interval: float = 60.0
    status_dir: Path | None = None
    sys_net: Path = Path("/sys/class/net")
    link_watch: bool = True
    dhcp_interface: str | None = None
    """Take the address and DNS servers from DHCP on this interface (the station's own
    client, :func:`plugstream.net.dhcp.keep_lease`); None: the system configured it."""
    dhcp_system: bool = False
    """The system's DHCP client holds the lease: read it (:func:`read_system_lease`) instead
    of running ours -- a real device whose OS does DHCP."""
    lease_root: Path = Path("/")
    """Where the system's lease files are (tests: a directory of samples)."""
    dns_from_dhcp: bool = True
    """The lease's DNS servers become ``dhcp_dns`` (False: ``--dns`` overrides them)."""
    """False: the station runs no carrier poll or probes; someone else feeds
    :attr:`manager` and passes its actions to :meth:`apply` (tests, a supervisor)."""
    _new_lease: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _was_synchronized: bool = field(default=False, init=False)
    lease: Lease | None = field(default=None, init=False)
    """The DHCP lease held (None: none yet, lost, or no ``dhcp_interface``)."""
    last_resolved: Resolved | None = field(default=None, init=False)
    """The last DNS answer used (``stale`` when every server failed and an old one served)."""
    manager: LinkManager | None = field(default=None, init=False)
    """The link manager (None without ``links``)."""
    link_listeners: list[Callable[[Link, str], None]] = field(default_factory=list, init=False)
    """Called with (link, reason) whenever the active link changes."""
    offline_reason: str | None = field(default=None, init=False)
    """Set by the station: why it is not connected (shown in ``network.json``)."""
    data_saving: dict[str, Any] | None = field(default=None, init=False)
    """Set by the station: the intervals it uses while the link saves data."""
    changed: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    """Set on every switch of link: wakes a station waiting to reconnect."""
    _target: tuple[str, int] | None = field(default=None, init=False)
    _probed: dict[str, tuple[float, bool]] = field(default_factory=dict, init=False)
    _carrying: Callable[[], Link | None] | None = field(default=None, init=False)
    _status: str = field(default="", init=False)
    _running: set[str] = field(default_factory=set, init=False)
    """The background loops running now (:meth:`keep_synchronized`, :meth:`keep_dhcp`)."""

    def __post_init__(self) -> None:
        _check_interfaces(self.links)
        if "wifi" in self.links and self.wifi is not None:
            WifiConfig(self.wifi.ssid, self.wifi.passphrase, self.wifi.channel, self.wifi.band)
        if self.links:
            self.manager = LinkManager(
                self.links,
                self.monotonic(),
                failures_to_down=self.link_failures_to_down,
                check_interval=self.link_check_interval,
                hold_down=self.link_hold_down,
            )

    @property
    def active_link(self) -> Link | None:
        """The link in use (None: no link management, or none up yet)."""
        return None if self.manager is None else self.manager.active

    @property
    def policy(self) -> LinkPolicy | None:
        """The active link's data policy (None without link management)."""
        if self.manager is None or self.manager.active is None:
            return None
        return self.manager.policy

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

    async def resolve(self, host: str, *, device: str | None = None) -> str:
        """The address to connect to for ``host``: IP literals as they are, names from the
        DNS servers in priority order, asked over ``device`` (default :meth:`device`).
        Raises :class:`NetworkNotReady` listing every server and why it failed."""
        if is_literal(host):
            return host
        try:
            found = await resolve(
                host,
                servers=self.dns_servers(),
                timeout=self.dns_timeout,
                now=self.monotonic,
                resolver=self.resolver,
                device=device or self.device(),
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
        on_dhcp_link = self.device() in (None, self.dhcp_interface)  # not while on LTE
        if self.dhcp_interface is not None and self.lease is None and on_dhcp_link:
            raise NetworkNotReady(f"no DHCP lease on {self.dhcp_interface} yet")
        parts = urlsplit(url)
        host = parts.hostname or ""
        if self.manager is None:
            if is_literal(host):
                return {}
            return {"host": await self.resolve(host), "proxy": None}
        link = self.manager.active
        if link is None:
            raise NetworkNotReady(f"no link is up yet ({self._links_summary()})")
        address = host if is_literal(host) else await self.resolve(host)
        if address == "localhost":
            address = "127.0.0.1"
        port = parts.port or default_port(parts.scheme)
        iface = self.links[link]
        try:
            sock = await connect_over(iface, address, port, self.link_timeout)
        except (OSError, TimeoutError) as exc:
            why = str(exc) or f"no answer within {self.link_timeout:g} s"
            raise NetworkNotReady(f"connection over {link} ({iface}) failed: {why}") from None
        return {"sock": sock, "proxy": None}

    # -- links ---------------------------------------------------------------------

    def _links_summary(self) -> str:
        if self.manager is None:
            return "no links managed"
        return ", ".join(
            f"{s.link} {self.links[s.link]}: {s.health}" for s in self.manager.state().links
        )

    async def _target_address(self, device: str | None = None) -> tuple[str, int] | None:
        """The CSMS's address and port, looked up over ``device`` (the link being probed:
        before any link is up, the OS's routes may still point at a dead cable)."""
        if self._target is None:
            return None
        host, port = self._target
        if is_literal(host):
            return ("127.0.0.1" if host == "localhost" else host), port
        if self.last_resolved is not None and self.last_resolved.addresses:
            return self.last_resolved.addresses[0], port
        try:
            return await self.resolve(host, device=device), port
        except NetworkNotReady:
            return None

    def _probe(self, link: Link) -> Callable[[], Any]:
        async def probe() -> bool:
            assert self.manager is not None
            carrying = self._carrying() if self._carrying is not None else None
            metered = not policy_for(link).optional_uploads
            if metered and carrying == link:
                return True  # the open OCPP connection (and its pings) is the check
            now = self.monotonic()
            last = self._probed.get(link)
            if metered and last is not None and now - last[0] < self.metered_probe_interval:
                return last[1]
            target = await self._target_address(self.links[link])
            if target is None:
                raise NetworkNotReady("the CSMS's address is not known yet")
            try:
                sock = await connect_over(self.links[link], target[0], target[1], self.link_timeout)
            except BaseException:
                self._probed[link] = (now, False)  # a failed probe costs bytes too
                raise
            sock.close()
            self._probed[link] = (now, True)
            return True

        return probe

    def apply(self, action: Action) -> None:
        """Act on one of the manager's actions: log it, tell the listeners of a switch,
        update ``network.json``. :meth:`watch_links` calls it; with ``link_watch`` off,
        whoever feeds the manager does."""
        if isinstance(action, UseLink):
            log.warning(
                "link: using %s (%s): %s", action.link, self.links[action.link], action.reason
            )
            self.changed.set()
            for listener in list(self.link_listeners):
                try:
                    listener(action.link, action.reason)
                except Exception:
                    log.exception("link: a listener failed on %s", action)
        elif isinstance(action, ReportLinkDown):
            log.warning(
                "link: %s (%s) down: %s", action.link, self.links[action.link], action.reason
            )
        self.write_status()

    async def _watch_carrier(self) -> None:
        assert self.manager is not None
        carriers: dict[Link, bool] = {}
        while True:
            now = self.monotonic()
            for link, iface in self.links.items():
                up, _ = carrier_of(iface, self.sys_net)
                if carriers.get(link) != up:
                    self._probed.pop(link, None)  # a new carrier: probe afresh, not from memory
                    carriers[link] = up
                for action in self.manager.carrier(link, up, now):
                    self.apply(action)
            self.write_status()
            await asyncio.sleep(self.carrier_interval)

    async def watch_links(self, url: str, carrying: Callable[[], Link | None]) -> None:
        """Run the link manager until cancelled (returns at once without ``links`` or
        with ``link_watch`` off):
        ``url`` is the CSMS (its address:port is what the health probe connects to),
        ``carrying()`` the link the OCPP connection is open on (None: none)."""
        if self.manager is None or not self.link_watch:
            return
        parts = urlsplit(url)
        self._target = (parts.hostname or "", parts.port or default_port(parts.scheme))
        self._carrying = carrying
        probes = {link: self._probe(link) for link in self.links}
        tasks = [
            asyncio.get_running_loop().create_task(self._watch_carrier()),
            asyncio.get_running_loop().create_task(
                monitor(
                    self.manager,
                    probes,
                    self.apply,
                    interval=self.link_check_interval,
                    timeout=self.link_timeout + 1.0,
                    clock=self.monotonic,
                )
            ),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- status ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What ``network.json`` holds: links, clock, last DNS answer, why offline."""
        links: dict[str, Any] = {}
        if self.manager is not None:
            for s in self.manager.state().links:
                links[s.link] = {
                    "interface": self.links[s.link],
                    "health": s.health,
                    "carrier": s.carrier,
                    "failures": s.consecutive_failures,
                    "detail": s.detail,
                }
        clock: dict[str, Any] | None = None
        if self.clock is not None:
            why = self.clock.why_not_synchronized()
            clock = {
                "synchronized": why is None,
                "why_not": why,
                "offset_s": round(self.clock.offset, 6),
                "server": self.clock.server,
            }
        dns: dict[str, Any] | None = None
        found = self.last_resolved
        if found is not None:
            dns = {
                "name": found.name,
                "addresses": list(found.addresses),
                "server": str(found.server),
                "stale": found.stale,
                "attempts": [
                    {
                        "server": str(a.server),
                        "outcome": a.reason,
                        "elapsed_ms": round(a.elapsed * 1000),
                    }
                    for a in found.attempts
                ],
            }
        return {
            "active_link": self.active_link,
            "links": links,
            "clock": clock,
            "dns": dns,
            "offline_reason": self.offline_reason,
            "data_saving": self.data_saving,
            "dhcp": None if self.lease is None else self.lease.to_dict(),
        }

    def write_status(self) -> None:
        """Write ``network.json`` atomically when it changed (nothing without ``status_dir``)."""
        if self.status_dir is None:
            return
        text = json.dumps(self.status(), indent=1, sort_keys=True)
        if text == self._status:
            return
        path = self.status_dir / STATUS_FILE
        tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("%s not written: %s", path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self._status = text

    def device(self) -> str | None:
        """The interface to send over: the active link's; before one is chosen, the best
        link with a carrier (a dead cable's routes may linger); None: the OS's routing."""
        link = self.active_link
        if link is None and self.manager is not None:
            carrying = [s.link for s in self.manager.state().links if s.carrier]
            link = carrying[0] if carrying else None
        return None if link is None else self.links[link]

    async def _resolve_address(self, host: str) -> str:
        return await self.resolve(host)

    async def keep_synchronized(self) -> None:
        """Poll the NTP server into ``clock`` until cancelled; returns at once when there
        is no clock or no server to poll. Its name is looked up with the station's DNS
        priority list and the query goes over the active link, like every other packet.
        Idempotent: while one call runs, another returns at once (the first keeps polling)."""
        if self.clock is None or self.ntp_host is None:
            return
        with _once(self._running, "ntp") as first:
            if not first:
                return
            await keep_synchronized(
                self.clock,
                self.ntp_host,
                self.ntp_port,
                poll=self.ntp_poll,
                timeout=self.ntp_timeout,
                min_retry=self.ntp_min_retry,
                resolve=self._resolve_address,
                device=self.device,
                sleep=self._ntp_sleep,
            )

    async def _ntp_sleep(self, seconds: float) -> None:
        """NTP's wait between tries, cut short by a new DHCP lease: a station that just
        got its address (and DNS servers) sets its clock at once, not a retry later.
        Called after every query, so it is also where the outcome is published: the
        status file, and ``changed`` when the clock has just become trustworthy (a
        connection loop waiting out its back-off behind the clock gate goes at once)."""
        clock = self.clock
        synchronized = clock is not None and clock.synchronized
        if synchronized and not self._was_synchronized:
            self.changed.set()
        self._was_synchronized = synchronized
        self.write_status()
        self._new_lease.clear()
        with contextlib.suppress(TimeoutError):
            await within(self._new_lease.wait(), seconds)

    def _on_lease(self, lease: Lease) -> None:
        if self.lease is None or self.lease.address != lease.address:
            log.warning(
                "DHCP on %s: %s, router %s, DNS %s",
                self.dhcp_interface,
                lease.interface,
                ", ".join(lease.routers) or "none",
                ", ".join(lease.dns_servers) or "none (the fallbacks only)",
            )
        if self.lease is None or self.lease.address != lease.address:
            self._new_lease.set()
        self.lease = lease
        if self.dns_from_dhcp:
            self.dhcp_dns = lease.dns_servers
        self.changed.set()  # a connection attempt waiting for the lease goes now
        self.write_status()

    def _on_lease_lost(self, reason: str) -> None:
        log.warning("DHCP on %s: lease lost: %s", self.dhcp_interface, reason)
        self.lease = None
        self.write_status()

    async def keep_dhcp(self) -> None:
        """Obtain and keep the DHCP lease of ``dhcp_interface`` until cancelled (returns at
        once without one). The article: the address and the DNS servers come from DHCP.
        Idempotent: while one call runs, another returns at once (one client per lease)."""
        if self.dhcp_interface is None:
            return
        with _once(self._running, "dhcp") as first:
            if not first:
                return
            if self.dhcp_system:  # the OS renews; follow its lease file
                while True:
                    lease = read_system_lease(self.dhcp_interface, root=self.lease_root)
                    if lease is not None and lease != self.lease:
                        self._on_lease(lease)
                    elif lease is None and self.lease is not None:
                        self._on_lease_lost("the system's lease file is gone")
                    await asyncio.sleep(SYSTEM_LEASE_POLL)
            await keep_lease(
                self.dhcp_interface,
                on_lease=self._on_lease,
                on_lost=self._on_lease_lost,
                retry_after=10.0,
            )
