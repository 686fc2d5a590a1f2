"""The station on a broken site network, as the operator sees it (the issue's scenarios).

Each test starts ``plugstream station run`` in the lab's station host (DHCP on eth0, the
article's DNS order, pool.ntp.org, wss at security profile 2), breaks the site the way a
real one breaks -- a DHCP DNS server that does not answer, no DNS server from DHCP, UDP 123
or TCP 443 closed at the firewall, the Ethernet cable pulled -- and checks what the station
shows (``network.json``, its log) and what the cloud sees (its REST API). Every break is
repaired in ``finally``: one lab serves the whole module.

The cloud's API is asked from the internet host (by the cloud's address, TLS checked against
the lab root), past the site's router: the breaks under test never cut the test's own view.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from plugstream.lab.topology import (
    CARRIER_WAN,
    CLOUD,
    DHCP_DNS,
    DHCP_RANGE,
    FALLBACK_DNS,
    ROUTER_WAN,
    STATION_LTE,
    Lab,
)
from plugstream.netcheck.firewall import OCPP_HOST
from tests.lab.conftest import (
    STATION_PASSWORD,
    LabStation,
    plugstream_in,
    python_in,
    start_station,
)
from tests.support import WAIT, until_sync

pytestmark = pytest.mark.lab

DNS_TIMEOUT_MS = (1800, 3000)
"""The per-server timeout ("promptly", 2 s by default) as seen in ``elapsed_ms``."""
ONLINE_S = 30.0
"""How long a station may take to boot on the cloud (about 7 s in the lab)."""
SLOW_ONLINE_S = ONLINE_S + 8.0
"""The same with silent DNS servers: up to 2 x 2 s more for each of pool.ntp.org and the CSMS."""
RESUME_S = 30.0
"""The issue: the OCPP session resumes on the new link within 30 s."""
NTP_RETRY_S = 32.0
"""The station's wait for its third NTP try after two missed ones (16 s, doubled)."""
HOLD_DOWN_S = 5.0
TAG = "04C0FFEE"

API = """
import httpx, json, sys
url, token, ca, method, body = sys.argv[1:6]
r = httpx.request(method, url, headers={"Authorization": "Bearer " + token},
                  json=json.loads(body), verify=ca, timeout=10)
try:
    out = r.json()
except ValueError:
    out = r.text
print(json.dumps([r.status_code, out]))
"""

CONNECT = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor
def attempt(target):
    address, port = target.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1.0)
        try:
            s.connect((address, int(port)))
            return "connected"
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return exc.strerror or type(exc).__name__
with ThreadPoolExecutor(16) as pool:
    print(json.dumps(dict(zip(sys.argv[1:], pool.map(attempt, sys.argv[1:])))))
"""


# --- the operator's view -----------------------------------------------------------------------


def cloud_api(lab: Lab, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One REST call to the lab cloud from the internet host (not through the site's
    router, so a blocked port or a dead DNS server on the site does not hide the answer)."""
    status, out = python_in(
        lab, lab.internet, API, f"https://{CLOUD}/api/v1{path}", lab.api_token,
        str(lab.root_pem), method, json.dumps(body),
    )  # fmt: skip
    return int(status), out


def seen_by_cloud(lab: Lab, station_id: str) -> dict[str, Any]:
    """The cloud's record of the station ({} while it does not know it)."""
    status, out = cloud_api(lab, "GET", f"/stations/{station_id}")
    return out if status == 200 and isinstance(out, dict) else {}


def connected(lab: Lab, station_id: str) -> bool:
    """The cloud holds the station's connection and has its BootNotification."""
    info = seen_by_cloud(lab, station_id)
    return bool(info.get("connected") and info.get("model"))


def report(station: LabStation) -> str:
    """What a failed wait shows: the station's last log lines and its network.json."""
    return (
        f"\n--- station log (tail) ---\n{station.output()[-2000:]}"
        f"\n--- network.json ---\n{json.dumps(station.network(), indent=1)}"
    )


def wait(what: Callable[[], Any], station: LabStation, why: str, timeout: float = WAIT) -> Any:
    """:func:`until_sync` for ``what()``, failing at once if the station exits, and with
    the station's log and network.json (a cloud call is a process: polled every 0.3 s)."""

    def check() -> Any:
        found = what()
        if not found and station.process.poll() is not None:
            raise AssertionError(f"{why}: the station exited ({station.process.returncode})")
        return found

    try:
        return until_sync(check, why, timeout=timeout, interval=0.3)
    except AssertionError as failed:
        raise AssertionError(f"{failed}{report(station)}") from None


