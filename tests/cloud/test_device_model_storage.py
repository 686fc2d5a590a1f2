"""The device model's storage and the reading of its messages: a NotifyReport kept per
attribute and updated in place, values from Get/SetVariables and NotifyEvent, report
requests, events newest first. On SQLite, and PostgreSQL with PLUGSTREAM_TEST_POSTGRES."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from plugstream.cloud.device_model import model
from plugstream.cloud.storage import Store
from plugstream.cloud.storage.device_model import (
    COMPLETE,
    REQUESTED,
    ComponentVariable,
    report_status,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
SID = "CS-DM-1"

HEARTBEAT = {
    "component": {"name": "OCPPCommCtrlr"},
    "variable": {"name": "HeartbeatInterval"},
    "variableAttribute": [
        {"type": "Actual", "value": "300", "mutability": "ReadWrite", "persistent": True},
        {"type": "MinSet", "value": "10", "mutability": "ReadOnly", "constant": True},
    ],
    "variableCharacteristics": {
        "dataType": "integer",
        "unit": "s",
        "minLimit": 1,
        "maxLimit": 86400.5,
        "supportsMonitoring": True,
    },
}
CONNECTOR_STATE = {
    "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
    "variable": {"name": "AvailabilityState"},
    "variableAttribute": [{"type": "Actual", "value": "Available", "mutability": "ReadOnly"}],
    "variableCharacteristics": {
        "dataType": "OptionList",
        "valuesList": "Available,Occupied,Reserved,Unavailable,Faulted",
        "supportsMonitoring": False,
    },
}
PASSWORD = {
    "component": {"name": "SecurityCtrlr"},
    "variable": {"name": "BasicAuthPassword"},
    "variableAttribute": [{"type": "Actual", "mutability": "WriteOnly"}],
    "variableCharacteristics": {"dataType": "string", "supportsMonitoring": False},
}
HB_KEY = ComponentVariable("OCPPCommCtrlr", "HeartbeatInterval")
CONNECTOR_KEY = ComponentVariable("Connector", "AvailabilityState", evse_id=1, connector_id=1)


async def whole_report(
    store: Store, request_id: int, entries: list[dict[str, Any]], at: datetime = T0
) -> None:
    """A NotifyReport of ``entries`` for ``request_id`` in one part (seqNo 0, no tbc)."""
    await store.device_model.add_report(
        SID,
        request_id,
        seq_no=0,
        tbc=False,
        attributes=model.report_attributes(entries),
        items=len(entries),
        at=at,
    )


def test_a_report_entry_is_read_as_one_row_per_attribute_with_its_characteristics() -> None:
    rows = model.report_attributes([HEARTBEAT, CONNECTOR_STATE])
    assert [(r.key, r.attribute_type, r.value) for r in rows] == [
        (HB_KEY, "Actual", "300"),
        (HB_KEY, "MinSet", "10"),
        (CONNECTOR_KEY, "Actual", "Available"),
    ]
    c = rows[0].characteristics
    assert c is not None
    assert (c.data_type, c.unit, c.min_limit, c.max_limit, c.supports_monitoring) == (
        "integer",
        "s",
        Decimal(1),
        Decimal("86400.5"),
        True,
    )
    assert (rows[0].mutability, rows[0].persistent, rows[1].constant) == ("ReadWrite", True, True)


def test_requests_are_split_into_items_per_message() -> None:
    assert [list(c) for c in model.chunks([1, 2, 3, 4, 5], 4)] == [[1, 2, 3, 4], [5]]
    assert [list(c) for c in model.chunks([1, 2, 3], None)] == [[1, 2, 3]]


def test_a_key_goes_to_ocpp_and_back() -> None:
    for key in (HB_KEY, CONNECTOR_KEY, ComponentVariable("EVSE", "Power", "a", 2, 0, "b")):
        assert model.key_of(model.component_json(key), model.variable_json(key)) == key


async def test_a_report_in_parts_is_kept_and_its_request_completes(store: Store) -> None:
    dm = store.device_model
    request_id = await dm.begin_report(SID, "FullInventory", T0)
    assert (await dm.begin_report(SID, "SummaryInventory", T0)) == request_id + 1
    await dm.report_answered(SID, request_id, "Accepted", T0)
    await dm.add_report(
        SID,
        request_id,
        seq_no=0,
        tbc=True,
        attributes=model.report_attributes([HEARTBEAT]),
        items=1,
        at=T0,
    )
    part = await dm.get_report(SID, request_id)
    assert part is not None and (part.status, part.parts, part.items) == ("Receiving", 1, 1)
    await dm.add_report(
        SID,
        request_id,
        seq_no=1,
        tbc=False,
        attributes=model.report_attributes([CONNECTOR_STATE, PASSWORD]),
        items=2,
        at=T0,
    )
    done = await dm.get_report(SID, request_id)
    assert done is not None and (done.status, done.parts, done.items) == (COMPLETE, 2, 3)
    assert done.report_base == "FullInventory" and done.requested_at == T0
    assert done.final_seq_no == 1

    rows = await dm.variables(SID)
    assert {
        (r.attribute.key.variable, r.attribute.attribute_type): r.attribute.value for r in rows
    } == {
        ("AvailabilityState", "Actual"): "Available",
        ("BasicAuthPassword", "Actual"): None,
        ("HeartbeatInterval", "Actual"): "300",
        ("HeartbeatInterval", "MinSet"): "10",
    }
    only = await dm.variables(SID, component="ocppcommctrlr", variable="HEARTBEATINTERVAL")
    assert len(only) == 2
    assert await dm.variables("CS-OTHER") == []


async def test_a_report_missing_a_part_is_incomplete(store: Store) -> None:
    dm = store.device_model
    request_id = await dm.begin_report(SID, "FullInventory", T0)
    for seq_no in (0, 2):  # part 1 never came
        await dm.add_report(
            SID, request_id, seq_no=seq_no, tbc=seq_no < 2, attributes=[], items=0, at=T0
        )
    report = await dm.get_report(SID, request_id)
    assert report is not None
    assert (report.status, report.parts, report.final_seq_no) == ("Incomplete", 2, 2)
    assert report_status(3, 2) == COMPLETE and report_status(1, None) == "Receiving"


async def test_a_complete_full_inventory_drops_what_the_station_no_longer_has(
    store: Store,
) -> None:
    dm = store.device_model
    await whole_report(store, 0, [HEARTBEAT, PASSWORD])
    later = T0 + timedelta(hours=1)
    summary = await dm.begin_report(SID, "SummaryInventory", later)
    await whole_report(store, summary, [CONNECTOR_STATE], at=later)
    assert len(await dm.variables(SID)) == 4  # a summary replaces nothing
    full = await dm.begin_report(SID, "FullInventory", later)
    for seq_no, part in enumerate(([HEARTBEAT], [CONNECTOR_STATE])):
        await dm.add_report(
            SID,
            full,
            seq_no=seq_no,
            tbc=seq_no == 0,
            attributes=model.report_attributes(part),
            items=1,
            at=later,
        )
    assert {r.attribute.key.variable for r in await dm.variables(SID)} == {
        "HeartbeatInterval",
        "AvailabilityState",
    }  # BasicAuthPassword is no longer reported: gone


async def test_the_answer_does_not_undo_a_report_that_came_first(store: Store) -> None:
    dm = store.device_model
    request_id = await dm.begin_report(SID, None, T0)
    assert (await dm.get_report(SID, request_id)).status == REQUESTED  # type: ignore[union-attr]
    await dm.add_report(SID, request_id, seq_no=0, tbc=False, attributes=[], items=0, at=T0)
    await dm.report_answered(SID, request_id, "Accepted", T0)
    assert (await dm.get_report(SID, request_id)).status == COMPLETE  # type: ignore[union-attr]


async def test_a_later_report_updates_the_rows_in_place(store: Store) -> None:
    dm = store.device_model
    await whole_report(store, 7, [HEARTBEAT])
    changed = dict(HEARTBEAT, variableAttribute=[{"type": "Actual", "value": "60"}])
    later = T0 + timedelta(minutes=1)
    await whole_report(store, 8, [changed], at=later)
    rows = await dm.variables(SID, variable="HeartbeatInterval")
    assert [(r.attribute.attribute_type, r.attribute.value, r.updated_at) for r in rows] == [
        ("Actual", "60", later),
        ("MinSet", "10", T0),
    ]
    # a report nobody here asked for is still counted under its requestId
    unasked = await dm.get_report(SID, 8)
    assert unasked is not None and unasked.requested_at is None and unasked.status == COMPLETE


async def test_values_from_get_and_set_variables_find_their_row_in_any_case(store: Store) -> None:
    dm = store.device_model
    await whole_report(store, 1, [HEARTBEAT, PASSWORD])
    asked = ComponentVariable("ocppcommctrlr", "heartbeatinterval")
    new_key = ComponentVariable("AuthCtrlr", "AuthorizeRemoteStart")
    password = ComponentVariable("SecurityCtrlr", "BasicAuthPassword")
    await dm.set_values(
        SID,
        [(asked, "Actual", "123"), (new_key, "Actual", "false"), (password, "Actual", "s3cret")],
        "SetVariables",
        T0,
    )
    rows = {
        (r.attribute.key.component, r.attribute.key.variable): r
        for r in await dm.variables(SID)
        if r.attribute.attribute_type == "Actual"
    }
    hb = rows["OCPPCommCtrlr", "HeartbeatInterval"]
    assert (hb.attribute.value, hb.source) == ("123", "SetVariables")
    assert hb.attribute.characteristics is not None  # kept from the report
    assert rows["AuthCtrlr", "AuthorizeRemoteStart"].attribute.value == "false"
    assert rows["SecurityCtrlr", "BasicAuthPassword"].attribute.value is None  # never kept
    assert await dm.value(SID, asked) == "123"


async def test_events_are_kept_newest_first_and_set_the_actual_value(store: Store) -> None:
    dm = store.device_model
    await whole_report(store, 1, [CONNECTOR_STATE])
    first = model.events(
        [
            {
                "eventId": 1,
                "timestamp": "2026-12-05T10:00:00Z",
                "trigger": "Delta",
                "actualValue": "Occupied",
                "eventNotificationType": "HardWiredNotification",
                "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                "variable": {"name": "AvailabilityState"},
            }
        ],
        T0,
    )
    second = model.events(
        [
            {
                "eventId": 2,
                "timestamp": "2026-12-05T10:01:00Z",
                "trigger": "Alerting",
                "actualValue": "true",
                "cleared": True,
                "techCode": "E42",
                "techInfo": "overheated",
                "cause": 1,
                "variableMonitoringId": 5,
                "transactionId": "tx-1",
                "eventNotificationType": "CustomMonitor",
                "component": {"name": "EVSE", "evse": {"id": 1}},
                "variable": {"name": "Problem"},
            }
        ],
        T0,
    )
    await dm.add_events(SID, first, T0)
    await dm.add_events(SID, second, T0 + timedelta(seconds=5))
    events = await dm.events(SID)
    assert [e.event_id for e in events] == [2, 1]
    newest = events[0]
    assert (newest.cleared, newest.tech_code, newest.tech_info, newest.cause) == (
        True,
        "E42",
        "overheated",
        1,
    )
    assert (newest.variable_monitoring_id, newest.transaction_id) == (5, "tx-1")
    assert newest.timestamp == datetime(2026, 12, 5, 10, 1, tzinfo=UTC)
    assert [e.event_id for e in await dm.events(SID, trigger="Delta")] == [1]
    assert [e.event_id for e in await dm.events(SID, component="evse")] == [2]
    assert [e.event_id for e in await dm.events(SID, before_id=newest.id)] == [1]
    assert [e.event_id for e in await dm.events(SID, limit=1)] == [2]
    assert await dm.value(SID, CONNECTOR_KEY) == "Occupied"
    assert await dm.value(SID, ComponentVariable("EVSE", "Problem", evse_id=1)) == "true"
