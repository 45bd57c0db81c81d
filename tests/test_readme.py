"""The README tells the truth: every connection setting the code reads is
documented under its provider (and nothing else is), its request examples use
the API's real field names and are accepted, and nothing is announced as
"(soon)" that exists."""

from __future__ import annotations

import json
import re

import pytest
from conftest import ROOT
from fastapi.testclient import TestClient

from relais.api import create_app
from relais.api.admin import ExplainRequest
from relais.api.appointments import BookingBody, ChangeBody
from relais.api.calls import CallEventsBody
from relais.auth import create_key
from sync.domain import Caller, CallMessage
from sync.store.db import session_scope
from sync.tenants import apply_config

README = (ROOT / "README.md").read_text()
OAUTH = ["connectors/oauth.py", "connectors/catalog.py"]
DIRECTORY = ["sync/contacts.py", "sync/pull_runner.py", "sync/pull_lock.py"]
CALENDAR_SYNC = ["sync/calendar_sync.py", "sync/busy.py", "sync/pull_runner.py",
                 "sync/pull_lock.py"]
# README table title -> the files that read those settings
TABLES = {
    "Webhook": ["connectors/webhook.py"],
    "Every OAuth provider": OAUTH,
    "Contact directory": DIRECTORY,
    "Salesforce": ["connectors/salesforce/client.py", "connectors/salesforce/reader.py"],
    "HubSpot": ["connectors/hubspot/client.py", "connectors/hubspot/reader.py",
                "relais/api/notifications.py", "sync/contacts.py"],
    "Calendar sync": CALENDAR_SYNC,
    "Google Calendar": ["connectors/google_calendar/client.py"],
    "Outlook / Microsoft 365": ["connectors/outlook/client.py"],
    "Email": ["connectors/email.py"],
    "SMS": ["connectors/sms.py"],
}
READS = [
    # settings.get("x") / settings["x"] / (row.settings or {}).get("x")
    re.compile(r"settings(?: or \{\}\))?(?:\.get\(|\[)[\"'](\w+)[\"']"),
    # settings.get(connection_id, {}).get("x")
    re.compile(r"settings\.get\(\w+, \{\}\)\.get\([\"'](\w+)[\"']"),
    # spec.url("token_url", settings): the catalogue's URLs, overridable
    re.compile(r"\.url\([\"'](\w+)[\"'], settings"),
]


def keys_read(files: list[str]) -> set[str]:
    keys: set[str] = set()
    for name in files:
        text = (ROOT / name).read_text()
        for pattern in READS:
            keys.update(pattern.findall(text))
    return keys


def documented() -> dict[str, set[str]]:
    section = README[README.index("## Connection settings"):README.index("## Command line")]
    tables: dict[str, set[str]] = {}
    for title, body in re.findall(r"^\*\*(.+?)\*\*.*?\n\n((?:\|.*\n)+)", section, re.M):
        rows = [line.split("|")[1] for line in body.splitlines()[2:]]
        tables[title] = {k for row in rows for k in re.findall(r"`(\w+)`", row)}
    return tables


def test_every_setting_the_code_reads_is_documented_under_its_provider():
    tables = documented()
    assert set(tables) == set(TABLES)
    for title, files in TABLES.items():
        unread = tables[title] - keys_read(files)
        assert not unread, f"README documents {sorted(unread)} under {title}: never read there"
    every = keys_read([f for files in TABLES.values() for f in files])
    missing = every - set().union(*tables.values())
    assert not missing, f"settings read by the code but not in the README: {sorted(missing)}"


def examples() -> dict[str, dict]:
    found = re.findall(r"`(POST|PATCH) (/v1/[^`]+)`[^\n]*:\n\n```json\n(.*?)```", README, re.S)
    return {f"{verb} {path}": json.loads(body) for verb, path, body in found}


def assert_fields_exist(model, data: dict) -> None:
    unknown = set(data) - set(model.model_fields)
    assert not unknown, f"{model.__name__} has no field {sorted(unknown)}"


def test_request_examples_use_the_api_field_names():
    found = examples()
    assert set(found) == {
        "POST /v1/tenants/{t}/messages", "POST /v1/tenants/{t}/appointments",
        "PATCH /v1/tenants/{t}/appointments/{id}", "POST /v1/tenants/{t}/rules/explain",
        "POST /v1/tenants/{t}/calls"}
    for route, model in (("POST /v1/tenants/{t}/messages", CallMessage),
                         ("POST /v1/tenants/{t}/calls", CallEventsBody),
                         ("POST /v1/tenants/{t}/appointments", BookingBody),
                         ("PATCH /v1/tenants/{t}/appointments/{id}", ChangeBody),
                         ("POST /v1/tenants/{t}/rules/explain", ExplainRequest)):
        body = found[route]
        assert_fields_exist(model, body)
        if "caller" in body:
            assert_fields_exist(Caller, body["caller"])
        model.model_validate(body, context={"region": "FR"})


@pytest.fixture
def readme_tenant(env, monkeypatch, receiver):
    text = README[README.index("```yaml\n") + len("```yaml\n"):]
    monkeypatch.setenv("RELAIS_TENANT_PLOMBERIE_MARTIN_CRM_URL", receiver.url + "/crm")
    with session_scope() as session:
        apply_config(session, text[:text.index("```")], "README.md", actor="test")
        return create_key(session, "secretary", "plomberie-martin", "readme")


def test_request_examples_are_accepted_by_the_readme_tenant(readme_tenant):
    client = TestClient(create_app())
    auth = {"Authorization": f"Bearer {readme_tenant}"}
    found = examples()
    posted = client.post("/v1/tenants/plomberie-martin/messages", headers=auth,
                         json=found["POST /v1/tenants/{t}/messages"])
    assert posted.status_code == 202, posted.text
    explained = client.post("/v1/tenants/plomberie-martin/rules/explain", headers=auth,
                            json=found["POST /v1/tenants/{t}/rules/explain"])
    assert explained.status_code == 200, explained.text
    calls = client.post("/v1/tenants/plomberie-martin/calls", headers=auth,
                        json=found["POST /v1/tenants/{t}/calls"])
    assert calls.status_code == 200 and calls.json()["created"] == 3, calls.text


def test_nothing_is_announced_as_soon():
    assert "(soon)" not in README


def test_the_route_table_is_the_api():
    """Every route (verbs, path, query parameter names) in the README's table is
    served, and every route served is in the table."""
    spec = TestClient(create_app()).get("/openapi.json").json()
    served: dict[tuple[str, str], set[str]] = {}
    for path, verbs in spec["paths"].items():
        for verb, op in verbs.items():
            query = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
            served[(verb.upper(), re.sub(r"\{\w+\}", "{}", path))] = query
    table = README[README.index("| route | role |"):README.index("### Request bodies")]
    documented: set[tuple[str, str]] = set()
    for verbs, path, query in re.findall(r"`([A-Z\\|]+) (/[^`?]*)\??([^`]*)`",
                                         table.replace("\\|", "|")):
        for verb in verbs.split("|"):
            route = (verb, re.sub(r"\{\w+\}", "{}", path))
            assert route in served, f"README names {verb} {path}: not served"
            named = {q.split("=")[0] for q in query.split("&") if q}
            assert named <= served[route], f"{verb} {path} has no query {named - served[route]}"
            documented.add(route)
    assert set(served) - documented == set()
