"""Exact data (issue 14, points 7-10): one parser for OCPP numbers, odd values kept and
flagged, never an InternalError; id tokens with control characters refused; and the
transaction lifecycle (late samples, a second stop, a second start) flagged, never
changing what was billed. Handlers are driven as the gateway drives them, on SQLite and
PostgreSQL (the ``store`` fixture of conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from plugstream.cloud.api.common import include_guarded
from plugstream.cloud.app import API_ROUTERS
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.context import HandlerContext
from plugstream.cloud.handlers16 import Csms16
from plugstream.cloud.handlers201 import Csms201
from plugstream.cloud.meter import NotANumber, read_16, read_decimal
from plugstream.cloud.station_handlers import StationHandlers
from plugstream.cloud.storage import IdTokenRecord, Store
from plugstream.cloud.storage.lifecycle import Phase, StopData, on_samples, on_start, on_stop
from plugstream.cloud.storage.records import TransactionRecord
from plugstream.ocpp import OcppVersion, schemas
from plugstream.ocpp.datetimes import format_time, parse_time
from plugstream.ocpp.routing import dispatch

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
CONFIG = CloudConfig(heartbeat_interval=300)
TOKEN = "test-token-0123456789"
DIGITS_32 = "12345678901234567890123456789012"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def ts(minutes: float = 0.0) -> str:
    return format_time(NOW + timedelta(minutes=minutes), always_ms=True)


def received(handlers: StationHandlers, payload: dict[str, Any]) -> None:
    """The station sends in real time: the cloud's clock reaches the message's last
    timestamp (no TimeInFuture flags of the test's own making)."""
    stamps = [payload.get("timestamp")] + [
        mv.get("timestamp") for mv in payload.get("meterValue", []) if isinstance(mv, dict)
    ]
    clock = handlers.context.clock
    assert isinstance(clock, Clock)
    for stamp in stamps:
        if isinstance(stamp, str):
            clock.now = max(clock.now, parse_time(stamp))


async def call(handlers: StationHandlers, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """One CALL as the gateway makes it: a schema-valid request, a schema-valid answer
    (a CALLRESULT: an exception here would be the InternalError of the issue)."""
    version = OcppVersion.V16 if isinstance(handlers, Csms16) else OcppVersion.V201
    received(handlers, payload)
    check = schemas(version)
    assert check.validate(action, "request", payload) is None, f"bad test payload for {action}"
    response = await dispatch(handlers, action, payload)
    assert check.validate(action, "response", response) is None
    return response


async def booted16(store: Store) -> Csms16:
    csms = Csms16("CP16", HandlerContext(store, CONFIG, clock=Clock()))
    await call(csms, "BootNotification", {"chargePointVendor": "PS", "chargePointModel": "PS 22"})
    return csms


async def booted201(store: Store) -> Csms201:
    csms = Csms201("CS201", HandlerContext(store, CONFIG, clock=Clock()))
    await call(
        csms,
        "BootNotification",
        {"reason": "PowerUp", "chargingStation": {"vendorName": "PS", "model": "PS 7"}},
    )
    return csms


def codes(tx: TransactionRecord) -> list[str]:
    return [flag.code for flag in tx.flags]


def flag_details(tx: TransactionRecord, code: str) -> list[str]:
    return [flag.detail for flag in tx.flags if flag.code == code]


async def tx16(store: Store, csms: Csms16, meter_start: int = 1000) -> int:
    await store.id_tokens.put(IdTokenRecord("TAG1"))
    answer = await call(
        csms,
        "StartTransaction",
        {"connectorId": 1, "idTag": "TAG1", "meterStart": meter_start, "timestamp": ts()},
    )
    return int(answer["transactionId"])


async def get(store: Store, pk: int) -> TransactionRecord:
    found = await store.transactions.get(pk)
    assert found is not None
    return found


def mv16(minutes: float, *values: str) -> list[dict[str, Any]]:
    return [{"timestamp": ts(minutes), "sampledValue": [{"value": v} for v in values]}]


def event201(
    event_type: str,
    seq_no: int,
    minutes: float,
    *,
    wh: float | int | None = None,
    token: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventType": event_type,
        "timestamp": ts(minutes),
        "triggerReason": "Authorized" if event_type == "Started" else "MeterValuePeriodic",
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": "TX-1"},
        "evse": {"id": 1, "connectorId": 1},
    }
    if reason is not None:
        event["transactionInfo"]["stoppedReason"] = reason
    if token is not None:
        event["idToken"] = {"idToken": token, "type": "ISO14443"}
    if wh is not None:
        event["meterValue"] = [{"timestamp": ts(minutes), "sampledValue": [{"value": wh}]}]
    return event


async def tx201(store: Store) -> TransactionRecord:
    found = await store.transactions.find("CS201", "TX-1")
    assert found is not None
    return await get(store, found.id)


# --- point 7/8: the one parser ------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "read"),
    [
        ("1234.5", Decimal("1234.5")),
        ("-0.25", Decimal("-0.25")),
        ("1E+3", Decimal("1E+3")),
        (DIGITS_32, Decimal(DIGITS_32)),
        (1234.5, Decimal("1234.5")),  # a 2.0.1 JSON number: its shortest repr
        (42, Decimal(42)),
        ("1e308", "ValueOutOfRange"),
        (1e308, "ValueOutOfRange"),
        (10**70, "ValueOutOfRange"),
        ("NaN", "UnreadableValue"),
        ("Infinity", "UnreadableValue"),
        ("-inf", "UnreadableValue"),
        ("0x10", "UnreadableValue"),
        ("1_000", "UnreadableValue"),
        ("\u0661\u0662\u0663", "UnreadableValue"),  # Arabic-Indic digits
        ("", "UnreadableValue"),
        (" 12", "UnreadableValue"),
        ("012", "UnreadableValue"),
        ("1.", "UnreadableValue"),
        (True, "UnreadableValue"),
        (None, "UnreadableValue"),
    ],
)
def test_the_one_parser_reads_the_json_number_grammar_only(sent: object, read: object) -> None:
    got = read_decimal(sent)
    if isinstance(read, Decimal):
        assert isinstance(got, Decimal) and got == read and str(got) == str(read)
    else:
        assert isinstance(got, NotANumber) and got.code == read


def test_a_value_out_of_range_after_kwh_to_wh_is_flagged_not_rounded() -> None:
    # 63 digits of kWh are 66 digits of Wh: wider than the stored 64 characters
    readings = read_16(
        [{"timestamp": ts(), "sampledValue": [{"value": "9" * 63, "unit": "kWh"}]}], NOW
    )
    assert readings.samples == []
    assert [code for code, _, _ in readings.flags] == ["ValueOutOfRange"]


async def test_16_odd_meter_values_are_answered_kept_and_flagged(store: Store) -> None:
    csms = await booted16(store)
    pk = await tx16(store, csms, meter_start=0)
    sent = ["1e308", DIGITS_32, "NaN", "Infinity", "0x10", "1_000", "\u0661\u0662"]
    for minutes, value in enumerate(sent, start=1):
        answer = await call(
            csms,
            "MeterValues",
            {"connectorId": 1, "transactionId": pk, "meterValue": mv16(minutes, value)},
        )
        assert answer == {}  # a CALLRESULT: acknowledged, never InternalError
    tx = await get(store, pk)
    # the 32-digit register is stored exactly, and counted exactly
    assert [s.value for s in tx.meter_values if s.value != 0] == [Decimal(DIGITS_32)]
    assert tx.energy_wh == Decimal(DIGITS_32)
    out_of_range = flag_details(tx, "ValueOutOfRange")
    assert len(out_of_range) == 1 and "'1e308'" in out_of_range[0]
    unreadable = flag_details(tx, "UnreadableValue")
    assert len(unreadable) == 5
    for raw in ("'NaN'", "'Infinity'", "'0x10'", "'1_000'", repr("\u0661\u0662")):
        assert any(raw in detail for detail in unreadable), raw


async def test_16_odd_meter_stop_still_closes_the_transaction(store: Store) -> None:
    csms = await booted16(store)
    pk = await tx16(store, csms)
    # meterStop is an integer in 1.6; a lenient station's text passes the core
    stop = {
        "transactionId": pk,
        "meterStop": "1e308",
        "timestamp": ts(30),
        "transactionData": mv16(29, "NaN"),
    }
    received(csms, stop)
    answer = await dispatch(csms, "StopTransaction", stop)
    assert answer == {}
    tx = await get(store, pk)
    assert not tx.active and tx.meter_stop_wh is None
    assert sorted(codes(tx)) == ["UnreadableValue", "ValueOutOfRange"]


async def test_201_json_number_1e308_in_ended_is_answered_and_closes(store: Store) -> None:
    csms = await booted201(store)
    await call(csms, "TransactionEvent", event201("Started", 0, 0, wh=1000))
    answer = await call(
        csms, "TransactionEvent", event201("Ended", 1, 30, wh=1e308, reason="EVDisconnected")
    )
    assert answer == {}
    tx = await tx201(store)
    assert not tx.active and tx.stop_reason == "EVDisconnected"
    assert tx.meter_stop_wh is None and tx.energy_wh == 0
    [detail] = flag_details(tx, "ValueOutOfRange")
    assert "1e+308" in detail and "Ended" in detail


async def test_201_meter_values_outside_a_transaction_keep_unreadable_values(
    store: Store,
) -> None:
    csms = await booted201(store)
    answer = await call(
        csms,
        "MeterValues",
        {"evseId": 1, "meterValue": [{"timestamp": ts(), "sampledValue": [{"value": 1e308}]}]},
    )
    assert answer == {}
    assert [f.code for f in await store.transactions.list_flags("CS201")] == ["ValueOutOfRange"]


# --- point 8: two samples, one timestamp -------------------------------------------------


async def test_16_two_samples_with_one_timestamp_are_both_kept_flagged(store: Store) -> None:
    csms = await booted16(store)
    pk = await tx16(store, csms)
    payload = {"connectorId": 1, "transactionId": pk, "meterValue": mv16(5, "1500")}
    await call(csms, "MeterValues", payload)
    await call(csms, "MeterValues", payload)  # the same again: a retry, no news
    await call(
        csms, "MeterValues", {"connectorId": 1, "transactionId": pk, "meterValue": mv16(5, "1600")}
    )
    tx = await get(store, pk)
    assert [s.value for s in tx.meter_values if s.timestamp > NOW] == [Decimal(1500)]
    [detail] = flag_details(tx, "DuplicateTimestamp")
    assert "1600 sent, 1500 stored" in detail
    assert tx.energy_wh == Decimal(500)  # billed from the value stored, not the other


async def test_201_two_samples_with_one_timestamp_in_one_event_are_flagged(
    store: Store,
) -> None:
    csms = await booted201(store)
    await call(csms, "TransactionEvent", event201("Started", 0, 0, wh=1000))
    event = event201("Updated", 1, 5)
    event["meterValue"] = [
        {"timestamp": ts(5), "sampledValue": [{"value": 1500}]},
        {"timestamp": ts(5), "sampledValue": [{"value": 1600}]},
    ]
    assert await call(csms, "TransactionEvent", event) == {}
    tx = await tx201(store)
    [detail] = flag_details(tx, "DuplicateTimestamp")
    assert "1600 sent, 1500 stored" in detail
    assert tx.energy_wh == Decimal(500)  # billed from the value stored, not the other


# --- point 8: id tokens with control characters -------------------------------------------


async def test_16_id_tag_with_nul_is_invalid_and_never_stored(store: Store) -> None:
    csms = await booted16(store)
    await store.id_tokens.put(IdTokenRecord("TAG1"))
    bad = "TAG1\x00"
    assert await call(csms, "Authorize", {"idTag": bad}) == {"idTagInfo": {"status": "Invalid"}}
    answer = await call(
        csms,
        "StartTransaction",
        {"connectorId": 1, "idTag": bad, "meterStart": 0, "timestamp": ts()},
    )
    assert answer["idTagInfo"] == {"status": "Invalid"}
    tx = await get(store, int(answer["transactionId"]))
    assert tx.id_token == "" and codes(tx) == ["UnreadableIdToken"]
    stop = await call(
        csms,
        "StopTransaction",
        {"transactionId": tx.id, "idTag": "A\nB", "meterStop": 10, "timestamp": ts(9)},
    )
    assert stop == {"idTagInfo": {"status": "Invalid"}}
    assert codes(await get(store, tx.id)) == ["UnreadableIdToken", "UnreadableIdToken"]


async def test_201_id_token_with_nul_is_invalid_and_never_stored(store: Store) -> None:
    csms = await booted201(store)
    await store.id_tokens.put(IdTokenRecord("TAG1"))
    auth = await call(csms, "Authorize", {"idToken": {"idToken": "TAG1\x00", "type": "ISO14443"}})
    assert auth == {"idTokenInfo": {"status": "Invalid"}}
    answer = await call(csms, "TransactionEvent", event201("Started", 0, 0, token="TAG1\x00"))
    assert answer == {"idTokenInfo": {"status": "Invalid"}}
    tx = await tx201(store)
    assert tx.id_token is None and codes(tx) == ["UnreadableIdToken"]


# --- point 9: samples after the stop --------------------------------------------------------


async def test_16_meter_values_after_the_stop_are_late_and_not_billed(store: Store) -> None:
    csms = await booted16(store)
    pk = await tx16(store, csms)
    await call(
        csms, "StopTransaction", {"transactionId": pk, "meterStop": 1034, "timestamp": ts(30)}
    )
    answer = await call(
        csms, "MeterValues", {"connectorId": 1, "transactionId": pk, "meterValue": mv16(31, "9000")}
    )
    assert answer == {}
    tx = await get(store, pk)
    assert (tx.meter_stop_wh, tx.energy_wh) == (Decimal(1034), Decimal(34))
    assert Decimal(9000) in [s.value for s in tx.meter_values]  # kept, as late data
    assert codes(tx) == ["LateMeterValue"]


async def test_201_updated_after_ended_is_late_and_not_billed(store: Store) -> None:
    csms = await booted201(store)
    await call(csms, "TransactionEvent", event201("Started", 0, 0, wh=1000))
    await call(csms, "TransactionEvent", event201("Ended", 1, 30, wh=1034, reason="Local"))
    assert await call(csms, "TransactionEvent", event201("Updated", 2, 31, wh=1060.82)) == {}
    tx = await tx201(store)
    assert (tx.meter_stop_wh, tx.energy_wh) == (Decimal(1034), Decimal(34))
    assert Decimal("1060.82") in [s.value for s in tx.meter_values]
    assert codes(tx) == ["LateMeterValue"]


# --- point 10: a second stop, a second start ------------------------------------------------


async def test_16_second_contradicting_stop_is_flagged_and_the_first_billed(
    store: Store,
) -> None:
    csms = await booted16(store)
    pk = await tx16(store, csms)
    stop = {"transactionId": pk, "meterStop": 1034, "timestamp": ts(30), "reason": "Local"}
    await call(csms, "StopTransaction", stop)
    await call(csms, "StopTransaction", stop)  # re-sent: idempotent, no flag
    assert codes(await get(store, pk)) == []
    other = {**stop, "meterStop": 1060, "reason": "EVDisconnected"}
    assert await call(csms, "StopTransaction", other) == {}
    tx = await get(store, pk)
    assert (tx.meter_stop_wh, tx.energy_wh, tx.stop_reason) == (Decimal(1034), Decimal(34), "Local")
    [detail] = flag_details(tx, "ConflictingStop")
    assert "1060 Wh" in detail and "EVDisconnected" in detail and "billed: 1034 Wh" in detail


async def test_201_second_ended_is_flagged_and_the_first_billed(store: Store) -> None:
    csms = await booted201(store)
    await call(csms, "TransactionEvent", event201("Started", 0, 0, wh=1000))
    await call(csms, "TransactionEvent", event201("Ended", 1, 30, wh=1034, reason="Local"))
    await call(csms, "TransactionEvent", event201("Ended", 1, 30, wh=1034, reason="Local"))
    assert codes(await tx201(store)) == []  # the same seqNo again: a retry
    await call(csms, "TransactionEvent", event201("Ended", 2, 32, wh=1060, reason="Remote"))
    tx = await tx201(store)
    assert (tx.meter_stop_wh, tx.energy_wh, tx.stop_reason) == (Decimal(1034), Decimal(34), "Local")
    assert sorted(codes(tx)) == ["ConflictingStop", "LateMeterValue"]
    assert "1060 Wh" in flag_details(tx, "ConflictingStop")[0]


async def test_201_second_started_is_flagged_and_the_id_token_kept(store: Store) -> None:
    csms = await booted201(store)
    await store.id_tokens.put(IdTokenRecord("TAG1"))
    await store.id_tokens.put(IdTokenRecord("TAG2"))
    await call(csms, "TransactionEvent", event201("Started", 0, 0, wh=1000, token="TAG1"))
    await call(csms, "TransactionEvent", event201("Started", 1, 1, token="TAG2"))
    tx = await tx201(store)
    assert tx.id_token == "TAG1"
    [detail] = flag_details(tx, "DuplicateStart")
    assert "'TAG2'" in detail and "'TAG1' kept" in detail


# --- the flags in the REST API ----------------------------------------------------------------


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.store = store
    app.state.config = CloudConfig(api_token=TOKEN)
    include_guarded(app, *API_ROUTERS)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://cloud.test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        yield c


async def test_lifecycle_flags_appear_in_the_rest_api(
    store: Store, client: httpx.AsyncClient
) -> None:
    csms = await booted16(store)
    pk = await tx16(store, csms)
    await call(
        csms, "StopTransaction", {"transactionId": pk, "meterStop": 1034, "timestamp": ts(30)}
    )
    await call(
        csms, "StopTransaction", {"transactionId": pk, "meterStop": 1060, "timestamp": ts(31)}
    )
    await call(
        csms,
        "MeterValues",
        {"connectorId": 1, "transactionId": pk, "meterValue": mv16(32, "1e308")},
    )
    detail = (await client.get(f"/api/v1/transactions/{pk}")).json()
    assert detail["energy_wh"] == 34 and detail["meter_stop_wh"] == 1034
    assert [f["code"] for f in detail["flags"]] == ["ConflictingStop", "ValueOutOfRange"]
    listed = (await client.get("/api/v1/transactions")).json()
    assert [f["code"] for f in listed[0]["flags"]] == ["ConflictingStop", "ValueOutOfRange"]


# --- the state machine alone ------------------------------------------------------------------


def test_lifecycle_decisions() -> None:
    billed = StopData(NOW, Decimal(1034), "Local")
    assert on_samples(Phase.UPDATED, 1, NOW, NOW, "MeterValues").billable
    late = on_samples(Phase.ENDED, 2, NOW, NOW, "MeterValues")
    assert not late.billable and [c for c, _ in late.flags] == ["LateMeterValue"]
    assert on_stop(Phase.STARTED, billed, billed, "stop").billable
    retry = on_stop(Phase.ENDED, billed, StopData(NOW, None, None), "stop")
    assert not retry.billable and retry.flags == []
    other = on_stop(Phase.ENDED, billed, StopData(NOW, Decimal(1060), "Local"), "stop")
    assert [c for c, _ in other.flags] == ["ConflictingStop"]
    assert on_start(False, None, "T", "Started").billable
    dup = on_start(True, "T1", "T2", "Started")
    assert not dup.billable and "'T2'" in dup.flags[0][1]
