"""Smart charging's rows: the profiles the cloud set (with each station's answer), the
profiles stations report (K09), the limits external systems impose (K12, K13), the EVs'
charging needs and schedules (K15), and the sites whose current is divided among their
stations.

A GetChargingProfiles is kept as :mod:`.report_requests` keeps a request (requestIds
count from 1), ``Sent`` until the station's answer or first report.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, Table, and_, delete, select, update
from sqlalchemy.engine import Connection

from . import schema as s
from .coltypes import as_utc
from .database import Database
from .report_requests import COMPLETE, create_request, record_answer, request_key

__all__ = [
    "ChargingLimit",
    "EvChargingRecord",
    "ReportedProfile",
    "RunningTransaction",
    "SetProfile",
    "Site",
    "SiteConflict",
    "SmartCharging",
]


#: a GetChargingProfiles sent, its answer not recorded yet
_SENT = "Sent"


class SiteConflict(ValueError):
    """A station given to a site is in another one already: a station has one grid
    connection."""


@dataclass(slots=True)
class SetProfile:
    station_id: str
    charging_profile_id: int
    evse_id: int
    purpose: str
    stack_level: int
    transaction_id: str | None
    profile: dict[str, Any]
    status: str  # the station's answer to SetChargingProfile, or Offline
    source: str  # "operator" (REST) or "site" (the site limit's division)
    set_at: datetime


@dataclass(slots=True)
class ReportedProfile:
    station_id: str
    request_id: int
    evse_id: int
    charging_limit_source: str
    profile: dict[str, Any]
    tbc: bool
    received_at: datetime


@dataclass(slots=True)
class ChargingLimit:
    id: int
    station_id: str
    evse_id: int | None
    charging_limit_source: str
    is_grid_critical: bool | None
    schedules: list[dict[str, Any]]
    received_at: datetime
    cleared_at: datetime | None


@dataclass(slots=True)
class EvChargingRecord:
    id: int
    station_id: str
    evse_id: int
    kind: str  # "needs" (NotifyEVChargingNeeds) or "schedule" (NotifyEVChargingSchedule)
    max_schedule_tuples: int | None
    body: dict[str, Any]
    status: str
    received_at: datetime


@dataclass(slots=True)
class Site:
    site_id: int
    name: str
    max_current_a: Decimal
    phases: int
    created_at: datetime
    stations: dict[str, Decimal] = field(default_factory=dict)  # id: its own maximum, A


@dataclass(frozen=True, slots=True)
class RunningTransaction:
    station_id: str
    evse_id: int
    connector_id: int
    transaction_id: str
    started_at: datetime | None


def _set(row: Any) -> SetProfile:
    return SetProfile(
        station_id=row.station_id,
        charging_profile_id=int(row.charging_profile_id),
        evse_id=int(row.evse_id),
        purpose=row.purpose,
        stack_level=int(row.stack_level),
        transaction_id=row.transaction_id,
        profile=json.loads(row.profile),
        status=row.status,
        source=row.source,
        set_at=as_utc(row.set_at),
    )


def _newest(table: Table, station_id: str, limit: int) -> Select[Any]:
    """The station's rows, newest (by id) first."""
    return (
        select(table)
        .where(table.c.station_id == station_id)
        .order_by(table.c.id.desc())
        .limit(limit)
    )


def _read_sites(conn: Connection, site_id: int | None = None) -> list[Site]:
    query = select(s.sites).order_by(s.sites.c.site_id)
    if site_id is not None:
        query = query.where(s.sites.c.site_id == site_id)
    found = {
        int(r.site_id): Site(
            site_id=int(r.site_id),
            name=r.name,
            max_current_a=Decimal(r.max_current_a),
            phases=int(r.phases),
            created_at=as_utc(r.created_at),
        )
        for r in conn.execute(query)
    }
    if found:
        members = select(s.site_stations).where(s.site_stations.c.site_id.in_(list(found)))
        for m in conn.execute(members.order_by(s.site_stations.c.station_id)):
            found[int(m.site_id)].stations[m.station_id] = Decimal(m.max_current_a)
    return list(found.values())


