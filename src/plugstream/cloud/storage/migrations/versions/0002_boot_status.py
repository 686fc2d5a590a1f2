"""Stations get the status their BootNotification is answered with, so an operator
can hold a station Pending or Rejected.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("stations") as batch:
        batch.add_column(
            sa.Column("boot_status", sa.String(16), nullable=False, server_default="Accepted")
        )


def downgrade() -> None:
    with op.batch_alter_table("stations") as batch:
        batch.drop_column("boot_status")
