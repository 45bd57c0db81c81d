"""Calls in: POST /v1/calls and /v1/tenants/{t}/calls, idempotent by (tenant, call
id, kind); the per-call aggregate is the same whatever the order, repetition or
concurrency of the events (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from conftest import FIXTURES, make_env
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mappings.errors import ConfigError
from relais.api import create_app
from relais.auth import create_key
from sync.calls import CallEventIn, EventRow, aggregate, record_events
from sync.store.calls_models import Call, CallEvent
from sync.store.db import dispose_engines, session_scope
from sync.tenants import apply_config

T0 = datetime(2026, 11, 3, 9, 0, 0, tzinfo=UTC)
NUMBER = "+33123456789"


def acme_yaml(numbers: str = '["01 23 45 67 89"]', tenant: str = "acme") -> str:
    text = (FIXTURES / "acme.yaml").read_text().replace("id: acme", f"id: {tenant}", 1)
    text = text.replace("RELAIS_TENANT_ACME_", f"RELAIS_TENANT_{tenant.upper()}_")
    return text + f"forwarding_numbers: {numbers}\n"


def apply(text: str) -> None:
    with session_scope() as session:
        apply_config(session, text, "acme.yaml", actor="test")


@pytest.fixture
def api(env, monkeypatch):
    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("RELAIS_TENANT_OTHER_HOOK_URL", "http://127.0.0.1:9/hook")
    apply(acme_yaml())
    with session_scope() as session:
        keys = {"secretary": create_key(session, "secretary", "acme", "t"),
                "admin": create_key(session, "admin", "acme", "t"),
                "operator": create_key(session, "operator", None, "ops")}
    client = TestClient(create_app(), raise_server_exceptions=True)
    client.keys = keys
    return client


def auth(api, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.keys[role]}"}


def event(call_id: str, kind: str, seconds: float, **extra) -> dict:
    return {"call_id": call_id, "event": kind,
            "at": (T0 + timedelta(seconds=seconds)).isoformat(), **extra}


def test_the_dialled_number_finds_the_tenant(api):
    body = {"events": [event("c1", "offered", 0, called=NUMBER, caller="+33612345678"),
                       event("c1", "answered", 12, called=NUMBER, secretary="sophie")]}
    answer = api.post("/v1/calls", json=body, headers=auth(api, "operator"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["created"] == 2
    assert {e["tenant"] for e in answer.json()["events"]} == {"acme"}
    again = api.post("/v1/calls", json=body, headers=auth(api, "operator"))
    assert again.json() == {**answer.json(), "created": 0, "duplicates": 2, "events": [
        {**e, "status": "duplicate"} for e in answer.json()["events"]]}
    with session_scope(readonly=True) as session:
        call = session.get(Call, ("acme", "c1"))
        assert (call.outcome, call.wait_seconds, call.secretary) == ("answered", 12.0, "sophie")
        assert session.scalar(select(func.count()).select_from(CallEvent)) == 2


def test_refusals_name_the_field(api):
    unknown = api.post("/v1/calls", json=event("c1", "offered", 0, called="+33987654321"),
                       headers=auth(api, "operator"))
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"][0]["field"] == "events[0].called"
    missing = api.post("/v1/calls", json=event("c1", "offered", 0),
                       headers=auth(api, "operator"))
    assert missing.status_code == 422
    naive = api.post("/v1/tenants/acme/calls", json={**event("c1", "offered", 0),
                                                      "at": "2026-11-03T09:00:00"},
                     headers=auth(api, "secretary"))
    assert naive.status_code == 422
    assert naive.json()["error"]["details"][0]["field"] == "events[0].at"
    kind = api.post("/v1/tenants/acme/calls", json=event("c1", "picked", 0),
                    headers=auth(api, "secretary"))
    assert kind.json()["error"]["details"][0]["field"] == "events[0].event"
    tenant_key = api.post("/v1/calls", json=event("c1", "offered", 0, called=NUMBER),
                          headers=auth(api, "secretary"))
    assert tenant_key.status_code == 403


def test_an_event_contradicting_a_stored_one_is_a_conflict_and_nothing_is_kept(api):
    url, headers = "/v1/tenants/acme/calls", auth(api, "secretary")
    assert api.post(url, json=event("c1", "offered", 0), headers=headers).status_code == 200
    clash = api.post(url, json={"events": [event("c2", "offered", 5),
                                           event("c1", "offered", 1)]}, headers=headers)
    assert clash.status_code == 409
    assert clash.json()["error"]["details"][0]["field"] == "events[1].at"
    with session_scope(readonly=True) as session:
        assert session.get(Call, ("acme", "c2")) is None


def test_a_forwarding_number_belongs_to_one_tenant(api):
    with pytest.raises(ConfigError, match="already rings for tenant 'acme'"):
        apply(acme_yaml(tenant="other"))
    apply(acme_yaml('["01 23 45 67 80"]'))  # acme lets its number go: another may take it
    apply(acme_yaml(tenant="other"))
    answer = api.post("/v1/calls", json=event("c9", "offered", 0, called=NUMBER),
                      headers=auth(api, "operator"))
    assert answer.json()["events"][0]["tenant"] == "other"


CALL = [("offered", 0.0), ("answered", 14.5), ("transferred", 80.0), ("ended", 95.25)]


def test_the_aggregate_is_the_same_in_every_order():
    expected = {"outcome": "answered", "wait_seconds": 14.5, "talk_seconds": 80.75, "events": 4}
    for order in itertools.permutations(CALL):
        agg = aggregate(EventRow(k, T0 + timedelta(seconds=s)) for k, s in order)
        assert {k: agg[k] for k in expected} == expected
        assert agg["offered_at"] == T0


def test_abandoned_and_ringing_calls():
    abandoned = aggregate([EventRow("ended", T0 + timedelta(seconds=40)), EventRow("offered", T0)])
    assert (abandoned["outcome"], abandoned["wait_seconds"], abandoned["talk_seconds"]) == (
        "abandoned", 40.0, None)
    ringing = aggregate([EventRow("offered", T0)])
    assert (ringing["outcome"], ringing["wait_seconds"]) == ("ringing", None)
    # Offered lost: the earliest event stands for it.
    late = aggregate([EventRow("answered", T0 + timedelta(seconds=9))])
    assert (late["offered_at"], late["wait_seconds"]) == (T0 + timedelta(seconds=9), 0.0)


def _events(call_id: str) -> list[CallEventIn]:
    return [CallEventIn(call_id=call_id, event=k, at=T0 + timedelta(seconds=s), secretary="s")
            for k, s in CALL]


def _stored_calls() -> dict:
    with session_scope(readonly=True) as session:
        return {c.call_id: (c.outcome, c.wait_seconds, c.talk_seconds, c.events, c.offered_at)
                for c in session.scalars(select(Call))}


def _check_concurrent_ingest() -> None:
    """Each call's four events sent at once by four threads (a barrier per call),
    then eight threads resend everything shuffled: each call ends as if its
    events had come once, in order (without the row lock, the first phase
    leaves calls that miss an event)."""
    calls = [f"call-{n}" for n in range(30)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def one_each(slot: int) -> None:
        try:
            for call_id in calls:
                barrier.wait(timeout=30)
                with session_scope() as session:
                    record_events(session, "acme", [_events(call_id)[slot]])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def resender(seed: int) -> None:
        rng = random.Random(seed)
        pending = [e for c in calls for e in _events(c)]
        rng.shuffle(pending)
        try:
            while pending:
                size = rng.randint(1, 3)
                batch, pending = pending[:size], pending[size:]
                with session_scope() as session:
                    record_events(session, "acme", batch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    expected = ("answered", 14.5, 80.75, 4, T0)
    for target, count in ((one_each, 4), (resender, 8)):
        threads = [threading.Thread(target=target, args=(n,)) for n in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert _stored_calls() == {c: expected for c in calls}
    with session_scope(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(CallEvent)) == 120


def test_concurrent_ingest_sqlite(env, monkeypatch):
    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", "http://127.0.0.1:9/hook")
    apply(acme_yaml())
    _check_concurrent_ingest()


def test_concurrent_ingest_postgres(pg_url, monkeypatch, tmp_path):
    make_env(monkeypatch, tmp_path, pg_url, None)
    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", "http://127.0.0.1:9/hook")
    apply(acme_yaml())
    _check_concurrent_ingest()
    dispose_engines()


def test_messages_and_appointments_carry_the_call_id(api):
    message = {"call_type": "message", "caller": {"name": "Jeanne", "phone": "0612345678"},
               "subject": "Rappel", "taken_by": "Sophie", "taken_at": T0.isoformat(),
               "call_id": "c1"}
    answer = api.post("/v1/tenants/acme/messages", json=message, headers=auth(api, "secretary"))
    assert answer.status_code == 202, answer.text
    from sync.store.models import Message

    with session_scope(readonly=True) as session:
        assert session.get(Message, answer.json()["id"]).call_id == "c1"
