"""The station connects by its NTP-corrected clock and the article's DNS priority list
(issue 6; vendor article "Network Requirements": "If the PlugStream's real-time clock is
wrong, the charge point cannot authenticate itself with PlugStream Cloud"; DNS order DHCP
primary, DHCP secondary, then the fallbacks).

Loopback only: our own SNTP responder and DNS servers on 127.0.0.1 random ports (the
fallbacks are overridden with ``()``), a real PlugStream Cloud over real TLS with
certificates from plugstream.pki, real stations at security profile 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from plugstream.cloud.storage.records import IdTokenRecord
from plugstream.net.dns import DnsServer
from plugstream.net.links import Action
from plugstream.net.ntp import CorrectedClock
from plugstream.pki.authority import CertificateAuthority
from plugstream.station.ev import CITY_CAR, Ev
from plugstream.station.network import STATUS_FILE, NetworkNotReady, StationNetwork
from tests.net.test_dns import FakeDns
from tests.net.test_ntp import LabServer, sntp_server
from tests.security.conftest import (
    PASSWORD,
    VERSIONS,
    Pki,
    ShiftedClock,
    Station,
    TlsSink,
    make_station,
    trusting,
)
from tests.support import Cloud, running_cloud, until
from tests.support import running as running_station

LOOPBACK = "127.0.0.1"
CSMS_NAME = "csms.test"
TAG = "04A2B3C4"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A CA and a CSMS certificate for the name csms.test only (no IP address), so a
    connection to 127.0.0.1 succeeds only when the certificate is checked for the name."""
    pki = Pki(CertificateAuthority.create(), tmp_path / "pki")
    pki.dir.mkdir()
    pki.ca.write_root(pki.dir / "root.pem")
    pki.write("server", pki.ca.issue_server([CSMS_NAME], ips=()))
    pki.write("ip", pki.ca.issue_server([], ips=[LOOPBACK]))
    pki.write("other", pki.ca.issue_server(["other.test"], ips=[LOOPBACK]))
    return pki


@contextlib.asynccontextmanager
async def tls_cloud(tmp_path: Path, pki: Pki, cert: str) -> AsyncIterator[Cloud]:
    async with running_cloud(
        tmp_path,
        tls_cert=pki.dir / f"{cert}.pem",
        tls_key=pki.dir / f"{cert}.key",
        tls_client_ca=pki.dir / "root.pem",
        tls_client_organization="PlugStream",
    ) as cloud:
        yield cloud


@pytest.fixture
async def ntp_lab() -> AsyncIterator[LabServer]:
    """Our SNTP responder on 127.0.0.1; ``behaviour = "silent"`` is an unreachable server."""
    async with sntp_server() as server:
        yield server


@contextlib.asynccontextmanager
async def dns_servers(*behaviours: str) -> AsyncIterator[list[FakeDns]]:
    """Our DNS servers on 127.0.0.1, each answering csms.test with 127.0.0.1 (or not)."""
    loop = asyncio.get_running_loop()
    started: list[FakeDns] = []
    try:
        for behaviour in behaviours:
            _, proto = await loop.create_datagram_endpoint(
                lambda b=behaviour: FakeDns(b, addresses=(LOOPBACK,)),  # type: ignore[misc]
                local_addr=(LOOPBACK, 0),
            )
            started.append(proto)
        yield started
    finally:
        for proto in started:
            if proto.transport is not None:
                proto.transport.close()


def lab_network(lab: LabServer, clock: CorrectedClock, **dns: object) -> StationNetwork:
    """The station's network pointed at the loopback lab: fast NTP retries, no Cloudflare."""
    return StationNetwork(
        clock=clock,
        ntp_host=LOOPBACK,
        ntp_port=lab.port,
        ntp_poll=1.0,
        ntp_min_retry=0.1,
        ntp_timeout=0.3,
        dns_fallbacks=(),
        **dns,  # type: ignore[arg-type]
    )


def dns_only(*servers: FakeDns) -> StationNetwork:
    """No clock (no time gate): DHCP's DNS servers only, each given 0.3 s."""
    sources = ("dhcp-primary", "dhcp-secondary")
    return StationNetwork(
        dhcp_dns=[s.server(src) for s, src in zip(servers, sources, strict=False)],
        dns_fallbacks=(),
        dns_timeout=0.3,
    )


