"""The calendar connectors (Google Calendar, Outlook / Graph) against the sandbox
emulators, through the real SDKs (google-api-python-client, msal, httpx) over
real sockets: busy times in as few calls as the APIs allow, events exactly once,
and every error kind the engine acts on."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import (
    AuthExpired,
    ConnectionInfo,
    RateLimited,
    Rejected,
    Runtime,
    TransientError,
)
from connectors.calendar import BusyBlock, CalendarBusy, EventRef, EventSpec
from connectors.calendar_common import merge_blocks, split_range
from connectors.google_calendar.client import GoogleCalendarConnector, event_id_for
from connectors.outlook import client as outlook
from connectors.outlook.client import OutlookConnector, transaction_id_for
from connectors.registry import (
    build_connector,
    calendar_connector,
    calendar_connector_class,
    connector_class,
)
from sandbox.google_calendar import GoogleCalendarEmulator
from sandbox.graph import GraphEmulator
from sandbox.testing import (  # noqa: F401  (pytest fixtures)
    google_emulator,
    google_server,
    graph_emulator,
    graph_server,
)

PARIS = "Europe/Paris"
NY = "America/New_York"
WEEK = (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 4, 6, tzinfo=UTC))


def utc(day: str, clock: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}:00+00:00")


def at(day: str, clock: str, tz: str = PARIS) -> dict[str, str]:
    return {"dateTime": f"{day}T{clock}:00", "timeZone": tz}


def spans(result: CalendarBusy) -> list[tuple[str, str, str]]:
    assert result.error is None, result.error
    for block in result.busy:
        assert block.start.utcoffset() == timedelta(0) and block.end.tzinfo is UTC
    return [
        (b.start.strftime("%m-%d %H:%M"), b.end.strftime("%m-%d %H:%M"), b.status)
        for b in result.busy
    ]


class CountingPacer:
    def __init__(self) -> None:
        self.waits = 0

    def wait(self, cost: int = 1) -> None:
        self.waits += cost


# ======================================================================= registry


def test_registry_serves_calendar_connectors_apart_from_delivery_ones() -> None:
    assert calendar_connector_class("google_calendar") is GoogleCalendarConnector
    assert calendar_connector_class("outlook") is OutlookConnector
    with pytest.raises(LookupError, match="no calendar connector"):
        calendar_connector_class("hubspot")
    with pytest.raises(LookupError, match="no connector for provider 'google_calendar'"):
        connector_class("google_calendar")
    assert connector_class("hubspot").__name__ == "HubSpotConnector"
    info = ConnectionInfo("c", "t", "agenda", "google_calendar", {"rate_limit": 300}, {})
    assert GoogleCalendarConnector.rate_limit(info) == (300, 60.0)
    assert OutlookConnector.rate_limit(
        ConnectionInfo("c", "t", "o365", "outlook", {}, {})
    ) == (1000, 60.0)
    assert isinstance(calendar_connector(info), GoogleCalendarConnector)
    with pytest.raises(LookupError):
        build_connector(info)
    assert (GoogleCalendarConnector.max_calendars_per_query,
            OutlookConnector.max_calendars_per_query) == (50, 20)


def test_deterministic_ids_and_block_helpers() -> None:
    eid = event_id_for("appointment:42")
    assert eid == event_id_for("appointment:42") != event_id_for("appointment:43")
    assert re.fullmatch(r"[a-v0-9]{52}", eid)
    txn = transaction_id_for("appointment:42")
    assert txn == transaction_id_for("appointment:42") != transaction_id_for("appointment:43")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                        txn)
    lo, hi = utc("2026-01-01", "00:00"), utc("2026-07-01", "00:00")
    windows = split_range(lo, hi, timedelta(days=90))
    assert [(a.date().isoformat(), b.date().isoformat()) for a, b in windows] == [
        ("2026-01-01", "2026-04-01"), ("2026-04-01", "2026-06-30"), ("2026-06-30", "2026-07-01")]
    cut = [BusyBlock(utc("2026-03-31", "22:00"), utc("2026-04-01", "00:00")),
           BusyBlock(utc("2026-04-01", "00:00"), utc("2026-04-01", "02:00")),
           BusyBlock(utc("2026-04-01", "01:00"), utc("2026-04-01", "03:00"), "tentative"),
           BusyBlock(utc("2025-12-31", "23:00"), utc("2026-01-01", "01:00"))]
    assert merge_blocks(cut, lo, hi) == (
        BusyBlock(utc("2026-01-01", "00:00"), utc("2026-01-01", "01:00")),
        BusyBlock(utc("2026-03-31", "22:00"), utc("2026-04-01", "02:00")),
        BusyBlock(utc("2026-04-01", "01:00"), utc("2026-04-01", "03:00"), "tentative"))


# ========================================================================= Google


def google(emu: GoogleCalendarEmulator, runtime: Runtime | None = None,
           token: str | None = None, **settings: Any) -> GoogleCalendarConnector:
    info = ConnectionInfo(
        "conn-google", "tenant-1", "agenda", "google_calendar",
        {"api_base_url": emu.url, **settings},
        {"access_token": token or emu.access_token, "refresh_token": emu.refresh_token,
         "client_id": emu.client_id, "client_secret": emu.client_secret})
    connector = calendar_connector(info, runtime)
    assert isinstance(connector, GoogleCalendarConnector)
    return connector


def g_event(eid: str | None, day: str, start: str, end: str, tz: str = PARIS,
            **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"summary": eid or "event", "start": at(day, start, tz),
                            "end": at(day, end, tz), **extra}
    if eid:
        body["id"] = eid
    return body


def freebusy_calls(emu: GoogleCalendarEmulator) -> int:
    return emu.knobs.calls("POST", "/calendar/v3/freeBusy")


def test_google_sixty_calendars_in_two_freebusy_calls(
        google_emulator: GoogleCalendarEmulator) -> None:
    staff = [f"staff{n:02d}@cabinet-martin.fr" for n in range(60)]
    for n, cid in enumerate(staff):
        google_emulator.add_calendar(cid, time_zone=PARIS)
        if n % 7 == 0:
            google_emulator.insert_event(cid, g_event(None, "2026-03-10", f"{8 + n // 7:02d}:00",
                                                      f"{9 + n // 7:02d}:00"))
    pacer = CountingPacer()
    connector = google(google_emulator, Runtime(pacer=pacer))
    asked = [*staff, "inconnu@cabinet-martin.fr", staff[0]]  # a duplicate is asked once
    result = connector.free_busy(asked, utc("2026-03-09", "00:00"), utc("2026-03-16", "00:00"))
    assert list(result) == [*staff, "inconnu@cabinet-martin.fr"]
    assert freebusy_calls(google_emulator) == 2 == connector.calls == pacer.waits
    assert google_emulator.knobs.counters()["google.freebusy.calendars"] == 61
    for n, cid in enumerate(staff):
        hour = 7 + n // 7  # 09:00 Paris = 08:00Z
        expected = [(f"03-10 {hour:02d}:00", f"03-10 {hour + 1:02d}:00", "busy")]
        assert spans(result[cid]) == (expected if n % 7 == 0 else [])
    unknown = result["inconnu@cabinet-martin.fr"]
    assert unknown == CalendarBusy("inconnu@cabinet-martin.fr", (),
                                   "Google freeBusy: global/notFound")


def test_google_busy_rules_recurrence_exceptions_and_dst(
        google_emulator: GoogleCalendarEmulator) -> None:
    cal = "dr.martin@cabinet-martin.fr"
    google_emulator.add_calendar(cal, time_zone=PARIS)
    google_emulator.add_calendar("ny.office@cabinet-martin.fr", time_zone=NY)
    # weekly Monday 10:00-11:00 Paris x5, across the 29 March change; 9 March excluded,
    # 16 March moved to 14:00, 23 March cancelled
    google_emulator.insert_event(cal, g_event(
        "serie0001", "2026-03-02", "10:00", "11:00",
        recurrence=["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=5",
                    "EXDATE;TZID=Europe/Paris:20260309T100000"]))
    google_emulator.patch_event(cal, "serie0001_20260316T090000Z",
                                {"start": at("2026-03-16", "14:00"),
                                 "end": at("2026-03-16", "15:00")})
    google_emulator.delete_event(cal, "serie0001_20260323T090000Z")
    google_emulator.seed_events(cal, [
        g_event("tentative1", "2026-03-03", "09:00", "09:30", status="tentative"),
        g_event("lunch0001", "2026-03-03", "12:00", "13:00", transparency="transparent"),
        g_event("absence01", "2026-03-04", "13:00", "18:00", eventType="outOfOffice"),
        g_event("declined1", "2026-03-05", "14:00", "15:00",
                attendees=[{"email": cal, "responseStatus": "declined"}]),
    ])
    google_emulator.seed_events("ny.office@cabinet-martin.fr", [
        g_event("dst000307", "2026-03-07", "13:00", "14:00", tz=NY),
        g_event("dst000308", "2026-03-08", "13:00", "14:00", tz=NY),
    ])
    connector = google(google_emulator)
    result = connector.free_busy([cal, "ny.office@cabinet-martin.fr"], *WEEK)
    assert connector.calls == 1
    assert spans(result[cal]) == [
        ("03-02 09:00", "03-02 10:00", "busy"),
        ("03-03 08:00", "03-03 08:30", "busy"),   # tentative is busy
        ("03-04 12:00", "03-04 17:00", "busy"),   # out of office; lunch (free) is not busy
        ("03-16 13:00", "03-16 14:00", "busy"),   # the moved instance
        ("03-30 08:00", "03-30 09:00", "busy"),   # 10:00 CEST after the change
    ]
    assert spans(result["ny.office@cabinet-martin.fr"]) == [
        ("03-07 18:00", "03-07 19:00", "busy"),   # EST: UTC-5
        ("03-08 17:00", "03-08 18:00", "busy"),   # EDT since 02:00 that morning
    ]
    # a range that starts inside an event is clipped to the range
    clipped = connector.free_busy([cal], utc("2026-03-04", "15:00"), utc("2026-03-05", "00:00"))
    assert spans(clipped[cal]) == [("03-04 15:00", "03-04 17:00", "busy")]
    with pytest.raises(ValueError, match="timezone-aware"):
        connector.free_busy([cal], datetime(2026, 3, 1), datetime(2026, 3, 2))  # noqa: DTZ001


def test_google_long_ranges_are_split_and_blocks_rejoined(
        google_emulator: GoogleCalendarEmulator) -> None:
    cal = "dr.martin@cabinet-martin.fr"
    google_emulator.add_calendar(cal, time_zone="UTC")
    start = utc("2026-01-01", "00:00")
    boundary = start + timedelta(days=90)  # 2026-04-01, the first window's end
    google_emulator.seed_events(cal, [
        {"id": "across001", "summary": "across", "start": {"dateTime": "2026-03-31T22:00:00Z"},
         "end": {"dateTime": "2026-04-01T02:00:00Z"}},
        g_event("debut0001", "2026-01-05", "09:00", "10:00", tz="UTC"),
        g_event("fin000001", "2026-08-20", "09:00", "10:00", tz="UTC"),
    ])
    connector = google(google_emulator)
    result = connector.free_busy([cal, "inconnu@cabinet-martin.fr"], start,
                                 start + timedelta(days=250))
    assert freebusy_calls(google_emulator) == 3 == connector.calls  # 90 + 90 + 70 days
    assert boundary.isoformat() == "2026-04-01T00:00:00+00:00"
    assert spans(result[cal]) == [("01-05 09:00", "01-05 10:00", "busy"),
                                  ("03-31 22:00", "04-01 02:00", "busy"),  # one block again
                                  ("08-20 09:00", "08-20 10:00", "busy")]
    assert result["inconnu@cabinet-martin.fr"].error == "Google freeBusy: global/notFound"
    assert "status:400" not in google_emulator.knobs.counters()  # never timeRangeTooLong
    short = google(google_emulator, freebusy_max_days=30)
    short.free_busy([cal], start, start + timedelta(days=61))
    assert short.calls == 3


def test_google_failed_chunk_is_unknown_never_free(
        google_emulator: GoogleCalendarEmulator) -> None:
    staff = [f"staff{n:02d}@cabinet-martin.fr" for n in range(60)]
    for cid in staff:
        google_emulator.add_calendar(cid)
    google_emulator.knobs.fail(503, times=1, path="/freeBusy")
    result = google(google_emulator).free_busy(staff, *WEEK)
    failed = {cid for cid, r in result.items() if r.error}
    assert failed in (set(staff[:50]), set(staff[50:]))
    assert all(r.busy == () for r in result.values())
    assert {result[c].error for c in failed} == {
        "Google Calendar freeBusy answered 503 backendError: Backend Error"}
    google_emulator.knobs.fail(503, times=2, path="/freeBusy")  # every chunk: raise
    with pytest.raises(TransientError, match="503 backendError"):
        google(google_emulator).free_busy(staff, *WEEK)


def booking(subject: str = "Consultation Mme Leroy", day: str = "2026-03-10",
            tz: str = PARIS) -> EventSpec:
    start = datetime.fromisoformat(f"{day}T09:00:00+00:00")
    return EventSpec(subject, start, start + timedelta(minutes=30), tz,
                     description="Rappel: apporter le dossier", attendees=("leroy@example.fr",),
                     location="Cabinet, 2 rue de la Paix")


def test_google_create_once_even_when_the_answer_is_lost(
        google_emulator: GoogleCalendarEmulator) -> None:
    cal = "dr.martin@cabinet-martin.fr"
    google_emulator.add_calendar(cal, time_zone=PARIS)
    connector = google(google_emulator)
    first = connector.create_event(cal, booking(), "appt-1")
    assert first.event_id == event_id_for("appt-1") and first.calendar_id == cal
    again = connector.create_event(cal, booking(), "appt-1")  # 409, read back
    assert again == first and connector.calls == 3
    stored = google_emulator.events(cal)
    assert len(stored) == 1
    assert {k: stored[0][k] for k in ("id", "summary", "description", "location", "start",
                                       "end", "etag")} == {
        "id": first.event_id, "summary": "Consultation Mme Leroy",
        "description": "Rappel: apporter le dossier", "location": "Cabinet, 2 rue de la Paix",
        "start": {"dateTime": "2026-03-10T10:00:00+01:00", "timeZone": PARIS},
        "end": {"dateTime": "2026-03-10T10:30:00+01:00", "timeZone": PARIS},
        "etag": first.etag}
    assert [a["email"] for a in stored[0]["attendees"]] == ["leroy@example.fr"]

    google_emulator.knobs.drop_after_write(method="POST", path="/events$")
    retried = connector.create_event(cal, booking("Lost answer"), "appt-2")  # read back
    assert retried.event_id == event_id_for("appt-2")
    assert sorted(e["id"] for e in google_emulator.events(cal)) == sorted(
        [first.event_id, retried.event_id])
    assert google_emulator.knobs.counters()["fault:drop_after_write"] == 1

    connector.delete_event(first)  # a replay of a cancelled booking does not resurrect it
    with pytest.raises(Rejected, match="created then deleted"):
        connector.create_event(cal, booking(), "appt-1")
    with pytest.raises(Rejected, match="404 notFound"):
        connector.create_event("inconnu@cabinet-martin.fr", booking(), "appt-3")
    with pytest.raises(Rejected, match="timezone-aware"):
        connector.create_event(cal, EventSpec("x", datetime(2026, 3, 1),  # noqa: DTZ001
                                              datetime(2026, 3, 1, 1), PARIS), "appt-4")


def test_google_update_and_delete_twice(google_emulator: GoogleCalendarEmulator) -> None:
    cal = "dr.martin@cabinet-martin.fr"
    google_emulator.add_calendar(cal, time_zone=PARIS)
    connector = google(google_emulator)
    ref = connector.create_event(cal, booking(), "appt-1")
    moved = EventSpec("Consultation déplacée", utc("2026-03-11", "13:00"),
                      utc("2026-03-11", "14:00"), NY)
    updated = connector.update_event(ref, moved)
    assert updated.event_id == ref.event_id and updated.etag != ref.etag
    stored = google_emulator.events(cal)[0]
    assert (stored["summary"], stored["start"]["timeZone"], stored.get("attendees"),
            stored["description"], stored["location"]) == ("Consultation déplacée", NY, [], "", "")
    # the emulator prints dateTime in the calendar's zone (Paris): the same instants
    assert [datetime.fromisoformat(stored[k]["dateTime"]) for k in ("start", "end")] == [
        utc("2026-03-11", "13:00"), utc("2026-03-11", "14:00")]
    assert spans(connector.free_busy([cal], *WEEK)[cal]) == [
        ("03-11 13:00", "03-11 14:00", "busy")]
    connector.delete_event(updated)
    connector.delete_event(updated)  # 410 deleted: already gone is fine
    connector.delete_event(EventRef(cal, "neverexisted"))  # 404 too
    assert google_emulator.events(cal, include_cancelled=False) == []
    with pytest.raises(Rejected, match="was deleted from the calendar"):
        connector.update_event(ref, moved)


def test_google_usage_limits_are_rate_limited_with_a_reset(
        google_emulator: GoogleCalendarEmulator) -> None:
    cal = "dr.martin@cabinet-martin.fr"
    google_emulator.add_calendar(cal)
    google_emulator.configure(quota_per_user_per_minute=1)
    connector = google(google_emulator)
    connector.free_busy([cal], *WEEK)
    before = datetime.now(UTC)
    with pytest.raises(RateLimited) as limited:
        connector.free_busy([cal], *WEEK)
    assert "403 rateLimitExceeded: Rate Limit Exceeded" in str(limited.value)
    wait = (limited.value.reset_at - before).total_seconds()
    assert 14.5 < wait < 16  # no Retry-After: the rate_limited_seconds default (15 s)
    google_emulator.configure(quota_status=429, quota_reason="userRateLimitExceeded",
                              quota_retry_after=True)
    with pytest.raises(RateLimited) as too_many:
        connector.create_event(cal, booking(), "appt-1")
    assert "429 userRateLimitExceeded" in str(too_many.value)
    wait = (too_many.value.reset_at - datetime.now(UTC)).total_seconds()
    assert 1 <= wait <= 61  # Google's Retry-After when it sends one
    google_emulator.configure(quota_per_user_per_minute=600, quota_status=403,
                              quota_reason="quotaExceeded", quota_retry_after=False)
    google_emulator.knobs.fail(403, path="/events")
    with pytest.raises(RateLimited) as usage:
        connector.create_event(cal, booking(), "appt-1")
    assert 299 < (usage.value.reset_at - datetime.now(UTC)).total_seconds() <= 300
    assert google_emulator.events(cal) == []
    google_emulator.knobs.fail(500, path="/freeBusy")
    with pytest.raises(TransientError, match="500 backendError"):
        connector.free_busy([cal], *WEEK)


def test_google_expired_token_is_auth_expired(google_emulator: GoogleCalendarEmulator) -> None:
    cal = "dr.martin@cabinet-martin.fr"
    google_emulator.add_calendar(cal)
    connector = google(google_emulator)
    assert connector.free_busy([cal], *WEEK)[cal].error is None
    google_emulator.expire_access_tokens()
    with pytest.raises(AuthExpired, match="401 authError"):
        connector.free_busy([cal], *WEEK)
    with pytest.raises(AuthExpired):
        connector.create_event(cal, booking(), "appt-1")
    counters = google_emulator.knobs.counters()
    assert counters["status:401"] == 2 and "POST /token" not in counters  # never refreshes
    fresh = google(google_emulator, token=google_emulator.issue_access_token())
    assert fresh.free_busy([cal], *WEEK)[cal].error is None


# ========================================================================== Graph


@pytest.fixture
def graph(graph_emulator: GraphEmulator) -> GraphEmulator:  # noqa: F811
    outlook.forget_apps()  # the emulator forgot every token it issued
    return graph_emulator


def o365(emu: GraphEmulator, runtime: Runtime | None = None,
         credentials: dict[str, Any] | None = None, **settings: Any) -> OutlookConnector:
    info = ConnectionInfo(
        "conn-o365", "tenant-1", "agenda-o365", "outlook",
        {"authority": emu.authority, "graph_base_url": emu.graph_url,
         "ca_file": str(emu.ca_file), **settings},
        credentials or {"client_id": emu.client_id, "client_secret": emu.client_secret,
                        "tenant_id": emu.tenant_id})
    connector = calendar_connector(info, runtime)
    assert isinstance(connector, OutlookConnector)
    return connector


def o_event(subject: str, day: str, start: str, end: str, tz: str = PARIS,
            **extra: Any) -> dict[str, Any]:
    return {"subject": subject, "start": at(day, start, tz), "end": at(day, end, tz), **extra}


def schedule_calls(emu: GraphEmulator) -> int:
    return sum(n for key, n in emu.knobs.counters().items()
               if key.startswith("POST ") and key.endswith("/calendar/getSchedule"))


def test_graph_twenty_five_mailboxes_in_two_getschedule_calls(graph: GraphEmulator) -> None:
    staff = [f"avocat{n:02d}@avocats-durand.fr" for n in range(25)]
    for n, mail in enumerate(staff):
        graph.add_mailbox(mail, time_zone=PARIS)
        if n % 5 == 0:
            graph.seed_events(mail, [o_event("RDV", "2026-03-10", f"{9 + n // 5:02d}:00",
                                             f"{10 + n // 5:02d}:00")])
    pacer = CountingPacer()
    connector = o365(graph, Runtime(pacer=pacer))
    asked = [*staff, "inconnu@avocats-durand.fr"]
    result = connector.free_busy(asked, utc("2026-03-09", "00:00"), utc("2026-03-16", "00:00"))
    assert list(result) == asked
    assert schedule_calls(graph) == 2 == connector.calls == pacer.waits
    counters = graph.knobs.counters()
    assert counters["graph.schedule.lookups"] == 26
    assert counters["ms.token.client_credentials"] == 1
    for n, mail in enumerate(staff):
        hour = 8 + n // 5
        expected = [(f"03-10 {hour:02d}:00", f"03-10 {hour + 1:02d}:00", "busy")]
        assert spans(result[mail]) == (expected if n % 5 == 0 else [])
    assert result["inconnu@avocats-durand.fr"] == CalendarBusy(
        "inconnu@avocats-durand.fr", (),
        "Graph getSchedule: ErrorMailRecipientNotFound: The specified address "
        "inconnu@avocats-durand.fr could not be resolved to a mailbox.")
    # the next query reuses msal's cached token (one app per process)
    again = o365(graph)
    again.free_busy(staff[:3], *WEEK)
    assert graph.knobs.counters()["ms.token.client_credentials"] == 1 and again.calls == 1


def test_graph_statuses_recurrence_exceptions_and_dst(graph: GraphEmulator) -> None:
    mail, ny = "me.durand@avocats-durand.fr", "ny@avocats-durand.fr"
    graph.add_mailbox(mail, time_zone=PARIS)
    graph.add_mailbox(ny, time_zone=NY)
    master = graph.seed_events(mail, [o_event(
        "Permanence", "2026-03-02", "10:00", "11:00",
        recurrence={"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
                    "range": {"type": "numbered", "startDate": "2026-03-02",
                              "numberOfOccurrences": 5}})])[0]
    graph.patch_event(mail, f"{master['id']}_20260309T090000Z",
                      {"start": at("2026-03-09", "14:00"), "end": at("2026-03-09", "15:00")})
    graph.delete_event(mail, f"{master['id']}_20260316T090000Z")
    graph.seed_events(mail, [
        o_event("Peut-être", "2026-03-03", "09:00", "09:30", showAs="tentative"),
        o_event("Congé", "2026-03-04", "13:00", "18:00", showAs="oof"),
        o_event("Télétravail", "2026-03-05", "08:00", "12:00", showAs="workingElsewhere"),
        o_event("Libre", "2026-03-05", "14:00", "15:00", showAs="free"),
        o_event("Annulé", "2026-03-06", "10:00", "11:00", isCancelled=True),
    ])
    graph.seed_events(ny, [o_event("Before", "2026-03-07", "13:00", "14:00", tz=NY),
                           o_event("After", "2026-03-08", "13:00", "14:00",
                                   tz="Eastern Standard Time")])
    connector = o365(graph)
    result = connector.free_busy([mail, ny], *WEEK)
    assert connector.calls == 1
    assert spans(result[mail]) == [
        ("03-02 09:00", "03-02 10:00", "busy"),
        ("03-03 08:00", "03-03 08:30", "tentative"),
        ("03-04 12:00", "03-04 17:00", "oof"),
        ("03-05 07:00", "03-05 11:00", "workingElsewhere"),  # free and cancelled: not busy
        ("03-09 13:00", "03-09 14:00", "busy"),   # the moved occurrence; 16 March deleted
        ("03-23 09:00", "03-23 10:00", "busy"),
        ("03-30 08:00", "03-30 09:00", "busy"),   # 10:00 CEST after the change
    ]
    assert spans(result[ny]) == [("03-07 18:00", "03-07 19:00", "busy"),
                                 ("03-08 17:00", "03-08 18:00", "busy")]  # EDT: UTC-4
    clipped = connector.free_busy([mail], utc("2026-03-04", "15:00"), utc("2026-03-05", "00:00"))
    assert spans(clipped[mail]) == [("03-04 15:00", "03-04 17:00", "oof")]


def test_graph_long_ranges_are_split_below_62_days(graph: GraphEmulator) -> None:
    mail = "me.durand@avocats-durand.fr"
    graph.add_mailbox(mail)
    start = utc("2026-01-01", "00:00")
    graph.seed_events(mail, [
        {"subject": "across", "start": {"dateTime": "2026-03-02T22:00:00", "timeZone": "UTC"},
         "end": {"dateTime": "2026-03-03T02:00:00", "timeZone": "UTC"}},  # day 61 boundary
        o_event("late", "2026-05-05", "09:00", "10:00", tz="UTC"),
    ])
    connector = o365(graph)
    result = connector.free_busy([mail], start, start + timedelta(days=130))
    assert schedule_calls(graph) == 3 == connector.calls  # 61 + 61 + 8 days
    assert "status:400" not in graph.knobs.counters()
    assert spans(result[mail]) == [("03-02 22:00", "03-03 02:00", "busy"),
                                   ("05-05 09:00", "05-05 10:00", "busy")]


def test_graph_respects_four_concurrent_requests_per_mailbox(graph: GraphEmulator) -> None:
    staff = [f"avocat{n:03d}@avocats-durand.fr" for n in range(100)]
    for mail in staff:
        graph.add_mailbox(mail)
    graph.configure(request_service_ms=300)  # each request holds its mailbox slot 0.3 s
    via = {"schedule_mailbox": staff[0]}
    connector = o365(graph, **via)
    connector.free_busy(staff[:1], *WEEK)  # token and TLS connection first
    started = time.monotonic()
    result = connector.free_busy(staff, *WEEK)
    elapsed = time.monotonic() - started
    assert all(r.error is None for r in result.values())
    assert connector.calls == 1 + 5
    assert "graph.throttled.concurrency" not in graph.knobs.counters()
    assert 0.6 <= elapsed < 1.5  # 4 at once, then the fifth
    # the same query allowed 5 in flight: Graph throttles, the connection must pause
    with pytest.raises(RateLimited, match="ApplicationThrottled") as throttled:
        o365(graph, mailbox_concurrency=5, **via).free_busy(staff, *WEEK)
    wait = (throttled.value.reset_at - datetime.now(UTC)).total_seconds()
    assert 1 < wait <= 2
    assert graph.knobs.counters()["graph.throttled.concurrency"] >= 1


def test_graph_goes_through_the_next_mailbox_when_the_first_is_unknown(
        graph: GraphEmulator) -> None:
    graph.add_mailbox("me.durand@avocats-durand.fr")
    connector = o365(graph)
    result = connector.free_busy(["parti@avocats-durand.fr", "me.durand@avocats-durand.fr"],
                                 *WEEK)
    assert result["me.durand@avocats-durand.fr"] == CalendarBusy("me.durand@avocats-durand.fr")
    assert "ErrorMailRecipientNotFound" in (result["parti@avocats-durand.fr"].error or "")
    counters = graph.knobs.counters()
    assert counters["POST /v1.0/users/parti@avocats-durand.fr/calendar/getSchedule"] == 1
    assert counters["POST /v1.0/users/me.durand@avocats-durand.fr/calendar/getSchedule"] == 1
    assert connector.calls == 2


def test_graph_create_once_even_when_the_answer_is_lost(graph: GraphEmulator) -> None:
    mail = "me.durand@avocats-durand.fr"
    graph.add_mailbox(mail, time_zone=PARIS)
    connector = o365(graph)
    first = connector.create_event(mail, booking(), "appt-1")
    again = connector.create_event(mail, booking(), "appt-1")
    assert again.event_id == first.event_id and first.etag and connector.calls == 2
    stored = graph.events(mail)
    assert len(stored) == 1
    assert {k: stored[0][k] for k in ("subject", "transactionId", "start", "end")} == {
        "subject": "Consultation Mme Leroy", "transactionId": transaction_id_for("appt-1"),
        "start": {"dateTime": "2026-03-10T09:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2026-03-10T09:30:00.0000000", "timeZone": "UTC"}}
    assert stored[0]["originalStartTimeZone"] == PARIS
    assert stored[0]["body"] == {"contentType": "text", "content": "Rappel: apporter le dossier"}
    assert stored[0]["location"]["displayName"] == "Cabinet, 2 rue de la Paix"
    assert [a["emailAddress"]["address"] for a in stored[0]["attendees"]] == ["leroy@example.fr"]
    assert graph.knobs.counters()["graph.events.transaction_replayed"] == 1

    graph.knobs.drop_after_write(method="POST", path="/events$")
    retried = connector.create_event(mail, booking("Lost answer"), "appt-2")  # sent again
    assert sorted(e["id"] for e in graph.events(mail)) == sorted(
        [first.event_id, retried.event_id])
    assert graph.knobs.counters()["graph.events.transaction_replayed"] == 2
    with pytest.raises(Rejected, match="404 ErrorInvalidUser"):
        connector.create_event("parti@avocats-durand.fr", booking(), "appt-3")


def test_graph_update_and_delete_twice(graph: GraphEmulator) -> None:
    mail = "me.durand@avocats-durand.fr"
    graph.add_mailbox(mail, time_zone=PARIS)
    connector = o365(graph)
    ref = connector.create_event(mail, booking(), "appt-1")
    moved = EventSpec("Consultation déplacée", utc("2026-03-11", "13:00"),
                      utc("2026-03-11", "14:00"), NY)
    updated = connector.update_event(ref, moved)
    assert updated.event_id == ref.event_id and updated.etag != ref.etag
    stored = graph.events(mail)[0]
    assert (stored["subject"], stored["start"], stored["attendees"]) == (
        "Consultation déplacée", {"dateTime": "2026-03-11T13:00:00.0000000", "timeZone": "UTC"},
        [])
    assert spans(connector.free_busy([mail], *WEEK)[mail]) == [
        ("03-11 13:00", "03-11 14:00", "busy")]
    connector.delete_event(updated)
    connector.delete_event(updated)  # 404: already gone is fine
    assert graph.events(mail) == []
    with pytest.raises(Rejected, match="404 ErrorItemNotFound"):
        connector.update_event(ref, moved)
    with pytest.raises(Rejected, match="ErrorInvalidUser"):  # a wrong mailbox is no "gone"
        connector.delete_event(EventRef("parti@avocats-durand.fr", ref.event_id))


def test_graph_throttling_and_outages(graph: GraphEmulator) -> None:
    mail = "me.durand@avocats-durand.fr"
    graph.add_mailbox(mail)
    connector = o365(graph)
    graph.knobs.fail(429, path="/getSchedule")
    before = datetime.now(UTC)
    with pytest.raises(RateLimited, match="429 TooManyRequests") as limited:
        connector.free_busy([mail], *WEEK)
    assert 1.9 < (limited.value.reset_at - before).total_seconds() < 2.5  # Retry-After: 2
    graph.configure(retry_after_seconds=45)
    graph.knobs.fail(429, path="/events")
    with pytest.raises(RateLimited) as later:
        connector.create_event(mail, booking(), "appt-1")
    assert 44 < (later.value.reset_at - datetime.now(UTC)).total_seconds() <= 45
    graph.knobs.fail(503, path="/events")
    with pytest.raises(TransientError, match="503 ServiceNotAvailable") as outage:
        connector.create_event(mail, booking(), "appt-1")
    assert outage.value.retry_after == 45
    assert graph.events(mail) == []
    graph.configure(rate_limit_requests=1, rate_limit_window_seconds=60)
    connector.free_busy([mail], *WEEK)
    with pytest.raises(RateLimited, match="TooManyRequests") as window:
        connector.free_busy([mail], *WEEK)
    assert 50 < (window.value.reset_at - datetime.now(UTC)).total_seconds() <= 61


def test_graph_tokens_app_only_renewed_delegated_auth_expired(graph: GraphEmulator) -> None:
    mail = "me.durand@avocats-durand.fr"
    graph.add_mailbox(mail)
    app_only = o365(graph)
    assert app_only.free_busy([mail], *WEEK)[mail].error is None
    graph.expire_access_tokens()  # msal still holds it: Graph says 401, one new token
    assert app_only.free_busy([mail], *WEEK)[mail].error is None
    counters = graph.knobs.counters()
    assert counters["ms.token.client_credentials"] == 2 and counters["status:401"] == 1
    assert app_only.calls == 3

    token = graph.issue_user_token(mail)
    delegated = o365(graph, credentials={"access_token": token})
    assert delegated.mode == "delegated"
    assert delegated.free_busy([mail], *WEEK)[mail].error is None
    assert graph.knobs.counters()["POST /v1.0/me/calendar/getSchedule"] == 1
    ref = delegated.create_event(mail, booking(), "appt-1")
    graph.expire_access_tokens(token)
    with pytest.raises(AuthExpired, match="401 InvalidAuthenticationToken"):
        delegated.free_busy([mail], *WEEK)
    with pytest.raises(AuthExpired):
        delegated.delete_event(ref)
    assert graph.knobs.counters()["ms.token.client_credentials"] == 2  # no refresh of its own

    wrong = o365(graph, credentials={"client_id": graph.client_id, "client_secret": "nope",
                                     "tenant_id": graph.tenant_id})
    with pytest.raises(AuthExpired, match="invalid_client"):
        wrong.free_busy([mail], *WEEK)
    assert wrong.calls == 0


def test_graph_changed_booking_retried_under_its_key_is_reconciled(graph: GraphEmulator) -> None:
    """Issue 11: Graph refuses a transactionId reused with a different body (400
    ErrorDuplicateTransactionId). The booking changed between two attempts: the event
    already in the mailbox is found by our key and updated, never reported failed."""
    mail = "me.durand@avocats-durand.fr"
    graph.add_mailbox(mail, time_zone=PARIS)
    connector = o365(graph)
    graph.knobs.drop_after_write(times=2, method="POST", path="/events$")
    with pytest.raises(TransientError):
        connector.create_event(mail, booking(), "appt-1")  # written, answer lost twice
    moved = booking("Consultation Mme Leroy (déplacée)", day="2026-03-11")
    ref = connector.create_event(mail, moved, "appt-1")
    stored = graph.events(mail)
    assert len(stored) == 1 and stored[0]["id"] == ref.event_id
    assert stored[0]["subject"] == "Consultation Mme Leroy (déplacée)"
    assert stored[0]["start"]["dateTime"].startswith("2026-03-11")
    assert graph.knobs.counters()["graph.events.transaction_conflict"] == 1
    # The event deleted meanwhile: a new one is created, once.
    connector.delete_event(ref)
    again = connector.create_event(mail, booking("Troisième version"), "appt-1")
    assert [e["id"] for e in graph.events(mail)] == [again.event_id]


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_bookings_survive_connections_the_server_closed_while_idle(
        google_emulator: GoogleCalendarEmulator, graph: GraphEmulator, reset: bool) -> None:
    """Issue 9: after an idle pause the server (or a proxy) has closed the keep-alive
    connection; the next write must not fail with BrokenPipe: reads and idempotent
    writes are sent again on a fresh connection, once."""
    google_emulator.add_calendar("claire@cabinet.fr")
    mail = "me.durand@avocats-durand.fr"
    graph.add_mailbox(mail, time_zone=PARIS)
    for emu, connector, calendar in ((google_emulator, google(google_emulator),
                                      "claire@cabinet.fr"), (graph, o365(graph), mail)):
        for n in range(3):
            ref = connector.create_event(calendar, booking(f"Rendez-vous {n}"), f"appt-{n}")
            assert emu.knobs.close_idle_connections(reset=reset) >= 1
            connector.update_event(ref, booking(f"Rendez-vous {n} déplacé", day="2026-03-12"))
            assert emu.knobs.close_idle_connections(reset=reset) >= 1
            connector.free_busy([calendar], *WEEK)
            emu.knobs.close_idle_connections(reset=reset)
        assert len(emu.events(calendar)) == 3


def test_google_insert_whose_answer_was_lost_is_read_before_inserting_again(
        google_emulator: GoogleCalendarEmulator) -> None:
    """Issue 11: Google does not promise to refuse a second insert of an id (the
    emulator's knob): after a timeout the id is read first, never inserted twice."""
    google_emulator.configure(detect_id_collisions=False)
    google_emulator.add_calendar("claire@cabinet.fr")
    connector = google(google_emulator, timeout_seconds=1)
    google_emulator.knobs.hang(seconds=2, apply=True, method="POST", path="/events$")
    ref = connector.create_event("claire@cabinet.fr", booking(), "appt-1")
    counters = google_emulator.knobs.counters()
    assert counters.get("google.events.collision_undetected", 0) == 0
    assert [e["id"] for e in google_emulator.events("claire@cabinet.fr")] == [ref.event_id]


def test_a_calendar_connection_woken_for_deliveries_is_no_error(
        env, google_emulator: GoogleCalendarEmulator, monkeypatch) -> None:
    """Issue 9: connecting a Google calendar enqueues the connection's deliveries like any
    other; the worker logged LookupError: no connector for provider 'google_calendar'."""
    from booking_helpers import TENANT, setup_tenant
    from crm_helpers import connection_id

    from sync.delivery import process_connection

    setup_tenant(google_emulator, monkeypatch)
    outcome = process_connection(connection_id(TENANT, "agenda"))
    assert outcome.claimed == 0 and outcome.run_again_in is None
    assert outcome.notes == ["google_calendar connections have no deliveries"]
