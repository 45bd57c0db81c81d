"""A sensitive tenant's (or call type's) message content is encrypted at rest:
the PostgreSQL rows hold no readable subject, body, caller or intake answer, the
application reads plaintext, lookups by phone work through a keyed hash, and a
key rotation keeps both readable. The same holds for a sensitive tenant's contact
directory and calendar conflicts; ``relais privacy reseal`` seals rows written
before the tenant became sensitive."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from channels_helpers import CALLER, SECRET_BODY, accept, setup_vet
from conftest import FIXTURES, make_env
from crm_helpers import drain
from fastapi.testclient import TestClient
from test_privacy_subject import dump_text
from typer.testing import CliRunner

from relais.api import create_app
from relais.auth import create_key
from relais.cli import app as cli_app
from sandbox.testing import (  # noqa: F401
    hubspot_emulator,
    hubspot_server,
    sms_gateway,
    sms_server,
    smtp_sandbox,
    smtp_server,
)
from sync.connections import set_credentials
from sync.contacts import (
    is_known_caller,
    lookup_phone,
    parse_phone_query,
    pull_connection,
    search_name,
)
from sync.domain import CallMessage
from sync.outbox import accept_message
from sync.privacy.subject import Person, erase, find
from sync.settings import reset_settings
from sync.store.conflict_models import SyncConflict
from sync.store.db import get_engine, session_scope
from sync.store.models import Appointment, Connection, ExternalLink, Message
from sync.tenants import apply_config, get_tenant, parsed_config

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
                       NEW_KEY + "," + env.vars[
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


# ------------------------------------------------------------------ directory and conflicts

CONTACT = {"firstname": "Albertine", "lastname": "Quatrefages",
           "email": "A.Quatrefages@exemple.fr", "phone": "+33 6 45 67 89 12",
           "company": "Élevage Lunaire"}
# the name, email, company, the number's digits and its reversed digits
CONTACT_READABLE = ["Albertine", "Quatrefages", "quatrefages", "exemple.fr", "Lunaire",
                    "645678912", "219876546", "Consultation", "Rappel"]
NEW_KEY = "3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def tables_text(tables: tuple[str, ...]) -> str:
    """Every row of these tables as text (PostgreSQL's row-to-text cast)."""
    with get_engine().connect() as conn:
        return "\n".join(row for table in tables for row in conn.execute(
            sa.text(f'SELECT CAST(t AS text) FROM "{table}" AS t')).scalars())


DIRECTORY = ("directory_contacts", "directory_phones")


def crm_tenant(monkeypatch, hs, sensitive: bool) -> str:
    """The crmco tenant (HubSpot directory), sensitive or not; its connection id."""
    monkeypatch.setenv("RELAIS_TENANT_CRMCO_HS_URL", hs.url)
    text = (FIXTURES / "crm.yaml").read_text()
    if sensitive:
        text = text.replace("phone_region: FR\n", "phone_region: FR\nsensitive: true\n", 1)
    with session_scope() as session:
        apply_config(session, text, "crm.yaml", actor="test")
        conn = session.scalar(sa.select(Connection.id).where(
            Connection.tenant_id == "crmco", Connection.name == "hubspot"))
        set_credentials(session, "crmco", "hubspot", {"access_token": hs.private_app_token})
    return conn


def seed_and_pull(hs, conn: str) -> None:
    hs.clock.set_offset(-3600)
    try:
        hs.insert("contacts", CONTACT)
        hs.insert("contacts", {"firstname": "Paul", "lastname": "Bernardin",
                               "phone": "+33 7 98 76 54 32"})
    finally:
        hs.clock.set_offset(0)
    assert pull_connection(conn).status == "ok"


def add_conflict(sealed: bool) -> int:
    """A booked appointment of crmco and a subject conflict on it (both sides' values)."""
    with session_scope() as session:
        apt = Appointment(tenant_id="crmco", staff_id="claire", status="confirmed",
                          start=datetime(2026, 12, 1, 9, tzinfo=UTC),
                          end=datetime(2026, 12, 1, 9, 30, tzinfo=UTC), sealed=sealed,
                          caller={"name": "Albertine Quatrefages", "phone": "+33645678912"},
                          subject="Consultation Albertine Quatrefages", booked_by="Sophie")
        session.add(apt)
        session.flush()
        session.add(SyncConflict(tenant_id="crmco", appointment_id=apt.id, field="subject",
                                 relais_value="Consultation Albertine Quatrefages",
                                 calendar_value="Rappel Albertine", winner="calendar",
                                 policy="calendar", sealed=sealed))
        return apt.id


def check_lookups() -> None:
    """The caller lookups a secretary uses still find the sealed contact."""
    with session_scope(readonly=True) as session:
        [exact] = lookup_phone(session, "crmco", parse_phone_query("06 45 67 89 12", "FR"))
        assert (exact["name"], exact["match"], exact["matched_phone"]) == (
            "Albertine Quatrefages", "exact", "+33645678912")
        assert exact["emails"] == ["a.quatrefages@exemple.fr"]  # (HubSpot lower-cases)
        assert exact["company"] == "Élevage Lunaire"
        number = lookup_phone(session, "crmco", parse_phone_query("0033 645678912", None))
        assert [c["name"] for c in number] == ["Albertine Quatrefages"]
        for text in ("quatrefages", "Albertine QUATREFAGES", "albertine"):
            assert [c["name"] for c in search_name(session, "crmco", text)] == [
                "Albertine Quatrefages"], text
        assert is_known_caller(session, "crmco", "+33645678912") is True
        assert is_known_caller(session, "crmco", "+33600000000") is False


def accept_crmco(name: str, phone: str, key: str) -> None:
    """A message of crmco from this caller, with the secret body, taken once (``key``)."""
    with session_scope() as session:
        config = parsed_config(get_tenant(session, "crmco"))
        msg = CallMessage.model_validate(
            {"call_type": "message", "subject": "Rappel", "body": SECRET_BODY,
             "caller": {"name": name, "phone": phone},
             "taken_by": "Sophie", "taken_at": "2026-11-25T10:15:00+01:00"},
            context={"region": "FR"})
        accept_message(session, "crmco", config, msg, key)


def caller_link_ids() -> list[str]:
    with session_scope(readonly=True) as session:
        return list(session.scalars(sa.select(ExternalLink.local_id).where(
            ExternalLink.tenant_id == "crmco", ExternalLink.local_type == "caller")))


def test_a_sensitive_tenants_caller_links_keep_no_phone_and_still_link(
        pg_url, monkeypatch, tmp_path, hubspot_emulator):  # noqa: F811
    """The CRM connector links a caller (``tel:+33…``) to the contact it made; for a
    sensitive tenant the link is stored by keyed hash and still found: a second call
    from the same person, before HubSpot's search sees the new contact (its search
    index lags), lands on the same contact."""
    make_env(monkeypatch, tmp_path, pg_url, None)
    conn = crm_tenant(monkeypatch, hubspot_emulator, sensitive=True)
    hubspot_emulator.configure(search_index_delay_seconds=60)
    for n in range(2):
        accept_crmco("Octave Villebrun", "06 11 22 33 44", f"link-{n}")
        assert drain(conn, "crmco") == {"delivered": n + 1}
        if n == 0:
            searches = hubspot_emulator.knobs.calls("POST", "/crm/v3/objects/contacts/search")
            assert searches >= 1  # a new caller is looked for in the CRM first
    # the second call's caller was found by the hashed link: no search
    assert hubspot_emulator.knobs.calls("POST", "/crm/v3/objects/contacts/search") == searches
    assert len(hubspot_emulator.objects("contacts")) == 1
    [link] = caller_link_ids()
    assert link.startswith("kh:") and "611223344" not in tables_text(("external_links",))


def test_sensitive_directory_and_conflicts_hold_no_readable_contact(
        pg_url, monkeypatch, tmp_path, hubspot_emulator):  # noqa: F811
    env = make_env(monkeypatch, tmp_path, pg_url, None)
    conn = crm_tenant(monkeypatch, hubspot_emulator, sensitive=True)
    seed_and_pull(hubspot_emulator, conn)
    apt_id = add_conflict(sealed=True)
    dump = tables_text((*DIRECTORY, "sync_conflicts", "external_links"))
    assert [w for w in CONTACT_READABLE + ["Bernardin", "798765432"] if w in dump] == []
    assert caller_link_ids() and all(i.startswith("kh:") for i in caller_link_ids())
    assert dump.count("sealed1:") >= 6  # name, company, emails, phones ×2, two conflict values
    check_lookups()
    with session_scope(readonly=True) as session:
        [conflict] = session.scalars(sa.select(SyncConflict).where(
            SyncConflict.appointment_id == apt_id)).all()
        assert conflict.relais_value == "Consultation Albertine Quatrefages"
        assert conflict.calendar_value == "Rappel Albertine"
    # a new key in front: the rows sealed under the old one stay readable and found
    monkeypatch.setenv("RELAIS_SECRET_KEYS", NEW_KEY + "," + env.vars["RELAIS_SECRET_KEYS"])
    reset_settings()
    check_lookups()
    with session_scope() as session:  # an erasure by email finds the sealed contact
        found = find(session, "crmco", Person.parse(None, "A.Quatrefages@Exemple.fr", "FR"),
                     "FR")
        assert [c.name for c in found.contacts] == ["Albertine Quatrefages"]
        by_phone = find(session, "crmco", Person.parse("06 45 67 89 12", None, "FR"), "FR")
        assert [c.crm_id for c in by_phone.contacts] == [found.contacts[0].crm_id]
        assert {link.remote_id for link in by_phone.links} == {found.contacts[0].crm_id}
        erase(session, found, "crmco", actor="test")
    with session_scope(readonly=True) as session:
        assert lookup_phone(session, "crmco", parse_phone_query("0645678912", "FR")) == []


def test_reseal_seals_what_was_written_before_the_tenant_became_sensitive(
        pg_url, monkeypatch, tmp_path, hubspot_emulator):  # noqa: F811
    make_env(monkeypatch, tmp_path, pg_url, None)
    conn = crm_tenant(monkeypatch, hubspot_emulator, sensitive=False)
    seed_and_pull(hubspot_emulator, conn)
    add_conflict(sealed=False)
    for n in range(3):
        accept_crmco("Albertine Quatrefages", "06 45 67 89 12", f"reseal-{n}")
    tables = ("messages", "appointments", *DIRECTORY, "sync_conflicts", "external_links")
    assert "Quatrefages" in tables_text(tables)  # not sensitive: plain
    assert "tel:+33645678912" in caller_link_ids()
    crm_tenant(monkeypatch, hubspot_emulator, sensitive=True)  # a new config version
    assert "Quatrefages" in tables_text(tables)  # the old rows are not sealed by that
    runner = CliRunner()
    for args in (["--tenant", "nowhere"], ["--tenant", "crmco", "--batch", "0"]):
        refused = runner.invoke(cli_app, ["privacy", "reseal", *args])
        assert refused.exit_code == 2, refused.output
    done = runner.invoke(cli_app, ["privacy", "reseal", "--tenant", "crmco", "--batch", "2"])
    assert done.exit_code == 0, done.output
    assert "crmco: messages sealed 2" in done.output  # progress, batch by batch
    assert ("crmco: sealed messages 3, appointments 1, directory_contacts 2, "
            "sync_conflicts 1, caller_links 3") in done.output  # 2 phones and an email
    dump = tables_text(tables)
    assert [w for w in [*CONTACT_READABLE, SECRET_BODY, "Bernardin", "798765432"]
            if w in dump] == []
    again = runner.invoke(cli_app, ["privacy", "reseal", "--tenant", "crmco", "--json"])
    assert again.exit_code == 0, again.output
    report = json.loads(again.output)
    assert report["sensitive"] is True and set(report["sealed"].values()) == {0}
    check_lookups()
    with session_scope(readonly=True) as session:
        messages = session.scalars(sa.select(Message).where(Message.tenant_id == "crmco")).all()
        assert {(m.sealed, m.body, m.caller["name"]) for m in messages} == {
            (True, SECRET_BODY, "Albertine Quatrefages")}
        found = find(session, "crmco", Person.parse("06 45 67 89 12", None, "FR"), "FR")
        assert len(found.messages) == 3 and len(found.contacts) == 1
        assert len(found.links) == 1 and found.links[0].local_id.startswith("kh:")
        assert found.conflicts[0].calendar_value == "Rappel Albertine"
