"""Wall-clock working hours → absolute date ranges, and interval algebra.

Internally every instant is an ``int`` of microseconds since the Unix epoch
(UTC): exact, hashable and fast to sort and compare.

DST policy (one rule, used for every wall time: range starts, range ends,
local midnights, the horizon)
    A wall time ``t`` on local date ``d`` maps to the **first instant at which
    the local clock shows ``t`` or later**.

    * Fall-back overlap (the wall time happens twice): the first occurrence,
      i.e. ``fold=0``.  ``01:00–04:00`` on the night clocks go back therefore
      lasts four real hours.
    * Spring-forward gap (the wall time never happens): the instant the clock
      jumps, i.e. the end of the gap.  ``02:30`` in New York on 2026-03-08 is
      03:00 EDT.  Shifting by the gap length instead (02:30 → 03:30, what
      ``fold=0`` alone gives) would turn ``02:30–03:15`` into an inverted
      range; this rule is monotone, so a range never inverts — at worst it
      becomes empty.

Each local date is handled on its own (a calendar day is never assumed to be
24 hours), so offsets are always those of the day concerned.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from mappings.wallclock import wall_instant

from .models import StaffSchedule

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)  # noqa: DTZ001 - wall-clock arithmetic only
US = timedelta(microseconds=1)
SECOND = 1_000_000
MIDNIGHT = time(0)
ONE_DAY = timedelta(days=1)

Interval = tuple[int, int]


def to_us(value: datetime) -> int:
    """Aware datetime → microseconds since the epoch."""
    return (value - EPOCH) // US


def from_us(us: int, zone: ZoneInfo | None = None) -> datetime:
    """Microseconds since the epoch → aware datetime in ``zone`` (UTC by default)."""
    value = EPOCH + timedelta(microseconds=us)
    return value if zone is None else value.astimezone(zone)


def td_us(value: timedelta) -> int:
    return value // US


def wall_us(us: int, zone: ZoneInfo) -> int:
    """The local wall-clock reading of an instant, as naive microseconds."""
    return to_us(from_us(us, zone).replace(tzinfo=UTC))


def naive_us(value: datetime) -> int:
    """A naive wall-clock datetime as microseconds since 1970-01-01 00:00 (no zone)."""
    return (value - _NAIVE_EPOCH) // US


def offset_us(us: int, zone: ZoneInfo) -> int:
    offset = from_us(us, zone).utcoffset()
    assert offset is not None
    return offset // US


def local_date(us: int, zone: ZoneInfo) -> date:
    return from_us(us, zone).date()


@lru_cache(maxsize=65536)
def local_instant(zone: ZoneInfo, day: date, wall: time) -> int:
    """First instant at which the clock in ``zone`` shows ``day wall`` or later."""
    return to_us(wall_instant(day, wall, zone))


def local_midnight(zone: ZoneInfo, day: date) -> int:
    return local_instant(zone, day, MIDNIGHT)


def date_span(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# --------------------------------------------------------------------------- interval algebra


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sort and merge overlapping or touching half-open intervals; drop empty ones."""
    out: list[Interval] = []
    for s, e in sorted(intervals):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def subtract(base: Sequence[Interval], cut: Sequence[Interval]) -> list[Interval]:
    """``base − cut`` (linear sweep).

    ``base`` sorted and disjoint (touching allowed, pieces stay apart),
    ``cut`` sorted and merged.
    """
    out: list[Interval] = []
    j, n = 0, len(cut)
    for s, e in base:
        while j < n and cut[j][1] <= s:
            j += 1
        k = j
        cur = s
        while k < n and cut[k][0] < e:
            cs, ce = cut[k]
            if cs > cur:
                out.append((cur, cs))
            if ce > cur:
                cur = ce
            if ce >= e:
                break
            k += 1
        if cur < e:
            out.append((cur, e))
    return out


def covers(intervals: Sequence[Interval], ends: Sequence[int], s: int, e: int) -> bool:
    """True if ``[s, e)`` lies inside one interval of a sorted, disjoint list.

    Intervals may touch; ``[s, e)`` must then fit in one of them.
    """
    i = bisect_right(ends, s)
    return i < len(intervals) and intervals[i][0] <= s and e <= intervals[i][1]


def overlaps(intervals: Sequence[Interval], ends: Sequence[int], s: int, e: int) -> bool:
    """True if ``[s, e)`` (non-empty) overlaps a sorted, merged interval list."""
    i = bisect_right(ends, s)
    return i < len(intervals) and intervals[i][0] < e


# --------------------------------------------------------------------------- working hours


def working_ranges(schedule: StaffSchedule, first: date, last: date) -> list[tuple[int, int, int]]:
    """The working ranges starting on local dates ``first..last``, as instants.

    One ``(start, end, origin)`` per configured range (``origin`` is the
    ordinal of its local date), sorted, after closures, overrides and
    holidays.  A range crossing midnight into a date that has a whole-day
    rule (closed, or overridden) is cut at that date's midnight.
    """
    zone = schedule.zone
    out: list[tuple[int, int, int]] = []
    rule_next = schedule.ranges_for(first)
    for day in date_span(first, last):
        _, ranges = rule_next
        nxt = day + ONE_DAY
        rule_next = schedule.ranges_for(nxt)
        next_whole_day = rule_next[0]
        origin = day.toordinal()
        for r in ranges:
            s = local_instant(zone, day, r.start)
            if r.crosses_midnight:
                e = local_instant(zone, nxt, r.end)
                if next_whole_day:
                    e = min(e, local_midnight(zone, nxt))
            else:
                e = local_instant(zone, day, r.end)
            if e > s:
                out.append((s, e, origin))
    out.sort()
    return out


