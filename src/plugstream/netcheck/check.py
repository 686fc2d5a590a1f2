"""``plugstream netcheck``: is this site's network ready for PlugStream stations?

Run from a laptop on the stations' network, it asks what a station would ask, in the vendor
article's order -- DNS servers from DHCP then 1.1.1.1 / 1.0.0.1 (UDP 53), NTP at pool.ntp.org
(UDP 123), TCP 443 and a verified TLS handshake to each cloud name -- and says for every failure
what to open on the firewall, in the words of the article's Table 2 (:mod:`.firewall`).

Layout: the verdicts (:func:`dns_row`, :func:`ntp_row`, :func:`tcp_row`, :func:`tls_row`, ...)
are plain functions from an outcome to a :class:`Row`; :func:`run` is the thin asyncio shell that
produces the outcomes. Every host and port is a parameter (:class:`NetcheckConfig`): the defaults
are the article's, tests and the lab point them at loopback.

Severity: ``fail`` is something a station would trip over (exit 1), ``warn`` is worth knowing but
a station still works (exit 0): no DNS servers from DHCP (the station uses the fallbacks only), or
this laptop's clock more than :data:`MAX_OFFSET` off (a station corrects its own by NTP; only
this laptop's TLS check reads it). A failing DNS server fails its rows even when a later server
answers: the station still connects, but waits out each silent server's timeout on every lookup.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Final, Literal

from cryptography import x509

from plugstream.net.dhcp import DhcpError, Lease, discover, read_system_lease
from plugstream.net.dns import (
    ARTICLE_FALLBACKS,
    DEFAULT_TIMEOUT,
    DNS_PORT,
    DnsError,
    DnsResolver,
    DnsServer,
    Resolved,
    resolve,
    resolver_order,
)
from plugstream.net.ntp import NTP_HOST, NTP_PORT, NTPError, Sample, query
from plugstream.netcheck.firewall import (
    DHCP_DESTINATION,
    DHCP_DNS_DESTINATION,
    OCPP_HOST,
    SETUP_HOST,
    TABLE_2,
)
from plugstream.pki.tls import ServerRejected, peer_chain, station_context, verify_server

__all__ = [
    "CLOUD_HOSTS",
    "CLOUD_PORT",
    "INTERCEPTED",
    "MAX_OFFSET",
    "DhcpOutcome",
    "NetcheckConfig",
    "Report",
    "Row",
    "Status",
    "dhcp_lease_row",
    "dhcp_row",
    "dns_row",
    "load_roots",
    "ntp_row",
    "run",
    "system_dns_servers",
    "tcp_row",
    "tls_row",
]

Status = Literal["pass", "warn", "fail"]

CLOUD_HOSTS: Final[tuple[str, ...]] = (OCPP_HOST, SETUP_HOST)
"""The article's HTTPS domains."""
CLOUD_PORT: Final = 443
MAX_OFFSET: Final = 1.0
"""Seconds this laptop's clock may be off before the NTP row warns (not fails: see module)."""
INTERCEPTED: Final = "TLS interception or captive portal: the certificate chain is not PlugStream's"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the report, in the article's Table 2 columns plus the verdict."""

    check: str  # dhcp | dhcp-dns | dns | ntp | tcp | tls
    port: int
    type: str  # UDP | TCP | TLS
    target: str  # the "Domain / IP" column: what was asked
    status: Status
    time: float | None  # seconds measured, None when nothing was sent
    detail: str
    fix: str = ""  # what to change on the firewall; empty for a pass


@dataclass(frozen=True, slots=True)
class Report:
    """All rows, and notes that read across rows (e.g. DNS works only via a fallback)."""

    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """No row failed: the exit code is 0 exactly then (warnings do not fail)."""
        return all(r.status != "fail" for r in self.rows)

    def to_json(self) -> str:
        rows = [asdict(r) for r in self.rows]
        return json.dumps(
            {"result": "pass" if self.ok else "fail", "notes": list(self.notes), "rows": rows}
        )


