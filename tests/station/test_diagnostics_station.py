"""The station's side of diagnostics: its monitors (sans-I/O), and our own 2.0.1 station
driven through the cloud's diagnostics resources end to end -- a log uploaded over
HTTP to the cloud, a monitor set through the API that fires a NotifyEvent, customer
information reported and cleared."""

from __future__ import annotations

import asyncio
import hashlib
import random
import ssl
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest

from plugstream.pki.authority import CertificateAuthority
from plugstream.station.auth import TokenKey
from plugstream.station.backoff import ReconnectBackoff
from plugstream.station.diagnostics import DiagnosticsHandlers201, Monitors
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.station201 import Station201
from tests.cloud.raw_station201 import TOKEN, Hop, diagnostics_cloud
from tests.security.conftest import PASSWORD, Pki, trusting
from tests.support import WAIT, free_port, running, running_cloud, until

POWER = ("ChargingStation", None, "Power")
EVSE_POWER = ("EVSE", 1, "Power")


def monitor(kind: str, value: float, severity: int = 5, **extra: Any) -> dict[str, Any]:
    return {
        "component": {"name": "EVSE", "evse": {"id": 1}},
        "variable": {"name": "Power"},
        "type": kind,
        "value": value,
        "severity": severity,
        **extra,
    }


@pytest.mark.unit
def test_monitors_are_checked_against_what_the_station_can_watch() -> None:
    monitors = Monitors()
    accepted = monitors.set(monitor("UpperThreshold", 7000))
    assert (accepted["status"], accepted["id"]) == ("Accepted", 1)
    assert "value" not in accepted  # SetMonitoringResultType has no value
    assert monitors.set(monitor("UpperThreshold", 8000))["status"] == "Duplicate"
    unknown = {**monitor("Delta", 1), "component": {"name": "Connector"}}
    assert monitors.set(unknown)["status"] == "UnknownComponent"
    assert monitors.set({**monitor("Delta", 1), "variable": {"name": "Voltage"}})["status"] == (
        "UnknownVariable"
    )
    assert monitors.set(monitor("Periodic", 60))["status"] == "UnsupportedMonitorType"
    assert monitors.set(monitor("Delta", 1, id=99))["status"] == "Rejected"
    assert monitors.clear([1, 2]) == [
        {"id": 1, "status": "Accepted"},
        {"id": 2, "status": "NotFound"},
    ]


@pytest.mark.unit
def test_a_threshold_fires_once_when_crossed_and_once_cleared() -> None:
    monitors = Monitors()
    monitors.set(monitor("UpperThreshold", 7000))
    assert monitors.check({EVSE_POWER: Decimal(100)}, in_transaction=False) == []
    [up] = monitors.check({EVSE_POWER: Decimal(7400)}, in_transaction=False)
    assert (up.trigger, up.cleared, up.actual_value) == ("Alerting", False, Decimal(7400))
    assert monitors.check({EVSE_POWER: Decimal(7300)}, in_transaction=False) == []
    [down] = monitors.check({EVSE_POWER: Decimal(0)}, in_transaction=False)
    assert down.cleared
    data = down.event_data(3, "2026-12-05T10:00:00Z")
    assert data["variableMonitoringId"] == 1 and data["cleared"] is True
    assert data["eventNotificationType"] == "CustomMonitor"


@pytest.mark.unit
def test_a_delta_fires_on_a_move_and_the_level_holds_back_lesser_events() -> None:
    monitors = Monitors()
    monitors.set({**monitor("Delta", 1000, severity=7), "component": {"name": "ChargingStation"}})
    assert monitors.check({POWER: Decimal(0)}, in_transaction=False) == []  # the reference
    assert monitors.check({POWER: Decimal(900)}, in_transaction=False) == []
    [moved] = monitors.check({POWER: Decimal(1100)}, in_transaction=False)
    assert moved.trigger == "Delta"
    assert monitors.set_level(5) == "Accepted"  # only severity 0..5 from now on
    assert monitors.check({POWER: Decimal(5000)}, in_transaction=False) == []


