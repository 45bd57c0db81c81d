"""busy store: staff calendars' events as the calendar pulls read them

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 05:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "calendar_busy_events",
        sa.Column("connection_id", sa.String(length=64), nullable=False),
        sa.Column("calendar_id", sa.String(length=300), nullable=False),
        sa.Column("event_id", sa.String(length=1100), nullable=False),
        sa.Column("series_id", sa.String(length=1100), nullable=True),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("transparent", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("connection_id", "calendar_id", "event_id"),
    )
    op.create_index(
        "ix_calendar_busy_events_span",
        "calendar_busy_events",
        ["connection_id", "calendar_id", "start"],
    )
    op.create_index(
        "ix_calendar_busy_events_series",
        "calendar_busy_events",
        ["connection_id", "calendar_id", "series_id"],
    )
    op.create_table(
        "calendar_busy_windows",
        sa.Column("connection_id", sa.String(length=64), nullable=False),
        sa.Column("calendar_id", sa.String(length=300), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("filled_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("connection_id", "calendar_id"),
    )


def downgrade() -> None:
    op.drop_table("calendar_busy_windows")
    op.drop_index("ix_calendar_busy_events_series", table_name="calendar_busy_events")
    op.drop_index("ix_calendar_busy_events_span", table_name="calendar_busy_events")
    op.drop_table("calendar_busy_events")
