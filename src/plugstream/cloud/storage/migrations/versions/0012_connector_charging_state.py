"""A 2.0.1 connector's chargingState: its status says Occupied whether the car charges or
waits; the console counts and shows which are charging (issue 16).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("connectors") as batch:
        batch.add_column(sa.Column("charging_state", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("connectors") as batch:
        batch.drop_column("charging_state")
