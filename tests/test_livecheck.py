"""`relais tenants validate --live`: the CRM says which mapped fields are wrong."""

from __future__ import annotations

from conftest import FIXTURES
from typer.testing import CliRunner

from relais.cli import app
from sandbox.testing import (  # noqa: F401
    hubspot_emulator,
    hubspot_server,
    salesforce_emulator,
    salesforce_server,
)
from sync.connections import set_credentials
from sync.store.db import session_scope
from sync.tenants import apply_config

runner = CliRunner()


def with_mapping(fixture: str, connection: str, mapping: str) -> str:
    text = (FIXTURES / fixture).read_text()
    anchor = f"  {connection}:\n    provider:"
    head, tail = text.split("rules:", 1)
    assert anchor in head
    return head.rstrip("\n") + "\n" + mapping + "rules:" + tail


def test_hubspot_live_check_names_bad_fields(env, hubspot_emulator, monkeypatch, tmp_path):
    monkeypatch.setenv("RELAIS_TENANT_CRMCO_HS_URL", hubspot_emulator.url)
    text = with_mapping("crm.yaml", "hubspot", (
        "    mapping:\n"
        "      contact:\n"
        "        fields:\n"
        "          couleur_preferee: {value: bleu}\n"
        "          createdate: {value: '2026-01-01'}\n"))
    path = tmp_path / "crm.yaml"
    path.write_text(text)
    not_yet = runner.invoke(app, ["tenants", "validate", "--live", str(path)])
    assert not_yet.exit_code == 2 and "not connected yet" in not_yet.output
    with session_scope() as session:
        apply_config(session, text, str(path), actor="test")
        set_credentials(session, "crmco", "hubspot",
                        {"access_token": hubspot_emulator.private_app_token})
    result = runner.invoke(app, ["tenants", "validate", "--live", str(path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if "connections.hubspot" in line]
    assert lines == [
        f"{path}: connections.hubspot.mapping: contacts has no field 'couleur_preferee'",
        f"{path}: connections.hubspot.mapping: contacts.createdate is read-only",
    ]
    good = runner.invoke(app, ["tenants", "validate", "--live", str(FIXTURES / "crm.yaml")])
    assert good.exit_code == 0 and "fields checked with the CRM" in good.output


def test_salesforce_live_check(env, salesforce_emulator, monkeypatch, tmp_path):
    monkeypatch.setenv("RELAIS_TENANT_SFCO_SF_URL", salesforce_emulator.url)
    monkeypatch.setenv("RELAIS_TENANT_SFCO_SF_CA", str(salesforce_emulator.ca_file))
    text = with_mapping("crm_salesforce.yaml", "salesforce", (
        "    mapping:\n"
        "      call_log:\n"
        "        fields:\n"
        "          Humeur__c: {value: calme}\n"
        "          CreatedDate: {from: message.taken_at, transform: datetime_utc}\n"))
    path = tmp_path / "sf.yaml"
    path.write_text(text)
    with session_scope() as session:
        apply_config(session, text, str(path), actor="test")
        set_credentials(session, "sfco", "salesforce", {
            "access_token": salesforce_emulator.session_id,
            "instance_url": salesforce_emulator.url})
    result = runner.invoke(app, ["tenants", "validate", "--live", str(path)])
    assert result.exit_code == 2, result.output
    lines = [line.split(": ", 1)[1] for line in result.output.splitlines()
             if "connections.salesforce" in line]
    assert lines == [
        "connections.salesforce.mapping: Task has no field 'Humeur__c'",
        "connections.salesforce.mapping: Task.CreatedDate is read-only",
    ]
