"""Smart charging, sans I/O: the charging profiles a station holds and the limits they impose.

OCPP 1.6 §3.13 (SetChargingProfile, ClearChargingProfile, GetCompositeSchedule)
and OCPP 2.0.1 use cases K01-K08. :class:`ChargingProfiles` is an in-memory store
that the OCPP handlers feed with request payloads and that the simulated EV asks
for its current limit; it knows no clock (``now`` is passed in) and no file
(``to_json``/``from_json`` hand persistence to the caller, K01.FR.27).

Rules:

- Three purposes: the station-wide maximum (1.6 ``ChargePointMaxProfile``,
  2.0.1 ``ChargingStationMaxProfile``, connector/EVSE 0 only), ``TxDefaultProfile``
  (on 0 for every EVSE, or on one EVSE which then overrules the one on 0) and
  ``TxProfile`` (one EVSE, only while a transaction runs there).
- Within a purpose the valid profile with the highest ``stackLevel`` whose
  schedule covers the instant wins; when its schedule has ended the next one
  below takes over (TC_K_40_CS).
- ``TxProfile`` overrides ``TxDefaultProfile``; the maximum profile caps both:
  the limit is ``min(max, tx or txdefault)``.
- ``W`` limits are turned into amperes per phase with ``W / (voltage * phases)``
  (K01.FR.50); ``A`` limits are per phase (K01.FR.51).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from plugstream.ocpp.datetimes import parse_time

__all__ = [
    "MAX_PURPOSE",
    "ChargingProfiles",
    "Profile",
    "SetStatus16",
    "SetStatus201",
]

SetStatus16 = Literal["Accepted", "Rejected", "NotSupported"]
SetStatus201 = Literal["Accepted", "Rejected"]
ClearStatus = Literal["Accepted", "Unknown"]

MAX_PURPOSE = "ChargingStationMaxProfile"
"""The canonical name of the station-wide maximum; 1.6's ``ChargePointMaxProfile`` maps to it."""
TX_DEFAULT = "TxDefaultProfile"
TX = "TxProfile"
_PURPOSE_16 = {"ChargePointMaxProfile": MAX_PURPOSE, TX_DEFAULT: TX_DEFAULT, TX: TX}
_PURPOSE_201 = {MAX_PURPOSE: MAX_PURPOSE, TX_DEFAULT: TX_DEFAULT, TX: TX}
_RECURRENCE = {"Daily": timedelta(days=1), "Weekly": timedelta(days=7)}
_FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _format(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Period:
    start: int
    limit: float
    number_phases: int | None


@dataclass(frozen=True, slots=True)
class Profile:
    """One installed charging profile, normalised from either version's payload."""

    id: int
    evse_id: int
    stack_level: int
    purpose: str
    kind: str
    recurrency: str | None
    valid_from: datetime | None
    valid_to: datetime | None
    transaction_id: str | None
    start_schedule: datetime | None
    duration: int | None
    unit: str
    periods: tuple[Period, ...]
    version: str
    raw: Mapping[str, Any]

    def valid_at(self, t: datetime) -> bool:
        """K01.FR.36/37: validFrom <= t < validTo."""
        if self.valid_from is not None and t < self.valid_from:
            return False
        return self.valid_to is None or t < self.valid_to

    def schedule_start(self, t: datetime, relative_origin: datetime) -> datetime | None:
        """The start of the schedule occurrence that covers ``t`` (None before an absolute start)."""
        if self.kind == "Relative":
            return relative_origin
        start = self.start_schedule
        if start is None:  # 1.6 allows an Absolute profile without startSchedule.
            start = self.valid_from or _FAR_PAST
        if self.kind == "Recurring" and self.recurrency in _RECURRENCE:
            step = _RECURRENCE[self.recurrency]
            return start + step * math.floor((t - start) / step)
        return start

    def period_at(self, t: datetime, relative_origin: datetime) -> Period | None:
        """The schedule period in force at ``t``, or None when the profile imposes nothing."""
        if not self.valid_at(t):
            return None
        start = self.schedule_start(t, relative_origin)
        if start is None or t < start:
            return None
        elapsed = (t - start).total_seconds()
        if self.duration is not None and elapsed >= self.duration:
            return None  # K01.FR.11/12/13
        found: Period | None = None
        for period in self.periods:
            if period.start <= elapsed:
                found = period
            else:
                break
        return found

    def transitions(
        self, begin: datetime, end: datetime, relative_origin: datetime
    ) -> set[datetime]:
        """Every instant in ``(begin, end)`` at which this profile's limit may change."""
        times: set[datetime] = set()
        if self.valid_from is not None:
            times.add(self.valid_from)
        if self.valid_to is not None:
            times.add(self.valid_to)
        starts: list[datetime] = []
        first = self.schedule_start(begin, relative_origin)
        if first is not None:
            starts.append(first)
            if self.kind == "Recurring" and self.recurrency in _RECURRENCE:
                step = _RECURRENCE[self.recurrency]
                nxt = first + step
                while nxt < end:
                    starts.append(nxt)
                    nxt += step
        for start in starts:
            times.add(start)
            for period in self.periods:
                times.add(start + timedelta(seconds=period.start))
            if self.duration is not None:
                times.add(start + timedelta(seconds=self.duration))
        return {t for t in times if begin < t < end}


def _periods(items: Iterable[Mapping[str, Any]]) -> tuple[Period, ...]:
    periods = [
        Period(
            int(item["startPeriod"]),
            float(item["limit"]),
            int(item["numberPhases"]) if item.get("numberPhases") is not None else None,
        )
        for item in items
    ]
    return tuple(sorted(periods, key=lambda p: p.start))


def _optional_time(value: Any) -> datetime | None:
    return parse_time(value) if isinstance(value, str) else None


def _profile(evse_id: int, raw: Mapping[str, Any], version: str) -> Profile:
    """Normalise a 1.6 ``csChargingProfiles`` or 2.0.1 ``ChargingProfileType``; raises on bad input."""
    if version == "1.6":
        schedule = raw["chargingSchedule"]
        purpose = _PURPOSE_16[raw["chargingProfilePurpose"]]
        profile_id = int(raw["chargingProfileId"])
    else:
        schedules = raw["chargingSchedule"]
        if not schedules:
            raise ValueError("empty chargingSchedule")
        schedule = schedules[0]  # more than one only with ISO 15118 (K01.FR.34)
        purpose = _PURPOSE_201[raw["chargingProfilePurpose"]]
        profile_id = int(raw["id"])
    periods = _periods(schedule["chargingSchedulePeriod"])
    if not periods:
        raise ValueError("no chargingSchedulePeriod")
    transaction_id = raw.get("transactionId")
    return Profile(
        id=profile_id,
        evse_id=evse_id,
        stack_level=int(raw["stackLevel"]),
        purpose=purpose,
        kind=str(raw["chargingProfileKind"]),
        recurrency=raw.get("recurrencyKind"),
        valid_from=_optional_time(raw.get("validFrom")),
        valid_to=_optional_time(raw.get("validTo")),
        transaction_id=None if transaction_id is None else str(transaction_id),
        start_schedule=_optional_time(schedule.get("startSchedule")),
        duration=int(schedule["duration"]) if schedule.get("duration") is not None else None,
        unit=str(schedule["chargingRateUnit"]),
        periods=periods,
        version=version,
        raw=dict(raw),
    )


def _overlap(a: Profile, b: Profile) -> bool:
    a_from = a.valid_from or _FAR_PAST
    b_from = b.valid_from or _FAR_PAST
    a_to = a.valid_to or datetime.max.replace(tzinfo=UTC)
    b_to = b.valid_to or datetime.max.replace(tzinfo=UTC)
    return a_from < b_to and b_from < a_to


def _floor_tenth(value: float) -> float:
    """Round a limit down to one decimal (the 1.6 schema's ``multipleOf 0.1``; never above the limit)."""
    tenths = math.floor(value * 10 + 1e-6)
    return tenths // 10 if tenths % 10 == 0 else tenths / 10


class ChargingProfiles:
    """The charging profiles installed on one station, and the limits they impose.

    ``evse_ids`` are the connectors (1.6) or EVSEs (2.0.1) that exist besides 0;
    ``units`` the accepted ``chargingRateUnit`` values (K01.FR.26, TC_K_12);
    ``max_profiles`` the ``MaxChargingProfilesInstalled`` / ``Entries`` limit;
    ``max_current`` the hardware limit in A per phase that a composite schedule
    reports where no profile limits (TC_K_39); ``supported=False`` makes 1.6's
    SetChargingProfile answer ``NotSupported``.
    """

    def __init__(
        self,
        evse_ids: Iterable[int] = (1,),
        *,
        units: Iterable[str] = ("A", "W"),
        max_profiles: int | None = None,
        max_stack_level: int | None = None,
        max_current: float = 32.0,
        supported: bool = True,
    ) -> None:
        self.evse_ids = frozenset(evse_ids)
        self.units = frozenset(units)
        self.max_profiles = max_profiles
        self.max_stack_level = max_stack_level
        self.max_current = max_current
        self.supported = supported
        self._profiles: dict[int, Profile] = {}
        #: limits in A per phase an external system (an EMS, the grid operator) imposes,
        #: by EVSE (0: the whole station), besides every profile (K12)
        self.external: dict[int, float] = {}

    # -- the store ---------------------------------------------------------

    @property
    def profiles(self) -> list[Profile]:
        """The installed profiles, by id."""
        return [self._profiles[key] for key in sorted(self._profiles)]

    def __len__(self) -> int:
        return len(self._profiles)

    def _admissible(self, profile: Profile) -> bool:
        """The checks common to both versions."""
        if profile.evse_id != 0 and profile.evse_id not in self.evse_ids:
            return False  # K01.FR.28, TC_K_14
        if profile.unit not in self.units:
            return False  # K01.FR.26, TC_K_12
        if profile.stack_level < 0:
            return False
        if self.max_stack_level is not None and profile.stack_level > self.max_stack_level:
            return False
        if profile.kind not in ("Absolute", "Recurring", "Relative"):
            return False
        if profile.kind == "Recurring" and (
            profile.recurrency not in _RECURRENCE or profile.start_schedule is None
        ):
            return False
        if profile.purpose == MAX_PURPOSE and profile.evse_id != 0:
            return False
        if profile.purpose == TX and profile.evse_id == 0:
            return False  # K01.FR.16, TC_K_11
        return not (
            self.max_profiles is not None
            and profile.id not in self._profiles
            and len(self._profiles) >= self.max_profiles
        )

    def set_16(
        self,
        connector_id: int,
        cs_charging_profile: Mapping[str, Any],
        *,
        transaction_id_active: int | None,
    ) -> SetStatus16:
        """SetChargingProfile.req (1.6 §5.16): install ``csChargingProfiles`` on ``connector_id``.

        ``transaction_id_active`` is the transaction running on that connector, if any.
        A profile with the same id, or the same stackLevel and purpose on the same
        connector, is replaced (§3.13.2).
        """
        if not self.supported:
            return "NotSupported"
        try:
            profile = _profile(connector_id, cs_charging_profile, "1.6")
        except (KeyError, TypeError, ValueError):
            return "Rejected"
        if not self._admissible(profile):
            return "Rejected"
        if profile.purpose == TX:
            if transaction_id_active is None:
                return "Rejected"
            if profile.transaction_id is not None and profile.transaction_id != str(
                transaction_id_active
            ):
                return "Rejected"
            profile = _with_transaction(profile, str(transaction_id_active))
        for other in list(self._profiles.values()):
            if (
                other.evse_id == profile.evse_id
                and other.purpose == profile.purpose
                and other.stack_level == profile.stack_level
            ):
                del self._profiles[other.id]
        self._profiles[profile.id] = profile
        return "Accepted"

    def set_201(
        self,
        evse_id: int,
        profile: Mapping[str, Any],
        *,
        active_transaction_id: str | None,
    ) -> SetStatus201:
        """SetChargingProfileRequest (K01): install ``chargingProfile`` on ``evse_id``.

        ``active_transaction_id`` is the transaction running on that EVSE, if any.
        """
        try:
            new = _profile(evse_id, profile, "2.0.1")
        except (KeyError, TypeError, ValueError):
            return "Rejected"  # also ChargingStationExternalConstraints (K01.FR.22)
        if not self._admissible(new):
            return "Rejected"
        if new.purpose == MAX_PURPOSE and new.kind == "Relative":
            return "Rejected"  # K01.FR.38
        if new.kind in ("Absolute", "Recurring") and new.start_schedule is None:
            return "Rejected"  # K01.FR.40
        if new.kind == "Relative" and new.start_schedule is not None:
            return "Rejected"  # K01.FR.41
        if new.purpose == TX:
            if active_transaction_id is None:
                return "Rejected"  # K01.FR.09, TC_K_02
            if new.transaction_id is not None and new.transaction_id != active_transaction_id:
                return "Rejected"  # K01.FR.33
            new = _with_transaction(new, active_transaction_id)
        for other in self._profiles.values():
            if (
                other.id == new.id
                or other.purpose != new.purpose
                or other.stack_level != new.stack_level
            ):
                continue
            if new.purpose == TX:
                if other.transaction_id == new.transaction_id:
                    return "Rejected"  # K01.FR.39
            elif new.purpose == TX_DEFAULT and (other.evse_id == 0) != (new.evse_id == 0):
                return "Rejected"  # K01.FR.52/53 DuplicateProfile
            elif other.evse_id == new.evse_id and _overlap(other, new):
                return "Rejected"  # K01.FR.06
        self._profiles[new.id] = new  # K01.FR.05: the same id replaces
        return "Accepted"

    def clear_16(self, request: Mapping[str, Any]) -> ClearStatus:
        """ClearChargingProfile.req (1.6 §5.4): by ``id``, or by connectorId/purpose/stackLevel."""
        profile_id = request.get("id")
        if profile_id is not None:
            return (
                "Accepted" if self._profiles.pop(int(profile_id), None) is not None else "Unknown"
            )
        purpose = request.get("chargingProfilePurpose")
        return self._clear(
            request.get("connectorId"),
            None if purpose is None else _PURPOSE_16.get(purpose, purpose),
            request.get("stackLevel"),
        )

    def clear_201(self, request: Mapping[str, Any]) -> ClearStatus:
        """ClearChargingProfileRequest (K10): by ``chargingProfileId``, or by ``chargingProfileCriteria``."""
        profile_id = request.get("chargingProfileId")
        if profile_id is not None:
            return (
                "Accepted" if self._profiles.pop(int(profile_id), None) is not None else "Unknown"
            )
        criteria = request.get("chargingProfileCriteria") or {}
        return self._clear(
            criteria.get("evseId"),
            criteria.get("chargingProfilePurpose"),
            criteria.get("stackLevel"),
        )

    def _clear(
        self, evse_id: int | None, purpose: str | None, stack_level: int | None
    ) -> ClearStatus:
        doomed = [
            p.id
            for p in self._profiles.values()
            if (evse_id is None or p.evse_id == evse_id)
            and (purpose is None or p.purpose == purpose)
            and (stack_level is None or p.stack_level == stack_level)
        ]
        for profile_id in doomed:
            del self._profiles[profile_id]
        return "Accepted" if doomed else "Unknown"

    def end_transaction(self, evse_id: int) -> None:
        """Drop the TxProfiles of ``evse_id``: they live only as long as their transaction."""
        for profile in list(self._profiles.values()):
            if profile.purpose == TX and profile.evse_id == evse_id:
                del self._profiles[profile.id]

    # -- persistence (K01.FR.27) -------------------------------------------

    def to_json(self) -> str:
        """The installed profiles as JSON text, for the station's durable storage."""
        if not self._profiles:  # most stations, saved with every meter sample
            return "[]"
        return json.dumps(
            [
                {
                    "version": p.version,
                    "evseId": p.evse_id,
                    "profile": p.raw,
                    "transactionId": p.transaction_id,
                }
                for p in self.profiles
            ],
            sort_keys=True,
        )

    @classmethod
    def from_json(
        cls, text: str, evse_ids: Iterable[int] = (1,), **options: Any
    ) -> ChargingProfiles:
        """A store holding the profiles of :meth:`to_json`'s ``text``."""
        store = cls(evse_ids, **options)
        for item in json.loads(text):
            profile = _profile(int(item["evseId"]), item["profile"], str(item["version"]))
            if item.get("transactionId") is not None:
                profile = _with_transaction(profile, str(item["transactionId"]))
            store._profiles[profile.id] = profile
        return store

    # -- limits ------------------------------------------------------------

    def _candidates(self, evse_id: int, with_tx: bool) -> dict[str, list[Profile]]:
        """The profiles that bear on ``evse_id``, by purpose, highest stackLevel first."""
        out: dict[str, list[Profile]] = {MAX_PURPOSE: [], TX_DEFAULT: [], TX: []}
        for p in self._profiles.values():
            if p.purpose == MAX_PURPOSE:
                out[MAX_PURPOSE].append(p)
            elif evse_id == 0:
                continue
            elif p.purpose == TX_DEFAULT and p.evse_id in (0, evse_id):
                out[TX_DEFAULT].append(p)
            elif p.purpose == TX and p.evse_id == evse_id and with_tx:
                out[TX].append(p)
        for group in out.values():
            # Higher stackLevel first; on a tie the EVSE's own TxDefaultProfile overrules the one on 0.
            group.sort(key=lambda p: (p.stack_level, p.evse_id != 0), reverse=True)
        return out

    @staticmethod
    def _amps(period: Period, unit: str, voltage: float, phases: int) -> float:
        if unit == "A":
            return period.limit
        used = min(period.number_phases or phases, phases)
        return period.limit / (voltage * max(used, 1))

    def _limit(
        self,
        groups: dict[str, list[Profile]],
        t: datetime,
        origin: datetime,
        voltage: float,
        phases: int,
    ) -> tuple[float, int | None] | None:
        """The amperes per phase imposed at ``t`` and the fewest phases any period asks for."""
        found: dict[str, tuple[float, int | None]] = {}
        for purpose, group in groups.items():
            for p in group:
                period = p.period_at(t, origin)
                if period is not None:
                    found[purpose] = (
                        self._amps(period, p.unit, voltage, phases),
                        period.number_phases,
                    )
                    break
        chosen = [found[MAX_PURPOSE]] if MAX_PURPOSE in found else []
        if TX in found:
            chosen.append(found[TX])  # TxProfile overrides TxDefaultProfile
        elif TX_DEFAULT in found:
            chosen.append(found[TX_DEFAULT])
        if not chosen:
            return None
        amps = min(a for a, _ in chosen)
        wanted = [n for _, n in chosen if n is not None]
        return amps, (min(wanted) if wanted else None)

    def next_change(
        self, evse_id: int, now: datetime, *, transaction_start: datetime | None = None
    ) -> datetime | None:
        """The next instant within a day after ``now`` at which the limit of ``evse_id``
        may change (a period boundary, validFrom/validTo): when a station must wake."""
        if not self._profiles:
            return None
        horizon = now + timedelta(days=1)
        origin = transaction_start if transaction_start is not None else now
        times: set[datetime] = set()
        for profile in self._profiles.values():
            if profile.evse_id not in (0, evse_id):
                continue
            times |= profile.transitions(now, horizon, origin)
        return min(times) if times else None

    def limit_at(
        self,
        connector_or_evse_id: int,
        now: datetime,
        *,
        transaction_start: datetime | None,
        voltage: float = 230.0,
        phases: int = 3,
    ) -> float | None:
        """The current limit in A per phase at ``now``, or None when no profile limits it.

        ``transaction_start`` is the start of the transaction on that connector/EVSE
        (None when there is none: TxProfiles then do not apply); it is the origin of
        Relative profiles. ``voltage`` and ``phases`` convert W limits to A.
        """
        if not self._profiles and not self.external:  # most stations, every tick
            return None
        now = _aware(now)
        origin = _aware(transaction_start) if transaction_start is not None else now
        groups = self._candidates(connector_or_evse_id, transaction_start is not None)
        found = self._limit(groups, now, origin, voltage, phases)
        external = [a for e, a in self.external.items() if e in (0, connector_or_evse_id)]
        if external:
            return min([*external, *([] if found is None else [found[0]])])
        return None if found is None else found[0]

    def _composite(
        self,
        evse_id: int,
        duration: int,
        unit: str,
        now: datetime,
        transaction_start: datetime | None,
        voltage: float,
        phases: int,
    ) -> list[dict[str, Any]]:
        now = _aware(now)
        end = now + timedelta(seconds=duration)
        origin = _aware(transaction_start) if transaction_start is not None else now
        groups = self._candidates(evse_id, transaction_start is not None)
        instants = {now}
        for group in groups.values():
            for p in group:
                instants |= p.transitions(now, end, origin)
        periods: list[dict[str, Any]] = []
        previous: tuple[float, int | None] | None = None
        for t in sorted(instants):
            found = self._limit(groups, t, origin, voltage, phases)
            amps, number_phases = found if found is not None else (self.max_current, None)
            amps = min(amps, self.max_current)
            value = amps if unit == "A" else amps * voltage * (number_phases or phases)
            value = _floor_tenth(value)
            if previous == (value, number_phases):
                continue
            previous = (value, number_phases)
            period: dict[str, Any] = {"startPeriod": int((t - now).total_seconds()), "limit": value}
            if number_phases is not None:
                period["numberPhases"] = number_phases
            periods.append(period)
        return periods

    def composite_16(
        self,
        connector_id: int,
        duration: int,
        unit: str | None,
        now: datetime,
        *,
        transaction_start: datetime | None = None,
        voltage: float = 230.0,
        phases: int = 3,
    ) -> dict[str, Any]:
        """GetCompositeSchedule.conf (1.6 §5.7) for connectorId, duration (s) and chargingRateUnit."""
        unit = unit or "A"
        if (
            (connector_id != 0 and connector_id not in self.evse_ids)
            or unit not in self.units
            or duration < 0
        ):
            return {"status": "Rejected"}
        periods = self._composite(
            connector_id, duration, unit, now, transaction_start, voltage, phases
        )
        start = _format(_aware(now))
        return {
            "status": "Accepted",
            "connectorId": connector_id,
            "scheduleStart": start,
            "chargingSchedule": {
                "duration": duration,
                "startSchedule": start,
                "chargingRateUnit": unit,
                "chargingSchedulePeriod": periods,
            },
        }

    def composite_201(
        self,
        evse_id: int,
        duration: int,
        unit: str | None,
        now: datetime,
        *,
        transaction_start: datetime | None = None,
        voltage: float = 230.0,
        phases: int = 3,
    ) -> dict[str, Any]:
        """GetCompositeScheduleResponse (K08) for evseId, duration (s) and chargingRateUnit."""
        unit = unit or "A"
        if evse_id != 0 and evse_id not in self.evse_ids:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEVSE"}}  # TC_K_47
        if unit not in self.units:
            return {
                "status": "Rejected",
                "statusInfo": {"reasonCode": "UnsupportedRateUnit"},
            }  # TC_K_42
        if duration < 0:
            return {"status": "Rejected"}
        periods = self._composite(evse_id, duration, unit, now, transaction_start, voltage, phases)
        return {
            "status": "Accepted",
            "schedule": {
                "evseId": evse_id,
                "duration": duration,
                "scheduleStart": _format(_aware(now)),
                "chargingRateUnit": unit,
                "chargingSchedulePeriod": periods,
            },
        }


def _with_transaction(profile: Profile, transaction_id: str) -> Profile:
    return replace(profile, transaction_id=transaction_id)
