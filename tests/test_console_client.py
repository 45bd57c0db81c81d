"""The client's page: their tenant's messages and appointments, newest first,
filters by date and status, a stored "handled" mark; tenant-scoped (404)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from test_console_users import PASSWORD, csrf_of, hook_tenant, signed_in_client

from relais.console.client import MessageMark
from relais.console.users import create_user
from sync.domain import CallMessage
from sync.outbox import accept_message
from sync.store.db import session_scope
from sync.store.models import Appointment, Tenant
from sync.tenants import apply_config, parsed_config

DEC1 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DEC2 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def take(tenant_id: str, subject: str, at: datetime) -> str:
    with session_scope() as session:
        config = parsed_config(session.get(Tenant, tenant_id))
        msg = CallMessage.model_validate(
            {"call_type": "message", "caller": {"name": "Jeanne Martin",
                                                "phone": "+33612345678"},
             "subject": subject, "taken_by": "Sophie", "taken_at": at.isoformat()},
            context={"region": "FR"})
        return accept_message(session, tenant_id, config, msg, None, now=at).message.id


def test_client_sees_marks_and_filters_only_their_tenant(env, hub_clock):
    hub_clock(DEC2)
    with session_scope() as session:
        apply_config(session, hook_tenant("alpha", "04 72 00 00 11"), "alpha.yaml", actor="t")
        apply_config(session, hook_tenant("beta", "04 72 00 00 22"), "beta.yaml", actor="t")
        create_user(session, "c@alpha.test", "Client Alpha", "client", PASSWORD,
                    tenant_id="alpha")
    older = take("alpha", "Devis cuisine", DEC1)
    newer = take("alpha", "Rappeler Jeanne", DEC2)
    theirs = take("beta", "Secret de beta", DEC2)
    with session_scope() as session:
        session.add(Appointment(tenant_id="alpha", staff_id="x", appointment_type="rdv",
                                start=DEC2, end=DEC2.replace(hour=10), status="cancelled",
                                caller={"name": "Paul Dupont"}, subject="RDV",
                                notes="", booked_by="Sophie"))
    client, _ = signed_in_client("c@alpha.test")
    page = client.get("/t/alpha/inbox")
    assert page.status_code == 200
    text = page.text
    assert text.index("Rappeler Jeanne") < text.index("Devis cuisine")  # newest first
    assert "Secret de beta" not in text and "Paul Dupont" in text
    assert f'id="msg-{newer}" class="unread"' in text

    # Tenant-scoped: another tenant's page and message answer 404.
    assert client.get("/t/beta/inbox").status_code == 404
    denied = client.post(f"/t/beta/inbox/messages/{theirs}/handled",
                         data={"csrf_token": csrf_of(text), "handled": "1"})
    assert denied.status_code == 404
    smuggled = client.post(f"/t/alpha/inbox/messages/{theirs}/handled",
                           data={"csrf_token": csrf_of(text), "handled": "1"})
    assert smuggled.status_code == 404
    assert client.post(f"/t/alpha/inbox/messages/{newer}/handled",
                       data={"handled": "1"}).status_code == 403  # no CSRF token

    # Marked handled (twice: one mark), stored with who; filters by state and date.
    for _ in range(2):
        done = client.post(f"/t/alpha/inbox/messages/{newer}/handled",
                           data={"csrf_token": csrf_of(text), "handled": "1"},
                           follow_redirects=False)
        assert done.status_code == 303
    with session_scope(readonly=True) as session:
        marks = session.scalars(select(MessageMark)).all()
        assert [(m.message_id, m.tenant_id, m.handled_by) for m in marks] == [
            (newer, "alpha", "Client Alpha")]
    handled = client.get("/t/alpha/inbox?handled=handled").text
    assert "Rappeler Jeanne" in handled and "Devis cuisine" not in handled
    opened = client.get("/t/alpha/inbox?handled=open").text
    assert "Devis cuisine" in opened and "Rappeler Jeanne" not in opened
    day = client.get("/t/alpha/inbox?day_from=2026-12-01&day_to=2026-12-01").text
    assert "Devis cuisine" in day and "Rappeler Jeanne" not in day and "Paul Dupont" not in day
    confirmed = client.get("/t/alpha/inbox?appointment_status=confirmed").text
    assert "Paul Dupont" not in confirmed
    assert client.get("/t/alpha/inbox?day_from=hier").status_code == 422
    assert older  # reopened: the mark goes
    client.post(f"/t/alpha/inbox/messages/{newer}/handled",
                data={"csrf_token": csrf_of(text), "handled": "0"})
    with session_scope(readonly=True) as session:
        assert session.scalars(select(MessageMark)).all() == []
