"""The command line: bad input exits 2 with one readable line per problem."""

from __future__ import annotations

import re

from conftest import FIXTURES, ROOT
from typer.testing import CliRunner

from relais.cli import app
from sync.settings import reset_settings

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_validate_reports_file_and_line(tmp_path, monkeypatch):
    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", "http://127.0.0.1:9/hook")
    bad = tmp_path / "t.yaml"
    bad.write_text((FIXTURES / "acme.yaml").read_text().replace("timezone: Europe/Paris",
                                                               "timezone: Europe/Pariss"))
    result = run("tenants", "validate", str(bad))
    assert result.exit_code == 2
    line = result.output.strip().splitlines()[0]
    assert re.match(rf"{re.escape(str(bad))}:4:11: timezone: .*Europe/Paris", line), line
    assert "Traceback" not in result.output


def test_validate_missing_file(tmp_path):
    result = run("tenants", "validate", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2 and "nope.yaml" in result.output


def test_validate_examples_ok(monkeypatch):
    monkeypatch.setenv("RELAIS_DEMO_WEBHOOK_BASE", "http://127.0.0.1:9/hooks")
    # The medical example sends through Relais's own senders: a deployment with them.
    for name, value in {"RELAIS_EMAIL_HOST": "smtp.example", "RELAIS_EMAIL_FROM_ADDRESS":
                        "relais@example.fr", "RELAIS_SMS_SERVICE_PLAN_ID": "plan",
                        "RELAIS_SMS_API_TOKEN": "token"}.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    result = run("tenants", "validate", *map(str, sorted((ROOT / "examples").glob("*.yaml"))))
    monkeypatch.undo()
    reset_settings()  # no cached senders for the tests that follow
    assert result.exit_code == 0, result.output
    assert result.output.count(": ok") == 3


def test_readme_example_is_valid(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    start = text.index("```yaml\n") + len("```yaml\n")
    (tmp_path / "readme.yaml").write_text(text[start:text.index("```", start)])
    monkeypatch.setenv("RELAIS_TENANT_PLOMBERIE_MARTIN_CRM_URL", "https://crm.example.fr/hook")
    result = run("tenants", "validate", str(tmp_path / "readme.yaml"))
    assert result.exit_code == 0, result.output


def test_apply_keys_and_deliveries(env, monkeypatch):
    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", "http://127.0.0.1:9/hook")
    applied = run("tenants", "apply", str(FIXTURES / "acme.yaml"))
    assert applied.exit_code == 0, applied.output
    assert "tenant acme created (version 1)" in applied.output
    assert re.search(r"webhook hook: signing secret whsec_\S+ \(shown once\)", applied.output)
    again = run("tenants", "apply", str(FIXTURES / "acme.yaml"))
    assert "tenant acme updated (version 1)" in again.output  # unchanged text: same version

    key = run("keys", "create", "--tenant", "acme", "--role", "secretary")
    assert key.exit_code == 0 and re.fullmatch(r"rls_[0-9a-f]{12}_\S{43}\n", key.output)
    assert run("keys", "create", "--tenant", "nobody", "--role", "admin").exit_code == 2
    bad_role = run("keys", "create", "--tenant", "acme", "--role", "boss")
    assert bad_role.exit_code == 2 and "role must be one of" in bad_role.output
    assert run("keys", "create", "--role", "operator").exit_code == 0

    listed = run("deliveries", "list", "--status", "dead")
    assert listed.exit_code == 0 and "0 deliveries" in listed.output
    wrong = run("deliveries", "list", "--status", "lost")
    assert wrong.exit_code == 2 and "--status 'lost'" in wrong.output
    missing = run("deliveries", "replay", "dlv_nope")
    assert missing.exit_code == 2 and "no delivery 'dlv_nope'" in missing.output