def lookup(station: LabStation) -> dict[str, Any] | None:
    """network.json's last DNS answer, once it is the CSMS's name's."""
    dns = station.network().get("dns")
    return dns if isinstance(dns, dict) and dns.get("name") == OCPP_HOST else None


def attempts(dns: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["server"], a["outcome"]) for a in dns["attempts"]]


# --- the station's life in one test ------------------------------------------------------------


def _clean_station_host(lab: Lab) -> None:
    """What a stopped station's DHCP client left in the station host: its address and routes."""
    lab.station.ip("addr", "flush", "dev", "eth0", check=False)
    for _ in range(4):  # bounded: at most the DHCP and the LTE default routes
        if not lab.station.run("ip", "route", "show", "default", check=False).strip():
            break
        lab.station.ip("route", "del", "default", check=False)


@contextlib.contextmanager
def running(lab: Lab, station_id: str, *flags: str) -> Iterator[LabStation]:
    """A registered station running for the ``with`` body, stopped (by PID) after it."""
    status, out = cloud_api(
        lab, "PUT", f"/stations/{station_id}",
        {"password": STATION_PASSWORD, "security_profile": 2},
    )  # fmt: skip
    assert status in (200, 201), out
    station = start_station(lab, station_id, *flags)
    try:
        yield station
    finally:
        lab.station.stop(station.process)
        _clean_station_host(lab)


@contextlib.contextmanager
def silent_dns(lab: Lab, *addresses: str) -> Iterator[None]:
    """DHCP's DNS servers on ``addresses`` get the queries and never answer (dropped on
    arrival in the dhcp host): the article's server that "does not respond promptly".
    (``Lab.stop_dns`` closes the port instead: ICMP port unreachable moves the station on
    at once, outcome ``unreachable`` after ~1 ms, so it cannot show the timeout.)"""
    table = "scenario_silent_dns"
    targets = ", ".join(addresses)
    script = (
        f"table inet {table} {{\n\tchain input {{\n"
        "\t\ttype filter hook input priority filter - 10; policy accept;\n"
        f"\t\tip daddr {{ {targets} }} udp dport 53 drop\n\t}}\n}}\n"
    )
    path = lab.directory / f"{table}.nft"
    path.write_text(script)
    lab.dhcp.run("nft", "-f", str(path))
    try:
        yield
    finally:
        lab.dhcp.run("nft", "delete", "table", "inet", table, check=False)


@contextlib.contextmanager
def count_https_from_stations(lab: Lab) -> Iterator[Callable[[], int]]:
    """A counter in the router of the TCP 443 packets the DHCP range sent towards the
    internet (before the firewall decides): how many times a station tried the cloud."""
    table = "scenario_https"
    first, last = DHCP_RANGE
    script = (
        f"table inet {table} {{\n\tchain forward {{\n"
        "\t\ttype filter hook forward priority filter - 10; policy accept;\n"
        f'\t\tiifname "br0" ip saddr {first}-{last} tcp dport 443 counter\n\t}}\n}}\n'
    )
    path = lab.directory / f"{table}.nft"
    path.write_text(script)
    lab.router.run("nft", "-f", str(path))

    def packets() -> int:
        listed = json.loads(lab.router.run("nft", "-j", "list", "table", "inet", table))
        total = 0
        for item in listed.get("nftables", []):
            for expr in item.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    total += int(expr["counter"]["packets"])
        return total

    try:
        yield packets
    finally:
        lab.router.run("nft", "delete", "table", "inet", table, check=False)


def samples(lab: Lab, tx_id: int) -> list[str]:
    """The timestamps of the meter values the cloud holds for a transaction."""
    status, detail = cloud_api(lab, "GET", f"/transactions/{tx_id}")
    assert status == 200, detail
    return sorted({m["timestamp"] for m in detail["meter_values"]})


def ocpp_peers(lab: Lab) -> set[str]:
    """The addresses the cloud holds established TCP 443 connections from."""
    out = lab.cloud.run("ss", "-H", "-tn", "state", "established", "( sport = :443 )")
    return {line.split()[-1].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()}


# --- DNS ---------------------------------------------------------------------------------------


