"""A 2.0.1 station's smart-charging reports: GetChargingProfiles selects by EVSE and
criteria and is answered with one ReportChargingProfiles per EVSE (K09); an external
limit caps the current and is told to the CSMS (K12), its release too (K13)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from plugstream.station.smart_charging_reports import (
    SmartChargingReports201,
    clear_external_limit,
    matching,
    set_external_limit,
)
from plugstream.station.smartcharging import ChargingProfiles

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def profile(id: int, purpose: str = "TxDefaultProfile", stack_level: int = 0) -> dict[str, Any]:
    return {
        "id": id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [
            {
                "id": 1,
                "startSchedule": "2026-03-01T00:00:00Z",
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}],
            }
        ],
    }


class FakeStation:
    def __init__(self) -> None:
        self.profiles = ChargingProfiles((1, 2))
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.online = True

    def now(self) -> datetime:
        return NOW

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.sent.append((action, payload))
        return {}

    def profiles_changed(self) -> None:
        pass


def station_with_profiles() -> FakeStation:
    st = FakeStation()
    assert st.profiles.set_201(0, profile(1, stack_level=0), active_transaction_id=None) == (
        "Accepted"
    )
    assert st.profiles.set_201(1, profile(2, stack_level=1), active_transaction_id=None) == (
        "Accepted"
    )
    assert st.profiles.set_201(2, profile(3, stack_level=2), active_transaction_id=None) == (
        "Accepted"
    )
    return st


def test_criteria_select_the_profiles() -> None:
    st = station_with_profiles()
    ids = lambda request: [p.id for p in matching(st.profiles, request)]  # noqa: E731
    assert ids({"requestId": 1, "chargingProfile": {}}) == [1, 2, 3]
    assert ids({"requestId": 1, "evseId": 1, "chargingProfile": {}}) == [2]
    assert ids({"requestId": 1, "chargingProfile": {"stackLevel": 2}}) == [3]
    assert ids({"requestId": 1, "chargingProfile": {"chargingProfileId": [1, 3]}}) == [1, 3]
    assert ids({"requestId": 1, "chargingProfile": {"chargingLimitSource": ["EMS"]}}) == []
    purpose = {"chargingProfilePurpose": "TxProfile"}
    assert ids({"requestId": 1, "chargingProfile": purpose}) == []


async def test_one_report_per_evse_with_the_request_id_and_tbc_until_the_last() -> None:
    st = station_with_profiles()
    handlers = SmartChargingReports201()
    handlers.station = st
    request: Any = {"requestId": 42, "chargingProfile": {}}
    assert handlers.get_charging_profiles(request) == {"status": "Accepted"}
    await handlers.get_charging_profiles_done(request)
    assert [(a, p["requestId"], p["evseId"], p["tbc"]) for a, p in st.sent] == [
        ("ReportChargingProfiles", 42, 0, True),
        ("ReportChargingProfiles", 42, 1, True),
        ("ReportChargingProfiles", 42, 2, False),
    ]
    none: Any = {"requestId": 43, "chargingProfile": {"stackLevel": 9}}
    assert handlers.get_charging_profiles(none) == {"status": "NoProfiles"}  # K09.FR.08


async def test_an_external_limit_caps_the_current_and_is_reported_then_released() -> None:
    st = FakeStation()
    assert st.profiles.limit_at(1, NOW, transaction_start=NOW) is None
    assert await set_external_limit(st, 10, evse_id=1, source="SO")
    assert st.profiles.limit_at(1, NOW, transaction_start=NOW) == 10
    assert st.profiles.limit_at(2, NOW, transaction_start=NOW) is None  # another EVSE
    action, payload = st.sent[-1]
    assert action == "NotifyChargingLimit" and payload["evseId"] == 1
    assert payload["chargingLimit"] == {"chargingLimitSource": "SO"}
    assert await clear_external_limit(st, evse_id=1, source="SO")
    assert st.sent[-1] == ("ClearedChargingLimit", {"chargingLimitSource": "SO", "evseId": 1})
    assert st.profiles.limit_at(1, NOW, transaction_start=NOW) is None
    assert not await clear_external_limit(st, evse_id=1)  # nothing left to release


async def test_offline_the_limit_applies_and_the_caller_learns_the_csms_was_not_told() -> None:
    st = FakeStation()
    st.online = False
    assert not await set_external_limit(st, 8)
    assert st.profiles.limit_at(1, NOW, transaction_start=NOW) == 8
    assert st.sent == []