def _put_members(conn: Connection, site_id: int, stations: Mapping[str, Decimal]) -> None:
    others = conn.execute(
        select(s.site_stations.c.station_id, s.site_stations.c.site_id).where(
            s.site_stations.c.station_id.in_(list(stations)),
            s.site_stations.c.site_id != site_id,
        )
    ).all()
    if others:
        taken = ", ".join(f"{r.station_id!r} (site {r.site_id})" for r in others)
        raise SiteConflict(f"already in another site: {taken}")
    conn.execute(delete(s.site_stations).where(s.site_stations.c.site_id == site_id))
    if stations:
        conn.execute(
            s.site_stations.insert(),
            [
                {"site_id": site_id, "station_id": sid, "max_current_a": amps}
                for sid, amps in stations.items()
            ],
        )


class SmartCharging:
    """Profiles, limits, EV needs and sites."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # The stations in any site (None: not read yet). Every transaction and boot asks
        # whether its station is in a site, and almost every answer is "no": this answers
        # it without a read. Sites change only through this object, which reloads it.
        self._members: frozenset[str] | None = None
        self._generation = 0  # bumped by every change of sites: a read begun before is stale

    # -- the profiles the cloud set ------------------------------------------------

    async def record_set(
        self,
        station_id: str,
        evse_id: int,
        profile: Mapping[str, Any],
        *,
        status: str,
        source: str,
        at: datetime,
    ) -> SetProfile:
        """A SetChargingProfile and the station's answer; the same id replaces the last,
        as on the station (K01.FR.05)."""
        record = SetProfile(
            station_id=station_id,
            charging_profile_id=int(profile["id"]),
            evse_id=evse_id,
            purpose=str(profile.get("chargingProfilePurpose", "")),
            stack_level=int(profile.get("stackLevel", 0)),
            transaction_id=(
                str(profile["transactionId"]) if profile.get("transactionId") is not None else None
            ),
            profile=dict(profile),
            status=status,
            source=source,
            set_at=at,
        )

        def op(conn: Connection) -> None:
            table = s.charging_profiles
            conn.execute(
                delete(table).where(
                    table.c.station_id == station_id,
                    table.c.charging_profile_id == record.charging_profile_id,
                )
            )
            conn.execute(
                table.insert().values(
                    station_id=station_id,
                    charging_profile_id=record.charging_profile_id,
                    evse_id=evse_id,
                    purpose=record.purpose,
                    stack_level=record.stack_level,
                    transaction_id=record.transaction_id,
                    profile=json.dumps(record.profile),
                    status=status,
                    source=source,
                    set_at=at,
                )
            )

        await self._db.write(op)
        return record

    async def forget_set(
        self,
        station_id: str,
        *,
        charging_profile_id: int | None = None,
        evse_id: int | None = None,
        purpose: str | None = None,
        stack_level: int | None = None,
    ) -> int:
        """The profiles a ClearChargingProfile the station accepted removed (K10): by id,
        or by every criterion given; the number forgotten."""
        table = s.charging_profiles
        where = [table.c.station_id == station_id]
        if charging_profile_id is not None:
            where.append(table.c.charging_profile_id == charging_profile_id)
        else:
            if evse_id is not None:
                where.append(table.c.evse_id == evse_id)
            if purpose is not None:
                where.append(table.c.purpose == purpose)
            if stack_level is not None:
                where.append(table.c.stack_level == stack_level)

        def op(conn: Connection) -> int:
            return int(conn.execute(delete(table).where(and_(*where))).rowcount or 0)

        return await self._db.write(op)

    async def profiles_set(self, station_id: str) -> list[SetProfile]:
        table = s.charging_profiles

        def read(conn: Connection) -> list[SetProfile]:
            rows = conn.execute(
                select(table)
                .where(table.c.station_id == station_id)
                .order_by(table.c.evse_id, table.c.charging_profile_id)
            )
            return [_set(r) for r in rows]

        return await self._db.read(read)

    async def tx_profile(self, station_id: str, evse_id: int) -> SetProfile | None:
        """The newest TxProfile the station accepted from us on ``evse_id``."""
        table = s.charging_profiles

        def read(conn: Connection) -> SetProfile | None:
            row = conn.execute(
                select(table)
                .where(
                    table.c.station_id == station_id,
                    table.c.evse_id == evse_id,
                    table.c.purpose == "TxProfile",
                    table.c.status == "Accepted",
                )
                .order_by(table.c.set_at.desc(), table.c.stack_level.desc())
                .limit(1)
            ).first()
            return _set(row) if row is not None else None

        return await self._db.read(read)

    # -- GetChargingProfiles and ReportChargingProfiles (K09) ----------------------

    async def new_request(
        self, station_id: str, criteria: Mapping[str, Any], *, at: datetime
    ) -> int:
        """A requestId for a GetChargingProfiles that none of the station's had."""
        table = s.charging_profile_requests

        def op(conn: Connection) -> int:
            return create_request(
                conn,
                table,
                station_id,
                criteria=json.dumps(dict(criteria)),
                status=_SENT,
                asked_at=at,
            )

        return await self._db.write(op)

    async def set_request_status(self, station_id: str, request_id: int, status: str) -> None:
        """The station's answer, unless a report came first (it moved the request on)."""
        table = s.charging_profile_requests
        key = request_key(table, station_id, request_id)
        await self._db.write(lambda conn: record_answer(conn, table, key, status, waiting=_SENT))

    async def request_status(self, station_id: str, request_id: int) -> str | None:
        table = s.charging_profile_requests

        def read(conn: Connection) -> str | None:
            value = conn.execute(
                select(table.c.status).where(request_key(table, station_id, request_id))
            ).scalar()
            return None if value is None else str(value)

        return await self._db.read(read)

    async def add_report(
        self,
        station_id: str,
        *,
        request_id: int,
        evse_id: int,
        charging_limit_source: str,
        profiles: Sequence[Mapping[str, Any]],
        tbc: bool,
        at: datetime,
    ) -> None:
        """One ReportChargingProfilesRequest: its profiles, and its request ``Complete``
        once a part without ``tbc`` came (K09.FR.02). A report of a request the cloud
        never sent is kept all the same: the station sent it."""
        table = s.reported_charging_profiles
        requests = s.charging_profile_requests

        def op(conn: Connection) -> None:
            if profiles:
                conn.execute(
                    table.insert(),
                    [
                        {
                            "station_id": station_id,
                            "request_id": request_id,
                            "evse_id": evse_id,
                            "charging_limit_source": charging_limit_source,
                            "charging_profile_id": int(p.get("id", 0)),
                            "profile": json.dumps(dict(p)),
                            "tbc": tbc,
                            "received_at": at,
                        }
                        for p in profiles
                    ],
                )
            conn.execute(
                update(requests)
                .where(request_key(requests, station_id, request_id), requests.c.status != COMPLETE)
                .values(status="Reporting" if tbc else COMPLETE)
            )

        await self._db.write(op)

    async def reported(
        self, station_id: str, request_id: int | None = None
    ) -> list[ReportedProfile]:
        """The profiles of the station's newest report (or of ``request_id``)."""
        table = s.reported_charging_profiles

        def read(conn: Connection) -> list[ReportedProfile]:
            wanted = request_id
            if wanted is None:
                wanted = conn.execute(
                    select(table.c.request_id)
                    .where(table.c.station_id == station_id)
                    .order_by(table.c.id.desc())
                    .limit(1)
                ).scalar()
                if wanted is None:
                    return []
            rows = conn.execute(
                select(table)
                .where(table.c.station_id == station_id, table.c.request_id == wanted)
                .order_by(table.c.id)
            )
            return [
                ReportedProfile(
                    station_id=r.station_id,
                    request_id=int(r.request_id),
                    evse_id=int(r.evse_id),
                    charging_limit_source=r.charging_limit_source,
                    profile=json.loads(r.profile),
                    tbc=bool(r.tbc),
                    received_at=as_utc(r.received_at),
                )
                for r in rows
            ]

        return await self._db.read(read)

    # -- external limits (K12, K13) ------------------------------------------------

    async def add_limit(
        self,
        station_id: str,
        *,
        evse_id: int | None,
        charging_limit_source: str,
        is_grid_critical: bool | None,
        schedules: Sequence[Mapping[str, Any]],
        at: datetime,
    ) -> None:
        def op(conn: Connection) -> None:
            conn.execute(
                s.charging_limits.insert().values(
                    station_id=station_id,
                    evse_id=evse_id,
                    charging_limit_source=charging_limit_source,
                    is_grid_critical=is_grid_critical,
                    schedules=json.dumps([dict(x) for x in schedules]),
                    received_at=at,
                )
            )

        await self._db.write(op)

    async def clear_limit(
        self, station_id: str, *, evse_id: int | None, charging_limit_source: str, at: datetime
    ) -> int:
        """ClearedChargingLimit: the open limits of that source (on that EVSE, if given)
        are cleared. One the cloud never heard of is kept as a row cleared at once, so
        the release is on record all the same; the number of limits it closed."""
        table = s.charging_limits

        def op(conn: Connection) -> int:
            where = [
                table.c.station_id == station_id,
                table.c.charging_limit_source == charging_limit_source,
                table.c.cleared_at.is_(None),
            ]
            if evse_id is not None:
                where.append(table.c.evse_id == evse_id)
            closed = int(
                conn.execute(update(table).where(*where).values(cleared_at=at)).rowcount or 0
            )
            if not closed:
                conn.execute(
                    table.insert().values(
                        station_id=station_id,
                        evse_id=evse_id,
                        charging_limit_source=charging_limit_source,
                        is_grid_critical=None,
                        schedules="[]",
                        received_at=at,
                        cleared_at=at,
                    )
                )
            return closed

        return await self._db.write(op)

    async def limits(self, station_id: str, *, limit: int = 100) -> list[ChargingLimit]:
        """Newest first."""
        table = s.charging_limits

        def read(conn: Connection) -> list[ChargingLimit]:
            rows = conn.execute(_newest(table, station_id, limit))
            return [
                ChargingLimit(
                    id=int(r.id),
                    station_id=r.station_id,
                    evse_id=r.evse_id,
                    charging_limit_source=r.charging_limit_source,
                    is_grid_critical=r.is_grid_critical,
                    schedules=json.loads(r.schedules),
                    received_at=as_utc(r.received_at),
                    cleared_at=as_utc(r.cleared_at) if r.cleared_at is not None else None,
                )
                for r in rows
            ]

        return await self._db.read(read)

    # -- the EV's needs and schedule (K15) -----------------------------------------

    async def add_ev_record(
        self,
        station_id: str,
        *,
        evse_id: int,
        kind: str,
        body: Mapping[str, Any],
        status: str,
        at: datetime,
        max_schedule_tuples: int | None = None,
    ) -> None:
        def op(conn: Connection) -> None:
            conn.execute(
                s.ev_charging_needs.insert().values(
                    station_id=station_id,
                    evse_id=evse_id,
                    kind=kind,
                    max_schedule_tuples=max_schedule_tuples,
                    body=json.dumps(dict(body)),
                    status=status,
                    received_at=at,
                )
            )

        await self._db.write(op)

    async def ev_records(self, station_id: str, *, limit: int = 100) -> list[EvChargingRecord]:
        """Newest first."""
        table = s.ev_charging_needs

        def read(conn: Connection) -> list[EvChargingRecord]:
            rows = conn.execute(_newest(table, station_id, limit))
            return [
                EvChargingRecord(
                    id=int(r.id),
                    station_id=r.station_id,
                    evse_id=int(r.evse_id),
                    kind=r.kind,
                    max_schedule_tuples=r.max_schedule_tuples,
                    body=json.loads(r.body),
                    status=r.status,
                    received_at=as_utc(r.received_at),
                )
                for r in rows
            ]

        return await self._db.read(read)

    # -- sites ---------------------------------------------------------------------

    async def create_site(
        self,
        name: str,
        *,
        max_current_a: Decimal,
        phases: int,
        stations: Mapping[str, Decimal],
        at: datetime,
    ) -> Site:
        """SiteConflict when a station is in another site already."""

        def op(conn: Connection) -> Site:
            key = conn.execute(
                s.sites.insert().values(
                    name=name, max_current_a=max_current_a, phases=phases, created_at=at
                )
            ).inserted_primary_key
            assert key is not None
            site_id = key[0]
            _put_members(conn, int(site_id), stations)
            return _read_sites(conn, int(site_id))[0]

        try:
            return await self._db.write(op)
        finally:
            self._members = None  # reloaded on the next question
            self._generation += 1

    async def update_site(
        self,
        site_id: int,
        *,
        name: str,
        max_current_a: Decimal,
        phases: int,
        stations: Mapping[str, Decimal],
    ) -> Site | None:
        """None when there is no such site; SiteConflict as for :meth:`create_site`."""

        def op(conn: Connection) -> Site | None:
            changed = conn.execute(
                update(s.sites)
                .where(s.sites.c.site_id == site_id)
                .values(name=name, max_current_a=max_current_a, phases=phases)
            ).rowcount
            if not changed:
                return None
            _put_members(conn, site_id, stations)
            return _read_sites(conn, site_id)[0]

        try:
            return await self._db.write(op)
        finally:
            self._members = None  # reloaded on the next question
            self._generation += 1

    async def delete_site(self, site_id: int) -> bool:
        def op(conn: Connection) -> bool:
            conn.execute(delete(s.site_stations).where(s.site_stations.c.site_id == site_id))
            return bool(conn.execute(delete(s.sites).where(s.sites.c.site_id == site_id)).rowcount)

        try:
            return await self._db.write(op)
        finally:
            self._members = None  # reloaded on the next question
            self._generation += 1

    async def site(self, site_id: int) -> Site | None:
        def read(conn: Connection) -> Site | None:
            found = _read_sites(conn, site_id)
            return found[0] if found else None

        return await self._db.read(read)

    async def sites(self) -> list[Site]:
        return await self._db.read(_read_sites)

    async def _site_members(self) -> frozenset[str]:
        members = self._members
        if members is None:

            def read(conn: Connection) -> frozenset[str]:
                return frozenset(conn.execute(select(s.site_stations.c.station_id)).scalars())

            generation = self._generation
            members = await self._db.read(read)
            if generation == self._generation:
                self._members = members
        return members

    async def site_of(self, station_id: str) -> Site | None:
        """The site the station is in, if any; no read for a station in none."""
        if station_id not in await self._site_members():
            return None

        def read(conn: Connection) -> Site | None:
            site_id = conn.execute(
                select(s.site_stations.c.site_id).where(s.site_stations.c.station_id == station_id)
            ).scalar()
            if site_id is None:
                return None
            found = _read_sites(conn, int(site_id))
            return found[0] if found else None

        return await self._db.read(read)

    async def running(self, station_ids: Sequence[str]) -> list[RunningTransaction]:
        """The transactions running on these stations, in the order they started."""
        tx = s.transactions

        def read(conn: Connection) -> list[RunningTransaction]:
            if not station_ids:
                return []
            rows = conn.execute(
                select(tx)
                .where(tx.c.station_id.in_(list(station_ids)), tx.c.active.is_(True))
                .order_by(tx.c.id)
            )
            return [
                RunningTransaction(
                    station_id=r.station_id,
                    evse_id=int(r.evse_id),
                    connector_id=int(r.connector_id),
                    transaction_id=str(r.transaction_id),
                    started_at=as_utc(r.started_at) if r.started_at is not None else None,
                )
                for r in rows
                if r.transaction_id is not None
            ]

        return await self._db.read(read)
