"""A sensitive tenant's (or call type's) message content is encrypted at rest:
the PostgreSQL rows hold no readable subject, body, caller or intake answer, the
application reads plaintext, lookups by phone work through a keyed hash, and a
key rotation keeps both readable."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from channels_helpers import CALLER, SECRET_BODY, accept, setup_vet
from conftest import make_env
from fastapi.testclient import TestClient
from test_privacy_subject import dump_text

from relais.api import create_app
from relais.auth import create_key
from sandbox.testing import sms_gateway, sms_server, smtp_sandbox, smtp_server  # noqa: F401
from sync.privacy.subject import Person, erase, find
from sync.settings import reset_settings
from sync.store.db import get_engine, session_scope
from sync.store.models import Appointment, Message

READABLE = [SECRET_BODY, "Jeanne", "Dupont", "612345678", "j.dupont@exemple.fr", "Rappel urgent"]


def test_sensitive_rows_hold_no_readable_content(pg_url, monkeypatch, tmp_path, smtp_sandbox,
                                                 sms_gateway):
    env = make_env(monkeypatch, tmp_path, pg_url, None)
    setup_vet(monkeypatch, env, smtp_sandbox, sms_gateway)
    sealed_id, _, _ = accept("dossier")  # a sensitive call type
    plain_id, _, _ = accept("message", caller={"name": "Paul Bernardin",
                                                "phone": "+33798765432"}, body="Devis")
    with get_engine().connect() as conn:
        rows = conn.execute(sa.text("SELECT CAST(t AS text) FROM messages AS t WHERE id = :i"),
                            {"i": sealed_id}).scalars().all()
    assert rows and [w for w in READABLE if w in rows[0]] == []
    assert "sealed1:" in rows[0]
    dump = dump_text(get_engine())  # (the plain message shares the subject)
    assert [w for w in READABLE if w in dump and w != "Rappel urgent"] == []
    assert "Paul Bernardin" in dump  # not sensitive: plain
    with session_scope(readonly=True) as session:
        message = session.get(Message, sealed_id)
        assert message.sealed and message.body == SECRET_BODY
        assert message.caller["name"] == CALLER["name"] and message.subject == "Rappel urgent"
        assert not session.get(Message, plain_id).sealed
    with session_scope() as session:
        admin = create_key(session, "admin", "vet", "dpo")
    api = TestClient(create_app())
    shown = api.get(f"/v1/tenants/vet/messages/{sealed_id}",
                    headers={"Authorization": f"Bearer {admin}"})
    assert shown.status_code == 200 and shown.json()["body"] == SECRET_BODY
    with session_scope() as session:  # a sensitive tenant's appointment is sealed too
        apt = Appointment(tenant_id="vet", staff_id="jean", status="confirmed",
                          start=datetime(2026, 12, 1, 9, tzinfo=UTC),
                          end=datetime(2026, 12, 1, 9, 30, tzinfo=UTC), sealed=True,
                          caller={"name": CALLER["name"], "phone": "+33612345678"},
                          subject=f"Consultation — {CALLER['name']}", notes=SECRET_BODY,
                          booked_by="Sophie")
        session.add(apt)
        session.flush()
        apt_id = apt.id
        assert apt.subject.endswith(CALLER["name"])  # plaintext in memory after the write
    with get_engine().connect() as conn:
        row = conn.execute(sa.text("SELECT CAST(t AS text) FROM appointments AS t")).scalar()
    assert [w for w in READABLE if w in row] == []
    # a new key in front: old rows still readable, lookups by phone still match
    monkeypatch.setenv("RELAIS_SECRET_KEYS",
                       "3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=," + env.vars[
                           "RELAIS_SECRET_KEYS"])
    reset_settings()
    with session_scope() as session:
        found = find(session, "vet", Person.parse("06 12 34 56 78", None, "FR"), "FR")
        assert [m.id for m in found.messages] == [sealed_id]
        assert [a.id for a in found.appointments] == [apt_id]
        assert found.appointments[0].notes == SECRET_BODY
        assert found.messages[0].body == SECRET_BODY
        erase(session, found, "vet", actor="test")
    with session_scope(readonly=True) as session:
        message = session.get(Message, sealed_id)
        assert (message.caller, message.body, message.redaction) == ({}, "", "erased")
