"""Trust end to end: security events (reported by stations and refused by the gateway),
the setup service's claims, the firmware repository and its rollouts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from plugstream.cloud.storage.coltypes import UTCDateTime

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "security_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(50), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("tech_info", sa.Text),
        sa.Column("source", sa.String(16), nullable=False),
    )
    op.create_index("ix_security_events_station", "security_events", ["station_id", "id"])
    op.create_table(
        "station_claims",
        sa.Column("serial_number", sa.String(255), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("csms_url", sa.Text),
        sa.Column("csms_password", sa.String(40)),
        sa.Column("ocpp_version", sa.String(16), nullable=False),
        sa.Column("security_profile", sa.Integer, nullable=False),
        sa.Column("claimed_at", UTCDateTime, nullable=False),
        sa.Column("provisioned_at", UTCDateTime),
    )
    op.create_table(
        "firmware_images",
        sa.Column("image_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
        sa.Column("signing_certificate", sa.Text, nullable=False),
        sa.Column("uploaded_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "firmware_rollouts",
        sa.Column("rollout_id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "image_id",
            sa.String(64),
            sa.ForeignKey("firmware_images.image_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("selector", sa.Text, nullable=False),
        sa.Column("retrieve_at", UTCDateTime, nullable=False),
        sa.Column("install_at", UTCDateTime),
    )
    op.create_table(
        "firmware_rollout_targets",
        sa.Column(
            "rollout_id",
            BigId,
            sa.ForeignKey("firmware_rollouts.rollout_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("request_id", sa.Integer, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("rollout_id", "station_id"),
    )
    op.create_index(
        "ix_rollout_targets_station", "firmware_rollout_targets", ["station_id", "request_id"]
    )


def downgrade() -> None:
    for table in (
        "firmware_rollout_targets",
        "firmware_rollouts",
        "firmware_images",
        "station_claims",
        "security_events",
    ):
        op.drop_table(table)
