"""Per-staff plan (working − busy) and slot generation.

Cost per staff member: O(B log B) for B busy intervals (one sort), O(D) wall
time conversions for D local dates (cached across staff of the same zone) and
O(S) for S emitted slots; candidates are never scanned against every busy
interval.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from .date_ranges import (
    Interval,
    clock_grid,
    continuous_ranges,
    covers,
    date_span,
    local_date,
    local_midnight,
    merge,
    overlaps,
    subtract,
    td_us,
    to_us,
    working_ranges,
)
from .models import AppointmentType, BusyKind, StaffCalendar

ONE_DAY = timedelta(days=1)


@dataclass(slots=True)
class StaffPlan:
    """Everything needed to list or check the slots of one staff member.

    Candidate slot starts ``c`` satisfy ``lo <= c < hi``.
    """

    zone: ZoneInfo
    duration: int
    step: int
    lo: int
    hi: int
    horizon_end: int | None
    working: list[Interval]  # continuous working ranges (disjoint, may touch)
    segments: list[tuple[int, int, int]]  # alignment grid: (start, end, anchor)
    busy: list[Interval]  # merged, widened by all buffers
    free: list[Interval]  # working − busy
    day_starts: list[int]  # local midnights of ``days`` plus the one after the last
    days: list[date]
    own_per_day: list[int]
    daily_limit: int | None

    def day_index(self, us: int) -> int:
        return bisect_right(self.day_starts, us) - 1

    def limit_reached(self, us: int) -> bool:
        if self.daily_limit is None:
            return False
        i = self.day_index(us)
        if 0 <= i < len(self.days):
            return self.own_per_day[i] >= self.daily_limit
        return False  # pragma: no cover - plans always cover their candidates' dates

    def on_grid(self, us: int) -> bool:
        return any(
            gs <= us < ge and (us - anchor) % self.step == 0 for gs, ge, anchor in self.segments
        )

    def in_working_hours(self, s: int) -> bool:
        return covers(self.working, [w[1] for w in self.working], s, s + self.duration)

    def clear_of_busy(self, s: int) -> bool:
        """``[s - buffer_before, s + duration + buffer_after)`` overlaps no busy time."""
        return not overlaps(self.busy, [b[1] for b in self.busy], s, s + self.duration)


def horizon_end(zone: ZoneInfo, appointment_type: AppointmentType, now_us: int) -> int | None:
    """First instant after the booking horizon: midnight ending ``today + N`` (staff zone)."""
    days = appointment_type.booking_horizon_days
    if days is None:
        return None
    today = local_date(now_us, zone)
    return local_midnight(zone, today + timedelta(days=days + 1))


def build_plan(
    staff: StaffCalendar,
    appointment_type: AppointmentType,
    lo: int,
    hi: int,
    now_us: int,
) -> StaffPlan:
    """Plan for slot starts in ``[lo, hi)`` (already clipped to window and notice)."""
    schedule = staff.schedule
    zone = schedule.zone
    duration = td_us(appointment_type.duration)
    step = td_us(appointment_type.step)
    h_end = horizon_end(zone, appointment_type, now_us)
    if h_end is not None:
        hi = min(hi, h_end)
    plan = StaffPlan(
        zone=zone, duration=duration, step=step, lo=lo, hi=hi, horizon_end=h_end,
        working=[], segments=[], busy=[], free=[], day_starts=[], days=[], own_per_day=[],
        daily_limit=appointment_type.daily_limit,
    )  # fmt: skip
    if hi <= lo:
        return plan

    # Local dates whose ranges can hold a slot starting in [lo, hi): ranges
    # crossing midnight start the day before, and that day's ranges yield to
    # the ranges of the day before it.
    first_slot_day = local_date(lo, zone)
    last_slot_day = local_date(hi - 1, zone)
    first = first_slot_day - 2 * ONE_DAY
    last = local_date(hi - 1 + duration, zone) + ONE_DAY

    continuous = continuous_ranges(
        working_ranges(schedule, first, last),
        lambda ordinal: local_midnight(zone, date.fromordinal(ordinal)),
    )
    plan.working = [(s, e) for s, e, _ in continuous]
    if appointment_type.align == "range":
        plan.segments = continuous
    else:
        plan.segments = clock_grid(zone, first, last, step)

    # Busy time widened so that "slot overlaps widened busy" is exactly
    # "[start - buffer_before, end + buffer_after) overlaps busy".
    before = td_us(appointment_type.buffer_before)
    after = td_us(appointment_type.buffer_after)
    plan.days = date_span(first_slot_day, last_slot_day)
    plan.day_starts = [local_midnight(zone, d) for d in plan.days]
    plan.day_starts.append(local_midnight(zone, last_slot_day + ONE_DAY))
    counts = [0] * len(plan.days)
    widened: list[Interval] = []
    day_starts = plan.day_starts
    count_lo, count_hi = day_starts[0], day_starts[-1]
    own, zero = BusyKind.OWN, timedelta(0)
    for b in staff.busy:
        bs = to_us(b.start)
        be = to_us(b.end)
        if b.kind is own and count_lo <= bs < count_hi:
            counts[bisect_right(day_starts, bs) - 1] += 1
        if b.buffer_before != zero:
            bs -= td_us(b.buffer_before)
        if b.buffer_after != zero:
            be += td_us(b.buffer_after)
        if be > bs:  # an empty event (no length, no own buffers) is not busy time
            widened.append((bs - after, be + before))
    plan.own_per_day = counts
    plan.busy = merge(widened)
    plan.free = subtract(plan.working, plan.busy)
    return plan


def slot_starts(plan: StaffPlan) -> list[int]:
    """Sorted, unique slot starts of a plan (daily limit applied)."""
    lo, hi, duration, step = plan.lo, plan.hi, plan.duration, plan.step
    free = plan.free
    if hi <= lo or not free:
        return []
    free_ends = [f[1] for f in free]
    n = len(free)
    found: list[int] = []
    for gs, ge, anchor in plan.segments:
        a0 = gs if gs > lo else lo
        a1 = ge if ge < hi else hi
        if a0 >= a1:
            continue
        i = bisect_right(free_ends, a0)
        while i < n and free[i][0] < a1:
            fs, fe = free[i]
            c_lo = a0 if a0 > fs else fs
            c_hi = min(a1, fe - duration + 1)
            if c_lo < c_hi:
                first = anchor - ((anchor - c_lo) // step) * step  # ceil to the grid
                found.extend(range(first, c_hi, step))
            i += 1
    starts = sorted(set(found))
    if plan.daily_limit is not None:
        starts = [c for c in starts if not plan.limit_reached(c)]
    return starts