async def profile_2(
    cloud: Cloud | None,
    pki: Pki,
    version: str,
    path: Path,
    cp: str,
    clock: ShiftedClock | None = None,
) -> Station:
    if cloud is not None:
        await cloud.store.stations.register(cp, password=PASSWORD, security_profile=2)
    station = trusting(make_station(version, path, cp, clock=clock), pki)
    station.set_password(PASSWORD)
    station.set_security_profile(2)
    return station


# --- the time gate --------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_no_ntp_answer_no_authenticated_connection_then_connects_once_synchronized(
    tmp_path: Path, pki: Pki, ntp_lab: LabServer, version: str
) -> None:
    """The article: with a wrong (here: unknown) clock the station cannot authenticate,
    so it does not try -- no TLS handshake, no password on the wire -- and says why
    (offline_reason names NTP). When the NTP server answers, it syncs and connects
    (A00.FR.301-303 over the TLS it can now check)."""
    ntp_lab.behaviour = "silent"
    async with tls_cloud(tmp_path, pki, "ip") as cloud:
        station = await profile_2(cloud, pki, version, tmp_path / "st", "CPN")
        station.network = lab_network(ntp_lab, CorrectedClock())
        async with running_station(station, f"wss://{LOOPBACK}:{cloud.port}/ocpp"):
            await until(
                lambda: ntp_lab.requests >= 3 and station.offline_reason, "3 NTP tries, offline"
            )
            reason = station.offline_reason or ""
            assert "clock not synchronized" in reason and "NTP" in reason, reason
            assert f"{LOOPBACK}:{ntp_lab.port}" in reason
            assert not station.online
            assert not cloud.gateway.is_connected("CPN")
            assert cloud.gateway.failed_logins["CPN"] == 0  # not even a refused attempt
            ntp_lab.behaviour = "correct"
            await until(lambda: station.online, "the station online")
            assert station.registration == "Accepted"
            assert cloud.gateway.is_connected("CPN")
            assert station.offline_reason is None
            assert station.network.clock is not None and station.network.clock.synchronized


@pytest.mark.socket
async def test_plain_ws_at_profile_0_is_not_held_up_by_the_clock(tmp_path: Path) -> None:
    """Profile 0 over ws:// authenticates nothing: no NTP answer is needed to connect."""
    async with running_cloud(tmp_path) as cloud:
        await cloud.store.stations.register("CP0", security_profile=0)
        station = make_station("1.6", tmp_path / "st", "CP0")
        clock = CorrectedClock()
        station.network = StationNetwork(clock=clock)  # no NTP server: never synchronized
        async with running_station(station, f"ws://{LOOPBACK}:{cloud.port}/ocpp"):
            await until(lambda: station.online, "the station online")
        assert not clock.synchronized


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_a_clock_days_off_is_corrected_by_ntp_the_tls_check_passes_and_SettingSystemTime_is_logged(
    tmp_path: Path, pki: Pki, ntp_lab: LabServer, version: str
) -> None:
    """The station's system clock is three days behind: by it the CSMS's certificate is
    not valid yet. NTP corrects the station's clock, the certificate is checked by the
    corrected time and the connection succeeds; the step is the security event
    SettingSystemTime (1.6 security whitepaper; 2.0.1 appendix, security events)."""
    behind = ShiftedClock(-timedelta(days=3))
    async with tls_cloud(tmp_path, pki, "ip") as cloud:
        station = await profile_2(cloud, pki, version, tmp_path / "st", "CPC", behind)
        leaf = pki.ca.issue_server([], ips=[LOOPBACK]).certificate
        assert behind.now() < leaf.not_valid_before_utc  # the premise: wrong clock, no TLS
        clock = CorrectedClock(system_now=behind.now)
        station.network = lab_network(ntp_lab, clock)
        async with running_station(station, f"wss://{LOOPBACK}:{cloud.port}/ocpp"):
            await until(lambda: station.online, "the station online")
            assert station.tls_rejected is None
            assert cloud.gateway.is_connected("CPC")
        assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)
    steps = [e for e in station.security_log.entries() if e.type == "SettingSystemTime"]
    assert len(steps) == 1, station.security_log.types()
    assert "+259200 s" in (steps[0].tech_info or "")  # three days forward


