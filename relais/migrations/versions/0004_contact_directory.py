"""contact directory: CRM contacts and phones for caller lookup, pull state

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 04:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "directory_contacts",
        sa.Column("id", sa.String(length=300), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("connection_id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("crm_object", sa.String(length=32), nullable=False),
        sa.Column("crm_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("name_key", sa.String(length=300), nullable=False),
        sa.Column("company", sa.String(length=300), nullable=True),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("emails", sa.JSON(), nullable=False),
        sa.Column("phones", sa.JSON(), nullable=False),
        sa.Column("crm_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_directory_contacts_crm",
        "directory_contacts",
        ["connection_id", "crm_object", "crm_id"],
        unique=True,
    )
    op.create_index("ix_directory_contacts_name", "directory_contacts", ["tenant_id", "name_key"])
    op.create_index(
        "ix_directory_contacts_sweep", "directory_contacts", ["connection_id", "generation"]
    )
    op.create_table(
        "directory_phones",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("contact_id", sa.String(length=300), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("e164", sa.String(length=32), nullable=False),
        sa.Column("reversed_digits", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["directory_contacts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_directory_phones_e164", "directory_phones", ["tenant_id", "e164"])
    op.create_index(
        "ix_directory_phones_reversed", "directory_phones", ["tenant_id", "reversed_digits"]
    )
    op.create_index("ix_directory_phones_contact", "directory_phones", ["contact_id"])
    op.create_table(
        "directory_sync_state",
        sa.Column("connection_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("running_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_token", sa.String(length=64), nullable=True),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("records_in", sa.Integer(), nullable=False),
        sa.Column("records_out", sa.Integer(), nullable=False),
        sa.Column("deleted_in", sa.Integer(), nullable=False),
        sa.Column("last_run", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("connection_id"),
    )


def downgrade() -> None:
    op.drop_table("directory_sync_state")
    op.drop_index("ix_directory_phones_contact", table_name="directory_phones")
    op.drop_index("ix_directory_phones_reversed", table_name="directory_phones")
    op.drop_index("ix_directory_phones_e164", table_name="directory_phones")
    op.drop_table("directory_phones")
    op.drop_index("ix_directory_contacts_sweep", table_name="directory_contacts")
    op.drop_index("ix_directory_contacts_name", table_name="directory_contacts")
    op.drop_index("ix_directory_contacts_crm", table_name="directory_contacts")
    op.drop_table("directory_contacts")
