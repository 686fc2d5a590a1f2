"""What a 2.0.1 station reports about diagnostics, kept before it is acknowledged.

- NotifyMonitoringReport (N02): each part as it arrives (requestId, seqNo, tbc), its
  monitors kept as the station's own (N02.FR.09: seqNo 0 is the first part).
- LogStatusNotification (N01): the status of the GetLog with that requestId (N01.FR.07).
  Without a requestId (N01.FR.13: triggered, no upload running) there is none to keep.
- NotifyCustomerInformation (N09, N10): each part as it arrives; the request's data
  assembled once every part is in. When the answer completes a *clear* of an idToken,
  the station's Local Authorization List loses that idToken too (N10.FR.02, D01): a
  Differential SendLocalList one version above the station's, naming it without
  idTokenInfo -- sent after the answer, because the station is still waiting for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from plugstream.cloud.context import CommandSender
from plugstream.cloud.meter import parse_time_or
from plugstream.cloud.station_handlers import StationHandlers
from plugstream.ocpp import after, on, v201

__all__ = ["DiagnosticsHandlers201", "remove_from_local_list"]

log = logging.getLogger(__name__)


class DiagnosticsHandlers201(StationHandlers):
    """The CSMS side of block N's station-to-CSMS messages."""

    #: the idToken whose clear just completed: removed from the station's local list
    _cleared_id_token: dict[str, Any] | None = None

    @on(v201.Action.NotifyMonitoringReport)
    async def notify_monitoring_report(
        self, payload: v201.NotifyMonitoringReportRequest
    ) -> v201.NotifyMonitoringReportResponse:
        now = self.now()
        monitor: list[Mapping[str, Any]] = [dict(m) for m in payload.get("monitor", [])]
        await self.context.store.diagnostics.add_monitoring_report_part(
            self.station_id,
            payload["requestId"],
            payload["seqNo"],
            bool(payload.get("tbc", False)),
            parse_time_or(payload.get("generatedAt"), now),
            monitor,
            now,
        )
        return {}

    @on(v201.Action.LogStatusNotification)
    async def log_status_notification(
        self, payload: v201.LogStatusNotificationRequest
    ) -> v201.LogStatusNotificationResponse:
        request_id = payload.get("requestId")
        if isinstance(request_id, int):
            await self.context.store.diagnostics.log_status(
                self.station_id, request_id, payload["status"], self.now()
            )
        return {}

    @on(v201.Action.NotifyCustomerInformation)
    async def notify_customer_information(
        self, payload: v201.NotifyCustomerInformationRequest
    ) -> v201.NotifyCustomerInformationResponse:
        now = self.now()
        done = await self.context.store.diagnostics.add_customer_part(
            self.station_id,
            payload["requestId"],
            payload["seqNo"],
            bool(payload.get("tbc", False)),
            parse_time_or(payload.get("generatedAt"), now),
            payload["data"],
            now,
        )
        token = None if done is None else done.customer.get("idToken")
        if done is not None and done.clear and isinstance(token, Mapping):
            self._cleared_id_token = dict(token)
        return {}

    @after(v201.Action.NotifyCustomerInformation)
    async def customer_information_done(
        self, payload: v201.NotifyCustomerInformationRequest
    ) -> None:
        token, self._cleared_id_token = self._cleared_id_token, None
        if token is not None:
            await remove_from_local_list(self.context.commands, self.station_id, token)


async def remove_from_local_list(
    commands: CommandSender, station_id: str, id_token: dict[str, Any]
) -> None:
    """N10.FR.02: a Differential SendLocalList one version above the station's that names
    ``id_token`` without idTokenInfo (D01: that removes it). A station without a list
    (version 0) is left alone; a failure is logged, the clear itself stands."""
    try:
        answer = await commands.call(station_id, "GetLocalListVersion", {})
        version = int(answer.get("versionNumber", 0))
        if version <= 0:
            return
        result = await commands.call(
            station_id,
            "SendLocalList",
            {
                "versionNumber": version + 1,
                "updateType": "Differential",
                "localAuthorizationList": [{"idToken": id_token}],
            },
        )
        log.info("%s: cleared idToken removed from its local list: %s", station_id, result)
    except Exception as exc:  # a CALLERROR, no answer, offline: logged, not fatal
        log.warning("%s: local list not updated after a clear: %s", station_id, exc)
