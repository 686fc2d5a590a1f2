"""The outgoing allow-list of the vendor article (Table 2) as data, and as a ruleset a site's
router admin can load: nftables, iptables-restore, or CSV for a change request.

PlugStream needs no incoming port (the article: "outgoing ports ... even behind a NAT"), so the
rulesets let the station subnet out to the listed destinations only, let the answers back in, and
drop the rest of the stations' traffic. Other hosts' traffic is left alone: the rules act only on
the station subnet, so loading them cannot cut a site's other devices off.

Domain names are never written into a rule: nft and iptables would resolve each one once, at load
time, and keep whatever addresses DNS gave then (pool.ntp.org hands out other servers all the
time). The rules
match named nftables sets (or iptables chains) that the admin keeps filled from DNS instead, and
the output says how. Everything is IPv4: stations get their address and their DNS servers by DHCP.
"""

from __future__ import annotations

import csv
import io
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "ALLOW_LIST",
    "FORMATS",
    "AllowRule",
    "Scope",
    "parse_dns_server",
    "parse_station_subnet",
    "render",
    "rules",
]


class Scope(Enum):
    """What kind of destination a rule has, which decides how each format can express it."""

    HOST = "host"  # a DNS name: matched through a set the admin fills from DNS
    ADDRESS = "address"  # a literal IPv4 address
    DHCP_DNS = "dhcp-dns"  # the DNS servers DHCP hands out: known only on site (--dns)
    LAN = "lan"  # stays on the station's LAN (broadcast): never forwarded by the router


@dataclass(frozen=True, slots=True)
class AllowRule:
    """One row of the allow-list: the article's Table 2 columns plus why the station needs it."""

    port: int
    protocol: str  # "TCP" or "UDP", as the article writes them
    destination: str
    purpose: str
    scope: Scope
    set_name: str = ""  # nftables set / iptables chain suffix of a HOST rule


NTP_HOST = "pool.ntp.org"
OCPP_HOST = "ocpp.ampnexus.net"
SETUP_HOST = "setup.plugstream.co.uk"
DHCP_DNS_DESTINATION = "DNS servers from DHCP"
DHCP_DESTINATION = "DHCP server (LAN broadcast)"

TABLE_2: tuple[AllowRule, ...] = (
    AllowRule(123, "UDP", NTP_HOST, "NTP: the clock TLS authentication needs", Scope.HOST, "ntp"),
    AllowRule(443, "TCP", OCPP_HOST, "OCPP to PlugStream Cloud (wss)", Scope.HOST, "ocpp"),
    AllowRule(443, "TCP", SETUP_HOST, "Setup service (commissioning)", Scope.HOST, "setup"),
    AllowRule(53, "UDP", "1.1.1.1", "DNS fallback (Cloudflare primary)", Scope.ADDRESS),
    AllowRule(53, "UDP", "1.0.0.1", "DNS fallback (Cloudflare secondary)", Scope.ADDRESS),
)
"""Table 2 of the article, "Outgoing Port Usage by domain", in its order."""

ALLOW_LIST: tuple[AllowRule, ...] = (
    *TABLE_2,
    AllowRule(53, "UDP", DHCP_DNS_DESTINATION, "DNS (DHCP primary and secondary)", Scope.DHCP_DNS),
    AllowRule(67, "UDP", DHCP_DESTINATION, "DHCP (client port 68): address and DNS", Scope.LAN),
)
"""Everything the station sends: Table 2, the DNS servers DHCP hands out (first in the article's
resolver order, but site-specific), and DHCP itself, which never leaves the LAN."""

FORMATS: tuple[str, ...] = ("nftables", "iptables", "csv")

