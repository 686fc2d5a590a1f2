"""Alembic environment of PlugStream Cloud's storage. ``Store.open`` runs it with a
connection in ``config.attributes["connection"]``; no alembic.ini is needed."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from plugstream.cloud.storage.schema import metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if context.is_offline_mode() or _connection is None:
    raise RuntimeError(
        "run the storage migrations through plugstream.cloud.storage.migrate() "
        "(or Store.open), which passes a connection"
    )
run_migrations(_connection)
