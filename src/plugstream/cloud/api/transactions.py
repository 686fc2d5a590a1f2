"""Transactions, with their exact energy and hygiene flags; meter values in the detail."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from plugstream.cloud.api.common import StoreDep, UtcDateTime, Wh, guarded_router, responses
from plugstream.cloud.api.limits import BIGINT_MAX, INTEGER_MAX, in_range
from plugstream.cloud.api.stations import check_station_id
from plugstream.cloud.storage.records import TransactionRecord

__all__ = ["FlagOut", "MeterSampleOut", "TransactionDetailOut", "TransactionOut", "router"]


class FlagOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str = Field(
        description="e.g. StartAfterStop, Overlap, TimeBackwards, RegisterDecreased; "
        "LateMeterValue, ConflictingStop, DuplicateStart (the lifecycle), DuplicateTimestamp, "
        "ValueOutOfRange, UnreadableValue, UnreadableIdToken (values kept in the detail)."
    )
    detail: str
    at: UtcDateTime


class MeterSampleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    timestamp: UtcDateTime
    measurand: str
    value: Wh = Field(description="In ``unit``; energy registers are in Wh.")
    unit: str | None
    phase: str | None
    context: str | None
    location: str | None


class TransactionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Our numeric id; the 1.6 transactionId.")
    station_id: str
    transaction_id: str = Field(description="The station's id in 2.0.1, str(id) in 1.6.")
    evse_id: int
    connector_id: int
    id_token: str | None
    started_at: UtcDateTime | None
    stopped_at: UtcDateTime | None
    meter_start_wh: Wh | None
    meter_stop_wh: Wh | None
    energy_wh: Wh | None = Field(description="Energy delivered, exact, from the meter register.")
    stop_reason: str | None
    offline: bool = Field(description="Started or stopped while the station was offline.")
    active: bool
    flags: list[FlagOut] = Field(description="Suspect data found in this transaction (hygiene).")


class TransactionDetailOut(TransactionOut):
    meter_values: list[MeterSampleOut]
    total_cost: str | None = Field(
        default=None,
        description="What it costs, VAT included, as a decimal string: running until "
        "cost_final, then the final cost (I03); /transactions/{id}/cost has the parts. "
        "None: no tariff priced it.",
    )
    currency: str | None = None
    cost_final: bool | None = None


_TxOut = TypeVar("_TxOut", TransactionOut, TransactionDetailOut)


def _transaction(t: TransactionRecord, model: type[_TxOut]) -> _TxOut:
    fields: dict[str, Any] = {
        name: getattr(t, name) for name in TransactionOut.model_fields if name != "flags"
    }
    fields["flags"] = [FlagOut.model_validate(f) for f in t.flags]
    if model is TransactionDetailOut:
        fields["meter_values"] = [MeterSampleOut.model_validate(s) for s in t.meter_values]
    return model(**fields)


router = guarded_router(tags=["transactions"])


@router.get("/transactions", response_model=list[TransactionOut], responses=responses(422))
async def list_transactions(
    store: StoreDep,
    station: Annotated[str | None, Query(description="Only this station's.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
) -> list[TransactionOut]:
    """Transactions with their energy and hygiene flags; meter values are in the detail view."""
    if station is not None:
        check_station_id(station, "station")
    found = await store.transactions.list(station, limit=limit, offset=offset)
    return [_transaction(t, TransactionOut) for t in found]


@router.get(
    "/transactions/{tx_id}", response_model=TransactionDetailOut, responses=responses(404, 422)
)
async def get_transaction(tx_id: int, store: StoreDep) -> TransactionDetailOut:
    """One transaction with its meter values and hygiene flags."""
    found = await store.transactions.get(tx_id) if in_range(tx_id, INTEGER_MAX) else None
    if found is None:
        raise HTTPException(404, f"no transaction {tx_id}")
    detail = _transaction(found, TransactionDetailOut)
    cost = await store.tariffs.get_cost(tx_id)
    if cost is not None:
        detail.total_cost, detail.currency = str(cost.total_cost), cost.currency
        detail.cost_final = cost.final
    return detail
