"""The diagnostics REST resources: monitors, logs with their upload URL, customer
information; what is kept, and the 4xx with a reason for what cannot be done."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from plugstream.cloud.diagnostics import api as diagnostics_api
from tests.cloud.raw_station201 import diagnostics_cloud, station201
from tests.support import WAIT, until

pytestmark = pytest.mark.socket

MONITOR = {
    "component": {"name": "EVSE", "evse": {"id": 1}},
    "variable": {"name": "Power"},
    "type": "UpperThreshold",
    "value": 7400.5,
    "severity": 4,
}


def result(payload: dict[str, Any], status: str, monitor_id: int | None = None) -> dict[str, Any]:
    """The SetMonitoringResult of the request's one monitor."""
    data = payload["setMonitoringData"][0]
    out = {k: data[k] for k in ("type", "severity", "component", "variable")}
    out["status"] = status
    if monitor_id is not None:
        out["id"] = monitor_id
    return out


async def test_a_monitor_accepted_is_kept_and_cleared_through_the_station(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "CPM") as station:

        def accept(payload: dict[str, Any]) -> dict[str, Any]:
            return {"setMonitoringResult": [result(payload, "Accepted", 12)]}

        station.answers["SetVariableMonitoring"] = accept
        response = await octt.api.post("/stations/CPM/monitors", json=MONITOR)
        assert response.status_code == 201, response.text
        assert response.json()["id"] == 12 and response.json()["value"] == 7400.5
        sent = await station.received_call("SetVariableMonitoring")
        assert sent["setMonitoringData"][0]["component"] == {"name": "EVSE", "evse": {"id": 1}}
        [kept] = (await octt.api.get("/stations/CPM/monitors")).json()
        assert (kept["id"], kept["source"]) == (12, "set")

        station.answers["ClearVariableMonitoring"] = {
            "clearMonitoringResult": [{"id": 12, "status": "Accepted"}]
        }
        assert (await octt.api.delete("/stations/CPM/monitors/12")).status_code == 204
        assert (await station.received_call("ClearVariableMonitoring")) == {"id": [12]}
        assert (await octt.api.get("/stations/CPM/monitors")).json() == []
        station.answers["ClearVariableMonitoring"] = {
            "clearMonitoringResult": [{"id": 13, "status": "NotFound"}]
        }
        missing = await octt.api.delete("/stations/CPM/monitors/13")
        assert missing.status_code == 404 and "no monitor 13" in missing.json()["detail"]


async def test_a_monitor_the_station_refuses_is_a_422_with_its_status_and_not_kept(
    tmp_path: Path,
) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "CPR") as station:
        station.answers["SetVariableMonitoring"] = lambda p: {
            "setMonitoringResult": [result(p, "UnknownComponent")]
        }
        response = await octt.api.post("/stations/CPR/monitors", json=MONITOR)
        assert response.status_code == 422
        assert "UnknownComponent" in response.json()["detail"]
        assert (await octt.api.get("/stations/CPR/monitors")).json() == []


async def test_base_and_level_go_to_the_station_and_a_factory_default_drops_the_kept_list(
    tmp_path: Path,
) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "CPB") as station:
        station.answers["SetVariableMonitoring"] = lambda p: {
            "setMonitoringResult": [result(p, "Accepted", 1)]
        }
        assert (await octt.api.post("/stations/CPB/monitors", json=MONITOR)).status_code == 201
        level = await octt.api.post("/stations/CPB/monitors/level", json={"severity": 3})
        assert level.json()["status"] == "Accepted"
        assert (await station.received_call("SetMonitoringLevel")) == {"severity": 3}
        base = await octt.api.post(
            "/stations/CPB/monitors/base", json={"monitoring_base": "FactoryDefault"}
        )
        assert base.json()["status"] == "Accepted"
        assert (await station.received_call("SetMonitoringBase")) == {
            "monitoringBase": "FactoryDefault"
        }
        assert (await octt.api.get("/stations/CPB/monitors")).json() == []
        bad = await octt.api.post("/stations/CPB/monitors/level", json={"severity": 10})
        assert bad.status_code == 422 and "severity" in bad.json()["detail"]


