"""The admin pages without a browser: who reaches them, the rules tester, the
configuration's checks, the deliveries' filters (the browser scenarios are in
``test_console_admin_browser.py``)."""

from __future__ import annotations

import pytest
from conftest import FIXTURES
from fastapi.testclient import TestClient

from relais.api import create_app
from relais.console.users import create_user
from sync.store.db import session_scope
from sync.store.models import Tenant
from sync.tenants import apply_config

PASSWORD = "motdepasse-de-test"
T = "admin-a"


@pytest.fixture
def tenant(env, monkeypatch):
    for key in ("HS", "GOOGLE", "HOOK"):
        monkeypatch.setenv(f"RELAIS_TENANT_ADMIN_A_{key}_URL", "http://127.0.0.1:9/x")
    with session_scope() as session:
        apply_config(session, (FIXTURES / "console_admin.yaml").read_text(), "a.yaml",
                     actor="test")
        create_user(session, "it@a.test", "IT", "tenant_admin", PASSWORD, tenant_id=T)
        create_user(session, "s@a.test", "Sophie", "secretary", PASSWORD, tenants=[T])
        create_user(session, "ops@a.test", "Ops", "operator", PASSWORD)


def client_of(email: str) -> tuple[TestClient, str]:
    client = TestClient(create_app(), base_url="https://testserver")
    token = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    home = client.post("/login", data={"email": email, "password": PASSWORD,
                                       "csrf_token": token}, follow_redirects=True)
    return client, home.text.split('"X-CSRF-Token": "')[1].split('"')[0]


def test_only_the_tenant_admin_and_the_operator_reach_the_admin_pages(tenant):
    pages = ("connections", "config", "deliveries", "rules", "keys")
    secretary, _ = client_of("s@a.test")
    for page in pages:
        assert secretary.get(f"/t/{T}/{page}").status_code == 404, page
    assert secretary.get("/tenants").status_code == 404
    admin, _ = client_of("it@a.test")
    for page in pages:
        assert admin.get(f"/t/{T}/{page}").status_code == 200, page
        assert admin.get(f"/t/elsewhere/{page}").status_code == 404, page
    assert admin.get("/tenants").status_code == 404
    ops, _ = client_of("ops@a.test")
    assert ops.get(f"/t/{T}/config").status_code == 200
    assert f'id="tenant-{T}" data-healthy="no"' in ops.get("/tenants").text


def test_rules_tester_explains_and_names_a_wrong_call_type(tenant):
    admin, _ = client_of("it@a.test")
    page = admin.get(f"/t/{T}/rules", params={"call_type": "message", "at": "2026-12-02T10:00"})
    assert page.status_code == 200
    assert "tout-au-webhook" in page.text and "hook" in page.text.split('id="explain"')[1]
    wrong = admin.get(f"/t/{T}/rules", params={"call_type": "fax"})
    assert wrong.status_code == 422 and 'id="rules-error"' in wrong.text
    bad_time = admin.get(f"/t/{T}/rules", params={"call_type": "message", "at": "tomorrow"})
    assert bad_time.status_code == 422


def test_rules_tester_speaks_the_users_language(tenant):
    """The outcome, the deliveries and each condition in French (English on request);
    the engine's own English text only under the technical detail."""
    text = (FIXTURES / "console_admin.yaml").read_text().replace(
        "  mode: first\n", "  mode: first\n  rules:\n    - name: urgences-morel\n"
        "      when: {urgency: [urgent], staff: [morel]}\n"
        "      then:\n        - connection: hubspot\n", 1)
    with session_scope() as session:
        apply_config(session, text, "a.yaml", actor="test")
    admin, _ = client_of("it@a.test")
    urgent = admin.get(f"/t/{T}/rules", params={"call_type": "message", "urgency": "urgent",
                                                "staff": "morel", "at": "2026-12-02T10:00"})
    shown = urgent.text.split('id="explain"')[1].split("</div>")[0]
    assert "1 transmission(s), par urgences-morel" in shown and "hubspot (hubspot)" in shown
    trace = urgent.text.split('id="trace"')[1].split("</table>")[0]
    assert "✓</span> urgence : [urgent]" in trace and "✓</span> demandé pour : [morel]" in trace
    assert "non évaluée : une règle s&#39;applique déjà" in trace  # the default, mode first
    assert "delivery(ies)" not in shown and "delivery(ies)" in urgent.text  # English: detail
    normal = admin.get(f"/t/{T}/rules", params={"call_type": "message", "urgency": "normal"})
    trace = normal.text.split('id="trace"')[1].split("</table>")[0]
    assert "✗</span> urgence : [urgent]" in trace
    assert "par la règle par défaut" in normal.text.split('id="explain"')[1]
    admin.get("/lang/en")
    english = admin.get(f"/t/{T}/rules", params={"call_type": "message", "urgency": "normal"})
    assert "by the default rule" in english.text and "✗</span> urgency : [urgent]" in english.text

