"""``plugstream netcheck`` on a real site network (the lab): run on the network admin's laptop, it
passes every row on a correctly configured site, and each way of breaking the site's firewall
or DNS is reported as the row the article's Table 2 names, with the fix to make.

One lab for the whole module; each case breaks it, runs netcheck, and repairs it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from plugstream.lab.topology import CLOUD, DHCP_DNS, FALLBACK_DNS, SETUP, Lab
from plugstream.netcheck.check import INTERCEPTED
from plugstream.netcheck.firewall import OCPP_HOST, SETUP_HOST
from tests.lab.conftest import plugstream_in

pytestmark = pytest.mark.lab

TIMEOUT = "1"  # seconds per check: what a dropped packet costs


def netcheck(lab: Lab, *args: str) -> tuple[int, dict[str, Any]]:
    """netcheck as the admin runs it on the laptop: its exit code and its JSON report."""
    flags = list(args or lab.netcheck_args())
    done = plugstream_in(lab, lab.laptop, "netcheck", *flags, "--timeout", TIMEOUT, "--json")
    assert done.stdout, done.stderr[-2000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


def failing(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for row in report["rows"] if row["status"] == "fail"]


def test_a_correctly_configured_site_passes_every_row(lab: Lab) -> None:
    code, report = netcheck(lab)
    assert code == 0, report
    assert report["result"] == "pass"
    assert all(row["status"] == "pass" for row in report["rows"]), report
    checks = [row["check"] for row in report["rows"]]
    # DHCP's DNS, 4 servers x 2 names, NTP, TCP and TLS for both names
    assert checks == ["dhcp-dns", *["dns"] * 8, "ntp", "tcp", "tcp", "tls", "tls"]
    for row in report["rows"]:
        if row["check"] == "dns":
            assert row["detail"] == (SETUP if row["target"].endswith(SETUP_HOST) else CLOUD)
        if row["check"] == "tls":
            assert f"{lab.operator} CSMS Root CA" in row["detail"]
    assert report["notes"] == []


@dataclass(frozen=True)
class Case:
    """One way to break the site, its repair, and the rows netcheck must fail with."""

    id: str
    breaks: Callable[[Lab], None]
    repairs: Callable[[Lab], None]
    rows: dict[tuple[str, str], str]
    """(check, target as it starts) -> the fix the row must give."""


def _block_fallbacks(lab: Lab) -> None:
    for address in FALLBACK_DNS:
        lab.block(53, "udp", address)


def _unblock_fallbacks(lab: Lab) -> None:
    for address in FALLBACK_DNS:
        lab.unblock(53, "udp", address)


CASES = [
    Case(
        "udp-123-blocked",
        lambda lab: lab.block(123, "udp"),
        lambda lab: lab.unblock(123, "udp"),
        {("ntp", "pool.ntp.org"): "open UDP 123 to pool.ntp.org"},
    ),
    Case(
        "tcp-443-to-the-ocpp-name-blocked",
        lambda lab: lab.block(443, "tcp", CLOUD),
        lambda lab: lab.unblock(443, "tcp", CLOUD),
        # the setup name has its own address and rule: it still passes
        {
            ("tcp", OCPP_HOST): f"open TCP 443 to {OCPP_HOST}",
            ("tls", OCPP_HOST): "see the TCP row",
        },
    ),
    Case(
        "udp-53-to-the-fallback-resolvers-blocked",
        _block_fallbacks,
        _unblock_fallbacks,
        {
            ("dns", f"fallback {address} -> {name}"): f"open UDP 53 to {address}"
            for address in FALLBACK_DNS
            for name in (OCPP_HOST, SETUP_HOST)
        },
    ),
    Case(
        "dhcp-primary-dns-down",
        lambda lab: lab.stop_dns(DHCP_DNS[0]),
        lambda lab: lab.start_dns(DHCP_DNS[0]),
        {
            ("dns", f"DHCP primary {DHCP_DNS[0]} -> {name}"): (
                f"open UDP 53 to {DHCP_DNS[0]} (DNS server from DHCP), or fix DHCP option 6"
            )
            for name in (OCPP_HOST, SETUP_HOST)
        },
    ),
    Case(
        "tls-interception",
        lambda lab: lab.intercept_tls(),
        lambda lab: lab.stop_intercepting(),
        {
            ("tls", name): f"exempt {name} from TLS inspection and from the captive portal"
            for name in (OCPP_HOST, SETUP_HOST)
        },
    ),
]


@pytest.fixture(params=CASES, ids=[case.id for case in CASES])
def broken(lab: Lab, request: pytest.FixtureRequest) -> Iterator[tuple[Lab, Case]]:
    case: Case = request.param
    case.breaks(lab)
    try:
        yield lab, case
    finally:
        case.repairs(lab)


def test_each_broken_firewall_rule_is_reported_as_its_row_with_its_fix(
    broken: tuple[Lab, Case],
) -> None:
    lab, case = broken
    code, report = netcheck(lab)
    assert code == 1 and report["result"] == "fail"
    failed = {(row["check"], row["target"]): row for row in failing(report)}
    found: dict[tuple[str, str], str] = {}
    for (check, start), fix in case.rows.items():
        matches = [key for key in failed if key[0] == check and key[1].startswith(start)]
        assert len(matches) == 1, (check, start, sorted(failed))
        found[matches[0]] = fix
        assert failed[matches[0]]["fix"] == fix, failed[matches[0]]
    # nothing else failed: the report points at the broken rule only
    assert set(failed) == set(found), sorted(set(failed) - set(found))
    if case.id == "tls-interception":
        for row in failed.values():
            assert row["detail"].startswith(INTERCEPTED)
        tcp = [row for row in report["rows"] if row["check"] == "tcp"]
        assert all(row["status"] == "pass" for row in tcp)  # the middlebox answers on 443
    if case.id == "dhcp-primary-dns-down":
        # the station still finds the cloud, through the secondary, but slower each time
        assert any("via DHCP secondary" in note for note in report["notes"]), report["notes"]


def test_after_every_repair_the_site_passes_again(lab: Lab) -> None:
    code, report = netcheck(lab)
    assert code == 0, failing(report)


def dhcp_args(lab: Lab) -> list[str]:
    """The admin's way: ``--interface``, and the DNS servers come from DHCP itself."""
    return lab.netcheck_args(dhcp=True)


