"""The asyncio shell around :mod:`.site_limit`: read a site's running transactions, divide
its current, send each one its TxProfile and keep what each station answered.

A site is re-divided when a transaction starts or ends on one of its stations, when an
EV tells its needs, and when an operator changes the site. Divisions of one site run one
at a time, so the last one sent is the one computed from the newest state. A share a
station accepted already is not sent again (each SetChargingProfile costs a round trip
on a metered link), except to the station the division is for: one back from a reboot
may have lost its profile, and an EV that told its needs waits for one (K15.FR.07).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from plugstream.cloud.context import CommandSender
from plugstream.cloud.smart_charging.schedules import tx_profile_16, tx_profile_201
from plugstream.cloud.smart_charging.site_limit import Allocation, Session, allocate
from plugstream.cloud.stations import StationOffline
from plugstream.ocpp import CallTimeout, ConnectionLost, OcppError, OcppVersion

if TYPE_CHECKING:
    from plugstream.cloud.storage import Store
    from plugstream.cloud.storage.smart_charging import Site

__all__ = ["OFFLINE", "allocation_of", "redivide", "send_tx_profile"]

log = logging.getLogger(__name__)

#: the status kept for a profile that could not be sent: the station is not connected
OFFLINE = "Offline"

_locks: weakref.WeakKeyDictionary[Store, dict[int, asyncio.Lock]] = weakref.WeakKeyDictionary()


#: per store: the TxProfile limit each (station, EVSE) last accepted, with its transaction
_accepted: weakref.WeakKeyDictionary[Store, dict[tuple[str, int], tuple[str, Decimal]]] = (
    weakref.WeakKeyDictionary()
)


def _lock(store: Store, site_id: int) -> asyncio.Lock:
    return _locks.setdefault(store, {}).setdefault(site_id, asyncio.Lock())


async def allocation_of(store: Store, site: Site) -> Allocation:
    """The division of ``site`` among the transactions running there now."""
    running = await store.smart_charging.running(list(site.stations))
    sessions = [
        Session(r.station_id, r.evse_id, r.transaction_id, site.stations[r.station_id])
        for r in running
    ]
    return allocate(site.max_current_a, sessions)


async def send_tx_profile(
    store: Store,
    commands: CommandSender,
    station_id: str,
    evse_id: int,
    transaction_id: str,
    limit: Decimal,
    *,
    phases: int | None,
    source: str,
    at: datetime,
    unit: str = "A",
) -> str:
    """SetChargingProfile with a one-period TxProfile; the station's answer is kept with
    the profile (``Offline`` when it is not connected, the error code of a CALLERROR)."""
    version = commands.version_of(station_id)
    payload: dict[str, Any]
    if version is OcppVersion.V16:
        if not transaction_id.isdigit():
            return "Rejected"
        payload = tx_profile_16(evse_id, int(transaction_id), limit, phases=phases)
        profile = dict(payload["csChargingProfiles"])
        profile["id"] = profile["chargingProfileId"]
    else:
        payload = tx_profile_201(evse_id, transaction_id, limit, phases=phases, unit=unit)
        profile = dict(payload["chargingProfile"])
    try:
        if version is None:
            raise StationOffline(station_id)
        answer = await commands.call(station_id, "SetChargingProfile", payload)
        status = str(answer.get("status", "Rejected"))
    except (StationOffline, ConnectionLost):
        status = OFFLINE
    except CallTimeout:
        status = "Timeout"
    except OcppError as exc:
        status = exc.code.value
    await store.smart_charging.record_set(
        station_id, evse_id, profile, status=status, source=source, at=at
    )
    return status


async def redivide(
    store: Store,
    commands: CommandSender,
    site_id: int,
    at: datetime,
    *,
    resend_to: str | None = None,
) -> Allocation | None:
    """Divide the site's current anew and send every running transaction whose share
    changed its share (``resend_to``'s whatever it had); None when the site is gone."""
    async with _lock(store, site_id):
        site = await store.smart_charging.site(site_id)
        if site is None:
            return None
        allocation = await allocation_of(store, site)
        accepted = _accepted.setdefault(store, {})

        async def send(session: Session, share: Decimal) -> None:
            key = (session.station_id, session.evse_id)
            if session.station_id != resend_to and accepted.get(key) == (
                session.transaction_id,
                share,
            ):
                return
            status = await send_tx_profile(
                store,
                commands,
                session.station_id,
                session.evse_id,
                session.transaction_id,
                share,
                phases=site.phases,
                source="site",
                at=at,
            )
            if status == "Accepted":
                accepted[key] = (session.transaction_id, share)
            else:
                accepted.pop(key, None)

        await asyncio.gather(*(send(session, share) for session, share in allocation.shares))
        if allocation.oversubscribed:
            log.warning(
                "site %s (%s): %d A cannot give %d transactions the minimum; %d wait",
                site.site_id,
                site.name,
                site.max_current_a,
                len(allocation.shares),
                len(allocation.waiting),
            )
        return allocation
