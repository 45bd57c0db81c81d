"""Retention: a year of a tenant's data, run at a fixed hub clock. What expired is
redacted or purged in batches; what is still being delivered or escalated is not
touched; counts stay; the access log chain still verifies after its oldest entries
go; ``relais privacy status`` shows the run."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import FIXTURES, make_env
from typer.testing import CliRunner

from mappings import ConfigError, load_tenant_config
from relais.cli import app as cli_app
from sync.privacy import audit, retention
from sync.store.db import session_scope
from sync.store.models import (
    Appointment,
    AuditEvent,
    Connection,
    Delivery,
    Escalation,
    Message,
    new_id,
)
from sync.store.privacy_models import AccessLogEntry, AccessLogHead
from sync.tenants import apply_config

NOW = datetime(2027, 1, 15, 10, 0, tzinfo=UTC)
START = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
DAYS = 380  # 2026-01-01 .. 2027-01-15
PER_DAY = 3
RETENTION = "retention: {messages: 365d, bodies: 90d, call_events: 180d, audit: 365d}\n"


def tenant_yaml() -> str:
    return (FIXTURES / "acme.yaml").read_text() + RETENTION


def fill_a_year(hub_clock, monkeypatch) -> dict[str, str]:
    """Three calls a day for a year, each delivered and logged; one old delivery still
    pending, one old ladder still running; appointments; access log entries."""
    hub_clock(START)
    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", "https://hooks.example.org/acme")
    with session_scope() as session:
        apply_config(session, tenant_yaml(), "acme.yaml", actor="test")
        hook = session.scalars(sa.select(Connection).where(Connection.name == "hook")).one()
        messages, deliveries, events, appointments = [], [], [], []
        for day in range(DAYS):
            for n in range(PER_DAY):
                at = START + timedelta(days=day, hours=n)
                mid, did = new_id("msg"), new_id("dlv")
                messages.append({
                    "id": mid, "tenant_id": "acme", "call_type": "message", "urgency": "normal",
                    "caller": {"name": f"Appelant {day}-{n}", "phone": f"+3361234{day:04d}"},
                    "subject": f"Sujet {day}", "body": f"Corps {day}-{n}", "taken_by": "S",
                    "taken_at": at, "intake": {"motif": "x"}, "status": "accepted",
                    "callback_requested": False, "created_at": at})
                deliveries.append({
                    "id": did, "tenant_id": "acme", "message_id": mid, "connection_id": hook.id,
                    "rule": "tout-au-webhook", "action": "message.created",
                    "params": {"to": f"Appelant {day}-{n}"}, "status": "delivered",
                    "attempts": 1, "next_attempt_at": at, "idempotency_key": f"relais-{did}",
                    "created_at": at, "updated_at": at, "delivered_at": at,
                    "external_id": f"ext-{day}-{n}"})
                events.append({"tenant_id": "acme", "at": at, "kind": "delivery.delivered",
                               "subject_type": "delivery", "subject_id": did, "detail": {}})
            if day % 30 == 0:
                appointments.append({
                    "id": new_id("apt"), "tenant_id": "acme", "staff_id": "alice",
                    "start": START + timedelta(days=day, hours=5),
                    "end": START + timedelta(days=day, hours=5, minutes=30),
                    "status": "confirmed", "caller": {"name": f"Patient {day}"},
                    "subject": f"RDV Patient {day}", "notes": "n", "booked_by": "S",
                    "created_at": START + timedelta(days=day),
                    "updated_at": START + timedelta(days=day)})
        session.execute(sa.insert(Message), messages)
        session.execute(sa.insert(Delivery), deliveries)
        session.execute(sa.insert(AuditEvent), events)
        session.execute(sa.insert(Appointment), appointments)
        pending, laddered = messages[15]["id"], messages[21]["id"]  # days 5 and 7
        session.execute(sa.update(Delivery).where(Delivery.message_id == pending)
                        .values(status="pending"))
        session.add(Escalation(tenant_id="acme", message_id=laddered, ladder="x",
                               next_at=NOW + timedelta(minutes=5)))
    for week in range(0, DAYS, 7):  # an access log entry a week
        hub_clock(START + timedelta(days=week, hours=9))
        with session_scope() as session:
            audit.append(session, "acme", actor="key k (admin)", action="message.read",
                         subject_type="message", subject_id=messages[week * PER_DAY]["id"])
    return {"pending": pending, "laddered": laddered}


def count(session, *where) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(Message).where(*where))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_retention_run_on_a_year_of_data(backend, request, monkeypatch, tmp_path, hub_clock):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    make_env(monkeypatch, tmp_path, url, None)
    kept = fill_a_year(hub_clock, monkeypatch)
    hub_clock(NOW)
    assert retention.BATCH < DAYS * PER_DAY  # several batches
    started = time.perf_counter()
    outcome = retention.run_tenant("acme")
    elapsed = time.perf_counter() - started
    print(f"\n{backend}: retention run over {DAYS * PER_DAY} messages in {elapsed:.2f} s: "
          f"{outcome.counts}")
    assert outcome.error is None
    cut_bodies, cut_messages = NOW - timedelta(days=90), NOW - timedelta(days=365)
    cut_events, cut_audit = NOW - timedelta(days=180), NOW - timedelta(days=365)
    with session_scope(readonly=True) as session:
        total = DAYS * PER_DAY
        assert count(session) == total  # every call still counted
        old = count(session, Message.created_at < cut_messages)
        assert count(session, Message.redaction == "anonymised") == old - 2
        assert count(session, Message.created_at < cut_messages, Message.caller != sa.null(),
                     Message.redaction == "anonymised") == old - 2
        middle = count(session, Message.created_at >= cut_messages,
                       Message.created_at < cut_bodies)
        assert count(session, Message.redaction == "content") == middle
        assert count(session, Message.redaction.is_(None)) == total - old - middle + 2
        assert outcome.counts["messages_anonymised"] == old - 2
        assert outcome.counts["bodies_redacted"] == middle + old - 2
        for mid in kept.values():  # still being delivered / escalated: untouched
            message = session.get(Message, mid)
            assert message.redaction is None and message.body and message.caller["name"]
        pending = session.scalars(sa.select(Delivery).where(
            Delivery.message_id == kept["pending"])).one()
        assert pending.status == "pending" and pending.params["to"]
        anonymised = session.scalars(sa.select(Message).where(
            Message.redaction == "anonymised").limit(1)).one()
        assert (anonymised.caller, anonymised.body, anonymised.subject) == ({}, "", "")
        assert session.scalars(sa.select(Delivery.params).where(
            Delivery.message_id == anonymised.id)).one() == {"redacted": True}
        content_only = session.scalars(sa.select(Message).where(
            Message.redaction == "content").limit(1)).one()
        assert content_only.caller["name"] and content_only.body == ""
        assert content_only.intake == {}
        recent = session.scalars(sa.select(Message).where(
            Message.created_at >= cut_bodies).limit(1)).one()
        assert recent.body and recent.redaction is None
        # delivery histories: older than 180 days gone, except the pending delivery's
        events = list(session.scalars(sa.select(AuditEvent.at).where(
            AuditEvent.tenant_id == "acme", AuditEvent.kind == "delivery.delivered")))
        assert sum(1 for at in events if at < cut_events) == 1
        assert outcome.counts["call_events_deleted"] > 0
        # appointments ended before the cutoff anonymised
        appointments = list(session.scalars(sa.select(Appointment)))
        assert all((a.redaction == "anonymised") == (a.end < cut_messages) for a in appointments)
        assert all(a.caller == {} for a in appointments if a.end < cut_messages)
        # access log: the expired prefix is gone and the chain still verifies
        ats = list(session.scalars(sa.select(AccessLogEntry.at)))
        assert ats and min(ats) >= cut_audit
        assert outcome.counts["access_log_deleted"] > 0
        head = session.get(AccessLogHead, "acme")
        assert head.base_seq == outcome.counts["access_log_deleted"]
        assert audit.verify(session, "acme")[0].ok
        # referential integrity: every delivery still points to its message
        orphans = session.scalar(sa.select(sa.func.count()).select_from(Delivery).where(
            ~sa.exists().where(Message.id == Delivery.message_id)))
        assert orphans == 0
    again = retention.run_tenant("acme")
    assert not any(again.counts.values()), again.counts
    result = CliRunner().invoke(cli_app, ["privacy", "status", "--json"])
    assert result.exit_code == 0 and '"messages": "365d"' in result.output
    assert '"last_run_finished_at": "2027-01-15T10:00:00Z"' in result.output


def test_retention_periods_are_checked_with_their_line():
    text = (FIXTURES / "acme.yaml").read_text()
    env = {"RELAIS_TENANT_ACME_HOOK_URL": "https://hooks.example.org/acme"}
    config = load_tenant_config(text, "acme.yaml", env=env)
    assert config.retention.bodies == timedelta(days=180)  # the CNIL-based defaults
    assert config.retention.audit == timedelta(days=365)
    lines = len(text.splitlines())
    with pytest.raises(ConfigError) as raised:
        load_tenant_config(text + "retention:\n  bodies: 6m\n  audit: 20y\n", "acme.yaml",
                           env=env)
    found = [str(i) for i in raised.value.issues]
    assert any(f"acme.yaml:{lines + 2}:" in f and "months" in f and "180d" in f for f in found)
    assert any(f"acme.yaml:{lines + 3}:" in f and "too long" in f for f in found)
    with pytest.raises(ConfigError) as raised:
        load_tenant_config(text + "retention: {messages: 30d, bodies: 60d}\n", "acme.yaml",
                           env=env)
    assert "bodies: 30d or less" in str(raised.value.issues[0])


def test_the_beat_runs_retention_hourly(env):
    import worker
    from sync.queue import RETENTION_TASK, make_celery

    entry = make_celery().conf.beat_schedule["privacy-retention"]
    assert entry["task"] == RETENTION_TASK and entry["schedule"] == 3600.0
    assert worker.privacy_retention.name == RETENTION_TASK
    assert worker.privacy_retention() == {}  # no tenant yet: nothing to run
