"""The one raw 2.0.1 station of the tests: a charging station played frame by frame, as
the OCTT plays one against a CSMS. It sends what a test case's steps say, answers the
CSMS's CALLs with what the test scripts, and keeps every CALL it received so the test can
check the CSMS's side.

Raw OCPP-J over ``websockets`` on purpose, not our own Station201: a CSMS test case must
be able to play what our station would never send, and to see the CSMS's requests exactly
as they went on the wire. Every test that plays such a station uses this one, so a fix to
how frames are read or answered is made once.

Also :func:`hop_cloud`: a cloud on loopback with a movable clock, an operator's client to
its REST API, and :func:`station201`, a booted station on it (the fixtures ``hop``,
``cloud``, ``api`` and ``cs`` of tests/cloud/conftest.py are made of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from plugstream.ocpp import OcppVersion, schemas
from plugstream.station.clock import ManualClock
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.station201 import Station201
from tests.support import WAIT, Cloud, free_port, running_cloud, until

__all__ = [
    "BOOT",
    "RETRY_AT_ONCE",
    "TOKEN",
    "Answer",
    "Clock",
    "Hop",
    "RawStation201",
    "diagnostics_cloud",
    "hop_cloud",
    "ocpp_url",
    "our_station",
    "station201",
]

TOKEN = "hop-test-token-0123456789"
BOOT = {"reason": "PowerUp", "chargingStation": {"model": "OCTT", "vendorName": "Test"}}
SCHEMAS = schemas(OcppVersion.V201)

#: a CALLRESULT's payload, or a list ``[errorCode, description]`` for a CALLERROR
Reply = Mapping[str, Any] | list[Any]
#: what the station answers one action: a reply, or a function of the request to one
Answer = Reply | Callable[[dict[str, Any]], Reply]


class RawStation201:
    """One station's WebSocket: CALLs both ways, and the CALLs the CSMS sent, in order.

    ``answers`` maps an action the CSMS may call to the station's answer (default
    ``{"status": "Accepted"}``, what most of part 6's steps script); the test may change it
    at any time. With ``checked``, every request and response on the wire is validated
    against the official 2.0.1 schemas, as the OCTT's tool validations do."""

    def __init__(
        self,
        ws: ClientConnection,
        answers: Mapping[str, Answer] | None = None,
        *,
        checked: bool = False,
    ) -> None:
        self.ws = ws
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, Answer] = dict(answers or {})
        self.checked = checked
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RawStation201:
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop reading (the connection itself is its opener's to close)."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    def _check(self, action: str, kind: str, payload: Any) -> None:
        if self.checked:
            assert SCHEMAS.validate(action, kind, dict(payload)) is None, (action, payload)

    async def _read(self) -> None:
        async for text in self.ws:
            frame = orjson.loads(text)
            if frame[0] == 2:
                _, message_id, action, payload = frame
                self._check(action, "request", payload)
                self.received.append((action, payload))
                answer = self.answers.get(action, {"status": "Accepted"})
                reply = answer(payload) if callable(answer) else answer
                if isinstance(reply, list):
                    out: list[Any] = [4, message_id, reply[0], reply[1], {}]
                else:
                    out = [3, message_id, dict(reply)]
                await self.ws.send(orjson.dumps(out).decode())
            elif frame[1] in self._waiting:
                self._waiting.pop(frame[1]).set_result(frame)

    async def call(self, action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The CSMS's CALLRESULT payload; AssertionError on a CALLERROR."""
        self._check(action, "request", payload)
        message_id = f"s{next(self._ids)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[message_id] = future
        await self.ws.send(orjson.dumps([2, message_id, action, payload]).decode())
        frame = await asyncio.wait_for(future, WAIT)
        assert frame[0] == 3, f"{action} answered with a CALLERROR: {frame}"
        result: dict[str, Any] = frame[2]
        self._check(action, "response", result)
        return result

    async def boot(self, payload: Mapping[str, Any] = BOOT) -> None:
        """BootNotification, Accepted."""
        assert (await self.call("BootNotification", payload))["status"] == "Accepted"

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

    def calls(self, action: str) -> list[dict[str, Any]]:
        """Every ``action`` the CSMS sent so far, in order."""
        return [payload for name, payload in self.received if name == action]

    async def received_call(self, action: str, count: int | None = None) -> dict[str, Any]:
        """The ``count``-th ``action`` the CSMS sent (without ``count``: the last), once it
        has sent that many."""
        need = 1 if count is None else count
        await until(lambda: len(self.calls(action)) >= need, f"the CSMS sends {action}")
        return self.calls(action)[-1 if count is None else count - 1]


@dataclass
class Clock:
    """The cloud's clock, moved by the test."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Hop:
    """A cloud under test and an operator's client of its REST API (base /api/v1)."""

    cloud: Cloud
    api: httpx.AsyncClient
    #: what the cloud's clock reads (unless started with ``wall_clock``)
    clock: Clock


@contextlib.asynccontextmanager
async def hop_cloud(
    tmp_path: Path, *, wall_clock: bool = False, **config: Any
) -> AsyncIterator[Hop]:
    """A cloud that registers stations on first sight, and an operator's client.

    Its clock is :attr:`Hop.clock`, which stands still until the test moves it (a
    reservation's expiry, a tariff's time); ``wall_clock`` runs it on real time instead.
    ``config`` is CloudConfig fields (a ``port`` chosen beforehand, when the URLs the cloud
    hands out must name it)."""
    clock = Clock()
    config.setdefault("auto_register_unsecured", True)
    async with (
        running_cloud(
            tmp_path, api_token=TOKEN, clock=None if wall_clock else clock, **config
        ) as cloud,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{cloud.port}/api/v1",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=WAIT,
        ) as api,
    ):
        yield Hop(cloud, api, clock)


def diagnostics_cloud(tmp_path: Path, **config: Any) -> contextlib.AbstractAsyncContextManager[Hop]:
    """:func:`hop_cloud` on the wall clock, its port chosen beforehand: the log upload URLs
    it hands out name it."""
    config.setdefault("port", free_port())
    return hop_cloud(tmp_path, wall_clock=True, **config)


@contextlib.asynccontextmanager
async def station201(
    where: Hop | Cloud,
    station_id: str,
    answers: Mapping[str, Answer] | None = None,
    *,
    checked: bool = False,
    boot: Mapping[str, Any] = BOOT,
) -> AsyncIterator[RawStation201]:
    """A booted raw 2.0.1 station, connected as far as the gateway is concerned."""
    cloud = where.cloud if isinstance(where, Hop) else where
    async with (
        connect(
            cloud.url(station_id), subprotocols=[Subprotocol("ocpp2.0.1")], open_timeout=WAIT
        ) as ws,
        RawStation201(ws, answers, checked=checked) as station,
    ):
        await station.boot(boot)
        await until(lambda: cloud.gateway.is_connected(station_id), "connected")
        yield station


# -- our own Station201 against the same cloud (the end-to-end tests) -----------------------

#: our station retries a dropped connection after a second, not after a random back-off
RETRY_AT_ONCE = {
    "OCPPCommCtrlr.RetryBackOffWaitMinimum": "1",
    "OCPPCommCtrlr.RetryBackOffRandomRange": "0",
    "OCPPCommCtrlr.RetryBackOffRepeatTimes": "0",
}


def ocpp_url(hop: Hop) -> str:
    """Where our station connects to :func:`hop_cloud`'s cloud (it adds its own id)."""
    return f"ws://127.0.0.1:{hop.cloud.port}/ocpp"


def our_station(
    hop: Hop, station_id: str, tmp_path: Path, *, seed: int = 7, **device_model: str
) -> tuple[Station201, ManualClock]:
    """Our station on a manual clock that starts at the cloud's time (the test moves both
    together), retrying at once; ``device_model`` adds to its defaults."""
    clock = ManualClock(hop.clock.now)
    station = Station201(
        station_id,
        PLUGSTREAM_7,
        tmp_path / station_id,
        clock=clock,
        rng=random.Random(seed),
        device_model_defaults={**device_model, **RETRY_AT_ONCE},
        call_timeout=5.0,
    )
    return station, clock
