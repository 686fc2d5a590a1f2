"""Tariff and cost end to end: our own Station201 charges against PlugStream Cloud with a
tariff set by an operator over the REST API. The station is sent CostUpdated while it
charges, and the answer to its Ended event carries the final cost the cloud stored."""

from __future__ import annotations

import functools
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from plugstream.station.ev import CITY_CAR, Ev
from plugstream.station.station201 import Station201
from tests.cloud.raw_station201 import Hop, hop_cloud, ocpp_url, our_station
from tests.support import running, until

pytestmark = pytest.mark.socket

TARIFF = {
    "name": "City",
    "currency": "EUR",
    "start_fee": "0.50",
    "per_kwh": "0.35",
    "per_charging_minute": "0.01",
    "vat_percent": "19",
    "is_default": True,
    "personal_message": "0.50 EUR + 0.35 EUR/kWh + 0.01 EUR/min, VAT incl. 19%",
}


async def ended_answer(hop: Hop, station_id: str, transaction_id: str) -> dict[str, Any]:
    """The cloud's answer to the station's Ended event, as the message log has it ({}:
    not yet)."""
    page = (await hop.api.get(f"/stations/{station_id}/messages?limit=500")).json()
    frames = [(m["direction"], orjson.loads(m["text"])) for m in page["messages"]]
    ended_ids = {
        frame[1]
        for direction, frame in frames
        if direction == "in"
        and frame[0] == 2
        and frame[2] == "TransactionEvent"
        and frame[3]["eventType"] == "Ended"
        and frame[3]["transactionInfo"]["transactionId"] == transaction_id
    }
    for direction, frame in frames:
        if direction == "out" and frame[0] == 3 and frame[1] in ended_ids:
            answer: dict[str, Any] = frame[2]
            return answer
    return {}


def higher_cost(station: Station201, before: Decimal) -> Decimal:
    """The running cost the station shows once it is above ``before`` (0: not yet)."""
    shown = station.cost_display.running_cost
    return shown if shown is not None and shown > before else Decimal(0)


async def test_a_session_priced_by_a_tariff_gets_cost_updates_and_its_final_cost(
    tmp_path: Path,
) -> None:
    async with hop_cloud(tmp_path) as hop:
        made = await hop.api.post("/tariffs", json=TARIFF)
        assert made.status_code == 201, made.text
        assert (await hop.api.put("/id-tokens/TAG-COST", json={})).status_code in (200, 201)
        station, clock = our_station(
            hop, "E2E-COST", tmp_path, seed=15, **{"SampledDataCtrlr.TxUpdatedInterval": "60"}
        )
        async with running(station, ocpp_url(hop), online=True):
            station.plug_in(Ev(CITY_CAR, soc=20.0))
            assert await station.swipe("TAG-COST")
            tx = station.transaction
            assert tx is not None
            # charging: each Updated (every 60 s of the station's time) is priced, and the
            # station is sent the running cost
            costs: list[Decimal] = []
            for minute in range(1, 4):
                await clock.advance(60)
                hop.clock.now = clock.now()
                before = costs[-1] if costs else Decimal(0)
                grew = functools.partial(higher_cost, station, before)
                costs.append(await until(grew, f"a higher CostUpdated after minute {minute}"))
            running_cost = costs[-1]
            assert costs[0] > Decimal("0.595")  # the start fee with its VAT, and then some
            assert station.cost_display.transaction_id == tx.transaction_id
            assert any(line.startswith("cost so far") for line in station.cost_display.shown)
            await clock.advance(30)
            hop.clock.now = clock.now()
            station.stop_transaction("StopAuthorized", "Local")

            async def stored_final() -> dict[str, Any]:
                listed = (await hop.api.get("/transactions?station=E2E-COST")).json()
                if not listed or listed[0]["active"]:
                    return {}
                cost = await hop.api.get(f"/transactions/{listed[0]['id']}/cost")
                found: dict[str, Any] = cost.json()
                return found if cost.status_code == 200 and found["final"] else {}

            cost: dict[str, Any] = await until(stored_final, "the final cost stored")
            answer: dict[str, Any] = await until(
                lambda: ended_answer(hop, "E2E-COST", tx.transaction_id), "the Ended answer"
            )
        # I03.FR.02: the Ended answer's totalCost is the final cost the cloud stored
        assert Decimal(str(answer["totalCost"])) == Decimal(cost["total_cost"])
        assert Decimal(cost["total_cost"]) >= running_cost
        assert Decimal(cost["energy_wh"]) > 0 and Decimal(cost["charging_s"]) == 210
        # the parts add up: 0.50 fee + energy + 3.5 min x 0.01, then 19 % VAT
        assert cost["start_fee"] == "0.50" and cost["charging_time"] == "0.04"
        net = sum(Decimal(cost[k]) for k in ("start_fee", "energy", "charging_time", "idle_time"))
        assert Decimal(cost["net"]) == net
        assert Decimal(cost["total_cost"]) == net + Decimal(cost["vat"])
