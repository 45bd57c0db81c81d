"""console_message_marks: the messages a client marked "handled" on the console

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 13:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_message_marks",
        sa.Column("message_id", sa.String(64),
                  sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tenant_id", sa.String(64),
                  sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("handled_by", sa.String(200), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_console_message_marks_tenant_id", "console_message_marks",
                    ["tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_console_message_marks_tenant_id", table_name="console_message_marks")
    op.drop_table("console_message_marks")
