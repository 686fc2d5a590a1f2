"""Tariffs as an operator's resource, and what a transaction cost (functional block I).

Under ``/api/v1`` (bearer token):

- ``GET /tariffs``, ``POST /tariffs`` (201), ``GET`` / ``PUT`` / ``DELETE /tariffs/{id}``:
  a start fee, a price per kWh, per minute of charging and per minute of idle time after
  charging, all excluding VAT, the VAT rate, the ISO 4217 currency, the text shown to the
  driver (personalMessage, I01) and when to send CostUpdated while charging (a change of
  ``cost_updated_threshold`` or every ``cost_updated_interval_s``; neither: every change).
  ``is_default`` prices every transaction no assignment covers; there is one default.
- ``GET /tariff-assignments``; ``PUT`` / ``DELETE /tariff-assignments/stations/{id}`` and
  ``/tariff-assignments/groups/{group id token}`` ``{"tariff_id": n}``: the station's
  tariff beats the driver's group's, which beats the default. A transaction keeps the
  tariff (and prices) it started with.
- ``GET /transactions/{id}/cost``: the running or final cost with its breakdown (404 when
  no tariff priced it); ``POST /transactions/{id}/cost-updated``: send the station its
  running cost now (CostUpdated; 409 when the station is not connected or the
  transaction ended).

Money is written as a decimal string with the currency's decimals (``"1.50"``), exact.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import HTTPException, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema, field_validator

from plugstream.cloud.api.common import StoreDep, UtcDateTime, guarded_router, responses
from plugstream.cloud.api.deps import GatewayDep
from plugstream.cloud.api.limits import BIGINT_MAX, INTEGER_MAX, in_range
from plugstream.cloud.api.station_calls import (
    CALL_RESPONSES,
    CallFailed,
    call_station,
    require_connected,
)
from plugstream.cloud.api.stations import check_station_id
from plugstream.cloud.storage.records import TransactionRecord
from plugstream.cloud.storage.tariffs import Assignment, Tariff, TariffData, TransactionCost
from plugstream.cloud.tariffs.pricing import breakdown

if TYPE_CHECKING:
    from plugstream.cloud.storage import Store

__all__ = ["Money", "TariffIn", "TariffOut", "router"]

MAX_MESSAGE = 512  # MessageContentType.content: string[512]
GROUP_MAX = 36  # an IdToken's idToken: string[36]
CURRENCY = re.compile(r"^[A-Z]{3}$")

Money = Annotated[
    Decimal,
    PlainSerializer(lambda value: str(value), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}, mode="serialization"),
]
"""Exact money, written as a decimal string (``"12.34"``)."""

Price = Annotated[Decimal, Field(ge=0, le=Decimal("1000000"), decimal_places=6)]


class TariffIn(BaseModel):
    """Prices exclude VAT; numbers or decimal strings, kept exactly."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    currency: str = Field(description="ISO 4217, e.g. EUR.", examples=["EUR"])
    start_fee: Price = Decimal(0)
    per_kwh: Price = Decimal(0)
    per_charging_minute: Price = Field(
        default=Decimal(0),
        description="Per minute in chargingState Charging, pro rata by the second.",
    )
    per_idle_minute: Price = Field(
        default=Decimal(0),
        description="Per minute plugged in without charging, once the EV has charged.",
    )
    vat_percent: Decimal = Field(default=Decimal(0), ge=0, le=100, decimal_places=4)
    personal_message: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_MESSAGE,
        description="The tariff as the driver is shown it (Authorize idTokenInfo).",
    )
    language: str | None = Field(default=None, min_length=2, max_length=8)
    is_default: bool = False
    cost_updated_interval_s: int = Field(default=0, ge=0, le=INTEGER_MAX)
    cost_updated_threshold: Price = Decimal(0)

    @field_validator("currency")
    @classmethod
    def _iso_4217(cls, value: str) -> str:
        if not CURRENCY.match(value):
            raise ValueError(f"{value!r} is not an ISO 4217 code (three capital letters)")
        return value

    def data(self) -> TariffData:
        return TariffData(**self.model_dump())


class TariffOut(BaseModel):
    tariff_id: int
    name: str
    currency: str
    start_fee: Money
    per_kwh: Money
    per_charging_minute: Money
    per_idle_minute: Money
    vat_percent: Money
    personal_message: str | None
    language: str | None
    is_default: bool
    cost_updated_interval_s: int
    cost_updated_threshold: Money
    created_at: UtcDateTime
    updated_at: UtcDateTime