@pytest.mark.socket
async def test_without_the_network_the_same_wrong_clock_refuses_the_csms(
    tmp_path: Path, pki: Pki
) -> None:
    """The contrast (default ``network=None``): the station checks by its own clock, three
    days behind, and refuses the CSMS as not yet valid."""
    async with tls_cloud(tmp_path, pki, "ip") as cloud:
        behind = ShiftedClock(-timedelta(days=3))
        station = await profile_2(cloud, pki, "1.6", tmp_path / "st", "CPW", behind)
        async with running_station(station, f"wss://{LOOPBACK}:{cloud.port}/ocpp"):
            await until(lambda: station.tls_rejected is not None, "the TLS refusal")
            assert "not yet valid" in station.tls_rejected.reason  # type: ignore[union-attr]
            assert not cloud.gateway.is_connected("CPW")


# --- DNS --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_a_silent_dhcp_primary_is_passed_over_and_the_certificate_is_checked_for_the_name(
    tmp_path: Path, pki: Pki, version: str
) -> None:
    """The article's order: the DHCP primary DNS server does not answer promptly, the
    secondary gives csms.test = 127.0.0.1; the station connects to that address with TLS
    server name and certificate check for csms.test (the certificate names no address)."""
    async with (
        tls_cloud(tmp_path, pki, "server") as cloud,
        dns_servers("silent", "answer") as (primary, secondary),
    ):
        station = await profile_2(cloud, pki, version, tmp_path / "st", "CPD")
        station.network = network = dns_only(primary, secondary)
        async with running_station(station, f"wss://{CSMS_NAME}:{cloud.port}/ocpp"):
            await until(lambda: station.online, "the station online")
            assert cloud.gateway.is_connected("CPD")
        assert primary.queries and secondary.queries
        assert primary.queries[0] == f"{CSMS_NAME}."
        found = network.last_resolved
        assert found is not None and found.server == secondary.server("dhcp-secondary")
        assert [a.reason for a in found.attempts] == ["timeout", "answer"]


@pytest.mark.socket
async def test_the_certificate_must_name_the_host_not_the_address(tmp_path: Path, pki: Pki) -> None:
    """Resolving the name does not weaken the check: a certificate for other.test (and
    127.0.0.1) is refused for csms.test before anything is sent."""
    async with (
        dns_servers("answer") as (primary,),
        TlsSink(pki.dir / "other.pem", pki.dir / "other.key") as sink,
    ):
        station = await profile_2(None, pki, "1.6", tmp_path / "st", "CPO")
        station.network = dns_only(primary)
        async with running_station(station, sink.url(CSMS_NAME)):
            await until(lambda: station.tls_rejected is not None, "the TLS refusal")
            rejected = station.tls_rejected
            assert rejected is not None and rejected.host == CSMS_NAME
            assert "csms.test" in rejected.reason
            # the sink read the refused connection to its end: all the station sent
            await until(lambda: sink.ended, "the refused connection closed")
            assert sink.received == b""


@pytest.mark.socket
async def test_every_dns_server_failing_means_no_connection_and_the_reason_lists_them(
    tmp_path: Path, pki: Pki
) -> None:
    """No address: the station does not connect (nothing reaches the CSMS) and its
    offline reason names each server and how it failed; it keeps retrying."""
    async with (
        dns_servers("silent", "servfail") as (primary, secondary),
        TlsSink(pki.dir / "server.pem", pki.dir / "server.key") as sink,
    ):
        station = await profile_2(None, pki, "1.6", tmp_path / "st", "CPF")
        station.network = dns_only(primary, secondary)
        async with running_station(station, sink.url(CSMS_NAME)):
            await until(lambda: len(secondary.queries) >= 2, "2 queries to the secondary")
            reason = station.offline_reason or ""
            assert reason.startswith("DNS: csms.test A could not be resolved"), reason
            assert f"DHCP primary 127.0.0.1:{primary.port} timed out after 0.3 s" in reason
            assert f"DHCP secondary 127.0.0.1:{secondary.port} answered SERVFAIL" in reason
            assert sink.handshakes == 0
            assert not station.online