@dataclass(frozen=True, slots=True)
class NetcheckConfig:
    """What to check; every default is the article's (tests override each one)."""

    dhcp_dns: tuple[str, ...] = ()
    fallback_dns: tuple[str, ...] = ARTICLE_FALLBACKS
    dns_port: int = DNS_PORT
    ntp_host: str = NTP_HOST
    ntp_port: int = NTP_PORT
    cloud_hosts: tuple[str, ...] = CLOUD_HOSTS
    cloud_port: int = CLOUD_PORT
    connect_to: Mapping[str, str] = field(default_factory=dict)
    roots: tuple[x509.Certificate, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    interface: str | None = None
    """This laptop's interface on the stations' network: ask its DHCP server (DISCOVER, as
    a station would; as root) or, failing that, read this laptop's own lease. None: no
    DHCP row (``dhcp_dns`` came from ``--dns`` or resolv.conf)."""
    dhcp_timeout: float = 6.0
    """DHCP retransmits after 4 s (RFC 2131), so one lost packet still fits."""


# --- the fixes: Table 2's words -----------------------------------------------------------------


def _open(protocol: str, port: int, destination: str) -> str:
    """The firewall fix for one destination: Table 2's port when the name is in Table 2."""
    for rule in TABLE_2:
        if rule.destination == destination and rule.protocol == protocol:
            port = rule.port
    return f"open {protocol} {port} to {destination}"


def system_dns_servers(path: Path | str = "/etc/resolv.conf") -> tuple[str, ...]:
    """The nameservers of resolv.conf: what DHCP gave this laptop, standing in for the station's."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    servers: list[str] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                servers.append(str(ipaddress.ip_address(parts[1].split("%")[0])))
            except ValueError:
                continue
    return tuple(servers)


def load_roots(pem: Path | str | None = None) -> tuple[x509.Certificate, ...]:
    """Trust anchors: the certificates in ``pem``, else the system trust store's CA file."""
    if pem is None:
        paths = ssl.get_default_verify_paths()
        pem = paths.cafile or paths.openssl_cafile
    try:
        return tuple(x509.load_pem_x509_certificates(Path(pem).read_bytes()))
    except (OSError, ValueError):
        if pem is not None and Path(pem).is_dir():
            return ()
        raise


# --- verdicts (sans-I/O) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DhcpOutcome:
    """What the DHCP check found: an offer (or this laptop's lease) and where it came from."""

    interface: str
    lease: Lease | None
    source: str  # "DHCPOFFER" | "lease of <client>" | ""
    error: str | None = None


def dhcp_lease_row(outcome: DhcpOutcome, elapsed: float | None) -> Row:
    """Check 0: DHCP gives an address and DNS servers (the article: "DHCP is used on the local
    network to assign an IP address to PlugStream and give the IP address to the DNS server")."""
    target = f"{DHCP_DESTINATION} on {outcome.interface}"
    lease = outcome.lease
    if lease is None:
        return Row(
            "dhcp", 67, "UDP", target, "fail", elapsed,
            outcome.error or "no DHCP server answered: a station gets no address",
            "run a DHCP server on the stations' network (UDP 67/68 stay on the LAN)",
        )  # fmt: skip
    router = ", ".join(lease.routers) or "none"
    dns = ", ".join(lease.dns_servers) or "none"
    detail = f"{outcome.source}: {lease.interface}, router {router}, DNS {dns}"
    if not lease.routers:
        return Row(
            "dhcp", 67, "UDP", target, "fail", elapsed, detail,
            "hand out a router (DHCP option 3): stations reach the cloud only through it",
        )  # fmt: skip
    return Row("dhcp", 67, "UDP", target, "pass", elapsed, detail)


def dhcp_row(servers: Sequence[str]) -> Row:
    """Check 1: DNS servers from DHCP. None is a warning: stations then ask 1.1.1.1 and 1.0.0.1
    only, so UDP 53 to those must be open (the article: "if the DHCP server does not specify a
    DNS server ... uses ... Cloudflare DNS servers")."""
    if servers:
        return Row("dhcp-dns", 53, "UDP", DHCP_DNS_DESTINATION, "pass", None, ", ".join(servers))
    return Row(
        "dhcp-dns",
        53,
        "UDP",
        DHCP_DNS_DESTINATION,
        "warn",
        None,
        "none from DHCP: the station will use only the fallbacks (1.1.1.1, 1.0.0.1)",
        "hand out a DNS server by DHCP (option 6), or keep UDP 53 to 1.1.1.1 and 1.0.0.1 open",
    )


def dns_row(server: DnsServer, name: str, outcome: Resolved | DnsError, elapsed: float) -> Row:
    """Check 2: one server asked for one cloud name."""
    target = f"{server} -> {name}"
    if isinstance(outcome, Resolved):
        detail = f"{', '.join(outcome.addresses)}"
        return Row("dns", server.port, "UDP", target, "pass", elapsed, detail)
    failure = outcome.failure
    attempt = failure.attempts[-1] if failure.attempts else None
    reason = attempt.reason if attempt is not None else "unreachable"
    detail = str(attempt) if attempt is not None else str(failure)
    if failure.kind in ("nxdomain", "nodata"):
        fix = f"the DNS server {server.address} must resolve {name} (DNS filter or split horizon?)"
    elif server.source == "fallback":
        fix = _open("UDP", server.port, server.address)
    elif reason in ("servfail", "refused"):
        fix = f"let {server.address} resolve public names, or hand out another DNS server by DHCP"
    else:
        fix = (
            f"open UDP {DNS_PORT} to {server.address} (DNS server from DHCP), or fix DHCP option 6"
        )
    return Row("dns", server.port, "UDP", target, "fail", elapsed, detail, fix)


def ntp_row(
    host: str,
    port: int,
    outcome: Sample | NTPError,
    elapsed: float,
    *,
    max_offset: float = MAX_OFFSET,
) -> Row:
    """Check 3: NTP answers on UDP 123. No answer fails (a station without time cannot
    authenticate: the article's NTP section); an offset above ``max_offset`` warns."""
    target = host if port == NTP_PORT else f"{host}:{port}"
    if isinstance(outcome, NTPError):
        return Row(
            "ntp", port, "UDP", target, "fail", elapsed, f"no time: {outcome}",
            _open("UDP", NTP_PORT, NTP_HOST),
        )  # fmt: skip
    offset = f"clock offset {outcome.offset:+.3f} s, stratum {outcome.stratum}"
    if abs(outcome.offset) > max_offset:
        return Row(
            "ntp", port, "UDP", target, "warn", elapsed,
            f"{offset}: this laptop's clock is off (stations correct theirs by NTP)",
            "set this laptop's clock: the TLS checks below read it",
        )  # fmt: skip
    return Row("ntp", port, "UDP", target, "pass", elapsed, offset)


def tcp_row(name: str, address: str | None, port: int, error: str | None, elapsed: float) -> Row:
    """Check 4: a TCP connection to a cloud name."""
    target = name if address is None else f"{name} ({address})"
    if address is None:
        return Row(
            "tcp", port, "TCP", name, "fail", None, "not resolved by any DNS server",
            "fix DNS first (rows above)",
        )  # fmt: skip
    if error is not None:
        return Row("tcp", port, "TCP", target, "fail", elapsed, error, _open("TCP", port, name))
    return Row("tcp", port, "TCP", target, "pass", elapsed, "connected")


def tls_row(
    name: str,
    address: str | None,
    port: int,
    outcome: x509.Certificate | ServerRejected | str | None,
    elapsed: float,
) -> Row:
    """Check 5: the handshake a station makes, its chain checked against the station's roots.

    A chain from another CA means something on the path answers in PlugStream's place: a TLS
    inspecting firewall or a captive portal (1.6 Security Whitepaper 2.4, A00.FR.308..310: the
    station must reject it, so it never connects)."""
    target = name if address is None else f"{name} ({address})"
    if address is None or outcome is None:
        return Row("tls", port, "TLS", name, "fail", None, "no TCP connection", "see the TCP row")
    if isinstance(outcome, x509.Certificate):
        issuer = outcome.issuer.rfc4514_string()
        return Row("tls", port, "TLS", target, "pass", elapsed, f"verified, issued by {issuer}")
    if isinstance(outcome, str):
        return Row(
            "tls", port, "TLS", target, "fail", elapsed, f"handshake failed: {outcome}",
            f"let TLS to {name} through unchanged ({_open('TCP', port, name)})",
        )  # fmt: skip
    reason = outcome.reason
    if "does not trust" in reason or "not for" in reason:
        return Row(
            "tls", port, "TLS", target, "fail", elapsed, f"{INTERCEPTED} ({reason})",
            f"exempt {name} from TLS inspection and from the captive portal",
        )  # fmt: skip
    return Row(
        "tls", port, "TLS", target, "fail", elapsed, reason,
        "check this laptop's clock and the --ca file" if "clock" in reason else "",
    )  # fmt: skip


def _notes(rows: Sequence[Row], order: Sequence[DnsServer], names: Sequence[str]) -> list[str]:
    """What the DNS rows mean together: a station that works only thanks to a later server."""
    notes: list[str] = []
    for name in names:
        dns = [r for r in rows if r.check == "dns" and r.target.endswith(f"-> {name}")]
        first_ok = next((i for i, r in enumerate(dns) if r.status == "pass"), None)
        if first_ok is None:
            notes.append(f"{name}: no DNS server answered: a station cannot find the cloud")
        elif first_ok > 0:
            notes.append(
                f"{name}: the station still resolves it via {order[first_ok]}, but only after "
                f"{first_ok} failing server(s) each time: fix the failing rows"
            )
    return notes


# --- the asyncio shell --------------------------------------------------------------------------


async def _dns(server: DnsServer, name: str, timeout: float) -> tuple[Row, tuple[str, ...]]:
    """One server, one name, a fresh resolver (no cache: each server must answer itself)."""
    started = time.monotonic()
    try:
        outcome: Resolved | DnsError = await resolve(
            name, servers=[server], timeout=timeout, resolver=DnsResolver(timeout=timeout)
        )
    except DnsError as exc:
        outcome = exc
    addresses = outcome.addresses if isinstance(outcome, Resolved) else ()
    return dns_row(server, name, outcome, time.monotonic() - started), addresses


async def _ntp(host: str, port: int, timeout: float) -> Row:
    started = time.monotonic()
    try:
        outcome: Sample | NTPError = await query(host, port, timeout=timeout)
    except NTPError as exc:
        outcome = exc
    return ntp_row(host, port, outcome, time.monotonic() - started)


async def _connect(name: str, address: str | None, config: NetcheckConfig) -> tuple[Row, Row]:
    port = config.cloud_port
    if address is None:
        return tcp_row(name, None, port, None, 0.0), tls_row(name, None, port, None, 0.0)
    started = time.monotonic()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), config.timeout)
    except TimeoutError:
        error = f"no answer in {config.timeout:g} s (dropped by a firewall?)"
        row = tcp_row(name, address, port, error, time.monotonic() - started)
        return row, tls_row(name, address, port, None, 0.0)
    except OSError as exc:
        # asyncio's own text ("Connect call failed") hides the errno's: ECONNREFUSED says
        # something actively rejected the connection, a firewall's REJECT or no listener
        error = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
        row = tcp_row(name, address, port, error, time.monotonic() - started)
        return row, tls_row(name, address, port, None, 0.0)
    tcp = tcp_row(name, address, port, None, time.monotonic() - started)
    writer.close()
    return tcp, await _tls(name, address, config)


