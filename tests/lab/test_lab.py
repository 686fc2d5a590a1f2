"""The lab's site network holds what the issue promises: the DHCP host's DNS answers the cloud
names with the cloud, the cloud completes a TLS handshake verified against the lab PKI, the
router lets out only the article's Table 2, nothing from outside reaches the LAN, its byte
counters count what a LAN host sends and receives, and nothing is left once the lab closes.

Everything is checked from inside the lab hosts, with processes, as a site's admin would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plugstream.lab.standins import ntp_reply
from plugstream.lab.topology import (
    CARRIER_LTE,
    CLOUD,
    DHCP_DNS,
    DHCP_RANGE,
    FALLBACK_DNS,
    INTERNET,
    LAPTOP,
    NETNS_PREFIX,
    NTP,
    ROUTER_LAN,
    ROUTER_WAN,
    SETUP,
    STATION_LTE,
    Lab,
    dnsmasq_dns_argv,
)
from plugstream.net.ntp import build_request, parse_response
from plugstream.netcheck.firewall import NTP_HOST, OCPP_HOST, SETUP_HOST, render
from tests.lab.conftest import python_in
from tests.support import until_sync

pytestmark = pytest.mark.lab

ASK_DNS = """
import json, sys
import dns.exception, dns.message, dns.query
server, out = sys.argv[1], {}
for name in sys.argv[2:]:
    try:
        reply = dns.query.udp(dns.message.make_query(name, "A"), server, timeout=1.0)
        out[name] = sorted(rr.address for rrset in reply.answer for rr in rrset)
    except dns.exception.Timeout:
        out[name] = "timeout"
print(json.dumps(out))
"""

CONNECT = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
def attempt(port):
    with socket.socket() as s:
        s.settimeout(1.0)
        try:
            s.connect((sys.argv[1], int(port)))
            return "connected"
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return exc.strerror or type(exc).__name__
with ThreadPoolExecutor(8) as pool:
    print(json.dumps(dict(zip(sys.argv[2:], pool.map(attempt, sys.argv[2:])))))
"""

TLS = """
import json, socket, ssl, sys
cafile, address, name = sys.argv[1:4]
context = ssl.create_default_context(cafile=None if cafile == "-" else cafile)
try:
    with socket.create_connection((address, 443), timeout=2) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            issuer = dict(x[0] for x in tls.getpeercert()["issuer"])
            print(json.dumps({"ok": True, "issuer": issuer["commonName"], "tls": tls.version()}))
except ssl.SSLCertVerificationError as exc:
    print(json.dumps({"ok": False, "error": exc.verify_message}))
"""

NTP_QUERY = """
import asyncio, json, socket
from plugstream.net.ntp import query
address = socket.getaddrinfo("pool.ntp.org", 123, type=socket.SOCK_DGRAM)[0][4][0]
sample = asyncio.run(query("pool.ntp.org", 123, timeout=2.0))
print(json.dumps({"address": address, "offset": sample.offset, "stratum": sample.stratum}))
"""

LISTEN = """
import signal, socket
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8080))
    s.listen()
    signal.pause()  # listening until the test stops it, by PID
"""

TRANSFER = """
import json, socket, sys, time
from plugstream.net.ntp import build_request
requests, bulk = int(sys.argv[1]), int(sys.argv[2])
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(1.0)
    s.connect((sys.argv[3], 123))
    answered = 0
    for _ in range(requests):
        s.send(build_request(time.time()))
        try:
            answered += len(s.recv(512)) == 48
        except TimeoutError:
            pass
    for _ in range(bulk):
        s.send(bytes(1000))  # mode 0: not a client request, the server drops it
print(json.dumps({"answered": answered}))
"""


def netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_the_dhcp_hosts_dns_answers_the_cloud_names_with_the_cloud(lab: Lab) -> None:
    for server in (*DHCP_DNS, *FALLBACK_DNS):
        answers = python_in(lab, lab.laptop, ASK_DNS, server, OCPP_HOST, SETUP_HOST, NTP_HOST)
        assert answers == {OCPP_HOST: [CLOUD], SETUP_HOST: [SETUP], NTP_HOST: [NTP]}, server


def test_the_cloud_completes_a_tls_handshake_verified_against_the_lab_root(lab: Lab) -> None:
    for name in (OCPP_HOST, SETUP_HOST):
        outcome = python_in(lab, lab.laptop, TLS, str(lab.root_pem), CLOUD, name)
        assert outcome["ok"], outcome
        assert outcome["issuer"] == f"{lab.operator} CSMS Root CA"
        assert outcome["tls"] in ("TLSv1.2", "TLSv1.3")
    # the system's store does not know the lab's root: the trust is the lab PKI's, no other
    outcome = python_in(lab, lab.laptop, TLS, "-", CLOUD, OCPP_HOST)
    assert not outcome["ok"]
    assert outcome["error"] in (
        "self-signed certificate in certificate chain",  # the cloud sends its root along
        "unable to get local issuer certificate",
    )


