"""HTTP API: every kind of bad input gets a 4xx JSON error naming the problem."""

from __future__ import annotations

import pytest
from conftest import FIXTURES, apply_acme
from fastapi.testclient import TestClient

from relais.api import create_app
from relais.auth import create_key
from sync.store.db import session_scope

CALL = {
    "call_type": "message",
    "caller": {"name": "Jeanne Dupont", "phone": "06 12 34 56 78"},
    "subject": "Rappel devis",
    "body": "Souhaite un rappel.",
    "taken_by": "Sophie",
    "taken_at": "2026-11-27T10:15:00+01:00",
}


@pytest.fixture
def api(env, receiver, monkeypatch):
    key = apply_acme(receiver, monkeypatch)
    with session_scope() as session:
        admin = create_key(session, "admin", "acme", "admin")
        operator = create_key(session, "operator", None, "ops")
    client = TestClient(create_app(), raise_server_exceptions=True)
    client.keys = {"secretary": key, "admin": admin, "operator": operator}
    return client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post(api, body, key_role="secretary", tenant="acme", **kw):
    headers = {**auth(api.keys[key_role]), **kw.pop("headers", {})}
    if isinstance(body, dict):
        return api.post(f"/v1/tenants/{tenant}/messages", json=body, headers=headers)
    return api.post(f"/v1/tenants/{tenant}/messages", content=body,
                    headers={**headers, "Content-Type": "application/json"})


def error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert set(body) == {"code", "message", "details"}
    return body


def test_accepts_and_shows_message(api):
    response = post(api, CALL)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "accepted"
    assert [(d["connection"], d["status"]) for d in body["deliveries"]] == [("hook", "pending")]
    shown = api.get(f"/v1/tenants/acme/messages/{body['id']}", headers=auth(api.keys["secretary"]))
    assert shown.status_code == 200
    data = shown.json()
    assert data["caller"] == {"name": "Jeanne Dupont", "phone": "+33612345678"}
    assert data["taken_at"] == "2026-11-27T09:15:00Z"
    assert data["deliveries"][0]["history"] == []


def test_idempotency_key_replay(api):
    first = post(api, CALL, headers={"Idempotency-Key": "tel-42"})
    second = post(api, CALL, headers={"Idempotency-Key": "tel-42"})
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"]


def test_idempotency_key_reused_with_another_body_is_refused(api):
    first = post(api, CALL, headers={"Idempotency-Key": "tel-43"})
    other = post(api, {**CALL, "body": "Un autre appel."}, headers={"Idempotency-Key": "tel-43"})
    body = error(other, 422)
    assert body["code"] == "idempotency_key_reused"
    assert "tel-43" in body["message"] and body["details"][0]["field"] == "Idempotency-Key"
    same = post(api, CALL, headers={"Idempotency-Key": "tel-43"})
    assert (first.status_code, same.status_code) == (202, 200)
    assert same.json()["id"] == first.json()["id"]


def test_idempotency_keys_belong_to_their_tenant(api, receiver, monkeypatch):
    from sync.tenants import apply_config

    text = acme_as("beta", monkeypatch)
    monkeypatch.setenv("RELAIS_TENANT_BETA_HOOK_URL", receiver.url + "/hooks/beta/hook")
    with session_scope() as session:
        apply_config(session, text, "beta.yaml", actor="test")
        api.keys["beta"] = create_key(session, "secretary", "beta", "test")
    first = post(api, CALL, headers={"Idempotency-Key": "tel-44"})
    other = post(api, {**CALL, "body": "Autre"}, key_role="beta", tenant="beta",
                 headers={"Idempotency-Key": "tel-44"})
    assert (first.status_code, other.status_code) == (202, 202), other.text
    assert first.json()["id"] != other.json()["id"]


def test_the_same_call_under_one_key_in_two_tenants_is_two_messages(api, receiver, monkeypatch):
    """Not a replay across tenants: each tenant stores its own message, shown only to it."""
    from sync.tenants import apply_config

    text = acme_as("beta", monkeypatch)
    monkeypatch.setenv("RELAIS_TENANT_BETA_HOOK_URL", receiver.url + "/hooks/beta/hook")
    with session_scope() as session:
        apply_config(session, text, "beta.yaml", actor="test")
        api.keys["beta"] = create_key(session, "secretary", "beta", "test")
    first = post(api, CALL, headers={"Idempotency-Key": "tel-45"})
    other = post(api, CALL, key_role="beta", tenant="beta", headers={"Idempotency-Key": "tel-45"})
    assert (first.status_code, other.status_code) == (202, 202), other.text
    mine, theirs = first.json()["id"], other.json()["id"]
    assert mine != theirs
    beta = auth(api.keys["beta"])
    assert api.get(f"/v1/tenants/beta/messages/{theirs}", headers=beta).status_code == 200
    assert error(api.get(f"/v1/tenants/beta/messages/{mine}", headers=beta), 404)
    again = post(api, CALL, key_role="beta", tenant="beta", headers={"Idempotency-Key": "tel-45"})
    assert (again.status_code, again.json()["id"]) == (200, theirs)


