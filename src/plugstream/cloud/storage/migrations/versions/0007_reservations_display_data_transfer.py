"""Reservations (H), display messages (O) and data transfer (P).

Data transfer keeps nothing of its own: the message log holds every DataTransfer whole.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from plugstream.cloud.storage.coltypes import UTCDateTime

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "reservations",
        sa.Column("reservation_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("evse_id", sa.Integer),
        sa.Column("id_token", sa.String(36), nullable=False),
        sa.Column("id_token_type", sa.String(20), nullable=False),
        sa.Column("group_id_token", sa.String(36)),
        sa.Column("expiry", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("transaction_id", sa.String(36)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_reservations_station", "reservations", ["station_id", "reservation_id"])
    op.create_table(
        "display_messages",
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("message_id", sa.Integer, nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16)),
        sa.Column("info", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("request_id", sa.Integer),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("station_id", "message_id"),
    )
    op.create_table(
        "display_message_requests",
        sa.Column("request_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("criteria", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("parts", sa.Integer, nullable=False),
        sa.Column("requested_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("display_message_requests")
    op.drop_table("display_messages")
    op.drop_index("ix_reservations_station", table_name="reservations")
    op.drop_table("reservations")
