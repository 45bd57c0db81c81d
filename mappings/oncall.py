"""Who is on call at a given instant: the tenant's ``on_call`` rotation and overrides.

Two shapes of ``rotation`` (see :class:`mappings.schema.OnCall`), both on the
tenant's wall clock::

    on_call:                               # a weekly timetable
      rotation:
        - {staff: jean-martin, from: "mon 08:00"}   # Jean from Monday 08:00…
        - {staff: lucas-martin, from: "fri 18:00"}  # …Lucas from Friday 18:00 to Monday 08:00

    on_call:                               # turns of a week each
      rotation: [jean-martin, lucas-martin]
      handover: "mon 08:00"                # when the week changes hands
      start: 2026-01-05                    # Jean's first week starts this handover
      overrides:                           # replace the rotation for a while
        - {staff: sophie-bernard, from: 2026-12-24T18:00, to: 2026-12-26T08:00}

A handover happens at the first instant the wall clock shows its time (see
:mod:`mappings.wallclock`): exact at the handover instant (the new person from
that instant included), and on DST nights too. Override times without an
offset are read on the tenant's wall clock the same way; an override covers
``[from, to)``.

Pure: every function takes the instant; none reads the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from mappings.schema import OnCall, StaffMember, TenantConfig, WeekTime
from mappings.wallclock import describe, require_aware, wall_instant

_MONDAY = date(2001, 1, 1)  # any Monday: the anchor of a one-person rotation
_LOOK = timedelta(days=8)  # a rotation changes hands at least once a week


class NoOnCallSchedule(LookupError):
    """The tenant has no ``on_call`` schedule."""


@dataclass(frozen=True)
class OnCallShift:
    """``staff`` is on call from ``start`` (included) to ``end`` (excluded)."""

    staff: StaffMember
    start: datetime  # aware, UTC (subtracting two instants of one ZoneInfo is wall-clock
    end: datetime  # arithmetic in Python: UTC keeps durations exact)
    source: Literal["rotation", "override"]

    def describe(self, config: TenantConfig) -> str:
        """``jean-martin (rotation, mon 2026-03-23 08:00 (CET) → fri 2026-03-27 18:00 (CET))``."""
        zone = config.zone
        return (
            f"{self.staff.id} ({self.source}, {describe(self.start, zone)} → "
            f"{describe(self.end, zone)})"
        )


def instant(config: TenantConfig, moment: datetime) -> datetime:
    """An override time as an instant: naive ones are read on the tenant's wall clock."""
    if moment.tzinfo is None:
        return wall_instant(moment.date(), moment.time(), config.zone)
    return moment.astimezone(UTC)


def _schedule(config: TenantConfig) -> OnCall:
    if config.on_call is None:
        raise NoOnCallSchedule(f"tenant {config.id} has no on_call schedule")
    return config.on_call


def handovers(config: TenantConfig, start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """Every rotation handover (UTC instant, staff id) whose local date is within
    ``[start - 8 days, end + 8 days]``, in time order (overrides not applied)."""
    on_call = _schedule(config)
    zone = config.zone
    first = (start.astimezone(zone) - _LOOK).date()
    last = (end.astimezone(zone) + _LOOK).date()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    out: list[tuple[datetime, str]] = []
    if on_call.timetable:
        for day in days:
            for entry in on_call.rotation:
                assert entry.from_ is not None
                if entry.from_.day == day.weekday():
                    out.append((wall_instant(day, entry.from_.clock, zone), entry.staff))
    else:
        handover = on_call.handover or WeekTime(day=0, clock=time(0))
        anchor = on_call.start or _MONDAY
        turns = len(on_call.rotation)
        for day in days:
            if day.weekday() == handover.day:
                turn = ((day - anchor).days // 7) % turns
                out.append((wall_instant(day, handover.clock, zone), on_call.rotation[turn].staff))
    out.sort(key=lambda pair: pair[0])
    return out


def on_call_at(config: TenantConfig, at: datetime) -> OnCallShift:
    """The shift covering ``at`` (aware): an override if one covers it, else the rotation
    turn, cut short by the overrides around it. Raises :class:`NoOnCallSchedule`."""
    require_aware(at)
    on_call = _schedule(config)
    moment = at.astimezone(UTC)
    overrides = [
        (instant(config, o.from_), instant(config, o.to), o.staff) for o in on_call.overrides
    ]
    for begin, finish, staff_id in overrides:
        if begin <= moment < finish:
            return OnCallShift(_member(config, staff_id), begin, finish, "override")
    turns = handovers(config, moment, moment)
    before = [pair for pair in turns if pair[0] <= moment]
    after = [pair for pair in turns if pair[0] > moment]
    begin, staff_id = before[-1]
    finish = after[0][0]
    for o_begin, o_finish, _ in overrides:
        if begin < o_finish <= moment:
            begin = o_finish
        if moment < o_begin < finish:
            finish = o_begin
    return OnCallShift(_member(config, staff_id), begin, finish, "rotation")


def who_is_on_call(config: TenantConfig, at: datetime) -> StaffMember:
    """The staff member on call at ``at`` (aware). Raises :class:`NoOnCallSchedule`."""
    return on_call_at(config, at).staff


def on_call_shifts(config: TenantConfig, start: datetime, end: datetime) -> list[OnCallShift]:
    """The shifts covering ``[start, end)``, in order (the first may begin before ``start``)."""
    require_aware(start)
    require_aware(end)
    out: list[OnCallShift] = []
    moment = start
    while moment < end:
        shift = on_call_at(config, moment)
        out.append(shift)
        moment = shift.end
    return out


def _member(config: TenantConfig, staff_id: str) -> StaffMember:
    member = config.staff_member(staff_id)
    if member is None:  # checked at load (mappings.rulecheck)
        raise NoOnCallSchedule(f"on-call staff member {staff_id!r} is not in the staff list")
    return member
