"""NotifyReport and NotifyEvent from a 2.0.1 station, kept before they are answered.

NotifyReport (B07/B08): every part, whatever its ``tbc``, ``requestId`` and ``seqNo``,
is stored as the station's device model (one row per attribute, updated in place by a
later report) and counted for its request (:mod:`plugstream.cloud.storage.device_model`).
NotifyEvent (N07/N08): each eventData is kept as a station event, and its ``actualValue``
becomes the variable's Actual value.

The methods are named after the feature, not the action: they must be found in place of
:class:`~plugstream.cloud.handlers201.Csms201`'s own placeholders.
"""

from __future__ import annotations

from collections.abc import Sequence

from plugstream.cloud.device_model import model
from plugstream.cloud.payloads import int_or
from plugstream.cloud.station_handlers import StationHandlers
from plugstream.ocpp import on, v201

__all__ = ["DeviceModelHandlers201"]


class DeviceModelHandlers201(StationHandlers):
    """The device model and events of a 2.0.1 station."""

    @on(v201.Action.NotifyReport)
    async def record_notify_report(
        self, payload: v201.NotifyReportRequest
    ) -> v201.NotifyReportResponse:
        report_data = payload.get("reportData")
        items = len(report_data) if isinstance(report_data, Sequence) else 0
        await self.context.store.device_model.add_report(
            self.station_id,
            int_or(payload.get("requestId"), 0),
            seq_no=int_or(payload.get("seqNo"), 0),
            tbc=payload.get("tbc") is True,
            attributes=model.report_attributes(report_data),
            items=items,
            at=self.now(),
        )
        return {}

    @on(v201.Action.NotifyEvent)
    async def record_notify_event(
        self, payload: v201.NotifyEventRequest
    ) -> v201.NotifyEventResponse:
        now = self.now()
        await self.context.store.device_model.add_events(
            self.station_id, model.events(payload.get("eventData"), now), now
        )
        return {}
