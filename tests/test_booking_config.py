"""Tenant YAML for availability: holidays, staff working hours and overrides,
appointment types; errors at file:line with a hint; conversion to the engine."""

from __future__ import annotations

from datetime import date, time, timedelta

import pytest

from mappings import ConfigError, ConfigIssue, TenantConfig, load_tenant_config
from sync.booking import engine_type, staff_schedule

BASE = """\
id: cabinet
name: Cabinet
timezone: Europe/Paris
phone_region: FR
business_hours:
  mon: [09:00-12:00, 14:00-18:00]
  tue: [09:00-12:00, 14:00-18:00]
  closures: [2026-12-28]
holidays:
  country: FR
  subdivision: "57"
staff:
  - id: claire
    name: Claire
    calendar: {connection: agenda, id: claire@x.fr}
    overrides:
      2026-12-24: 09:00-12:00
      2026-12-31: closed
      2027-01-02: [08:00-10:00, 10:30-11:00]
  - id: paul
    name: Paul
    timezone: America/Montreal
    calendar: {connection: agenda, id: paul@x.fr}
    working_hours:
      wed: 10:00-16:00
      closures: [2027-01-06]
  - id: lea
    name: Léa
call_types:
  - id: message
    label: Message
appointment_types:
  - id: consultation
    label: Consultation
    duration_minutes: 45
    buffer_before_minutes: 5
    buffer_after_minutes: 10
    minimum_notice_minutes: 120
    booking_horizon_days: 30
    interval_minutes: 15
    align: clock
    daily_limit: 4
    staff: [claire]
  - id: rappel
    label: Rappel
    duration_minutes: 15
connections:
  agenda:
    provider: google_calendar
"""


def load(text: str) -> TenantConfig:
    return load_tenant_config(text, "t.yaml", env={})


def only_issue(text: str) -> ConfigIssue:
    with pytest.raises(ConfigError) as caught:
        load(text)
    assert len(caught.value.issues) == 1, str(caught.value)
    return caught.value.issues[0]


def line_of(text: str, needle: str) -> int:
    [line] = [i for i, row in enumerate(text.splitlines(), 1) if needle in row]
    return line


