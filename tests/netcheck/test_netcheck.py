"""``plugstream netcheck``: the readiness check a site's network admin runs before installing
stations (issue 6; /work/shared/seed/network-requirements.txt, Table 2).

Loopback only: our own dnspython UDP DNS servers, our own SNTP responder and a real TLS server
with a certificate from :class:`CertificateAuthority`, all on 127.0.0.1 random ports; every
default address (1.1.1.1, 1.0.0.1, pool.ntp.org, the cloud names' real addresses) is overridden.
The cloud names stay the article's: the DNS servers answer them with 127.0.0.1, and the TLS
server's certificate is for them, so host name checks (A00.FR.309) are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import dns.message
import dns.rrset
import pytest
from cryptography import x509

from plugstream.cli import main
from plugstream.net.dhcp import Lease
from plugstream.netcheck.check import (
    INTERCEPTED,
    DhcpOutcome,
    NetcheckConfig,
    Report,
    Row,
    dhcp_lease_row,
    run,
)
from plugstream.pki.authority import CertificateAuthority
from tests.support import free_port

LOOPBACK = "127.0.0.1"
CLOUD = ("ocpp.ampnexus.net", "setup.plugstream.co.uk")
TIMEOUT = 0.3  # per check: silent servers cost this much


# --- DNS ----------------------------------------------------------------------------------------


@dataclass
class Dns(asyncio.DatagramProtocol):
    """A UDP DNS server on loopback answering every A query with ``address`` (or silent)."""

    silent: bool = False
    address: str = LOOPBACK
    queries: list[str] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None
    port: int = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        query = dns.message.from_wire(data)
        self.queries.append(query.question[0].name.to_text())
        if self.silent:
            return
        response = dns.message.make_response(query)
        qname = query.question[0].name
        response.answer.append(dns.rrset.from_text(qname, 60, "IN", "A", self.address))
        self.transport.sendto(response.to_wire(), addr)


# --- NTP ----------------------------------------------------------------------------------------


class Sntp(asyncio.DatagramProtocol):
    """An SNTP server (RFC 4330 mode 4) telling the true time plus ``shift``."""

    def __init__(self, shift: float = 0.0) -> None:
        self.shift = shift
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        assert self.transport is not None
        origin = struct.unpack("!Q", data[40:48])[0]
        now = time.time() + self.shift
        stamp = (int(now) + 2_208_988_800) << 32 | int((now % 1) * 2**32)
        packet = struct.pack(
            "!BBbbII4sQQQQ", (4 << 3) | 4, 2, 6, -20, 0, 0, bytes([192, 0, 2, 1]),
            stamp, origin, stamp, stamp,
        )  # fmt: skip
        self.transport.sendto(packet, addr)


# --- the site: everything a station talks to, on loopback ----------------------------------------


@dataclass
class Site:
    dns: list[Dns]
    ntp_port: int
    tls_port: int
    ca_pem: Path
    transports: list[asyncio.BaseTransport]

    def config(self, **changes: object) -> NetcheckConfig:
        """Two DHCP servers and one fallback, every one of them ours."""
        base = NetcheckConfig(
            dhcp_dns=(LOOPBACK, "127.0.0.2"),
            fallback_dns=("127.0.0.3",),
            dns_port=self.dns[0].port,
            ntp_host=LOOPBACK,
            ntp_port=self.ntp_port,
            cloud_hosts=CLOUD,
            cloud_port=self.tls_port,
            roots=(x509.load_pem_x509_certificate(self.ca_pem.read_bytes()),),
            timeout=TIMEOUT,
        )
        return replace(base, **changes)  # type: ignore[arg-type]

    def argv(self, *extra: str) -> list[str]:
        return [
            "netcheck", "--dns", LOOPBACK, "--dns", "127.0.0.2", "--fallback-dns", "127.0.0.3",
            "--dns-port", str(self.dns[0].port), "--ntp-host", LOOPBACK,
            "--ntp-port", str(self.ntp_port), "--cloud-port", str(self.tls_port),
            "--ca", str(self.ca_pem), "--timeout", str(TIMEOUT), *extra,
        ]  # fmt: skip


async def _tls_server(ca: CertificateAuthority, tmp: Path) -> asyncio.Server:
    leaf = ca.issue_server(CLOUD, ips=())
    leaf.write(tmp / "server.pem", tmp / "server.key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp / "server.pem", tmp / "server.key")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(TimeoutError, OSError, ssl.SSLError):
            await asyncio.wait_for(reader.read(1), 2.0)
        writer.close()

    return await asyncio.start_server(serve, LOOPBACK, 0, ssl=context, ssl_handshake_timeout=2.0)


StartSite = Callable[..., Awaitable[Site]]


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[StartSite]:
    """Starts the site: three DNS servers on 127.0.0.1..3 (one port), SNTP, a TLS server.

    ``silent``: indexes of DNS servers that never answer; ``ntp=False``: no SNTP responder;
    ``tls``: "ours", "other-ca" (an intercepting proxy's certificate) or "closed" (no listener).
    """
    loop = asyncio.get_running_loop()
    transports: list[asyncio.BaseTransport] = []
    servers: list[asyncio.Server] = []

    async def start(
        *, silent: tuple[int, ...] = (), ntp: bool = True, tls: str = "ours", shift: float = 0.0
    ) -> Site:
        ours = CertificateAuthority.create()
        ours.write_root(tmp_path / "ca.pem")
        port = 0
        dnss: list[Dns] = []
        for i, host in enumerate((LOOPBACK, "127.0.0.2", "127.0.0.3")):
            transport, proto = await loop.create_datagram_endpoint(
                lambda i=i: Dns(silent=i in silent),  # type: ignore[misc]
                local_addr=(host, port),
            )
            transports.append(transport)
            port = port or proto.port
            dnss.append(proto)
        ntp_port = free_port()
        if ntp:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: Sntp(shift), local_addr=(LOOPBACK, 0)
            )
            transports.append(transport)
            ntp_port = transport.get_extra_info("sockname")[1]
        if tls == "closed":
            tls_port = free_port()
        else:
            proxy = CertificateAuthority.create("Corporate TLS Inspection CA", organization="Corp")
            server = await _tls_server(ours if tls == "ours" else proxy, tmp_path)
            servers.append(server)
            tls_port = server.sockets[0].getsockname()[1]
        return Site(dnss, ntp_port, tls_port, tmp_path / "ca.pem", transports)

    yield start
    for t in transports:
        t.close()
    for s in servers:
        s.close()
        await s.wait_closed()


def rows(report: Report, check: str) -> list[Row]:
    return [r for r in report.rows if r.check == check]


# --- the checks ---------------------------------------------------------------------------------


@pytest.mark.socket
async def test_a_ready_site_passes_every_row(site: StartSite) -> None:
    """Everything open: DHCP servers known, every server answers for both names, NTP answers,
    TCP and a verified TLS handshake (A00.FR.308/309) to both cloud names."""
    s = await site()
    report = await run(s.config())
    assert report.ok, report.rows
    assert all(r.status == "pass" for r in report.rows)
    assert [r.check for r in report.rows] == ["dhcp-dns"] + ["dns"] * 6 + ["ntp"] + ["tcp"] * 2 + [
        "tls"
    ] * 2
    dns_targets = [r.target.split(" -> ") for r in rows(report, "dns")]
    assert [t[0].split()[0] for t in dns_targets] == ["DHCP"] * 4 + ["fallback"] * 2  # priority
    assert all("127.0.0.1" in r.detail for r in rows(report, "dns"))
    assert "clock offset" in rows(report, "ntp")[0].detail
    assert all(r.time is not None and r.time < 2 for r in report.rows[1:])
    assert all("verified" in r.detail for r in rows(report, "tls"))
    assert report.notes == ()


@pytest.mark.socket
async def test_silent_dhcp_primary_fails_its_rows_and_says_the_station_still_resolves(
    site: StartSite,
) -> None:
    """The article: a DNS server that does not respond "promptly" is passed over. The station
    still works via the secondary, but waits out the timeout on every lookup: the rows fail
    (exit 1) and a note says the station still resolves the names."""
    s = await site(silent=(0,))
    report = await run(s.config())
    assert not report.ok
    primary, others = rows(report, "dns")[:2], rows(report, "dns")[2:]
    assert all(r.status == "fail" and "timed out" in r.detail for r in primary)
    assert all("open UDP 53 to 127.0.0.1" in r.fix for r in primary)
    assert all(r.status == "pass" for r in others)
    assert all(r.status == "pass" for r in rows(report, "tls"))  # resolved via the secondary
    assert len(report.notes) == 2
    assert "still resolves it via DHCP secondary 127.0.0.2" in report.notes[0]


@pytest.mark.socket
async def test_no_dns_servers_from_dhcp_is_a_warning_not_a_failure(site: StartSite) -> None:
    """No DHCP DNS servers: the station uses 1.1.1.1 and 1.0.0.1 only (the article's DNS
    section); worth saying, but it still works, so the exit code stays 0."""
    s = await site()
    report = await run(s.config(dhcp_dns=()))
    dhcp = rows(report, "dhcp-dns")[0]
    assert dhcp.status == "warn" and "only the fallbacks" in dhcp.detail
    assert report.ok and len(rows(report, "dns")) == 2


@pytest.mark.socket
async def test_blocked_ntp_fails_with_the_table_2_fix(site: StartSite) -> None:
    """No NTP answer: the station's clock cannot be trusted and it cannot authenticate (the
    article's NTP section), so the row fails and says to open UDP 123 to pool.ntp.org."""
    s = await site(ntp=False)
    report = await run(s.config())
    ntp = rows(report, "ntp")[0]
    assert ntp.status == "fail" and ntp.fix == "open UDP 123 to pool.ntp.org"
    assert not report.ok


@pytest.mark.socket
async def test_a_laptop_clock_an_hour_off_warns(site: StartSite) -> None:
    s = await site(shift=3600.0)
    report = await run(s.config())
    ntp = rows(report, "ntp")[0]
    assert ntp.status == "warn"
    # the hour, as measured over a loaded loopback: +3599.99x s is as right as +3600.00x s
    offset = re.search(r"clock offset ([+-][\d.]+) s", ntp.detail)
    assert offset is not None and float(offset.group(1)) == pytest.approx(3600, abs=0.5)
    assert report.ok


@pytest.mark.socket
async def test_closed_443_fails_with_open_tcp_443_to_the_name(site: StartSite) -> None:
    s = await site(tls="closed")
    report = await run(s.config())
    for row, name in zip(rows(report, "tcp"), CLOUD, strict=True):
        assert row.status == "fail" and row.fix == f"open TCP 443 to {name}"
        assert "refused" in row.detail.lower()
    assert all(r.status == "fail" for r in rows(report, "tls"))
    assert not report.ok


@pytest.mark.socket
async def test_certificate_from_another_ca_is_reported_as_interception(
    site: StartSite,
) -> None:
    """A TLS-inspecting firewall or captive portal answers with its own CA's certificate: the
    station rejects it (A00.FR.308, A00.FR.310/311: InvalidCsmsCertificate, terminate), so the
    admin must exempt the cloud names."""
    s = await site(tls="other-ca")
    report = await run(s.config())
    assert all(r.status == "pass" for r in rows(report, "tcp"))
    for row, name in zip(rows(report, "tls"), CLOUD, strict=True):
        assert row.status == "fail" and row.detail.startswith(INTERCEPTED)
        assert "Corporate TLS Inspection CA" in row.detail
        assert name in row.fix
    assert not report.ok


@pytest.mark.socket
async def test_connect_to_pins_the_address_when_dns_gives_another(site: StartSite) -> None:
    """Every DNS server points the names somewhere unreachable; --connect-to pins loopback."""
    s = await site()
    for d in s.dns:
        d.address = "192.0.2.1"
    report = await run(s.config(connect_to={name: LOOPBACK for name in CLOUD}))
    assert all("192.0.2.1" in r.detail for r in rows(report, "dns"))
    assert all(r.status == "pass" and LOOPBACK in r.target for r in rows(report, "tls"))


# --- the command --------------------------------------------------------------------------------


async def _cli(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "plugstream.cli", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.socket
async def test_cli_json_on_a_ready_site_exits_0(site: StartSite) -> None:
    s = await site()
    code, out, err = await _cli(*s.argv("--json"))
    assert code == 0, err
    report = json.loads(out)
    assert report["result"] == "pass" and report["notes"] == []
    assert len(report["rows"]) == 12
    assert set(report["rows"][0]) == {
        "check", "port", "type", "target", "status", "time", "detail", "fix",
    }  # fmt: skip
    assert {r["status"] for r in report["rows"]} == {"pass"}


@pytest.mark.socket
async def test_cli_table_names_the_fix_and_exits_1(site: StartSite) -> None:
    s = await site(ntp=False)
    code, out, _ = await _cli(*s.argv())
    assert code == 1
    for column in ("Port", "Type", "Domain / IP", "Result", "Time", "Fix"):
        assert column in out
    assert "open UDP 123 to pool.ntp.org" in out
    assert "overall: FAIL" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["netcheck", "--dns", "not-an-ip"],
        ["netcheck", "--connect-to", "ocpp.ampnexus.net"],
        ["netcheck", "--timeout", "0"],
        ["netcheck", "--no-such-flag"],
    ],
)
@pytest.mark.unit
def test_bad_flags_are_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("plugstream: error:") and err.count("\n") == 1


