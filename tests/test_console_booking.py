"""Booking from the console, in Debian's Chromium (scenario 2 of issue 13): two
secretaries race for the first free slot; one books it, the other is offered the
next ones; the Google Calendar sandbox holds exactly one event. And the booking
page has no serious or critical accessibility violation (axe-core)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from booking_helpers import CLAIRE, TENANT, live_events, setup_tenant
from test_console_browser import (  # noqa: F401  (fixtures)
    CHROMIUM,
    PASSWORD,
    chromium,
    free_port,
    serious_violations,
    sign_in,
)

from relais.console.users import create_user
from sandbox.testing import google_emulator, google_server  # noqa: F401  (fixtures)
from sync.clock import ENV_OFFSET, offset_for
from sync.settings import reset_settings
from sync.store.db import session_scope

pytestmark = [pytest.mark.processes]
PARIS = ZoneInfo("Europe/Paris")
MONDAY = datetime(2027, 1, 11, 8, 0, tzinfo=PARIS)  # the hub's now: a Monday morning


@pytest.fixture
def booking_hub(env, monkeypatch, spawn, google_emulator):  # noqa: F811
    setup_tenant(google_emulator, monkeypatch)
    values = {"RELAIS_TENANT_CABINET_TEST_GOOGLE_URL": google_emulator.url,
              "RELAIS_TENANT_CABINET_TEST_CRM_URL": "http://127.0.0.1:9/crm",
              ENV_OFFSET: str(offset_for(MONDAY))}
    env.vars.update(values)
    reset_settings()
    with session_scope() as session:
        for email, name in (("sophie@permanence.test", "Sophie"),
                            ("marc@permanence.test", "Marc")):
            create_user(session, email, name, "secretary", PASSWORD, tenants=[TENANT])
    port = free_port()
    spawn(["serve", "--port", str(port)], env, ready="Uvicorn running")
    return f"http://127.0.0.1:{port}"


def test_two_secretaries_race_for_the_first_free_slot(booking_hub, chromium,  # noqa: F811
                                                     google_emulator):  # noqa: F811
    target = f"/t/{TENANT}/book?type=bilan&staff=any&phone=%2B33612345678"
    first = chromium.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    second = chromium.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page1, page2 = first.new_page(), second.new_page()
    sign_in(page1, booking_hub, "sophie@permanence.test", target)
    sign_in(page2, booking_hub, "marc@permanence.test", target)
    assert "Europe/Paris" in page1.inner_text("#slots-title")  # the caller's zone (+33)
    picked = page1.get_attribute("#week-grid input[name=slot]:checked", "value")
    assert picked == page2.get_attribute("#week-grid input[name=slot]:checked", "value")
    assert picked.startswith("2027-01-11T09:00")  # the first free slot of the week
    assert serious_violations(page1) == []
    page1.fill("#caller-name", "Jeanne Martin")
    if os.environ.get("RELAIS_SCREENSHOTS"):  # the README's (docs/screenshots/)
        page1.screenshot(path=str(Path(os.environ["RELAIS_SCREENSHOTS"])
                                  / "console-booking.png"), full_page=True)

    page1.click("#confirm")
    page1.wait_for_selector("#booked")
    assert "11/01/2027 09:00" in page1.inner_text("#booked")

    # The second secretary, by keyboard: name, then the grid (arrows move, Enter books).
    page2.fill("#caller-name", "Paul Dupont")
    page2.focus("#week-grid input[name=slot]:checked")
    page2.keyboard.press("ArrowRight")
    page2.keyboard.press("ArrowLeft")
    assert page2.evaluate("document.activeElement.value") == picked
    page2.keyboard.press("Enter")
    page2.wait_for_selector("#next-slots")
    assert "vient d'être pris" in page2.inner_text("#booking-error")
    offered = page2.eval_on_selector_all("#next-slots input[name=slot]",
                                         "els => els.map(e => e.value)")
    assert offered and picked not in offered
    assert all(o > picked for o in offered)
    events = live_events(google_emulator, CLAIRE)
    assert len(events) == 1 and "Jeanne Martin" in str(events[0])

    # Taking the next one offered books it.
    page2.click("#confirm")
    page2.wait_for_selector("#booked")
    first.close()
    second.close()



def test_move_and_cancel_from_the_appointment_list(env, hub_clock, google_emulator,  # noqa: F811
                                                   monkeypatch):
    """In process: book from the grid, move from the list (the event follows), cancel
    (the event goes); another tenant's secretary gets 404; no CSRF token: 403."""
    from test_console_users import PASSWORD as USER_PASSWORD
    from test_console_users import csrf_of, hook_tenant, signed_in_client

    from sync.tenants import apply_config

    hub_clock(MONDAY, ticking=True)
    setup_tenant(google_emulator, monkeypatch)
    with session_scope() as session:
        apply_config(session, hook_tenant("elsewhere", "04 72 00 00 99"), "e.yaml", actor="t")
        create_user(session, "s@r.test", "Sophie", "secretary", USER_PASSWORD,
                    tenants=[TENANT])
        create_user(session, "o@r.test", "Other", "secretary", USER_PASSWORD,
                    tenants=["elsewhere"])
    client, _ = signed_in_client("s@r.test")
    grid = client.get(f"/t/{TENANT}/book?type=consultation&staff=claire")
    assert grid.status_code == 200 and 'id="week-grid"' in grid.text
    key = grid.text.split('name="idempotency_key" value="')[1].split('"')[0]
    form = {"csrf_token": csrf_of(grid.text), "idempotency_key": key, "type": "consultation",
            "staff": "claire", "tz": "Europe/Paris", "slot": "2027-01-12T10:00:00+01:00",
            "name": "Jeanne Martin", "phone": "0612345678"}
    assert client.post(f"/t/{TENANT}/book", data={**form, "csrf_token": ""}).status_code == 403
    booked = client.post(f"/t/{TENANT}/book", data=form)
    assert booked.status_code == 200 and "12/01/2027 10:00" in booked.text
    assert client.post(f"/t/{TENANT}/book", data=form).status_code == 200  # same key: once
    [event] = live_events(google_emulator, CLAIRE)
    listing = client.get(f"/t/{TENANT}/appointments").text
    appointment_id = listing.split("/book?move=")[1].split('"')[0]

    move = client.get(f"/t/{TENANT}/book?move={appointment_id}")
    assert move.status_code == 200 and "Déplacer le rendez-vous" in move.text
    moved = client.post(f"/t/{TENANT}/book", data={
        "csrf_token": csrf_of(move.text), "move": appointment_id, "tz": "Europe/Paris",
        "slot": "2027-01-13T14:00:00+01:00"})
    assert moved.status_code == 200 and "13/01/2027 14:00" in moved.text
    [after] = live_events(google_emulator, CLAIRE)
    assert after["id"] == event["id"] and after["start"]["dateTime"].startswith(
        "2027-01-13T14:00")

    other, _ = signed_in_client("o@r.test")
    assert other.get(f"/t/{TENANT}/appointments").status_code == 404
    assert other.get(f"/t/{TENANT}/book").status_code == 404
    refused = other.post(f"/t/{TENANT}/appointments/{appointment_id}/cancel",
                         data={"csrf_token": csrf_of(other.get("/desk").text)})
    assert refused.status_code == 404 and len(live_events(google_emulator, CLAIRE)) == 1

    cancelled = client.post(f"/t/{TENANT}/appointments/{appointment_id}/cancel",
                            data={"csrf_token": csrf_of(listing)})
    assert cancelled.status_code == 200 and "cancelled" in cancelled.text
    assert live_events(google_emulator, CLAIRE) == []
