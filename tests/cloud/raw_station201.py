"""A 2.0.1 charging station played frame by frame, as the OCTT plays one against a CSMS:
it sends what a test case's steps say, answers the CSMS's CALLs with what the test
scripts, and keeps every CALL it received so the test can check the CSMS's side.

Also :func:`hop_cloud`: a cloud on loopback with a movable clock, an operator's
client to its REST API, and a booted station.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.support import WAIT, Cloud, running_cloud, until

__all__ = ["TOKEN", "Clock", "Hop", "RawStation201", "hop_cloud", "station201"]

TOKEN = "hop-test-token-0123456789"
BOOT = {"reason": "PowerUp", "chargingStation": {"model": "OCTT", "vendorName": "Test"}}

Answer = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]


class RawStation201:
    """One station's WebSocket: CALLs both ways, and the CALLs the CSMS sent, in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[tuple[str, dict[str, Any]]] = []
        #: what to answer each action the CSMS calls (default: {"status": "Accepted"})
        self.answers: dict[str, Answer] = {}
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RawStation201:
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._reader is not None
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        async for text in self.ws:
            frame = orjson.loads(text)
            if frame[0] == 2:
                _, message_id, action, payload = frame
                self.received.append((action, payload))
                answer = self.answers.get(action, {"status": "Accepted"})
                reply = answer(payload) if callable(answer) else answer
                await self.ws.send(orjson.dumps([3, message_id, reply]).decode())
            elif frame[1] in self._waiting:
                self._waiting.pop(frame[1]).set_result(frame)

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The CSMS's CALLRESULT payload; AssertionError on a CALLERROR."""
        message_id = f"s{next(self._ids)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[message_id] = future
        await self.ws.send(orjson.dumps([2, message_id, action, payload]).decode())
        frame = await asyncio.wait_for(future, WAIT)
        assert frame[0] == 3, f"{action} answered with a CALLERROR: {frame}"
        result: dict[str, Any] = frame[2]
        return result

    async def boot(self) -> None:
        assert (await self.call("BootNotification", BOOT))["status"] == "Accepted"

    async def status(self, status: str, at: datetime, evse_id: int = 1) -> None:
        """StatusNotification and NotifyEvent AvailabilityState, as the OCTT sends them."""
        stamp = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        await self.call(
            "StatusNotification",
            {"timestamp": stamp, "connectorStatus": status, "evseId": evse_id, "connectorId": 1},
        )
        event = {
            "eventId": 1,
            "timestamp": stamp,
            "trigger": "Delta",
            "actualValue": status,
            "eventNotificationType": "HardWiredNotification",
            "component": {"name": "Connector", "evse": {"id": evse_id, "connectorId": 1}},
            "variable": {"name": "AvailabilityState"},
        }
        await self.call("NotifyEvent", {"generatedAt": stamp, "seqNo": 0, "eventData": [event]})

    async def received_call(self, action: str) -> dict[str, Any]:
        """The last ``action`` the CSMS sent, once it has."""

        def found() -> dict[str, Any] | None:
            for name, payload in reversed(self.received):
                if name == action:
                    return payload
            return None

        result: dict[str, Any] = await until(found, f"the CSMS sends {action}")
        return result


@dataclass
class Clock:
    """The cloud's clock, moved by the test."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Hop:
    cloud: Cloud
    api: httpx.AsyncClient
    clock: Clock


@contextlib.asynccontextmanager
async def hop_cloud(tmp_path: Path) -> AsyncIterator[Hop]:
    """A cloud that registers stations on first sight, and an operator's client."""
    clock = Clock()
    async with (
        running_cloud(
            tmp_path, auto_register_unsecured=True, api_token=TOKEN, clock=clock
        ) as cloud,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{cloud.port}/api/v1",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=WAIT,
        ) as api,
    ):
        yield Hop(cloud, api, clock)


@contextlib.asynccontextmanager
async def station201(hop: Hop, station_id: str) -> AsyncIterator[RawStation201]:
    """A booted raw 2.0.1 station, connected as far as the gateway is concerned."""
    async with (
        connect(hop.cloud.url(station_id), subprotocols=[Subprotocol("ocpp2.0.1")]) as ws,
        RawStation201(ws) as station,
    ):
        await station.boot()
        await until(lambda: hop.cloud.gateway.is_connected(station_id), "connected")
        yield station
