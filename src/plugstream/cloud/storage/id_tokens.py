"""The id tokens (1.6 idTag, 2.0.1 IdToken) the CSMS knows, and its answer to one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, delete, select
from sqlalchemy.engine import Connection

from . import schema as s
from .coltypes import as_utc
from .database import Database, dialect_insert
from .records import AuthResult, IdTokenRecord

__all__ = ["IdTokens", "lookup_auth"]

# built once: every StartTransaction and TransactionEvent with a token reads it
_SELECT_ID_TOKEN = select(s.id_tokens).where(s.id_tokens.c.id_token == bindparam("token"))


def _auth(row: Row[Any] | None, at: datetime) -> AuthResult:
    if row is None:
        return AuthResult(status="Invalid")
    status = row.status
    if status == "Accepted" and row.expiry is not None and row.expiry <= as_utc(at):
        status = "Expired"
    return AuthResult(status=status, expiry=row.expiry, parent_id_token=row.parent_id_token)


def lookup_auth(conn: Connection, id_token: str, at: datetime) -> AuthResult:
    """The answer to ``id_token`` at ``at``, inside a read or a write (a transaction's
    start answers its token in the same operation that stores it)."""
    row = conn.execute(_SELECT_ID_TOKEN, {"token": id_token}).first()
    return _auth(row, at)


def _token_record(row: Row[Any]) -> IdTokenRecord:
    return IdTokenRecord(
        id_token=row.id_token,
        status=row.status,
        expiry=row.expiry,
        parent_id_token=row.parent_id_token,
        token_type=row.token_type,
    )


class IdTokens:
    """The id tokens' rows."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, token: IdTokenRecord) -> IdTokenRecord:
        values = {
            "status": token.status,
            "expiry": as_utc(token.expiry) if token.expiry is not None else None,
            "parent_id_token": token.parent_id_token,
            "token_type": token.token_type,
        }

        def op(conn: Connection) -> IdTokenRecord:
            conn.execute(
                dialect_insert(conn, s.id_tokens)
                .values(id_token=token.id_token, **values)
                .on_conflict_do_update(index_elements=["id_token"], set_=values)
            )
            row = conn.execute(
                select(s.id_tokens).where(s.id_tokens.c.id_token == token.id_token)
            ).one()
            return _token_record(row)

        return await self._db.write(op)

    async def get(self, id_token: str) -> IdTokenRecord | None:
        def read(conn: Connection) -> IdTokenRecord | None:
            row = conn.execute(
                select(s.id_tokens).where(s.id_tokens.c.id_token == id_token)
            ).first()
            return _token_record(row) if row is not None else None

        return await self._db.read(read)

    async def delete(self, id_token: str) -> bool:
        def op(conn: Connection) -> bool:
            result = conn.execute(delete(s.id_tokens).where(s.id_tokens.c.id_token == id_token))
            return bool(result.rowcount)

        return await self._db.write(op)

    async def authorize(self, id_token: str, *, at: datetime) -> AuthResult:
        """The answer to an id token at ``at``; unknown tokens are Invalid, an Accepted
        token past its expiry is Expired."""
        return await self._db.read(lambda conn: lookup_auth(conn, id_token, at))

    # last: below it, ``list`` in an annotation would name this method
    async def list(self) -> list[IdTokenRecord]:
        def read(conn: Connection) -> list[IdTokenRecord]:
            rows = conn.execute(select(s.id_tokens).order_by(s.id_tokens.c.id_token))
            return [_token_record(row) for row in rows]

        return await self._db.read(read)
