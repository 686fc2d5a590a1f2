"""The availability of a 2.0.1 station in its device model, and a NotifyEvent per change.

``AvailabilityState`` of a Connector and of its EVSE replicates the ConnectorStatus of
StatusNotification (part 2, 2.13.2; this station has one connector per EVSE, so the two
are the same). The device model reads it live from the connector: GetVariables and a
SummaryInventory report (B07.FR.09) tell what the station is now, not the factory's
"Available". Each change the station reports with StatusNotification it also reports
with NotifyEvent, trigger Delta, for the Connector and the EVSE (G01.FR.03 to FR.07 name
that event as StatusNotification's equivalent; the OCTT sends both after a boot): a CSMS
that keeps a device model sees the change in it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from plugstream.ocpp import OcppError
from plugstream.ocpp.datetimes import format_time
from plugstream.station.connector import StatusChanged
from plugstream.station.ports import StationPort

__all__ = ["Availability201", "availability_events"]

log = logging.getLogger("plugstream.station")

#: the EventNotificationType of a state the station's own hardware reports
HARDWIRED = "HardWiredNotification"


def availability_events(
    evse_id: int, connector_id: int, state: str, *, first_event_id: int, at: datetime
) -> list[dict[str, Any]]:
    """The EventDataType of a new AvailabilityState, for the Connector and its EVSE."""
    components = [
        {"name": "Connector", "evse": {"id": evse_id, "connectorId": connector_id}},
        {"name": "EVSE", "evse": {"id": evse_id}},
    ]
    return [
        {
            "eventId": first_event_id + n,
            "timestamp": format_time(at),
            "trigger": "Delta",
            "actualValue": state,
            "eventNotificationType": HARDWIRED,
            "component": component,
            "variable": {"name": "AvailabilityState"},
        }
        for n, component in enumerate(components)
    ]


class Availability201:
    """AvailabilityState of one connector and its EVSE: read live, reported on change."""

    def __init__(
        self, station: StationPort, evse_id: int, connector_id: int, *, notify: bool = True
    ) -> None:
        self._station = station
        self._notify = notify
        self._evse_id = evse_id
        self._connector_id = connector_id
        self._reported: str | None = None  # the state last sent in a NotifyEvent
        self._next_event_id = 1
        config = station.config
        config.provide(
            "Connector", "AvailabilityState", self.state, evse=evse_id, connector=connector_id
        )
        config.provide("EVSE", "AvailabilityState", self.state, evse=evse_id)

    def state(self) -> str:
        """The connector's status now, as 2.0.1's ConnectorStatusEnumType."""
        return str(self._station.connector.status_201.value)

    def status_changed(self, change: StatusChanged) -> None:
        """A StatusNotification goes out for ``change``: the NotifyEvent goes with it,
        unless this state was already reported (a reconnect repeats the status)."""
        state = str(change.status_201.value)
        if not self._notify or state == self._reported or not self._station.online:
            return
        self._reported = state
        events = availability_events(
            self._evse_id,
            self._connector_id,
            state,
            first_event_id=self._next_event_id,
            at=change.timestamp,
        )
        self._next_event_id += len(events)
        payload = {
            "generatedAt": format_time(self._station.now()),
            "seqNo": 0,
            "eventData": events,
        }
        self._station.spawn(self._send(payload))

    async def _send(self, payload: dict[str, Any]) -> None:
        try:
            await self._station.call("NotifyEvent", payload)
        except OcppError as exc:
            log.info("NotifyEvent not delivered: %s", exc)
