"""Inputs that once answered 500: each now gets a 400/422 naming the field."""

from __future__ import annotations

import pytest
from test_api import CALL, api, auth, error, post  # noqa: F401  (fixture)

DEEP = 5000


def deep(n: int = DEEP) -> bytes:
    return b"[" * n + b"]" * n


def raw_call(**replace: str) -> bytes:
    """CALL as JSON text with fields replaced by raw JSON fragments."""
    import json

    text = json.dumps(CALL)
    for name, fragment in replace.items():
        text = text[:-1] + f', "{name}": {fragment}}}'
    return text.encode()


@pytest.mark.parametrize("body, field", [
    (b'{"intake": {"a": ' + deep() + b"}}", "intake.a"),
    (deep(), "[0][0][0]"),
    (raw_call(intake='{"x": NaN}'), "intake.x"),
    (raw_call(intake='{"x": Infinity}'), "intake.x"),
    (raw_call(intake='{"x": -Infinity}'), "intake.x"),
    (raw_call(intake='{"x": 1e999}'), "intake.x"),
    (raw_call(intake='{"x": ' + "9" * 5000 + "}"), "intake.x"),
    (raw_call(subject='"Rappel\\u0000devis"'), "subject"),
    (raw_call(body='"a\\u0000"'), "body"),
    (raw_call(caller='{"name": "J\\u0000", "phone": "0612345678"}'), "caller.name"),
    (raw_call(intake='{"a\\u0000b": 1}'), "intake"),
    (raw_call(taken_at='"0001-01-01T00:00:00+14:00"'), "taken_at"),
    (raw_call(taken_at='"9999-12-31T23:59:59-14:00"'), "taken_at"),
])  # fmt: skip
def test_message_inputs_that_answered_500(api, body, field):
    found = post(api, body)
    assert found.status_code in (400, 422), found.text
    named = error(found, found.status_code)["details"][0]["field"]
    assert named == field or named.startswith(field.removesuffix("[0][0][0]") + "["), named


def test_deep_json_to_appointments_and_explain(api):
    headers = {**auth(api.keys["admin"]), "Content-Type": "application/json",
               "Idempotency-Key": "k1"}
    for path in ("/v1/tenants/acme/appointments", "/v1/tenants/acme/rules/explain"):
        found = api.post(path, content=b'{"a": ' + deep() + b"}", headers=headers)
        assert error(found, 400)["details"][0]["field"].startswith("a[0][0]"), path
    found = api.patch("/v1/tenants/acme/appointments/apt_x", content=deep(), headers=headers)
    assert found.status_code in (400, 404), found.text


@pytest.mark.parametrize("path", ["/v1/webhooks/graph", "/v1/webhooks/hubspot"])
def test_deep_json_to_provider_webhooks(api, path):
    import time

    headers = {"Content-Type": "application/json", "X-HubSpot-Signature-v3": "x",
               "X-HubSpot-Request-Timestamp": str(int(time.time() * 1000))}
    found = api.post(path, content=deep(), headers=headers)
    assert error(found, 400)["code"] == "invalid_notification"


def test_hubspot_timestamp_of_400_digits(api):
    found = api.post("/v1/webhooks/hubspot", content=b"[]", headers={
        "X-HubSpot-Signature-v3": "x", "X-HubSpot-Request-Timestamp": "9" * 400})
    assert error(found, 401)["code"] == "unauthenticated"


@pytest.mark.parametrize("query, field", [
    ("state=a%00b&code=x", "state"),
    ("state=ab&code=x%00", "code"),
])
def test_nul_in_query_parameters(api, query, field):
    found = api.get(f"/oauth/callback?{query}")
    assert error(found, 400)["details"][0]["field"] == field


def test_nul_in_path(api):
    found = api.get("/v1/tenants/ac%00me/messages/x", headers=auth(api.keys["secretary"]))
    assert error(found, 400)["details"][0]["field"] == "path"


@pytest.mark.parametrize("name, value", [
    ("start", "0001-01-01T00:00:00+14:00"),
    ("start", "9999-12-31T23:00:00-14:00"),
    ("end", "9999-12-31T23:59:59+00:00"),
])
def test_availability_at_the_edges_of_the_calendar(api, name, value):
    from urllib.parse import quote

    found = api.get(f"/v1/tenants/acme/availability?staff=alice&type=x&{name}={quote(value)}",
                    headers=auth(api.keys["secretary"]))
    assert error(found, 422)["details"][0]["field"] == name


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                                "0001-01-01T00:00:00", "9999-12-31T23:59:59"])
def test_explain_at_the_edges_of_the_calendar(api, at):
    found = api.post("/v1/tenants/acme/rules/explain", json={"call_type": "message", "at": at},
                     headers=auth(api.keys["secretary"]))
    assert error(found, 422)["details"][0]["field"] == "at"


def test_appointment_at_the_edges_of_the_calendar(api):
    found = api.post("/v1/tenants/acme/appointments", json={
        "staff_id": "alice", "type": "x", "start": "0001-01-01T00:00:00+14:00",
        "caller": {"name": "J", "phone": "0612345678"}},
        headers={**auth(api.keys["secretary"]), "Idempotency-Key": "k"})
    assert error(found, 422)["details"][0]["field"] == "start"
