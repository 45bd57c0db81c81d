"""The rights of the person: export everything held about a caller as one JSON
document, erase it everywhere in Relais. After an erase, the person's phone (every
stored format), name and email appear in no table of the PostgreSQL database and
in no log line of the run; the other caller's data is untouched and the counts
for reports remain."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import apply_acme, make_env
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from relais.api import create_app
from relais.auth import create_key
from relais.cli import app as cli_app
from sync.delivery import process_connection
from sync.privacy import audit
from sync.store.conflict_models import SyncConflict
from sync.store.db import get_engine, session_scope
from sync.store.directory import DirectoryContact, DirectoryPhone
from sync.store.models import Appointment, Connection, Delivery, ExternalLink, Message

NAME, EMAIL = "Jeanne Quatrefages", "jeanne.quatrefages@example.org"
FORMATS = ["+33612345678", "0612345678", "06 12 34 56 78", "06.12.34.56.78", "612345678",
           "+33 6 12 34 56 78"]
NEEDLES = [*FORMATS, NAME, "Quatrefages", EMAIL]
OTHER = {"name": "Paul Bernardin", "phone": "+33 7 98 76 54 32"}


def call(caller: dict, body: str, n: int) -> dict:
    return {"call_type": "message", "caller": caller, "subject": f"Rappel {caller['name']}",
            "body": body, "taken_by": "Sophie", "intake": {},
            "taken_at": (datetime(2026, 11, 27, 9, 0, tzinfo=UTC) + timedelta(minutes=n))
            .isoformat()}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def dump_text(url_engine: sa.Engine) -> str:
    """Every row of every table as text (PostgreSQL's row-to-text cast)."""
    with url_engine.connect() as conn:
        tables = conn.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
        rows = []
        for table in tables:
            rows += conn.execute(sa.text(f'SELECT CAST(t AS text) FROM "{table}" AS t')).scalars()
    return "\n".join(rows)


@pytest.fixture
def world(pg_url, monkeypatch, tmp_path, receiver, hub_clock):
    hub_clock(datetime(2026, 11, 27, 10, 0, tzinfo=UTC), ticking=True)
    make_env(monkeypatch, tmp_path, pg_url, None)
    secretary = apply_acme(receiver, monkeypatch)
    with session_scope() as session:
        admin = create_key(session, "admin", "acme", "dpo")
    client = TestClient(create_app(), raise_server_exceptions=True)
    ids = []
    jeanne = {"name": NAME, "phone": "06 12 34 56 78", "email": EMAIL}
    for n, (caller, body) in enumerate([
            (jeanne, f"Madame {NAME} rappelle au 06.12.34.56.78"),
            (jeanne | {"phone": "+33612345678"}, "Résultats d'analyse"),
            (OTHER, "Devis toiture")]):
        answer = client.post("/v1/tenants/acme/messages", json=call(caller, body, n),
                             headers=auth(secretary))
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])
    with session_scope() as session:
        hook = session.scalars(sa.select(Connection).where(Connection.name == "hook")).one()
    assert process_connection(hook.id).delivered == 3
    # a fourth call of Jeanne's, its delivery still pending when she asks
    answer = client.post("/v1/tenants/acme/messages",
                         json=call(jeanne | {"phone": "0612345678"}, "Encore", 3),
                         headers=auth(secretary))
    ids.append(answer.json()["id"])
    with session_scope() as session:
        session.add(ExternalLink(tenant_id="acme", connection_id=hook.id, local_type="message",
                                 local_id=ids[0], remote_type="note", remote_id="note-771"))
        apt = Appointment(tenant_id="acme", staff_id="alice", status="confirmed",
                          start=datetime(2026, 12, 1, 9, tzinfo=UTC),
                          end=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
                          caller={"name": NAME, "phone": "+33612345678", "email": EMAIL},
                          subject=f"Consultation — {NAME}", notes="Apporter l'ordonnance",
                          message_id=ids[1], calendar_id="alice@acme.example",
                          event_id="evt-9931", booked_by="Sophie")
        session.add(apt)
        session.flush()
        session.add(SyncConflict(tenant_id="acme", appointment_id=apt.id, field="subject",
                                 relais_value=f"Consultation — {NAME}",
                                 calendar_value="Consultation", winner="calendar",
                                 policy="calendar"))
        contact = DirectoryContact(
            id=f"{hook.id}:contacts:901", tenant_id="acme", connection_id=hook.id,
            provider="hubspot", crm_object="contacts", crm_id="901", name=NAME,
            name_key="jeanne quatrefages", emails=[EMAIL], phones=["+33612345678"])
        session.add(contact)
        session.flush()
        session.add(DirectoryPhone(contact_id=contact.id, tenant_id="acme", e164="+33612345678",
                                   reversed_digits="87654321633"))
        session.add(DirectoryContact(
            id=f"{hook.id}:contacts:902", tenant_id="acme", connection_id=hook.id,
            provider="hubspot", crm_object="contacts", crm_id="902", name=OTHER["name"],
            name_key="paul bernardin", emails=[], phones=["+33798765432"]))
    assert client.get(f"/v1/tenants/acme/messages/{ids[0]}",
                      headers=auth(secretary)).status_code == 200
    return client, {"secretary": secretary, "admin": admin}, ids


