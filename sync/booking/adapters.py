"""The tenant's YAML turned into the pure engine's terms (:mod:`sync.availability`).

No I/O: every function reads a parsed :class:`~mappings.schema.TenantConfig`
(and, for :func:`staff_calendar`, busy times already fetched) and either
returns engine values or raises :class:`~sync.booking.errors.InvalidRequest`
naming the field and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from connectors.calendar import CalendarBusy
from mappings.schema import AppointmentTypeSpec, StaffMember, TenantConfig
from sync import busy as busy_mod
from sync.availability import (
    AppointmentType,
    BusyInterval,
    HolidayRules,
    StaffCalendar,
    StaffSchedule,
    TimeRange,
)
from sync.booking.errors import InvalidRequest

MAX_WINDOW_DAYS = 62
"""Longest availability window one query may ask for (getSchedule's limit)."""
ANY = "any"


def staff_schedule(config: TenantConfig, member: StaffMember) -> StaffSchedule:
    """The engine's schedule of one staff member from the tenant's YAML.

    Weekly hours: the member's ``working_hours``, else the tenant's
    ``business_hours``. Overrides: the member's own closures (closed) and
    ``overrides``. Tenant-wide: ``business_hours.closures`` and ``holidays``.
    """
    hours = config.working_hours(member)
    weekly: dict[int, list[TimeRange]] = {}
    if hours is not None:
        for day in range(7):
            weekly[day] = [TimeRange(r.start, r.end) for r in hours.day(day)]
    overrides: dict[Any, list[TimeRange]] = {}
    if member.working_hours is not None:
        overrides.update({day: [] for day in member.working_hours.closures})
    for day, ranges in member.overrides.items():
        overrides[day] = [TimeRange(r.start, r.end) for r in ranges]
    closures = frozenset(config.business_hours.closures) if config.business_hours else frozenset()
    holidays = config.holidays
    rules = HolidayRules(
        holidays.country if holidays else None,
        holidays.subdivision if holidays else None,
        closures,
    )
    return StaffSchedule(member.timezone or config.timezone, weekly, overrides, rules)


def engine_type(spec: AppointmentTypeSpec) -> AppointmentType:
    return AppointmentType(
        duration=timedelta(minutes=spec.duration_minutes),
        buffer_before=timedelta(minutes=spec.buffer_before_minutes),
        buffer_after=timedelta(minutes=spec.buffer_after_minutes),
        minimum_notice=timedelta(minutes=spec.minimum_notice_minutes),
        booking_horizon_days=spec.booking_horizon_days,
        interval=timedelta(minutes=spec.interval_minutes) if spec.interval_minutes else None,
        align=spec.align,
        daily_limit=spec.daily_limit,
    )


def check_zone(name: str, field_name: str) -> ZoneInfo:
    """``name`` as a zone, or :class:`InvalidRequest` on ``field_name``."""
    try:
        return ZoneInfo(name)
    except Exception:  # noqa: BLE001 - every failure means "not a zone"
        raise InvalidRequest(
            f"{name!r} is not an IANA time zone",
            [{"field": field_name, "problem": f"unknown time zone {name!r}",
              "hint": "use an IANA zone such as Europe/Paris"}],
        ) from None  # fmt: skip


def appointment_type(
    config: TenantConfig, type_id: str, field_name: str = "type"
) -> AppointmentTypeSpec:
    """The configured type ``type_id``, or :class:`InvalidRequest` listing the known ones."""
    spec = config.appointment_type(type_id)
    if spec is None:
        known = ", ".join(t.id for t in config.appointment_types) or "none configured"
        raise InvalidRequest(
            f"unknown appointment type {type_id!r}",
            [{"field": field_name, "problem": f"unknown appointment type {type_id!r}",
              "hint": f"use one of: {known}"}],
        )  # fmt: skip
    return spec


def bookable_members(
    config: TenantConfig, spec: AppointmentTypeSpec, wanted: str, field_name: str
) -> tuple[list[StaffMember], bool]:
    """The staff asked for (comma-separated ids, or ``any``) and whether it is any-staff."""
    able = config.bookable_staff(spec)
    if wanted.strip().lower() == ANY:
        if not able:
            raise InvalidRequest(
                f"nobody can take appointments of type {spec.id!r}",
                [{"field": field_name, "problem": "no staff member with a calendar takes "
                  f"{spec.id!r}", "hint": "ask the tenant admin to connect a calendar"}],
            )  # fmt: skip
        return able, True
    ids = list(dict.fromkeys(s.strip() for s in wanted.split(",") if s.strip()))
    if not ids:
        raise InvalidRequest("no staff given", field=field_name)
    members = []
    able_ids = {m.id for m in able}
    for staff_id in ids:
        member = config.staff_member(staff_id)
        if member is None:
            known = ", ".join(s.id for s in config.staff)
            raise InvalidRequest(
                f"unknown staff member {staff_id!r}",
                [{"field": field_name, "problem": f"unknown staff member {staff_id!r}",
                  "hint": f"use one of: {known}, or {ANY}"}],
            )  # fmt: skip
        if member.id not in able_ids:
            who = ", ".join(sorted(able_ids)) or "nobody"
            raise InvalidRequest(
                f"{staff_id} does not take appointments of type {spec.id!r}",
                [{"field": field_name, "problem": f"{staff_id} does not take {spec.id!r}",
                  "hint": f"staff who do: {who}"}],
            )  # fmt: skip
        members.append(member)
    return members, False


def staff_calendar(
    member: StaffMember,
    schedule: StaffSchedule,
    external: CalendarBusy,
    own: Sequence[BusyInterval],
    minus: tuple[datetime, datetime] | None = None,
) -> StaffCalendar:
    """One member's calendar for the engine: unknown when the provider could not be read
    (never free), else the provider's busy times (less ``minus``) plus our own."""
    if external.error is not None:
        return StaffCalendar.unknown(member.id, schedule, external.error)
    return StaffCalendar(
        member.id, schedule, [*busy_mod.external_intervals(external, minus=minus), *own]
    )


def check_window(spec: AppointmentTypeSpec, start: datetime, end: datetime, now: datetime) -> None:
    """A query window of at most ``MAX_WINDOW_DAYS`` (or the horizon) within the horizon."""
    if end <= start:
        raise InvalidRequest("end must be after start", field="end")
    longest = min(spec.booking_horizon_days + 1, MAX_WINDOW_DAYS)
    if end - start > timedelta(days=longest):
        raise InvalidRequest(
            f"the window is longer than {longest} days",
            [{"field": "end", "problem": f"the window is {(end - start).days} days or more; "
              f"at most {longest} days", "hint": f"appointment type {spec.id!r} is bookable "
              f"{spec.booking_horizon_days} days ahead; ask a shorter window"}],
        )  # fmt: skip
    if start > now + timedelta(days=spec.booking_horizon_days + 1):
        raise InvalidRequest(
            f"start is after the booking horizon of {spec.booking_horizon_days} days",
            [{"field": "start", "problem": "after the booking horizon",
              "hint": f"{spec.id!r} is bookable up to {spec.booking_horizon_days} days ahead"}],
        )  # fmt: skip
