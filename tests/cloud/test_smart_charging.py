"""Smart charging (K) in PlugStream Cloud: its storage (SQLite, and PostgreSQL with
PLUGSTREAM_TEST_POSTGRES), the OCTT CSMS test cases of K played by a 2.0.1 station over a
raw WebSocket against a real cloud on loopback, and the REST resources."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from plugstream.cloud.smart_charging.division import redivide
from plugstream.cloud.smart_charging.schedules import cloud_profile_id
from plugstream.cloud.storage import Store
from plugstream.cloud.storage.smart_charging import SiteConflict
from tests.cloud.raw_station201 import Answer, RawStation201, station201
from tests.support import Cloud, until

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


# -- storage ----------------------------------------------------------------------------


@pytest.mark.unit
async def test_storage_keeps_what_was_set_replaces_the_same_id_and_forgets_what_was_cleared(
    store: Store,
) -> None:
    repo = store.smart_charging
    profile = {"id": 7, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile"}
    await repo.record_set("CS1", 1, profile, status="Rejected", source="operator", at=T0)
    await repo.record_set("CS1", 1, profile, status="Accepted", source="operator", at=T0)
    other = {"id": 8, "stackLevel": 1, "chargingProfilePurpose": "TxProfile"}
    await repo.record_set(
        "CS1", 2, {**other, "transactionId": "T"}, status="Accepted", source="site", at=T0
    )
    kept = await repo.profiles_set("CS1")
    assert [(p.charging_profile_id, p.status, p.transaction_id) for p in kept] == [
        (7, "Accepted", None),
        (8, "Accepted", "T"),
    ]
    assert (await repo.tx_profile("CS1", 2)) is not None
    assert await repo.forget_set("CS1", purpose="TxProfile") == 1
    assert [p.charging_profile_id for p in await repo.profiles_set("CS1")] == [7]
    assert await repo.forget_set("CS1", charging_profile_id=7) == 1
    assert await repo.profiles_set("CS1") == []


@pytest.mark.unit
async def test_storage_gives_each_request_a_new_id_and_completes_it_with_the_last_report(
    store: Store,
) -> None:
    repo = store.smart_charging
    first = await repo.new_request("CS1", {}, at=T0)
    second = await repo.new_request("CS1", {"evseId": 1}, at=T0)
    assert (first, second) == (1, 2)
    assert await repo.new_request("CS2", {}, at=T0) == 1  # per station
    p = {"id": 3, "stackLevel": 0}
    await repo.add_report(
        "CS1", request_id=2, evse_id=1, charging_limit_source="CSO", profiles=[p], tbc=True, at=T0
    )
    assert await repo.request_status("CS1", 2) == "Reporting"
    await repo.add_report(
        "CS1",
        request_id=2,
        evse_id=2,
        charging_limit_source="EMS",
        profiles=[{**p, "id": 4}],
        tbc=False,
        at=T0,
    )
    assert await repo.request_status("CS1", 2) == "Complete"
    reported = await repo.reported("CS1")
    assert [(r.evse_id, r.profile["id"], r.charging_limit_source) for r in reported] == [
        (1, 3, "CSO"),
        (2, 4, "EMS"),
    ]


@pytest.mark.unit
async def test_storage_clears_a_limit_and_keeps_a_release_it_never_heard_of(store: Store) -> None:
    repo = store.smart_charging
    await repo.add_limit(
        "CS1",
        evse_id=1,
        charging_limit_source="EMS",
        is_grid_critical=True,
        schedules=[{"id": 1}],
        at=T0,
    )
    assert await repo.clear_limit("CS1", evse_id=1, charging_limit_source="EMS", at=T0) == 1
    assert await repo.clear_limit("CS1", evse_id=None, charging_limit_source="SO", at=T0) == 0
    limits = await repo.limits("CS1")
    assert [(x.charging_limit_source, x.cleared_at is not None) for x in limits] == [
        ("SO", True),
        ("EMS", True),
    ]


@pytest.mark.unit
async def test_storage_keeps_sites_and_a_station_in_one_site_only(store: Store) -> None:
    repo = store.smart_charging
    site = await repo.create_site(
        "Depot",
        max_current_a=Decimal("32.5"),
        phases=3,
        stations={"CS1": Decimal(32), "CS2": Decimal(16)},
        at=T0,
    )
    assert site.stations == {"CS1": Decimal(32), "CS2": Decimal(16)}
    assert site.max_current_a == Decimal("32.5")
    with pytest.raises(SiteConflict, match="CS1"):
        await repo.create_site(
            "Other", max_current_a=Decimal(10), phases=1, stations={"CS1": Decimal(32)}, at=T0
        )
    assert [s.name for s in await repo.sites()] == ["Depot"]  # the refused one left nothing
    updated = await repo.update_site(
        site.site_id,
        name="Depot 2",
        max_current_a=Decimal(63),
        phases=1,
        stations={"CS3": Decimal(32)},
    )
    assert updated is not None and list(updated.stations) == ["CS3"]
    assert await repo.site_of("CS1") is None
    found = await repo.site_of("CS3")
    assert found is not None and found.name == "Depot 2"
    assert await repo.delete_site(site.site_id)
    assert await repo.site(site.site_id) is None
    assert not await repo.delete_site(site.site_id)


# -- a 2.0.1 station played over a raw WebSocket (the OCTT's side) -----------------------


#: what the OCTT's station answers the CSMS's K requests besides {"status": "Accepted"}
K_ANSWERS: dict[str, Answer] = {
    "GetCompositeSchedule": lambda p: {
        "status": "Accepted",
        "schedule": {
            "evseId": p["evseId"],
            "duration": p["duration"],
            "scheduleStart": "2026-03-01T08:00:00.000Z",
            "chargingRateUnit": p.get("chargingRateUnit", "A"),
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}],
        },
    },
}


@pytest.fixture
async def cs(cloud: Cloud) -> AsyncIterator[RawStation201]:
    """The OCTT's station CS1, booted and answering K's requests (for conftest's ``cs``)."""
    async with octt(cloud, "CS1") as station:
        yield station


def octt(cloud: Cloud, station_id: str) -> contextlib.AbstractAsyncContextManager[RawStation201]:
    """The OCTT's station, booted, answering the K requests."""
    return station201(cloud, station_id, K_ANSWERS)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def start_transaction(cs: RawStation201, transaction_id: str, evse_id: int = 1) -> None:
    await cs.call(
        "TransactionEvent",
        {
            "eventType": "Started",
            "timestamp": now_iso(),
            "triggerReason": "CablePluggedIn",
            "seqNo": 0,
            "transactionInfo": {"transactionId": transaction_id, "chargingState": "EVConnected"},
            "evse": {"id": evse_id, "connectorId": 1},
        },
    )


async def transaction_event(
    cs: RawStation201,
    transaction_id: str,
    seq_no: int,
    trigger: str,
    event_type: str = "Updated",
    **info: Any,
) -> None:
    await cs.call(
        "TransactionEvent",
        {
            "eventType": event_type,
            "timestamp": now_iso(),
            "triggerReason": trigger,
            "seqNo": seq_no,
            "transactionInfo": {"transactionId": transaction_id, **info},
        },
    )


AC_NEEDS = {
    "requestedEnergyTransfer": "AC_three_phase",
    "acChargingParameters": {
        "energyAmount": 20000,
        "evMinCurrent": 6,
        "evMaxCurrent": 20,
        "evMaxVoltage": 400,
    },
}


def schedule(*periods: tuple[int, float], unit: str = "A") -> dict[str, Any]:
    return {
        "id": 1,
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": x} for s, x in periods],
    }


@pytest.fixture
async def cloud(cloud: Cloud) -> Cloud:
    """tests/cloud/conftest.py's, with CS1..CS3 registered beforehand (a site names them)."""
    for station_id in ("CS1", "CS2", "CS3"):
        await cloud.store.stations.register(station_id, security_profile=0)
    return cloud


# -- K09: GetChargingProfiles / ReportChargingProfiles ----------------------------------

PROFILE = {
    "id": 11,
    "stackLevel": 2,
    "chargingProfilePurpose": "TxDefaultProfile",
    "chargingProfileKind": "Absolute",
    "chargingSchedule": [
        {
            "id": 1,
            "startSchedule": "2026-03-01T00:00:00.000Z",
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}],
        }
    ],
}


