"""The cloud's wall clock is injected (``create_app(config, clock=...)``): what a station
reports is checked against that clock, not the machine's, so a demo whose stations run on a
scaled clock runs its cloud on the same one. Over a real WebSocket on loopback (raw OCPP 1.6
frames), read back through the REST API as an operator does."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from plugstream.cloud.storage import IdTokenRecord
from plugstream.cloud.storage.store import FUTURE_TOLERANCE
from plugstream.ocpp.datetimes import format_time
from tests.support import WAIT, running_cloud

pytestmark = pytest.mark.socket

TOKEN = "clock-test-token-0123456789"
BOOT16 = {"chargePointVendor": "PlugStream", "chargePointModel": "PlugStream 7"}


async def call(ws: ClientConnection, message_id: str, action: str, payload: Any) -> Any:
    """One CALL of the station; the payload of the cloud's CALLRESULT."""
    await ws.send(orjson.dumps([2, message_id, action, payload]).decode())
    reply = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
    assert reply[:2] == [3, message_id], reply
    return reply[2]


async def test_a_transaction_stamped_ahead_of_the_clouds_clock_is_flagged_time_in_future(
    tmp_path: Path,
) -> None:
    # A day ahead of this machine's clock: a cloud that checked against the machine's
    # clock would flag the transaction stamped at its own time too.
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    ahead = now + FUTURE_TOLERANCE + timedelta(minutes=1)
    async with running_cloud(
        tmp_path, auto_register_unsecured=True, api_token=TOKEN, clock=lambda: now
    ) as cloud:
        await cloud.store.id_tokens.put(IdTokenRecord("TAG1"))
        async with connect(cloud.url("CLK1"), subprotocols=[Subprotocol("ocpp1.6")]) as ws:
            assert (await call(ws, "b1", "BootNotification", BOOT16))["status"] == "Accepted"
            on_time = await call(
                ws,
                "s1",
                "StartTransaction",
                {"connectorId": 1, "idTag": "TAG1", "meterStart": 0, "timestamp": format_time(now)},
            )
            early = await call(
                ws,
                "s2",
                "StartTransaction",
                {
                    "connectorId": 2,
                    "idTag": "TAG1",
                    "meterStart": 0,
                    "timestamp": format_time(ahead),
                },
            )
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{cloud.port}/api/v1",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=WAIT,
        ) as http:
            listed = await http.get("/transactions", params={"station": "CLK1"})
    assert listed.status_code == 200, listed.text
    flags = {tx["id"]: [f["code"] for f in tx["flags"]] for tx in listed.json()}
    assert flags == {on_time["transactionId"]: [], early["transactionId"]: ["TimeInFuture"]}
