"""Calendar → Relais: incremental pulls of staff calendars (Google syncToken, Graph
delta links) against the sandboxes through the real connectors, appointments moved
or cancelled by the office, our own writes not echoed, and the change
notifications (Google channels, Graph subscriptions, HubSpot v3 webhooks)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from booking_helpers import CLAIRE, PAUL, TENANT, deliveries, setup_tenant
from conftest import FIXTURES
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from connectors.outlook import client as outlook
from relais.api import create_app
from sandbox.server import SandboxServer
from sandbox.testing import (  # noqa: F401  (fixtures)
    google_emulator,
    google_server,
    graph_emulator,
    graph_server,
    hubspot_emulator,
    hubspot_server,
)
from sync import busy, clock
from sync import calendar_sync as cs
from sync.booking import BookingRequest, book, reschedule
from sync.connections import set_credentials
from sync.contacts import pull_connection as pull_contacts
from sync.pull_triggers import PullTriggers
from sync.store.calendar_sync_models import CalendarChannel, CalendarSyncState
from sync.store.db import session_scope
from sync.store.directory import DirectoryContact
from sync.store.models import Appointment, AuditEvent, Connection, PullCursor, utcnow
from sync.tenants import apply_config

NOW = datetime(2027, 3, 20, 12, 0, tzinfo=UTC)
TEN = datetime.fromisoformat("2027-03-23T10:00:00+01:00")


def connection_id(name: str = "agenda", tenant: str = TENANT) -> str:
    with session_scope(readonly=True) as session:
        return session.scalar(
            select(Connection.id).where(Connection.tenant_id == tenant, Connection.name == name)
        )


def set_settings(conn: str, **values) -> None:
    with session_scope() as session:
        row = session.get(Connection, conn)
        row.settings = {**(row.settings or {}), **values}


def make_booking(key: str = "k-1", start: datetime = TEN, staff: str = "claire") -> Appointment:
    outcome = book(TENANT, BookingRequest(
        staff_id=staff, type_id="consultation", start=start,
        caller={"name": "Mme Martin", "phone": "06 11 22 33 44"}, subject="Consultation",
        notes="", idempotency_key=key, booked_by="sophie"))  # fmt: skip
    assert outcome.appointment.status == "confirmed"
    return outcome.appointment


def appointment(apt_id: str) -> Appointment:
    with session_scope(readonly=True) as session:
        return session.get(Appointment, apt_id)


def audit_kinds(apt_id: str) -> list[str]:
    with session_scope(readonly=True) as session:
        return list(session.scalars(select(AuditEvent.kind).where(
            AuditEvent.subject_id == apt_id).order_by(AuditEvent.id)))


def list_requests(emu, calendar: str) -> list[dict]:
    return [r for r in emu.knobs.requests()
            if r["method"] == "GET" and r["path"].endswith("/events")
            and calendar in r["path"].replace("%40", "@")]  # fmt: skip


def warm_cache(conn: str, calendar: str) -> None:
    lo = NOW
    busy.CACHE.put((TENANT, conn, calendar), lo, lo + timedelta(days=7), [])
    assert busy.CACHE.get((TENANT, conn, calendar), lo, lo + timedelta(days=1)) is not None


def cached(conn: str, calendar: str) -> bool:
    return busy.CACHE.get((TENANT, conn, calendar), NOW, NOW + timedelta(days=1)) is not None


# ========================================================================== Google


@pytest.fixture
def google(hub_clock, env, google_emulator, monkeypatch):
    hub_clock(NOW, ticking=True)  # the hub's; providers keep the machine's
    setup_tenant(google_emulator, monkeypatch)
    return google_emulator


def test_google_incremental_pull_reads_only_changes_and_moves_our_appointment(google):
    conn = connection_id()
    apt = make_booking()
    google.seed_events(PAUL, [{"summary": "Audience", "start": {"dateTime": "2027-03-24T09:00:00",
                       "timeZone": "Europe/Paris"}, "end": {"dateTime": "2027-03-24T10:00:00",
                       "timeZone": "Europe/Paris"}}])  # fmt: skip
    first = cs.pull_connection(conn)
    # zoe's calendar does not exist: that calendar fails, the others are read in full
    assert first.calendars == 2 and "missing@cabinet.test" in (first.error or "")
    assert first.own_writes == 1 and first.moved == 0 and first.changes == 2
    assert "syncToken" not in list_requests(google, CLAIRE)[-1]["query"]
    before = len(list_requests(google, CLAIRE))

    again = cs.pull_connection(conn)  # nothing changed: one list call per calendar, no items
    assert again.changes == 0 and again.own_writes == 0
    claire_reads = list_requests(google, CLAIRE)[before:]
    assert len(claire_reads) == 1 and "syncToken=" in claire_reads[0]["query"]

    warm_cache(conn, CLAIRE)
    google.patch_event(CLAIRE, apt.event_id, {  # the office moves it to 15:00 in Google
        "start": {"dateTime": "2027-03-23T15:00:00", "timeZone": "Europe/Paris"},
        "end": {"dateTime": "2027-03-23T16:00:00", "timeZone": "Europe/Paris"}})  # fmt: skip
    moved = cs.pull_connection(conn)
    assert (moved.changes, moved.moved, moved.cancelled) == (1, 1, 0)
    row = appointment(apt.id)
    assert row.status == "confirmed"
    assert row.start == datetime(2027, 3, 23, 14, 0, tzinfo=UTC)
    assert row.end == datetime(2027, 3, 23, 15, 0, tzinfo=UTC)
    assert ("appointment.updated", "pending") in deliveries(apt.id)
    assert audit_kinds(apt.id)[-1] == "appointment.moved_in_calendar"
    assert not cached(conn, CLAIRE)

    quiet = cs.pull_connection(conn)  # the stored ETag is the new one: no second update
    assert quiet.changes == 0 and deliveries(apt.id).count(("appointment.updated", "pending")) == 1


def test_google_cancelled_in_calendar_cancels_the_appointment(google):
    conn = connection_id()
    apt = make_booking()
    cs.pull_connection(conn)
    warm_cache(conn, CLAIRE)
    google.delete_event(CLAIRE, apt.event_id)
    outcome = cs.pull_connection(conn)
    assert outcome.cancelled == 1
    assert appointment(apt.id).status == "cancelled"
    assert ("appointment.cancelled", "pending") in deliveries(apt.id)
    assert not cached(conn, CLAIRE)
    with session_scope(readonly=True) as session:
        detail = session.scalars(select(AuditEvent).where(
            AuditEvent.subject_id == apt.id, AuditEvent.kind == "appointment.cancelled")).one()
        assert detail.detail["by"] == "calendar"


def test_google_expired_sync_token_wipes_the_cursor_and_resyncs_in_full(google):
    conn = connection_id()
    apt = make_booking()
    cs.pull_connection(conn)
    google.patch_event(CLAIRE, apt.event_id, {
        "start": {"dateTime": "2027-03-23T16:00:00", "timeZone": "Europe/Paris"},
        "end": {"dateTime": "2027-03-23T17:00:00", "timeZone": "Europe/Paris"}})  # fmt: skip
    google.invalidate_sync_tokens()
    outcome = cs.pull_connection(conn)
    assert outcome.full_resyncs == 2  # claire and paul: 410, then a full read each
    assert outcome.moved == 1  # the move made while the token was dead is not lost
    assert appointment(apt.id).start == datetime(2027, 3, 23, 15, 0, tzinfo=UTC)
    assert google.knobs.counters().get("google.sync.full_sync_required") == 2
    with session_scope(readonly=True) as session:
        cursor = session.get(PullCursor, (conn, "calendar", CLAIRE))
        assert cursor.cursor and cursor.full_syncs == 2
    assert cs.pull_connection(conn).full_resyncs == 0  # the new token works


def test_our_own_move_is_not_echoed_back(google):
    conn = connection_id()
    apt = make_booking()
    cs.pull_connection(conn)
    reschedule(TENANT, apt.id, start=datetime.fromisoformat("2027-03-23T14:00:00+01:00"),
               actor="sophie")
    sent = deliveries(apt.id)
    outcome = cs.pull_connection(conn)
    assert outcome.changes == 1 and outcome.own_writes == 1 and outcome.moved == 0
    assert deliveries(apt.id) == sent
    assert appointment(apt.id).start == datetime(2027, 3, 23, 13, 0, tzinfo=UTC)


def test_a_connection_never_runs_two_pulls_at_once(google):
    conn = connection_id()
    cs.pull_connection(conn)
    with session_scope() as session:
        session.get(CalendarSyncState, conn).running_since = utcnow()
    skipped = cs.pull_connection(conn)
    assert skipped.status == "skipped" and "already running" in skipped.note
    assert conn not in cs.due_connections()


@pytest.fixture
def serve(env):
    """The API as a real server, its notifications starting the given pulls."""
    servers: list[SandboxServer] = []

    def start(triggers: PullTriggers) -> SandboxServer:
        servers.append(SandboxServer(create_app(triggers), name="relais").start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_google_watch_channel_notifications_trigger_a_pull(google, serve):
    conn = connection_id()
    pulls: list[tuple[str, list[str]]] = []

    def inline(connection: str, calendars):
        pulls.append((connection, list(calendars)))
        cs.pull_connection(connection, calendar_ids=calendars)

    triggers = PullTriggers(calendar=inline)
    relais_server = serve(triggers)
    set_settings(conn, notification_url=relais_server.url)
    apt = make_booking()
    first = cs.pull_connection(conn)
    assert first.channels == {CLAIRE: "created", PAUL: "created"}
    assert google.wait_notifications()
    syncs = [n for n in google.notifications() if n["kind"] == "google.sync"]
    assert len(syncs) == 2 and all(n["status"] == 200 for n in syncs), syncs
    assert pulls == []  # "sync" is acknowledged without pulling
    with session_scope(readonly=True) as session:
        channel = session.scalars(select(CalendarChannel).where(
            CalendarChannel.calendar_id == CLAIRE)).one()
        assert channel.secret_hash and len(channel.secret_hash) == 64  # only a hash is stored

    google.patch_event(CLAIRE, apt.event_id, {
        "start": {"dateTime": "2027-03-23T11:00:00", "timeZone": "Europe/Paris"},
        "end": {"dateTime": "2027-03-23T12:00:00", "timeZone": "Europe/Paris"}})  # fmt: skip
    assert google.wait_notifications()
    exists = [n for n in google.notifications() if n["kind"] == "google.exists"]
    assert exists and exists[-1]["status"] == 200
    assert pulls == [(conn, [CLAIRE])]
    assert appointment(apt.id).start == datetime(2027, 3, 23, 10, 0, tzinfo=UTC)

    # forgeries: wrong token, unknown channel, a replayed message number
    client = TestClient(create_app(triggers))
    headers = {"X-Goog-Channel-ID": channel.id, "X-Goog-Channel-Token": "guessed",
               "X-Goog-Resource-ID": channel.resource_id, "X-Goog-Resource-State": "exists",
               "X-Goog-Message-Number": "99"}  # fmt: skip
    assert client.post("/v1/webhooks/google", headers=headers).status_code == 401
    unknown = {**headers, "X-Goog-Channel-ID": "nope"}
    assert client.post("/v1/webhooks/google", headers=unknown).status_code == 404
    assert pulls == [(conn, [CLAIRE])]

    # renewal before expiry: a new channel replaces the old one, which is stopped
    renewed = cs.renew_channels(clock.machine_now() + timedelta(days=7))
    assert sorted(renewed.values()) == ["created", "created"]
    with session_scope(readonly=True) as session:
        old = session.get(CalendarChannel, channel.id)
        assert old.status == "stopped"
    assert [c["stopped"] for c in google.channels() if c["id"] == channel.id] == [True]
    stale = {**headers, "X-Goog-Channel-Token": "x"}
    assert client.post("/v1/webhooks/google", headers=stale).status_code in (401, 404)


# ========================================================================== Graph

OUTLOOK = """\
  agenda:
    provider: outlook
    settings:
      authority: ${RELAIS_TENANT_CABINET_TEST_MS_AUTHORITY}
      graph_base_url: ${RELAIS_TENANT_CABINET_TEST_GRAPH_URL}
      ca_file: ${RELAIS_TENANT_CABINET_TEST_GRAPH_CA}
      delta_future_days: 800
      sync_page_size: 2
