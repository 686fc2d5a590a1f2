"""A 2.0.1 station's DataTransfer (P02): answered by the registered vendor handler, or
UnknownVendorId / UnknownMessageId (P02.FR.06, P02.FR.07; TC_P_02_CSMS).

The request is kept whole in the message log (the gateway commits its row before the
answer is sent), so nothing more is written here; a vendor handler that keeps data of
its own awaits its write before it returns.
"""

from __future__ import annotations

import logging

from plugstream.cloud.data_transfer.registry import VENDORS, VendorRequest
from plugstream.cloud.station_handlers import StationHandlers
from plugstream.ocpp import on, v201

__all__ = ["DataTransferHandlers201"]

log = logging.getLogger(__name__)


class DataTransferHandlers201(StationHandlers):
    """DataTransfer from a 2.0.1 station."""

    @on(v201.Action.DataTransfer)
    async def data_transfer_201(
        self, payload: v201.DataTransferRequest
    ) -> v201.DataTransferResponse:
        message_id = payload.get("messageId")
        request = VendorRequest(
            station_id=self.station_id,
            vendor_id=payload["vendorId"],
            message_id=message_id if isinstance(message_id, str) else None,
            data=payload.get("data"),
            context=self.context,
        )
        answer = await VENDORS.handle(request)
        if answer.status in ("UnknownVendorId", "UnknownMessageId"):
            log.info(
                "%s: DataTransfer %s / %s: %s",
                self.station_id,
                request.vendor_id,
                request.message_id,
                answer.status,
            )
        return answer.payload()  # type: ignore[return-value]
