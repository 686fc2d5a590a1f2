"""AvailabilityState of a 2.0.1 station: read live from its connector by the device model
(GetVariables, the SummaryInventory report), and reported with NotifyEvent (Delta) on
each change."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from plugstream.ocpp import OcppVersion, schemas
from plugstream.station.availability import Availability201, availability_events
from plugstream.station.clock import ManualClock
from plugstream.station.connector import StatusChanged
from plugstream.station.ev import CITY_CAR, Ev
from plugstream.station.hardware import PLUGSTREAM_7
from plugstream.station.station201 import Station201

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
STATE = {"component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
         "variable": {"name": "AvailabilityState"}}  # fmt: skip


def make_station(tmp_path: Path) -> Station201:
    return Station201("PS-AV-1", PLUGSTREAM_7, tmp_path / "station", clock=ManualClock(T0))


def test_the_events_are_a_valid_notify_event_for_the_connector_and_its_evse() -> None:
    events = availability_events(1, 1, "Occupied", first_event_id=5, at=T0)
    payload = {"generatedAt": "2026-12-05T10:00:00Z", "seqNo": 0, "eventData": events}
    assert schemas(OcppVersion.V201).validate("NotifyEvent", "request", payload) is None
    assert [
        (e["eventId"], e["component"]["name"], e["trigger"], e["actualValue"]) for e in events
    ] == [
        (5, "Connector", "Delta", "Occupied"),
        (6, "EVSE", "Delta", "Occupied"),
    ]
    assert events[0]["component"]["evse"] == {"id": 1, "connectorId": 1}


def test_get_variables_and_the_summary_report_tell_the_connectors_state_now(tmp_path: Path) -> None:
    station = make_station(tmp_path)
    try:
        [before] = station.config.get_variables([STATE])
        assert before["attributeValue"] == "Available"
        station.plug_in(Ev(CITY_CAR, soc=30.0))
        [after] = station.config.get_variables([STATE])
        assert after["attributeValue"] == "Occupied"
        summary = {
            (d["component"]["name"], d["variable"]["name"]): d["variableAttribute"][0]["value"]
            for d in station.config.report("SummaryInventory")
        }
        assert summary["Connector", "AvailabilityState"] == "Occupied"
        assert summary["EVSE", "AvailabilityState"] == "Occupied"
    finally:
        station.close()


class FakePort:
    """What :class:`Availability201` uses of a station, recording the CALLs it makes."""

    def __init__(self, station: Station201) -> None:
        self.config = station.config
        self.connector = station.connector
        self.online = True
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.tasks: list[Coroutine[Any, Any, Any]] = []

    def now(self) -> datetime:
        return T0

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.tasks.append(coro)

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((action, payload))
        return {}


async def test_each_new_state_is_reported_once_and_only_online(tmp_path: Path) -> None:
    station = make_station(tmp_path)
    try:
        port = FakePort(station)
        availability = Availability201(port, 1, 1)  # type: ignore[arg-type]
        change = station.connector.current_status(T0)
        availability.status_changed(change)
        availability.status_changed(change)  # a reconnect repeats it: no second event
        station.plug_in(Ev(CITY_CAR, soc=30.0))
        occupied = station.connector.current_status(T0)
        port.online = False
        availability.status_changed(occupied)  # offline: the reconnect's status tells it
        port.online = True
        availability.status_changed(occupied)
        await asyncio.gather(*port.tasks)
        sent = [
            [(e["eventId"], e["component"]["name"], e["actualValue"]) for e in p["eventData"]]
            for action, p in port.calls
            if action == "NotifyEvent"
        ]
        assert sent == [
            [(1, "Connector", "Available"), (2, "EVSE", "Available")],
            [(3, "Connector", "Occupied"), (4, "EVSE", "Occupied")],
        ]
        assert isinstance(change, StatusChanged)
    finally:
        station.close()


async def test_by_default_a_status_change_is_told_once_with_status_notification(
    tmp_path: Path,
) -> None:
    """G01.FR.03 asks for StatusNotification OR NotifyEvent: a station on a metered link
    sends the one, unless built with ``notify_availability``."""
    station = make_station(tmp_path)
    try:
        port = FakePort(station)
        availability = Availability201(port, 1, 1, notify=False)  # type: ignore[arg-type]
        availability.status_changed(station.connector.current_status(T0))
        await asyncio.gather(*port.tasks)
        assert port.calls == []
    finally:
        station.close()
