"""Privacy (issue 15): the access log (hash chain per tenant), its heads, the
retention runs, signed link revocations and one-time codes, and the
redaction state of messages and appointments; messages.sealed and
appointments.sealed (content encrypted at rest), their subject as Text (sealed is longer).

Revision ID: 0015
Revises: 0011 (the lead re-chains it to 0014 at merge)
Create Date: 2026-12-02 12:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "access_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject_type", sa.String(32), nullable=False),
        sa.Column("subject_id", sa.String(200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("tenant_id", "seq", name="uq_access_log_tenant_seq"),
    )
    op.create_table(
        "access_log_heads",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("base_seq", sa.Integer(), nullable=False),
        sa.Column("base_hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "retention_runs",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("cutoffs", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_table(
        "link_revocations",
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
    )
    op.create_table(
        "link_codes",
        sa.Column("token_digest", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
    )
    # plain ADD COLUMN (SQLite has it): a batch rebuild of messages would trip the
    # deliveries' foreign key there
    op.add_column("messages", sa.Column("redaction", sa.String(16), nullable=True))
    op.add_column("messages", sa.Column("sealed", sa.Boolean(), nullable=False,
                                        server_default=sa.false()))
    if op.get_bind().dialect.name == "postgresql":  # SQLite enforces no length (and
        # rebuilding messages there would trip the deliveries' foreign key)
        op.alter_column("messages", "subject", type_=sa.Text(), existing_type=sa.String(300),
                        existing_nullable=False)
    op.add_column("appointments", sa.Column("redaction", sa.String(16), nullable=True))
    op.add_column("appointments", sa.Column("sealed", sa.Boolean(), nullable=False,
                                            server_default=sa.false()))
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("appointments", "subject", type_=sa.Text(),
                        existing_type=sa.String(300), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("appointments", "subject", type_=sa.String(300),
                        existing_type=sa.Text(), existing_nullable=False)
    # Plain DROP COLUMN (SQLite 3.35+): a batch rebuild would lose 0013's expression index.
    op.drop_column("appointments", "sealed")
    op.drop_column("appointments", "redaction")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("messages", "subject", type_=sa.String(300), existing_type=sa.Text(),
                        existing_nullable=False)
    # Plain DROP COLUMN (SQLite 3.35+): a batch rebuild would lose 0013's expression index.
    op.drop_column("messages", "sealed")
    op.drop_column("messages", "redaction")
    op.drop_table("link_codes")
    op.drop_table("link_revocations")
    op.drop_table("retention_runs")
    op.drop_table("access_log_heads")
    op.drop_table("access_log")
