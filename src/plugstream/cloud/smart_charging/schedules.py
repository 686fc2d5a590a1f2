"""The charging profiles the cloud builds, and the check of an EV's schedule against
them (K15.FR.11/12), sans-I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

__all__ = [
    "CLOUD_PROFILE_ID_BASE",
    "CLOUD_STACK_LEVEL",
    "cloud_profile_id",
    "tx_profile_16",
    "tx_profile_201",
    "within_limits",
]

#: the TxProfile the cloud keeps on an EVSE has this id plus the EVSE's id: a new one
#: replaces the last (K01.FR.05), never stacks beside it (K01.FR.39)
CLOUD_PROFILE_ID_BASE = 1_000_000
#: its stackLevel: above an operator's TxProfile at 0
CLOUD_STACK_LEVEL = 1


def cloud_profile_id(evse_id: int) -> int:
    return CLOUD_PROFILE_ID_BASE + evse_id


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def tx_profile_201(
    evse_id: int,
    transaction_id: str,
    limit: Decimal,
    *,
    phases: int | None,
    unit: str = "A",
) -> dict[str, Any]:
    """The SetChargingProfileRequest of a one-period TxProfile for a running transaction
    (K15.FR.07: one period fits any maxScheduleTuples)."""
    period: dict[str, Any] = {"startPeriod": 0, "limit": _number(limit)}
    if phases is not None and unit == "A":
        period["numberPhases"] = phases
    return {
        "evseId": evse_id,
        "chargingProfile": {
            "id": cloud_profile_id(evse_id),
            "stackLevel": CLOUD_STACK_LEVEL,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "transactionId": transaction_id,
            "chargingSchedule": [
                {"id": 1, "chargingRateUnit": unit, "chargingSchedulePeriod": [period]}
            ],
        },
    }


def tx_profile_16(
    connector_id: int, transaction_id: int, limit: Decimal, *, phases: int | None
) -> dict[str, Any]:
    """The SetChargingProfile.req of the same TxProfile for a 1.6 station."""
    period: dict[str, Any] = {"startPeriod": 0, "limit": _number(limit)}
    if phases is not None:
        period["numberPhases"] = phases
    return {
        "connectorId": connector_id,
        "csChargingProfiles": {
            "chargingProfileId": cloud_profile_id(connector_id),
            "transactionId": transaction_id,
            "stackLevel": CLOUD_STACK_LEVEL,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [period]},
        },
    }


def _steps(schedule: Mapping[str, Any]) -> list[tuple[int, Decimal]]:
    periods = schedule.get("chargingSchedulePeriod")
    if not isinstance(periods, Sequence):
        return []
    steps = []
    for p in periods:
        if isinstance(p, Mapping):
            steps.append((int(p.get("startPeriod", 0)), Decimal(str(p.get("limit", 0)))))
    return sorted(steps)


def _at(steps: list[tuple[int, Decimal]], t: int) -> Decimal | None:
    found = None
    for start, limit in steps:
        if start <= t:
            found = limit
    return found


def within_limits(ev_schedule: Mapping[str, Any], ours: Mapping[str, Any]) -> bool:
    """True when the EV's schedule asks at no time for more than our schedule allows
    (K15.FR.11); schedules in different units are not compared (the station has checked
    them against its composite schedule, K15.FR.09). Times are from each one's start."""
    if ev_schedule.get("chargingRateUnit") != ours.get("chargingRateUnit"):
        return True
    ev, limit = _steps(ev_schedule), _steps(ours)
    if not ev or not limit:
        return True
    for t in sorted({start for start, _ in ev} | {start for start, _ in limit}):
        asked, allowed = _at(ev, t), _at(limit, t)
        if asked is not None and allowed is not None and asked > allowed:
            return False
    return True
