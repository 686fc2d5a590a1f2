"""A fleet of charge points written with the ``ocpp`` library, the way its examples are.

The peer that ``bench/fleet.py`` measures ``plugstream fleet`` against: N charge points
in one process, each an ``ocpp.v16.ChargePoint`` (or ``ocpp.v201.ChargePoint``) over
its own ``websockets`` client connection, with the library's default settings (schema
validation of every message, its ``call()`` bookkeeping). Each does what a station of
our fleet does in the same phase of a ``--sessions 1 --session-minutes 600`` run:

* connects to ``CSMS/{id}`` (subprotocol ``ocpp1.6`` / ``ocpp2.0.1``), WebSocket pings
  every ``--ping-interval`` (180 s, our stations' WebSocketPingInterval);
* BootNotification, StatusNotification Available;
* a car arrives at once: StatusNotification Preparing, Authorize, StartTransaction
  (2.0.1: TransactionEvent Started), StatusNotification Charging (2.0.1: Occupied);
* MeterValues (2.0.1: TransactionEvent Updated) every ``--meter-interval`` (60 s) with
  the measurands of our stations' factory settings (1.6 MeterValuesSampledData:
  Energy.Active.Import.Register; 2.0.1 TxUpdatedMeasurands: that and
  Power.Active.Import);
* Heartbeat every interval the CSMS gave in its BootNotification answer.

Time is real (scale 1). Stations start ``--connect-rate`` a second; one whose connection
fails (a CSMS busy with the ramp-up refuses handshakes past its limit) connects again
after 1-3 s, up to 10 times, as any charge point does; each failure counts as an error. It prints one
line ``{"event": "charging", ...}`` when every station is in its transaction, and
after ``--duration`` wall seconds (or SIGTERM / SIGINT) its figures; with ``--json``
the last line is one JSON object (stations, connected, charging, messages, errors).

    python bench/peers/ocpplib_fleet.py --stations 1000 --csms ws://127.0.0.1:9000/ocpp \\
        --ocpp 1.6 --duration 120 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import websockets
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from websockets.typing import Subprotocol

VENDOR = "PlugStream"
MODEL = "ocpp-lib peer"
VOLTAGE = 230.0
CURRENT = 16.0  # A per phase, three phases: about 11 kW, as a family car on a PlugStream 22
POWER_W = 3 * VOLTAGE * CURRENT


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(slots=True)
class Stats:
    stations: int = 0
    connected: int = 0
    charging: int = 0
    messages: int = 0
    errors: int = 0
    started_at: float = 0.0


class Peer:
    """One charge point: the library's ChargePoint and the loops around it."""

    def __init__(self, station_id: str, version: str, args: argparse.Namespace, stats: Stats):
        self.station_id = station_id
        self.version = version
        self.args = args
        self.stats = stats
        self.cp: ChargePoint16 | ChargePoint201 | None = None
        self.heartbeat_interval = 3600
        self.energy_wh = 0.0
        self.meter_at = time.monotonic()
        self.seq_no = 0

    async def call(self, payload: Any) -> Any:
        assert self.cp is not None
        try:
            result = await self.cp.call(payload)
        except Exception:
            self.stats.errors += 1
            raise
        self.stats.messages += 1
        return result

    def energy(self) -> float:
        now = time.monotonic()
        self.energy_wh += POWER_W * (now - self.meter_at) / 3600.0
        self.meter_at = now
        return self.energy_wh

    async def run(self) -> None:
        args = self.args
        subprotocol = Subprotocol("ocpp1.6" if self.version == "1.6" else "ocpp2.0.1")
        url = args.csms.rstrip("/") + "/" + self.station_id
        async with websockets.connect(
            url,
            subprotocols=[subprotocol],
            ping_interval=args.ping_interval or None,
            open_timeout=60,
        ) as ws:
            cls = ChargePoint16 if self.version == "1.6" else ChargePoint201
            self.cp = cls(self.station_id, ws)
            reader = asyncio.get_running_loop().create_task(self.cp.start())
            self.stats.connected += 1
            try:
                if self.version == "1.6":
                    await self.session16()
                else:
                    await self.session201()
            finally:
                self.stats.connected -= 1
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def heartbeats(self, make: Any) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            await self.call(make())

    async def session16(self) -> None:
        tag = self.args.id_tag
        boot = await self.call(
            call16.BootNotification(charge_point_model=MODEL, charge_point_vendor=VENDOR)
        )
        if boot.interval > 0:
            self.heartbeat_interval = boot.interval
        beats = asyncio.get_running_loop().create_task(self.heartbeats(call16.Heartbeat))
        try:
            await self.call(
                call16.StatusNotification(
                    connector_id=1, error_code="NoError", status="Available", timestamp=now_iso()
                )
            )
            await self.call(
                call16.StatusNotification(
                    connector_id=1, error_code="NoError", status="Preparing", timestamp=now_iso()
                )
            )
            await self.call(call16.Authorize(id_tag=tag))
            started = await self.call(
                call16.StartTransaction(
                    connector_id=1, id_tag=tag, meter_start=int(self.energy()), timestamp=now_iso()
                )
            )
            await self.call(
                call16.StatusNotification(
                    connector_id=1, error_code="NoError", status="Charging", timestamp=now_iso()
                )
            )
            self.stats.charging += 1
            while True:
                await asyncio.sleep(self.args.meter_interval)
                sample = {
                    "timestamp": now_iso(),
                    "sampled_value": [
                        {
                            "value": f"{self.energy():.0f}",
                            "context": "Sample.Periodic",
                            "measurand": "Energy.Active.Import.Register",
                            "location": "Outlet",
                            "unit": "Wh",
                        }
                    ],
                }
                await self.call(
                    call16.MeterValues(
                        connector_id=1,
                        transaction_id=started.transaction_id,
                        meter_value=[sample],
                    )
                )
        finally:
            beats.cancel()

    async def session201(self) -> None:
        token = {"id_token": self.args.id_tag, "type": "ISO14443"}
        boot = await self.call(
            call201.BootNotification(
                charging_station={"model": MODEL, "vendor_name": VENDOR}, reason="PowerUp"
            )
        )
        if boot.interval > 0:
            self.heartbeat_interval = boot.interval
        beats = asyncio.get_running_loop().create_task(self.heartbeats(call201.Heartbeat))
        tx_id = f"{self.station_id}-1"
        try:
            await self.call(
                call201.StatusNotification(
                    timestamp=now_iso(), connector_status="Available", evse_id=1, connector_id=1
                )
            )
            await self.call(call201.Authorize(id_token=token))
            await self.call(
                call201.TransactionEvent(
                    event_type="Started",
                    timestamp=now_iso(),
                    trigger_reason="Authorized",
                    seq_no=self.next_seq(),
                    transaction_info={"transaction_id": tx_id, "charging_state": "Charging"},
                    id_token=token,
                    evse={"id": 1, "connector_id": 1},
                    meter_value=[self.sample201("Transaction.Begin", energy_only=True)],
                )
            )
            await self.call(
                call201.StatusNotification(
                    timestamp=now_iso(), connector_status="Occupied", evse_id=1, connector_id=1
                )
            )
            self.stats.charging += 1
            while True:
                await asyncio.sleep(self.args.meter_interval)
                await self.call(
                    call201.TransactionEvent(
                        event_type="Updated",
                        timestamp=now_iso(),
                        trigger_reason="MeterValuePeriodic",
                        seq_no=self.next_seq(),
                        transaction_info={"transaction_id": tx_id},
                        meter_value=[self.sample201("Sample.Periodic")],
                    )
                )
        finally:
            beats.cancel()

    def next_seq(self) -> int:
        seq, self.seq_no = self.seq_no, self.seq_no + 1
        return seq

    def sample201(self, context: str, *, energy_only: bool = False) -> dict[str, Any]:
        values: list[dict[str, Any]] = [
            {
                "value": round(self.energy(), 1),
                "context": context,
                "measurand": "Energy.Active.Import.Register",
                "location": "Outlet",
                "unit_of_measure": {"unit": "Wh"},
            }
        ]
        if not energy_only:
            values.append(
                {
                    "value": POWER_W,
                    "context": context,
                    "measurand": "Power.Active.Import",
                    "location": "Outlet",
                    "unit_of_measure": {"unit": "W"},
                }
            )
        return {"timestamp": now_iso(), "sampled_value": values}


