"""Micro-benchmark of the engine (a function, not a timed test).

``python -c "from sync.availability import run_benchmark; print(run_benchmark())"``
"""

from __future__ import annotations

import random
import time as _time
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from .engine import compute_availability
from .models import (
    AppointmentType,
    AvailabilityQuery,
    BusyInterval,
    BusyKind,
    HolidayRules,
    StaffCalendar,
    StaffSchedule,
    TimeRange,
)


@dataclass(frozen=True)
class BenchmarkResult:
    staff: int
    days: int
    busy_per_staff: int
    slots: int
    best_ms: float
    per_staff_ms: float

    def __str__(self) -> str:
        return (
            f"{self.staff} staff x {self.days} days x {self.busy_per_staff} busy: "
            f"{self.slots} slots, best {self.best_ms:.2f} ms, {self.per_staff_ms:.2f} ms/staff"
        )


def build_inputs(
    staff: int = 10, days: int = 14, busy_per_staff: int = 500, seed: int = 0
) -> tuple[AvailabilityQuery, AppointmentType, list[StaffCalendar]]:
    """Deterministic synthetic inputs: Paris staff, two ranges a day, FR holidays."""
    rng = random.Random(seed)
    start = datetime(2026, 3, 23, tzinfo=UTC)  # window spans the spring-forward night
    end = start + timedelta(days=days)
    schedule = StaffSchedule(
        "Europe/Paris",
        weekly={d: (TimeRange(time(8), time(12)), TimeRange(time(13), time(19))) for d in range(6)},
        holidays=HolidayRules("FR"),
    )
    members = []
    for i in range(staff):
        busy = []
        for _ in range(busy_per_staff):
            s = start + timedelta(minutes=rng.randrange(0, days * 24 * 60))
            kind = BusyKind.OWN if rng.random() < 0.3 else BusyKind.EXTERNAL
            busy.append(BusyInterval(s, s + timedelta(minutes=rng.choice((15, 30, 60))), kind))
        members.append(StaffCalendar(f"staff-{i:02d}", schedule, busy))
    appt = AppointmentType(
        duration=timedelta(minutes=30),
        buffer_before=timedelta(minutes=5),
        buffer_after=timedelta(minutes=10),
        minimum_notice=timedelta(hours=2),
        booking_horizon_days=60,
        interval=timedelta(minutes=15),
        align="clock",
        daily_limit=20,
    )
    query = AvailabilityQuery(start, end, now=start, timezone="America/New_York")
    return query, appt, members


def run_benchmark(
    staff: int = 10, days: int = 14, busy_per_staff: int = 500, repeat: int = 5, seed: int = 0
) -> BenchmarkResult:
    """Best-of-``repeat`` wall time of :func:`compute_availability` on synthetic inputs."""
    query, appt, members = build_inputs(staff, days, busy_per_staff, seed)
    compute_availability(query, appt, members)  # warm caches (holidays, zone conversions)
    best = float("inf")
    slots = 0
    for _ in range(max(1, repeat)):
        t0 = _time.perf_counter()
        result = compute_availability(query, appt, members)
        best = min(best, _time.perf_counter() - t0)
        slots = len(result.slots)
    best_ms = best * 1000
    return BenchmarkResult(staff, days, busy_per_staff, slots, best_ms, best_ms / max(1, staff))