@pytest.mark.socket
async def test_route_skips_dns_for_ip_literals_and_names_the_address_for_host_names() -> None:
    """The sans-connection part: IP literals and localhost are connected to as they are;
    a name becomes ``host=`` (TCP destination only) with no proxy in between."""
    async with dns_servers("answer") as (server,):
        network = StationNetwork(
            dhcp_dns=[DnsServer(LOOPBACK, server.port, source="dhcp-primary")],
            dns_fallbacks=(),
            dns_timeout=0.3,
        )
        for url in ("wss://127.0.0.1:1/ocpp/CP", "wss://[::1]:1/ocpp/CP", "ws://localhost:1/"):
            assert await network.route(url, authenticated=True) == {}
        route = await network.route(f"wss://{CSMS_NAME}:1/ocpp/CP", authenticated=True)
        assert route == {"host": LOOPBACK, "proxy": None}
        assert server.queries == [f"{CSMS_NAME}."]
    gated = StationNetwork(clock=CorrectedClock(server=f"{LOOPBACK}:9"), dns_fallbacks=())
    with pytest.raises(NetworkNotReady, match=r"no NTP query made yet to 127\.0\.0\.1:9"):
        await gated.route("wss://127.0.0.1:1/ocpp/CP", authenticated=True)
    assert await gated.route("ws://127.0.0.1:1/ocpp/CP", authenticated=False) == {}


# --- links: data saving on LTE, failover, network.json -----------------------------------


def _use(network: StationNetwork, actions: list[Action]) -> None:
    for action in actions:
        network.apply(action)


def _link(station: Station) -> str:
    """The link the station counts its bytes on (a call: mypy does not narrow it)."""
    return station.link


