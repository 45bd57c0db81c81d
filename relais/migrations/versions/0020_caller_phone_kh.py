"""caller phone keyed hash indexes: a sealed message's or appointment's caller found by
the keyed hash of its number (``caller ->> 'phone_kh'``), and appointments by their
caller's number (``GET …/appointments?caller=``, the desk's caller history)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02 17:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_messages_caller_phone_kh", "messages",
                    ["tenant_id", sa.text("(caller ->> 'phone_kh')")])
    op.create_index("ix_appointments_caller_phone", "appointments",
                    ["tenant_id", sa.text("(caller ->> 'phone')")])
    op.create_index("ix_appointments_caller_phone_kh", "appointments",
                    ["tenant_id", sa.text("(caller ->> 'phone_kh')")])


def downgrade() -> None:
    op.drop_index("ix_appointments_caller_phone_kh", "appointments")
    op.drop_index("ix_appointments_caller_phone", "appointments")
    op.drop_index("ix_messages_caller_phone_kh", "messages")