async def _tls(name: str, address: str, config: NetcheckConfig) -> Row:
    port = config.cloud_port
    started = time.monotonic()
    outcome: x509.Certificate | ServerRejected | str
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port, ssl=station_context(), server_hostname=name),
            config.timeout,
        )
    except TimeoutError:
        outcome = f"no handshake in {config.timeout:g} s"
    except (OSError, ssl.SSLError) as exc:
        outcome = str(exc) or type(exc).__name__
    else:
        try:
            chain = peer_chain(writer.get_extra_info("ssl_object"))
            outcome = verify_server(chain, name, config.roots, dt.datetime.now(dt.UTC))
        except ServerRejected as exc:
            outcome = exc
        finally:
            writer.close()
    return tls_row(name, address, port, outcome, time.monotonic() - started)


async def _dhcp(interface: str, timeout: float) -> tuple[DhcpOutcome, float | None]:
    """A DISCOVER as a station sends it (takes no address); without root, this laptop's lease."""
    started = time.monotonic()
    error: str | None = None
    if os.geteuid() == 0:
        try:
            lease = await discover(interface, timeout=timeout)
        except (DhcpError, OSError) as exc:
            error = str(exc) or type(exc).__name__
        else:
            return DhcpOutcome(interface, lease, "DHCPOFFER"), time.monotonic() - started
    else:
        error = "not root: cannot send a DHCPDISCOVER (UDP 68)"
    own = read_system_lease(interface)
    if own is not None:
        return DhcpOutcome(interface, own, "this laptop's lease"), None
    return DhcpOutcome(interface, None, "", error), time.monotonic() - started


