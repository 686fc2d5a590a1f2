"""A 2.0.1 station played frame by frame against a cloud on loopback, as the OCTT plays
one: it answers the CSMS's CALLs with what the test scripts and keeps each CALL it got;
and an operator's client of the cloud's REST API."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.support import WAIT, Cloud, free_port, running_cloud, until

__all__ = ["API_TOKEN", "Octt", "OcttStation", "diagnostics_cloud", "octt_station"]

API_TOKEN = "diagnostics-test-token-0123456789"
BOOT = {"reason": "PowerUp", "chargingStation": {"model": "OCTT", "vendorName": "Test"}}

Answer = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]


class OcttStation:
    """CALLs both ways on one WebSocket; what the CSMS sent, in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, Answer] = {}  # default: {"status": "Accepted"}
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> OcttStation:
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

    def calls(self, action: str) -> list[dict[str, Any]]:
        return [payload for name, payload in self.received if name == action]

    async def received_call(self, action: str, count: int = 1) -> dict[str, Any]:
        """The ``count``-th ``action`` the CSMS sent, once it has."""
        await until(lambda: len(self.calls(action)) >= count, f"the CSMS sends {action}")
        return self.calls(action)[count - 1]


@dataclass
class Octt:
    cloud: Cloud
    api: httpx.AsyncClient


@contextlib.asynccontextmanager
async def diagnostics_cloud(tmp_path: Path, **config: Any) -> AsyncIterator[Octt]:
    """A cloud that registers stations on first sight, and an operator's client. Its port
    is chosen beforehand: the log upload URLs it hands out name it."""
    config.setdefault("port", free_port())
    async with (
        running_cloud(
            tmp_path, auto_register_unsecured=True, api_token=API_TOKEN, **config
        ) as cloud,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{cloud.port}/api/v1",
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=WAIT,
        ) as api,
    ):
        yield Octt(cloud, api)


@contextlib.asynccontextmanager
async def octt_station(octt: Octt, station_id: str) -> AsyncIterator[OcttStation]:
    """A booted station, connected as far as the gateway is concerned."""
    async with (
        connect(octt.cloud.url(station_id), subprotocols=[Subprotocol("ocpp2.0.1")]) as ws,
        OcttStation(ws) as station,
    ):
        assert (await station.call("BootNotification", BOOT))["status"] == "Accepted"
        await until(lambda: octt.cloud.gateway.is_connected(station_id), "connected")
        yield station
