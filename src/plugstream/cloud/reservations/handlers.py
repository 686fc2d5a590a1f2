"""What a 2.0.1 station tells of the reservations it holds (H01, H04; TC_H_07_CSMS,
TC_H_20_CSMS): a ReservationStatusUpdate ends one (Expired, Removed) and is stored
before it is answered; a TransactionEvent with a ``reservationId`` says it was used
(H01.FR.15).
"""

from __future__ import annotations

import logging

from plugstream.cloud.station_handlers import StationHandlers
from plugstream.ocpp import after, on, v201

__all__ = ["USED", "ReservationHandlers201"]

log = logging.getLogger(__name__)

#: a transaction started with the reservation (H03.FR.09)
USED = "Used"


class ReservationHandlers201(StationHandlers):
    """ReservationStatusUpdate, and the reservationId of a TransactionEvent."""

    @on(v201.Action.ReservationStatusUpdate)
    async def reservation_status_update(
        self, payload: v201.ReservationStatusUpdateRequest
    ) -> v201.ReservationStatusUpdateResponse:
        reservation_id = payload["reservationId"]
        status = payload["reservationUpdateStatus"]
        found = await self.context.store.reservations.set_status(
            reservation_id, status, self.now(), station_id=self.station_id
        )
        if found is None:  # kept in the message log all the same
            log.info(
                "%s reports reservation %s %s, which the cloud did not make for it",
                self.station_id,
                reservation_id,
                status,
            )
        return {}

    @after(v201.Action.TransactionEvent)
    async def reservation_used(self, payload: v201.TransactionEventRequest) -> None:
        """Run once the event (in the message log and the transaction) is stored."""
        reservation_id = payload.get("reservationId")
        if not isinstance(reservation_id, int) or isinstance(reservation_id, bool):
            return
        info = payload.get("transactionInfo")
        transaction_id = info.get("transactionId") if isinstance(info, dict) else None
        await self.context.store.reservations.set_status(
            reservation_id,
            USED,
            self.now(),
            station_id=self.station_id,
            transaction_id=transaction_id if isinstance(transaction_id, str) else None,
        )
