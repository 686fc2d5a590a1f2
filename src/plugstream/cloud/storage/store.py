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

        # --- old names, removed by the call-site sweep ---
        self.stats = db.stats
        self.count_rows = db.count_rows
        self.station_listeners = self.stations.listeners
        self.register_station = self.stations.register
        self.get_station = self.stations.get
        self.get_boot_status = self.stations.get_boot_status
        self.list_stations = self.stations.list
        self.check_password = self.stations.check_password
        self.record_boot = self.stations.record_boot
        self.record_seen = self.stations.record_seen
        self.set_connector_status = self.stations.set_connector_status
        self.start_transaction = self.transactions.start
        self.stop_transaction = self.transactions.stop
        self.add_meter_values = self.transactions.add_meter_values
        self.transaction_event = self.transactions.transaction_event
        self.list_transactions = self.transactions.list
        self.get_transaction = self.transactions.get
        self.find_transaction = self.transactions.find
        self.list_flags = self.transactions.list_flags
        self.put_id_token = self.id_tokens.put
        self.get_id_token = self.id_tokens.get
        self.list_id_tokens = self.id_tokens.list
        self.delete_id_token = self.id_tokens.delete
        self.authorize = self.id_tokens.authorize
        self.log_message = self.messages.log
        self.log_messages = self.messages.log_many
        self.list_messages = self.messages.list
        # --- end of the old names ---

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
