"""The event outbox: what stations report, kept until NATS JetStream has acknowledged it
(cloud/bus/events.py, docs/events.md).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from plugstream.cloud.storage.coltypes import UTCDateTime

revision = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "event_outbox",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("node", sa.String(32), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        # SQLite: never reuse a relayed row's id (a seq is published once)
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("event_outbox")
