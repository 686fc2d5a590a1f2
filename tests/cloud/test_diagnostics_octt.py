"""The OCTT's CSMS test cases of block N (diagnostics), part 6 of OCPP 2.0.1 with the
errata of 2025-09: the station's side played frame by frame, the operator's side
through the REST API, and what the CSMS must send, answer and show checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cloud.raw_station201 import Hop, RawStation201, diagnostics_cloud, station201

pytestmark = pytest.mark.socket

STAMP = "2026-12-05T10:00:00.000Z"
TOKEN = {"idToken": "OCTT-TOKEN-01", "type": "ISO14443"}
CERTIFICATE = {
    "hashAlgorithm": "SHA256",
    "issuerNameHash": "a" * 64,
    "issuerKeyHash": "b" * 64,
    "serialNumber": "1c2d3e",
}


def monitoring(
    component: dict[str, Any], variable: str, monitor_id: int, kind: str, value: float
) -> dict[str, Any]:
    return {
        "component": component,
        "variable": {"name": variable},
        "variableMonitoring": [
            {"id": monitor_id, "transaction": False, "value": value, "type": kind, "severity": 5}
        ],
    }


STATION = {"name": "ChargingStation"}
EVSE1 = {"name": "EVSE", "evse": {"id": 1}}


async def report(
    station: RawStation201, request_id: int, parts: list[list[dict[str, Any]]]
) -> None:
    """NotifyMonitoringReport, in as many parts as given (seqNo from 0, N02.FR.09)."""
    for seq_no, monitors in enumerate(parts):
        answer = await station.call(
            "NotifyMonitoringReport",
            {
                "requestId": request_id,
                "seqNo": seq_no,
                "generatedAt": STAMP,
                "tbc": seq_no < len(parts) - 1,
                "monitor": monitors,
            },
        )
        assert answer == {}  # step 6: NotifyMonitoringReportResponse, not an error


async def refresh(
    octt: Hop, station: RawStation201, station_id: str, body: dict[str, Any], answer: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The operator asks for a report; the station answers ``answer``: the request it got
    and the API's answer."""
    station.answers["GetMonitoringReport"] = {"status": answer}
    count = len(station.calls("GetMonitoringReport")) + 1
    response = await octt.api.post(f"/stations/{station_id}/monitors/refresh", json=body)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == answer
    return await station.received_call("GetMonitoringReport", count), response.json()


async def shown(octt: Hop, station_id: str) -> list[dict[str, Any]]:
    response = await octt.api.get(f"/stations/{station_id}/monitors")
    assert response.status_code == 200
    monitors: list[dict[str, Any]] = response.json()
    return monitors


