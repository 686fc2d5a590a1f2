"""The setup service's storage: the owners' claims of station serial numbers.

A claim says where a station goes once it calls the setup service: PlugStream Cloud
(``csms_url`` NULL) or a third-party CSMS, with the OCPP version and the security profile.
For a third-party CSMS at security profile 2 the owner gives the station's password, which
the station must be handed in clear: it is kept in ``csms_password`` and the API never
shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Row

from . import schema as s
from .coltypes import as_utc
from .database import Database

__all__ = [
    "ClaimRecord",
    "Claims",
]

_claims = s.station_claims


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    """One owner's claim of a serial number; ``csms_url`` without any password in it."""

    serial_number: str
    owner: str
    csms_url: str | None  # None: PlugStream Cloud itself
    ocpp_version: str
    security_profile: int
    claimed_at: datetime
    provisioned_at: datetime | None
    password: str | None  # third-party CSMS, profile 2: the password the owner gave


def _record(row: Row[tuple[object, ...]]) -> ClaimRecord:
    m = row._mapping
    url, password = m["csms_url"], m["csms_password"]
    provisioned = m["provisioned_at"]
    return ClaimRecord(
        serial_number=str(m["serial_number"]),
        owner=str(m["owner"]),
        csms_url=str(url) if url is not None else None,
        ocpp_version=str(m["ocpp_version"]),
        security_profile=int(m["security_profile"]),
        claimed_at=as_utc(m["claimed_at"]),
        provisioned_at=as_utc(provisioned) if provisioned is not None else None,
        password=str(password) if password is not None else None,
    )


class Claims:
    """The claims' rows: the setup service's part of the storage."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def put_claim(
        self,
        serial_number: str,
        *,
        owner: str,
        csms_url: str | None,
        ocpp_version: str,
        security_profile: int,
        password: str | None,
        claimed_at: datetime,
    ) -> ClaimRecord:
        """Create or replace the claim of ``serial_number``. A replaced claim is not provisioned
        yet: ``provisioned_at`` is cleared until the station's next setup call."""
        values = {
            "serial_number": serial_number,
            "owner": owner,
            "csms_url": csms_url,
            "csms_password": password if csms_url is not None else None,
            "ocpp_version": ocpp_version,
            "security_profile": security_profile,
            "claimed_at": claimed_at,
            "provisioned_at": None,
        }

        def write(conn: Connection) -> None:
            conn.execute(delete(_claims).where(_claims.c.serial_number == serial_number))
            conn.execute(insert(_claims).values(**values))

        await self._db.write(write)
        found = await self.get_claim(serial_number)
        assert found is not None
        return found

    async def get_claim(self, serial_number: str) -> ClaimRecord | None:
        def read(conn: Connection) -> ClaimRecord | None:
            row = conn.execute(
                select(_claims).where(_claims.c.serial_number == serial_number)
            ).first()
            return _record(row) if row is not None else None

        return await self._db.read(read)

    async def list_claims(self) -> list[ClaimRecord]:
        def read(conn: Connection) -> list[ClaimRecord]:
            rows = conn.execute(select(_claims).order_by(_claims.c.serial_number)).all()
            return [_record(row) for row in rows]

        return await self._db.read(read)

    async def delete_claim(self, serial_number: str) -> bool:
        """Remove the claim; False when there was none."""

        def write(conn: Connection) -> bool:
            result = conn.execute(delete(_claims).where(_claims.c.serial_number == serial_number))
            return bool(result.rowcount)

        return await self._db.write(write)

    async def mark_provisioned(self, serial_number: str, at: datetime) -> None:
        """The station fetched its configuration at ``at``."""

        def write(conn: Connection) -> None:
            conn.execute(
                update(_claims)
                .where(_claims.c.serial_number == serial_number)
                .values(provisioned_at=at)
            )

        await self._db.write(write)