def test_export_finds_everything_by_any_phone_format_and_is_logged(world):
    client, keys, ids = world
    result = CliRunner().invoke(cli_app, ["privacy", "export", "--tenant", "acme",
                                          "--phone", "+33 6 12 34 56 78"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert sorted(m["id"] for m in doc["messages"]) == sorted([ids[0], ids[1], ids[3]])
    assert [a["event_id"] for a in doc["appointments"]] == ["evt-9931"]
    assert [c["crm_id"] for c in doc["directory"]] == ["901"]
    assert {d["message_id"] for d in doc["deliveries"]} == {ids[0], ids[1], ids[3]}
    assert {d["connection"] for d in doc["deliveries"]} == {"hook"}
    assert {d["status"] for d in doc["deliveries"]} == {"delivered", "pending"}
    assert doc["deliveries"][0]["url"].endswith("/hooks/acme/hook")
    assert [r["remote_id"] for r in doc["external_records"]] == ["note-771"]
    assert {e["event"] for e in doc["history"]} >= {"delivery.delivered"}
    assert [e["action"] for e in doc["access_log"]] == ["message.read"]
    assert doc["calendar_conflicts"][0]["relais_value"].endswith(NAME)
    by_email = client.post("/v1/tenants/acme/privacy/export", json={"email": EMAIL.upper()},
                           headers=auth(keys["admin"]))
    assert by_email.status_code == 200, by_email.text
    assert len(by_email.json()["messages"]) == 3
    assert client.post("/v1/tenants/acme/privacy/export", json={"phone": "0612345678"},
                       headers=auth(keys["secretary"])).status_code == 403
    bad = client.post("/v1/tenants/acme/privacy/export", json={"phone": "not a phone"},
                      headers=auth(keys["admin"]))
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "phone"
    assert client.post("/v1/tenants/acme/privacy/export", json={},
                       headers=auth(keys["admin"])).status_code == 422
    with session_scope(readonly=True) as session:
        actions = [e.action for e in audit.listing(session, "acme")]
        assert actions[:2] == ["privacy.export", "privacy.export"]
        assert audit.verify(session, "acme")[0].ok
    assert CliRunner().invoke(cli_app, ["privacy", "export", "--tenant", "acme",
                                        "--phone", "12"]).exit_code == 2


def test_after_an_erase_the_person_appears_nowhere(world, caplog):
    caplog.set_level(logging.DEBUG)
    client, keys, ids = world
    assert all(n in dump_text(get_engine()) for n in ["+33612345678", NAME, EMAIL])
    answer = client.post("/v1/tenants/acme/privacy/erase", json={"phone": "06 12 34 56 78"},
                         headers=auth(keys["admin"]))
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["erased"] == {"messages": 3, "appointments": 1, "directory_contacts": 1,
                                "deliveries": 3, "pending_cancelled": 1,
                                "history_events": result["erased"]["history_events"]}
    kinds = {(r["kind"], r.get("remote_id") or r.get("event_id") or r.get("crm_id")
              or r.get("delivery_id")) for r in result["sent_to"]}
    assert {("record", "note-771"), ("calendar_event", "evt-9931"),
            ("crm_contact", "901")} <= kinds
    assert sum(1 for k, _ in kinds if k == "delivery") == 2  # the two delivered webhooks

    dump = dump_text(get_engine())
    assert [n for n in NEEDLES if n in dump] == []
    assert OTHER["name"] in dump and "+33798765432" in dump  # the other caller is kept
    logged = "\n".join(r.getMessage() for r in caplog.records
                       if not r.name.startswith("sandbox"))
    assert [n for n in NEEDLES if n in logged] == []
    with session_scope(readonly=True) as session:
        # counts for reports: every message and appointment row is still there
        assert session.scalar(sa.select(sa.func.count()).select_from(Message)) == 4
        assert session.scalar(sa.select(sa.func.count()).where(
            Message.redaction == "erased")) == 3
        assert session.scalar(sa.select(sa.func.count()).select_from(Appointment)) == 1
        pending = session.scalar(sa.select(Delivery).where(Delivery.message_id == ids[3]))
        assert pending.status == "dead" and "erased" in (pending.last_error or "")
        assert session.scalar(sa.select(sa.func.count()).where(
            Delivery.status == "delivered")) == 3
        entry = audit.listing(session, "acme", limit=1)[0]
        assert entry.action == "privacy.erase" and entry.subject_id == result["person_ref"]
        assert audit.verify(session, "acme")[0].ok
    # a second request finds nothing left
    again = client.post("/v1/tenants/acme/privacy/export", json={"email": EMAIL},
                        headers=auth(keys["admin"])).json()
    assert again["messages"] == [] and again["directory"] == []


def test_erase_from_the_command_line(world):
    _, _, ids = world
    result = CliRunner().invoke(cli_app, ["privacy", "erase", "--tenant", "acme",
                                          "--email", EMAIL, "--yes"])
    assert result.exit_code == 0, result.output
    assert "messages 3" in result.output and "evt-9931" in result.output
    assert NAME not in result.output and "612345678" not in result.output
    with session_scope(readonly=True) as session:
        assert session.get(Message, ids[0]).caller == {}
    refused = CliRunner().invoke(cli_app, ["privacy", "erase", "--tenant", "nobody",
                                           "--email", EMAIL, "--yes"])
    assert refused.exit_code == 2
