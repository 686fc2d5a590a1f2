"""Smart charging for operators, under ``/api/v1`` (bearer token):

- ``GET /stations/{id}/charging-profiles``: what the cloud set (with each station's
  answer) and what the station reported last (ReportChargingProfiles, K09);
  ``POST`` one: SetChargingProfile (K01); ``DELETE`` with ``chargingProfileId`` or
  criteria: ClearChargingProfile (K10); ``POST .../refresh``: GetChargingProfiles (K09),
  whose reports come in as ReportChargingProfiles.
- ``GET /stations/{id}/composite-schedule?evseId&duration&chargingRateUnit``:
  GetCompositeSchedule (K08), the station's answer.
- ``GET /stations/{id}/charging-limits`` (K12, K13), ``GET .../ev-charging-needs`` (K15).
- ``/sites``: a grid connection's maximum current per phase and its stations; the cloud
  divides it among the transactions running there (``GET /sites/{id}/allocation``).

A command to a station that is not connected is refused with 409; one the station did
not answer in time is 504, a CALLERROR 502, as for ``/commands``. These resources speak
OCPP 2.0.1 (a 1.6 station's profiles go through ``/commands``), sites both versions.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import BackgroundTasks, Body, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic.alias_generators import to_camel

from plugstream.cloud.api.common import (
    StoreDep,
    UtcDateTime,
    exact_number,
    guarded_router,
    responses,
)
from plugstream.cloud.api.deps import GatewayDep
from plugstream.cloud.api.station_calls import (
    CALL_RESPONSES,
    CallFailed,
    call_station,
    check_request,
    connected_station,
)
from plugstream.cloud.api.stations import station_or_404
from plugstream.cloud.gateway import Gateway
from plugstream.cloud.smart_charging.division import allocation_of, redivide
from plugstream.cloud.storage import Store
from plugstream.cloud.storage.smart_charging import Site, SiteConflict
from plugstream.ocpp import OcppVersion

__all__ = ["router"]

router = guarded_router(tags=["smart charging"])

Amps = Annotated[
    Decimal,
    PlainSerializer(exact_number, return_type=Any, when_used="json"),
    WithJsonSchema({"type": "number"}, mode="serialization"),
]
"""A current in A per phase, exact, written as a JSON number."""


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


# -- models ------------------------------------------------------------------------------


class SetProfileOut(_Camel):
    charging_profile_id: int
    evse_id: int
    purpose: str
    stack_level: int
    transaction_id: str | None
    status: str = Field(description="The station's answer, Offline if it was not connected.")
    source: str = Field(description="operator (this API), site (a site limit) or ev (K15).")
    set_at: UtcDateTime
    profile: dict[str, Any] = Field(description="The ChargingProfileType sent.")


class ReportedProfileOut(_Camel):
    request_id: int
    evse_id: int
    charging_limit_source: str
    tbc: bool
    received_at: UtcDateTime
    profile: dict[str, Any] = Field(description="The ChargingProfileType reported.")


class ChargingProfilesOut(_Camel):
    set: list[SetProfileOut] = Field(description="What the cloud set, by EVSE and id.")
    reported: list[ReportedProfileOut] = Field(
        description="The profiles of the station's newest report (GetChargingProfiles)."
    )


class SetProfileIn(_Camel):
    """A SetChargingProfileRequest, as OCPP 2.0.1 words it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    evse_id: int = Field(ge=0, description="0: the whole station.")
    charging_profile: dict[str, Any] = Field(description="A ChargingProfileType.")


class StationAnswerOut(_Camel):
    status: str
    status_info: dict[str, Any] | None = None


