"""The operator's OAuth app per provider, on PostgreSQL against the Salesforce
sandbox over real sockets: registered once (secret encrypted), a tenant admin's
connection without its own client connects with it, the consent returns to the
console page it started from, refreshes use it, and disconnecting revokes the
token at the provider."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from conftest import FIXTURES, make_env
from crm_helpers import accept, call, connection_id, drain
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from relais.api import create_app
from relais.auth import create_key
from relais.cli import app as cli
from sandbox.testing import (  # noqa: F401
    hubspot_emulator,
    hubspot_server,
    salesforce_emulator,
    salesforce_server,
)
from sync.credentials import ensure_fresh
from sync.store.crypto import decrypt_json
from sync.store.db import session_scope
from sync.store.models import Connection, utcnow
from sync.tenants import apply_config

CONSOLE_PAGE = "/console/sfco/connections"


@pytest.fixture
def hub(pg_url, monkeypatch, tmp_path, salesforce_emulator):
    make_env(monkeypatch, tmp_path, pg_url, None)
    monkeypatch.setenv("RELAIS_TENANT_SFCO_SF_URL", salesforce_emulator.url)
    monkeypatch.setenv("RELAIS_TENANT_SFCO_SF_CA", str(salesforce_emulator.ca_file))
    # The tenant's own endpoint overrides point at a server of the tenant's (here:
    # nothing listening): with the operator's app they are never used, so the
    # operator's secret cannot be sent there.
    yaml = (FIXTURES / "crm_salesforce.yaml").read_text()
    for path in ("/services/oauth2/token", "/services/oauth2/authorize",
                 "/services/oauth2/revoke"):
        yaml = yaml.replace("${RELAIS_TENANT_SFCO_SF_URL}" + path, "http://127.0.0.1:9" + path)
    with session_scope() as session:
        apply_config(session, yaml, "sf.yaml", actor="test")
        keys = {"admin": create_key(session, "admin", "sfco", "it admin"),
                "operator": create_key(session, "operator", None, "ops")}
    client = TestClient(create_app(), raise_server_exceptions=True, follow_redirects=False)
    client.keys = keys
    client.emulator = salesforce_emulator
    return client


def h(hub, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {hub.keys[role]}"}


def sandbox_endpoints(emulator) -> dict[str, str]:
    return {"authorization_url": emulator.url + "/services/oauth2/authorize",
            "token_url": emulator.url + "/services/oauth2/token",
            "revocation_url": emulator.url + "/services/oauth2/revoke",
            "ca_file": str(emulator.ca_file)}


def register(hub, role: str = "operator", **body):
    body = body or {"client_id": hub.emulator.client_id,
                    "client_secret": hub.emulator.client_secret,
                    "settings": sandbox_endpoints(hub.emulator)}
    return hub.put("/v1/operator/provider-apps/salesforce", json=body, headers=h(hub, role))


def consent(hub, return_to: str | None = CONSOLE_PAGE) -> dict[str, list[str]]:
    """The admin presses Connect; the provider's consent page answers (auto-consent)."""
    started = hub.post("/v1/tenants/sfco/connections/salesforce/authorize",
                       json={"return_to": return_to} if return_to else {}, headers=h(hub, "admin"))
    assert started.status_code == 200, started.text
    url = started.json()["authorize_url"]
    assert parse_qs(urlparse(url).query)["client_id"] == [hub.emulator.client_id]
    answer = httpx.get(url, verify=str(hub.emulator.ca_file), follow_redirects=False)
    assert answer.status_code in (302, 303), answer.text
    return parse_qs(urlparse(answer.headers["location"]).query)


def test_operator_app_connects_a_tenant_and_comes_back_to_the_console(hub):
    # Without an app anywhere, the admin is told who can fix it.
    refused = hub.post("/v1/tenants/sfco/connections/salesforce/authorize",
                       headers=h(hub, "admin"))
    assert refused.status_code == 422
    assert "relais providers register-app salesforce" in refused.json()["error"]["message"]
    assert register(hub).json() == {"provider": "salesforce", "created": True,
                                     "client_id": hub.emulator.client_id}
    back = consent(hub)
    done = hub.get("/oauth/callback", params={"state": back["state"][0],
                                              "code": back["code"][0]})
    assert done.status_code == 303
    assert done.headers["location"] == f"{CONSOLE_PAGE}?outcome=connected&connection=salesforce"
    with session_scope(readonly=True) as session:
        row = session.get(Connection, connection_id("sfco", "salesforce"))
        creds = decrypt_json(row.credentials)
        assert row.status == "active" and creds["refresh_token"]
        assert "client_secret" not in creds  # the operator's secret stays in its own row
    accept("sfco", call(1))
    assert drain(connection_id("sfco", "salesforce"), "sfco") == {"delivered": 1}
    # The refresh goes through the operator's app too.
    with session_scope() as session:
        row = session.get(Connection, connection_id("sfco", "salesforce"))
        row.token_expires_at = utcnow() - timedelta(minutes=1)
    ensure_fresh(connection_id("sfco", "salesforce"))
    with session_scope(readonly=True) as session:
        row = session.get(Connection, connection_id("sfco", "salesforce"))
        assert row.status == "active" and row.token_expires_at > utcnow()