def test_netcheck_asks_the_sites_dhcp_server_and_checks_the_dns_servers_it_hands_out(
    lab: Lab,
) -> None:
    """The article: DHCP assigns the address and names the DNS servers. netcheck sends a real
    DHCPDISCOVER to the lab's dnsmasq (taking no address) and checks the servers offered."""
    code, report = netcheck(lab, *dhcp_args(lab))
    assert code == 0, failing(report)
    dhcp, dhcp_dns = report["rows"][:2]
    assert dhcp["check"] == "dhcp" and dhcp["status"] == "pass", dhcp
    assert dhcp["detail"].startswith("DHCPOFFER: 192.0.2.1")
    assert "router 192.0.2.1, DNS 192.0.2.2, 192.0.2.3" in dhcp["detail"]
    assert dhcp_dns["detail"] == "192.0.2.2, 192.0.2.3"
    dns = [row["target"] for row in report["rows"] if row["check"] == "dns"]
    assert dns[0].startswith("DHCP primary 192.0.2.2") and dns[2].startswith("DHCP secondary")


def test_a_dhcp_server_that_names_no_dns_server_is_said_and_the_fallbacks_carry(lab: Lab) -> None:
    lab.set_dhcp_dns(())
    try:
        code, report = netcheck(lab, *dhcp_args(lab))
    finally:
        lab.set_dhcp_dns(DHCP_DNS)
    assert code == 0, failing(report)
    dhcp, dhcp_dns = report["rows"][:2]
    assert dhcp["status"] == "pass" and dhcp["detail"].endswith("DNS none")
    assert dhcp_dns["status"] == "warn" and "only the fallbacks" in dhcp_dns["detail"]
    assert [row["target"].split()[0] for row in report["rows"] if row["check"] == "dns"] == [
        "fallback"
    ] * 4
