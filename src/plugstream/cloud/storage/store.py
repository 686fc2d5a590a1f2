"""PlugStream Cloud's durable storage: SQLite (default) or PostgreSQL through SQLAlchemy
Core (async), migrated with Alembic, written through a group-committing writer.

``Store`` is what is opened and closed; it holds one repository per area over one
:class:`~.database.Database` (the unit of work). Every write returns only after its
database transaction is committed, so the gateway may send its CALLRESULT as soon as the
awaited call returns."""

from __future__ import annotations

from .certificate_status import CertificateStatus
from .database import Database
from .device_model import DeviceModel
from .diagnostics import Diagnostics
from .display_messages import DisplayMessages
from .firmware import Firmware
from .firmware_publications import FirmwarePublications
from .id_tokens import IdTokens
from .messages import MessageLog
from .operators import Operators
from .outbox import EventOutboxRows
from .reservations import Reservations
from .security import SecurityEvents
from .setup import Claims
from .smart_charging import SmartCharging
from .stations import Stations
from .tariffs import Tariffs
from .transaction_row import FUTURE_TOLERANCE
from .transactions import Transactions

__all__ = ["FUTURE_TOLERANCE", "Store"]


class Store:
    """The storage of PlugStream Cloud. Open with ``await Store.open(url)``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.url = db.url
        self.stations = Stations(db)
        self.transactions = Transactions(db)
        self.id_tokens = IdTokens(db)
        self.messages = MessageLog(db)
        self.firmware = Firmware(db)
        self.security = SecurityEvents(db)
        self.setup = Claims(db)
        self.device_model = DeviceModel(db)
        self.diagnostics = Diagnostics(db)
        self.reservations = Reservations(db)
        self.display_messages = DisplayMessages(db)
        self.tariffs = Tariffs(db)
        self.smart_charging = SmartCharging(db)
        self.certificate_status = CertificateStatus(db)
        self.firmware_publications = FirmwarePublications(db)
        self.operators = Operators(db)
        self.event_outbox = EventOutboxRows(db)

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> Store:
        """Connect to ``url`` (see ``normalize_url``) and migrate it to the newest schema
        (``migrate`` False: refuse any other schema, :class:`SchemaMismatch`)."""
        return cls(await Database.open(url, migrate=migrate))

    async def close(self) -> None:
        """Commit every write queued so far, then let go of the database."""
        await self.db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
