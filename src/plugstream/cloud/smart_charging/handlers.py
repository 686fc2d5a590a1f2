"""What stations tell the cloud about smart charging, kept before it is answered.

2.0.1: ReportChargingProfiles (K09), NotifyChargingLimit (K12), ClearedChargingLimit
(K13), NotifyEVChargingNeeds (K15, K17) and NotifyEVChargingSchedule (K15.FR.11/12).

After an EV's needs are answered ``Accepted`` the cloud sends its TxProfile for the
transaction (K15.FR.07/08): the site's share when the station is in a site, else what the
EV asked for within the station's maximum. An EV schedule over that profile is
``Rejected`` (K15.FR.12) and the profile is sent again with the next TransactionEvent
(K15.FR.13, renegotiation as in K16; TC_K_55_CSMS). A transaction that starts or ends on
a station of a site re-divides the site's current (:mod:`.division`), after the answer:
the station never waits for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from plugstream.cloud.payloads import int_or
from plugstream.cloud.smart_charging.division import redivide, send_tx_profile
from plugstream.cloud.smart_charging.schedules import within_limits
from plugstream.cloud.smart_charging.site_limit import MIN_CURRENT_A
from plugstream.cloud.station_handlers import StationHandlers
from plugstream.ocpp import after, on, v16, v201

__all__ = [
    "DEFAULT_DC_POWER_W",
    "DEFAULT_STATION_MAX_A",
    "SmartChargingHandlers16",
    "SmartChargingHandlers201",
]

log = logging.getLogger(__name__)

#: a station outside any site is taken to allow this much per phase (PlugStream 7 / 22)
DEFAULT_STATION_MAX_A = Decimal(32)
#: a DC EV that names no maximum power is offered this much
DEFAULT_DC_POWER_W = Decimal(50_000)

_SOURCES = frozenset(("EMS", "Other", "SO", "CSO"))


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _source(value: Any) -> str:
    return value if isinstance(value, str) and value in _SOURCES else "Other"


class _SiteDivision(StationHandlers):
    """Re-division of a station's site, shared by both versions."""

    async def _redivide_after_boot(self, payload: dict[str, Any]) -> None:
        """A station back from a reboot or an outage has lost or missed its share."""
        if self.accepted:
            await self._redivide_site(resend=True)

    async def _redivide_site(self, *, resend: bool = False) -> None:
        context = self.context
        site = await context.store.smart_charging.site_of(self.station_id)
        if site is not None:
            await redivide(
                context.store,
                context.commands,
                site.site_id,
                self.now(),
                resend_to=self.station_id if resend else None,
            )


