"""Per-connection content permission (issue 15): a webhook or CRM connection of a
sensitive tenant receives the notice form by default (no subject, body, intake
answers or caller name: the built-in notice and a signed link), the full message
when it declares ``content: full``; a non-sensitive tenant's connections get the
content unless they declare ``content: notice``. ``rules explain`` says which."""

from __future__ import annotations

import pytest
from conftest import FIXTURES
from crm_helpers import accept, connection_id, drain
from typer.testing import CliRunner

from mappings.config import ConfigError, load_tenant_config
from relais.cli import app as cli
from sandbox.testing import hubspot_emulator, hubspot_server  # noqa: F401
from sync.connections import set_credentials
from sync.store.db import session_scope
from sync.tenants import apply_config

CALL = {"call_type": "message", "caller": {"name": "Jeanne Quatrefages",
                                           "phone": "+33612345678", "email": "j@q.fr"},
        "subject": "Résultats d'analyse", "body": "Souhaite parler de ses résultats.",
        "taken_by": "Sophie", "taken_at": "2026-11-27T10:15:00+01:00"}


def _acme(receiver, monkeypatch, *, sensitive: bool, content: str | None) -> str:
    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", receiver.url + "/hooks/acme/hook")
    text = (FIXTURES / "acme.yaml").read_text()
    if sensitive:
        text = text.replace("phone_region: FR\n", "phone_region: FR\nsensitive: true\n")
    if content:
        text = text.replace("    timeout_seconds: 2\n",
                            f"    timeout_seconds: 2\n    content: {content}\n")
    with session_scope() as session:
        result = apply_config(session, text, "acme.yaml", actor="test")
    if "hook" in result.new_secrets:  # a re-applied file keeps its secret
        receiver.secrets["/hooks/acme/hook"] = result.new_secrets["hook"]
    return connection_id("acme", "hook")


def _received(receiver, monkeypatch, sent: int = 1, **kw) -> dict:
    conn = _acme(receiver, monkeypatch, **kw)
    accept("acme", CALL)
    assert drain(conn, "acme") == {"delivered": sent}
    (only,) = receiver.first.values()
    return only.payload["message"]


def test_a_sensitive_tenants_webhook_gets_a_notice_by_default(env, receiver, monkeypatch):
    msg = _received(receiver, monkeypatch, sensitive=True, content=None)
    text = repr(msg)
    for secret in ("Résultats", "Souhaite", "Jeanne", "Quatrefages", "j@q.fr"):
        assert secret not in text
    assert msg["content"] == "notice" and "/v1/m/" in msg["link"]
    assert msg["link"] in msg["body"]
    assert msg["caller"] == {"phone": "+33612345678"}  # the key to file it under
    assert msg["intake"] == {}


def test_a_sensitive_tenants_webhook_declared_full_gets_the_content(env, receiver,
                                                                    monkeypatch):
    msg = _received(receiver, monkeypatch, sensitive=True, content="full")
    assert msg["body"] == CALL["body"] and msg["caller"]["name"] == "Jeanne Quatrefages"
    assert "content" not in msg


def test_a_plain_tenant_may_ask_for_notices(env, receiver, monkeypatch):
    assert _received(receiver, monkeypatch, sensitive=False, content=None)["body"] == (
        CALL["body"])
    receiver.first.clear()
    msg = _received(receiver, monkeypatch, sent=2, sensitive=False, content="notice")
    assert msg["content"] == "notice" and "Souhaite" not in repr(msg)


def test_rules_explain_shows_the_content_permission(env, receiver, monkeypatch):
    def explain() -> str:
        out = CliRunner().invoke(cli, ["rules", "explain", "--tenant", "acme",
                                       "--call-type", "message"])
        assert out.exit_code == 0, out.output
        return out.output

    _acme(receiver, monkeypatch, sensitive=True, content=None)
    assert "connection hook (webhook, notify) · content notice" in explain()
    _acme(receiver, monkeypatch, sensitive=True, content="full")
    assert "· content full (declared)" in explain()
    _acme(receiver, monkeypatch, sensitive=False, content=None)
    assert "· content" not in explain()


def _issues(text: str) -> list:
    with pytest.raises(ConfigError) as caught:
        load_tenant_config(text, "acme.yaml", env={"RELAIS_TENANT_ACME_HOOK_URL": "https://h.fr/x"})
    return caught.value.issues


@pytest.mark.parametrize("value", ["partial", "yes"])
def test_a_bad_content_value_names_the_line(value):
    text = (FIXTURES / "acme.yaml").read_text().replace(
        "    timeout_seconds: 2\n", f"    timeout_seconds: 2\n    content: {value}\n")
    line = text.splitlines().index(f"    content: {value}") + 1
    (issue,) = _issues(text)
    assert (issue.line, issue.path) == (line, "connections.hook.content")


def test_a_bad_privacy_key_names_the_line():
    text = (FIXTURES / "acme.yaml").read_text() + "privacy:\n  erase_in_crm: maybe\n"
    (issue,) = _issues(text)
    assert (issue.line, issue.path) == (len(text.splitlines()), "privacy.erase_in_crm")
    (unknown,) = _issues((FIXTURES / "acme.yaml").read_text() + "privacy:\n  erase: true\n")
    assert unknown.path == "privacy.erase"


def test_a_sensitive_tenants_crm_files_the_notice_under_the_callers_phone(
        env, hubspot_emulator, monkeypatch):
    monkeypatch.setenv("RELAIS_TENANT_CRMCO_HS_URL", hubspot_emulator.url)
    text = (FIXTURES / "crm.yaml").read_text().replace(
        "phone_region: FR\n", "phone_region: FR\nsensitive: true\n")
    with session_scope() as session:
        apply_config(session, text, "crm.yaml", actor="test")
        set_credentials(session, "crmco", "hubspot",
                        {"access_token": hubspot_emulator.private_app_token})
    conn = connection_id("crmco", "hubspot")
    accept("crmco", CALL)
    assert drain(conn, "crmco") == {"delivered": 1}
    (contact,) = hubspot_emulator.objects("contacts")
    assert contact["properties"]["phone"] == "+33612345678"
    everything = repr([hubspot_emulator.objects(k) for k in ("contacts", "calls", "tasks")])
    for secret in ("Résultats", "Souhaite", "Jeanne", "Quatrefages", "j@q.fr"):
        assert secret not in everything
    (logged,) = hubspot_emulator.objects("calls")
    assert "/v1/m/" in logged["properties"]["hs_call_body"]
