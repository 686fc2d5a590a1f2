"""A bare OCPP 2.0.1 station over ``websockets``, as the OCTT plays it: it sends the CALLs
a test case names and answers the CSMS's CALLs from a table, keeping what it was sent.
Used by the C/M/L test cases (test_v2g_certificates.py, test_publish_firmware.py)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from plugstream.ocpp import OcppVersion, schemas
from tests.support import WAIT, Cloud, serving

SCHEMAS = schemas(OcppVersion.V201)

Answer = Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]]


class Station201:
    """One connection of a 2.0.1 station; ``answers`` per action the CSMS may call."""

    def __init__(self, ws: ClientConnection, answers: Mapping[str, Answer]) -> None:
        self.ws = ws
        self.answers = dict(answers)
        self.received: list[tuple[str, dict[str, Any]]] = []  # the CSMS's CALLs, in order
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for text in self.ws:
            frame = orjson.loads(text)
            if frame[0] == 2:
                _, unique, action, payload = frame
                assert SCHEMAS.validate(action, "request", payload) is None, payload
                self.received.append((action, payload))
                answer = self.answers.get(action, {"status": "Accepted"})
                out = dict(answer(payload) if callable(answer) else answer)
                await self.ws.send(orjson.dumps([3, unique, out]).decode())
            else:
                future = self._pending.pop(frame[1], None)
                if future is not None and not future.done():
                    future.set_result(frame)

    async def call(self, action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The CSMS's CALLRESULT payload, checked against the official schema; an
        AssertionError for a CALLERROR."""
        assert SCHEMAS.validate(action, "request", dict(payload)) is None, payload
        unique = str(next(self._ids))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[unique] = future
        await self.ws.send(orjson.dumps([2, unique, action, payload]).decode())
        frame = await asyncio.wait_for(future, WAIT)
        assert frame[0] == 3, f"{action} answered with a CALLERROR: {frame}"
        result: dict[str, Any] = frame[2]
        assert SCHEMAS.validate(action, "response", result) is None, result
        return result

    async def boot(self) -> None:
        answer = await self.call(
            "BootNotification",
            {"reason": "PowerUp", "chargingStation": {"model": "OCTT", "vendorName": "Test"}},
        )
        assert answer["status"] == "Accepted"

    def calls(self, action: str) -> list[dict[str, Any]]:
        return [p for a, p in self.received if a == action]

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
            await self._reader


@contextlib.asynccontextmanager
async def station201(
    cloud: Cloud, station_id: str, answers: Mapping[str, Answer] | None = None
) -> AsyncIterator[Station201]:
    """A booted 2.0.1 station connected to ``cloud`` (which registers it on first use)."""
    async with websockets.connect(
        cloud.url(station_id), subprotocols=[Subprotocol("ocpp2.0.1")], open_timeout=WAIT
    ) as ws:
        station = Station201(ws, answers or {})
        try:
            await station.boot()
            yield station
        finally:
            await station.close()


@contextlib.asynccontextmanager
async def cloud_with_pki(tmp_path: Path, pki_dir: Path, **overrides: Any) -> AsyncIterator[Cloud]:
    """:func:`tests.support.running_cloud` with ``pki_dir`` and unsecured auto-registration."""
    from plugstream.cloud.app import create_app
    from plugstream.cloud.config import CloudConfig
    from plugstream.cloud.handlers import csms_handlers
    from plugstream.cloud.serve import CloudServer, bound_port, uvicorn_config

    config = replace(
        CloudConfig(
            host="127.0.0.1",
            port=0,
            db=f"sqlite:///{tmp_path / 'cloud.db'}",
            call_timeout=5.0,
            pki_dir=pki_dir,
            auto_register_unsecured=True,
        ),
        **overrides,
    )
    app = create_app(config, handlers=csms_handlers())
    server = CloudServer(uvicorn_config(config, app))
    async with serving(server):
        yield Cloud(config, bound_port(server, 0), app.state.store, app.state.gateway, server)


def api(cloud: Cloud) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{cloud.port}", timeout=WAIT)
