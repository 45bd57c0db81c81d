"""The admin's Sync and "Personnel et agendas" tabs without a browser: who reaches
them, "sync now" pulling the Google sandbox for real (or queued for the workers), the
calendars' cursors and channels, conflicts, the live calendar check against the
sandbox (readable, not found, needs re-authorisation), and a calendar id changed as a
new configuration version (the browser scenario: ``test_console_sync_browser.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from booking_helpers import CLAIRE, PAUL, TENANT, setup_tenant
from conftest import FIXTURES
from fastapi.testclient import TestClient
from sqlalchemy import select

from connectors.outlook import client as outlook
from relais.api import create_app
from relais.console.staff import classify
from relais.console.users import create_user
from sandbox.testing import (  # noqa: F401  (fixtures)
    google_emulator,
    google_server,
    graph_emulator,
    graph_server,
    hubspot_emulator,
    hubspot_server,
)
from sync import busy, calendar_sync
from sync.booking import BookingRequest, book
from sync.config_versions import history
from sync.connections import set_credentials
from sync.contacts import pull_connection as pull_contacts
from sync.pull_triggers import PullTriggers
from sync.store.conflict_models import SyncConflict
from sync.store.db import session_scope
from sync.store.models import Connection, PullCursor, Tenant, utcnow
from sync.tenants import apply_config

PASSWORD = "motdepasse-de-test"
NOW = datetime(2027, 3, 20, 12, 0, tzinfo=UTC)  # a Saturday; the week after is open


@pytest.fixture
def hub(hub_clock, env, google_emulator, monkeypatch):  # noqa: F811
    """The booking tenant (Google sandbox calendars for claire and paul, zoe's missing),
    its admin, a secretary, the operator, and another tenant with its own admin."""
    hub_clock(NOW, ticking=True)  # the hub's clock; the sandbox keeps the machine's
    setup_tenant(google_emulator, monkeypatch)
    for key in ("HS", "GOOGLE", "HOOK"):
        monkeypatch.setenv(f"RELAIS_TENANT_ADMIN_A_{key}_URL", "http://127.0.0.1:9/x")
    with session_scope() as session:
        apply_config(session, (FIXTURES / "console_admin.yaml").read_text(), "a.yaml",
                     actor="test")
        create_user(session, "it@cabinet.test", "IT", "tenant_admin", PASSWORD,
                    tenant_id=TENANT)
        create_user(session, "it@a.test", "IT A", "tenant_admin", PASSWORD, tenant_id="admin-a")
        create_user(session, "s@cabinet.test", "Sophie", "secretary", PASSWORD,
                    tenants=[TENANT])
        create_user(session, "ops@p.test", "Ops", "operator", PASSWORD)
    return google_emulator


def client_of(email: str, app=None) -> tuple[TestClient, str]:
    client = TestClient(app or create_app(), base_url="https://testserver")
    token = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    home = client.post("/login", data={"email": email, "password": PASSWORD,
                                       "csrf_token": token}, follow_redirects=True)
    return client, home.text.split('"X-CSRF-Token": "')[1].split('"')[0]


def inline() -> PullTriggers:
    """Pulls run in the request, for real, against the sandbox (the served API queues
    them for the workers instead)."""
    return PullTriggers(
        calendar=lambda conn, calendars: calendar_sync.pull_connection(
            conn, calendar_ids=calendars),
        contacts=pull_contacts)


def cursors() -> dict[str, bool]:
    with session_scope(readonly=True) as session:
        return {c.partition: c.cursor is not None for c in session.scalars(
            select(PullCursor).where(PullCursor.stream == calendar_sync.CALENDARS.name))}


def event_reads(emu, calendar: str) -> int:
    return len([r for r in emu.knobs.requests() if r["method"] == "GET"
                and r["path"].endswith("/events") and calendar in r["path"].replace("%40", "@")])


def freebusy_calls(emu) -> int:
    return len([r for r in emu.knobs.requests() if r["path"].endswith("/freeBusy")])


def test_only_this_tenants_admin_and_the_operator_reach_the_tabs(hub):
    admin, _ = client_of("it@cabinet.test")
    for page in ("sync", "staff"):
        shown = admin.get(f"/t/{TENANT}/{page}")
        assert shown.status_code == 200, page
        assert f'href="/t/{TENANT}/{page}" aria-current="page"' in shown.text
    other, other_csrf = client_of("it@a.test")
    secretary, secretary_csrf = client_of("s@cabinet.test")
    for client, csrf in ((other, other_csrf), (secretary, secretary_csrf)):
        for page in ("sync", "staff"):
            assert client.get(f"/t/{TENANT}/{page}").status_code == 404
        for action in ("sync/now", "staff/claire/check", "staff/claire/calendar"):
            refused = client.post(f"/t/{TENANT}/{action}",
                                  data={"csrf_token": csrf, "connection": "agenda",
                                        "calendar_id": "x@cabinet.test"})
            assert refused.status_code == 404, action
    assert other.get("/t/admin-a/sync").status_code == 200  # their own tenant: yes
    assert cursors() == {} and freebusy_calls(hub) == 0  # nothing ran for them
    ops, _ = client_of("ops@p.test")
    assert ops.get(f"/t/{TENANT}/staff").status_code == 200
    assert admin.get(f"/t/{TENANT}/staff/nobody/check").status_code == 405
    assert admin.post(f"/t/{TENANT}/staff/nobody/check",
                      data={"csrf_token": client_of("it@cabinet.test")[1]}).status_code == 403


def test_sync_now_pulls_the_calendars_and_shows_cursors_and_channels(hub):
    admin, csrf = client_of("it@cabinet.test", create_app(inline()))
    before = admin.get(f"/t/{TENANT}/sync").text
    assert 'id="stream-agenda"' in before and 'data-cursor="no"' in before
    assert admin.post(f"/t/{TENANT}/sync/now", data={}).status_code == 403  # no CSRF token
    assert cursors() == {}

    done = admin.post(f"/t/{TENANT}/sync/now", data={"csrf_token": csrf})
    assert done.status_code == 200
    assert 'id="started-agenda" data-outcome="ran"' in done.text
    # zoe's calendar does not exist: it fails alone, and the page says so
    assert "missing@cabinet.test" in done.text.split('id="started-agenda"')[1].split("</li>")[0]
    assert cursors() == {CLAIRE: True, PAUL: True}
    assert event_reads(hub, CLAIRE) == 1 and event_reads(hub, PAUL) == 1
    rows = done.text.split('id="calendars-agenda"')[1]
    assert f'data-calendar="{CLAIRE}" data-channel="off" data-cursor="yes"' in rows
    assert 'data-calendar="missing@cabinet.test" data-channel="off" data-cursor="no"' in rows
    assert "RELAIS_PUBLIC_URL" in rows  # why there is no channel, not silence
    assert 'id="stream-agenda" data-state="idle" data-connection-status="active"' in done.text

    one = admin.post(f"/t/{TENANT}/sync/now", data={"csrf_token": csrf, "connection": "agenda"})
    assert 'data-outcome="ran"' in one.text and event_reads(hub, CLAIRE) == 2
    assert admin.post(f"/t/{TENANT}/sync/now", data={"csrf_token": csrf, "connection": "crm"}
                      ).status_code == 404  # a webhook: nothing to pull
    admin_fr = admin.get(f"/t/{TENANT}/sync").text
    assert "Synchroniser maintenant" in admin_fr
    admin.cookies.set("relais_lang", "en")
    assert "Sync now" in admin.get(f"/t/{TENANT}/sync").text


def test_a_pull_opens_channels_and_the_page_shows_their_expiry(hub):
    """With a notification address the pull opens a watch channel per calendar it read;
    the page shows it active with its expiry (the missing calendar: none yet)."""
    with session_scope() as session:
        row = session.scalars(select(Connection).where(Connection.tenant_id == TENANT,
                                                       Connection.name == "agenda")).one()
        row.settings = {**row.settings, "notification_url": "http://127.0.0.1:9/hooks"}
    admin, csrf = client_of("it@cabinet.test", create_app(inline()))
    done = admin.post(f"/t/{TENANT}/sync/now", data={"csrf_token": csrf}).text
    rows = done.split('id="calendars-agenda"')[1]
    assert f'data-calendar="{CLAIRE}" data-channel="active" data-cursor="yes"' in rows
    assert f'data-calendar="{PAUL}" data-channel="active" data-cursor="yes"' in rows
    assert 'data-calendar="missing@cabinet.test" data-channel="none" data-cursor="no"' in rows
    expiry = [c["expiration_ms"] for c in hub.channels() if c["calendar"] == CLAIRE]
    assert len(expiry) == 1
    shown = datetime.fromtimestamp(int(expiry[0]) / 1000, UTC).astimezone(
        ZoneInfo("Europe/Paris")).strftime("%d/%m/%Y %H:%M")
    assert shown in rows.split(f'data-calendar="{CLAIRE}"')[1].split("</tr>")[0]


def test_sync_now_pulls_a_crm_directory(hub, hubspot_emulator, monkeypatch):  # noqa: F811
    """The other tenant's HubSpot directory (the sandbox): "sync now" pulls it, the
    stream shows the contact; its Google agenda, never connected, is not started."""
    monkeypatch.setenv("RELAIS_TENANT_ADMIN_A_HS_URL", hubspot_emulator.url)
    with session_scope() as session:
        apply_config(session, (FIXTURES / "console_admin.yaml").read_text(), "a.yaml",
                     actor="test")
        set_credentials(session, "admin-a", "hubspot",
                        {"access_token": hubspot_emulator.private_app_token})
    hubspot_emulator.insert("contacts", {"firstname": "Jeanne", "lastname": "Martin",
                                         "phone": "06 12 34 56 78"})
    admin, csrf = client_of("it@a.test", create_app(inline()))
    assert 'id="stream-hubspot"' in admin.get("/t/admin-a/sync").text
    done = admin.post("/t/admin-a/sync/now", data={"csrf_token": csrf}).text
    assert 'id="started-hubspot" data-outcome="ran"' in done
    assert 'id="started-agenda" data-outcome="not_started"' in done
    stream = done.split('id="stream-hubspot"')[1].split("</tr>")[0]
    assert "1 contacts" in stream and 'data-connection-status="active"' in stream
    assert any(r["path"].startswith("/crm/v3/objects/contacts")
               for r in hubspot_emulator.knobs.requests())
    other, other_csrf = client_of("it@cabinet.test", create_app(inline()))
    refused = other.post("/t/admin-a/sync/now", data={"csrf_token": other_csrf})
    assert refused.status_code == 404


def test_sync_now_in_the_served_api_is_queued_for_the_workers(hub):
    admin, csrf = client_of("it@cabinet.test")  # create_app(): the Celery triggers
    queued = admin.post(f"/t/{TENANT}/sync/now", data={"csrf_token": csrf})
    assert queued.status_code == 200
    assert 'id="started-agenda" data-outcome="queued"' in queued.text
    assert cursors() == {} and event_reads(hub, CLAIRE) == 0  # the worker will, not the page
    with session_scope() as session:
        row = session.scalars(select(Connection).where(Connection.tenant_id == TENANT,
                                                       Connection.name == "agenda")).one()
        row.status = "needs_reauth"
    refused = admin.post(f"/t/{TENANT}/sync/now", data={"csrf_token": csrf})
    assert 'id="started-agenda" data-outcome="not_started"' in refused.text
    assert "needs_reauth" in refused.text.split('id="started-agenda"')[1].split("</li>")[0]


def test_conflicts_are_listed_newest_first(hub):
    outcome = book(TENANT, BookingRequest(
        staff_id="claire", type_id="consultation",
        start=datetime.fromisoformat("2027-03-23T10:00:00+01:00"),
        caller={"name": "Mme Martin", "phone": "06 11 22 33 44"}, subject="Consultation",
        notes="", idempotency_key="k-1", booked_by="sophie"))
    with session_scope() as session:
        for n, winner in enumerate(("calendar", "relais")):
            session.add(SyncConflict(tenant_id=TENANT, appointment_id=outcome.appointment.id,
                                     field="subject", relais_value=f"Relais {n}",
                                     calendar_value=f"Agenda {n}", winner=winner,
                                     policy="latest"))
    admin, _ = client_of("it@cabinet.test")
    table = admin.get(f"/t/{TENANT}/sync").text.split('id="conflicts"')[1]
    assert table.index("Agenda 1") < table.index("Agenda 0")
    assert outcome.appointment.id in table and "Aucun conflit" not in table
    other, _ = client_of("it@a.test")
    assert "Agenda 1" not in other.get("/t/admin-a/sync").text


def test_staff_check_reads_the_calendar_live(hub):
    admin, csrf = client_of("it@cabinet.test")
    page = admin.get(f"/t/{TENANT}/staff").text
    assert f'id="staff-claire" data-calendar="{CLAIRE}"' in page
    assert 'id="staff-zoe" data-calendar="missing@cabinet.test"' in page
    hub.seed_events(CLAIRE, [{"summary": "Audience",
                              "start": {"dateTime": "2027-03-20T15:00:00+01:00"},
                              "end": {"dateTime": "2027-03-20T16:00:00+01:00"}}])
    calls = freebusy_calls(hub)
    readable = admin.post(f"/t/{TENANT}/staff/claire/check", data={"csrf_token": csrf})
    assert readable.status_code == 200
    assert 'data-staff="claire" data-outcome="readable"' in readable.text
    assert freebusy_calls(hub) == calls + 1  # a real call, every time (no cache)
    again = admin.post(f"/t/{TENANT}/staff/claire/check", data={"csrf_token": csrf})
    assert 'data-outcome="readable"' in again.text and freebusy_calls(hub) == calls + 2

    missing = admin.post(f"/t/{TENANT}/staff/zoe/check", data={"csrf_token": csrf})
    assert 'data-staff="zoe" data-outcome="not_found"' in missing.text
    assert "introuvable" in missing.text
    assert admin.post(f"/t/{TENANT}/staff/nobody/check",
                      data={"csrf_token": csrf}).status_code == 404
    assert admin.post(f"/t/{TENANT}/staff/claire/check", data={}).status_code == 403

    with session_scope() as session:  # a token with its expiry, as a consent leaves it
        row = session.scalars(select(Connection).where(Connection.tenant_id == TENANT,
                                                       Connection.name == "agenda")).one()
        row.token_expires_at = utcnow() + timedelta(hours=1)
    hub.revoke_refresh_token()  # the account withdrew its consent: 401, refresh refused
    reauth = admin.post(f"/t/{TENANT}/staff/claire/check", data={"csrf_token": csrf})
    assert 'data-staff="claire" data-outcome="needs_reauth"' in reauth.text, \
        reauth.text.split('id="checked"')[1][:600]
    assert f'href="/t/{TENANT}/connections"' in reauth.text
    with session_scope(readonly=True) as session:
        assert session.scalars(select(Connection.status).where(
            Connection.tenant_id == TENANT, Connection.name == "agenda")).one() == "needs_reauth"


OUTLOOK = """\
  agenda:
    provider: outlook
    settings:
      authority: ${RELAIS_TENANT_CABINET_TEST_MS_AUTHORITY}
      graph_base_url: ${RELAIS_TENANT_CABINET_TEST_GRAPH_URL}
      ca_file: ${RELAIS_TENANT_CABINET_TEST_GRAPH_CA}
"""


def test_staff_check_says_forbidden_when_the_app_may_not_read_calendars(
        hub_clock, env, graph_emulator, monkeypatch):  # noqa: F811
    """The same tenant on the Graph sandbox (an app-only connection); the app's
    calendar permission withdrawn: getSchedule answers 403, the page says so."""
    hub_clock(NOW, ticking=True)
    ms = graph_emulator
    outlook.forget_apps()
    for name, value in {"RELAIS_TENANT_CABINET_TEST_MS_AUTHORITY": ms.authority,
                        "RELAIS_TENANT_CABINET_TEST_GRAPH_URL": ms.graph_url,
                        "RELAIS_TENANT_CABINET_TEST_GRAPH_CA": str(ms.ca_file),
                        "RELAIS_TENANT_CABINET_TEST_CRM_URL": "http://127.0.0.1:9/crm"}.items():
        monkeypatch.setenv(name, value)
    ms.add_mailbox(CLAIRE, time_zone="Europe/Paris")
    text = (FIXTURES / "booking.yaml").read_text()
    text = text[:text.index("  agenda:\n")] + OUTLOOK + text[text.index("  crm:\n"):]
    with session_scope() as session:
        apply_config(session, text, "outlook.yaml", actor="test")
    with session_scope() as session:
        set_credentials(session, TENANT, "agenda", {
            "client_id": ms.client_id, "client_secret": ms.client_secret,
            "tenant_id": ms.tenant_id})
        row = session.scalars(select(Connection).where(Connection.tenant_id == TENANT,
                                                       Connection.name == "agenda")).one()
        row.status = "active"  # app-only: nothing to authorize
        create_user(session, "it@cabinet.test", "IT", "tenant_admin", PASSWORD,
                    tenant_id=TENANT)
    busy.CACHE.clear()
    busy.POOL.clear()
    admin, csrf = client_of("it@cabinet.test")
    readable = admin.post(f"/t/{TENANT}/staff/claire/check", data={"csrf_token": csrf})
    assert 'data-staff="claire" data-outcome="readable"' in readable.text
    missing = admin.post(f"/t/{TENANT}/staff/zoe/check", data={"csrf_token": csrf})
    assert 'data-staff="zoe" data-outcome="not_found"' in missing.text, \
        missing.text.split('id="checked"')[1][:600]

    monkeypatch.setattr(ms.identity.default_app, "roles", ("User.Read.All",))
    outlook.forget_apps()  # a new token, without the calendar permission
    busy.POOL.clear()
    refused = admin.post(f"/t/{TENANT}/staff/claire/check", data={"csrf_token": csrf})
    assert 'data-staff="claire" data-outcome="forbidden"' in refused.text, \
        refused.text.split('id="checked"')[1][:600]
    assert "accès refusé" in refused.text


def test_unreadable_reasons_in_the_admins_words():
    assert classify("Google freeBusy: global/notFound", "active") == "not_found"
    assert classify("rejected: getSchedule answered 404 ErrorInvalidUser: invalid",
                    "active") == "not_found"
    assert classify("Graph getSchedule: ErrorAccessDenied: Access is denied",
                    "active") == "forbidden"
    assert classify("the calendar provider did not answer (rejected: 403 forbidden)",
                    "active") == "forbidden"
    assert classify("anything", "needs_reauth") == "needs_reauth"
    assert classify("the calendar provider did not answer (auth_expired: 401)",
                    "active") == "needs_reauth"
    assert classify("the calendar provider did not answer (transient: 503)",
                    "active") == "unreadable"


def test_a_calendar_id_change_is_a_new_version_kept_for_rollback(hub):
    hub.add_calendar("zoe@cabinet.test", time_zone="Europe/Paris")
    admin, csrf = client_of("it@cabinet.test")
    with session_scope(readonly=True) as session:
        before = session.get(Tenant, TENANT)
        version, text = before.config_version, before.config_yaml
    refused = admin.post(f"/t/{TENANT}/staff/zoe/calendar",
                         data={"connection": "agenda", "calendar_id": "zoe@cabinet.test"})
    assert refused.status_code == 403
    wrong = admin.post(f"/t/{TENANT}/staff/zoe/calendar",
                       data={"csrf_token": csrf, "connection": "crm",
                             "calendar_id": "zoe@cabinet.test"})
    assert wrong.status_code == 422 and 'class="staff-error"' in wrong.text
    empty = admin.post(f"/t/{TENANT}/staff/zoe/calendar",
                       data={"csrf_token": csrf, "connection": "agenda", "calendar_id": " "})
    assert empty.status_code == 422 and "calendar_id" in empty.text
    with session_scope(readonly=True) as session:
        assert session.get(Tenant, TENANT).config_version == version

    changed = admin.post(f"/t/{TENANT}/staff/zoe/calendar",
                         data={"csrf_token": csrf, "connection": "agenda",
                               "calendar_id": "zoe@cabinet.test"})
    assert changed.status_code == 200 and 'id="outcome"' in changed.text
    assert 'id="staff-zoe" data-calendar="zoe@cabinet.test"' in changed.text
    with session_scope(readonly=True) as session:
        row = session.get(Tenant, TENANT)
        assert row.config_version == version + 1
        assert row.config_yaml == text.replace("id: missing@cabinet.test", "id: zoe@cabinet.test")
        last = history(session, TENANT)[0]
        assert last.version == version + 1 and last.actor.startswith("user:")
    checked = admin.post(f"/t/{TENANT}/staff/zoe/check", data={"csrf_token": csrf})
    assert 'data-staff="zoe" data-outcome="readable"' in checked.text

    back = admin.post(f"/t/{TENANT}/config/rollback",
                      data={"version": str(version), "csrf_token": csrf})
    assert back.status_code == 200
    with session_scope(readonly=True) as session:
        assert session.get(Tenant, TENANT).config_yaml == text
