"""Retention: the message log and the gateway's refusals do not grow without end.

A station's frames are logged twice per message and a hostile network's refusals come
by the thousand: without retention the database only grows (139 MB after a 90 s load
test). Every ``retention_period`` the cloud deletes message log rows older than
``retain_messages`` and refusal rows last seen longer ago than ``retain_refusals``, in
short batches (each its own write, so stations' writes interleave), and holds the
refusals to their cap. A station's own security events (SecurityEventNotification) are
its data, acknowledged to it: retention never deletes them.

``plugstream cloud serve --retain messages=30d --retain refusals=90d`` sets the
horizons; ``0`` or ``off`` keeps forever. Times come from the cloud's clock
(``CloudClock``), the pause between runs from an injected ``sleep``: tests drive both.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from plugstream.cloud.config import CloudConfig
from plugstream.cloud.context import CloudClock

if TYPE_CHECKING:
    from plugstream.cloud.storage import Store

__all__ = [
    "RETAINED",
    "RetentionReport",
    "apply_retention",
    "parse_duration",
    "parse_retain",
    "retention_loop",
]

log = logging.getLogger("plugstream.cloud.retention")

#: what ``--retain`` names, and the CloudConfig field each sets
RETAINED = {"messages": "retain_messages", "refusals": "retain_refusals"}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")

MESSAGE_BATCH = 5000  # log rows per delete: a few ms of the writer's time
REFUSAL_BATCH = 1000


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s`` → seconds; ``0`` / ``off`` → 0 (keep forever)."""
    value = text.strip().lower()
    if value in ("0", "off"):
        return 0.0
    match = _DURATION.fullmatch(value)
    if match is None or float(match[1]) <= 0:
        raise ValueError(f"{text!r} is not a duration: use e.g. 30d, 12h, 90m, 45s, or 0/off")
    return float(match[1]) * _UNITS[match[2]]


def parse_retain(values: Iterable[str]) -> dict[str, float]:
    """``["messages=30d", "refusals=off"]`` → ``{"retain_messages": 2592000.0,
    "retain_refusals": 0.0}`` (CloudConfig fields); a ValueError says what is wrong."""
    found: dict[str, float] = {}
    for item in values:
        name, sep, duration = item.partition("=")
        field = RETAINED.get(name.strip().lower())
        if not sep or field is None:
            raise ValueError(f"{item!r}: use messages=DURATION or refusals=DURATION (e.g. 30d)")
        found[field] = parse_duration(duration)
    return found


@dataclass(frozen=True, slots=True)
class RetentionReport:
    messages: int = 0  # log rows deleted
    refusals: int = 0  # refusal rows deleted for their age
    trimmed: int = 0  # refusal rows deleted to hold the cap


async def apply_retention(
    store: Store,
    config: CloudConfig,
    clock: CloudClock,
    *,
    message_batch: int = MESSAGE_BATCH,
    refusal_batch: int = REFUSAL_BATCH,
) -> RetentionReport:
    """One run: delete what is past its horizon at ``clock()``, batch by batch."""
    now = clock()
    messages = refusals = 0
    if config.retain_messages > 0:
        cutoff = now - timedelta(seconds=config.retain_messages)
        while deleted := await store.messages.delete_before(cutoff, batch=message_batch):
            messages += deleted
    if config.retain_refusals > 0:
        cutoff = now - timedelta(seconds=config.retain_refusals)
        while True:
            deleted = await store.security.delete_refusals_before(cutoff, batch=refusal_batch)
            refusals += deleted
            if deleted < refusal_batch:
                break
    trimmed = await store.security.trim()
    return RetentionReport(messages, refusals, trimmed)


async def retention_loop(
    store: Store,
    config: CloudConfig,
    clock: CloudClock,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Run retention every ``config.retention_period`` seconds, the first one period
    after start (not while a starting cloud's first writes come in), until cancelled
    (the lifespan's end); a failed run is logged and tried again next time."""
    while True:
        await sleep(config.retention_period)
        try:
            report = await apply_retention(store, config, clock)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning(
                "retention failed; trying again in %s s", config.retention_period, exc_info=True
            )
        else:
            if report.messages or report.refusals or report.trimmed:
                log.info(
                    "retention: deleted %d log rows, %d old refusals, %d over the cap",
                    report.messages,
                    report.refusals,
                    report.trimmed,
                )
