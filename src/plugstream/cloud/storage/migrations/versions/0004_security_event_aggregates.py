"""Security events aggregated: a refusal is one counted row per (station id, address,
type) with its first and last time, so that a flood of bad logins costs one row, not
one per attempt. The refusals already kept are grouped the same way (their count, first
and last time); a station's own events stay as they are, each a count of 1.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from plugstream.cloud.storage.coltypes import UTCDateTime

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_REFUSALS = "source = 'gateway'"


def upgrade() -> None:
    with op.batch_alter_table("security_events") as batch:
        batch.add_column(sa.Column("address", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("count", sa.BigInteger, nullable=False, server_default="1"))
        batch.add_column(sa.Column("last_seen", UTCDateTime, nullable=True))
        batch.add_column(sa.Column("seq", sa.BigInteger, nullable=True))
    # Each row kept so far is its own event (count 1): its last time is its time, and the
    # order it was stored in (its id) is the order of its last write.
    op.execute("UPDATE security_events SET last_seen = at, seq = id")
    with op.batch_alter_table("security_events") as batch:
        batch.alter_column("last_seen", existing_type=UTCDateTime, nullable=False)
        batch.alter_column("seq", existing_type=sa.BigInteger, nullable=False)
        batch.drop_index("ix_security_events_station")
        batch.create_index("ix_security_events_station", ["station_id", "seq"])
        batch.create_index("ix_security_events_seq", ["seq"])
        batch.create_index("ix_security_events_source_last_seen", ["source", "last_seen"])
    _group_refusals()
    op.create_index(
        "ux_security_events_refusal",
        "security_events",
        ["station_id", "address", "type"],
        unique=True,
        sqlite_where=sa.text(_REFUSALS),
        postgresql_where=sa.text(_REFUSALS),
    )


def _group_refusals() -> None:
    """The refusals kept so far, one row per (station id, type) as the code now keeps
    them: the newest row stays, with the group's count, first and last time. In set
    operations (one GROUP BY, one pass per group), so a table a flood filled migrates
    in one go."""
    op.execute("CREATE TABLE security_events_0004 (keep BIGINT PRIMARY KEY, n BIGINT NOT NULL)")
    op.execute(
        "INSERT INTO security_events_0004 (keep, n) SELECT max(id), count(*) "
        f"FROM security_events WHERE {_REFUSALS} GROUP BY station_id, type"
    )
    same = (
        f"FROM security_events e WHERE e.{_REFUSALS} AND e.station_id = "
        "security_events.station_id AND e.type = security_events.type"
    )
    op.execute(
        "UPDATE security_events SET "
        "count = (SELECT n FROM security_events_0004 WHERE keep = security_events.id), "
        f"at = (SELECT min(e.at) {same}), last_seen = (SELECT max(e.at) {same}) "
        "WHERE id IN (SELECT keep FROM security_events_0004)"
    )
    op.execute(
        f"DELETE FROM security_events WHERE {_REFUSALS} "
        "AND id NOT IN (SELECT keep FROM security_events_0004)"
    )
    op.execute("DROP TABLE security_events_0004")


def downgrade() -> None:
    op.drop_index("ux_security_events_refusal", table_name="security_events")
    with op.batch_alter_table("security_events") as batch:
        batch.drop_index("ix_security_events_source_last_seen")
        batch.drop_index("ix_security_events_seq")
        batch.drop_index("ix_security_events_station")
        batch.create_index("ix_security_events_station", ["station_id", "id"])
        batch.drop_column("seq")
        batch.drop_column("last_seen")
        batch.drop_column("count")
        batch.drop_column("address")
