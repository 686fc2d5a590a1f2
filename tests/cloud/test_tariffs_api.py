"""The tariffs' REST resource under /api/v1 against a real cloud on loopback: CRUD with
exact money, one default, assignments by station and group, a transaction's cost with its
breakdown, CostUpdated on demand, and 4xx with a reason on every bad request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.cloud.test_tariffs_octt import VALID_TOKEN, event, wire_station
from tests.support import Cloud, until

pytestmark = pytest.mark.socket

STANDARD = {
    "name": "Standard",
    "currency": "EUR",
    "start_fee": "1.00",
    "per_kwh": 0.39,
    "per_charging_minute": "0.02",
    "per_idle_minute": "0.10",
    "vat_percent": "21",
    "personal_message": "1.00 EUR start, 0.39 EUR/kWh, 0.02/min charging, 0.10/min idle",
    "language": "en",
    "is_default": True,
}


def detail(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    text: str = response.json()["detail"]
    assert text
    return text


async def test_tariffs_are_created_read_replaced_and_deleted_exactly(
    api: httpx.AsyncClient,
) -> None:
    made = await api.post("/tariffs", json=STANDARD)
    assert made.status_code == 201, made.text
    tariff = made.json()
    assert tariff["per_kwh"] == "0.39" and tariff["start_fee"] == "1.00"
    assert tariff["vat_percent"] == "21" and tariff["is_default"] is True
    tid = tariff["tariff_id"]
    assert (await api.get(f"/tariffs/{tid}")).json() == tariff
    assert [t["tariff_id"] for t in (await api.get("/tariffs")).json()] == [tid]
    replaced = await api.put(f"/tariffs/{tid}", json={**STANDARD, "per_kwh": "0.4512"})
    assert replaced.status_code == 200 and replaced.json()["per_kwh"] == "0.4512"
    assert (await api.delete(f"/tariffs/{tid}")).status_code == 204
    assert "no tariff" in detail(await api.get(f"/tariffs/{tid}"), 404)
    assert "no tariff" in detail(await api.delete(f"/tariffs/{tid}"), 404)
    assert "no tariff" in detail(await api.put(f"/tariffs/{tid}", json=STANDARD), 404)


async def test_a_new_default_tariff_replaces_the_old_default(api: httpx.AsyncClient) -> None:
    first = (await api.post("/tariffs", json=STANDARD)).json()
    second = (await api.post("/tariffs", json={**STANDARD, "name": "Night"})).json()
    listed = {t["tariff_id"]: t["is_default"] for t in (await api.get("/tariffs")).json()}
    assert listed == {first["tariff_id"]: False, second["tariff_id"]: True}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"currency": "euro"}, "ISO 4217"),
        ({"per_kwh": -1}, "per_kwh"),
        ({"vat_percent": 101}, "vat_percent"),
        ({"personal_message": "x" * 513}, "personal_message"),
        ({"surprise": 1}, "surprise"),
        ({"per_kwh": "cheap"}, "per_kwh"),
    ],
)
async def test_a_bad_tariff_is_refused_with_its_reason_and_nothing_kept(
    api: httpx.AsyncClient, change: dict[str, Any], reason: str
) -> None:
    assert reason in detail(await api.post("/tariffs", json={**STANDARD, **change}), 422)
    assert (await api.get("/tariffs")).json() == []


async def test_the_api_needs_the_token_and_documents_the_resource(cloud: Cloud) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cloud.port}") as anonymous:
        assert (await anonymous.post("/api/v1/tariffs", json=STANDARD)).status_code == 401
        paths = (await anonymous.get("/api/v1/openapi.json")).json()["paths"]
    assert {"get", "post"} <= paths["/api/v1/tariffs"].keys()
    assert {"get", "put", "delete"} <= paths["/api/v1/tariffs/{tariff_id}"].keys()
    assert "put" in paths["/api/v1/tariff-assignments/stations/{station_id}"]
    assert "put" in paths["/api/v1/tariff-assignments/groups/{group_id}"]
    assert "get" in paths["/api/v1/transactions/{tx_id}/cost"]
    assert "409" in paths["/api/v1/transactions/{tx_id}/cost-updated"]["post"]["responses"]


async def test_stations_and_groups_are_assigned_their_tariffs(api: httpx.AsyncClient) -> None:
    tid = (await api.post("/tariffs", json={**STANDARD, "is_default": False})).json()["tariff_id"]
    station = await api.put("/tariff-assignments/stations/CS-1", json={"tariff_id": tid})
    assert station.status_code == 200 and station.json()["scope"] == "station"
    group = await api.put("/tariff-assignments/groups/FLEET-A", json={"tariff_id": tid})
    assert group.status_code == 200
    listed = [(a["scope"], a["key"]) for a in (await api.get("/tariff-assignments")).json()]
    assert listed == [("group", "FLEET-A"), ("station", "CS-1")]
    assert "no tariff 999" in detail(
        await api.put("/tariff-assignments/stations/CS-2", json={"tariff_id": 999}), 422
    )
    assert "group id token" in detail(
        await api.put(f"/tariff-assignments/groups/{'G' * 37}", json={"tariff_id": tid}), 422
    )
    assert (await api.delete("/tariff-assignments/stations/CS-1")).status_code == 204
    assert "no tariff of its own" in detail(
        await api.delete("/tariff-assignments/stations/CS-1"), 404
    )


async def test_a_transaction_shows_its_cost_and_breakdown(
    cloud: Cloud, api: httpx.AsyncClient
) -> None:
    assert (await api.post("/tariffs", json=STANDARD)).status_code == 201
    await api.put(f"/id-tokens/{VALID_TOKEN['idToken']}", json={})
    t0 = datetime.now(UTC).replace(microsecond=0)
    tx: dict[str, Any] = {"tx_id": "REST-TX"}
    async with wire_station(cloud, "CS-REST") as cs:
        answer = await cs.call("Authorize", {"idToken": VALID_TOKEN})
        assert answer["idTokenInfo"]["personalMessage"] == {
            "format": "UTF8",
            "language": "en",
            "content": STANDARD["personal_message"],
        }
        await cs.call("TransactionEvent", event("Started", 0, t0, "Authorized", **tx,
                      state="Charging", wh=0, context="Transaction.Begin",
                      idToken=VALID_TOKEN))  # fmt: skip
        running = await cs.call("TransactionEvent", event("Updated", 1, t0 + timedelta(minutes=30),
                                "ChargingStateChanged", **tx, state="SuspendedEV", wh=10000))  # fmt: skip
        stored = await cloud.store.transactions.find("CS-REST", "REST-TX")
        assert stored is not None
        # the operator pushes the running cost to the station now
        sent = await api.post(f"/transactions/{stored.id}/cost-updated")
        assert sent.status_code == 200, sent.text
        assert sent.json()["last_cost_updated"] == sent.json()["total_cost"]
        await until(lambda: cs.calls("CostUpdated"), "the CostUpdated")
        assert cs.calls("CostUpdated")[-1] == {
            "totalCost": running["totalCost"],
            "transactionId": "REST-TX",
        }
        ended = await cs.call("TransactionEvent", event("Ended", 2, t0 + timedelta(minutes=45),
                              "EVCommunicationLost", **tx, state="Idle", wh=10000,
                              context="Transaction.End"))  # fmt: skip
    cost = (await api.get(f"/transactions/{stored.id}/cost")).json()
    # 1.00 start + 10 kWh x 0.39 + 30 min x 0.02 + 15 min idle x 0.10 = 7.00 net, 21 % VAT
    assert cost["start_fee"] == "1.00" and cost["energy"] == "3.90"
    assert cost["charging_time"] == "0.60" and cost["idle_time"] == "1.50"
    assert (cost["net"], cost["vat"], cost["total_cost"]) == ("7.00", "1.47", "8.47")
    assert cost["final"] is True and cost["currency"] == "EUR"
    assert ended["totalCost"] == 8.47
    # the session ended: no CostUpdated any more
    assert "ended" in detail(await api.post(f"/transactions/{stored.id}/cost-updated"), 409)
    assert "no transaction" in detail(await api.get("/transactions/99999/cost"), 404)


async def test_cost_updated_to_a_station_not_connected_is_refused(
    cloud: Cloud, api: httpx.AsyncClient
) -> None:
    assert (await api.post("/tariffs", json=STANDARD)).status_code == 201
    t0 = datetime.now(UTC).replace(microsecond=0)
    async with wire_station(cloud, "CS-AWAY") as cs:
        await cs.call("TransactionEvent", event("Started", 0, t0, "CablePluggedIn",
                      tx_id="AWAY-TX", state="Charging", wh=0))  # fmt: skip
    stored = await cloud.store.transactions.find("CS-AWAY", "AWAY-TX")
    assert stored is not None

    await until(lambda: not cloud.gateway.is_connected("CS-AWAY"), "the disconnection")
    assert "not connected" in detail(await api.post(f"/transactions/{stored.id}/cost-updated"), 409)
