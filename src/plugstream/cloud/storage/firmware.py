"""The firmware repository's rows: images, rollouts and each rollout's targets.

Every UpdateFirmware gets a requestId no other target has had (2.0.1 L01.FR.10: the
station reports progress with that requestId): ``max(request_id) + 1`` is taken while
rollouts are created one at a time, in this process by the group-committing writer, across
the nodes of a cluster by SQLite's one writer or a PostgreSQL advisory lock.

Several gateway nodes may share the database, so "each target sent once" is decided here,
not by a lock in one process: a node takes a target (:meth:`Firmware.claim`, ``Pending`` →
``Sending`` in one conditional UPDATE) before it sends it and sends only if its UPDATE
changed the row. A claim older than its timeout belongs to a node that died mid-send and
may be taken again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.engine import Connection

from . import schema as s
from .coltypes import as_utc
from .database import Database

__all__ = [
    "CLAIM_TIMEOUT",
    "PENDING",
    "SENDING",
    "Firmware",
    "FirmwareImage",
    "Rollout",
    "RolloutTarget",
]

log = logging.getLogger(__name__)

#: a target the UpdateFirmware has not reached yet (the station was not connected)
PENDING = "Pending"
#: a target some node has claimed and is sending now; its answer replaces it
SENDING = "Sending"
#: how long a claim holds when the caller names no timeout (the rollouts derive theirs
#: from the call timeout); past it, its node is taken for dead and the target is pending
CLAIM_TIMEOUT = timedelta(seconds=90)
#: the advisory lock under which a PostgreSQL node numbers new targets ("PSfwreq")
REQUEST_ID_LOCK = 0x505366777265710A
_UNSENT = (PENDING, SENDING)


def _wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class FirmwareImage:
    image_id: str  # 128-bit random hex: the download URL is not guessable
    version: str
    filename: str
    size: int
    sha256: str  # hex
    signature: str  # base64 DER ECDSA P-256 over SHA-256 of the whole file
    signing_certificate: str  # PEM, leaf first
    uploaded_at: datetime


@dataclass(slots=True)
class RolloutTarget:
    rollout_id: int
    station_id: str
    request_id: int
    status: str  # Pending, Sending, the UpdateFirmware answer, then the last firmware status
    updated_at: datetime


@dataclass(slots=True)
class Rollout:
    rollout_id: int
    image_id: str
    created_at: datetime
    selector: dict[str, Any]  # what was asked for: station_ids or percentage, and options
    retrieve_at: datetime
    install_at: datetime | None
    targets: list[RolloutTarget] = field(default_factory=list)


def _image(row: Any) -> FirmwareImage:
    return FirmwareImage(
        image_id=row.image_id,
        version=row.version,
        filename=row.filename,
        size=int(row.size),
        sha256=row.sha256,
        signature=row.signature,
        signing_certificate=row.signing_certificate,
        uploaded_at=as_utc(row.uploaded_at),
    )


def _target(row: Any) -> RolloutTarget:
    return RolloutTarget(
        rollout_id=int(row.rollout_id),
        station_id=row.station_id,
        request_id=int(row.request_id),
        status=row.status,
        updated_at=as_utc(row.updated_at),
    )


def _rollout(row: Any, targets: list[RolloutTarget]) -> Rollout:
    return Rollout(
        rollout_id=int(row.rollout_id),
        image_id=row.image_id,
        created_at=as_utc(row.created_at),
        selector=json.loads(row.selector),
        retrieve_at=as_utc(row.retrieve_at),
        install_at=as_utc(row.install_at) if row.install_at is not None else None,
        targets=targets,
    )


def _read_rollouts(conn: Connection, rollout_id: int | None, limit: int) -> list[Rollout]:
    query = select(s.firmware_rollouts).order_by(s.firmware_rollouts.c.rollout_id.desc())
    if rollout_id is not None:
        query = query.where(s.firmware_rollouts.c.rollout_id == rollout_id)
    rows = conn.execute(query.limit(limit)).all()
    if not rows:
        return []
    ids = [r.rollout_id for r in rows]
    by_rollout: dict[int, list[RolloutTarget]] = {int(i): [] for i in ids}
    for t in conn.execute(
        select(s.firmware_rollout_targets)
        .where(s.firmware_rollout_targets.c.rollout_id.in_(ids))
        .order_by(s.firmware_rollout_targets.c.station_id)
    ):
        by_rollout[int(t.rollout_id)].append(_target(t))
    return [_rollout(r, by_rollout[int(r.rollout_id)]) for r in rows]


class Firmware:
    """The firmware images, rollouts and targets."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = _wall_clock) -> None:
        self._db = db
        #: what claims are stamped and judged stale with: the wall's time, not a demo's
        #: scaled one, since claim timeouts are seconds of real calls (tests inject one)
        self.clock = clock
        #: called with the station ids of the targets this process creates, once they are
        #: committed: the bus tells the other nodes (which call :meth:`mark_pending`)
        self.listeners: list[Callable[[list[str]], None]] = []
        # Stations that may have a Pending or Sending target (None: not read yet). Every
        # boot asks for its pending targets; without this each one cost a read, and almost
        # every answer is "none". Targets are created by create_rollout, here or on another
        # node (which tells this one: mark_pending); a station found to have none leaves.
        self._pending: set[str] | None = None
        self._pending_generation = 0
        self._pending_loading: asyncio.Task[set[str]] | None = None

    async def add_image(self, image: FirmwareImage) -> FirmwareImage:
        def op(conn: Connection) -> None:
            conn.execute(
                s.firmware_images.insert().values(
                    image_id=image.image_id,
                    version=image.version,
                    filename=image.filename,
                    size=image.size,
                    sha256=image.sha256,
                    signature=image.signature,
                    signing_certificate=image.signing_certificate,
                    uploaded_at=image.uploaded_at,
                )
            )

        await self._db.write(op)
        return image

    async def get_image(self, image_id: str) -> FirmwareImage | None:
        def read(conn: Connection) -> FirmwareImage | None:
            row = conn.execute(
                select(s.firmware_images).where(s.firmware_images.c.image_id == image_id)
            ).first()
            return _image(row) if row is not None else None

        return await self._db.read(read)

    async def list_images(self) -> list[FirmwareImage]:
        """Newest upload first."""

        def read(conn: Connection) -> list[FirmwareImage]:
            rows = conn.execute(
                select(s.firmware_images).order_by(
                    s.firmware_images.c.uploaded_at.desc(), s.firmware_images.c.image_id
                )
            )
            return [_image(r) for r in rows]

        return await self._db.read(read)

    async def delete_image(self, image_id: str) -> bool:
        """Forget an image with its rollouts and their targets (explicitly: a SQLite file
        opened without ``foreign_keys`` would not cascade)."""

        def op(conn: Connection) -> bool:
            rollouts = select(s.firmware_rollouts.c.rollout_id).where(
                s.firmware_rollouts.c.image_id == image_id
            )
            conn.execute(
                delete(s.firmware_rollout_targets).where(
                    s.firmware_rollout_targets.c.rollout_id.in_(rollouts)
                )
            )
            conn.execute(
                delete(s.firmware_rollouts).where(s.firmware_rollouts.c.image_id == image_id)
            )
            gone = conn.execute(
                delete(s.firmware_images).where(s.firmware_images.c.image_id == image_id)
            )
            return bool(gone.rowcount)

        return await self._db.write(op)

    # -- rollouts ---------------------------------------------------------------------

    async def create_rollout(
        self,
        *,
        image_id: str,
        station_ids: list[str],
        selector: dict[str, Any],
        retrieve_at: datetime,
        install_at: datetime | None,
        at: datetime,
    ) -> Rollout:
        """A rollout whose targets are all Pending, each with a requestId never used before;
        :attr:`listeners` hear of its stations once it is committed."""

        def op(conn: Connection) -> Rollout:
            if conn.dialect.name == "postgresql":
                # Another node may number targets now; SQLite has one writer at a time.
                conn.execute(select(func.pg_advisory_xact_lock(REQUEST_ID_LOCK)))
            key = conn.execute(
                s.firmware_rollouts.insert().values(
                    image_id=image_id,
                    created_at=at,
                    selector=json.dumps(selector, sort_keys=True),
                    retrieve_at=retrieve_at,
                    install_at=install_at,
                )
            ).inserted_primary_key
            assert key is not None
            rollout_id = int(key[0])
            last = conn.execute(select(func.max(s.firmware_rollout_targets.c.request_id))).scalar()
            first = int(last or 0) + 1
            targets = [
                RolloutTarget(int(rollout_id), sid, first + i, PENDING, at)
                for i, sid in enumerate(station_ids)
            ]
            if targets:
                conn.execute(
                    s.firmware_rollout_targets.insert(),
                    [
                        {
                            "rollout_id": t.rollout_id,
                            "station_id": t.station_id,
                            "request_id": t.request_id,
                            "status": t.status,
                            "updated_at": t.updated_at,
                        }
                        for t in targets
                    ],
                )
            return Rollout(
                int(rollout_id), image_id, at, selector, retrieve_at, install_at, targets=targets
            )

        # Marked before the write and again once it is committed: a load of the set or a
        # station's read that ran meanwhile (and saw no target yet) cannot drop these.
        self.mark_pending(station_ids)
        try:
            rollout = await self._db.write(op)
        finally:
            self.mark_pending(station_ids)
        if station_ids:
            # After the commit: a node told earlier could read "none" and forget them.
            for listener in list(self.listeners):
                try:
                    listener(list(station_ids))
                except Exception:
                    log.exception("a listener of new firmware targets failed")
        return rollout

    def mark_pending(self, station_ids: list[str]) -> None:
        """These stations may have targets to send (another node created them): their next
        boot reads them. Call it once the targets are committed."""
        self._pending_generation += 1
        if self._pending is not None:
            self._pending.update(station_ids)

    async def get_rollout(self, rollout_id: int) -> Rollout | None:
        found = await self._db.read(lambda conn: _read_rollouts(conn, rollout_id, 1))
        return found[0] if found else None

    async def list_rollouts(self, *, limit: int = 100) -> list[Rollout]:
        """Newest first, each with its targets."""
        return await self._db.read(lambda conn: _read_rollouts(conn, None, limit))

    async def _may_have_pending(self, station_id: str) -> bool:
        while self._pending is None:
            if self._pending_loading is None or self._pending_loading.done():
                self._pending_loading = asyncio.create_task(self._load_pending())
            generation = self._pending_generation
            loaded = await asyncio.shield(self._pending_loading)
            if self._pending is None and generation == self._pending_generation:
                self._pending = loaded
        return station_id in self._pending

    async def _load_pending(self) -> set[str]:
        t = s.firmware_rollout_targets
        query = select(t.c.station_id).where(t.c.status.in_(_UNSENT)).distinct()
        return set(await self._db.read(lambda conn: conn.execute(query).scalars().all()))

    def claimable(self, target: RolloutTarget, claim_timeout: timedelta = CLAIM_TIMEOUT) -> bool:
        """Pending, or claimed longer ago than ``claim_timeout`` (its node died mid-send)."""
        if target.status == PENDING:
            return True
        return target.status == SENDING and target.updated_at < self.clock() - claim_timeout

    async def unsent_targets(
        self, station_id: str
    ) -> list[tuple[RolloutTarget, Rollout, FirmwareImage]]:
        """The station's Pending and Sending targets, newest rollout first, with their
        rollout and image: a Sending one may be on its way from another node, and says that
        older ones are superseded. From memory, without a read, for a station known to
        have none."""
        if not await self._may_have_pending(station_id):
            return []
        generation = self._pending_generation
        found = await self._read_unsent(station_id)
        if not found and self._pending is not None and generation == self._pending_generation:
            self._pending.discard(station_id)  # (a rollout made meanwhile may not be read yet)
        return found

    async def pending_targets(
        self, station_id: str, *, claim_timeout: timedelta = CLAIM_TIMEOUT
    ) -> list[tuple[RolloutTarget, Rollout, FirmwareImage]]:
        """The station's targets no node is sending (:meth:`claimable`), newest rollout
        first, with their rollout and image."""
        unsent = await self.unsent_targets(station_id)
        return [u for u in unsent if self.claimable(u[0], claim_timeout)]

    async def _read_unsent(
        self, station_id: str
    ) -> list[tuple[RolloutTarget, Rollout, FirmwareImage]]:

        def read(conn: Connection) -> list[tuple[RolloutTarget, Rollout, FirmwareImage]]:
            t, r, i = s.firmware_rollout_targets, s.firmware_rollouts, s.firmware_images
            rows = conn.execute(
                select(
                    t, r.c.image_id, r.c.created_at, r.c.selector, r.c.retrieve_at, r.c.install_at
                )
                .join(r, r.c.rollout_id == t.c.rollout_id)
                .where(t.c.station_id == station_id, t.c.status.in_(_UNSENT))
                .order_by(t.c.rollout_id.desc())
            ).all()
            out = []
            for row in rows:
                image = conn.execute(select(i).where(i.c.image_id == row.image_id)).first()
                if image is not None:
                    out.append((_target(row), _rollout(row, []), _image(image)))
            return out

        return await self._db.read(read)

    async def claim(
        self, rollout_id: int, station_id: str, *, claim_timeout: timedelta = CLAIM_TIMEOUT
    ) -> datetime | None:
        """Take a target to send it, for this node alone: Pending, or Sending for longer than
        ``claim_timeout``, becomes Sending stamped now. The stamp (for :meth:`release`) when
        this call took it; None when another node is sending it or it is answered.

        One conditional UPDATE: SQLite runs one writer at a time, and PostgreSQL makes a
        second UPDATE of the row wait for the first and look at the row it left."""
        now = self.clock()
        stale = now - claim_timeout

        def op(conn: Connection) -> bool:
            t = s.firmware_rollout_targets
            done = conn.execute(
                update(t)
                .where(
                    t.c.rollout_id == rollout_id,
                    t.c.station_id == station_id,
                    or_(t.c.status == PENDING, (t.c.status == SENDING) & (t.c.updated_at < stale)),
                )
                .values(status=SENDING, updated_at=now)
            )
            return bool(done.rowcount)

        return now if await self._db.write(op) else None

    async def release(self, rollout_id: int, station_id: str, claimed_at: datetime) -> bool:
        """Give back a claim whose station turned out not to be connected: Pending again,
        unless the claim is no longer this one (it went stale and another node took it)."""

        def op(conn: Connection) -> bool:
            t = s.firmware_rollout_targets
            done = conn.execute(
                update(t)
                .where(
                    t.c.rollout_id == rollout_id,
                    t.c.station_id == station_id,
                    t.c.status == SENDING,
                    t.c.updated_at == claimed_at,
                )
                .values(status=PENDING, updated_at=self.clock())
            )
            return bool(done.rowcount)

        return await self._db.write(op)

    async def record_answer(
        self, rollout_id: int, station_id: str, status: str, at: datetime
    ) -> bool:
        """The station's answer to the UpdateFirmware (or NoAnswer, CallError, Superseded):
        it replaces only Sending (and Pending). The station may have sent its first
        FirmwareStatusNotification (Downloading …) before its answer was read here, and that
        later news must stay."""

        def op(conn: Connection) -> bool:
            t = s.firmware_rollout_targets
            done = conn.execute(
                update(t)
                .where(
                    t.c.rollout_id == rollout_id,
                    t.c.station_id == station_id,
                    t.c.status.in_(_UNSENT),
                )
                .values(status=status, updated_at=at)
            )
            return bool(done.rowcount)

        return await self._db.write(op)

    async def record_status(
        self, station_id: str, request_id: int | None, status: str, at: datetime
    ) -> RolloutTarget | None:
        """A FirmwareStatusNotification: the target of (station, requestId), or without a
        requestId (1.6 FirmwareStatusNotification) the station's newest target. None when
        the station has no such target (an update we did not send, e.g. from another CSMS)."""

        def op(conn: Connection) -> RolloutTarget | None:
            t = s.firmware_rollout_targets
            query = select(t).where(t.c.station_id == station_id)
            if request_id is not None:
                query = query.where(t.c.request_id == request_id)
            row = conn.execute(query.order_by(t.c.rollout_id.desc()).limit(1)).first()
            if row is None:
                return None
            conn.execute(
                update(t)
                .where(t.c.rollout_id == row.rollout_id, t.c.station_id == station_id)
                .values(status=status, updated_at=at)
            )
            return RolloutTarget(int(row.rollout_id), station_id, int(row.request_id), status, at)

        return await self._db.write(op)
