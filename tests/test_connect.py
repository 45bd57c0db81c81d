"""Connecting accounts from the command line and the API."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from conftest import FIXTURES
from crm_helpers import accept, call, connection_id, drain
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from relais.api import create_app
from relais.auth import create_key
from relais.cli import app
from sandbox.testing import salesforce_emulator, salesforce_server  # noqa: F401
from sync.store.db import session_scope
from sync.store.models import Connection
from sync.tenants import apply_config

runner = CliRunner()


def test_salesforce_client_credentials_from_the_cli(env, salesforce_emulator, monkeypatch):
    monkeypatch.setenv("RELAIS_TENANT_SFCO_SF_URL", salesforce_emulator.url)
    monkeypatch.setenv("RELAIS_TENANT_SFCO_SF_CA", str(salesforce_emulator.ca_file))
    with session_scope() as session:
        apply_config(session, (FIXTURES / "crm_salesforce.yaml").read_text(), "sf.yaml",
                     actor="test")
    bad = runner.invoke(app, ["connect", "sfco", "salesforce", "--client-id", "nope",
                              "--client-secret", "nope", "--client-credentials"])
    assert bad.exit_code == 2 and "invalid_client" in bad.output
    ok = runner.invoke(app, ["connect", "sfco", "salesforce",
                             "--client-id", salesforce_emulator.client_id,
                             "--client-secret", salesforce_emulator.client_secret,
                             "--client-credentials"])
    assert ok.exit_code == 0, ok.output
    assert "token stored; connection active" in ok.output
    with session_scope(readonly=True) as session:
        row = session.get(Connection, connection_id("sfco", "salesforce"))
        assert row.status == "active" and row.token_expires_at is not None
    accept("sfco", call(1))
    assert drain(connection_id("sfco", "salesforce"), "sfco") == {"delivered": 1}
    assert len(salesforce_emulator.records("Task")) == 1


def test_authorize_by_provider_name_uses_pkce(env, salesforce_emulator, monkeypatch):
    monkeypatch.setenv("RELAIS_TENANT_SFCO_SF_URL", salesforce_emulator.url)
    monkeypatch.setenv("RELAIS_TENANT_SFCO_SF_CA", str(salesforce_emulator.ca_file))
    with session_scope() as session:
        apply_config(session, (FIXTURES / "crm_salesforce.yaml").read_text(), "sf.yaml",
                     actor="test")
        key = create_key(session, "admin", "sfco", "admin")
    runner.invoke(app, ["connect", "sfco", "salesforce",
                        "--client-id", salesforce_emulator.client_id,
                        "--client-secret", salesforce_emulator.client_secret])
    client = TestClient(create_app())
    h = {"Authorization": f"Bearer {key}"}
    started = client.post("/v1/tenants/sfco/connections/salesforce/authorize", headers=h)
    assert started.status_code == 200, started.text
    query = parse_qs(urlparse(started.json()["authorize_url"]).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    missing = client.post("/v1/tenants/sfco/connections/hubspot/authorize", headers=h)
    assert missing.status_code == 404 and "no connection 'hubspot'" in missing.json()[
        "error"]["message"]
    code = salesforce_emulator.issue_auth_code(redirect_uri=query["redirect_uri"][0])
    done = client.get("/oauth/callback", params={"state": query["state"][0], "code": code})
    assert done.status_code == 200, done.text
    listed = client.get("/v1/tenants/sfco/connections", headers=h).json()["connections"]
    assert [(c["name"], c["status"]) for c in listed] == [("salesforce", "active")]
