"""The operators' accounts and their web sessions.

A password is kept only as an argon2id hash, checked on the same bounded pool as the
stations' (:func:`.stations.password_pool`), so a flood of console logins cannot starve
the stations' admission or the store's writer. No method returns or logs a hash.

A session id is 256 random bits handed to the browser once; the database keeps only its
SHA-256, so a leaked backup or a read of the table cannot be replayed as a login. Each
session carries its role (copied at login) and its CSRF token; it expires after
:data:`SESSION_IDLE_S` without use (sliding) and after :data:`SESSION_MAX_S` in any case.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from plugstream.cloud.logins import PasswordPool

from . import schema as s
from .coltypes import as_utc
from .database import Database
from .stations import password_pool

__all__ = [
    "ROLES",
    "SESSION_IDLE_S",
    "SESSION_MAX_S",
    "OperatorExists",
    "OperatorRecord",
    "Operators",
    "SessionRecord",
    "UnknownOperator",
]

ROLES = ("admin", "operator", "read-only")
SESSION_IDLE_S = 8 * 3600.0  # a session unused this long is over (sliding)
SESSION_MAX_S = 7 * 24 * 3600.0  # and every session is over this long after its login
TOUCH_EVERY_S = 60.0  # last-seen is written at most this often per session (not per request)

_ops = s.operators
_sessions = s.operator_sessions


class OperatorExists(ValueError):
    """An account of that name exists already."""


class UnknownOperator(LookupError):
    """No account of that name."""


@dataclass(frozen=True, slots=True)
class OperatorRecord:
    """An operator's account as shown: never its password hash."""

    username: str
    role: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A live session; the id itself is known only to its browser."""

    username: str
    role: str
    csrf_token: str
    created_at: datetime
    last_seen: datetime
    expires_at: datetime


def session_digest(session_id: str) -> str:
    """What the table keeps of a session id (its SHA-256, hex)."""
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")


class Operators:
    """The ``operators`` and ``operator_sessions`` tables."""

    def __init__(
        self,
        db: Database,
        *,
        pool: PasswordPool | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._now = now
        self.pool = pool if pool is not None else password_pool()
        # the stations' setting (OWASP's argon2id: 19 MiB, 2 passes); see stations.py
        self._hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
        # verified against when the name is unknown, so a wrong name costs what a wrong
        # password does and the time of a refusal does not tell which it was
        self._decoy: str | None = None

    # -- accounts -------------------------------------------------------------------------

    async def add(self, username: str, password: str, role: str) -> OperatorRecord:
        """A new account; :class:`OperatorExists` if the name is taken."""
        _check_role(role)
        password_hash = await self.pool.run(self._hasher.hash, password)
        now = self._now()

        def op(conn: Connection) -> OperatorRecord:
            found = conn.execute(select(_ops.c.username).where(_ops.c.username == username))
            if found.first() is not None:
                raise OperatorExists(username)
            conn.execute(
                insert(_ops).values(
                    username=username, password_hash=password_hash, role=role, created_at=now
                )
            )
            return OperatorRecord(username, role, now)

        return await self._db.write(op)

    async def get(self, username: str) -> OperatorRecord | None:
        def read(conn: Connection) -> OperatorRecord | None:
            row = conn.execute(
                select(_ops.c.username, _ops.c.role, _ops.c.created_at).where(
                    _ops.c.username == username
                )
            ).first()
            return None if row is None else OperatorRecord(row[0], row[1], as_utc(row[2]))

        return await self._db.read(read)

    async def remove(self, username: str) -> None:
        """Delete the account and every session of it; :class:`UnknownOperator` if none."""

        def op(conn: Connection) -> None:
            conn.execute(delete(_sessions).where(_sessions.c.username == username))
            if conn.execute(delete(_ops).where(_ops.c.username == username)).rowcount == 0:
                raise UnknownOperator(username)

        await self._db.write(op)

    async def set_password(self, username: str, password: str) -> None:
        """A new password; every session of the account ends (a stolen one with them)."""
        password_hash = await self.pool.run(self._hasher.hash, password)

        def op(conn: Connection) -> None:
            changed = conn.execute(
                update(_ops).where(_ops.c.username == username).values(password_hash=password_hash)
            )
            if changed.rowcount == 0:
                raise UnknownOperator(username)
            conn.execute(delete(_sessions).where(_sessions.c.username == username))

        await self._db.write(op)

    async def verify(self, username: str, password: str) -> OperatorRecord | None:
        """The account if ``password`` is its password, else None (unknown name or wrong
        password alike, in about the same time). ``PoolBusy`` when the pool is full."""

        def read(conn: Connection) -> Any:
            return conn.execute(
                select(_ops.c.username, _ops.c.role, _ops.c.created_at, _ops.c.password_hash).where(
                    _ops.c.username == username
                )
            ).first()

        row = await self._db.read(read)
        if row is None:
            if self._decoy is None:
                self._decoy = await self.pool.run(self._hasher.hash, secrets.token_hex(16))
            stored = self._decoy
        else:
            stored = row[3]
        try:
            ok = bool(await self.pool.run(self._hasher.verify, stored, password))
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or row is None:
            return None
        return OperatorRecord(row[0], row[1], as_utc(row[2]))

    # -- sessions -------------------------------------------------------------------------

    async def create_session(self, operator: OperatorRecord) -> tuple[str, SessionRecord]:
        """A new session of ``operator``: its id (for the cookie; kept nowhere) and record."""
        session_id = secrets.token_urlsafe(32)  # 256 bits
        now = self._now()
        record = SessionRecord(
            username=operator.username,
            role=operator.role,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
            expires_at=now + timedelta(seconds=min(SESSION_IDLE_S, SESSION_MAX_S)),
        )

        def op(conn: Connection) -> None:
            conn.execute(
                insert(_sessions).values(
                    session_hash=session_digest(session_id),
                    username=record.username,
                    role=record.role,
                    csrf_token=record.csrf_token,
                    created_at=now,
                    last_seen=now,
                    expires_at=record.expires_at,
                )
            )

        await self._db.write(op)
        return session_id, record

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """The live session of this id (its expiry moved on: sliding), or None when there
        is none or it has expired (then it is deleted)."""
        digest = session_digest(session_id)

        def read(conn: Connection) -> Any:
            return conn.execute(select(_sessions).where(_sessions.c.session_hash == digest)).first()

        row = await self._db.read(read)
        if row is None:
            return None
        m = row._mapping
        now = self._now()
        created, last_seen = as_utc(m["created_at"]), as_utc(m["last_seen"])
        expires = as_utc(m["expires_at"])
        if expires <= now:
            await self._db.write(
                lambda conn: conn.execute(
                    delete(_sessions).where(_sessions.c.session_hash == digest)
                )
            )
            return None
        if (now - last_seen).total_seconds() >= TOUCH_EVERY_S:
            last_seen = now
            expires = min(
                now + timedelta(seconds=SESSION_IDLE_S),
                created + timedelta(seconds=SESSION_MAX_S),
            )
            values = {"last_seen": last_seen, "expires_at": expires}
            await self._db.write(
                lambda conn: conn.execute(
                    update(_sessions).where(_sessions.c.session_hash == digest).values(**values)
                )
            )
        return SessionRecord(m["username"], m["role"], m["csrf_token"], created, last_seen, expires)

    async def delete_session(self, session_id: str) -> None:
        """Logout: the session is gone (no error if it was already)."""
        digest = session_digest(session_id)
        await self._db.write(
            lambda conn: conn.execute(delete(_sessions).where(_sessions.c.session_hash == digest))
        )

    async def delete_sessions(self, username: str) -> int:
        """End every session of the account; how many there were."""

        def op(conn: Connection) -> int:
            done = conn.execute(delete(_sessions).where(_sessions.c.username == username))
            return int(done.rowcount)

        return await self._db.write(op)

    # last: below it, ``list`` in an annotation would name this method
    async def list(self) -> list[OperatorRecord]:
        """Every account, by name (no hashes)."""

        def read(conn: Connection) -> list[OperatorRecord]:
            rows = conn.execute(
                select(_ops.c.username, _ops.c.role, _ops.c.created_at).order_by(_ops.c.username)
            )
            return [OperatorRecord(r[0], r[1], as_utc(r[2])) for r in rows]

        return await self._db.read(read)
