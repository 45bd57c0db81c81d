"""Two-way sync conflicts (an appointment changed in Relais AND in the calendar since the
last pull, resolved per field by the tenant's policy) and the notices sent when the
office moves or cancels an appointment in its calendar — against the Google Calendar
sandbox through the real connector, and the SMTP sandbox through Relais's own sender."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from booking_helpers import CLAIRE, TENANT, auth, deliveries, setup_tenant
from conftest import FIXTURES
from fastapi.testclient import TestClient
from sqlalchemy import select

from mappings.config import load_tenant_config
from mappings.errors import ConfigError
from relais.api import create_app
from sandbox.testing import (  # noqa: F401  (fixtures)
    google_emulator,
    google_server,
    smtp_sandbox,
    smtp_server,
)
from sync import calendar_sync as cs
from sync.booking import BookingRequest, book, reschedule
from sync.delivery import process_connection
from sync.settings import reset_settings
from sync.store.conflict_models import SyncConflict
from sync.store.db import session_scope
from sync.store.models import Appointment, AuditEvent, Connection, Delivery
from sync.tenants import apply_config

NOW = datetime(2027, 3, 20, 12, 0, tzinfo=UTC)
TEN = datetime.fromisoformat("2027-03-23T10:00:00+01:00")
TWO_PM = datetime.fromisoformat("2027-03-23T14:00:00+01:00")


def paris(clock: str) -> dict[str, str]:
    return {"dateTime": f"2027-03-23T{clock}:00", "timeZone": "Europe/Paris"}


def configure(extra: str = "", *, sensitive: bool = False) -> None:
    text = (FIXTURES / "booking.yaml").read_text()
    if sensitive:
        text = text.replace("phone_region: FR\n", "phone_region: FR\nsensitive: true\n", 1)
    with session_scope() as session:
        apply_config(session, text + extra, "booking.yaml", actor="test")


@pytest.fixture
def google(hub_clock, env, google_emulator, monkeypatch):
    hub_clock(NOW, ticking=True)  # the hub's; providers keep the machine's
    keys = setup_tenant(google_emulator, monkeypatch)
    google_emulator.keys = keys
    yield google_emulator
    google_emulator.clock.set_offset(0)


def conn_id(name: str = "agenda") -> str:
    with session_scope(readonly=True) as session:
        return session.scalar(select(Connection.id).where(
            Connection.tenant_id == TENANT, Connection.name == name))  # fmt: skip


def make_booking(key: str = "k-1", start: datetime = TEN) -> Appointment:
    outcome = book(TENANT, BookingRequest(
        staff_id="claire", type_id="consultation", start=start,
        caller={"name": "Mme Martin", "phone": "06 11 22 33 44"}, subject="Consultation",
        notes="Dossier 42", idempotency_key=key, booked_by="sophie"))  # fmt: skip
    assert outcome.appointment.status == "confirmed"
    return outcome.appointment


def appointment(apt_id: str) -> Appointment:
    with session_scope(readonly=True) as session:
        return session.get(Appointment, apt_id)


def conflicts(apt_id: str) -> list[SyncConflict]:
    with session_scope(readonly=True) as session:
        return list(session.scalars(select(SyncConflict).where(
            SyncConflict.appointment_id == apt_id).order_by(SyncConflict.id)))  # fmt: skip


def event_of(emu, apt: Appointment) -> dict:
    (found,) = [e for e in emu.events(CLAIRE) if e["id"] == apt.event_id]
    return found


# ---------------------------------------------------------------- conflicts


def test_calendar_policy_takes_the_calendars_time(google):
    configure("sync:\n  conflicts:\n    start: calendar\n")
    conn = conn_id()
    apt = make_booking()
    cs.pull_connection(conn)
    reschedule(TENANT, apt.id, start=TWO_PM, actor="sophie")  # Relais moves it to 14:00
    google.patch_event(CLAIRE, apt.event_id, {"start": paris("16:00"), "end": paris("17:00")})
    outcome = cs.pull_connection(conn)
    assert (outcome.conflicts, outcome.moved, outcome.written_back) == (1, 1, 0)
    row = appointment(apt.id)
    assert row.start == datetime(2027, 3, 23, 15, 0, tzinfo=UTC)
    assert row.end == datetime(2027, 3, 23, 16, 0, tzinfo=UTC)
    (conflict,) = conflicts(apt.id)
    assert (conflict.field, conflict.winner, conflict.policy) == ("start", "calendar", "calendar")
    assert conflict.relais_value == {"start": "2027-03-23T13:00:00Z", "end": "2027-03-23T14:00:00Z"}
    assert conflict.calendar_value["start"] == "2027-03-23T15:00:00Z"
    assert conflict.calendar_modified_at is not None and conflict.relais_modified_at is not None
    # one appointment.updated for our move, one for the office's
    assert deliveries(apt.id).count(("appointment.updated", "pending")) == 2
    assert cs.pull_connection(conn).conflicts == 0  # settled: nothing more


def test_relais_policy_keeps_ours_and_writes_the_event_back(google):
    configure("sync:\n  conflicts:\n    start: relais\n    subject: relais\n")
    conn = conn_id()
    apt = make_booking()
    cs.pull_connection(conn)
    reschedule(TENANT, apt.id, start=TWO_PM, subject="Consultation divorce", actor="sophie")
    sent = deliveries(apt.id)
    google.patch_event(CLAIRE, apt.event_id, {"start": paris("16:00"), "end": paris("17:00"),
                                              "summary": "Retitré au cabinet"})  # fmt: skip
    outcome = cs.pull_connection(conn)
    assert (outcome.conflicts, outcome.moved, outcome.written_back) == (2, 0, 1)
    row = appointment(apt.id)
    assert row.start == datetime(2027, 3, 23, 13, 0, tzinfo=UTC)
    assert row.subject == "Consultation divorce"
    assert deliveries(apt.id) == sent  # the CRM already has Relais's values
    event = event_of(google, row)  # the calendar shows Relais's values again
    assert event["start"]["dateTime"].startswith("2027-03-23T14:00:00")
    assert event["summary"] == "Consultation divorce"
    assert event["etag"] == row.event_etag
    assert sorted((c.field, c.winner, c.policy) for c in conflicts(apt.id)) == [
        ("start", "relais", "relais"), ("subject", "relais", "relais")]
    again = cs.pull_connection(conn)  # our write-back comes back: recognised, not echoed
    assert (again.own_writes, again.conflicts, again.moved) == (1, 0, 0)
    assert "appointment.written_back" in [k for k, in _audit(apt.id)]


def _audit(apt_id: str) -> list[tuple[str]]:
    with session_scope(readonly=True) as session:
        return [tuple(r) for r in session.execute(select(AuditEvent.kind).where(
            AuditEvent.subject_id == apt_id).order_by(AuditEvent.id))]  # fmt: skip


def test_latest_wins_by_the_providers_clock_when_no_policy_applies(google):
    conn = conn_id()  # booking.yaml has no `sync:`: every field is `latest`
    early = make_booking("k-1")
    late = make_booking("k-2", datetime.fromisoformat("2027-03-23T11:00:00+01:00"))
    cs.pull_connection(conn)
    reschedule(TENANT, early.id, start=TWO_PM, notes="Apporter le contrat", actor="sophie")
    reschedule(TENANT, late.id, start=datetime.fromisoformat("2027-03-23T15:00:00+01:00"),
               actor="sophie")
    # The office edited `early` an hour before our PATCH by Google's clock…
    google.clock.set_offset(-3600)
    google.patch_event(CLAIRE, early.event_id, {"start": paris("16:00"), "end": paris("17:00"),
                                                "description": "Appelant : Mme Martin\n\n"
                                                "Pièces à fournir\n\nRéservé par Relais (x)"})
    google.clock.set_offset(0)  # …and `late` after it
    google.patch_event(CLAIRE, late.event_id, {"start": paris("09:00"), "end": paris("10:00")})
    outcome = cs.pull_connection(conn)
    assert (outcome.conflicts, outcome.moved, outcome.written_back) == (3, 1, 1)
    kept = appointment(early.id)
    assert kept.start == datetime(2027, 3, 23, 13, 0, tzinfo=UTC)
    assert kept.notes == "Apporter le contrat"
    assert sorted((c.field, c.winner, c.policy) for c in conflicts(early.id)) == [
        ("notes", "relais", "latest"), ("start", "relais", "latest")]
    notes = next(c for c in conflicts(early.id) if c.field == "notes")
    assert (notes.relais_value, notes.calendar_value) == ("Apporter le contrat", "Pièces à fournir")
    assert "Apporter le contrat" in event_of(google, kept)["description"]
    taken = appointment(late.id)
    assert taken.start == datetime(2027, 3, 23, 8, 0, tzinfo=UTC)
    ((field, winner, policy),) = [(c.field, c.winner, c.policy) for c in conflicts(late.id)]
    assert (field, winner, policy) == ("start", "calendar", "latest")


def test_a_field_only_the_calendar_changed_is_no_conflict(google):
    configure("sync:\n  conflicts:\n    start: relais\n")
    conn = conn_id()
    apt = make_booking()
    cs.pull_connection(conn)
    reschedule(TENANT, apt.id, start=None, subject="Nouveau titre", actor="sophie")
    google.patch_event(CLAIRE, apt.event_id, {"start": paris("16:00"), "end": paris("17:00")})
    outcome = cs.pull_connection(conn)
    assert (outcome.conflicts, outcome.moved) == (0, 1)  # Relais never touched the time
    assert appointment(apt.id).start == datetime(2027, 3, 23, 15, 0, tzinfo=UTC)
    assert conflicts(apt.id) == []


def test_conflicts_are_visible_on_the_appointment_and_to_the_admin(google):
    configure("sync:\n  conflicts:\n    start: calendar\n")
    conn = conn_id()
    apt = make_booking()
    cs.pull_connection(conn)
    reschedule(TENANT, apt.id, start=TWO_PM, actor="sophie")
    google.patch_event(CLAIRE, apt.event_id, {"start": paris("16:00"), "end": paris("17:00")})
    cs.pull_connection(conn)
    client = TestClient(create_app())
    keys = google.keys
    body = client.get(f"/v1/tenants/{TENANT}/appointments/{apt.id}",
                      headers=auth(keys["secretary"])).json()
    (shown,) = body["conflicts"]
    assert shown["field"] == "start" and shown["winner"] == "calendar"
    assert shown["relais_value"]["start"] == "2027-03-23T13:00:00Z"
    assert shown["calendar_value"]["start"] == "2027-03-23T15:00:00Z"
    url = f"/v1/tenants/{TENANT}/sync/conflicts"
    assert client.get(url, headers=auth(keys["secretary"])).status_code == 403
    listed = client.get(url, headers=auth(keys["admin"]), params={"appointment_id": apt.id})
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()["conflicts"]] == [shown["id"]]
    assert client.get(url, params={"appointment_id": "apt_nope"},
                      headers=auth(keys["admin"])).json() == {"conflicts": []}


def test_conflict_and_notice_settings_are_checked_with_file_and_line():
    text = (FIXTURES / "booking.yaml").read_text()
    env = {"RELAIS_TENANT_CABINET_TEST_GOOGLE_URL": "http://x",
           "RELAIS_TENANT_CABINET_TEST_CRM_URL": "http://y"}
    good = load_tenant_config(text + "sync:\n  conflicts:\n    notes: relais\n"
                              "notify_on_calendar_change:\n  to: [claire]\n", env=env)
    assert good.sync.conflicts.notes == "relais" and good.sync.conflicts.start is None
    assert good.notify_on_calendar_change.channel == "email"
    lines = text.count("\n")
    with pytest.raises(ConfigError) as bad:
        load_tenant_config(text + "sync:\n  conflicts:\n    start: office\n", "t.yaml", env=env)
    ((line, code),) = {(i.line, i.code) for i in bad.value.issues}
    assert (line, code) == (lines + 3, "invalid_choice")  # start: office
    with pytest.raises(ConfigError) as bad:
        load_tenant_config(text + "notify_on_calendar_change:\n  to: [clair, paul]\n"
                           "  channel: sms\n  template: nope\n", "t.yaml", env=env)  # fmt: skip
    found = {(i.line, i.code) for i in bad.value.issues}
    assert (lines + 2, "unknown_staff") in found  # clair: did you mean claire?
    assert (lines + 2, "no_address") in found  # paul has no phone for an SMS
    assert (lines + 4, "unknown_template") in found
    assert all(i.file == "t.yaml" for i in bad.value.issues)


# ---------------------------------------------------------------- notices

NOTICE = "notify_on_calendar_change:\n  to: [claire, accueil@cabinet.test]\n  channel: email\n"


@pytest.fixture
def mail(google, smtp_sandbox, monkeypatch, env):
    values = {"RELAIS_EMAIL_HOST": smtp_sandbox.host, "RELAIS_EMAIL_PORT": str(smtp_sandbox.port),
              "RELAIS_EMAIL_SECURITY": smtp_sandbox.mode,
              "RELAIS_EMAIL_USERNAME": smtp_sandbox.username,
              "RELAIS_EMAIL_PASSWORD": smtp_sandbox.password,
              "RELAIS_EMAIL_FROM_ADDRESS": "relais@relais-sandbox.test",
              "RELAIS_EMAIL_CA_FILE": smtp_sandbox.ca_file or ""}  # fmt: skip
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    env.vars.update(values)
    reset_settings()
    yield smtp_sandbox
    reset_settings()


def send_notices() -> None:
    with session_scope(readonly=True) as session:
        ids = list(session.scalars(select(Delivery.connection_id).where(
            Delivery.action == "appointment.notice").distinct()))  # fmt: skip
    assert ids
    for connection_id in ids:
        while process_connection(connection_id).claimed:
            pass


def test_cancelled_in_the_calendar_is_told_by_email_in_french(google, mail):
    configure(NOTICE)
    conn = conn_id()
    apt = make_booking()
    cs.pull_connection(conn)
    google.delete_event(CLAIRE, apt.event_id)
    assert cs.pull_connection(conn).cancelled == 1
    send_notices()
    mails = mail.wait_for(2)
    assert sorted(m.rcpt_tos[0] for m in mails) == ["accueil@cabinet.test", CLAIRE]
    text = mails[0].part("plain")
    assert ("Votre rendez-vous du 23/03/2027 de 10:00 avec Mme Martin a été annulé "
            "par le cabinet.") in text  # fmt: skip
    assert mails[0].message["Subject"] == "Rendez-vous annulé (Cabinet Test)"
    with session_scope(readonly=True) as session:
        states = session.scalars(select(Delivery.status).where(
            Delivery.action == "appointment.notice")).all()  # fmt: skip
    assert sorted(states) == ["delivered", "delivered"]


def test_moved_in_the_calendar_notice_and_sensitive_tenant_without_the_caller(google, mail):
    configure(NOTICE.replace("[claire, accueil@cabinet.test]", "[accueil@cabinet.test]"),
              sensitive=True)
    conn = conn_id()
    apt = make_booking()
    cs.pull_connection(conn)
    google.patch_event(CLAIRE, apt.event_id, {"start": paris("15:00"), "end": paris("16:00")})
    assert cs.pull_connection(conn).moved == 1
    send_notices()
    (sent,) = mail.wait_for(1)
    text = sent.part("plain")
    assert ("Votre rendez-vous du 23/03/2027 de 10:00 a été déplacé par le cabinet au "
            "23/03/2027 à 15:00.") in text  # fmt: skip
    assert "Martin" not in sent.message.as_string() and "06 11" not in text
    with session_scope(readonly=True) as session:
        params = session.scalars(select(Delivery.params).where(
            Delivery.action == "appointment.notice")).one()  # fmt: skip
    assert "Martin" not in str(params)  # nor is it stored with the delivery


def test_no_notice_without_the_setting(google, mail):
    conn = conn_id()
    apt = make_booking()
    cs.pull_connection(conn)
    google.delete_event(CLAIRE, apt.event_id)
    assert cs.pull_connection(conn).cancelled == 1
    with session_scope(readonly=True) as session:
        assert session.scalars(select(Delivery).where(
            Delivery.action == "appointment.notice")).all() == []  # fmt: skip
