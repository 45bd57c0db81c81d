"""The busy store: calendar pulls keep staff calendars' events in the database, so
a warm availability query is answered with no provider call (Google sandbox,
real connector), a pulled change updates the answer, and a stale store or a range
outside the pull window falls back to freeBusy."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from booking_helpers import CLAIRE, TENANT, event, setup_tenant
from sqlalchemy import select, update

from relais.api.availability import availability_view
from sandbox.testing import google_emulator, google_server  # noqa: F401  (fixtures)
from sync import booking as booking_mod
from sync import busy
from sync import calendar_sync as cs
from sync.store.busy_models import CalendarBusyEvent
from sync.store.db import session_scope
from sync.store.models import Connection, PullCursor, Tenant, utcnow
from sync.tenants import parsed_config

NOW = datetime.fromisoformat("2027-03-22T08:00:00+01:00")  # a Monday
DAY = "2027-03-23"  # Tuesday


@pytest.fixture
def google(hub_clock, env, google_emulator, monkeypatch):
    hub_clock(NOW, ticking=True)  # the hub's; providers keep the machine's
    setup_tenant(google_emulator, monkeypatch)
    conn = conn_id()
    with session_scope() as session:  # the store's window must reach the test's dates
        row = session.get(Connection, conn)
        days = (NOW - utcnow()).days + 30
        row.settings = {**(row.settings or {}), "busy_window_future_days": max(days, 90)}
    return google_emulator


def conn_id() -> str:
    with session_scope(readonly=True) as session:
        return session.scalar(
            select(Connection.id).where(Connection.tenant_id == TENANT, Connection.name == "agenda")
        )


def freebusy_calls(emu) -> int:
    return sum(1 for r in emu.knobs.requests() if r["path"].endswith("/freeBusy"))


def slots(day: str = DAY, *, start: datetime | None = None, end: datetime | None = None):
    with session_scope(readonly=True) as session:
        config = parsed_config(session.get(Tenant, TENANT))
    lo = start or datetime.fromisoformat(f"{day}T00:00:00+01:00")
    answer = booking_mod.find_availability(
        TENANT, config, staff="claire", type_id="consultation", start=lo,
        end=end or lo + timedelta(days=1),
    )  # fmt: skip
    return answer, {s["start"][11:16] for s in availability_view(answer)["slots"]}


def merged(blocks) -> list[tuple[datetime, datetime]]:
    out: list[list[datetime]] = []
    for b in sorted(blocks, key=lambda b: b.start):
        if out and b.start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b.end)
        else:
            out.append([b.start, b.end])
    return [(a, b) for a, b in out]


def test_warm_availability_after_a_pull_makes_no_provider_call(google):
    conn = conn_id()
    google.seed_events(CLAIRE, [
        event("Audience", DAY, "10:00", "11:00"),
        event("Note à soi", DAY, "15:00", "16:00", transparency="transparent"),
        event("Point hebdo", "2027-03-02", "14:00", "15:00", recurrence=["RRULE:FREQ=WEEKLY"]),
        event("Congrès", "2027-03-24", "09:00", "17:00"),
    ])  # fmt: skip
    pulled = cs.pull_connection(conn)
    assert pulled.calendars == 2  # claire and paul; zoe's calendar does not exist
    busy.CACHE.clear()  # another process: nothing in memory, only the shared table

    before = freebusy_calls(google)
    answer, free = slots()
    assert answer.provider_calls == 0 and freebusy_calls(google) == before
    assert "10:00" not in free and "14:00" not in free  # the event, the series' instance
    assert {"09:00", "11:00", "15:00", "16:00"} <= free  # transparent time stays free

    # the store says what freeBusy says over the same range
    lo = datetime.fromisoformat(f"{DAY}T00:00:00+01:00")
    hi = lo + timedelta(days=3)
    with session_scope(readonly=True) as session:
        config = parsed_config(session.get(Tenant, TENANT))
    members = [m for m in config.staff if m.id == "claire"]
    busy.CACHE.clear()
    stored = busy.fetch_calendar_busy(TENANT, config, members, lo, hi)
    asked = busy.fetch_calendar_busy(TENANT, config, members, lo, hi, fresh=True)
    assert stored.store_hits == 1 and stored.provider_calls == 0
    assert asked.provider_calls >= 1 and asked.by_staff["claire"].error is None
    assert merged(stored.by_staff["claire"].busy) == merged(asked.by_staff["claire"].busy)


def test_a_pulled_change_updates_the_answer_still_without_provider_calls(google):
    conn = conn_id()
    audience = google.seed_events(CLAIRE, [event("Audience", DAY, "10:00", "11:00")])[0]
    series = google.seed_events(CLAIRE, [
        event("Point hebdo", "2027-03-02", "14:00", "15:00", recurrence=["RRULE:FREQ=WEEKLY"])
    ])[0]  # fmt: skip
    cs.pull_connection(conn)
    _, free = slots()
    assert "10:00" not in free and "14:00" not in free

    google.patch_event(CLAIRE, audience["id"], {
        "start": {"dateTime": f"{DAY}T16:00:00", "timeZone": "Europe/Paris"},
        "end": {"dateTime": f"{DAY}T17:00:00", "timeZone": "Europe/Paris"}})  # fmt: skip
    google.delete_event(CLAIRE, series["id"])  # the whole series: its instances go too
    _, stale = slots()
    assert "10:00" not in stale  # not pulled yet: the store still says busy
    pulled = cs.pull_connection(conn)
    assert pulled.status == "error" and pulled.changes == 2  # zoe's calendar still missing
    before = freebusy_calls(google)
    answer, free = slots()
    assert answer.provider_calls == 0 and freebusy_calls(google) == before
    assert {"10:00", "14:00"} <= free and "16:00" not in free
    with session_scope(readonly=True) as session:
        ids = set(session.scalars(select(CalendarBusyEvent.event_id).where(
            CalendarBusyEvent.calendar_id == CLAIRE)))  # fmt: skip
    assert ids == {audience["id"]}


def test_stale_store_or_range_outside_the_window_asks_freebusy(google):
    conn = conn_id()
    google.seed_events(CLAIRE, [event("Audience", DAY, "10:00", "11:00")])
    cs.pull_connection(conn)
    busy.CACHE.clear()
    with session_scope() as session:  # last successful pull an hour ago, no channel
        session.execute(update(PullCursor).where(PullCursor.connection_id == conn,
                                                 PullCursor.stream == "calendar")
                        .values(updated_at=utcnow() - timedelta(hours=1)))  # fmt: skip
    answer, free = slots()
    assert answer.provider_calls >= 1 and "10:00" not in free

    cs.pull_connection(conn)  # fresh again
    busy.CACHE.clear()
    assert slots()[0].provider_calls == 0
    with session_scope() as session:  # the window ends before the asked range
        row = session.get(Connection, conn)
        row.settings = {**row.settings, "busy_window_future_days": 1}
    cs.pull_connection(conn, full=True)
    busy.CACHE.clear()
    assert slots()[0].provider_calls >= 1


def test_all_day_and_declined_events(google):
    conn = conn_id()
    google.seed_events(CLAIRE, [
        {"summary": "Séminaire", "start": {"date": DAY}, "end": {"date": "2027-03-24"}},
        event("Refusé", "2027-03-25", "10:00", "11:00",
              attendees=[{"email": CLAIRE, "self": True, "responseStatus": "declined"}]),
    ])  # fmt: skip
    cs.pull_connection(conn)
    busy.CACHE.clear()
    answer, free = slots()
    assert answer.provider_calls == 0 and free == set()  # the all-day event blocks the day
    answer, free = slots("2027-03-25")
    assert answer.provider_calls == 0 and "10:00" in free


def test_cli_sync_run_and_status_show_calendar_connections(google, monkeypatch):
    import json

    from typer.testing import CliRunner

    from relais.cli import app, out

    monkeypatch.setattr(out, "width", 220)
    google.seed_events(CLAIRE, [event("Audience", DAY, "10:00", "11:00")])
    runner = CliRunner()
    ran = runner.invoke(app, ["sync", "run", "--tenant", TENANT, "--kind", "calendar"])
    assert ran.exit_code == 1, ran.output  # zoe's calendar does not exist: reported, exit 1
    assert "agenda (google_calendar)" in ran.output and "missing@cabinet.test" in ran.output
    status = runner.invoke(app, ["sync", "status", "--json", "--tenant", TENANT])
    assert status.exit_code == 0, status.output
    (row,) = [r for r in json.loads(status.output) if r["kind"] == "calendar"]
    assert row["connection"] == "agenda" and row["changes_in"] >= 1
    assert {c["calendar"] for c in row["calendars"] if c["has_cursor"]} == {
        CLAIRE, "paul@cabinet.test"}  # fmt: skip
    table = runner.invoke(app, ["sync", "status", "--tenant", TENANT])
    assert table.exit_code == 0 and "Calendars" in table.output
    assert "agenda (google_calendar)" in table.output
    assert runner.invoke(app, ["sync", "run", "--kind", "bogus"]).exit_code == 2


def test_a_providers_pause_is_kept_on_the_hubs_clock(google):
    """A rate-limit reset is the provider's instant (machine time); with the hub's clock
    elsewhere (here NOW, ``relais demo --at``) the pause still lasts what it said."""
    from sync import clock

    busy.pause_connection(conn_id(), clock.machine_now() + timedelta(seconds=30))
    with session_scope(readonly=True) as session:
        until = session.get(Connection, conn_id()).paused_until
    assert abs((until - clock.now()).total_seconds() - 30) < 5