def test_the_router_drops_every_other_port_to_the_cloud(lab: Lab) -> None:
    outcome = python_in(lab, lab.laptop, CONNECT, CLOUD, "443", "80", "22", "8080")
    # a refused connection would mean the SYN reached the cloud: dropped means no answer at all
    assert outcome == {"443": "connected", "80": "timeout", "22": "timeout", "8080": "timeout"}
    # from the internet side, without the router, the cloud does answer (refuses) those ports
    outside = python_in(lab, lab.internet, CONNECT, CLOUD, "80", "22")
    assert outside == {"80": "Connection refused", "22": "Connection refused"}


def test_ntp_on_udp_123_answers_for_pool_ntp_org(lab: Lab) -> None:
    outcome = python_in(lab, lab.laptop, NTP_QUERY)
    assert outcome["address"] == NTP
    assert abs(outcome["offset"]) < 0.5
    assert outcome["stratum"] == 2


def test_dns_to_an_internet_address_that_is_no_allowed_resolver_is_dropped(lab: Lab) -> None:
    records = {OCPP_HOST: CLOUD}
    rogue = lab.internet.start(
        *dnsmasq_dns_argv(INTERNET, records, lab.logs, "dns-rogue"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        until_sync(
            lambda: f"{INTERNET}:53" in lab.internet.run("ss", "-Hlun", check=False),
            "the rogue DNS server listening",
        )
        # it answers whoever reaches it: the cloud host, on the internet side
        assert python_in(lab, lab.cloud, ASK_DNS, INTERNET, OCPP_HOST) == {OCPP_HOST: [CLOUD]}
        # but the site's router lets no station reach it
        assert python_in(lab, lab.laptop, ASK_DNS, INTERNET, OCPP_HOST) == {OCPP_HOST: "timeout"}
    finally:
        lab.internet.stop(rogue)


def test_nothing_outside_can_connect_to_the_lan(lab: Lab) -> None:
    listener = lab.laptop.start(sys.executable, "-c", LISTEN)
    try:
        until_sync(
            lambda: ":8080" in lab.laptop.run("ss", "-Hltn", check=False),
            "the laptop listening on 8080",
        )
        # on the LAN itself the laptop's port is open
        assert python_in(lab, lab.dhcp, CONNECT, LAPTOP, "8080") == {"8080": "connected"}
        # no route from the internet or the cloud to the LAN (NAT), nor to the station's LTE
        for host in (lab.internet, lab.cloud):
            for address in (LAPTOP, STATION_LTE):
                outcome = python_in(lab, host, CONNECT, address, "8080")
                assert outcome["8080"] != "connected", (host.name, address, outcome)
        # and with a route via the router's WAN, its firewall drops the connection (no port
        # forwards: the article's "without opening incoming ports")
        lab.internet.ip("route", "add", "192.0.2.0/24", "via", ROUTER_WAN)
        try:
            outcome = python_in(lab, lab.internet, CONNECT, LAPTOP, "8080", "22")
            assert outcome == {"8080": "timeout", "22": "timeout"}
        finally:
            lab.internet.ip("route", "del", "192.0.2.0/24", "via", ROUTER_WAN)
    finally:
        lab.laptop.stop(listener)


def test_the_routers_byte_counters_count_what_a_lan_host_sent_and_received(lab: Lab) -> None:
    lab.reset_counters()
    assert lab.counters(LAPTOP) == (0, 0)
    requests, bulk = 50, 400
    outcome = python_in(lab, lab.laptop, TRANSFER, str(requests), str(bulk), NTP)
    assert outcome["answered"] == requests
    ip_udp = 20 + 8  # every datagram crosses the router as one IPv4 packet
    sent = requests * (48 + ip_udp) + bulk * (1000 + ip_udp)
    received = requests * (48 + ip_udp)
    counted_sent, counted_received = lab.counters(LAPTOP)
    assert counted_sent == pytest.approx(sent, rel=0.03)
    assert counted_received == pytest.approx(received, rel=0.03)
    # another LAN host's traffic is its own: the dhcp host sent nothing through the router
    assert lab.counters(DHCP_DNS[0]) == (0, 0)
    lab.reset_counters()
    assert lab.counters(LAPTOP) == (0, 0)


def test_lab_check_runs_netcheck_from_the_laptop_and_exits_with_its_code() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from plugstream.lab.cli import lab_app; lab_app(prog_name='plugstream lab')",
            "check",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"result": "pass"' in done.stdout
    bad = subprocess.run(
        [sys.executable, "-c", "from plugstream.lab.cli import lab_app; lab_app()", "check", "-x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "No such option" in bad.stderr


def test_lab_down_removes_what_a_killed_lab_left() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"{NETNS_PREFIX}{dead.pid}n1-router"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    # a process of the killed lab, still running in its namespace (until it is stopped)
    orphan = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "infinity"])
    try:
        done = subprocess.run(
            [sys.executable, "-c", "from plugstream.lab.cli import lab_app; lab_app()", "down"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert f"removed {name}" in done.stdout
        assert name not in netns_list()
        assert orphan.wait(5) != 0  # stopped by a signal
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait(5)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def test_nothing_is_left_after_the_lab_closes() -> None:
    with Lab(cloud=False) as small:
        names = {h.netns for h in small.netns.hosts.values()}
        pids = [s.process.pid for s in small.services.values() if s.process is not None]
        directory = small.directory
        assert names <= netns_list()
        assert len(names) == 7 and pids
    assert not names & netns_list()
    assert not directory.exists()
    assert not any((Path("/etc/netns") / name).exists() for name in names)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def dhcp_in_station(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    """The project's DHCP client on the station's eth0 (``python -m plugstream.net.dhcp``)."""
    argv = [sys.executable, "-m", "plugstream.net.dhcp", "eth0", "--json", "--timeout", "3"]
    return lab.exec(lab.station, *argv, *args, timeout=30)


def test_dhcp_hands_the_station_an_address_the_router_and_the_dns_servers_in_order(
    lab: Lab,
) -> None:
    done = dhcp_in_station(lab, "--hostname", "ps22-lab")
    assert done.returncode == 0, done.stderr
    lease = json.loads(done.stdout)
    try:
        first, last = (int(a.rsplit(".", 1)[1]) for a in DHCP_RANGE)
        assert first <= int(lease["address"].rsplit(".", 1)[1]) <= last
        assert lease["routers"] == [ROUTER_LAN]
        assert lease["dns_servers"] == list(DHCP_DNS)  # primary, then secondary
        # with that lease alone the station reaches the cloud, through the NAT router
        lab.reset_counters()
        outcome = python_in(lab, lab.station, TLS, str(lab.root_pem), CLOUD, OCPP_HOST)
        assert outcome["ok"], outcome
        sent, received = lab.counters(lease["address"])
        assert sent > 0 and received > 0
    finally:
        lab.station.ip("addr", "flush", "dev", "eth0")


def test_dhcp_can_hand_out_no_dns_server(lab: Lab) -> None:
    lab.set_dhcp_dns(())
    try:
        done = dhcp_in_station(lab, "--discover")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["dns_servers"] == []
    finally:
        lab.set_dhcp_dns(DHCP_DNS)
    done = dhcp_in_station(lab, "--discover")
    assert json.loads(done.stdout)["dns_servers"] == list(DHCP_DNS)


def test_a_cut_ethernet_cable_leaves_the_station_lte_only(lab: Lab) -> None:
    lab.cut_ethernet()
    try:
        assert "NO-CARRIER" in lab.station.ip("link", "show", "eth0")
        assert dhcp_in_station(lab, "--discover", "--timeout", "1").returncode != 0
        # LTE still works: through the carrier's own NAT, past the site's router
        lab.station_routes(lan_address=None, lte=True)
        lab.reset_counters()
        outcome = python_in(lab, lab.station, TLS, str(lab.root_pem), CLOUD, OCPP_HOST)
        assert outcome["ok"], outcome
        assert lab.counters(STATION_LTE) == (0, 0)  # not the site's uplink
        lab.station.ip("route", "del", "default", "via", CARRIER_LTE)
    finally:
        lab.restore_ethernet()
    until_sync(
        lambda: "NO-CARRIER" not in lab.station.ip("link", "show", "eth0"), "eth0's carrier back"
    )
    assert "LOWER_UP" in lab.station.ip("link", "show", "eth0")


def test_the_routers_firewall_is_the_one_plugstream_firewall_renders(lab: Lab) -> None:
    loaded = lab.router.run("nft", "list", "table", "inet", "plugstream")
    rendered = render(
        "nftables", dns_servers=DHCP_DNS, station_subnet=lab.LAN, fallback_dns=FALLBACK_DNS
    )
    for line in rendered.splitlines():
        if " accept comment " in line:  # every allow rule, as rendered, is in the router
            assert line.strip() in loaded
    assert "1.1.1.1" not in loaded and "1.0.0.1" not in loaded  # stand-ins only, in the lab
    for name, address in (("ntp", NTP), ("ocpp", CLOUD), ("setup", SETUP)):
        elements = lab.router.run("nft", "list", "set", "inet", "plugstream", name)
        assert f"elements = {{ {address} }}" in elements


def test_the_ntp_stand_in_answers_in_server_mode_with_its_shifted_clock() -> None:
    now = time.time()
    request = build_request(now)
    reply = ntp_reply(request, now + 3600.0, now + 3600.0)
    assert reply is not None
    sample = parse_response(reply, origin=now, destination=now)
    assert sample.offset == pytest.approx(3600.0, abs=0.001)
    assert sample.stratum == 2
    assert ntp_reply(reply, now, now) is None  # a server's packet gets no answer
    assert ntp_reply(bytes(1000), now, now) is None
