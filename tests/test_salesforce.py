"""Salesforce connector against the Salesforce sandbox, through simple-salesforce
over TLS: the in-process engine, a real emulator, real sockets."""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from conftest import FIXTURES
from crm_helpers import accept, call, connection_id, drain, force_due, statuses
from fastapi.testclient import TestClient
from sqlalchemy import select

from connectors.base import ConnectionInfo, DeliveryRequest, RateLimited, Runtime
from connectors.salesforce.client import SalesforceConnector
from mappings.fieldmap import SalesforceMapping, effective_mapping
from relais.api import create_app
from relais.auth import create_key
from sandbox.testing import (  # noqa: F401
    salesforce_client,
    salesforce_emulator,
    salesforce_server,
)
from sync.connections import set_credentials
from sync.crm_mapping import crm_mapping
from sync.delivery import BatchOutcome, process_connection
from sync.store.crypto import decrypt_json
from sync.store.db import session_scope
from sync.store.models import AuditEvent, Connection, Delivery, Message, utcnow
from sync.tenants import apply_config

T = "sfco"
V = "/services/data/v59.0"
YAML = (FIXTURES / "crm_salesforce.yaml").read_text()
TENANT = {"id": T, "name": "Cabinet Test Salesforce", "timezone": "Europe/Paris",
          "phone_region": "FR"}  # fmt: skip


# ---------------------------------------------------------------- helpers


def apply(text: str) -> None:
    with session_scope() as session:
        apply_config(session, text, "crm_salesforce.yaml", actor="test")


@pytest.fixture
def sf(env, salesforce_emulator, monkeypatch):
    monkeypatch.setenv("RELAIS_TENANT_SFCO_SF_URL", salesforce_emulator.url)
    monkeypatch.setenv("RELAIS_TENANT_SFCO_SF_CA", str(salesforce_emulator.ca_file))
    apply(YAML)
    return salesforce_emulator


def static_token(sf) -> str:
    """A connection with the emulator's ready-made session (no refresh possible)."""
    with session_scope() as session:
        set_credentials(session, T, "salesforce", {"access_token": sf.session_id})
    return connection_id(T, "salesforce")


def oauth_app(sf) -> str:
    """A connection as after OAuth: app credentials, refresh token, a 2 h session."""
    with session_scope() as session:
        set_credentials(session, T, "salesforce", {
            "client_id": sf.client_id, "client_secret": sf.client_secret,
            "refresh_token": sf.refresh_token, "access_token": sf.session_id})  # fmt: skip
        row = session.scalar(select(Connection).where(Connection.tenant_id == T))
        row.token_expires_at = utcnow() + timedelta(hours=2)
    return connection_id(T, "salesforce")


def api_calls(sf) -> int:
    """Data API calls the org counted (what the 24 h allocation counts)."""
    return sf.knobs.counters().get("sf.api_calls", 0)


def run_once(conn: str, timeout: float = 10) -> BatchOutcome:
    """One engine step that sends a batch (waiting out the linger)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcome = process_connection(conn)
        if outcome.claimed:
            return outcome
        time.sleep(min(outcome.run_again_in or 0.05, 0.5))
    raise AssertionError("no batch was sent")


def deliveries() -> list[tuple[Delivery, Message]]:
    with session_scope(readonly=True) as session:
        rows = session.scalars(select(Delivery).where(Delivery.tenant_id == T)).all()
        out = [(d, session.get(Message, d.message_id)) for d in rows]
        session.expunge_all()
        return out


def audit_kinds() -> list[str]:
    with session_scope(readonly=True) as session:
        return list(session.scalars(select(AuditEvent.kind).where(AuditEvent.tenant_id == T)))


class MemoryLinks:
    """The engine's link store, in memory, for connector-level tests."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], str] = {}

    def get_many(self, local_type, local_ids, remote_type):
        return {i: self.rows[(local_type, i, remote_type)] for i in local_ids
                if (local_type, i, remote_type) in self.rows}  # fmt: skip

    def put(self, local_type, local_id, remote_type, remote_id):
        self.rows[(local_type, local_id, remote_type)] = remote_id


def direct(emu, links=None, mapping=None, **settings) -> SalesforceConnector:
    info = ConnectionInfo(
        id="conn-sf", tenant_id=T, name="salesforce", provider="salesforce",
        settings={"instance_url": emu.url, "ca_file": str(emu.ca_file), **settings},
        credentials={"access_token": emu.session_id},
        mapping=crm_mapping("salesforce", mapping))  # fmt: skip
    return SalesforceConnector(info, Runtime(links=links if links is not None else MemoryLinks()))


