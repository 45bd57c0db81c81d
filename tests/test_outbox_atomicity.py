"""The transactional outbox on a real PostgreSQL: a message and its deliveries
are written in one transaction, so a failure after the message row is written
(here: the database itself refusing the deliveries, through a trigger) leaves
neither the message, nor any delivery, nor its audit event."""

from __future__ import annotations

import pytest
from conftest import apply_acme, make_env
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from relais.api import create_app
from sync.store.db import dispose_engines, session_scope
from sync.store.models import AuditEvent, Delivery, Message

CALL = {
    "call_type": "message",
    "caller": {"name": "Jeanne Dupont", "phone": "06 12 34 56 78"},
    "subject": "Rappel devis",
    "body": "Souhaite un rappel.",
    "taken_by": "Sophie",
    "taken_at": "2026-11-27T10:15:00+01:00",
}

REFUSE_DELIVERIES = """
CREATE FUNCTION relais_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'injected: deliveries refused'; END $$;
CREATE TRIGGER relais_test_refuse BEFORE INSERT ON deliveries
FOR EACH ROW EXECUTE FUNCTION relais_test_refuse();
"""


@pytest.fixture
def pg_api(pg_url, receiver, monkeypatch, tmp_path):
    make_env(monkeypatch, tmp_path, pg_url, None)  # PostgreSQL, filesystem broker
    key = apply_acme(receiver, monkeypatch)
    client = TestClient(create_app(), raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {key}"
    yield client
    dispose_engines()


def counts() -> tuple[int, int, int]:
    with session_scope(readonly=True) as session:
        return (
            session.scalar(select(func.count()).select_from(Message)) or 0,
            session.scalar(select(func.count()).select_from(Delivery)) or 0,
            session.scalar(select(func.count()).select_from(AuditEvent)
                           .where(AuditEvent.subject_type == "message")) or 0,
        )  # fmt: skip


def test_a_failure_after_the_message_insert_leaves_nothing(pg_api):
    with session_scope() as session:
        session.execute(text(REFUSE_DELIVERIES))
    failed = pg_api.post("/v1/tenants/acme/messages", json=CALL,
                         headers={"Idempotency-Key": "tel-atomic"})
    assert failed.status_code == 500, failed.text
    assert counts() == (0, 0, 0)

    # The same request once the database takes deliveries again: all of it, once.
    with session_scope() as session:
        session.execute(text("DROP TRIGGER relais_test_refuse ON deliveries"))
    accepted = pg_api.post("/v1/tenants/acme/messages", json=CALL,
                           headers={"Idempotency-Key": "tel-atomic"})
    assert accepted.status_code == 202, accepted.text
    assert counts() == (1, 1, 1)
