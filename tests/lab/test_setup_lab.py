"""Commissioning on the site network: a new station out of the box reaches the setup service
the way the article's Table 2 says -- address and DNS servers by DHCP, clock by NTP
(pool.ntp.org, answered by the lab's DNS), ``setup.plugstream.co.uk`` looked up with the DNS
priority list, then HTTPS on TCP 443 with the server checked at the corrected time -- and
then charges on PlugStream Cloud with what it was given.

``plugstream station run --setup`` runs as a process in the lab's station host with the
product's network stack (``--dhcp eth0``, the lab's stand-ins as DNS fallbacks); the owner
claims the serial through the REST API from the site's laptop, as in the README.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from plugstream.lab.topology import CARRIER_LTE, DHCP_DNS, DHCP_RANGE, FALLBACK_DNS, SETUP, Lab
from plugstream.net.ntp import CorrectedClock
from plugstream.netcheck.firewall import SETUP_HOST
from plugstream.pki.keystore import PKIStore
from plugstream.station.network import StationNetwork
from plugstream.station.provisioning import NotReady, factory_install, provision
from tests.lab.conftest import LabStation, api, plugstream_in
from tests.support import WAIT, until, until_sync

pytestmark = pytest.mark.lab

ONLINE_S = 40.0
"""Factory state to booted on the cloud (about 8 s in the lab)."""
NTP_RETRY_S = 45.0
"""After UDP 123 opens again: the station's next NTP try (its retry doubles from 16 s),
then the setup call and the boot."""
SETUP_RETRY = "1"
"""--setup-retry: the lab's station calls the setup service again every second at most."""