@pytest.mark.unit
def test_a_report_follows_the_criteria_and_component_variables() -> None:
    monitors = Monitors()
    monitors.set(monitor("UpperThreshold", 7000))
    monitors.set({**monitor("Delta", 10), "component": {"name": "ChargingStation"}})
    assert [len(m["variableMonitoring"]) for m in monitors.report([], [])] == [1, 1]
    [threshold] = monitors.report(["ThresholdMonitoring"], [])
    assert threshold["variableMonitoring"][0]["type"] == "UpperThreshold"
    assert monitors.report(["PeriodicMonitoring"], []) == []
    [station] = monitors.report([], [{"component": {"name": "ChargingStation"}}])
    assert station["variableMonitoring"][0]["type"] == "Delta"
    again = Monitors.from_json(orjson.loads(orjson.dumps(monitors.to_json())))
    assert again.report([], []) == monitors.report([], [])


@pytest.mark.unit
def test_get_monitoring_report_answers_per_n02() -> None:
    handlers = DiagnosticsHandlers201()
    handlers.station = SimpleNamespace(diagnostics=SimpleNamespace(monitors=Monitors()))  # type: ignore[assignment]
    ask = {"requestId": 1}
    assert handlers.get_monitoring_report(ask) == {"status": "EmptyResultSet"}  # N02.FR.10
    handlers.station.diagnostics.monitors.set(monitor("Delta", 5))
    assert handlers.get_monitoring_report(ask) == {"status": "Accepted"}  # N02.FR.01
    periodic = {**ask, "monitoringCriteria": ["PeriodicMonitoring"]}
    assert handlers.get_monitoring_report(periodic) == {"status": "NotSupported"}  # N02.FR.02


def station(tmp_path: Path, station_id: str) -> Station201:
    """Our station, retrying fast: a connection refused under load is tried again soon."""
    return Station201(
        station_id,
        PLUGSTREAM_7,
        tmp_path / station_id,
        backoff=ReconnectBackoff(0.2, 0.0, 0, random.Random(1)),
        call_timeout=5.0,
    )


def url(octt: Hop) -> str:
    return f"ws://127.0.0.1:{octt.cloud.port}/ocpp"


async def messages(
    octt: Hop, station_id: str, action: str, direction: str = "in"
) -> list[list[Any]]:
    """The CALLs ``action`` the station sent ("in") or got ("out"), newest first, as the
    cloud's message log keeps them."""
    found = []
    for record in await octt.cloud.store.messages.list(station_id, limit=500):
        frame = orjson.loads(record.text)
        if record.direction == direction and frame[0] == 2 and frame[2] == action:
            found.append(frame)
    return found


async def uploaded_log(
    api: httpx.AsyncClient, station_id: str, request_id: int, what: str
) -> dict[str, Any]:
    """The cloud's record of the log upload ``request_id``, once it is Uploaded."""

    async def uploaded() -> dict[str, Any] | None:
        found: dict[str, Any] = (await api.get(f"/stations/{station_id}/logs/{request_id}")).json()
        return found if found["status"] == "Uploaded" else None

    result: dict[str, Any] = await until(uploaded, what)
    return result


