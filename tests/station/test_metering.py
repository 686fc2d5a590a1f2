"""Meter values: schedule, configured measurands only, valid and compact payloads."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest

from plugstream.ocpp import Call, OcppVersion, encode, schemas
from plugstream.ocpp.datetimes import format_time
from plugstream.station.ev import CITY_CAR, PERFORMANCE_CAR, Ev
from plugstream.station.hardware import (
    CURRENT,
    ENERGY_REGISTER,
    PLUGSTREAM_7,
    PLUGSTREAM_22,
    POWER,
    SOC,
    VOLTAGE,
    ChargePointHardware,
    Measurements,
    Model,
)
from plugstream.station.metering import (
    MeterKind,
    MeterSchedule,
    ReadingContext,
    TransactionData,
    build_meter_value_16,
    build_meter_value_201,
    parse_measurands,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 25, 14, 7, 13, tzinfo=UTC)  # a transaction starts off the grid
ALL = f"{ENERGY_REGISTER},{POWER},{CURRENT},{VOLTAGE},{SOC}"
# 120 CALLs of 6 sampled values with their units: about 470 (1.6) / 520 (2.0.1) bytes each
BUDGET_16 = 60_000
BUDGET_201 = 66_000


def charging(model: Model, ev: Ev) -> ChargePointHardware:
    hw = ChargePointHardware(model, random.Random(7), energy_wh=Decimal("12345.678"))
    assert hw.plug_in(ev)
    assert hw.lock_cable()
    assert hw.close_contactor()
    hw.advance(60.0)
    return hw


def reading(model: Model) -> Measurements:
    ev = Ev(PERFORMANCE_CAR if model.phases == 3 else CITY_CAR, soc=42.0)
    return charging(model, ev).measurements()


def valid(version: OcppVersion, action: str, payload: dict[str, Any]) -> None:
    # on a copy: the compiled validators fill schema defaults into what they check
    error = schemas(version).validate(action, "request", copy.deepcopy(payload))
    assert error is None, error


def names(meter_value: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [
        (sv.get("measurand", ENERGY_REGISTER), sv.get("phase"))
        for sv in meter_value["sampledValue"]
    ]


# -- the schedule ------------------------------------------------------------------


def test_samples_are_counted_from_the_transaction_start() -> None:
    s = MeterSchedule(sample_interval=60, clock_interval=0, now=T0)
    assert s.next_due is None  # no transaction, no sampled data
    s.start_transaction(T0)
    assert s.next_sample == T0 + timedelta(seconds=60)
    assert s.due(T0 + timedelta(seconds=59)) == []
    assert s.due(T0 + timedelta(seconds=60)) == [MeterKind.SAMPLED]
    assert s.next_sample == T0 + timedelta(seconds=120)
    # late by several intervals: one reading, and the grid stays anchored at the start
    assert s.due(T0 + timedelta(seconds=250)) == [MeterKind.SAMPLED]
    assert s.next_sample == T0 + timedelta(seconds=300)
    s.stop_transaction(T0 + timedelta(seconds=260))
    assert s.next_due is None
    assert s.due(T0 + timedelta(seconds=400)) == []


def test_clock_aligned_on_the_quarter_hours() -> None:
    s = MeterSchedule(sample_interval=0, clock_interval=900, now=T0)
    times = []
    now = T0
    for _ in range(5):
        due = s.next_due
        assert due is not None
        assert s.due(due - timedelta(microseconds=1)) == []
        now = due
        assert s.due(now) == [MeterKind.CLOCK]
        times.append(now.strftime("%H:%M:%S"))
    assert times == ["14:15:00", "14:30:00", "14:45:00", "15:00:00", "15:15:00"]


def test_clock_grid_restarts_at_midnight_utc() -> None:
    late = datetime(2026, 11, 25, 23, 50, tzinfo=UTC)
    s = MeterSchedule(sample_interval=0, clock_interval=7 * 3600, now=late)  # 7 h: 0, 7, 14, 21
    assert s.next_clock == datetime(2026, 11, 26, tzinfo=UTC)
    # a non-UTC clock is read in UTC
    cet = datetime(2026, 11, 26, 1, 5, tzinfo=UTC).astimezone(timezone(timedelta(hours=1)))
    s = MeterSchedule(sample_interval=0, clock_interval=900, now=cet)
    assert s.next_clock == datetime(2026, 11, 26, 1, 15, tzinfo=UTC)


def test_both_kinds_at_once_and_interval_zero_disables() -> None:
    start = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    s = MeterSchedule(sample_interval=900, clock_interval=900, now=start)
    s.start_transaction(start)
    assert s.due(start + timedelta(minutes=15)) == [MeterKind.CLOCK, MeterKind.SAMPLED]
    s.configure(sample_interval=0, clock_interval=0)
    assert (s.next_sample, s.next_clock, s.next_due) == (None, None, None)
    assert s.due(start + timedelta(hours=5)) == []
    s.configure(sample_interval=300)  # back on, anchored at the transaction start
    assert s.next_sample == start + timedelta(hours=5, minutes=5)
    with pytest.raises(ValueError, match="negative"):
        s.configure(clock_interval=-1)


def test_time_is_aware_and_forward() -> None:
    with pytest.raises(ValueError, match="naive"):
        MeterSchedule(60, 900, datetime(2026, 1, 1))
    s = MeterSchedule(60, 900, T0)
    with pytest.raises(ValueError, match="backwards"):
        s.due(T0 - timedelta(seconds=1))


# -- measurands, per phase, valid ----------------------------------------------------


@pytest.mark.parametrize("model", [PLUGSTREAM_22, PLUGSTREAM_7], ids=lambda m: m.name)
def test_configured_measurands_per_phase_16(model: Model) -> None:
    m = reading(model)
    mv = build_meter_value_16(m, ALL, ReadingContext.SAMPLE_PERIODIC, T0)
    assert mv is not None
    valid(
        OcppVersion.V16, "MeterValues", {"connectorId": 1, "transactionId": 7, "meterValue": [mv]}
    )
    phases = list(model.phase_names)
    assert names(mv) == [
        (ENERGY_REGISTER, None),
        (POWER, None),
        *[(CURRENT, p) for p in phases],
        *[(VOLTAGE, f"{p}-N") for p in phases],
        (SOC, None),
    ]
    assert all(isinstance(sv["value"], str) for sv in mv["sampledValue"])
    assert mv["sampledValue"][0] == {"value": str(m.energy_wh)}  # all defaults left out
    assert mv["timestamp"] == "2026-11-25T14:07:13Z"


@pytest.mark.parametrize("model", [PLUGSTREAM_22, PLUGSTREAM_7], ids=lambda m: m.name)
def test_configured_measurands_per_phase_201(model: Model) -> None:
    m = reading(model)
    mv = build_meter_value_201(m, ALL, ReadingContext.SAMPLE_CLOCK, T0)
    assert mv is not None
    valid(OcppVersion.V201, "MeterValues", {"evseId": 1, "meterValue": [mv]})
    assert len(mv["sampledValue"]) == 3 + 2 * model.phases
    assert all(sv["context"] == "Sample.Clock" for sv in mv["sampledValue"])
    assert all(isinstance(sv["value"], int | float) for sv in mv["sampledValue"])
    energy, power = mv["sampledValue"][:2]
    assert energy == {"value": float(m.energy_wh), "context": "Sample.Clock"}
    assert power["unitOfMeasure"] == {"unit": "W"}


def test_only_the_configured_measurands_appear() -> None:
    m = reading(PLUGSTREAM_22)
    mv = build_meter_value_16(m, f"{ENERGY_REGISTER}, {CURRENT}", "Sample.Periodic", T0)
    assert mv is not None
    assert names(mv) == [(ENERGY_REGISTER, None), (CURRENT, "L1"), (CURRENT, "L2"), (CURRENT, "L3")]
    # a measurand qualified by a phase (1.6 9.1.17: "Voltage.L1")
    mv = build_meter_value_16(m, ["Voltage.L1", "Current.Import.L3"], "Sample.Periodic", T0)
    assert mv is not None
    assert names(mv) == [(CURRENT, "L3"), (VOLTAGE, "L1-N")]
    # nothing measurable: no meter value at all
    assert build_meter_value_16(m, "", "Sample.Periodic", T0) is None
    assert build_meter_value_201(m, "Temperature", "Sample.Periodic", T0) is None
    idle = ChargePointHardware(PLUGSTREAM_7, random.Random(1)).measurements()
    assert build_meter_value_16(idle, SOC, "Sample.Periodic", T0) is None  # no EV, no SoC


def test_helpers() -> None:
    assert parse_measurands(" Energy.Active.Import.Register ,,SoC ") == (ENERGY_REGISTER, SOC)
    assert format_time(T0.replace(microsecond=123456)) == "2026-11-25T14:07:13.123Z"
    m = Measurements({"L1": 230.0}, {"L1": 0.0}, 0.0, Decimal("100.000"), None)
    mv = build_meter_value_16(m, ALL, "Transaction.Begin", T0)
    assert mv is not None
    values = {sv.get("measurand", ENERGY_REGISTER): sv["value"] for sv in mv["sampledValue"]}
    assert values == {ENERGY_REGISTER: "100", POWER: "0", CURRENT: "0", VOLTAGE: "230"}
    assert all(sv["context"] == "Transaction.Begin" for sv in mv["sampledValue"])


def test_each_meter_sample_keeps_its_own_time_to_the_millisecond() -> None:
    """Two readings in one second must not read as one sample twice: the CSMS would keep
    the first and bill from it (and a stop truncated to its second could precede the last
    sample it follows). Whole seconds were tried for their bytes and broke exactly that."""
    late = T0.replace(microsecond=999_999)
    for build in (build_meter_value_16, build_meter_value_201):
        mv = build(
            charging(PLUGSTREAM_22, Ev(CITY_CAR)).measurements(), ALL, "Sample.Periodic", late
        )
        assert mv is not None and mv["timestamp"] == "2026-11-25T14:07:13.999Z"


# -- transaction data ---------------------------------------------------------------


def session(data: TransactionData, minutes: int) -> None:
    hw = charging(PLUGSTREAM_22, Ev(PERFORMANCE_CAR, soc=30.0))
    data.begin(T0, hw.measurements())
    for s in range(1, minutes * 60 + 1):
        now = T0 + timedelta(seconds=s)
        due = data.next_due
        if due is not None and due <= now:
            hw.advance(60.0 + s)
            data.tick(now, hw.measurements())
    hw.advance(60.0 + minutes * 60 + 1)
    data.end(T0 + timedelta(minutes=minutes, seconds=1), hw.measurements())


def contexts(values: list[dict[str, Any]]) -> list[str]:
    return [mv["sampledValue"][0].get("context", "Sample.Periodic") for mv in values]


def test_stop_transaction_data_16() -> None:
    data = TransactionData(
        sampled_measurands=ENERGY_REGISTER,
        sampled_interval=600,
        aligned_measurands=f"{ENERGY_REGISTER},{POWER}",
        aligned_interval=900,
    )
    session(data, minutes=40)
    values = data.meter_values_16()
    stamps = [mv["timestamp"][11:19] for mv in values]
    assert list(zip(stamps, contexts(values), strict=True)) == [
        ("14:07:13", "Transaction.Begin"),
        ("14:15:00", "Sample.Clock"),
        ("14:17:13", "Sample.Periodic"),
        ("14:27:13", "Sample.Periodic"),
        ("14:30:00", "Sample.Clock"),
        ("14:37:13", "Sample.Periodic"),
        ("14:45:00", "Sample.Clock"),
        ("14:47:13", "Sample.Periodic"),
        ("14:47:14", "Transaction.End"),
    ]
    assert [len(mv["sampledValue"]) for mv in values] == [1, 2, 1, 1, 2, 1, 2, 1, 1]
    registers = [Decimal(mv["sampledValue"][0]["value"]) for mv in values]
    assert registers == sorted(registers) and registers[0] < registers[-1]
    valid(
        OcppVersion.V16,
        "StopTransaction",
        {
            "transactionId": 7,
            "meterStop": int(registers[-1]),
            "timestamp": values[-1]["timestamp"],
            "transactionData": values,
        },
    )


def test_transaction_event_ended_201_interval_zero_is_begin_and_end() -> None:
    data = TransactionData(sampled_measurands=f"{ENERGY_REGISTER},{SOC}", sampled_interval=0)
    session(data, minutes=30)
    values = data.meter_values_201()
    assert contexts(values) == ["Transaction.Begin", "Transaction.End"]
    assert [n for n, _ in names(values[0])] == [ENERGY_REGISTER, SOC]
    valid(
        OcppVersion.V201,
        "TransactionEvent",
        {
            "eventType": "Ended",
            "timestamp": values[-1]["timestamp"],
            "triggerReason": "EVCommunicationLost",
            "seqNo": 3,
            "transactionInfo": {"transactionId": "tx-1", "stoppedReason": "EVDisconnected"},
            "meterValue": values,
        },
    )


def test_empty_stop_txn_data_keeps_nothing() -> None:
    data = TransactionData(sampled_measurands="", sampled_interval=60, aligned_interval=900)
    session(data, minutes=20)
    assert data.readings == []
    assert data.meter_values_16() == []
    with pytest.raises(RuntimeError):
        data.tick(T0 + timedelta(hours=1), reading(PLUGSTREAM_7))


# -- the bytes ------------------------------------------------------------------------


def test_two_hour_session_fits_the_byte_budget() -> None:
    """120 MeterValues of a PlugStream 22 at 60 s: energy, power, 3 currents, SoC."""
    hw = charging(PLUGSTREAM_22, Ev(PERFORMANCE_CAR, soc=10.0))
    measurands = parse_measurands(f"{ENERGY_REGISTER},{POWER},{CURRENT},{SOC}")
    schedule = MeterSchedule(sample_interval=60, clock_interval=0, now=T0)
    schedule.start_transaction(T0)
    total = verbose_total = total_201 = 0
    frames = 0
    v16 = schemas(OcppVersion.V16)
    while frames < 120:
        due = schedule.next_due
        assert due is not None
        assert schedule.due(due) == [MeterKind.SAMPLED]
        hw.advance(60.0 + (due - T0).total_seconds())
        mv = build_meter_value_16(hw.measurements(), measurands, "Sample.Periodic", due)
        assert mv is not None and len(mv["sampledValue"]) == 6
        payload = {"connectorId": 1, "transactionId": 1042, "meterValue": [mv]}
        assert v16.validate("MeterValues", "request", copy.deepcopy(payload)) is None
        frames += 1
        total += len(encode(Call(str(frames), "MeterValues", payload)).encode())
        mv201 = build_meter_value_201(hw.measurements(), measurands, "Sample.Periodic", due)
        payload201 = {"evseId": 1, "meterValue": [mv201]}
        valid(OcppVersion.V201, "MeterValues", payload201)
        total_201 += len(encode(Call(str(frames), "MeterValues", payload201)).encode())
        verbose = dict(payload, meterValue=[_with_defaults(mv)])
        assert v16.validate("MeterValues", "request", verbose) is None
        verbose_total += len(encode(Call(str(frames), "MeterValues", verbose)).encode())
    print(
        f"\n120 MeterValues CALLs, PlugStream 22: {total} bytes compact, "
        f"{verbose_total} bytes with every default spelled out; 2.0.1: {total_201} bytes"
    )
    assert total < BUDGET_16
    assert total_201 < BUDGET_201
    assert total < verbose_total * 0.6


def _with_defaults(mv: dict[str, Any]) -> dict[str, Any]:
    full = {
        "context": "Sample.Periodic",
        "format": "Raw",
        "measurand": ENERGY_REGISTER,
        "location": "Outlet",
        "unit": "Wh",
    }
    out = {**mv, "sampledValue": [{**full, **sv} for sv in mv["sampledValue"]]}
    assert orjson.loads(orjson.dumps(out))  # plain JSON
    return out