async def run(config: NetcheckConfig) -> Report:
    """Every check, concurrently where they are independent; bounded by ``config.timeout`` each."""
    rows: list[Row] = []
    if config.interface is not None:
        outcome, took = await _dhcp(config.interface, config.dhcp_timeout)
        rows.append(dhcp_lease_row(outcome, took))
        if not config.dhcp_dns and outcome.lease is not None:  # --dns overrides the offer
            config = replace(config, dhcp_dns=outcome.lease.dns_servers)
    order = resolver_order(
        [DnsServer(a, config.dns_port) for a in config.dhcp_dns],
        [DnsServer(a, config.dns_port) for a in config.fallback_dns],
    )
    pairs = [(server, name) for server in order for name in config.cloud_hosts]
    answers, ntp = await asyncio.gather(
        asyncio.gather(*(_dns(s, n, config.timeout) for s, n in pairs)),
        _ntp(config.ntp_host, config.ntp_port, config.timeout),
    )
    dns_rows = [row for row, _ in answers]
    addresses: dict[str, str | None] = {}
    for name in config.cloud_hosts:
        # the station's choice: the first server in priority order that answered
        answered = (
            a[0] for (_s, n), (_r, a) in zip(pairs, answers, strict=True) if n == name and a
        )
        addresses[name] = config.connect_to.get(name) or next(answered, None)
    links = await asyncio.gather(*(_connect(n, addresses[n], config) for n in config.cloud_hosts))
    rows += [dhcp_row(config.dhcp_dns), *dns_rows, ntp]
    rows += [tcp for tcp, _ in links] + [tls for _, tls in links]
    return Report(tuple(rows), tuple(_notes(rows, order, config.cloud_hosts)))