def test_a_silent_dhcp_primary_dns_is_passed_over_after_2_s_for_the_secondary(lab: Lab) -> None:
    with silent_dns(lab, DHCP_DNS[0]), running(lab, "SCEN-DNS1") as station:
        wait(
            lambda: connected(lab, "SCEN-DNS1"), station, "online via the secondary", SLOW_ONLINE_S
        )
        dns = wait(lambda: lookup(station), station, "the CSMS name resolved")
        assert attempts(dns) == [
            (f"DHCP primary {DHCP_DNS[0]}", "timeout"),
            (f"DHCP secondary {DHCP_DNS[1]}", "answer"),
        ], report(station)
        low, high = DNS_TIMEOUT_MS
        assert low <= dns["attempts"][0]["elapsed_ms"] <= high, report(station)
        assert dns["attempts"][1]["elapsed_ms"] < 500, report(station)
        assert dns["addresses"] == [CLOUD] and dns["stale"] is False


def test_both_dhcp_dns_silent_the_first_fallback_answers_after_both_timeouts(lab: Lab) -> None:
    with silent_dns(lab, *DHCP_DNS), running(lab, "SCEN-DNS2") as station:
        wait(lambda: connected(lab, "SCEN-DNS2"), station, "online via the fallback", SLOW_ONLINE_S)
        dns = wait(lambda: lookup(station), station, "the CSMS name resolved")
        assert attempts(dns) == [
            (f"DHCP primary {DHCP_DNS[0]}", "timeout"),
            (f"DHCP secondary {DHCP_DNS[1]}", "timeout"),
            (f"fallback {FALLBACK_DNS[0]}", "answer"),
        ], report(station)
        low, high = DNS_TIMEOUT_MS
        assert [low <= a["elapsed_ms"] <= high for a in dns["attempts"][:2]] == [True, True]
        assert dns["attempts"][2]["elapsed_ms"] < 500, report(station)
        assert dns["server"] == f"fallback {FALLBACK_DNS[0]}"


def test_no_dns_server_from_dhcp_the_fallbacks_carry(lab: Lab) -> None:
    lab.set_dhcp_dns(())
    try:
        with running(lab, "SCEN-NODNS") as station:
            wait(lambda: connected(lab, "SCEN-NODNS"), station, "online", ONLINE_S)
            status = station.network()
            assert status["dhcp"]["dns_servers"] == [], report(station)
            dns = wait(lambda: lookup(station), station, "the CSMS name resolved")
            assert attempts(dns)[0] == (f"fallback {FALLBACK_DNS[0]}", "answer"), report(station)
            assert "DNS none (the fallbacks only)" in station.output()
    finally:
        lab.set_dhcp_dns(DHCP_DNS)


# --- NTP and 443 -------------------------------------------------------------------------------


def test_ntp_blocked_the_clock_is_unsynchronized_and_the_station_does_not_authenticate(
    lab: Lab,
) -> None:
    """The block is held until the station's connection loop has been refused by the
    clock gate after its second NTP try missed (its first try is before the DHCP lease,
    the second right after it): by then a station that ignored the gate would long have
    tried TCP 443. How soon it connects after the repair depends on the station's own
    schedule: its third NTP try comes ``NTP_RETRY_S`` s after the second."""
    sid = "SCEN-NTP"
    with count_https_from_stations(lab) as https:
        lab.block(123, "udp")
        try:
            with running(lab, sid) as station:
                status = wait(
                    lambda: (s := station.network()).get("offline_reason") and s,
                    station, "an offline reason", ONLINE_S,
                )  # fmt: skip
                why = status["offline_reason"]
                assert why.startswith("clock not synchronized"), report(station)
                status = wait(
                    lambda: "(2 attempts" in ((s := station.network()).get("offline_reason") or "")
                    and s,
                    station, "a connection refused by the clock gate after two NTP tries",
                    ONLINE_S + 16.0,  # the lease, then a reconnect back-off (6 s + up to 10 s)
                )  # fmt: skip
                # the cloud never sees it, and it never even tries TCP 443
                info = seen_by_cloud(lab, sid)
                assert not info.get("connected") and info.get("last_boot") is None, info
                assert status["clock"]["synchronized"] is False, report(station)
                assert status["clock"]["why_not"], report(station)
                assert status["dhcp"] is not None  # the site's network itself is fine
                assert status["offline_reason"].startswith("clock not synchronized")
                assert https() == 0, report(station)
                # what the operator reads in the log: NTP gets no answer
                assert "NTP pool.ntp.org:123: timeout after" in station.output(), report(station)

                lab.unblock(123, "udp")
                repaired = time.monotonic()
                wait(lambda: connected(lab, sid), station, "online after UDP 123 was opened",
                     NTP_RETRY_S + ONLINE_S)  # fmt: skip
                status = station.network()
                assert status["clock"]["synchronized"] is True, report(station)
                assert status["clock"]["server"] == "pool.ntp.org:123"
                assert status["offline_reason"] is None, report(station)
                assert https() > 0
                print(f"online {time.monotonic() - repaired:.1f} s after UDP 123 was opened")
        finally:
            lab.unblock(123, "udp")


