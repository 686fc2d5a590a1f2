"""DataTransfer for operators (2.0.1 P01, P02):

- ``GET /data-transfer/vendors``: the vendorIds and messageIds the cloud answers when a
  station sends them (:mod:`.registry`); any other gets UnknownVendorId or
  UnknownMessageId.
- ``POST /stations/{id}/data-transfer`` ``{"vendor_id", "message_id"?, "data"?}``: one
  DataTransfer to a connected 2.0.1 station; 200 with its answer (status, data). 409
  when it is not connected, 504 / 502 when it does not answer or refuses. The CALL and
  its answer are in the station's message log.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field

from plugstream.cloud.api.common import StoreDep, guarded_router
from plugstream.cloud.api.deps import GatewayDep
from plugstream.cloud.api.station_calls import (
    CALL_RESPONSES,
    CallFailed,
    call_station,
    connected_station,
)
from plugstream.cloud.data_transfer.registry import VENDORS

__all__ = ["router"]

router = guarded_router(tags=["data transfer"])


class VendorOut(BaseModel):
    vendor_id: str
    message_ids: list[str | None] = Field(
        description="The messageIds answered; null: a DataTransfer without one."
    )


class DataTransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vendor_id: str = Field(min_length=1, max_length=255)
    message_id: str | None = Field(default=None, min_length=1, max_length=50)
    data: Any = Field(default=None, description="Any JSON; omitted when null.")


class DataTransferOut(BaseModel):
    status: Literal["Accepted", "Rejected", "UnknownMessageId", "UnknownVendorId"]
    data: Any = None
    status_info: dict[str, Any] | None = Field(default=None, description="statusInfo, if any.")


@router.get("/data-transfer/vendors", response_model=list[VendorOut])
async def list_vendors() -> list[VendorOut]:
    return [VendorOut(vendor_id=v, message_ids=m) for v, m in VENDORS.vendors().items()]


@router.post(
    "/stations/{station_id}/data-transfer",
    response_model=DataTransferOut,
    responses=CALL_RESPONSES,
)
async def send_data_transfer(
    station_id: str, body: DataTransferIn, store: StoreDep, gateway: GatewayDep
) -> DataTransferOut | Response:
    """Send a connected 2.0.1 station one DataTransfer; its answer."""
    await connected_station(store, gateway, station_id)
    payload: dict[str, Any] = {"vendorId": body.vendor_id}
    if body.message_id is not None:
        payload["messageId"] = body.message_id
    if body.data is not None:
        payload["data"] = body.data
    try:
        answer = await call_station(gateway, station_id, "DataTransfer", payload)
    except CallFailed as failed:
        return failed.response
    return DataTransferOut(
        status=answer["status"], data=answer.get("data"), status_info=answer.get("statusInfo")
    )