def _tariff_out(t: Tariff) -> TariffOut:
    d = t.data
    return TariffOut(
        tariff_id=t.tariff_id,
        name=d.name,
        currency=d.currency,
        start_fee=d.start_fee,
        per_kwh=d.per_kwh,
        per_charging_minute=d.per_charging_minute,
        per_idle_minute=d.per_idle_minute,
        vat_percent=d.vat_percent,
        personal_message=d.personal_message,
        language=d.language,
        is_default=d.is_default,
        cost_updated_interval_s=d.cost_updated_interval_s,
        cost_updated_threshold=d.cost_updated_threshold,
        created_at=t.created_at,
        updated_at=t.updated_at,
    )


class AssignmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tariff_id: int = Field(ge=1, le=BIGINT_MAX)


class AssignmentOut(BaseModel):
    scope: Literal["station", "group"]
    key: str = Field(description="The station id, or the group's (parent) id token.")
    tariff_id: int
    assigned_at: UtcDateTime


def _assignment_out(a: Assignment) -> AssignmentOut:
    return AssignmentOut(scope=a.scope, key=a.key, tariff_id=a.tariff_id, assigned_at=a.assigned_at)


class CostOut(BaseModel):
    """What a transaction cost, up to its last event; ``final`` once it ended."""

    transaction_id: int = Field(description="Our numeric id of the transaction.")
    tariff_id: int | None = Field(description="None once the tariff was deleted.")
    tariff_name: str
    currency: str
    final: bool
    total_cost: Money = Field(description="VAT included: what the station was answered.")
    start_fee: Money
    energy: Money
    charging_time: Money
    idle_time: Money
    net: Money
    vat: Money
    energy_wh: Decimal = Field(description="Exact Wh priced.")
    charging_s: Decimal
    idle_s: Decimal
    prices: dict[str, Money] = Field(description="The tariff's prices the session began with.")
    last_cost_updated: Money | None = Field(description="The last CostUpdated sent.")
    updated_at: UtcDateTime


def _cost_out(transaction_id: int, cost: TransactionCost) -> CostOut:
    parts = breakdown(cost)
    return CostOut(
        transaction_id=transaction_id,
        tariff_id=cost.tariff_id,
        tariff_name=cost.tariff_name,
        currency=cost.currency,
        final=cost.final,
        total_cost=cost.total_cost,
        start_fee=parts.start_fee,
        energy=parts.energy,
        charging_time=parts.charging_time,
        idle_time=parts.idle_time,
        net=parts.net,
        vat=parts.vat,
        energy_wh=cost.energy_wh,
        charging_s=cost.charging_s,
        idle_s=cost.idle_s,
        prices=dict(cost.prices),
        last_cost_updated=cost.sent_cost,
        updated_at=cost.updated_at,
    )


router = guarded_router(tags=["tariffs"])


def _now() -> datetime:
    return datetime.now(UTC)


async def _tariff_or_404(store: Store, tariff_id: int) -> Tariff:
    found = await store.tariffs.get(tariff_id) if in_range(tariff_id, BIGINT_MAX) else None
    if found is None:
        raise HTTPException(404, f"no tariff {tariff_id}")
    return found


@router.get("/tariffs", response_model=list[TariffOut])
async def list_tariffs(store: StoreDep) -> list[TariffOut]:
    """Every tariff, oldest first."""
    return [_tariff_out(t) for t in await store.tariffs.list()]


@router.post("/tariffs", status_code=201, response_model=TariffOut, responses=responses(422))
async def create_tariff(body: TariffIn, store: StoreDep) -> TariffOut:
    """A new tariff; with ``is_default`` it becomes the one default."""
    return _tariff_out(await store.tariffs.create(body.data(), at=_now()))


@router.get("/tariffs/{tariff_id}", response_model=TariffOut, responses=responses(404, 422))
async def get_tariff(tariff_id: int, store: StoreDep) -> TariffOut:
    return _tariff_out(await _tariff_or_404(store, tariff_id))


@router.put("/tariffs/{tariff_id}", response_model=TariffOut, responses=responses(404, 422))
async def replace_tariff(tariff_id: int, body: TariffIn, store: StoreDep) -> TariffOut:
    """Set the whole tariff. Transactions already priced keep the prices they began with."""
    await _tariff_or_404(store, tariff_id)
    saved = await store.tariffs.replace(tariff_id, body.data(), at=_now())
    if saved is None:
        raise HTTPException(404, f"no tariff {tariff_id}")
    return _tariff_out(saved)


@router.delete(
    "/tariffs/{tariff_id}", status_code=204, response_class=Response, responses=responses(404, 422)
)
async def delete_tariff(tariff_id: int, store: StoreDep) -> Response:
    """Forget a tariff and its assignments; the costs it priced stay."""
    if not in_range(tariff_id, BIGINT_MAX) or not await store.tariffs.delete(tariff_id):
        raise HTTPException(404, f"no tariff {tariff_id}")
    return Response(status_code=204)


