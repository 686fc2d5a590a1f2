"""Firmware rollouts: which stations get an image, what they are sent, and sending it.

The pure part (:func:`pick_percentage`, :func:`update_request`, :func:`location`) decides;
:func:`send_target` and :func:`send_rollout` are the thin asyncio shell that calls the
stations through a :class:`~plugstream.cloud.context.CommandSender` (the gateway) and
records their answers.

A 2.0.1 station gets UpdateFirmware (part 2 use case L01, secure firmware update), a 1.6
charge point SignedUpdateFirmware (1.6 Security Whitepaper edition 3, "Secure firmware
update"): both carry the location, retrieveDateTime, the optional installDateTime, the
Firmware Signing certificate and the signature (L01.FR.01 and L01.FR.21 make the station
check them). A station that is not connected keeps its target ``Pending``; it is sent
the newest such update once its next BootNotification is Accepted
(:class:`plugstream.cloud.firmware.handlers.FirmwareStatus16`).

A rollout may be sent by one gateway node while the station boots on another, so a target
is sent only by the node whose claim took it (``Pending`` → ``Sending``,
:meth:`~plugstream.cloud.storage.firmware.Firmware.claim`): never two UpdateFirmware with
one requestId. A claim that outlives :func:`claim_timeout` is taken for a dead node's and
the target is sent at the station's next boot. A station found offline mid-send gives its
target back; if it is already connected again (to another node, whose boot saw the claim
and left the target to it) the sender sends it the newest update it misses.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from plugstream.cloud.config import CloudConfig
from plugstream.cloud.context import CommandSender
from plugstream.cloud.stations import StationOffline
from plugstream.cloud.storage import firmware as db
from plugstream.ocpp import CallTimeout, OcppError, OcppVersion
from plugstream.ocpp.datetimes import format_time

if TYPE_CHECKING:
    from plugstream.cloud.storage import Store

__all__ = [
    "CALL_ERROR",
    "NO_ANSWER",
    "SUPERSEDED",
    "Options",
    "base_url",
    "claim_timeout",
    "location",
    "pick_percentage",
    "send_pending",
    "send_rollout",
    "send_target",
    "update_request",
]

log = logging.getLogger(__name__)

NO_ANSWER = "NoAnswer"  # the station did not answer the UpdateFirmware in time
CALL_ERROR = "CallError"  # it answered with a CALLERROR (e.g. NotImplemented)
SUPERSEDED = "Superseded"  # a newer rollout reached the station before this one was sent
SEND_CONCURRENCY = 64  # UpdateFirmware CALLs in flight at once during one rollout
CLAIM_MARGIN_S = 30.0  # a claim outlives twice the call timeout by this much
RESENDS = 2  # times a sender tries again for a station offline mid-send and back since


@dataclass(frozen=True, slots=True)
class Options:
    """What a rollout asks of each station, besides the image."""

    retrieve_at: datetime
    install_at: datetime | None = None
    retries: int | None = None
    retry_interval: int | None = None  # seconds

    @classmethod
    def of(cls, rollout: db.Rollout) -> Options:
        sel = rollout.selector
        return cls(
            rollout.retrieve_at, rollout.install_at, sel.get("retries"), sel.get("retry_interval")
        )


# -- the pure part --------------------------------------------------------------------


def pick_percentage(image_id: str, station_ids: Iterable[str], percentage: float) -> list[str]:
    """``percentage`` of the stations, rounded up, chosen by a hash of image and station.

    The choice is stable: asking again for the same image picks the same stations, and a
    larger percentage picks a superset, so a staged rollout (5 %, 25 %, 100 %) only adds.
    """
    ids = sorted(set(station_ids))
    count = min(len(ids), math.ceil(len(ids) * percentage / 100))

    def rank(sid: str) -> bytes:
        return hashlib.sha256(f"{image_id}\x00{sid}".encode()).digest()

    return sorted(sorted(ids, key=rank)[:count])


def base_url(config: CloudConfig) -> str:
    """Where stations reach this server: ``--public-url``, else host, port and scheme."""
    if config.public_url:
        return config.public_url.rstrip("/")
    scheme = "https" if config.tls_cert is not None else "http"
    host = f"[{config.host}]" if ":" in config.host else config.host
    return f"{scheme}://{host}:{config.port}"


def claim_timeout(config: CloudConfig) -> timedelta:
    """How long a node's claim on a target holds: its call may wait for one before it at
    the station and be relayed by another node, hence twice the call timeout and a margin.
    Past it the claiming node is taken for dead and the target is sent again."""
    return timedelta(seconds=2 * config.call_timeout + CLAIM_MARGIN_S)


def location(config: CloudConfig, image: db.FirmwareImage) -> str:
    """The download URL of an image (``GET /firmware/{image_id}/{filename}``)."""
    return f"{base_url(config)}/firmware/{image.image_id}/{quote(image.filename)}"


def update_request(
    version: OcppVersion,
    image: db.FirmwareImage,
    request_id: int,
    options: Options,
    url: str,
) -> tuple[str, dict[str, Any]]:
    """The action and payload that ask a station of ``version`` to install ``image``."""
    fw: dict[str, Any] = {
        "location": url,
        "retrieveDateTime": format_time(options.retrieve_at, always_ms=True),
        "signingCertificate": image.signing_certificate,
        "signature": image.signature,
    }
    if options.install_at is not None:
        fw["installDateTime"] = format_time(options.install_at, always_ms=True)
    payload: dict[str, Any] = {"requestId": request_id, "firmware": fw}
    if options.retries is not None:
        payload["retries"] = options.retries
    if options.retry_interval is not None:
        payload["retryInterval"] = options.retry_interval
    action = "SignedUpdateFirmware" if version is OcppVersion.V16 else "UpdateFirmware"
    return action, payload


# -- the asyncio shell ----------------------------------------------------------------


async def send_target(
    stations: CommandSender,
    store: Store,
    config: CloudConfig,
    image: db.FirmwareImage,
    target: db.RolloutTarget,
    options: Options,
    now: datetime,
) -> str | None:
    """Send one target its update if the station is connected and this node's claim takes
    it; its status afterwards (Pending: the station is away), None when it was not this
    call's to send (another node is sending it, or it is answered)."""
    version = stations.version_of(target.station_id)
    if version is None:
        return target.status  # stays Pending until the station boots again
    repo = store.firmware
    claimed = await repo.claim(
        target.rollout_id, target.station_id, claim_timeout=claim_timeout(config)
    )
    if claimed is None:
        return None
    action, payload = update_request(
        version, image, target.request_id, options, location(config, image)
    )
    try:
        answer = await stations.call(target.station_id, action, payload)
    except StationOffline:
        await repo.release(target.rollout_id, target.station_id, claimed)
        return db.PENDING
    except CallTimeout:
        status = NO_ANSWER
    except OcppError as exc:
        log.info("%s refused %s: %s", target.station_id, action, exc.description)
        status = CALL_ERROR
    else:
        status = str(answer.get("status") or CALL_ERROR)
    await repo.record_answer(target.rollout_id, target.station_id, status, now)
    return status


