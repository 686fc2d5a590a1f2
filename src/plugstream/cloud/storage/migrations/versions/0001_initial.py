"""The initial schema: stations, connectors, id tokens, transactions and their
events, meter values, flags, the message log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from plugstream.cloud.storage.coltypes import ExactDecimal, UTCDateTime

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "stations",
        sa.Column("station_id", sa.String(255), primary_key=True),
        sa.Column("password_hash", sa.String(255)),
        sa.Column("security_profile", sa.Integer, nullable=False),
        sa.Column("lenient", sa.Boolean, nullable=False),
        sa.Column("registered_at", UTCDateTime, nullable=False),
        sa.Column("vendor", sa.String(255)),
        sa.Column("model", sa.String(255)),
        sa.Column("serial_number", sa.String(255)),
        sa.Column("firmware_version", sa.String(255)),
        sa.Column("ocpp_version", sa.String(16)),
        sa.Column("last_boot", UTCDateTime),
        sa.Column("last_seen", UTCDateTime),
        sa.Column("clock_offset_s", sa.Float),
    )
    op.create_table(
        "connectors",
        sa.Column(
            "station_id",
            sa.String(255),
            sa.ForeignKey("stations.station_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("evse_id", sa.Integer, nullable=False),
        sa.Column("connector_id", sa.Integer, nullable=False),
        sa.Column("status", sa.String(64), nullable=False),
        sa.Column("error_code", sa.String(64)),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("station_id", "evse_id", "connector_id"),
    )
    op.create_table(
        "id_tokens",
        sa.Column("id_token", sa.String(255), primary_key=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("expiry", UTCDateTime),
        sa.Column("parent_id_token", sa.String(255)),
        sa.Column("token_type", sa.String(32), nullable=False),
    )
    op.create_table(
        "transactions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "station_id",
            sa.String(255),
            sa.ForeignKey("stations.station_id"),
            nullable=False,
        ),
        sa.Column("transaction_id", sa.String(64)),
        sa.Column("evse_id", sa.Integer, nullable=False),
        sa.Column("connector_id", sa.Integer, nullable=False),
        sa.Column("id_token", sa.String(255)),
        sa.Column("started_at", UTCDateTime),
        sa.Column("stopped_at", UTCDateTime),
        sa.Column("meter_start_wh", ExactDecimal),
        sa.Column("meter_stop_wh", ExactDecimal),
        sa.Column("baseline_wh", ExactDecimal),
        sa.Column("baseline_pending", sa.Boolean, nullable=False),
        sa.Column("last_register_wh", ExactDecimal),
        sa.Column("last_register_at", UTCDateTime),
        sa.Column("energy_wh", ExactDecimal),
        sa.Column("stop_reason", sa.String(64)),
        sa.Column("offline", sa.Boolean, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("start_key", sa.String(255)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("station_id", "transaction_id", name="uq_transactions_station_tx"),
    )
    op.create_index("ix_transactions_start_key", "transactions", ["station_id", "start_key"])
    op.create_index(
        "ix_transactions_connector", "transactions", ["station_id", "evse_id", "connector_id"]
    )
    op.create_table(
        "transaction_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "transaction_pk",
            sa.Integer,
            sa.ForeignKey("transactions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("seq_no", sa.Integer, nullable=False),
        sa.Column("event_type", sa.String(16), nullable=False),
        sa.Column("timestamp", UTCDateTime, nullable=False),
        sa.Column("trigger_reason", sa.String(64)),
        sa.Column("offline", sa.Boolean, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("transaction_pk", "seq_no", name="uq_transaction_events_seq"),
    )
    op.create_table(
        "meter_values",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column(
            "transaction_pk",
            sa.Integer,
            sa.ForeignKey("transactions.id", ondelete="CASCADE"),
        ),
        sa.Column("tx_key", sa.Integer, nullable=False),
        sa.Column("evse_id", sa.Integer, nullable=False),
        sa.Column("connector_id", sa.Integer, nullable=False),
        sa.Column("timestamp", UTCDateTime, nullable=False),
        sa.Column("measurand", sa.String(64), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("location", sa.String(16), nullable=False),
        sa.Column("context", sa.String(32)),
        sa.Column("value", ExactDecimal, nullable=False),
        sa.Column("unit", sa.String(16)),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint(
            "station_id",
            "tx_key",
            "evse_id",
            "connector_id",
            "timestamp",
            "measurand",
            "phase",
            "location",
            name="uq_meter_values_sample",
        ),
    )
    op.create_index("ix_meter_values_transaction", "meter_values", ["transaction_pk"])
    op.create_table(
        "flags",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column(
            "transaction_pk",
            sa.Integer,
            sa.ForeignKey("transactions.id", ondelete="CASCADE"),
        ),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("detail", sa.String(512), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("transaction_pk", "code", "detail", name="uq_flags"),
    )
    op.create_index("ix_flags_station", "flags", ["station_id"])
    op.create_table(
        "messages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("ix_messages_station_id", "messages", ["station_id", "id"])


def downgrade() -> None:
    for table in (
        "messages",
        "flags",
        "meter_values",
        "transaction_events",
        "transactions",
        "id_tokens",
        "connectors",
        "stations",
    ):
        op.drop_table(table)