def test_callback_without_return_to_stays_json_and_errors_come_back_readable(hub):
    register(hub)
    back = consent(hub, return_to=None)
    done = hub.get("/oauth/callback", params={"state": back["state"][0],
                                              "code": back["code"][0]})
    assert done.status_code == 200 and done.json()["status"] == "active"
    # The provider refused (the admin pressed "Deny"): back to the console with the reason.
    back = consent(hub)
    denied = hub.get("/oauth/callback", params={"state": back["state"][0],
                                                "error": "access_denied",
                                                "error_description": "end-user denied"})
    assert denied.status_code == 303
    query = parse_qs(urlparse(denied.headers["location"]).query)
    assert urlparse(denied.headers["location"]).path == CONSOLE_PAGE
    assert query["outcome"] == ["error"] and query["code"] == ["authorization_refused"]
    assert "end-user denied" in query["reason"][0]
    # A bad code: the exchange fails, still a readable way back.
    back = consent(hub)
    bad = hub.get("/oauth/callback", params={"state": back["state"][0], "code": "forged"})
    assert bad.status_code == 303 and "outcome=error" in bad.headers["location"]


@pytest.mark.parametrize("return_to", ["https://evil.example/x", "//evil.example/x",
                                       "console/x", "/\\evil.example", "javascript:alert(1)"])
def test_return_to_must_be_a_relative_path(hub, return_to):
    register(hub)
    refused = hub.post("/v1/tenants/sfco/connections/salesforce/authorize",
                       json={"return_to": return_to}, headers=h(hub, "admin"))
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["details"][0]["field"] == "return_to"


def test_app_secret_is_encrypted_never_shown_and_operator_only(hub):
    assert register(hub, role="admin").status_code == 403
    assert register(hub, client_id="x").status_code == 422
    bad = register(hub, client_id="x", client_secret="y", settings={"api_base_url": "h"})
    assert bad.status_code == 422 and "settings" in bad.json()["error"]["details"][0]["field"]
    assert hub.put("/v1/operator/provider-apps/webhook", json={
        "client_id": "a", "client_secret": "b"}, headers=h(hub, "operator")).status_code == 404
    register(hub)
    listed = hub.get("/v1/operator/provider-apps", headers=h(hub, "operator"))
    assert listed.status_code == 200
    assert hub.emulator.client_secret not in listed.text
    assert listed.json()["apps"][0]["client_id"] == hub.emulator.client_id
    with session_scope(readonly=True) as session:
        raw = session.execute(text("SELECT secret FROM provider_apps")).scalar_one()
    assert hub.emulator.client_secret.encode() not in bytes(raw)
    assert hub.delete("/v1/operator/provider-apps/salesforce",
                      headers=h(hub, "operator")).json()["removed"] is True
    assert hub.delete("/v1/operator/provider-apps/salesforce",
                      headers=h(hub, "operator")).status_code == 404


def test_disconnect_revokes_the_token_at_the_provider(hub):
    register(hub)
    back = consent(hub, return_to=None)
    hub.get("/oauth/callback", params={"state": back["state"][0], "code": back["code"][0]})
    with session_scope(readonly=True) as session:
        refresh_token = decrypt_json(session.scalar(select(Connection.credentials).where(
            Connection.tenant_id == "sfco")))["refresh_token"]
    assert hub.emulator.refresh_tokens[refresh_token].revoked is False
    done = hub.post("/v1/tenants/sfco/connections/salesforce/disconnect", headers=h(hub, "admin"))
    assert done.status_code == 200, done.text
    assert done.json() == {"connection": "salesforce", "status": "not_connected",
                           "revoked": True, "note": "salesforce revoked the token"}
    assert hub.emulator.refresh_tokens[refresh_token].revoked is True
    with session_scope(readonly=True) as session:
        row = session.get(Connection, connection_id("sfco", "salesforce"))
        assert row.credentials is None and row.token_expires_at is None
    again = hub.post("/v1/tenants/sfco/connections/salesforce/disconnect", headers=h(hub, "admin"))
    assert again.json()["revoked"] is False and again.json()["note"] == "no token was stored"
    # The same from the command line, after connecting again.
    back = consent(hub, return_to=None)
    hub.get("/oauth/callback", params={"state": back["state"][0], "code": back["code"][0]})
    runner = CliRunner()
    done = runner.invoke(cli, ["connections", "disconnect", "sfco", "salesforce"])
    assert done.exit_code == 0, done.output
    assert "sfco/salesforce: disconnected (salesforce revoked the token)" in done.output
    assert runner.invoke(cli, ["connections", "disconnect", "sfco", "crm"]).exit_code == 2


