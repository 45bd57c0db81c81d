"""Public entry points: list slots, any-staff round robin, re-check one slot.

Pure functions: no I/O, no clock (``now`` is always injected), deterministic
output for equal input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from .date_ranges import from_us, local_date, local_midnight, td_us, to_us
from .models import (
    AppointmentType,
    AvailabilityQuery,
    AvailabilityResult,
    BusyKind,
    FairnessStats,
    Slot,
    SlotCheck,
    StaffCalendar,
    StaffSchedule,
    StaffUnavailable,
    require_aware,
)
from .slots import build_plan, horizon_end, slot_starts

CALENDAR_UNKNOWN = "calendar_unknown"


def _check_staff(staff: Sequence[StaffCalendar]) -> None:
    seen: set[str] = set()
    for member in staff:
        if not isinstance(member, StaffCalendar):
            raise TypeError(f"staff must contain StaffCalendar values, got {member!r}")
        if member.staff_id in seen:
            raise ValueError(f"duplicate staff_id {member.staff_id!r}")
        seen.add(member.staff_id)


def _bounds(query: AvailabilityQuery, appointment_type: AppointmentType) -> tuple[int, int, int]:
    now = to_us(query.now)
    lo = max(to_us(query.start), now + td_us(appointment_type.minimum_notice))
    return lo, to_us(query.end), now


def _starts_by_staff(
    query: AvailabilityQuery,
    appointment_type: AppointmentType,
    staff: Sequence[StaffCalendar],
) -> tuple[dict[str, list[int]], tuple[StaffUnavailable, ...]]:
    if not isinstance(query, AvailabilityQuery):
        raise TypeError("query must be an AvailabilityQuery")
    if not isinstance(appointment_type, AppointmentType):
        raise TypeError("appointment_type must be an AppointmentType")
    staff = list(staff)
    _check_staff(staff)
    lo, hi, now = _bounds(query, appointment_type)
    starts: dict[str, list[int]] = {}
    unavailable: list[StaffUnavailable] = []
    for member in staff:
        if not member.busy_known:
            unavailable.append(
                StaffUnavailable(member.staff_id, CALENDAR_UNKNOWN, str(member.unknown_reason))
            )
            continue
        starts[member.staff_id] = slot_starts(build_plan(member, appointment_type, lo, hi, now))
    unavailable.sort(key=lambda u: u.staff_id)
    return starts, tuple(unavailable)


class _Renderer:
    """µs → aware datetime in the caller's zone, memoised (staff share slot times)."""

    def __init__(self, query: AvailabilityQuery, duration: int) -> None:
        self.zone = query.zone
        self.duration = duration
        self.cache: dict[int, datetime] = {}

    def __call__(self, us: int) -> datetime:
        value = self.cache.get(us)
        if value is None:
            value = self.cache[us] = from_us(us, self.zone)
        return value

    def slot(self, us: int, staff_id: str, alternatives: tuple[str, ...] = ()) -> Slot:
        return Slot(self(us), self(us + self.duration), staff_id, alternatives)


def compute_availability(
    query: AvailabilityQuery,
    appointment_type: AppointmentType,
    staff: Iterable[StaffCalendar],
) -> AvailabilityResult:
    """Slots of every staff member whose busy state is known.

    Result slots are sorted by ``(start, staff_id)``; staff with an unknown
    busy state get no slot and are listed in ``unavailable`` (code
    ``calendar_unknown``).
    """
    staff = list(staff)
    starts, unavailable = _starts_by_staff(query, appointment_type, staff)
    render = _Renderer(query, td_us(appointment_type.duration))
    pairs = sorted((us, staff_id) for staff_id, values in starts.items() for us in values)
    return AvailabilityResult(tuple(render.slot(us, sid) for us, sid in pairs), unavailable)


def fairness_from_busy(staff: Iterable[StaffCalendar]) -> dict[str, FairnessStats]:
    """Default round-robin stats: own bookings among the busy intervals supplied."""
    out: dict[str, FairnessStats] = {}
    for member in staff:
        own = [b.start for b in member.busy if b.kind is BusyKind.OWN]
        out[member.staff_id] = FairnessStats(len(own), max(own, key=to_us) if own else None)
    return out


