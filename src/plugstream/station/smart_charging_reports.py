"""What a 2.0.1 station tells the CSMS about smart charging: the profiles it has
installed, on request (GetChargingProfiles → ReportChargingProfiles, K09), and the limits
an external system imposes on it and releases (NotifyChargingLimit K12,
ClearedChargingLimit K13)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from plugstream.ocpp import on, v201
from plugstream.ocpp.routing import after
from plugstream.station.smartcharging import ChargingProfiles, Profile

__all__ = [
    "SOURCE",
    "SmartChargingReports201",
    "clear_external_limit",
    "matching",
    "set_external_limit",
]

#: every profile this station has came from the CSMS through SetChargingProfile
SOURCE = "CSO"


class _WithProfiles(Protocol):
    profiles: ChargingProfiles

    @property
    def online(self) -> bool: ...

    def now(self) -> datetime: ...

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]: ...

    def profiles_changed(self) -> None: ...


def matching(profiles: ChargingProfiles, request: Mapping[str, Any]) -> list[Profile]:
    """The installed 2.0.1 profiles a GetChargingProfilesRequest selects: on ``evseId``
    when given, and by every criterion of its ``chargingProfile`` (K09)."""
    criteria: Mapping[str, Any] = request.get("chargingProfile") or {}
    evse_id = request.get("evseId")
    ids = criteria.get("chargingProfileId")
    sources = criteria.get("chargingLimitSource")
    found = []
    for p in profiles.profiles:
        if p.version != "2.0.1":
            continue
        if evse_id is not None and p.evse_id != evse_id:
            continue
        if ids is not None and p.id not in ids:
            continue
        if sources is not None and SOURCE not in sources:
            continue
        purpose = criteria.get("chargingProfilePurpose")
        if purpose is not None and p.purpose != purpose:
            continue
        level = criteria.get("stackLevel")
        if level is not None and p.stack_level != level:
            continue
        found.append(p)
    return found


class SmartChargingReports201:
    """K09: GetChargingProfiles, answered with one ReportChargingProfiles per EVSE."""

    station: _WithProfiles

    @on(v201.Action.GetChargingProfiles)
    def get_charging_profiles(self, payload: v201.GetChargingProfilesRequest) -> dict[str, Any]:
        found = matching(self.station.profiles, payload)
        return {"status": "Accepted" if found else "NoProfiles"}  # K09.FR.08

    @after(v201.Action.GetChargingProfiles)
    async def get_charging_profiles_done(self, payload: v201.GetChargingProfilesRequest) -> None:
        by_evse: dict[int, list[dict[str, Any]]] = {}
        for p in matching(self.station.profiles, payload):
            by_evse.setdefault(p.evse_id, []).append(dict(p.raw))
        evses = sorted(by_evse)
        for n, evse_id in enumerate(evses):
            await self.station.call(
                "ReportChargingProfiles",
                {
                    "requestId": payload["requestId"],  # K09.FR.01
                    "chargingLimitSource": SOURCE,
                    "evseId": evse_id,
                    "chargingProfile": by_evse[evse_id],
                    "tbc": n < len(evses) - 1,  # K09.FR.02
                },
            )


async def set_external_limit(
    station: _WithProfiles,
    limit_a: float,
    *,
    evse_id: int = 0,
    source: str = "EMS",
    grid_critical: bool | None = None,
) -> bool:
    """An external system limits the station (or one EVSE) to ``limit_a`` A per phase:
    applied at once (K12.FR.01) and told to the CSMS (K12.FR.02); False when the station
    is offline and the CSMS was not told."""
    station.profiles.external[evse_id] = float(limit_a)
    station.profiles_changed()
    if not station.online:
        return False
    charging_limit: dict[str, Any] = {"chargingLimitSource": source}
    if grid_critical is not None:
        charging_limit["isGridCritical"] = grid_critical
    payload: dict[str, Any] = {
        "chargingLimit": charging_limit,
        "chargingSchedule": [
            {
                "id": 1,
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": float(limit_a)}],
            }
        ],
    }
    if evse_id:
        payload["evseId"] = evse_id
    await station.call("NotifyChargingLimit", payload)
    return True


async def clear_external_limit(
    station: _WithProfiles, *, evse_id: int = 0, source: str = "EMS"
) -> bool:
    """The external system releases its limit (K13.FR.01) and the CSMS is told
    (K13.FR.02); False when there was none or the station is offline."""
    if station.profiles.external.pop(evse_id, None) is None:
        return False
    station.profiles_changed()
    if not station.online:
        return False
    payload: dict[str, Any] = {"chargingLimitSource": source}
    if evse_id:
        payload["evseId"] = evse_id
    await station.call("ClearedChargingLimit", payload)
    return True
