"""GET /v1/tenants/{t}/availability against the Google Calendar sandbox through
the real connector: exact slots (recurring event, DST day, holiday), unknown
calendars reported and never free, any-staff round robin, the busy cache,
and 4xx errors naming the parameter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from booking_helpers import CLAIRE, PAUL, TENANT, auth, booking, event, setup_tenant, starts
from fastapi.testclient import TestClient
from sqlalchemy import update

from relais.api import create_app
from sandbox.testing import (  # noqa: F401  (fixtures)
    google_emulator,
    google_server,
    graph_emulator,
    graph_server,
)
from sync import busy as busy_mod
from sync.store.db import session_scope
from sync.store.models import Connection

NOW = datetime(2027, 3, 20, 12, 0, tzinfo=UTC)  # a Saturday; the next week crosses DST
FREEBUSY = "/calendar/v3/freeBusy"


@pytest.fixture
def api(hub_clock, env, google_emulator, monkeypatch):
    hub_clock(NOW, ticking=True)  # the hub's; providers keep the machine's
    keys = setup_tenant(google_emulator, monkeypatch)
    client = TestClient(create_app(), raise_server_exceptions=True)
    client.keys = keys
    client.emu = google_emulator
    return client


def get(api, **params):
    return api.get(f"/v1/tenants/{TENANT}/availability", params=params,
                   headers=auth(api.keys["secretary"]))


def ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert set(body) == {"code", "message", "details"}
    return body


def freebusy_calls(api) -> int:
    return api.emu.knobs.calls("POST", FREEBUSY)


WEEK = {"start": "2027-03-26T00:00:00+01:00", "end": "2027-03-31T00:00:00+02:00"}


def seed_claire(emu) -> None:
    emu.seed_events(CLAIRE, [
        # every day 10:00-11:00 Paris: 09:00Z before the DST change, 08:00Z after
        event("Point du matin", "2027-03-01", "10:00", "11:00",
              recurrence=["RRULE:FREQ=DAILY"]),
        event("Audience", "2027-03-30", "14:30", "15:00"),
        event("Libre", "2027-03-26", "14:00", "15:00", transparency="transparent"),
    ])  # fmt: skip


def test_exact_slots_across_dst_holiday_and_recurring_event(api):
    seed_claire(api.emu)
    body = ok(get(api, staff="claire,zoe", type="consultation", tz="Europe/Paris", **WEEK))
    assert starts(body, "claire") == [
        # Friday, winter time
        "2027-03-26T09:00:00+01:00", "2027-03-26T11:00:00+01:00",
        "2027-03-26T14:00:00+01:00", "2027-03-26T15:00:00+01:00", "2027-03-26T16:00:00+01:00",
        # Saturday closed; Sunday 28 (clocks go forward) opened by an override
        "2027-03-28T09:00:00+02:00", "2027-03-28T11:00:00+02:00",
        # Monday 29 is Easter Monday: a public holiday in FR
        "2027-03-30T09:00:00+02:00", "2027-03-30T11:00:00+02:00",
        "2027-03-30T15:00:00+02:00", "2027-03-30T16:00:00+02:00",
    ]  # fmt: skip
    assert body["slots"][0] == {"start": "2027-03-26T09:00:00+01:00",
                                "end": "2027-03-26T10:00:00+01:00", "staff_id": "claire"}
    # zoe's calendar does not exist: unknown, so no slot at all, and said so
    assert starts(body, "zoe") == []
    [unknown] = body["unavailable"]
    assert unknown["staff"] == "zoe" and unknown["code"] == "calendar_unknown"
    assert "notFound" in unknown["reason"]
    assert body["timezone"] == "Europe/Paris" and body["type"] == "consultation"
    assert freebusy_calls(api) == 1  # both calendars, one provider call

    # The caller's zone only changes how the same instants are written.
    montreal = ok(get(api, staff="claire", type="consultation", tz="America/Montreal", **WEEK))
    assert starts(montreal)[0] == "2027-03-26T04:00:00-04:00"
    assert len(montreal["slots"]) == 11
    assert freebusy_calls(api) == 1  # warm: served from the cache


def test_cache_is_brief_and_per_window(api, monkeypatch):
    seed_claire(api.emu)
    ok(get(api, staff="claire", type="consultation", **WEEK))
    ok(get(api, staff="claire", type="consultation", start="2027-03-26T10:00:00+01:00",
           end="2027-03-27T00:00:00+01:00"))  # inside the cached window
    assert freebusy_calls(api) == 1
    ok(get(api, staff="claire", type="consultation", start="2027-04-05T00:00:00+02:00",
           end="2027-04-06T00:00:00+02:00"))  # another window
    assert freebusy_calls(api) == 2
    monkeypatch.setattr(busy_mod.CACHE, "ttl", 0.0)  # expired
    ok(get(api, staff="claire", type="consultation", **WEEK))
    assert freebusy_calls(api) == 3


def test_unknown_busy_state_is_never_free(api):
    api.emu.knobs.fail(500, times=1, method="POST", path=FREEBUSY)
    body = ok(get(api, staff="any", type="rappel", start="2027-03-23T09:00:00+01:00",
                  end="2027-03-23T12:00:00+01:00"))
    assert body["slots"] == []
    assert {u["staff"] for u in body["unavailable"]} == {"claire", "paul"}
    assert "backendError" in body["unavailable"][0]["reason"]

    with session_scope() as session:
        session.execute(update(Connection).where(Connection.name == "agenda")
                        .values(status="needs_reauth"))
    body = ok(get(api, staff="claire", type="rappel", start="2027-03-23T09:00:00+01:00",
                  end="2027-03-23T12:00:00+01:00"))
    assert body["slots"] == []
    assert body["unavailable"] == [{
        "staff": "claire", "code": "calendar_unknown",
        "reason": "calendar connection 'agenda' is needs reauth"}]  # fmt: skip


def test_any_staff_round_robin_follows_own_bookings(api):
    morning = {"start": "2027-03-23T09:00:00+01:00", "end": "2027-03-23T10:00:00+01:00"}
    body = ok(get(api, staff="any", type="rappel", **morning))
    assert body["staff"] == "any"
    assert [(s["start"][11:16], s["staff_id"], s.get("alternatives")) for s in body["slots"]] == [
        ("09:00", "claire", ["paul"]), ("09:30", "claire", ["paul"])]  # a tie: by id
    booked = api.post(f"/v1/tenants/{TENANT}/appointments",
                      json=booking("2027-03-23T09:00:00+01:00", staff="any", type_="rappel"),
                      headers=auth(api.keys["secretary"], **{"Idempotency-Key": "rr-1"}))
    assert booked.status_code == 201, booked.text
    assert booked.json()["staff_id"] == "claire"
    body = ok(get(api, staff="any", type="rappel", **morning))
    assert [(s["start"][11:16], s["staff_id"], s.get("alternatives")) for s in body["slots"]] == [
        ("09:00", "paul", None),  # claire is taken at 09:00
        ("09:30", "paul", ["claire"]),  # paul has fewer bookings: his turn
    ]
    # The next "any" booking lands on paul, the fairest.
    second = api.post(f"/v1/tenants/{TENANT}/appointments",
                      json=booking("2027-03-23T09:30:00+01:00", staff="any", type_="rappel"),
                      headers=auth(api.keys["secretary"], **{"Idempotency-Key": "rr-2"}))
    assert second.status_code == 201 and second.json()["staff_id"] == "paul"
    assert len(api.emu.events(PAUL)) == 1


@pytest.mark.parametrize(("params", "status", "field", "needle"), [
    ({"staff": "claire", "type": "consultation", "start": "2027-03-26T09:00:00"}, 422,
     "start", "no UTC offset"),
    ({"staff": "claire", "type": "consultation", "start": "tomorrow"}, 422, "start",
     "not an ISO 8601"),
    ({"staff": "nobody", "type": "consultation"}, 422, "staff", "unknown staff member"),
    ({"staff": "zoe", "type": "rappel"}, 422, "staff", "does not take"),
    ({"staff": "claire", "type": "massage"}, 422, "type", "unknown appointment type"),
    ({"staff": "claire", "type": "consultation", "tz": "Paris"}, 422, "tz", "IANA"),
    ({"staff": "claire", "type": "consultation", "start": "2027-03-26T00:00:00+01:00",
      "end": "2027-06-26T00:00:00+02:00"}, 422, "end", "longer than"),
    ({"staff": "claire", "type": "consultation", "start": "2027-03-26T00:00:00+01:00",
      "end": "2027-03-25T00:00:00+01:00"}, 422, "end", "after start"),
    ({"staff": "claire", "type": "consultation", "start": "2027-09-01T00:00:00+02:00",
      "end": "2027-09-02T00:00:00+02:00"}, 422, "start", "horizon"),
    ({"type": "consultation"}, 422, "query.staff", "Field required"),
])  # fmt: skip
def test_bad_parameters_are_named(api, params, status, field, needle):
    body = error(get(api, **params), status)
    assert body["details"][0]["field"] == field
    assert needle in body["message"] or needle in str(body["details"])
    assert freebusy_calls(api) == 0


def test_plus_sign_decoded_as_space_is_understood(api):
    url = (f"/v1/tenants/{TENANT}/availability?staff=claire&type=consultation"
           "&start=2027-03-26T09:00:00+01:00&end=2027-03-26T12:00:00+01:00")
    body = ok(api.get(url, headers=auth(api.keys["secretary"])))
    assert starts(body) == ["2027-03-26T09:00:00+01:00", "2027-03-26T10:00:00+01:00",
                            "2027-03-26T11:00:00+01:00"]


def test_tenants_are_sealed(api):
    from relais.auth import create_key

    with session_scope() as session:
        other = create_key(session, "operator", None, "ops")
    assert get(api, staff="claire", type="consultation").status_code == 200
    response = api.get("/v1/tenants/other/availability",
                       params={"staff": "claire", "type": "consultation"},
                       headers=auth(api.keys["secretary"]))
    assert error(response, 404)["code"] == "not_found"
    assert api.get(f"/v1/tenants/{TENANT}/availability",
                   params={"staff": "claire", "type": "consultation"},
                   headers=auth(other)).status_code == 200


TWO_PROVIDERS = """\
id: deux-agendas
name: Deux agendas
timezone: Europe/Paris
phone_region: FR
business_hours: {mon: 09:00-12:00, tue: 09:00-12:00}
staff:
  - {id: g1, name: G1, calendar: {connection: google, id: g1@x.test}}
  - {id: g2, name: G2, calendar: {connection: google, id: g2@x.test}}
  - {id: o1, name: O1, calendar: {connection: o365, id: o1@x.test}}
  - {id: o2, name: O2, calendar: {connection: o365, id: o2@x.test}}
  - {id: o3, name: O3, calendar: {connection: o365, id: nobody@x.test}}
