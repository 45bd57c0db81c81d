"""The calendar emulators, driven through the real SDKs over real sockets.

google-api-python-client (static discovery, google-auth credentials that
refresh through the emulator's token endpoint, BatchHttpRequest) talks plain
HTTP to the Google Calendar emulator; msal talks HTTPS (sandbox CA) to the
identity platform and httpx to Microsoft Graph. Webhooks land on a real HTTP
receiver in the test process.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt
import msal
import pytest
from google.auth.exceptions import RefreshError
from googleapiclient.errors import HttpError

from sandbox.calendars import start_calendar_sandboxes
from sandbox.google_calendar import GoogleCalendarEmulator
from sandbox.graph import GraphEmulator
from sandbox.testing import (  # noqa: F401  (pytest fixtures)
    NotificationReceiver,
    google_batch,
    google_credentials,
    google_emulator,
    google_server,
    google_service,
    graph_client,
    graph_emulator,
    graph_server,
    ms_session,
    msal_app,
    notification_receiver,
)

ROOT = Path(__file__).resolve().parents[1]
PARIS = "Europe/Paris"
CAL = "dr.martin@cabinet-martin.fr"
MAILBOX = "me.durand@avocats-durand.fr"


def at(day: str, clock: str, tz: str = PARIS) -> dict[str, str]:
    return {"dateTime": f"{day}T{clock}:00", "timeZone": tz}


def g_event(eid: str | None, day: str, start: str, end: str, tz: str = PARIS,
            **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"summary": eid or "event", "start": at(day, start, tz),
                            "end": at(day, end, tz), **extra}
    if eid:
        body["id"] = eid
    return body


def reason(exc: HttpError) -> tuple[int, str, str]:
    detail = exc.error_details[0]
    return exc.resp.status, detail["domain"], detail["reason"]


def busy(fb: dict[str, Any], cid: str) -> list[tuple[str, str]]:
    return [(b["start"], b["end"]) for b in fb["calendars"][cid]["busy"]]


# ====================================================================== Google


@pytest.fixture
def gcal(google_emulator: GoogleCalendarEmulator) -> GoogleCalendarEmulator:  # noqa: F811
    google_emulator.add_calendar(CAL, time_zone=PARIS, summary="Dr Martin")
    return google_emulator


def test_google_client_chosen_id_creates_one_event_and_deleted_ids_stay_taken(
        gcal: GoogleCalendarEmulator) -> None:
    svc = google_service(gcal)
    body = g_event("relais0appt01", "2026-03-10", "10:00", "10:30")
    created = svc.events().insert(calendarId=CAL, body=body).execute()
    assert created["id"] == "relais0appt01"
    assert created["status"] == "confirmed"
    assert created["start"] == {"dateTime": "2026-03-10T10:00:00+01:00", "timeZone": PARIS}
    assert created["etag"].startswith('"') and created["iCalUID"] == "relais0appt01@google.com"
    with pytest.raises(HttpError) as dup:  # the retry of a create that already landed
        svc.events().insert(calendarId=CAL, body=body).execute()
    assert reason(dup.value) == (409, "global", "duplicate")
    items = svc.events().list(calendarId=CAL).execute()["items"]
    assert [e["id"] for e in items] == ["relais0appt01"]
    with pytest.raises(HttpError) as bad_id:  # 'w'-'z' are not base32hex
        svc.events().insert(calendarId=CAL, body=g_event("xyz12", "2026-03-10", "11:00",
                                                         "11:30")).execute()
    assert reason(bad_id.value) == (400, "global", "invalid")
    assert svc.events().delete(calendarId=CAL, eventId="relais0appt01").execute() == ""
    with pytest.raises(HttpError) as gone:
        svc.events().delete(calendarId=CAL, eventId="relais0appt01").execute()
    assert reason(gone.value) == (410, "global", "deleted")
    with pytest.raises(HttpError) as again:
        svc.events().insert(calendarId=CAL, body=body).execute()
    assert reason(again.value) == (409, "global", "duplicate")
    assert svc.events().list(calendarId=CAL).execute()["items"] == []
    # the write lands, the answer is lost: the retry with the same id cannot duplicate it
    gcal.knobs.drop_after_write(method="POST", path="/events$")
    lost = g_event("relais0appt02", "2026-03-10", "11:00", "11:30")
    with pytest.raises(ConnectionError):
        svc.events().insert(calendarId=CAL, body=lost).execute()
    with pytest.raises(HttpError) as retried:
        svc.events().insert(calendarId=CAL, body=lost).execute()
    assert reason(retried.value) == (409, "global", "duplicate")
    assert [e["id"] for e in svc.events().list(calendarId=CAL).execute()["items"]] == [
        "relais0appt02"]
    with pytest.raises(HttpError) as unknown:
        svc.events().list(calendarId="nobody@example.com").execute()
    assert reason(unknown.value) == (404, "global", "notFound")


def test_google_token_refresh_through_the_emulator(gcal: GoogleCalendarEmulator) -> None:
    creds = google_credentials(gcal)
    svc = google_service(gcal, creds)
    first = creds.token
    gcal.expire_access_tokens()
    assert svc.calendars().get(calendarId=CAL).execute()["timeZone"] == PARIS
    counters = gcal.knobs.counters()
    assert counters["status:401"] == 1 and counters["POST /token"] == 1
    assert creds.token != first and creds.expiry is not None
    left = (creds.expiry.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()
    assert 3500 < left <= 3600  # google-auth read expires_in 3600
    # a revoked refresh token: invalid_grant, the SDK gives up with RefreshError
    gcal.revoke_refresh_token(creds.refresh_token)
    with pytest.raises(RefreshError, match="invalid_grant"):
        svc.calendars().get(calendarId=CAL).execute()


def test_google_oauth_token_endpoint_grants(gcal: GoogleCalendarEmulator) -> None:
    info = gcal.credentials()
    with httpx.Client(base_url=gcal.url, trust_env=False) as http:
        auth = http.get("/o/oauth2/v2/auth", params={
            "client_id": info["client_id"], "redirect_uri": "http://localhost/cb",
            "response_type": "code", "scope": info["scope"], "state": "xyz",
            "access_type": "offline", "login_hint": "secretaire@relais.test"})
        assert auth.status_code == 302
        params = dict(parse_qsl(urlsplit(auth.headers["location"]).query))
        assert params["state"] == "xyz"
        form = {"grant_type": "authorization_code", "code": params["code"],
                "redirect_uri": "http://localhost/cb", "client_id": info["client_id"],
                "client_secret": info["client_secret"]}
        token = http.post("/token", data=form)
        assert token.status_code == 200
        data = token.json()
        assert data["expires_in"] == 3600 and data["token_type"] == "Bearer"
        assert data["refresh_token"] and data["access_token"].startswith("ya29.")
        reused = http.post("/token", data=form)  # codes are single-use
        assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
        refresh = {"grant_type": "refresh_token", "refresh_token": data["refresh_token"],
                   "client_id": info["client_id"], "client_secret": info["client_secret"]}
        again = http.post("/token", data=refresh).json()
        assert again["access_token"] != data["access_token"] and "refresh_token" not in again
        bad = http.post("/token", data=dict(refresh, client_secret="nope"))
        assert (bad.status_code, bad.json()["error"]) == (401, "invalid_client")
        # the new user's access token works, and "primary" is that user's calendar
        gcal.add_calendar("secretaire@relais.test")
        bearer = {"Authorization": f"Bearer {again['access_token']}"}
        cal = http.get("/calendar/v3/calendars/primary", headers=bearer)
        assert cal.json()["id"] == "secretaire@relais.test"
        assert http.post("/revoke", data={"token": data["refresh_token"]}).status_code == 200
        revoked = http.post("/token", data=refresh)
        assert revoked.status_code == 400
        assert revoked.json() == {"error": "invalid_grant",
                                  "error_description": "Token has been expired or revoked."}
        # revoking the grant also kills the access tokens minted from it
        assert http.get("/calendar/v3/calendars/primary", headers=bearer).status_code == 401


def test_google_freebusy_recurrence_exceptions_and_busy_rules(
        gcal: GoogleCalendarEmulator) -> None:
    svc = google_service(gcal)
    events = svc.events()
    # weekly Monday 10:00-11:00 Paris, 5 times, 9 March excluded, across the 29 March DST change
    events.insert(calendarId=CAL, body=g_event(
        "serie0001", "2026-03-02", "10:00", "11:00",
        recurrence=["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=5",
                    "EXDATE;TZID=Europe/Paris:20260309T100000"])).execute()
    moved = events.patch(calendarId=CAL, eventId="serie0001_20260316T090000Z",
                         body={"start": at("2026-03-16", "14:00"),
                               "end": at("2026-03-16", "15:00")}).execute()
    assert moved["recurringEventId"] == "serie0001"
    assert moved["originalStartTime"] == {"dateTime": "2026-03-16T10:00:00+01:00",
                                          "timeZone": PARIS}
    events.delete(calendarId=CAL, eventId="serie0001_20260323T090000Z").execute()
    for body in (
        g_event("tentative1", "2026-03-03", "09:00", "09:30", status="tentative"),
        g_event("overlap01", "2026-03-03", "09:15", "10:00"),
        g_event("lunch0001", "2026-03-03", "12:00", "13:00", transparency="transparent"),
        g_event("absence01", "2026-03-04", "13:00", "18:00", eventType="outOfOffice"),
        g_event("declined1", "2026-03-05", "14:00", "15:00",
                attendees=[{"email": CAL, "responseStatus": "declined"}]),
        g_event("annule001", "2026-03-05", "10:00", "11:00"),
        {"id": "congres01", "summary": "all day", "start": {"date": "2026-03-06"},
         "end": {"date": "2026-03-07"}},
    ):
        events.insert(calendarId=CAL, body=body).execute()
    events.delete(calendarId=CAL, eventId="annule001").execute()

    query = {"timeMin": "2026-03-01T00:00:00Z", "timeMax": "2026-04-01T00:00:00Z",
             "items": [{"id": CAL}, {"id": "inconnu@cabinet-martin.fr"}]}
    fb = svc.freebusy().query(body=query).execute()
    assert busy(fb, CAL) == [
        ("2026-03-02T09:00:00Z", "2026-03-02T10:00:00Z"),
        ("2026-03-03T08:00:00Z", "2026-03-03T09:00:00Z"),   # tentative + overlap, merged
        ("2026-03-04T12:00:00Z", "2026-03-04T17:00:00Z"),   # out of office
        ("2026-03-05T23:00:00Z", "2026-03-06T23:00:00Z"),   # all-day, Paris midnight
        ("2026-03-16T13:00:00Z", "2026-03-16T14:00:00Z"),   # the moved instance
        ("2026-03-30T08:00:00Z", "2026-03-30T09:00:00Z"),   # 10:00 CEST after the change
    ]
    # an unknown calendar is an error, never "free"
    assert fb["calendars"]["inconnu@cabinet-martin.fr"] == {
        "errors": [{"domain": "global", "reason": "notFound"}], "busy": []}
    paris = svc.freebusy().query(body=dict(query, timeZone=PARIS, timeMin="2026-03-02T09:30:00Z",
                                           timeMax="2026-03-03T12:00:00Z")).execute()
    assert busy(paris, CAL) == [("2026-03-02T10:30:00+01:00", "2026-03-02T11:00:00+01:00"),
                                ("2026-03-03T09:00:00+01:00", "2026-03-03T10:00:00+01:00")]
    with pytest.raises(HttpError) as too_long:
        svc.freebusy().query(body=dict(query, timeMax="2026-07-01T00:00:00Z")).execute()
    assert reason(too_long.value) == (400, "calendar", "timeRangeTooLong")
    with pytest.raises(HttpError) as empty:
        svc.freebusy().query(body=dict(query, timeMax="2026-03-01T00:00:00Z")).execute()
    assert reason(empty.value) == (400, "calendar", "timeRangeEmpty")
    many = svc.freebusy().query(body=dict(query, items=[{"id": CAL}] + [
        {"id": f"staff{n}@cabinet-martin.fr"} for n in range(50)])).execute()
    assert many["calendars"]["staff49@cabinet-martin.fr"]["errors"] == [
        {"domain": "calendar", "reason": "tooManyCalendarsRequested"}]
    assert many["calendars"]["staff48@cabinet-martin.fr"]["errors"][0]["reason"] == "notFound"

    single = events.list(calendarId=CAL, singleEvents=True, orderBy="startTime",
                         timeMin="2026-03-01T00:00:00Z", timeMax="2026-04-01T00:00:00Z").execute()
    assert [e["id"] for e in single["items"]] == [
        "serie0001_20260302T090000Z", "tentative1", "overlap01", "lunch0001", "absence01",
        "declined1", "congres01", "serie0001_20260316T090000Z", "serie0001_20260330T080000Z"]
    assert single["items"][-1]["start"] == {"dateTime": "2026-03-30T10:00:00+02:00",
                                            "timeZone": PARIS}
    instances = events.instances(calendarId=CAL, eventId="serie0001").execute()["items"]
    assert [i["id"] for i in instances] == ["serie0001_20260302T090000Z",
                                            "serie0001_20260316T090000Z",
                                            "serie0001_20260330T080000Z"]
    # not singleEvents: the master, plus the cancelled instance (showDeleted=False rule)
    plain = events.list(calendarId=CAL, timeMin="2026-03-01T00:00:00Z").execute()["items"]
    cancelled = [e for e in plain if e["status"] == "cancelled"]
    assert cancelled == [{"kind": "calendar#event", "etag": cancelled[0]["etag"],
                          "id": "serie0001_20260323T090000Z", "status": "cancelled",
                          "recurringEventId": "serie0001",
                          "originalStartTime": {"dateTime": "2026-03-23T10:00:00+01:00",
                                                "timeZone": PARIS}}]


def test_google_dst_time_zone_handling(gcal: GoogleCalendarEmulator) -> None:
    gcal.add_calendar("ny.office@cabinet-martin.fr", time_zone="America/New_York")
    svc = google_service(gcal)
    ny = "America/New_York"
    for eid, day in (("dst000307", "2026-03-07"), ("dst000308", "2026-03-08")):
        svc.events().insert(calendarId="ny.office@cabinet-martin.fr",
                            body=g_event(eid, day, "13:00", "14:00", tz=ny)).execute()
    fb = svc.freebusy().query(body={"timeMin": "2026-03-07T00:00:00Z",
                                    "timeMax": "2026-03-09T00:00:00Z",
                                    "items": [{"id": "ny.office@cabinet-martin.fr"}]}).execute()
    assert busy(fb, "ny.office@cabinet-martin.fr") == [
        ("2026-03-07T18:00:00Z", "2026-03-07T19:00:00Z"),   # EST, UTC-5
        ("2026-03-08T17:00:00Z", "2026-03-08T18:00:00Z"),   # EDT since 02:00 that morning
    ]
    got = svc.events().get(calendarId="ny.office@cabinet-martin.fr",
                           eventId="dst000308").execute()
    assert got["start"] == {"dateTime": "2026-03-08T13:00:00-04:00", "timeZone": ny}
    utc = svc.events().get(calendarId="ny.office@cabinet-martin.fr", eventId="dst000308",
                           timeZone="UTC").execute()
    assert utc["start"]["dateTime"] == "2026-03-08T17:00:00Z"
    # a daily series keeps its wall time across the change
    svc.events().insert(calendarId="ny.office@cabinet-martin.fr", body=g_event(
        "quotid001", "2026-03-07", "09:00", "09:30", tz=ny,
        recurrence=["RRULE:FREQ=DAILY;COUNT=2"])).execute()
    ids = [i["id"] for i in svc.events().instances(calendarId="ny.office@cabinet-martin.fr",
                                                    eventId="quotid001").execute()["items"]]
    assert ids == ["quotid001_20260307T140000Z", "quotid001_20260308T130000Z"]
    with pytest.raises(HttpError) as no_zone:  # neither offset nor timeZone
        svc.events().insert(calendarId=CAL, body={"start": {"dateTime": "2026-03-08T13:00:00"},
                                                  "end": {"dateTime": "2026-03-08T14:00:00"}}
                            ).execute()
    assert reason(no_zone.value) == (400, "global", "required")


def test_google_list_paging_sync_tokens_and_410(gcal: GoogleCalendarEmulator) -> None:
    svc = google_service(gcal)
    for n in range(5):
        svc.events().insert(calendarId=CAL, body=g_event(
            f"sinc{n:05d}", "2026-03-10", f"{9 + n:02d}:00", f"{9 + n:02d}:30")).execute()
    pages, token = [], None
    while True:
        page = svc.events().list(calendarId=CAL, maxResults=2, pageToken=token).execute()
        pages.append(page)
        token = page.get("nextPageToken")
        if not token:
            break
    assert [len(p["items"]) for p in pages] == [2, 2, 1]
    assert ["nextSyncToken" in p for p in pages] == [False, False, True]
    assert sorted(e["id"] for p in pages for e in p["items"]) == [f"sinc{n:05d}"
                                                                  for n in range(5)]
    sync = pages[-1]["nextSyncToken"]

    svc.events().patch(calendarId=CAL, eventId="sinc00000", body={"summary": "moved"}).execute()
    svc.events().delete(calendarId=CAL, eventId="sinc00001").execute()
    svc.events().insert(calendarId=CAL, body=g_event("sinc00009", "2026-03-11", "09:00",
                                                     "10:00")).execute()
    delta = svc.events().list(calendarId=CAL, syncToken=sync).execute()
    by_id = {e["id"]: e for e in delta["items"]}
    assert set(by_id) == {"sinc00000", "sinc00001", "sinc00009"}
    assert by_id["sinc00000"]["summary"] == "moved" and by_id["sinc00000"]["sequence"] == 0
    assert by_id["sinc00001"] == {"kind": "calendar#event", "etag": by_id["sinc00001"]["etag"],
                                  "id": "sinc00001", "status": "cancelled"}
    quiet = svc.events().list(calendarId=CAL, syncToken=delta["nextSyncToken"]).execute()
    assert quiet["items"] == [] and quiet["nextSyncToken"]
    with pytest.raises(HttpError) as forbidden:
        svc.events().list(calendarId=CAL, syncToken=quiet["nextSyncToken"],
                          timeMin="2026-03-01T00:00:00Z").execute()
    assert reason(forbidden.value) == (400, "global", "invalid")

    assert gcal.invalidate_sync_tokens(CAL) == 1
    with pytest.raises(HttpError) as expired:
        svc.events().list(calendarId=CAL, syncToken=quiet["nextSyncToken"]).execute()
    assert reason(expired.value) == (410, "calendar", "fullSyncRequired")
    assert json.loads(expired.value.content)["error"]["message"] == \
        "Sync token is no longer valid, a full sync is required."
    with pytest.raises(HttpError) as garbage:
        svc.events().list(calendarId=CAL, syncToken="1" + sync).execute()
    assert reason(garbage.value) == (410, "calendar", "fullSyncRequired")
    # the full resync gives a token that works again
    fresh = svc.events().list(calendarId=CAL, showDeleted=True).execute()
    assert len(fresh["items"]) == 6
    assert svc.events().list(calendarId=CAL, syncToken=fresh["nextSyncToken"]
                             ).execute()["items"] == []


def test_google_watch_channels_post_real_notifications(
        gcal: GoogleCalendarEmulator, notification_receiver: NotificationReceiver) -> None:
    svc = google_service(gcal)
    channel = svc.events().watch(calendarId=CAL, body={
        "id": "7f1c0c5e-relais-chan", "type": "web_hook",
        "address": notification_receiver.url + "/v1/webhooks/google",
        "token": "tenant=42&conn=7", "params": {"ttl": "3600"}}).execute()
    assert channel["kind"] == "api#channel" and channel["id"] == "7f1c0c5e-relais-chan"
    assert int(channel["expiration"]) == pytest.approx(
        (gcal.clock.time() + 3600) * 1000, abs=5000)
    sync = notification_receiver.wait_for(1)[0]
    assert sync.path == "/v1/webhooks/google" and sync.body == b""
    assert {k: sync.headers[k] for k in ("x-goog-channel-id", "x-goog-channel-token",
                                         "x-goog-resource-id", "x-goog-resource-state",
                                         "x-goog-message-number")} == {
        "x-goog-channel-id": "7f1c0c5e-relais-chan", "x-goog-channel-token": "tenant=42&conn=7",
        "x-goog-resource-id": channel["resourceId"], "x-goog-resource-state": "sync",
        "x-goog-message-number": "1"}
    assert sync.headers["x-goog-channel-expiration"].endswith(" GMT")
    svc.events().insert(calendarId=CAL, body=g_event("notif0001", "2026-03-10", "10:00",
                                                     "11:00")).execute()
    gcal.patch_event(CAL, "notif0001", {"summary": "changed in the Google UI"})
    hits = notification_receiver.wait_for(3)
    assert [(h.headers["x-goog-resource-state"], h.headers["x-goog-message-number"])
            for h in hits] == [("sync", "1"), ("exists", "2"), ("exists", "3")]
    with pytest.raises(HttpError) as dup:
        svc.events().watch(calendarId=CAL, body={"id": "7f1c0c5e-relais-chan",
                                                 "type": "web_hook",
                                                 "address": notification_receiver.url}).execute()
    assert dup.value.resp.status == 400
    svc.channels().stop(body={"id": channel["id"], "resourceId": channel["resourceId"]}).execute()
    svc.events().delete(calendarId=CAL, eventId="notif0001").execute()
    assert gcal.wait_notifications(5)
    assert len(notification_receiver.received) == 3
    with pytest.raises(HttpError) as stopped:
        svc.channels().stop(body={"id": channel["id"],
                                  "resourceId": channel["resourceId"]}).execute()
    assert stopped.value.resp.status == 404


def test_google_usage_limits_per_user_per_minute(gcal: GoogleCalendarEmulator) -> None:
    gcal.configure(quota_per_user_per_minute=3)
    svc = google_service(gcal)
    for _ in range(3):
        svc.calendars().get(calendarId=CAL).execute()
    with pytest.raises(HttpError) as limited:
        svc.calendars().get(calendarId=CAL).execute()
    assert reason(limited.value) == (403, "usageLimits", "rateLimitExceeded")
    assert json.loads(limited.value.content) == {"error": {"errors": [
        {"domain": "usageLimits", "reason": "rateLimitExceeded",
         "message": "Rate Limit Exceeded"}], "code": 403, "message": "Rate Limit Exceeded"}}
    other = gcal.add_user("autre.secretaire@relais.test")  # another user: own quota
    svc_other = google_service(gcal, google_credentials(gcal, token=other["access_token"],
                                                        refresh_token=other["refresh_token"]))
    assert svc_other.calendars().get(calendarId=CAL).execute()["id"] == CAL
    gcal.clock.advance(61)
    assert svc.calendars().get(calendarId=CAL).execute()["id"] == CAL
    gcal.configure(quota_status=429, quota_per_user_per_minute=1)
    with pytest.raises(HttpError) as too_many:
        svc.calendars().get(calendarId=CAL).execute()
    assert reason(too_many.value) == (429, "usageLimits", "rateLimitExceeded")
    # injected faults answer in the same shape
    gcal.clock.advance(61)
    gcal.knobs.fail(503, path="/calendars/")
    with pytest.raises(HttpError) as backend:
        svc.calendars().get(calendarId=CAL).execute()
    assert reason(backend.value) == (503, "global", "backendError")


def test_google_batch_multipart(gcal: GoogleCalendarEmulator) -> None:
    svc = google_service(gcal)
    results: dict[str, tuple[Any, HttpError | None]] = {}

    def collect(request_id: str, response: Any, exception: HttpError | None) -> None:
        results[request_id] = (response, exception)

    batch = google_batch(gcal, collect)
    body = g_event("batch00001", "2026-03-12", "10:00", "11:00")
    batch.add(svc.events().insert(calendarId=CAL, body=body), request_id="create")
    batch.add(svc.events().insert(calendarId=CAL, body=body), request_id="again")
    batch.add(svc.events().get(calendarId=CAL, eventId="missing0001"), request_id="missing")
    batch.add(svc.freebusy().query(body={"timeMin": "2026-03-12T00:00:00Z",
                                         "timeMax": "2026-03-13T00:00:00Z",
                                         "items": [{"id": CAL}]}), request_id="fb")
    batch.execute()
    assert results["create"][0]["id"] == "batch00001" and results["create"][1] is None
    assert reason(results["again"][1]) == (409, "global", "duplicate")  # type: ignore[arg-type]
    assert reason(results["missing"][1]) == (404, "global", "notFound")  # type: ignore[arg-type]
    assert busy(results["fb"][0], CAL) == [("2026-03-12T09:00:00Z", "2026-03-12T10:00:00Z")]
    assert gcal.knobs.counters()["google.batch.parts"] == 4

    # every part is authenticated: with an expired token the SDK refreshes once and
    # resends the 401 parts
    gcal.expire_access_tokens()
    results.clear()
    batch = google_batch(gcal, collect)
    batch.add(svc.events().get(calendarId=CAL, eventId="batch00001"), request_id="a")
    batch.add(svc.events().delete(calendarId=CAL, eventId="batch00001"), request_id="b")
    batch.execute()
    assert results["a"][0]["id"] == "batch00001" and results["b"] == ("", None)
    counters = gcal.knobs.counters()
    assert counters["POST /batch/calendar/v3"] == 3 and counters["POST /token"] == 1
    # and every part counts against the quota
    gcal.configure(quota_per_user_per_minute=2)
    gcal.clock.advance(61)
    results.clear()
    batch = google_batch(gcal, collect)
    for n in range(3):
        batch.add(svc.calendars().get(calendarId=CAL), request_id=str(n))
    batch.execute()
    assert [results[str(n)][1] is None for n in range(3)] == [True, True, False]
    assert reason(results["2"][1]) == (403, "usageLimits", "rateLimitExceeded")  # type: ignore


def test_google_control_endpoints_over_http(gcal: GoogleCalendarEmulator) -> None:
    with httpx.Client(base_url=gcal.url + "/__sandbox__", trust_env=False) as ctl:
        cal = ctl.post("/calendars", json={"id": "infirmiere@cabinet-martin.fr",
                                           "timeZone": "Europe/Paris"})
        assert cal.json()["timeZone"] == "Europe/Paris"
        seeded = ctl.post("/events", json={"calendarId": "infirmiere@cabinet-martin.fr",
                                           "events": [g_event("seed00001", "2026-03-10",
                                                              "08:00", "09:00")]})
        assert [e["id"] for e in seeded.json()["items"]] == ["seed00001"]
        listed = ctl.get("/events", params={"calendarId": "infirmiere@cabinet-martin.fr"})
        assert listed.json()["items"][0]["start"]["dateTime"] == "2026-03-10T08:00:00+01:00"
        token = ctl.post("/tokens", json={"ttl": 5}).json()["access_token"]
        creds = ctl.get("/credentials").json()
        assert creds["token_uri"] == gcal.url + "/token"
        assert ctl.post("/sync-tokens/invalidate", json={}).json()["invalidated"] == 2
        assert ctl.post("/tokens/expire", json={"access_token": token}).json()["expired"] == 1
    page = httpx.get(f"{gcal.url}/calendar/v3/calendars/infirmiere@cabinet-martin.fr/events",
                     headers={"Authorization": f"Bearer {token}"})
    assert page.status_code == 401
    assert page.json()["error"]["errors"][0]["reason"] == "authError"


# ======================================================================= Graph


@pytest.fixture
def graph(graph_emulator: GraphEmulator) -> GraphEmulator:  # noqa: F811
    graph_emulator.add_mailbox(MAILBOX, display_name="Me Durand",
                               time_zone="Romance Standard Time")
    return graph_emulator


def g_body(subject: str, day: str, start: str, end: str, tz: str = "Romance Standard Time",
           **extra: Any) -> dict[str, Any]:
    return {"subject": subject, "start": at(day, start, tz), "end": at(day, end, tz), **extra}


def test_msal_client_credentials_openid_and_jwks(graph: GraphEmulator) -> None:
    app = msal_app(graph)
    result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert result["token_type"] == "Bearer" and result["expires_in"] == 3599
    assert result["token_source"] == "identity_provider"
    cached = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert cached["token_source"] == "cache"
    session = ms_session(graph)
    oidc = session.get(f"{graph.authority}/v2.0/.well-known/openid-configuration").json()
    assert oidc["token_endpoint"] == f"{graph.url}/{graph.tenant_id}/oauth2/v2.0/token"
    jwks = session.get(oidc["jwks_uri"]).json()
    key = jwt.PyJWK(jwks["keys"][0]).key
    claims = jwt.decode(result["access_token"], key, algorithms=["RS256"],
                        audience="https://graph.microsoft.com",
                        options={"verify_exp": False, "verify_nbf": False,
                                 "verify_iat": False})
    assert claims["tid"] == graph.tenant_id and claims["appid"] == graph.client_id
    assert claims["idtyp"] == "app" and "Calendars.ReadWrite" in claims["roles"]
    with graph_client(graph, result["access_token"]) as client:
        assert client.get(f"/users/{MAILBOX}").json()["mail"] == MAILBOX
        me = client.get("/me/events")  # app tokens have no "me"
        assert (me.status_code, me.json()["error"]["code"]) == (400, "BadRequest")

    wrong = msal.ConfidentialClientApplication(
        graph.client_id, client_credential="not-the-secret", authority=graph.authority,
        instance_discovery=False, http_client=ms_session(graph))
    failed = wrong.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert failed["error"] == "invalid_client"
    assert failed["error_description"].startswith("AADSTS7000215:")
    scoped = msal_app(graph).acquire_token_for_client(
        scopes=["https://graph.microsoft.com/Calendars.Read"])
    assert scoped["error"] == "invalid_scope" and scoped["error_codes"] == [1002012]
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal.ConfidentialClientApplication(
            graph.client_id, client_credential=graph.client_secret,
            authority=f"{graph.url}/no-such-tenant", instance_discovery=False,
            http_client=ms_session(graph))


def test_msal_auth_code_flow_refresh_and_delegated_graph(graph: GraphEmulator) -> None:
    app = msal_app(graph)
    flow = app.initiate_auth_code_flow(["Calendars.ReadWrite"],
                                       redirect_uri="http://localhost:8400/oauth/callback",
                                       login_hint=MAILBOX)
    redirect = ms_session(graph).get(flow["auth_uri"], allow_redirects=False)
    assert redirect.status_code == 302
    location = redirect.headers["location"]
    assert location.startswith("http://localhost:8400/oauth/callback?")
    result = app.acquire_token_by_auth_code_flow(flow, dict(parse_qsl(urlsplit(location).query)))
    assert "access_token" in result, result
    assert result["id_token_claims"]["preferred_username"] == MAILBOX
    assert result["scope"] == "Calendars.ReadWrite"
    account = app.get_accounts()[0]
    assert account["username"] == MAILBOX
    silent = app.acquire_token_silent(["Calendars.ReadWrite"], account=account)
    assert silent["access_token"] == result["access_token"]
    forced = app.acquire_token_silent(["Calendars.ReadWrite"], account=account,
                                      force_refresh=True)
    assert forced["access_token"] != result["access_token"]
    assert graph.knobs.counters()["ms.token.refresh_token"] == 1
    with graph_client(graph, forced["access_token"]) as client:
        created = client.post("/me/events", json=g_body("Rappel", "2026-03-10", "09:00",
                                                        "09:30"))
        assert created.status_code == 201
        assert client.get("/me/events").json()["value"][0]["id"] == created.json()["id"]
        other = client.get("/users/assistant@relaissandbox.onmicrosoft.com/events")
        assert (other.status_code, other.json()["error"]["code"]) == (403, "ErrorAccessDenied")
    graph.revoke_refresh_token()
    denied = app.acquire_token_silent_with_error(["Calendars.ReadWrite"], account=account,
                                                 force_refresh=True)
    assert denied["error"] == "invalid_grant" and denied["error_codes"] == [50173]


def test_graph_transaction_id_makes_create_idempotent(graph: GraphEmulator) -> None:
    with graph_client(graph) as client:
        body = g_body("RDV M. Petit", "2026-03-10", "10:00", "10:30",
                      transactionId="relais-appt-8f2c")
        first = client.post(f"/users/{MAILBOX}/events", json=body)
        retry = client.post(f"/users/{MAILBOX}/events", json=body)
        assert (first.status_code, retry.status_code) == (201, 201)
        assert first.json()["id"] == retry.json()["id"]
        assert first.json()["transactionId"] == "relais-appt-8f2c"
        assert first.json()["start"] == {"dateTime": "2026-03-10T09:00:00.0000000",
                                         "timeZone": "UTC"}
        graph.knobs.drop_after_write(method="POST", path="/events$")
        lost = dict(body, transactionId="relais-appt-9a11")
        with pytest.raises(httpx.TransportError):
            client.post(f"/users/{MAILBOX}/events", json=lost)
        other = client.post(f"/users/{MAILBOX}/events", json=lost)  # the retry
        assert other.json()["id"] != first.json()["id"]
        listed = client.get(f"/users/{MAILBOX}/events").json()["value"]
        assert sorted(e["transactionId"] for e in listed) == ["relais-appt-8f2c",
                                                              "relais-appt-9a11"]
        found = client.get(f"/users/{MAILBOX}/events",
                           params={"$filter": "transactionId eq 'relais-appt-8f2c'"})
        assert [e["id"] for e in found.json()["value"]] == [first.json()["id"]]
        patched = client.patch(f"/users/{MAILBOX}/events/{first.json()['id']}",
                               json={"showAs": "tentative"})
        assert patched.json()["showAs"] == "tentative"
        assert client.delete(f"/users/{MAILBOX}/events/{first.json()['id']}").status_code == 204
        gone = client.delete(f"/users/{MAILBOX}/events/{first.json()['id']}")
        assert (gone.status_code, gone.json()["error"]["code"]) == (404, "ErrorItemNotFound")
        ghost = client.post("/users/ghost@avocats-durand.fr/events", json=body)
        assert (ghost.status_code, ghost.json()["error"]["code"]) == (404, "ErrorInvalidUser")


def test_graph_get_schedule_statuses_recurrence_and_unknown(graph: GraphEmulator) -> None:
    graph.add_mailbox("stagiaire@avocats-durand.fr", time_zone="Romance Standard Time")
    day = "2026-03-10"
    graph.seed_events(MAILBOX, [
        g_body("Dossier", day, "08:00", "08:30"),
        g_body("Peut-être", day, "08:30", "09:00", showAs="tentative"),
        g_body("Tribunal", day, "09:00", "09:30", showAs="oof"),
        g_body("Libre", day, "09:30", "10:00", showAs="free"),
        g_body("Télétravail", day, "10:00", "10:30", showAs="workingElsewhere"),
        g_body("Annulé", day, "10:30", "11:00", isCancelled=True),
    ])
    with graph_client(graph) as client:
        users = f"/users/{MAILBOX}"
        daily = client.post(f"{users}/events", json=g_body(
            "Point", "2026-03-09", "11:00", "11:30", recurrence={
                "pattern": {"type": "daily", "interval": 1},
                "range": {"type": "numbered", "startDate": "2026-03-09",
                          "numberOfOccurrences": 3}})).json()
        weekly = client.post(f"{users}/events", json=g_body(
            "Hebdo", "2026-03-03", "11:30", "12:00", recurrence={
                "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["tuesday"]},
                "range": {"type": "endDate", "startDate": "2026-03-03",
                          "endDate": "2026-03-17"}})).json()
        assert daily["type"] == "seriesMaster"
        window = {"startDateTime": "2026-03-10T00:00:00Z", "endDateTime": "2026-03-11T00:00:00Z"}
        occ_daily = client.get(f"{users}/events/{daily['id']}/instances",
                               params=window).json()["value"]
        occ_weekly = client.get(f"{users}/events/{weekly['id']}/instances",
                                params=window).json()["value"]
        assert [o["id"] for o in occ_daily] == [f"{daily['id']}_20260310T100000Z"]
        assert occ_weekly[0]["type"] == "occurrence"
        assert occ_weekly[0]["seriesMasterId"] == weekly["id"]
        assert client.delete(f"{users}/events/{occ_daily[0]['id']}").status_code == 204
        exc = client.patch(f"{users}/events/{occ_weekly[0]['id']}", json={"showAs": "oof"})
        assert exc.json()["type"] == "exception" and exc.json()["showAs"] == "oof"

        request = {"schedules": [MAILBOX, "ghost@avocats-durand.fr",
                                 "stagiaire@avocats-durand.fr"],
                   "startTime": at(day, "08:00", "Romance Standard Time"),
                   "endTime": at(day, "12:00", "Romance Standard Time"),
                   "availabilityViewInterval": 30}
        resp = client.post(f"{users}/calendar/getSchedule", json=request,
                           headers={"Prefer": 'outlook.timezone="Romance Standard Time"'})
        assert resp.status_code == 200
        assert resp.headers["preference-applied"] == 'outlook.timezone="Romance Standard Time"'
        me, ghost, intern = resp.json()["value"]
        assert me["availabilityView"] == "21300003"
        assert [(i["status"], i["start"]["dateTime"], i["end"]["dateTime"])
                for i in me["scheduleItems"]] == [
            ("busy", "2026-03-10T08:00:00.0000000", "2026-03-10T08:30:00.0000000"),
            ("tentative", "2026-03-10T08:30:00.0000000", "2026-03-10T09:00:00.0000000"),
            ("oof", "2026-03-10T09:00:00.0000000", "2026-03-10T09:30:00.0000000"),
            ("free", "2026-03-10T09:30:00.0000000", "2026-03-10T10:00:00.0000000"),
            ("workingElsewhere", "2026-03-10T10:00:00.0000000", "2026-03-10T10:30:00.0000000"),
            ("oof", "2026-03-10T11:30:00.0000000", "2026-03-10T12:00:00.0000000"),
        ]
        assert {i["start"]["timeZone"] for i in me["scheduleItems"]} == {"Romance Standard Time"}
        assert me["scheduleItems"][-1]["isException"] is True
        assert me["workingHours"]["timeZone"] == {"name": "Romance Standard Time"}
        # unknown mailbox: an error, never "free"
        assert ghost["error"]["responseCode"] == "ErrorMailRecipientNotFound"
        assert ghost["availabilityView"] == "" and ghost["scheduleItems"] == []
        assert intern["availabilityView"] == "00000000" and "error" not in intern
        utc = client.post(f"{users}/calendar/getSchedule", json=request).json()["value"][0]
        assert utc["scheduleItems"][0]["start"] == {"dateTime": "2026-03-10T07:00:00.0000000",
                                                    "timeZone": "UTC"}
        too_long = client.post(f"{users}/calendar/getSchedule", json=dict(
            request, endTime=at("2026-05-11", "08:00", "Romance Standard Time")))
        assert too_long.status_code == 400
        too_many = client.post(f"{users}/calendar/getSchedule", json=dict(
            request, schedules=[f"u{n}@avocats-durand.fr" for n in range(21)]))
        assert too_many.status_code == 400


def test_graph_dst_time_zones(graph: GraphEmulator) -> None:
    graph.add_mailbox("ny@avocats-durand.fr", time_zone="Eastern Standard Time")
    with graph_client(graph) as client:
        users = "/users/ny@avocats-durand.fr"
        ids = []
        for day in ("2026-03-07", "2026-03-08"):
            ids.append(client.post(f"{users}/events", json=g_body(
                "NY", day, "13:00", "14:00", tz="Eastern Standard Time")).json()["id"])
        utc = client.get(f"{users}/events/{ids[1]}").json()
        assert utc["start"] == {"dateTime": "2026-03-08T17:00:00.0000000", "timeZone": "UTC"}
        assert utc["originalStartTimeZone"] == "Eastern Standard Time"
        local = client.get(f"{users}/events/{ids[1]}",
                           headers={"Prefer": 'outlook.timezone="America/New_York"'}).json()
        assert local["start"] == {"dateTime": "2026-03-08T13:00:00.0000000",
                                  "timeZone": "America/New_York"}
        sched = client.post(f"{users}/calendar/getSchedule", json={
            "schedules": ["ny@avocats-durand.fr"],
            "startTime": {"dateTime": "2026-03-07T00:00:00", "timeZone": "UTC"},
            "endTime": {"dateTime": "2026-03-09T00:00:00", "timeZone": "UTC"},
            "availabilityViewInterval": 60}).json()["value"][0]
        expected = ["0"] * 48
        expected[18] = expected[24 + 17] = "2"
        assert sched["availabilityView"] == "".join(expected)
        bad = client.post(f"{users}/events", json=g_body("x", "2026-03-08", "13:00", "14:00",
                                                         tz="Mars/Olympus_Mons"))
        assert (bad.status_code, bad.json()["error"]["code"]) == (
            400, "TimeZoneNotSupportedException")


def test_graph_calendar_view_delta_paging_removed_and_410(graph: GraphEmulator) -> None:
    with graph_client(graph) as client:
        users = f"/users/{MAILBOX}"
        ids = [client.post(f"{users}/events", json=g_body(
            f"e{n}", f"2026-03-{10 + n}", "10:00", "11:00")).json()["id"] for n in range(5)]
        client.post(f"{users}/events", json=g_body("Série", "2026-03-02", "09:00", "09:30",
                                                   recurrence={
            "pattern": {"type": "weekly", "daysOfWeek": ["monday"], "interval": 1},
            "range": {"type": "numbered", "startDate": "2026-03-02",
                      "numberOfOccurrences": 2}}))
        window = {"startDateTime": "2026-03-01T00:00:00Z", "endDateTime": "2026-04-01T00:00:00Z"}
        prefer = {"Prefer": "odata.maxpagesize=3"}
        page = client.get(f"{users}/calendarView/delta", params=window, headers=prefer)
        assert page.headers["preference-applied"] == "odata.maxpagesize=3"
        pages = [page.json()]
        while "@odata.nextLink" in pages[-1]:
            pages.append(client.get(pages[-1]["@odata.nextLink"], headers=prefer).json())
        assert [len(p["value"]) for p in pages] == [3, 3, 1]
        assert "@odata.deltaLink" in pages[-1]
        seen = [e for p in pages for e in p["value"]]
        assert sorted(e["type"] for e in seen) == ["occurrence"] * 2 + ["singleInstance"] * 5
        delta_link = pages[-1]["@odata.deltaLink"]

        client.patch(f"{users}/events/{ids[0]}", json={"subject": "déplacé"})
        client.delete(f"{users}/events/{ids[1]}")
        new = client.post(f"{users}/events", json=g_body("nouveau", "2026-03-20", "15:00",
                                                        "16:00")).json()
        client.post(f"{users}/events", json=g_body("avril", "2026-04-10", "15:00", "16:00"))
        changes = client.get(delta_link).json()
        assert "@odata.deltaLink" in changes and "@odata.nextLink" not in changes
        by_id = {e["id"]: e for e in changes["value"]}
        assert set(by_id) == {ids[0], ids[1], new["id"]}
        assert by_id[ids[0]]["subject"] == "déplacé"
        assert by_id[ids[1]] == {"@odata.type": "#microsoft.graph.event", "id": ids[1],
                                 "@removed": {"reason": "deleted"}}
        quiet = client.get(changes["@odata.deltaLink"]).json()
        assert quiet["value"] == []

        resumable = client.get(f"{users}/calendarView/delta", params=window,
                               headers=prefer).json()["@odata.nextLink"]
        assert graph.invalidate_delta_tokens(MAILBOX) == 1
        for link in (quiet["@odata.deltaLink"], resumable):
            gone = client.get(link)
            assert gone.status_code == 410
            assert gone.json()["error"]["code"] == "syncStateNotFound"
        missing = client.get(f"{users}/calendarView/delta")
        assert missing.status_code == 400


def test_graph_subscription_handshake_and_change_notifications(
        graph: GraphEmulator, notification_receiver: NotificationReceiver) -> None:
    receiver = notification_receiver
    expires = (graph.clock.now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    sub_body = {"changeType": "created,updated,deleted",
                "notificationUrl": receiver.url + "/v1/webhooks/microsoft",
                "resource": f"/users/{MAILBOX}/events", "expirationDateTime": expires,
                "clientState": "relais-tenant-42"}
    with graph_client(graph) as client:
        created = client.post("/subscriptions", json=sub_body)
        assert created.status_code == 201, created.text
        # the handshake happened before the 201, with an empty text/plain POST
        assert len(receiver.received) == 1
        handshake = receiver.received[0]
        assert handshake.path == "/v1/webhooks/microsoft" and handshake.body == b""
        assert handshake.query["validationToken"].startswith(
            "Validation: Testing client application reachability for subscription")
        assert handshake.headers["content-type"].startswith("text/plain")
        sub = created.json()
        assert sub["clientState"] == "relais-tenant-42"
        assert sub["changeType"] == "created,updated,deleted"

        event = client.post(f"/users/{MAILBOX}/events",
                            json=g_body("RDV", "2026-03-10", "10:00", "11:00")).json()
        client.patch(f"/users/{MAILBOX}/events/{event['id']}", json={"subject": "RDV 2"})
        client.delete(f"/users/{MAILBOX}/events/{event['id']}")
        hits = receiver.wait_for(3, where=lambda r: "validationToken" not in r.query)
        notes = [h.json()["value"][0] for h in hits]
        assert [n["changeType"] for n in notes] == ["created", "updated", "deleted"]
        assert {n["subscriptionId"] for n in notes} == {sub["id"]}
        assert {n["clientState"] for n in notes} == {"relais-tenant-42"}
        assert {n["resourceData"]["id"] for n in notes} == {event["id"]}
        assert notes[0]["resourceData"]["@odata.type"] == "#Microsoft.Graph.Event"
        assert notes[0]["tenantId"] == graph.tenant_id

        later = (graph.clock.now() + timedelta(days=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
        renewed = client.patch(f"/subscriptions/{sub['id']}",
                               json={"expirationDateTime": later})
        assert renewed.status_code == 200
        assert renewed.json()["expirationDateTime"].startswith(later[:19])
        too_far = (graph.clock.now() + timedelta(minutes=10081)).strftime("%Y-%m-%dT%H:%M:%SZ")
        refused = client.patch(f"/subscriptions/{sub['id']}",
                               json={"expirationDateTime": too_far})
        assert refused.status_code == 400
        assert client.delete(f"/subscriptions/{sub['id']}").status_code == 204
        client.post(f"/users/{MAILBOX}/events", json=g_body("après", "2026-03-11", "10:00",
                                                            "11:00"))
        assert graph.wait_notifications(5)
        assert len(receiver.received) == 4

        # a receiver that does not echo the token: no subscription
        receiver.validation_body = "something else"
        broken = client.post("/subscriptions", json=sub_body)
        assert (broken.status_code, broken.json()["error"]["code"]) == (400, "ValidationError")
        receiver.validation_body = None
        receiver.validation_content_type = "application/json"
        wrong_type = client.post("/subscriptions", json=sub_body)
        assert wrong_type.status_code == 400
        assert graph.subscriptions() == []
        expired = client.post("/subscriptions", json=dict(sub_body, expirationDateTime=too_far))
        assert expired.status_code == 400


def test_graph_throttling_rate_limit_and_mailbox_concurrency(graph: GraphEmulator) -> None:
    graph.add_mailbox("autre@avocats-durand.fr")
    window = {"startDateTime": "2026-03-01T00:00:00Z", "endDateTime": "2026-03-02T00:00:00Z"}
    graph.configure(rate_limit_requests=3, rate_limit_window_seconds=60)
    with graph_client(graph) as client:
        for _ in range(3):
            assert client.get(f"/users/{MAILBOX}/calendarView", params=window).status_code == 200
        limited = client.get(f"/users/{MAILBOX}/calendarView", params=window)
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "TooManyRequests"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert client.get("/users/autre@avocats-durand.fr/calendarView",
                          params=window).status_code == 200  # per mailbox
        graph.clock.advance(61)
        assert client.get(f"/users/{MAILBOX}/calendarView", params=window).status_code == 200
        graph.knobs.fail(429, path="/calendarView")  # injected: same shape
        injected = client.get(f"/users/{MAILBOX}/calendarView", params=window)
        assert (injected.status_code, injected.headers["retry-after"]) == (429, "2")
        assert injected.json()["error"]["code"] == "TooManyRequests"

    graph.configure(rate_limit_requests=10_000)
    token = graph.issue_app_token()
    clients = [graph_client(graph, token) for _ in range(6)]
    for client in clients:  # open the TLS connections first
        assert client.get("/users/autre@avocats-durand.fr").status_code == 200
    graph.configure(request_service_ms=500)  # each request holds its slot half a second
    try:
        barrier = threading.Barrier(6)
        statuses: list[httpx.Response] = []
        lock = threading.Lock()

        def hit(client: httpx.Client) -> None:
            barrier.wait()
            resp = client.get(f"/users/{MAILBOX}/calendarView", params=window)
            with lock:
                statuses.append(resp)

        threads = [threading.Thread(target=hit, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert sorted(r.status_code for r in statuses) == [200] * 4 + [429] * 2
        throttled = [r for r in statuses if r.status_code == 429]
        assert {r.json()["error"]["code"] for r in throttled} == {"ApplicationThrottled"}
        assert all(r.headers["retry-after"] == "2" for r in throttled)
    finally:
        for client in clients:
            client.close()


def test_graph_batch_dependencies_and_inner_throttling(graph: GraphEmulator) -> None:
    users = f"/users/{MAILBOX}"
    window = "startDateTime=2026-03-10T00:00:00Z&endDateTime=2026-03-11T00:00:00Z"
    with graph_client(graph) as client:
        batch = client.post("/$batch", json={"requests": [
            {"id": "create", "method": "POST", "url": f"{users}/events",
             "headers": {"Content-Type": "application/json"},
             "body": g_body("Batch", "2026-03-10", "14:00", "15:00", transactionId="b-1")},
            {"id": "view", "method": "GET", "url": f"{users}/calendarView?{window}",
             "dependsOn": ["create"]},
            {"id": "ghost", "method": "GET", "url": "/users/ghost@avocats-durand.fr/events"},
            {"id": "after-ghost", "method": "GET", "url": f"{users}/events",
             "dependsOn": ["ghost"]},
            {"id": "no-type", "method": "POST", "url": f"{users}/events",
             "body": g_body("x", "2026-03-10", "16:00", "17:00")},
        ]})
        assert batch.status_code == 200
        answers = {r["id"]: r for r in batch.json()["responses"]}
        assert {k: v["status"] for k, v in answers.items()} == {
            "create": 201, "view": 200, "ghost": 404, "after-ghost": 424, "no-type": 400}
        assert [e["subject"] for e in answers["view"]["body"]["value"]] == ["Batch"]
        assert answers["ghost"]["body"]["error"]["code"] == "ErrorInvalidUser"

        parallel = client.post("/$batch", json={"requests": [
            {"id": str(n), "method": "GET", "url": f"{users}/calendarView?{window}"}
            for n in range(6)]}).json()["responses"]
        assert sorted(r["status"] for r in parallel) == [200] * 4 + [429] * 2
        for r in parallel:
            if r["status"] == 429:
                assert r["headers"]["Retry-After"] == "2"
                assert r["body"]["error"]["code"] == "ApplicationThrottled"
        chained = client.post("/$batch", json={"requests": [
            {"id": str(n), "method": "GET", "url": f"{users}/calendarView?{window}",
             **({"dependsOn": [str(n - 1)]} if n else {})} for n in range(6)]}).json()
        assert [r["status"] for r in chained["responses"]] == [200] * 6
        too_big = client.post("/$batch", json={"requests": [
            {"id": str(n), "method": "GET", "url": f"{users}/events"} for n in range(21)]})
        assert too_big.status_code == 400
    assert len(graph.events(MAILBOX)) == 1


def test_graph_bearer_checks(graph: GraphEmulator) -> None:
    token = graph.issue_app_token()
    with graph_client(graph, token) as client:
        assert client.get(f"/users/{MAILBOX}/events").status_code == 200
        graph.expire_access_tokens(token)
        expired = client.get(f"/users/{MAILBOX}/events")
        assert expired.status_code == 401
        assert expired.json()["error"] == {
            "code": "InvalidAuthenticationToken",
            "message": "Lifetime validation failed, the token is expired.",
            "innerError": expired.json()["error"]["innerError"]}
        assert expired.headers["www-authenticate"].startswith("Bearer")
    anonymous = httpx.get(f"{graph.graph_url}/users/{MAILBOX}/events",
                          verify=ssl.create_default_context(cafile=str(graph.ca_file)),
                          trust_env=False)
    assert anonymous.json()["error"]["message"] == "Access token is empty."


# ================================================================ start helpers


def test_start_calendar_sandboxes_handles() -> None:
    with start_calendar_sandboxes() as sb:
        info = sb.describe()
        assert info["google"]["url"].startswith("http://127.0.0.1:")
        assert info["graph"]["url"].startswith("https://127.0.0.1:")
        assert info["graph"]["authority"] == f"{info['graph']['url']}/{sb.graph.tenant_id}"
        assert Path(info["ca_file"]).exists() and sb.ca_file == sb.graph.ca_file
        app = msal_app(sb.graph)
        assert "access_token" in app.acquire_token_for_client(
            scopes=["https://graph.microsoft.com/.default"])
        assert google_service(sb.google).calendarList().list().execute()["items"] == []


def test_python_m_sandbox_starts_the_calendar_emulators(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--only", "calendars", "--json", "--seed",
         "--tls-dir", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline()
            assert line, "sandbox exited early"
            lines.append(line)
            if line.rstrip() == "}":
                break
        info = json.loads("".join(lines))
        assert set(info) == {"ca_file", "google", "graph"}
        with httpx.Client(verify=ssl.create_default_context(cafile=info["ca_file"]),
                          trust_env=False) as http:
            oidc = http.get(f"{info['graph']['authority']}/v2.0/.well-known/"
                            "openid-configuration")
            assert oidc.json()["token_endpoint"].startswith(info["graph"]["url"])
            seeded = http.get(f"{info['google']['url']}/__sandbox__/events",
                              params={"calendarId": "dr.martin@cabinet-martin.fr"}).json()
            assert [e["summary"] for e in seeded["items"]] == ["Consultations"]
            events = http.get(f"{info['graph']['url']}/__sandbox__/events",
                              params={"user": "me.durand@avocats-durand.fr"}).json()
            assert [e["showAs"] for e in events["value"]] == ["oof"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