def _fairness_key(staff_id: str, stats: FairnessStats | None) -> tuple[int, int, int, str]:
    if stats is None:
        return (0, 0, 0, staff_id)
    if stats.last_booking is None:
        return (stats.bookings, 0, 0, staff_id)
    return (stats.bookings, 1, to_us(stats.last_booking), staff_id)


def compute_any_staff_availability(
    query: AvailabilityQuery,
    appointment_type: AppointmentType,
    staff: Iterable[StaffCalendar],
    fairness: Mapping[str, FairnessStats] | None = None,
) -> AvailabilityResult:
    """One slot per distinct start time, assigned to the fairest available staff member.

    Fairest = fewest bookings over the caller's lookback period, then least
    recent booking (never booked first), then ``staff_id``.  ``fairness``
    defaults to :func:`fairness_from_busy` (own bookings supplied as busy
    time); staff missing from an explicit mapping count as zero bookings,
    never booked.  ``Slot.alternatives`` lists the other available staff,
    fairest first.
    """
    staff = list(staff)
    starts, unavailable = _starts_by_staff(query, appointment_type, staff)
    stats = fairness_from_busy(staff) if fairness is None else dict(fairness)
    order = sorted(starts, key=lambda sid: _fairness_key(sid, stats.get(sid)))
    by_time: dict[int, list[str]] = {}
    for staff_id in order:
        for us in starts[staff_id]:
            by_time.setdefault(us, []).append(staff_id)
    render = _Renderer(query, td_us(appointment_type.duration))
    slots = tuple(render.slot(us, by_time[us][0], tuple(by_time[us][1:])) for us in sorted(by_time))
    return AvailabilityResult(slots, unavailable)


def check_slot(
    start: datetime,
    appointment_type: AppointmentType,
    staff: StaffCalendar,
    now: datetime,
    *,
    require_alignment: bool = True,
) -> SlotCheck:
    """Re-check one slot for the booking module, with the listing's exact rules.

    ``start`` is available iff :func:`compute_availability` would list it for
    this staff member (with ``require_alignment=False`` the grid is not
    enforced, for a time typed by hand).  The first failing rule is reported.
    """
    require_aware(start, "start")
    require_aware(now, "now")
    if not staff.busy_known:
        return SlotCheck(False, CALENDAR_UNKNOWN, str(staff.unknown_reason))
    s = to_us(start)
    now_us = to_us(now)
    if s < now_us + td_us(appointment_type.minimum_notice):
        return SlotCheck(False, "minimum_notice", "starts before now + minimum notice")
    plan = build_plan(staff, appointment_type, s, s + 1, now_us)
    if plan.hi <= s:
        return SlotCheck(False, "booking_horizon", "starts after the booking horizon")
    if not plan.in_working_hours(s):
        return SlotCheck(False, "outside_working_hours", "not within working hours")
    if require_alignment and not plan.on_grid(s):
        return SlotCheck(False, "not_aligned", "not on the slot grid of this appointment type")
    if not plan.clear_of_busy(s):
        return SlotCheck(False, "busy", "overlaps busy time (buffers included)")
    if plan.limit_reached(s):
        return SlotCheck(False, "daily_limit", "daily booking limit reached")
    return SlotCheck(True)


def busy_window(
    query: AvailabilityQuery,
    appointment_type: AppointmentType,
    schedules: Iterable[StaffSchedule],
) -> tuple[datetime, datetime]:
    """The UTC range of busy time to fetch from calendars for ``query``.

    Covers the candidates' buffers (so an event just outside the window whose
    buffer reaches into it is seen) and the whole local dates of the window
    in every staff zone (so the daily limit counts every own booking of the
    day).  Widen further by the largest buffer of existing own bookings if
    they carry buffers.
    """
    start, end = to_us(query.start), to_us(query.end)
    lo_us = start - td_us(appointment_type.buffer_before)
    hi_us = end + td_us(appointment_type.duration + appointment_type.buffer_after)
    last = max(start, end - 1)
    for schedule in schedules:
        zone = schedule.zone
        lo_us = min(lo_us, local_midnight(zone, local_date(start, zone)))
        hi_us = max(hi_us, local_midnight(zone, local_date(last, zone) + timedelta(days=1)))
    return from_us(lo_us), from_us(hi_us)


__all__ = [
    "busy_window",
    "check_slot",
    "compute_any_staff_availability",
    "compute_availability",
    "fairness_from_busy",
    "horizon_end",
]
