"""What the Google and Outlook calendar connectors share: UTC ranges split to a
provider's limits, calendar ids in chunks, busy blocks merged, chunks run
concurrently on one process-wide pool, and paced, counted API calls.

Busy-time queries fan out as ``chunks x windows`` jobs (at most
``max_calendars_per_query`` ids per job, at most the provider's range per
window). Every job's answer lands in one ``CalendarBusy`` per asked id.

When a job fails as a whole:
- ``AuthExpired`` / ``RateLimited`` are raised: they concern the connection
  (refresh the token, pause until the reset), not one calendar;
- ``TransientError`` / ``Rejected`` are raised when *every* job failed;
  otherwise the calendars of the failed job get ``CalendarBusy(error=...)``
  (unknown, never free) and the others keep their answer.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from connectors.base import (
    AuthExpired,
    DeliveryError,
    RateLimited,
    Rejected,
    Runtime,
    TransientError,
)
from connectors.calendar import BusyBlock, CalendarBusy, EventSpec

T = TypeVar("T")

_POOL_SIZE = 32
_pool_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None


def io_pool() -> ThreadPoolExecutor:
    """One thread pool per process for calendar I/O (recreated after a fork)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(_POOL_SIZE, "calendar-io"))
        return _pool[1]


def as_utc(value: datetime, what: str = "datetime") -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """``2026-03-08T17:00:00Z`` (UTC, whole seconds kept, fractions kept if any)."""
    text = as_utc(value).replace(tzinfo=None).isoformat()
    return text + "Z"


def split_range(start: datetime, end: datetime, span: timedelta) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` in consecutive windows no longer than ``span``."""
    out: list[tuple[datetime, datetime]] = []
    lo = start
    while lo < end:
        hi = min(lo + span, end)
        out.append((lo, hi))
        lo = hi
    return out


def chunks(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def merge_blocks(blocks: Iterable[BusyBlock], lo: datetime, hi: datetime) -> tuple[BusyBlock, ...]:
    """Clip to ``[lo, hi)``, sort, and merge overlapping or touching blocks of one status
    (a block cut at a window boundary comes back whole)."""
    by_status: dict[str, list[tuple[datetime, datetime]]] = {}
    for b in blocks:
        if b.end > lo and b.start < hi and b.end > b.start:
            by_status.setdefault(b.status, []).append((max(b.start, lo), min(b.end, hi)))
    out: list[BusyBlock] = []
    for status, spans in by_status.items():
        merged: list[list[datetime]] = []
        for s, e in sorted(spans):
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        out.extend(BusyBlock(s, e, status) for s, e in merged)
    return tuple(sorted(out, key=lambda b: (b.start, b.end, b.status)))


def check_event(event: EventSpec) -> None:
    """Reject what no provider can store: naive datetimes, an unknown zone, end <= start."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    for name in ("start", "end"):
        value: datetime = getattr(event, name)
        if value.tzinfo is None or value.utcoffset() is None:
            raise Rejected(f"event {name} must be timezone-aware")
    if event.end <= event.start:
        raise Rejected("event end must be after its start")
    try:
        ZoneInfo(event.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise Rejected(f"unknown time zone {event.time_zone!r}") from None


# --------------------------------------------------------------------- errors

_SEVERITY: tuple[type[DeliveryError], ...] = (AuthExpired, RateLimited, TransientError, Rejected)


def worst(errors: Sequence[DeliveryError]) -> DeliveryError:
    """The error the engine must act on first: auth, then rate limit, transient, rejected."""

    def rank(exc: DeliveryError) -> int:
        for n, kind in enumerate(_SEVERITY):
            if isinstance(exc, kind):
                return n
        return len(_SEVERITY)

    return min(errors, key=rank)


# --------------------------------------------------------------------- calls


class CallMeter:
    """Paces every request on the engine's shared limiter and counts them.

    ``wait()`` may be called from pool threads: the pacer is entered by one thread
    at a time (a pacer reserves send times in order, so nothing is lost).
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._lock = threading.Lock()
        self._pace_lock = threading.Lock()
        self.calls = 0

    def __call__(self) -> None:
        with self._pace_lock:
            self.runtime.pacer.wait()
        with self._lock:
            self.calls += 1


# ----------------------------------------------------------------- free/busy

# One job's answer: per calendar id, its busy blocks or an error text.
JobAnswer = dict[str, tuple[list[BusyBlock], str | None]]


@dataclass
class _Job:
    ids: list[str]
    lo: datetime
    hi: datetime
    run: Callable[[], JobAnswer]
    answer: JobAnswer | None = None
    error: DeliveryError | None = None


def gather_free_busy(
    calendar_ids: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    per_query: int,
    span: timedelta,
    prepare: Callable[[list[str], datetime, datetime], Callable[[], JobAnswer]],
    concurrency: int,
) -> dict[str, CalendarBusy]:
    """Run ``prepare(ids, lo, hi)()`` for every chunk and window (``prepare`` runs in the
    calling thread, the callable it returns on the pool) and assemble the answers."""
    lo, hi = as_utc(start, "start"), as_utc(end, "end")
    ids = unique(calendar_ids)
    if not ids:
        return {}
    if hi <= lo:
        return {cid: CalendarBusy(cid) for cid in ids}
    jobs = [
        _Job(part, w_lo, w_hi, prepare(part, w_lo, w_hi))
        for w_lo, w_hi in split_range(lo, hi, span)
        for part in chunks(ids, per_query)
    ]
    _run_all(jobs, concurrency)
    failed = [j.error for j in jobs if j.error is not None]
    connection_wide = [e for e in failed if isinstance(e, (AuthExpired, RateLimited))]
    if connection_wide:
        raise worst(connection_wide)
    if failed and len(failed) == len(jobs):
        raise worst(failed)
    blocks: dict[str, list[BusyBlock]] = {cid: [] for cid in ids}
    errors: dict[str, str] = {}
    for job in jobs:
        for cid in job.ids:
            if job.error is not None:
                errors.setdefault(cid, str(job.error))
                continue
            assert job.answer is not None
            found, error = job.answer.get(cid, ([], "missing from the provider's answer"))
            if error:
                errors.setdefault(cid, error)
            blocks[cid].extend(found)
    return {
        cid: CalendarBusy(cid, error=errors[cid])
        if cid in errors
        else CalendarBusy(cid, merge_blocks(blocks[cid], lo, hi))
        for cid in ids
    }


def _run_one(job: _Job) -> None:
    try:
        job.answer = job.run()
    except DeliveryError as exc:
        job.error = exc
    except Exception as exc:  # noqa: BLE001 - a bug or an SDK surprise: unknown, not free
        job.error = TransientError(f"{type(exc).__name__}: {exc}")


def _run_all(jobs: list[_Job], concurrency: int) -> None:
    if len(jobs) == 1 or concurrency <= 1:
        for job in jobs:
            _run_one(job)
        return
    pool = io_pool()
    pending: set[Future[None]] = set()
    queue = list(jobs)
    while queue or pending:
        while queue and len(pending) < concurrency:
            pending.add(pool.submit(_run_one, queue.pop(0)))
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            future.result()