def test_cli_registers_lists_and_removes_apps(hub):
    runner = CliRunner()
    urls = sandbox_endpoints(hub.emulator)
    done = runner.invoke(cli, ["providers", "register-app", "salesforce", "--client-id",
                               hub.emulator.client_id, "--token-url", urls["token_url"],
                               "--authorization-url", urls["authorization_url"],
                               "--ca-file", urls["ca_file"]],
                         env={"RELAIS_PROVIDER_CLIENT_SECRET": hub.emulator.client_secret})
    assert done.exit_code == 0, done.output
    assert hub.emulator.client_secret not in done.output
    listed = runner.invoke(cli, ["providers", "apps", "--json"])
    assert listed.exit_code == 0 and hub.emulator.client_id in listed.output
    assert hub.emulator.client_secret not in listed.output
    back = consent(hub, return_to=None)  # the app registered by the CLI connects
    done = hub.get("/oauth/callback", params={"state": back["state"][0],
                                              "code": back["code"][0]})
    assert done.status_code == 200, done.text
    assert runner.invoke(cli, ["providers", "register-app", "fax", "--client-id", "a",
                               "--client-secret", "b"]).exit_code == 2
    assert runner.invoke(cli, ["providers", "remove-app", "salesforce"]).exit_code == 0
    assert runner.invoke(cli, ["providers", "remove-app", "salesforce"]).exit_code == 2


def test_hubspot_disconnect_deletes_the_refresh_token(pg_url, monkeypatch, tmp_path,
                                                      hubspot_emulator):
    """HubSpot revokes with DELETE …/refresh-tokens/{token} (the catalogue's
    ``revocation: delete``), through the operator's app."""
    make_env(monkeypatch, tmp_path, pg_url, None)
    monkeypatch.setenv("RELAIS_TENANT_CRMCO_HS_URL", hubspot_emulator.url)
    with session_scope() as session:
        apply_config(session, (FIXTURES / "crm.yaml").read_text(), "crm.yaml", actor="test")
        admin = create_key(session, "admin", "crmco", "it admin")
        operator = create_key(session, "operator", None, "ops")
    client = TestClient(create_app(), follow_redirects=False)
    assert client.put("/v1/operator/provider-apps/hubspot", json={
        "client_id": hubspot_emulator.client_id, "client_secret": hubspot_emulator.client_secret,
        "settings": {"authorization_url": hubspot_emulator.url + "/oauth/authorize",
                     "token_url": hubspot_emulator.url + "/oauth/v1/token",
                     "revocation_url": hubspot_emulator.url + "/oauth/v1/refresh-tokens/{token}"},
    }, headers={"Authorization": f"Bearer {operator}"}).status_code == 200
    started = client.post("/v1/tenants/crmco/connections/hubspot/authorize",
                          json={"return_to": "/console/crmco/connections"},
                          headers={"Authorization": f"Bearer {admin}"}).json()
    consent = httpx.get(started["authorize_url"], follow_redirects=False)
    back = parse_qs(urlparse(consent.headers["location"]).query)
    done = client.get("/oauth/callback", params={"state": back["state"][0],
                                                 "code": back["code"][0]})
    assert done.headers["location"].endswith("outcome=connected&connection=hubspot")
    with session_scope(readonly=True) as session:
        refresh_token = decrypt_json(session.scalar(select(Connection.credentials).where(
            Connection.tenant_id == "crmco", Connection.name == "hubspot")))["refresh_token"]
    assert hubspot_emulator.refresh_tokens[refresh_token] is False
    gone = client.post("/v1/tenants/crmco/connections/hubspot/disconnect",
                       headers={"Authorization": f"Bearer {admin}"})
    assert gone.json()["revoked"] is True, gone.text
    assert hubspot_emulator.refresh_tokens[refresh_token] is True  # revoked at HubSpot


def test_microsoft_offers_no_revocation_endpoint():
    from connectors.catalog import provider
    from connectors.oauth import revoke_token

    assert revoke_token(provider("outlook"), {}, "any-token") is False  # nothing sent