def continuous_ranges(
    ranges: Sequence[tuple[int, int, int]], midnight: Callable[[int], int] | None = None
) -> list[tuple[int, int, int]]:
    """Continuous working ranges ``(start, end, anchor)``: a slot never straddles two.

    * Ranges of the same local date that overlap or touch join
      (``09:00-12:00`` + ``12:00-14:00``); ``anchor`` is the joined start.
    * A range of ``D+1`` that starts exactly where a range of ``D`` ends
      continues it: ``Mon 22:00-24:00`` + ``Tue 00:00-06:00`` is one opening,
      anchored at 22:00, exactly as if written ``Mon 22:00-06:00`` (a slot may
      span midnight).  The later range must start at ``D+1``'s midnight and the
      earlier must not start at ``D``'s (``midnight(ordinal)``, the instant), so
      a join never reaches further back than one date and whole days
      (``00:00-24:00`` every day) stay apart as before.  Where a range of ``D``
      crossing midnight *overlaps* a range of ``D+1``, the earlier one keeps
      the overlap and the later one resumes when it ends, still anchored at
      its own configured start (the two stay apart).

    Each range depends only on its own date and the previous one, so the
    result (hence ``range`` alignment) does not depend on the query window.
    Output is sorted and disjoint; ranges may touch.
    """
    by_origin: dict[int, list[Interval]] = {}
    for s, e, origin in sorted(ranges):
        joined = by_origin.setdefault(origin, [])
        if joined and s <= joined[-1][1]:
            if e > joined[-1][1]:
                joined[-1] = (joined[-1][0], e)
        else:
            joined.append((s, e))
    out: list[tuple[int, int, int]] = []
    for origin, joined in by_origin.items():
        previous = by_origin.get(origin - 1, ())
        for s, e in joined:
            start = s
            for a, b in previous:  # ranges of the previous date all start before ``s``
                if a < e and b > start:
                    start = b
            if start < e:
                out.append((start, e, s, origin))
    out.sort()
    return _continue_across_dates(out, midnight)


def _continue_across_dates(
    ranges: list[tuple[int, int, int, int]], midnight: Callable[[int], int] | None
) -> list[tuple[int, int, int]]:
    """Join a range that starts, untrimmed (``start == anchor``), at its date's midnight
    exactly where the one before it ends, when that one does not start at its own
    date's midnight: the night written as two ranges that meet at midnight. Both
    conditions are of one date each, so a join depends on two consecutive dates only."""
    out: list[tuple[int, int, int]] = []
    extensible: list[bool] = []  # may the next date's midnight range continue this one?
    for s, e, anchor, origin in ranges:
        at_midnight = midnight is not None and anchor == midnight(origin)
        if out and extensible[-1] and at_midnight and out[-1][1] == s == anchor:
            out[-1] = (out[-1][0], e, out[-1][2])
            extensible[-1] = False  # its end is a range that started at midnight
        else:
            out.append((s, e, anchor))
            extensible.append(midnight is not None and not at_midnight)
    return out


def clock_grid(zone: ZoneInfo, first: date, last: date, step: int) -> list[tuple[int, int, int]]:
    """Clock-alignment segments ``(start, end, anchor)`` for local dates ``first..last``.

    Within a segment the UTC offset is constant, and a wall time
    ``day 00:00 + k × step`` is the instant ``anchor + k × step``.  A date with
    a DST transition is split at the transition, so the grid follows the wall
    clock on both sides (in a fall-back overlap both occurrences of :00/:30 are
    grid points; a spring-forward gap has none).

    Consecutive grid points stay at least ``step`` apart: where the grid
    restarts (local midnight when ``step`` does not divide the day, a DST
    shift that is not a multiple of ``step``) a segment starts no earlier than
    one step after the previous segment's last grid point.
    """
    out: list[tuple[int, int, int]] = []
    last_point: int | None = None
    for day in date_span(first, last):
        s = local_midnight(zone, day)
        e = local_midnight(zone, day + ONE_DAY)
        day_naive = naive_us(datetime.combine(day, MIDNIGHT))
        for seg_s, seg_e, off in _offset_segments(zone, s, e):
            anchor = day_naive - off
            if last_point is not None:
                seg_s = max(seg_s, last_point + step)
            if seg_s < seg_e:
                out.append((seg_s, seg_e, anchor))
                point = anchor + ((seg_e - 1 - anchor) // step) * step
                if point >= seg_s:
                    last_point = point
    return out


def _offset_segments(zone: ZoneInfo, s: int, e: int) -> list[tuple[int, int, int]]:
    segments: list[tuple[int, int, int]] = []
    while s < e:
        off_s = offset_us(s, zone)
        if offset_us(e - 1, zone) == off_s:
            segments.append((s, e, off_s))
            break
        lo, hi = s, e - 1  # offset(lo) == off_s != offset(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if offset_us(mid, zone) == off_s:
                lo = mid
            else:
                hi = mid
        segments.append((s, hi, off_s))
        s = hi
    return segments
