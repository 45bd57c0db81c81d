"""Tenant configuration in the store: apply a YAML file, read it back parsed."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from mappings.config import TenantConfig, load_tenant_config, load_tenant_file
from mappings.errors import ConfigError, ConfigIssue
from mappings.yamlpos import load_yaml, public_environment
from sync.connections import OAUTH_PROVIDERS
from sync.netguard import hosts_in, internal_reason
from sync.settings import get_settings
from sync.store.calls_models import TenantNumber
from sync.store.config_versions import config_hash, record_version
from sync.store.crypto import decrypt_json, encrypt_json
from sync.store.models import AuditEvent, Connection, Tenant

# Connections Relais creates itself for a tenant (sync.senders.SENDER_NAMES).
SYSTEM_CONNECTIONS = frozenset({"relais-email", "relais-sms"})


class UnknownTenant(LookupError):
    def __init__(self, tenant_id: str) -> None:
        super().__init__(f"no tenant {tenant_id!r}")
        self.tenant_id = tenant_id


@dataclass
class ApplyResult:
    tenant_id: str
    created: bool
    version: int
    connections_added: list[str] = field(default_factory=list)
    connections_disabled: list[str] = field(default_factory=list)
    # New webhook signing secrets, shown once to whoever applied the config.
    new_secrets: dict[str, str] = field(default_factory=dict, repr=False)


@lru_cache(maxsize=256)
def _parse(text: str, filename: str, env: tuple[tuple[str, str], ...]) -> TenantConfig:
    return load_tenant_config(text, filename, env=dict(env))


def parsed_config(tenant: Tenant) -> TenantConfig:
    """The tenant's stored YAML, parsed once per version (it was valid when applied)."""
    env = tuple(sorted(tenant.config_env.items()))
    return _parse(tenant.config_yaml, f"tenant {tenant.id} v{tenant.config_version}", env)


def missing_senders() -> dict[str, list[str]]:
    """For ``load_tenant_config``: channels of Relais's own sender this deployment lacks."""
    return {k: v for k, v in get_settings().missing_sender_settings().items() if v}


def load_checked_file(path: str | Path) -> TenantConfig:
    """``tenants validate``: the file as ``apply`` would check it (senders included)."""
    return load_tenant_file(path, missing_senders=missing_senders())


def internal_targets(config: TenantConfig, text: str, filename: str,
                     env: dict[str, str]) -> list[ConfigIssue]:
    """Connection URLs and hosts that point inside the operator's network (SSRF)."""
    document = load_yaml(text, filename, env)
    issues = []
    for name, spec in config.connections.items():
        base: tuple[str | int, ...] = ("connections", name)
        settings = spec.connector_settings()
        if spec.provider != "webhook":
            base += ("settings",)
        for path, host in hosts_in(settings):
            reason = internal_reason(host)
            if reason:
                issues.append(document.issue(
                    (*base, *path), f"connection {name!r} points inside the network: {reason}",
                    "use the provider's public address; an operator may allow internal ones "
                    "with RELAIS_ALLOW_PRIVATE_URLS=1", "internal_url"))
    return issues


def _used_variables(text: str) -> dict[str, str]:
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}", text))
    return {k: v for k, v in public_environment().items() if k in names}


def number_clashes(session: Session, config: TenantConfig, text: str, filename: str,
                   env: dict[str, str]) -> list[ConfigIssue]:
    """Forwarding numbers another tenant already declares: a dialled number must open
    the secretary's desk on exactly one tenant."""
    if not config.forwarding_numbers:
        return []
    owners = dict(session.execute(  # tenant_numbers: kept by apply_config, indexed
        select(TenantNumber.number, TenantNumber.tenant_id).where(
            TenantNumber.number.in_(config.forwarding_numbers),
            TenantNumber.tenant_id != config.id)).tuples().all())
    clashing = [(i, n) for i, n in enumerate(config.forwarding_numbers) if n in owners]
    if not clashing:
        return []
    document = load_yaml(text, filename, env)
    return [document.issue(("forwarding_numbers", index),
                           f"forwarding number {number} already rings for tenant "
                           f"{owners[number]!r}",
                           "a number opens the desk on one tenant: remove it here or there",
                           "duplicate_number")
            for index, number in clashing]


def check_config(
    text: str, filename: str, *, expect_tenant: str | None = None,
    env: dict[str, str] | None = None, session: Session | None = None,
) -> tuple[TenantConfig, dict[str, str]]:
    """The checks ``apply_config`` makes, writing nothing: the parsed config and
    the ${VARIABLES} it used (``env``, else read from the environment). Raises
    ``ConfigError`` with file, line and column. With a ``session``, also the
    forwarding numbers another tenant declares."""
    env = _used_variables(text) if env is None else env
    config = load_tenant_config(text, filename, env=env, missing_senders=missing_senders())
    if not get_settings().allow_private_urls:
        internal = internal_targets(config, text, filename, env)
        if internal:
            raise ConfigError(internal)
    clashes = number_clashes(session, config, text, filename, env)
    if clashes:
        raise ConfigError(clashes)
    if expect_tenant is not None and config.id != expect_tenant:
        issue = ConfigIssue(
            filename,
            1,
            1,
            "id",
            f"the file describes tenant {config.id!r}, not {expect_tenant!r}",
            f"write id: {expect_tenant}, or PUT it to /v1/tenants/{config.id}/config",
        )
        raise ConfigError([issue])
    return config, env