def _network_json(data_dir: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((data_dir / STATUS_FILE).read_text())
    return found


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.socket
async def test_on_lte_heartbeat_and_meter_intervals_lengthen_and_the_csms_values_come_back(
    tmp_path: Path, ntp_lab: LabServer, version: str
) -> None:
    """Article: LTE is optional and metered. While the station is on LTE it heartbeats at
    most hourly and samples meter values at most every 5 min (never shorter than the
    CSMS's values: LinkPolicy), and says so in its log and network.json; back on
    Ethernet the CSMS's values apply again. The link switch closes the connection at
    once and reconnects over the new link; the transaction goes on. Loopback: both link
    types are the ``lo`` interface and the test feeds the link manager's events."""
    data_dir = tmp_path / "st"
    async with running_cloud(tmp_path, heartbeat_interval=20) as cloud:
        await cloud.store.stations.register("CPL", security_profile=0)
        await cloud.store.id_tokens.put(IdTokenRecord(TAG))
        station = make_station(version, data_dir, "CPL")
        network = lab_network(
            ntp_lab,
            CorrectedClock(),
            links={"ethernet": "lo", "lte": "lo"},
            link_watch=False,
            link_hold_down=30.0,
            status_dir=data_dir,
        )
        station.network = network
        manager = network.manager
        assert manager is not None
        async with running_station(station, f"ws://{LOOPBACK}:{cloud.port}/ocpp"):
            await until(
                lambda: "no link is up yet" in (station.offline_reason or ""), "offline: no link"
            )
            assert _network_json(data_dir)["offline_reason"].startswith("no link is up yet")
            _use(network, manager.health("ethernet", True, 0.0))
            _use(network, manager.health("lte", True, 0.0))
            await until(lambda: station.online, "the station online")
            assert _link(station) == "ethernet"
            assert station.heartbeat_interval == 20
            assert station.effective_heartbeat_interval() == 20
            station.plug_in(Ev(CITY_CAR, soc=30.0))
            assert await station.swipe(TAG)
            tx: Any = await until(lambda: station.transaction, "the transaction")
            schedule = tx.schedule  # the transaction's meter-values schedule
            assert schedule.sample_interval == 60
            first = station.endpoint

            _use(network, manager.carrier("ethernet", False, 1.0))  # cable pulled
            await until(lambda: station.online and station.endpoint is not first, "online over LTE")
            assert _link(station) == "lte"
            assert station.transaction is tx  # the same transaction goes on
            assert station.effective_heartbeat_interval() == 3600
            assert station.heartbeat_interval == 20  # the CSMS's value is kept
            assert schedule.sample_interval == 300
            status = _network_json(data_dir)
            assert status["active_link"] == "lte"
            assert status["links"]["ethernet"] == {
                "interface": "lo",
                "health": "down",
                "carrier": False,
                "failures": 0,
                "detail": "",
            }
            assert status["data_saving"] == {
                "link": "lte",
                "heartbeat_interval_s": 3600,
                "csms_heartbeat_interval_s": 20,
                "meter_interval_s": 300,
                "csms_meter_interval_s": 60,
                "optional_uploads": False,
                "deferred": [],
            }
            assert status["offline_reason"] is None
            await until(
                lambda: _network_json(data_dir)["clock"]["synchronized"], "clock synchronized"
            )
            clock = _network_json(data_dir)["clock"]
            assert clock["why_not"] is None and clock["server"] == f"{LOOPBACK}:{ntp_lab.port}"

            second = station.endpoint
            _use(network, manager.carrier("ethernet", True, 2.0))
            _use(network, manager.health("ethernet", True, 2.0))
            _use(network, manager.tick(20.0))
            assert station.endpoint is second  # within the hold-down: stays on LTE
            _use(network, manager.health("ethernet", True, 32.0))  # healthy for 30 s
            await until(
                lambda: station.online and station.endpoint is not second, "back on Ethernet"
            )
            assert _link(station) == "ethernet"
            assert station.transaction is tx
            assert station.effective_heartbeat_interval() == 20
            assert schedule.sample_interval == 60
            assert _network_json(data_dir)["data_saving"] is None
    per_link = station.traffic.per_link()
    assert per_link["ethernet"][0] > 0 and per_link["lte"][0] > 0  # bytes counted per link


@pytest.mark.socket
async def test_over_a_managed_link_tls_still_checks_the_certificate_for_the_name(
    tmp_path: Path, pki: Pki, ntp_lab: LabServer
) -> None:
    """With links the station hands websockets a socket it connected itself (bound to
    the link's interface); the TLS server name stays the URL's host: a certificate for
    csms.test only (no address) is accepted for wss://csms.test resolved to 127.0.0.1."""
    async with (
        tls_cloud(tmp_path, pki, "server") as cloud,
        dns_servers("answer") as (primary,),
    ):
        station = await profile_2(cloud, pki, "2.0.1", tmp_path / "st", "CPT")
        network = lab_network(
            ntp_lab,
            CorrectedClock(),
            dhcp_dns=[primary.server("dhcp-primary")],
            links={"ethernet": "lo"},
            link_watch=False,
        )
        station.network = network
        assert network.manager is not None
        _use(network, network.manager.health("ethernet", True, 0.0))
        async with running_station(station, f"wss://{CSMS_NAME}:{cloud.port}/ocpp"):
            await until(lambda: station.online, "the station online")
            assert station.tls_rejected is None and cloud.gateway.is_connected("CPT")
            assert _link(station) == "ethernet"
        assert primary.queries == [f"{CSMS_NAME}."]


@pytest.mark.unit
def test_without_network_flags_the_station_keeps_the_os_stack() -> None:
    """No network flag: no network stack (no 1.1.1.1, no pool.ntp.org; today's default).
    Any network flag: the stack, with the article's defaults for what was not given."""
    from plugstream.cli import _station_network

    none: dict[str, Any] = {
        "dns": [],
        "dns_fallback": None,
        "no_dns_fallback": False,
        "ntp_server": None,
        "links": [],
        "hold_down": 60.0,
        "wifi": (None, None, None),
    }
    assert _station_network(None, **none) is None
    assert _station_network(False, **none) is None
    product = _station_network(True, **none)
    assert product.ntp_host == "pool.ntp.org" and product.ntp_port == 123
    assert [s.address for s in product.dns_servers()] == ["1.1.1.1", "1.0.0.1"]
    assert product.manager is None
    lab = _station_network(
        None,
        **{**none, "dns": ["192.0.2.53"], "no_dns_fallback": True, "ntp_server": "192.0.2.1:1123"},
    )
    assert [s.address for s in lab.dns_servers()] == ["192.0.2.53"]
    assert (lab.ntp_host, lab.ntp_port) == ("192.0.2.1", 1123)
    linked = _station_network(None, **{**none, "links": ["eth0=ethernet", "wwan0=lte"]})
    assert linked.links == {"ethernet": "eth0", "lte": "wwan0"}


@pytest.mark.parametrize(
    ("flags", "word"),
    [
        (["--link", "eth0=fiber"], "use ethernet, wifi or lte"),
        (["--link", "eth0"], "IFACE=TYPE"),
        (["--link", "eth0=ethernet", "--link", "eth0=lte"], "one link type per interface"),
        (["--wifi-ssid", "site", "--wifi-passphrase", "12345678", "--wifi-channel", "13"],
         "channel 13 is outside 1-11"),
        (["--wifi-ssid", "site", "--wifi-passphrase", "12345678", "--wifi-channel", "36"],
         "channel 36 is outside 1-11"),
        (["--wifi-channel", "6"], "together"),
        (["--dns", "dns.example"], "not an IP address"),
        (["--dns-fallback", "9.9.9.9", "--no-dns-fallback"], "--no-dns-fallback"),
        (["--ntp-server", "ntp.test:0"], "HOST[:PORT]"),
        (["--no-network-stack", "--link", "eth0=ethernet"], "cannot go with"),
        (["--dhcp", "nosuch9"], "no such interface: nosuch9"),
        (["--dhcp-lease", "nosuch9"], "no such interface: nosuch9"),
        (["--dhcp", "lo", "--dhcp-lease", "lo"], "not both"),
        (["--time-scale", "0"], "the time scale must be positive"),
        (["--time-scale", "-60"], "the time scale must be positive"),
    ],
)  # fmt: skip
@pytest.mark.socket
def test_bad_network_flags_are_one_line_and_exit_code_2(
    flags: list[str], word: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "plugstream.cli", "station", "run", "--id", "CP9", "--model", "7",
         "--csms", "ws://127.0.0.1:1/ocpp", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and word in lines[0], done.stderr
    assert lines[0].startswith("plugstream: error: ")
    assert not (tmp_path / "station-CP9").exists()


@pytest.mark.unit
async def test_on_a_device_whose_os_does_dhcp_the_leases_dns_servers_are_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue: "on a real device it reads the lease of the system's DHCP client". The
    station follows systemd-networkd's lease file: its DNS servers lead the priority list,
    and a renumbered lease (new DNS servers) is taken up on the next read."""
    monkeypatch.setattr("plugstream.station.network.SYSTEM_LEASE_POLL", 0.05)
    sysfs = tmp_path / "sys/class/net/eth0"
    sysfs.mkdir(parents=True)
    (sysfs / "ifindex").write_text("2\n")
    lease = tmp_path / "run/systemd/netif/leases/2"
    lease.parent.mkdir(parents=True)
    text = "ADDRESS=192.0.2.77\nNETMASK=255.255.255.0\nROUTER=192.0.2.1\nDNS={}\nLIFETIME=3600\n"
    lease.write_text(text.format("192.0.2.53 192.0.2.54"))
    network = StationNetwork(
        dhcp_interface="eth0",
        dhcp_system=True,
        lease_root=tmp_path,
        dns_fallbacks=(),
        status_dir=tmp_path,
    )
    with pytest.raises(NetworkNotReady, match="no DHCP lease on eth0 yet"):
        await network.route("ws://csms.test/ocpp/CP", authenticated=False)
    task = asyncio.create_task(network.keep_dhcp())
    try:
        await until(lambda: network.lease is not None, "the lease read")
        assert [s.address for s in network.dns_servers()] == ["192.0.2.53", "192.0.2.54"]
        status = json.loads((tmp_path / STATUS_FILE).read_text())
        assert status["dhcp"]["address"] == "192.0.2.77"
        lease.write_text(text.format("192.0.2.99"))
        await until(
            lambda: [s.address for s in network.dns_servers()] == ["192.0.2.99"],
            "the renumbered lease's DNS server",
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
