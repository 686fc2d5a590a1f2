"""The device model as an operator's feature, against a real cloud on loopback.

The OCTT's CSMS test cases of B (provisioning) that read and set variables and fetch
reports, and of N that send NotifyEvent, played by a 2.0.1 station on raw OCPP-J frames
(tests/cloud/raw_station201.py): an operator asks through the REST API, the test checks
the request the CSMS sends (part 6's tool validations), answers as the OCTT does, and
checks what the operator then sees. Last, our own Station201 end to end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from plugstream.station.clock import ManualClock
from plugstream.station.ev import CITY_CAR, Ev
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.station201 import Station201
from tests.cloud.raw_station201 import RawStation201
from tests.support import Cloud, booted16, running, until

pytestmark = pytest.mark.socket

SID = "CS-DM-201"


@pytest.fixture
def station_id() -> str:
    """The station the ``cs`` fixture boots (tests/cloud/conftest.py)."""
    return SID


def get_result(
    payload: dict[str, Any], values: dict[str, str], status: str = "Accepted"
) -> dict[str, Any]:
    """A GetVariablesResponse echoing each requested item with its value from ``values``
    (by variable name and instance)."""
    results = []
    for item in payload["getVariableData"]:
        name = item["variable"]["name"] + "[" + item["variable"].get("instance", "") + "]"
        result = {
            "attributeStatus": status if name in values else "UnknownVariable",
            "component": item["component"],
            "variable": item["variable"],
        }
        if name in values:
            result["attributeValue"] = values[name]
        results.append(result)
    return {"getVariableResult": results}


def set_result(payload: dict[str, Any], statuses: dict[str, str]) -> dict[str, Any]:
    return {
        "setVariableResult": [
            {
                "attributeStatus": statuses.get(item["variable"]["name"], "Accepted"),
                "component": item["component"],
                "variable": item["variable"],
            }
            for item in payload["setVariableData"]
        ]
    }


def actual(model: dict[str, Any], component: str, variable: str, instance: str = "") -> Any:
    """The Actual value of one variable in ``GET .../device-model``; KeyError if absent."""
    for v in model["variables"]:
        if (v["component"], v["variable"], v["variable_instance"]) == (
            component,
            variable,
            instance,
        ):
            for attribute in v["attributes"]:
                if attribute["type"] == "Actual":
                    return attribute["value"]
    raise KeyError(f"{component}.{variable}[{instance}]")


async def device_model(api: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    got = await api.get(f"/stations/{SID}/device-model", params=params)
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


# -- B06: GetVariables ------------------------------------------------------------------


async def test_tc_b_06_csms_get_variables_single_value(
    api: httpx.AsyncClient, cs: RawStation201
) -> None:
    cs.answers["GetVariables"] = lambda p: get_result(p, {"OfflineThreshold[]": "60"})
    got = await api.post(
        f"/stations/{SID}/device-model/variables/read",
        json={"variables": [{"component": "OCPPCommCtrlr", "variable": "OfflineThreshold"}]},
    )
    assert got.status_code == 200, got.text
    [request] = cs.calls("GetVariables")
    [item] = request["getVariableData"]
    assert item["component"] == {"name": "OCPPCommCtrlr"}
    assert item["variable"] == {"name": "OfflineThreshold"}
    assert item.get("attributeType", "Actual") == "Actual"
    assert [(r["variable"], r["status"], r["value"]) for r in got.json()] == [
        ("OfflineThreshold", "Accepted", "60")
    ]
    # post scenario: the CSMS has correctly read it, and keeps it
    assert actual(await device_model(api), "OCPPCommCtrlr", "OfflineThreshold") == "60"


async def test_tc_b_07_csms_get_variables_multiple_values(
    api: httpx.AsyncClient, cs: RawStation201
) -> None:
    cs.answers["GetVariables"] = lambda p: get_result(
        p, {"OfflineThreshold[]": "60", "AuthorizeRemoteStart[]": "true"}
    )
    got = await api.post(
        f"/stations/{SID}/device-model/variables/read",
        json={
            "variables": [
                {"component": "OCPPCommCtrlr", "variable": "OfflineThreshold"},
                {"component": "AuthCtrlr", "variable": "AuthorizeRemoteStart"},
            ]
        },
    )
    assert got.status_code == 200, got.text
    [request] = cs.calls("GetVariables")
    assert {
        (i["component"]["name"], i["variable"]["name"]) for i in request["getVariableData"]
    } == {
        ("OCPPCommCtrlr", "OfflineThreshold"),
        ("AuthCtrlr", "AuthorizeRemoteStart"),
    }
    model = await device_model(api)
    assert actual(model, "OCPPCommCtrlr", "OfflineThreshold") == "60"
    assert actual(model, "AuthCtrlr", "AuthorizeRemoteStart") == "true"


async def test_tc_b_08_csms_get_variables_limited_to_items_per_message(
    api: httpx.AsyncClient, cs: RawStation201
) -> None:
    values = {
        "ItemsPerMessage[GetReport]": "100",
        "ItemsPerMessage[GetVariables]": "4",
        "BytesPerMessage[GetReport]": "65000",
        "BytesPerMessage[GetVariables]": "65000",
        "AuthorizeRemoteStart[]": "true",
    }
    cs.answers["GetVariables"] = lambda p: get_result(p, values)
    # Configuration state: the CSMS learns ItemsPerMessage[GetVariables] = 4
    learned = await api.post(
        f"/stations/{SID}/device-model/variables/read",
        json={
            "variables": [
                {
                    "component": "DeviceDataCtrlr",
                    "variable": "ItemsPerMessage",
                    "variable_instance": "GetVariables",
                }
            ]
        },
    )
    assert learned.status_code == 200, learned.text
    cs.received.clear()
    five = [
        {"component": "DeviceDataCtrlr", "variable": name, "variable_instance": instance}
        for name in ("ItemsPerMessage", "BytesPerMessage")
        for instance in ("GetReport", "GetVariables")
    ] + [{"component": "AuthCtrlr", "variable": "AuthorizeRemoteStart"}]
    got = await api.post(f"/stations/{SID}/device-model/variables/read", json={"variables": five})
    assert got.status_code == 200, got.text
    sizes = [len(r["getVariableData"]) for r in cs.calls("GetVariables")]
    assert sorted(sizes) == [1, 4]  # never more than ItemsPerMessage[GetVariables]
    assert {r["status"] for r in got.json()} == {"Accepted"} and len(got.json()) == 5


# -- B05: SetVariables ------------------------------------------------------------------


async def test_tc_b_09_csms_set_variables_single_value(
    api: httpx.AsyncClient, cs: RawStation201
) -> None:
    cs.answers["SetVariables"] = lambda p: set_result(p, {})
    got = await api.post(
        f"/stations/{SID}/device-model/variables",
        json={
            "variables": [
                {"component": "OCPPCommCtrlr", "variable": "OfflineThreshold", "value": "123"}
            ]
        },
    )
    assert got.status_code == 200, got.text
    [request] = cs.calls("SetVariables")
    [item] = request["setVariableData"]
    assert (item["component"], item["variable"], item["attributeValue"]) == (
        {"name": "OCPPCommCtrlr"},
        {"name": "OfflineThreshold"},
        "123",
    )
    assert item.get("attributeType", "Actual") == "Actual"
    assert [r["status"] for r in got.json()] == ["Accepted"]
    assert actual(await device_model(api), "OCPPCommCtrlr", "OfflineThreshold") == "123"


async def test_tc_b_10_csms_set_variables_multiple_values(
    api: httpx.AsyncClient, cs: RawStation201
) -> None:
    cs.answers["SetVariables"] = lambda p: set_result(p, {})
    got = await api.post(
        f"/stations/{SID}/device-model/variables",
        json={
            "variables": [
                {"component": "OCPPCommCtrlr", "variable": "OfflineThreshold", "value": "123"},
                {"component": "AuthCtrlr", "variable": "AuthorizeRemoteStart", "value": "false"},
            ]
        },
    )
    assert got.status_code == 200, got.text
    [request] = cs.calls("SetVariables")
    assert {
        (i["component"]["name"], i["variable"]["name"], i["attributeValue"])
        for i in request["setVariableData"]
    } == {
        ("OCPPCommCtrlr", "OfflineThreshold", "123"),
        ("AuthCtrlr", "AuthorizeRemoteStart", "false"),
    }
    model = await device_model(api)
    assert actual(model, "OCPPCommCtrlr", "OfflineThreshold") == "123"
    assert actual(model, "AuthCtrlr", "AuthorizeRemoteStart") == "false"


async def test_a_value_the_station_rejects_is_not_stored(
    api: httpx.AsyncClient, cs: RawStation201
) -> None:
    cs.answers["SetVariables"] = lambda p: set_result(p, {"AuthorizeRemoteStart": "Rejected"})
    got = await api.post(
        f"/stations/{SID}/device-model/variables",
        json={
            "variables": [
                {"component": "OCPPCommCtrlr", "variable": "OfflineThreshold", "value": "99"},
                {"component": "AuthCtrlr", "variable": "AuthorizeRemoteStart", "value": "false"},
            ]
        },
    )
    assert [r["status"] for r in got.json()] == ["Accepted", "Rejected"]
    model = await device_model(api)
    assert actual(model, "OCPPCommCtrlr", "OfflineThreshold") == "99"
    with pytest.raises(KeyError):
        actual(model, "AuthCtrlr", "AuthorizeRemoteStart")


# -- B07 / B08: reports -----------------------------------------------------------------

REPORT_PARTS = [
    [
        {
            "component": {"name": "OCPPCommCtrlr"},
            "variable": {"name": "HeartbeatInterval"},
            "variableAttribute": [{"type": "Actual", "value": "300", "mutability": "ReadWrite"}],
            "variableCharacteristics": {
                "dataType": "integer",
                "unit": "s",
                "supportsMonitoring": False,
            },
        }
    ],
    [
        {
            "component": {"name": "EVSE", "evse": {"id": 1}},
            "variable": {"name": "AvailabilityState"},
            "variableAttribute": [
                {"type": "Actual", "value": "Available", "mutability": "ReadOnly"}
            ],
            "variableCharacteristics": {
                "dataType": "OptionList",
                "valuesList": "Available,Occupied,Reserved,Unavailable,Faulted",
                "supportsMonitoring": False,
            },
        }
    ],
]


async def base_report(api: httpx.AsyncClient, cs: RawStation201, base: str) -> None:
    """Steps 1-2 of TC_B_12/13/14, then the NotifyReport parts of the post scenario."""
    cs.answers["GetBaseReport"] = lambda p: {"status": "Accepted"}
    got = await api.post(f"/stations/{SID}/device-model/refresh", json={"report_base": base})
    assert got.status_code == 200, got.text
    report = got.json()
    [request] = cs.calls("GetBaseReport")
    assert request["reportBase"] == base
    assert isinstance(request["requestId"], int) and request["requestId"] >= 0
    assert report["request_id"] == request["requestId"]
    assert report["status"] == "Accepted" and report["report_base"] == base
    for seq_no, part in enumerate(REPORT_PARTS):
        answer = await cs.call(
            "NotifyReport",
            {
                "requestId": request["requestId"],
                "generatedAt": "2026-12-05T10:00:00Z",
                "seqNo": seq_no,
                "tbc": seq_no < len(REPORT_PARTS) - 1,
                "reportData": part,
            },
        )
        assert answer == {}
    # post scenario: every part arrived, and the operator sees the result
    status = await api.get(f"/stations/{SID}/device-model/reports/{report['request_id']}")
    assert status.json()["status"] == "Complete"
    assert (status.json()["parts"], status.json()["items"]) == (2, 2)
    model = await device_model(api)
    assert actual(model, "OCPPCommCtrlr", "HeartbeatInterval") == "300"
    evse = next(v for v in model["variables"] if v["component"] == "EVSE")
    assert evse["evse_id"] == 1
    assert evse["characteristics"]["values_list"][:2] == ["Available", "Occupied"]
    assert evse["attributes"][0]["mutability"] == "ReadOnly"


async def test_tc_b_12_csms_get_base_report_configuration_inventory(
    api: httpx.AsyncClient, cs: RawStation201
) -> None:
    await base_report(api, cs, "ConfigurationInventory")


async def test_tc_b_13_csms_get_base_report_full_inventory(
    api: httpx.AsyncClient, cs: RawStation201
) -> None:
    await base_report(api, cs, "FullInventory")


async def test_tc_b_14_csms_get_base_report_summary_inventory(
    api: httpx.AsyncClient, cs: RawStation201
) -> None:
    await base_report(api, cs, "SummaryInventory")


async def test_tc_b_18_csms_get_custom_report_with_component_criteria_and_variables(
    api: httpx.AsyncClient, cs: RawStation201
) -> None:
    cs.answers["GetReport"] = lambda p: {
        "status": "EmptyResultSet" if p["componentCriteria"] == ["Problem"] else "Accepted"
    }
    wanted = [{"component": "EVSE", "evse_id": 1, "variable": "AvailabilityState"}]
    empty = await api.post(
        f"/stations/{SID}/device-model/reports",
        json={"component_criteria": ["Problem"], "component_variables": wanted},
    )
    assert empty.status_code == 200, empty.text
    assert empty.json()["status"] == "EmptyResultSet"
    found = await api.post(
        f"/stations/{SID}/device-model/reports",
        json={"component_criteria": ["Available"], "component_variables": wanted},
    )
    assert found.json()["status"] == "Accepted"
    first, second = cs.calls("GetReport")
    for request, criterion in ((first, "Problem"), (second, "Available")):
        assert request["componentCriteria"] == [criterion]
        assert request["componentVariable"] == [
            {
                "component": {"name": "EVSE", "evse": {"id": 1}},
                "variable": {"name": "AvailabilityState"},
            }
        ]
    assert second["requestId"] != first["requestId"]
    await cs.call(
        "NotifyReport",
        {
            "requestId": second["requestId"],
            "generatedAt": "2026-12-05T10:00:00Z",
            "seqNo": 0,
            "reportData": REPORT_PARTS[1],
        },
    )
    assert (
        actual(await device_model(api, component="evse"), "EVSE", "AvailabilityState")
        == "Available"
    )
    reports = (await api.get(f"/stations/{SID}/device-model/reports")).json()
    assert [(r["request_id"], r["status"]) for r in reports] == [
        (second["requestId"], "Complete"),
        (first["requestId"], "EmptyResultSet"),
    ]


# -- N07 / N08: NotifyEvent -------------------------------------------------------------


def event(event_id: int, **fields: Any) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "timestamp": "2026-12-05T10:00:00Z",
        "trigger": "Alerting",
        "actualValue": "42",
        "eventNotificationType": "CustomMonitor",
        "component": {"name": "EVSE", "evse": {"id": 1}},
        "variable": {"name": "Power"},
        **fields,
    }


async def notify_event(cs: RawStation201, *events: dict[str, Any]) -> None:
    answer = await cs.call(
        "NotifyEvent",
        {"generatedAt": "2026-12-05T10:00:01Z", "seqNo": 0, "eventData": list(events)},
    )
    assert answer == {}  # the NotifyEventResponse has an empty body


async def station_events(api: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    got = await api.get(f"/stations/{SID}/events", params=params)
    assert got.status_code == 200, got.text
    events: list[dict[str, Any]] = got.json()
    return events


async def test_tc_n_24_csms_periodic_notify_event_is_answered_every_time(
    api: httpx.AsyncClient, cs: RawStation201
) -> None:
    for n in range(3):  # "step 1 and 2 will be repeated n times"
        await notify_event(cs, event(n, trigger="Periodic", actualValue=str(100 + n)))
    events = await station_events(api)
    assert [(e["event_id"], e["trigger"], e["actual_value"]) for e in events] == [
        (2, "Periodic", "102"),
        (1, "Periodic", "101"),
        (0, "Periodic", "100"),
    ]
    assert actual(await device_model(api), "EVSE", "Power") == "102"


async def test_tc_n_48_csms_event_of_a_write_only_variable_with_an_empty_value(
    api: httpx.AsyncClient, cs: RawStation201
) -> None:
    await notify_event(
        cs,
        event(
            7,
            actualValue="",
            component={"name": "SecurityCtrlr"},
            variable={"name": "BasicAuthPassword"},
        ),
    )
    [kept] = await station_events(api, component="SecurityCtrlr")
    assert (kept["event_id"], kept["actual_value"], kept["variable"]) == (
        7,
        "",
        "BasicAuthPassword",
    )


async def test_tc_n_49_csms_cleared_threshold_event(
    api: httpx.AsyncClient, cs: RawStation201
) -> None:
    await notify_event(
        cs, event(1, actualValue="80", techCode="T1", techInfo="too hot", variableMonitoringId=3)
    )
    await notify_event(
        cs, event(2, actualValue="40", cleared=True, cause=1, variableMonitoringId=3)
    )
    newest, oldest = await station_events(api)
    assert (newest["cleared"], newest["cause"], newest["variable_monitoring_id"]) == (True, 1, 3)
    assert (oldest["cleared"], oldest["tech_code"], oldest["tech_info"]) == (None, "T1", "too hot")
    assert actual(await device_model(api), "EVSE", "Power") == "40"


async def test_tc_n_50_csms_periodic_triggered_event(
    api: httpx.AsyncClient, cs: RawStation201
) -> None:
    await notify_event(cs, event(1, trigger="Periodic"), event(2, trigger="Alerting"))
    assert [e["event_id"] for e in await station_events(api, trigger="Periodic")] == [1]
    assert [e["event_id"] for e in await station_events(api, limit=1)] == [2]


async def test_a_connectors_availability_event_after_boot_updates_its_state(
    api: httpx.AsyncClient, cs: RawStation201
) -> None:
    """Step 5 of TC_B_01/02/20: StatusNotification and NotifyEvent (Delta, Connector
    AvailabilityState) after the boot; the CSMS answers both and shows the new state."""
    connector = {"name": "Connector", "evse": {"id": 1, "connectorId": 1}}
    await cs.call(
        "StatusNotification",
        {
            "timestamp": "2026-12-05T10:00:00Z",
            "connectorStatus": "Available",
            "evseId": 1,
            "connectorId": 1,
        },
    )
    await notify_event(
        cs,
        event(
            1,
            trigger="Delta",
            actualValue="Available",
            eventNotificationType="HardWiredNotification",
            component=connector,
            variable={"name": "AvailabilityState"},
        ),
    )
    model = await device_model(api, variable="AvailabilityState")
    [state] = model["variables"]
    assert (state["component"], state["evse_id"], state["connector_id"]) == ("Connector", 1, 1)
    assert state["attributes"][0]["value"] == "Available"
    assert state["attributes"][0]["source"] == "NotifyEvent"


# -- errors ---------------------------------------------------------------------------


async def test_requests_the_cloud_cannot_carry_out_get_a_reason(
    cloud: Cloud, api: httpx.AsyncClient, cs: RawStation201
) -> None:
    read = {"variables": [{"component": "OCPPCommCtrlr", "variable": "OfflineThreshold"}]}
    unknown = await api.post("/stations/NOBODY/device-model/variables/read", json=read)
    assert unknown.status_code == 404 and "NOBODY" in unknown.json()["detail"]
    await cloud.store.stations.register("CS-AWAY", security_profile=0)
    away = await api.post("/stations/CS-AWAY/device-model/refresh")
    assert away.status_code == 409 and "not connected" in away.json()["detail"]
    bad = await api.post(f"/stations/{SID}/device-model/variables", json={"variables": []})
    assert bad.status_code == 422 and "variables" in bad.json()["detail"]
    orphan = await api.post(
        f"/stations/{SID}/device-model/variables/read",
        json={"variables": [{"component": "Connector", "connector_id": 1, "variable": "X"}]},
    )
    assert orphan.status_code == 422 and "evse_id" in orphan.json()["detail"]
    nothing = await api.post(f"/stations/{SID}/device-model/reports", json={})
    assert nothing.status_code == 422
    cs.answers["GetVariables"] = lambda p: ["NotImplemented", "no device model here"]
    refused = await api.post(f"/stations/{SID}/device-model/variables/read", json=read)
    assert refused.status_code == 502 and refused.json()["error_code"] == "NotImplemented"
    missing = await api.get(f"/stations/{SID}/device-model/reports/4242")
    assert missing.status_code == 404
    assert (await api.get("/stations/NOBODY/events")).status_code == 404
    assert cs.calls("GetBaseReport") == []  # nothing was sent for the refusals


async def test_a_1_6_station_has_no_device_model(cloud: Cloud, api: httpx.AsyncClient) -> None:
    async with booted16(cloud.url("CS-16")):
        got = await api.post("/stations/CS-16/device-model/refresh")
    assert got.status_code == 409 and "1.6" in got.json()["detail"]


async def test_the_routes_are_in_the_openapi_document(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    for path in (
        "/api/v1/stations/{station_id}/device-model",
        "/api/v1/stations/{station_id}/device-model/refresh",
        "/api/v1/stations/{station_id}/device-model/reports",
        "/api/v1/stations/{station_id}/device-model/reports/{request_id}",
        "/api/v1/stations/{station_id}/device-model/variables",
        "/api/v1/stations/{station_id}/device-model/variables/read",
        "/api/v1/stations/{station_id}/events",
    ):
        assert path in paths, path
    assert "409" in paths["/api/v1/stations/{station_id}/device-model/refresh"]["post"]["responses"]


# -- our own station, end to end ----------------------------------------------------------


async def test_our_station201_device_model_refreshed_and_set_through_the_cloud(
    tmp_path: Path, cloud: Cloud, api: httpx.AsyncClient
) -> None:
    await cloud.store.stations.register("PS-DM-1", security_profile=0)
    station = Station201(
        "PS-DM-1", PLUGSTREAM_7, tmp_path / "station", clock=ManualClock(), call_timeout=5.0
    )
    async with running(station, f"ws://127.0.0.1:{cloud.port}/ocpp", online=True):
        refresh = await api.post("/stations/PS-DM-1/device-model/refresh")
        assert refresh.status_code == 200, refresh.text
        request_id = refresh.json()["request_id"]

        async def complete() -> bool:
            got = await api.get(f"/stations/PS-DM-1/device-model/reports/{request_id}")
            return bool(got.json()["status"] == "Complete")

        await until(complete, "the full inventory reported")
        model = (await api.get("/stations/PS-DM-1/device-model")).json()
        hb = next(v for v in model["variables"] if v["variable"] == "HeartbeatInterval")
        assert hb["component"] == "OCPPCommCtrlr"
        assert (
            hb["characteristics"]["data_type"] == "integer" and hb["characteristics"]["unit"] == "s"
        )
        assert hb["attributes"][0]["value"] == str(station.config.heartbeat_interval)
        assert hb["attributes"][0]["mutability"] == "ReadWrite"
        password = next(v for v in model["variables"] if v["variable"] == "BasicAuthPassword")
        assert password["attributes"][0]["value"] is None  # write-only: never reported
        connectors = [v for v in model["variables"] if v["component"] == "Connector"]
        assert connectors and connectors[0]["evse_id"] == 1 and connectors[0]["connector_id"] == 1

        changed = await api.post(
            "/stations/PS-DM-1/device-model/variables",
            json={
                "variables": [
                    {"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval", "value": "123"}
                ]
            },
        )
        assert [r["status"] for r in changed.json()] == ["Accepted"]
        assert station.config.heartbeat_interval == 123  # the station took it
        hb = (
            await api.get(
                "/stations/PS-DM-1/device-model", params={"variable": "HeartbeatInterval"}
            )
        ).json()
        assert hb["variables"][0]["attributes"][0]["value"] == "123"
        assert hb["variables"][0]["attributes"][0]["source"] == "SetVariables"

        refused = await api.post(
            "/stations/PS-DM-1/device-model/variables",
            json={
                "variables": [
                    {"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval", "value": "soon"}
                ]
            },
        )
        assert [r["status"] for r in refused.json()] == ["Rejected"]
        read = await api.post(
            "/stations/PS-DM-1/device-model/variables/read",
            json={"variables": [{"component": "ocppcommctrlr", "variable": "heartbeatinterval"}]},
        )
        assert [r["value"] for r in read.json()] == ["123"]
        hb = (
            await api.get(
                "/stations/PS-DM-1/device-model", params={"variable": "HeartbeatInterval"}
            )
        ).json()
        assert len(hb["variables"]) == 1  # the same row, whatever the case asked in
        assert hb["variables"][0]["attributes"][0]["value"] == "123"


async def test_our_station201_summary_inventory_shows_its_connector_occupied(
    tmp_path: Path, cloud: Cloud, api: httpx.AsyncClient
) -> None:
    """B07.FR.09: the summary tells the availability now; a car plugged in is Occupied."""
    await cloud.store.stations.register("PS-DM-2", security_profile=0)
    station = Station201(
        "PS-DM-2", PLUGSTREAM_7, tmp_path / "station", clock=ManualClock(), call_timeout=5.0
    )
    async with running(station, f"ws://127.0.0.1:{cloud.port}/ocpp", online=True):
        station.plug_in(Ev(CITY_CAR, soc=30.0))
        refresh = await api.post(
            "/stations/PS-DM-2/device-model/refresh", json={"report_base": "SummaryInventory"}
        )
        assert refresh.status_code == 200, refresh.text
        request_id = refresh.json()["request_id"]

        async def complete() -> bool:
            got = await api.get(f"/stations/PS-DM-2/device-model/reports/{request_id}")
            return bool(got.json()["status"] == "Complete")

        await until(complete, "the summary inventory reported")
        model = (
            await api.get(
                "/stations/PS-DM-2/device-model", params={"variable": "AvailabilityState"}
            )
        ).json()
        states = {
            (v["component"], v["evse_id"], v["connector_id"]): v["attributes"][0]["value"]
            for v in model["variables"]
        }
        assert states[("Connector", 1, 1)] == "Occupied"
        assert states[("EVSE", 1, 0)] == "Occupied"
        assert states[("ChargingStation", 0, 0)] == "Available"


async def test_set_variables_are_split_by_items_per_message_and_matched_by_name(
    api: httpx.AsyncClient, cs: RawStation201
) -> None:
    """B05.FR.04: no more items than ItemsPerMessage[SetVariables] in one request; the
    results are matched to what was set by name, in whatever order they come."""
    await cs.call(
        "NotifyReport",
        {
            "requestId": 1,
            "generatedAt": "2026-12-05T10:00:00Z",
            "seqNo": 0,
            "reportData": [
                {
                    "component": {"name": "DeviceDataCtrlr"},
                    "variable": {"name": "ItemsPerMessage", "instance": "SetVariables"},
                    "variableAttribute": [
                        {"type": "Actual", "value": "2", "mutability": "ReadOnly"}
                    ],
                    "variableCharacteristics": {"dataType": "integer", "supportsMonitoring": False},
                }
            ],
        },
    )

    def reversed_results(payload: dict[str, Any]) -> dict[str, Any]:
        answer = set_result(payload, {"B": "Rejected"})
        answer["setVariableResult"].reverse()
        return answer

    cs.answers["SetVariables"] = reversed_results
    got = await api.post(
        f"/stations/{SID}/device-model/variables",
        json={
            "variables": [
                {"component": "Vendor", "variable": name, "value": name.lower()} for name in "ABC"
            ]
        },
    )
    assert got.status_code == 200, got.text
    assert [len(r["setVariableData"]) for r in cs.calls("SetVariables")] == [2, 1]
    assert {(r["variable"], r["status"]) for r in got.json()} == {
        ("A", "Accepted"),
        ("B", "Rejected"),
        ("C", "Accepted"),
    }
    model = await device_model(api, component="Vendor")
    assert [(v["variable"], v["attributes"][0]["value"]) for v in model["variables"]] == [
        ("A", "a"),
        ("C", "c"),
    ]


async def test_our_station201_reports_its_availability_with_notify_event(
    tmp_path: Path, cloud: Cloud, api: httpx.AsyncClient
) -> None:
    """G01.FR.03: a car plugged in, the station says Occupied with NotifyEvent (Delta) as
    well as StatusNotification; the cloud keeps the event and the model shows the state."""
    await cloud.store.stations.register("PS-DM-3", security_profile=0)
    station = Station201(
        "PS-DM-3",
        PLUGSTREAM_7,
        tmp_path / "station",
        clock=ManualClock(),
        call_timeout=5.0,
        notify_availability=True,
    )
    async with running(station, f"ws://127.0.0.1:{cloud.port}/ocpp", online=True):

        async def states() -> list[tuple[str, str]]:
            got = await api.get("/stations/PS-DM-3/events", params={"component": "Connector"})
            return [(e["trigger"], e["actual_value"]) for e in got.json()]

        await until(lambda: states(), "the state after boot reported")
        station.plug_in(Ev(CITY_CAR, soc=30.0))

        async def occupied() -> bool:
            return (await states())[0] == ("Delta", "Occupied")

        await until(occupied, "Occupied reported")
        assert await states() == [("Delta", "Occupied"), ("Delta", "Available")]
        model = (
            await api.get(
                "/stations/PS-DM-3/device-model", params={"variable": "AvailabilityState"}
            )
        ).json()
        connector = next(v for v in model["variables"] if v["component"] == "Connector")
        assert (connector["attributes"][0]["value"], connector["attributes"][0]["source"]) == (
            "Occupied",
            "NotifyEvent",
        )