RECONNECTS = 10  # a charge point whose connection fails connects again, as ours do


async def drive(peer: Peer, delay: float) -> None:
    await asyncio.sleep(delay)
    for _ in range(RECONNECTS):
        try:
            await peer.run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # counted as an error; the others go on, this one retries
            peer.stats.errors += 1
            logging.getLogger("ocpplib_fleet").debug("%s: %r", peer.station_id, exc)
            # a CSMS busy with a ramp-up refuses handshakes past its limit for a while
            await asyncio.sleep(random.uniform(1.0, 3.0))


async def main_async(args: argparse.Namespace) -> Stats:
    stats = Stats(stations=args.stations, started_at=time.monotonic())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    width = max(3, len(str(args.stations)))
    tasks = [
        loop.create_task(
            drive(
                Peer(f"{args.id_prefix}{i + 1:0{width}d}", args.ocpp, args, stats),
                i / args.connect_rate,
            )
        )
        for i in range(args.stations)
    ]
    announced = False
    deadline = stats.started_at + args.duration
    while not stop.is_set() and time.monotonic() < deadline:
        if not announced and stats.charging >= args.stations:
            announced = True
            took = time.monotonic() - stats.started_at
            print(json.dumps({"event": "charging", "stations": stats.charging, "seconds": took}))
            sys.stdout.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), min(0.5, max(0.0, deadline - time.monotonic())))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--stations", type=int, required=True)
    parser.add_argument("--csms", required=True, help="ws://HOST:PORT/ocpp (ids are appended)")
    parser.add_argument("--ocpp", choices=("1.6", "2.0.1"), default="1.6")
    parser.add_argument("--duration", type=float, default=60.0, help="wall seconds (60)")
    parser.add_argument("--id-prefix", default="LIB-")
    parser.add_argument("--id-tag", default="PSDEMO0001")
    parser.add_argument("--meter-interval", type=float, default=60.0)
    parser.add_argument("--ping-interval", type=float, default=180.0, help="s (180: ours)")
    parser.add_argument("--connect-rate", type=float, default=200.0, help="stations/s (200)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    if args.stations < 1 or args.duration <= 0 or args.connect_rate <= 0:
        parser.error("need --stations >= 1, --duration > 0, --connect-rate > 0")
    logging.basicConfig(level=logging.CRITICAL)  # the library logs every message at INFO
    stats = asyncio.run(main_async(args))
    took = time.monotonic() - stats.started_at
    print(
        f"{stats.stations} stations (ocpp library, OCPP {args.ocpp}): {stats.charging} charging, "
        f"{stats.messages} messages, {stats.errors} errors in {took:.0f} s"
    )
    if args.json:
        summary = {
            "stations": stats.stations,
            "charging": stats.charging,
            "messages": stats.messages,
            "errors": stats.errors,
            "seconds": round(took, 1),
            "ocpp": args.ocpp,
        }
        print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