class RefreshIn(_Camel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    evse_id: int | None = Field(default=None, ge=0, description="Omitted: every EVSE.")
    charging_profile: dict[str, Any] = Field(
        default_factory=dict,
        description="ChargingProfileCriterionType: purpose, stackLevel, ids, sources.",
    )


class RefreshOut(StationAnswerOut):
    request_id: int = Field(description="The reports of this request carry it (K09.FR.01).")


class ChargingLimitOut(_Camel):
    evse_id: int | None
    charging_limit_source: str
    is_grid_critical: bool | None
    charging_schedule: list[dict[str, Any]]
    received_at: UtcDateTime
    cleared_at: UtcDateTime | None = Field(description="When ClearedChargingLimit released it.")


class EvChargingOut(_Camel):
    kind: Literal["needs", "schedule"]
    evse_id: int
    max_schedule_tuples: int | None
    status: str = Field(description="The cloud's answer.")
    received_at: UtcDateTime
    body: dict[str, Any] = Field(description="chargingNeeds, or timeBase and chargingSchedule.")


class SiteIn(_Camel):
    """A site: one grid connection's maximum current per phase, and its stations."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    max_current_a: Decimal = Field(gt=0, le=100_000, max_digits=12, decimal_places=1)
    phases: Literal[1, 3] = 3
    station_ids: list[str] = Field(default_factory=list, max_length=10_000)
    station_max_current_a: dict[str, Decimal] = Field(
        default_factory=dict,
        description="A station's own maximum in A per phase; 32 when not given.",
    )


class SiteOut(_Camel):
    site_id: int
    name: str
    max_current_a: Amps
    phases: int
    station_ids: list[str]
    station_max_current_a: dict[str, Amps]
    created_at: UtcDateTime


class ShareOut(_Camel):
    station_id: str
    evse_id: int
    transaction_id: str
    limit_a: Amps = Field(description="0: the site cannot give it the minimum of 6 A.")


class AllocationOut(_Camel):
    site_id: int
    max_current_a: Amps
    total_a: Amps
    oversubscribed: bool = Field(description="Some transactions wait: the site is too small.")
    shares: list[ShareOut]


DEFAULT_STATION_MAX_A = Decimal(32)
MIN_STATION_MAX_A, MAX_STATION_MAX_A = Decimal(6), Decimal(1000)


# -- helpers -----------------------------------------------------------------------------


async def _connected(store: Store, gateway: Gateway, station_id: str) -> OcppVersion:
    """404 unknown, 409 not connected or not 2.0.1 (whose profiles go through /commands)."""
    return await connected_station(
        store, gateway, station_id, why="send its profiles through /commands"
    )


def _answer(answer: dict[str, Any]) -> StationAnswerOut:
    info = answer.get("statusInfo")
    return StationAnswerOut(
        status=str(answer.get("status", "")), status_info=info if isinstance(info, dict) else None
    )


# -- charging profiles -------------------------------------------------------------------


@router.get(
    "/stations/{station_id}/charging-profiles",
    response_model=ChargingProfilesOut,
    responses=responses(404),
)
async def charging_profiles(station_id: str, store: StoreDep) -> ChargingProfilesOut:
    """What the cloud set on the station and what it reported last."""
    await station_or_404(store, station_id)
    repo = store.smart_charging
    set_, reported = await repo.profiles_set(station_id), await repo.reported(station_id)
    return ChargingProfilesOut(
        set=[SetProfileOut.model_validate(p, from_attributes=True) for p in set_],
        reported=[ReportedProfileOut.model_validate(p, from_attributes=True) for p in reported],
    )


@router.post(
    "/stations/{station_id}/charging-profiles",
    response_model=StationAnswerOut,
    responses=CALL_RESPONSES,
)
async def set_charging_profile(
    station_id: str, body: SetProfileIn, store: StoreDep, gateway: GatewayDep
) -> StationAnswerOut | Response:
    """SetChargingProfile (K01); the profile is kept with the station's answer."""
    await _connected(store, gateway, station_id)
    payload = {"evseId": body.evse_id, "chargingProfile": body.charging_profile}
    try:
        answer = await call_station(gateway, station_id, "SetChargingProfile", payload)
    except CallFailed as failed:
        return failed.response
    out = _answer(answer)
    await store.smart_charging.record_set(
        station_id,
        body.evse_id,
        body.charging_profile,
        status=out.status,
        source="operator",
        at=gateway.clock(),
    )
    return out


@router.delete(
    "/stations/{station_id}/charging-profiles",
    response_model=StationAnswerOut,
    responses=CALL_RESPONSES,
)
async def clear_charging_profile(
    station_id: str,
    store: StoreDep,
    gateway: GatewayDep,
    charging_profile_id: Annotated[int | None, Query(alias="chargingProfileId")] = None,
    evse_id: Annotated[int | None, Query(alias="evseId", ge=0)] = None,
    purpose: Annotated[
        Literal["ChargingStationMaxProfile", "TxDefaultProfile", "TxProfile"] | None,
        Query(alias="chargingProfilePurpose"),
    ] = None,
    stack_level: Annotated[int | None, Query(alias="stackLevel", ge=0)] = None,
) -> StationAnswerOut | Response:
    """ClearChargingProfile (K10): by ``chargingProfileId`` alone (TC_K_05), or by the
    criteria given; at least one is needed, so that nothing is cleared by mistake."""
    if charging_profile_id is None and evse_id is None and purpose is None and stack_level is None:
        raise HTTPException(
            422,
            "give chargingProfileId or at least one of evseId, chargingProfilePurpose, stackLevel",
        )
    await _connected(store, gateway, station_id)
    payload: dict[str, Any] = {}
    if charging_profile_id is not None:
        payload["chargingProfileId"] = charging_profile_id
    else:
        criteria: dict[str, Any] = {}
        if evse_id is not None:
            criteria["evseId"] = evse_id
        if purpose is not None:
            criteria["chargingProfilePurpose"] = purpose
        if stack_level is not None:
            criteria["stackLevel"] = stack_level
        payload["chargingProfileCriteria"] = criteria
    try:
        answer = await call_station(gateway, station_id, "ClearChargingProfile", payload)
    except CallFailed as failed:
        return failed.response
    out = _answer(answer)
    if out.status == "Accepted":
        await store.smart_charging.forget_set(
            station_id,
            charging_profile_id=charging_profile_id,
            evse_id=evse_id,
            purpose=purpose,
            stack_level=stack_level,
        )
    return out


@router.post(
    "/stations/{station_id}/charging-profiles/refresh",
    response_model=RefreshOut,
    responses=CALL_RESPONSES,
)
async def refresh_charging_profiles(
    station_id: str,
    store: StoreDep,
    gateway: GatewayDep,
    body: Annotated[RefreshIn | None, Body()] = None,
) -> RefreshOut | Response:
    """GetChargingProfiles (K09) with a new requestId; the station's reports come in as
    ReportChargingProfiles and show under ``reported``."""
    body = body or RefreshIn()
    version = await _connected(store, gateway, station_id)
    criteria = dict(body.charging_profile)
    payload: dict[str, Any] = {"chargingProfile": criteria}
    if body.evse_id is not None:
        payload["evseId"] = body.evse_id
    try:  # checked before a requestId is spent
        check_request(version, "GetChargingProfiles", {"requestId": 0, **payload})
    except CallFailed as failed:
        return failed.response
    request_id = await store.smart_charging.new_request(station_id, payload, at=gateway.clock())
    try:
        answer = await call_station(
            gateway, station_id, "GetChargingProfiles", {"requestId": request_id, **payload}
        )
    except CallFailed as failed:
        await store.smart_charging.set_request_status(station_id, request_id, "Failed")
        return failed.response
    out = _answer(answer)
    if out.status != "Accepted":  # NoProfiles: no report will come
        await store.smart_charging.set_request_status(station_id, request_id, out.status)
    return RefreshOut(request_id=request_id, status=out.status, status_info=out.status_info)


@router.get(
    "/stations/{station_id}/composite-schedule",
    response_model=None,
    responses={
        200: {
            "description": "The GetCompositeScheduleResponse, as the station sent it.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **CALL_RESPONSES,
    },
)
async def composite_schedule(
    station_id: str,
    store: StoreDep,
    gateway: GatewayDep,
    evse_id: Annotated[int, Query(alias="evseId", ge=0)],
    duration: Annotated[int, Query(gt=0, le=7 * 86400, description="Seconds.")],
    charging_rate_unit: Annotated[Literal["A", "W"] | None, Query(alias="chargingRateUnit")] = None,
) -> Response:
    """GetCompositeSchedule (K08): the limits the station will apply on the EVSE."""
    await _connected(store, gateway, station_id)
    payload: dict[str, Any] = {"evseId": evse_id, "duration": duration}
    if charging_rate_unit is not None:
        payload["chargingRateUnit"] = charging_rate_unit
    try:
        answer = await call_station(gateway, station_id, "GetCompositeSchedule", payload)
    except CallFailed as failed:
        return failed.response
    return JSONResponse(answer)


@router.get(
    "/stations/{station_id}/charging-limits",
    response_model=list[ChargingLimitOut],
    responses=responses(404),
)
async def charging_limits(station_id: str, store: StoreDep) -> list[ChargingLimitOut]:
    """External limits the station reported (K12), newest first, with their release (K13)."""
    await station_or_404(store, station_id)
    return [
        ChargingLimitOut(
            evse_id=x.evse_id,
            charging_limit_source=x.charging_limit_source,
            is_grid_critical=x.is_grid_critical,
            charging_schedule=x.schedules,
            received_at=x.received_at,
            cleared_at=x.cleared_at,
        )
        for x in await store.smart_charging.limits(station_id)
    ]


@router.get(
    "/stations/{station_id}/ev-charging-needs",
    response_model=list[EvChargingOut],
    responses=responses(404),
)
async def ev_charging_needs(station_id: str, store: StoreDep) -> list[EvChargingOut]:
    """The EVs' charging needs and schedules (K15), newest first, with the cloud's answer."""
    await station_or_404(store, station_id)
    return [
        EvChargingOut.model_validate(x, from_attributes=True)
        for x in await store.smart_charging.ev_records(station_id)
    ]


# -- sites -------------------------------------------------------------------------------


def _site_out(site: Site) -> SiteOut:
    return SiteOut(
        site_id=site.site_id,
        name=site.name,
        max_current_a=site.max_current_a,
        phases=site.phases,
        station_ids=list(site.stations),
        station_max_current_a=dict(site.stations),
        created_at=site.created_at,
    )


async def _members(store: Store, body: SiteIn) -> dict[str, Decimal]:
    """The stations with their maxima; 422 for an unknown, repeated or badly sized one."""
    if len(set(body.station_ids)) != len(body.station_ids):
        raise HTTPException(422, "stationIds: a station is listed twice")
    extra = sorted(set(body.station_max_current_a) - set(body.station_ids))
    if extra:
        raise HTTPException(422, f"stationMaxCurrentA: {extra[0]!r} is not in stationIds")
    for sid, amps in body.station_max_current_a.items():
        if not MIN_STATION_MAX_A <= amps <= MAX_STATION_MAX_A:
            raise HTTPException(
                422,
                f"stationMaxCurrentA[{sid!r}]: {amps} A is not within "
                f"{MIN_STATION_MAX_A}..{MAX_STATION_MAX_A} A",
            )
    for sid in body.station_ids:
        if await store.stations.get(sid) is None:
            raise HTTPException(422, f"stationIds: station {sid!r} is not registered")
    return {
        sid: body.station_max_current_a.get(sid, DEFAULT_STATION_MAX_A) for sid in body.station_ids
    }


def _redivide_later(tasks: BackgroundTasks, store: Store, gateway: Gateway, site_id: int) -> None:
    async def run() -> None:
        await redivide(store, gateway, site_id, gateway.clock())

    tasks.add_task(run)


@router.post("/sites", response_model=SiteOut, status_code=201, responses=responses(409, 422))
async def create_site(
    body: SiteIn, store: StoreDep, gateway: GatewayDep, tasks: BackgroundTasks
) -> SiteOut:
    """A site; the transactions running on its stations are divided its current at once.
    409 when a station is in another site already."""
    members = await _members(store, body)
    try:
        site = await store.smart_charging.create_site(
            body.name,
            max_current_a=body.max_current_a,
            phases=body.phases,
            stations=members,
            at=gateway.clock(),
        )
    except SiteConflict as exc:
        raise HTTPException(409, str(exc)) from exc
    _redivide_later(tasks, store, gateway, site.site_id)
    return _site_out(site)


@router.get("/sites", response_model=list[SiteOut])
async def list_sites(store: StoreDep) -> list[SiteOut]:
    return [_site_out(site) for site in await store.smart_charging.sites()]


async def _site_or_404(store: Store, site_id: int) -> Site:
    site = await store.smart_charging.site(site_id)
    if site is None:
        raise HTTPException(404, f"site {site_id} does not exist")
    return site


@router.get("/sites/{site_id}", response_model=SiteOut, responses=responses(404))
async def get_site(site_id: int, store: StoreDep) -> SiteOut:
    return _site_out(await _site_or_404(store, site_id))


@router.put("/sites/{site_id}", response_model=SiteOut, responses=responses(404, 409, 422))
async def replace_site(
    site_id: int, body: SiteIn, store: StoreDep, gateway: GatewayDep, tasks: BackgroundTasks
) -> SiteOut:
    """Replace the site's limit and stations; its current is divided anew."""
    members = await _members(store, body)
    try:
        site = await store.smart_charging.update_site(
            site_id,
            name=body.name,
            max_current_a=body.max_current_a,
            phases=body.phases,
            stations=members,
        )
    except SiteConflict as exc:
        raise HTTPException(409, str(exc)) from exc
    if site is None:
        raise HTTPException(404, f"site {site_id} does not exist")
    _redivide_later(tasks, store, gateway, site.site_id)
    return _site_out(site)


@router.delete("/sites/{site_id}", status_code=204, responses=responses(404))
async def delete_site(site_id: int, store: StoreDep) -> Response:
    """The stations keep the profiles they have until their transactions end."""
    if not await store.smart_charging.delete_site(site_id):
        raise HTTPException(404, f"site {site_id} does not exist")
    return Response(status_code=204)


@router.get("/sites/{site_id}/allocation", response_model=AllocationOut, responses=responses(404))
async def site_allocation(site_id: int, store: StoreDep) -> AllocationOut:
    """How the site's current is divided among the transactions running there now."""
    site = await _site_or_404(store, site_id)
    allocation = await allocation_of(store, site)
    return AllocationOut(
        site_id=site.site_id,
        max_current_a=site.max_current_a,
        total_a=allocation.total_a,
        oversubscribed=allocation.oversubscribed,
        shares=[
            ShareOut(
                station_id=s.station_id,
                evse_id=s.evse_id,
                transaction_id=s.transaction_id,
                limit_a=share,
            )
            for s, share in allocation.shares
        ],
    )
