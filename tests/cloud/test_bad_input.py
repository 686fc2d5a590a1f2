"""What a misbehaving station meets at PlugStream Cloud: broken frames get the spec's CALLERROR
while the connection and every other station keep being served; a station flagged lenient
has its schema slips counted and accepted; and the whole server runs the same on each database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from plugstream.cloud.storage import IdTokenRecord
from tests.support import WAIT, running_cloud

pytestmark = pytest.mark.socket

NOW = "2026-11-25T10:00:00Z"
BOOT16 = {"chargePointVendor": "PlugStream", "chargePointModel": "PlugStream 7"}


async def exchange(ws: ClientConnection, frame: list[Any] | str) -> list[Any]:
    await ws.send(frame if isinstance(frame, str) else orjson.dumps(frame).decode())
    reply: list[Any] = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT))
    return reply


async def test_broken_frames_get_callerrors_and_everyone_keeps_being_served(tmp_path: Path) -> None:
    async with (
        running_cloud(tmp_path, auto_register_unsecured=True) as cloud,
        connect(cloud.url("BAD1"), subprotocols=["ocpp1.6"]) as bad,  # type: ignore[list-item]
        connect(cloud.url("GOOD1"), subprotocols=["ocpp1.6"]) as good,  # type: ignore[list-item]
    ):
        assert (await exchange(bad, [2, "b0", "BootNotification", BOOT16]))[2][
            "status"
        ] == "Accepted"
        assert (await exchange(good, [2, "g0", "BootNotification", BOOT16]))[2][
            "status"
        ] == "Accepted"
        assert (await exchange(bad, "{not json"))[:3] == [4, "-1", "FormationViolation"]
        assert (await exchange(bad, [2, "b1", "Authorize", {"idTag": 7}]))[:3] == [
            4,
            "b1",
            "TypeConstraintViolation",
        ]
        assert (await exchange(bad, [2, "b2", "Teleport", {}]))[:3] == [
            4,
            "b2",
            "NotImplemented",
        ]
        assert (await exchange(bad, [2, "b3", "Authorize", {}]))[:3] == [
            4,
            "b3",
            "OccurenceConstraintViolation",
        ]
        # the same connection still works, and so does the other station
        assert (await exchange(bad, [2, "b4", "Heartbeat", {}]))[0] == 3
        assert (await exchange(good, [2, "g1", "Heartbeat", {}]))[0] == 3
        assert cloud.gateway.violations["BAD1"] == 4
        assert cloud.gateway.violations["GOOD1"] == 0


async def test_a_lenient_station_is_accepted_where_a_strict_one_is_refused(tmp_path: Path) -> None:
    async with running_cloud(tmp_path, api_token="t0ken") as cloud:
        await cloud.store.stations.register("STRICT1", security_profile=0)
        await cloud.store.stations.register("LENIENT1", security_profile=0, lenient=True)
        serial = "PS7-2611-000231-REV-B-LONGER"  # CiString25 in 1.6: real chargers overflow it
        boot = [2, "x1", "BootNotification", {**BOOT16, "chargePointSerialNumber": serial}]
        async with connect(cloud.url("STRICT1"), subprotocols=["ocpp1.6"]) as strict:  # type: ignore[list-item]
            assert (await exchange(strict, boot))[:3] == [4, "x1", "TypeConstraintViolation"]
        async with connect(cloud.url("LENIENT1"), subprotocols=["ocpp1.6"]) as lenient:  # type: ignore[list-item]
            assert (await exchange(lenient, boot))[2]["status"] == "Accepted"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cloud.port}") as http:
                view = (
                    await http.get(
                        "/api/v1/stations/LENIENT1", headers={"Authorization": "Bearer t0ken"}
                    )
                ).json()
        assert view["serial_number"] == serial
        assert view["protocol_violations"] == 1 and view["lenient"] is True


async def test_a_charging_session_is_stored_on_each_database(
    tmp_path: Path, store_url: str
) -> None:
    """Runs on SQLite, and on PostgreSQL when PLUGSTREAM_TEST_POSTGRES is set."""
    async with running_cloud(tmp_path, db=store_url, auto_register_unsecured=True) as cloud:
        await cloud.store.id_tokens.put(IdTokenRecord("04A2B3C4"))
        async with connect(cloud.url("DB1"), subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
            await exchange(ws, [2, "d0", "BootNotification", BOOT16])
            start = await exchange(
                ws,
                [
                    2,
                    "d1",
                    "StartTransaction",
                    {"connectorId": 1, "idTag": "04A2B3C4", "meterStart": 1000, "timestamp": NOW},
                ],
            )
            tx = start[2]["transactionId"]
            assert start[2]["idTagInfo"]["status"] == "Accepted"
            sample = {
                "timestamp": NOW,
                "sampledValue": [
                    {"value": "2500.5", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
                ],
            }
            assert (
                await exchange(
                    ws,
                    [
                        2,
                        "d2",
                        "MeterValues",
                        {"connectorId": 1, "transactionId": tx, "meterValue": [sample]},
                    ],
                )
            )[0] == 3
            stop = {
                "transactionId": tx,
                "meterStop": 4000,
                "timestamp": "2026-11-25T11:00:00Z",
                "reason": "EVDisconnected",
            }
            assert (await exchange(ws, [2, "d3", "StopTransaction", stop]))[0] == 3
        record = await cloud.store.transactions.get(tx)
        assert record is not None and str(record.energy_wh) in ("3000", "3000.0", "3000.000")
        assert [str(m.value).rstrip("0").rstrip(".") for m in record.meter_values][:1] == ["2500.5"]
