"""webhook_replays: signed callbacks already acted on, kept for their window

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 09:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import relais.models

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_replays",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("expires_at", relais.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("webhook_replays", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_replays_expires", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_table("webhook_replays")