@pytest.mark.socket
async def test_our_station_uploads_its_log_to_the_cloud_and_it_is_downloadable(
    tmp_path: Path,
) -> None:
    async with diagnostics_cloud(tmp_path) as octt:
        cp = station(tmp_path, "CPDL")
        async with running(cp, url(octt), online=True):
            response = await octt.api.post(
                "/stations/CPDL/logs", json={"log_type": "DiagnosticsLog"}
            )
            assert response.status_code == 202, response.text
            # the station may be past its answer already: Uploading or Uploaded
            assert response.json()["status"] in ("Accepted", "Uploading", "Uploaded")
            request_id = response.json()["request_id"]
            kept = await uploaded_log(
                octt.api, "CPDL", request_id, "LogStatusNotification Uploaded"
            )
            statuses = [
                f[3]["status"] for f in await messages(octt, "CPDL", "LogStatusNotification")
            ]
            assert statuses == ["Uploaded", "Uploading"]  # newest first: Uploading, then Uploaded
            assert kept["filename"].startswith("CPDL-diagnostics-")
            assert kept["upload_filename"] == kept["filename"]
            file = await octt.api.get(f"/stations/CPDL/logs/{request_id}/file")
            assert file.status_code == 200
            assert file.content.startswith(b"PlugStream station CPDL diagnostics")
            assert b"device_model201.json" in file.content
            assert kept["sha256"] == hashlib.sha256(file.content).hexdigest()


@pytest.mark.socket
async def test_a_monitor_set_through_the_api_makes_our_station_send_a_notify_event(
    tmp_path: Path,
) -> None:
    async with diagnostics_cloud(tmp_path) as octt:
        cp = station(tmp_path, "CPMO")
        async with running(cp, url(octt), online=True):
            # idle, the EVSE draws 0 W: below 100 W the moment the station checks
            body = {**monitor("LowerThreshold", 100, severity=2)}
            response = await octt.api.post("/stations/CPMO/monitors", json=body)
            assert response.status_code == 201, response.text
            monitor_id = response.json()["id"]

            async def notified() -> list[dict[str, Any]]:
                return [
                    event
                    for frame in await messages(octt, "CPMO", "NotifyEvent")
                    for event in frame[3]["eventData"]
                    if event.get("variableMonitoringId") == monitor_id
                ]

            [event] = await until(notified, "the station's NotifyEvent in the cloud's log")
            assert event["variableMonitoringId"] == monitor_id
            assert (event["trigger"], event["actualValue"]) == ("Alerting", "0.0")
            assert event["component"] == {"name": "EVSE", "evse": {"id": 1}}

            # the station's own report agrees with what the cloud keeps
            refresh = await octt.api.post("/stations/CPMO/monitors/refresh", json={})
            assert refresh.json()["status"] in ("Accepted", "Complete")

            async def reported() -> list[dict[str, Any]]:
                shown: list[dict[str, Any]] = (await octt.api.get("/stations/CPMO/monitors")).json()
                return [m for m in shown if m["source"] == "report"]

            [kept] = await until(reported, "the monitor reported back")
            assert (kept["id"], kept["type"], kept["value"]) == (monitor_id, "LowerThreshold", 100)

            assert (
                await octt.api.delete(f"/stations/CPMO/monitors/{monitor_id}")
            ).status_code == 204
            assert cp.diagnostics.monitors.monitors == {}


@pytest.mark.socket
async def test_our_station_reports_and_clears_what_it_keeps_of_an_id_token(
    tmp_path: Path,
) -> None:
    async with diagnostics_cloud(tmp_path) as octt:
        cp = station(tmp_path, "CPCI")
        token = {"idToken": "04A2B3C4", "type": "ISO14443"}
        cp.cache.update(TokenKey.from_id_token(token), {"status": "Accepted"}, now=cp.now())
        async with running(cp, url(octt), online=True):
            body = {"report": True, "clear": True, "id_token": token}
            response = await octt.api.post("/stations/CPCI/customer-information", json=body)
            assert response.status_code == 202, response.text
            assert response.json()["status"] in ("Accepted", "Complete")

            async def complete() -> dict[str, Any] | None:
                [found] = (await octt.api.get("/stations/CPCI/customer-information")).json()
                return found if found["status"] == "Complete" else None

            kept = await until(complete, "the customer information assembled")
            assert "04A2B3C4" in kept["data"] and "AuthorizationCache" in kept["data"]
            assert TokenKey.from_id_token(token) not in cp.cache  # N10: cleared
            # nothing on the local list (version 0): no SendLocalList was needed
            await until(
                lambda: messages(octt, "CPCI", "GetLocalListVersion", "out"),
                "the cloud asks for the station's local list version",
            )
            assert not await messages(octt, "CPCI", "SendLocalList", "out")