_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def parse_dns_server(text: str | ipaddress.IPv4Address) -> ipaddress.IPv4Address:
    """A DNS server address as DHCP hands it out (option 6: IPv4 unicast); ValueError says why not."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"not an IP address: {str(text)!r}") from None
    if not isinstance(address, ipaddress.IPv4Address):
        raise ValueError(f"DHCP hands out IPv4 DNS servers, not {address}")
    unreachable = address.is_unspecified or address.is_loopback or address.is_multicast
    if unreachable or address == _BROADCAST:
        raise ValueError(f"not a DNS server a station could reach: {address}")
    return address


def parse_station_subnet(text: str | ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    """The stations' subnet (CIDR, or one address for one station); ValueError says why not."""
    try:
        network = ipaddress.ip_network(text)
    except ValueError as exc:
        if "host bits set" in str(exc):
            fixed = ipaddress.ip_network(text, strict=False)
            raise ValueError(f"{text} has host bits set: did you mean {fixed}?") from None
        raise ValueError(f"not a subnet (CIDR): {str(text)!r}") from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValueError(f"stations get IPv4 addresses by DHCP: use an IPv4 subnet, not {network}")
    if network.prefixlen == 0:
        raise ValueError("0.0.0.0/0 is every host, not the stations' subnet")
    return network


def rules(
    dns_servers: Iterable[str | ipaddress.IPv4Address] = (),
    *,
    fallback_dns: Iterable[str | ipaddress.IPv4Address] | None = None,
) -> list[AllowRule]:
    """The allow-list for one site: the DHCP DNS placeholder becomes one rule per known server.

    Without ``dns_servers`` the placeholder stays (the CSV then still tells the admin that DHCP's
    DNS servers must be reachable). A server already in Table 2 is not listed twice.
    ``fallback_dns`` replaces Table 2's 1.1.1.1 / 1.0.0.1, in order: only for the lab, whose
    stand-in resolvers must be reached without any route to the real ones.
    """
    allow = list(ALLOW_LIST)
    if fallback_dns is not None:
        allow = _with_fallbacks(allow, [str(parse_dns_server(a)) for a in fallback_dns])
    known = {r.destination for r in allow if r.scope is Scope.ADDRESS}
    servers: list[str] = []
    for server in dns_servers:
        address = str(parse_dns_server(server))
        if address not in known and address not in servers:
            servers.append(address)
    out: list[AllowRule] = []
    for rule in allow:
        if rule.scope is Scope.DHCP_DNS and servers:
            out.extend(
                AllowRule(rule.port, rule.protocol, address, "DNS (from DHCP)", Scope.ADDRESS)
                for address in servers
            )
        else:
            out.append(rule)
    return out


def _with_fallbacks(allow: list[AllowRule], fallbacks: list[str]) -> list[AllowRule]:
    """``allow`` with Table 2's fallback resolvers replaced by ``fallbacks``, in priority order."""
    out: list[AllowRule] = []
    placed = False
    for rule in allow:
        if rule.scope is not Scope.ADDRESS:
            out.append(rule)
        elif not placed:
            placed = True
            out.extend(
                AllowRule(
                    rule.port, rule.protocol, address, f"DNS fallback (priority {n})", Scope.ADDRESS
                )
                for n, address in enumerate(fallbacks, 3)
            )
    return out


def render(
    fmt: str,
    *,
    dns_servers: Iterable[str | ipaddress.IPv4Address] = (),
    station_subnet: str | ipaddress.IPv4Network | None = None,
    fallback_dns: Iterable[str | ipaddress.IPv4Address] | None = None,
) -> str:
    """The allow-list as ``fmt`` (one of :data:`FORMATS`); ValueError for a bad format or address.

    ``station_subnet`` is where the stations are; without it the rules match a set (nftables) or
    chain (iptables) of station addresses that starts empty, so loading them changes nothing until
    the admin says which hosts are stations. ``fallback_dns``: see :func:`rules` (the lab's).
    """
    if fmt not in FORMATS:
        raise ValueError(f"use one of {', '.join(FORMATS)}, not {fmt!r}")
    site = rules(dns_servers, fallback_dns=fallback_dns)
    subnet = None if station_subnet is None else parse_station_subnet(station_subnet)
    if fmt == "csv":
        return _csv(site)
    if fmt == "nftables":
        return _nftables(site, subnet)
    return _iptables(site, subnet)


