"""The command line as a newcomer and a script meet it: full-width plain tables when
piped, ``--json`` on every list, connections and keys listed, an unknown tenant
named, a token refused where it means nothing, no broker warning, a help for users."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import FIXTURES, ROOT
from typer.testing import CliRunner

from relais.cli import app
from sandbox.testing import (  # noqa: F401  (fixtures)
    google_emulator,
    google_server,
    hubspot_emulator,
    hubspot_server,
)
from sync.store.db import session_scope
from sync.tenants import apply_config

runner = CliRunner()
LONG_NAME = "Cabinet d'avocats [/associés] Durand, Lefèvre, Moreau-Saint-Hilaire & Partenaires"


def run(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def acme(env, monkeypatch):
    """tests/fixtures/acme.yaml with a long name (a webhook connection ``hook``)."""
    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", "http://127.0.0.1:9/hook")
    text = (FIXTURES / "acme.yaml").read_text()
    old_name = next(line for line in text.splitlines() if line.startswith("name:"))
    with session_scope() as session:
        apply_config(session, text.replace(old_name, f"name: {LONG_NAME}"), "acme.yaml",
                     actor="test")
    return env


def test_piped_tables_are_plain_and_full_width(acme):
    listed = run("tenants", "list")
    assert listed.exit_code == 0, listed.output
    assert "…" not in listed.output and "┃" not in listed.output and "│" not in listed.output
    header, row = listed.output.splitlines()
    assert header.split() == ["tenant", "name", "time", "zone", "version", "updated"]
    assert row.startswith("acme") and LONG_NAME in row and len(row) > 80


def test_every_list_has_json(acme):
    made = run("keys", "create", "--tenant", "acme", "--role", "admin", "--name", "it")
    assert made.exit_code == 0
    tenants = json.loads(run("tenants", "list", "--json").output)
    assert [(t["tenant"], t["name"], t["version"]) for t in tenants] == [("acme", LONG_NAME, 1)]
    keys = json.loads(run("keys", "list", "--json").output)
    assert [(k["tenant"], k["role"], k["name"], k["revoked_at"]) for k in keys] == [
        ("acme", "admin", "it", None)]
    assert "secret" not in json.dumps(keys)
    connections = json.loads(run("connections", "list", "--tenant", "acme", "--json").output)
    assert [(c["connection"], c["provider"], c["status"], c["dead"]) for c in connections] == [
        ("hook", "webhook", "active", 0)]
    assert json.loads(run("deliveries", "list", "--json").output) == []
    status = run("sync", "status", "--json", "--tenant", "acme")
    assert status.exit_code == 0 and json.loads(status.output) == []


def test_keys_list_and_revoke(acme):
    key = run("keys", "create", "--tenant", "acme", "--role", "secretary", "--name", "sophie")
    key_id = key.output.strip().split("_")[1]
    listed = run("keys", "list", "--tenant", "acme")
    assert listed.exit_code == 0 and key_id in listed.output and "sophie" in listed.output
    assert run("keys", "revoke", key_id).exit_code == 0
    assert key_id not in run("keys", "list").output
    revoked = json.loads(run("keys", "list", "--all", "--json").output)
    assert [k["id"] for k in revoked if k["revoked_at"]] == [key_id]


def test_connections_list_table(acme):
    listed = run("connections", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split()[:5] == ["tenant", "connection", "provider", "role", "status"]
    assert lines[1].split()[:5] == ["acme", "hook", "webhook", "notify", "active"]


@pytest.mark.parametrize("args", [
    ("connections", "list", "--tenant", "nobody"),
    ("keys", "list", "--tenant", "nobody"),
    ("deliveries", "list", "--tenant", "nobody"),
    ("sync", "status", "--tenant", "nobody"),
    ("sync", "run", "--tenant", "nobody"),
    ("connect", "nobody", "hook", "--token", "abc"),
    ("keys", "create", "--tenant", "nobody", "--role", "admin"),
    ("rules", "explain", "--tenant", "nobody", "--call-type", "x"),
])  # fmt: skip
def test_an_unknown_tenant_is_named(acme, args):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "no tenant 'nobody'" in result.output, result.output
    assert "Traceback" not in result.output


def test_a_token_is_refused_for_a_webhook_connection(acme):
    result = run("connect", "acme", "hook", "--token", "secret-token")
    assert result.exit_code == 2, result.output
    assert "'hook' is a webhook connection: it takes no token" in result.output
    assert "headers:" in result.output and "secret-token" not in result.output
    creds = run("connect", "acme", "hook", "--client-credentials")
    assert creds.exit_code == 2 and "takes no token" in creds.output


def test_no_broker_hostname_warning(env, monkeypatch):
    """``connect --token`` enqueues on the embedded broker: no kombu warning on stderr."""
    monkeypatch.setenv("RELAIS_TENANT_CRMCO_HS_URL", "http://127.0.0.1:9")
    with session_scope() as session:
        apply_config(session, (FIXTURES / "crm.yaml").read_text(), "crm.yaml", actor="test")
    done = subprocess.run(
        [sys.executable, "-m", "relais", "connect", "crmco", "hubspot", "--token", "pat-x"],
        cwd=ROOT, env={**os.environ, **env.vars}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "token stored" in done.stdout
    assert done.stderr == "", done.stderr
    assert any((env.home / "broker" / "in").iterdir())  # the task was enqueued


def test_top_level_help_is_for_users():
    result = run("--help")
    assert result.exit_code == 0
    text = result.output
    for line in ("relais demo", "relais tenants apply", "relais connect",
                 "relais deliveries replay", "--json"):
        assert line in text, line
    assert "typer" not in text and "``" not in text
    for command in ("connections", "keys", "sync", "sandbox", "deliveries", "rules"):
        assert command in text


def test_sync_run_fails_when_a_calendar_pull_fails_beside_a_good_crm_pull(
        env, google_emulator, hubspot_emulator, monkeypatch):
    """A CRM pull that succeeds must not hide a calendar pull that failed."""
    from booking_helpers import setup_tenant

    from sync.connections import set_credentials

    setup_tenant(google_emulator, monkeypatch)  # booking.yaml: zoe's calendar does not exist
    monkeypatch.setenv("RELAIS_TENANT_CRMCO_HS_URL", hubspot_emulator.url)
    with session_scope() as session:
        apply_config(session, (FIXTURES / "crm.yaml").read_text(), "crm.yaml", actor="test")
    with session_scope() as session:
        set_credentials(session, "crmco", "hubspot",
                        {"access_token": hubspot_emulator.private_app_token})
    ran = run("sync", "run")
    assert ran.exit_code == 1, ran.output
    assert "missing@cabinet.test" in ran.output  # the failed calendar, named in full
    crm_line = next(line for line in ran.output.splitlines() if line.startswith("crmco"))
    assert crm_line.split()[:3] == ["crmco", "hubspot", "ok"]


def test_terminal_tables_wrap_instead_of_cutting(acme, monkeypatch):
    from relais.cli import out

    monkeypatch.setattr(out, "_force_terminal", True)
    monkeypatch.setattr(out, "width", 60)
    listed = run("tenants", "list")
    assert listed.exit_code == 0, listed.output
    assert "…" not in listed.output and "Moreau-Saint-Hilaire" in "".join(listed.output.split())