def test_config_checks_crlf_text_and_refuses_without_csrf(tenant):
    admin, csrf = client_of("it@a.test")
    with session_scope(readonly=True) as session:
        text = session.get(Tenant, T).config_yaml
    crlf = text.replace("name: Cabinet Admin", "name: Cabinet B").replace("\n", "\r\n")
    checked = admin.post(f"/t/{T}/config/validate", data={"yaml": crlf, "csrf_token": csrf})
    assert checked.status_code == 200 and 'id="config-valid"' in checked.text
    assert "+name: Cabinet B" in checked.text and "\r" not in checked.text.split("config-diff")[1]
    refused = admin.post(f"/t/{T}/config/apply", data={"yaml": crlf})
    assert refused.status_code == 403
    wrong_tenant = text.replace(f"id: {T}", "id: other")
    bad = admin.post(f"/t/{T}/config/apply", data={"yaml": wrong_tenant, "csrf_token": csrf})
    assert bad.status_code == 422 and 'class="config-error"' in bad.text
    applied = admin.post(f"/t/{T}/config/apply", data={"yaml": crlf, "csrf_token": csrf})
    assert applied.status_code == 200
    with session_scope(readonly=True) as session:
        row = session.get(Tenant, T)
        assert row.name == "Cabinet B" and "\r" not in row.config_yaml
    unknown = admin.post(f"/t/{T}/config/rollback", data={"version": "9", "csrf_token": csrf})
    assert unknown.status_code == 404


def test_deliveries_filters_and_an_empty_replay(tenant):
    admin, csrf = client_of("it@a.test")
    assert admin.get(f"/t/{T}/deliveries", params={"start": "2026-13-01"}).status_code == 422
    assert admin.get(f"/t/{T}/deliveries", params={"status": "lost"}).status_code == 422
    ok = admin.get(f"/t/{T}/deliveries",
                   params={"status": "dead", "connection": "hook", "start": "2026-12-01",
                           "end": "2026-12-02"})
    assert ok.status_code == 200
    empty = admin.post(f"/t/{T}/deliveries/replay", data={"csrf_token": csrf})
    assert empty.status_code == 422
    assert admin.post(f"/t/{T}/connections/hook/connect",
                      data={"csrf_token": csrf}).status_code == 422  # a webhook: no OAuth
    assert admin.post(f"/t/{T}/connections/nope/connect",
                      data={"csrf_token": csrf}).status_code == 404


def test_api_keys_are_shown_once_work_and_are_revoked(tenant):
    admin, csrf = client_of("it@a.test")
    made = admin.post(f"/t/{T}/keys", data={"name": "crm sync", "role": "admin",
                                            "csrf_token": csrf})
    assert made.status_code == 200
    key = made.text.split('<code id="new-key">')[1].split("<")[0]
    key_id = key.split("_")[1]
    api = TestClient(create_app())
    headers = {"Authorization": f"Bearer {key}"}
    assert api.get(f"/v1/tenants/{T}/connections", headers=headers).status_code == 200
    listed = admin.get(f"/t/{T}/keys").text
    assert f'id="key-{key_id}"' in listed and key not in listed  # the secret: once only
    assert admin.post(f"/t/{T}/keys", data={"role": "operator", "csrf_token": csrf}
                      ).status_code == 422
    ops, ops_csrf = client_of("ops@a.test")
    other = ops.post("/t/elsewhere/keys/" + key_id + "/revoke", data={"csrf_token": ops_csrf})
    assert other.status_code == 404
    assert admin.post(f"/t/{T}/keys/{key_id}/revoke", data={}).status_code == 403
    gone = admin.post(f"/t/{T}/keys/{key_id}/revoke", data={"csrf_token": csrf})
    assert gone.status_code == 200 and "révoquée" in gone.text
    assert api.get(f"/v1/tenants/{T}/connections", headers=headers).status_code == 401
