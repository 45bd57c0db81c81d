"""The delivery engine in-process: real SQLite store, real HTTP receiver.

Each case drives ``process_connection`` (what a worker runs) against a
receiver answering as a real tenant endpoint would.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import apply_acme
from sqlalchemy import select

from sync.delivery import backoff_seconds, process_connection, replay, sweep
from sync.domain import CallMessage
from sync.outbox import MessageRejected, accept_message
from sync.settings import get_settings
from sync.store.db import session_scope
from sync.store.models import AuditEvent, Connection, Delivery, utcnow
from sync.tenants import get_tenant, parsed_config

CALL = {
    "call_type": "message",
    "caller": {"name": "Jeanne Dupont", "phone": "06 12 34 56 78", "email": "j.dupont@exemple.fr"},
    "subject": "Rappel devis",
    "body": "Souhaite un rappel avant 18 h.",
    "taken_by": "Sophie",
    "taken_at": "2026-11-27T10:15:00+01:00",
}


def accept(call: dict | None = None, key: str | None = None) -> tuple[str, list[str], str]:
    with session_scope() as session:
        config = parsed_config(get_tenant(session, "acme"))
        msg = CallMessage.model_validate(call or CALL, context={"region": "FR"})
        accepted = accept_message(session, "acme", config, msg, key)
        return accepted.message.id, [d.id for d in accepted.deliveries], accepted.connection_ids[0]


def delivery(delivery_id: str) -> Delivery:
    with session_scope() as session:
        row = session.get(Delivery, delivery_id)
        assert row is not None
        return row


def history(delivery_id: str) -> list[str]:
    with session_scope() as session:
        return list(session.scalars(select(AuditEvent.kind).where(
            AuditEvent.subject_id == delivery_id).order_by(AuditEvent.id)))


def force_due(delivery_id: str) -> None:
    """Skip the backoff wait (the schedule itself is asserted separately)."""
    with session_scope() as session:
        row = session.get(Delivery, delivery_id)
        row.next_attempt_at = utcnow()


@pytest.fixture
def acme(env, receiver, monkeypatch):
    apply_acme(receiver, monkeypatch)
    return receiver


def test_delivered_signed_with_history(acme):
    message_id, [dlv], conn = accept()
    outcome = process_connection(conn)
    assert (outcome.claimed, outcome.delivered) == (1, 1)
    row = delivery(dlv)
    assert row.status == "delivered" and row.attempts == 1
    assert row.external_id == f"rcv-{row.idempotency_key[-12:]}"
    got = acme.first[row.idempotency_key].payload
    assert got["message"]["id"] == message_id
    assert got["message"]["caller"]["phone"] == "+33612345678"
    assert got["message"]["taken_at"] == "2026-11-27T09:15:00Z"
    assert got["tenant"] == {"id": "acme", "name": "ACME Dépannage",
                             "timezone": "Europe/Paris", "phone_region": "FR"}
    assert acme.rejected_signatures == 0
    assert history(dlv) == ["delivery.attempt", "delivery.delivered"]


def test_transient_failure_retries_with_same_key(acme):
    _, [dlv], conn = accept()
    acme.status_override = 503
    outcome = process_connection(conn)
    assert outcome.retried == 1 and outcome.run_again_in is not None
    row = delivery(dlv)
    assert row.status == "pending" and row.attempts == 1 and "503" in row.last_error
    assert row.next_attempt_at > utcnow()
    acme.status_override = None
    assert process_connection(conn).claimed == 0  # not due yet
    force_due(dlv)
    assert process_connection(conn).delivered == 1
    assert delivery(dlv).attempts == 2
    assert history(dlv) == ["delivery.attempt", "delivery.retry_scheduled",
                            "delivery.attempt", "delivery.delivered"]


def test_permanent_rejection_is_dead_with_reason_then_replayed(acme):
    _, [dlv], conn = accept()
    acme.status_override = 422
    assert process_connection(conn).dead == 1
    row = delivery(dlv)
    assert row.status == "dead"
    assert row.last_error.startswith("webhook hook answered 422 Unprocessable")
    acme.status_override = None
    with session_scope() as session:
        replay(session, session.get(Delivery, dlv), actor="test")
    assert process_connection(conn).delivered == 1
    assert delivery(dlv).status == "delivered"
    assert acme.unique == 1


def test_gives_up_after_max_attempts(acme, monkeypatch):
    monkeypatch.setattr(get_settings(), "delivery_max_attempts", 3)
    _, [dlv], conn = accept()
    acme.status_override = 500
    for _ in range(3):
        force_due(dlv)
        process_connection(conn)
    row = delivery(dlv)
    assert row.status == "dead" and row.attempts == 3
    assert row.last_error.startswith("gave up after 3 attempts: webhook hook answered 500")


def test_429_pauses_connection_without_spending_attempts(acme):
    ids = [accept()[1][0] for _ in range(3)]
    conn = delivery(ids[0]).connection_id
    acme.status_override = 429
    outcome = process_connection(conn)
    # The first send got 429: the other two were not sent at all.
    assert sum(acme.hits.values()) == 0 and outcome.claimed == 3
    with session_scope() as session:
        paused = session.get(Connection, conn).paused_until
    assert paused is not None and paused > utcnow() + timedelta(seconds=20)
    for dlv in ids:
        row = delivery(dlv)
        assert (row.status, row.attempts) == ("pending", 0)
    outcome = process_connection(conn)
    assert outcome.claimed == 0 and 20 < outcome.run_again_in <= 31


class _SlowRetryAfter(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(503)
        self.send_header("Retry-After", "7")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_retry_after_is_honoured(env, receiver, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowRetryAfter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        apply_acme(receiver, monkeypatch)
        with session_scope() as session:
            row = session.scalar(select(Connection).where(Connection.name == "hook"))
            row.settings = {**row.settings, "url": f"http://127.0.0.1:{server.server_port}/x"}
        _, [dlv], conn = accept()
        process_connection(conn)
        wait = (delivery(dlv).next_attempt_at - utcnow()).total_seconds()
        assert 6 < wait <= 7
    finally:
        server.shutdown()


def test_unreachable_and_timeout_are_transient(acme):
    _, [dlv], conn = accept()
    acme.stop()  # nothing listens any more: connection refused
    process_connection(conn)
    row = delivery(dlv)
    assert row.status == "pending" and "unreachable (ConnectError" in row.last_error


def test_expired_lease_is_taken_back_by_the_sweep(acme, monkeypatch):
    _, [dlv], conn = accept()
    with session_scope() as session:  # a worker claimed it, then died
        row = session.get(Delivery, dlv)
        row.status, row.attempts = "in_flight", 1
        row.leased_until = utcnow() - timedelta(seconds=1)
    assert sweep() == [conn]
    assert delivery(dlv).status == "pending"
    assert process_connection(conn).delivered == 1
    assert history(dlv)[-3:] == ["delivery.lease_expired", "delivery.attempt",
                                 "delivery.delivered"]


def test_sweep_ignores_fresh_pending_and_finds_stale(acme, monkeypatch):
    _, [dlv], conn = accept()
    assert sweep() == []  # just accepted: its broker message is on its way
    with session_scope() as session:
        session.get(Delivery, dlv).next_attempt_at = utcnow() - timedelta(minutes=5)
    assert sweep() == [conn]


def test_idempotency_key_returns_original(acme):
    first = accept(key="call-1")
    again = accept(key="call-1")
    assert first == again
    with session_scope() as session:
        assert len(list(session.scalars(select(Delivery)))) == 1


def test_drop_rule_creates_no_delivery(acme):
    with session_scope() as session:
        config = parsed_config(get_tenant(session, "acme"))
        msg = CallMessage.model_validate({**CALL, "call_type": "demarchage"},
                                         context={"region": "FR"})
        accepted = accept_message(session, "acme", config, msg)
        assert accepted.message.status == "dropped" and accepted.deliveries == []


def test_required_intake_field_named(acme):
    with pytest.raises(MessageRejected) as exc:
        accept({**CALL, "call_type": "urgence"})
    assert exc.value.field == "intake.adresse"


def test_backoff_grows_and_is_capped():
    settings = get_settings().model_copy(update={"delivery_backoff_base": 2.0,
                                                 "delivery_backoff_max": 60.0})
    import random

    rng = random.Random(1)
    waits = [backoff_seconds(n, settings, rng) for n in range(1, 10)]
    assert 1 <= waits[0] <= 2 and 2 <= waits[1] <= 4 and 4 <= waits[2] <= 8
    assert all(30 <= w <= 60 for w in waits[5:])


def test_payload_never_in_logs(acme, caplog):
    caplog.set_level("DEBUG")
    _, _, conn = accept()
    process_connection(conn)
    assert "Souhaite un rappel" not in caplog.text
    assert json.dumps(CALL["body"])[1:-1] not in caplog.text


def test_every_scheduled_retry_gets_a_wake_up(acme):
    """Two retries due at different times: after the first runs, the second is
    still scheduled (no beat needed)."""
    ids = [accept()[1][0] for _ in range(2)]
    conn = delivery(ids[0]).connection_id
    with session_scope() as session:
        for n, dlv in enumerate(ids):
            row = session.get(Delivery, dlv)
            row.next_attempt_at = utcnow() + timedelta(seconds=5 + 20 * n)
    outcome = process_connection(conn)
    assert outcome.claimed == 0 and 4 < outcome.run_again_in <= 5
    with session_scope() as session:
        session.get(Delivery, ids[0]).next_attempt_at = utcnow()
    outcome = process_connection(conn)
    assert outcome.delivered == 1 and 20 < outcome.run_again_in <= 25


def test_an_ordered_webhook_lets_nothing_overtake_a_retry(acme, hub_clock):
    """``ordered: true``: the first message fails (503); the two after it are not sent
    (no attempt spent) and are not claimed while the first waits for its retry; then
    all three land in the order taken. Without the line, the later two would land
    first."""
    from datetime import UTC, datetime

    from sync.store.models import Connection

    clock = hub_clock(datetime(2026, 11, 27, 9, 30, tzinfo=UTC))
    with session_scope() as session:
        hook = session.scalar(select(Connection).where(Connection.tenant_id == "acme"))
        hook.settings = {**hook.settings, "ordered": True}
    first, [d1], conn = accept()
    clock.advance(timedelta(seconds=1))  # hub_clock: taken one after the other
    _, [d2], _ = accept({**CALL, "subject": "Deuxième"})
    clock.advance(timedelta(seconds=1))
    _, [d3], _ = accept({**CALL, "subject": "Troisième"})
    acme.fail_first = 1.0  # a 503 to the first request of each key
    outcome = process_connection(conn)
    acme.fail_first = 0.0
    assert (outcome.claimed, outcome.retried, outcome.delivered) == (3, 1, 0)
    assert (acme.failures_sent, len(acme.hits)) == (1, 1)  # only the first was sent
    assert [(delivery(d).status, delivery(d).attempts) for d in (d1, d2, d3)] == [
        ("pending", 1), ("pending", 0), ("pending", 0)]
    assert history(d2) == ["delivery.attempt", "delivery.held"]
    assert delivery(d2).next_attempt_at <= utcnow() < delivery(d1).next_attempt_at
    assert process_connection(conn).claimed == 0  # d2 and d3 are due, but d1 is not
    force_due(d1)
    assert process_connection(conn).delivered == 3
    order = [acme.first[k].payload["message"]["subject"] for k in acme.first]
    assert order == ["Rappel devis", "Deuxième", "Troisième"]
    assert [delivery(d).attempts for d in (d1, d2, d3)] == [2, 1, 1]
    assert first == acme.first[delivery(d1).idempotency_key].payload["message"]["id"]
