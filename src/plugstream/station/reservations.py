"""Reservations on a 2.0.1 station (H01-H04): ReserveNow, CancelReservation and what a
reservation's end tells the CSMS.

The connector (:class:`~plugstream.station.connector.Connector`) holds the reservation
and its status (Reserved), lets only the reserved idToken start, and ends it -- on the
station clock at its expiry (``tick``), on a fault or Unavailable, or when the reserved
idToken is authorized. :class:`StationReservations` answers the CSMS and reports each
end: a ReservationStatusUpdate for Expired and Removed (H01.FR.16, H01.FR.17, H04), and
for Used the ``reservationId`` in the TransactionEvent Started that follows
(H01.FR.15).
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, Protocol

from plugstream.ocpp import on, v201
from plugstream.ocpp.datetimes import parse_time
from plugstream.station.connector import (
    Action,
    Connector,
    ReservationEnded,
    ReservationEndReason,
)

__all__ = ["ReservationHandlers201", "ReservingStation", "StationReservations"]

log = logging.getLogger("plugstream.station")

#: the reasons a ReservationStatusUpdate tells (ReservationUpdateStatusEnumType)
_REPORTED = frozenset({ReservationEndReason.EXPIRED, ReservationEndReason.REMOVED})


class ReservingStation(Protocol):
    """What reservations need of the station."""

    @property
    def connector(self) -> Connector: ...

    @property
    def config(self) -> Any: ...  # the 2.0.1 device model

    def now(self) -> datetime: ...

    def emit(self, actions: list[Action]) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...

    async def call_quietly(self, action: str, payload: dict[str, Any]) -> None: ...


class StationReservations:
    """The reservation side of one station (one EVSE, ``evse_id``)."""

    def __init__(self, station: ReservingStation, evse_id: int) -> None:
        self.station = station
        self.evse_id = evse_id
        #: the reservation the reserved idToken just used, for the TransactionEvent Started
        self.used: int | None = None

    def reserve_now(self, payload: v201.ReserveNowRequest) -> v201.ReserveNowStatusEnumType:
        st = self.station
        if not st.config.get_bool("ReservationCtrlr", "Enabled"):
            return "Rejected"  # H01.FR.01
        evse_id = payload.get("evseId")
        if evse_id is not None and evse_id != self.evse_id:
            return "Rejected"  # no such EVSE
        now = st.now()
        try:
            expiry = parse_time(payload["expiryDateTime"])
        except ValueError:
            return "Rejected"
        if expiry <= now:
            return "Rejected"
        group = payload.get("groupIdToken")
        reply = st.connector.reserve(
            payload["id"],
            payload["idToken"]["idToken"],
            expiry,
            now,
            parent_id_tag=group["idToken"] if group is not None else None,
        )
        st.emit(reply.actions)  # Reserved (H01.FR.23)
        return reply.status.value

    def cancel(self, reservation_id: int) -> v201.CancelReservationStatusEnumType:
        st = self.station
        reply = st.connector.cancel_reservation(reservation_id, st.now())
        st.emit(reply.actions)
        return reply.status.value

    def ended(self, ended: ReservationEnded) -> None:
        """A reservation ended in the connector: tell the CSMS the way the spec says."""
        if ended.reason is ReservationEndReason.USED:
            self.used = ended.reservation_id
        elif ended.reason in _REPORTED:
            log.info("reservation %s %s", ended.reservation_id, ended.reason.value)
            self.station.spawn(
                self.station.call_quietly(
                    "ReservationStatusUpdate",
                    {
                        "reservationId": ended.reservation_id,
                        "reservationUpdateStatus": ended.reason.value,
                    },
                )
            )

    def on_transaction_event(self, payload: dict[str, Any]) -> None:
        """A TransactionEvent about to be journalled: the Started one after the reserved
        idToken was authorized names the reservation (H01.FR.15)."""
        if payload.get("eventType") == "Started" and self.used is not None:
            payload["reservationId"] = self.used
            self.used = None


class ReservationHandlers201:
    """ReserveNow and CancelReservation (H01, H02), answered from ``reservations``."""

    station: Any  # the Station201, whose ``reservations`` is a StationReservations

    @on(v201.Action.ReserveNow)
    def reserve_now(self, payload: v201.ReserveNowRequest) -> v201.ReserveNowResponse:
        reservations: StationReservations = self.station.reservations
        return {"status": reservations.reserve_now(payload)}

    @on(v201.Action.CancelReservation)
    def cancel_reservation(
        self, payload: v201.CancelReservationRequest
    ) -> v201.CancelReservationResponse:
        reservations: StationReservations = self.station.reservations
        return {"status": reservations.cancel(payload["reservationId"])}
