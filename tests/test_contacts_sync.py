"""Contact directory: incremental CRM pulls against the HubSpot and Salesforce
emulators through the real SDKs, and the caller lookup API on top."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from conftest import FIXTURES, make_env
from crm_helpers import connection_id
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from relais.api import create_app
from relais.auth import create_key
from sandbox.testing import (  # noqa: F401
    hubspot_client,
    hubspot_emulator,
    hubspot_server,
    salesforce_client,
    salesforce_emulator,
    salesforce_server,
)
from sync.connections import set_credentials
from sync.contacts import (
    due_connections,
    parse_phone_query,
    pull_connection,
    sync_status,
)
from sync.store.db import dispose_engines, session_scope
from sync.store.directory import DirectoryContact, DirectorySyncState
from sync.store.models import PullCursor, utcnow
from sync.tenants import apply_config

HS, SF = "crmco", "sfco"
SEARCH = "/crm/v3/objects/contacts/search"
ARCHIVED = "/crm/v3/objects/contacts"
QUERY = "/services/data/v59.0/query"
DELETED = "/services/data/v59.0/sobjects/Contact/deleted"


def with_settings(text: str, anchor: str, **settings) -> str:
    lines = "".join(f"      {k}: {v}\n" for k, v in settings.items())
    assert anchor in text
    return text.replace(anchor, anchor + lines, 1)


def apply(text: str, name: str) -> None:
    with session_scope() as session:
        apply_config(session, text, name, actor="test")


def setup_hubspot(hs, monkeypatch, **settings) -> str:
    monkeypatch.setenv("RELAIS_TENANT_CRMCO_HS_URL", hs.url)
    text = with_settings((FIXTURES / "crm.yaml").read_text(),
                         "      api_base_url: ${RELAIS_TENANT_CRMCO_HS_URL}\n", **settings)
    apply(text, "crm.yaml")
    with session_scope() as session:
        set_credentials(session, HS, "hubspot", {"access_token": hs.private_app_token})
    return connection_id(HS, "hubspot")


def setup_salesforce(sf, monkeypatch, **settings) -> str:
    monkeypatch.setenv("RELAIS_TENANT_SFCO_SF_URL", sf.url)
    monkeypatch.setenv("RELAIS_TENANT_SFCO_SF_CA", str(sf.ca_file))
    text = with_settings((FIXTURES / "crm_salesforce.yaml").read_text(),
                         "      ca_file: ${RELAIS_TENANT_SFCO_SF_CA}\n", **settings)
    apply(text, "crm_salesforce.yaml")
    with session_scope() as session:
        set_credentials(session, SF, "salesforce", {"access_token": sf.session_id})
    return connection_id(SF, "salesforce")


def seed_hubspot(hs, count: int, start: int = 0, ago: float = 3600) -> list[str]:
    """Contacts last modified ``ago`` seconds ago (older than any lookback)."""
    hs.clock.set_offset(-ago)
    try:
        return [hs.insert("contacts", {
            "firstname": f"Camille{n}", "lastname": "Martin", "email": f"c{n}@exemple.fr",
            "phone": f"+33 6 12 {n // 10000 % 100:02d} {n // 100 % 100:02d} {n % 100:02d}",
            "company": "Boulangerie Martin", "hubspot_owner_id": "77"})
            for n in range(start, start + count)]  # fmt: skip
    finally:
        hs.clock.set_offset(0)


def seed_salesforce(sf, count: int, ago: float = 3600) -> list[str]:
    sf.clock.set_offset(-ago)
    try:
        return [sf.insert("Contact", {
            "FirstName": f"Jeanne{n}", "LastName": "Durand", "Email": f"j{n}@exemple.fr",
            "Phone": f"06 13 {n // 10000 % 100:02d} {n // 100 % 100:02d} {n % 100:02d}"})
            for n in range(count)]  # fmt: skip
    finally:
        sf.clock.set_offset(0)


def live(conn: str) -> dict[str, DirectoryContact]:
    with session_scope(readonly=True) as session:
        rows = session.scalars(select(DirectoryContact).where(
            DirectoryContact.connection_id == conn, DirectoryContact.deleted.is_(False)))
        return {r.crm_id: r for r in rows}


def calls(emu, path: str, method: str = "POST") -> int:
    return emu.knobs.calls(method, path)


@pytest.fixture
def hs(env, hubspot_emulator):
    hubspot_emulator.clock.set_offset(0)
    return hubspot_emulator


@pytest.fixture
def sf(env, salesforce_emulator):
    salesforce_emulator.clock.set_offset(0)
    return salesforce_emulator


# ------------------------------------------------------------------ HubSpot


def test_hubspot_full_then_incremental_reads_only_changes(hs, monkeypatch):
    conn = setup_hubspot(hs, monkeypatch, sync_page_size=20)
    ids = seed_hubspot(hs, 45)
    first = pull_connection(conn)
    assert (first.status, first.mode, first.records_in) == ("ok", "full", 45)
    assert calls(hs, SEARCH) == 3  # 20 + 20 + 5
    contact = live(conn)[ids[7]]
    assert contact.name == "Camille7 Martin" and contact.company == "Boulangerie Martin"
    assert contact.phones == ["+33612000007"] and contact.emails == ["c7@exemple.fr"]
    assert contact.owner == "77" and contact.crm_updated_at is not None

    client = hubspot_client(hs)
    for n in (3, 30):
        client.crm.contacts.basic_api.update(ids[n], {"properties": {"lastname": "Moreau"}})
    new = client.crm.contacts.basic_api.create({"properties": {
        "firstname": "Paul", "lastname": "Neuf", "phone": "0699887766"}}).id  # fmt: skip
    hs.knobs.reset()
    second = pull_connection(conn)
    assert (second.status, second.mode) == ("ok", "incremental")
    # Search lags writes (a few seconds): the contact created just now is not found yet.
    assert (second.records_in, second.unchanged, second.deleted) == (2, 0, 0)
    # One search; the archive is listed at most daily (the full pull just did).
    assert calls(hs, SEARCH) == 1 and calls(hs, ARCHIVED, "GET") == 0
    assert second.calls == 1
    contacts = live(conn)
    assert len(contacts) == 45 and contacts[ids[30]].name == "Camille30 Moreau"

    hs.clock.advance(5)  # indexed now; the lookback of the next pull still covers it
    third = pull_connection(conn)
    assert (third.records_in, third.unchanged) == (1, 2)
    assert live(conn)[new].phones == ["+33699887766"]
    hs.knobs.reset()
    hs.clock.set_offset(0)
    fourth = pull_connection(conn)  # nothing new: one search
    assert (fourth.records_in, fourth.calls) == (0, 1)


def test_hubspot_archived_contacts_are_deleted(hs, monkeypatch):
    conn = setup_hubspot(hs, monkeypatch, deleted_sweep_hours=0)  # list them every pull
    ids = seed_hubspot(hs, 5)
    pull_connection(conn)
    hubspot_client(hs).crm.contacts.basic_api.archive(ids[2])
    outcome = pull_connection(conn)
    assert outcome.deleted == 1 and outcome.status == "ok"
    assert ids[2] not in live(conn) and len(live(conn)) == 4
    with session_scope(readonly=True) as session:
        row = session.scalar(select(DirectoryContact).where(DirectoryContact.crm_id == ids[2]))
        assert row.deleted
    assert pull_connection(conn).deleted == 0  # already known: not counted again


def test_hubspot_pages_past_the_search_cap_by_id(hs, monkeypatch):
    hs.configure(search_max_results=50)
    conn = setup_hubspot(hs, monkeypatch, sync_page_size=20, search_max_results=50)
    seed_hubspot(hs, 130)
    outcome = pull_connection(conn)
    assert outcome.status == "ok", outcome.error
    assert outcome.records_in == 130 and len(live(conn)) == 130
    # 20 + 20 per window of 50, then again by id: 7 pages, no page refused
    assert calls(hs, SEARCH) == 7
    assert not [r for r in hs.knobs.requests() if r.get("status") == 400]


def test_hubspot_429_mid_pull_pauses_and_resumes_without_loss(hs, monkeypatch):
    conn = setup_hubspot(hs, monkeypatch, sync_page_size=20)
    seed_hubspot(hs, 100)

    def after_page(outcome):
        if outcome.pages == 2:
            hs.knobs.fail(429, times=1, path=SEARCH)

    first = pull_connection(conn, progress=after_page)
    assert first.status == "paused" and "429" in first.error
    assert first.records_in == 40 and len(live(conn)) == 40
    with session_scope(readonly=True) as session:
        state = session.get(DirectorySyncState, conn)
        assert state.paused_until > utcnow() and state.running_since is None
        cursor = json.loads(session.get(PullCursor, (conn, "contacts", "")).cursor)
        assert cursor["run"]["checkpoint"]  # where to resume
    assert pull_connection(conn).status == "skipped"  # paused until the reset
    hs.knobs.reset()
    second = pull_connection(conn, force=True)
    assert second.status == "ok" and second.resumed and second.mode == "full"
    assert second.records_in == 60 and len(live(conn)) == 100
    assert calls(hs, SEARCH) == 3  # pages 3-5 only: nothing read twice


def test_no_two_pulls_of_one_connection_at_once(hs, monkeypatch):
    conn = setup_hubspot(hs, monkeypatch, sync_page_size=10)
    seed_hubspot(hs, 30)
    hs.knobs.set_latency(300)
    results = []
    worker = threading.Thread(target=lambda: results.append(pull_connection(conn)))
    worker.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with session_scope(readonly=True) as session:
            state = session.get(DirectorySyncState, conn)
            if state is not None and state.running_since is not None:
                break
        time.sleep(0.02)
    second = pull_connection(conn)
    worker.join(30)
    assert second.status == "skipped" and "already running" in second.note
    assert results[0].status == "ok" and results[0].records_in == 30
    hs.knobs.set_latency(0)
    # A pull that died holding the lock is taken over once the lock expires.
    with session_scope() as session:
        state = session.get(DirectorySyncState, conn)
        state.running_since, state.run_token = utcnow() - timedelta(hours=2), "dead"
    assert pull_connection(conn).status == "ok"


def test_errors_are_recorded_and_shown(hs, monkeypatch):
    conn = setup_hubspot(hs, monkeypatch)
    seed_hubspot(hs, 3)
    with session_scope() as session:
        set_credentials(session, HS, "hubspot", {"access_token": "pat-na1-revoked"})
    outcome = pull_connection(conn)
    assert outcome.status == "error" and "401" in outcome.error
    with session_scope(readonly=True) as session:
        (row,) = sync_status(session, HS)
    assert "401" in row["last_error"] and row["last_success_at"] is None
    assert row["state"] == "idle" and row["contacts"] == 0
    setup_hubspot(hs, monkeypatch)  # reconnected: the next pull clears the error
    assert pull_connection(conn).records_in == 3
    with session_scope(readonly=True) as session:
        (row,) = sync_status(session, HS)
    assert row["last_error"] is None and row["contacts"] == 3


# ------------------------------------------------------------------ Salesforce


def test_salesforce_full_then_incremental_with_deletes(sf, monkeypatch):
    conn = setup_salesforce(sf, monkeypatch, sync_page_size=200, sync_lookback_seconds=600)
    ids = seed_salesforce(sf, 450)
    first = pull_connection(conn)
    assert (first.status, first.mode, first.records_in) == ("ok", "full", 450), first.error
    assert calls(sf, QUERY, "GET") == 3  # 200 + 200 + 50 through nextRecordsUrl
    assert live(conn)[ids[5]].phones == ["+33613000005"]

    client = salesforce_client(sf)
    sf.clock.set_offset(-120)  # two minutes ago: inside the deleted window Salesforce covers
    client.Contact.update(ids[1], {"LastName": "Lefèvre"})
    client.Contact.update(ids[400], {"MobilePhone": "+33 7 00 00 00 01"})
    client.Contact.delete(ids[9])
    sf.clock.set_offset(0)
    sf.knobs.reset()
    second = pull_connection(conn)
    assert (second.status, second.mode) == ("ok", "incremental"), second.error
    assert (second.records_in, second.unchanged, second.deleted) == (2, 0, 1)
    assert calls(sf, QUERY, "GET") == 1 and calls(sf, DELETED, "GET") == 1
    contacts = live(conn)
    assert len(contacts) == 449 and ids[9] not in contacts
    assert contacts[ids[1]].name == "Jeanne1 Lefèvre"
    assert contacts[ids[400]].phones == ["+33613000400", "+33700000001"]


def test_salesforce_reads_leads_when_callers_are_leads(sf, monkeypatch):
    monkeypatch.setenv("RELAIS_TENANT_SFCO_SF_URL", sf.url)
    monkeypatch.setenv("RELAIS_TENANT_SFCO_SF_CA", str(sf.ca_file))
    text = (FIXTURES / "crm_salesforce.yaml").read_text().replace(
        "      ca_file: ${RELAIS_TENANT_SFCO_SF_CA}\n",
        "      ca_file: ${RELAIS_TENANT_SFCO_SF_CA}\n    mapping:\n      contact:\n"
        "        object: Lead\n")
    apply(text, "crm_salesforce.yaml")
    with session_scope() as session:
        set_credentials(session, SF, "salesforce", {"access_token": sf.session_id})
    conn = connection_id(SF, "salesforce")
    seed_salesforce(sf, 2)
    lead = sf.insert("Lead", {"LastName": "Petit", "Company": "Garage Petit",
                              "Phone": "0140000000"})
    outcome = pull_connection(conn)
    assert outcome.records_in == 3, outcome.error
    row = live(conn)[lead]
    assert (row.crm_object, row.company, row.phones) == ("Lead", "Garage Petit", ["+33140000000"])


def test_salesforce_deleted_window_expired_means_full_resync(sf, monkeypatch):
    conn = setup_salesforce(sf, monkeypatch)
    ids = seed_salesforce(sf, 20)
    pull_connection(conn)
    salesforce_client(sf).Contact.delete(ids[4])
    with session_scope() as session:  # the last pull was 16 days ago
        row = session.get(PullCursor, (conn, "contacts", ""))
        cursor = json.loads(row.cursor)
        cursor["since"] = (utcnow() - timedelta(days=16)).isoformat()
        row.cursor = json.dumps(cursor)
    sf.knobs.reset()
    outcome = pull_connection(conn)
    assert outcome.status == "ok" and outcome.mode == "full", outcome.error
    assert "full resync" in outcome.note
    assert calls(sf, DELETED, "GET") == 0  # not asked: the window cannot cover the cursor
    assert outcome.deleted == 1 and ids[4] not in live(conn) and len(live(conn)) == 19
    assert pull_connection(conn).mode == "incremental"


def test_salesforce_limit_pauses_and_keeps_cursor(sf, monkeypatch):
    conn = setup_salesforce(sf, monkeypatch)
    seed_salesforce(sf, 3)
    assert pull_connection(conn).status == "ok"
    sf.knobs.fail(403, times=1, path="/query", body=[
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    with session_scope(readonly=True) as session:
        before = session.get(PullCursor, (conn, "contacts", "")).cursor
    outcome = pull_connection(conn)
    assert outcome.status == "paused" and "REQUEST_LIMIT_EXCEEDED" in outcome.error
    with session_scope(readonly=True) as session:
        assert json.loads(session.get(PullCursor, (conn, "contacts", "")).cursor)["since"] == \
            json.loads(before)["since"]
        assert session.get(DirectorySyncState, conn).paused_until > utcnow()


# ------------------------------------------------------------------ lookup API


@pytest.fixture
def directory(hs, monkeypatch):
    conn = setup_hubspot(hs, monkeypatch)
    people = [("Camille", "Martin", "+33 6 12 34 56 78"), ("Hans", "Meier", "+41 612345678"),
              ("Zoé", "Roux", "06.98.34.56.78"), ("Léa", "Blanc", "01 40 00 00 00")]  # fmt: skip
    hs.clock.set_offset(-3600)
    for first, last, phone in people:
        hs.insert("contacts", {"firstname": first, "lastname": last, "phone": phone,
                               "email": f"{first.lower()}@exemple.fr"})
    hs.clock.set_offset(0)
    assert pull_connection(conn).records_in == 4
    with session_scope() as session:
        key = create_key(session, "secretary", HS, "test")
        admin = create_key(session, "admin", HS, "test")
    return TestClient(create_app()), key, admin, conn


def sweep_due(conn: str) -> None:
    """Make the archive listing due (as a day after the last one)."""
    with session_scope() as session:
        row = session.get(PullCursor, (conn, "contacts", ""))
        cursor = json.loads(row.cursor)
        cursor["deleted_checked_at"] = (utcnow() - timedelta(hours=25)).isoformat()
        row.cursor = json.dumps(cursor)


def names(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [c["name"] for c in response.json()["contacts"]]


def test_lookup_tolerates_formats_and_partial_numbers(directory):
    client, key, _, _ = directory
    auth = {"Authorization": f"Bearer {key}"}

    def find(phone: str):
        return client.get(f"/v1/tenants/{HS}/contacts", params={"phone": phone}, headers=auth)

    for typed in ("+33 6 12 34 56 78", "0612345678", "06.12.34.56.78", "+33612345678",
                  "0033 612 345 678"):  # fmt: skip
        got = find(typed)
        assert names(got)[:2] == ["Camille Martin", "Hans Meier"], typed
        first = got.json()["contacts"][0]
        assert first["match"] == "exact" and first["phones"] == ["+33612345678"]
        assert first["crm"]["provider"] == "hubspot" and first["crm"]["id"]
        assert first["emails"] == ["camille@exemple.fr"]
        assert got.json()["contacts"][1]["match"] == "number"
    # the end of a number: every contact whose number ends so
    assert set(names(find("34 56 78"))) == {"Camille Martin", "Hans Meier", "Zoé Roux"}
    assert names(find("98 34 56 78")) == ["Zoé Roux"]
    assert names(find("00 00 00")) == ["Léa Blanc"]
    assert names(find("11 22 33")) == []
    short = find("56 78")
    assert short.status_code == 422
    assert short.json()["error"]["details"][0]["field"] == "phone"
    assert names(client.get(f"/v1/tenants/{HS}/contacts", params={"q": "zoe"}, headers=auth)) \
        == ["Zoé Roux"]
    missing = client.get(f"/v1/tenants/{HS}/contacts", headers=auth)
    assert missing.status_code == 422


def test_lookup_forgets_deleted_contacts(directory, hs):
    client, key, _, conn = directory
    target = hs.find("contacts", lastname="Roux")[0]["id"]
    hubspot_client(hs).crm.contacts.basic_api.archive(target)
    sweep_due(conn)
    assert pull_connection(conn).deleted == 1
    got = client.get(f"/v1/tenants/{HS}/contacts", params={"phone": "0698345678"},
                     headers={"Authorization": f"Bearer {key}"})
    assert names(got) == []


def test_tenants_are_sealed_and_sync_status_is_for_admins(directory, monkeypatch):
    client, key, admin, _ = directory
    monkeypatch.setenv("RELAIS_TENANT_SFCO_SF_URL", "https://127.0.0.1:9")
    monkeypatch.setenv("RELAIS_TENANT_SFCO_SF_CA", "/nonexistent")
    apply((FIXTURES / "crm_salesforce.yaml").read_text(), "crm_salesforce.yaml")
    with session_scope() as session:
        other = create_key(session, "admin", SF, "other")
    stranger = client.get(f"/v1/tenants/{HS}/contacts", params={"phone": "0612345678"},
                          headers={"Authorization": f"Bearer {other}"})
    assert stranger.status_code == 404
    assert client.get(f"/v1/tenants/{HS}/sync",
                      headers={"Authorization": f"Bearer {other}"}).status_code == 404
    assert client.get(f"/v1/tenants/{HS}/sync",
                      headers={"Authorization": f"Bearer {key}"}).status_code == 403
    status = client.get(f"/v1/tenants/{HS}/sync", headers={"Authorization": f"Bearer {admin}"})
    assert status.status_code == 200
    (row,) = status.json()["connections"]
    assert row["connection"] == "hubspot" and row["contacts"] == 4 and row["records_in"] == 4
    assert row["last_success_at"] and row["cursor_age_seconds"] < 60 and row["records_out"] == 0
    assert row["last_error"] is None and row["state"] == "idle"
    not_connected = pull_connection(connection_id(SF, "salesforce"))
    assert (not_connected.status, not_connected.note) == ("skipped", "connection is not_connected")
    # the other tenant's directory is empty: nothing leaks across
    mine = client.get(f"/v1/tenants/{SF}/contacts", params={"phone": "0612345678"},
                      headers={"Authorization": f"Bearer {other}"})
    assert mine.json()["contacts"] == []


def test_phone_query_parsing():
    assert parse_phone_query("06 12 34 56 78", "FR").e164 == "+33612345678"
    assert parse_phone_query("+41 61 234 56 78", "FR").e164 == "+41612345678"
    partial = parse_phone_query("34 56 78", "FR")
    assert (partial.e164, partial.suffix) == (None, "345678")
    with pytest.raises(ValueError, match="at least 6"):
        parse_phone_query("5678", "FR")


# ------------------------------------------------------------------ schedule, CLI, worker


def test_beat_lists_due_connections_at_their_interval(hs, monkeypatch):
    conn = setup_hubspot(hs, monkeypatch, sync_interval_minutes=5)
    assert conn in due_connections()
    assert pull_connection(conn, only_if_due=True).status == "ok"
    assert conn not in due_connections()
    assert pull_connection(conn, only_if_due=True).note == "not due"
    assert conn in due_connections(utcnow() + timedelta(minutes=6))
    setup_hubspot(hs, monkeypatch, sync_interval_minutes=0)  # 0: no scheduled pulls
    assert conn not in due_connections(utcnow() + timedelta(days=1))

    import worker
    from sync.queue import CONTACTS_DUE_TASK, CONTACTS_PULL_TASK, make_celery

    assert {CONTACTS_DUE_TASK, CONTACTS_PULL_TASK} <= set(worker.app.tasks)
    assert make_celery().conf.beat_schedule["contacts-sync"]["task"] == CONTACTS_DUE_TASK


def test_cli_sync_run_and_status(hs, monkeypatch):
    from relais.cli import app, out

    monkeypatch.setattr(out, "width", 200)  # the tables' columns, unsqueezed
    setup_hubspot(hs, monkeypatch)
    seed_hubspot(hs, 3)
    runner = CliRunner()
    ran = runner.invoke(app, ["sync", "run", "--tenant", HS])
    assert ran.exit_code == 0, ran.output
    assert "hubspot" in ran.output and "full" in ran.output
    status = runner.invoke(app, ["sync", "status", "--json"])
    assert status.exit_code == 0, status.output
    (row,) = json.loads(status.output)
    assert (row["tenant"], row["contacts"], row["records_out"]) == (HS, 3, 0)
    table = runner.invoke(app, ["sync", "status"])
    assert "hubspot" in table.output and "never" not in table.output
    assert runner.invoke(app, ["sync", "run", "--tenant", "nobody"]).exit_code == 2


def test_directory_on_postgresql(hubspot_emulator, pg_url, monkeypatch, tmp_path):
    hs = hubspot_emulator
    make_env(monkeypatch, tmp_path, pg_url, None)
    try:
        conn = setup_hubspot(hs, monkeypatch, sync_page_size=50)
        seed_hubspot(hs, 120)
        assert pull_connection(conn).records_in == 120
        hubspot_client(hs).crm.contacts.basic_api.update(
            hs.find("contacts", email="c5@exemple.fr")[0]["id"],
            {"properties": {"phone": "+33 7 11 22 33 44"}})  # fmt: skip
        assert pull_connection(conn).records_in == 1
        with session_scope() as session:
            key = create_key(session, "secretary", HS, "pg")
        client = TestClient(create_app())
        got = client.get(f"/v1/tenants/{HS}/contacts", params={"phone": "11 22 33 44"},
                         headers={"Authorization": f"Bearer {key}"})
        assert names(got) == ["Camille5 Martin"]
    finally:
        dispose_engines()


def test_salesforce_delete_log_purged_past_the_cursor_means_full_resync(sf, monkeypatch):
    """Issue 11: Salesforce may purge the delete log before 15 days (earliestDateAvailable
    later than asked): deletions in between are unknowable, so a full resync sweeps."""
    conn = setup_salesforce(sf, monkeypatch)
    ids = seed_salesforce(sf, 10)
    assert pull_connection(conn).mode == "full"
    sf.clock.set_offset(-60)
    salesforce_client(sf).Contact.delete(ids[3])
    sf.clock.set_offset(0)
    sf.purge_deleted_log("Contact")  # the recycle bin emptied: the log starts now
    outcome = pull_connection(conn)
    assert (outcome.status, outcome.mode) == ("ok", "full"), outcome.error
    assert "delete log starts at" in outcome.note
    assert ids[3] not in live(conn) and len(live(conn)) == 9


def test_salesforce_deletions_resume_from_latest_date_covered(sf, monkeypatch):
    """Issue 11: getDeleted covers deletions only up to latestDateCovered: the next pull
    asks again from there, so a deletion the log had not reached yet is not lost."""
    conn = setup_salesforce(sf, monkeypatch, sync_lookback_seconds=60)
    ids = seed_salesforce(sf, 10)
    sf.configure(deleted_log_lag_seconds=1800)  # the log trails by half an hour
    sf.clock.set_offset(-1200)
    assert pull_connection(conn).mode == "full"
    sf.clock.set_offset(-600)
    salesforce_client(sf).Contact.delete(ids[2])
    sf.clock.set_offset(0)
    first = pull_connection(conn)  # the log does not cover that deletion yet
    assert (first.mode, first.deleted) == ("incremental", 0) and ids[2] in live(conn)
    sf.configure(deleted_log_lag_seconds=0)  # the log caught up
    sf.clock.set_offset(300)
    second = pull_connection(conn)
    assert (second.mode, second.deleted) == ("incremental", 1), second.error
    assert ids[2] not in live(conn)


def test_hubspot_archive_listing_is_bounded_not_per_pull(hs, monkeypatch):
    """Issue 16: the archived list has no date filter, so listing it on every pull made
    a sync cost grow with the archive. It runs at most every ``deleted_sweep_hours``."""
    conn = setup_hubspot(hs, monkeypatch)
    ids = seed_hubspot(hs, 5)
    archive = hs.seed("contacts", 250)  # a large archive
    for start in range(0, 250, 100):
        hubspot_client(hs).crm.contacts.batch_api.archive(
            {"inputs": [{"id": i} for i in archive[start:start + 100]]})
    assert pull_connection(conn).mode == "full"
    hubspot_client(hs).crm.contacts.basic_api.archive(ids[1])
    hs.knobs.reset()
    for _ in range(3):
        assert pull_connection(conn).calls == 1  # one search, whatever the archive's size
    assert calls(hs, ARCHIVED, "GET") == 0 and ids[1] in live(conn)
    sweep_due(conn)  # a day later
    swept = pull_connection(conn)
    assert swept.deleted == 1 and ids[1] not in live(conn)
    assert calls(hs, ARCHIVED, "GET") == 3  # 251 archived contacts, 100 per page
    assert pull_connection(conn).calls == 1


def test_a_caller_the_directory_knows_is_not_duplicated_whatever_the_format(hs, monkeypatch):
    """Issue 9: a number typed in a form no lookup tries (``+33 (0)4 72 00 00 09``) is
    still the caller's: the directory pull links it, the delivery uses that link."""
    from crm_helpers import accept, call, drain

    conn = setup_hubspot(hs, monkeypatch)
    hs.clock.set_offset(-3600)
    owner = hs.insert("contacts", {"lastname": "Format", "phone": "+33 (0)4 72 00 00 09"})
    gone = hs.insert("contacts", {"lastname": "Parti", "phone": "+33 (0)4 72 00 00 08"})
    hs.clock.set_offset(0)
    assert pull_connection(conn).records_in == 2
    hubspot_client(hs).crm.contacts.basic_api.archive(gone)
    sweep_due(conn)
    assert pull_connection(conn).deleted == 1  # its link is forgotten with it
    accept(HS, call(9, caller={"name": "Client", "phone": "+33472000009"}))
    accept(HS, call(8, caller={"name": "Nouveau", "phone": "+33472000008"}))
    assert drain(conn, HS) == {"delivered": 2}
    assert len(hs.associations("contacts", owner, "calls")) == 1
    assert len(hs.objects("contacts")) == 2  # the owner and a new one for the other caller


def test_a_429_pause_is_kept_on_the_hubs_clock(hs, monkeypatch, hub_clock):
    """The reset is the provider's instant (machine time): with the hub's clock a year
    back (``relais demo --at``), the pull still pauses for what the provider said, not
    for a year."""
    from sync import clock

    hub_clock(clock.machine_now() - timedelta(days=365), ticking=True)
    conn = setup_hubspot(hs, monkeypatch, sync_page_size=20)
    seed_hubspot(hs, 30)
    hs.knobs.fail(429, times=1, path=SEARCH)
    assert pull_connection(conn).status == "paused"
    with session_scope(readonly=True) as session:
        until = session.get(DirectorySyncState, conn).paused_until
    assert 0 < (until - clock.now()).total_seconds() < 60
