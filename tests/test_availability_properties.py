"""Property-based tests: the availability engine against a brute-force oracle.

The oracle shares no code with the engine.  It walks time in 5-minute blocks
(every boundary in these scenarios is on a 15-minute UTC grid: range times are
on quarter hours and the zones' offsets and DST shifts are multiples of 30
minutes), decides for each block which configured ranges cover it straight
from the documented rules, resolves missing wall times by scanning minute by
minute, and checks busy time pairwise.  The engine must return exactly the
oracle's slots, and every slot must satisfy the safety properties on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import holidays
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.availability import (
    AppointmentType,
    AvailabilityQuery,
    BusyInterval,
    BusyKind,
    HolidayRules,
    StaffCalendar,
    StaffSchedule,
    TimeRange,
    check_slot,
    compute_any_staff_availability,
    compute_availability,
    fairness_from_busy,
)

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Paris",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
]
# Days just before a DST transition in one of the zones, and a quiet one.
BASE_DATES = [
    date(2026, 3, 7),
    date(2026, 3, 28),
    date(2026, 4, 4),
    date(2026, 10, 3),
    date(2026, 10, 24),
    date(2026, 10, 31),
    date(2026, 6, 10),
]
CALLER_ZONES = ["UTC", "America/Los_Angeles", "Asia/Kolkata", "Europe/Paris"]
BLOCK = timedelta(minutes=5)
DAY = timedelta(days=1)

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --------------------------------------------------------------------------- strategies

quarter = st.integers(0, 95).map(lambda q: time(q // 4, q % 4 * 15))
time_ranges = st.builds(TimeRange, quarter, quarter)
day_ranges = st.lists(time_ranges, max_size=2)
week = st.lists(st.lists(time_ranges, min_size=1, max_size=2) | st.just([]), min_size=7, max_size=7)


def minutes(lo: int, hi: int, step: int = 5):
    return st.integers(lo // step, hi // step).map(lambda k: timedelta(minutes=k * step))


@dataclass(frozen=True)
class Scenario:
    query: AvailabilityQuery
    appt: AppointmentType
    staff: tuple[StaffCalendar, ...]


@st.composite
def schedules(draw, base: date) -> StaffSchedule:
    zone = draw(st.sampled_from(ZONES))
    near = st.integers(-3, 5).map(lambda k: base + timedelta(days=k))
    return StaffSchedule(
        zone,
        weekly=dict(enumerate(draw(week))),
        overrides=draw(st.dictionaries(near, day_ranges, max_size=3)),
        holidays=HolidayRules(
            draw(st.sampled_from([None, "FR", "US"])),
            closures=draw(st.frozensets(near, max_size=2)),
        ),
    )


@st.composite
def busy_lists(draw, start: datetime, zone: str) -> list[BusyInterval]:
    out = []
    for _ in range(draw(st.integers(0, 12))):
        s = start - DAY + timedelta(minutes=draw(st.integers(0, 5 * 24 * 60)))
        e = s + timedelta(minutes=draw(st.integers(0, 240)))
        if draw(st.booleans()):  # aware in any zone is fine
            s, e = s.astimezone(ZoneInfo(zone)), e.astimezone(ZoneInfo(zone))
        out.append(
            BusyInterval(
                s,
                e,
                draw(st.sampled_from(BusyKind)),
                buffer_before=draw(st.sampled_from([timedelta(0)] * 3 + [timedelta(minutes=10)])),
                buffer_after=draw(st.sampled_from([timedelta(0)] * 3 + [timedelta(minutes=30)])),
            )
        )
    return out


@st.composite
def scenarios(draw, max_staff: int = 1) -> Scenario:
    base = draw(st.sampled_from(BASE_DATES))
    start = datetime.combine(base, time(0), tzinfo=UTC) + draw(minutes(0, 36 * 60, 15))
    end = start + draw(minutes(2 * 60, 60 * 60, 15))
    now = start + draw(minutes(-48 * 60, 24 * 60))
    query = AvailabilityQuery(start, end, now=now, timezone=draw(st.sampled_from(CALLER_ZONES)))
    appt = AppointmentType(
        duration=draw(minutes(5, 180)),
        buffer_before=draw(minutes(0, 60)),
        buffer_after=draw(minutes(0, 60)),
        minimum_notice=draw(minutes(0, 600)),
        booking_horizon_days=draw(st.none() | st.integers(0, 4)),
        interval=draw(st.none() | minutes(5, 120)),
        align=draw(st.sampled_from(["range", "clock"])),
        daily_limit=draw(st.none() | st.integers(1, 3)),
    )
    staff = []
    for i in range(draw(st.integers(1, max_staff))):
        schedule = draw(schedules(base))
        busy = draw(busy_lists(start, schedule.timezone))
        staff.append(StaffCalendar(f"s{i}", schedule, busy))
    return Scenario(query, appt, tuple(staff))


# --------------------------------------------------------------------------- oracle


@cache
def public_holidays(country: str, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays(country, years=year))


class Oracle:
    """Brute-force reading of the documented rules for one staff member."""

    def __init__(self, member: StaffCalendar, appt: AppointmentType, q: AvailabilityQuery):
        self.member = member
        self.schedule = member.schedule
        self.zone = ZoneInfo(member.schedule.timezone)
        self.appt = appt
        self.q = q
        self._instant: dict[tuple[date, time], datetime] = {}
        self._ranges: dict[date, list[tuple[datetime, datetime, date]]] = {}
        self._cover: dict[datetime, list[tuple[datetime, datetime, date]]] = {}

    def instant(self, day: date, wall: time) -> datetime:
        """First instant whose local clock reads ``day wall`` or later."""
        key = (day, wall)
        if key not in self._instant:
            naive = datetime.combine(day, wall)
            a = naive.replace(tzinfo=self.zone).astimezone(UTC)
            if a.astimezone(self.zone).replace(tzinfo=None) == naive:
                self._instant[key] = a
            else:
                x = min(a, naive.replace(tzinfo=self.zone, fold=1).astimezone(UTC))
                while x.astimezone(self.zone).replace(tzinfo=None) < naive:
                    x += timedelta(minutes=1)
                self._instant[key] = x
        return self._instant[key]

    def rule(self, day: date) -> tuple[bool, tuple[TimeRange, ...]]:
        rules = self.schedule.holidays
        if day in rules.closures:
            return True, ()
        if day in self.schedule.overrides:
            return True, tuple(self.schedule.overrides[day])
        if rules.country and day in public_holidays(rules.country, day.year):
            return True, ()
        return False, tuple(self.schedule.weekly.get(day.weekday(), ()))

    def ranges_of(self, day: date) -> list[tuple[datetime, datetime, date]]:
        if day not in self._ranges:
            out = []
            for r in self.rule(day)[1]:
                s = self.instant(day, r.start)
                if r.end <= r.start:
                    e = self.instant(day + DAY, r.end)
                    if self.rule(day + DAY)[0]:
                        e = min(e, self.instant(day + DAY, time(0)))
                else:
                    e = self.instant(day, r.end)
                if s < e:
                    out.append((s, e, day))
            self._ranges[day] = out
        return self._ranges[day]

    def covering(self, x: datetime) -> list[tuple[datetime, datetime, date]]:
        if x not in self._cover:
            local = x.astimezone(self.zone).date()
            self._cover[x] = [
                r for d in (local - DAY, local) for r in self.ranges_of(d) if r[0] <= x < r[1]
            ]
        return self._cover[x]

    def working(self, x: datetime) -> bool:
        return bool(self.covering(x))

    def joined_of(self, day: date) -> list[tuple[datetime, datetime]]:
        """Ranges of one date joined where they overlap or touch."""
        out: list[list[datetime]] = []
        for s, e, _ in sorted(self.ranges_of(day)):
            if out and s <= out[-1][1]:
                out[-1][1] = max(out[-1][1], e)
            else:
                out.append([s, e])
        return [(s, e) for s, e in out]

    def segment(self, x: datetime) -> tuple[date, datetime] | None:
        """``(date, anchor)`` of the continuous range owning ``x``: earliest date wins."""
        cov = self.covering(x)
        if not cov:
            return None
        owner = min(d for _, _, d in cov)
        (anchor,) = [s for s, e in self.joined_of(owner) if s <= x < e]
        return self.continued(owner, anchor)

    def continued(self, day: date, start: datetime) -> tuple[date, datetime]:
        """A date's range starting, untrimmed, at its midnight exactly where one of the
        previous date ends continues it (``mon 22:00-24:00`` + ``tue 00:00-06:00``),
        unless that one also starts at its own midnight."""
        before = day - DAY
        if start != self.instant(day, time(0)) or any(
                d < day for _, _, d in self.covering(start)):
            return day, start  # not at midnight, or trimmed by a range of the day before
        for s, e in self.joined_of(before):
            if e == start and s != self.instant(before, time(0)):
                return before, s
        return day, start

    def expected(self) -> list[datetime]:
        appt, q, zone = self.appt, self.q, self.zone
        lo = max(q.start, q.now + appt.minimum_notice)
        hi = q.end
        if appt.booking_horizon_days is not None:
            today = q.now.astimezone(zone).date()
            horizon = today + timedelta(days=appt.booking_horizon_days + 1)
            hi = min(hi, self.instant(horizon, time(0)))
        step = appt.step
        own_days = [
            b.start.astimezone(zone).date() for b in self.member.busy if b.kind is BusyKind.OWN
        ]
        out = []
        c = lo
        while c < hi:
            seg = self.segment(c)
            if seg is not None:
                if appt.align == "range":
                    on_grid = (c - seg[1]) % step == timedelta(0)
                else:
                    on_grid = self.on_clock(c) and not any(
                        self.on_clock(c - k * BLOCK) for k in range(1, step // BLOCK)
                    )
                if on_grid and self.fits(c, seg) and self.under_limit(c, own_days):
                    out.append(c)
            c += BLOCK
        return out

    def on_clock(self, x: datetime) -> bool:
        wall = x.astimezone(self.zone)
        return timedelta(hours=wall.hour, minutes=wall.minute) % self.appt.step == timedelta(0)

    def fits(self, c: datetime, seg: tuple[date, datetime]) -> bool:
        end = c + self.appt.duration
        p = c
        while p < end:
            if self.segment(p) != seg:
                return False
            p += BLOCK
        return not self.hits_busy(c)

    def hits_busy(self, c: datetime) -> bool:
        a0 = c - self.appt.buffer_before
        a1 = c + self.appt.duration + self.appt.buffer_after
        for b in self.member.busy:
            # to UTC first: aware + timedelta keeps the wall time and drops fold
            b0 = b.start.astimezone(UTC) - b.buffer_before
            b1 = b.end.astimezone(UTC) + b.buffer_after
            if max(a0, b0) < min(a1, b1):
                return True
        return False

    def under_limit(self, c: datetime, own_days: list[date]) -> bool:
        if self.appt.daily_limit is None:
            return True
        return own_days.count(c.astimezone(self.zone).date()) < self.appt.daily_limit


# --------------------------------------------------------------------------- properties


@PROPERTY_SETTINGS
@given(scenarios())
def test_slots_are_safe_and_exactly_the_oracle_slots(sc: Scenario):
    q, appt = sc.query, sc.appt
    (member,) = sc.staff
    result = compute_availability(q, appt, [member])
    slots = result.slots
    oracle = Oracle(member, appt, q)

    for s in slots:
        assert s.start.utcoffset() is not None and s.end.utcoffset() is not None
        assert s.start.tzinfo is q.zone and s.end.tzinfo is q.zone
        assert s.staff_id == member.staff_id
    # Python compares and subtracts datetimes sharing a tzinfo as wall times
    # (fold ignored): reason about instants in UTC.
    spans = [(s.start.astimezone(UTC), s.end.astimezone(UTC)) for s in slots]
    starts = [a for a, _ in spans]
    assert starts == sorted(set(starts)), "sorted, no duplicates"
    for a, b in spans:
        assert b - a == appt.duration
        assert q.start <= a < q.end, "slot starts inside the query window"
        assert a >= q.now + appt.minimum_notice, "minimum notice"
        assert not oracle.hits_busy(a), "overlaps busy time (+buffers)"
        p = a
        while p < b:
            assert oracle.working(p), f"{p} not within working hours"
            p += BLOCK
    if appt.step >= appt.duration:
        for (_, end), (nxt, _) in zip(spans, spans[1:], strict=False):
            assert end <= nxt, "slots of one staff member overlap"

    assert starts == oracle.expected()


@PROPERTY_SETTINGS
@given(scenarios(), st.data())
def test_check_slot_agrees_with_the_listing(sc: Scenario, data):
    q, appt = sc.query, sc.appt
    (member,) = sc.staff
    listed = {s.start.astimezone(UTC) for s in compute_availability(q, appt, [member]).slots}
    for s in list(listed)[:5]:
        assert check_slot(s, appt, member, q.now).available
    lo = max(q.start, q.now + appt.minimum_notice)
    for _ in range(5):
        c = lo + data.draw(st.integers(0, 48 * 12)) * BLOCK
        if c >= q.end:
            continue
        check = check_slot(c, appt, member, q.now)
        assert check.available == (c in listed), check


@PROPERTY_SETTINGS
@given(scenarios(max_staff=4), st.randoms(use_true_random=False))
def test_any_staff_picks_the_fairest_available_member(sc: Scenario, rnd):
    q, appt = sc.query, sc.appt
    staff = list(sc.staff)
    if staff and rnd.random() < 0.3:
        staff[0] = StaffCalendar.unknown(staff[0].staff_id, staff[0].schedule, "boom")
    per_staff = compute_availability(q, appt, staff)
    offered: dict[datetime, set[str]] = {}
    for s in per_staff.slots:
        offered.setdefault(s.start.astimezone(UTC), set()).add(s.staff_id)

    stats = fairness_from_busy(staff)

    def key(staff_id):
        st_ = stats[staff_id]
        last = st_.last_booking
        return (st_.bookings, last is not None, last or datetime.min.replace(tzinfo=UTC), staff_id)

    result = compute_any_staff_availability(q, appt, staff)
    assert [s.start.astimezone(UTC) for s in result.slots] == sorted(offered)
    for s in result.slots:
        chosen = [s.staff_id, *s.alternatives]
        assert set(chosen) == offered[s.start.astimezone(UTC)]
        assert chosen == sorted(chosen, key=key)
    assert result.unavailable == per_staff.unavailable
    assert all(u.code == "calendar_unknown" for u in result.unavailable)
    unknown = {u.staff_id for u in result.unavailable}
    assert not unknown & {sid for s in result.slots for sid in (s.staff_id, *s.alternatives)}

    shuffled = staff[:]
    rnd.shuffle(shuffled)
    assert compute_any_staff_availability(q, appt, shuffled) == result
    assert compute_availability(q, appt, shuffled) == per_staff
