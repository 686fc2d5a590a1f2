"""PlugStream Cloud's durable storage: ``await Store.open(url)`` (SQLite or PostgreSQL).

One repository per area (``store.stations``, ``store.transactions``, ``store.id_tokens``,
``store.messages``, ``store.firmware``, ``store.security``, ``store.setup``) over one
unit of work (``store.db``, a :class:`Database`)."""

from .database import Database, SchemaMismatch, migrate, normalize_url, schema_revisions
from .records import (
    AuthResult,
    ConnectorStatus,
    Flag,
    IdTokenRecord,
    MessageRecord,
    MeterSample,
    StationRecord,
    TransactionRecord,
)
from .store import Store
from .writer import WriterStats

__all__ = [
    "AuthResult",
    "ConnectorStatus",
    "Database",
    "Flag",
    "IdTokenRecord",
    "MessageRecord",
    "MeterSample",
    "SchemaMismatch",
    "StationRecord",
    "Store",
    "TransactionRecord",
    "WriterStats",
    "migrate",
    "normalize_url",
    "schema_revisions",
]
