"""Availability engine: exact slot lists for DST, overrides, holidays, buffers, limits."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from sync.availability import (
    AppointmentType,
    AvailabilityQuery,
    BusyInterval,
    BusyKind,
    FairnessStats,
    HolidayRules,
    StaffCalendar,
    StaffSchedule,
    TimeRange,
    busy_window,
    check_slot,
    compute_any_staff_availability,
    compute_availability,
    run_benchmark,
)

NY = ZoneInfo("America/New_York")
PARIS = ZoneInfo("Europe/Paris")
EVERY_DAY = range(7)
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)
M = timedelta(minutes=1)
H = timedelta(hours=1)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def local(zone: ZoneInfo, y: int, mo: int, d: int, h: int = 0, mi: int = 0, fold: int = 0):
    return datetime(y, mo, d, h, mi, tzinfo=zone, fold=fold)


def sched(zone: str, *ranges: str, days=EVERY_DAY, **kw) -> StaffSchedule:
    return StaffSchedule(zone, weekly={d: list(ranges) for d in days}, **kw)


def appt(minutes: int = 60, **kw) -> AppointmentType:
    if "interval" in kw and isinstance(kw["interval"], int):
        kw["interval"] = timedelta(minutes=kw["interval"])
    for name in ("buffer_before", "buffer_after", "minimum_notice"):
        if isinstance(kw.get(name), int):
            kw[name] = timedelta(minutes=kw[name])
    return AppointmentType(duration=timedelta(minutes=minutes), **kw)


def query(start: datetime, end: datetime, now: datetime = LONG_AGO, tz: str = "UTC"):
    return AvailabilityQuery(start, end, now=now, timezone=tz)


def slots_for(schedule: StaffSchedule, q: AvailabilityQuery, a: AppointmentType, busy=()):
    return compute_availability(q, a, [StaffCalendar("s1", schedule, busy)])


def starts(result) -> list[str]:
    return [s.start.isoformat() for s in result.slots]


def spans(result) -> list[str]:
    return [f"{s.start.isoformat()}/{s.end.isoformat()}" for s in result.slots]


def hours(zone: str, day: date, *ranges: str, **akw) -> list[str]:
    """Starts of hourly slots for the local date ``day`` (window: that day ±1)."""
    s = sched(zone, *ranges, days=[day.weekday()])
    q = query(
        datetime.combine(day - timedelta(days=1), time(0), tzinfo=UTC),
        datetime.combine(day + timedelta(days=2), time(0), tzinfo=UTC),
        tz=akw.pop("tz", "UTC"),
    )
    return spans(slots_for(s, q, appt(akw.pop("minutes", 60), **akw)))


# --------------------------------------------------------------------------- DST


def test_new_york_spring_forward_day_is_17_to_22_utc():
    assert hours("America/New_York", date(2026, 3, 8), "13:00-18:00") == [
        "2026-03-08T17:00:00+00:00/2026-03-08T18:00:00+00:00",
        "2026-03-08T18:00:00+00:00/2026-03-08T19:00:00+00:00",
        "2026-03-08T19:00:00+00:00/2026-03-08T20:00:00+00:00",
        "2026-03-08T20:00:00+00:00/2026-03-08T21:00:00+00:00",
        "2026-03-08T21:00:00+00:00/2026-03-08T22:00:00+00:00",
    ]


def test_new_york_fall_back_day_is_18_to_23_utc():
    assert hours("America/New_York", date(2026, 11, 1), "13:00-18:00") == [
        "2026-11-01T18:00:00+00:00/2026-11-01T19:00:00+00:00",
        "2026-11-01T19:00:00+00:00/2026-11-01T20:00:00+00:00",
        "2026-11-01T20:00:00+00:00/2026-11-01T21:00:00+00:00",
        "2026-11-01T21:00:00+00:00/2026-11-01T22:00:00+00:00",
        "2026-11-01T22:00:00+00:00/2026-11-01T23:00:00+00:00",
    ]


def test_paris_spring_forward_and_fall_back_days():
    assert hours("Europe/Paris", date(2026, 3, 29), "09:00-12:00") == [
        "2026-03-29T07:00:00+00:00/2026-03-29T08:00:00+00:00",
        "2026-03-29T08:00:00+00:00/2026-03-29T09:00:00+00:00",
        "2026-03-29T09:00:00+00:00/2026-03-29T10:00:00+00:00",
    ]
    assert hours("Europe/Paris", date(2026, 10, 25), "09:00-12:00") == [
        "2026-10-25T08:00:00+00:00/2026-10-25T09:00:00+00:00",
        "2026-10-25T09:00:00+00:00/2026-10-25T10:00:00+00:00",
        "2026-10-25T10:00:00+00:00/2026-10-25T11:00:00+00:00",
    ]


def test_offsets_are_per_day_not_taken_from_now_or_window_start():
    # Cal.com CAL-2282: an offset computed once (from "now") shifted every slot
    # after the transition by an hour.  Here "now" is in winter time.
    s = sched("America/New_York", "13:00-14:00")
    result = slots_for(s, query(utc(2026, 3, 7), utc(2026, 3, 10), now=utc(2026, 3, 1)), appt())
    assert starts(result) == [
        "2026-03-07T18:00:00+00:00",
        "2026-03-08T17:00:00+00:00",
        "2026-03-09T17:00:00+00:00",
    ]


def test_range_across_spring_forward_gap_is_two_real_hours():
    assert hours("America/New_York", date(2026, 3, 8), "01:00-04:00", tz="America/New_York") == [
        "2026-03-08T01:00:00-05:00/2026-03-08T03:00:00-04:00",
        "2026-03-08T03:00:00-04:00/2026-03-08T04:00:00-04:00",
    ]
    assert hours("Europe/Paris", date(2026, 3, 29), "01:00-04:00") == [
        "2026-03-29T00:00:00+00:00/2026-03-29T01:00:00+00:00",
        "2026-03-29T01:00:00+00:00/2026-03-29T02:00:00+00:00",
    ]


def test_range_across_fall_back_overlap_is_four_real_hours():
    assert hours("America/New_York", date(2026, 11, 1), "01:00-04:00", tz="America/New_York") == [
        "2026-11-01T01:00:00-04:00/2026-11-01T01:00:00-05:00",
        "2026-11-01T01:00:00-05:00/2026-11-01T02:00:00-05:00",
        "2026-11-01T02:00:00-05:00/2026-11-01T03:00:00-05:00",
        "2026-11-01T03:00:00-05:00/2026-11-01T04:00:00-05:00",
    ]
    assert hours("Europe/Paris", date(2026, 10, 25), "01:00-04:00") == [
        "2026-10-24T23:00:00+00:00/2026-10-25T00:00:00+00:00",
        "2026-10-25T00:00:00+00:00/2026-10-25T01:00:00+00:00",
        "2026-10-25T01:00:00+00:00/2026-10-25T02:00:00+00:00",
        "2026-10-25T02:00:00+00:00/2026-10-25T03:00:00+00:00",
    ]


def test_wall_time_in_the_gap_moves_to_the_jump_and_never_inverts():
    # 02:30 does not exist on 2026-03-08 in New York: it becomes 03:00 EDT.
    assert hours(
        "America/New_York", date(2026, 3, 8), "02:30-04:00", minutes=30, tz="America/New_York"
    ) == [
        "2026-03-08T03:00:00-04:00/2026-03-08T03:30:00-04:00",
        "2026-03-08T03:30:00-04:00/2026-03-08T04:00:00-04:00",
    ]
    # 02:30-03:15 is 03:00-03:15 (not the inverted 03:30-03:15 of a plain shift)
    assert hours(
        "America/New_York", date(2026, 3, 8), "02:30-03:15", minutes=15, tz="America/New_York"
    ) == ["2026-03-08T03:00:00-04:00/2026-03-08T03:15:00-04:00"]
    # a range entirely inside the gap is empty
    assert hours("America/New_York", date(2026, 3, 8), "02:10-02:50", minutes=10) == []


def test_repeated_wall_time_starts_at_first_occurrence():
    # 01:30-02:00 on fall-back night: from 01:30 EDT (first) to 02:00 EST = 1.5 h
    assert hours(
        "America/New_York", date(2026, 11, 1), "01:30-02:00", minutes=30, tz="America/New_York"
    ) == [
        "2026-11-01T01:30:00-04:00/2026-11-01T01:00:00-05:00",
        "2026-11-01T01:00:00-05:00/2026-11-01T01:30:00-05:00",
        "2026-11-01T01:30:00-05:00/2026-11-01T02:00:00-05:00",
    ]


def test_clock_alignment_follows_the_wall_clock_through_gap_and_overlap():
    spring = hours(
        "America/New_York", date(2026, 3, 8), "01:00-04:00",
        minutes=30, interval=30, align="clock", tz="America/New_York",
    )  # fmt: skip
    assert spring == [
        "2026-03-08T01:00:00-05:00/2026-03-08T01:30:00-05:00",
        "2026-03-08T01:30:00-05:00/2026-03-08T03:00:00-04:00",
        "2026-03-08T03:00:00-04:00/2026-03-08T03:30:00-04:00",
        "2026-03-08T03:30:00-04:00/2026-03-08T04:00:00-04:00",
    ]
    fall = hours(
        "America/New_York", date(2026, 11, 1), "00:30-02:00",
        minutes=30, interval=30, align="clock", tz="America/New_York",
    )  # fmt: skip
    assert fall == [
        "2026-11-01T00:30:00-04:00/2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-04:00/2026-11-01T01:30:00-04:00",
        "2026-11-01T01:30:00-04:00/2026-11-01T01:00:00-05:00",
        "2026-11-01T01:00:00-05:00/2026-11-01T01:30:00-05:00",
        "2026-11-01T01:30:00-05:00/2026-11-01T02:00:00-05:00",
    ]


def test_lord_howe_half_hour_dst_clock_grid():
    # Australia/Lord_Howe moves by 30 minutes (+11:00 -> +10:30) on 2026-04-05 at 02:00.
    assert hours(
        "Australia/Lord_Howe",
        date(2026, 4, 5),
        "01:00-03:00",
        minutes=30,
        interval=30,
        align="clock",
        tz="Australia/Lord_Howe",
    ) == [  # fmt: skip
        "2026-04-05T01:00:00+11:00/2026-04-05T01:30:00+11:00",
        "2026-04-05T01:30:00+11:00/2026-04-05T01:30:00+10:30",
        "2026-04-05T01:30:00+10:30/2026-04-05T02:00:00+10:30",
        "2026-04-05T02:00:00+10:30/2026-04-05T02:30:00+10:30",
        "2026-04-05T02:30:00+10:30/2026-04-05T03:00:00+10:30",
    ]


def test_midnight_that_does_not_exist():
    # Chile springs forward at 24:00 on 2026-09-05: 00:00-01:00 never happens.
    assert hours("America/Santiago", date(2026, 9, 6), "00:00-02:00", tz="America/Santiago") == [
        "2026-09-06T01:00:00-03:00/2026-09-06T02:00:00-03:00"
    ]


def test_night_range_across_midnight_on_dst_nights():
    assert hours("Europe/Paris", date(2026, 3, 28), "22:00-06:00", tz="Europe/Paris") == [
        "2026-03-28T22:00:00+01:00/2026-03-28T23:00:00+01:00",
        "2026-03-28T23:00:00+01:00/2026-03-29T00:00:00+01:00",
        "2026-03-29T00:00:00+01:00/2026-03-29T01:00:00+01:00",
        "2026-03-29T01:00:00+01:00/2026-03-29T03:00:00+02:00",
        "2026-03-29T03:00:00+02:00/2026-03-29T04:00:00+02:00",
        "2026-03-29T04:00:00+02:00/2026-03-29T05:00:00+02:00",
        "2026-03-29T05:00:00+02:00/2026-03-29T06:00:00+02:00",
    ]
    fall = hours("Europe/Paris", date(2026, 10, 24), "22:00-06:00")
    assert len(fall) == 9  # nine real hours
    assert fall[0] == "2026-10-24T20:00:00+00:00/2026-10-24T21:00:00+00:00"
    assert fall[-1] == "2026-10-25T04:00:00+00:00/2026-10-25T05:00:00+00:00"


def test_minimum_notice_across_dst_is_a_duration_and_keeps_the_grid():
    # Cal.com #12137: notice landing on the DST day shifted the grid.
    s = sched("America/New_York", "09:00-13:00")
    now = local(NY, 2026, 10, 25, 12)
    a = appt(minimum_notice=7 * 24 * 60)  # 168 h: 2026-11-01 11:00 EST
    result = slots_for(
        s, query(utc(2026, 11, 1), utc(2026, 11, 3), now=now, tz="America/New_York"), a
    )
    assert starts(result) == [
        "2026-11-01T11:00:00-05:00",
        "2026-11-01T12:00:00-05:00",
        "2026-11-02T09:00:00-05:00",
        "2026-11-02T10:00:00-05:00",
        "2026-11-02T11:00:00-05:00",
        "2026-11-02T12:00:00-05:00",
    ]


def test_multi_week_window_over_both_transitions_keeps_local_hours():
    s = sched("Europe/Paris", "09:00-10:00")
    result = slots_for(s, query(utc(2026, 3, 1), utc(2026, 11, 30), tz="Europe/Paris"), appt())
    assert len(result.slots) == (date(2026, 11, 30) - date(2026, 3, 1)).days
    assert {s.start.astimezone(PARIS).time() for s in result.slots} == {time(9)}


# --------------------------------------------------------------------------- overrides, holidays


def test_overrides_closed_and_other_hours():
    s = sched(
        "Europe/Paris", "09:00-11:00",
        overrides={date(2026, 6, 2): [], date(2026, 6, 3): ["14:00-15:00", "16:00-17:00"]},
    )  # fmt: skip
    result = slots_for(s, query(utc(2026, 6, 1), utc(2026, 6, 5), tz="Europe/Paris"), appt())
    assert starts(result) == [
        "2026-06-01T09:00:00+02:00",
        "2026-06-01T10:00:00+02:00",
        "2026-06-03T14:00:00+02:00",
        "2026-06-03T16:00:00+02:00",
        "2026-06-04T09:00:00+02:00",
        "2026-06-04T10:00:00+02:00",
    ]


def test_french_public_holidays_close_the_local_date():
    s = sched("Europe/Paris", "09:00-10:00", holidays=HolidayRules("FR"))
    q = query(utc(2026, 11, 10), utc(2026, 11, 13), tz="Europe/Paris")
    assert starts(slots_for(s, q, appt())) == [
        "2026-11-10T09:00:00+01:00",
        "2026-11-12T09:00:00+01:00",
    ]
    q = query(utc(2026, 12, 24), utc(2026, 12, 27), tz="Europe/Paris")
    assert starts(slots_for(s, q, appt())) == [
        "2026-12-24T09:00:00+01:00",
        "2026-12-26T09:00:00+01:00",
    ]


def test_holiday_uses_the_staff_zone_date_not_utc_or_caller():
    # Night shift Dec 24 22:00-02:00 Paris: Dec 25 (Paris date) is closed, so the
    # shift stops at Paris midnight even though it is still Dec 24 in UTC/New York.
    s = sched("Europe/Paris", "22:00-02:00", holidays=HolidayRules("FR"))
    q = query(utc(2026, 12, 24, 12), utc(2026, 12, 26, 12), tz="America/New_York")
    assert spans(slots_for(s, q, appt())) == [
        "2026-12-24T16:00:00-05:00/2026-12-24T17:00:00-05:00",
        "2026-12-24T17:00:00-05:00/2026-12-24T18:00:00-05:00",
    ]


def test_tenant_closures_and_precedence():
    rules = HolidayRules("FR", closures=frozenset({date(2026, 7, 13), date(2026, 7, 15)}))
    s = sched(
        "Europe/Paris", "09:00-10:00", holidays=rules,
        # works on Bastille Day by override; the override cannot reopen a tenant closure
        overrides={date(2026, 7, 14): ["11:00-12:00"], date(2026, 7, 15): ["11:00-12:00"]},
    )  # fmt: skip
    q = query(utc(2026, 7, 12), utc(2026, 7, 17), tz="Europe/Paris")
    assert starts(slots_for(s, q, appt())) == [
        "2026-07-12T09:00:00+02:00",
        "2026-07-14T11:00:00+02:00",
        "2026-07-16T09:00:00+02:00",
    ]


def test_override_replaces_the_whole_local_day_including_previous_night_spill():
    s = sched("Europe/Paris", "22:00-02:00", overrides={date(2026, 6, 2): ["10:00-11:00"]})
    q = query(utc(2026, 6, 1, 12), utc(2026, 6, 2, 21), tz="Europe/Paris")
    assert starts(slots_for(s, q, appt())) == [
        "2026-06-01T22:00:00+02:00",
        "2026-06-01T23:00:00+02:00",
        "2026-06-02T10:00:00+02:00",
    ]


def test_subdivision_holidays():
    # Alsace-Moselle (FR-57) has Good Friday (2026-04-03); the rest of France does not.
    s57 = sched("Europe/Paris", "09:00-10:00", holidays=HolidayRules("FR", "57"))
    sfr = sched("Europe/Paris", "09:00-10:00", holidays=HolidayRules("FR"))
    q = query(utc(2026, 4, 3), utc(2026, 4, 4))
    assert starts(slots_for(s57, q, appt())) == []
    assert starts(slots_for(sfr, q, appt())) == ["2026-04-03T07:00:00+00:00"]


# --- buffers, notice, horizon


def _day():
    return query(utc(2026, 6, 1), utc(2026, 6, 2))


@pytest.mark.parametrize("kind", [BusyKind.EXTERNAL, BusyKind.OWN])
def test_buffers_around_candidate_against_busy(kind):
    s = sched("UTC", "09:00-12:00")
    busy = [BusyInterval(utc(2026, 6, 1, 10), utc(2026, 6, 1, 11), kind)]
    a = appt(30, interval=15, buffer_before=15, buffer_after=15)
    assert starts(slots_for(s, _day(), a, busy)) == [
        "2026-06-01T09:00:00+00:00",
        "2026-06-01T09:15:00+00:00",
        "2026-06-01T11:15:00+00:00",
        "2026-06-01T11:30:00+00:00",
    ]


def test_without_buffers_touching_busy_is_free():
    s = sched("UTC", "09:00-12:00")
    busy = [BusyInterval(utc(2026, 6, 1, 10), utc(2026, 6, 1, 11))]
    assert starts(slots_for(s, _day(), appt(60), busy)) == [
        "2026-06-01T09:00:00+00:00",
        "2026-06-01T11:00:00+00:00",
    ]


def test_existing_event_buffers_apply_when_supplied():
    s = sched("UTC", "09:00-12:00")
    own = BusyInterval(
        utc(2026, 6, 1, 10), utc(2026, 6, 1, 11), BusyKind.OWN, buffer_after=timedelta(minutes=30)
    )
    assert starts(slots_for(s, _day(), appt(30, interval=15), [own])) == [
        "2026-06-01T09:00:00+00:00",
        "2026-06-01T09:15:00+00:00",
        "2026-06-01T09:30:00+00:00",
        "2026-06-01T11:30:00+00:00",
    ]


def test_busy_outside_working_hours_whose_buffer_reaches_in():
    # Cal.com #29532: a booking ending before the range still blocks through its buffer.
    s = sched("UTC", "09:00-10:00")
    busy = [BusyInterval(utc(2026, 6, 1, 8), utc(2026, 6, 1, 9))]
    a = appt(15, buffer_before=15)
    assert starts(slots_for(s, _day(), a, busy)) == [
        "2026-06-01T09:15:00+00:00",
        "2026-06-01T09:30:00+00:00",
        "2026-06-01T09:45:00+00:00",
    ]


def test_busy_blocking_the_slot_end_and_the_slot_middle():
    # Cal.com #180: a slot is free only if its whole length is free.
    s = sched("UTC", "09:00-12:00")
    busy = [
        BusyInterval(utc(2026, 6, 1, 9, 40), utc(2026, 6, 1, 9, 50)),
        BusyInterval(utc(2026, 6, 1, 11, 59), utc(2026, 6, 1, 13)),
    ]
    assert starts(slots_for(s, _day(), appt(45, interval=15), busy)) == [
        "2026-06-01T10:00:00+00:00",
        "2026-06-01T10:15:00+00:00",
        "2026-06-01T10:30:00+00:00",
        "2026-06-01T10:45:00+00:00",
        "2026-06-01T11:00:00+00:00",
    ]


def test_minimum_notice():
    s = sched("UTC", "09:00-12:00")
    q = query(utc(2026, 6, 1), utc(2026, 6, 2), now=utc(2026, 6, 1, 9, 10))
    assert starts(slots_for(s, q, appt(30, minimum_notice=60))) == [
        "2026-06-01T10:30:00+00:00",
        "2026-06-01T11:00:00+00:00",
        "2026-06-01T11:30:00+00:00",
    ]


def test_booking_horizon_counts_local_calendar_days():
    s = sched("Europe/Paris", "09:00-10:00")
    now = local(PARIS, 2026, 6, 1, 23, 30)  # already June 1 21:30 UTC
    q = query(utc(2026, 6, 1), utc(2026, 6, 6), now=now, tz="Europe/Paris")
    assert starts(slots_for(s, q, appt(booking_horizon_days=2))) == [
        "2026-06-02T09:00:00+02:00",
        "2026-06-03T09:00:00+02:00",
    ]
    assert starts(slots_for(s, q, appt(booking_horizon_days=0))) == []


def test_query_window_keeps_slots_that_start_inside_it():
    s = sched("UTC", "09:00-12:00")
    q = query(utc(2026, 6, 1, 9, 30), utc(2026, 6, 1, 11))
    assert starts(slots_for(s, q, appt(60, interval=30))) == [
        "2026-06-01T09:30:00+00:00",
        "2026-06-01T10:00:00+00:00",
        "2026-06-01T10:30:00+00:00",
    ]


# --------------------------------------------------------------------------- alignment


def test_alignment_range_vs_clock():
    s = sched("UTC", "09:10-11:00")
    assert starts(slots_for(s, _day(), appt(30, interval=30, align="range"))) == [
        "2026-06-01T09:10:00+00:00",
        "2026-06-01T09:40:00+00:00",
        "2026-06-01T10:10:00+00:00",
    ]
    assert starts(slots_for(s, _day(), appt(30, interval=30, align="clock"))) == [
        "2026-06-01T09:30:00+00:00",
        "2026-06-01T10:00:00+00:00",
        "2026-06-01T10:30:00+00:00",
    ]


def test_alignment_grid_is_not_moved_by_busy_time():
    s = sched("UTC", "09:00-12:00")
    busy = [BusyInterval(utc(2026, 6, 1, 9), utc(2026, 6, 1, 9, 50))]
    for align in ("range", "clock"):
        assert starts(slots_for(s, _day(), appt(30, interval=30, align=align), busy)) == [
            "2026-06-01T10:00:00+00:00",
            "2026-06-01T10:30:00+00:00",
            "2026-06-01T11:00:00+00:00",
            "2026-06-01T11:30:00+00:00",
        ]


def test_clock_alignment_is_in_the_staff_zone():
    # Kolkata is UTC+05:30: the staff's :00 is :30 in UTC.
    s = sched("Asia/Kolkata", "09:00-11:00")
    q = query(utc(2026, 6, 1), utc(2026, 6, 2))
    assert starts(slots_for(s, q, appt(60, align="clock"))) == [
        "2026-06-01T03:30:00+00:00",
        "2026-06-01T04:30:00+00:00",
    ]


def test_interval_longer_than_duration():
    s = sched("UTC", "09:00-12:00")
    assert starts(slots_for(s, _day(), appt(30, interval=90))) == [
        "2026-06-01T09:00:00+00:00",
        "2026-06-01T10:30:00+00:00",
    ]


# --------------------------------------------------------------------------- daily limit


def test_daily_limit_counts_own_bookings_on_the_local_date():
    s = sched("Europe/Paris", "09:00-11:00")
    busy = [
        # 2026-06-01 23:30 Paris = 21:30 UTC: counts for June 1 (Paris), not June 2
        BusyInterval(local(PARIS, 2026, 6, 1, 23, 30), local(PARIS, 2026, 6, 2), BusyKind.OWN),
        BusyInterval(local(PARIS, 2026, 6, 1, 7), local(PARIS, 2026, 6, 1, 8), BusyKind.OWN),
        # external events never count toward the limit
        BusyInterval(local(PARIS, 2026, 6, 2, 7), local(PARIS, 2026, 6, 2, 8)),
        BusyInterval(local(PARIS, 2026, 6, 2, 18), local(PARIS, 2026, 6, 2, 19)),
    ]
    q = query(utc(2026, 6, 1), utc(2026, 6, 3), tz="Europe/Paris")
    assert starts(slots_for(s, q, appt(daily_limit=2), busy)) == [
        "2026-06-02T09:00:00+02:00",
        "2026-06-02T10:00:00+02:00",
    ]
    assert len(slots_for(s, q, appt(daily_limit=3), busy).slots) == 4
    assert starts(slots_for(s, q, appt(daily_limit=0), busy)) == []


# --------------------------------------------------------------------------- midnight crossing


def test_range_crossing_midnight_including_sunday_into_monday():
    s = StaffSchedule("UTC", weekly={"sun": ["23:00-01:00"], "mon": ["09:00-10:00"]})
    q = query(utc(2026, 6, 7), utc(2026, 6, 9))  # Sunday, Monday
    assert starts(slots_for(s, q, appt(60, interval=30))) == [
        "2026-06-07T23:00:00+00:00",
        "2026-06-07T23:30:00+00:00",
        "2026-06-08T00:00:00+00:00",
        "2026-06-08T09:00:00+00:00",
    ]


def test_joining_ranges_slots_never_straddle_separate_ranges():
    q = query(utc(2026, 6, 1), utc(2026, 6, 3))  # Monday, Tuesday
    a = appt(90, interval=60)
    # one range crossing midnight is one continuous night…
    night = [
        "2026-06-01T22:00:00+00:00",
        "2026-06-01T23:00:00+00:00",  # spans midnight
        "2026-06-02T00:00:00+00:00",
    ]
    s = StaffSchedule("UTC", weekly={0: ["22:00-02:00"]})
    assert starts(slots_for(s, q, a)) == night
    # …and so are two ranges of consecutive dates that meet at midnight
    s = StaffSchedule("UTC", weekly={0: ["22:00-00:00"], 1: ["00:00-02:00"]})
    assert starts(slots_for(s, q, a)) == night
    # ranges of different dates that overlap: the earlier keeps the overlap,
    # the later resumes after it on its own grid (00:00 + k hours)
    s = StaffSchedule("UTC", weekly={0: ["22:30-01:00"], 1: ["00:00-03:00"]})
    assert starts(slots_for(s, q, a)) == [
        "2026-06-01T22:30:00+00:00",
        "2026-06-01T23:30:00+00:00",
        "2026-06-02T01:00:00+00:00",
    ]
    # same-date ranges that touch or overlap join
    s = StaffSchedule("UTC", weekly={0: ["09:00-10:00", "10:00-11:00", "10:30-11:30"]})
    assert starts(slots_for(s, q, a)) == [
        "2026-06-01T09:00:00+00:00",
        "2026-06-01T10:00:00+00:00",
    ]


@pytest.mark.parametrize(("night", "expected"), [
    # spring forward (Sat 27 → Sun 28 March 2027): 02:00 CET jumps to 03:00 CEST
    (date(2027, 3, 27), [
        "2027-03-27T22:00:00+01:00", "2027-03-27T23:00:00+01:00",
        "2027-03-28T00:00:00+01:00", "2027-03-28T01:00:00+01:00",
        "2027-03-28T03:00:00+02:00", "2027-03-28T04:00:00+02:00",
        "2027-03-28T05:00:00+02:00"]),
    # fall back (Sat 30 → Sun 31 October 2027): 03:00 CEST goes back to 02:00 CET
    (date(2027, 10, 30), [
        "2027-10-30T22:00:00+02:00", "2027-10-30T23:00:00+02:00",
        "2027-10-31T00:00:00+02:00", "2027-10-31T01:00:00+02:00",
        "2027-10-31T02:00:00+02:00", "2027-10-31T02:00:00+01:00",
        "2027-10-31T03:00:00+01:00", "2027-10-31T04:00:00+01:00",
        "2027-10-31T05:00:00+01:00"]),
])
def test_two_ranges_meeting_at_midnight_are_one_night_even_on_dst_nights(night, expected):
    q = query(local(PARIS, night.year, night.month, night.day, 12),
              local(PARIS, night.year, night.month, night.day + 1, 12), tz="Europe/Paris")
    a = appt(60, interval=60)
    split = StaffSchedule("Europe/Paris", weekly={"sat": ["22:00-24:00"], "sun": ["00:00-06:00"]})
    whole = StaffSchedule("Europe/Paris", weekly={"sat": ["22:00-06:00"]})
    assert starts(slots_for(split, q, a)) == starts(slots_for(whole, q, a)) == expected
    # a slot spans the join, on the grid of the night's start
    half = appt(60, interval=30)
    assert starts(slots_for(split, q, half)) == starts(slots_for(whole, q, half))
    assert local(PARIS, night.year, night.month, night.day, 23, 30).isoformat() in starts(
        slots_for(split, q, half))


def test_whole_day_ranges_meeting_at_midnight_stay_apart():
    # every day 00:00-24:00: each day is its own range (a join reaches one date back at
    # most, and only from a range that does not start at midnight itself)
    s = sched("UTC", "00:00-24:00")
    q = query(utc(2026, 6, 1, 22), utc(2026, 6, 2, 2))
    assert starts(slots_for(s, q, appt(90, interval=60))) == [
        "2026-06-01T22:00:00+00:00", "2026-06-02T00:00:00+00:00", "2026-06-02T01:00:00+00:00"]


def test_whole_day_range():
    s = StaffSchedule("UTC", weekly={0: ["00:00-00:00"]})
    q = query(utc(2026, 6, 1), utc(2026, 6, 3))
    assert len(slots_for(s, q, appt(60)).slots) == 24


# --------------------------------------------------------------------------- several staff


def test_several_staff_in_different_zones_sorted_by_start_then_id():
    paris = sched("Europe/Paris", "09:00-11:00")
    ny = sched("America/New_York", "03:00-04:00")  # 09:00-10:00 Paris
    staff = [
        StaffCalendar("zoe", paris),
        StaffCalendar("bob", ny),
        StaffCalendar("amy", paris, [BusyInterval(utc(2026, 6, 1, 7), utc(2026, 6, 1, 8))]),
    ]
    result = compute_availability(query(utc(2026, 6, 1), utc(2026, 6, 2)), appt(), staff)
    assert [(s.start.isoformat(), s.staff_id) for s in result.slots] == [
        ("2026-06-01T07:00:00+00:00", "bob"),
        ("2026-06-01T07:00:00+00:00", "zoe"),
        ("2026-06-01T08:00:00+00:00", "amy"),
        ("2026-06-01T08:00:00+00:00", "zoe"),
    ]
    assert [s.start.isoformat() for s in result.for_staff("amy")] == ["2026-06-01T08:00:00+00:00"]
    assert set(result.by_staff()) == {"amy", "bob", "zoe"}
    again = compute_availability(query(utc(2026, 6, 1), utc(2026, 6, 2)), appt(), staff[::-1])
    assert again == result


def test_output_is_rendered_in_the_caller_zone():
    s = sched("Europe/Paris", "09:00-10:00")
    result = slots_for(s, query(utc(2026, 6, 1), utc(2026, 6, 2), tz="Asia/Kolkata"), appt())
    assert spans(result) == ["2026-06-01T12:30:00+05:30/2026-06-01T13:30:00+05:30"]
    assert result.to_dict() == {
        "slots": [
            {
                "start": "2026-06-01T12:30:00+05:30",
                "end": "2026-06-01T13:30:00+05:30",
                "staff_id": "s1",
            }
        ],
        "unavailable": [],
    }


# --------------------------------------------------------------------------- round robin


def _team():
    s = sched("UTC", "09:00-12:00")
    own = BusyKind.OWN
    return [
        StaffCalendar("carol", s, [BusyInterval(utc(2026, 5, 20, 9), utc(2026, 5, 20, 10), own)]),
        StaffCalendar("alice", s, [BusyInterval(utc(2026, 5, 25, 9), utc(2026, 5, 25, 10), own)]),
        StaffCalendar(
            "bob",
            s,
            [
                BusyInterval(utc(2026, 5, 21, 9), utc(2026, 5, 21, 10), own),
                BusyInterval(utc(2026, 6, 1, 10), utc(2026, 6, 1, 11), own),
            ],
        ),
        StaffCalendar("dave", s, [BusyInterval(utc(2026, 6, 1, 9), utc(2026, 6, 1, 12))]),
    ]


def test_any_staff_round_robin_fewest_bookings_then_least_recent_then_id():
    result = compute_any_staff_availability(
        query(utc(2026, 6, 1), utc(2026, 6, 2)), appt(), _team()
    )
    # dave: 0 own bookings but busy all day; carol and alice: 1 booking each,
    # carol's is older; bob: 2 bookings.
    assert [(s.start.isoformat(), s.staff_id, s.alternatives) for s in result.slots] == [
        ("2026-06-01T09:00:00+00:00", "carol", ("alice", "bob")),
        ("2026-06-01T10:00:00+00:00", "carol", ("alice",)),
        ("2026-06-01T11:00:00+00:00", "carol", ("alice", "bob")),
    ]


def test_any_staff_with_explicit_fairness_stats():
    stats = {
        "alice": FairnessStats(3, utc(2026, 5, 1)),
        "bob": FairnessStats(3, None),  # never booked in the period beats an old booking
        "carol": FairnessStats(5, utc(2026, 1, 1)),
    }
    result = compute_any_staff_availability(
        query(utc(2026, 6, 1), utc(2026, 6, 2)), appt(), _team(), fairness=stats
    )
    assert [(s.staff_id, s.alternatives) for s in result.slots] == [
        ("bob", ("alice", "carol")),  # dave (absent: 0 bookings) is busy all day
        ("alice", ("carol",)),
        ("bob", ("alice", "carol")),
    ]


def test_any_staff_ties_broken_by_id_and_unknown_excluded():
    s = sched("UTC", "09:00-10:00")
    staff = [
        StaffCalendar("b", s),
        StaffCalendar("a", s),
        StaffCalendar.unknown("0-broken", s, "Google 401: token revoked"),
    ]
    result = compute_any_staff_availability(query(utc(2026, 6, 1), utc(2026, 6, 2)), appt(), staff)
    assert [(s.staff_id, s.alternatives) for s in result.slots] == [("a", ("b",))]
    assert [u.to_dict() for u in result.unavailable] == [
        {"staff_id": "0-broken", "code": "calendar_unknown", "reason": "Google 401: token revoked"}
    ]


# --- unknown state, validation


def test_unknown_calendar_yields_no_slots_and_a_reason():
    s = sched("UTC", "09:00-12:00")
    staff = [
        StaffCalendar("ok", s),
        StaffCalendar("ko", s, unknown_reason="Microsoft Graph 503 after retries"),
    ]
    result = compute_availability(query(utc(2026, 6, 1), utc(2026, 6, 2)), appt(), staff)
    assert {sl.staff_id for sl in result.slots} == {"ok"}
    assert [(u.staff_id, u.code, u.reason) for u in result.unavailable] == [
        ("ko", "calendar_unknown", "Microsoft Graph 503 after retries")
    ]
    check = check_slot(utc(2026, 6, 1, 9), appt(), staff[1], now=LONG_AGO)
    assert (check.available, check.code) == (False, "calendar_unknown")


@pytest.mark.parametrize("arg", ["start", "end", "now"])
def test_naive_query_datetimes_rejected_naming_the_argument(arg):
    kwargs = {"start": utc(2026, 6, 1), "end": utc(2026, 6, 2), "now": utc(2026, 5, 1)}
    kwargs[arg] = kwargs[arg].replace(tzinfo=None)
    with pytest.raises(ValueError, match=rf"\b{arg}\b.*naive"):
        AvailabilityQuery(**kwargs)


def test_other_naive_datetimes_rejected():
    with pytest.raises(ValueError, match="BusyInterval.start"):
        BusyInterval(datetime(2026, 6, 1, 9), utc(2026, 6, 1, 10))
    with pytest.raises(ValueError, match="BusyInterval.end"):
        BusyInterval(utc(2026, 6, 1, 9), datetime(2026, 6, 1, 10))
    s = StaffCalendar("s", sched("UTC", "09:00-10:00"))
    with pytest.raises(ValueError, match="start"):
        check_slot(datetime(2026, 6, 1, 9), appt(), s, now=LONG_AGO)
    with pytest.raises(ValueError, match="now"):
        check_slot(utc(2026, 6, 1, 9), appt(), s, now=datetime(2026, 6, 1))
    with pytest.raises(ValueError, match="last_booking"):
        FairnessStats(1, datetime(2026, 6, 1))


def test_input_validation():
    with pytest.raises(ValueError, match="Mars/Olympus"):
        StaffSchedule("Mars/Olympus")
    with pytest.raises(ValueError, match="timezone"):
        query(utc(2026, 6, 1), utc(2026, 6, 2), tz="Nowhere/Else")
    with pytest.raises(ValueError, match="country"):
        HolidayRules("XX")
    with pytest.raises(ValueError, match="duration"):
        AppointmentType(duration=timedelta(0))
    with pytest.raises(ValueError, match="buffer_before"):
        appt(buffer_before=-5)
    with pytest.raises(ValueError, match="align"):
        appt(align="grid")
    with pytest.raises(ValueError, match="before start"):
        query(utc(2026, 6, 2), utc(2026, 6, 1))
    with pytest.raises(ValueError, match="before start"):
        BusyInterval(utc(2026, 6, 2), utc(2026, 6, 1))
    with pytest.raises(ValueError, match="weekday"):
        StaffSchedule("UTC", weekly={"someday": ["09:00-10:00"]})
    with pytest.raises(ValueError, match="time range"):
        TimeRange.parse("9h-10h")
    with pytest.raises(ValueError, match="wall-clock"):
        TimeRange(time(9, tzinfo=UTC), time(10))
    s = sched("UTC", "09:00-10:00")
    with pytest.raises(ValueError, match="duplicate"):
        compute_availability(
            query(utc(2026, 6, 1), utc(2026, 6, 2)), appt(), [StaffCalendar("a", s)] * 2
        )


def test_time_range_parsing():
    assert TimeRange.parse("22:00-06:00").crosses_midnight
    assert TimeRange.parse("18:00-24:00") == TimeRange(time(18), time(0))
    assert not TimeRange.parse("09:00–12:30").crosses_midnight
    assert str(TimeRange.parse("9:05-10:00")) == "09:05-10:00"


# --------------------------------------------------------------------------- booking re-check


def test_check_slot_agrees_with_listing_and_explains():
    s = sched("Europe/Paris", "09:00-12:00", holidays=HolidayRules("FR"))
    busy = [
        BusyInterval(local(PARIS, 2026, 6, 1, 10), local(PARIS, 2026, 6, 1, 11)),
        BusyInterval(local(PARIS, 2026, 6, 2, 9), local(PARIS, 2026, 6, 2, 10), BusyKind.OWN),
    ]
    member = StaffCalendar("s1", s, busy)
    a = appt(30, buffer_after=10, minimum_notice=60, booking_horizon_days=3, daily_limit=1)
    now = local(PARIS, 2026, 6, 1, 8, 30)
    listed = compute_availability(query(utc(2026, 6, 1), utc(2026, 6, 8), now=now), a, [member])
    for slot in listed.slots:
        assert check_slot(slot.start, a, member, now).available

    def code(h, mi=0, day=1, **kw):
        return check_slot(local(PARIS, 2026, 6, day, h, mi), a, member, now, **kw).code

    assert code(9) == "minimum_notice"
    assert code(10) == "busy"
    assert code(9, 30) == "busy"  # 10 min after-buffer reaches 10:00
    assert code(11, 45) == "outside_working_hours"
    assert code(11, 10) == "not_aligned"
    assert code(11, 10, require_alignment=False) is None
    assert code(11) is None
    assert code(10, day=2) == "daily_limit"
    assert code(9, day=5) == "booking_horizon"


def test_busy_window_covers_buffers_and_whole_local_days():
    q = query(local(PARIS, 2026, 6, 1, 9), local(PARIS, 2026, 6, 1, 18))
    a = appt(60, buffer_before=15, buffer_after=30)
    lo, hi = busy_window(q, a, [sched("Europe/Paris", "09:00-10:00")])
    assert (lo.isoformat(), hi.isoformat()) == (
        "2026-05-31T22:00:00+00:00",
        "2026-06-01T22:00:00+00:00",
    )
    lo, hi = busy_window(q, appt(60 * 20, buffer_before=15), [sched("UTC", "09:00-10:00")])
    assert (lo.isoformat(), hi.isoformat()) == (
        "2026-06-01T00:00:00+00:00",
        "2026-06-02T12:00:00+00:00",
    )


def test_benchmark_function_runs():
    result = run_benchmark(staff=2, days=2, busy_per_staff=20, repeat=1)
    assert result.slots > 0 and result.per_staff_ms > 0


def test_instants_in_one_zone_are_compared_as_instants_not_wall_times():
    # 02:01 CEST precedes 02:00 CET (same tzinfo, plain `<` would say otherwise)
    start = local(PARIS, 2026, 10, 25, 2, 1)
    end = local(PARIS, 2026, 10, 25, 2, 0, fold=1)
    assert BusyInterval(start, end).end == end
    q = AvailabilityQuery(start, end, now=start, timezone="Europe/Paris")
    lo, hi = busy_window(q, appt(30, buffer_before=10), [sched("UTC", "09:00-10:00")])
    assert (lo.isoformat(), hi.isoformat()) == (
        "2026-10-24T23:51:00+00:00",  # 02:01 CEST = 00:01Z, minus the 10-minute buffer
        "2026-10-26T00:00:00+00:00",
    )
    s = sched("Europe/Paris", "00:00-06:00")
    result = slots_for(s, q, appt(15, interval=15))
    assert spans(result) == [
        "2026-10-25T02:15:00+02:00/2026-10-25T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00/2026-10-25T02:45:00+02:00",
        "2026-10-25T02:45:00+02:00/2026-10-25T02:00:00+01:00",
    ]


def test_busy_end_in_the_repeated_hour_uses_its_fold():
    s = sched("America/New_York", "00:00-00:00")
    busy = [BusyInterval(local(NY, 2026, 10, 31, 22), local(NY, 2026, 11, 1, 1, fold=1))]
    q = query(local(NY, 2026, 11, 1, 0), local(NY, 2026, 11, 1, 3), tz="America/New_York")
    assert starts(slots_for(s, q, appt(60), busy)) == [
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]


def test_horizon_is_calendar_days_not_24_hour_blocks_across_dst():
    # Cal.com #12019: "add 1 day" as 24 h lost the last date on a DST change.
    s = sched("America/New_York", "22:00-23:00")
    now = local(NY, 2026, 3, 7, 23, 30)
    q = query(utc(2026, 3, 7), utc(2026, 3, 12), now=now, tz="America/New_York")
    assert starts(slots_for(s, q, appt(booking_horizon_days=1))) == ["2026-03-08T22:00:00-04:00"]
    assert len(slots_for(s, q, appt(booking_horizon_days=2)).slots) == 2


def test_slot_utc_accessors_tell_repeated_wall_times_apart():
    s = sched("America/New_York", "01:00-02:00")
    q = query(utc(2026, 11, 1), utc(2026, 11, 2), tz="America/New_York")
    a, b = slots_for(s, q, appt(60)).slots
    assert a.start == b.start  # Python: same tzinfo compares wall times, fold ignored
    assert b.start_utc - a.start_utc == H
    assert (a.end_utc.isoformat(), b.end_utc.isoformat()) == (
        "2026-11-01T06:00:00+00:00",
        "2026-11-01T07:00:00+00:00",
    )
