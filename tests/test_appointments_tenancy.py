"""Appointments belong to their tenant: another tenant's key never reads, moves
or cancels them (404, and nothing changes in the calendar or the store), and
an Idempotency-Key is one tenant's, so the same key in two tenants books twice.

Tenant B is tenant A's twin (same staff ids, the same Google calendars in the
sandbox, its own connection): if the appointment's tenant were not checked, B's
requests would succeed on A's appointment."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from booking_helpers import CLAIRE, TENANT, appointments, auth, booking, live_events, setup_tenant
from conftest import FIXTURES
from fastapi.testclient import TestClient

from relais.api import create_app
from relais.auth import create_key
from sandbox.testing import google_emulator, google_server  # noqa: F401  (fixtures)
from sync.connections import set_credentials
from sync.store.db import session_scope
from sync.tenants import apply_config

NOW = datetime(2027, 3, 20, 12, 0, tzinfo=UTC)
TEN = "2027-03-23T10:00:00+01:00"
OTHER = "cabinet-b"


@pytest.fixture
def api(hub_clock, env, google_emulator, monkeypatch):
    hub_clock(NOW, ticking=True)
    keys = setup_tenant(google_emulator, monkeypatch)
    monkeypatch.setenv("RELAIS_TENANT_CABINET_B_GOOGLE_URL", google_emulator.url)
    monkeypatch.setenv("RELAIS_TENANT_CABINET_B_CRM_URL", "http://127.0.0.1:9/crm")
    text = (FIXTURES / "booking.yaml").read_text()
    text = text.replace(f"id: {TENANT}", f"id: {OTHER}", 1).replace("CABINET_TEST", "CABINET_B")
    creds = google_emulator.credentials()
    with session_scope() as session:
        apply_config(session, text, "cabinet-b.yaml", actor="test")
    with session_scope() as session:
        set_credentials(session, OTHER, "agenda", {
            "access_token": creds["access_token"], "refresh_token": creds["refresh_token"],
            "client_id": creds["client_id"], "client_secret": creds["client_secret"]})
        keys["other"] = create_key(session, "secretary", OTHER, "bea")
        keys["other_admin"] = create_key(session, "admin", OTHER, "bea-admin")
    client = TestClient(create_app(), raise_server_exceptions=True)
    client.keys = keys
    client.emu = google_emulator
    return client


def book(api, tenant: str, role: str, start: str, key: str) -> dict:
    response = api.post(f"/v1/tenants/{tenant}/appointments", json=booking(start),
                        headers=auth(api.keys[role], **{"Idempotency-Key": key}))
    assert response.status_code == 201, response.text
    return response.json()


def not_found(response) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"


def test_another_tenant_cannot_read_move_or_cancel_an_appointment(api):
    mine = book(api, TENANT, "secretary", TEN, "k-1")
    [event] = live_events(api.emu, CLAIRE)
    for role in ("other", "other_admin"):
        h = auth(api.keys[role])
        # Through its own tenant's URL (the appointment's tenant is checked)…
        theirs = f"/v1/tenants/{OTHER}/appointments/{mine['id']}"
        not_found(api.get(theirs, headers=h))
        not_found(api.patch(theirs, json={"start": "2027-03-23T14:00:00+01:00"}, headers=h))
        not_found(api.patch(theirs, json={"subject": "Renamed"}, headers=h))
        not_found(api.delete(theirs, headers=h))
        # …and through the owner's URL (the key's tenant is checked).
        owners = f"/v1/tenants/{TENANT}/appointments/{mine['id']}"
        not_found(api.get(owners, headers=h))
        not_found(api.patch(owners, json={"start": "2027-03-23T14:00:00+01:00"}, headers=h))
        not_found(api.delete(owners, headers=h))
    # Nothing changed, in the store or in the calendar.
    shown = api.get(f"/v1/tenants/{TENANT}/appointments/{mine['id']}",
                    headers=auth(api.keys["secretary"]))
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert (body["status"], body["start"], body["subject"]) == (
        "confirmed", mine["start"], mine["subject"])
    assert live_events(api.emu, CLAIRE) == [event]


def test_an_idempotency_key_belongs_to_its_tenant(api):
    mine = book(api, TENANT, "secretary", TEN, "tel-1")
    theirs = book(api, OTHER, "other", "2027-03-23T11:00:00+01:00", "tel-1")
    assert theirs["id"] != mine["id"]
    assert theirs["start"] == "2027-03-23T11:00:00+01:00"
    assert sorted((a.tenant_id, a.idempotency_key) for a in appointments()) == [
        (OTHER, "tel-1"), (TENANT, "tel-1")]
    assert len(live_events(api.emu, CLAIRE)) == 2
