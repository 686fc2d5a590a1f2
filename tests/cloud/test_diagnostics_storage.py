"""Diagnostics storage (block N): monitors, monitoring reports kept part by part, log
requests and their uploads, customer information assembled from its parts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from plugstream.cloud.storage import Store
from plugstream.cloud.storage.diagnostics import COMPLETE, REQUESTED, MonitorRecord

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def part(monitor_id: int, value: float, *, evse: int | None = None) -> dict[str, object]:
    component: dict[str, object] = {"name": "EVSE" if evse else "ChargingStation"}
    if evse:
        component["evse"] = {"id": evse}
    return {
        "component": component,
        "variable": {"name": "Power"},
        "variableMonitoring": [
            {
                "id": monitor_id,
                "transaction": False,
                "value": value,
                "type": "UpperThreshold",
                "severity": 4,
            }
        ],
    }


async def test_a_monitor_set_is_kept_exactly_and_cleared(store: Store) -> None:
    monitor = MonitorRecord(7, "EVSE", "Power", "UpperThreshold", Decimal("7400.5"), 3, evse_id=1)
    await store.diagnostics.put_monitors("CP1", [monitor], T0)
    [kept] = await store.diagnostics.list_monitors("CP1")
    assert (kept.monitor_id, kept.value, kept.evse_id, kept.source) == (
        7,
        Decimal("7400.5"),
        1,
        "set",
    )
    assert kept.component() == {"name": "EVSE", "evse": {"id": 1}}
    assert await store.diagnostics.list_monitors("CP2") == []
    assert await store.diagnostics.delete_monitors("CP1", [7]) == 1
    assert await store.diagnostics.list_monitors("CP1") == []


async def test_report_parts_are_kept_as_they_arrive_and_complete_with_the_last(
    store: Store,
) -> None:
    request_id = await store.diagnostics.create_monitoring_report(
        "CP1", {"monitoringCriteria": ["ThresholdMonitoring"]}, T0
    )
    assert request_id == 1
    await store.diagnostics.set_report_status("CP1", request_id, "Accepted")
    done = await store.diagnostics.add_monitoring_report_part(
        "CP1", request_id, 0, True, T0, [part(1, 100)], T0
    )
    assert not done
    # the first part's monitor is kept already: nothing acknowledged waits for the rest
    assert [m.monitor_id for m in await store.diagnostics.list_monitors("CP1")] == [1]
    done = await store.diagnostics.add_monitoring_report_part(
        "CP1", request_id, 1, False, T0, [part(2, 200, evse=1)], T0 + timedelta(seconds=1)
    )
    assert done
    [report] = await store.diagnostics.list_monitoring_reports("CP1")
    assert (report.status, report.parts, report.completed_at) == (
        COMPLETE,
        2,
        T0 + timedelta(seconds=1),
    )
    monitors = await store.diagnostics.list_monitors("CP1")
    assert [(m.monitor_id, m.source, m.request_id) for m in monitors] == [
        (1, "report", 1),
        (2, "report", 1),
    ]


async def test_a_complete_report_of_every_monitor_forgets_those_the_station_no_longer_has(
    store: Store,
) -> None:
    gone = MonitorRecord(9, "ChargingStation", "Power", "Delta", Decimal(50), 5)
    await store.diagnostics.put_monitors("CP1", [gone], T0)
    request_id = await store.diagnostics.create_monitoring_report("CP1", {}, T0)
    await store.diagnostics.add_monitoring_report_part(
        "CP1", request_id, 0, False, T0, [part(1, 10)], T0
    )
    assert [m.monitor_id for m in await store.diagnostics.list_monitors("CP1")] == [1]


async def test_a_part_missing_keeps_the_report_incomplete(store: Store) -> None:
    request_id = await store.diagnostics.create_monitoring_report("CP1", {}, T0)
    assert not await store.diagnostics.add_monitoring_report_part(
        "CP1", request_id, 1, False, T0, [part(2, 1)], T0
    )
    assert await store.diagnostics.add_monitoring_report_part(
        "CP1", request_id, 0, True, T0, [part(1, 1)], T0
    )


async def test_log_requests_take_their_status_and_one_upload_per_token(store: Store) -> None:
    first = await store.diagnostics.create_log_request("CP1", "DiagnosticsLog", "t" * 40, T0)
    second = await store.diagnostics.create_log_request("CP1", "SecurityLog", "u" * 40, T0)
    assert (first, second) == (1, 2)
    # a LogStatusNotification may come before the GetLog's answer is written
    await store.diagnostics.log_status("CP1", first, "Uploading", T0 + timedelta(seconds=1))
    await store.diagnostics.log_answered("CP1", first, "Accepted", "cp1.log", T0)
    found = await store.diagnostics.get_log("CP1", first)
    assert found is not None and (found.status, found.filename) == ("Uploading", "cp1.log")
    kept = await store.diagnostics.log_uploaded(
        "t" * 40, filename="cp1.log", size=12, sha256="ab" * 32, at=T0
    )
    assert kept is not None and (kept.upload_size, kept.token) == (12, None)
    assert await store.diagnostics.log_by_token("t" * 40) is None  # spent
    assert (
        await store.diagnostics.log_uploaded("t" * 40, filename=None, size=1, sha256="", at=T0)
        is None
    )
    # a refused GetLog gives up its token: nothing will be uploaded for it
    await store.diagnostics.log_answered("CP1", second, "Rejected", None, T0)
    assert await store.diagnostics.log_by_token("u" * 40) is None
    # a requestId the cloud never sent still gets its status kept
    await store.diagnostics.log_status("CP1", 77, "UploadFailure", T0)
    assert [r.request_id for r in await store.diagnostics.list_logs("CP1")] == [77, 2, 1]


async def test_customer_information_is_assembled_in_seq_no_order(store: Store) -> None:
    token = {"idToken": {"idToken": "ABC", "type": "ISO14443"}}
    request_id = await store.diagnostics.create_customer_request(
        "CP1", report=True, clear=True, customer=token, at=T0
    )
    [record] = await store.diagnostics.list_customer_requests("CP1")
    assert (record.status, record.data, record.customer) == (REQUESTED, None, token)
    await store.diagnostics.customer_answered("CP1", request_id, "Accepted")
    assert (
        await store.diagnostics.add_customer_part("CP1", request_id, 0, True, T0, "first ", T0)
        is None
    )
    [record] = await store.diagnostics.list_customer_requests("CP1")
    assert (record.status, record.parts) == ("Accepted", 1)
    done = await store.diagnostics.add_customer_part("CP1", request_id, 1, False, T0, "second", T0)
    assert done is not None
    assert (done.status, done.data, done.parts, done.clear) == (COMPLETE, "first second", 2, True)


async def test_customer_parts_of_a_request_not_sent_here_are_kept_too(store: Store) -> None:
    done = await store.diagnostics.add_customer_part("CP1", 5, 0, False, T0, "data", T0)
    assert done is not None and done.data == "data" and done.customer == {}
