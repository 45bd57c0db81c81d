"""appointments booking: calendar event reference, failure reason, staff locks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 04:07:56.003282
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK_NAME = "fk_appointments_calendar_connection_id_connections"


def upgrade() -> None:
    op.create_table(
        "staff_locks",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("staff_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "staff_id"),
    )
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("appointment_type", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("calendar_connection_id", sa.String(length=64), nullable=True)
        )
        batch_op.add_column(sa.Column("calendar_id", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("event_id", sa.String(length=1024), nullable=True))
        batch_op.add_column(sa.Column("event_etag", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("booked_by", sa.String(length=200), nullable=False, server_default="")
        )
        batch_op.create_foreign_key(FK_NAME, "connections", ["calendar_connection_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.drop_constraint(FK_NAME, type_="foreignkey")
        batch_op.drop_column("booked_by")
        batch_op.drop_column("last_error")
        batch_op.drop_column("event_etag")
        batch_op.drop_column("event_id")
        batch_op.drop_column("calendar_id")
        batch_op.drop_column("calendar_connection_id")
        batch_op.drop_column("appointment_type")
    op.drop_table("staff_locks")
