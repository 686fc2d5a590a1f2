"""The device model of each station (B): components, variables, attributes,
characteristics from NotifyReport and Get/SetVariables, and the station's NotifyEvent events.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from plugstream.cloud.storage.coltypes import ExactDecimal, UTCDateTime

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "device_variables",
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("component", sa.String(50), nullable=False),
        sa.Column("component_instance", sa.String(50), nullable=False),
        sa.Column("evse_id", sa.Integer, nullable=False),
        sa.Column("connector_id", sa.Integer, nullable=False),
        sa.Column("variable", sa.String(50), nullable=False),
        sa.Column("variable_instance", sa.String(50), nullable=False),
        sa.Column("attribute_type", sa.String(8), nullable=False),
        sa.Column("value", sa.Text),
        sa.Column("mutability", sa.String(16)),
        sa.Column("persistent", sa.Boolean),
        sa.Column("constant", sa.Boolean),
        sa.Column("unit", sa.String(16)),
        sa.Column("data_type", sa.String(20)),
        sa.Column("min_limit", ExactDecimal),
        sa.Column("max_limit", ExactDecimal),
        sa.Column("values_list", sa.Text),
        sa.Column("supports_monitoring", sa.Boolean),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint(
            "station_id",
            "component",
            "component_instance",
            "evse_id",
            "connector_id",
            "variable",
            "variable_instance",
            "attribute_type",
        ),
    )
    op.create_table(
        "device_reports",
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("request_id", sa.Integer, nullable=False),
        sa.Column("report_base", sa.String(32)),
        sa.Column("requested_at", UTCDateTime),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("parts", sa.Integer, nullable=False),
        sa.Column("items", sa.Integer, nullable=False),
        sa.Column("final_seq_no", sa.Integer),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("station_id", "request_id"),
    )
    op.create_table(
        "station_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("event_id", sa.Integer, nullable=False),
        sa.Column("timestamp", UTCDateTime, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("cause", sa.Integer),
        sa.Column("actual_value", sa.Text, nullable=False),
        sa.Column("tech_code", sa.String(50)),
        sa.Column("tech_info", sa.Text),
        sa.Column("cleared", sa.Boolean),
        sa.Column("transaction_id", sa.String(36)),
        sa.Column("variable_monitoring_id", sa.Integer),
        sa.Column("event_notification_type", sa.String(32), nullable=False),
        sa.Column("component", sa.String(50), nullable=False),
        sa.Column("component_instance", sa.String(50), nullable=False),
        sa.Column("evse_id", sa.Integer, nullable=False),
        sa.Column("connector_id", sa.Integer, nullable=False),
        sa.Column("variable", sa.String(50), nullable=False),
        sa.Column("variable_instance", sa.String(50), nullable=False),
    )
    op.create_index("ix_station_events_station", "station_events", ["station_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_station_events_station", table_name="station_events")
    op.drop_table("station_events")
    op.drop_table("device_reports")
    op.drop_table("device_variables")
