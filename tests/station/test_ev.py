"""The simulated car: full current, a taper near full, and a stop at its target."""

from __future__ import annotations

import random

import pytest

from plugstream.station.ev import (
    CITY_CAR,
    FAMILY_CAR,
    PRESETS,
    TAPER_START_SOC,
    Ev,
    EvModel,
    random_ev,
)

pytestmark = pytest.mark.unit


def test_full_current_until_the_taper_then_less_and_less() -> None:
    ev = Ev(CITY_CAR, soc=20)
    assert ev.requested_current() == 32.0
    assert ev.requested_current(TAPER_START_SOC) == 32.0
    assert 0 < ev.requested_current(99.0) < ev.requested_current(90.0) < 32.0
    assert ev.requested_current(100.0) == 0.0


def test_no_current_at_the_target_soc() -> None:
    ev = Ev(FAMILY_CAR, soc=80, target_soc=80)
    assert ev.done
    assert ev.requested_current() == 0.0


def test_charge_raises_soc_by_stored_energy() -> None:
    ev = Ev(CITY_CAR, soc=50)
    ev.charge(ev.energy_to_target_wh() / 2)  # half way from 50 % to 100 %
    assert ev.soc == pytest.approx(75.0)
    ev.charge(1e9)
    assert ev.soc == 100.0


def test_presets_are_realistic() -> None:
    assert (CITY_CAR.capacity_kwh, CITY_CAR.phases, CITY_CAR.max_current_a) == (40.0, 1, 32.0)
    assert (FAMILY_CAR.capacity_kwh, FAMILY_CAR.phases, FAMILY_CAR.max_current_a) == (75.0, 3, 16.0)
    with pytest.raises(ValueError):
        EvModel("two-phase", 50.0, 16.0, phases=2)
    with pytest.raises(ValueError):
        Ev(CITY_CAR, soc=120)


def test_random_ev_is_reproducible_and_needs_charge() -> None:
    cars = [random_ev(random.Random(7)) for _ in range(2)]
    assert repr(cars[0]) == repr(cars[1])
    for ev in (random_ev(random.Random(seed)) for seed in range(50)):
        assert ev.model in PRESETS
        assert ev.soc < ev.target_soc
