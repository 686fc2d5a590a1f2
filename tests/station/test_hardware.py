"""The PlugStream 7 / 22 as a user sees it: kWh delivered, interlocks, a faithful register."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from plugstream.station.ev import CITY_CAR, FAMILY_CAR, PERFORMANCE_CAR, Ev
from plugstream.station.hardware import (
    ENERGY_REGISTER,
    PLUGSTREAM_7,
    PLUGSTREAM_22,
    ChargePointHardware,
    Model,
)

pytestmark = pytest.mark.unit

HOUR = 3600.0


def charging(model: Model, ev: Ev, seed: int = 1) -> ChargePointHardware:
    hw = ChargePointHardware(model, random.Random(seed))
    assert hw.plug_in(ev)
    assert hw.lock_cable()
    assert hw.close_contactor()
    return hw


def test_models_report_themselves() -> None:
    assert (PLUGSTREAM_7.vendor, PLUGSTREAM_7.name, PLUGSTREAM_7.phases) == (
        "PlugStream",
        "PlugStream 7",
        1,
    )
    assert (PLUGSTREAM_22.name, PLUGSTREAM_22.phases, PLUGSTREAM_22.max_power_w) == (
        "PlugStream 22",
        3,
        22000,
    )
    assert PLUGSTREAM_22.phase_names == ("L1", "L2", "L3")


def test_plugstream_7_delivers_7_36_kwh_in_an_hour_monotonically() -> None:
    hw = charging(PLUGSTREAM_7, Ev(CITY_CAR, soc=10))
    readings = []
    for minute in range(1, 61):
        hw.advance(minute * 60.0)
        readings.append(hw.energy_wh)
    assert readings == sorted(readings)
    assert float(hw.energy_wh) == pytest.approx(230 * 32, rel=0.01)
    m = hw.measurements()
    assert m.current_a == {"L1": 32.0}
    assert m.power_w == pytest.approx(7360, rel=0.02)


def test_plugstream_22_with_a_three_phase_car_gives_22_kw() -> None:
    hw = charging(PLUGSTREAM_22, Ev(PERFORMANCE_CAR, soc=10))
    hw.advance(HOUR)
    assert float(hw.energy_wh) == pytest.approx(22_080, rel=0.01)
    assert hw.measurements().current_a == {"L1": 32.0, "L2": 32.0, "L3": 32.0}


def test_a_single_phase_car_on_a_22_draws_on_l1_only() -> None:
    hw = charging(PLUGSTREAM_22, Ev(CITY_CAR, soc=10))
    hw.advance(60.0)
    m = hw.measurements()
    assert m.current_a == {"L1": 32.0, "L2": 0.0, "L3": 0.0}
    assert set(m.voltage_v) == {"L1", "L2", "L3"}
    assert m.power_w == pytest.approx(7360, rel=0.02)


def test_a_16_a_limit_halves_the_power_and_below_6_a_pauses() -> None:
    hw = charging(PLUGSTREAM_22, Ev(PERFORMANCE_CAR, soc=10))
    full = hw.measurements().power_w
    hw.set_current_limit(16)
    assert hw.measurements().power_w == pytest.approx(full / 2, rel=0.01)
    hw.set_current_limit(5)
    assert not hw.charging
    hw.set_current_limit(None)
    assert hw.measurements().power_w == full


def test_the_car_not_the_station_sets_the_pace() -> None:
    hw = charging(PLUGSTREAM_22, Ev(FAMILY_CAR, soc=10))
    assert hw.measurements().current_a == {"L1": 16.0, "L2": 16.0, "L3": 16.0}


def test_taper_near_full_and_stop_at_100() -> None:
    ev = Ev(CITY_CAR, soc=70)
    hw = charging(PLUGSTREAM_7, ev)
    early = hw.measurements().power_w
    now = 0.0
    while ev.soc < 95:
        now += 60
        hw.advance(now)
    assert hw.measurements().power_w < early / 2
    now += 10 * HOUR
    hw.advance(now)
    assert ev.soc == 100.0
    assert not hw.charging
    stopped = hw.energy_wh
    hw.advance(now + HOUR)
    assert hw.energy_wh == stopped


def test_charging_stops_at_the_target_soc() -> None:
    ev = Ev(CITY_CAR, soc=40, target_soc=80)
    hw = charging(PLUGSTREAM_7, ev)
    hw.advance(10 * HOUR)
    assert ev.soc == 80.0
    assert not hw.charging
    # 40 % of 40 kWh stored, 10 % lost in the car's charger
    assert float(hw.energy_wh) == pytest.approx(16_000 / 0.9, rel=0.001)


def test_contactor_needs_a_locked_cable() -> None:
    hw = ChargePointHardware(PLUGSTREAM_7, random.Random(1))
    assert not hw.lock_cable()  # nothing in the socket
    assert hw.plug_in(Ev(CITY_CAR))
    assert not hw.close_contactor()
    assert not hw.contactor_closed
    assert hw.lock_cable()
    assert hw.close_contactor()


def test_cable_stays_locked_while_charging() -> None:
    hw = charging(PLUGSTREAM_7, Ev(CITY_CAR))
    assert not hw.unlock_cable()
    assert not hw.unplug()
    assert hw.cable_locked
    hw.open_contactor()
    assert hw.unlock_cable()
    assert hw.unplug()
    assert hw.ev is None


def test_a_fault_opens_the_contactor_and_stops_energy() -> None:
    hw = charging(PLUGSTREAM_7, Ev(CITY_CAR, soc=10))
    hw.advance(600.0)
    hw.raise_fault("GroundFailure")
    assert not hw.contactor_closed
    before = hw.energy_wh
    hw.advance(1200.0)
    assert hw.energy_wh == before
    assert hw.measurements().power_w == 0.0
    assert not hw.close_contactor()
    hw.clear_fault()
    assert hw.close_contactor()


def test_energy_register_persists_and_restores_exactly() -> None:
    hw = charging(PLUGSTREAM_7, Ev(CITY_CAR, soc=10))
    hw.advance(1234.5)
    saved = str(hw.energy_wh)
    restored = ChargePointHardware(PLUGSTREAM_7, random.Random(2), energy_wh=Decimal(saved))
    assert restored.energy_wh == hw.energy_wh
    assert str(restored.energy_wh) == saved
    with pytest.raises(ValueError):
        ChargePointHardware(PLUGSTREAM_7, random.Random(2), energy_wh=Decimal("-1"))


def test_time_does_not_go_backwards() -> None:
    hw = ChargePointHardware(PLUGSTREAM_7, random.Random(1), now=100.0)
    with pytest.raises(ValueError):
        hw.advance(99.0)


def test_rfid_reader_queues_swipes() -> None:
    hw = ChargePointHardware(PLUGSTREAM_7, random.Random(1))
    hw.swipe("04A1B2C3")
    hw.swipe("04D4E5F6")
    assert [hw.read(), hw.read(), hw.read()] == ["04A1B2C3", "04D4E5F6", None]


def test_voltage_jitters_a_little_and_reproducibly() -> None:
    a = ChargePointHardware(PLUGSTREAM_22, random.Random(5))
    b = ChargePointHardware(PLUGSTREAM_22, random.Random(5))
    for t in range(1, 20):
        a.advance(float(t))
        b.advance(float(t))
        va = a.measurements().voltage_v
        assert va == b.measurements().voltage_v
        assert all(225 < v < 235 for v in va.values())


def test_sampled_values_use_ocpp_names() -> None:
    hw = charging(PLUGSTREAM_22, Ev(CITY_CAR, soc=30))
    values = hw.measurements().sampled_values()
    assert values[0].measurand == ENERGY_REGISTER and values[0].unit == "Wh"
    assert {(v.measurand, v.phase) for v in values} >= {
        ("Power.Active.Import", None),
        ("Current.Import", "L3"),
        ("Voltage", "L1"),
        ("SoC", None),
    }
