"""Applying tenant configurations: versions, connections, resolved variables."""

from __future__ import annotations

from conftest import FIXTURES
from sqlalchemy import select

from sync.store.db import session_scope
from sync.store.models import Connection, Tenant
from sync.tenants import apply_config, parsed_config


def test_variables_with_fallback_are_recorded_and_reused(env, monkeypatch):
    text = (FIXTURES / "acme.yaml").read_text().replace(
        "${RELAIS_TENANT_ACME_HOOK_URL}", "${RELAIS_TENANT_ACME_HOOK_URL:-http://fallback.test/h}")
    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", "http://real.test/hook")
    with session_scope() as session:
        apply_config(session, text, "acme.yaml", actor="test")
    monkeypatch.delenv("RELAIS_TENANT_ACME_HOOK_URL")  # a worker without the variable
    with session_scope(readonly=True) as session:
        tenant = session.get(Tenant, "acme")
        assert tenant.config_env == {"RELAIS_TENANT_ACME_HOOK_URL": "http://real.test/hook"}
        assert parsed_config(tenant).connections["hook"].url == "http://real.test/hook"
        row = session.scalar(select(Connection).where(Connection.name == "hook"))
        assert row.settings["url"] == "http://real.test/hook"


def test_reapply_versions_and_disables_removed_connections(env, monkeypatch):
    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", "http://real.test/hook")
    text = (FIXTURES / "acme.yaml").read_text()
    with session_scope() as session:
        first = apply_config(session, text, "acme.yaml", actor="test")
    extra = text.replace("rules:", "  spare:\n    provider: webhook\n    url: http://x.test/\n"
                         "rules:", 1)
    with session_scope() as session:
        second = apply_config(session, extra, "acme.yaml", actor="test")
    with session_scope() as session:
        third = apply_config(session, text, "acme.yaml", actor="test")
    assert (first.version, second.version, third.version) == (1, 2, 3)
    assert second.connections_added == ["spare"] and third.connections_disabled == ["spare"]
    assert set(first.new_secrets) == {"hook"} and set(second.new_secrets) == {"spare"}
    assert third.new_secrets == {}  # secrets are made once, never rotated silently
