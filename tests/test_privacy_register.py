"""The record of processing (article 30) is generated from the tenant's YAML."""

from __future__ import annotations

import json

from channels_helpers import VET
from conftest import FIXTURES
from typer.testing import CliRunner

from mappings import load_tenant_config
from relais.cli import app as cli_app
from sync.privacy.register import as_text, record
from sync.store.db import session_scope
from sync.tenants import apply_config


def test_the_record_follows_the_configuration():
    config = load_tenant_config(VET + "retention: {bodies: 30d}\nlink_second_factor: sms\n",
                                "vet.yaml")
    doc = record(config)
    assert doc["controller"] == "Clinique Test" and doc["tenant"] == "vet"
    assert doc["special_categories"]["call_types"] == ["dossier", "dossier-urgent"]
    assert any("astreinte" in p for p in doc["purposes"])
    assert doc["retention"]["message content (subject, body, answers)"] == "30 days"
    assert doc["persons"] == ["callers", "staff members (3)"]
    assert any("one-time code" in m for m in doc["security"])
    text = as_text(doc)
    assert "Special categories: calls of these types may reveal health" in text
    plain = record(load_tenant_config((FIXTURES / "acme.yaml").read_text(), "acme.yaml",
                                      env={"RELAIS_TENANT_ACME_HOOK_URL":
                                           "https://hooks.example.org/acme"}))
    assert plain["special_categories"] == {"possible": False, "call_types": [],
                                           "note": "none declared"}
    assert plain["recipients"] == [{"connection": "hook", "role": "notify",
                                    "recipient": "the client's own system (signed webhook)",
                                    "host": "hooks.example.org", "content": "full"}]
    notice = record(load_tenant_config(
        (FIXTURES / "acme.yaml").read_text().replace("phone_region: FR\n",
                                                     "phone_region: FR\nsensitive: true\n")
        + "privacy: {erase_in_crm: true}\n", "acme.yaml",
        env={"RELAIS_TENANT_ACME_HOOK_URL": "https://hooks.example.org/acme"}))
    assert notice["recipients"][0]["content"] == "notice"
    assert any("erasure is also sent to the CRM" in m for m in notice["security"])
    assert "hook: the client's own system (signed webhook) (notify), hooks.example.org, " \
        "content notice" in as_text(notice)
    assert {"call_type": "urgence", "question": "Adresse de l'intervention",
            "field": "adresse"} in plain["intake"]


def test_relais_privacy_register(env, monkeypatch):
    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", "https://hooks.example.org/acme")
    with session_scope() as session:
        apply_config(session, (FIXTURES / "acme.yaml").read_text(), "acme.yaml", actor="t")
    result = CliRunner().invoke(cli_app, ["privacy", "register", "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    assert "Record of processing — ACME Dépannage" in result.output
    assert "hook: the client's own system (signed webhook)" in result.output
    result = CliRunner().invoke(cli_app, ["privacy", "register", "--tenant", "acme", "--json"])
    assert json.loads(result.output)["retention"]["access log"] == "365 days"
    assert CliRunner().invoke(cli_app, ["privacy", "register", "--tenant", "x"]).exit_code == 2