async def test_commands_to_an_offline_or_unknown_station_are_refused_and_nothing_is_kept(
    tmp_path: Path,
) -> None:
    async with diagnostics_cloud(tmp_path) as octt:
        await octt.cloud.store.stations.register("OFF", security_profile=0)
        for path, body in (
            ("/stations/OFF/monitors", MONITOR),
            ("/stations/OFF/monitors/refresh", {}),
            ("/stations/OFF/logs", {"log_type": "DiagnosticsLog"}),
            ("/stations/OFF/customer-information", {"id_token": {"idToken": "A", "type": "Local"}}),
        ):
            response = await octt.api.post(path, json=body)
            assert response.status_code == 409, (path, response.text)
            assert "not connected" in response.json()["detail"]
        assert (await octt.api.get("/stations/OFF/logs")).json() == []
        assert (await octt.api.get("/stations/OFF/customer-information")).json() == []
        assert (await octt.api.get("/stations/OFF/monitors/reports")).json() == []
        unknown = await octt.api.get("/stations/NOPE/monitors")
        assert unknown.status_code == 404


async def test_customer_information_needs_exactly_one_customer_and_report_or_clear(
    tmp_path: Path,
) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "CPC") as station:
        both = {"id_token": {"idToken": "A", "type": "Local"}, "customer_identifier": "x"}
        response = await octt.api.post("/stations/CPC/customer-information", json=both)
        assert response.status_code == 422 and "exactly one" in response.json()["detail"]
        neither = {"report": False, "clear": False, "customer_identifier": "x"}
        response = await octt.api.post("/stations/CPC/customer-information", json=neither)
        assert response.status_code == 422 and "report or clear" in response.json()["detail"]
        assert not station.calls("CustomerInformation")


async def test_a_log_is_uploaded_once_to_its_one_time_url_and_downloaded(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "CPL") as station:
        station.answers["GetLog"] = {"status": "Accepted", "filename": "cpl.log"}
        response = await octt.api.post("/stations/CPL/logs", json={"log_type": "SecurityLog"})
        assert response.status_code == 202, response.text
        request_id = response.json()["request_id"]
        sent = await station.received_call("GetLog")
        assert (sent["logType"], sent["requestId"]) == ("SecurityLog", request_id)
        url = sent["log"]["remoteLocation"]
        assert urlsplit(url).path == "/api/v1/log-uploads"
        assert parse_qs(urlsplit(url).query)["token"]

        await station.call(
            "LogStatusNotification", {"status": "Uploading", "requestId": request_id}
        )
        content = b"2026-12-05 security log\n" * 100
        async with httpx.AsyncClient(timeout=WAIT) as plain:  # the station has no bearer
            put = await plain.put(url, content=content)
            assert put.status_code == 201, put.text
            again = await plain.put(url, content=b"other")
            assert again.status_code == 404 and "spent" in again.json()["detail"]
            guessed = await plain.put(url[:-4] + "AAAA", content=b"x")
            assert guessed.status_code == 404
        await station.call("LogStatusNotification", {"status": "Uploaded", "requestId": request_id})

        [kept] = (await octt.api.get("/stations/CPL/logs")).json()
        assert kept["status"] == "Uploaded"
        assert (kept["size"], kept["sha256"]) == (len(content), hashlib.sha256(content).hexdigest())
        assert kept["filename"] == "cpl.log"
        file = await octt.api.get(kept["file_url"].removeprefix("/api/v1"))
        assert file.status_code == 200 and file.content == content
        # on disk beside the firmware directory (next to the SQLite file), no part left
        [on_disk] = [p for p in (tmp_path / "logs").rglob("*") if p.is_file()]
        assert on_disk.read_bytes() == content and on_disk.suffix == ".log"