async def test_tc_n_01_csms_get_monitoring_report_with_monitoring_criteria(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N01") as station:
        sent, _ = await refresh(
            octt, station, "N01", {"monitoring_criteria": ["DeltaMonitoring"]}, "EmptyResultSet"
        )
        assert sent["monitoringCriteria"] == ["DeltaMonitoring"]
        assert "componentVariable" not in sent  # errata 6.3.20
        sent, out = await refresh(
            octt, station, "N01", {"monitoring_criteria": ["ThresholdMonitoring"]}, "Accepted"
        )
        assert sent["monitoringCriteria"] == ["ThresholdMonitoring"]
        assert "componentVariable" not in sent
        await report(
            station,
            sent["requestId"],
            [[monitoring(STATION, "Power", 3, "UpperThreshold", 22000)]],
        )
        monitors = await shown(octt, "N01")  # post scenario: the Threshold monitors shown
        assert [(m["id"], m["type"], m["value"]) for m in monitors] == [
            (3, "UpperThreshold", 22000)
        ]
        reports = (await octt.api.get("/stations/N01/monitors/reports")).json()
        assert [(r["request_id"], r["status"]) for r in reports] == [
            (out["request_id"], "Complete"),
            (out["request_id"] - 1, "EmptyResultSet"),
        ]


async def test_tc_n_02_csms_get_monitoring_report_with_component_variable(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N02") as station:
        body = {"component_variables": [{"component": STATION, "variable": {"name": "Power"}}]}
        sent, _ = await refresh(octt, station, "N02", body, "EmptyResultSet")
        assert sent["componentVariable"] == [
            {"component": {"name": "ChargingStation"}, "variable": {"name": "Power"}}
        ]  # errata 6.3.21: no instances
        assert "monitoringCriteria" not in sent
        body = {
            "component_variables": [{"component": EVSE1, "variable": {"name": "AvailabilityState"}}]
        }
        sent, _ = await refresh(octt, station, "N02", body, "Accepted")
        assert sent["componentVariable"] == [
            {
                "component": {"name": "EVSE", "evse": {"id": 1}},
                "variable": {"name": "AvailabilityState"},
            }
        ]
        assert "monitoringCriteria" not in sent
        await report(
            station, sent["requestId"], [[monitoring(EVSE1, "AvailabilityState", 4, "Delta", 1)]]
        )
        [monitor] = await shown(octt, "N02")
        assert monitor["component"] == {"name": "EVSE", "evse": {"id": 1}}
        assert monitor["variable"] == {"name": "AvailabilityState"}


async def test_tc_n_03_csms_get_monitoring_report_with_criteria_and_component_variable(
    tmp_path: Path,
) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N03") as station:
        body: dict[str, Any] = {
            "monitoring_criteria": ["DeltaMonitoring"],
            "component_variables": [
                {"component": EVSE1, "variable": {"name": "AvailabilityState"}}
            ],
        }
        sent, _ = await refresh(octt, station, "N03", body, "EmptyResultSet")
        assert sent["monitoringCriteria"] == ["DeltaMonitoring"]
        assert sent["componentVariable"][0]["component"] == {"name": "EVSE", "evse": {"id": 1}}
        body = {
            "monitoring_criteria": ["ThresholdMonitoring"],
            "component_variables": [{"component": STATION, "variable": {"name": "Power"}}],
        }
        sent, _ = await refresh(octt, station, "N03", body, "Accepted")
        assert sent["monitoringCriteria"] == ["ThresholdMonitoring"]
        assert sent["componentVariable"][0]["variable"] == {"name": "Power"}
        await report(
            station,
            sent["requestId"],
            [
                [
                    monitoring(STATION, "Power", 5, "UpperThreshold", 11000),
                    monitoring(STATION, "Power", 6, "LowerThreshold", 10),
                ]
            ],
        )
        monitors = await shown(octt, "N03")
        assert {(m["id"], m["type"]) for m in monitors} == {
            (5, "UpperThreshold"),
            (6, "LowerThreshold"),
        }


async def test_tc_n_60_csms_get_monitoring_report_with_criteria_and_list_of_components(
    tmp_path: Path,
) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N60") as station:
        power = [
            {"component": STATION, "variable": {"name": "Power"}},
            {"component": EVSE1, "variable": {"name": "Power"}},
        ]
        body = {"monitoring_criteria": ["ThresholdMonitoring"], "component_variables": power}
        sent, _ = await refresh(octt, station, "N60", body, "EmptyResultSet")
        assert [cv["component"]["name"] for cv in sent["componentVariable"]] == [
            "ChargingStation",
            "EVSE",
        ]
        state = [
            {"component": STATION, "variable": {"name": "AvailabilityState"}},
            {"component": EVSE1, "variable": {"name": "AvailabilityState"}},
        ]
        body = {"monitoring_criteria": ["DeltaMonitoring"], "component_variables": state}
        sent, _ = await refresh(octt, station, "N60", body, "Accepted")
        assert sent["monitoringCriteria"] == ["DeltaMonitoring"]
        assert sent["componentVariable"][1]["component"] == {"name": "EVSE", "evse": {"id": 1}}
        await report(
            station,
            sent["requestId"],
            [
                [monitoring(STATION, "AvailabilityState", 7, "Delta", 1)],
                [monitoring(EVSE1, "AvailabilityState", 8, "Delta", 1)],
            ],
        )
        assert sorted(m["id"] for m in await shown(octt, "N60")) == [7, 8]


async def test_tc_n_47_csms_get_monitoring_report_all(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N47") as station:
        sent, _ = await refresh(octt, station, "N47", {}, "Accepted")
        assert "monitoringCriteria" not in sent and "componentVariable" not in sent
        parts = [[monitoring(STATION, "Power", i, "UpperThreshold", 1000 * i)] for i in range(1, 4)]
        await report(station, sent["requestId"], parts)  # tbc true, true, false
        assert [m["id"] for m in await shown(octt, "N47")] == [1, 2, 3]
        [kept] = (await octt.api.get("/stations/N47/monitors/reports")).json()
        assert (kept["status"], kept["parts"]) == ("Complete", 3)


async def customer(
    octt: Hop, station: RawStation201, station_id: str, body: dict[str, Any], data: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The operator's CustomerInformation, the station's Accepted and its parts: the
    request the station got and what the API shows afterwards."""
    response = await octt.api.post(f"/stations/{station_id}/customer-information", json=body)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "Accepted"
    sent = await station.received_call("CustomerInformation")
    for seq_no, chunk in enumerate(data):
        answer = await station.call(
            "NotifyCustomerInformation",
            {
                "data": chunk,
                "tbc": seq_no < len(data) - 1,
                "seqNo": seq_no,
                "generatedAt": STAMP,
                "requestId": sent["requestId"],
            },
        )
        assert answer == {}
    [kept] = (await octt.api.get(f"/stations/{station_id}/customer-information")).json()
    return sent, kept


async def test_tc_n_27_csms_get_customer_information_accepted_and_data(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N27") as station:
        sent, kept = await customer(
            octt, station, "N27", {"report": True, "id_token": TOKEN}, ["cached since ", "2026"]
        )
        assert sent["report"] is True and sent["idToken"] == TOKEN
        assert (kept["status"], kept["data"], kept["parts"]) == ("Complete", "cached since 2026", 2)


async def test_tc_n_28_csms_get_customer_information_accepted_and_no_data(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N28") as station:
        sent, kept = await customer(
            octt, station, "N28", {"report": True, "id_token": TOKEN}, ["No data found"]
        )
        assert sent["report"] is True and sent["idToken"] == TOKEN
        assert (kept["status"], kept["data"]) == ("Complete", "No data found")


async def test_tc_n_30_csms_clear_customer_information_clear_and_report_with_data(
    tmp_path: Path,
) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N30") as station:
        body = {"report": True, "clear": True, "id_token": TOKEN}
        sent, kept = await customer(octt, station, "N30", body, ["token in cache"])
        assert (sent["report"], sent["clear"], sent["idToken"]) == (True, True, TOKEN)
        assert kept["data"] == "token in cache" and kept["clear"] is True


async def test_tc_n_31_csms_clear_customer_information_clear_and_report_no_data(
    tmp_path: Path,
) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N31") as station:
        body = {"report": True, "clear": True, "id_token": TOKEN}
        sent, kept = await customer(octt, station, "N31", body, [""])
        assert (sent["report"], sent["clear"]) == (True, True)
        assert (kept["status"], kept["data"]) == ("Complete", "")


async def test_tc_n_32_csms_clear_customer_information_clear_and_no_report(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N32") as station:
        body = {"report": False, "clear": True, "id_token": TOKEN}
        sent, kept = await customer(octt, station, "N32", body, ["Cleared"])
        assert (sent["report"], sent["clear"], sent["idToken"]) == (False, True, TOKEN)
        assert kept["status"] == "Complete"


async def test_tc_n_62_csms_clear_customer_information_by_customer_identifier(
    tmp_path: Path,
) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N62") as station:
        body = {"report": True, "clear": True, "customer_identifier": "OpenChargeAlliance"}
        sent, kept = await customer(octt, station, "N62", body, ["customer data"])
        assert sent["customerIdentifier"] == "OpenChargeAlliance"
        assert "idToken" not in sent and "customerCertificate" not in sent  # errata 6.3.22
        assert kept["customer"] == {"customerIdentifier": "OpenChargeAlliance"}
        assert not station.calls("SendLocalList")  # no idToken: no local list to update


async def test_tc_n_63_csms_clear_customer_information_by_customer_certificate(
    tmp_path: Path,
) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N63") as station:
        body = {"report": True, "clear": True, "customer_certificate": CERTIFICATE}
        sent, kept = await customer(octt, station, "N63", body, ["certificate removed"])
        assert (sent["report"], sent["clear"]) == (True, True)
        assert sent["customerCertificate"] == CERTIFICATE
        assert kept["data"] == "certificate removed"


async def test_tc_n_46_csms_clear_customer_information_updates_the_local_list(
    tmp_path: Path,
) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N46") as station:
        station.answers["GetLocalListVersion"] = {"versionNumber": 4}
        body = {"report": True, "clear": True, "id_token": TOKEN}
        sent, _ = await customer(octt, station, "N46", body, ["in the local list"])
        assert (sent["report"], sent["clear"], sent["idToken"]) == (True, True, TOKEN)
        update = await station.received_call("SendLocalList")
        # errata 6.3.23: Differential, a higher version, only the token, no idTokenInfo
        assert update == {
            "versionNumber": 5,
            "updateType": "Differential",
            "localAuthorizationList": [{"idToken": TOKEN}],
        }
        actions = [name for name, _ in station.received]
        assert actions.index("CustomerInformation") < actions.index("SendLocalList")


def set_results(payload: dict[str, Any]) -> dict[str, Any]:
    """The OCTT accepts every monitor, numbering them from 1."""
    return {
        "setMonitoringResult": [
            {
                "id": i,
                "status": "Accepted",
                "type": data["type"],
                "severity": data["severity"],
                "component": data["component"],
                "variable": data["variable"],
            }
            for i, data in enumerate(payload["setMonitoringData"], start=1)
        ]
    }


def availability_delta(component: dict[str, Any]) -> dict[str, Any]:
    return {
        "component": component,
        "variable": {"name": "AvailabilityState"},
        "type": "Delta",
        "value": 1,  # the value recommended for a Delta monitor
        "severity": 8,
    }


async def test_tc_n_05_csms_set_monitoring_base_success(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N05") as station:
        for count, base in enumerate(("All", "FactoryDefault", "HardWiredOnly"), start=1):
            response = await octt.api.post(
                "/stations/N05/monitors/base", json={"monitoring_base": base}
            )
            assert response.json()["status"] == "Accepted"
            assert await station.received_call("SetMonitoringBase", count) == {
                "monitoringBase": base
            }


async def test_tc_n_08_csms_set_variable_monitoring_one_element(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N08") as station:
        station.answers["SetVariableMonitoring"] = set_results
        response = await octt.api.post("/stations/N08/monitors", json=availability_delta(EVSE1))
        assert response.status_code == 201, response.text
        [data] = (await station.received_call("SetVariableMonitoring"))["setMonitoringData"]
        assert (data["value"], data["type"], data["severity"]) == (1, "Delta", 8)
        assert data["component"] == {"name": "EVSE", "evse": {"id": 1}}
        assert data["variable"] == {"name": "AvailabilityState"}
        assert [m["id"] for m in await shown(octt, "N08")] == [1]


async def test_tc_n_09_csms_set_variable_monitoring_multiple_elements(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N09") as station:
        station.answers["SetVariableMonitoring"] = set_results
        body = {"monitors": [availability_delta(EVSE1), availability_delta(STATION)]}
        response = await octt.api.post("/stations/N09/monitors/batch", json=body)
        assert [r["status"] for r in response.json()] == ["Accepted", "Accepted"]
        sent = (await station.received_call("SetVariableMonitoring"))["setMonitoringData"]
        assert [d["component"]["name"] for d in sent] == ["EVSE", "ChargingStation"]
        assert len(station.calls("SetVariableMonitoring")) == 1  # one request, two elements
        assert [m["component"]["name"] for m in await shown(octt, "N09")] == [
            "EVSE",
            "ChargingStation",
        ]


async def test_tc_n_16_csms_set_monitoring_level_success(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N16") as station:
        response = await octt.api.post("/stations/N16/monitors/level", json={"severity": 4})
        assert response.json() == {"status": "Accepted", "status_info": None}
        assert await station.received_call("SetMonitoringLevel") == {"severity": 4}


async def test_tc_n_17_csms_set_monitoring_level_out_of_range(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N17") as station:
        station.answers["SetMonitoringLevel"] = {"status": "Rejected"}
        response = await octt.api.post("/stations/N17/monitors/level", json={"severity": 4})
        assert response.status_code == 200 and response.json()["status"] == "Rejected"


async def test_tc_n_29_csms_get_customer_information_not_accepted(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N29") as station:
        station.answers["CustomerInformation"] = {"status": "Rejected"}
        body = {"report": True, "id_token": TOKEN}
        response = await octt.api.post("/stations/N29/customer-information", json=body)
        assert response.json()["status"] == "Rejected"  # shown as refused, not lost
        sent = await station.received_call("CustomerInformation")
        assert (sent["report"], sent["idToken"]) == (True, TOKEN)


async def get_log(
    octt: Hop, station: RawStation201, station_id: str, log_type: str, answer: str, count: int = 1
) -> dict[str, Any]:
    station.answers["GetLog"] = {"status": answer, "filename": "octt.log"}
    response = await octt.api.post(f"/stations/{station_id}/logs", json={"log_type": log_type})
    assert response.status_code == 202 and response.json()["status"] == answer
    sent = await station.received_call("GetLog", count)
    assert sent["logType"] == log_type and sent["log"]["remoteLocation"].startswith("http")
    return sent


async def log_statuses(octt: Hop, station_id: str) -> dict[int, str]:
    logs = (await octt.api.get(f"/stations/{station_id}/logs")).json()
    return {r["request_id"]: r["status"] for r in logs}


async def test_tc_n_34_csms_retrieve_log_information_rejected(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N34") as station:
        sent = await get_log(octt, station, "N34", "DiagnosticsLog", "Rejected")
        assert await log_statuses(octt, "N34") == {sent["requestId"]: "Rejected"}


@pytest.mark.parametrize(("case", "log_type"), [("N35", "SecurityLog"), ("N25", "DiagnosticsLog")])
async def test_tc_n_25_and_tc_n_35_csms_retrieve_log_information_success(
    tmp_path: Path, case: str, log_type: str
) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, case) as station:
        sent = await get_log(octt, station, case, log_type, "Accepted")
        for status in ("Uploading", "Uploaded"):
            answer = await station.call(
                "LogStatusNotification", {"status": status, "requestId": sent["requestId"]}
            )
            assert answer == {}
            assert await log_statuses(octt, case) == {sent["requestId"]: status}


async def test_tc_n_36_csms_retrieve_log_information_second_request(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N36") as station:
        first = (await get_log(octt, station, "N36", "DiagnosticsLog", "Accepted"))["requestId"]
        await station.call("LogStatusNotification", {"status": "Uploading", "requestId": first})
        second = await get_log(octt, station, "N36", "DiagnosticsLog", "AcceptedCanceled", 2)
        assert second["requestId"] != first
        await station.call(
            "LogStatusNotification", {"status": "AcceptedCanceled", "requestId": first}
        )
        for status in ("Uploading", "Uploaded"):
            await station.call(
                "LogStatusNotification", {"status": status, "requestId": second["requestId"]}
            )
        assert await log_statuses(octt, "N36") == {
            first: "AcceptedCanceled",
            second["requestId"]: "Uploaded",
        }


async def test_tc_n_44_csms_clear_monitoring_rejected(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "N44") as station:
        station.answers["SetVariableMonitoring"] = set_results
        await octt.api.post("/stations/N44/monitors", json=availability_delta(EVSE1))
        station.answers["ClearVariableMonitoring"] = {
            "clearMonitoringResult": [{"id": 1, "status": "Rejected"}]
        }
        response = await octt.api.delete("/stations/N44/monitors/1")
        assert response.status_code == 422 and "refused" in response.json()["detail"]
        assert await station.received_call("ClearVariableMonitoring") == {"id": [1]}
        assert [m["id"] for m in await shown(octt, "N44")] == [1]  # still the station's
