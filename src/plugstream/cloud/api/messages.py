"""A station's OCPP message log, newest first, one page at a time."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from plugstream.cloud.api.common import StoreDep, UtcDateTime, guarded_router, responses
from plugstream.cloud.api.limits import BIGINT_MAX
from plugstream.cloud.api.stations import station_or_404

__all__ = ["MessageOut", "MessagePage", "router"]


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: UtcDateTime
    direction: Literal["in", "out"] = Field(description="in: from the station; out: to it.")
    text: str = Field(description="The OCPP-J frame as on the wire.")


class MessagePage(BaseModel):
    messages: list[MessageOut] = Field(description="Newest first.")
    next_before: int | None = Field(
        description="Pass as ?before= for the next (older) page; null on the last page."
    )


router = guarded_router(tags=["stations"])


@router.get(
    "/stations/{station_id}/messages", response_model=MessagePage, responses=responses(404, 422)
)
async def list_messages(
    station_id: str,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Messages per page.")] = 50,
    before: Annotated[
        int | None,
        Query(ge=1, le=BIGINT_MAX, description="Only messages older than this message id."),
    ] = None,
) -> MessagePage:
    """The station's OCPP message log, newest first, one page at a time."""
    await station_or_404(store, station_id)
    found = await store.messages.list(station_id, limit=limit + 1, before_id=before)
    page = found[:limit]
    more = len(found) > limit
    return MessagePage(
        messages=[MessageOut.model_validate(m) for m in page],
        next_before=page[-1].id if more and page else None,
    )
