"""Security events: what stations reported and the connections the gateway refused."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from plugstream.cloud.api.common import StoreDep, UtcDateTime, guarded_router, responses

__all__ = ["SecurityEventOut", "router"]


class SecurityEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    timestamp: UtcDateTime = Field(
        description="When the station says it happened (source station), or when the "
        "gateway last refused the connection (source gateway; = last_seen)."
    )
    station_id: str = Field(description="The station, or the id a refused connection asked for.")
    type: str = Field(description="The OCPP security event, e.g. FailedToAuthenticate.")
    tech_info: str = Field(description="What happened, in the station's or gateway's words.")
    source: Literal["station", "gateway"] = Field(
        description="station: a SecurityEventNotification; gateway: a refused connection."
    )
    count: int = Field(
        description="Refusals of this station id from this address for this reason (one "
        "row counts them all); a station's event: 1."
    )
    first_seen: UtcDateTime = Field(description="The first refusal (station events: timestamp).")
    last_seen: UtcDateTime = Field(description="The latest refusal (station events: timestamp).")
    address: str = Field(description="The refused peer's address; empty when not known.")


router = guarded_router(tags=["security"])


@router.get("/security-events", response_model=list[SecurityEventOut], responses=responses(422))
async def list_security_events(
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Events to return.")] = 100,
    station_id: Annotated[
        str | None, Query(max_length=255, description="Only this station's events.")
    ] = None,
) -> list[SecurityEventOut]:
    """Security events, newest first: those stations reported (SecurityEventNotification)
    and the connections the gateway refused (wrong password, wrong or missing client
    certificate, unknown station): what an operator looks at after an alert. Refusals
    are counted, one row per station id, address and event, the latest on top."""
    found = await store.security.list_events(station_id=station_id, limit=limit)
    return [
        SecurityEventOut(
            timestamp=e.timestamp,
            station_id=e.station_id,
            type=e.type,
            tech_info=e.tech_info or "",
            source="gateway" if e.source == "gateway" else "station",
            count=e.count,
            first_seen=e.first_seen or e.timestamp,
            last_seen=e.last_seen or e.timestamp,
            address=e.address,
        )
        for e in found
    ]
