"""The certificates the cloud's V2G PKI issued, and which of them were revoked: what its
OCSP responder answers (good, revoked, or unknown for a serial it never issued).

An issuer is named by :func:`plugstream.pki.ocsp.key_id` of its certificate, so a request
in any of OCPP's hash algorithms finds the same row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from . import schema as s
from .coltypes import as_utc
from .database import Database

__all__ = ["CertificateStatus", "IssuedCertificate"]

_T = s.issued_certificates


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    issuer_key_id: str
    serial_number: str  # hex, lower case, no leading zeroes
    certificate_type: str
    subject: str
    station_id: str | None
    issued_at: datetime
    not_valid_after: datetime
    revoked_at: datetime | None = None
    revocation_reason: str | None = None


def _serial(serial: int | str) -> str:
    return format(serial, "x") if isinstance(serial, int) else format(int(serial, 16), "x")


def _row(row: Any) -> IssuedCertificate:
    return IssuedCertificate(
        issuer_key_id=row.issuer_key_id,
        serial_number=row.serial_number,
        certificate_type=row.certificate_type,
        subject=row.subject,
        station_id=row.station_id,
        issued_at=as_utc(row.issued_at),
        not_valid_after=as_utc(row.not_valid_after),
        revoked_at=as_utc(row.revoked_at) if row.revoked_at is not None else None,
        revocation_reason=row.revocation_reason,
    )


class CertificateStatus:
    """The issued certificates and their revocation."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record_issued(self, cert: IssuedCertificate) -> None:
        """Keep a certificate the PKI issued (again: the first record stays)."""

        def op(conn: Connection) -> None:
            found = conn.execute(
                select(_T.c.serial_number).where(
                    _T.c.issuer_key_id == cert.issuer_key_id,
                    _T.c.serial_number == cert.serial_number,
                )
            ).first()
            if found is not None:
                return
            conn.execute(
                _T.insert().values(
                    issuer_key_id=cert.issuer_key_id,
                    serial_number=cert.serial_number,
                    certificate_type=cert.certificate_type,
                    subject=cert.subject,
                    station_id=cert.station_id,
                    issued_at=cert.issued_at,
                    not_valid_after=cert.not_valid_after,
                    revoked_at=cert.revoked_at,
                    revocation_reason=cert.revocation_reason,
                )
            )

        await self._db.write(op)

    async def get(self, issuer_key_id: str, serial: int | str) -> IssuedCertificate | None:
        serial_hex = _serial(serial)

        def fn(conn: Connection) -> IssuedCertificate | None:
            row = conn.execute(
                select(_T).where(
                    _T.c.issuer_key_id == issuer_key_id, _T.c.serial_number == serial_hex
                )
            ).first()
            return _row(row) if row is not None else None

        return await self._db.read(fn)

    async def find(self, serial: int | str) -> list[IssuedCertificate]:
        """Every issued certificate with this serial (one, in practice: serials are random)."""
        serial_hex = _serial(serial)

        def fn(conn: Connection) -> list[IssuedCertificate]:
            rows = conn.execute(select(_T).where(_T.c.serial_number == serial_hex)).all()
            return [_row(r) for r in rows]

        return await self._db.read(fn)

    async def listing(
        self, *, station_id: str | None = None, revoked: bool | None = None, limit: int = 100
    ) -> list[IssuedCertificate]:
        def fn(conn: Connection) -> list[IssuedCertificate]:
            query = select(_T).order_by(_T.c.issued_at.desc(), _T.c.serial_number)
            if station_id is not None:
                query = query.where(_T.c.station_id == station_id)
            if revoked is True:
                query = query.where(_T.c.revoked_at.is_not(None))
            elif revoked is False:
                query = query.where(_T.c.revoked_at.is_(None))
            return [_row(r) for r in conn.execute(query.limit(limit)).all()]

        return await self._db.read(fn)

    async def revoke(
        self, issuer_key_id: str, serial: int | str, at: datetime, reason: str
    ) -> IssuedCertificate | None:
        """Mark revoked (once: a second revocation keeps the first time and reason); the
        row after, or None for a certificate never recorded."""
        serial_hex = _serial(serial)

        def op(conn: Connection) -> IssuedCertificate | None:
            where = (_T.c.issuer_key_id == issuer_key_id) & (_T.c.serial_number == serial_hex)
            conn.execute(
                update(_T)
                .where(where, _T.c.revoked_at.is_(None))
                .values(revoked_at=at, revocation_reason=reason)
            )
            row = conn.execute(select(_T).where(where)).first()
            return _row(row) if row is not None else None

        return await self._db.write(op)