def message_request(n: int, **message) -> DeliveryRequest:
    payload = {"event": "message.created", "tenant": TENANT, "message": {
        "id": f"m{n}", "call_type": "message", "call_type_label": "Message", "urgency": "normal",
        "caller": {"name": f"Camille Martin{n}", "phone": f"+3361234{n:04d}"},
        "subject": f"Demande {n}", "body": "Souhaite un rappel.", "taken_by": "Sophie",
        "taken_at": "2026-11-27T09:15:00Z", "staff": None, "callback_requested": False,
        "intake": {}, **message}}  # fmt: skip
    return DeliveryRequest(f"d{n}", f"relais-d{n}", "message.created", payload)


def appointment_request(action: str, appointment_id: str = "appt-1", **changes) -> DeliveryRequest:
    appointment = {"id": appointment_id, "start": "2026-12-01T09:00:00+01:00",
                   "end": "2026-12-01T09:30:00+01:00", "subject": "Consultation",
                   "notes": "Première visite", "status": "confirmed", **changes}  # fmt: skip
    payload = {"event": action, "tenant": TENANT, "appointment": appointment,
               "caller": {"name": "Jeanne Petit", "phone": "+33611223344"},
               "staff": {"id": "claire", "name": "Claire Durand"}}  # fmt: skip
    stamp = f"{action}-{appointment_id}-{time.monotonic_ns()}"
    return DeliveryRequest(f"d-{stamp}", f"relais-{stamp}", action, payload)


# ---------------------------------------------------------------- messages


def test_messages_land_as_contacts_call_logs_and_callback_tasks(sf):
    conn = static_token(sf)
    for n in range(5):
        accept(T, call(n, callback_requested=(n % 2 == 0)))
    accept(T, call(0, subject="Deuxième appel"))  # the same caller again
    assert drain(conn, T) == {"delivered": 6}

    contacts = {c["Relais_Id__c"]: c for c in sf.records("Contact")}
    assert sorted(contacts) == [f"tel:+3361234000{n}" for n in range(5)]  # one per caller
    first = contacts["tel:+33612340000"]
    assert (first["FirstName"], first["LastName"], first["Phone"]) == (
        "Camille", "Martin0", "06 12 34 00 00")
    tasks = {t["Relais_Id__c"]: t for t in sf.records("Task")}
    assert len(tasks) == 6 + 3
    for delivery, message in deliveries():
        who = contacts[f"tel:{message.caller['phone']}"]["Id"]
        log = tasks[delivery.idempotency_key]
        assert delivery.external_id == f"Task/{log['Id']}"
        assert (log["WhoId"], log["Subject"], log["Status"], log["TaskSubtype"]) == (
            who, f"Appel : {message.subject}", "Completed", "Call")
        assert log["ActivityDate"] == "2026-11-27"
        callback = tasks.get(delivery.idempotency_key + ":callback")
        assert (callback is not None) == message.callback_requested
        if callback:
            assert (callback["WhoId"], callback["Subject"], callback["Status"]) == (
                who, f"Rappeler {message.caller['name']}", "Not Started")
            assert "Numéro à rappeler : 06 12 34" in callback["Description"]


def test_a_batch_of_200_messages_costs_four_api_calls(sf):
    conn = static_token(sf)
    for n in range(200):
        accept(T, call(n, callback_requested=True))
    before, counters_before = api_calls(sf), sf.knobs.counters()
    outcome = run_once(conn)
    assert (outcome.claimed, outcome.delivered) == (200, 200)
    # lookup (one Composite of SOQL subqueries) + contact upsert + log upsert + callback upsert
    assert api_calls(sf) - before == 4
    counters = sf.knobs.counters()
    sent = {k: counters.get(k, 0) - counters_before.get(k, 0) for k in counters}
    assert sent[f"POST {V}/composite"] == 1
    assert sent[f"PATCH {V}/composite/sobjects/Contact/Relais_Id__c"] == 1
    assert sent[f"PATCH {V}/composite/sobjects/Task/Relais_Id__c"] == 2
    assert sent["sf.query"] > 1  # the long lookup was split, yet cost one call
    assert len(sf.records("Contact")) == 200 and len(sf.records("Task")) == 400

    # The same 200 callers again: all linked, so no lookup and no contact write.
    for n in range(200):
        accept(T, call(n))
    before = api_calls(sf)
    assert run_once(conn).delivered == 200
    assert api_calls(sf) - before == 1
    assert len(sf.records("Contact")) == 200 and len(sf.records("Task")) == 600


