"""Transactions, with their exact energy and hygiene flags; meter values in the detail;
the list filtered by station, idToken and start time, and exported as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from plugstream.cloud.api.common import (
    StoreDep,
    UtcDateTime,
    UtcInput,
    Wh,
    guarded_router,
    responses,
)
from plugstream.cloud.api.limits import BIGINT_MAX, INTEGER_MAX, in_range
from plugstream.cloud.api.stations import check_station_id
from plugstream.cloud.storage import Store
from plugstream.cloud.storage.records import TransactionRecord

__all__ = [
    "CSV_COLUMNS",
    "FlagOut",
    "MeterSampleOut",
    "TransactionDetailOut",
    "TransactionOut",
    "router",
]


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

StationQ = Annotated[str | None, Query(description="Only this station's.")]
IdTokenQ = Annotated[
    str | None, Query(max_length=255, description="Only those started with this idToken.")
]
FromQ = Annotated[
    UtcInput | None,
    Query(alias="from", description="Only those started at or after this time (with offset)."),
]
ToQ = Annotated[
    UtcInput | None,
    Query(alias="to", description="Only those started before this time (with offset)."),
]


@dataclass(frozen=True, slots=True)
class TxFilter:
    """What the list and its CSV export select: one set of query parameters for both, so
    the console's "Export CSV" link gets exactly the rows the page shows."""

    station: str | None
    id_token: str | None
    since: datetime | None
    until: datetime | None


def tx_filter(
    station: StationQ = None, id_token: IdTokenQ = None, since: FromQ = None, until: ToQ = None
) -> TxFilter:
    """The filters from the query, checked: a station id as stations are named, and a
    range that is not empty by mistake (``from`` after ``to``)."""
    if station is not None:
        check_station_id(station, "station")
    if since is not None and until is not None and since > until:
        raise HTTPException(422, "from must not be after to")
    return TxFilter(station, id_token, since, until)


FilterDep = Annotated[TxFilter, Depends(tx_filter)]


async def _matching(
    store: Store, chosen: TxFilter, *, limit: int, offset: int = 0, before_id: int | None = None
) -> list[TransactionOut]:
    """One page of the matching transactions, newest first, with their flags."""
    found = await store.transactions.list(
        chosen.station,
        id_token=chosen.id_token,
        since=chosen.since,
        until=chosen.until,
        before_id=before_id,
        limit=limit,
        offset=offset,
    )
    return [_transaction(t, TransactionOut) for t in found]


@router.get("/transactions", response_model=list[TransactionOut], responses=responses(422))
async def list_transactions(
    store: StoreDep,
    chosen: FilterDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
) -> list[TransactionOut]:
    """Transactions, newest first, with their energy and hygiene flags; meter values are
    in the detail view. Filters: ``station``, ``id_token``, and the start time in
    [``from``, ``to``)."""
    return await _matching(store, chosen, limit=limit, offset=offset)


#: the CSV export's columns, in order (the header row)
CSV_COLUMNS = (
    "id",
    "station_id",
    "transaction_id",
    "evse_id",
    "connector_id",
    "id_token",
    "started_at",
    "stopped_at",
    "duration_s",
    "meter_start_wh",
    "meter_stop_wh",
    "energy_wh",
    "stop_reason",
    "offline",
    "active",
    "flags",
)
#: rows read per query while the export streams: memory stays flat for any fleet
CSV_BATCH = 500


def _csv_time(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _csv_wh(value: Decimal | None) -> str:
    """Exact, in plain digits: never an exponent, never a float's rounding."""
    if value is None:
        return ""
    whole = value == value.to_integral_value()
    return format(value.to_integral_value() if whole else value.normalize(), "f")


#: a cell that starts with one of these is a formula to a spreadsheet (OWASP "CSV injection")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_text(value: str | None) -> str:
    """What a station sent (its id, an idToken) as text a spreadsheet shows and never runs:
    a leading formula character gets a ``'`` before it, as OWASP advises."""
    if not value:
        return ""
    return "'" + value if value.startswith(FORMULA_START) else value


def _csv_row(t: TransactionOut) -> list[str]:
    duration = ""
    if t.started_at is not None and t.stopped_at is not None:
        duration = _csv_wh(Decimal(str((t.stopped_at - t.started_at).total_seconds())))
    return [
        str(t.id),
        _csv_text(t.station_id),
        _csv_text(t.transaction_id),
        str(t.evse_id),
        str(t.connector_id),
        _csv_text(t.id_token),
        _csv_time(t.started_at),
        _csv_time(t.stopped_at),
        duration,
        _csv_wh(t.meter_start_wh),
        _csv_wh(t.meter_stop_wh),
        _csv_wh(t.energy_wh),
        _csv_text(t.stop_reason),
        "true" if t.offline else "false",
        "true" if t.active else "false",
        " ".join(f.code for f in t.flags),
    ]


def _csv_lines(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


async def _csv_stream(store: Store, chosen: TxFilter) -> AsyncIterator[str]:
    yield _csv_lines([list(CSV_COLUMNS)])
    before: int | None = None
    while True:
        batch = await _matching(store, chosen, limit=CSV_BATCH, before_id=before)
        if not batch:
            return
        yield _csv_lines([_csv_row(t) for t in batch])
        before = batch[-1].id


@router.get(
    "/transactions.csv",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "RFC 4180 CSV with a header row: "
            + ", ".join(CSV_COLUMNS)
            + ". Times UTC ISO 8601 (Z), energy exact Wh, flags' codes separated by spaces; "
            "text a station sent that starts with = + - @ is written after a ' (so a "
            "spreadsheet shows it and never runs it as a formula).",
        },
        **responses(422),
    },
)
async def export_transactions(store: StoreDep, chosen: FilterDep) -> StreamingResponse:
    """Every matching transaction as CSV (the list's filters, no page limit), newest first,
    as a download (``Content-Disposition: attachment``)."""
    return StreamingResponse(
        _csv_stream(store, chosen),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="transactions.csv"'},
    )


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
