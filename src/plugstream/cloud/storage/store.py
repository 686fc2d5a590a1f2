"""PlugStream Cloud's durable storage: SQLite (default) or PostgreSQL through SQLAlchemy
Core (async), migrated with Alembic, written through a group-committing writer.

``Store`` is what is opened and closed; it holds one repository per area over one
:class:`~.database.Database` (the unit of work). Every write returns only after its
database transaction is committed, so the gateway may send its CALLRESULT as soon as the
awaited call returns."""

from __future__ import annotations

from .database import Database
from .firmware import Firmware
from .id_tokens import IdTokens
from .messages import MessageLog
from .security import SecurityEvents
from .setup import Claims
from .stations import Stations
from .transaction_row import FUTURE_TOLERANCE
from .transactions import Transactions

# [B import]
# [N import]
# [HOP import]
# [I import]
# [K import]
# [CLM import]

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
        # [B repository]
        # [N repository]
        # [HOP repository]
        # [I repository]
        # [K repository]
        # [CLM repository]

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect to ``url`` (see ``normalize_url``) and migrate it to the newest schema."""
        return cls(await Database.open(url))

    async def close(self) -> None:
        """Commit every write queued so far, then let go of the database."""
        await self.db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
