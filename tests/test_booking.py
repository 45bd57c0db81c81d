"""POST/GET/PATCH/DELETE /v1/tenants/{t}/appointments against the Google Calendar
sandbox through the real connector: one event per booking, idempotency keys,
the live re-check, calendar failures that book nothing, moves and cancellations
propagated to the calendar and to the CRM through the outbox."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from booking_helpers import (
    CLAIRE,
    TENANT,
    appointments,
    auth,
    booking,
    deliveries,
    event,
    instant,
    live_events,
    setup_tenant,
    starts,
)
from conftest import FIXTURES
from fastapi.testclient import TestClient

from relais.api import create_app
from sandbox.testing import google_emulator, google_server  # noqa: F401  (fixtures)
from sync.booking import BookingRequest, SlotTaken, book
from sync.delivery import process_connection
from sync.store.db import session_scope
from sync.tenants import apply_config, connection_secret

NOW = datetime(2027, 3, 20, 12, 0, tzinfo=UTC)
TUESDAY = {"start": "2027-03-23T00:00:00+01:00", "end": "2027-03-24T00:00:00+01:00"}
TEN = "2027-03-23T10:00:00+01:00"
EVENTS = r"/calendar/v3/calendars/[^/]+/events$"


@pytest.fixture
def api(hub_clock, env, google_emulator, monkeypatch):
    hub_clock(NOW, ticking=True)  # the hub's; providers keep the machine's
    keys = setup_tenant(google_emulator, monkeypatch)
    client = TestClient(create_app(), raise_server_exceptions=True)
    client.keys = keys
    client.emu = google_emulator
    return client


def post(api, body, key: str | None = "k-1"):
    headers = auth(api.keys["secretary"], **({"Idempotency-Key": key} if key else {}))
    return api.post(f"/v1/tenants/{TENANT}/appointments", json=body, headers=headers)


def free(api, staff: str = "claire", type_: str = "consultation", **window) -> list[str]:
    response = api.get(f"/v1/tenants/{TENANT}/availability",
                       params={"staff": staff, "type": type_, **(window or TUESDAY)},
                       headers=auth(api.keys["secretary"]))
    assert response.status_code == 200, response.text
    return [s[11:16] for s in starts(response.json())]


def created(response) -> dict:
    assert response.status_code == 201, response.text
    return response.json()


def error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_booking_confirms_one_event_and_the_slot_disappears_at_once(api):
    assert free(api) == ["09:00", "10:00", "11:00", "14:00", "15:00", "16:00"]  # cache warm
    body = created(post(api, booking(TEN)))
    assert body["status"] == "confirmed"
    assert (body["start"], body["end"]) == (
        "2027-03-23T10:00:00+01:00", "2027-03-23T11:00:00+01:00")
    assert (body["start_utc"], body["end_utc"]) == ("2027-03-23T09:00:00Z", "2027-03-23T10:00:00Z")
    assert body["timezone"] == "Europe/Paris" and body["type"] == "consultation"
    assert body["caller"] == {"name": "Jeanne Petit", "phone": "+33611223344"}
    [ev] = live_events(api.emu, CLAIRE)
    assert body["event"]["event_id"] == ev["id"] and body["event"]["calendar_id"] == CLAIRE
    assert instant(ev["start"]["dateTime"]) == instant("2027-03-23T10:00:00+01:00")
    assert ev["summary"] == "Divorce — premier rendez-vous"
    assert "+33611223344" in ev["description"] and "Rappeler avant 18 h" in ev["description"]
    assert [(d["connection"], d["action"]) for d in body["deliveries"]] == [
        ("crm", "appointment.created")]
    assert free(api) == ["09:00", "11:00", "14:00", "15:00", "16:00"]
    shown = api.get(f"/v1/tenants/{TENANT}/appointments/{body['id']}",
                    headers=auth(api.keys["secretary"]))
    assert shown.status_code == 200 and shown.json()["status"] == "confirmed"


def test_idempotency_key_replays_and_is_required(api):
    first = created(post(api, booking(TEN), key="tel-42"))
    again = post(api, booking(TEN), key="tel-42")
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert len(live_events(api.emu, CLAIRE)) == 1
    assert deliveries(first["id"]) == [("appointment.created", "pending")]
    missing = error(post(api, booking("2027-03-23T11:00:00+01:00"), key=None), 400)
    assert missing["code"] == "idempotency_key_required"
    assert missing["details"][0]["field"] == "Idempotency-Key"
    assert len(appointments()) == 1


def test_taken_slot_answers_409_with_the_next_free_slots(api):
    created(post(api, booking(TEN), key="a"))
    taken = error(post(api, booking(TEN), key="b"), 409)
    assert taken["code"] == "slot_taken"
    details = taken["details"]
    assert details["reason"] == "busy" and details["staff_id"] == "claire"
    assert [s["start"] for s in details["next_slots"]] == [
        "2027-03-23T11:00:00+01:00", "2027-03-23T14:00:00+01:00", "2027-03-23T15:00:00+01:00",
        "2027-03-23T16:00:00+01:00", "2027-03-24T09:00:00+01:00"]  # fmt: skip
    assert len(live_events(api.emu, CLAIRE)) == 1
    assert [a.status for a in appointments()] == ["confirmed"]


def test_the_live_calendar_is_rechecked_not_the_cache(api):
    assert "15:00" in free(api)  # cached for 30 s
    api.emu.seed_events(CLAIRE, [event("Rendez-vous pris au téléphone", "2027-03-23",
                                       "15:30", "16:00")])
    assert "15:00" in free(api)  # the listing may lag for a few seconds…
    taken = error(post(api, booking("2027-03-23T15:00:00+01:00")), 409)
    assert taken["code"] == "slot_taken"  # …the booking never does
    assert appointments() == []


def test_times_that_cannot_be_booked_are_422(api):
    for start, reason in [("2027-03-23T10:30:00+01:00", "not_aligned"),
                          ("2027-03-23T12:00:00+01:00", "outside_working_hours"),
                          ("2027-03-29T10:00:00+02:00", "outside_working_hours"),  # Easter Monday
                          ("2027-03-20T11:00:00+01:00", "minimum_notice")]:  # fmt: skip
        body = error(post(api, booking(start), key=start), 422)
        assert body["code"] == "slot_unavailable" and body["details"]["reason"] == reason
    naive = error(post(api, booking("2027-03-23T10:00:00")), 422)
    assert naive["details"][0]["field"] == "start"
    unknown = error(post(api, booking(TEN, staff="nobody")), 422)
    assert unknown["details"][0]["field"] == "staff_id"
    no_phone = error(post(api, booking(TEN, caller={"name": "X"})), 422)
    assert no_phone["details"][0]["field"] == "caller"
    assert appointments() == [] and live_events(api.emu, CLAIRE) == []


def test_calendar_write_failure_books_nothing_and_frees_the_slot(api):
    api.emu.knobs.fail(500, times=10, method="POST", path=EVENTS)
    failed = error(post(api, booking(TEN), key="tel-7"), 503)
    assert failed["code"] == "calendar_unavailable"
    assert "NOT booked" in failed["message"] and "backendError" in failed["message"]
    assert failed["details"][0]["status"] == "failed"
    [row] = appointments()
    assert row.status == "failed" and "NOT booked" in row.last_error
    assert live_events(api.emu, CLAIRE) == []
    assert deliveries(row.id) == []
    assert "10:00" in free(api)  # free again for everyone
    # The secretary retries with the same key once the calendar is back: booked once.
    api.emu.knobs.clear_faults()
    body = created(post(api, booking(TEN), key="tel-7"))
    assert body["id"] == row.id and body["status"] == "confirmed"
    assert len(live_events(api.emu, CLAIRE)) == 1


def test_a_lost_answer_is_retried_with_the_same_event_id(api):
    api.emu.knobs.drop_after_write(times=1, method="POST", path=EVENTS)
    body = created(post(api, booking(TEN)))
    [ev] = live_events(api.emu, CLAIRE)
    assert body["event"]["event_id"] == ev["id"]


def test_reschedule_and_cancel_reach_the_calendar_and_the_crm(api):
    body = created(post(api, booking(TEN)))
    url = f"/v1/tenants/{TENANT}/appointments/{body['id']}"
    secretary = auth(api.keys["secretary"])
    moved = api.patch(url, json={"start": "2027-03-23T14:00:00+01:00"}, headers=secretary)
    assert moved.status_code == 200, moved.text
    assert moved.json()["start"] == "2027-03-23T14:00:00+01:00"
    [ev] = live_events(api.emu, CLAIRE)
    assert instant(ev["start"]["dateTime"]) == instant("2027-03-23T14:00:00+01:00")
    assert ev["id"] == body["event"]["event_id"]
    assert free(api) == ["09:00", "10:00", "11:00", "15:00", "16:00"]

    # Moving onto busy time is refused and changes nothing.
    api.emu.seed_events(CLAIRE, [event("Audience", "2027-03-23", "16:00", "17:00")])
    refused = error(api.patch(url, json={"start": "2027-03-23T16:00:00+01:00"},
                              headers=secretary), 409)
    assert refused["code"] == "slot_taken"
    # A calendar failure while moving keeps the old time.
    api.emu.knobs.fail(503, times=10, method="PATCH")
    broken = error(api.patch(url, json={"start": "2027-03-23T09:00:00+01:00"},
                             headers=secretary), 503)
    assert "NOT moved" in broken["message"]
    api.emu.knobs.clear_faults()
    assert api.get(url, headers=secretary).json()["start"] == "2027-03-23T14:00:00+01:00"

    cancelled = api.delete(url, headers=secretary)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert live_events(api.emu, CLAIRE) == [next(
        e for e in api.emu.events(CLAIRE) if e["summary"] == "Audience")]
    again = api.delete(url, headers=secretary)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    assert deliveries(body["id"]) == [
        ("appointment.created", "pending"),
        ("appointment.updated", "pending"),
        ("appointment.cancelled", "pending"),
    ]
    assert "14:00" in free(api)
    assert error(api.patch(url, json={"start": TEN}, headers=secretary), 409)["code"] == (
        "conflict")


def test_moving_onto_its_own_time_overlaps_nothing(api):
    body = created(post(api, booking(TEN, type_="bilan")))  # 10:00-11:00, half-hour grid
    url = f"/v1/tenants/{TENANT}/appointments/{body['id']}"
    moved = api.patch(url, json={"start": "2027-03-23T10:30:00+01:00"},
                      headers=auth(api.keys["secretary"]))
    assert moved.status_code == 200, moved.text
    assert moved.json()["end"] == "2027-03-23T11:30:00+01:00"


def test_appointment_deliveries_carry_the_snapshot(api, receiver, monkeypatch):
    monkeypatch.setenv("RELAIS_TENANT_CABINET_TEST_CRM_URL", receiver.url + "/hooks/crm")
    with session_scope() as session:
        apply_config(session, (FIXTURES / "booking.yaml").read_text(), "booking.yaml",
                     actor="test")
        receiver.secrets["/hooks/crm"] = connection_secret(session, TENANT, "crm")
    body = created(post(api, booking(TEN)))
    connection_id = next(iter({d for d in _connection_ids(body["id"])}))
    outcome = process_connection(connection_id)
    assert outcome.delivered == 1, outcome
    [got] = receiver.first.values()
    payload = got.payload
    assert payload["event"] == "appointment.created"
    assert payload["appointment"] | {"id": None, "event_id": None} == {
        "id": None, "start": "2027-03-23T10:00:00+01:00", "end": "2027-03-23T11:00:00+01:00",
        "subject": "Divorce — premier rendez-vous", "notes": "Rappeler avant 18 h",
        "status": "confirmed", "type": "consultation", "type_label": "Consultation",
        "timezone": "Europe/Paris", "staff_id": "claire", "event_id": None}  # fmt: skip
    assert payload["caller"] == {"name": "Jeanne Petit", "phone": "+33611223344"}
    assert payload["staff"]["name"] == "Maître Claire Durand"
    assert payload["tenant"]["id"] == TENANT


def _connection_ids(appointment_id: str) -> list[str]:
    from sqlalchemy import select

    from sync.store.models import Delivery

    with session_scope(readonly=True) as session:
        return list(session.scalars(select(Delivery.connection_id).where(
            Delivery.appointment_id == appointment_id)))


def test_concurrent_bookings_on_sqlite_book_once(api):
    results: list[str] = []
    barrier = threading.Barrier(8)

    def one(n: int) -> None:
        request = BookingRequest("claire", "consultation", instant(TEN),
                                 {"name": "X", "phone": "+33611223344"}, "", "", f"t-{n}", "t")
        barrier.wait()
        try:
            results.append(book(TENANT, request).appointment.status)
        except SlotTaken:
            results.append("taken")

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == ["confirmed"] + ["taken"] * 7
    assert len(live_events(api.emu, CLAIRE)) == 1


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_bookings_on_connections_the_server_closes_when_idle_never_answer_503(api, reset):
    """Issue 9: after ~20 s idle, half the writes answered 503 calendar_unavailable
    (BrokenPipeError on a stale keep-alive connection). Here the sandbox closes every
    connection as soon as it is idle (an idle timeout shorter than the client's gap
    between requests): zero 503s."""
    secretary = auth(api.keys["secretary"])
    api.emu.knobs.close_idle_after(0.0, reset=reset)
    statuses = []
    for n, (start, later) in enumerate(((TEN, "2027-03-23T14:00:00+01:00"),
                                        ("2027-03-23T11:00:00+01:00",
                                         "2027-03-23T15:00:00+01:00"))):  # fmt: skip
        made = post(api, booking(start), key=f"k-{n}")
        statuses.append(made.status_code)
        moved = api.patch(f"/v1/tenants/{TENANT}/appointments/{made.json()['id']}",
                          json={"start": later}, headers=secretary)
        statuses.append(moved.status_code)
    api.emu.knobs.close_idle_after(None)
    assert statuses == [201, 200, 201, 200]
    assert len(live_events(api.emu, CLAIRE)) == 2
