"""OCTT CSMS test cases of functional block I (tariff and cost), played as part 6 says:
the test is the charging station, on the wire (raw OCPP-J over a WebSocket), against a
real PlugStream Cloud on loopback configured with a tariff based on energy consumed."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from plugstream.cloud.storage import IdTokenRecord
from plugstream.cloud.storage.device_model import ComponentVariable
from plugstream.cloud.storage.tariffs import TariffData
from plugstream.ocpp.datetimes import format_time
from tests.cloud.raw_station201 import RawStation201, station201
from tests.support import Cloud, until

pytestmark = pytest.mark.socket

VALID_TOKEN = {"idToken": "OCTT-VALID-1", "type": "ISO14443"}
D = Decimal


def wire_station(
    cloud: Cloud, station_id: str
) -> contextlib.AbstractAsyncContextManager[RawStation201]:
    """A 2.0.1 station as the OCTT plays it: every frame checked against the schemas, and
    the CSMS's CostUpdated (kept with the other CALLs it got) answered with ``{}``."""
    return station201(cloud, station_id, {"CostUpdated": {}}, checked=True)


def iso(at: datetime) -> str:
    return format_time(at, always_ms=True)


def event(
    event_type: str,
    seq_no: int,
    at: datetime,
    trigger: str,
    *,
    tx_id: str,
    state: str | None = None,
    wh: float | None = None,
    context: str = "Sample.Periodic",
    **extra: Any,
) -> dict[str, Any]:
    info: dict[str, Any] = {"transactionId": tx_id}
    if state is not None:
        info["chargingState"] = state
    payload: dict[str, Any] = {
        "eventType": event_type,
        "timestamp": iso(at),
        "triggerReason": trigger,
        "seqNo": seq_no,
        "transactionInfo": info,
        "evse": {"id": 1, "connectorId": 1},
        **extra,
    }
    if wh is not None:
        payload["meterValue"] = [
            {
                "timestamp": iso(at),
                "sampledValue": [
                    {
                        "value": wh,
                        "context": context,
                        "measurand": "Energy.Active.Import.Register",
                        "unitOfMeasure": {"unit": "Wh"},
                    }
                ],
            }
        ]
    return payload


async def energy_tariff(cloud: Cloud, **fields: Any) -> None:
    """Memory state of TC_I_02: the CSMS is configured with a tariff based on energy."""
    await cloud.store.tariffs.create(
        TariffData(
            name="Energy",
            currency="EUR",
            per_kwh=D("0.25"),
            vat_percent=D("20"),
            is_default=True,
            personal_message="0.25 EUR/kWh + 20% VAT",
            **fields,
        ),
        at=datetime.now(UTC),
    )
    await cloud.store.id_tokens.put(IdTokenRecord(VALID_TOKEN["idToken"]))


async def test_tc_i_01_csms_running_total_cost_during_charging(cloud: Cloud) -> None:
    await energy_tariff(cloud)
    async with wire_station(cloud, "OCTT-I01") as cs:
        # 1-2: Authorize, accepted; the driver is shown the tariff (I01.FR.01)
        answer = await cs.call("Authorize", {"idToken": VALID_TOKEN})
        assert answer["idTokenInfo"]["status"] == "Accepted"
        assert answer["idTokenInfo"]["personalMessage"]["content"] == "0.25 EUR/kWh + 20% VAT"
        t0 = datetime.now(UTC).replace(microsecond=0)
        tx: dict[str, Any] = {"tx_id": "I01-TX"}
        # the transaction begins (TxStartPoint Authorized), 3-4: Updated Authorized
        await cs.call("TransactionEvent", event("Started", 0, t0, "Authorized", **tx, wh=0,
                      context="Transaction.Begin", idToken=VALID_TOKEN))  # fmt: skip
        answer = await cs.call(
            "TransactionEvent",
            event("Updated", 1, t0, "Authorized", **tx, idToken=VALID_TOKEN),
        )
        assert answer["idTokenInfo"]["status"] == "Accepted"
        # 5-6: EVConnectedPreSession, EnergyTransferStarted
        await cs.call("TransactionEvent", event("Updated", 2, t0, "CablePluggedIn", **tx,
                      state="EVConnected"))  # fmt: skip
        await cs.call("TransactionEvent", event("Updated", 3, t0, "ChargingStateChanged",
                      **tx, state="Charging"))  # fmt: skip
        # 7-10: two periodic meter values; each answer carries the running cost, and
        # the CSMS sends CostUpdated with the transaction's id
        totals = []
        for n, wh in ((4, 2000), (5, 4000)):
            at = t0 + timedelta(seconds=60 * (n - 3))
            answer = await cs.call("TransactionEvent", event("Updated", n, at,
                                   "MeterValuePeriodic", **tx, wh=wh))  # fmt: skip
            totals.append(answer["totalCost"])
        assert totals == [0.6, 1.2]  # 2 kWh x 0.25 + 20 % VAT; then 4 kWh
        await until(lambda: len(cs.calls("CostUpdated")) >= 2, "two CostUpdated")
        assert [u["transactionId"] for u in cs.calls("CostUpdated")] == ["I01-TX", "I01-TX"]
        assert cs.calls("CostUpdated")[-1]["totalCost"] == 1.2


