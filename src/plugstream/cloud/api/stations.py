"""Stations: list, view, register -- and the one place a station is written for the API
(:func:`station_json`), whether one is shown or ten thousand are listed."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal

from fastapi import HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import to_json

from plugstream.cloud.api.common import StoreDep, UtcDateTime, as_utc, guarded_router, responses
from plugstream.cloud.api.deps import GatewayDep
from plugstream.cloud.gateway import Gateway
from plugstream.cloud.stations import MAX_STATION_ID, valid_station_id
from plugstream.cloud.storage import Store
from plugstream.cloud.storage.records import StationRecord
from plugstream.ocpp import OcppVersion

__all__ = [
    "BootStatus",
    "ConnectorOut",
    "StationIn",
    "StationOut",
    "check_station_id",
    "router",
    "station_json",
    "station_or_404",
]

PASSWORD_MIN, PASSWORD_MAX = 16, 40  # 1.6 security whitepaper: AuthorizationKey, 16..40

BootStatus = Literal["Accepted", "Pending", "Rejected"]


class ConnectorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    evse_id: int = Field(
        description="1.6: the connectorId (0 = whole station); 2.0.1: the EVSE id."
    )
    connector_id: int
    status: str = Field(description="The spec's value, e.g. Available, Charging, Faulted.")
    error_code: str | None
    updated_at: UtcDateTime
    charging_state: str | None = Field(
        default=None,
        description="2.0.1: the running transaction's chargingState (Charging, EVConnected, "
        "SuspendedEV, SuspendedEVSE, Idle), while status says Occupied; None otherwise.",
    )


class StationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    station_id: str
    connected: bool = Field(description="Whether the station holds an OCPP connection right now.")
    node: str | None = Field(
        default=None,
        description="The cloud node (--node-id) holding that connection; null when none.",
    )
    ocpp_version: str | None = Field(
        description="The live connection's OCPP version, else the last one seen."
    )
    vendor: str | None
    model: str | None
    serial_number: str | None
    firmware_version: str | None
    security_profile: int
    lenient: bool
    boot_status: BootStatus
    has_password: bool
    registered_at: UtcDateTime
    last_boot: UtcDateTime | None
    last_seen: UtcDateTime | None
    clock_offset_s: float | None = Field(description="Station clock minus server clock, seconds.")
    connectors: list[ConnectorOut]
    protocol_violations: int = Field(
        description="Frames since the server started that broke OCPP-J or the schemas "
        "(refused for strict stations, accepted for lenient ones)."
    )
    failed_logins: int = Field(description="Refused logins since the server started.")


class StationIn(BaseModel):
    """Register a station, or replace its registration."""

    model_config = ConfigDict(extra="forbid")

    password: str | None = Field(
        default=None,
        description=f"HTTP Basic password ({PASSWORD_MIN}..{PASSWORD_MAX} characters); "
        "required for security profiles 1 and 2 unless the station has one already "
        "(leave it out to keep it).",
    )
    security_profile: int = Field(
        default=1,
        ge=0,
        le=3,
        description="OCPP security profile; 0 (no authentication) for tests only.",
    )
    lenient: bool = Field(
        default=False, description="Accept this station's known deviations from the schemas."
    )
    boot_status: BootStatus = Field(
        default="Accepted",
        description="The answer to the station's BootNotification: Pending or Rejected hold "
        "it back (it may then send nothing but BootNotification), Accepted lets it work.",
    )

    @model_validator(mode="after")
    def _password_fits(self) -> StationIn:
        if self.password is None:
            return self
        if not PASSWORD_MIN <= len(self.password) <= PASSWORD_MAX:
            raise ValueError(
                f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long "
                f"(OCPP 1.6 security whitepaper, AuthorizationKey), not {len(self.password)}"
            )
        if not (self.password.isascii() and self.password.isprintable()):
            raise ValueError("password must be printable ASCII")
        return self


# -- helpers ----------------------------------------------------------------------------


def check_station_id(value: str, what: str = "station id") -> str:
    """``value`` if it can be a station's identity, else 422 saying why."""
    if not 1 <= len(value) <= MAX_STATION_ID:
        raise HTTPException(
            422, f"{what} must be 1 to {MAX_STATION_ID} characters long, not {len(value)}"
        )
    if ":" in value:
        raise HTTPException(422, f"{what} {value!r} must not contain ':' (HTTP Basic user name)")
    if not valid_station_id(value):
        raise HTTPException(
            422,
            f"{what} {value!r} may only hold the characters of an OCPP identifierString: "
            "A-Z a-z 0-9 * - _ = + | @ .",
        )
    return value


