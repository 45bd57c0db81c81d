"""Wall-clock times in a tenant's zone turned into exact instants (DST included).

Every rule written as a time of day (windows, on-call handovers, digest hours,
override dates without an offset) means **the first instant at which the wall
clock of the zone shows that time or later**:

* a time that happens twice (the night clocks go back, 02:30 on 2026-10-25 in
  Europe/Paris) is its *first* occurrence (02:30+02:00);
* a time that does not exist (the night clocks go forward, 02:30 on 2026-03-29)
  is the instant the clock jumps past it (03:00+02:00 = 01:00 UTC).

A window ``22:00-06:00`` is then the interval between two such instants: 7 hours
the night of 28→29 March 2026 in Paris, 9 hours the night of 24→25 October.

Pure: no I/O, no clock reading.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache

WEEKDAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def require_aware(at: datetime, what: str = "the instant") -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (got {at.isoformat()})")
    return at


@lru_cache(maxsize=8192)
def wall_instant(day: date, clock: time, zone: tzinfo) -> datetime:
    """The first instant (UTC) at which the wall clock of ``zone`` shows ``day clock`` or later."""
    naive = datetime.combine(day, clock)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == naive:
        return first  # exists (its first occurrence when the hour repeats)
    # In a gap: fold=0 reads it with the offset before the jump (an instant after
    # the jump), fold=1 with the offset after it (an instant before the jump).
    # The jump lies between; find it to the second.
    before = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    low, high = min(before, first), max(before, first)
    offset = low.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle.astimezone(zone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return high


def local(at: datetime, zone: tzinfo) -> datetime:
    """``at`` on the wall clock of ``zone`` (aware)."""
    return require_aware(at).astimezone(zone)


def describe(at: datetime, zone: tzinfo) -> str:
    """``sat 2026-03-28 23:30 (CET)``: an instant as the tenant's wall clock shows it."""
    moment = local(at, zone)
    name = moment.tzname() or moment.strftime("%z")
    return f"{WEEKDAY_NAMES[moment.weekday()]} {moment:%Y-%m-%d %H:%M} ({name})"


def format_duration(delta: timedelta) -> str:
    """``1h30m``, ``10m``, ``45s``: the way durations are written in tenant files."""
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    out += f"{seconds}s" if seconds else ""
    return out or "0m"
