"""Firmware published on a Local Controller (L03): the operator publishes an image of the
firmware repository on a station acting as Local Controller, which downloads it, checks
its MD5 and serves it to the stations behind it (saving the site's WAN link); later it
is unpublished.

- ``POST /api/v1/stations/{id}/firmware/publish``: PublishFirmware with the image's URL
  and MD5 (L03.FR.02) and a new requestId, recorded before it is sent; 409 if the station
  is not connected (nothing is sent, nothing kept).
- ``GET /api/v1/stations/{id}/firmware/publish[/{requestId}]``: the publications and the
  last PublishFirmwareStatusNotification of each (Published with its URIs, L03.FR.04).
- ``DELETE /api/v1/stations/{id}/firmware/publish/{requestId}``: UnpublishFirmware with
  its checksum.

The station's PublishFirmwareStatusNotification (L03.FR.01) is stored before it is
answered. ``Idle`` (L03.FR.10, the answer to a trigger after Published) says nothing
new and does not overwrite the last status.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field

from plugstream.cloud.api.common import (
    ConfigDep,
    StoreDep,
    UtcDateTime,
    guarded_router,
    responses,
)
from plugstream.cloud.api.deps import GatewayDep
from plugstream.cloud.api.limits import INTEGER_MAX
from plugstream.cloud.api.station_calls import (
    CALL_RESPONSES,
    CallFailed,
    call_station,
    require_connected,
)
from plugstream.cloud.api.stations import station_or_404
from plugstream.cloud.firmware import rollouts
from plugstream.cloud.firmware.api import IMAGE_ID, firmware_dir
from plugstream.cloud.gateway import Gateway
from plugstream.cloud.station_handlers import StationHandlers
from plugstream.cloud.storage.firmware_publications import FirmwarePublication
from plugstream.ocpp import on, v201

__all__ = ["PublishFirmwareStatus201", "router"]

log = logging.getLogger("plugstream.cloud.firmware")

IDLE = "Idle"
REQUESTED = "Requested"  # kept, PublishFirmware not answered yet
UNPUBLISHED = "Unpublished"


class PublishFirmwareStatus201(StationHandlers):
    """PublishFirmwareStatusNotification from a Local Controller (L03.FR.01)."""

    @on(v201.Action.PublishFirmwareStatusNotification)
    async def publish_firmware_status_notification(
        self, payload: v201.PublishFirmwareStatusNotificationRequest
    ) -> v201.PublishFirmwareStatusNotificationResponse:
        status = payload["status"]
        if status == IDLE:
            return {}
        request_id = payload.get("requestId")
        locations = list(payload.get("location") or []) if status == "Published" else None
        found = await self.context.store.firmware_publications.record_status(
            self.station_id, request_id, status, self.now(), locations
        )
        if found is None:
            log.info(
                "%s reports publishing %s for requestId %s, which the cloud did not send",
                self.station_id,
                status,
                request_id,
            )
        return {}


# -- REST ----------------------------------------------------------------------------------


class PublishIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_id: str = Field(pattern=IMAGE_ID.pattern, description="An image of the repository.")
    retries: int | None = Field(default=None, ge=0, le=1000)
    retry_interval: int | None = Field(default=None, ge=0, le=INTEGER_MAX, description="Seconds.")


class PublicationOut(BaseModel):
    station_id: str
    request_id: int = Field(description="requestId of the PublishFirmware.")
    image_id: str | None
    location: str = Field(description="Where the Local Controller downloads it from.")
    checksum: str = Field(description="MD5 of the image, hex (L03.FR.02).")
    status: str = Field(
        description="Requested (not answered yet), the station's answer (Accepted, Rejected; "
        "NoAnswer), then its last publishing status (Downloading, Downloaded, "
        "ChecksumVerified, Published, DownloadFailed, InvalidChecksum, PublishFailed, ...), "
        "Unpublished once unpublished."
    )
    published_locations: list[str] = Field(description="The URIs it is served at (Published).")
    requested_at: UtcDateTime
    updated_at: UtcDateTime


class UnpublishOut(BaseModel):
    station_id: str
    request_id: int
    status: str = Field(description="The station's answer: Unpublished, NoFirmware, ...")


def _out(p: FirmwarePublication) -> PublicationOut:
    return PublicationOut.model_validate(p, from_attributes=True)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _require_201(gateway: Gateway, station_id: str) -> None:
    require_connected(gateway, station_id, why="no PublishFirmware", wrong_version=422)


router = guarded_router(tags=["firmware publishing"])


@router.post(
    "/stations/{station_id}/firmware/publish",
    status_code=201,
    response_model=PublicationOut,
    responses=CALL_RESPONSES,
)
async def publish(
    station_id: str, body: PublishIn, store: StoreDep, config: ConfigDep, gateway: GatewayDep
) -> PublicationOut:
    """Publish a repository image on a Local Controller (L03): PublishFirmware with the
    image's URL and MD5. 201 with the publication and the station's answer as status."""
    await station_or_404(store, station_id)
    image = await store.firmware.get_image(body.image_id)
    if image is None:
        raise HTTPException(404, f"no firmware image {body.image_id!r}")
    path = firmware_dir(config) / f"{image.image_id}.bin"
    try:
        checksum = await asyncio.to_thread(_md5, path)
    except OSError as exc:
        raise HTTPException(409, f"image {image.image_id!r} has no file: {exc.strerror}") from None
    _require_201(gateway, station_id)
    publications = store.firmware_publications
    record = await publications.create(
        station_id,
        image_id=image.image_id,
        location=rollouts.location(config, image),
        checksum=checksum,
        status=REQUESTED,
        at=gateway.clock(),
    )
    payload: dict[str, Any] = {
        "location": record.location,
        "checksum": checksum,
        "requestId": record.request_id,
    }
    if body.retries is not None:
        payload["retries"] = body.retries
    if body.retry_interval is not None:
        payload["retryInterval"] = body.retry_interval
    try:
        answer = await call_station(gateway, station_id, "PublishFirmware", payload)
    except CallFailed as failed:
        await publications.record_status(
            station_id, record.request_id, failed.outcome, gateway.clock()
        )
        raise
    status = str(answer.get("status"))
    current = await publications.get(station_id, record.request_id)
    if current is not None and current.status == REQUESTED:
        # a notification may have come before the answer: it is newer, keep it
        current = await publications.record_status(
            station_id, record.request_id, status, gateway.clock()
        )
    return _out(current or record)


@router.get(
    "/stations/{station_id}/firmware/publish",
    response_model=list[PublicationOut],
    responses=responses(404),
)
async def list_publications(station_id: str, store: StoreDep) -> list[PublicationOut]:
    """The station's publications, newest first, with their last status."""
    await station_or_404(store, station_id)
    return [_out(p) for p in await store.firmware_publications.of_station(station_id)]


