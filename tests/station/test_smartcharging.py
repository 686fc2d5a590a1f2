"""Smart charging: charging profiles limit the EV's current; GetCompositeSchedule reports it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from plugstream.ocpp import OcppVersion, schemas
from plugstream.station.smartcharging import ChargingProfiles

pytestmark = pytest.mark.unit

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def p16(
    pid: int,
    purpose: str,
    limits: list[tuple[int, float]],
    *,
    stack: int = 0,
    kind: str = "Absolute",
    unit: str = "A",
    start: datetime | None = T0,
    **extra: Any,
) -> dict[str, Any]:
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": v} for s, v in limits],
    }
    if start is not None and kind != "Relative":
        schedule["startSchedule"] = iso(start)
    if "duration" in extra:
        schedule["duration"] = extra.pop("duration")
    return {
        "chargingProfileId": pid,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
        **extra,
    }


def p201(pid: int, purpose: str, limits: list[tuple[int, float]], **kw: Any) -> dict[str, Any]:
    old = p16(pid, purpose, limits, **kw)
    schedule = {"id": pid, **old.pop("chargingSchedule")}
    del old["chargingProfileId"]
    return {"id": pid, **old, "chargingSchedule": [schedule]}


def valid16(payload: dict[str, Any]) -> None:
    assert schemas(OcppVersion.V16).validate("GetCompositeSchedule", "response", payload) is None


def valid201(payload: dict[str, Any]) -> None:
    assert schemas(OcppVersion.V201).validate("GetCompositeSchedule", "response", payload) is None


def limits(payload: dict[str, Any]) -> list[tuple[int, float]]:
    schedule = payload.get("chargingSchedule") or payload["schedule"]
    return [(p["startPeriod"], p["limit"]) for p in schedule["chargingSchedulePeriod"]]


# -- limits ------------------------------------------------------------------


def test_tc_k_01_tx_default_profile_of_16_a_limits_the_ev() -> None:
    store = ChargingProfiles([1, 2])
    assert (
        store.set_16(1, p16(1, "TxDefaultProfile", [(0, 16)]), transaction_id_active=None)
        == "Accepted"
    )
    assert store.limit_at(1, at(60), transaction_start=at(30), voltage=230, phases=3) == 16
    assert store.limit_at(2, at(60), transaction_start=None, voltage=230, phases=3) is None


def test_tc_k_10_tx_default_profile_on_0_applies_to_all_evses_and_a_specific_one_overrules_it() -> (
    None
):
    store = ChargingProfiles([1, 2])
    assert (
        store.set_201(0, p201(1, "TxDefaultProfile", [(0, 16)]), active_transaction_id=None)
        == "Accepted"
    )
    assert (
        store.set_201(
            2, p201(2, "TxDefaultProfile", [(0, 10)], stack=1), active_transaction_id=None
        )
        == "Accepted"
    )
    assert store.limit_at(1, at(1), transaction_start=None) == 16
    assert store.limit_at(2, at(1), transaction_start=None) == 10


def test_tx_profile_overrides_tx_default_during_the_transaction() -> None:
    store = ChargingProfiles([1])
    store.set_16(1, p16(1, "TxDefaultProfile", [(0, 16)]), transaction_id_active=None)
    assert (
        store.set_16(1, p16(2, "TxProfile", [(0, 20)], stack=0), transaction_id_active=7)
        == "Accepted"
    )
    assert store.limit_at(1, at(10), transaction_start=at(0)) == 20
    assert store.limit_at(1, at(10), transaction_start=None) == 16
    store.end_transaction(1)
    assert store.limit_at(1, at(10), transaction_start=at(0)) == 16


def test_tc_k_03_charge_point_max_profile_caps_both() -> None:
    store = ChargingProfiles([1])
    assert (
        store.set_16(0, p16(1, "ChargePointMaxProfile", [(0, 12)]), transaction_id_active=None)
        == "Accepted"
    )
    store.set_16(1, p16(2, "TxDefaultProfile", [(0, 16)]), transaction_id_active=None)
    assert store.limit_at(1, at(1), transaction_start=None) == 12
    store.set_16(1, p16(3, "TxProfile", [(0, 8)]), transaction_id_active=1)
    assert store.limit_at(1, at(1), transaction_start=at(0)) == 8
    assert (
        store.set_16(1, p16(4, "ChargePointMaxProfile", [(0, 12)]), transaction_id_active=None)
        == "Rejected"
    )


def test_stack_level_precedence_and_fallback_when_the_higher_one_ends() -> None:
    store = ChargingProfiles([1])
    store.set_16(1, p16(1, "TxDefaultProfile", [(0, 16)], stack=0), transaction_id_active=None)
    store.set_16(
        1, p16(2, "TxDefaultProfile", [(0, 6)], stack=3, duration=600), transaction_id_active=None
    )
    assert store.limit_at(1, at(100), transaction_start=None) == 6
    assert store.limit_at(1, at(600), transaction_start=None) == 16


def test_tc_k_19_recurring_daily_schedule_wraps_at_midnight() -> None:
    store = ChargingProfiles([1])
    midnight = datetime(2024, 3, 1, tzinfo=UTC)
    profile = p16(
        1,
        "TxDefaultProfile",
        [(0, 32), (8 * 3600, 16), (20 * 3600, 8)],
        kind="Recurring",
        start=midnight,
    )
    profile["recurrencyKind"] = "Daily"
    assert store.set_16(1, profile, transaction_id_active=None) == "Accepted"
    assert (
        store.limit_at(1, midnight + timedelta(hours=23, minutes=59), transaction_start=None) == 8
    )
    assert store.limit_at(1, midnight + timedelta(days=1, minutes=1), transaction_start=None) == 32
    assert store.limit_at(1, midnight + timedelta(days=5, hours=9), transaction_start=None) == 16
    composite = store.composite_16(1, 6 * 3600, "A", midnight + timedelta(hours=22))
    valid16(composite)
    assert limits(composite) == [(0, 8), (2 * 3600, 32)]


def test_recurring_weekly() -> None:
    store = ChargingProfiles([1])
    profile = p16(1, "TxDefaultProfile", [(0, 10), (86400, 20)], kind="Recurring", start=T0)
    profile["recurrencyKind"] = "Weekly"
    store.set_16(1, profile, transaction_id_active=None)
    assert store.limit_at(1, T0 + timedelta(days=7, hours=1), transaction_start=None) == 10
    assert store.limit_at(1, T0 + timedelta(days=9), transaction_start=None) == 20


def test_relative_profile_starts_at_the_transaction_start() -> None:
    store = ChargingProfiles([1])
    profile = p201(1, "TxDefaultProfile", [(0, 6), (600, 16)], kind="Relative")
    assert store.set_201(1, profile, active_transaction_id=None) == "Accepted"
    started = at(1000)
    assert store.limit_at(1, at(1500), transaction_start=started) == 6
    assert store.limit_at(1, at(1700), transaction_start=started) == 16


def test_watts_are_converted_to_amps_with_voltage_and_phases() -> None:
    store = ChargingProfiles([1])
    store.set_16(1, p16(1, "TxDefaultProfile", [(0, 11040)], unit="W"), transaction_id_active=None)
    assert store.limit_at(1, at(1), transaction_start=None, voltage=230, phases=3) == pytest.approx(
        16
    )
    assert store.limit_at(1, at(1), transaction_start=None, voltage=230, phases=1) == pytest.approx(
        48
    )
    composite = store.composite_16(1, 60, "A", T0, voltage=230, phases=3)
    valid16(composite)
    assert limits(composite) == [(0, 16)]


def test_tc_k_21_22_valid_from_and_valid_to() -> None:
    store = ChargingProfiles([1])
    profile = p16(1, "TxDefaultProfile", [(0, 10)], validFrom=iso(at(100)), validTo=iso(at(200)))
    store.set_16(1, profile, transaction_id_active=None)
    assert store.limit_at(1, at(99), transaction_start=None) is None
    assert store.limit_at(1, at(100), transaction_start=None) == 10
    assert store.limit_at(1, at(200), transaction_start=None) is None


def test_tc_k_23_future_start_schedule() -> None:
    store = ChargingProfiles([1])
    store.set_201(
        1, p201(1, "TxDefaultProfile", [(0, 10)], start=at(300)), active_transaction_id=None
    )
    assert store.limit_at(1, at(299), transaction_start=None) is None
    assert store.limit_at(1, at(300), transaction_start=None) == 10


# -- SetChargingProfile acceptance -------------------------------------------


def test_tc_k_02_tx_profile_without_a_transaction_is_rejected() -> None:
    store = ChargingProfiles([1])
    assert store.set_16(1, p16(1, "TxProfile", [(0, 10)]), transaction_id_active=None) == "Rejected"
    assert (
        store.set_201(1, p201(1, "TxProfile", [(0, 10)]), active_transaction_id=None) == "Rejected"
    )
    assert len(store) == 0


def test_tx_profile_for_another_transaction_is_rejected() -> None:
    store = ChargingProfiles([1])
    profile = p201(1, "TxProfile", [(0, 10)], transactionId="abc")
    assert store.set_201(1, profile, active_transaction_id="xyz") == "Rejected"
    assert store.set_201(1, profile, active_transaction_id="abc") == "Accepted"


def test_tc_k_11_tx_profile_on_evse_0_is_rejected() -> None:
    store = ChargingProfiles([1])
    assert (
        store.set_201(0, p201(1, "TxProfile", [(0, 10)]), active_transaction_id="t") == "Rejected"
    )


def test_tc_k_12_unsupported_rate_unit_is_rejected() -> None:
    store = ChargingProfiles([1], units=["A"])
    assert (
        store.set_201(
            1, p201(1, "TxDefaultProfile", [(0, 10)], unit="W"), active_transaction_id=None
        )
        == "Rejected"
    )


def test_tc_k_14_unknown_evse_is_rejected() -> None:
    store = ChargingProfiles([1])
    assert (
        store.set_201(9, p201(1, "TxDefaultProfile", [(0, 10)]), active_transaction_id=None)
        == "Rejected"
    )


def test_smart_charging_not_supported_16() -> None:
    store = ChargingProfiles([1], supported=False)
    assert (
        store.set_16(1, p16(1, "TxDefaultProfile", [(0, 10)]), transaction_id_active=None)
        == "NotSupported"
    )


def test_201_rules_on_start_schedule_kind_and_duplicates() -> None:
    store = ChargingProfiles([1])
    relative_max = p201(1, "ChargingStationMaxProfile", [(0, 10)], kind="Relative")
    assert store.set_201(0, relative_max, active_transaction_id=None) == "Rejected"  # K01.FR.38
    assert (
        store.set_201(
            1, p201(2, "TxDefaultProfile", [(0, 1)], start=None), active_transaction_id=None
        )
        == "Rejected"
    )
    external = p201(3, "ChargingStationExternalConstraints", [(0, 10)])
    assert store.set_201(0, external, active_transaction_id=None) == "Rejected"  # K01.FR.22
    assert (
        store.set_201(1, p201(4, "TxDefaultProfile", [(0, 10)]), active_transaction_id=None)
        == "Accepted"
    )
    # K01.FR.06 same stackLevel/purpose/EVSE, other id; K01.FR.52 same stackLevel on EVSE 0.
    assert (
        store.set_201(1, p201(5, "TxDefaultProfile", [(0, 8)]), active_transaction_id=None)
        == "Rejected"
    )
    assert (
        store.set_201(0, p201(6, "TxDefaultProfile", [(0, 8)]), active_transaction_id=None)
        == "Rejected"
    )


def test_tc_k_04_same_id_replaces() -> None:
    store = ChargingProfiles([1])
    store.set_201(1, p201(1, "TxDefaultProfile", [(0, 10)]), active_transaction_id=None)
    assert (
        store.set_201(1, p201(1, "TxDefaultProfile", [(0, 14)]), active_transaction_id=None)
        == "Accepted"
    )
    assert len(store) == 1
    assert store.limit_at(1, at(1), transaction_start=None) == 14


def test_16_same_stack_level_and_purpose_replaces() -> None:
    store = ChargingProfiles([1])
    store.set_16(1, p16(1, "TxDefaultProfile", [(0, 10)]), transaction_id_active=None)
    store.set_16(1, p16(2, "TxDefaultProfile", [(0, 12)]), transaction_id_active=None)
    assert [p.id for p in store.profiles] == [2]


def test_max_profiles_installed() -> None:
    store = ChargingProfiles([1], max_profiles=1)
    assert (
        store.set_16(1, p16(1, "TxDefaultProfile", [(0, 10)]), transaction_id_active=None)
        == "Accepted"
    )
    assert (
        store.set_16(1, p16(2, "TxDefaultProfile", [(0, 10)], stack=1), transaction_id_active=None)
        == "Rejected"
    )


# -- ClearChargingProfile ----------------------------------------------------


def test_tc_k_05_clear_by_id() -> None:
    store = ChargingProfiles([1])
    store.set_201(1, p201(1, "TxDefaultProfile", [(0, 10)]), active_transaction_id=None)
    assert store.clear_201({"chargingProfileId": 1}) == "Accepted"
    assert store.clear_201({"chargingProfileId": 1}) == "Unknown"
    store.set_16(1, p16(2, "TxDefaultProfile", [(0, 10)]), transaction_id_active=None)
    assert store.clear_16({"id": 2}) == "Accepted"
    assert len(store) == 0


def test_tc_k_06_07_24_clear_by_criteria() -> None:
    store = ChargingProfiles([1, 2])
    store.set_201(1, p201(1, "TxDefaultProfile", [(0, 10)], stack=1), active_transaction_id=None)
    store.set_201(2, p201(2, "TxDefaultProfile", [(0, 10)], stack=1), active_transaction_id=None)
    store.set_201(
        0, p201(3, "ChargingStationMaxProfile", [(0, 10)], stack=1), active_transaction_id=None
    )
    criteria = {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 2}
    assert store.clear_201({"chargingProfileCriteria": criteria}) == "Unknown"  # TC_K_07
    criteria = {"evseId": 1, "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 1}
    assert store.clear_201({"chargingProfileCriteria": criteria}) == "Accepted"  # TC_K_06
    assert [p.id for p in store.profiles] == [2, 3]
    assert store.clear_16({"chargingProfilePurpose": "ChargePointMaxProfile"}) == "Accepted"
    assert store.clear_16({}) == "Accepted"  # everything
    assert store.clear_16({}) == "Unknown"  # TC_K_08


# -- persistence -------------------------------------------------------------


def test_tc_k_13_profiles_persist_through_json() -> None:
    store = ChargingProfiles([1])
    store.set_16(0, p16(1, "ChargePointMaxProfile", [(0, 20)]), transaction_id_active=None)
    store.set_16(1, p16(2, "TxProfile", [(0, 10)]), transaction_id_active=5)
    again = ChargingProfiles.from_json(store.to_json(), [1])
    assert again.profiles == store.profiles
    assert again.limit_at(1, at(1), transaction_start=at(0)) == 10


# -- GetCompositeSchedule ----------------------------------------------------


def test_tc_k_39_no_profile_reports_the_hardware_limit() -> None:
    store = ChargingProfiles([1], max_current=32)
    payload = store.composite_201(0, 300, "A", T0)
    valid201(payload)
    assert payload["schedule"]["evseId"] == 0
    assert payload["schedule"]["duration"] == 300
    assert limits(payload) == [(0, 32)]


def test_tc_k_40_stacking_charging_profiles() -> None:
    store = ChargingProfiles([1])
    common = {"validFrom": iso(T0), "validTo": iso(at(401))}
    one = p201(
        1, "TxDefaultProfile", [(0, 6), (100, 8), (200, 10)], stack=0, duration=400, **common
    )
    two = p201(2, "TxDefaultProfile", [(0, 7), (100, 9)], stack=1, duration=150, **common)
    assert store.set_201(1, one, active_transaction_id=None) == "Accepted"
    assert store.set_201(1, two, active_transaction_id=None) == "Accepted"
    payload = store.composite_201(1, 350, "A", T0)
    valid201(payload)
    assert limits(payload) == [(0, 7), (100, 9), (150, 8), (200, 10)]


def test_tc_k_41_combining_purposes() -> None:
    store = ChargingProfiles([1])
    store.set_201(
        0, p201(1, "ChargingStationMaxProfile", [(0, 30), (200, 10)]), active_transaction_id=None
    )
    store.set_201(1, p201(2, "TxDefaultProfile", [(0, 20), (100, 25)]), active_transaction_id=None)
    store.set_201(1, p201(3, "TxProfile", [(0, 16)], duration=50), active_transaction_id="t1")
    payload = store.composite_201(1, 300, "A", T0, transaction_start=T0)
    valid201(payload)
    assert limits(payload) == [(0, 16), (50, 20), (100, 25), (200, 10)]


def test_tc_k_42_47_composite_rejections() -> None:
    store = ChargingProfiles([1], units=["A"])
    for payload in (store.composite_201(1, 60, "W", T0), store.composite_201(7, 60, "A", T0)):
        valid201(payload)
        assert payload["status"] == "Rejected"
    for payload16 in (store.composite_16(1, 60, "W", T0), store.composite_16(7, 60, "A", T0)):
        valid16(payload16)
        assert payload16["status"] == "Rejected"


def test_composite_16_in_watts_obeys_multiple_of_tenth() -> None:
    store = ChargingProfiles([1])
    store.set_16(1, p16(1, "TxDefaultProfile", [(0, 7.3), (60, 13.7)]), transaction_id_active=None)
    payload = store.composite_16(1, 120, "W", T0, voltage=231, phases=3)
    valid16(payload)
    assert payload["connectorId"] == 1
    assert limits(payload) == [(0, 5058.9), (60, 9494.1)]
    payload = store.composite_16(1, 120, "A", T0, voltage=230, phases=3)
    valid16(payload)
    assert limits(payload) == [(0, 7.3), (60, 13.7)]


def test_composite_of_a_relative_tx_profile_16() -> None:
    store = ChargingProfiles([1])
    store.set_16(
        1, p16(1, "TxProfile", [(0, 10), (300, 20)], kind="Relative"), transaction_id_active=3
    )
    payload = store.composite_16(1, 400, None, at(100), transaction_start=T0)
    valid16(payload)
    assert limits(payload) == [(0, 10), (200, 20)]


def test_next_change_is_the_next_period_boundary() -> None:
    """A station sleeps until the limit can change: the next startPeriod or validTo."""
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    store = ChargingProfiles((1,), max_current=32.0)
    profile = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "validTo": "2026-03-01T14:00:00Z",
        "chargingSchedule": {
            "startSchedule": "2026-03-01T12:00:00Z",
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 16.0},
                {"startPeriod": 1800, "limit": 8.0},
            ],
        },
    }
    assert store.set_16(1, profile, transaction_id_active=None) == "Accepted"
    assert store.next_change(1, start) == start + timedelta(minutes=30)
    assert store.next_change(1, start + timedelta(minutes=30)) == start + timedelta(hours=2)
    assert store.next_change(1, start + timedelta(hours=3)) is None
    assert ChargingProfiles((1,)).next_change(1, start) is None
