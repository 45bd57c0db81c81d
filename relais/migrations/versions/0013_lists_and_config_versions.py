"""list indexes (messages, appointments, deliveries newest first; a caller's calls)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
# h-console's 0012 comes first on main; this branch chains to 0011 until the merge.
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_messages_tenant_taken", "messages", ["tenant_id", "taken_at", "id"])
    op.create_index("ix_messages_caller_phone", "messages",
                    ["tenant_id", sa.text("(caller ->> 'phone')")])
    op.create_index("ix_appointments_tenant_start", "appointments", ["tenant_id", "start", "id"])
    op.create_index("ix_deliveries_tenant_created", "deliveries",
                    ["tenant_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_tenant_created", "deliveries")
    op.drop_index("ix_appointments_tenant_start", "appointments")
    op.drop_index("ix_messages_caller_phone", "messages")
    op.drop_index("ix_messages_tenant_taken", "messages")