def apply_config(
    session: Session, text: str, filename: str, *, expect_tenant: str | None = None, actor: str,
    env: dict[str, str] | None = None, restored_from: int | None = None,
) -> ApplyResult:
    """Validate and store a tenant's YAML; create, update or disable its connections.

    ``expect_tenant`` guards the HTTP route: the file must describe the tenant of
    the URL. Raises ``mappings.config.ConfigError`` with file and line. Each new
    version is kept in ``tenant_config_versions`` (``restored_from``: a rollback).
    """
    config, env = check_config(text, filename, expect_tenant=expect_tenant, env=env,
                               session=session)
    tenant = session.get(Tenant, config.id, with_for_update=True)
    created = tenant is None
    tenant_version_before = tenant.config_version if tenant is not None else 0
    if tenant is None:
        tenant = Tenant(id=config.id, name=config.name, timezone=config.timezone, config_yaml=text)
        session.add(tenant)
        version = 1
    else:
        unchanged = tenant.config_yaml == text and tenant.config_env == env
        version = tenant.config_version if unchanged else tenant.config_version + 1
        tenant.name, tenant.timezone, tenant.config_yaml = config.name, config.timezone, text
        tenant.config_version = version
    tenant.config_env = env
    result = ApplyResult(tenant_id=config.id, created=created, version=version)
    session.flush()
    if created or version != tenant_version_before:
        record_version(session, tenant, actor, restored_from)

    existing = {
        c.name: c
        for c in session.scalars(select(Connection).where(Connection.tenant_id == config.id))
    }
    for name, spec in config.connections.items():
        row = existing.pop(name, None)
        if row is None:
            # An account reached with OAuth waits for its admin to connect it.
            status = "not_connected" if spec.provider in OAUTH_PROVIDERS else "active"
            row = Connection(tenant_id=config.id, name=name, provider=spec.provider, status=status)
            session.add(row)
            result.connections_added.append(name)
        row.provider, row.role = spec.provider, spec.role
        row.settings = spec.connector_settings()
        if row.status == "disabled":
            row.status = (
                "active" if row.credentials or spec.provider == "webhook" else ("not_connected")
            )
        creds = decrypt_json(row.credentials)
        if spec.provider == "webhook" and "signing_secret" not in creds:
            creds["signing_secret"] = "whsec_" + secrets.token_urlsafe(32)
            row.credentials = encrypt_json(creds)
            result.new_secrets[name] = creds["signing_secret"]
    _keep_numbers(session, config.id, config.forwarding_numbers)
    for name, row in existing.items():
        if name in SYSTEM_CONNECTIONS:
            continue  # Relais's own senders (sync.senders): not in the tenant's file
        if row.status != "disabled":
            row.status = "disabled"
            result.connections_disabled.append(name)
    session.add(
        AuditEvent(
            tenant_id=config.id,
            kind="config.applied",
            subject_type="tenant",
            subject_id=config.id,
            detail={
                "actor": actor,
                "version": version,
                **({"restored_from": restored_from} if restored_from is not None else {}),
                "sha256": config_hash(text),
                "added": result.connections_added,
                "disabled": result.connections_disabled,
            },
        )
    )
    return result


def _keep_numbers(session: Session, tenant_id: str, numbers: list[str]) -> None:
    """``tenant_numbers`` holds exactly the tenant's ``forwarding_numbers``."""
    stored = set(session.scalars(
        select(TenantNumber.number).where(TenantNumber.tenant_id == tenant_id)))
    for number in stored - set(numbers):
        session.delete(session.get(TenantNumber, number))
    for number in sorted(set(numbers) - stored):
        session.add(TenantNumber(number=number, tenant_id=tenant_id))


def tenant_for_number(session: Session, number: str) -> str | None:
    """The tenant a dialled number (E.164) forwards to, if any."""
    return session.scalar(select(TenantNumber.tenant_id).where(TenantNumber.number == number))


NUMBER_ENDING = 6  # digits a dialled number keeps at its end however it is written


def numbers_ending_like(session: Session, called: str) -> list[tuple[str, str]]:
    """(number, tenant id) of the forwarding numbers that ``called`` may be, however it
    was written (``+33 4 72…``, ``04 72…``, ``0033…``): those ending with its last
    digits, by number. One query on ``tenant_numbers`` (a few rows per tenant: the
    scan of their endings stays small), whatever the number of tenants; the caller
    confirms a candidate in the tenant's own region (``phone_region``), so a national
    number is never read in another country's plan."""
    digits = "".join(c for c in called if c.isdigit())
    if len(digits) < NUMBER_ENDING:
        return []
    return [(n, t) for n, t in session.execute(
        select(TenantNumber.number, TenantNumber.tenant_id)
        .where(TenantNumber.number.like(f"%{digits[-NUMBER_ENDING:]}"))
        .order_by(TenantNumber.number))]


def get_tenant(session: Session, tenant_id: str) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise UnknownTenant(tenant_id)
    return tenant


def connection_secret(session: Session, tenant_id: str, name: str) -> str | None:
    row = session.scalar(
        select(Connection).where(Connection.tenant_id == tenant_id, Connection.name == name)
    )
    return decrypt_json(row.credentials).get("signing_secret") if row else None
