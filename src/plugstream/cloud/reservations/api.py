"""Reservations as an operator's resource (2.0.1 H01, H02, H04):

- ``POST /reservations`` ``{"station_id", "id_token", "expiry_date_time", "evse_id"?,
  "id_token_type"?, "group_id_token"?}``: kept (its id is the ReserveNow ``id``), sent
  as ReserveNow, 201 with the station's answer as its status. 409 when the station is
  not connected (nothing kept); 504 / 502 when it did not answer or refused (kept, as
  NoAnswer / CallError).
- ``GET /reservations`` (``station_id``, ``limit``, ``before``), ``GET /reservations/{id}``:
  the status is the answer, then what the station reported (Expired, Removed), Used
  once a transaction names it, Cancelled; an Accepted one past its expiry by the
  cloud's clock shows Expired before the station says so.
- ``DELETE /reservations/{id}``: CancelReservation; 200 with status Cancelled, 409 when
  it is no longer active, the station is not connected, or it holds no such reservation.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from plugstream.cloud.api.common import StoreDep, UtcDateTime, UtcInput, guarded_router, responses
from plugstream.cloud.api.deps import GatewayDep
from plugstream.cloud.api.limits import INTEGER_MAX
from plugstream.cloud.api.station_calls import (
    CALL_RESPONSES,
    CallFailed,
    call_station,
    require_connected,
)
from plugstream.cloud.api.stations import station_or_404
from plugstream.cloud.gateway import Gateway
from plugstream.cloud.storage import Store
from plugstream.cloud.storage.reservations import ACTIVE, PENDING, ReservationRecord
from plugstream.ocpp.datetimes import format_time
from plugstream.ocpp.v201 import IdTokenEnumType

__all__ = ["CANCELLED", "router"]

#: the station accepted the CancelReservation (H02)
CANCELLED = "Cancelled"

router = guarded_router(tags=["reservations"])

ReservationId = Annotated[int, Path(ge=1, le=INTEGER_MAX, description="The ReserveNow id.")]


class ReservationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    station_id: str = Field(min_length=1, max_length=255)
    evse_id: int | None = Field(
        default=None, ge=1, le=INTEGER_MAX, description="Omitted: any EVSE of the station."
    )
    id_token: str = Field(min_length=1, max_length=36, description="Who the EVSE is held for.")
    id_token_type: IdTokenEnumType = "ISO14443"
    group_id_token: str | None = Field(
        default=None,
        min_length=1,
        max_length=36,
        description="Any idToken of this group may use it too (H03.FR.04), type Central.",
    )
    expiry_date_time: UtcInput = Field(description="When the reservation ends unused.")


class ReservationOut(BaseModel):
    reservation_id: int = Field(description="The id of the ReserveNow.")
    station_id: str
    evse_id: int | None
    id_token: str
    id_token_type: str
    group_id_token: str | None
    expiry_date_time: UtcDateTime
    status: str = Field(
        description="Pending (sent, no answer yet); the ReserveNow answer (Accepted, "
        "Faulted, Occupied, Rejected, Unavailable; NoAnswer, CallError, NotSent); then "
        "Expired or Removed (ReservationStatusUpdate), Used (a transaction started with "
        "it), Cancelled. An active one past its expiry shows Expired."
    )
    transaction_id: str | None = Field(description="The transaction that used it.")
    created_at: UtcDateTime
    updated_at: UtcDateTime


def _out(r: ReservationRecord, gateway: Gateway) -> ReservationOut:
    return ReservationOut(
        reservation_id=r.reservation_id,
        station_id=r.station_id,
        evse_id=r.evse_id,
        id_token=r.id_token,
        id_token_type=r.id_token_type,
        group_id_token=r.group_id_token,
        expiry_date_time=r.expiry,
        status=r.status_at(gateway.clock()),
        transaction_id=r.transaction_id,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def _reserve_now(r: ReservationRecord) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": r.reservation_id,
        "expiryDateTime": format_time(r.expiry, always_ms=True),
        "idToken": {"idToken": r.id_token, "type": r.id_token_type},
    }
    if r.evse_id is not None:
        payload["evseId"] = r.evse_id
    if r.group_id_token is not None:
        payload["groupIdToken"] = {"idToken": r.group_id_token, "type": "Central"}
    return payload


@router.post(
    "/reservations",
    status_code=201,
    response_model=ReservationOut,
    responses=CALL_RESPONSES,
)
async def create_reservation(
    body: ReservationIn, store: StoreDep, gateway: GatewayDep
) -> ReservationOut | Response:
    """Reserve an EVSE (or any) of a connected 2.0.1 station for an idToken (ReserveNow)."""
    await station_or_404(store, body.station_id)
    now = gateway.clock()
    if body.expiry_date_time <= now:
        raise HTTPException(422, "expiry_date_time: must be in the future")
    require_connected(gateway, body.station_id)
    record = await store.reservations.create(
        body.station_id,
        evse_id=body.evse_id,
        id_token=body.id_token,
        id_token_type=body.id_token_type,
        group_id_token=body.group_id_token,
        expiry=body.expiry_date_time,
        at=now,
    )
    try:
        answer = await call_station(gateway, body.station_id, "ReserveNow", _reserve_now(record))
        status = str(answer.get("status", "Rejected"))
    except CallFailed as failed:
        await store.reservations.set_status(
            record.reservation_id, failed.outcome, gateway.clock(), if_status=PENDING
        )
        return failed.response
    updated = await store.reservations.set_status(
        record.reservation_id, status, gateway.clock(), if_status=PENDING
    )
    return _out(updated or await _or_404(store, record.reservation_id), gateway)


async def _or_404(store: Store, reservation_id: int) -> ReservationRecord:
    found = await store.reservations.get(reservation_id)
    if found is None:
        raise HTTPException(404, f"no reservation {reservation_id}")
    return found


@router.get("/reservations", response_model=list[ReservationOut])
async def list_reservations(
    store: StoreDep,
    gateway: GatewayDep,
    station_id: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=INTEGER_MAX, description="Only older ids: the next page.")
    ] = None,
) -> list[ReservationOut]:
    """Newest first."""
    found = await store.reservations.list_reservations(
        station_id=station_id, limit=limit, before=before
    )
    return [_out(r, gateway) for r in found]


@router.get(
    "/reservations/{reservation_id}", response_model=ReservationOut, responses=responses(404)
)
async def get_reservation(
    reservation_id: ReservationId,
    store: StoreDep,
    gateway: GatewayDep,
) -> ReservationOut:
    return _out(await _or_404(store, reservation_id), gateway)


@router.delete(
    "/reservations/{reservation_id}",
    response_model=ReservationOut,
    responses=responses(404, 409, 502, 504),
)
async def cancel_reservation(
    reservation_id: ReservationId, store: StoreDep, gateway: GatewayDep
) -> ReservationOut | Response:
    """Cancel it at the station (CancelReservation, H02)."""
    record = await _or_404(store, reservation_id)
    shown = record.status_at(gateway.clock())
    if shown not in ACTIVE:
        raise HTTPException(409, f"reservation {reservation_id} is {shown}: nothing to cancel")
    require_connected(gateway, record.station_id)
    try:
        answer = await call_station(
            gateway,
            record.station_id,
            "CancelReservation",
            {"reservationId": reservation_id},
        )
    except CallFailed as failed:
        return failed.response
    if answer.get("status") != "Accepted":
        raise HTTPException(
            409, f"station {record.station_id!r} holds no reservation {reservation_id} (Rejected)"
        )
    updated = await store.reservations.set_status(reservation_id, CANCELLED, gateway.clock())
    return _out(updated or record, gateway)