def test_existing_contacts_are_found_by_the_lookup(sf):
    mobile = sf.insert("Contact", {"LastName": "Martin7", "MobilePhone": "+33 6 12 34 00 07"})
    by_email = sf.insert("Contact", {"LastName": "Roux", "Email": "Zoe.Roux@Exemple.fr"})
    sf.insert("Contact", {"LastName": "Autre", "Phone": "06 99 99 99 99"})
    conn = static_token(sf)
    accept(T, call(7))
    accept(T, call(8, caller={"name": "Zoé Roux", "email": "zoe.roux@exemple.fr"}))
    before = api_calls(sf)
    assert drain(conn, T) == {"delivered": 2}
    assert api_calls(sf) - before == 2  # one query, one Task upsert: no contact written
    assert len(sf.records("Contact")) == 3
    assert sorted(t["WhoId"] for t in sf.records("Task")) == sorted([mobile, by_email])


def test_duplicate_rule_match_is_reused_and_linked(sf):
    # Written in a form the lookup does not try; the org's duplicate rule still matches it.
    existing = sf.insert("Contact", {"LastName": "Martin3", "Phone": "0612 340 003"})
    conn = static_token(sf)
    accept(T, call(3))
    assert drain(conn, T) == {"delivered": 1}
    assert [c["Id"] for c in sf.records("Contact")] == [existing]
    assert [t["WhoId"] for t in sf.records("Task")] == [existing]
    counters = sf.knobs.counters()
    assert counters.get("status:400", 0) == 1  # the single-record upsert carrying the match
    assert counters[f"PATCH {V}/sobjects/Contact/Relais_Id__c/tel:+33612340003"] == 1

    accept(T, call(3, subject="Encore"))
    before = api_calls(sf)
    assert drain(conn, T) == {"delivered": 2}
    assert api_calls(sf) - before == 1  # linked now: only the Task upsert
    assert [t["WhoId"] for t in sf.records("Task")] == [existing, existing]


def test_task_written_then_connection_dropped_is_not_duplicated(sf):
    conn = static_token(sf)
    for n in range(3):
        accept(T, call(n))
    sf.knobs.drop_after_write(method="PATCH", path="/composite/sobjects/Task/")
    outcome = run_once(conn)
    assert (outcome.claimed, outcome.retried, outcome.delivered) == (3, 3, 0)
    assert statuses(T) == {"pending": 3}
    assert len(sf.records("Task")) == 3  # written, but the answer was lost
    force_due(T)
    assert drain(conn, T) == {"delivered": 3}
    assert len(sf.records("Task")) == 3  # upserted again by external id: updated, not doubled
    assert len(sf.records("Contact")) == 3
    assert sf.knobs.counters()[f"PATCH {V}/composite/sobjects/Task/Relais_Id__c"] == 2
    tasks = {t["Relais_Id__c"]: t["Id"] for t in sf.records("Task")}
    for delivery, _ in deliveries():
        assert delivery.external_id == f"Task/{tasks[delivery.idempotency_key]}"


def test_contact_deleted_in_salesforce_is_looked_up_again(sf):
    conn = static_token(sf)
    accept(T, call(5))
    assert drain(conn, T) == {"delivered": 1}
    [old] = sf.records("Contact")
    salesforce_client(sf).Contact.delete(old["Id"])  # merged away in Salesforce
    survivor = sf.insert("Contact", {"LastName": "Martin5", "Phone": "+33612340005"})
    accept(T, call(5, subject="Encore"))
    before = api_calls(sf)
    assert drain(conn, T) == {"delivered": 2}
    assert api_calls(sf) - before == 3  # refused Task, lookup, Task again
    assert sorted(t["WhoId"] for t in sf.records("Task")) == sorted([old["Id"], survivor])
    accept(T, call(5, subject="Et encore"))
    before = api_calls(sf)
    assert drain(conn, T) == {"delivered": 3}
    assert api_calls(sf) - before == 1  # the link now names the survivor