def _csv(site: list[AllowRule]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("port", "protocol", "destination", "purpose"))
    for rule in site:
        writer.writerow((rule.port, rule.protocol, rule.destination, rule.purpose))
    return buffer.getvalue()


def _header(comment: str) -> list[str]:
    """The notes every ruleset starts with: what it does, and what it cannot do by itself."""
    c = comment
    return [
        f"{c} PlugStream outgoing allow-list (the vendor article's Table 2), IPv4.",
        f"{c} Stations need no incoming port: only answers to their own connections come back.",
        f"{c} Only traffic from/to the station subnet is filtered; other hosts are left alone.",
        f"{c}",
        f"{c} Domain names are not written into rules: they would be resolved once, at load",
        f"{c} time, and go stale ({NTP_HOST} hands out other servers all the time). Their rules",
        f"{c} match lists of addresses the admin keeps filled from DNS (see below).",
        f"{c}",
        f"{c} DHCP (UDP 67/68, broadcast) stays on the stations' LAN and is not forwarded, so it",
        f"{c} needs no rule here; if the router's own input chain filters, allow UDP 67 from the",
        f"{c} stations there. The same holds for a DNS server on the router itself.",
    ]


def _dns_note(site: list[AllowRule], comment: str) -> list[str]:
    c = comment
    if any(r.scope is Scope.DHCP_DNS for r in site):
        return [
            f"{c} DNS servers from DHCP: none given. The station asks them first (the article's",
            f"{c} priorities 1 and 2) and falls back to 1.1.1.1 and 1.0.0.1; add each one that",
            f"{c} DHCP hands out with --dns IP, unless it is the router itself.",
        ]
    return [f"{c} DNS servers from DHCP (asked first, before 1.1.1.1 and 1.0.0.1): from --dns."]


