"""The admin's Sync and "Personnel et agendas" tabs in a real browser (Debian's
Chromium), against the served API and a worker: "Synchroniser maintenant" by keyboard
queues the pull, the worker pulls the Google sandbox (the cursors land in the store),
the calendar checks read the sandbox live, and a calendar id changed in the page is a
new configuration version. axe-core finds no serious or critical violation."""

from __future__ import annotations

import pytest
from booking_helpers import CLAIRE, PAUL, TENANT, setup_tenant
from conftest import wait_until
from sqlalchemy import select
from test_console_browser import BROWSER, CHROMIUM, chromium, free_port, serious_violations, sign_in  # noqa: F401

from relais.console.users import create_user
from sandbox.testing import google_emulator, google_server  # noqa: F401  (fixtures)
from sync.settings import reset_settings
from sync.store.db import session_scope
from sync.store.models import PullCursor, Tenant

PASSWORD = "motdepasse-de-test"

pytestmark = BROWSER


@pytest.fixture
def sync_hub(env, monkeypatch, spawn, google_emulator):  # noqa: F811
    """The booking tenant on the Google sandbox, its tenant admin, the API and a worker."""
    setup_tenant(google_emulator, monkeypatch)
    env.vars.update({"RELAIS_TENANT_CABINET_TEST_GOOGLE_URL": google_emulator.url,
                     "RELAIS_TENANT_CABINET_TEST_CRM_URL": "http://127.0.0.1:9/crm"})
    reset_settings()
    with session_scope() as session:
        create_user(session, "it@cabinet.test", "Admin IT", "tenant_admin", PASSWORD,
                    tenant_id=TENANT)
    port = free_port()
    spawn(["serve", "--port", str(port)], env, ready="Uvicorn running")
    spawn(["worker", "--concurrency", "1"], env, ready="ready.")
    return f"http://127.0.0.1:{port}"


def _cursors() -> set[str]:
    with session_scope(readonly=True) as session:
        return {c.partition for c in session.scalars(select(PullCursor))
                if c.cursor is not None}


def test_admin_syncs_now_and_checks_and_changes_staff_calendars(sync_hub, chromium,  # noqa: F811
                                                                 google_emulator):  # noqa: F811
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    sign_in(page, sync_hub, "it@cabinet.test", f"/t/{TENANT}/sync")
    assert page.get_attribute(f"tr[data-calendar='{CLAIRE}']", "data-cursor") == "no"
    assert serious_violations(page) == []

    page.focus("#sync-now")  # by keyboard
    page.keyboard.press("Enter")
    page.wait_for_selector("#outcome")
    assert page.get_attribute("#started-agenda", "data-outcome") in ("queued", "running", "ran")
    wait_until(lambda: {CLAIRE, PAUL} <= _cursors(), 30, "the worker's pull of the sandbox")
    assert serious_violations(page) == []
    page.goto(sync_hub + f"/t/{TENANT}/sync")
    assert page.get_attribute(f"tr[data-calendar='{CLAIRE}']", "data-cursor") == "yes"
    assert page.get_attribute(f"tr[data-calendar='{CLAIRE}']", "data-channel") == "off"

    page.click(f"a[href='/t/{TENANT}/staff']")
    page.wait_for_selector("#staff")
    assert serious_violations(page) == []
    page.click("#check-claire")
    page.wait_for_selector("#checked[data-staff=claire]")
    assert page.get_attribute("#checked", "data-outcome") == "readable"
    page.click("#check-zoe")
    page.wait_for_selector("#checked[data-staff=zoe]")
    assert page.get_attribute("#checked", "data-outcome") == "not_found"
    assert serious_violations(page) == []

    google_emulator.add_calendar("zoe@cabinet.test", time_zone="Europe/Paris")
    with session_scope(readonly=True) as session:
        version = session.get(Tenant, TENANT).config_version
    page.fill("#calid-zoe", "zoe@cabinet.test")
    page.press("#calid-zoe", "Enter")
    page.wait_for_selector("#outcome")
    assert page.get_attribute("#staff-zoe", "data-calendar") == "zoe@cabinet.test"
    with session_scope(readonly=True) as session:
        row = session.get(Tenant, TENANT)
        assert row.config_version == version + 1 and "id: zoe@cabinet.test" in row.config_yaml
    page.click("#check-zoe")
    page.wait_for_selector("#checked[data-staff=zoe][data-outcome=readable]")
    assert serious_violations(page) == []
    context.close()
