"""A tenant's configuration history: list and read the applied versions, check
a candidate without applying it (errors at their line and column, and the
unified diff against the applied YAML), roll back to an earlier version.

Invariants:
- one apply path: a rollback goes through ``apply_config`` like any apply, so
  it is validated again and recorded as a new version (``restored_from``);
- a dry run writes nothing;
- the diff is text (``difflib.unified_diff``), applied → candidate.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mappings.errors import ConfigError
from mappings.yamlpos import public_environment
from sync.domain import as_utc_iso
from sync.store.config_versions import ConfigVersion, config_hash
from sync.store.models import Tenant
from sync.tenants import ApplyResult, apply_config, check_config


class UnknownVersion(LookupError):
    pass


@dataclass
class DryRun:
    """What applying ``candidate`` would do: its problems (``ConfigIssue.as_dict``,
    with line and column) and the diff from the applied configuration."""

    valid: bool
    errors: list[dict[str, Any]]
    diff: str
    applied_version: int | None
    changed: bool
    tenant: str | None = None
    warnings: list[str] = field(default_factory=list)


def history(session: Session, tenant_id: str) -> list[ConfigVersion]:
    """Newest first."""
    return list(session.scalars(
        select(ConfigVersion).where(ConfigVersion.tenant_id == tenant_id)
        .order_by(ConfigVersion.version.desc())))


def get_version(session: Session, tenant_id: str, version: int) -> ConfigVersion:
    row = session.get(ConfigVersion, (tenant_id, version))
    if row is None:
        raise UnknownVersion(f"tenant {tenant_id} has no configuration version {version}")
    return row


def unified_diff(before: str, after: str, before_name: str, after_name: str) -> str:
    lines = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                 fromfile=before_name, tofile=after_name)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)


def dry_run(session: Session, tenant_id: str, candidate: str) -> DryRun:
    """Check ``candidate`` as ``apply_config`` would for this tenant, and diff it."""
    tenant = session.get(Tenant, tenant_id)
    applied = tenant.config_yaml if tenant is not None else ""
    version = tenant.config_version if tenant is not None else None
    filename = f"{tenant_id}.yaml"
    errors: list[dict[str, Any]] = []
    try:
        check_config(candidate, filename, expect_tenant=tenant_id, session=session)
    except ConfigError as exc:
        errors = [issue.as_dict() for issue in exc.issues]
    before = f"{tenant_id} v{version} (applied)" if version else "(no configuration)"
    return DryRun(valid=not errors, errors=errors,
                  diff=unified_diff(applied, candidate, before, f"{filename} (candidate)"),
                  applied_version=version, changed=candidate != applied, tenant=tenant_id)


def rollback(session: Session, tenant_id: str, version: int, actor: str) -> ApplyResult:
    """Apply version ``version`` again (a new version). Its ${VARIABLES} are read
    from this process's environment where set, else taken as recorded then."""
    row = get_version(session, tenant_id, version)
    used = dict(row.config_env)
    current = public_environment()
    env = {name: current.get(name, value) for name, value in used.items()}
    return apply_config(session, row.config_yaml, f"{tenant_id} v{version}",
                        expect_tenant=tenant_id, actor=actor, env=env, restored_from=version)


def version_view(row: ConfigVersion, current: int | None = None) -> dict[str, Any]:
    return {
        "version": row.version,
        "actor": row.actor,
        "applied_at": as_utc_iso(row.applied_at),
        "sha256": row.sha256,
        "restored_from": row.restored_from,
        "current": row.version == current,
    }


__all__ = ["DryRun", "UnknownVersion", "config_hash", "dry_run", "get_version", "history",
           "rollback", "unified_diff", "version_view"]
