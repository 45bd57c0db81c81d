"""HubSpot connector against the HubSpot sandbox, through hubspot-api-client."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from conftest import FIXTURES
from crm_helpers import accept, call, connection_id, drain, force_due, statuses
from fastapi.testclient import TestClient
from sqlalchemy import select

from relais.api import create_app
from relais.auth import create_key
from sandbox.testing import hubspot_emulator, hubspot_server  # noqa: F401
from sync.connections import set_credentials
from sync.crm_mapping import crm_mapping
from sync.store.db import session_scope
from sync.store.models import AuditEvent, Connection, Delivery
from sync.tenants import apply_config

T = "crmco"


@pytest.fixture
def hs(env, hubspot_emulator, monkeypatch):
    monkeypatch.setenv("RELAIS_TENANT_CRMCO_HS_URL", hubspot_emulator.url)
    with session_scope() as session:
        apply_config(session, (FIXTURES / "crm.yaml").read_text(), "crm.yaml", actor="test")
    return hubspot_emulator


def private_app(hs) -> str:
    with session_scope() as session:
        set_credentials(session, T, "hubspot", {"access_token": hs.private_app_token})
    return connection_id(T, "hubspot")


def objects(hs, kind: str) -> list[dict]:
    return hs.objects(kind)


def props(obj: dict) -> dict:
    return obj["properties"]


def associated(hs, kind: str) -> int:
    """How many ``kind`` records are associated with exactly one contact."""
    return sum(len(hs.associations(kind, o["id"], "contacts")) == 1 for o in hs.objects(kind))


def test_new_connection_waits_until_connected(hs):
    accept(T, call(1))
    conn = connection_id(T, "hubspot")
    with session_scope(readonly=True) as session:
        assert session.get(Connection, conn).status == "not_connected"
    from sync.delivery import process_connection

    assert process_connection(conn).claimed == 0
    assert statuses(T) == {"pending": 1}


def test_messages_land_as_contacts_calls_and_tasks(hs):
    conn = private_app(hs)
    for n in range(5):
        accept(T, call(n, callback_requested=(n % 2 == 0)))
    accept(T, call(0, subject="Deuxième appel"))  # same caller again
    assert drain(conn, T) == {"delivered": 6}
    contacts = objects(hs, "contacts")
    assert len(contacts) == 5  # the repeated caller is one contact
    by_phone = {props(c)["phone"]: c for c in contacts}
    assert props(by_phone["+33612340000"])["firstname"] == "Camille"
    calls = objects(hs, "calls")
    assert len(calls) == 6
    titles = sorted(props(c)["hs_call_title"] for c in calls)
    assert any("Deuxième appel" in t for t in titles) and any("Demande 4" in t for t in titles)
    assert len(objects(hs, "tasks")) == 3
    assert associated(hs, "calls") == 6 and associated(hs, "tasks") == 3
    with session_scope(readonly=True) as session:
        ext = sorted(session.scalars(select(Delivery.external_id)))
    assert all(e.startswith("calls/") for e in ext)


def test_batches_use_few_calls(hs):
    conn = private_app(hs)
    for n in range(300):
        accept(T, call(n, callback_requested=(n % 3 == 0)))
    before = hs.knobs.calls("POST", "/crm")
    drain(conn, T)
    used = hs.knobs.calls("POST", "/crm") - before
    # per 100 messages: search, contact upsert, calls create; 100 callback tasks in one call
    assert used == 10, hs.knobs.counters()
    assert len(objects(hs, "calls")) == 300 and len(objects(hs, "tasks")) == 100


def test_existing_contact_is_reused(hs):
    hs.insert("contacts", {"firstname": "Camille", "lastname": "Martin7",
                           "phone": "+33612340007"})
    conn = private_app(hs)
    accept(T, call(7))
    drain(conn, T)
    assert len(objects(hs, "contacts")) == 1


def test_write_applied_then_connection_dropped_creates_no_duplicate(hs):
    conn = private_app(hs)
    for n in range(3):
        accept(T, call(n))
    hs.knobs.drop_after_write(method="POST", path="/crm/v3/objects/calls/batch/create")
    counts = drain(conn, T, until=lambda c: c.get("delivered") == 3 or c.get("pending") == 3)
    if counts.get("pending"):
        force_due(T)
        counts = drain(conn, T)
    assert counts == {"delivered": 3}
    assert len(objects(hs, "calls")) == 3  # written once, although sent twice
    assert associated(hs, "calls") == 3


def test_429_storm_pauses_and_nothing_is_dropped(hs):
    hs.configure(rate_limit_max=2, rate_limit_interval_ms=1000)  # below what one batch needs
    conn = private_app(hs)
    for n in range(30):
        accept(T, call(n))
    counts = drain(conn, T, timeout=60)
    assert counts == {"delivered": 30}
    assert len(objects(hs, "calls")) == 30
    with session_scope(readonly=True) as session:
        kinds = set(session.scalars(select(AuditEvent.kind)))
    assert "delivery.rate_limited" in kinds


def test_token_expiry_mid_run_refreshes_once(hs):
    code = hs.issue_auth_code()
    with session_scope() as session:
        set_credentials(session, T, "hubspot", {"client_id": hs.client_id,
                                                "client_secret": hs.client_secret})
        key = create_key(session, "admin", T, "admin")
    client = TestClient(create_app())
    started = client.post(f"/v1/tenants/{T}/connections/hubspot/authorize",
                          headers={"Authorization": f"Bearer {key}"})
    assert started.status_code == 200, started.text
    query = parse_qs(urlparse(started.json()["authorize_url"]).query)
    assert query["client_id"] == [hs.client_id] and query["state"]
    done = client.get("/oauth/callback", params={"state": query["state"][0], "code": code})
    assert done.status_code == 200, done.text
    reused = client.get("/oauth/callback", params={"state": query["state"][0], "code": code})
    assert reused.status_code == 400
    conn = connection_id(T, "hubspot")
    accept(T, call(1))
    drain(conn, T)
    hs.expire_access_tokens()
    accept(T, call(2))
    assert drain(conn, T) == {"delivered": 2}
    with session_scope(readonly=True) as session:
        refreshes = session.scalars(select(AuditEvent).where(
            AuditEvent.kind == "connection.token_refreshed")).all()
    assert len(refreshes) == 1


def test_invalid_grant_parks_connection_and_keeps_deliveries(hs):
    code = hs.issue_auth_code()
    with session_scope() as session:
        set_credentials(session, T, "hubspot", {"client_id": hs.client_id,
                                                "client_secret": hs.client_secret})
    from sync.connections import start_authorization

    with session_scope() as session:
        state = start_authorization(session, T, "hubspot").state
    client = TestClient(create_app())
    assert client.get("/oauth/callback", params={"state": state, "code": code}).status_code == 200
    conn = connection_id(T, "hubspot")
    from sync.store.crypto import decrypt_json

    with session_scope(readonly=True) as session:
        stored = decrypt_json(session.get(Connection, conn).credentials)
    assert stored["refresh_token"] and stored["access_token"]
    hs.revoke_refresh_token(stored["refresh_token"])
    hs.expire_access_tokens()
    accept(T, call(3))
    import time

    from sync.delivery import process_connection

    def status() -> str:
        with session_scope(readonly=True) as session:
            return session.get(Connection, conn).status

    deadline = time.monotonic() + 10
    while status() != "needs_reauth" and time.monotonic() < deadline:
        outcome = process_connection(conn)  # 401, then a refused refresh
        time.sleep(min(outcome.run_again_in or 0.05, 0.5))
    with session_scope(readonly=True) as session:
        row = session.get(Connection, conn)
        assert row.status == "needs_reauth"
        kinds = list(session.scalars(select(AuditEvent.kind)))
    assert "connection.needs_reauth" in kinds
    assert statuses(T) == {"pending": 1}  # waiting, not dropped
    # The admin reconnects: the waiting delivery goes out.
    code = hs.issue_auth_code()
    with session_scope() as session:
        state = start_authorization(session, T, "hubspot").state
    assert client.get("/oauth/callback", params={"state": state, "code": code}).status_code == 200
    assert drain(conn, T) == {"delivered": 1}


def appointment_request(n: int, action: str, start: str, status: str = "confirmed"):
    from connectors.base import DeliveryRequest

    payload = {
        "event": action,
        "tenant": {"id": T, "name": "Cabinet Test CRM", "timezone": "Europe/Paris",
                   "phone_region": "FR"},
        "caller": {"name": "Jeanne Dupont", "phone": "+33612345678"},
        "staff": None,
        "appointment": {"id": "apt_1", "start": start, "end": start.replace(":00:00", ":30:00"),
                        "subject": "Premier rendez-vous", "notes": "", "status": status},
    }
    return DeliveryRequest(delivery_id=f"dlv_{n}", idempotency_key=f"relais-dlv_{n}",
                           action=action, payload=payload)


def test_appointments_become_one_meeting_moved_then_cancelled(hs):
    from connectors.base import Runtime
    from connectors.registry import build_connector
    from sync.credentials import connection_info
    from sync.links import ConnectionLinks
    from sync.store.models import Connection as Row

    conn = private_app(hs)
    with session_scope(readonly=True) as session:
        info = connection_info(session.get(Row, conn))

    def send(*requests):
        links = ConnectionLinks(T, conn)
        results = build_connector(info, Runtime(links=links)).deliver(list(requests))
        with session_scope() as session:
            links.flush(session)
        return results

    first = send(appointment_request(1, "appointment.created", "2026-12-01T09:00:00+00:00"))
    assert first[0].ok and first[0].external_id.startswith("meetings/")
    again = send(appointment_request(1, "appointment.created", "2026-12-01T09:00:00+00:00"))
    assert again[0].external_id == first[0].external_id
    moved = send(appointment_request(2, "appointment.updated", "2026-12-02T10:00:00+00:00"))
    assert moved[0].external_id == first[0].external_id
    meetings = objects(hs, "meetings")
    assert len(meetings) == 1
    assert props(meetings[0])["hs_meeting_outcome"] == "SCHEDULED"
    assert props(meetings[0])["hs_meeting_start_time"] in (
        "2026-12-02T10:00:00Z", "2026-12-02T10:00:00.000Z", "1764669600000")
    assert associated(hs, "meetings") == 1
    cancelled = send(appointment_request(3, "appointment.cancelled",
                                         "2026-12-02T10:00:00+00:00", status="cancelled"))
    assert cancelled[0].ok
    meetings = objects(hs, "meetings")
    assert len(meetings) == 1 and props(meetings[0])["hs_meeting_outcome"] == "CANCELED"
    assert len(objects(hs, "contacts")) == 1


# The ways people type one number into a CRM (issue 9): each seeded contact must be
# found by the caller's E.164 number, none created.
SIX_FORMATS = ["+33472000001", "04 72 00 00 02", "0472000003", "04.72.00.00.04",
               "+33 4 72 00 00 05", "04-72-00-00-06"]  # fmt: skip


def test_existing_contacts_typed_in_six_formats_are_found(hs):
    ids = [hs.insert("contacts", {"lastname": f"Format{n}", "phone" if n % 2 else "mobilephone":
                                  phone}) for n, phone in enumerate(SIX_FORMATS, 1)]  # fmt: skip
    conn = private_app(hs)
    for n in range(1, 7):
        accept(T, call(n, caller={"name": f"Client {n}", "phone": f"+3347200000{n}"}))
    assert drain(conn, T) == {"delivered": 6}
    assert len(objects(hs, "contacts")) == 6  # zero new contacts
    for n, contact_id in enumerate(ids, 1):
        assert len(hs.associations("contacts", contact_id, "calls")) == 1, SIX_FORMATS[n - 1]


def test_300_new_callers_with_one_conflicting_contact_all_delivered_once(hs):
    """Issue 11: HubSpot may refuse a whole batch upsert for one input whose email
    another contact owns (409, the emulator's default). The batch is split until that
    input stands alone; it is linked to the owner; the 299 others are created once."""
    hs.configure(search_index_delay_seconds=60)  # the owner, created a moment ago through
    owner = httpx.post(f"{hs.url}/crm/v3/objects/contacts", timeout=10, json={  # the API,
        "properties": {"lastname": "Déjà-là", "email": "zoe.roux@exemple.fr"}},  # is not
        headers={"Authorization": f"Bearer {hs.private_app_token}"}).json()["id"]  # searchable
    conn = private_app(hs)
    for n in range(300):
        caller = {"name": f"Client {n}", "phone": f"+336123{n:05d}"}
        if n == 150:
            caller["email"] = "zoe.roux@exemple.fr"
        accept(T, call(n, caller=caller))
    assert drain(conn, T, timeout=60) == {"delivered": 300}
    contacts = objects(hs, "contacts")
    assert len(contacts) == 300  # 299 new + the owner, nobody twice
    assert len({props(c)["relais_id"] for c in contacts if props(c).get("relais_id")}) == 299
    assert len(objects(hs, "calls")) == 300 and associated(hs, "calls") == 300
    assert len(hs.associations("contacts", owner, "calls")) == 1
    assert hs.knobs.counters().get("hs.batch_refused.contacts", 0) >= 1


def test_a_refused_record_is_read_back_before_it_is_rejected(hs):
    """Issue 11: any per-record error (not only a guessed message) is checked by
    relais_id first: the call an earlier attempt wrote is found, not dead-lettered."""
    conn = private_app(hs)
    accept(T, call(1))
    assert drain(conn, T) == {"delivered": 1}
    with session_scope() as session:  # the answer was lost: the delivery runs again
        row = session.scalar(select(Delivery).where(Delivery.tenant_id == T))
        row.status, row.external_id = "pending", None
    hs.knobs.fail(207, path="/crm/v3/objects/calls/batch/create", body={
        "status": "COMPLETE", "results": [], "numErrors": 1, "errors": [{
            "status": "error", "category": "VALIDATION_ERROR", "message": "Duplicate value",
            "context": {"objectWriteTraceId": [f"{_key()}"]}}]})  # fmt: skip
    assert drain(conn, T) == {"delivered": 1}
    assert len(objects(hs, "calls")) == 1


def _key() -> str:
    with session_scope(readonly=True) as session:
        return session.scalar(select(Delivery.idempotency_key).where(Delivery.tenant_id == T))


def test_daily_limit_pauses_until_midnight_in_the_accounts_time_zone(hs):
    """Issue 11: HubSpot's daily limit resets at midnight in the account's time-zone
    setting (account-info/v3/details), not at UTC midnight."""
    from zoneinfo import ZoneInfo

    from connectors.base import ConnectionInfo, RateLimited, Runtime
    from connectors.hubspot.client import HubSpotConnector, next_midnight

    hs.configure(time_zone="America/New_York", daily_limit=2)
    info = ConnectionInfo("conn-daily", T, "hubspot", "hubspot", {"api_base_url": hs.url},
                          {"access_token": hs.private_app_token},
                          crm_mapping("hubspot"))  # fmt: skip
    zone = ZoneInfo("America/New_York")
    before = next_midnight(zone)
    results = []
    for n in range(3):
        connector = HubSpotConnector(info, Runtime())
        results += connector.deliver([_message(n)])
    after = next_midnight(zone)
    limited = [r.error for r in results if isinstance(r.error, RateLimited)]
    assert limited and limited[-1].reset_at in (before, after)
    assert next_midnight(UTC) not in (before, after)


def test_next_midnight_across_a_dst_night():
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from connectors.hubspot.client import next_midnight

    paris = ZoneInfo("Europe/Paris")
    now = datetime(2026, 3, 28, 22, 30, tzinfo=UTC)  # Saturday 23:30 in Paris
    assert next_midnight(paris, now) == datetime(2026, 3, 29, tzinfo=paris)
    assert next_midnight(paris, now).utcoffset().total_seconds() == 3600
    assert next_midnight(paris, datetime(2026, 3, 29, 12, tzinfo=UTC)).isoformat() == (
        "2026-03-30T00:00:00+02:00")


def _message(n: int):
    from connectors.base import DeliveryRequest

    payload = {"event": "message.created",
               "tenant": {"id": T, "timezone": "Europe/Paris", "phone_region": "FR"},
               "message": {"id": f"m{n}", "call_type": "message", "urgency": "normal",
                           "caller": {"name": f"Client {n}", "phone": f"+3361234{n:04d}"},
                           "subject": "s", "body": "b", "taken_by": "Sophie",
                           "taken_at": "2026-11-27T09:15:00Z", "staff": None,
                           "callback_requested": False, "intake": {}}}  # fmt: skip
    return DeliveryRequest(f"d{n}", f"relais-d{n}", "message.created", payload)


def test_search_lag_never_duplicates_a_caller(hs):
    """Issue 11: search results lag writes (the emulator's default: 3 s). A caller
    created by one batch is not found by the next batch's search a moment later, and
    with no link to go by (another worker, a lost link) the upsert by relais_id still
    lands on the same contact."""
    from connectors.base import ConnectionInfo, Runtime
    from connectors.hubspot.client import HubSpotConnector

    info = ConnectionInfo("conn-lag", T, "hubspot", "hubspot", {"api_base_url": hs.url},
                          {"access_token": hs.private_app_token},
                          crm_mapping("hubspot"))  # fmt: skip
    for n in (1, 2):
        request = replace(_message(7), delivery_id=f"d7-{n}", idempotency_key=f"relais-d7-{n}")
        results = HubSpotConnector(info, Runtime()).deliver([request])
        assert [r.error for r in results] == [None]
    assert len(objects(hs, "contacts")) == 1 and len(objects(hs, "calls")) == 2


def test_every_request_waits_for_the_pacer(hs):
    """The limiter must count what HubSpot counts: the account-info request a fresh
    connector makes before its first call waits its turn too (unpaced, the limiter
    was one short per process and connection: a 429 and a whole 10 s window lost)."""
    from connectors.base import ConnectionInfo, Runtime
    from connectors.hubspot.client import HubSpotConnector

    class Counting:
        waits = 0

        def wait(self) -> None:
            self.waits += 1

    pacer, search = Counting(), Counting()
    info = ConnectionInfo("conn-paced", T, "hubspot", "hubspot", {"api_base_url": hs.url},
                          {"access_token": hs.private_app_token},
                          crm_mapping("hubspot"))  # fmt: skip
    before = hs.knobs.calls()
    connector = HubSpotConnector(info, Runtime(pacer=pacer, pacers={"search": search}))
    assert all(r.ok for r in connector.deliver([_message(1), _message(2)]))
    seen = hs.knobs.calls() - before
    assert seen > 1 and pacer.waits == seen == connector.calls