"""


@pytest.fixture
def graph(hub_clock, env, graph_emulator, monkeypatch):
    hub_clock(NOW, ticking=True)  # the hub's; providers keep the machine's
    ms = graph_emulator
    outlook.forget_apps()
    for name, value in {"RELAIS_TENANT_CABINET_TEST_MS_AUTHORITY": ms.authority,
                        "RELAIS_TENANT_CABINET_TEST_GRAPH_URL": ms.graph_url,
                        "RELAIS_TENANT_CABINET_TEST_GRAPH_CA": str(ms.ca_file),
                        "RELAIS_TENANT_CABINET_TEST_CRM_URL": "http://127.0.0.1:9/crm"}.items():
        monkeypatch.setenv(name, value)  # fmt: skip
    for mail in (CLAIRE, PAUL):
        ms.add_mailbox(mail, time_zone="Europe/Paris")
    text = (FIXTURES / "booking.yaml").read_text()
    start = text.index("  agenda:\n")
    end = text.index("  crm:\n")
    with session_scope() as session:
        apply_config(session, text[:start] + OUTLOOK + text[end:], "outlook.yaml", actor="test")
    with session_scope() as session:
        set_credentials(session, TENANT, "agenda", {
            "client_id": ms.client_id, "client_secret": ms.client_secret,
            "tenant_id": ms.tenant_id})  # fmt: skip
        session.execute(update(Connection).where(Connection.name == "agenda")
                        .values(status="active"))  # fmt: skip
    busy.CACHE.clear()
    busy.POOL.clear()
    return ms


def delta_requests(ms, mailbox: str) -> list[dict]:
    return [r for r in ms.knobs.requests() if r["path"].endswith("/calendarView/delta")
            and mailbox in r["path"].replace("%40", "@")]  # fmt: skip


def test_graph_delta_pull_moves_cancels_and_resyncs(graph):
    ms = graph
    conn = connection_id()
    apt = make_booking()
    other = make_booking("k-2", datetime.fromisoformat("2027-03-23T14:00:00+01:00"))
    ms.seed_events(CLAIRE, [{"subject": "Déjeuner", "start": {"dateTime": "2027-03-24T12:00:00",
                   "timeZone": "Europe/Paris"}, "end": {"dateTime": "2027-03-24T13:00:00",
                   "timeZone": "Europe/Paris"}}])  # fmt: skip
    first = cs.pull_connection(conn)
    assert first.own_writes == 2 and first.moved == 0 and first.changes == 3
    assert len(delta_requests(ms, CLAIRE)) == 2  # pages of 2 events: nextLink, then deltaLink

    n = len(delta_requests(ms, CLAIRE))
    assert cs.pull_connection(conn).changes == 0
    again = delta_requests(ms, CLAIRE)[n:]
    assert len(again) == 1 and "deltatoken" in again[0]["query"]

    warm_cache(conn, CLAIRE)
    ms.patch_event(CLAIRE, apt.event_id, {
        "start": {"dateTime": "2027-03-23T16:00:00", "timeZone": "Europe/Paris"},
        "end": {"dateTime": "2027-03-23T17:00:00", "timeZone": "Europe/Paris"}})  # fmt: skip
    ms.delete_event(CLAIRE, other.event_id)
    outcome = cs.pull_connection(conn)
    assert (outcome.changes, outcome.moved, outcome.cancelled) == (2, 1, 1)
    assert appointment(apt.id).start == datetime(2027, 3, 23, 15, 0, tzinfo=UTC)
    assert appointment(apt.id).status == "confirmed"
    assert appointment(other.id).status == "cancelled"
    assert ("appointment.updated", "pending") in deliveries(apt.id)
    assert ("appointment.cancelled", "pending") in deliveries(other.id)
    assert not cached(conn, CLAIRE)

    # moved far ahead, out of the delta window: Graph says "@removed"; the event is read
    # back, and it is a move, not a cancellation
    ms.patch_event(CLAIRE, apt.event_id, {
        "start": {"dateTime": "2030-01-15T10:00:00", "timeZone": "Europe/Paris"},
        "end": {"dateTime": "2030-01-15T11:00:00", "timeZone": "Europe/Paris"}})  # fmt: skip
    far = cs.pull_connection(conn)
    assert (far.changes, far.moved, far.cancelled) == (1, 1, 0)
    assert [r["status"] for r in ms.knobs.requests()
            if r["method"] == "GET" and r["path"].endswith(apt.event_id)] == [200]  # fmt: skip
    assert appointment(apt.id).start == datetime(2030, 1, 15, 9, 0, tzinfo=UTC)
    assert appointment(apt.id).status == "confirmed"

    ms.invalidate_delta_tokens()
    resync = cs.pull_connection(conn)
    assert resync.full_resyncs == 2 and resync.moved == 0 and resync.cancelled == 0
    assert ms.knobs.counters().get("graph.delta.gone") == 2


def test_graph_subscription_handshake_notifications_and_forgeries(graph, serve):
    ms = graph
    conn = connection_id()
    pulls: list[tuple[str, list[str]]] = []

    def inline(connection: str, calendars):
        pulls.append((connection, list(calendars)))
        cs.pull_connection(connection, calendar_ids=calendars)

    triggers = PullTriggers(calendar=inline)
    relais_server = serve(triggers)
    set_settings(conn, notification_url=relais_server.url)
    apt = make_booking()
    first = cs.pull_connection(conn)  # subscribing runs Graph's handshake against our route
    assert first.channels == {CLAIRE: "created", PAUL: "created"}, first.note
    assert ms.knobs.counters().get("graph.subscriptions.created") == 2
    ms.patch_event(CLAIRE, apt.event_id, {
        "start": {"dateTime": "2027-03-23T09:00:00", "timeZone": "Europe/Paris"},
        "end": {"dateTime": "2027-03-23T10:00:00", "timeZone": "Europe/Paris"}})  # fmt: skip
    assert ms.wait_notifications()
    note = [n for n in ms.notifications() if n["kind"] == "graph.notification"][-1]
    assert note["status"] == 202
    assert pulls == [(conn, [CLAIRE])]
    assert appointment(apt.id).start == datetime(2027, 3, 23, 8, 0, tzinfo=UTC)

    client = TestClient(create_app(triggers))
    echo = client.post("/v1/webhooks/graph", params={"validationToken": "abc 123"})
    assert echo.status_code == 200 and echo.text == "abc 123"
    assert echo.headers["content-type"].startswith("text/plain")
    with session_scope(readonly=True) as session:
        sub = session.scalars(select(CalendarChannel).where(
            CalendarChannel.calendar_id == CLAIRE)).one()
    forged = {"value": [{"subscriptionId": sub.id, "clientState": "guessed",
                         "changeType": "updated", "resource": "x"}]}  # fmt: skip
    assert client.post("/v1/webhooks/graph", json=forged).status_code == 401
    unknown = {"value": [{"subscriptionId": "nope", "clientState": "x"}]}
    assert client.post("/v1/webhooks/graph", json=unknown).status_code == 401
    assert pulls == [(conn, [CLAIRE])]

    renewed = cs.renew_channels(clock.machine_now() + timedelta(days=2, hours=12))
    assert sorted(renewed.values()) == ["renewed", "renewed"]
    assert ms.knobs.counters().get("graph.subscriptions.renewed") == 2


# ========================================================================== HubSpot

HS = "crmco"


@pytest.fixture
def hs(env, hubspot_emulator, monkeypatch):
    hubspot_emulator.clock.set_offset(0)
    monkeypatch.setenv("RELAIS_TENANT_CRMCO_HS_URL", hubspot_emulator.url)
    with session_scope() as session:
        apply_config(session, (FIXTURES / "crm.yaml").read_text(), "crm.yaml", actor="test")
    with session_scope() as session:
        set_credentials(session, HS, "hubspot", {"access_token": hubspot_emulator.private_app_token,
                                                 "client_secret": "hs-app-secret"})  # fmt: skip
    return hubspot_emulator


def signed(body: bytes, uri: str, secret: str = "hs-app-secret", at: float | None = None):
    stamp = str(int((time.time() if at is None else at) * 1000))
    source = f"POST{uri}{body.decode()}{stamp}".encode()
    digest = base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest())
    return {"X-HubSpot-Signature-v3": digest.decode(), "X-HubSpot-Request-Timestamp": stamp,
            "Content-Type": "application/json"}  # fmt: skip


def test_hubspot_v3_webhook_good_forged_and_stale(hs):
    from hubspot.utils.signature import Signature

    conn = connection_id("hubspot", HS)
    pulled: list[str] = []

    def inline(connection: str):
        pulled.append(connection)
        pull_contacts(connection)

    hs.insert("contacts", {"firstname": "Jeanne", "lastname": "Petit", "phone": "+33612345678"})
    body = json.dumps([{"eventId": 1, "subscriptionType": "contact.creation", "objectId": 1,
                        "portalId": 62515, "occurredAt": int(time.time() * 1000)}]).encode()
    client = TestClient(create_app(PullTriggers(contacts=inline)))
    uri = "http://testserver/v1/webhooks/hubspot"
    good = signed(body, uri)
    assert Signature.is_valid(good["X-HubSpot-Signature-v3"], "hs-app-secret", body.decode(),
                              uri, "POST", "v3", good["X-HubSpot-Request-Timestamp"])  # fmt: skip
    forged = signed(body, uri, secret="not-the-secret")
    stale = signed(body, uri, at=time.time() - 301)
    assert client.post("/v1/webhooks/hubspot", content=body, headers=forged).status_code == 401
    assert client.post("/v1/webhooks/hubspot", content=body, headers=stale).status_code == 401
    tampered = body.replace(b"62515", b"62516")
    assert client.post("/v1/webhooks/hubspot", content=tampered, headers=good).status_code == 401
    assert pulled == []
    response = client.post("/v1/webhooks/hubspot", content=body, headers=good)
    assert response.status_code == 200, response.text
    assert response.json()["pulls"] == 1 and pulled == [conn]
    with session_scope(readonly=True) as session:
        names = session.scalars(select(DirectoryContact.name).where(
            DirectoryContact.connection_id == conn)).all()
    assert "Jeanne Petit" in names


def test_calendar_sync_status_is_shown_to_the_tenant_admin(google):
    from relais.auth import create_key

    conn = connection_id()
    make_booking()
    cs.pull_connection(conn)
    with session_scope() as session:
        admin = create_key(session, "admin", TENANT, "it")
        secretary = create_key(session, "secretary", TENANT, "sophie")
    client = TestClient(create_app())
    url = f"/v1/tenants/{TENANT}/sync/calendars"
    assert client.get(url, headers={"Authorization": f"Bearer {secretary}"}).status_code == 403
    body = client.get(url, headers={"Authorization": f"Bearer {admin}"}).json()
    (status,) = body["connections"]
    assert status["connection"] == "agenda" and status["state"] == "idle"
    assert "missing@cabinet.test" in status["last_error"]
    assert sorted(c["calendar"] for c in status["calendars"]) == [CLAIRE, PAUL]
    assert all(c["has_cursor"] for c in status["calendars"])


@pytest.mark.parametrize("event", ["subscriptionRemoved", "reauthorizationRequired", "missed"])
def test_graph_lifecycle_events_resubscribe_and_resync(graph, serve, event):
    """Issue 11: subscriptions carry a lifecycleNotificationUrl; a removed subscription
    is made again, one needing reauthorization is replaced, missed notifications are
    caught up by a pull: changes go on arriving."""
    ms = graph
    conn = connection_id()
    pulls: list[tuple[str, list[str]]] = []

    def queued(connection: str, calendars):  # the Celery task, run after the answer
        pulls.append((connection, list(calendars)))

    def run_queued() -> None:
        for connection, calendars in pulls[done:]:
            outcome = cs.pull_connection(connection, calendar_ids=calendars)
            assert outcome.status == "ok", outcome.note

    relais_server = serve(PullTriggers(calendar=queued))
    set_settings(conn, notification_url=relais_server.url)
    done = 0
    apt = make_booking()
    assert cs.pull_connection(conn).channels == {CLAIRE: "created", PAUL: "created"}
    subs = {s["id"]: s for s in ms.subscriptions()}
    assert all(s["lifecycleNotificationUrl"] == s["notificationUrl"] for s in subs.values())
    with session_scope(readonly=True) as session:
        old = session.scalars(select(CalendarChannel).where(
            CalendarChannel.calendar_id == CLAIRE)).one().id
    assert ms.lifecycle_event(old, event)
    assert ms.wait_notifications()
    note = [n for n in ms.notifications() if n["kind"] == "graph.lifecycle"][-1]
    assert note["status"] == 202
    assert pulls == [(conn, [CLAIRE])]  # a resync of that calendar
    run_queued()
    done = len(pulls)
    with session_scope(readonly=True) as session:
        now_active = session.scalars(select(CalendarChannel.id).where(
            CalendarChannel.calendar_id == CLAIRE, CalendarChannel.status == "active")).all()
    assert len(now_active) == 1 and (now_active[0] == old) == (event == "missed")
    assert {s["id"] for s in ms.subscriptions()} == set(subs) - {old} | set(now_active)
    ms.patch_event(CLAIRE, apt.event_id, {
        "start": {"dateTime": "2027-03-23T09:00:00", "timeZone": "Europe/Paris"},
        "end": {"dateTime": "2027-03-23T10:00:00", "timeZone": "Europe/Paris"}})  # fmt: skip
    assert ms.wait_notifications()
    assert pulls[done:] == [(conn, [CLAIRE])]  # changes still arrive
    run_queued()
    assert appointment(apt.id).start == datetime(2027, 3, 23, 8, 0, tzinfo=UTC)


def test_channels_skipped_without_https_are_said_so(google, monkeypatch, caplog):
    """RELAIS_PUBLIC_URL not https: no watch channel, and `sync status` and the worker's
    start say why instead of skipping silently."""
    import logging

    from typer.testing import CliRunner

    import worker
    from relais.cli import app
    from sync.settings import reset_settings

    monkeypatch.setenv("RELAIS_PUBLIC_URL", "http://127.0.0.1:8000")
    reset_settings()
    conn = connection_id()
    assert cs.pull_connection(conn).channels == {}
    with session_scope(readonly=True) as session:
        (status,) = cs.sync_status(session, TENANT)
    assert status["channels_off"] == (
        "RELAIS_PUBLIC_URL is 'http://127.0.0.1:8000', not https: no watch channel or "
        "subscription (calendar changes are seen at the scheduled pull only)")
    shown = CliRunner().invoke(app, ["sync", "status", "--tenant", TENANT])
    assert shown.exit_code == 0, shown.output
    assert f"{TENANT}/agenda: RELAIS_PUBLIC_URL is 'http://127.0.0.1:8000', not https" in (
        " ".join(shown.output.split()))
    with caplog.at_level(logging.WARNING, logger="relais.worker"):
        worker._say_what_is_off()
    assert "not https: no watch channel" in caplog.text
    # an https public URL: channels are on, nothing to say
    monkeypatch.setenv("RELAIS_PUBLIC_URL", "https://relais.example")
    reset_settings()
    with session_scope(readonly=True) as session:
        (status,) = cs.sync_status(session, TENANT)
    assert status["channels_off"] is None