@router.get(
    "/stations/{station_id}/firmware/publish/{request_id}",
    response_model=PublicationOut,
    responses=responses(404),
)
async def get_publication(station_id: str, request_id: int, store: StoreDep) -> PublicationOut:
    found = await store.firmware_publications.get(station_id, request_id)
    if found is None:
        raise HTTPException(404, f"station {station_id!r} has no publication {request_id}")
    return _out(found)


@router.delete(
    "/stations/{station_id}/firmware/publish/{request_id}",
    response_model=UnpublishOut,
    responses=CALL_RESPONSES,
)
async def unpublish(
    station_id: str, request_id: int, store: StoreDep, gateway: GatewayDep
) -> UnpublishOut | Response:
    """UnpublishFirmware of the publication's checksum; the station's answer."""
    found = await store.firmware_publications.get(station_id, request_id)
    if found is None:
        raise HTTPException(404, f"station {station_id!r} has no publication {request_id}")
    _require_201(gateway, station_id)
    answer = await call_station(
        gateway, station_id, "UnpublishFirmware", {"checksum": found.checksum}
    )
    status = str(answer.get("status"))
    if status == UNPUBLISHED:
        await store.firmware_publications.record_status(
            station_id, request_id, UNPUBLISHED, gateway.clock()
        )
    return UnpublishOut(station_id=station_id, request_id=request_id, status=status)
