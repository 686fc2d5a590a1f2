"""The base of the CSMS handlers of every OCPP version, and of the mixins they are made of
(certificates, firmware status, security events): one station's connection, the
:class:`~plugstream.cloud.context.HandlerContext` it works in, and the boot gate.

Boot gate (2.0.1 B02.FR.09, B03.FR.07, TC_B_30_CSMS; 1.6 §4.2): until the station's
BootNotification has been Accepted on this connection, any other CALL from it is answered
with CALLERROR SecurityError. A station that reconnects without a new BootNotification is
let through when the store shows it booted before: OCPP-J 1.6 §5.4 tells a charge point
not to send a BootNotification after a mere reconnect "unless one or more of the elements
in the (previous) BootNotification.req PDU have changed".
"""

from __future__ import annotations

from datetime import datetime

from plugstream.cloud.context import HandlerContext
from plugstream.ocpp import ErrorCode, Handlers, OcppError

__all__ = ["BOOT", "PENDING_ALLOWED", "StationHandlers"]

BOOT = "BootNotification"
# What a Pending station may still send: the reports the CSMS asks for while it
# holds the station back (2.0.1 B02.FR.09 lets triggered and requested reports through).
PENDING_ALLOWED = frozenset({"NotifyReport"})


class StationHandlers(Handlers):
    """The connection's state that every version and mixin shares: who, the context, and
    the boot gate. A mixin derives from this class to use what it holds."""

    def __init__(self, station_id: str, context: HandlerContext) -> None:
        self.station_id = station_id
        self.context = context
        self.accepted = False  # a BootNotification was Accepted, or the station booted before
        self.boot_status: str | None = None  # the answer to this connection's BootNotification

    def now(self) -> datetime:
        return self.context.clock()

    async def boot_decision(self) -> tuple[str, int]:
        """The status and interval to answer a BootNotification with: the station's
        registered boot status, and the heartbeat interval only once it is Accepted."""
        status = await self.context.store.stations.get_boot_status(self.station_id) or "Accepted"
        self.boot_status = status
        self.accepted = status == "Accepted"
        config = self.context.config
        interval = config.heartbeat_interval if self.accepted else config.boot_retry_interval
        return status, interval

    async def before_call(self, action: str) -> None:
        if self.accepted or action == BOOT:
            return
        if self.boot_status == "Pending" and action in PENDING_ALLOWED:
            return
        if self.boot_status is None:  # no BootNotification on this connection: a reconnect?
            station = await self.context.store.stations.get(self.station_id)
            if (
                station is not None
                and station.last_boot is not None
                and station.boot_status == "Accepted"
            ):
                self.accepted = True  # it booted before, on an earlier connection
                return
        held = f" (it was answered {self.boot_status})" if self.boot_status else ""
        raise OcppError(
            ErrorCode.SecurityError,
            f"{action} before an accepted BootNotification{held}",
        )