call_types: [{id: message, label: Message}]
appointment_types:
  - {id: rdv, label: RDV, duration_minutes: 60, booking_horizon_days: 60}
connections:
  google:
    provider: google_calendar
    settings: {api_base_url: "${RELAIS_TENANT_DEUX_AGENDAS_GOOGLE_URL}"}
  o365:
    provider: outlook
    settings:
      authority: "${RELAIS_TENANT_DEUX_AGENDAS_MS_AUTHORITY}"
      graph_base_url: "${RELAIS_TENANT_DEUX_AGENDAS_GRAPH_URL}"
      ca_file: "${RELAIS_TENANT_DEUX_AGENDAS_GRAPH_CA}"
"""


def test_one_call_per_connection_google_and_outlook_together(hub_clock, env, google_emulator,
                                                            graph_emulator, monkeypatch):
    hub_clock(NOW, ticking=True)  # the hub's; providers keep the machine's
    from relais.auth import create_key
    from sync.connections import set_credentials
    from sync.tenants import apply_config

    g, ms = google_emulator, graph_emulator
    for name, value in {"RELAIS_TENANT_DEUX_AGENDAS_GOOGLE_URL": g.url,
                        "RELAIS_TENANT_DEUX_AGENDAS_MS_AUTHORITY": ms.authority,
                        "RELAIS_TENANT_DEUX_AGENDAS_GRAPH_URL": ms.graph_url,
                        "RELAIS_TENANT_DEUX_AGENDAS_GRAPH_CA": str(ms.ca_file)}.items():
        monkeypatch.setenv(name, value)
    for cal in ("g1@x.test", "g2@x.test"):
        g.add_calendar(cal, time_zone="Europe/Paris")
    for mail in ("o1@x.test", "o2@x.test"):
        ms.add_mailbox(mail, time_zone="Europe/Paris")
    g.seed_events("g2@x.test", [event("Audience", "2027-03-23", "09:00", "10:00")])
    ms.seed_events("o1@x.test", [{"subject": "Client", "showAs": "busy",
                                  "start": {"dateTime": "2027-03-23T10:00:00",
                                            "timeZone": "Europe/Paris"},
                                  "end": {"dateTime": "2027-03-23T11:00:00",
                                          "timeZone": "Europe/Paris"}}])  # fmt: skip
    creds = g.credentials()
    with session_scope() as session:
        apply_config(session, TWO_PROVIDERS, "deux.yaml", actor="test")
    with session_scope() as session:
        set_credentials(session, "deux-agendas", "google", {
            k: creds[k] for k in ("access_token", "refresh_token", "client_id", "client_secret")})
        set_credentials(session, "deux-agendas", "o365", {
            "client_id": ms.client_id, "client_secret": ms.client_secret,
            "tenant_id": ms.tenant_id})  # fmt: skip
        session.execute(update(Connection).where(Connection.name == "o365")
                        .values(status="active"))  # app-only: nothing to authorize
        key = create_key(session, "secretary", "deux-agendas", "t")
    busy_mod.CACHE.clear()
    client = TestClient(create_app())
    response = client.get("/v1/tenants/deux-agendas/availability", headers=auth(key), params={
        "staff": "g1,g2,o1,o2,o3", "type": "rdv",
        "start": "2027-03-23T00:00:00+01:00", "end": "2027-03-24T00:00:00+01:00"})
    body = ok(response)
    by_staff: dict[str, list[str]] = {}
    for slot in body["slots"]:
        by_staff.setdefault(slot["staff_id"], []).append(slot["start"][11:16])
    assert by_staff == {"g1": ["09:00", "10:00", "11:00"], "g2": ["10:00", "11:00"],
                        "o1": ["09:00", "11:00"], "o2": ["09:00", "10:00", "11:00"]}
    assert [(u["staff"], u["code"]) for u in body["unavailable"]] == [("o3", "calendar_unknown")]
    assert g.knobs.calls("POST", FREEBUSY) == 1
    assert sum(n for k, n in ms.knobs.counters().items() if k.endswith("/getSchedule")) == 1
