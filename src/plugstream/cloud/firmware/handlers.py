"""Firmware status from stations, and the updates they missed while away.

Each FirmwareStatusNotification moves the rollout target it is about: the one of
(station, requestId) (2.0.1 L01.FR.10: every notification of an update carries the
requestId of its UpdateFirmwareRequest; 1.6 SignedFirmwareStatusNotification likewise),
or without a requestId (a plain 1.6 FirmwareStatusNotification) the station's newest
target. ``Idle`` says no update is running (L01.FR.20, L01.FR.25, e.g. the answer to a
TriggerMessage after Installed): it does not overwrite the outcome of the last one.

After a station's BootNotification is Accepted, the newest update it missed while it was
offline is sent to it (:func:`plugstream.cloud.firmware.rollouts.send_pending`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from plugstream.cloud.firmware.rollouts import send_pending
from plugstream.cloud.station_handlers import StationHandlers
from plugstream.ocpp import after, on, v16, v201

log = logging.getLogger(__name__)

IDLE = "Idle"


class _FirmwareStatus(StationHandlers):
    """What both versions share."""

    async def _firmware_status(self, payload: Mapping[str, Any]) -> None:
        status = payload.get("status")
        if not isinstance(status, str):
            return
        if status == IDLE:
            return  # no update running: says nothing about how the last one ended
        request_id = payload.get("requestId")
        if not isinstance(request_id, int) or isinstance(request_id, bool):
            request_id = None
        found = await self.context.store.firmware.record_status(
            self.station_id, request_id, status, self.now()
        )
        if found is None:
            log.info(
                "%s reports firmware %s for requestId %s, which no rollout sent",
                self.station_id,
                status,
                request_id,
            )

    async def _send_missed_update(self) -> None:
        """Run after the answer to a BootNotification: an Accepted station gets the newest
        update it missed (a Pending or Rejected one may not be sent anything yet)."""
        if not self.accepted:
            return
        context = self.context
        await send_pending(
            context.commands, context.store, context.config, self.station_id, self.now()
        )


class FirmwareStatus16(_FirmwareStatus):
    """1.6 SignedFirmwareStatusNotification / FirmwareStatusNotification."""

    @on(v16.Action.SignedFirmwareStatusNotification)
    async def signed_firmware_status_notification(
        self, payload: v16.SignedFirmwareStatusNotificationRequest
    ) -> v16.SignedFirmwareStatusNotificationResponse:
        await self._firmware_status(payload)
        return {}

    @on(v16.Action.FirmwareStatusNotification)
    async def firmware_status_notification(
        self, payload: v16.FirmwareStatusNotificationRequest
    ) -> v16.FirmwareStatusNotificationResponse:
        await self._firmware_status(payload)
        return {}

    @after(v16.Action.BootNotification)
    async def firmware_after_boot(self, payload: v16.BootNotificationRequest) -> None:
        await self._send_missed_update()


class FirmwareStatus201(_FirmwareStatus):
    """2.0.1 FirmwareStatusNotification."""

    @on(v201.Action.FirmwareStatusNotification)
    async def firmware_status_notification(
        self, payload: v201.FirmwareStatusNotificationRequest
    ) -> v201.FirmwareStatusNotificationResponse:
        await self._firmware_status(payload)
        return {}

    @after(v201.Action.BootNotification)
    async def firmware_after_boot(self, payload: v201.BootNotificationRequest) -> None:
        await self._send_missed_update()
