"""Tenant configuration history on PostgreSQL: every applied YAML kept (who,
when, text, hash); a dry run that shows errors at their line and column and the
diff; rollback through the same apply path, recorded as a new version; the
same from the CLI."""

from __future__ import annotations

import pytest
from conftest import FIXTURES, make_env
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_api import acme_as
from typer.testing import CliRunner

from relais.api import create_app
from relais.auth import create_key
from relais.cli import app as cli
from sync.store.db import session_scope
from sync.store.models import AuditEvent, Connection, Tenant
from sync.tenants import apply_config

V1 = (FIXTURES / "acme.yaml").read_text()
# v2: a second staff member; the webhook gets a longer timeout.
V2 = V1.replace("    email: alice@acme.example\n", "    email: alice@acme.example\n"
                "  - id: bob\n    name: Bob Durand\n").replace("timeout_seconds: 2",
                                                          "timeout_seconds: 5")


@pytest.fixture
def api(pg_url, monkeypatch, tmp_path, receiver):
    make_env(monkeypatch, tmp_path, pg_url, None)
    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", receiver.url + "/hooks/acme/hook")
    with session_scope() as session:
        apply_config(session, V1, "acme.yaml", actor="cli")
        keys = {"admin": create_key(session, "admin", "acme", "admin"),
                "secretary": create_key(session, "secretary", "acme", "desk")}
        apply_config(session, acme_as("beta", monkeypatch), "beta.yaml", actor="cli")
        keys["beta"] = create_key(session, "admin", "beta", "beta")
    client = TestClient(create_app(), raise_server_exceptions=True)
    client.keys = keys
    return client


def h(api, role: str = "admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {api.keys[role]}"}


def put(api, text: str, role: str = "admin"):
    return api.put("/v1/tenants/acme/config", content=text.encode(),
                   headers={**h(api, role), "Content-Type": "application/yaml"})


def versions(api, role: str = "admin") -> dict:
    response = api.get("/v1/tenants/acme/config/versions", headers=h(api, role))
    assert response.status_code == 200, response.text
    return response.json()


def test_every_applied_version_is_kept_with_who_when_and_hash(api):
    admin_key_id = api.keys["admin"].split("_")[1]
    assert put(api, V2).json()["version"] == 2
    assert put(api, V2).json()["version"] == 2  # the same text again: no new version
    found = versions(api)
    assert found["current"] == 2
    assert [(v["version"], v["actor"], v["current"]) for v in found["versions"]] == [
        (2, f"key {admin_key_id} (admin)", True), (1, "cli", False)]
    import hashlib

    assert found["versions"][0]["sha256"] == hashlib.sha256(V2.encode()).hexdigest()
    assert found["versions"][0]["applied_at"].endswith("Z")
    one = api.get("/v1/tenants/acme/config/versions/1", headers=h(api)).json()
    assert one["yaml"] == V1 and one["restored_from"] is None
    assert "+  - id: bob\n" in one["diff_to_current"]


