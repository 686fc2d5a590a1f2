"""A 2.0.1 station's NotifyDisplayMessages (O03, O04; TC_O_02_CSMS, TC_O_07_CSMS to
TC_O_09_CSMS): each part of the answer to a GetDisplayMessages is stored before it is
answered, and the request is complete with the part whose ``tbc`` is not true.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from plugstream.cloud.station_handlers import StationHandlers
from plugstream.ocpp import on, v201

__all__ = ["DisplayMessageHandlers201"]

log = logging.getLogger(__name__)


class DisplayMessageHandlers201(StationHandlers):
    """NotifyDisplayMessages."""

    @on(v201.Action.NotifyDisplayMessages)
    async def notify_display_messages(
        self, payload: v201.NotifyDisplayMessagesRequest
    ) -> v201.NotifyDisplayMessagesResponse:
        request_id = payload["requestId"]
        messages = [dict(m) for m in payload.get("messageInfo", []) if isinstance(m, Mapping)]
        request = await self.context.store.display_messages.report(
            self.station_id,
            request_id,
            messages,
            tbc=bool(payload.get("tbc", False)),
            at=self.now(),
        )
        if request is None:
            log.info(
                "%s reports %d display messages for requestId %s, which the cloud did not send",
                self.station_id,
                len(messages),
                request_id,
            )
        return {}
