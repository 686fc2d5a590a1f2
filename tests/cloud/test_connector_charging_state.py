"""A 2.0.1 connector's chargingState, as the REST API and the console show it (issue 16):
StatusNotification says only Occupied, whether the car charges or waits; the running
transaction's TransactionEvent says which, and the fleet counts the charging ones."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.cloud.raw_station201 import RawStation201

pytestmark = pytest.mark.socket

AT = "2026-12-05T10:00:00Z"


def event(kind: str, seq: int, state: str | None, **evse: int) -> dict[str, Any]:
    info: dict[str, Any] = {"transactionId": "TX-CS-1"}
    if state is not None:
        info["chargingState"] = state
    payload: dict[str, Any] = {
        "eventType": kind,
        "timestamp": AT,
        "triggerReason": "ChargingStateChanged",
        "seqNo": seq,
        "transactionInfo": info,
    }
    if evse:
        payload["evse"] = evse
    return payload


async def states(api: httpx.AsyncClient, station_id: str) -> list[tuple[int, str, str | None]]:
    station = (await api.get(f"/stations/{station_id}")).json()
    return [(c["evse_id"], c["status"], c["charging_state"]) for c in station["connectors"]]


async def test_a_201_connector_shows_its_transactions_charging_state_until_it_ends(
    cs: RawStation201, api: httpx.AsyncClient, station_id: str
) -> None:
    for evse in (1, 2):
        await cs.call(
            "StatusNotification",
            {"timestamp": AT, "connectorStatus": "Occupied", "evseId": evse, "connectorId": 1},
        )
    await cs.call("TransactionEvent", event("Started", 0, "EVConnected", id=1, connectorId=1))
    assert await states(api, station_id) == [(1, "Occupied", "EVConnected"), (2, "Occupied", None)]
    await cs.call("TransactionEvent", event("Updated", 1, "Charging"))  # no evse: the tx's
    assert await states(api, station_id) == [(1, "Occupied", "Charging"), (2, "Occupied", None)]
    await cs.call("TransactionEvent", event("Updated", 2, None))  # says nothing of it: kept
    assert (await states(api, station_id))[0] == (1, "Occupied", "Charging")
    await cs.call("TransactionEvent", event("Ended", 3, "EVConnected"))
    assert await states(api, station_id) == [(1, "Occupied", None), (2, "Occupied", None)]
