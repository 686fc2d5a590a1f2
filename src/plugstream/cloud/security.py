"""Security events on PlugStream Cloud: what stations report with SecurityEventNotification.

The payload is the same in the 1.6 security extension (Security Whitepaper §5.15) and in
2.0.1 (A04): ``{type, timestamp, techInfo?}``. Each one is stored in the security_events
table (source "station") before the CSMS answers, so a confirmed event is never lost
(A04.FR.03: the CSMS confirms receipt; A04.FR.02: the station queues until it does), and
so is its event for the bus (kind ``security_event``, docs/events.md). The gateway's
refusals go to the same table (source "gateway"), and ``GET /api/v1/security-events``
shows both.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from plugstream.cloud.meter import parse_time_or
from plugstream.cloud.station_handlers import StationHandlers
from plugstream.ocpp import on, v16

log = logging.getLogger("plugstream.cloud.security")

__all__ = ["SecurityEventHandlers"]


class SecurityEventHandlers(StationHandlers):
    """SecurityEventNotification, the same payload in 1.6 (security extension) and 2.0.1."""

    # The action name is the same in both versions (v16.Action and v201.Action).
    @on(v16.Action.SecurityEventNotification)
    async def security_event_notification(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        kind = payload.get("type")
        tech_info = payload.get("techInfo")
        now = self.now()
        at = parse_time_or(payload.get("timestamp"), now)
        type_ = str(kind) if kind is not None else "Unknown"
        tech = str(tech_info) if tech_info is not None else None
        await self.context.store.security.add_event(self.station_id, type_, at, tech, "station")
        await self.context.events.publish(
            "security_event",
            self.station_id,
            {
                "ocppVersion": getattr(self, "ocpp_version", None),  # the handlers' class's
                "type": type_,
                "timestamp": at,
                "techInfo": tech,
            },
        )
        log.info("station %s: security event %s (%s)", self.station_id, kind, tech_info or "")
        return {}