async def test_tc_i_02_csms_final_total_cost_after_charging(cloud: Cloud) -> None:
    await energy_tariff(cloud)
    async with wire_station(cloud, "OCTT-I02") as cs:
        t0 = datetime.now(UTC).replace(microsecond=0)
        tx: dict[str, Any] = {"tx_id": "I02-TX"}
        # 1: EVConnectedPreSession, the Started event with the Transaction.Begin 1000 Wh
        await cs.call("TransactionEvent", event("Started", 0, t0, "CablePluggedIn", **tx,
                      state="EVConnected", wh=1000, context="Transaction.Begin"))  # fmt: skip
        # 2-3: Authorized, EnergyTransferStarted
        answer = await cs.call("TransactionEvent", event("Updated", 1, t0, "Authorized",
                               **tx, idToken=VALID_TOKEN))  # fmt: skip
        assert answer["idTokenInfo"]["status"] == "Accepted"
        await cs.call("TransactionEvent", event("Updated", 2, t0, "ChargingStateChanged",
                      **tx, state="Charging"))  # fmt: skip
        # 4-5: StopAuthorized, EVConnectedPostSession
        later = t0 + timedelta(minutes=30)
        await cs.call("TransactionEvent", event("Updated", 3, later, "StopAuthorized", **tx,
                      state="EVConnected", idToken=VALID_TOKEN))  # fmt: skip
        # 6-7: the connector is Available (StatusNotification, NotifyEvent)
        await cs.status("Available", later)
        # 8-9: Ended, EVCommunicationLost, 6000 Wh; the answer has totalCost
        answer = await cs.call("TransactionEvent", event("Ended", 4, later,
                               "EVCommunicationLost", **tx, state="Idle", wh=6000,
                               context="Transaction.End",
                               transactionInfo={"transactionId": "I02-TX",
                                                "chargingState": "Idle",
                                                "stoppedReason": "EVDisconnected"}))  # fmt: skip
        # 5 kWh x 0.25 EUR = 1.25 net, 20 % VAT 0.25: 1.50 (I03.FR.02)
        assert answer["totalCost"] == 1.5
        stored = await cloud.store.transactions.find("OCTT-I02", "I02-TX")
        assert stored is not None
        cost = await cloud.store.tariffs.get_cost(stored.id)
        assert cost is not None and cost.final and cost.total_cost == D("1.50")
        # a retry of the Ended event is answered the same, and costs nothing more
        again = await cs.call("TransactionEvent", event("Ended", 4, later,
                              "EVCommunicationLost", **tx, state="Idle", wh=6000,
                              context="Transaction.End"))  # fmt: skip
        assert again["totalCost"] == 1.5


async def test_a_free_session_is_answered_zero_and_an_unpriced_one_no_cost(cloud: Cloud) -> None:
    async with wire_station(cloud, "OCTT-FREE") as cs:
        t0 = datetime.now(UTC).replace(microsecond=0)
        # no tariff at all: the cost is not known, so it is not answered
        answer = await cs.call("TransactionEvent", event("Started", 0, t0, "CablePluggedIn",
                               tx_id="NO-TARIFF", wh=0))  # fmt: skip
        assert "totalCost" not in answer
        await cloud.store.tariffs.create(
            TariffData(name="Free", currency="EUR", is_default=True), at=t0
        )
        await cs.call("TransactionEvent", event("Started", 0, t0, "CablePluggedIn",
                      tx_id="FREE", wh=0))  # fmt: skip
        answer = await cs.call("TransactionEvent", event("Ended", 1, t0, "EVCommunicationLost",
                               tx_id="FREE", wh=5000))  # fmt: skip
        assert answer["totalCost"] == 0  # I03.FR.04: free is 0.00, never omitted


async def test_a_station_that_reported_it_cannot_show_tariffs_is_sent_no_tariff_text(
    cloud: Cloud,
) -> None:
    """I01.FR.02: tariff text only to a station that supports tariffs or display messages."""
    await energy_tariff(cloud)
    async with wire_station(cloud, "OCTT-NODISPLAY") as cs:
        answer = await cs.call("Authorize", {"idToken": VALID_TOKEN})
        assert "personalMessage" in answer["idTokenInfo"]  # not reported: it may show it
        await cloud.store.device_model.set_values(
            "OCTT-NODISPLAY",
            [
                (
                    ComponentVariable("TariffCostCtrlr", "Available", variable_instance="Tariff"),
                    "Actual",
                    "false",
                ),
                (ComponentVariable("DisplayMessageCtrlr", "Available"), "Actual", "false"),
            ],
            "GetVariables",
            datetime.now(UTC),
        )
        answer = await cs.call("Authorize", {"idToken": VALID_TOKEN})
        assert answer["idTokenInfo"] == {"status": "Accepted"}
