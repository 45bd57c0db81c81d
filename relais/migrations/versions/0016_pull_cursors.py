"""pull_cursors: one cursor table for every incremental pull, keyed by
(connection, stream, partition); the contacts cursors (sync_cursors) and the
calendar cursors (calendar_cursors) move into it, then those tables go.

Revision ID: 0016
Revises: 0011 (the lead re-chains it after 0015 at merge)
Create Date: 2026-12-02 12:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CALENDAR = "calendar"  # the calendar stream's name (sync.pull_runner.CALENDAR_STREAM)


def _pull() -> sa.TableClause:
    return sa.table(
        "pull_cursors",
        sa.column("connection_id", sa.String),
        sa.column("stream", sa.String),
        sa.column("partition", sa.String),
        sa.column("cursor", sa.Text),
        sa.column("full_syncs", sa.Integer),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )


def _sync() -> sa.TableClause:
    return sa.table(
        "sync_cursors",
        sa.column("connection_id", sa.String),
        sa.column("stream", sa.String),
        sa.column("cursor", sa.Text),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )


def _calendar() -> sa.TableClause:
    return sa.table(
        "calendar_cursors",
        sa.column("connection_id", sa.String),
        sa.column("calendar_id", sa.String),
        sa.column("cursor", sa.Text),
        sa.column("full_syncs", sa.Integer),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )


def upgrade() -> None:
    op.create_table(
        "pull_cursors",
        sa.Column("connection_id", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("partition", sa.String(length=300), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("full_syncs", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("connection_id", "stream", "partition"),
    )
    pull, old, cal = _pull(), _sync(), _calendar()
    columns = ["connection_id", "stream", "partition", "cursor", "full_syncs", "updated_at"]
    op.execute(pull.insert().from_select(columns, sa.select(
        old.c.connection_id, old.c.stream, sa.literal(""), old.c.cursor, sa.literal(0),
        old.c.updated_at)))  # fmt: skip
    op.execute(pull.insert().from_select(columns, sa.select(
        cal.c.connection_id, sa.literal(CALENDAR), cal.c.calendar_id, cal.c.cursor,
        cal.c.full_syncs, cal.c.updated_at)))  # fmt: skip
    op.drop_table("sync_cursors")
    op.drop_table("calendar_cursors")


def downgrade() -> None:
    op.create_table(
        "sync_cursors",
        sa.Column("connection_id", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"]),
        sa.PrimaryKeyConstraint("connection_id", "stream"),
    )
    op.create_table(
        "calendar_cursors",
        sa.Column("connection_id", sa.String(length=64), nullable=False),
        sa.Column("calendar_id", sa.String(length=300), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("full_syncs", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("connection_id", "calendar_id"),
    )
    pull, old, cal = _pull(), _sync(), _calendar()
    op.execute(old.insert().from_select(
        ["connection_id", "stream", "cursor", "updated_at"],
        sa.select(pull.c.connection_id, pull.c.stream, pull.c.cursor, pull.c.updated_at)
        .where(pull.c.stream != CALENDAR, pull.c.partition == "")))  # fmt: skip
    op.execute(cal.insert().from_select(
        ["connection_id", "calendar_id", "cursor", "full_syncs", "updated_at"],
        sa.select(pull.c.connection_id, pull.c.partition, pull.c.cursor, pull.c.full_syncs,
                  pull.c.updated_at).where(pull.c.stream == CALENDAR)))  # fmt: skip
    op.drop_table("pull_cursors")