def test_malformed_json(api):
    body = error(post(api, b'{"call_type": "message",'), 400)
    assert body["code"] == "invalid_json" and "line 1" in body["message"]


def test_empty_and_non_object_body(api):
    assert error(post(api, b""), 400)["code"] == "invalid_json"
    assert error(post(api, b"[1, 2]"), 400)["message"] == "body must be a JSON object"


def test_unknown_call_type(api):
    body = error(post(api, {**CALL, "call_type": "pizza"}), 422)
    assert body["details"][0]["field"] == "call_type"
    assert "message, urgence, demarchage" in body["details"][0]["hint"]


def test_invalid_phone(api):
    call = {**CALL, "caller": {"name": "X", "phone": "06 12"}}
    body = error(post(api, call), 422)
    assert body["details"][0]["field"] == "caller.phone"
    assert "'06 12'" in body["message"]


def test_naive_datetime(api):
    body = error(post(api, {**CALL, "taken_at": "2026-11-27T10:15:00"}), 422)
    detail = body["details"][0]
    assert detail["field"] == "taken_at" and "timezone" in detail["problem"]
    assert "offset" in detail["hint"]


def test_missing_field_and_unknown_field(api):
    call = {k: v for k, v in CALL.items() if k != "subject"} | {"colour": "red"}
    fields = {d["field"] for d in error(post(api, call), 422)["details"]}
    assert fields == {"subject", "colour"}


def test_required_intake(api):
    body = error(post(api, {**CALL, "call_type": "urgence"}), 422)
    assert body["details"][0]["field"] == "intake.adresse"


def test_unknown_staff(api):
    body = error(post(api, {**CALL, "staff_id": "bob"}), 422)
    assert body["details"][0]["field"] == "staff_id" and "alice" in body["details"][0]["hint"]


def test_unknown_tenant(api):
    assert error(post(api, CALL, key_role="operator", tenant="nobody"), 404)["code"] == "not_found"


def test_body_too_large(api):
    body = error(post(api, {**CALL, "body": "x" * 70_000}), 413)
    assert body["code"] == "too_large" and "65536" in body["message"]
    huge = api.post("/v1/tenants/acme/messages", content=b"x" * 2_000_000,
                    headers={**auth(api.keys["secretary"]), "Content-Type": "application/json"})
    assert error(huge, 413)["code"] == "too_large"


def test_missing_and_wrong_key(api):
    response = api.post("/v1/tenants/acme/messages", json=CALL)
    assert error(response, 401)["message"].startswith("missing API key")
    wrong = api.keys["secretary"][:-4] + "AAAA"
    assert error(post(api, CALL, headers={"Authorization": f"Bearer {wrong}"}), 401)
    assert error(api.post("/v1/tenants/acme/messages", json=CALL,
                          headers={"Authorization": "Basic abc"}), 401)


def acme_as(tenant_id: str, monkeypatch) -> str:
    """acme.yaml as tenant ``tenant_id``, reading its own hook variable."""
    own = f"RELAIS_TENANT_{tenant_id.upper()}_HOOK_URL"
    monkeypatch.setenv(own, "https://hooks.example.fr/" + tenant_id)
    text = (FIXTURES / "acme.yaml").read_text().replace("id: acme", f"id: {tenant_id}", 1)
    return text.replace("RELAIS_TENANT_ACME_HOOK_URL", own)


def test_other_tenant_is_invisible(api, monkeypatch):
    from sync.tenants import apply_config

    other = acme_as("beta", monkeypatch)
    with session_scope() as session:
        apply_config(session, other, "beta.yaml", actor="test")
        beta_key = create_key(session, "admin", "beta", "b")
    accepted = post(api, CALL).json()
    h = auth(beta_key)
    assert error(api.get(f"/v1/tenants/acme/messages/{accepted['id']}", headers=h), 404)
    assert error(api.post("/v1/tenants/acme/messages", json=CALL, headers=h), 404)
    assert error(api.get("/v1/tenants/acme/config", headers=h), 404)
    assert error(api.get("/v1/tenants/acme/deliveries", headers=h), 404)
    dlv = accepted["deliveries"][0]["id"]
    assert error(api.post(f"/v1/deliveries/{dlv}/replay", headers=h), 404)
    # Its own message ids are not reachable through the other tenant's URL either.
    assert error(api.get(f"/v1/tenants/beta/messages/{accepted['id']}", headers=h), 404)


