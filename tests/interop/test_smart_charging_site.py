"""End to end, smart charging: two of our own 2.0.1 stations (Station201) against a real
PlugStream Cloud on loopback, in one site of 32 A. Both charging get 16 A each as
TxProfiles; when one stops the other gets 32 A. The operator reads what the station has
installed (GetChargingProfiles → ReportChargingProfiles) and sees an external limit the
station reports (NotifyChargingLimit, ClearedChargingLimit)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugstream.cloud.context import utc_now
from plugstream.cloud.storage.records import IdTokenRecord
from plugstream.station.ev import CITY_CAR, Ev
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.smart_charging_reports import clear_external_limit, set_external_limit
from plugstream.station.station201 import Station201
from tests.cloud.raw_station201 import hop_cloud, ocpp_url
from tests.support import running, until

pytestmark = pytest.mark.socket


def make_station(tmp_path: Path, station_id: str) -> Station201:
    return Station201(
        station_id,
        PLUGSTREAM_7,
        tmp_path / station_id,
        utc_now,
        rng=random.Random(7),
        device_model_defaults={"SampledDataCtrlr.TxUpdatedInterval": "60"},
        call_timeout=5.0,
        tick_interval=0.05,
    )


def tx_limit(station: Station201) -> float | None:
    """The current the station lets its car draw now, in A per phase."""
    tx = station.transaction
    if tx is None:
        return None
    return station.profiles.limit_at(
        1, station.now(), transaction_start=tx.started_at, phases=PLUGSTREAM_7.phases
    )


async def test_a_site_limit_of_32_a_divided_between_two_stations_re_divided_when_one_stops(
    tmp_path: Path,
) -> None:
    async with hop_cloud(tmp_path, wall_clock=True, auto_register_unsecured=False) as hop:
        cloud, api = hop.cloud, hop.api
        for station_id in ("SITE-1", "SITE-2"):
            await cloud.store.stations.register(station_id, security_profile=0)
        await cloud.store.id_tokens.put(IdTokenRecord("CARD-1"))
        await cloud.store.id_tokens.put(IdTokenRecord("CARD-2"))
        site = await api.post(
            "/sites",
            json={
                "name": "Office",
                "maxCurrentA": 32,
                "phases": 1,
                "stationIds": ["SITE-1", "SITE-2"],
            },
        )
        assert site.status_code == 201, site.text
        site_id = site.json()["siteId"]
        one, two = make_station(tmp_path, "SITE-1"), make_station(tmp_path, "SITE-2")
        url = ocpp_url(hop)
        async with running(one, url, online=True), running(two, url, online=True):
            one.plug_in(Ev(CITY_CAR, soc=30.0))
            assert await one.swipe("CARD-1")
            await until(lambda: tx_limit(one) == 32, "the only session gets 32 A")
            two.plug_in(Ev(CITY_CAR, soc=30.0))
            assert await two.swipe("CARD-2")
            await until(
                lambda: tx_limit(one) == 16 and tx_limit(two) == 16, "16 A each as TxProfiles"
            )
            tx_profiles = [p for p in two.profiles.profiles if p.purpose == "TxProfile"]
            assert [p.transaction_id for p in tx_profiles] == [two.transaction.transaction_id]  # type: ignore[union-attr]
            allocation = (await api.get(f"/sites/{site_id}/allocation")).json()
            assert [s["limitA"] for s in allocation["shares"]] == [16, 16]

            # the operator reads what the station has installed (K09)
            refresh = await api.post("/stations/SITE-2/charging-profiles/refresh", json={})
            assert refresh.json()["status"] == "Accepted"

            async def reported() -> list[dict[str, Any]]:
                body = (await api.get("/stations/SITE-2/charging-profiles")).json()
                return list(body["reported"])

            found = await until(reported, "the station's report")
            assert found[0]["requestId"] == refresh.json()["requestId"]
            assert found[0]["profile"]["chargingProfilePurpose"] == "TxProfile"

            # one stops: the other gets the whole site, capped at its station's 32 A
            assert await one.swipe("CARD-1")
            await until(lambda: one.transaction is None, "the first session ended")
            await until(lambda: tx_limit(two) == 32, "32 A for the one left")

            # an EMS limits the station: it charges slower and the cloud hears of it (K12)
            assert await set_external_limit(two, 10.0, source="EMS", grid_critical=True)
            assert tx_limit(two) == 10

            async def limits() -> list[dict[str, Any]]:
                return list((await api.get("/stations/SITE-2/charging-limits")).json())

            kept = await until(limits, "the limit reported")
            assert kept[0]["chargingLimitSource"] == "EMS" and kept[0]["isGridCritical"]
            assert await clear_external_limit(two, source="EMS")  # K13
            assert tx_limit(two) == 32
            await until(lambda: _cleared(api), "the release reported")


async def _cleared(api: httpx.AsyncClient) -> bool:
    kept = (await api.get("/stations/SITE-2/charging-limits")).json()
    return bool(kept) and kept[0]["clearedAt"] is not None