def factory(lab: Lab, serial: str) -> Path:
    """``plugstream pki factory``: the new station's data dir, as the factory leaves it."""
    data_dir = lab.directory / f"setup-{serial}"
    done = plugstream_in(
        lab, lab.station, "pki", "factory", "--dir", str(lab.pki_dir), "--serial", serial,
        "--data-dir", str(data_dir), "--setup-url", lab.setup_url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return data_dir


def claim(lab: Lab, serial: str, profile: int) -> None:
    """The owner claims the serial for PlugStream Cloud (csms_url null)."""
    status, out = api(
        lab, "PUT", f"/claims/{serial}",
        {"owner": "Jane Owner", "ocpp_version": "1.6", "security_profile": profile},
    )  # fmt: skip
    assert status == 200, out


def claimed(lab: Lab, serial: str) -> dict[str, Any]:
    status, out = api(lab, "GET", f"/claims/{serial}")
    assert status == 200, out
    assert isinstance(out, dict)
    return out


def booted(lab: Lab, serial: str) -> bool:
    """The cloud holds the station's connection and has its BootNotification."""
    status, out = api(lab, "GET", f"/stations/{serial}")
    return status == 200 and bool(out.get("connected") and out.get("model"))


@contextlib.contextmanager
def commissioning(lab: Lab, serial: str, *extra: str) -> Iterator[LabStation]:
    """``plugstream station run --setup`` out of the box on the site LAN; stopped by PID."""
    data_dir = lab.directory / f"setup-{serial}"
    log = lab.directory / f"setup-{serial}.log"
    argv = lab.plugstream(
        "station", "run", "--model", "22", "--setup", lab.setup_url,
        "--setup-retry", SETUP_RETRY, "--data-dir", str(data_dir), "--dhcp", "eth0",
        "--dns-fallback", FALLBACK_DNS[0], "--dns-fallback", FALLBACK_DNS[1], *extra,
    )  # fmt: skip
    with log.open("w") as out:
        process = lab.station.start(
            *argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    station = LabStation(process, data_dir, log)
    try:
        yield station
    finally:
        lab.station.stop(process)
        if process.stdin is not None:
            process.stdin.close()


def report(station: LabStation) -> str:
    return f"\n--- station output ---\n{station.output()[-3000:]}\n--- network.json ---\n" + str(
        station.network()
    )


def wait(check: Callable[[], Any], station: LabStation, what: str, timeout: float) -> Any:
    """:func:`until_sync`, failing with the station's output and network.json (a cloud
    call is a process: polled every half second)."""
    try:
        return until_sync(check, what, timeout=timeout, interval=0.5)
    except AssertionError as failed:
        raise AssertionError(f"{failed}{report(station)}") from None


def test_a_new_station_is_commissioned_over_dhcp_ntp_and_dns(lab: Lab) -> None:
    """Claimed, then switched on: a lease, the clock from pool.ntp.org, the setup name from
    the DHCP DNS server, provisioned at profile 2 and booted on PlugStream Cloud."""
    serial = "PS22-LAB-0001"
    factory(lab, serial)
    claim(lab, serial, 2)
    with commissioning(lab, serial) as station:
        wait(lambda: booted(lab, serial), station, "booted on the cloud", ONLINE_S)
        output = station.output()
        assert f"station {serial} → wss://ocpp.ampnexus.net/ocpp/{serial}" in output, output
        assert "security profile 2" in output, output
        assert claimed(lab, serial)["provisioned_at"] is not None
        status = station.network()
        lease = status["dhcp"]
        assert lease is not None, report(station)
        first, last = (int(a.rsplit(".", 1)[1]) for a in DHCP_RANGE)
        assert first <= int(lease["address"].rsplit(".", 1)[1]) <= last, lease
        assert status["clock"]["synchronized"] is True, report(station)
        assert status["clock"]["server"].startswith("pool.ntp.org"), report(station)
        assert status["dns"]["server"] == f"DHCP primary {DHCP_DNS[0]}", report(station)
    # the setup name was asked of the DHCP DNS server (priority 1), answered with its address
    queries = (lab.logs / f"dns-{DHCP_DNS[0]}.log").read_text(errors="replace")
    assert f"query[A] {SETUP_HOST}" in queries
    assert f"{SETUP_HOST} is {SETUP}" in queries


def test_with_the_cable_unplugged_a_new_station_is_commissioned_over_lte(lab: Lab) -> None:
    """Links managed (--link): Ethernet has no carrier, so no lease; the station takes its
    time, the setup name (from the fallback resolvers) and its configuration over LTE
    through the carrier's NAT, then connects to the cloud over LTE."""
    serial = "PS22-LAB-0003"
    factory(lab, serial)
    claim(lab, serial, 2)
    lab.cut_ethernet()
    lab.station_routes(lan_address=None, lte=True)
    try:
        links = ("--link", "eth0=ethernet", "--link", "lte0=lte")
        with commissioning(lab, serial, *links) as station:
            wait(lambda: booted(lab, serial), station, "booted over LTE", ONLINE_S)
            status = station.network()
            assert status["active_link"] == "lte", report(station)
            assert status["dhcp"] is None, report(station)  # no carrier, no lease
            assert status["clock"]["synchronized"] is True, report(station)
            assert claimed(lab, serial)["provisioned_at"] is not None
    finally:
        lab.restore_ethernet()
        lab.station.ip("route", "del", "default", "via", CARRIER_LTE, "dev", "lte0", check=False)


def test_no_setup_call_while_the_clock_is_unsynchronized(lab: Lab) -> None:
    """UDP 123 closed at the site firewall: the station says why it does not call the setup
    service, and the service never sees it; opened again, it is commissioned (profile 3)."""
    serial = "PS22-LAB-0002"
    factory(lab, serial)
    claim(lab, serial, 3)
    lab.block(123, "udp")
    try:
        with commissioning(lab, serial) as station:
            wait(
                lambda: "NTP pool.ntp.org:123: timeout" in station.output(),
                station, "the NTP timeout in the log", WAIT,
            )  # fmt: skip
            wait(
                lambda: (
                    "not calling the setup service yet: clock not synchronized" in station.output()
                ),
                station, "the reason no setup call is made, in the log", WAIT,
            )  # fmt: skip
            assert claimed(lab, serial)["provisioned_at"] is None, report(station)
            assert not booted(lab, serial)
            assert station.network()["clock"]["synchronized"] is False, report(station)
            assert not (station.data_dir / "setup.json").exists()
            lab.unblock(123, "udp")
            wait(lambda: booted(lab, serial), station, "booted after NTP", NTP_RETRY_S)
            assert claimed(lab, serial)["provisioned_at"] is not None
            assert "security profile 3" in station.output(), report(station)
    finally:
        lab.unblock(123, "udp")


# --- on loopback: the gate and the loops' guard, without the lab --------------------------------


async def test_the_setup_service_is_not_called_before_the_clock_is_set(tmp_path: Path) -> None:
    """An unsynchronized network clock: NotReady with the reason, and no TCP connection."""
    keystore = PKIStore(tmp_path / "pki")
    keystore.init("Lab Operator")
    issued = keystore.manufacturer_root().issue_client("PS22-LOOP-0001", organization="PlugStream")
    peers: list[tuple[str, int]] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername"))
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    data_dir = tmp_path / "station"
    factory_install(
        data_dir, "PS22-LOOP-0001", issued.cert_pem, issued.key_pem,
        (tmp_path / "pki" / "csms-root.pem").read_bytes(), f"https://127.0.0.1:{port}",
    )  # fmt: skip
    network = StationNetwork(clock=CorrectedClock(), dns_fallbacks=())
    async with server:
        with pytest.raises(NotReady) as refused:
            await provision(data_dir, network=network)
        # a connection of ours, accepted after any the refused call could have made
        _, probe = await asyncio.open_connection("127.0.0.1", port)
        ours = probe.get_extra_info("sockname")
        await until(lambda: ours in peers, "our own connection accepted")
        probe.close()
    connections = [peer for peer in peers if peer != ours]
    assert refused.value.reason.startswith(
        "not calling the setup service yet: clock not synchronized: no NTP query made yet"
    )
    assert refused.value.status is None  # retried like an unreachable service
    assert connections == []


async def test_the_network_loops_run_once_for_two_owners() -> None:
    """run_with_setup and the station it starts both ask for NTP: one poll loop runs."""
    network = StationNetwork(
        clock=CorrectedClock(), ntp_host="127.0.0.1", ntp_port=9, ntp_timeout=0.2, dns_fallbacks=()
    )
    clock = network.clock
    assert clock is not None
    first = asyncio.create_task(network.keep_synchronized())
    await until(lambda: clock.attempts == 1, "the first loop's NTP query")
    await asyncio.wait_for(network.keep_synchronized(), 1.0)  # the second returns at once
    assert not first.done()
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    again = asyncio.create_task(network.keep_synchronized())  # the first one ended: runs
    await until(lambda: clock.attempts == 2, "the new loop's NTP query")
    assert not again.done()
    again.cancel()
    await asyncio.gather(again, return_exceptions=True)
