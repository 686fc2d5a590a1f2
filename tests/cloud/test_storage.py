"""PlugStream Cloud's storage, on SQLite and (with PLUGSTREAM_TEST_POSTGRES) PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from plugstream.cloud.storage import IdTokenRecord, MeterSample, Store, normalize_url

pytestmark = pytest.mark.unit

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
REGISTER = "Energy.Active.Import.Register"
LATER = T0 + timedelta(hours=1)


def register(value: str, at: datetime, unit: str = "Wh") -> MeterSample:
    return MeterSample(timestamp=at, measurand=REGISTER, value=Decimal(value), unit=unit)


def codes(record: Any) -> list[str]:
    return [flag.code for flag in record.flags]


def tx_event(
    event_type: str,
    seq_no: int,
    at: datetime,
    *,
    tx_id: str = "tx-1",
    wh: float | int | None = None,
    offline: bool = False,
    unit: str | None = None,
    multiplier: int | None = None,
    id_token: str | None = None,
    stopped_reason: str | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventType": event_type,
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "triggerReason": "MeterValuePeriodic" if event_type == "Updated" else "Authorized",
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": tx_id},
        "evse": {"id": 1, "connectorId": 1},
    }
    if offline:
        event["offline"] = True
    if stopped_reason:
        event["transactionInfo"]["stoppedReason"] = stopped_reason
    if id_token:
        event["idToken"] = {"idToken": id_token, "type": "ISO14443"}
    if wh is not None:
        sampled: dict[str, Any] = {"value": wh, "measurand": REGISTER}
        if unit or multiplier is not None:
            sampled["unitOfMeasure"] = {"unit": unit or "Wh", "multiplier": multiplier or 0}
        event["meterValue"] = [{"timestamp": event["timestamp"], "sampledValue": [sampled]}]
    return event


async def scalar(store: Store, sql: str, **params: Any) -> Any:
    return await store.db.read(lambda conn: conn.execute(text(sql), params).scalar())


# --- stations ------------------------------------------------------------------------


async def test_registered_station_accepts_its_password_and_no_other(store: Store) -> None:
    station = await store.stations.register("CP1", password="s3cret-s3cret", security_profile=2)
    assert station.has_password and station.security_profile == 2
    assert await store.stations.check_password("CP1", "s3cret-s3cret")
    assert not await store.stations.check_password("CP1", "wrong")
    assert not await store.stations.check_password("nobody", "s3cret-s3cret")
    await store.stations.register("CP2")
    assert not await store.stations.check_password("CP2", "")


async def test_several_stations_are_read_at_once_with_their_connectors(store: Store) -> None:
    for station_id in ("CP3", "CP1", "CP2"):
        await store.stations.register(station_id)
    at = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    await store.stations.set_connector_status(
        "CP2", evse_id=1, connector_id=1, status="Faulted", error_code="GroundFailure", at=at
    )
    found = await store.stations.get_many(["CP2", "NOBODY", "CP1"])
    assert [r.station_id for r in found] == ["CP1", "CP2"]
    assert found[0].connectors == [] and found[1].connectors[0].status == "Faulted"
    assert await store.stations.get_many([]) == []


async def test_password_is_stored_as_a_slow_hash_never_plaintext(store: Store) -> None:
    await store.stations.register("CP1", password="s3cret-s3cret")
    stored = await scalar(store, "SELECT password_hash FROM stations WHERE station_id = 'CP1'")
    assert stored.startswith("$argon2id$")
    assert "s3cret" not in stored


async def test_registering_again_without_a_password_keeps_it(store: Store) -> None:
    await store.stations.register("CP1", password="first-password")
    station = await store.stations.register("CP1", lenient=True, security_profile=3)
    assert station.lenient and station.security_profile == 3 and station.has_password
    assert await store.stations.check_password("CP1", "first-password")
    await store.stations.register("CP1", password="second-password")
    assert not await store.stations.check_password("CP1", "first-password")
    assert await store.stations.check_password("CP1", "second-password")
    assert [s.station_id for s in await store.stations.list()] == ["CP1"]


async def test_connector_status_is_updated_in_place(store: Store) -> None:
    await store.stations.register("CP1")
    await store.stations.set_connector_status(
        "CP1", evse_id=1, connector_id=1, status="Available", error_code=None, at=T0
    )
    await store.stations.set_connector_status(
        "CP1", evse_id=2, connector_id=1, status="Available", error_code=None, at=T0
    )
    later = T0 + timedelta(minutes=1)
    await store.stations.set_connector_status(
        "CP1", evse_id=1, connector_id=1, status="Faulted", error_code="GroundFailure", at=later
    )
    station = await store.stations.get("CP1")
    assert station is not None
    assert [(c.evse_id, c.status, c.error_code, c.updated_at) for c in station.connectors] == [
        (1, "Faulted", "GroundFailure", later),
        (2, "Available", None, T0),
    ]


async def test_boot_and_clock_offset_are_recorded_in_utc(store: Store) -> None:
    await store.stations.register("CP1")
    await store.stations.record_boot(
        "CP1",
        ocpp_version="2.0.1",
        vendor="PlugStream",
        model="PlugStream 22",
        serial_number="PS22-0001",
        firmware_version="1.2.3",
        at=T0,
    )
    cest = datetime(2025, 3, 1, 14, 0, 42, tzinfo=__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    await store.stations.record_seen("CP1", at=T0 + timedelta(minutes=1), station_time=cest)
    station = await store.stations.get("CP1")
    assert station is not None
    assert (station.model, station.ocpp_version, station.last_boot) == (
        "PlugStream 22",
        "2.0.1",
        T0,
    )
    assert station.last_seen == T0 + timedelta(minutes=1)
    assert station.last_seen.tzinfo is not None and station.last_seen.utcoffset() == timedelta(0)
    assert station.clock_offset_s == pytest.approx(3600 + 42 - 60)


# --- id tokens -----------------------------------------------------------------------


async def test_authorize_answers_from_the_id_tokens(store: Store) -> None:
    await store.id_tokens.put(IdTokenRecord("GOOD", parent_id_token="FLEET-7"))
    await store.id_tokens.put(IdTokenRecord("BLOCKED", status="Blocked"))
    await store.id_tokens.put(IdTokenRecord("OLD", expiry=T0 - timedelta(seconds=1)))
    await store.id_tokens.put(IdTokenRecord("SOON", expiry=T0 + timedelta(days=1)))
    good = await store.id_tokens.authorize("GOOD", at=T0)
    assert (good.status, good.parent_id_token) == ("Accepted", "FLEET-7")
    assert (await store.id_tokens.authorize("BLOCKED", at=T0)).status == "Blocked"
    assert (await store.id_tokens.authorize("OLD", at=T0)).status == "Expired"
    soon = await store.id_tokens.authorize("SOON", at=T0)
    assert (soon.status, soon.expiry) == ("Accepted", T0 + timedelta(days=1))
    assert (await store.id_tokens.authorize("SOON", at=T0 + timedelta(days=2))).status == "Expired"
    assert (await store.id_tokens.authorize("NEVER-SEEN", at=T0)).status == "Invalid"


async def test_id_tokens_can_be_listed_changed_and_deleted(store: Store) -> None:
    await store.id_tokens.put(IdTokenRecord("A"))
    await store.id_tokens.put(IdTokenRecord("B"))
    await store.id_tokens.put(IdTokenRecord("A", status="Blocked"))
    assert [(t.id_token, t.status) for t in await store.id_tokens.list()] == [
        ("A", "Blocked"),
        ("B", "Accepted"),
    ]
    assert await store.id_tokens.delete("A")
    assert not await store.id_tokens.delete("A")
    assert await store.id_tokens.get("A") is None
    assert (await store.id_tokens.authorize("A", at=T0)).status == "Invalid"


# --- transactions, 1.6 ---------------------------------------------------------------


async def start16(store: Store, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "connector_id": 1,
        "id_token": "GOOD",
        "meter_start_wh": Decimal(0),
        "timestamp": T0,
        "received_at": T0,
    }
    args.update(kw)
    tx, _ = await store.transactions.start("CP1", **args)
    return tx


async def test_start_transaction_retry_returns_the_same_transaction(store: Store) -> None:
    await store.stations.register("CP1")
    await store.id_tokens.put(IdTokenRecord("GOOD", parent_id_token="G"))
    first, auth = await store.transactions.start(
        "CP1",
        connector_id=1,
        id_token="GOOD",
        meter_start_wh=Decimal(1000),
        timestamp=T0,
        received_at=T0,
    )
    again, auth_again = await store.transactions.start(
        "CP1",
        connector_id=1,
        id_token="GOOD",
        meter_start_wh=Decimal("1000.0"),
        timestamp=T0,
        received_at=T0 + timedelta(seconds=30),
    )
    assert again.id == first.id and again.transaction_id == str(first.id)
    assert auth.status == auth_again.status == "Accepted" and auth.parent_id_token == "G"
    assert len(await store.transactions.list("CP1")) == 1
    assert again.flags == []


async def test_unknown_id_tag_starts_a_transaction_answered_invalid(store: Store) -> None:
    await store.stations.register("CP1")
    tx, auth = await store.transactions.start(
        "CP1",
        connector_id=1,
        id_token="STRANGER",
        meter_start_wh=Decimal(0),
        timestamp=T0,
        received_at=T0,
    )
    assert auth.status == "Invalid" and tx.active and tx.id_token == "STRANGER"


async def test_energy_is_exact_in_wh(store: Store) -> None:
    await store.stations.register("CP1")
    tx = await start16(store)
    stopped, _ = await store.transactions.stop(
        "CP1",
        transaction_id=tx.id,
        meter_stop_wh=Decimal("12345.6"),
        timestamp=T0 + timedelta(hours=1),
        received_at=T0 + timedelta(hours=1),
        reason="EVDisconnected",
    )
    assert stopped is not None
    assert stopped.energy_wh == Decimal("12345.6") and str(stopped.energy_wh) == "12345.6"
    assert (stopped.active, stopped.stop_reason) == (False, "EVDisconnected")
    fetched = await store.transactions.get(tx.id)
    assert fetched is not None and fetched.energy_wh == Decimal("12345.6")


async def test_stop_transaction_retry_counts_energy_once(store: Store) -> None:
    await store.stations.register("CP1")
    tx = await start16(store, meter_start_wh=Decimal("500.25"))
    stop = {
        "transaction_id": tx.id,
        "meter_stop_wh": Decimal("10500.75"),
        "timestamp": T0 + timedelta(hours=1),
        "received_at": T0 + timedelta(hours=1),
        "samples": [register("5000", T0 + timedelta(minutes=30))],
    }
    first, _ = await store.transactions.stop("CP1", **stop)
    again, _ = await store.transactions.stop("CP1", **stop)
    assert first is not None and again is not None
    assert first.energy_wh == again.energy_wh == Decimal("10000.50")
    full = await store.transactions.get(tx.id)
    assert full is not None
    assert [s.value for s in full.meter_values] == [Decimal("5000")]


async def test_meter_values_are_stored_once_and_drive_energy(store: Store) -> None:
    await store.stations.register("CP1")
    tx = await start16(store, meter_start_wh=Decimal(100))
    samples = [
        register("1.5", T0 + timedelta(minutes=10), unit="kWh"),
        MeterSample(T0 + timedelta(minutes=10), "Voltage", Decimal("230.1"), "V", phase="L1"),
    ]
    for _ in range(3):  # the station retries
        await store.transactions.add_meter_values(
            "CP1",
            evse_id=1,
            connector_id=1,
            transaction_id=tx.id,
            samples=list(samples),
            received_at=T0 + timedelta(minutes=10),
        )
    full = await store.transactions.get(tx.id)
    assert full is not None and full.energy_wh == Decimal(1400)
    assert [(s.measurand, s.value, s.unit) for s in full.meter_values] == [
        (REGISTER, Decimal(1500), "Wh"),
        ("Voltage", Decimal("230.1"), "V"),
    ]


async def test_stop_of_an_unknown_transaction_is_answered_and_flagged(store: Store) -> None:
    await store.stations.register("CP1")
    await store.id_tokens.put(IdTokenRecord("GOOD"))
    tx, auth = await store.transactions.stop(
        "CP1",
        transaction_id=4711,
        meter_stop_wh=Decimal(10),
        timestamp=T0,
        received_at=T0,
        id_token="GOOD",
    )
    assert tx is None and auth is not None and auth.status == "Accepted"
    assert [f.code for f in await store.transactions.list_flags("CP1")] == ["UnknownTransaction"]


# --- transactions, 2.0.1 -------------------------------------------------------------


async def test_replayed_transaction_event_seq_no_creates_one_transaction(store: Store) -> None:
    await store.stations.register("CP1")
    await store.id_tokens.put(IdTokenRecord("GOOD"))
    started = tx_event("Started", 0, T0, wh=1000, id_token="GOOD")
    updated = tx_event("Updated", 1, T0 + timedelta(minutes=5), wh=2000)
    for event in (started, started, updated, updated, started):
        tx, auth = await store.transactions.transaction_event("CP1", event=event, received_at=LATER)
    assert auth is not None and auth.status == "Accepted"
    ended = tx_event(
        "Ended", 2, T0 + timedelta(minutes=10), wh=3000, stopped_reason="EVDisconnected"
    )
    tx, auth = await store.transactions.transaction_event("CP1", event=ended, received_at=LATER)
    tx, _ = await store.transactions.transaction_event("CP1", event=ended, received_at=LATER)
    assert auth is None
    assert (tx.transaction_id, tx.energy_wh, tx.meter_start_wh) == ("tx-1", 2000, 1000)
    assert (tx.active, tx.stop_reason, tx.meter_stop_wh) == (False, "EVDisconnected", 3000)
    assert tx.flags == []
    assert len(await store.transactions.list()) == 1
    found = await store.transactions.find("CP1", "tx-1")
    assert found is not None and found.id == tx.id


async def test_replayed_offline_queue_gives_one_transaction_and_the_right_energy(
    store: Store,
) -> None:
    await store.stations.register("CP1")
    queue = [
        tx_event("Started", 0, T0, wh=Decimal("0.0"), offline=True, unit="kWh", id_token="GOOD"),
        tx_event("Updated", 1, T0 + timedelta(minutes=15), wh=2.5, offline=True, unit="kWh"),
        tx_event("Updated", 2, T0 + timedelta(minutes=30), wh=51, multiplier=2, offline=True),
        tx_event("Ended", 3, T0 + timedelta(minutes=45), wh=7.6543, unit="kWh", offline=True),
    ]
    received = T0 + timedelta(hours=2)
    for event in queue:  # delivered, then the connection drops and it is all replayed
        await store.transactions.transaction_event("CP1", event=event, received_at=received)
    for event in queue:
        tx, _ = await store.transactions.transaction_event("CP1", event=event, received_at=received)
    assert tx.offline and not tx.active
    assert tx.energy_wh == Decimal("7654.3")
    assert tx.flags == []
    full = await store.transactions.get(tx.id)
    assert full is not None
    assert [s.value for s in full.meter_values] == [0, 2500, 5100, Decimal("7654.3")]
    assert len(await store.transactions.list("CP1")) == 1


async def test_an_updated_event_for_an_unknown_transaction_creates_it(store: Store) -> None:
    await store.stations.register("CP1")
    tx, _ = await store.transactions.transaction_event(
        "CP1", event=tx_event("Updated", 7, T0, wh=5000, tx_id="lost-start"), received_at=T0
    )
    tx, _ = await store.transactions.transaction_event(
        "CP1",
        event=tx_event("Ended", 8, T0 + timedelta(minutes=20), wh=6000, tx_id="lost-start"),
        received_at=LATER,
    )
    assert (tx.transaction_id, tx.active, tx.energy_wh) == ("lost-start", False, Decimal(1000))
    # the register did not start from zero with this transaction: baseline 5000 Wh
    assert codes(tx) == ["MissingStarted", "BaselineFromFirstReading"]


# --- transaction hygiene: flagged, never dropped ----------------------------------------


async def test_second_start_on_a_busy_connector_is_flagged(store: Store) -> None:
    await store.stations.register("CP1")
    first = await start16(store, id_token="A")
    second = await start16(store, id_token="B", timestamp=T0 + timedelta(minutes=5))
    assert second.id != first.id
    assert codes(second) == ["SecondStartOnBusyConnector"]
    listed = {tx.id: tx for tx in await store.transactions.list("CP1")}
    assert codes(listed[first.id]) == ["SecondStartOnBusyConnector"]
    assert [tx.id for tx in await store.transactions.list("CP1")] == [second.id, first.id]


async def test_start_replayed_after_its_stop_is_flagged(store: Store) -> None:
    await store.stations.register("CP1")
    tx = await start16(store)
    await store.transactions.stop(
        "CP1", transaction_id=tx.id, meter_stop_wh=Decimal(10), timestamp=T0, received_at=T0
    )
    again = await start16(store, received_at=T0 + timedelta(minutes=1))
    assert again.id == tx.id and not again.active
    assert codes(again) == ["StartAfterStop"]
    # 2.0.1: a Started with a new seqNo after the Ended
    await store.transactions.transaction_event(
        "CP1", event=tx_event("Started", 0, T0), received_at=T0
    )
    await store.transactions.transaction_event(
        "CP1", event=tx_event("Ended", 1, T0), received_at=T0
    )
    late, _ = await store.transactions.transaction_event(
        "CP1", event=tx_event("Started", 5, T0), received_at=T0
    )
    assert codes(late) == ["StartAfterStop"]


async def test_overlapping_transactions_are_flagged(store: Store) -> None:
    await store.stations.register("CP1")
    # an offline transaction 12:00-13:00 is replayed after one that started at 12:30
    online = await start16(store, timestamp=T0 + timedelta(minutes=30), id_token="B")
    await store.transactions.stop(
        "CP1",
        transaction_id=online.id,
        meter_stop_wh=Decimal(100),
        timestamp=T0 + timedelta(minutes=40),
        received_at=T0 + timedelta(minutes=40),
    )
    offline = await start16(store, id_token="A", received_at=T0 + timedelta(hours=2))
    stopped, _ = await store.transactions.stop(
        "CP1",
        transaction_id=offline.id,
        meter_stop_wh=Decimal(100),
        timestamp=T0 + timedelta(hours=1),
        received_at=T0 + timedelta(hours=2),
    )
    assert stopped is not None and codes(stopped) == ["Overlap"]
    # and a start inside a finished transaction
    inside = await start16(store, timestamp=T0 + timedelta(minutes=35), id_token="C")
    assert "Overlap" in codes(inside)


async def test_time_running_backwards_is_flagged(store: Store) -> None:
    await store.stations.register("CP1")
    await store.transactions.transaction_event(
        "CP1", event=tx_event("Started", 0, T0), received_at=T0
    )
    tx, _ = await store.transactions.transaction_event(
        "CP1", event=tx_event("Updated", 1, T0 - timedelta(minutes=3)), received_at=T0
    )
    assert codes(tx) == ["TimeBackwards"]
    tx16 = await start16(store, connector_id=2)
    stopped, _ = await store.transactions.stop(
        "CP1",
        transaction_id=tx16.id,
        meter_stop_wh=Decimal(0),
        timestamp=T0 - timedelta(hours=1),
        received_at=T0,
    )
    assert stopped is not None and codes(stopped) == ["TimeBackwards"]


async def test_timestamps_in_the_future_are_flagged(store: Store) -> None:
    await store.stations.register("CP1")
    tx = await start16(store, timestamp=T0 + timedelta(minutes=6))
    assert codes(tx) == ["TimeInFuture"]
    ok = await start16(store, connector_id=2, timestamp=T0 + timedelta(minutes=4))
    assert codes(ok) == []
    await store.transactions.add_meter_values(
        "CP1",
        evse_id=2,
        connector_id=2,
        transaction_id=ok.id,
        samples=[register("10", T0 + timedelta(days=1))],
        received_at=T0,
    )
    flagged = await store.transactions.get(ok.id)
    assert flagged is not None and codes(flagged) == ["TimeInFuture"]
    assert len(flagged.meter_values) == 1  # stored all the same


async def test_a_decreasing_meter_register_is_flagged_and_not_billed(store: Store) -> None:
    await store.stations.register("CP1")
    tx = await start16(store, meter_start_wh=Decimal(1000))
    for minutes, wh in ((10, "3000"), (20, "2500"), (30, "4000")):
        await store.transactions.add_meter_values(
            "CP1",
            evse_id=1,
            connector_id=1,
            transaction_id=tx.id,
            samples=[register(wh, T0 + timedelta(minutes=minutes))],
            received_at=T0 + timedelta(minutes=minutes),
        )
    full = await store.transactions.get(tx.id)
    assert full is not None
    assert codes(full) == ["RegisterDecreased"]
    assert len(full.meter_values) == 3  # the odd reading is kept
    assert full.energy_wh == Decimal(3000)
    stopped, _ = await store.transactions.stop(
        "CP1",
        transaction_id=tx.id,
        meter_stop_wh=Decimal(3900),
        timestamp=T0 + timedelta(minutes=40),
        received_at=T0 + timedelta(minutes=40),
    )
    assert stopped is not None and stopped.energy_wh == Decimal(3000)
    assert codes(stopped) == ["RegisterDecreased", "RegisterDecreased"]


async def test_offline_transaction_from_zero_takes_its_baseline_from_the_first_plausible_reading(
    store: Store,
) -> None:
    await store.stations.register("CP1")
    queue = [
        tx_event("Started", 0, T0, wh=0, offline=True),
        tx_event("Updated", 1, T0 + timedelta(minutes=10), wh=8_250_000, offline=True),
        tx_event("Ended", 2, T0 + timedelta(minutes=20), wh=8_252_500, offline=True),
    ]
    for event in queue:
        tx, _ = await store.transactions.transaction_event(
            "CP1", event=event, received_at=T0 + timedelta(hours=1)
        )
    assert tx.energy_wh == Decimal(2500)  # not 8 252 500 Wh billed from zero
    assert codes(tx) == ["BaselineFromFirstReading"]


async def test_offline_transaction_from_zero_with_plausible_readings_counts_from_zero(
    store: Store,
) -> None:
    await store.stations.register("CP1")
    queue = [
        tx_event("Started", 0, T0, wh=0, offline=True, tx_id="t"),
        tx_event("Updated", 1, T0 + timedelta(minutes=30), wh=3000, offline=True, tx_id="t"),
        tx_event("Ended", 2, T0 + timedelta(minutes=60), wh=7000, offline=True, tx_id="t"),
    ]
    for event in queue:
        tx, _ = await store.transactions.transaction_event("CP1", event=event, received_at=LATER)
    assert (tx.energy_wh, tx.flags) == (Decimal(7000), [])


async def test_16_start_sent_late_with_meter_start_zero_uses_a_plausible_baseline(
    store: Store,
) -> None:
    await store.stations.register("CP1")
    tx = await start16(store, received_at=T0 + timedelta(hours=3))
    assert tx.offline and tx.energy_wh is None
    stopped, _ = await store.transactions.stop(
        "CP1",
        transaction_id=tx.id,
        meter_stop_wh=Decimal(1_000_400),
        timestamp=T0 + timedelta(minutes=30),
        received_at=T0 + timedelta(hours=3),
        samples=[register("1000000", T0 + timedelta(minutes=1))],
    )
    assert stopped is not None and stopped.energy_wh == Decimal(400)
    assert codes(stopped) == ["BaselineFromFirstReading"]


# --- durability and group commit -----------------------------------------------------


async def test_everything_acknowledged_survives_a_reopen(store: Store) -> None:
    await store.stations.register("CP1", password="pw-pw-pw-pw")
    await store.id_tokens.put(IdTokenRecord("GOOD"))
    tx = await start16(store)
    await store.transactions.add_meter_values(
        "CP1",
        evse_id=1,
        connector_id=1,
        transaction_id=tx.id,
        samples=[register("42.5", T0 + timedelta(minutes=1))],
        received_at=T0,
    )
    await store.messages.log("CP1", "in", '[2,"1","Heartbeat",{}]', T0)
    await store.transactions.transaction_event(
        "CP1", event=tx_event("Started", 0, T0, wh=5), received_at=T0
    )
    url = store.url
    await store.close()

    reopened = await Store.open(url)
    try:
        assert await reopened.stations.check_password("CP1", "pw-pw-pw-pw")
        assert (await reopened.id_tokens.authorize("GOOD", at=T0)).status == "Accepted"
        again = await reopened.transactions.get(tx.id)
        assert again is not None and again.energy_wh == Decimal("42.5")
        assert [m.text for m in await reopened.messages.list("CP1")] == ['[2,"1","Heartbeat",{}]']
        assert await reopened.transactions.find("CP1", "tx-1") is not None
        # the ids go on
        nxt = await start16(reopened, connector_id=2)
        assert nxt.id > tx.id
    finally:
        await reopened.close()


async def test_sqlite_is_durable_wal_and_enforces_foreign_keys(tmp_path: Any) -> None:
    store = await Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        assert store.url.startswith("sqlite+aiosqlite:///")
        assert await scalar(store, "PRAGMA journal_mode") == "wal"
        assert await scalar(store, "PRAGMA synchronous") == 2  # FULL
        assert await scalar(store, "PRAGMA foreign_keys") == 1
        assert await scalar(store, "PRAGMA busy_timeout") > 0
    finally:
        await store.close()


async def test_concurrent_writes_all_complete_in_few_commits(store: Store) -> None:
    await store.stations.register("CP1")
    tx = await start16(store)
    commits, ops = store.db.stats.commits, store.db.stats.ops
    calls = []
    for i in range(100):
        at = T0 + timedelta(seconds=i + 1)
        calls.append(
            store.transactions.add_meter_values(
                "CP1",
                evse_id=1,
                connector_id=1,
                transaction_id=tx.id,
                samples=[register(str(10 * (i + 1)), at)],
                received_at=at,
            )
        )
        calls.append(store.messages.log("CP1", "in", f"frame {i}", at))
    await asyncio.gather(*calls)
    assert store.db.stats.ops - ops == 200
    assert store.db.stats.commits - commits <= 20
    full = await store.transactions.get(tx.id)
    assert full is not None and len(full.meter_values) == 100
    assert full.energy_wh == Decimal(1000)
    assert len(await store.messages.list("CP1", limit=500)) == 100


async def test_a_failing_write_fails_alone(store: Store) -> None:
    def boom(conn: Any) -> None:
        conn.execute(text("INSERT INTO no_such_table VALUES (1)"))

    results = await asyncio.gather(
        store.messages.log("CP1", "in", "before", T0),
        store.db.write(boom),
        store.messages.log("CP1", "in", "after", T0),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], Exception)
    assert [m.text for m in await store.messages.list("CP1")] == ["after", "before"]


async def test_rows_written_in_bulk_survive_a_failing_write_in_their_batch(
    store: Store,
) -> None:
    def boom(conn: Any) -> None:
        conn.execute(text("INSERT INTO no_such_table VALUES (1)"))

    sample = MeterSample(timestamp=T0, measurand="Voltage", value=Decimal("230.1"), unit="V")
    results = await asyncio.gather(
        store.transactions.add_meter_values(
            "CP1", evse_id=1, connector_id=1, transaction_id=None, samples=[sample], received_at=T0
        ),
        store.db.write(boom),
        store.messages.log("CP1", "in", "kept", T0),
        store.transactions.add_meter_values(  # the same sample again, in the same batch: stored once
            "CP1", evse_id=1, connector_id=1, transaction_id=None, samples=[sample], received_at=T0
        ),
        return_exceptions=True,
    )
    assert [isinstance(result, Exception) for result in results] == [False, True, False, False]
    assert await store.db.count_rows("meter_values") == 1
    assert [m.text for m in await store.messages.list("CP1")] == ["kept"]


async def test_rows_written_in_bulk_are_stored_as_their_column_types_store_them(
    store: Store,
) -> None:
    """The bulk path converts values itself: what it stores must equal what SQLAlchemy's
    column types would, or a sample written both ways would not be found a duplicate."""
    from sqlalchemy.dialects.sqlite import insert

    from plugstream.cloud.storage import schema

    at = datetime(2025, 3, 1, 14, 0, 0, 120, tzinfo=timezone(timedelta(hours=2)))
    naive = datetime(2025, 3, 1, 12, 0, 1)  # taken as UTC
    samples = [
        MeterSample(timestamp=at, measurand="Voltage", value=Decimal("230.10"), unit="V"),
        MeterSample(timestamp=naive, measurand="Voltage", value=Decimal("1E+3"), unit="V"),
    ]
    await store.transactions.add_meter_values(
        "CP1", evse_id=1, connector_id=1, transaction_id=None, samples=samples, received_at=at
    )
    await store.messages.log("CP1", "in", "bulk", at)

    def core(conn: Any) -> None:
        conn.execute(
            schema.messages.insert().values(station_id="CP1", direction="in", text="core", at=at)
        )
        for sample in samples:
            conn.execute(
                insert(schema.meter_values)
                .values(
                    station_id="CP1",
                    tx_key=0,
                    evse_id=1,
                    connector_id=1,
                    timestamp=sample.timestamp,
                    measurand=sample.measurand,
                    phase="",
                    location="",
                    value=sample.value,
                    unit=sample.unit,
                    received_at=at,
                )
                .on_conflict_do_nothing()
            )

    def raw(conn: Any) -> list[Any]:
        return list(conn.execute(text("SELECT at FROM messages ORDER BY id")).scalars())

    if store.url.startswith("sqlite"):  # Core's SQLite insert, on SQLite only
        await store.db.write(core)
        assert await store.db.count_rows("meter_values") == 2  # both were duplicates
        stored = await store.db.read(raw)
        assert stored[0] == stored[1] == "2025-03-01 12:00:00.000120"
    messages = await store.messages.list("CP1")
    assert [m.at for m in messages] == [at] * len(messages)
    values = await store.db.read(
        lambda conn: (
            conn.execute(text("SELECT value FROM meter_values ORDER BY timestamp")).scalars().all()
        )
    )
    assert [Decimal(str(value)) for value in values] == [Decimal("230.10"), Decimal("1E+3")]


async def test_a_write_is_all_or_nothing(store: Store) -> None:
    """An operation that fails leaves none of its rows behind, and fails alone: the
    writes batched with it are committed."""
    from plugstream.cloud.storage import schema

    def half(conn: Any) -> None:
        conn.execute(
            schema.messages.insert().values(station_id="CP1", direction="in", text="half", at=T0)
        )
        conn.execute(text("INSERT INTO no_such_table VALUES (1)"))

    results = await asyncio.gather(
        store.messages.log("CP1", "in", "before", T0),
        store.db.write(half),
        store.messages.log("CP1", "in", "after", T0),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], Exception)
    assert [m.text for m in await store.messages.list("CP1")] == ["after", "before"]
    assert await store.db.count_rows("messages") == 2


async def test_writes_after_close_are_refused(store: Store) -> None:
    await store.close()
    with pytest.raises(RuntimeError):
        await store.messages.log("CP1", "in", "late", T0)


# --- message log ---------------------------------------------------------------------


async def test_message_log_is_newest_first_and_paged(store: Store) -> None:
    for i in range(7):
        await store.messages.log(
            "CP1", "in" if i % 2 else "out", f"m{i}", T0 + timedelta(seconds=i)
        )
    await store.messages.log("CP2", "in", "other station", T0)
    page1 = await store.messages.list("CP1", limit=3)
    assert [m.text for m in page1] == ["m6", "m5", "m4"]
    page2 = await store.messages.list("CP1", limit=3, before_id=page1[-1].id)
    assert [m.text for m in page2] == ["m3", "m2", "m1"]
    page3 = await store.messages.list("CP1", limit=3, before_id=page2[-1].id)
    assert [(m.text, m.direction, m.at) for m in page3] == [("m0", "out", T0)]


# --- schema and URLs -----------------------------------------------------------------


async def test_the_migrations_build_the_schema_the_code_uses(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from plugstream.cloud.storage.database import MIGRATIONS
    from plugstream.cloud.storage.schema import metadata

    def diff(conn: Any) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        return list(compare_metadata(context, metadata))

    assert await store.db.read(diff) == []
    newest = max(p.name[:4] for p in (MIGRATIONS / "versions").glob("0*.py"))
    assert await scalar(store, "SELECT version_num FROM alembic_version") == newest


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///cloud.db", "sqlite+aiosqlite:///cloud.db"),
        ("sqlite+aiosqlite:////tmp/x.db", "sqlite+aiosqlite:////tmp/x.db"),
        ("postgresql://u@db:5432/cloud", "postgresql+asyncpg://u@db:5432/cloud"),
        ("postgres://u@db/cloud", "postgresql+asyncpg://u@db/cloud"),
        ("postgresql+asyncpg://u@db/cloud", "postgresql+asyncpg://u@db/cloud"),
    ],
)
def test_database_urls_are_normalised(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


def test_a_bare_path_is_a_sqlite_file(tmp_path: Any) -> None:
    assert normalize_url(str(tmp_path / "c.db")) == f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
