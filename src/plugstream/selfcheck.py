"""The protocol self-check: a CSMS and a charge point on loopback, over real WebSockets.

For each OCPP version it runs the messages of a charging session in both
directions and feeds the CSMS broken frames, checking every answer against the
spec. ``plugstream selfcheck`` runs it: a quick way to see that an install works
(``plugstream demo`` runs the cloud and a fleet of stations instead).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from plugstream.ocpp import (
    SUBPROTOCOLS,
    ErrorCode,
    Handlers,
    OcppEndpoint,
    OcppError,
    OcppVersion,
    on,
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Csms16(Handlers):
    @on("BootNotification")
    def boot(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"status": "Accepted", "currentTime": _now(), "interval": 300}

    @on("Heartbeat")
    def heartbeat(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"currentTime": _now()}

    @on("Authorize")
    def authorize(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"idTagInfo": {"status": "Accepted"}}

    @on("StartTransaction")
    def start(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}

    @on("MeterValues")
    def meter(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {}

    @on("StopTransaction")
    def stop(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"idTagInfo": {"status": "Accepted"}}


class _Csms2(Handlers):
    @on("BootNotification")
    def boot(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"status": "Accepted", "currentTime": _now(), "interval": 300}

    @on("Heartbeat")
    def heartbeat(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"currentTime": _now()}

    @on("Authorize")
    def authorize(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"idTokenInfo": {"status": "Accepted"}}

    @on("TransactionEvent")
    def transaction(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {}


class _Station(Handlers):
    @on("Reset")
    def reset(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {"status": "Accepted"}


@dataclass
class Step:
    version: str
    name: str
    ok: bool
    detail: str
    ms: float


def _meter(wh: int, version: OcppVersion) -> dict[str, Any]:
    # 1.6 carries meter readings as strings, 2.0.1 as numbers.
    value: str | int = str(wh) if version is OcppVersion.V16 else wh
    sample = {"value": value, "measurand": "Energy.Active.Import.Register"}
    if version is OcppVersion.V16:
        sample["unit"] = "Wh"
    return {"timestamp": _now(), "sampledValue": [sample]}


def _journey(version: OcppVersion) -> list[tuple[str, str, dict[str, Any]]]:
    if version is OcppVersion.V16:
        return [
            (
                "BootNotification",
                "BootNotification",
                {"chargePointVendor": "PlugStream", "chargePointModel": "PlugStream 22"},
            ),
            ("Heartbeat", "Heartbeat", {}),
            ("Authorize", "Authorize", {"idTag": "04A2B3C4D5E6F7"}),
            (
                "StartTransaction",
                "StartTransaction",
                {"connectorId": 1, "idTag": "04A2B3C4D5E6F7", "meterStart": 0, "timestamp": _now()},
            ),
            (
                "MeterValues",
                "MeterValues",
                {"connectorId": 1, "transactionId": 1, "meterValue": [_meter(5500, version)]},
            ),
            (
                "StopTransaction",
                "StopTransaction",
                {
                    "transactionId": 1,
                    "meterStop": 11000,
                    "timestamp": _now(),
                    "reason": "EVDisconnected",
                },
            ),
        ]
    tx = {"transactionId": "tx-1"}
    evse = {"id": 1, "connectorId": 1}
    return [
        (
            "BootNotification",
            "BootNotification",
            {
                "reason": "PowerUp",
                "chargingStation": {"vendorName": "PlugStream", "model": "PlugStream 22"},
            },
        ),
        ("Heartbeat", "Heartbeat", {}),
        ("Authorize", "Authorize", {"idToken": {"idToken": "04A2B3C4D5E6F7", "type": "ISO14443"}}),
        (
            "TransactionEvent Started",
            "TransactionEvent",
            {
                "eventType": "Started",
                "timestamp": _now(),
                "triggerReason": "Authorized",
                "seqNo": 0,
                "transactionInfo": tx,
                "evse": evse,
                "idToken": {"idToken": "04A2B3C4D5E6F7", "type": "ISO14443"},
            },
        ),
        (
            "TransactionEvent Updated",
            "TransactionEvent",
            {
                "eventType": "Updated",
                "timestamp": _now(),
                "triggerReason": "MeterValuePeriodic",
                "seqNo": 1,
                "transactionInfo": tx,
                "meterValue": [_meter(5500, version)],
            },
        ),
        (
            "TransactionEvent Ended",
            "TransactionEvent",
            {
                "eventType": "Ended",
                "timestamp": _now(),
                "triggerReason": "EVCommunicationLost",
                "seqNo": 2,
                "transactionInfo": {**tx, "stoppedReason": "EVDisconnected"},
                "meterValue": [_meter(11000, version)],
            },
        ),
    ]


# Broken frames and the error code each must get, canonical names.
def _broken(version: OcppVersion) -> list[tuple[str, str, ErrorCode]]:
    field = "idTag" if version is OcppVersion.V16 else "idToken"
    return [
        ("not JSON", "{nope", ErrorCode.RpcFrameworkError),
        ("not an array", '{"a": 1}', ErrorCode.RpcFrameworkError),
        ("unknown action", '[2, "b1", "Teleport", {}]', ErrorCode.NotImplemented),
        ("unknown field", '[2, "b2", "Heartbeat", {"x": 1}]', ErrorCode.FormatViolation),
        (
            "wrong type",
            f'[2, "b3", "Authorize", {{"{field}": 7}}]',
            ErrorCode.TypeConstraintViolation,
        ),
        ("missing field", '[2, "b4", "Authorize", {}]', ErrorCode.OccurrenceConstraintViolation),
    ]


class _Checker:
    """Runs the checks of one version against the CSMS on ``port``, recording each step."""

    def __init__(
        self, port: int, remote: dict[str, OcppEndpoint], record: Callable[[Step], None]
    ) -> None:
        self.url = f"ws://127.0.0.1:{port}/ocpp/SELFCHECK"
        self.remote = remote
        self.record = record

    async def timed(self, version: OcppVersion, name: str, work: Awaitable[str]) -> None:
        t0 = time.perf_counter()
        try:
            detail, ok = await work, True
        except (OcppError, AssertionError, OSError, TimeoutError) as exc:
            detail, ok = f"{type(exc).__name__}: {exc}", False
        self.record(Step(version.value, name, ok, detail, (time.perf_counter() - t0) * 1000))

    async def station_call(
        self, station: OcppEndpoint, action: str, payload: dict[str, Any]
    ) -> str:
        answer = await station.call(action, payload)
        return orjson.dumps(answer).decode()[:60]

    async def reset(self, version: OcppVersion) -> str:
        kind = "Soft" if version is OcppVersion.V16 else "Immediate"
        answer = await self.remote[version.value].call("Reset", {"type": kind})
        assert answer["status"] == "Accepted", answer
        return "CSMS → station: Accepted"

    async def broken(self, version: OcppVersion, text: str, expected: ErrorCode) -> str:
        async with connect(self.url, subprotocols=[version.subprotocol]) as raw:  # type: ignore[list-item]
            await raw.send(text)
            reply = orjson.loads(await asyncio.wait_for(raw.recv(), 5))
        want = expected.spelled(version)
        assert reply[0] == 4 and reply[2] == want, f"expected {want}, got {reply}"
        return f"CALLERROR {reply[2]} (id {reply[1]})"

    async def version(self, version: OcppVersion) -> None:
        async with connect(self.url, subprotocols=[version.subprotocol]) as ws:  # type: ignore[list-item]
            station = OcppEndpoint(ws, version, _Station(), call_timeout=5)
            runner = asyncio.create_task(station.run())
            for name, action, payload in _journey(version):
                await self.timed(version, name, self.station_call(station, action, payload))
            await self.timed(version, "Reset (from the CSMS)", self.reset(version))
            runner.cancel()
        for name, text, expected in _broken(version):
            await self.timed(version, f"broken frame: {name}", self.broken(version, text, expected))


async def run_selfcheck(on_step: Callable[[Step], None] | None = None) -> list[Step]:
    """Run every check; each result is also passed to ``on_step`` as it happens."""
    steps: list[Step] = []

    def record(step: Step) -> None:
        steps.append(step)
        if on_step is not None:
            on_step(step)

    remote: dict[str, OcppEndpoint] = {}

    async def handle(ws: ServerConnection) -> None:
        version = OcppVersion.from_subprotocol(ws.subprotocol or "")
        handlers = _Csms16() if version is OcppVersion.V16 else _Csms2()
        endpoint = OcppEndpoint(ws, version, handlers, call_timeout=5)
        remote[version.value] = endpoint
        await endpoint.run()

    async with serve(handle, "127.0.0.1", 0, subprotocols=list(SUBPROTOCOLS)) as server:  # type: ignore[arg-type]
        checker = _Checker(next(iter(server.sockets)).getsockname()[1], remote, record)
        for version in OcppVersion:
            await checker.version(version)
    return steps
