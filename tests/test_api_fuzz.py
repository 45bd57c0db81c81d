"""Bounded fuzzing of every route of the app's own ``/openapi.json`` (hypothesis):
no answer is a 500, and every answer's status is one the document declares."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_api import CALL

from relais.api import create_app

SPEC = create_app().openapi()
OPERATIONS = [(method, path) for path, ops in SPEC["paths"].items() for method in ops]

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
nasty_text = st.sampled_from([
    "", " ", "\x00", "a\x00b", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
    "2026-11-27", "NaN", "9" * 400, "acme", "../acme", "%", "é" * 300, "x" * 5000,
]) | st.text(max_size=40)


def _raw_json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def bodies(path: str) -> st.SearchStrategy[bytes]:
    """Mostly near-valid bodies (one field of a good one changed), some junk."""
    good: dict[str, Any] = CALL if path.endswith("/messages") else {
        "staff_id": "alice", "type": "visite", "start": "2026-12-01T10:00:00+01:00",
        "caller": {"name": "J", "phone": "0612345678"}, "call_type": "message",
        "at": "2026-12-01T10:00:00+01:00"}
    mutated = st.builds(lambda k, v: _raw_json({**good, k: v}),
                        st.sampled_from([*good, "extra"]), json_values | nasty_text)
    intake = st.dictionaries(st.sampled_from(["adresse", "x"]) | nasty_text,
                             json_values | nasty_text, max_size=3).map(
        lambda answers: _raw_json({**good, "call_type": "urgence", "intake": answers}))
    deep = st.integers(30, 3000).map(lambda n: b"[" * n + b"]" * n)
    junk = st.one_of(json_values.map(_raw_json), deep, st.binary(max_size=64),
                     st.sampled_from([b"[NaN]", b'{"a": 1e999}', b'"\\u0000"', b""]))
    return st.one_of(mutated, intake, mutated, intake, junk)


@pytest.fixture
def client(pg_url, monkeypatch, tmp_path, receiver):
    """The app on PostgreSQL (stricter than SQLite: no NUL in text, typed columns),
    answering 500s as responses to assert on rather than raising."""
    from conftest import apply_acme, make_env
    from fastapi.testclient import TestClient

    from relais.auth import create_key
    from sync.store.db import session_scope

    make_env(monkeypatch, tmp_path, pg_url, None)
    keys = {"secretary": apply_acme(receiver, monkeypatch)}
    with session_scope() as session:
        keys["admin"] = create_key(session, "admin", "acme", "admin")
        keys["operator"] = create_key(session, "operator", None, "ops")
    found = TestClient(create_app(), raise_server_exceptions=False)
    found.keys = keys
    return found


@pytest.mark.services
@pytest.mark.parametrize("method, path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_route_answers_500(client, method, path, data):
    operation = SPEC["paths"][path][method]
    url = path
    for name in ("tenant_id", "message_id", "appointment_id", "delivery_id", "name", "token"):
        if "{" + name + "}" in url:
            value = data.draw(st.sampled_from(["acme", "acme", "acme", "beta"]) | nasty_text
                              if name == "tenant_id" else nasty_text | st.just("hook"), name)
            url = url.replace("{" + name + "}", quote(value, safe="") or "x")
    params = {p["name"]: data.draw(nasty_text, p["name"])
              for p in operation.get("parameters", []) if p.get("in") == "query"
              and data.draw(st.booleans(), "send " + p["name"])}
    headers = {"Content-Type": "application/json"}
    role = data.draw(st.sampled_from(["secretary", "admin", "admin", "operator", None]), "role")
    if role:
        headers["Authorization"] = f"Bearer {client.keys[role]}"
    if data.draw(st.booleans(), "idempotency"):
        headers["Idempotency-Key"] = data.draw(st.text("abc-", min_size=1, max_size=8), "key")
    content = data.draw(bodies(path), "body") if "requestBody" in operation or (
        method in ("post", "put", "patch")) else None
    answer = client.request(method.upper(), url, params=params, content=content, headers=headers)
    assert answer.status_code < 500 or str(answer.status_code) in operation["responses"], (
        answer.status_code, answer.text[:300])
    assert answer.status_code != 500, answer.text[:300]
    if answer.status_code not in (404, 405) or "{" not in path:
        assert str(answer.status_code) in operation["responses"], (
            f"{method} {path} answered undocumented {answer.status_code}: {answer.text[:200]}")
    if answer.status_code >= 400 and answer.headers.get("content-type", "").startswith(
            "application/json"):
        assert set(answer.json()) == {"error"}, answer.text[:200]