def replace(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def test_values_and_defaults() -> None:
    config = load(BASE)
    assert (config.holidays.country, config.holidays.subdivision) == ("FR", "57")
    claire, paul, lea = config.staff
    assert claire.working_hours is None and config.working_hours(claire) is config.business_hours
    assert [str(r) for r in claire.overrides[date(2027, 1, 2)]] == ["08:00-10:00", "10:30-11:00"]
    assert claire.overrides[date(2026, 12, 31)] == []
    assert [str(r) for r in config.working_hours(paul).wed] == ["10:00-16:00"]
    consultation, rappel = config.appointment_types
    assert consultation.step_minutes == 15 and rappel.step_minutes == 15
    assert (rappel.booking_horizon_days, rappel.align, rappel.daily_limit) == (60, "range", None)
    assert [m.id for m in config.bookable_staff(consultation)] == ["claire"]
    assert [m.id for m in config.bookable_staff(rappel)] == ["claire", "paul"]  # with a calendar
    assert config.appointment_type("rappel") is rappel and config.appointment_type("x") is None


def test_conversion_to_the_engine() -> None:
    config = load(BASE)
    claire, paul, _ = config.staff
    schedule = staff_schedule(config, claire)
    assert schedule.timezone == "Europe/Paris"
    closed, ranges = schedule.ranges_for(date(2026, 12, 21))  # a Monday
    assert not closed and [str(r) for r in ranges] == ["09:00-12:00", "14:00-18:00"]
    assert [str(r) for r in schedule.ranges_for(date(2026, 12, 24))[1]] == ["09:00-12:00"]
    assert schedule.ranges_for(date(2026, 12, 31)) == (True, ())  # override: closed
    assert schedule.ranges_for(date(2026, 12, 28)) == (True, ())  # the firm's closure
    assert schedule.ranges_for(date(2026, 12, 26)) == (True, ())  # St Stephen's Day in Moselle
    assert schedule.holidays.is_public_holiday(date(2026, 12, 25))
    other = staff_schedule(config, paul)
    assert other.timezone == "America/Montreal"
    assert [str(r) for r in other.ranges_for(date(2026, 12, 30))[1]] == ["10:00-16:00"]  # Wed
    assert other.ranges_for(date(2027, 1, 6)) == (True, ())  # his own closure
    assert other.ranges_for(date(2026, 12, 28))[1] == ()  # Monday: he does not work
    kind = engine_type(config.appointment_types[0])
    assert (kind.duration, kind.buffer_before, kind.buffer_after) == (
        timedelta(minutes=45), timedelta(minutes=5), timedelta(minutes=10))
    assert (kind.minimum_notice, kind.booking_horizon_days, kind.interval, kind.align,
            kind.daily_limit) == (timedelta(hours=2), 30, timedelta(minutes=15), "clock", 4)
    assert other.weekly[2][0].start == time(10)


@pytest.mark.parametrize(("old", "new", "needle", "path", "code", "hint"), [
    ("  country: FR\n", "  country: Gaule\n", "Gaule", "holidays.country", "invalid_country",
     "two-letter ISO"),
    ('  subdivision: "57"\n', "  subdivision: Zone Z\n", "Zone Z", "holidays.subdivision",
     "invalid_subdivision", "Zone A"),
    ("      2026-12-31: closed\n", "      2026-12-31: fermé le soir\n", "fermé le soir",
     "staff[0].overrides.2026-12-31", "invalid_time_range", "HH:MM-HH:MM"),
    ("      2027-01-02: [08:00-10:00, 10:30-11:00]\n",
     "      2027-01-02: [08:00-10:00, 09:30-11:00]\n", "09:30-11:00",
     "staff[0].overrides.2027-01-02", "overlapping_hours", "merge them"),
    ("      2026-12-24: 09:00-12:00\n", "      2026-13-24: 09:00-12:00\n", "2026-13-24",
     "staff[0].overrides.2026-13-24", "wrong_type", "YYYY-MM-DD"),
    ("      wed: 10:00-16:00\n", "      wen: 10:00-16:00\n", "wen:",
     "staff[1].working_hours.wen", "unknown_key", "did you mean 'wed'?"),
    ("    duration_minutes: 45\n", "    duration_minutes: 0\n", "duration_minutes: 0",
     "appointment_types[0].duration_minutes", "out_of_range", "at least 5"),
    ("    duration_minutes: 15\n", "", "  - id: rappel",
     "appointment_types[1].duration_minutes", "missing_key", "duration_minutes: 30"),
    ("    align: clock\n", "    align: clok\n", "clok", "appointment_types[0].align",
     "invalid_choice", "did you mean 'clock'?"),
    ("    daily_limit: 4\n", "    daily_limt: 4\n", "daily_limt",
     "appointment_types[0].daily_limt", "unknown_key", "did you mean 'daily_limit'?"),
    ("    staff: [claire]\n", "    staff: [claire, paull]\n", "staff: [claire, paull]",
     "appointment_types[0].staff[1]", "unknown_staff", "did you mean 'paul'?"),
    ("    staff: [claire]\n", "    staff: [lea]\n", "staff: [lea]",
     "appointment_types[0].staff[0]", "no_calendar", "give lea a `calendar:"),
    ("    staff: [claire]\n", "    staff: []\n", "staff: []", "appointment_types[0].staff",
     "empty_staff", "remove `staff`"),
    ("  - id: rappel\n", "  - id: consultation  # again\n", "# again",
     "appointment_types[1].id", "duplicate_id", "already uses it"),
])  # fmt: skip
def test_mistakes_point_at_their_line(old, new, needle, path, code, hint) -> None:
    text = replace(old, new)
    issue = only_issue(text)
    assert (issue.path, issue.code) == (path, code), str(issue)
    assert issue.line == line_of(text, needle), str(issue)
    assert hint in issue.hint, str(issue)


def test_staff_listed_twice() -> None:
    issue = only_issue(replace("    staff: [claire]\n", "    staff: [claire, claire]\n"))
    assert (issue.path, issue.code) == ("appointment_types[0].staff[1]", "duplicate_staff")


def test_sections_are_optional() -> None:
    text = BASE.split("holidays:")[0] + "staff:" + BASE.split("staff:", 1)[1]
    text = text.split("appointment_types:")[0] + "connections:" + text.split("connections:")[1]
    config = load(text.replace('  subdivision: "57"\n', ""))
    assert config.holidays is None and config.appointment_types == []