def test_mapping_and_record_errors_dead_letter_only_their_message(sf):
    apply(YAML.replace(
        "      ca_file: ${RELAIS_TENANT_SFCO_SF_CA}\n",
        "      ca_file: ${RELAIS_TENANT_SFCO_SF_CA}\n"
        "    mapping:\n      contact:\n        fields:\n"
        "          LastName: caller.company\n          Title: message.subject\n"))  # fmt: skip
    conn = static_token(sf)
    accept(T, call(1, caller={"name": "Ana Roux", "phone": "+33612340001", "company": "Roux SA"}))
    accept(T, call(2))  # no company: the mapping cannot fill LastName
    accept(T, call(3, caller={"name": "Léo Dumas", "phone": "+33612340003", "company": "Dumas"},
                   subject="x" * 200))  # Title is 128 characters at most in Salesforce
    assert drain(conn, T) == {"delivered": 1, "dead": 2}
    reasons = {m.caller["phone"]: d.last_error for d, m in deliveries() if d.status == "dead"}
    assert reasons["+33612340002"].startswith("mapping of contact.LastName: ")
    assert "Contact needs LastName" in reasons["+33612340002"]
    assert reasons["+33612340003"].startswith(
        "Salesforce refused the Contact caller: STRING_TOO_LONG: Title: data value too large")
    assert reasons["+33612340003"].endswith("(fields: Title)")
    [contact] = sf.records("Contact")
    assert (contact["LastName"], contact["Title"]) == ("Roux SA", "Demande 1")
    assert [t["WhoId"] for t in sf.records("Task")] == [contact["Id"]]


# ---------------------------------------------------------------- tokens and limits


def test_expired_session_is_refreshed_through_the_token_endpoint(sf):
    conn = oauth_app(sf)
    accept(T, call(1))
    assert drain(conn, T) == {"delivered": 1}
    sf.expire_sessions()  # the org's session timeout struck early
    accept(T, call(2))
    assert drain(conn, T) == {"delivered": 2}
    assert sf.knobs.counters().get("sf.oauth.refresh_token") == 1
    kinds = audit_kinds()
    assert kinds.count("delivery.token_expired") == 1
    assert kinds.count("connection.token_refreshed") == 1
    with session_scope(readonly=True) as session:
        row = session.get(Connection, conn)
        credentials = decrypt_json(row.credentials)
        left = row.token_expires_at - utcnow()
    assert credentials["access_token"] != sf.session_id
    assert credentials["instance_url"] == sf.url  # from the token response
    assert timedelta(seconds=7100) < left <= timedelta(seconds=7200)  # no expires_in: 2 h
    assert len(sf.records("Task")) == 2


