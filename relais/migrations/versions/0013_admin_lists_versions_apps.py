"""list indexes (messages, appointments, deliveries newest first; a caller's calls);
tenant_config_versions (every applied tenant YAML), filled with each tenant's current one;
provider_apps (the operator's OAuth app per provider); oauth_states.return_to

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 12:40:00
"""

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
# h-console's 0012 comes first on main; this branch chains to 0011 until the merge.
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenant_config_versions",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("config_yaml", sa.Text(), nullable=False),
        sa.Column("config_env", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("restored_from", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "version"),
    )
    _keep_current_configs()
    op.create_table(
        "provider_apps",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("client_id", sa.String(length=500), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("registered_by", sa.String(length=200), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider"),
    )
    with op.batch_alter_table("oauth_states") as batch:
        batch.add_column(sa.Column("return_to", sa.String(length=500), nullable=True))
    op.create_index("ix_messages_tenant_taken", "messages", ["tenant_id", "taken_at", "id"])
    op.create_index("ix_messages_caller_phone", "messages",
                    ["tenant_id", sa.text("(caller ->> 'phone')")])
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_messages_caller_phone_rev", "messages",
                        ["tenant_id", sa.text("reverse(caller ->> 'phone') text_pattern_ops")])
    op.create_index("ix_appointments_tenant_start", "appointments", ["tenant_id", "start", "id"])
    op.create_index("ix_deliveries_tenant_created", "deliveries",
                    ["tenant_id", "created_at", "id"])


def _keep_current_configs() -> None:
    """Each tenant's configuration in force becomes its first kept version."""
    conn = op.get_bind()
    meta = sa.MetaData()
    tenants = sa.Table("tenants", meta, autoload_with=conn)
    versions = sa.Table("tenant_config_versions", meta, autoload_with=conn)
    sqlite = conn.dialect.name == "sqlite"
    for row in conn.execute(sa.select(tenants.c.id, tenants.c.config_yaml, tenants.c.config_env,
                                      tenants.c.config_version, tenants.c.updated_at)):
        at = row.updated_at or datetime.now(UTC)
        if sqlite and at.tzinfo is not None:
            at = at.astimezone(UTC).replace(tzinfo=None)
        conn.execute(versions.insert().values(
            tenant_id=row.id, version=row.config_version, config_yaml=row.config_yaml,
            config_env=row.config_env or {}, actor="(applied before the history was kept)",
            sha256=hashlib.sha256(row.config_yaml.encode()).hexdigest(), applied_at=at))


def downgrade() -> None:
    with op.batch_alter_table("oauth_states") as batch:
        batch.drop_column("return_to")
    op.drop_table("provider_apps")
    op.drop_table("tenant_config_versions")
    op.drop_index("ix_deliveries_tenant_created", "deliveries")
    op.drop_index("ix_appointments_tenant_start", "appointments")
    op.drop_index("ix_messages_caller_phone", "messages")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_messages_caller_phone_rev", "messages")
    op.drop_index("ix_messages_tenant_taken", "messages")
