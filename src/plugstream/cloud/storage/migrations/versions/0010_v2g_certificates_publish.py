"""ISO 15118 certificates and OCSP (C, M), published firmware (L).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from plugstream.cloud.storage.coltypes import UTCDateTime

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "issued_certificates",
        sa.Column("issuer_key_id", sa.String(64), nullable=False),
        sa.Column("serial_number", sa.String(40), nullable=False),
        sa.Column("certificate_type", sa.String(32), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("station_id", sa.String(255)),
        sa.Column("issued_at", UTCDateTime, nullable=False),
        sa.Column("not_valid_after", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
        sa.Column("revocation_reason", sa.String(32)),
        sa.PrimaryKeyConstraint("issuer_key_id", "serial_number"),
    )
    op.create_index("ix_issued_certificates_serial", "issued_certificates", ["serial_number"])
    op.create_table(
        "firmware_publications",
        sa.Column("station_id", sa.String(255), nullable=False),
        sa.Column("request_id", sa.Integer, nullable=False),
        sa.Column("image_id", sa.String(64)),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("checksum", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("published_locations", sa.Text),
        sa.Column("requested_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("station_id", "request_id"),
    )


def downgrade() -> None:
    op.drop_table("firmware_publications")
    op.drop_index("ix_issued_certificates_serial", table_name="issued_certificates")
    op.drop_table("issued_certificates")