class SmartChargingHandlers201(_SiteDivision):
    """The CSMS side of smart charging, OCPP 2.0.1."""

    #: per connection, by EVSE: the EV's last needs, and whether its schedule was
    #: Rejected, so the profile goes again with the next TransactionEvent
    _needs: dict[int, Any] | None = None
    _renegotiate: set[int] | None = None

    @on(v201.Action.ReportChargingProfiles)
    async def report_charging_profiles(
        self, payload: v201.ReportChargingProfilesRequest
    ) -> v201.ReportChargingProfilesResponse:
        profiles = payload.get("chargingProfile")
        await self.context.store.smart_charging.add_report(
            self.station_id,
            request_id=int_or(payload.get("requestId"), 0),
            evse_id=int_or(payload.get("evseId"), 0),
            charging_limit_source=_source(payload.get("chargingLimitSource")),
            profiles=[p for p in profiles if isinstance(p, Mapping)]
            if isinstance(profiles, list)
            else [],
            tbc=payload.get("tbc") is True,  # K09.FR.02: false when absent
            at=self.now(),
        )
        return {}

    @on(v201.Action.NotifyChargingLimit)
    async def notify_charging_limit(
        self, payload: v201.NotifyChargingLimitRequest
    ) -> v201.NotifyChargingLimitResponse:
        limit = payload.get("chargingLimit")
        info: Mapping[str, Any] = limit if isinstance(limit, Mapping) else {}
        critical = info.get("isGridCritical")
        schedules = payload.get("chargingSchedule")
        evse = payload.get("evseId")
        await self.context.store.smart_charging.add_limit(
            self.station_id,
            evse_id=evse if isinstance(evse, int) and not isinstance(evse, bool) else None,
            charging_limit_source=_source(info.get("chargingLimitSource")),
            is_grid_critical=critical if isinstance(critical, bool) else None,
            schedules=[x for x in schedules if isinstance(x, Mapping)]
            if isinstance(schedules, list)
            else [],
            at=self.now(),
        )
        return {}

    @on(v201.Action.ClearedChargingLimit)
    async def cleared_charging_limit(
        self, payload: v201.ClearedChargingLimitRequest
    ) -> v201.ClearedChargingLimitResponse:
        evse = payload.get("evseId")
        await self.context.store.smart_charging.clear_limit(
            self.station_id,
            evse_id=evse if isinstance(evse, int) and not isinstance(evse, bool) else None,
            charging_limit_source=_source(payload.get("chargingLimitSource")),
            at=self.now(),
        )
        return {}

    @on(v201.Action.NotifyEVChargingNeeds)
    async def notify_ev_charging_needs(
        self, payload: v201.NotifyEVChargingNeedsRequest
    ) -> v201.NotifyEVChargingNeedsResponse:
        evse_id = int_or(payload.get("evseId"), 0)
        store = self.context.store
        running = await store.smart_charging.running([self.station_id])
        ours = any(r.evse_id == evse_id for r in running)
        # K15.FR.03/04: a schedule can be given only to a transaction (a TxProfile names it)
        status: v201.NotifyEVChargingNeedsStatusEnumType = "Accepted" if ours else "Rejected"
        tuples = payload.get("maxScheduleTuples")
        needs = payload.get("chargingNeeds")
        await store.smart_charging.add_ev_record(
            self.station_id,
            evse_id=evse_id,
            kind="needs",
            body=needs if isinstance(needs, Mapping) else {},
            status=status,
            max_schedule_tuples=tuples if isinstance(tuples, int) else None,
            at=self.now(),
        )
        if not ours:
            return {
                "status": status,
                "statusInfo": {
                    "reasonCode": "NoTransaction",
                    "additionalInfo": f"no transaction is running on EVSE {evse_id}",
                },
            }
        return {"status": status}

    @after(v201.Action.NotifyEVChargingNeeds)
    async def ev_charging_needs_answered(self, payload: v201.NotifyEVChargingNeedsRequest) -> None:
        """K15.FR.07/08: the TxProfile, within 60 s of the needs."""
        evse_id = int_or(payload.get("evseId"), 0)
        if self._needs is None:
            self._needs = {}
        self._needs[evse_id] = payload.get("chargingNeeds")
        await self._send_schedule(evse_id, self._needs[evse_id])

    async def _send_schedule(self, evse_id: int, needs: Any) -> None:
        store, context = self.context.store, self.context
        running = [
            r for r in await store.smart_charging.running([self.station_id]) if r.evse_id == evse_id
        ]
        if not running:
            return
        site = await store.smart_charging.site_of(self.station_id)
        if site is not None:  # K15.FR.07: this EV gets a profile, changed or not
            await redivide(
                store, context.commands, site.site_id, self.now(), resend_to=self.station_id
            )
            return
        unit, limit = "A", DEFAULT_STATION_MAX_A
        info: Mapping[str, Any] = needs if isinstance(needs, Mapping) else {}
        ac, dc = info.get("acChargingParameters"), info.get("dcChargingParameters")
        if isinstance(dc, Mapping) and not isinstance(ac, Mapping):
            unit = "W"
            limit = _decimal(dc.get("evMaxPower")) or DEFAULT_DC_POWER_W
        elif isinstance(ac, Mapping):
            asked = _decimal(ac.get("evMaxCurrent"))
            if asked is not None and asked >= MIN_CURRENT_A:
                limit = min(asked, DEFAULT_STATION_MAX_A)
        await send_tx_profile(
            store,
            context.commands,
            self.station_id,
            evse_id,
            running[-1].transaction_id,
            limit,
            phases=None,
            source="ev",
            at=self.now(),
            unit=unit,
        )

    @on(v201.Action.NotifyEVChargingSchedule)
    async def notify_ev_charging_schedule(
        self, payload: v201.NotifyEVChargingScheduleRequest
    ) -> v201.NotifyEVChargingScheduleResponse:
        evse_id = int_or(payload.get("evseId"), 0)
        store = self.context.store
        schedule = payload.get("chargingSchedule")
        body: Mapping[str, Any] = schedule if isinstance(schedule, Mapping) else {}
        ours = await store.smart_charging.tx_profile(self.station_id, evse_id)
        ok = True
        if ours is not None:
            sent = ours.profile.get("chargingSchedule")
            if isinstance(sent, list) and sent and isinstance(sent[0], Mapping):
                ok = within_limits(body, sent[0])
        status: v201.GenericStatusEnumType = "Accepted" if ok else "Rejected"
        await store.smart_charging.add_ev_record(
            self.station_id,
            evse_id=evse_id,
            kind="schedule",
            body={"timeBase": payload.get("timeBase"), "chargingSchedule": dict(body)},
            status=status,
            at=self.now(),
        )
        if ok:
            return {"status": status}
        if self._renegotiate is None:
            self._renegotiate = set()
        self._renegotiate.add(evse_id)  # K15.FR.13
        return {
            "status": status,
            "statusInfo": {
                "reasonCode": "OverLimit",
                "additionalInfo": "the EV's schedule exceeds the charging profile sent",
            },
        }

    @after(v201.Action.BootNotification)
    async def smart_charging_after_boot(self, payload: dict[str, Any]) -> None:
        await self._redivide_after_boot(payload)

    @after(v201.Action.TransactionEvent)
    async def smart_charging_after_transaction_event(self, payload: dict[str, Any]) -> None:
        """Started / Ended re-divide the site; the first event after a Rejected EV
        schedule carries the renegotiation (K15.FR.13, K16)."""
        evse = payload.get("evse")
        evse_id = int_or(evse.get("id"), 0) if isinstance(evse, Mapping) else None
        pending = self._renegotiate or set()
        event_type = payload.get("eventType")
        if event_type == "Ended" and evse_id is not None:
            pending.discard(evse_id)
        if event_type in ("Started", "Ended"):
            await self._redivide_site()
        if not pending:
            return  # the common case, an Updated event: no read
        info = payload.get("transactionInfo")
        if evse_id is None and isinstance(info, Mapping):
            running = await self.context.store.smart_charging.running([self.station_id])
            tx = info.get("transactionId")
            evse_id = next((r.evse_id for r in running if r.transaction_id == tx), None)
        if evse_id is not None and evse_id in pending:
            pending.discard(evse_id)
            await self._send_schedule(evse_id, (self._needs or {}).get(evse_id))


class SmartChargingHandlers16(_SiteDivision):
    """1.6: a transaction that starts or stops on a station of a site re-divides it."""

    @after(v16.Action.BootNotification)
    async def smart_charging_after_boot(self, payload: dict[str, Any]) -> None:
        await self._redivide_after_boot(payload)

    @after(v16.Action.StartTransaction)
    async def smart_charging_after_start(self, payload: dict[str, Any]) -> None:
        await self._redivide_site()

    @after(v16.Action.StopTransaction)
    async def smart_charging_after_transaction(self, payload: dict[str, Any]) -> None:
        await self._redivide_site()