async def test_a_multipart_post_upload_keeps_only_the_file_and_its_name(tmp_path: Path) -> None:
    """N01.FR.19: a POST gives the file in multipart/form-data, named by Content-Disposition."""
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "CPP") as station:
        response = await octt.api.post("/stations/CPP/logs", json={})
        request_id = response.json()["request_id"]
        url = (await station.received_call("GetLog"))["log"]["remoteLocation"]
        content = bytes(range(256)) * 10
        async with httpx.AsyncClient(timeout=WAIT) as plain:
            post = await plain.post(url, files={"uploadfile": ("diag_20261205.zip", content)})
            assert post.status_code == 201, post.text
        found = (await octt.api.get(f"/stations/CPP/logs/{request_id}")).json()
        assert (found["upload_filename"], found["size"]) == ("diag_20261205.zip", len(content))
        file = await octt.api.get(f"/stations/CPP/logs/{request_id}/file")
        assert file.content == content


async def test_an_upload_over_the_limit_is_refused_and_the_token_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(diagnostics_api, "MAX_LOG_BYTES", 1000)  # the upload route's own limit
    async with (
        diagnostics_cloud(tmp_path, max_body_bytes=1000) as octt,
        station201(octt, "CPX") as station,
    ):
        await octt.api.post("/stations/CPX/logs", json={})
        url = (await station.received_call("GetLog"))["log"]["remoteLocation"]
        async with httpx.AsyncClient(timeout=WAIT) as plain:
            too_big = await plain.put(url, content=b"x" * 5000)
            assert too_big.status_code == 413
            fits = await plain.put(url, content=b"x" * 500)
            assert fits.status_code == 201
        [kept] = (await octt.api.get("/stations/CPX/logs")).json()
        assert kept["size"] == 500


async def test_log_status_is_kept_and_a_refused_get_log_is_shown(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt, station201(octt, "CPS") as station:
        station.answers["GetLog"] = {"status": "Rejected"}
        response = await octt.api.post("/stations/CPS/logs", json={})
        assert response.json()["status"] == "Rejected"
        # TC_N_35-style failure, and a status for a request this API did not send
        await station.call("LogStatusNotification", {"status": "UploadFailure", "requestId": 40})
        await until(
            lambda: octt.cloud.store.diagnostics.get_log("CPS", 40), "the status of request 40"
        )
        statuses = {
            r["request_id"]: r["status"] for r in (await octt.api.get("/stations/CPS/logs")).json()
        }
        assert statuses == {1: "Rejected", 40: "UploadFailure"}
        # triggered with no upload running (N01.FR.13): no requestId, nothing to keep
        assert await station.call("LogStatusNotification", {"status": "Idle"}) == {}


async def test_the_resources_are_in_the_openapi_document_and_guarded(tmp_path: Path) -> None:
    async with diagnostics_cloud(tmp_path) as octt:
        paths = (await octt.api.get("/openapi.json")).json()["paths"]
        for path in (
            "/api/v1/stations/{station_id}/monitors",
            "/api/v1/stations/{station_id}/monitors/{monitor_id}",
            "/api/v1/stations/{station_id}/monitors/refresh",
            "/api/v1/stations/{station_id}/logs",
            "/api/v1/stations/{station_id}/logs/{request_id}/file",
            "/api/v1/stations/{station_id}/customer-information",
            "/api/v1/log-uploads",
        ):
            assert path in paths, path
        assert set(paths["/api/v1/log-uploads"]) == {"put", "post"}
        async with httpx.AsyncClient(base_url=str(octt.api.base_url), timeout=WAIT) as stranger:
            assert (await stranger.get("/stations/X/logs")).status_code == 401
            assert (await stranger.get("/stations/X/monitors")).status_code == 401
