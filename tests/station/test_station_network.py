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
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from plugstream.net.dns import DnsServer
from plugstream.net.ntp import CorrectedClock
from plugstream.pki.authority import CertificateAuthority
from plugstream.station.network import NetworkNotReady, StationNetwork
from tests.cloud.test_gateway import Cloud, running
from tests.net.test_dns import FakeDns
from tests.net.test_ntp import LabServer, _LabProtocol
from tests.security.conftest import (
    PASSWORD,
    VERSIONS,
    Pki,
    ShiftedClock,
    Station,
    TlsSink,
    make_station,
    running_station,
    trusting,
    until,
)

LOOPBACK = "127.0.0.1"
CSMS_NAME = "csms.test"


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
    async with running(
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
    server = LabServer()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _LabProtocol(server), local_addr=(LOOPBACK, 0)
    )
    server.port = transport.get_extra_info("sockname")[1]
    try:
        yield server
    finally:
        transport.close()


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
        await cloud.store.register_station(cp, password=PASSWORD, security_profile=2)
    station = trusting(make_station(version, path, cp, clock=clock), pki)
    station.set_password(PASSWORD)
    station.set_security_profile(2)
    return station


# --- the time gate --------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
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
            await until(lambda: ntp_lab.requests >= 3 and station.offline_reason)
            reason = station.offline_reason or ""
            assert "clock not synchronized" in reason and "NTP" in reason, reason
            assert f"{LOOPBACK}:{ntp_lab.port}" in reason
            assert not station.online
            assert not cloud.gateway.is_connected("CPN")
            assert cloud.gateway.failed_logins["CPN"] == 0  # not even a refused attempt
            ntp_lab.behaviour = "correct"
            await until(lambda: station.online)
            assert station.registration == "Accepted"
            assert cloud.gateway.is_connected("CPN")
            assert station.offline_reason is None
            assert station.network.clock is not None and station.network.clock.synchronized


async def test_plain_ws_at_profile_0_is_not_held_up_by_the_clock(tmp_path: Path) -> None:
    """Profile 0 over ws:// authenticates nothing: no NTP answer is needed to connect."""
    async with running(tmp_path) as cloud:
        await cloud.store.register_station("CP0", security_profile=0)
        station = make_station("1.6", tmp_path / "st", "CP0")
        clock = CorrectedClock()
        station.network = StationNetwork(clock=clock)  # no NTP server: never synchronized
        async with running_station(station, f"ws://{LOOPBACK}:{cloud.port}/ocpp"):
            await until(lambda: station.online)
        assert not clock.synchronized


@pytest.mark.parametrize("version", VERSIONS)
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
            await until(lambda: station.online)
            assert station.tls_rejected is None
            assert cloud.gateway.is_connected("CPC")
        assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)
    steps = [e for e in station.security_log.entries() if e.type == "SettingSystemTime"]
    assert len(steps) == 1, station.security_log.types()
    assert "+259200 s" in (steps[0].tech_info or "")  # three days forward


async def test_without_the_network_the_same_wrong_clock_refuses_the_csms(
    tmp_path: Path, pki: Pki
) -> None:
    """The contrast (default ``network=None``): the station checks by its own clock, three
    days behind, and refuses the CSMS as not yet valid."""
    async with tls_cloud(tmp_path, pki, "ip") as cloud:
        behind = ShiftedClock(-timedelta(days=3))
        station = await profile_2(cloud, pki, "1.6", tmp_path / "st", "CPW", behind)
        async with running_station(station, f"wss://{LOOPBACK}:{cloud.port}/ocpp"):
            await until(lambda: station.tls_rejected is not None)
            assert "not yet valid" in station.tls_rejected.reason  # type: ignore[union-attr]
            assert not cloud.gateway.is_connected("CPW")


# --- DNS --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
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
            await until(lambda: station.online)
            assert cloud.gateway.is_connected("CPD")
        assert primary.queries and secondary.queries
        assert primary.queries[0] == f"{CSMS_NAME}."
        found = network.last_resolved
        assert found is not None and found.server == secondary.server("dhcp-secondary")
        assert [a.reason for a in found.attempts] == ["timeout", "answer"]


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
            await until(lambda: station.tls_rejected is not None)
            rejected = station.tls_rejected
            assert rejected is not None and rejected.host == CSMS_NAME
            assert "csms.test" in rejected.reason
            await asyncio.sleep(0.2)
            assert sink.received == b""


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
            await until(lambda: len(secondary.queries) >= 2)
            reason = station.offline_reason or ""
            assert reason.startswith("DNS: csms.test A could not be resolved"), reason
            assert f"DHCP primary 127.0.0.1:{primary.port} timed out after 0.3 s" in reason
            assert f"DHCP secondary 127.0.0.1:{secondary.port} answered SERVFAIL" in reason
            assert sink.handshakes == 0
            assert not station.online


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