def test_revoked_refresh_token_parks_the_connection_until_reconnected(sf):
    conn = oauth_app(sf)
    sf.revoke_refresh_token(sf.refresh_token)  # the admin revoked the app in Salesforce
    accept(T, call(3))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        outcome = process_connection(conn)
        if any("needs re-authorization" in note for note in outcome.notes):
            break
        time.sleep(min(outcome.run_again_in or 0.05, 0.5))
    with session_scope(readonly=True) as session:
        assert session.get(Connection, conn).status == "needs_reauth"
    assert "connection.needs_reauth" in audit_kinds()
    assert statuses(T) == {"pending": 1}  # waiting, not dropped
    assert process_connection(conn).claimed == 0

    with session_scope() as session:
        key = create_key(session, "admin", T, "admin")
    client = TestClient(create_app())
    started = client.post(f"/v1/tenants/{T}/connections/salesforce/authorize",
                          headers={"Authorization": f"Bearer {key}"})
    assert started.status_code == 200, started.text
    url = urlparse(started.json()["authorize_url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == sf.url + "/services/oauth2/authorize"
    query = parse_qs(url.query)
    assert query["client_id"] == [sf.client_id] and query["code_challenge_method"] == ["S256"]
    done = client.get("/oauth/callback",
                      params={"state": query["state"][0], "code": sf.issue_auth_code()})
    assert done.status_code == 200, done.text
    assert drain(conn, T) == {"delivered": 1}
    with session_scope(readonly=True) as session:
        row = session.get(Connection, conn)
        assert row.status == "active"
        assert decrypt_json(row.credentials)["refresh_token"] != sf.refresh_token


def test_request_limit_exceeded_pauses_the_connection_and_keeps_the_work(sf):
    conn = static_token(sf)
    sf.set_api_usage(15000)  # the org's 24 h allocation is used up
    accept(T, call(4))
    outcome = run_once(conn)
    assert (outcome.claimed, outcome.retried, outcome.delivered, outcome.dead) == (1, 1, 0, 0)
    assert 3500 < outcome.run_again_in <= 3600
    with session_scope(readonly=True) as session:
        row = session.get(Connection, conn)
        [delivery] = session.scalars(select(Delivery)).all()
        pause = row.paused_until - utcnow()
        assert delivery.status == "pending" and delivery.attempts == 0
        assert delivery.next_attempt_at == row.paused_until
        assert "REQUEST_LIMIT_EXCEEDED" in delivery.last_error
    assert timedelta(minutes=59) < pause <= timedelta(hours=1)
    assert "delivery.rate_limited" in audit_kinds()
    seen = sf.knobs.calls()
    paused = process_connection(conn)
    assert paused.claimed == 0 and "paused by provider limit" in paused.notes
    assert sf.knobs.calls() == seen  # nothing sent while paused

    sf.set_api_usage(0)  # the window rolled on; the pause is over
    with session_scope() as session:
        session.get(Connection, conn).paused_until = None
    force_due(T)
    assert drain(conn, T) == {"delivered": 1}
    assert len(sf.records("Task")) == 1


def test_usage_header_stops_sending_at_the_connections_daily_limit(salesforce_emulator):
    emu = salesforce_emulator
    emu.set_api_usage(48)
    connector = direct(emu, daily_limit=50)
    [result] = connector.deliver([message_request(1, callback_requested=True)])
    # lookup (49/15000), contact upsert (50/15000), then the header says stop
    assert connector.calls == 2 and emu.api_usage()[0] == 50
    assert isinstance(result.error, RateLimited)
    assert "50/15000" in str(result.error) and "stops at 50" in str(result.error)
    assert len(emu.records("Contact")) == 1 and emu.records("Task") == []


# ---------------------------------------------------------------- appointments


def test_appointment_event_is_created_moved_and_cancelled(salesforce_emulator):
    emu = salesforce_emulator
    links = MemoryLinks()
    [created] = direct(emu, links).deliver([appointment_request("appointment.created")])
    assert created.ok, created.error
    [event] = emu.records("Event")
    [contact] = emu.records("Contact")
    assert created.external_id == f"Event/{event['Id']}"
    assert (event["Relais_Id__c"], event["Subject"], event["WhoId"]) == (
        "appt-1", "Consultation", contact["Id"])
    assert (event["StartDateTime"], event["EndDateTime"]) == (
        "2026-12-01T08:00:00.000+0000", "2026-12-01T08:30:00.000+0000")
    assert event["Description"].startswith("Première visite")

    [again] = direct(emu, links).deliver([appointment_request("appointment.created")])
    assert again.external_id == created.external_id and len(emu.records("Event")) == 1

    moved = appointment_request("appointment.updated", start="2026-12-01T10:00:00+01:00",
                                end="2026-12-01T11:00:00+01:00")  # fmt: skip
    assert direct(emu, links).deliver([moved])[0].external_id == created.external_id
    [event] = emu.records("Event")
    assert (event["StartDateTime"], event["DurationInMinutes"]) == (
        "2026-12-01T09:00:00.000+0000", 60)

    # Cancelled through a worker that has no link: found by external id, then deleted.
    connector = direct(emu, MemoryLinks())
    [cancelled] = connector.deliver([appointment_request("appointment.cancelled",
                                                         status="cancelled")])  # fmt: skip
    assert cancelled.ok and cancelled.external_id == created.external_id
    assert connector.calls == 2  # Event lookup + delete
    assert emu.records("Event") == []
    assert [e["Id"] for e in emu.records("Event", include_deleted=True)] == [event["Id"]]
    # Cancelling again (a retry) finds it already gone: done all the same.
    [twice] = direct(emu, links).deliver([appointment_request("appointment.cancelled")])
    assert twice.ok and twice.external_id == created.external_id

    # Two changes of one appointment in one batch apply in order.
    connector = direct(emu, links)
    results = connector.deliver([appointment_request("appointment.created", "appt-2"),
                                 appointment_request("appointment.cancelled", "appt-2")])
    assert [r.ok for r in results] == [True, True]
    assert results[0].external_id == results[1].external_id
    assert emu.records("Event") == [] and len(emu.records("Event", include_deleted=True)) == 2
    assert len(emu.records("Contact")) == 1  # the caller, linked


def test_cancellation_is_recorded_when_the_mapping_reads_the_status(salesforce_emulator):
    emu = salesforce_emulator
    mapping = effective_mapping("salesforce", SalesforceMapping.model_validate({
        "appointment": {"fields": {"ShowAs": {
            "from": "appointment.status", "map": {"cancelled": "Free"}, "default": "Busy"}}}}))
    links = MemoryLinks()
    [created] = direct(emu, links, mapping).deliver([appointment_request("appointment.created")])
    assert emu.records("Event")[0]["ShowAs"] == "Busy"
    [cancelled] = direct(emu, links, mapping).deliver(
        [appointment_request("appointment.cancelled", status="cancelled")])
    assert cancelled.ok and cancelled.external_id == created.external_id
    [event] = emu.records("Event")  # kept, marked
    assert event["ShowAs"] == "Free"


# ---------------------------------------------------------------- provider limits (issue 11)


def test_a_batch_of_600_new_callers_keeps_to_five_queries_per_composite(salesforce_emulator):
    """Salesforce refuses a Composite with a sixth query subrequest (the emulator too):
    the lookup of 600 new callers must still go through, in few calls."""
    emu = salesforce_emulator
    connector = direct(emu)
    before = emu.knobs.counters()
    results = connector.deliver([message_request(n) for n in range(600)])
    assert [r.error for r in results if r.error] == []
    assert len(emu.records("Contact")) == 600 and len(emu.records("Task")) == 600
    after = emu.knobs.counters()
    composites = after.get(f"POST {V}/composite", 0) - before.get(f"POST {V}/composite", 0)
    queries = after.get("sf.query", 0) - before.get("sf.query", 0)
    assert queries <= 5 * composites and composites <= 3  # long IN lists, few calls


def test_the_emulator_refuses_a_sixth_query_in_a_composite(salesforce_emulator):
    import requests

    emu = salesforce_emulator
    url = f"/services/data/v59.0/query?q={'SELECT+Id+FROM+Contact'}"
    body = {"compositeRequest": [
        {"method": "GET", "url": url, "referenceId": f"q{n}"} for n in range(6)]}  # fmt: skip
    answer = requests.post(f"{emu.url}{V}/composite", json=body, verify=str(emu.ca_file),
                           headers={"Authorization": f"Bearer {emu.session_id}"}, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["compositeResponse"][0]["body"][0]["errorCode"] == "LIMIT_EXCEEDED"
    body["compositeRequest"].pop()
    assert requests.post(f"{emu.url}{V}/composite", json=body, verify=str(emu.ca_file),
                         headers={"Authorization": f"Bearer {emu.session_id}"},
                         timeout=10).status_code == 200


def test_existing_contacts_typed_in_six_formats_are_found(sf):
    """Issue 9: a contact typed ``04 72 00 00 02`` (or with dots, dashes, +33…) is the
    caller +33472000002: found, never duplicated."""
    formats = ["+33472000001", "04 72 00 00 02", "0472000003", "04.72.00.00.04",
               "+33 4 72 00 00 05", "04-72-00-00-06"]  # fmt: skip
    for n, phone in enumerate(formats, 1):
        sf.insert("Contact", {"LastName": f"Format{n}", "Phone" if n % 2 else "MobilePhone":
                              phone}, allow_duplicates=True)  # fmt: skip
    conn = static_token(sf)
    for n in range(1, 7):
        accept(T, call(n, caller={"name": f"Client {n}", "phone": f"+3347200000{n}"}))
    assert drain(conn, T) == {"delivered": 6}
    contacts = {c["Id"]: c for c in sf.records("Contact")}
    assert len(contacts) == 6  # zero new contacts
    whos = {t["WhoId"] for t in sf.records("Task")}
    assert whos == set(contacts)


def test_300_new_callers_with_one_conflicting_contact_all_delivered_once(sf):
    """Issue 11 acceptance: 300 new callers in one run, one of them already in the org
    in a form no lookup matches (the duplicate rule catches it): all delivered, nobody
    twice, and no Composite over Salesforce's five queries."""
    owner = sf.insert("Contact", {"LastName": "Déjà-là", "Phone": "0612 300 150"})
    conn = static_token(sf)
    for n in range(300):
        accept(T, call(n, caller={"name": f"Client {n}", "phone": f"+336123{n:05d}"}))
    assert drain(conn, T, timeout=60) == {"delivered": 300}
    contacts = sf.records("Contact")
    assert len(contacts) == 300  # 299 new + the owner
    tasks = sf.records("Task")
    assert len(tasks) == 300 and len({t["Relais_Id__c"] for t in tasks}) == 300
    assert sum(t["WhoId"] == owner for t in tasks) == 1
