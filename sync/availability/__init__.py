"""Availability engine: working hours, holidays, busy time → bookable slots.

Pure and deterministic: inputs in, slots out; no I/O, no database, no clock
(``now`` is injected).  Every instant is timezone-aware (naive → ValueError
naming the argument); wall-clock rules live in the staff member's IANA zone.

Pipeline per staff member (``slots.build_plan`` / ``slots.slot_starts``):

1. Working ranges per local date in the staff zone, each date resolved on its
   own (tenant closure > staff override > public holiday > weekly hours; a
   closed or overridden date is a whole local day).  Wall times → instants
   with one DST rule: *the first instant the clock shows that time or later*
   (fall-back overlap: first occurrence, ``fold=0``; spring-forward gap: the
   moment of the jump).  See ``date_ranges``.
2. Continuous ranges: same-date ranges that overlap or touch join, and so do
   two ranges meeting at midnight (``mon 22:00-24:00`` + ``tue 00:00-06:00``
   is ``mon 22:00-06:00``); a slot never straddles two ranges
   (``date_ranges.continuous_ranges``).
3. Minus busy time widened by the appointment type's buffers (and by an
   existing event's own buffers when the caller supplies them).
4. Starts clipped to ``[max(query.start, now + notice), min(query.end,
   horizon))``, stepped on the alignment grid (``range`` or ``clock``), then
   the daily limit (own bookings per local date).

Unknown busy state → no slot, reported in ``AvailabilityResult.unavailable``.
``check_slot`` re-checks one slot with exactly the listing's rules, and
``busy_window`` says which busy range to fetch so buffers and the daily limit
see every relevant event.
"""

from .bench import run_benchmark
from .engine import (
    CALENDAR_UNKNOWN,
    busy_window,
    check_slot,
    compute_any_staff_availability,
    compute_availability,
    fairness_from_busy,
)
from .models import (
    Align,
    AppointmentType,
    AvailabilityQuery,
    AvailabilityResult,
    BusyInterval,
    BusyKind,
    FairnessStats,
    HolidayRules,
    Slot,
    SlotCheck,
    StaffCalendar,
    StaffSchedule,
    StaffUnavailable,
    TimeRange,
)

__all__ = [
    "CALENDAR_UNKNOWN",
    "Align",
    "AppointmentType",
    "AvailabilityQuery",
    "AvailabilityResult",
    "BusyInterval",
    "BusyKind",
    "FairnessStats",
    "HolidayRules",
    "Slot",
    "SlotCheck",
    "StaffCalendar",
    "StaffSchedule",
    "StaffUnavailable",
    "TimeRange",
    "busy_window",
    "check_slot",
    "compute_any_staff_availability",
    "compute_availability",
    "fairness_from_busy",
    "run_benchmark",
]
