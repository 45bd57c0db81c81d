"""``relais tenants validate --live``: ask each connected CRM whether the fields
a tenant's mapping writes exist and are writable (Salesforce describe, HubSpot
properties), before any message needs them."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select

from connectors.base import DeliveryError, Runtime
from connectors.registry import build_connector
from mappings.config import TenantConfig
from mappings.schema import CrmConnection
from sync.credentials import NeedsReauth, connection_info, ensure_fresh
from sync.crm_mapping import crm_mapping
from sync.store.db import session_scope
from sync.store.models import Connection


def live_problems(config: TenantConfig) -> list[str]:
    """One line per problem, naming the connection, the object and the field."""
    lines: list[str] = []
    for name, spec in sorted(config.connections.items()):
        if not isinstance(spec, CrmConnection):
            continue
        where = f"connections.{name}"
        with session_scope(readonly=True) as session:
            row = session.scalar(
                select(Connection).where(Connection.tenant_id == config.id, Connection.name == name)
            )
            if row is None or row.status not in ("active", "needs_reauth"):
                lines.append(
                    f"{where}: not connected yet — apply the file and connect the "
                    f"account (relais connect {config.id} {name} …), then check again"
                )
                continue
            connection_id = row.id
        try:
            ensure_fresh(connection_id)
        except NeedsReauth as exc:
            lines.append(f"{where}: the account must be connected again ({exc})")
            continue
        with session_scope(readonly=True) as session:
            stored = session.get(Connection, connection_id)
            assert stored is not None
            info = replace(connection_info(stored),
                           mapping=crm_mapping(stored.provider, spec.resolved_mapping()))
        connector = build_connector(info, Runtime())
        try:
            problems = connector.check_fields(info.mapping.fields_by_object())  # type: ignore[attr-defined]
        except DeliveryError as exc:
            lines.append(f"{where}: could not ask the CRM: {exc}")
            continue
        finally:
            connector.close()
        lines += [f"{where}.mapping: {p.problem}" for p in problems]
    return lines
