"""The keep-alive learns the path: a site router whose NAT forgets an idle TCP connection
after a few seconds drops the station's connection, and the station settles on a ping
interval that holds, shorter than the NAT's timeout (issue 17).

The lab router's conntrack keeps an established TCP connection :data:`NAT_TIMEOUT_S` real
seconds without packets (``nf_conntrack_tcp_timeout_established`` in its namespace), and
does not pick a connection up again mid-stream (``nf_conntrack_tcp_loose`` 0): after that
the station's packets are invalid for the router's firewall and go nowhere, as behind a
carrier-grade NAT whose mapping expired. The station runs on a scaled clock (``--time-scale``
:data:`SCALE`), so its 180 s start is 1.5 real seconds and the NAT's 5 s are 600 station
seconds: it learns 180, 270, 405, loses the connection at 608 s of quiet, reconnects and
settles between 405 and 608 s. No fixed sleeps: the test waits for the station's persisted
state to say it settled, and for the settled interval to hold again.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any, Final

import pytest

from plugstream.lab.topology import Lab
from tests.lab.conftest import LabStation, register, start_station
from tests.support import WAIT, until_sync

pytestmark = pytest.mark.lab

SCALE: Final = 120.0  # station seconds per real second
NAT_TIMEOUT_S: Final = 5  # real seconds an established TCP connection may stay quiet
STATION_ID: Final = "NAT-SHORT-1"
_TIMEOUT_KEY: Final = "net.netfilter.nf_conntrack_tcp_timeout_established"
_LOOSE_KEY: Final = "net.netfilter.nf_conntrack_tcp_loose"


@contextlib.contextmanager
def short_nat(lab: Lab) -> Iterator[None]:
    """The router's NAT forgets idle TCP after NAT_TIMEOUT_S; put back after."""
    before = {
        key: lab.router.run("sysctl", "-n", key).strip() for key in (_TIMEOUT_KEY, _LOOSE_KEY)
    }
    lab.router.sysctl(_TIMEOUT_KEY, str(NAT_TIMEOUT_S))
    lab.router.sysctl(_LOOSE_KEY, "0")
    try:
        yield
    finally:
        for key, value in before.items():
            lab.router.sysctl(key, value)


def keepalive(station: LabStation) -> dict[str, Any]:
    """What the station learned on the link it uses (its state.json), {} before anything."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        state = json.loads((station.data_dir / "state.json").read_text())
        links = state["keepalive"]["links"]
        for learned in links.values():
            if isinstance(learned, dict) and learned.get("trial"):
                return learned
    return {}


def test_the_keepalive_settles_below_a_short_nat_timeout(lab: Lab) -> None:
    register(lab, STATION_ID)
    with short_nat(lab):
        station = start_station(lab, STATION_ID, "--time-scale", f"{SCALE:g}")
        try:

            def settled() -> bool:
                assert station.process.poll() is None, station.output()[-2000:]
                k = keepalive(station)
                return bool(k.get("failed")) and int(k.get("settled_pongs", 0)) >= 1

            until_sync(
                settled, "the keep-alive settled after a drop", timeout=4 * WAIT, interval=0.5
            )
            learned = keepalive(station)
            failed, interval = float(learned["failed"]), float(learned["trial"])
            # it failed above the NAT's timeout and holds below it
            assert failed / SCALE >= NAT_TIMEOUT_S - 0.5, learned
            assert interval / SCALE < NAT_TIMEOUT_S + 0.25, learned  # the router's own jitter
            assert interval >= 405, learned  # not below the last interval that held
            output = station.output()
            assert "no pong after" in output, output[-2000:]
            drops = output.count("no pong after")

            # and it holds: two more pongs at the settled interval, no further drop
            pongs = int(learned.get("settled_pongs", 0))
            until_sync(
                lambda: int(keepalive(station).get("settled_pongs", 0)) >= pongs + 2,
                "two more pongs at the settled interval",
                timeout=4 * WAIT,
                interval=0.5,
            )
            assert station.output().count("no pong after") == drops, station.output()[-3000:]
            assert keepalive(station)["trial"] == interval
            print(
                f"\nNAT idle timeout {NAT_TIMEOUT_S} s real = {NAT_TIMEOUT_S * SCALE:g} s of "
                f"station time: dropped at {failed:g} s of quiet, settled on {interval:g} s "
                f"after {drops} drop(s)"
            )
        finally:
            station.send("quit")
            with contextlib.suppress(Exception):
                station.process.wait(timeout=15)
            if station.process.poll() is None:
                lab.station.stop(station.process)
