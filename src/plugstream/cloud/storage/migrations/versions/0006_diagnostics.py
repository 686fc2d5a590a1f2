"""Diagnostics (N): variable monitors, log uploads, customer information.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from plugstream.cloud.storage.coltypes import ExactDecimal, UTCDateTime

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "variable_monitors",
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("monitor_id", sa.Integer, nullable=False),
        sa.Column("component_name", sa.String(50), nullable=False),
        sa.Column("component_instance", sa.String(50)),
        sa.Column("evse_id", sa.Integer),
        sa.Column("connector_id", sa.Integer),
        sa.Column("variable_name", sa.String(50), nullable=False),
        sa.Column("variable_instance", sa.String(50)),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("value", ExactDecimal, nullable=False),
        sa.Column("severity", sa.Integer, nullable=False),
        sa.Column("transaction", sa.Boolean, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("request_id", sa.Integer),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("station_id", "monitor_id"),
    )
    op.create_table(
        "monitoring_reports",
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("request_id", sa.Integer, nullable=False),
        sa.Column("criteria", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("requested_at", UTCDateTime, nullable=False),
        sa.Column("completed_at", UTCDateTime),
        sa.PrimaryKeyConstraint("station_id", "request_id"),
    )
    op.create_table(
        "monitoring_report_parts",
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("request_id", sa.Integer, nullable=False),
        sa.Column("seq_no", sa.Integer, nullable=False),
        sa.Column("tbc", sa.Boolean, nullable=False),
        sa.Column("generated_at", UTCDateTime, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("monitors", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("station_id", "request_id", "seq_no"),
    )
    op.create_table(
        "log_requests",
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("request_id", sa.Integer, nullable=False),
        sa.Column("log_type", sa.String(32)),
        sa.Column("token", sa.String(64)),
        sa.Column("requested_at", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_at", UTCDateTime, nullable=False),
        sa.Column("filename", sa.String(255)),
        sa.Column("upload_filename", sa.String(255)),
        sa.Column("upload_size", sa.BigInteger),
        sa.Column("upload_sha256", sa.String(64)),
        sa.Column("uploaded_at", UTCDateTime),
        sa.PrimaryKeyConstraint("station_id", "request_id"),
    )
    op.create_index("ux_log_requests_token", "log_requests", ["token"], unique=True)
    op.create_table(
        "customer_information",
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("request_id", sa.Integer, nullable=False),
        sa.Column("report", sa.Boolean, nullable=False),
        sa.Column("clear", sa.Boolean, nullable=False),
        sa.Column("customer", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("requested_at", UTCDateTime, nullable=False),
        sa.Column("completed_at", UTCDateTime),
        sa.Column("data", sa.Text),
        sa.PrimaryKeyConstraint("station_id", "request_id"),
    )
    op.create_table(
        "customer_information_parts",
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("request_id", sa.Integer, nullable=False),
        sa.Column("seq_no", sa.Integer, nullable=False),
        sa.Column("tbc", sa.Boolean, nullable=False),
        sa.Column("generated_at", UTCDateTime, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("station_id", "request_id", "seq_no"),
    )


def downgrade() -> None:
    op.drop_table("customer_information_parts")
    op.drop_table("customer_information")
    op.drop_index("ux_log_requests_token", table_name="log_requests")
    op.drop_table("log_requests")
    op.drop_table("monitoring_report_parts")
    op.drop_table("monitoring_reports")
    op.drop_table("variable_monitors")