def test_dry_run_shows_errors_at_line_and_column_and_the_diff(api, monkeypatch):
    broken = V2.replace("timezone: Europe/Paris", "timezone: Europe/Lutece")
    response = api.post("/v1/tenants/acme/config/validate", content=broken.encode(),
                        headers={**h(api), "Content-Type": "application/yaml"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["valid"] is False and body["changed"] is True and body["applied_version"] == 1
    [error] = body["errors"]
    assert (error["line"], error["column"], error["path"]) == (4, 11, "timezone")
    assert body["diff"].startswith("--- acme v1 (applied)\n+++ acme.yaml (candidate)\n")
    assert "-timezone: Europe/Paris\n+timezone: Europe/Lutece\n" in body["diff"]
    assert "+  - id: bob\n" in body["diff"]
    good = api.post("/v1/tenants/acme/config/validate", content=V2.encode(),
                    headers={**h(api), "Content-Type": "application/yaml"}).json()
    assert good["valid"] is True and good["errors"] == []
    assert versions(api)["current"] == 1  # nothing was applied
    other = api.post("/v1/tenants/acme/config/validate",
                     content=acme_as("beta", monkeypatch).encode(),
                     headers={**h(api), "Content-Type": "application/yaml"}).json()
    assert [e["path"] for e in other["errors"]] == ["id"]  # another tenant's file


def test_rollback_reapplies_through_apply_and_is_a_new_version(api):
    put(api, V2.replace("  hook:\n", "  hook2:\n").replace("connection: hook", "connection: hook2"))
    with session_scope() as session:
        states = dict(session.execute(select(Connection.name, Connection.status).where(
            Connection.tenant_id == "acme", Connection.provider == "webhook")).all())
    assert states == {"hook": "disabled", "hook2": "active"}
    response = api.post("/v1/tenants/acme/config/rollback", json={"version": 1}, headers=h(api))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["version"], body["restored_from"]) == (3, 1)
    assert body["connections_disabled"] == ["hook2"]  # the apply path ran: connections follow
    with session_scope() as session:
        tenant = session.get(Tenant, "acme")
        assert tenant.config_yaml == V1 and tenant.config_version == 3
        hook = session.scalar(select(Connection).where(Connection.tenant_id == "acme",
                                                       Connection.name == "hook"))
        assert hook.status == "active"
        audit = session.scalars(select(AuditEvent.detail).where(
            AuditEvent.kind == "config.applied", AuditEvent.tenant_id == "acme")
            .order_by(AuditEvent.id)).all()
    assert audit[-1]["restored_from"] == 1 and audit[-1]["version"] == 3
    listed = versions(api)["versions"]
    assert [(v["version"], v["restored_from"]) for v in listed] == [(3, 1), (2, None), (1, None)]


def test_rollback_and_history_refusals(api):
    missing = api.post("/v1/tenants/acme/config/rollback", json={"version": 7}, headers=h(api))
    assert missing.status_code == 404
    assert missing.json()["error"]["details"][0]["field"] == "version"
    bad = api.post("/v1/tenants/acme/config/rollback", json={"version": "one"}, headers=h(api))
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "version"
    # Another tenant's admin, and the desk's key, learn nothing / may not.
    for path in ("config/versions", "config/versions/1"):
        assert api.get(f"/v1/tenants/acme/{path}", headers=h(api, "beta")).status_code == 404
        assert api.get(f"/v1/tenants/acme/{path}", headers=h(api, "secretary")).status_code == 403
    assert api.post("/v1/tenants/acme/config/rollback", json={"version": 1},
                    headers=h(api, "beta")).status_code == 404
    assert api.post("/v1/tenants/acme/config/validate", content=V1.encode(),
                    headers=h(api, "beta")).status_code == 404
    assert api.get("/v1/tenants/acme/config/versions/9", headers=h(api)).status_code == 404


def test_cli_history_and_rollback(api):
    put(api, V2)
    runner = CliRunner()
    shown = runner.invoke(cli, ["tenants", "history", "acme", "--json"])
    assert shown.exit_code == 0, shown.output
    import json

    rows = json.loads(shown.output)
    assert [(r["version"], r["current"]) for r in rows] == [(2, True), (1, False)]
    done = runner.invoke(cli, ["tenants", "rollback", "acme", "1"])
    assert done.exit_code == 0, done.output
    assert "version 1 applied again as version 3" in done.output
    table = runner.invoke(cli, ["tenants", "history", "acme"])
    assert table.exit_code == 0 and "cli" in table.output
    missing = runner.invoke(cli, ["tenants", "rollback", "acme", "9"])
    assert missing.exit_code == 2 and "no configuration version 9" in missing.output
    nobody = runner.invoke(cli, ["tenants", "history", "zeta"])
    assert nobody.exit_code == 2


def test_cli_diff_is_a_dry_run(api, tmp_path):
    candidate = tmp_path / "acme.yaml"
    candidate.write_text(V2)
    runner = CliRunner()
    shown = runner.invoke(cli, ["tenants", "diff", "acme", str(candidate)])
    assert shown.exit_code == 0, shown.output
    assert "+  - id: bob\n" in shown.output and "-    timeout_seconds: 2\n" in shown.output
    candidate.write_text(V2.replace("timezone: Europe/Paris", "timezone: Mars/Olympus"))
    broken = runner.invoke(cli, ["tenants", "diff", "acme", str(candidate)])
    assert broken.exit_code == 2
    assert f"{candidate}:4:11: timezone:" in broken.output
    assert versions(api)["current"] == 1  # nothing stored
