"""One charging session of a charge point written with the ``ocpp`` library: the wire peer.

``bench/wire.py`` runs it through the same counting relay as our station, so the bytes
of the same session can be compared: an ``ocpp.v16.ChargePoint`` (or
``ocpp.v201.ChargePoint``) over a ``websockets`` client with the defaults that the
library's examples use (permessage-deflate offered, WebSocket pings every 20 s,
uuid4 message ids), sending what a session entails:

* connect: BootNotification, StatusNotification Available;
* session: StatusNotification Preparing, Authorize, StartTransaction (2.0.1:
  TransactionEvent Started), StatusNotification Charging (2.0.1: Occupied), one
  MeterValues (TransactionEvent Updated) per ``meter_interval`` of the session with the
  same measurands as ours (energy register, power, current per phase, SoC), the
  Heartbeats of the session's hours, StopTransaction (TransactionEvent Ended),
  StatusNotification Finishing / Available;
* one Heartbeat exchange, measured alone, from which an idle day is counted.

The messages are sent back to back with the timestamps a real session would carry
(the bytes do not depend on the pauses); keep-alive pings, which do, are counted by
``bench/wire.py`` at the number a real day sends.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import websockets
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from websockets.typing import Subprotocol

__all__ = ["LIBRARY_PING_INTERVAL", "Marks", "run_session"]

LIBRARY_PING_INTERVAL = 20.0  # s: websockets' default, which the library's examples keep
VENDOR = "PlugStream"
MODEL = "ocpp-lib peer"
VOLTAGE = 230.0
CURRENT = 16.0  # A per phase, three phases: a family car on a PlugStream 22
POWER_W = 3 * VOLTAGE * CURRENT

Marks = dict[str, int]
"""Relay byte totals taken at the phase boundaries: connected, session, heartbeat."""


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _samples16(at: datetime, energy_wh: float, soc: float) -> dict[str, Any]:
    def value(measurand: str, val: str, unit: str, phase: str | None = None) -> dict[str, Any]:
        out = {
            "value": val,
            "context": "Sample.Periodic",
            "measurand": measurand,
            "location": "Outlet",
            "unit": unit,
        }
        if phase is not None:
            out["phase"] = phase
        return out

    values = [
        value("Energy.Active.Import.Register", f"{energy_wh:.0f}", "Wh"),
        value("Power.Active.Import", f"{POWER_W:.0f}", "W"),
        *(value("Current.Import", f"{CURRENT:.1f}", "A", p) for p in ("L1", "L2", "L3")),
        value("SoC", f"{soc:.0f}", "Percent"),
    ]
    values[-1]["location"] = "EV"
    return {"timestamp": _iso(at), "sampled_value": values}


def _samples201(at: datetime, energy_wh: float, soc: float) -> dict[str, Any]:
    def value(measurand: str, val: float, unit: str, phase: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "value": val,
            "context": "Sample.Periodic",
            "measurand": measurand,
            "location": "Outlet",
            "unit_of_measure": {"unit": unit},
        }
        if phase is not None:
            out["phase"] = phase
        return out

    values = [
        value("Energy.Active.Import.Register", round(energy_wh), "Wh"),
        value("Power.Active.Import", round(POWER_W), "W"),
        *(value("Current.Import", CURRENT, "A", p) for p in ("L1", "L2", "L3")),
        value("SoC", round(soc), "Percent"),
    ]
    values[-1]["location"] = "EV"
    return {"timestamp": _iso(at), "sampled_value": values}


async def run_session(
    url: str,
    station_id: str,
    version: str,
    id_tag: str,
    tally: Callable[[], int],
    *,
    ssl_context: ssl.SSLContext | None,
    session_minutes: float,
    meter_interval: float = 60.0,
    heartbeat_interval: float = 3600.0,
    settle: Callable[[], Awaitable[None]],
) -> Marks:
    """Connect, run one session, send one Heartbeat; relay totals at each boundary."""
    subprotocol = Subprotocol("ocpp1.6" if version == "1.6" else "ocpp2.0.1")
    marks: Marks = {"start": tally()}
    async with websockets.connect(
        url.rstrip("/") + "/" + station_id,
        subprotocols=[subprotocol],
        ssl=ssl_context,
        ping_interval=None,  # counted at LIBRARY_PING_INTERVAL by the bench, as a real day
    ) as ws:
        cls = ChargePoint16 if version == "1.6" else ChargePoint201
        cp: Any = cls(station_id, ws)
        reader = asyncio.get_running_loop().create_task(cp.start())
        try:
            flow = _session16 if version == "1.6" else _session201
            await flow(cp, id_tag, marks, tally, session_minutes, meter_interval,
                       heartbeat_interval, settle)  # fmt: skip
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    return marks


async def _session16(
    cp: Any,
    tag: str,
    marks: Marks,
    tally: Callable[[], int],
    minutes: float,
    interval: float,
    heartbeat: float,
    settle: Callable[[], Awaitable[None]],
) -> None:
    t0 = datetime.now(UTC)
    await cp.call(call16.BootNotification(charge_point_model=MODEL, charge_point_vendor=VENDOR))
    await cp.call(
        call16.StatusNotification(
            connector_id=1, error_code="NoError", status="Available", timestamp=_iso(t0)
        )
    )
    await settle()
    marks["connected"] = tally()
    for status in ("Preparing",):
        await cp.call(
            call16.StatusNotification(
                connector_id=1, error_code="NoError", status=status, timestamp=_iso(t0)
            )
        )
    await cp.call(call16.Authorize(id_tag=tag))
    started = await cp.call(
        call16.StartTransaction(connector_id=1, id_tag=tag, meter_start=0, timestamp=_iso(t0))
    )
    await cp.call(
        call16.StatusNotification(
            connector_id=1, error_code="NoError", status="Charging", timestamp=_iso(t0)
        )
    )
    samples = int(minutes * 60 // interval)
    beats = int(minutes * 60 // heartbeat)
    for n in range(1, samples + 1):
        at = t0 + timedelta(seconds=n * interval)
        energy = POWER_W * n * interval / 3600.0
        await cp.call(
            call16.MeterValues(
                connector_id=1,
                transaction_id=started.transaction_id,
                meter_value=[_samples16(at, energy, 20 + 60 * n / samples)],
            )
        )
        if beats and n % max(1, samples // beats) == 0 and beats > 0:
            beats -= 1
            await cp.call(call16.Heartbeat())
    end = t0 + timedelta(minutes=minutes)
    await cp.call(
        call16.StopTransaction(
            meter_stop=int(POWER_W * minutes / 60.0),
            timestamp=_iso(end),
            transaction_id=started.transaction_id,
            reason="EVDisconnected",
            id_tag=tag,
        )
    )
    for status in ("Finishing", "Available"):
        await cp.call(
            call16.StatusNotification(
                connector_id=1, error_code="NoError", status=status, timestamp=_iso(end)
            )
        )
    await settle()
    marks["session"] = tally()
    await cp.call(call16.Heartbeat())
    await settle()
    marks["heartbeat"] = tally()


async def _session201(
    cp: Any,
    tag: str,
    marks: Marks,
    tally: Callable[[], int],
    minutes: float,
    interval: float,
    heartbeat: float,
    settle: Callable[[], Awaitable[None]],
) -> None:
    t0 = datetime.now(UTC)
    token = {"id_token": tag, "type": "ISO14443"}
    await cp.call(
        call201.BootNotification(
            charging_station={"model": MODEL, "vendor_name": VENDOR}, reason="PowerUp"
        )
    )

    async def status(text: str, at: datetime) -> None:
        await cp.call(
            call201.StatusNotification(
                timestamp=_iso(at), connector_status=text, evse_id=1, connector_id=1
            )
        )

    await status("Available", t0)
    await settle()
    marks["connected"] = tally()
    await cp.call(call201.Authorize(id_token=token))
    tx = {"transaction_id": "ocpplib-peer-tx-0001"}
    seq = 0

    async def event(kind: str, trigger: str, at: datetime, **extra: Any) -> None:
        nonlocal seq
        await cp.call(
            call201.TransactionEvent(
                event_type=kind,
                timestamp=_iso(at),
                trigger_reason=trigger,
                seq_no=seq,
                transaction_info=tx
                if kind != "Ended"
                else {**tx, "stopped_reason": "EVDisconnected"},
                **extra,
            )
        )
        seq += 1

    await event(
        "Started",
        "Authorized",
        t0,
        id_token=token,
        evse={"id": 1, "connector_id": 1},
        meter_value=[_samples201(t0, 0.0, 20.0)],
    )
    await status("Occupied", t0)
    samples = int(minutes * 60 // interval)
    beats = int(minutes * 60 // heartbeat)
    for n in range(1, samples + 1):
        at = t0 + timedelta(seconds=n * interval)
        energy = POWER_W * n * interval / 3600.0
        await event(
            "Updated",
            "MeterValuePeriodic",
            at,
            meter_value=[_samples201(at, energy, 20 + 60 * n / samples)],
        )
        if beats and n % max(1, samples // beats) == 0:
            beats -= 1
            await cp.call(call201.Heartbeat())
    end = t0 + timedelta(minutes=minutes)
    await event(
        "Ended",
        "EVCommunicationLost",
        end,
        meter_value=[_samples201(end, POWER_W * minutes / 60.0, 80.0)],
    )
    await status("Available", end)
    await settle()
    marks["session"] = tally()
    await cp.call(call201.Heartbeat())
    await settle()
    marks["heartbeat"] = tally()
