"""Charging profiles, reported limits and site limits (K).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from plugstream.cloud.storage.coltypes import ExactDecimal, UTCDateTime

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "charging_profiles",
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("charging_profile_id", sa.Integer, nullable=False),
        sa.Column("evse_id", sa.Integer, nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("stack_level", sa.Integer, nullable=False),
        sa.Column("transaction_id", sa.String(64)),
        sa.Column("profile", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("set_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("station_id", "charging_profile_id"),
    )
    op.create_table(
        "reported_charging_profiles",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("request_id", sa.Integer, nullable=False),
        sa.Column("evse_id", sa.Integer, nullable=False),
        sa.Column("charging_limit_source", sa.String(16), nullable=False),
        sa.Column("charging_profile_id", sa.Integer, nullable=False),
        sa.Column("profile", sa.Text, nullable=False),
        sa.Column("tbc", sa.Boolean, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
    )
    op.create_index(
        "ix_reported_charging_profiles_station",
        "reported_charging_profiles",
        ["station_id", "request_id"],
    )
    op.create_table(
        "charging_profile_requests",
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("request_id", sa.Integer, nullable=False),
        sa.Column("criteria", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("asked_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("station_id", "request_id"),
    )
    op.create_table(
        "charging_limits",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("evse_id", sa.Integer),
        sa.Column("charging_limit_source", sa.String(16), nullable=False),
        sa.Column("is_grid_critical", sa.Boolean),
        sa.Column("schedules", sa.Text, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("cleared_at", UTCDateTime),
    )
    op.create_index("ix_charging_limits_station", "charging_limits", ["station_id", "id"])
    op.create_table(
        "ev_charging_needs",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("evse_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("max_schedule_tuples", sa.Integer),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_ev_charging_needs_station", "ev_charging_needs", ["station_id", "id"])
    op.create_table(
        "sites",
        sa.Column("site_id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("max_current_a", ExactDecimal, nullable=False),
        sa.Column("phases", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "site_stations",
        sa.Column(
            "site_id",
            _BIG_ID,
            sa.ForeignKey("sites.site_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("max_current_a", ExactDecimal, nullable=False),
        sa.PrimaryKeyConstraint("site_id", "station_id"),
        sa.UniqueConstraint("station_id", name="uq_site_stations_station"),
    )


def downgrade() -> None:
    op.drop_table("site_stations")
    op.drop_table("sites")
    op.drop_index("ix_ev_charging_needs_station", table_name="ev_charging_needs")
    op.drop_table("ev_charging_needs")
    op.drop_index("ix_charging_limits_station", table_name="charging_limits")
    op.drop_table("charging_limits")
    op.drop_table("charging_profile_requests")
    op.drop_index("ix_reported_charging_profiles_station", table_name="reported_charging_profiles")
    op.drop_table("reported_charging_profiles")
    op.drop_table("charging_profiles")
