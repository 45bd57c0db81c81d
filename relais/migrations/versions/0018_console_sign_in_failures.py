"""console_sign_in_failures: failed console sign-ins per address, shared by every API process

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_sign_in_failures",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("address", sa.String(64), nullable=False),  # SHA-256 of the address
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_console_sign_in_failures_address", "console_sign_in_failures",
                    ["address", "failed_at"])


def downgrade() -> None:
    op.drop_index("ix_console_sign_in_failures_address", "console_sign_in_failures")
    op.drop_table("console_sign_in_failures")