def test_443_blocked_is_diagnosed_by_the_station_and_by_netcheck(lab: Lab) -> None:
    sid = "SCEN-443"
    lab.block(443, "tcp", CLOUD)
    try:
        with running(lab, sid) as station:
            # the network admin's diagnosis, from the laptop on the same LAN (while the
            # station's own first attempt waits for its opening handshake)
            done = plugstream_in(
                lab, lab.laptop, "netcheck", *lab.netcheck_args(), "--timeout", "1", "--json"
            )
            assert done.returncode == 1, done.stdout + done.stderr[-2000:]
            rows = json.loads(done.stdout)["rows"]
            failed = [(r["check"], r["target"].split()[0]) for r in rows if r["status"] == "fail"]
            assert failed == [("tcp", OCPP_HOST), ("tls", OCPP_HOST)], rows
            (tcp,) = [r for r in rows if r["check"] == "tcp" and r["target"].startswith(OCPP_HOST)]
            assert tcp["fix"] == f"open TCP 443 to {OCPP_HOST}", tcp
            # the station's own words, in network.json: its connection to the cloud times out
            status = wait(
                lambda: (s := station.network()).get("offline_reason")
                and s["offline_reason"].startswith("connection failed") and s,
                station, "the failed connection in network.json", ONLINE_S + 15.0,
            )  # fmt: skip
            reason = status["offline_reason"]
            assert reason.startswith(f"connection failed: {OCPP_HOST}:443 ({CLOUD}): "), reason
            assert "timed out" in reason, report(station)
            assert f"offline: {reason}" in station.output(), report(station)  # in its log
            assert status["clock"]["synchronized"] is True, report(station)
            assert (lookup(station) or {}).get("addresses") == [CLOUD], report(station)
            assert not seen_by_cloud(lab, sid).get("connected")
            lab.unblock(443, "tcp", CLOUD)
            repaired = time.monotonic()
            wait(lambda: connected(lab, sid), station, "online after TCP 443 was opened", 30.0)
            assert station.network()["offline_reason"] is None, report(station)
            print(f"online {time.monotonic() - repaired:.1f} s after TCP 443 was opened")
    finally:
        lab.unblock(443, "tcp", CLOUD)


# --- links -------------------------------------------------------------------------------------


