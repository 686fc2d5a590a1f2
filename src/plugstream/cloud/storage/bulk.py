"""Rows written in bulk: an INSERT compiled once per dialect and run as one
``executemany`` of plain tuples whose values are already in their stored form.

The hot writes (the message log, meter values) skip SQLAlchemy's per-statement
building, per-row parameter processing and per-value type conversion: the caller
converts each value once (``StoredForm``), the writer collects the rows of a whole
batch and inserts them together (``writer.defer_rows``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Dialect, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import Insert


def _sqlite_time(value: datetime) -> str:
    """What ``UTCDateTime`` stores on SQLite: naive UTC text with microseconds, the
    format of SQLAlchemy's SQLite ``DATETIME``."""
    if value.tzinfo is None:
        return value.isoformat(" ", "microseconds")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _pg_time(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _sqlite_decimal(value: Decimal) -> str:
    return str(value if type(value) is Decimal else Decimal(value))


def _pg_decimal(value: Decimal) -> Decimal:
    return value if type(value) is Decimal else Decimal(value)


class StoredForm:
    """The stored form of ``UTCDateTime`` and ``ExactDecimal`` values on a dialect, as
    their bind processing would make it."""

    time: Callable[[datetime], Any]
    decimal: Callable[[Decimal], Any]

    def __init__(self, dialect_name: str) -> None:
        if dialect_name == "sqlite":
            self.time, self.decimal = _sqlite_time, _sqlite_decimal
        else:
            self.time, self.decimal = _pg_time, _pg_decimal


#: the stored forms of the two dialects we run on, by ``dialect.name``
STORED_FORMS = {"sqlite": StoredForm("sqlite"), "postgresql": StoredForm("postgresql")}


class BulkInsert:
    """``INSERT INTO table (columns) VALUES (...)`` [``ON CONFLICT (conflict) DO
    NOTHING``], compiled once per dialect for positional parameters in ``columns``'
    order."""

    def __init__(
        self, table: Table, columns: tuple[str, ...], *, conflict: tuple[str, ...] = ()
    ) -> None:
        self.table = table
        self.columns = columns
        self.conflict = conflict
        self._sql: dict[tuple[str, str], str] = {}

    def sql(self, dialect: Dialect) -> str:
        key = (dialect.name, dialect.driver)
        found = self._sql.get(key)
        if found is None:
            found = self._sql[key] = self._compile(dialect)
        return found

    def _compile(self, dialect: Dialect) -> str:
        stmt: Insert
        if self.conflict:
            make = pg_insert if dialect.name == "postgresql" else sqlite_insert
            stmt = make(self.table).on_conflict_do_nothing(index_elements=list(self.conflict))
        else:
            stmt = self.table.insert()
        compiled = stmt.compile(
            dialect=dialect, column_keys=list(self.columns), for_executemany=True
        )
        if not compiled.positional or tuple(compiled.positiontup or ()) != self.columns:
            raise RuntimeError(  # pragma: no cover - a driver we do not use
                f"{dialect.name}+{dialect.driver}: no positional INSERT for {self.table.name}"
            )
        return str(compiled)
