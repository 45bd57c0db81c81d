"""``relais sandbox`` (``python -m sandbox``) as a newcomer uses it: every emulator
runs in one process, and what it prints is enough to connect Relais to each one.
The printed ``settings:``, ``relais connect`` lines and env lines are used as
printed, and each provider answers real calls through them."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from conftest import ROOT
from typer.testing import CliRunner

from connectors.base import ConnectionInfo, DeliveryRequest, Runtime
from connectors.registry import build_connector
from relais.cli import app
from sync.senders import sender_config
from sync.settings import reset_settings

TENANT = "bac-a-sable"
CONNECTIONS = {"salesforce": "crm-sf", "hubspot": "crm-hs", "google": "agenda-g",
               "graph": "agenda-ms"}
GOOGLE_CAL, GRAPH_MAILBOX = "dr.martin@cabinet-martin.fr", "me.durand@avocats-durand.fr"
pytestmark = pytest.mark.processes  # the sandbox runs in its own process, on the real clock


@pytest.fixture(scope="module")
def sandbox() -> Iterator[dict[str, Any]]:
    """``python -m sandbox --json --seed`` as a real process; its printed description."""
    proc = subprocess.Popen([sys.executable, "-m", "sandbox", "--json", "--seed"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] != "}\n":
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "sandbox exited"
            lines.append(line)
        yield json.loads("".join(lines))
    finally:
        proc.terminate()
        proc.wait(15)


def tenant_yaml(info: dict[str, Any]) -> str:
    connections: dict[str, Any] = {
        CONNECTIONS[name]: {"provider": info[name]["provider"], "settings": info[name]["settings"]}
        for name in CONNECTIONS
    }
    config = {
        "id": TENANT, "name": "Bac à sable", "timezone": "Europe/Paris", "phone_region": "FR",
        "staff": [
            {"id": "martin", "name": "Dr Martin",
             "calendar": {"connection": "agenda-g", "id": GOOGLE_CAL}},
            {"id": "durand", "name": "Me Durand",
             "calendar": {"connection": "agenda-ms", "id": GRAPH_MAILBOX}},
        ],
        "call_types": [{"id": "message", "label": "Message"}],
        "connections": connections,
        "rules": {"default": {"then": [{"connection": "crm-hs"}]}},
    }  # fmt: skip
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def connect_args(info: dict[str, Any], name: str) -> list[str]:
    """The printed ``relais connect`` line, for this test's tenant and connection."""
    line = info[name].get("connect_with_token") or info[name]["connect"]
    words = shlex.split(line)
    assert words[:2] == ["relais", "connect"] and words[2] == "TENANT"
    assert words[3] == info[name]["connection"]
    return ["connect", TENANT, CONNECTIONS[name], *words[4:]]


def test_printed_settings_connect_every_crm_and_calendar(env, sandbox, tmp_path):
    assert "api_endpoint" not in sandbox["google"]["settings"]
    assert sandbox["google"]["settings"]["api_base_url"] == sandbox["google"]["url"]
    path = tmp_path / "bac-a-sable.yaml"
    path.write_text(tenant_yaml(sandbox))
    runner = CliRunner()
    applied = runner.invoke(app, ["tenants", "apply", str(path)])
    assert applied.exit_code == 0, applied.output
    for name in CONNECTIONS:
        connected = runner.invoke(app, connect_args(sandbox, name))
        assert connected.exit_code == 0, (name, connected.output)
    ran = runner.invoke(app, ["sync", "run", "--tenant", TENANT])
    assert ran.exit_code == 0, ran.output
    results = {line.split()[1]: line.split()[2 + ("(" in line)]
               for line in ran.output.splitlines() if line.startswith(TENANT)}
    assert results == {"crm-sf": "ok", "crm-hs": "ok", "agenda-g": "ok", "agenda-ms": "ok"}, (
        ran.output)
    status = json.loads(runner.invoke(app, ["sync", "status", "--json"]).output)
    contacts = {r["connection"]: r["contacts"] for r in status if r["kind"] == "crm"}
    assert contacts == {"crm-sf": 1, "crm-hs": 1}  # the --seed contacts, read through them
    calendars = {r["connection"]: [c["calendar"] for c in r["calendars"] if c["has_cursor"]]
                 for r in status if r["kind"] == "calendar"}
    assert calendars == {"agenda-g": [GOOGLE_CAL], "agenda-ms": [GRAPH_MAILBOX]}


def test_printed_env_lines_send_email_and_sms(env, sandbox, monkeypatch):
    for name, value in {**sandbox["smtp"]["env"], **sandbox["sms"]["env"]}.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    for channel, payload in (
        ("email", {"email": {"to": ["dr.martin@cabinet-martin.fr"], "subject": "Appel",
                             "text": "Rappeler Mme Petit."}}),
        ("sms", {"sms": {"to": "+33612345678", "text": "Rappeler Mme Petit."}}),
    ):
        settings, credentials = sender_config(channel)
        info = ConnectionInfo(id=f"con-{channel}", tenant_id=TENANT, name=f"relais-{channel}",
                              provider=channel, settings=settings, credentials=credentials)
        connector = build_connector(info)
        try:
            [result] = connector.deliver([DeliveryRequest(
                f"dlv-{channel}", f"relais-dlv-{channel}", "message.created", payload)])
        finally:
            connector.close()
        assert result.ok, (channel, result.error)
        assert result.external_id


def test_webhook_receiver_checks_the_secret_it_is_given(sandbox):
    hook = sandbox["webhook"]
    url = hook["connection_url"].replace("TENANT", TENANT)
    info = ConnectionInfo(id="con-hook", tenant_id=TENANT, name="hook", provider="webhook",
                          settings={"url": url}, credentials={"signing_secret": "whsec_test"})
    request = DeliveryRequest("dlv-h", "relais-dlv-h", "message.created",
                              {"message": {"subject": "Appel"}})

    def send() -> Any:
        connector = build_connector(info, Runtime(internal_urls=True))  # a local sandbox
        try:
            return connector.deliver([request])[0]
        finally:
            connector.close()

    assert not send().ok  # no secret known for that endpoint yet: 404
    secrets_url = hook["secrets"].replace("TENANT", TENANT)
    assert httpx.put(secrets_url, content="whsec_test").status_code == 204
    assert send().ok


def test_relais_sandbox_text_names_every_emulator():
    proc = subprocess.Popen([sys.executable, "-m", "relais", "sandbox", "--only", "messaging"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env={**os.environ})
    try:
        assert proc.stdout is not None
        text = ""
        while "Ctrl-C" not in text:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            text += line
    finally:
        proc.terminate()
        proc.wait(15)
    for needle in ("smtp:", "export RELAIS_EMAIL_HOST=", "export RELAIS_EMAIL_PASSWORD=",
                   "sms:", "export RELAIS_SMS_API_TOKEN=", "export RELAIS_SMS_WEBHOOK_SECRET=",
                   "webhook receiver:", "provider: webhook"):
        assert needle in text, needle
