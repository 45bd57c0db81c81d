"""Every tenant YAML ever applied: ``tenant_config_versions``.

One row per (tenant, version), written in the same transaction as the apply
that made it (``apply_config``), so the history and ``tenants.config_version``
never disagree. Rows are never updated: a rollback is a new version.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column

from sync.store.models import Base, Tenant, utcnow


class ConfigVersion(Base):
    __tablename__ = "tenant_config_versions"
    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    config_yaml: Mapped[str] = mapped_column(Text)
    # The ${VARIABLES} as resolved when this version was applied.
    config_env: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sha256: Mapped[str] = mapped_column(String(64))
    # Who applied it: "key <id> (<role>)", "cli", or a console user's id string.
    actor: Mapped[str] = mapped_column(String(200))
    applied_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The version this one restored (a rollback), else None.
    restored_from: Mapped[int | None] = mapped_column(Integer, nullable=True)


def record_version(session: Session, tenant: Tenant, actor: str,
                   restored_from: int | None = None) -> ConfigVersion:
    """Keep the tenant's configuration as just applied (its current version)."""
    row = ConfigVersion(
        tenant_id=tenant.id, version=tenant.config_version, config_yaml=tenant.config_yaml,
        config_env=dict(tenant.config_env), sha256=config_hash(tenant.config_yaml),
        actor=actor[:200], restored_from=restored_from)
    session.add(row)
    return row


def config_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
