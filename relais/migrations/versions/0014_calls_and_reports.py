"""calls in (issue 14): call_events, the per-call aggregate calls, tenant_numbers;
messages and appointments name the call they qualify (call_id)

Revision ID: 0014
Revises: 0011 (on the h-reports branch; the lead sets 0013 at merge)
Create Date: 2026-12-02 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("call_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("called", sa.String(32), nullable=True),
        sa.Column("caller", sa.String(64), nullable=True),
        sa.Column("secretary", sa.String(200), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "call_id", "kind", name="uq_call_events_call_kind"),
    )
    op.create_index("ix_call_events_tenant_at", "call_events", ["tenant_id", "at"])
    op.create_table(
        "calls",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("call_id", sa.String(200), primary_key=True),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("transferred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("abandoned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("wait_seconds", sa.Float(), nullable=True),
        sa.Column("talk_seconds", sa.Float(), nullable=True),
        sa.Column("called", sa.String(32), nullable=True),
        sa.Column("caller", sa.String(64), nullable=True),
        sa.Column("secretary", sa.String(200), nullable=True),
        sa.Column("events", sa.Integer(), nullable=False),
    )
    op.create_index("ix_calls_tenant_offered", "calls", ["tenant_id", "offered_at"])
    op.create_table(
        "tenant_numbers",
        sa.Column("number", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_tenant_numbers_tenant_id", "tenant_numbers", ["tenant_id"])
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("call_id", sa.String(200), nullable=True))
        batch.create_index("ix_messages_tenant_call", ["tenant_id", "call_id"])
    with op.batch_alter_table("appointments") as batch:
        batch.add_column(sa.Column("call_id", sa.String(200), nullable=True))
        batch.create_index("ix_appointments_tenant_call", ["tenant_id", "call_id"])
    op.create_index("ix_deliveries_tenant_delivered", "deliveries", ["tenant_id", "delivered_at"])
    op.create_index("ix_escalations_tenant_created", "escalations", ["tenant_id", "created_at"])
    # /metrics: the backlog by status and the oldest due pending delivery, one index
    op.drop_index("ix_deliveries_status", "deliveries")
    op.create_index("ix_deliveries_status_due", "deliveries", ["status", "next_attempt_at"])
    where = sa.text("subject_type = 'appointment'")
    op.create_index("ix_audit_appointments", "audit_events", ["tenant_id", "at"],
                    postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    op.drop_index("ix_deliveries_status_due", "deliveries")
    op.create_index("ix_deliveries_status", "deliveries", ["status"])
    op.drop_index("ix_audit_appointments", "audit_events")
    op.drop_index("ix_escalations_tenant_created", "escalations")
    op.drop_index("ix_deliveries_tenant_delivered", "deliveries")
    # Plain DROP COLUMN (SQLite 3.35+): a batch rebuild would lose 0013's expression index.
    op.drop_index("ix_appointments_tenant_call", "appointments")
    op.drop_column("appointments", "call_id")
    # Plain DROP COLUMN (SQLite 3.35+): a batch rebuild would lose 0013's expression index.
    op.drop_index("ix_messages_tenant_call", "messages")
    op.drop_column("messages", "call_id")
    op.drop_index("ix_tenant_numbers_tenant_id", "tenant_numbers")
    op.drop_table("tenant_numbers")
    op.drop_index("ix_calls_tenant_offered", "calls")
    op.drop_table("calls")
    op.drop_index("ix_call_events_tenant_at", "call_events")
    op.drop_table("call_events")
