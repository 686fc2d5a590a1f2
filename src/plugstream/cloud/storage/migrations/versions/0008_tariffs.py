"""Tariffs and costs (I): the tariffs, which station or id-token group pays which, and
each priced transaction's running and final cost.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from plugstream.cloud.storage.coltypes import ExactDecimal, UTCDateTime

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "tariffs",
        sa.Column("tariff_id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("start_fee", ExactDecimal, nullable=False),
        sa.Column("per_kwh", ExactDecimal, nullable=False),
        sa.Column("per_charging_minute", ExactDecimal, nullable=False),
        sa.Column("per_idle_minute", ExactDecimal, nullable=False),
        sa.Column("vat_percent", ExactDecimal, nullable=False),
        sa.Column("personal_message", sa.Text),
        sa.Column("language", sa.String(8)),
        sa.Column("is_default", sa.Boolean, nullable=False),
        sa.Column("cost_updated_interval_s", sa.Integer, nullable=False),
        sa.Column("cost_updated_threshold", ExactDecimal, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "tariff_assignments",
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column(
            "tariff_id",
            BigId,
            sa.ForeignKey("tariffs.tariff_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("assigned_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("scope", "key"),
    )
    op.create_index("ix_tariff_assignments_tariff", "tariff_assignments", ["tariff_id"])
    op.create_table(
        "transaction_costs",
        sa.Column(
            "transaction_pk",
            sa.Integer,
            sa.ForeignKey("transactions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tariff_id", sa.BigInteger),
        sa.Column("tariff_name", sa.String(255), nullable=False),
        sa.Column("prices", sa.Text, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("last_seq_no", sa.Integer, nullable=False),
        sa.Column("charging_state", sa.String(32)),
        sa.Column("state_since", UTCDateTime),
        sa.Column("charged", sa.Boolean, nullable=False),
        sa.Column("charging_s", ExactDecimal, nullable=False),
        sa.Column("idle_s", ExactDecimal, nullable=False),
        sa.Column("energy_wh", ExactDecimal, nullable=False),
        sa.Column("total_cost", ExactDecimal, nullable=False),
        sa.Column("final", sa.Boolean, nullable=False),
        sa.Column("sent_cost", ExactDecimal),
        sa.Column("sent_at", UTCDateTime),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("transaction_costs")
    op.drop_index("ix_tariff_assignments_tariff", table_name="tariff_assignments")
    op.drop_table("tariff_assignments")
    op.drop_table("tariffs")
