"""what 0001 gained after databases were created from it: connections.wake_queued,
rate_windows, oauth_states (each created only if absent)

0001 was edited after release, so a database created from the released 0001
reported "at head" while lacking these; this revision repairs such databases
and does nothing on one created from the edited 0001. A merged migration is
never edited again: changes go into a new revision.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import relais.models

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    columns = {c["name"] for c in inspector.get_columns("connections")}
    if "wake_queued" not in columns:
        # A plain ADD COLUMN (SQLite allows it with a constant default): a batch
        # copy of the table would trip the foreign keys pointing at it.
        op.add_column("connections", sa.Column("wake_queued", sa.Boolean(), nullable=False,
                                               server_default=sa.false()))
    if "rate_windows" not in tables:
        op.create_table(
            "rate_windows",
            sa.Column("key", sa.String(length=128), nullable=False),
            sa.Column("stamps", sa.JSON(), nullable=False),
            sa.PrimaryKeyConstraint("key"),
        )
    if "oauth_states" not in tables:
        op.create_table(
            "oauth_states",
            sa.Column("state", sa.String(length=64), nullable=False),
            sa.Column("tenant_id", sa.String(length=64), nullable=False),
            sa.Column("connection_id", sa.String(length=64), nullable=False),
            sa.Column("code_verifier", sa.String(length=128), nullable=True),
            sa.Column("redirect_uri", sa.String(length=500), nullable=False),
            sa.Column("created_at", relais.models.UTCDateTime(timezone=True), nullable=False),
            sa.Column("expires_at", relais.models.UTCDateTime(timezone=True), nullable=False),
            sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
            sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("state"),
        )


def downgrade() -> None:
    """Nothing: the objects belong to 0001 as it stands now."""
