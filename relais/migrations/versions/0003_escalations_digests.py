"""escalations (ladders running for a message) and digest buckets on deliveries

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 04:31:17.312272
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import relais.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Moment = relais.models.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "escalations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("ladder", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=100), nullable=False),
        sa.Column("redact", sa.Boolean(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("next_at", Moment(timezone=True), nullable=True),
        sa.Column("notified", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("finished", sa.Boolean(), nullable=False),
        sa.Column("acknowledged_at", Moment(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=200), nullable=True),
        sa.Column("acknowledged_via", sa.String(length=16), nullable=True),
        sa.Column("created_at", Moment(timezone=True), nullable=False),
        sa.Column("updated_at", Moment(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.create_index("ix_escalations_message", ["message_id"], unique=False)
        batch_op.create_index("ix_escalations_open", ["finished", "next_at"], unique=False)

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("digest_key", sa.String(length=300), nullable=True))
        batch_op.create_index("ix_deliveries_digest_key", ["digest_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_digest_key")
        batch_op.drop_column("digest_key")
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.drop_index("ix_escalations_open")
        batch_op.drop_index("ix_escalations_message")
    op.drop_table("escalations")
