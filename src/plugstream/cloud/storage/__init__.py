"""PlugStream Cloud's durable storage: ``await Store.open(url)`` (SQLite or PostgreSQL)."""

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
from .store import Store, normalize_url
from .writer import WriterStats

__all__ = [
    "AuthResult",
    "ConnectorStatus",
    "Flag",
    "IdTokenRecord",
    "MessageRecord",
    "MeterSample",
    "StationRecord",
    "Store",
    "TransactionRecord",
    "WriterStats",
    "normalize_url",
]