@router.get("/tariff-assignments", response_model=list[AssignmentOut])
async def list_assignments(store: StoreDep) -> list[AssignmentOut]:
    """Which station and which id-token group pays which tariff."""
    return [_assignment_out(a) for a in await store.tariffs.assignments()]


def _group(value: str) -> str:
    if not 1 <= len(value) <= GROUP_MAX:
        raise HTTPException(
            422, f"group id token must be 1 to {GROUP_MAX} characters long, not {len(value)}"
        )
    return value


async def _assign(
    store: Store, scope: Literal["station", "group"], key: str, tariff_id: int
) -> AssignmentOut:
    at = _now()
    if not await store.tariffs.assign(scope, key, tariff_id, at=at):
        raise HTTPException(422, f"no tariff {tariff_id} to assign")
    return AssignmentOut(scope=scope, key=key, tariff_id=tariff_id, assigned_at=at)


@router.put(
    "/tariff-assignments/stations/{station_id}",
    response_model=AssignmentOut,
    responses=responses(422),
)
async def assign_station(station_id: str, body: AssignmentIn, store: StoreDep) -> AssignmentOut:
    """The station's next transactions are priced by this tariff."""
    return await _assign(store, "station", check_station_id(station_id), body.tariff_id)


@router.put(
    "/tariff-assignments/groups/{group_id}",
    response_model=AssignmentOut,
    responses=responses(422),
)
async def assign_group(group_id: str, body: AssignmentIn, store: StoreDep) -> AssignmentOut:
    """Drivers whose id token has this group (parent id token) pay this tariff, unless
    their station has its own."""
    return await _assign(store, "group", _group(group_id), body.tariff_id)


@router.delete(
    "/tariff-assignments/stations/{station_id}",
    status_code=204,
    response_class=Response,
    responses=responses(404, 422),
)
async def unassign_station(station_id: str, store: StoreDep) -> Response:
    if not await store.tariffs.unassign("station", check_station_id(station_id)):
        raise HTTPException(404, f"station {station_id!r} has no tariff of its own")
    return Response(status_code=204)


@router.delete(
    "/tariff-assignments/groups/{group_id}",
    status_code=204,
    response_class=Response,
    responses=responses(404, 422),
)
async def unassign_group(group_id: str, store: StoreDep) -> Response:
    if not await store.tariffs.unassign("group", _group(group_id)):
        raise HTTPException(404, f"group {group_id!r} has no tariff of its own")
    return Response(status_code=204)


async def _cost_or_404(store: Store, tx_id: int) -> tuple[TransactionRecord, TransactionCost]:
    found = await store.transactions.get(tx_id) if in_range(tx_id, INTEGER_MAX) else None
    if found is None:
        raise HTTPException(404, f"no transaction {tx_id}")
    cost = await store.tariffs.get_cost(tx_id)
    if cost is None:
        raise HTTPException(404, f"transaction {tx_id} was priced by no tariff")
    return found, cost


@router.get("/transactions/{tx_id}/cost", response_model=CostOut, responses=responses(404, 422))
async def get_cost(tx_id: int, store: StoreDep) -> CostOut:
    """The running or final cost of a transaction and its parts (I02, I03)."""
    _, cost = await _cost_or_404(store, tx_id)
    return _cost_out(tx_id, cost)


@router.post(
    "/transactions/{tx_id}/cost-updated",
    response_model=CostOut,
    responses=CALL_RESPONSES,
)
async def send_cost_updated(
    tx_id: int, store: StoreDep, gateway: GatewayDep
) -> CostOut | JSONResponse:
    """Send the station the running cost now (CostUpdated, I02.FR.01); 409 when the
    transaction ended (its final cost went in the Ended answer) or the station is not
    connected."""
    tx, cost = await _cost_or_404(store, tx_id)
    if cost.final or not tx.active:
        raise HTTPException(409, f"transaction {tx_id} ended: its final cost is {cost.total_cost}")
    require_connected(gateway, tx.station_id, why="it has no CostUpdated")
    payload = {"totalCost": float(cost.total_cost), "transactionId": tx.transaction_id}
    try:
        await call_station(gateway, tx.station_id, "CostUpdated", payload)
    except CallFailed as failed:
        return failed.response
    await store.tariffs.record_sent(tx_id, cost.total_cost, at=_now())
    sent = await store.tariffs.get_cost(tx_id)
    return _cost_out(tx_id, sent if sent is not None else cost)
