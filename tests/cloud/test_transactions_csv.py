"""The transactions' filters (station, idToken, start time) and their CSV export, over
the REST API of a running cloud (issue 16: the console's "Export CSV" link is this
route with the page's filters)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from plugstream.cloud.api.transactions import CSV_COLUMNS
from plugstream.cloud.storage import IdTokenRecord, Store
from plugstream.cloud.storage.records import MeterSample
from tests.cloud.raw_station201 import Hop

pytestmark = pytest.mark.socket

DAY = datetime(2026, 11, 20, 8, 0, 0, tzinfo=UTC)


async def charged(
    store: Store,
    station_id: str,
    id_token: str,
    start: datetime,
    *,
    meter_start: str,
    meter_stop: str | None,
    minutes: int = 30,
) -> int:
    """A 1.6 session as the handlers store it: started, and stopped unless ``meter_stop``
    is None; its id."""
    await store.id_tokens.put(IdTokenRecord(id_token))
    tx, _ = await store.transactions.start(
        station_id,
        connector_id=1,
        id_token=id_token,
        meter_start_wh=Decimal(meter_start),
        timestamp=start,
        received_at=start,
    )
    if meter_stop is not None:
        stop = start + timedelta(minutes=minutes)
        await store.transactions.stop(
            station_id,
            transaction_id=tx.id,
            meter_stop_wh=Decimal(meter_stop),
            timestamp=stop,
            received_at=stop,
            reason="Local",
        )
    return tx.id


def parsed(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    rows = list(csv.reader(io.StringIO(response.text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


@pytest.fixture
async def fleet(hop: Hop) -> dict[str, int]:
    """Three sessions on two stations, two id tokens and two days; one flagged."""
    store = hop.cloud.store
    made = {
        "a1": await charged(store, "CSV-A", "TAG-1", DAY, meter_start="1000", meter_stop="1034.5"),
        "a2": await charged(
            store,
            "CSV-A",
            "TAG-2",
            DAY + timedelta(days=1),
            meter_start="2000.125",
            meter_stop=None,
        ),
        "b1": await charged(
            store,
            "CSV-B",
            "TAG-1",
            DAY + timedelta(hours=2),
            meter_start="0",
            meter_stop="12000",
            minutes=90,
        ),
    }
    at = DAY + timedelta(days=1, minutes=5)
    # one time, two values: DuplicateTimestamp on a2
    await store.transactions.add_meter_values(
        "CSV-A",
        evse_id=1,
        connector_id=1,
        transaction_id=made["a2"],
        samples=[
            MeterSample(at, "Energy.Active.Import.Register", Decimal("2100"), "Wh"),
            MeterSample(at, "Energy.Active.Import.Register", Decimal("2101"), "Wh"),
        ],
        received_at=at,
    )
    return made


async def test_the_csv_has_a_header_row_utc_times_and_exact_wh(
    api: httpx.AsyncClient, fleet: dict[str, int]
) -> None:
    response = await api.get("/transactions.csv")
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="transactions.csv"'
    rows = parsed(response)
    assert [int(r["id"]) for r in rows] == sorted(fleet.values(), reverse=True)
    by_id = {int(r["id"]): r for r in rows}
    a1 = by_id[fleet["a1"]]
    assert a1["station_id"] == "CSV-A" and a1["id_token"] == "TAG-1"
    assert a1["started_at"] == "2026-11-20T08:00:00Z"
    assert a1["stopped_at"] == "2026-11-20T08:30:00Z" and a1["duration_s"] == "1800"
    assert (a1["meter_start_wh"], a1["meter_stop_wh"], a1["energy_wh"]) == (
        "1000",
        "1034.5",
        "34.5",
    )
    assert (a1["active"], a1["offline"], a1["stop_reason"]) == ("false", "false", "Local")
    a2 = by_id[fleet["a2"]]
    assert a2["meter_start_wh"] == "2000.125" and a2["meter_stop_wh"] == ""
    assert a2["stopped_at"] == "" and a2["duration_s"] == "" and a2["active"] == "true"
    assert a2["flags"] == "DuplicateTimestamp"
    assert by_id[fleet["b1"]]["energy_wh"] == "12000"


async def test_the_csv_has_the_lists_filters(api: httpx.AsyncClient, fleet: dict[str, int]) -> None:
    def ids(rows: list[dict[str, str]]) -> set[int]:
        return {int(r["id"]) for r in rows}

    station = parsed(await api.get("/transactions.csv", params={"station": "CSV-A"}))
    assert ids(station) == {fleet["a1"], fleet["a2"]}
    token = parsed(await api.get("/transactions.csv", params={"id_token": "TAG-1"}))
    assert ids(token) == {fleet["a1"], fleet["b1"]}
    both = {"station": "CSV-B", "id_token": "TAG-1"}
    assert ids(parsed(await api.get("/transactions.csv", params=both))) == {fleet["b1"]}
    # [from, to): the first day only, by start time
    day = {"from": "2026-11-20T00:00:00Z", "to": "2026-11-21T00:00:00Z"}
    assert ids(parsed(await api.get("/transactions.csv", params=day))) == {
        fleet["a1"],
        fleet["b1"],
    }
    later = {"from": "2026-11-20T09:00:00+01:00"}  # 08:00Z: a1 starts exactly then
    assert ids(parsed(await api.get("/transactions.csv", params=later))) == ids(
        parsed(await api.get("/transactions.csv"))
    )
    # the JSON list takes the same filters
    listed = (await api.get("/transactions", params={**day, "id_token": "TAG-1"})).json()
    assert [t["id"] for t in listed] == [fleet["b1"], fleet["a1"]]
    none = parsed(await api.get("/transactions.csv", params={"id_token": "NOBODY"}))
    assert none == []


async def test_the_csv_streams_every_row_past_one_batch(api: httpx.AsyncClient, hop: Hop) -> None:
    from plugstream.cloud.api import transactions

    store = hop.cloud.store
    count = transactions.CSV_BATCH + 3
    for i in range(count):
        await charged(
            store,
            "CSV-MANY",
            "TAG-M",
            DAY + timedelta(hours=i),
            meter_start="0",
            meter_stop=str(i),
            minutes=10,
        )
    rows = parsed(await api.get("/transactions.csv"))
    assert len(rows) == count and len({r["id"] for r in rows}) == count


async def test_what_a_station_sent_never_runs_as_a_spreadsheet_formula(
    api: httpx.AsyncClient, hop: Hop
) -> None:
    # "=", "+", "-" and "@" are allowed in station ids and idTokens: a hostile station
    # could send =HYPERLINK(...) as its card, and the operator's spreadsheet would run it.
    await charged(hop.cloud.store, "=CS+1", "@SUM(A1)", DAY, meter_start="0", meter_stop="5")
    [row] = parsed(await api.get("/transactions.csv", params={"station": "=CS+1"}))
    assert (row["station_id"], row["id_token"]) == ("'=CS+1", "'@SUM(A1)")
    listed = (await api.get("/transactions", params={"station": "=CS+1"})).json()
    assert listed[0]["id_token"] == "@SUM(A1)"  # the API keeps the value as it was sent


async def test_bad_filters_are_refused_with_the_reason(api: httpx.AsyncClient) -> None:
    backwards = await api.get(
        "/transactions.csv", params={"from": "2026-11-21T00:00:00Z", "to": "2026-11-20T00:00:00Z"}
    )
    assert backwards.status_code == 422
    assert backwards.json()["detail"] == "from must not be after to"
    naive = await api.get("/transactions", params={"from": "2026-11-21T00:00:00"})
    assert naive.status_code == 422 and "from" in naive.json()["detail"]
    station = await api.get("/transactions.csv", params={"station": "a:b"})
    assert station.status_code == 422


async def test_the_csv_needs_a_token_or_a_session(hop: Hop) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hop.cloud.port}/api/v1") as anon:
        refused = await anon.get("/transactions.csv")
        assert refused.status_code == 401
        assert "text/csv" not in refused.headers["content-type"]
        wrong = await anon.get("/transactions.csv", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401


async def test_the_csv_route_is_in_the_openapi_document(api: httpx.AsyncClient) -> None:
    doc = (await api.get("/openapi.json")).json()
    route = doc["paths"]["/api/v1/transactions.csv"]["get"]
    assert "text/csv" in route["responses"]["200"]["content"]
    assert {p["name"] for p in route["parameters"]} >= {"station", "id_token", "from", "to"}
