"""Report periods: days in a tenant's zone, as UTC instants.

A period is the half-open range [first day 00:00, last day 00:00) in the zone:
a day across a DST change is 23 or 25 hours long, as the calendar says.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

PeriodKind = Literal["day", "week", "month"]


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """00:00 of ``day`` in ``zone``, in UTC (no zone skips midnight in our tenants'
    regions; where one did, the first instant of the day after the gap is used)."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def local_range(first: date, end: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[first 00:00, end 00:00) in ``zone`` as UTC instants."""
    return local_midnight(first, zone), local_midnight(end, zone)


def period(kind: PeriodKind, day: date) -> tuple[date, date]:
    """The day, ISO week (Monday first) or month holding ``day``: (first, end excluded)."""
    if kind == "day":
        return day, day + timedelta(days=1)
    if kind == "week":
        first = day - timedelta(days=day.weekday())
        return first, first + timedelta(days=7)
    first = day.replace(day=1)
    end = (first.replace(year=first.year + 1, month=1) if first.month == 12
           else first.replace(month=first.month + 1))
    return first, end


def parse_month(text: str) -> tuple[date, date]:
    """``"2026-11"`` -> (2026-11-01, 2026-12-01); ValueError otherwise."""
    year, _, month = text.partition("-")
    if not (year.isdigit() and month.isdigit() and len(year) == 4 and len(month) == 2):
        raise ValueError(f"{text!r} is not a month: write YYYY-MM, e.g. 2026-11")
    return period("month", date(int(year), int(month), 1))
