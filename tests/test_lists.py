"""Lists for the desk and the admin screens, on PostgreSQL: messages, appointments
and deliveries filtered by date range, staff, caller, status, connection; newest
first; cursor pages; tenant-scoped. Dead deliveries replayed once, even when two
admins press "replay" at the same moment."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from conftest import apply_acme, make_env
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from test_api import acme_as

from relais.api import create_app
from relais.auth import create_key
from sync.delivery import process_connection
from sync.store.db import session_scope
from sync.store.models import Appointment, AuditEvent, Delivery
from sync.tenants import apply_config

BASE = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def call(n: int, phone: str = "06 12 34 56 78", **extra) -> dict:
    return {
        "call_type": "message",
        "caller": {"name": f"Appelant {n}", "phone": phone},
        "subject": f"Appel {n}",
        "taken_by": "Sophie",
        "taken_at": (BASE + timedelta(hours=n)).isoformat(),
        **extra,
    }


@pytest.fixture
def api(pg_url, monkeypatch, tmp_path, receiver, hub_clock):
    hub_clock(BASE, ticking=True)
    make_env(monkeypatch, tmp_path, pg_url, None)
    secretary = apply_acme(receiver, monkeypatch)
    with session_scope() as session:
        admin = create_key(session, "admin", "acme", "admin")
        apply_config(session, acme_as("beta", monkeypatch), "beta.yaml", actor="test")
        beta = create_key(session, "admin", "beta", "beta admin")
    client = TestClient(create_app(), raise_server_exceptions=True)
    client.keys = {"secretary": secretary, "admin": admin, "beta": beta}
    client.receiver = receiver
    return client


def get(api, path: str, role: str = "secretary", **params):
    return api.get(f"/v1/tenants/acme/{path}", params=params,
                   headers={"Authorization": f"Bearer {api.keys[role]}"})


def post_call(api, body: dict) -> str:
    response = api.post("/v1/tenants/acme/messages", json=body,
                        headers={"Authorization": f"Bearer {api.keys['secretary']}"})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def field_of(response, status: int = 422) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]["details"][0]["field"]


def test_messages_newest_first_filtered_by_range_staff_caller_status(api):
    ids = [
        post_call(api, call(0)),
        post_call(api, call(1, "+33 1 42 68 53 00", staff_id="alice")),
        post_call(api, call(2, "0612345678")),
        post_call(api, {**call(3), "call_type": "demarchage"}),  # a drop rule: dropped
        post_call(api, call(4, "04 72 00 00 02", staff_id="alice")),
    ]
    listed = get(api, "messages").json()
    assert [m["id"] for m in listed["messages"]] == ids[::-1]
    assert listed["next_cursor"] is None and listed["count"] == 5
    first = listed["messages"][-1]
    assert first["caller"]["phone"] == "+33612345678"
    assert first["taken_at"] == "2026-11-27T08:00:00Z" and first["status"] == "accepted"

    def ids_for(**params) -> list[str]:
        response = get(api, "messages", **params)
        assert response.status_code == 200, response.text
        return [m["id"] for m in response.json()["messages"]]

    # Half-open range, offsets honoured (09:00+01:00 is 08:00Z: call 0 included).
    assert ids_for(**{"from": "2026-11-27T09:00:00+01:00", "to": "2026-11-27T11:00:00Z"}) == [
        ids[2], ids[1], ids[0]]
    # A "+" sent unencoded reaches us as a space: still read as the offset.
    assert ids_for(**{"from": "2026-11-27T12:00:00 01:00"}) == [ids[4], ids[3]]
    assert ids_for(staff="alice") == [ids[4], ids[1]]
    # The caller in any format, or the end of the number, as the directory matches it.
    same = [ids[3], ids[2], ids[0]]
    assert ids_for(caller="+33 6 12 34 56 78") == same
    assert ids_for(caller="06.12.34.56.78") == same
    assert ids_for(caller="34 56 78") == same
    assert ids_for(caller="0472000002") == [ids[4]]
    assert ids_for(status="dropped") == [ids[3]]
    assert ids_for(status="accepted", staff="alice", caller="0142685300") == [ids[1]]


def test_message_pages_neither_repeat_nor_skip_when_calls_arrive(api):
    ids = [post_call(api, call(n)) for n in range(5)]
    page = get(api, "messages", limit=2).json()
    seen = [m["id"] for m in page["messages"]]
    assert seen == [ids[4], ids[3]] and page["next_cursor"]
    newer = post_call(api, call(9))  # arrives between two pages: the next page is unmoved
    while page["next_cursor"]:
        page = get(api, "messages", limit=2, cursor=page["next_cursor"]).json()
        seen += [m["id"] for m in page["messages"]]
    assert seen == ids[::-1] and newer not in seen


def test_bad_list_parameters_name_their_field(api):
    assert field_of(get(api, "messages", **{"from": "2026-11-27T09:00:00"})) == "from"
    assert field_of(get(api, "messages", to="hier")) == "to"
    assert field_of(get(api, "messages", **{"from": "2026-11-28T00:00:00Z",
                                            "to": "2026-11-27T00:00:00Z"})) == "to"
    assert field_of(get(api, "messages", caller="12")) == "caller"
    assert field_of(get(api, "messages", status="lu")) == "status"
    assert field_of(get(api, "messages", cursor="not-a-cursor")) == "cursor"
    assert field_of(get(api, "appointments", status="maybe")) == "status"
    response = get(api, "messages", to="1900-01-01T00:00:00Z")
    assert field_of(response) == "to" and "1971" in response.json()["error"]["message"]
    assert get(api, "messages", limit=0).status_code == 422


def test_lists_are_tenant_scoped(api):
    post_call(api, call(0))
    for path in ("messages", "appointments", "deliveries"):
        response = get(api, path, role="beta")
        assert response.status_code == 404, (path, response.text)
    assert get(api, "deliveries", role="secretary").status_code == 403
    beta = api.get("/v1/tenants/beta/messages",
                   headers={"Authorization": f"Bearer {api.keys['beta']}"})
    assert beta.status_code == 200 and beta.json()["messages"] == []


def _appointment(n: int, staff: str, status: str, phone: str, tenant: str = "acme") -> str:
    start = BASE + timedelta(days=n)
    with session_scope() as session:
        row = Appointment(tenant_id=tenant, staff_id=staff, start=start,
                          end=start + timedelta(minutes=30), status=status,
                          caller={"name": f"Client {n}", "phone": phone},
                          subject=f"RDV {n}", appointment_type=None)
        session.add(row)
        session.flush()
        return row.id


def test_appointments_by_start_filtered(api):
    ids = [
        _appointment(0, "alice", "confirmed", "+33612345678"),
        _appointment(1, "bob", "cancelled", "+33612345678"),
        _appointment(2, "alice", "confirmed", "+33472000002"),
        _appointment(3, "alice", "failed", "+33612345678"),
    ]
    _appointment(1, "alice", "confirmed", "+33612345678", tenant="beta")

    def ids_for(**params) -> list[str]:
        response = get(api, "appointments", **params)
        assert response.status_code == 200, response.text
        return [a["id"] for a in response.json()["appointments"]]

    assert ids_for() == ids[::-1]
    assert ids_for(staff="alice", status="confirmed") == [ids[2], ids[0]]
    assert ids_for(caller="06 12 34 56 78") == [ids[3], ids[1], ids[0]]
    assert ids_for(**{"from": "2026-11-28T00:00:00Z", "to": "2026-11-30T08:00:00Z"}) == [
        ids[2], ids[1]]
    shown = get(api, "appointments", status="confirmed", limit=1).json()
    assert shown["appointments"][0]["start"] == "2026-11-29T09:00:00+01:00"  # the staff's zone
    rest = get(api, "appointments", status="confirmed", cursor=shown["next_cursor"]).json()
    assert [a["id"] for a in rest["appointments"]] == [ids[0]] and rest["next_cursor"] is None


def _dead(api, n: int) -> tuple[str, str]:
    """A message whose webhook delivery the receiver refused for good."""
    message_id = post_call(api, call(n))
    with session_scope() as session:
        row = session.scalar(select(Delivery).where(Delivery.message_id == message_id))
        delivery_id, connection_id = row.id, row.connection_id
    api.receiver.status_override = 422
    process_connection(connection_id)
    api.receiver.status_override = None
    return delivery_id, connection_id


def test_deliveries_filtered_with_dead_reason(api, hub_clock):
    dead, connection_id = _dead(api, 0)
    hub_clock(BASE + timedelta(hours=2), ticking=True)
    post_call(api, call(1))
    process_connection(connection_id)
    hub_clock(BASE + timedelta(hours=4), ticking=True)
    pending = post_call(api, call(2))

    def listed(**params) -> list[dict]:
        response = get(api, "deliveries", role="admin", **params)
        assert response.status_code == 200, response.text
        return response.json()["deliveries"]

    assert [d["status"] for d in listed()] == ["pending", "delivered", "dead"]
    [only] = listed(status="dead")
    assert only["id"] == dead and only["last_error"].startswith("webhook hook answered 422")
    assert [d["message_id"] for d in listed(**{"from": "2026-11-27T12:00:00+01:00"})] == [
        pending]
    assert [d["status"] for d in listed(to="2026-11-27T11:00:00Z")] == ["delivered", "dead"]
    assert len(listed(connection="hook")) == 3 and len(listed(connection="webhook")) == 3
    assert listed(connection="crm") == []
    page = get(api, "deliveries", role="admin", limit=2).json()
    rest = get(api, "deliveries", role="admin", cursor=page["next_cursor"]).json()
    assert [d["id"] for d in rest["deliveries"]] == [dead]
    assert field_of(get(api, "deliveries", role="admin", status="lost")) == "query.status"


def replay(api, ids: list[str], role: str = "admin"):
    return api.post("/v1/tenants/acme/deliveries/replay", json={"ids": ids},
                    headers={"Authorization": f"Bearer {api.keys[role]}"})


def test_replay_a_selection_of_dead_deliveries(api):
    first, connection_id = _dead(api, 0)
    second, _ = _dead(api, 1)
    delivered = post_call(api, call(2))
    process_connection(connection_id)
    with session_scope() as session:
        delivered_id = session.scalar(select(Delivery.id).where(Delivery.message_id == delivered))
    response = replay(api, [first, second, delivered_id, "dlv_nope"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert sorted(d["id"] for d in body["replayed"]) == sorted([first, second])
    assert {r["id"]: r["code"] for r in body["refused"]} == {
        delivered_id: "not_dead", "dlv_nope": "not_found"}
    assert process_connection(connection_id).delivered == 2
    assert api.receiver.duplicates == 0
    # Another tenant's admin cannot replay acme's deliveries, nor learn they exist.
    other = api.post("/v1/tenants/beta/deliveries/replay", json={"ids": [first]},
                     headers={"Authorization": f"Bearer {api.keys['beta']}"})
    assert other.json() == {"replayed": [], "refused": [
        {"id": first, "code": "not_found", "reason": f"delivery {first!r} not found"}]}
    assert replay(api, [first], role="beta").status_code == 404
    assert field_of(replay(api, [])) == "ids"
    assert replay(api, [first], role="secretary").status_code == 403


def test_concurrent_replays_requeue_a_dead_delivery_once(api):
    dead, connection_id = _dead(api, 0)
    before = api.receiver.unique
    barrier = threading.Barrier(4)
    answers: list[dict] = []

    def press() -> None:
        barrier.wait()
        answers.append(replay(api, [dead]).json())

    threads = [threading.Thread(target=press) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(len(a["replayed"]) for a in answers) == 1, answers
    assert sorted(r["code"] for a in answers for r in a["refused"]) == ["already_queued"] * 3
    with session_scope() as session:
        replays = session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.subject_id == dead, AuditEvent.kind == "delivery.replayed"))
    assert replays == 1
    assert process_connection(connection_id).delivered == 1
    assert api.receiver.unique == before + 1 and api.receiver.duplicates == 0