def test_ethernet_cut_during_a_session_the_session_continues_over_lte(lab: Lab) -> None:
    sid = "SCEN-LTE"
    status, out = cloud_api(lab, "PUT", f"/id-tokens/{TAG}", {"status": "Accepted"})
    assert status in (200, 201), out
    lab.station_routes(lan_address=None, lte=True)
    flags = ["--link", "eth0=ethernet", "--link", "lte0=lte", "--link-hold-down", f"{HOLD_DOWN_S:g}"]  # fmt: skip
    cut_at: float | None = None
    try:
        with running(lab, sid, *flags) as station:
            wait(lambda: connected(lab, sid), station, "online over Ethernet", ONLINE_S)
            wait(lambda: station.network().get("active_link") == "ethernet", station, "on ethernet")
            lan = station.network()["dhcp"]["address"]
            status, out = cloud_api(
                lab, "POST", f"/stations/{sid}/commands/ChangeConfiguration",
                {"key": "MeterValueSampleInterval", "value": "2"},
            )  # fmt: skip
            assert (status, out) == (200, {"status": "Accepted"}), out
            station.send("plug")
            station.send(f"swipe {TAG}")

            def active() -> list[dict[str, Any]]:
                found = cloud_api(lab, "GET", f"/transactions?station={sid}")[1]
                return [t for t in found if t["active"]] if isinstance(found, list) else []

            (tx,) = wait(active, station, "a transaction on the cloud")
            before = wait(
                lambda: len(s := samples(lab, tx["id"])) >= 2 and s,
                station, "meter values on the cloud",
            )  # fmt: skip

            lab.cut_ethernet()
            cut_at = time.monotonic()

            def left() -> float:
                assert cut_at is not None
                return max(0.5, RESUME_S - (time.monotonic() - cut_at))

            wait(lambda: station.network().get("active_link") == "lte", station,
                 "switched to lte", left())  # fmt: skip
            wait(lambda: CARRIER_WAN in ocpp_peers(lab), station,
                 "the OCPP connection over the carrier", left())  # fmt: skip
            wait(lambda: connected(lab, sid), station, "online over LTE", left())
            resumed = time.monotonic() - cut_at
            assert resumed < RESUME_S
            (same,) = active()
            assert same["id"] == tx["id"]
            during = samples(lab, tx["id"])
            assert set(before) <= set(during)  # nothing the cloud had is lost
            # the site's uplink no longer carries the station: its LAN address sends nothing
            # (what still arrives for it is the cloud giving up on the old connection) up to
            # a sync point after it: a meter sample the cloud asks for now, over LTE
            first, _ = lab.counters(lan)
            known = len(samples(lab, tx["id"]))
            status, out = cloud_api(
                lab, "POST", f"/stations/{sid}/commands/TriggerMessage",
                {"requestedMessage": "MeterValues", "connectorId": 1},
            )  # fmt: skip
            assert (status, out) == (200, {"status": "Accepted"}), out
            during = wait(
                lambda: len(s := samples(lab, tx["id"])) > known and s,
                station, "the triggered meter sample on the cloud",
            )  # fmt: skip
            assert lab.counters(lan)[0] == first
            assert CARRIER_WAN in ocpp_peers(lab)

            lab.restore_ethernet()
            restored = time.monotonic()
            cut_at = None
            wait(lambda: station.network().get("active_link") == "ethernet", station,
                 "back on ethernet", HOLD_DOWN_S + 25.0)  # fmt: skip
            assert time.monotonic() - restored >= HOLD_DOWN_S
            wait(lambda: connected(lab, sid), station, "online over ethernet again")
            after = wait(
                lambda: len(s := samples(lab, tx["id"])) > len(during) and s,
                station, "meter values again over ethernet",
            )  # fmt: skip
            assert set(during) <= set(after)
            assert lab.counters(lan)[0] > first  # the site's uplink carries it again

            station.send(f"swipe {TAG}")  # the driver ends the session
            ended = wait(
                lambda: (t := cloud_api(lab, "GET", f"/transactions/{tx['id']}")[1])
                .get("stopped_at") and t,
                station, "the transaction stopped",
            )  # fmt: skip
            assert ended["energy_wh"] is not None and ended["energy_wh"] > 0, ended
            listed = cloud_api(lab, "GET", f"/transactions?station={sid}")[1]
            assert [t["id"] for t in listed] == [tx["id"]]  # one session, not two
            print(f"resumed over LTE {resumed:.1f} s after the cut")
    finally:
        if cut_at is not None:
            lab.restore_ethernet()
        lab.station.ip("route", "del", "default", "dev", "lte0", check=False)


# --- incoming ----------------------------------------------------------------------------------


def test_nothing_can_connect_to_the_station_and_it_needs_nothing_incoming(lab: Lab) -> None:
    sid = "SCEN-IN"
    with running(lab, sid) as station:
        wait(lambda: connected(lab, sid), station, "online", ONLINE_S)
        booted = seen_by_cloud(lab, sid)["last_boot"]
        lan = station.network()["dhcp"]["address"]
        listening = lab.exec(lab.station, "ss", "-H", "-lntu")
        assert listening.returncode == 0, listening.stderr
        assert listening.stdout.strip() == "", listening.stdout
        targets = [f"{a}:{p}" for a in (lan, ROUTER_WAN, STATION_LTE) for p in (22, 80, 443, 8080)]
        for host in (lab.internet, lab.cloud):
            outcome = python_in(lab, host, CONNECT, *targets, timeout=20)
            assert "connected" not in outcome.values(), (host.name, outcome)
        # and the station never noticed: still connected, on the same boot
        assert connected(lab, sid), report(station)
        assert seen_by_cloud(lab, sid)["last_boot"] == booted
        assert station.network()["offline_reason"] is None, report(station)
