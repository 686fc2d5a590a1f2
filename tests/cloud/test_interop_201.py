"""Interoperability, OCPP 2.0.1: the real ``plugstream cloud serve`` on loopback, talked to by
an independent charging station written with the ``ocpp`` library (mobilityhouse) and by an
operator over the REST API (httpx).

Boot, authorize, a transaction (TransactionEvent Started / Updated / Ended) with meter
values, a remote command sent through the REST API; and a server killed (SIGKILL)
mid-transaction loses nothing it acknowledged. The server helpers are those of
``test_interop_16.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import websockets
from ocpp.routing import on
from ocpp.v201 import ChargePoint as OcppChargePoint201
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action, RequestStartStopStatusEnumType
from websockets.typing import Subprotocol

from tests.cloud.test_interop_16 import (
    CloudProcess,
    api,
    cloud,
    exact,
    iso,
    now,
    put_token,
    wait_connected,
)

pytestmark = pytest.mark.socket

__all__ = ["api", "cloud"]  # fixtures, shared with the 1.6 tests


class ChargingStation201(OcppChargePoint201):  # type: ignore[misc]
    """A charging station made with the mobilityhouse library: what a third party would run."""

    def __init__(self, station_id: str, connection: Any) -> None:
        super().__init__(station_id, connection, response_timeout=15)
        self.remote_starts: list[dict[str, Any]] = []

    @on(Action.request_start_transaction)  # type: ignore[untyped-decorator]
    async def on_request_start(
        self, id_token: dict[str, Any], remote_start_id: int, **extra: Any
    ) -> Any:
        self.remote_starts.append(
            {"id_token": id_token, "remote_start_id": remote_start_id, **extra}
        )
        return call_result.RequestStartTransaction(status=RequestStartStopStatusEnumType.accepted)


@contextlib.asynccontextmanager
async def connected201(cloud: CloudProcess, station_id: str) -> AsyncIterator[ChargingStation201]:
    async with websockets.connect(
        cloud.ws(station_id), subprotocols=[Subprotocol("ocpp2.0.1")]
    ) as ws:
        assert ws.subprotocol == "ocpp2.0.1"
        cs = ChargingStation201(station_id, ws)
        task = asyncio.create_task(cs.start())
        try:
            yield cs
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await task


async def boot201(cs: ChargingStation201) -> None:
    answer = await cs.call(
        call.BootNotification(
            charging_station={
                "vendor_name": "Interop Ltd",
                "model": "IOP-201",
                "serial_number": "IOP201-0001",
                "firmware_version": "3.2.1",
            },
            reason="PowerUp",
        )
    )
    assert answer.status == "Accepted"
    assert answer.interval > 0
    assert answer.current_time.endswith("Z")
    assert abs(datetime.fromisoformat(answer.current_time) - now()) < timedelta(seconds=30)


def token(value: str) -> dict[str, str]:
    return {"idToken": value, "type": "ISO14443"}


def register(
    at: datetime, value: float, unit: str = "Wh", context: str = "Sample.Periodic"
) -> dict[str, Any]:
    return {
        "timestamp": iso(at),
        "sampledValue": [
            {
                "value": value,
                "measurand": "Energy.Active.Import.Register",
                "context": context,
                "unitOfMeasure": {"unit": unit},
            }
        ],
    }


async def tx_event(
    cs: ChargingStation201,
    event_type: str,
    seq_no: int,
    at: datetime,
    tx: str,
    trigger: str,
    **extra: Any,
) -> Any:
    answer = await cs.call(
        call.TransactionEvent(
            event_type=event_type,
            timestamp=iso(at),
            trigger_reason=trigger,
            seq_no=seq_no,
            transaction_info={"transaction_id": tx, **extra.pop("info", {})},
            **extra,
        )
    )
    assert answer is not None, f"{event_type} seqNo {seq_no} got a CALLERROR"
    return answer


async def transaction_of(api: httpx.AsyncClient, station: str) -> dict[str, Any]:
    listed = await api.get("/transactions", params={"station": station})
    assert listed.status_code == 200
    [tx] = exact(listed)
    detail = await api.get(f"/transactions/{tx['id']}")
    assert detail.status_code == 200
    found: dict[str, Any] = exact(detail)
    return found


async def test_boot_authorize_transaction_and_remote_start(
    cloud: CloudProcess, api: httpx.AsyncClient
) -> None:
    await put_token(api, "IOPTAG201")
    station = "IOP-CS201"
    async with connected201(cloud, station) as cs:
        await boot201(cs)
        assert (await cs.call(call.Heartbeat())).current_time.endswith("Z")
        await cs.call(
            call.StatusNotification(
                timestamp=iso(now()), connector_status="Available", evse_id=1, connector_id=1
            )
        )
        accepted = await cs.call(call.Authorize(id_token=token("IOPTAG201")))
        assert accepted.id_token_info["status"] == "Accepted"
        unknown = await cs.call(call.Authorize(id_token=token("NOBODY")))
        assert unknown.id_token_info["status"] == "Invalid"

        command = await api.post(
            f"/stations/{station}/commands/RequestStartTransaction",
            json={"idToken": token("IOPTAG201"), "remoteStartId": 42, "evseId": 1},
        )
        assert command.status_code == 200, command.text
        assert command.json() == {"status": "Accepted"}
        assert cs.remote_starts == [
            {
                "id_token": {"id_token": "IOPTAG201", "type": "ISO14443"},
                "remote_start_id": 42,
                "evse_id": 1,
            }
        ]

        t0 = now() - timedelta(minutes=30)
        tx = "iop-201-tx-1"
        started = await tx_event(
            cs,
            "Started",
            0,
            t0,
            tx,
            "RemoteStart",
            evse={"id": 1, "connector_id": 1},
            id_token=token("IOPTAG201"),
            meter_value=[register(t0, 1500.5, context="Transaction.Begin")],
            info={"remote_start_id": 42},
        )
        assert started.id_token_info["status"] == "Accepted"
        updated = await tx_event(
            cs,
            "Updated",
            1,
            t0 + timedelta(minutes=15),
            tx,
            "MeterValuePeriodic",
            meter_value=[register(t0 + timedelta(minutes=15), 3.25, unit="kWh")],
        )
        assert updated.id_token_info is None  # no idToken sent, none answered
        await tx_event(
            cs,
            "Ended",
            2,
            t0 + timedelta(minutes=30),
            tx,
            "EVCommunicationLost",
            meter_value=[register(t0 + timedelta(minutes=30), 5000.75, context="Transaction.End")],
            info={"stopped_reason": "EVDisconnected"},
        )

        info = await api.get(f"/stations/{station}")
        assert info.status_code == 200
        body = info.json()
        assert body["connected"] is True
        assert (body["vendor"], body["model"]) == ("Interop Ltd", "IOP-201")
        assert (body["serial_number"], body["firmware_version"]) == ("IOP201-0001", "3.2.1")
        assert body["ocpp_version"] == "2.0.1"

    record = await transaction_of(api, station)
    assert record["transaction_id"] == tx
    assert (record["evse_id"], record["connector_id"]) == (1, 1)
    assert record["id_token"] == "IOPTAG201"
    assert record["meter_start_wh"] == Decimal("1500.5")
    assert record["meter_stop_wh"] == Decimal("5000.75")
    assert record["energy_wh"] == Decimal("3500.25")
    assert record["active"] is False and record["stop_reason"] == "EVDisconnected"
    assert [v["value"] for v in record["meter_values"]] == [
        Decimal("1500.5"),
        Decimal(3250),
        Decimal("5000.75"),
    ]
    await wait_connected(api, station, connected=False)


async def test_server_killed_mid_transaction_loses_nothing_acknowledged(
    cloud: CloudProcess, api: httpx.AsyncClient
) -> None:
    await put_token(api, "IOPTAG201")
    station = "IOP-CS201-K"
    tx = "iop-201-tx-k"
    t0 = now() - timedelta(minutes=30)
    async with connected201(cloud, station) as cs:
        await boot201(cs)
        await tx_event(
            cs,
            "Started",
            0,
            t0,
            tx,
            "Authorized",
            evse={"id": 1, "connector_id": 1},
            id_token=token("IOPTAG201"),
            meter_value=[register(t0, 20_000, context="Transaction.Begin")],
        )
        await tx_event(
            cs,
            "Updated",
            1,
            t0 + timedelta(minutes=10),
            tx,
            "MeterValuePeriodic",
            meter_value=[register(t0 + timedelta(minutes=10), 21.125, unit="kWh")],
        )
        cloud.kill()

    await asyncio.to_thread(cloud.start)
    # back without a new BootNotification: it booted before, so it is let in
    async with connected201(cloud, station) as cs:
        await tx_event(
            cs,
            "Updated",
            2,
            t0 + timedelta(minutes=20),
            tx,
            "MeterValuePeriodic",
            meter_value=[register(t0 + timedelta(minutes=20), 22_500)],
        )
        await tx_event(
            cs,
            "Ended",
            3,
            t0 + timedelta(minutes=30),
            tx,
            "StopAuthorized",
            id_token=token("IOPTAG201"),
            meter_value=[register(t0 + timedelta(minutes=30), 23_456.5, context="Transaction.End")],
            info={"stopped_reason": "Local"},
        )

    record = await transaction_of(api, station)
    assert record["transaction_id"] == tx
    assert record["energy_wh"] == Decimal("3456.5")
    assert record["active"] is False
    assert [v["value"] for v in record["meter_values"]] == [
        Decimal(20_000),
        Decimal(21_125),
        Decimal(22_500),
        Decimal("23456.5"),
    ]
    assert record["flags"] == []