async def station_or_404(store: Store, station_id: str) -> StationRecord:
    record = await store.stations.get(check_station_id(station_id))
    if record is None:
        raise HTTPException(404, f"station {station_id!r} is not registered")
    return record


def station_json(
    r: StationRecord,
    live: OcppVersion | None,
    violations: Mapping[str, int],
    failed_logins: Mapping[str, int],
    node: str | None = None,
) -> dict[str, Any]:
    """What :class:`StationOut` holds of a station, as plain values: ``live`` is the
    version of its connection now, if it has one, ``node`` the node holding it; the
    counters are the gateway's."""
    sid = r.station_id
    return {
        "station_id": sid,
        "connected": live is not None,
        "node": node if live is not None else None,
        "ocpp_version": live.value if live is not None else r.ocpp_version,
        "vendor": r.vendor,
        "model": r.model,
        "serial_number": r.serial_number,
        "firmware_version": r.firmware_version,
        "security_profile": r.security_profile,
        "lenient": r.lenient,
        "boot_status": r.boot_status,
        "has_password": r.has_password,
        "registered_at": as_utc(r.registered_at),
        "last_boot": None if r.last_boot is None else as_utc(r.last_boot),
        "last_seen": None if r.last_seen is None else as_utc(r.last_seen),
        "clock_offset_s": r.clock_offset_s,
        "connectors": [
            {
                "evse_id": c.evse_id,
                "connector_id": c.connector_id,
                "status": c.status,
                "error_code": c.error_code,
                "updated_at": as_utc(c.updated_at),
                "charging_state": c.charging_state,
            }
            for c in r.connectors
        ],
        "protocol_violations": violations.get(sid, 0),
        "failed_logins": failed_logins.get(sid, 0),
    }


def _station_out(record: StationRecord, gateway: Gateway) -> StationOut:
    live = gateway.version_of(record.station_id)
    node = gateway.node_of(record.station_id)
    fields = station_json(record, live, gateway.violations, gateway.failed_logins, node)
    return StationOut.model_validate(fields)


# -- routes -----------------------------------------------------------------------------

router = guarded_router(tags=["stations"])


@router.get("/stations", response_model=list[StationOut])
async def list_stations(store: StoreDep, gateway: GatewayDep) -> Response:
    """Every registered station, with whether it is connected now."""
    records = await store.stations.list()
    # Tens of thousands of stations: written from the records by pydantic's serializer
    # in one go, as StationOut would write them, without a model (and FastAPI's
    # validation of it) per station: the event loop that builds this serves every
    # station too, and a listing took it for a second at 10,000 stations.
    # Written in a worker thread from a snapshot of the live connections and counters:
    # the loop takes turns with it instead of stalling every station for its length.
    live, nodes = gateway.live_versions(), gateway.live_nodes()
    violations, failed = dict(gateway.violations), dict(gateway.failed_logins)
    body = await asyncio.to_thread(
        lambda: to_json(
            [
                station_json(r, live.get(r.station_id), violations, failed, nodes.get(r.station_id))
                for r in records
            ]
        )
    )
    return Response(body, media_type="application/json")


@router.get("/stations/{station_id}", response_model=StationOut, responses=responses(404, 422))
async def get_station(station_id: str, store: StoreDep, gateway: GatewayDep) -> StationOut:
    """Model, firmware, OCPP version, connection, last seen, clock offset, connectors."""
    return _station_out(await station_or_404(store, station_id), gateway)


@router.put(
    "/stations/{station_id}",
    response_model=StationOut,
    responses={201: {"model": StationOut, "description": "Registered."}, **responses(422)},
)
async def put_station(
    station_id: str, body: StationIn, response: Response, store: StoreDep, gateway: GatewayDep
) -> StationOut:
    """Register a station (201) or replace its password, security profile, lenient flag
    and boot status."""
    existing = await store.stations.get(check_station_id(station_id))
    if (
        body.password is None
        and body.security_profile in (1, 2)
        and (existing is None or not existing.has_password)
    ):
        raise HTTPException(
            422,
            f"password: security profile {body.security_profile} needs a password "
            f"of {PASSWORD_MIN} to {PASSWORD_MAX} characters",
        )
    record = await store.stations.register(
        station_id,
        password=body.password,
        security_profile=body.security_profile,
        lenient=body.lenient,
        boot_status=body.boot_status,
    )
    response.status_code = 200 if existing is not None else 201
    return _station_out(record, gateway)
