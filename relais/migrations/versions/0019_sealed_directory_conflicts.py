"""sealed directory and conflicts: a sensitive tenant's contact directory and sync
conflicts encrypted at rest (directory_contacts.sealed, name_kh; sync_conflicts.sealed;
the sealed columns wider on PostgreSQL)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 16:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN (SQLite has it); SQLite enforces no length, so the widening
    # is PostgreSQL's only (a batch rebuild would trip the foreign keys there)
    op.add_column("directory_contacts", sa.Column("sealed", sa.Boolean(), nullable=False,
                                                  server_default=sa.false()))
    op.add_column("directory_contacts", sa.Column("name_kh", sa.Text(), nullable=True))
    op.create_index("ix_directory_contacts_sealed", "directory_contacts",
                    ["tenant_id", "sealed"])
    op.add_column("sync_conflicts", sa.Column("sealed", sa.Boolean(), nullable=False,
                                              server_default=sa.false()))
    if op.get_bind().dialect.name == "postgresql":
        for column in ("name", "company"):
            op.alter_column("directory_contacts", column, type_=sa.Text(),
                            existing_type=sa.String(300), existing_nullable=column == "company")
        for column in ("e164", "reversed_digits"):
            op.alter_column("directory_phones", column, type_=sa.String(80),
                            existing_type=sa.String(32), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for column in ("e164", "reversed_digits"):
            op.alter_column("directory_phones", column, type_=sa.String(32),
                            existing_type=sa.String(80), existing_nullable=False)
        for column in ("name", "company"):
            op.alter_column("directory_contacts", column, type_=sa.String(300),
                            existing_type=sa.Text(), existing_nullable=column == "company")
    op.drop_column("sync_conflicts", "sealed")
    op.drop_index("ix_directory_contacts_sealed", table_name="directory_contacts")
    op.drop_column("directory_contacts", "name_kh")
    op.drop_column("directory_contacts", "sealed")
