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
        "gateway refused the connection (source gateway)."
    )
    station_id: str = Field(description="The station, or the id a refused connection asked for.")
    type: str = Field(description="The OCPP security event, e.g. FailedToAuthenticate.")
    tech_info: str = Field(description="What happened, in the station's or gateway's words.")
    source: Literal["station", "gateway"] = Field(
        description="station: a SecurityEventNotification; gateway: a refused connection."
    )


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
    certificate, unknown station): what an operator looks at after an alert."""
    found = await store.security.list_events(station_id=station_id, limit=limit)
    return [
        SecurityEventOut(
            timestamp=e.timestamp,
            station_id=e.station_id,
            type=e.type,
            tech_info=e.tech_info or "",
            source="gateway" if e.source == "gateway" else "station",
        )
        for e in found
    ]