@pytest.mark.socket
async def test_over_https_the_station_checks_the_cloud_by_its_csms_root_and_uploads(
    tmp_path: Path,
) -> None:
    """N01.FR.14/15: the upload goes over https to the cloud, whose certificate the station
    checks against its CSMS root -- as for its OCPP connection (security profile 2)."""
    pki = Pki(CertificateAuthority.create(), tmp_path / "pki")
    pki.dir.mkdir()
    pki.ca.write_root(pki.dir / "root.pem")
    cert, key = pki.write("ip", pki.ca.issue_server([], ips=["127.0.0.1"]))
    trust = ssl.create_default_context(cafile=str(pki.dir / "root.pem"))
    async with (
        running_cloud(
            tmp_path, tls_cert=cert, tls_key=key, port=free_port(), api_token=TOKEN
        ) as cloud,
        httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{cloud.port}/api/v1",
            headers={"Authorization": f"Bearer {TOKEN}"},
            verify=trust,
            timeout=WAIT,
        ) as api,
    ):
        await cloud.store.stations.register("CPTLS", password=PASSWORD, security_profile=2)
        cp = trusting(station(tmp_path, "CPTLS"), pki)
        cp.set_password(PASSWORD)
        cp.set_security_profile(2)
        async with running(cp, f"wss://127.0.0.1:{cloud.port}/ocpp", online=True):
            cp.security_event("SettingSystemTime", "a line for the security log")
            response = await api.post("/stations/CPTLS/logs", json={"log_type": "SecurityLog"})
            assert response.status_code == 202, response.text
            request_id = response.json()["request_id"]
            kept = await uploaded_log(
                api, "CPTLS", request_id, "the security log uploaded over https"
            )
            file = await api.get(f"/stations/CPTLS/logs/{request_id}/file")
            assert b"SettingSystemTime" in file.content
            assert kept["sha256"] == hashlib.sha256(file.content).hexdigest()


@pytest.mark.socket
async def test_a_second_get_log_cancels_the_running_upload(tmp_path: Path) -> None:
    """N01.FR.12/20: an upload stuck on a server that never answers gives way to a new
    GetLog: AcceptedCanceled for both the answer and the old request's status."""
    hold: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hold.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    stuck = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/logs"
    try:
        async with diagnostics_cloud(tmp_path) as octt:
            cp = station(tmp_path, "CPCX")
            async with running(cp, url(octt), online=True):
                first = {
                    "log": {"remoteLocation": stuck},
                    "logType": "DiagnosticsLog",
                    "requestId": 900,
                }
                answer = await octt.cloud.gateway.call("CPCX", "GetLog", first)
                assert answer["status"] == "Accepted"
                await until(lambda: hold, "the upload connected to the silent server")
                second = await octt.api.post("/stations/CPCX/logs", json={})
                assert second.json()["status"] in ("AcceptedCanceled", "Uploading", "Uploaded")
                request_id = second.json()["request_id"]

                async def statuses() -> dict[int, str] | None:
                    logs = (await octt.api.get("/stations/CPCX/logs")).json()
                    found = {r["request_id"]: r["status"] for r in logs}
                    return found if found.get(request_id) == "Uploaded" else None

                found = await until(statuses, "the second log uploaded")
                assert found == {900: "AcceptedCanceled", request_id: "Uploaded"}
                sent = await messages(octt, "CPCX", "GetLog", "out")
                assert [f[3]["requestId"] for f in sent] == [request_id, 900]
    finally:
        for writer in hold:
            writer.close()
        server.close()
        await server.wait_closed()