def test_roles(api):
    h = auth(api.keys["secretary"])
    assert error(api.get("/v1/tenants/acme/config", headers=h), 403)["code"] == "forbidden"
    assert api.get("/v1/tenants/acme/config", headers=auth(api.keys["admin"])).status_code == 200


def test_put_config_errors_carry_lines(api):
    text = (FIXTURES / "acme.yaml").read_text().replace("timezone: Europe/Paris",
                                                         "timezone: Paris/France")
    response = api.put("/v1/tenants/acme/config", content=text.encode(),
                       headers=auth(api.keys["admin"]))
    body = error(response, 422)
    assert body["code"] == "invalid_config"
    issue = body["details"][0]
    assert (issue["line"], issue["path"]) == (4, "timezone")
    assert "acme.yaml:4:" in body["message"]


def test_put_config_for_another_id_refused(api):
    text = (FIXTURES / "acme.yaml").read_text()
    response = api.put("/v1/tenants/zeta/config", content=text.encode(),
                       headers=auth(api.keys["operator"]))
    assert error(response, 422)["details"][0]["path"] == "id"


def test_put_config_new_tenant_needs_operator(api, monkeypatch):
    text = acme_as("gamma", monkeypatch)
    refused = api.put("/v1/tenants/gamma/config", content=text.encode(),
                      headers=auth(api.keys["admin"]))
    assert error(refused, 404)
    created = api.put("/v1/tenants/gamma/config", content=text.encode(),
                      headers=auth(api.keys["operator"]))
    assert created.status_code == 200 and created.json()["created"] is True
    assert set(created.json()["new_webhook_secrets"]) == {"hook"}


def test_deliveries_list_filter_and_bad_status(api):
    post(api, CALL)
    h = auth(api.keys["admin"])
    listed = api.get("/v1/tenants/acme/deliveries?status=pending", headers=h).json()
    assert len(listed["deliveries"]) == 1
    body = error(api.get("/v1/tenants/acme/deliveries?status=lost", headers=h), 422)
    assert body["details"][0]["field"] == "query.status"


def test_replay_refused_while_queued(api):
    dlv = post(api, CALL).json()["deliveries"][0]["id"]
    body = error(api.post(f"/v1/deliveries/{dlv}/replay", headers=auth(api.keys["admin"])), 409)
    assert "already queued" in body["message"]


def test_explain(api):
    h = auth(api.keys["secretary"])
    spam = api.post("/v1/tenants/acme/rules/explain", json={"call_type": "demarchage"}, headers=h)
    assert spam.json()["dropped"] is True and spam.json()["deliveries"] == []
    msg = api.post("/v1/tenants/acme/rules/explain", json={"call_type": "message"}, headers=h)
    assert [{k: d[k] for k in ("rule", "connection", "provider")}
            for d in msg.json()["deliveries"]] == [
        {"rule": "tout-au-webhook", "connection": "hook", "provider": "webhook"}]


def test_health_and_metrics(api):
    assert api.get("/healthz").json() == {"status": "ok", "database": "ok", "broker": "ok"}
    post(api, CALL)
    assert error(api.get("/metrics"), 401)["code"] == "unauthenticated"
    for role in ("secretary", "admin"):
        assert error(api.get("/metrics", headers=auth(api.keys[role])), 403)["code"] == "forbidden"
    from relais.api.ops import BACKLOG

    BACKLOG._at = 0.0  # another test's database may be cached
    text = api.get("/metrics", headers=auth(api.keys["operator"])).text
    assert 'relais_deliveries{status="pending"} 1.0' in text
    assert "relais_messages_accepted_total" in text and "relais_broker_up 1.0" in text
    assert "acme" not in text and "Souhaite" not in text


def test_broker_down_shows_in_health_and_metrics(api, monkeypatch):
    from sync.queue import BROKER, reset_celery
    from sync.settings import reset_settings

    monkeypatch.setenv("RELAIS_BROKER_URL", "redis://127.0.0.1:9/0")  # nothing listens
    reset_settings()
    reset_celery()
    try:
        assert post(api, CALL).status_code == 202  # committed: the sweep will enqueue it
        assert not BROKER.up
        metrics = api.get("/metrics", headers=auth(api.keys["operator"])).text
        assert "relais_broker_up 0.0" in metrics
        failures = [line for line in metrics.splitlines()
                    if line.startswith("relais_enqueue_failures_total ")]
        assert failures and float(failures[0].split()[1]) >= 1
        health = api.get("/healthz")
        assert health.status_code == 503 and health.json()["broker"] != "ok"
    finally:
        monkeypatch.delenv("RELAIS_BROKER_URL")
        reset_settings()
        reset_celery()
    assert api.get("/healthz").status_code == 200 and BROKER.up
