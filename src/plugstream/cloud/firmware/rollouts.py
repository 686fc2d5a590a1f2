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
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
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
) -> str:
    """Send one target its update if the station is connected; its status afterwards."""
    version = stations.version_of(target.station_id)
    if version is None:
        return target.status  # stays Pending until the station boots again
    action, payload = update_request(
        version, image, target.request_id, options, location(config, image)
    )
    try:
        answer = await stations.call(target.station_id, action, payload)
    except StationOffline:
        return target.status
    except CallTimeout:
        status = NO_ANSWER
    except OcppError as exc:
        log.info("%s refused %s: %s", target.station_id, action, exc.description)
        status = CALL_ERROR
    else:
        status = str(answer.get("status") or CALL_ERROR)
    await store.firmware.record_answer(target.rollout_id, target.station_id, status, now)
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
        async with gate, _sending(target.station_id):
            try:
                pending = await store.firmware.pending_targets(target.station_id)
                if not any(p.rollout_id == target.rollout_id for p, _, _ in pending):
                    return  # the station's boot sent it meanwhile (send_pending)
                await send_target(stations, store, config, image, target, options, now)
            except Exception:
                log.exception("sending firmware to %s failed", target.station_id)

    await asyncio.gather(*(one(t) for t in rollout.targets if stations.is_connected(t.station_id)))


async def send_pending(
    stations: CommandSender, store: Store, config: CloudConfig, station_id: str, now: datetime
) -> str | None:
    """A station is back: send it the newest update it missed; older missed ones are
    Superseded (a second UpdateFirmware would only cancel the first, L01.FR.24).
    The status of the one sent, or None when nothing was pending."""
    async with _sending(station_id):
        pending = await store.firmware.pending_targets(station_id)
        if not pending:
            return None
        (target, rollout, image), older = pending[0], pending[1:]
        for old, _, _ in older:
            await store.firmware.record_answer(old.rollout_id, station_id, SUPERSEDED, now)
        options = Options.of(rollout)
        return await send_target(stations, store, config, image, target, options, now)


_LOCKS: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def _sending(station_id: str) -> asyncio.Lock:
    """One send of firmware to a station at a time, pending targets read under it: a
    rollout created while the station's boot looks for missed updates went out twice
    (the same requestId in two UpdateFirmware). Kept only while held or awaited."""
    lock = _LOCKS.get(station_id)
    if lock is None:
        lock = _LOCKS[station_id] = asyncio.Lock()
    return lock
