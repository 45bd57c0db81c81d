"""two-way sync conflicts

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 05:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sync_conflicts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("appointment_id", sa.String(length=64), nullable=False),
        sa.Column("connection_id", sa.String(length=64), nullable=True),
        sa.Column("field", sa.String(length=16), nullable=False),
        sa.Column("relais_value", sa.JSON(), nullable=True),
        sa.Column("calendar_value", sa.JSON(), nullable=True),
        sa.Column("winner", sa.String(length=16), nullable=False),
        sa.Column("policy", sa.String(length=16), nullable=False),
        sa.Column("relais_modified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("calendar_modified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["appointment_id"], ["appointments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sync_conflicts_tenant_at", "sync_conflicts", ["tenant_id", "at"])
    op.create_index("ix_sync_conflicts_appointment", "sync_conflicts", ["appointment_id"])


def downgrade() -> None:
    op.drop_index("ix_sync_conflicts_appointment", table_name="sync_conflicts")
    op.drop_index("ix_sync_conflicts_tenant_at", table_name="sync_conflicts")
    op.drop_table("sync_conflicts")