async def _refresh_and_report(
    cs: RawStation201,
    api: httpx.AsyncClient,
    body: dict[str, Any],
    *,
    evses: tuple[int, ...] = (1,),
) -> dict[str, Any]:
    """Steps 1-4 of TC_K_29..35: the operator's refresh sends GetChargingProfiles, the
    station reports with the requestId it got, the CSMS answers each report and keeps it."""
    answer = await api.post("/stations/CS1/charging-profiles/refresh", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "Accepted"
    request = cs.calls("GetChargingProfiles")[-1]
    assert request["requestId"] == answer.json()["requestId"]
    for n, evse_id in enumerate(evses):
        reply = await cs.call(
            "ReportChargingProfiles",
            {
                "requestId": request["requestId"],
                "chargingLimitSource": "CSO",
                "evseId": evse_id,
                "chargingProfile": [{**PROFILE, "id": 11 + n}],
                "tbc": n < len(evses) - 1,
            },
        )
        assert reply == {}
    profiles = (await api.get("/stations/CS1/charging-profiles")).json()
    assert [r["evseId"] for r in profiles["reported"]] == list(evses)
    assert {r["requestId"] for r in profiles["reported"]} == {request["requestId"]}
    return request


@pytest.mark.socket
async def test_tc_k_29_csms_get_charging_profile_evse_id_0(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    await start_transaction(cs, "TX29")  # Charging State: EnergyTransferStarted
    body = {"evseId": 0, "chargingProfile": {"chargingProfilePurpose": "TxDefaultProfile"}}
    request = await _refresh_and_report(cs, api, body, evses=(0,))
    assert request["evseId"] == 0
    assert request["chargingProfile"] == {"chargingProfilePurpose": "TxDefaultProfile"}


@pytest.mark.socket
async def test_tc_k_30_csms_get_charging_profile_evse_id_above_0(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    request = await _refresh_and_report(cs, api, {"evseId": 1})
    assert request["evseId"] == 1


@pytest.mark.socket
async def test_tc_k_31_csms_get_charging_profile_no_evse_id(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    request = await _refresh_and_report(cs, api, {}, evses=(0, 1, 2))  # tbc true till last
    assert "evseId" not in request
    status = await cloud.store.smart_charging.request_status("CS1", request["requestId"])
    assert status == "Complete"


@pytest.mark.socket
async def test_tc_k_32_csms_get_charging_profile_charging_profile_id(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    body = {"chargingProfile": {"chargingProfileId": [11]}}
    request = await _refresh_and_report(cs, api, body)
    assert request["chargingProfile"]["chargingProfileId"] == [11]
    assert isinstance(request["requestId"], int)


@pytest.mark.socket
async def test_tc_k_33_csms_get_charging_profile_evse_id_and_stack_level(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    body = {"evseId": 1, "chargingProfile": {"stackLevel": 2}}
    request = await _refresh_and_report(cs, api, body)
    assert (request["evseId"], request["chargingProfile"]["stackLevel"]) == (1, 2)


@pytest.mark.socket
async def test_tc_k_34_csms_get_charging_profile_evse_id_and_charging_limit_source(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    body = {"evseId": 1, "chargingProfile": {"chargingLimitSource": ["CSO"]}}
    request = await _refresh_and_report(cs, api, body)
    assert request["chargingProfile"]["chargingLimitSource"] == ["CSO"]


@pytest.mark.socket
async def test_tc_k_35_csms_get_charging_profile_evse_id_and_purpose(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    body = {"evseId": 1, "chargingProfile": {"chargingProfilePurpose": "TxProfile"}}
    request = await _refresh_and_report(cs, api, body)
    assert request["chargingProfile"]["chargingProfilePurpose"] == "TxProfile"


@pytest.mark.socket
async def test_tc_k_36_csms_get_charging_profile_evse_id_purpose_and_stack_level(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    criteria = {"chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 2}
    request = await _refresh_and_report(cs, api, {"evseId": 1, "chargingProfile": criteria})
    assert request["evseId"] == 1 and request["chargingProfile"] == criteria


@pytest.mark.socket
async def test_a_report_no_one_asked_for_is_kept_and_answered(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    reply = await cs.call(
        "ReportChargingProfiles",
        {
            "requestId": 999,
            "chargingLimitSource": "EMS",
            "evseId": 1,
            "chargingProfile": [PROFILE],
        },
    )
    assert reply == {}
    reported = (await api.get("/stations/CS1/charging-profiles")).json()["reported"]
    assert [(r["requestId"], r["chargingLimitSource"]) for r in reported] == [(999, "EMS")]


# -- K10: ClearChargingProfile ----------------------------------------------------------


@pytest.mark.socket
async def test_tc_k_05_csms_clear_charging_profile_with_charging_profile_id(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    await _refresh_and_report(cs, api, {})  # Memory State: a reported profile
    set_ = await api.post(
        "/stations/CS1/charging-profiles", json={"evseId": 1, "chargingProfile": PROFILE}
    )
    assert set_.json() == {"status": "Accepted", "statusInfo": None}
    cleared = await api.delete("/stations/CS1/charging-profiles", params={"chargingProfileId": 11})
    assert cleared.status_code == 200 and cleared.json()["status"] == "Accepted"
    assert cs.calls("ClearChargingProfile") == [{"chargingProfileId": 11}]  # criteria omitted
    assert (await api.get("/stations/CS1/charging-profiles")).json()["set"] == []


# -- K12 / K13: external limits -----------------------------------------------------------


@pytest.mark.socket
async def test_tc_k_48_csms_notify_charging_limit_without_schedule_is_kept(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    assert (
        await cs.call(
            "NotifyChargingLimit",
            {
                "chargingLimit": {"chargingLimitSource": "EMS", "isGridCritical": True},
            },
        )
        == {}
    )
    limits = (await api.get("/stations/CS1/charging-limits")).json()
    assert limits[0]["chargingLimitSource"] == "EMS" and limits[0]["isGridCritical"]
    assert limits[0]["clearedAt"] is None


@pytest.mark.socket
async def test_tc_k_52_csms_notify_charging_limit_with_schedule_is_kept(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    limit = {**schedule((0, 10)), "startSchedule": "2026-03-01T08:00:00.000Z", "duration": 3600}
    assert (
        await cs.call(
            "NotifyChargingLimit",
            {
                "chargingLimit": {"chargingLimitSource": "EMS"},
                "evseId": 1,
                "chargingSchedule": [limit],
            },
        )
        == {}
    )
    limits = (await api.get("/stations/CS1/charging-limits")).json()
    assert limits[0]["evseId"] == 1 and limits[0]["chargingSchedule"] == [limit]


@pytest.mark.socket
async def test_tc_k_50_csms_cleared_charging_limit_without_transaction(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    assert await cs.call("ClearedChargingLimit", {"chargingLimitSource": "EMS"}) == {}
    limits = (await api.get("/stations/CS1/charging-limits")).json()
    assert [(x["chargingLimitSource"], x["clearedAt"] is not None) for x in limits] == [
        ("EMS", True)
    ]
    await cs.call("NotifyChargingLimit", {"chargingLimit": {"chargingLimitSource": "EMS"}})
    assert await cs.call("ClearedChargingLimit", {"chargingLimitSource": "EMS"}) == {}
    limits = (await api.get("/stations/CS1/charging-limits")).json()
    assert len(limits) == 2 and all(x["clearedAt"] is not None for x in limits)


@pytest.mark.socket
async def test_tc_k_51_csms_cleared_charging_limit_with_ongoing_transaction(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    await start_transaction(cs, "TX51")
    await cs.call(
        "NotifyChargingLimit",
        {
            "chargingLimit": {"chargingLimitSource": "SO"},
            "evseId": 1,
            "chargingSchedule": [schedule((0, 8))],
        },
    )
    assert await cs.call("ClearedChargingLimit", {"chargingLimitSource": "SO", "evseId": 1}) == {}
    await transaction_event(cs, "TX51", 1, "ChargingRateChanged")
    limits = (await api.get("/stations/CS1/charging-limits")).json()
    assert [(x["evseId"], x["clearedAt"] is not None) for x in limits] == [(1, True)]


# -- K15-K17: ISO 15118 charging needs and schedules ------------------------------------


async def _iso15118_smart_charging(
    cloud: Cloud, cs: RawStation201, transaction_id: str
) -> dict[str, Any]:
    """Reusable state ISO15118SmartCharging: the needs are Accepted and the CSMS sends a
    TxProfile for the transaction with no more periods than maxScheduleTuples (K15.FR.07),
    which it keeps once the station has accepted it (the EV's schedule is checked against
    what it kept: the state is not reached before)."""
    before = len(cs.calls("SetChargingProfile"))
    answer = await cs.call(
        "NotifyEVChargingNeeds", {"evseId": 1, "maxScheduleTuples": 3, "chargingNeeds": AC_NEEDS}
    )
    assert answer == {"status": "Accepted"}
    await until(lambda: len(cs.calls("SetChargingProfile")) > before, "SetChargingProfile")
    request = cs.calls("SetChargingProfile")[-1]
    profile = request["chargingProfile"]
    assert request["evseId"] == 1
    assert profile["chargingProfilePurpose"] == "TxProfile"
    assert profile["transactionId"] == transaction_id
    assert len(profile["chargingSchedule"]) <= 3
    assert all(len(s["chargingSchedulePeriod"]) <= 3 for s in profile["chargingSchedule"])

    async def kept() -> bool:
        stored = await cloud.store.smart_charging.tx_profile("CS1", 1)
        return stored is not None and stored.profile == profile

    await until(kept, "the TxProfile kept as Accepted")
    return request


async def _ev_schedule(cs: RawStation201, charging_schedule: dict[str, Any]) -> dict[str, Any]:
    """The EV's schedule for EVSE 1 (NotifyEVChargingSchedule, now): the CSMS's answer."""
    return await cs.call(
        "NotifyEVChargingSchedule",
        {"timeBase": now_iso(), "evseId": 1, "chargingSchedule": charging_schedule},
    )


async def _operator_tx_profile(
    api: httpx.AsyncClient, profile_id: int, transaction_id: str
) -> None:
    """The operator sets a relative TxProfile of 10 A for the transaction on EVSE 1, and
    the station accepts it (the renegotiation the CSMS starts, K16)."""
    tx_profile = {
        "id": profile_id,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "transactionId": transaction_id,
        "chargingSchedule": [schedule((0, 10))],
    }
    answer = await api.post(
        "/stations/CS1/charging-profiles", json={"evseId": 1, "chargingProfile": tx_profile}
    )
    assert answer.json()["status"] == "Accepted"


@pytest.mark.socket
async def test_tc_k_53_csms_load_leveling_based_on_high_level_communication(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    await start_transaction(cs, "TX53")
    request = await _iso15118_smart_charging(cloud, cs, "TX53")
    sent = request["chargingProfile"]["chargingSchedule"][0]
    assert sent["chargingSchedulePeriod"][0]["limit"] == 20  # the EV's max, within 32 A
    answer = await _ev_schedule(cs, sent)
    assert answer == {"status": "Accepted"}  # K15.FR.11
    await transaction_event(cs, "TX53", 1, "ChargingStateChanged", chargingState="Charging")
    records = (await api.get("/stations/CS1/ev-charging-needs")).json()
    assert [(r["kind"], r["status"]) for r in records] == [
        ("schedule", "Accepted"),
        ("needs", "Accepted"),
    ]
    assert records[1]["maxScheduleTuples"] == 3
    assert records[1]["body"] == AC_NEEDS


@pytest.mark.socket
async def test_tc_k_55_csms_ev_charging_profile_exceeds_limits(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    await start_transaction(cs, "TX55")
    await _iso15118_smart_charging(cloud, cs, "TX55")
    answer = await _ev_schedule(cs, schedule((0, 40)))
    assert answer["status"] == "Rejected"  # K15.FR.12
    await transaction_event(cs, "TX55", 1, "ChargingStateChanged", chargingState="Charging")
    await until(lambda: len(cs.calls("SetChargingProfile")) == 2, "renegotiation (K15.FR.13)")
    again = cs.calls("SetChargingProfile")[-1]
    assert again["evseId"] == 1
    assert again["chargingProfile"]["chargingProfilePurpose"] == "TxProfile"
    assert again["chargingProfile"]["transactionId"] == "TX55"
    sent = again["chargingProfile"]["chargingSchedule"][0]
    answer = await _ev_schedule(cs, sent)
    assert answer == {"status": "Accepted"}
    await transaction_event(cs, "TX55", 2, "ChargingRateChanged")


@pytest.mark.socket
async def test_tc_k_57_csms_renegotiating_initiated_by_ev(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    await start_transaction(cs, "TX57")
    await _iso15118_smart_charging(cloud, cs, "TX57")
    request = await _iso15118_smart_charging(cloud, cs, "TX57")  # new needs: a new schedule
    await transaction_event(cs, "TX57", 1, "ChargingRateChanged")
    answer = await _ev_schedule(cs, request["chargingProfile"]["chargingSchedule"][0])
    assert answer == {"status": "Accepted"}
    await transaction_event(cs, "TX57", 2, "ChargingRateChanged")


@pytest.mark.socket
async def test_tc_k_58_csms_renegotiating_initiated_by_csms(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    await start_transaction(cs, "TX58")
    await _iso15118_smart_charging(cloud, cs, "TX58")
    await _operator_tx_profile(api, 58, "TX58")
    request = cs.calls("SetChargingProfile")[-1]
    assert request["evseId"] == 1
    assert request["chargingProfile"]["chargingProfilePurpose"] == "TxProfile"
    assert request["chargingProfile"]["transactionId"] == "TX58"
    reply = await _ev_schedule(cs, schedule((0, 10)))
    assert reply == {"status": "Accepted"}
    await transaction_event(cs, "TX58", 1, "ChargingRateChanged")


@pytest.mark.socket
async def test_tc_k_59_csms_renegotiating_initiated_by_csms_send_notify_ev_charging_needs(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    await start_transaction(cs, "TX59")
    await _iso15118_smart_charging(cloud, cs, "TX59")
    await _operator_tx_profile(api, 59, "TX59")
    request = await _iso15118_smart_charging(cloud, cs, "TX59")  # the EV resends its needs
    reply = await _ev_schedule(cs, request["chargingProfile"]["chargingSchedule"][0])
    assert reply == {"status": "Accepted"}
    await transaction_event(cs, "TX59", 1, "ChargingRateChanged")


@pytest.mark.socket
async def test_needs_without_a_transaction_are_rejected_and_kept(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    answer = await cs.call("NotifyEVChargingNeeds", {"evseId": 1, "chargingNeeds": AC_NEEDS})
    assert answer["status"] == "Rejected"  # K15.FR.04: no transaction to give a TxProfile
    assert answer["statusInfo"]["reasonCode"] == "NoTransaction"
    records = (await api.get("/stations/CS1/ev-charging-needs")).json()
    assert [(r["kind"], r["status"]) for r in records] == [("needs", "Rejected")]


# -- REST -------------------------------------------------------------------------------


@pytest.mark.socket
async def test_commands_to_an_offline_or_unknown_station_are_refused(
    cloud: Cloud, api: httpx.AsyncClient
) -> None:
    offline = await api.post(
        "/stations/CS1/charging-profiles", json={"evseId": 1, "chargingProfile": PROFILE}
    )
    assert offline.status_code == 409 and "not connected" in offline.json()["detail"]
    refresh = await api.post("/stations/CS1/charging-profiles/refresh")
    assert refresh.status_code == 409
    composite = await api.get(
        "/stations/CS1/composite-schedule", params={"evseId": 1, "duration": 600}
    )
    assert composite.status_code == 409
    unknown = await api.get("/stations/NOPE/charging-profiles")
    assert unknown.status_code == 404 and "not registered" in unknown.json()["detail"]
    no_criteria = await api.delete("/stations/CS1/charging-profiles")
    assert no_criteria.status_code == 422 and "chargingProfileId" in no_criteria.json()["detail"]
    assert (await api.get("/sites/1", headers={"Authorization": "Bearer x"})).status_code == 401


@pytest.mark.socket
async def test_a_bad_profile_is_refused_with_the_schema_reason_and_nothing_is_kept(
    cloud: Cloud, api: httpx.AsyncClient
) -> None:
    async with octt(cloud, "CS1"):
        bad = {**PROFILE, "chargingProfileKind": "Sometimes"}
        answer = await api.post(
            "/stations/CS1/charging-profiles", json={"evseId": 1, "chargingProfile": bad}
        )
        assert answer.status_code == 422 and answer.json()["detail"]
        assert (await api.get("/stations/CS1/charging-profiles")).json()["set"] == []


@pytest.mark.socket
async def test_the_composite_schedule_is_the_stations_answer(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    answer = await api.get(
        "/stations/CS1/composite-schedule",
        params={"evseId": 1, "duration": 600, "chargingRateUnit": "A"},
    )
    assert answer.status_code == 200
    assert answer.json()["schedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 16}]
    assert cs.calls("GetCompositeSchedule") == [
        {"evseId": 1, "duration": 600, "chargingRateUnit": "A"}
    ]


@pytest.mark.socket
async def test_sites_are_created_checked_listed_replaced_and_deleted(
    cloud: Cloud, api: httpx.AsyncClient
) -> None:
    body = {
        "name": "Depot",
        "maxCurrentA": 32,
        "phases": 3,
        "stationIds": ["CS1", "CS2"],
        "stationMaxCurrentA": {"CS2": 16},
    }
    created = await api.post("/sites", json=body)
    assert created.status_code == 201, created.text
    site = created.json()
    assert site["stationMaxCurrentA"] == {"CS1": 32, "CS2": 16}
    taken = await api.post(
        "/sites", json={**body, "name": "Other", "stationIds": ["CS1"], "stationMaxCurrentA": {}}
    )
    assert taken.status_code == 409 and "CS1" in taken.json()["detail"]
    unknown = await api.post(
        "/sites", json={**body, "stationIds": ["NOPE"], "stationMaxCurrentA": {}}
    )
    assert unknown.status_code == 422 and "NOPE" in unknown.json()["detail"]
    negative = await api.post("/sites", json={**body, "maxCurrentA": -5})
    assert negative.status_code == 422 and "maxCurrentA" in negative.json()["detail"]
    tiny = await api.post("/sites", json={**body, "stationMaxCurrentA": {"CS2": 2}})
    assert tiny.status_code == 422 and "CS2" in tiny.json()["detail"]
    assert [s["name"] for s in (await api.get("/sites")).json()] == ["Depot"]
    replaced = await api.put(
        f"/sites/{site['siteId']}",
        json={**body, "maxCurrentA": 63, "stationIds": ["CS3"], "stationMaxCurrentA": {}},
    )
    assert replaced.status_code == 200 and replaced.json()["stationIds"] == ["CS3"]
    allocation = (await api.get(f"/sites/{site['siteId']}/allocation")).json()
    assert allocation == {
        "siteId": site["siteId"],
        "maxCurrentA": 63,
        "totalA": 0,
        "oversubscribed": False,
        "shares": [],
    }
    assert (await api.delete(f"/sites/{site['siteId']}")).status_code == 204
    assert (await api.get(f"/sites/{site['siteId']}")).status_code == 404
    assert (await api.put(f"/sites/{site['siteId']}", json=body)).status_code == 404


@pytest.mark.socket
async def test_a_site_divides_its_current_as_transactions_start_and_end(
    cloud: Cloud, api: httpx.AsyncClient
) -> None:
    """Two raw 2.0.1 stations in a 32 A site: one running transaction gets its station's
    32 A, two get 16 A each, three in a 16 A site leave one waiting at 0 A."""
    site = (
        await api.post(
            "/sites",
            json={"name": "Yard", "maxCurrentA": 32, "phases": 1, "stationIds": ["CS1", "CS2"]},
        )
    ).json()

    def limits(cs: RawStation201) -> list[float]:
        return [
            p["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"]
            for p in cs.calls("SetChargingProfile")
        ]

    async with octt(cloud, "CS1") as one, octt(cloud, "CS2") as two:
        await start_transaction(one, "A")
        await until(lambda: limits(one)[-1:] == [32], "32 A for the only transaction")
        await start_transaction(two, "B")
        await until(lambda: limits(one)[-1:] == [16] and limits(two)[-1:] == [16], "16 A each")
        # divided again with nothing changed: a share the station accepted is not sent
        # again, except to the station the division is for (back from a reboot)
        sent = (len(limits(one)), len(limits(two)))
        await redivide(cloud.store, cloud.gateway, site["siteId"], datetime.now(UTC))
        assert (len(limits(one)), len(limits(two))) == sent
        await redivide(
            cloud.store, cloud.gateway, site["siteId"], datetime.now(UTC), resend_to="CS2"
        )
        assert (len(limits(one)), len(limits(two))) == (sent[0], sent[1] + 1)
        assert limits(two)[-1:] == [16]
        profile = two.calls("SetChargingProfile")[-1]["chargingProfile"]
        assert profile["id"] == cloud_profile_id(1) and profile["transactionId"] == "B"
        assert profile["chargingSchedule"][0]["chargingSchedulePeriod"][0]["numberPhases"] == 1
        allocation = (await api.get(f"/sites/{site['siteId']}/allocation")).json()
        assert [(s["stationId"], s["limitA"]) for s in allocation["shares"]] == [
            ("CS1", 16),
            ("CS2", 16),
        ]
        await transaction_event(one, "A", 1, "StopAuthorized", "Ended", stoppedReason="Local")
        await until(lambda: limits(two)[-1:] == [32], "32 A for the one left")
        await api.put(
            f"/sites/{site['siteId']}",
            json={"name": "Yard", "maxCurrentA": 8, "phases": 1, "stationIds": ["CS1", "CS2"]},
        )
        await until(lambda: limits(two)[-1:] == [8], "a smaller site: all of its 8 A")
        await start_transaction(one, "C")
        await until(lambda: limits(one)[-1:] == [0], "no room for a second: it waits at 0 A")
        allocation = (await api.get(f"/sites/{site['siteId']}/allocation")).json()
        assert allocation["oversubscribed"] is True
        kept = (await api.get("/stations/CS1/charging-profiles")).json()["set"]
        assert [(p["source"], p["status"]) for p in kept] == [("site", "Accepted")]


# -- the hooks that re-divide a site, beside other features' -----------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("version", "action"),
    [("2.0.1", "TransactionEvent"), ("1.6", "StartTransaction"), ("1.6", "StopTransaction")],
)
async def test_the_transaction_hooks_run_beside_another_features_hook(
    store: Store, version: str, action: str
) -> None:
    """Reservations and tariffs hook TransactionEvent too: every feature's ``@after``
    hook runs, in class order, and one that fails (logged) does not stop the others."""
    from plugstream.cloud.config import CloudConfig
    from plugstream.cloud.context import HandlerContext
    from plugstream.cloud.smart_charging.handlers import (
        SmartChargingHandlers16,
        SmartChargingHandlers201,
    )
    from plugstream.ocpp import Handlers, after

    seen: list[str] = []

    class Other(Handlers):
        @after(action)
        async def other_feature(self, payload: dict[str, Any]) -> None:
            seen.append("other")
            raise RuntimeError("the other feature failed")

    mixin: type[Any] = SmartChargingHandlers201 if version == "2.0.1" else SmartChargingHandlers16

    class Both(mixin, Other):  # type: ignore[misc, valid-type]
        async def _redivide_site(self, *, resend: bool = False) -> None:
            seen.append("site")

    handlers = Both("CS1", HandlerContext(store, CloudConfig()))
    hook = handlers.after_handler(action)
    assert hook is not None
    await hook({"eventType": "Started", "transactionInfo": {"transactionId": "T"}})
    assert seen == ["site", "other"]
    assert handlers.after_handler("Heartbeat") is None


@pytest.mark.socket
async def test_the_openapi_document_lists_the_smart_charging_resources(
    cloud: Cloud, api: httpx.AsyncClient
) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    for path, verbs in {
        "/api/v1/stations/{station_id}/charging-profiles": {"get", "post", "delete"},
        "/api/v1/stations/{station_id}/charging-profiles/refresh": {"post"},
        "/api/v1/stations/{station_id}/composite-schedule": {"get"},
        "/api/v1/stations/{station_id}/charging-limits": {"get"},
        "/api/v1/stations/{station_id}/ev-charging-needs": {"get"},
        "/api/v1/sites": {"get", "post"},
        "/api/v1/sites/{site_id}": {"get", "put", "delete"},
        "/api/v1/sites/{site_id}/allocation": {"get"},
    }.items():
        assert verbs <= set(paths[path]), path
    conflict = paths["/api/v1/sites"]["post"]["responses"]["409"]
    assert conflict["content"]["application/json"]["schema"]["$ref"].endswith("ErrorOut")


@pytest.mark.unit
async def test_asking_for_the_site_of_a_station_in_none_costs_no_read(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every boot and transaction asks; a fleet without sites must not pay a read each."""
    from tests.support import count_reads

    repo = store.smart_charging
    assert await repo.site_of("CS1") is None  # loads the members once
    reads = count_reads(store, monkeypatch)
    for _ in range(5):
        assert await repo.site_of("CS1") is None
    assert reads == [0]
    await repo.create_site(
        "Depot", max_current_a=Decimal(32), phases=3, stations={"CS1": Decimal(32)}, at=T0
    )
    found = await repo.site_of("CS1")  # a new site is seen at once
    assert found is not None and found.name == "Depot"


@pytest.mark.socket
async def test_a_station_of_a_site_that_boots_again_gets_its_share_again(
    cloud: Cloud, api: httpx.AsyncClient
) -> None:
    await api.post("/sites", json={"name": "Yard", "maxCurrentA": 20, "stationIds": ["CS1"]})
    async with octt(cloud, "CS1") as cs:
        await start_transaction(cs, "R1")
        await until(lambda: cs.calls("SetChargingProfile"), "the share")
    await until(lambda: not cloud.gateway.is_connected("CS1"), "CS1 gone")
    async with octt(cloud, "CS1") as again:  # rebooted: its profiles may be lost
        await until(lambda: again.calls("SetChargingProfile"), "the share, again")
        profile = again.calls("SetChargingProfile")[0]["chargingProfile"]
        assert profile["transactionId"] == "R1"
        assert profile["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"] == 20


class FakeStations:
    """A :class:`CommandSender` whose stations answer SetChargingProfile as told."""

    def __init__(self, versions: dict[str, Any], answers: dict[str, Any]) -> None:
        self.versions = versions
        self.answers = answers
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def is_connected(self, station_id: str) -> bool:
        return station_id in self.versions

    def version_of(self, station_id: str) -> Any:
        return self.versions.get(station_id)

    async def call(
        self, station_id: str, action: str, payload: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        self.calls.append((station_id, action, payload))
        answer = self.answers[station_id]
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)


@pytest.mark.unit
async def test_a_division_reaches_each_station_in_its_version_and_keeps_every_answer(
    store: Store,
) -> None:
    """2.0.1 and 1.6 stations get their TxProfile in their own words; a station that is
    not connected, or answers with a CALLERROR, has that kept, so the operator sees it."""
    from plugstream.cloud.smart_charging.division import OFFLINE, redivide
    from plugstream.ocpp import ErrorCode, OcppError, OcppVersion

    for sid in ("N1", "O1", "X1", "E1"):
        await store.stations.register(sid, security_profile=0)
    site = await store.smart_charging.create_site(
        "Mixed",
        max_current_a=Decimal(40),
        phases=3,
        stations={sid: Decimal(32) for sid in ("N1", "O1", "X1", "E1")},
        at=T0,
    )
    for sid in ("N1", "X1", "E1"):
        await store.transactions.transaction_event(
            sid,
            event={
                "eventType": "Started",
                "timestamp": "2026-03-01T08:00:00Z",
                "triggerReason": "Authorized",
                "seqNo": 0,
                "transactionInfo": {"transactionId": f"T-{sid}"},
                "evse": {"id": 1, "connectorId": 1},
            },
            received_at=T0,
        )
    record, _ = await store.transactions.start(
        "O1",
        connector_id=1,
        id_token="TAG",
        meter_start_wh=Decimal(0),
        timestamp=T0,
        received_at=T0,
    )
    stations = FakeStations(
        {"N1": OcppVersion.V201, "O1": OcppVersion.V16, "E1": OcppVersion.V201},
        {
            "N1": {"status": "Accepted"},
            "O1": {"status": "Accepted"},
            "E1": OcppError(ErrorCode.InternalError, "broken"),
        },
    )
    allocation = await redivide(store, stations, site.site_id, T0)
    assert allocation is not None
    assert [share for _, share in allocation.shares] == [Decimal(10)] * 4
    sent = {sid: payload for sid, _, payload in stations.calls}
    assert sent["O1"]["csChargingProfiles"]["transactionId"] == record.id  # 1.6: an integer
    assert sent["O1"]["connectorId"] == 1
    assert sent["N1"]["chargingProfile"]["transactionId"] == "T-N1"
    kept = {
        sid: (await store.smart_charging.profiles_set(sid))[0].status
        for sid in ("N1", "O1", "X1", "E1")
    }
    assert kept == {"N1": "Accepted", "O1": "Accepted", "X1": OFFLINE, "E1": "InternalError"}