def _nftables(site: list[AllowRule], subnet: ipaddress.IPv4Network | None) -> str:
    hosts = [r for r in site if r.scope is Scope.HOST]
    lines = [
        "#!/usr/sbin/nft -f",
        *_header("#"),
        "#",
        *_dns_note(site, "#"),
        "#",
        "# Load:   nft -f THIS_FILE   (check first with nft -c -f THIS_FILE)",
        "# Reload: nft delete table inet plugstream; nft -f THIS_FILE (then fill the sets again)",
        "#",
        "# Fill the address sets from DNS and keep them filled, e.g. with dnsmasq on the router",
        "# (when the stations use it as their DNS server):",
    ]
    lines += [f"#   nftset=/{r.destination}/4#inet#plugstream#{r.set_name}" for r in hosts]
    lines.append("# or from cron (dig from bind9-dnsutils):")
    lines += [
        f"#   for a in $(dig +short A {r.destination}); do nft add element inet plugstream"
        f" {r.set_name} {{ $a }}; done"
        for r in hosts
    ]
    lines.append("")
    lines.append("table inet plugstream {")
    if subnet is None:
        lines += [
            "\t# The stations: empty, so nothing is filtered until you add them, e.g.",
            "\t#   nft add element inet plugstream stations { 192.168.50.0/24 }",
            "\tset stations {",
            "\t\ttype ipv4_addr",
            "\t\tflags interval",
            "\t}",
        ]
    else:
        lines += [
            "\t# The stations (--subnet).",
            "\tset stations {",
            "\t\ttype ipv4_addr",
            "\t\tflags interval",
            f"\t\telements = {{ {subnet} }}",
            "\t}",
        ]
    for r in hosts:
        lines += [
            "",
            f"\t# Addresses of {r.destination} ({r.protocol} {r.port}): fill from DNS.",
            f"\tset {r.set_name} {{",
            "\t\ttype ipv4_addr",
            "\t}",
        ]
    lines += [
        "",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        "\t\tip saddr @stations jump from_stations",
        "\t\tip daddr @stations jump to_stations",
        "\t}",
        "",
        "\t# What a station may start: the allow-list, and nothing else.",
        "\tchain from_stations {",
        "\t\tct state established,related accept",
        "\t\tct state invalid drop",
    ]
    for r in site:
        proto = r.protocol.lower()
        if r.scope is Scope.HOST:
            match = f"ip daddr @{r.set_name}"
        elif r.scope is Scope.ADDRESS:
            match = f"ip daddr {r.destination}"
        else:
            continue  # notes above: not forwarded, or not known yet
        lines.append(
            f'\t\t{match} {proto} dport {r.port} accept comment "{r.destination}: {r.purpose}"'
        )
    lines += [
        '\t\tlimit rate 10/minute log prefix "plugstream drop: "',
        '\t\tcounter drop comment "not in the allow-list"',
        "\t}",
        "",
        "\t# Towards a station: only answers to what it started (it listens on no port).",
        "\tchain to_stations {",
        "\t\tct state established,related accept",
        "\t\tcounter drop",
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


_CHAIN = "PLUGSTREAM"


def _iptables(site: list[AllowRule], subnet: ipaddress.IPv4Network | None) -> str:
    hosts = [r for r in site if r.scope is Scope.HOST]
    out_chain, in_chain, stations = f"{_CHAIN}-OUT", f"{_CHAIN}-IN", f"{_CHAIN}-STATIONS"
    jumps = (
        [f"-j {stations}"]
        if subnet is None
        else [f"-s {subnet} -j {out_chain}", f"-d {subnet} -j {in_chain}"]
    )
    lines = [
        "# iptables-restore input (IPv4).",
        *_header("#"),
        "#",
        *_dns_note(site, "#"),
        "#",
        "# Load with --noflush, or iptables-restore replaces your whole filter table:",
        "#   iptables-restore --noflush < THIS_FILE   (check first with --test)",
        "# A reload empties the PLUGSTREAM chains (fill them again) and adds the FORWARD",
        "# jumps once more: delete the old ones first with",
        *(f"#   iptables -D FORWARD {jump}" for jump in jumps),
        "#",
        "# iptables cannot match a name, and an ipset would have to exist before this loads;",
        "# so each name has a chain that the admin fills with the name's addresses from DNS:",
    ]
    lines += [
        f"#   for a in $(dig +short A {r.destination}); do"
        f" iptables -A {_CHAIN}-{r.set_name.upper()} -d $a -j ACCEPT; done"
        for r in hosts
    ]
    if subnet is None:
        lines += [
            "# The stations: chain PLUGSTREAM-STATIONS starts empty, so nothing is filtered until",
            "# you add them, e.g.",
            f"#   iptables -A {stations} -s 192.168.50.0/24 -j {out_chain}",
            f"#   iptables -A {stations} -d 192.168.50.0/24 -j {in_chain}",
        ]
    lines += ["*filter"]
    chains = [out_chain, in_chain, *(f"{_CHAIN}-{r.set_name.upper()}" for r in hosts)]
    if subnet is None:
        chains.insert(0, stations)
    lines += [f":{name} - [0:0]" for name in chains]
    lines += [f"-I FORWARD {n} {jump}" for n, jump in enumerate(jumps, 1)]
    lines += [
        f"-A {out_chain} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        f"-A {out_chain} -m conntrack --ctstate INVALID -j DROP",
    ]
    for r in site:
        proto = r.protocol.lower()
        note = f'-m comment --comment "{r.destination}: {r.purpose}"'
        if r.scope is Scope.HOST:
            target = f"{_CHAIN}-{r.set_name.upper()}"
            lines.append(f"-A {out_chain} -p {proto} --dport {r.port} {note} -j {target}")
        elif r.scope is Scope.ADDRESS:
            lines.append(
                f"-A {out_chain} -d {r.destination}/32 -p {proto} --dport {r.port} {note} -j ACCEPT"
            )
    lines += [
        f'-A {out_chain} -m limit --limit 10/minute -j LOG --log-prefix "plugstream drop: "',
        f'-A {out_chain} -m comment --comment "not in the allow-list" -j DROP',
        f"-A {in_chain} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        f"-A {in_chain} -j DROP",
        "COMMIT",
    ]
    return "\n".join(lines) + "\n"
