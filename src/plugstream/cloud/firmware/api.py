"""The firmware repository's routes: signed images, their downloads, and rollouts.

Operators (bearer token, under ``/api/v1``):

- ``POST /firmware?version=V&filename=F``, the raw image as the body
  (``application/octet-stream``): streamed to disk and hashed on the way, signed with
  the PKI's Firmware Signing key (ECDSA P-256, SHA-256 over the whole file, base64;
  L01.FR.09, L01.FR.11). 201 with the image; 409 when the server has no ``--pki``;
  413 over :data:`MAX_IMAGE_BYTES`.
- ``GET /firmware``, ``GET /firmware/{image_id}``, ``DELETE /firmware/{image_id}``.
- ``POST /firmware/{image_id}/rollouts`` ``{"station_ids": [...]}`` or
  ``{"percentage": p}``, with optional ``retrieve_at``, ``install_at``, ``retries``,
  ``retry_interval``: UpdateFirmware (2.0.1) / SignedUpdateFirmware (1.6) to every
  target connected now, the others stay ``Pending`` until they boot again.
- ``GET /rollouts``, ``GET /rollouts/{rollout_id}``: each target's requestId and
  status (the answer, then each FirmwareStatusNotification) and counts by status.

Stations (no token: they have none; the image id is 128 random bits):

- ``GET`` / ``HEAD /firmware/{image_id}/{filename}``, with byte ranges
  (``Range: bytes=N-`` / ``bytes=N-M`` → 206, an unsatisfiable one → 416) so a station
  resumes a broken download where it stopped.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.engine import make_url

from plugstream.cloud.api.common import (
    ConfigDep,
    ErrorOut,
    StoreDep,
    UtcDateTime,
    UtcInput,
    guarded_router,
)
from plugstream.cloud.api.deps import GatewayDep
from plugstream.cloud.api.limits import BIGINT_MAX, INTEGER_MAX, in_range
from plugstream.cloud.config import CloudConfig
from plugstream.cloud.firmware import rollouts
from plugstream.cloud.storage import firmware as db
from plugstream.cloud.storage import normalize_url
from plugstream.pki.authority import IssuedCertificate, PKIError
from plugstream.pki.firmware import sign_digest
from plugstream.pki.keystore import PKIStore

if TYPE_CHECKING:
    from plugstream.cloud.storage import Store

__all__ = ["MAX_IMAGE_BYTES", "downloads", "firmware_dir", "router"]

MAX_IMAGE_BYTES = 1 << 30  # 1 GiB: larger uploads are refused with 413
WRITE_CHUNK = 1 << 20  # bytes gathered before each write to disk (in a worker thread)
FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
IMAGE_ID = re.compile(r"^[0-9a-f]{32}$")


def firmware_dir(config: CloudConfig) -> Path:
    """``--firmware-dir``, else ``firmware`` next to the SQLite file, else ``./firmware``."""
    if config.firmware_dir is not None:
        return config.firmware_dir
    url = make_url(normalize_url(config.db))
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(str(url.database)).parent / "firmware"
    return Path("firmware")


# -- models ---------------------------------------------------------------------------


class FirmwareImageOut(BaseModel):
    image_id: str = Field(description="128-bit random hex; part of the download URL.")
    version: str
    filename: str
    size: int = Field(description="Bytes.")
    sha256: str = Field(description="Hex SHA-256 of the whole image.")
    signature: str = Field(description="Base64 DER ECDSA P-256 signature over the SHA-256.")
    signing_certificate: str = Field(description="The Firmware Signing certificate, PEM.")
    uploaded_at: UtcDateTime
    location: str = Field(description="The URL stations download it from.")


class TargetOut(BaseModel):
    station_id: str
    request_id: int = Field(description="requestId of the UpdateFirmware sent to the station.")
    status: str = Field(
        description="Pending (not sent yet), Sending (a node is sending it now; Pending "
        "again if the station turns out to be offline), the station's answer (Accepted, Rejected, "
        "AcceptedCanceled, InvalidCertificate, RevokedCertificate; NoAnswer, CallError), "
        "then its last firmware status (Downloading … Installed, InvalidSignature …); "
        "Superseded when a newer rollout reached it first."
    )
    updated_at: UtcDateTime


class RolloutOut(BaseModel):
    rollout_id: int
    image_id: str
    created_at: UtcDateTime
    selector: dict[str, Any] = Field(description="What was asked for.")
    retrieve_at: UtcDateTime
    install_at: UtcDateTime | None
    counts: dict[str, int] = Field(description="Targets by status.")
    targets: list[TargetOut]


class RolloutIn(BaseModel):
    """Exactly one of ``station_ids`` and ``percentage``."""

    model_config = ConfigDict(extra="forbid")

    station_ids: list[str] | None = Field(default=None, min_length=1, max_length=100_000)
    percentage: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description="Of the registered stations, rounded up; the same stations each time "
        "for the same image, so a larger percentage later adds to a smaller one.",
    )
    retrieve_at: UtcInput | None = Field(default=None, description="Default: now.")
    install_at: UtcInput | None = None
    retries: int | None = Field(default=None, ge=0, le=1000)
    # retryInterval is an OCPP integer (32-bit)
    retry_interval: int | None = Field(default=None, ge=0, le=INTEGER_MAX, description="Seconds.")

    @model_validator(mode="after")
    def _one_selector(self) -> RolloutIn:
        if (self.station_ids is None) == (self.percentage is None):
            raise ValueError("give exactly one of station_ids and percentage")
        return self


def _rollout_out(r: db.Rollout) -> RolloutOut:
    counts = Counter(t.status for t in r.targets)
    return RolloutOut(
        rollout_id=r.rollout_id,
        image_id=r.image_id,
        created_at=r.created_at,
        selector=r.selector,
        retrieve_at=r.retrieve_at,
        install_at=r.install_at,
        counts=dict(sorted(counts.items())),
        targets=[
            TargetOut(
                station_id=t.station_id,
                request_id=t.request_id,
                status=t.status,
                updated_at=t.updated_at,
            )
            for t in r.targets
        ],
    )


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ErrorOut} for c in codes}


# -- upload ---------------------------------------------------------------------------


def _signer(config: CloudConfig) -> IssuedCertificate:
    if config.pki_dir is None:
        raise HTTPException(
            409,
            "firmware signing needs the PKI: start the cloud with --pki DIR "
            "(a directory made by `plugstream pki init`)",
        )
    try:
        return PKIStore(config.pki_dir).firmware_signing()
    except PKIError as exc:
        raise HTTPException(409, f"cannot sign firmware: {exc}") from exc


async def _receive(request: Request, part: Path, limit: int) -> tuple[int, bytes]:
    """Stream the body to ``part``: its size and SHA-256. Never holds more than
    :data:`WRITE_CHUNK` of it; 413 as soon as it passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the image is {declared} bytes; the limit is {limit}")
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray()
    with part.open("wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"the image is over the limit of {limit} bytes")
            digest.update(chunk)
            buffer += chunk
            if len(buffer) >= WRITE_CHUNK:
                data, buffer = bytes(buffer), bytearray()
                await asyncio.to_thread(out.write, data)
        if buffer:
            await asyncio.to_thread(out.write, bytes(buffer))
        await asyncio.to_thread(os.fsync, out.fileno())
    return size, digest.digest()


# -- the operators' routes (bearer-guarded) ------------------------------------------


def _image_out(config: CloudConfig, image: db.FirmwareImage) -> FirmwareImageOut:
    return FirmwareImageOut(
        image_id=image.image_id,
        version=image.version,
        filename=image.filename,
        size=image.size,
        sha256=image.sha256,
        signature=image.signature,
        signing_certificate=image.signing_certificate,
        uploaded_at=image.uploaded_at,
        location=rollouts.location(config, image),
    )


async def _image_or_404(store: Store, image_id: str) -> db.FirmwareImage:
    found = await store.firmware.get_image(image_id) if IMAGE_ID.match(image_id) else None
    if found is None:
        raise HTTPException(404, f"no firmware image {image_id!r}")
    return found


router = guarded_router(tags=["firmware"])


@router.post(
    "/firmware",
    status_code=201,
    response_model=FirmwareImageOut,
    responses=_errors(409, 413, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload(
    request: Request,
    version: Annotated[str, Query(min_length=1, max_length=255)],
    filename: Annotated[
        str,
        Query(
            pattern=FILENAME.pattern,
            description="The file name stations see in the URL: letters, digits, . _ + -",
        ),
    ],
    store: StoreDep,
    config: ConfigDep,
) -> FirmwareImageOut:
    """Upload an image (the raw bytes as the body); it is stored, hashed and signed."""
    signer = _signer(config)
    folder = firmware_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    image_id = secrets.token_hex(16)
    part = folder / f"{image_id}.part"
    try:
        size, digest = await _receive(request, part, MAX_IMAGE_BYTES)
        if size == 0:
            raise HTTPException(422, "the image is empty: send its bytes as the body")
        part.replace(folder / f"{image_id}.bin")
    finally:
        part.unlink(missing_ok=True)
    image = db.FirmwareImage(
        image_id=image_id,
        version=version,
        filename=filename,
        size=size,
        sha256=digest.hex(),
        signature=sign_digest(digest, signer.key),
        signing_certificate=signer.cert_pem.decode("ascii"),
        uploaded_at=datetime.now(UTC),
    )
    try:
        await store.firmware.add_image(image)
    except BaseException:
        (folder / f"{image_id}.bin").unlink(missing_ok=True)
        raise
    return _image_out(config, image)


@router.get("/firmware", response_model=list[FirmwareImageOut])
async def list_images(store: StoreDep, config: ConfigDep) -> list[FirmwareImageOut]:
    """Every image, newest upload first."""
    return [_image_out(config, i) for i in await store.firmware.list_images()]


@router.get("/firmware/{image_id}", response_model=FirmwareImageOut, responses=_errors(404))
async def get_image(image_id: str, store: StoreDep, config: ConfigDep) -> FirmwareImageOut:
    return _image_out(config, await _image_or_404(store, image_id))


@router.delete(
    "/firmware/{image_id}",
    status_code=204,
    response_class=Response,
    responses=_errors(404),
)
async def delete_image(image_id: str, store: StoreDep, config: ConfigDep) -> Response:
    """Delete an image, its file and its rollouts; stations still downloading it get 404."""
    await _image_or_404(store, image_id)
    if not await store.firmware.delete_image(image_id):
        raise HTTPException(404, f"no firmware image {image_id!r}")
    (firmware_dir(config) / f"{image_id}.bin").unlink(missing_ok=True)
    return Response(status_code=204)


@router.post(
    "/firmware/{image_id}/rollouts",
    status_code=201,
    response_model=RolloutOut,
    responses=_errors(404, 422),
)
async def create_rollout(
    image_id: str, body: RolloutIn, store: StoreDep, gateway: GatewayDep, config: ConfigDep
) -> RolloutOut:
    """Roll an image out to stations: connected ones are sent the update now (their
    answers are in the result), the others when they next boot."""
    image = await _image_or_404(store, image_id)
    now = datetime.now(UTC)
    registered = [r.station_id for r in await store.stations.list()]
    selector: dict[str, Any]
    if body.station_ids is not None:
        wanted = list(dict.fromkeys(body.station_ids))
        unknown = sorted(set(wanted) - set(registered))
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise HTTPException(422, f"not registered: {shown}{more}")
        chosen = wanted
        selector = {"station_ids": wanted}
    else:
        assert body.percentage is not None
        chosen = rollouts.pick_percentage(image_id, registered, body.percentage)
        selector = {"percentage": body.percentage}
    if body.retries is not None:
        selector["retries"] = body.retries
    if body.retry_interval is not None:
        selector["retry_interval"] = body.retry_interval
    rollout = await store.firmware.create_rollout(
        image_id=image_id,
        station_ids=chosen,
        selector=selector,
        retrieve_at=body.retrieve_at or now,
        install_at=body.install_at,
        at=now,
    )
    await rollouts.send_rollout(gateway, store, config, image, rollout, now)
    found = await store.firmware.get_rollout(rollout.rollout_id)
    assert found is not None
    return _rollout_out(found)


@router.get("/rollouts", response_model=list[RolloutOut])
async def list_rollouts(
    store: StoreDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[RolloutOut]:
    """Rollouts with their progress, newest first."""
    return [_rollout_out(r) for r in await store.firmware.list_rollouts(limit=limit)]


@router.get("/rollouts/{rollout_id}", response_model=RolloutOut, responses=_errors(404))
async def get_rollout(rollout_id: int, store: StoreDep) -> RolloutOut:
    """One rollout's progress: each station's requestId and status, counts by status."""
    found = (
        await store.firmware.get_rollout(rollout_id) if in_range(rollout_id, BIGINT_MAX) else None
    )
    if found is None:
        raise HTTPException(404, f"no rollout {rollout_id}")
    return _rollout_out(found)


# -- the stations' downloads (no token) -----------------------------------------------

downloads = APIRouter(tags=["firmware downloads"])


async def download(image_id: str, filename: str, store: StoreDep, config: ConfigDep) -> Response:
    """The image's bytes for a station; ``Range: bytes=N-`` resumes a broken download."""
    found = await store.firmware.get_image(image_id) if IMAGE_ID.match(image_id) else None
    path = firmware_dir(config) / f"{image_id}.bin"
    if found is None or found.filename != filename or not path.is_file():
        raise HTTPException(404, "no such firmware image")
    return FileResponse(
        path,
        media_type="application/octet-stream",
        headers={"Cache-Control": "no-store"},
    )


_DOWNLOAD = "/firmware/{image_id}/{filename}"
downloads.add_api_route(
    _DOWNLOAD,
    download,
    methods=["GET"],
    response_class=FileResponse,
    responses={
        206: {"description": "The byte range asked for."},
        404: {"model": ErrorOut, "description": "No such image."},
        416: {"description": "The range starts past the end."},
    },
)
downloads.add_api_route(
    _DOWNLOAD, download, methods=["HEAD"], response_class=FileResponse, include_in_schema=False
)