# --- the DHCP row (the real DISCOVER to dnsmasq is in tests/lab) ---------------------------------


def _lease(routers: tuple[str, ...] = ("192.0.2.1",), dns: tuple[str, ...] = ()) -> Lease:
    return Lease(
        address="192.0.2.120",
        prefix_len=24,
        routers=routers,
        dns_servers=dns,
        lease_time=3600,
        server_id="192.0.2.2",
        obtained_at=0.0,
    )


@pytest.mark.unit
def test_dhcp_offer_with_address_router_and_dns_passes() -> None:
    """The article: DHCP assigns the address and gives the DNS servers; the row shows both."""
    row = dhcp_lease_row(
        DhcpOutcome("eth0", _lease(dns=("192.0.2.2", "192.0.2.3")), "DHCPOFFER"), 0.004
    )
    assert row.status == "pass" and (row.port, row.type) == (67, "UDP")
    assert row.detail == "DHCPOFFER: 192.0.2.120/24, router 192.0.2.1, DNS 192.0.2.2, 192.0.2.3"
    assert row.target.endswith("on eth0")


@pytest.mark.unit
def test_no_dhcp_server_fails_and_says_a_station_gets_no_address() -> None:
    row = dhcp_lease_row(DhcpOutcome("eth0", None, "", "no DHCPOFFER within 6 s"), 6.0)
    assert row.status == "fail" and row.detail == "no DHCPOFFER within 6 s"
    assert "run a DHCP server" in row.fix


@pytest.mark.unit
def test_an_offer_without_a_router_fails() -> None:
    """Without option 3 a station has an address but no way out to the cloud."""
    row = dhcp_lease_row(DhcpOutcome("eth0", _lease(routers=()), "DHCPOFFER"), 0.01)
    assert row.status == "fail" and "option 3" in row.fix


@pytest.mark.unit
def test_bad_interface_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["netcheck", "--interface", "nosuch9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such interface: nosuch9" in err
