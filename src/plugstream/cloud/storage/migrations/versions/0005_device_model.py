"""The device model of each station (B): components, variables, attributes,
characteristics from NotifyReport and Get/SetVariables, and the station's NotifyEvent events.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