async def send_rollout(
    stations: CommandSender,
    store: Store,
    config: CloudConfig,
    image: db.FirmwareImage,
    rollout: db.Rollout,
    now: datetime,
) -> None:
    """Send every connected target its update, a bounded number of CALLs at a time."""
    options = Options.of(rollout)
    gate = asyncio.Semaphore(SEND_CONCURRENCY)

    async def one(target: db.RolloutTarget) -> None:
        sid = target.station_id
        async with gate, _sending(store, sid):
            try:
                # Not sent when the station's boot (on any node) claimed it first.
                status = await send_target(stations, store, config, image, target, options, now)
                if status == db.PENDING:
                    await _resend(stations, store, config, sid, now)
            except Exception:
                log.exception("sending firmware to %s failed", sid)

    await asyncio.gather(*(one(t) for t in rollout.targets if stations.is_connected(t.station_id)))


async def send_pending(
    stations: CommandSender, store: Store, config: CloudConfig, station_id: str, now: datetime
) -> str | None:
    """A station is back: send it the newest update it missed; older missed ones are
    Superseded (a second UpdateFirmware would only cancel the first, L01.FR.24).
    The status of the one sent, or None when this call sent none (nothing was pending,
    or another node is sending the newest)."""
    async with _sending(store, station_id):
        status = await _send_newest(stations, store, config, station_id, now)
        if status == db.PENDING:
            return await _resend(stations, store, config, station_id, now)
        return status


async def _resend(
    stations: CommandSender, store: Store, config: CloudConfig, station_id: str, now: datetime
) -> str | None:
    """The station went offline while this node sent it an update, which is Pending again:
    if it is connected once more, its boot may have found this node's claim and sent
    nothing, so send it the newest update it misses now."""
    status: str | None = db.PENDING
    for _ in range(RESENDS):
        if status != db.PENDING or not stations.is_connected(station_id):
            break
        status = await _send_newest(stations, store, config, station_id, now)
    return status


async def _send_newest(
    stations: CommandSender, store: Store, config: CloudConfig, station_id: str, now: datetime
) -> str | None:
    """Send the station its newest unsent target, unless another node is sending it;
    older unsent ones that no node is sending are Superseded."""
    repo = store.firmware
    timeout = claim_timeout(config)
    unsent = await repo.unsent_targets(station_id)
    if not unsent:
        return None
    (target, rollout, image), older = unsent[0], unsent[1:]
    for old, _, _ in older:
        # Claimed first, so that one another node is sending is left to its answer.
        if (
            repo.claimable(old, timeout)
            and await repo.claim(old.rollout_id, station_id, claim_timeout=timeout) is not None
        ):
            await repo.record_answer(old.rollout_id, station_id, SUPERSEDED, now)
    if not repo.claimable(target, timeout):
        return None  # on its way from another node, which records the answer
    return await send_target(stations, store, config, image, target, Options.of(rollout), now)


_LOCKS: weakref.WeakKeyDictionary[db.Firmware, weakref.WeakValueDictionary[str, asyncio.Lock]]
_LOCKS = weakref.WeakKeyDictionary()


def _sending(store: Store, station_id: str) -> asyncio.Lock:
    """One send of firmware to a station at a time in this process (per store: one store is
    one node): a rollout's send and the station's boot then do not both try to claim its
    target. Only saves work: the claim in the database is what makes one send per target,
    across processes. Kept only while held or awaited."""
    locks = _LOCKS.get(store.firmware)
    if locks is None:
        locks = _LOCKS[store.firmware] = weakref.WeakValueDictionary()
    lock = locks.get(station_id)
    if lock is None:
        lock = locks[station_id] = asyncio.Lock()
    return lock
