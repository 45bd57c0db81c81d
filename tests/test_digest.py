"""Digests: messages collected per recipient and due time, one summary at due time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from channels_helpers import VET, accept, deliver_all, deliveries_of, setup_vet
from sqlalchemy import select

from sandbox.testing import sms_gateway, sms_server, smtp_sandbox, smtp_server  # noqa: F401
from sync.delivery import ReplayRefused, replay, sweep
from sync.digest import ITEM, SUMMARY
from sync.store.db import session_scope
from sync.store.models import Connection, Delivery, utcnow
from sync.tenants import apply_config


@pytest.fixture
def vet(env, monkeypatch, smtp_sandbox, sms_gateway):
    setup_vet(monkeypatch, env, smtp_sandbox, sms_gateway)


def summaries() -> list[Delivery]:
    with session_scope(readonly=True) as session:
        rows = list(session.scalars(select(Delivery).where(Delivery.action == SUMMARY)))
        for row in rows:
            session.expunge(row)
        return rows


def make_due(delivery_id: str) -> None:
    with session_scope() as session:
        session.get(Delivery, delivery_id).next_attempt_at = utcnow()


def test_three_messages_one_summary_at_due_time(vet, smtp_sandbox, sms_gateway):
    taken = datetime.now(UTC).replace(microsecond=0).isoformat()
    ids = [accept("message", taken_at=taken, body=f"Demande numero {n}")[0] for n in range(3)]
    [summary] = summaries()
    items = [d for m in ids for d in deliveries_of(m)]
    assert [d.action for d in items] == [ITEM] * 3
    assert {d.digest_key for d in items} == {summary.id}
    assert all(d.next_attempt_at == summary.next_attempt_at for d in items)
    assert summary.next_attempt_at > utcnow()  # the next 30-minute mark
    deliver_all()
    assert sweep() == []  # collected items are not "stale": nothing to re-enqueue
    assert smtp_sandbox.messages == []  # none before due time
    make_due(summary.id)
    deliver_all()
    [mail] = smtp_sandbox.wait_for(1)
    assert mail.rcpt_tos == ["chef@vet.example"]
    assert mail.message["Subject"] == "Résumé : 3 message(s) (Clinique Test)"
    text = mail.part("plain")
    assert [f"Demande numero {n}" in text for n in range(3)] == [True] * 3
    assert text.count("Message : Rappel urgent") == 3
    rows = [d for m in ids for d in deliveries_of(m)]
    assert {(d.status, d.external_id) for d in rows} == {("delivered", mail.message_id)}
    with pytest.raises(ReplayRefused, match="digest"):
        with session_scope() as session:
            replay(session, session.get(Delivery, rows[0].id), actor="test")
    # a message arriving after the summary went out starts a new one
    late = accept("message", taken_at=taken)[0]
    assert len(summaries()) == 2
    [item] = deliveries_of(late)
    assert item.digest_key != summary.id and item.status == "pending"


def test_summary_respects_redaction(vet, smtp_sandbox, monkeypatch):
    # the digest's call type made sensitive: its items carry redact
    sensitive = VET.replace("{id: message, label: Message}",
                            "{id: message, label: Message, sensitive: true}")
    assert sensitive != VET

    with session_scope() as session:
        apply_config(session, sensitive, "vet.yaml", actor="test")
    taken = datetime.now(UTC).replace(microsecond=0).isoformat()
    ids = [accept("message", taken_at=taken, body=f"Secret {n}")[0] for n in range(2)]
    [summary] = summaries()
    make_due(summary.id)
    deliver_all()
    [mail] = smtp_sandbox.wait_for(1)
    raw = mail.raw.decode() + mail.part("plain") + mail.part("html")
    assert "Secret" not in raw and "Jeanne" not in raw and "Rappel urgent" not in raw
    assert raw.count("/v1/m/") >= 2
    assert all(d.status == "delivered" for m in ids for d in deliveries_of(m))
    with session_scope(readonly=True) as session:
        assert session.scalar(select(Connection.name).where(
            Connection.id == summary.connection_id)) == "relais-email"
