"""Issue 14 point 2: one station pipelines CALLs without limit (it used to cost a task per
CALL: 100,000 Heartbeats in 10 s were all answered, the last 32 s late, another station
waited up to 19.4 s, RSS 212 -> 571 MB). Now a station's CALLs are handled one at a time
through a small bounded queue; beyond it they are refused with GenericError and, if the
station keeps on, it is closed with 1008. A flooder in a process of its own blasts
Heartbeats at a real cloud, reconnecting each time it is closed, while another station's
Heartbeats, one at a time, are timed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from plugstream.ocpp import OcppEndpoint, OcppVersion
from plugstream.ocpp.session import MAX_QUEUED_CALLS, MAX_REFUSALS
from tests.support import WAIT, running_cloud, stop_process, until

pytestmark = pytest.mark.socket

#: the flood: rounds (one connection each) of this many Heartbeats sent without waiting,
#: for at most this many seconds
ROUNDS = 30
PER_ROUND = 3_000
FLOOD_SECONDS = 4.0

FLOODER = r"""
import json, sys, time
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

url, rounds, per_round, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
stats = {"rounds": 0, "sent": 0, "answers": {}, "closes": {}, "reasons": [], "refused": 0,
         "timeouts": 0, "first_refusal": None}
end = time.monotonic() + seconds
print("flooding", flush=True)
while stats["rounds"] < rounds and time.monotonic() < end:
    try:
        ws = connect(url, subprotocols=["ocpp1.6"], open_timeout=10, max_queue=None)
    except (InvalidHandshake, OSError):
        stats["refused"] += 1
        continue
    r = stats["rounds"]
    stats["rounds"] += 1
    with ws:
        try:
            for n in range(per_round):
                ws.send('[2,"r%d-%d","Heartbeat",{}]' % (r, n))
                stats["sent"] += 1
        except ConnectionClosed:
            pass
        try:
            while True:
                frame = json.loads(ws.recv(timeout=10))
                kind = str(frame[0]) if frame[0] == 3 else frame[2]
                stats["answers"][kind] = stats["answers"].get(kind, 0) + 1
                if kind == "GenericError" and stats["first_refusal"] is None:
                    stats["first_refusal"] = frame
        except ConnectionClosed as exc:
            code = str(exc.rcvd.code if exc.rcvd else None)
            stats["closes"][code] = stats["closes"].get(code, 0) + 1
            if exc.rcvd and exc.rcvd.reason not in stats["reasons"]:
                stats["reasons"].append(exc.rcvd.reason)
        except TimeoutError:
            stats["timeouts"] += 1
print(json.dumps(stats), flush=True)
"""


def rss_mb() -> float:
    """This process's resident set (the cloud runs in it), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_a_flooding_station_is_refused_and_closed_and_others_are_not_held_up(
    tmp_path: Path,
) -> None:
    async with running_cloud(tmp_path) as cloud:
        for station_id in ("VICTIM", "FLOOD"):
            await cloud.store.stations.register(station_id, security_profile=0)
        url = cloud.url("VICTIM")
        async with connect(url, subprotocols=[Subprotocol("ocpp1.6")]) as ws:
            victim = OcppEndpoint(ws, OcppVersion.V16, call_timeout=WAIT)
            serving = asyncio.create_task(victim.run())
            try:
                boot = {"chargePointVendor": "PlugStream", "chargePointModel": "PlugStream 7"}
                assert (await victim.call("BootNotification", boot))["status"] == "Accepted"
                for _ in range(20):  # warm: the same path, unloaded
                    await victim.call("Heartbeat", {})
                rss_before = rss_mb()

                args = [cloud.url("FLOOD"), str(ROUNDS), str(PER_ROUND), str(FLOOD_SECONDS)]
                flooder = subprocess.Popen(
                    [sys.executable, "-c", FLOODER, *args],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                try:
                    assert flooder.stdout is not None
                    assert (
                        await asyncio.wait_for(asyncio.to_thread(flooder.stdout.readline), WAIT)
                    ).startswith("flooding")
                    latencies: list[float] = []
                    started = time.monotonic()
                    while flooder.poll() is None and time.monotonic() - started < WAIT:
                        sent = time.perf_counter()
                        await victim.call("Heartbeat", {})
                        latencies.append(time.perf_counter() - sent)
                    out, _ = await asyncio.wait_for(asyncio.to_thread(flooder.communicate), WAIT)
                finally:
                    stop_process(flooder)
                assert flooder.returncode == 0
                stats = json.loads(out.splitlines()[-1])
                rss_after = rss_mb()
            finally:
                serving.cancel()
                await asyncio.gather(serving, return_exceptions=True)

        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print(
            f"\nflood: {stats['rounds']} rounds, {stats['sent']} CALLs sent,"
            f" answers {stats['answers']}, closes {stats['closes']}, refused {stats['refused']};"
            f" victim: {len(latencies)} Heartbeats, p50 {latencies[len(latencies) // 2] * 1e3:.1f}"
            f" ms, p99 {p99 * 1e3:.1f} ms, max {latencies[-1] * 1e3:.1f} ms;"
            f" RSS {rss_before:.0f} -> {rss_after:.0f} MB"
        )
        # the flooder: at most the queue answered per connection, the rest refused, then 1008
        assert stats["rounds"] >= 1 and stats["timeouts"] == 0
        assert stats["closes"] == {"1008": stats["rounds"]}, stats
        assert any("one CALL at a time" in r for r in stats["reasons"])
        refused = stats["answers"].get("GenericError", 0)
        assert refused == stats["rounds"] * (MAX_REFUSALS + 1), stats
        handled = sum(n for kind, n in stats["answers"].items() if kind != "GenericError")
        assert handled <= stats["rounds"] * (MAX_QUEUED_CALLS + 1), stats
        first = stats["first_refusal"]
        assert first[3].startswith(f"{MAX_QUEUED_CALLS} CALLs are waiting already"), first
        # the other station: answered throughout, promptly
        assert len(latencies) >= 10
        assert p99 < 1.0, f"p99 {p99:.3f} s"
        # memory: bounded by the queue, not by the flood
        assert rss_after - rss_before < 64, (rss_before, rss_after)
        await until(lambda: not cloud.gateway.is_connected("FLOOD"), "the flooder gone")
