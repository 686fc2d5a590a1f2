"""The lab's site network: a station's LAN behind a NAT router with the article's firewall,
DHCP and DNS, stand-ins for the fallback resolvers and pool.ntp.org, an LTE carrier, and
PlugStream Cloud on 443 with certificates from the project's PKI (``plugstream lab``).

Why: the article's promises (DHCP hands out DNS servers, outgoing ports only, NAT, Table 2)
are properties of a network, so they are tested on one: real hosts (network namespaces), real
cables (veth pairs), the real firewall rendered by :func:`plugstream.netcheck.firewall.render`,
and the station and cloud as the processes a site would run. Only documentation ranges are
used and no host has a route out of the lab::

    station eth0 ─┐                                  ┌─ cloud 198.51.100.10 (443: OCPP, setup)
    laptop  .50 ──┼─ br0 router .1 ═NAT═ .1 ─ br0 internet .254 (+ .11 .12 DNS, .123 NTP)
    dhcp .2 .3 ───┘  192.0.2.0/24     198.51.100.0/24 ┴─ carrier .2 ═NAT═ 203.0.113.1
    station lte0 203.0.113.2 ──────────────────────────────────────────────┘

:class:`Lab` is a context manager: it builds everything in a temporary directory, waits
until every service answers and tears it all down (processes by PID, then namespaces). The
methods that break the site (:meth:`Lab.block`, :meth:`Lab.stop_dns`, :meth:`Lab.intercept_tls`,
:meth:`Lab.cut_ethernet`) each have their repair, so one lab serves many test cases.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from plugstream.lab.netns import Host, LabUnavailable, Netns, lab_unavailable
from plugstream.net.image import STATION_IMAGE_SYSCTLS
from plugstream.netcheck.firewall import NTP_HOST, OCPP_HOST, SETUP_HOST, render
from plugstream.pki.authority import CertificateAuthority
from plugstream.pki.keystore import PKIStore

__all__ = [
    "CARRIER_LTE",
    "CARRIER_WAN",
    "CLOUD",
    "DHCP_DNS",
    "DHCP_RANGE",
    "FALLBACK_DNS",
    "INTERNET",
    "LAN",
    "LAPTOP",
    "NETNS_PREFIX",
    "NTP",
    "ROUTER_LAN",
    "ROUTER_WAN",
    "SETUP",
    "STATION_LTE",
    "Lab",
    "LabUnavailable",
    "Service",
    "dnsmasq_dhcp_argv",
    "dnsmasq_dns_argv",
    "lab_unavailable",
    "leftovers",
    "parse_counters",
    "remove_leftovers",
]

LAN: Final = "192.0.2.0/24"
ROUTER_LAN: Final = "192.0.2.1"
DHCP_DNS: Final[tuple[str, str]] = ("192.0.2.2", "192.0.2.3")
"""The dhcp host's two addresses: DNS servers 1 and 2 of the article's priority list."""
DHCP_RANGE: Final[tuple[str, str]] = ("192.0.2.100", "192.0.2.199")
LAPTOP: Final = "192.0.2.50"
ROUTER_WAN: Final = "198.51.100.1"
CARRIER_WAN: Final = "198.51.100.2"
CLOUD: Final = "198.51.100.10"
SETUP: Final = "198.51.100.20"
"""The setup name's own address on the cloud host, so each name's 443 rule stands alone."""
FALLBACK_DNS: Final[tuple[str, str]] = ("198.51.100.11", "198.51.100.12")
"""Stand-ins for 1.1.1.1 and 1.0.0.1 (priorities 3 and 4)."""
NTP: Final = "198.51.100.123"
"""Stand-in for pool.ntp.org."""
INTERNET: Final = "198.51.100.254"
CARRIER_LTE: Final = "203.0.113.1"
STATION_LTE: Final = "203.0.113.2"
NETNS_PREFIX: Final = "pslab"
"""Every lab namespace is ``pslab<pid>n<k>-<host>``: ``plugstream lab down`` finds leftovers."""

WAIT: Final = 20.0
"""Seconds a service may take to answer after it was started."""
_COUNTERS_TABLE: Final = "labcount"
_NAT_TABLE: Final = "labnat"
_FIREWALL_TABLE: Final = "plugstream"
_INTERCEPT_PORT: Final = 8443


# --- what the lab runs, as data (no I/O) --------------------------------------------------------


_DNSMASQ: Final = (
    "dnsmasq",
    "--conf-file=/dev/null",  # nothing from the machine's own configuration
    "--no-resolv",
    "--no-hosts",
    "--keep-in-foreground",
    "--user=root",
    "--bind-interfaces",
)


def dnsmasq_dns_argv(
    address: str, records: Mapping[str, str], directory: Path, name: str
) -> list[str]:
    """A DNS-only dnsmasq on ``address`` answering ``records`` (name -> IPv4) and nothing else
    (no upstream, no /etc/hosts): one per server, so each can be stopped alone."""
    return [
        *_DNSMASQ,
        f"--listen-address={address}",
        f"--pid-file={directory / f'{name}.pid'}",
        f"--log-facility={directory / f'{name}.log'}",
        "--log-queries",
        *(f"--host-record={host},{ip}" for host, ip in records.items()),
    ]


def dnsmasq_dhcp_argv(
    interface: str,
    dns_servers: Sequence[str],
    directory: Path,
    *,
    lease_time: int = 3600,
    name: str = "dhcp",
) -> list[str]:
    """A DHCP-only dnsmasq (``--port=0``: no DNS) for the LAN: addresses from
    :data:`DHCP_RANGE`, the router, and ``dns_servers`` as option 6 (none: no option 6 at all,
    the article's "if the DHCP server does not specify a DNS server")."""
    dns = ",".join(dns_servers)
    return [
        *_DNSMASQ,
        "--port=0",
        f"--interface={interface}",
        f"--pid-file={directory / f'{name}.pid'}",
        f"--log-facility={directory / f'{name}.log'}",
        "--log-dhcp",
        f"--dhcp-leasefile={directory / f'{name}.leases'}",
        "--dhcp-authoritative",
        "--no-ping",  # no conflicting hosts in the lab: offer at once, not after a ping
        f"--dhcp-range={DHCP_RANGE[0]},{DHCP_RANGE[1]},255.255.255.0,{lease_time}",
        f"--dhcp-option=option:router,{ROUTER_LAN}",
        f"--dhcp-option=option:dns-server,{dns}" if dns else "--dhcp-option=option:dns-server",
    ]


def parse_counters(nft_json: str) -> dict[str, int]:
    """Bytes per address of one dynamic nft set with counters (``nft -j list set``)."""
    out: dict[str, int] = {}
    for item in json.loads(nft_json).get("nftables", []):
        for element in item.get("set", {}).get("elem", []):
            entry = element.get("elem", {}) if isinstance(element, dict) else {}
            value, counter = entry.get("val"), entry.get("counter")
            if isinstance(value, str) and isinstance(counter, dict):
                out[value] = out.get(value, 0) + int(counter.get("bytes", 0))
    return out


def _router_ruleset(dhcp_dns: Sequence[str]) -> str:
    """The router's nftables: NAT, the article's allow-list exactly as ``plugstream firewall``
    renders it (its name sets filled with the lab's addresses, as the admin's DNS job would),
    and per-address byte counters of what passed it."""
    firewall = render(
        "nftables",
        dns_servers=dhcp_dns,
        station_subnet=LAN,
        fallback_dns=FALLBACK_DNS,
    )
    return "\n".join(
        [
            f"table ip {_NAT_TABLE} {{",
            "\tchain prerouting {",
            "\t\ttype nat hook prerouting priority dstnat; policy accept;",
            "\t}",
            "\tchain postrouting {",
            "\t\ttype nat hook postrouting priority srcnat; policy accept;",
            '\t\toifname "wan0" masquerade',
            "\t}",
            "}",
            firewall,
            f"add element inet {_FIREWALL_TABLE} ntp {{ {NTP} }}",
            f"add element inet {_FIREWALL_TABLE} ocpp {{ {CLOUD} }}",
            f"add element inet {_FIREWALL_TABLE} setup {{ {SETUP} }}",
            # after the firewall (priority filter): only what it let through is counted
            f"table inet {_COUNTERS_TABLE} {{",
            "\tset sent { type ipv4_addr; size 4096; flags dynamic; counter; }",
            "\tset received { type ipv4_addr; size 4096; flags dynamic; counter; }",
            "\tchain forward {",
            "\t\ttype filter hook forward priority filter + 10; policy accept;",
            f"\t\tip saddr {LAN} update @sent {{ ip saddr }}",
            f"\t\tip daddr {LAN} update @received {{ ip daddr }}",
            "\t}",
            "}",
            "",
        ]
    )


_CARRIER_RULESET: Final = f"""table ip {_NAT_TABLE} {{
\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname "wan0" masquerade
\t}}
}}
"""

_TLS_PROBE: Final = (
    "import socket, ssl, sys\n"
    "context = ssl.create_default_context(cafile=sys.argv[1])\n"
    "with socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=2) as raw:\n"
    "    with context.wrap_socket(raw, server_hostname=sys.argv[4]):\n"
    "        pass\n"
)


@dataclass
class Service:
    """A long-running process of the lab, and where it listens (for the wait and the table)."""

    name: str
    host: Host
    argv: list[str]
    proto: str  # "udp" | "tcp"
    address: str
    port: int
    process: subprocess.Popen[Any] | None = None
    log: IO[bytes] | None = None


# --- leftovers of killed labs -------------------------------------------------------------------


def _netns_names() -> list[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _alive(pid: int) -> bool:
    """``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


_OWNED = re.compile(rf"^{NETNS_PREFIX}(\d+)n\d+-")


def leftovers(*, include_running: bool = False) -> list[str]:
    """Namespaces of labs whose process is gone (all lab namespaces with ``include_running``)."""
    out = []
    for name in _netns_names():
        match = _OWNED.match(name)
        if match and (include_running or not _alive(int(match.group(1)))):
            out.append(name)
    return out


def remove_leftovers(*, include_running: bool = False) -> list[str]:
    """Stop the processes still running in the namespaces :func:`leftovers` finds (by PID:
    the killed lab's dnsmasq, cloud...), delete the namespaces and their /etc/netns files;
    the names removed."""
    removed = []
    for name in leftovers(include_running=include_running):
        _stop_pids(name)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
        shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
        removed.append(name)
    etc = Path("/etc/netns")
    for folder in etc.glob(f"{NETNS_PREFIX}*") if etc.is_dir() else ():
        match = _OWNED.match(folder.name)
        if match and (include_running or not _alive(int(match.group(1)))):
            shutil.rmtree(folder, ignore_errors=True)
    return removed


def _stop_pids(netns: str, timeout: float = 3.0) -> None:
    """SIGTERM the processes in ``netns``, SIGKILL what is left after ``timeout`` s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        done = subprocess.run(
            ["ip", "netns", "pids", netns], capture_output=True, text=True, timeout=10
        )
        pids = [int(p) for p in done.stdout.split() if p.isdigit()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if _alive(pid)]
            time.sleep(0.05)
        if not pids:
            return


# --- the lab ------------------------------------------------------------------------------------

_SERIAL = iter(range(1, 1 << 30))


class Lab:
    """The site network, built on ``__enter__`` and torn down on ``__exit__``.

    Hosts (:class:`~plugstream.lab.netns.Host`, run commands with ``host.run`` / ``host.start``
    or :meth:`exec`): ``router``, ``dhcp``, ``station``, ``laptop``, ``carrier``, ``internet``,
    ``cloud``. Addresses are the class constants (``Lab.CLOUD``...). Blocking calls: from
    asyncio tests wrap them in ``asyncio.to_thread``.
    """

    LAN = LAN
    ROUTER_LAN = ROUTER_LAN
    DHCP_DNS = DHCP_DNS
    DHCP_RANGE = DHCP_RANGE
    LAPTOP = LAPTOP
    ROUTER_WAN = ROUTER_WAN
    CARRIER_WAN = CARRIER_WAN
    CLOUD = CLOUD
    SETUP = SETUP
    FALLBACK_DNS = FALLBACK_DNS
    NTP = NTP
    INTERNET = INTERNET
    CARRIER_LTE = CARRIER_LTE
    STATION_LTE = STATION_LTE
    OCPP_HOST = OCPP_HOST
    SETUP_HOST = SETUP_HOST
    NTP_HOST = NTP_HOST
    STATION_LAN_IF = "eth0"
    STATION_LTE_IF = "lte0"

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        dhcp_dns: Sequence[str] = DHCP_DNS,
        lease_time: int = 3600,
        ntp_shift: float = 0.0,
        cloud: bool = True,
        cloud_args: Sequence[str] = (),
        operator: str = "PlugStream Lab",
    ) -> None:
        """``directory``: where the PKI, databases and logs go (default: a temporary one,
        removed on close). ``dhcp_dns``: the DNS servers DHCP hands out (option 6), ``()`` for
        none. ``ntp_shift``: seconds the NTP stand-in's clock is ahead. ``cloud``: start
        PlugStream Cloud (``cloud_args`` are added to ``plugstream cloud serve``)."""
        self._own_directory = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="plugstream-lab-"))
        self.dhcp_dns = tuple(dhcp_dns)
        self.lease_time = lease_time
        self.ntp_shift = ntp_shift
        self.with_cloud = cloud
        self.cloud_args = tuple(cloud_args)
        self.operator = operator
        self.prefix = f"{NETNS_PREFIX}{os.getpid()}n{next(_SERIAL)}"
        self.pki_dir = self.directory / "pki"
        self.logs = self.directory / "logs"
        self.api_token = "lab-token"
        self.services: dict[str, Service] = {}
        self._netns: Netns | None = None
        self._blocks: dict[tuple[int, str, str | None], str] = {}
        self._intercept: tuple[Service, str] | None = None
        self.build_seconds = 0.0

    # -- addresses and files a test or a process needs ------------------------------------------

    @property
    def root_pem(self) -> Path:
        """The CSMS root of the lab PKI: what stations and netcheck trust (``--ca``)."""
        return self.pki_dir / "csms-root.pem"

    @property
    def server_cert(self) -> tuple[Path, Path]:
        """The cloud's certificate (both cloud names and :data:`CLOUD`) and its key."""
        folder = self.pki_dir / "server"
        return folder / f"{OCPP_HOST}.pem", folder / f"{OCPP_HOST}.key"

    @property
    def cloud_url(self) -> str:
        return f"wss://{OCPP_HOST}/ocpp"

    @property
    def setup_url(self) -> str:
        return f"https://{SETUP_HOST}"

    @property
    def api_url(self) -> str:
        return f"https://{OCPP_HOST}/api/v1"

    @property
    def netns(self) -> Netns:
        if self._netns is None:
            raise RuntimeError("the lab is not built (use it as a context manager)")
        return self._netns

    def host(self, name: str) -> Host:
        return self.netns.hosts[name]

    @property
    def hosts(self) -> dict[str, Host]:
        """Every host by its lab name."""
        return dict(self.netns.hosts)

    @property
    def router(self) -> Host:
        return self.host("router")

    @property
    def dhcp(self) -> Host:
        return self.host("dhcp")

    @property
    def station(self) -> Host:
        return self.host("station")

    @property
    def laptop(self) -> Host:
        return self.host("laptop")

    @property
    def carrier(self) -> Host:
        return self.host("carrier")

    @property
    def internet(self) -> Host:
        return self.host("internet")

    @property
    def cloud(self) -> Host:
        return self.host("cloud")

    def plugstream(self, *args: str) -> list[str]:
        """argv of ``plugstream ARGS`` as a process (run it in a host with ``host.start``)."""
        return [sys.executable, "-m", "plugstream.cli", *args]

    def netcheck_args(self, *, dhcp: bool = False) -> list[str]:
        """``plugstream netcheck`` flags for the laptop: the DHCP DNS servers (``dhcp``: ask
        the lab's DHCP server on eth0 instead, as an admin would), the fallback stand-ins and
        the lab root. The NTP name resolves through the laptop's resolv.conf (the DHCP DNS
        servers), as on a real site; the cloud names through each DNS server."""
        args: list[str] = ["--interface", "eth0"] if dhcp else []
        for server in () if dhcp else self.dhcp_dns:
            args += ["--dns", server]
        for server in FALLBACK_DNS:
            args += ["--fallback-dns", server]
        return [*args, "--ca", str(self.root_pem)]

    def exec(
        self, host: Host | str, *command: str, timeout: float = 60.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in ``host`` to completion; its exit code and output (never raises
        for a non-zero exit)."""
        target = host if isinstance(host, Host) else self.host(host)
        return subprocess.run(
            target.argv(*command),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )

    # -- build and teardown ---------------------------------------------------------------------

    def __enter__(self) -> Lab:
        self.build()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build(self) -> None:
        """Build the hosts, cables, firewall and services; return once every service answers.
        A failure tears down what was built and raises :class:`LabUnavailable`."""
        started = time.monotonic()
        self._netns = Netns(self.prefix)
        try:
            self.logs.mkdir(parents=True, exist_ok=True)
            self._make_pki()
            self._make_hosts()
            self._make_firewalls()
            self._start_services()
            self._wait_ready(time.monotonic() + WAIT)
        except BaseException:
            self.close()
            raise
        self.build_seconds = time.monotonic() - started

    def close(self) -> None:
        """Stop every process by PID, delete every namespace, remove the lab's files."""
        netns, self._netns = self._netns, None
        if netns is not None:
            names = [h.netns for h in netns.hosts.values()]
            netns.close()
            for name in names:
                shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
        for service in self.services.values():
            if service.log is not None:
                service.log.close()
        self.services.clear()
        self._blocks.clear()
        self._intercept = None
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _make_pki(self) -> None:
        """The project's PKI (as ``plugstream pki init``), and one server certificate for both
        cloud names, since one cloud process serves OCPP and the setup service on 443."""
        store = PKIStore(self.pki_dir)
        store.init(self.operator)
        issued = store.csms_root().issue_server([OCPP_HOST, SETUP_HOST], ips=[CLOUD, SETUP])
        cert, key = self.server_cert
        cert.parent.mkdir(mode=0o700, exist_ok=True)
        issued.write(cert, key)

    def _make_hosts(self) -> None:
        n = self.netns
        router, dhcp, station, laptop = (n.host(x) for x in ("router", "dhcp", "station", "laptop"))
        carrier, internet, cloud = (n.host(x) for x in ("carrier", "internet", "cloud"))
        # the site LAN: a switch (br0) in the router
        n.veth(station, "eth0", router, "lan-station")
        n.veth(dhcp, "eth0", router, "lan-dhcp", a_addr=f"{DHCP_DNS[0]}/24")
        dhcp.ip("addr", "add", f"{DHCP_DNS[1]}/24", "dev", "eth0")
        n.veth(laptop, "eth0", router, "lan-laptop", a_addr=f"{LAPTOP}/24")
        n.bridge(router, "br0", ["lan-station", "lan-dhcp", "lan-laptop"], f"{ROUTER_LAN}/24")
        # bridged LAN frames must not pass the router's IP firewall (br_netfilter)
        router.run("sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0", check=False)
        # the internet: a switch (br0) with the stand-ins' addresses on it
        n.veth(router, "wan0", internet, "to-router", a_addr=f"{ROUTER_WAN}/24")
        n.veth(carrier, "wan0", internet, "to-carrier", a_addr=f"{CARRIER_WAN}/24")
        n.veth(cloud, "eth0", internet, "to-cloud", a_addr=f"{CLOUD}/24")
        n.bridge(internet, "br0", ["to-router", "to-carrier", "to-cloud"], f"{INTERNET}/24")
        cloud.ip("addr", "add", f"{SETUP}/24", "dev", "eth0")
        for address in (*FALLBACK_DNS, NTP):
            internet.ip("addr", "add", f"{address}/24", "dev", "br0")
        # LTE: the station's modem and the carrier's network
        n.veth(
            station, "lte0", carrier, "lte0", a_addr=f"{STATION_LTE}/24", b_addr=f"{CARRIER_LTE}/24"
        )
        for host in (laptop, dhcp):
            host.ip("route", "add", "default", "via", ROUTER_LAN)
        cloud.ip("route", "add", "default", "via", INTERNET)
        router.sysctl("net.ipv4.ip_forward", "1")
        carrier.sysctl("net.ipv4.ip_forward", "1")
        # the station runs with its image's kernel settings (net/image.py: TCP timestamps off)
        for key, value in STATION_IMAGE_SYSCTLS.items():
            station.sysctl(key, value)
        # the laptop's resolv.conf, as DHCP would have written it (ip netns exec mounts it)
        etc = Path("/etc/netns") / laptop.netns
        etc.mkdir(parents=True, exist_ok=True)
        servers = "".join(f"nameserver {s}\n" for s in self.dhcp_dns)
        (etc / "resolv.conf").write_text(f"{servers}options timeout:1 attempts:1\n")

    def _make_firewalls(self) -> None:
        for host, ruleset in (
            (self.router, _router_ruleset(self.dhcp_dns)),
            (self.carrier, _CARRIER_RULESET),
        ):
            path = self.directory / f"{host.name}.nft"
            path.write_text(ruleset)
            host.run("nft", "-f", str(path))

    def _start_services(self) -> None:
        records = {OCPP_HOST: CLOUD, SETUP_HOST: SETUP, NTP_HOST: NTP}
        for address in DHCP_DNS:
            name = f"dns-{address}"
            argv = dnsmasq_dns_argv(address, records, self.logs, name)
            self._add(Service(name, self.dhcp, argv, "udp", address, 53))
        for address in FALLBACK_DNS:
            name = f"dns-{address}"
            argv = dnsmasq_dns_argv(address, records, self.logs, name)
            self._add(Service(name, self.internet, argv, "udp", address, 53))
        self._add(self._dhcp_service())
        ntp = [sys.executable, "-m", "plugstream.lab.standins", "ntp", "--address", NTP]
        ntp += ["--port", "123", "--shift", repr(self.ntp_shift)]
        self._add(Service("ntp", self.internet, ntp, "udp", NTP, 123))
        if self.with_cloud:
            cert, key = self.server_cert
            argv = self.plugstream(
                "cloud", "serve",
                "--host", "0.0.0.0", "--port", "443",  # both names' addresses
                "--db", f"sqlite:///{self.directory / 'cloud.db'}",
                "--api-token", self.api_token,
                "--auto-register-unsecured",
                "--tls-cert", str(cert), "--tls-key", str(key),
                "--tls-client-ca", str(self.root_pem),
                "--pki", str(self.pki_dir),
                "--firmware-dir", str(self.directory / "firmware"),
                "--public-url", f"https://{OCPP_HOST}",
                *self.cloud_args,
            )  # fmt: skip
            self._add(Service("cloud", self.cloud, argv, "tcp", "0.0.0.0", 443))
        for service in self.services.values():
            self._start(service)

    def _dhcp_service(self) -> Service:
        argv = dnsmasq_dhcp_argv("eth0", self.dhcp_dns, self.logs, lease_time=self.lease_time)
        return Service("dhcp", self.dhcp, argv, "udp", "0.0.0.0", 67)

    def _add(self, service: Service) -> None:
        self.services[service.name] = service

    def _start(self, service: Service) -> None:
        if service.log is None:
            service.log = (self.logs / f"{service.name}.out").open("ab")
        service.process = service.host.start(
            *service.argv, stdout=service.log, stderr=subprocess.STDOUT
        )

    def _stop(self, service: Service) -> None:
        if service.process is not None:
            service.host.stop(service.process)
            service.process = None

    def _listening(self, service: Service) -> bool:
        flag = "-Hlun" if service.proto == "udp" else "-Hltn"
        out = service.host.run("ss", flag, f"sport = :{service.port}", check=False)
        for line in out.splitlines():
            columns = line.split()
            # the local address column: 192.0.2.2:53, or 0.0.0.0%eth0:67 when bound to a device
            local = columns[3] if len(columns) > 3 else ""
            address, _, port = local.rpartition(":")
            if port == str(service.port) and address.split("%")[0] == service.address:
                return True
        return False

    def _wait_ready(self, deadline: float, names: Sequence[str] | None = None) -> None:
        """Every service listening, and the cloud's TLS handshake verified from the laptop
        through the router: the lab's own first test."""
        pending = [self.services[n] for n in (names or list(self.services))]
        while pending:
            for service in list(pending):
                process = service.process
                if process is not None and process.poll() is not None:
                    raise LabUnavailable(
                        f"lab service {service.name} exited ({process.returncode}): "
                        f"{self._tail(service)}"
                    )
                if self._listening(service):
                    pending.remove(service)
            if pending and time.monotonic() > deadline:
                late = ", ".join(s.name for s in pending)
                raise LabUnavailable(f"lab services not answering after {WAIT:g} s: {late}")
            if pending:
                time.sleep(0.05)
        if "cloud" in self.services and (names is None or "cloud" in names):
            self._wait_tls(deadline)

    def _wait_tls(self, deadline: float) -> None:
        while True:
            probe = self.exec(
                self.laptop, sys.executable, "-c", _TLS_PROBE,
                str(self.root_pem), CLOUD, "443", OCPP_HOST, timeout=10,
            )  # fmt: skip
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise LabUnavailable(f"no TLS handshake with the lab cloud: {probe.stderr[-300:]}")
            time.sleep(0.1)

    def _tail(self, service: Service) -> str:
        path = self.logs / f"{service.name}.out"
        try:
            return path.read_text(errors="replace").strip()[-400:]
        except OSError:
            return ""

    # -- the byte counters ----------------------------------------------------------------------

    def counters(self, address: str) -> tuple[int, int]:
        """Bytes (IP packets, headers included) that ``address`` on the LAN sent out through
        the router and received back through it, since the last :meth:`reset_counters`.
        Only what the firewall let pass counts: what the site's uplink really carried."""
        sent = parse_counters(self._nft_json("sent")).get(address, 0)
        received = parse_counters(self._nft_json("received")).get(address, 0)
        return sent, received

    def reset_counters(self) -> None:
        for name in ("sent", "received"):
            self.router.run("nft", "flush", "set", "inet", _COUNTERS_TABLE, name)

    def _nft_json(self, name: str) -> str:
        return self.router.run("nft", "-j", "list", "set", "inet", _COUNTERS_TABLE, name)

    # -- breaking the site, and repairing it ----------------------------------------------------

    def block(self, port: int, proto: str, address: str | None = None) -> None:
        """Drop the stations' ``proto``/``port`` traffic (to ``address``, or anywhere) before
        the allow-list: a firewall that misses a row of Table 2. Only traffic through the
        router: the DHCP host's DNS is on the LAN and is broken with :meth:`stop_dns`."""
        key = (port, proto.lower(), address)
        if key in self._blocks:
            return
        match = [] if address is None else ["ip", "daddr", address]
        out = self.router.run(
            "nft", "--echo", "--handle", "insert", "rule", "inet", _FIREWALL_TABLE,
            "from_stations", *match, key[1], "dport", str(port), "counter", "drop",
            "comment", '"lab: blocked"',
        )  # fmt: skip
        self._blocks[key] = _handle(out)

    def unblock(self, port: int, proto: str, address: str | None = None) -> None:
        """Undo one :meth:`block`."""
        handle = self._blocks.pop((port, proto.lower(), address), None)
        if handle is not None:
            self.router.run(
                "nft", "delete", "rule", "inet", _FIREWALL_TABLE, "from_stations", "handle", handle
            )

    def unblock_all(self) -> None:
        for port, proto, address in list(self._blocks):
            self.unblock(port, proto, address)

    @contextlib.contextmanager
    def blocked(self, port: int, proto: str, address: str | None = None) -> Iterator[None]:
        """:meth:`block` for the ``with`` body."""
        self.block(port, proto, address)
        try:
            yield
        finally:
            self.unblock(port, proto, address)

    def stop_dns(self, address: str) -> None:
        """Stop the DNS server on ``address`` (one of :data:`DHCP_DNS` or :data:`FALLBACK_DNS`):
        queries to it then meet a closed port."""
        self._stop(self.services[f"dns-{address}"])

    def start_dns(self, address: str) -> None:
        service = self.services[f"dns-{address}"]
        if service.process is None:
            self._start(service)
            self._wait_ready(time.monotonic() + WAIT, [service.name])

    def set_dhcp_dns(self, servers: Sequence[str]) -> None:
        """Hand out ``servers`` (``()``: none) as the DHCP DNS option from now on (the DHCP
        server restarts; its leases are kept)."""
        self.dhcp_dns = tuple(servers)
        old = self.services["dhcp"]
        self._stop(old)
        if old.log is not None:
            old.log.close()
        self.services["dhcp"] = self._dhcp_service()
        self._start(self.services["dhcp"])
        self._wait_ready(time.monotonic() + WAIT, ["dhcp"])

    def cut_ethernet(self) -> None:
        """Pull the station's Ethernet cable at the switch: its eth0 goes NO-CARRIER."""
        self.router.ip("link", "set", "lan-station", "down")

    def restore_ethernet(self) -> None:
        self.router.ip("link", "set", "lan-station", "up")

    def station_routes(self, lan_address: str | None = "192.0.2.60", lte: bool = True) -> None:
        """For tests that do not run DHCP: a static LAN address and default route (metric 100)
        and the LTE default route (metric 200) in the station host."""
        if lan_address is not None:
            self.station.ip("addr", "add", f"{lan_address}/24", "dev", "eth0")
            self.station.ip(
                "route", "add", "default", "via", ROUTER_LAN, "dev", "eth0", "metric", "100"
            )
        if lte:
            self.station.ip(
                "route", "add", "default", "via", CARRIER_LTE, "dev", "lte0", "metric", "200"
            )

    def intercept_tls(self) -> None:
        """A TLS-inspecting firewall: the router answers the LAN's TCP 443 itself with a
        certificate for the cloud's names from another CA."""
        if self._intercept is not None:
            return
        foreign = CertificateAuthority.create("Lab Interception CA", organization="Middlebox")
        cert, key = self.directory / "intercept.pem", self.directory / "intercept.key"
        foreign.issue_server([OCPP_HOST, SETUP_HOST], ips=[CLOUD, SETUP]).write(cert, key)
        argv = [sys.executable, "-m", "plugstream.lab.standins", "tls", "--address", ROUTER_LAN]
        argv += ["--port", str(_INTERCEPT_PORT), "--cert", str(cert), "--key", str(key)]
        service = Service("intercept", self.router, argv, "tcp", ROUTER_LAN, _INTERCEPT_PORT)
        self._add(service)
        self._start(service)
        self._wait_ready(time.monotonic() + WAIT, [service.name])
        out = self.router.run(
            "nft", "--echo", "--handle", "add", "rule", "ip", _NAT_TABLE, "prerouting",
            "iifname", "br0", "tcp", "dport", "443", "redirect", "to", f":{_INTERCEPT_PORT}",
        )  # fmt: skip
        self._intercept = (service, _handle(out))

    def stop_intercepting(self) -> None:
        if self._intercept is None:
            return
        service, handle = self._intercept
        self._intercept = None
        self.router.run("nft", "delete", "rule", "ip", _NAT_TABLE, "prerouting", "handle", handle)
        self._stop(service)
        if service.log is not None:
            service.log.close()
        del self.services[service.name]

    # -- what the lab is, for people ------------------------------------------------------------

    def describe(self) -> list[tuple[str, str, str]]:
        """(host, addresses, services) rows: ``plugstream lab up`` prints them."""
        listening: dict[str, list[str]] = {}
        for s in self.services.values():
            listening.setdefault(s.host.name, []).append(f"{s.name} {s.proto} {s.port}")
        addresses = {
            "router": f"{ROUTER_LAN} (LAN br0), {ROUTER_WAN} (WAN, NAT)",
            "dhcp": f"{DHCP_DNS[0]}, {DHCP_DNS[1]}",
            "station": f"eth0: DHCP {DHCP_RANGE[0]}-{DHCP_RANGE[1]}; lte0: {STATION_LTE}",
            "laptop": LAPTOP,
            "carrier": f"{CARRIER_LTE} (LTE), {CARRIER_WAN} (WAN, NAT)",
            "internet": f"{INTERNET}; DNS {', '.join(FALLBACK_DNS)}; NTP {NTP}",
            "cloud": f"{CLOUD} ({OCPP_HOST}), {SETUP} ({SETUP_HOST})",
        }
        return [
            (name, addresses[name], ", ".join(listening.get(name, [])) or "-") for name in addresses
        ]


def _handle(nft_echo: str) -> str:
    """The rule handle in ``nft --echo --handle`` output (``... # handle 7``)."""
    match = re.search(r"# handle (\d+)", nft_echo)
    if match is None:
        raise LabUnavailable(f"nft gave no rule handle: {nft_echo.strip()!r}")
    return match.group(1)
