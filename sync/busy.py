"""Busy time of a tenant's staff: their calendars through the connectors, and
our own bookings from the database.

**Calendars.** Staff are grouped per calendar connection; each connection is
asked once, for all of its calendars, through
:meth:`CalendarConnector.free_busy`, which splits the ids in chunks of the
provider's limit (freeBusy 50 calendars, getSchedule 20) and runs them
concurrently; connections are asked concurrently too. The provider cost of a
query is one call per connection per chunk (per range window). A calendar
whose busy state cannot be read (no calendar, connection not connected or
needing re-authorization, provider error, per-calendar error) is *unknown*:
never free, reported to the secretary.

**Cache.** Known busy blocks are kept in-process for ``BUSY_TTL`` seconds per
(tenant, connection, calendar) with the window they cover; a later query whose
window lies inside a fresh entry needs no provider call. Unknown states are
not cached. Booking reads the calendar fresh (``fresh=True``) and drops the
staff member's entry when it writes to their calendar. The cache only ever
hides *external* changes for up to ``BUSY_TTL``: our own bookings come from
the database on every query, so a booked slot disappears at once in every
process.

**Busy store.** The calendar pulls (:mod:`sync.calendar_sync`) keep every staff
calendar's events in ``calendar_busy_events`` (:func:`record_pull`: a full read
replaces them, an incremental read applies its changes; recurring events are read
as concrete instances, cancelling a series removes its instances). A query that
misses the in-process cache is answered from that table, with no provider call,
when the calendar's store is *fresh*: its cursor is live and was saved by a
successful pull within ``busy_store_fresh_minutes`` (connection setting, default
``STORE_FRESH_MINUTES``), or a change channel on the calendar is active. The store
covers only the *pull window* fixed by the last full read (Google: read time −
``busy_window_past_days`` (1) to + ``busy_window_future_days`` (90); Outlook: the
delta window, ``delta_past_days`` / ``delta_future_days``); a query reaching
outside it, a stale store, or ``fresh=True`` (booking) asks freeBusy as before.
Busy = not cancelled and not shown as free (transparent, declined by the owner,
working location / Graph ``free``, ``workingElsewhere``); tentative counts.
Known gaps: a recurrence rule edited so that instances disappear leaves those
instances in the store until the next full read (the provider does not list them
as cancelled), and an event we delete stays busy until the pull that reads it.

**Own bookings.** Pending and confirmed appointments are OWN busy intervals
carrying their appointment type's buffers (and counted by daily limits). A
pending row older than ``PENDING_TTL`` belongs to a request that died between
reserving and confirming; it stops counting (its calendar event, if one was
written, still shows as external busy time).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.orm import Session

from connectors.base import DeliveryError, RateLimited
from connectors.calendar import BusyBlock, CalendarBusy, CalendarConnector, EventChange
from mappings.schema import StaffMember, TenantConfig
from sync.availability import BusyInterval, BusyKind, FairnessStats
from sync.connection_use import ClientPool, ConnectionUnavailable, pause, use
from sync.pull_runner import CALENDAR_STREAM
from sync.store.busy_models import CalendarBusyEvent, CalendarBusyWindow
from sync.store.calendar_sync_models import CalendarChannel
from sync.store.db import session_scope
from sync.store.models import Appointment, Connection, PullCursor, utcnow

log = logging.getLogger(__name__)

BUSY_TTL = 30.0
"""Seconds a calendar's busy blocks are reused without asking the provider again."""
PENDING_TTL = timedelta(minutes=5)
"""A pending booking older than this died before confirming (longer than any calendar write)."""
STORE_FRESH_MINUTES = 20.0
"""A calendar's stored events answer while its last successful pull is younger (default)."""
WINDOW_PAST_DAYS = 1.0
WINDOW_FUTURE_DAYS = 90.0
FAIRNESS_LOOKBACK = timedelta(days=30)
ACTIVE = ("pending", "confirmed")


# --------------------------------------------------------------------------- cache


@dataclass
class _Entry:
    lo: datetime
    hi: datetime
    at: float
    blocks: tuple[BusyBlock, ...]


CacheKey = tuple[str, str, str]  # tenant id, connection id, calendar id


class BusyCache:
    """Fresh busy blocks per calendar, with the window each answer covers. Thread-safe."""

    def __init__(self, ttl: float = BUSY_TTL, max_keys: int = 20_000) -> None:
        self.ttl, self.max_keys = ttl, max_keys
        self._lock = threading.Lock()
        self._entries: dict[CacheKey, list[_Entry]] = {}

    def get(self, key: CacheKey, lo: datetime, hi: datetime) -> tuple[BusyBlock, ...] | None:
        now = time.monotonic()
        with self._lock:
            for entry in self._entries.get(key, ()):
                if now - entry.at < self.ttl and entry.lo <= lo and hi <= entry.hi:
                    return tuple(b for b in entry.blocks if b.end > lo and b.start < hi)
        return None

    def put(self, key: CacheKey, lo: datetime, hi: datetime, blocks: Sequence[BusyBlock]) -> None:
        now = time.monotonic()
        with self._lock:
            kept = [
                e for e in self._entries.get(key, ())
                if now - e.at < self.ttl and not (lo <= e.lo and e.hi <= hi)
            ]  # fmt: skip
            kept.append(_Entry(lo, hi, now, tuple(blocks)))
            self._entries[key] = kept[-4:]
            if len(self._entries) > self.max_keys:
                self._prune(now)

    def _prune(self, now: float) -> None:
        for key in [k for k, v in self._entries.items() if all(now - e.at >= self.ttl for e in v)]:
            del self._entries[key]
        while len(self._entries) > self.max_keys:  # still full: drop the oldest keys
            del self._entries[next(iter(self._entries))]

    def invalidate(self, tenant_id: str, connection_id: str, calendar_id: str) -> None:
        with self._lock:
            self._entries.pop((tenant_id, connection_id, calendar_id), None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


CACHE = BusyCache()


# --------------------------------------------------------------------------- connectors


POOL = ClientPool("calendar")
"""Calendar connectors kept between requests (see ``sync.connection_use.ClientPool``)."""

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="relais-busy")
        return _executor


CalendarUnreachable = ConnectionUnavailable
"""The connection cannot be used now; ``str()`` says why, for people."""
pause_connection = pause


def with_connector(connection_id: str, call: Any) -> Any:
    """``call(connector)`` on the connection's calendar connector, opened by
    :func:`sync.connection_use.use` (fresh token, pause respected, an early 401
    refreshed and tried once more, limits and expiries acted on)."""
    return use(connection_id, "calendar", call, what="calendar", pool=POOL)


# --------------------------------------------------------------------------- calendar busy


@dataclass
class BusyFetch:
    """Busy time per staff member (``error`` set = unknown) and what it cost."""

    by_staff: dict[str, CalendarBusy]
    provider_calls: int = 0
    cache_hits: int = 0
    store_hits: int = 0  # answered from the busy store (no provider call)
    calendars: dict[str, tuple[str, str]] = field(default_factory=dict)  # staff → (conn, cal)


def _ask(
    connection_id: str, calendar_ids: list[str], lo: datetime, hi: datetime
) -> tuple[dict[str, CalendarBusy], int]:
    """Busy time of ``calendar_ids`` on one connection; (answers, provider calls made).

    The connector splits the ids in chunks of its ``max_calendars_per_query``
    and the range in windows the provider accepts, and runs them concurrently.
    """
    calls = 0

    def run(connector: CalendarConnector) -> dict[str, CalendarBusy]:
        nonlocal calls
        before = int(getattr(connector, "calls", 0))
        try:
            return connector.free_busy(calendar_ids, lo, hi)
        finally:
            calls += int(getattr(connector, "calls", 0)) - before

    try:
        answers = with_connector(connection_id, run)
    except CalendarUnreachable as exc:
        reason = str(exc)
    except RateLimited as exc:  # the connection is paused (sync.connection_use)
        reason = f"the calendar provider asks us to wait until {exc.reset_at:%H:%M:%S} UTC"
    except DeliveryError as exc:
        reason = f"the calendar provider did not answer ({exc.kind}: {exc})"
    except Exception as exc:  # noqa: BLE001 - a connector bug makes the state unknown, not a 500
        log.exception("calendar connector failed on free_busy")
        reason = f"internal error reading the calendar: {type(exc).__name__}"
    else:
        missing = "the provider did not answer for this calendar"
        return {
            cid: answers.get(cid) or CalendarBusy(cid, error=missing) for cid in calendar_ids
        }, calls
    return {cid: CalendarBusy(cid, error=reason) for cid in calendar_ids}, calls


def fetch_calendar_busy(
    tenant_id: str,
    config: TenantConfig,
    members: Sequence[StaffMember],
    lo: datetime,
    hi: datetime,
    *,
    fresh: bool = False,
    cache: BusyCache = CACHE,
) -> BusyFetch:
    """Busy blocks in ``[lo, hi)`` of each member's calendar (UTC, aware)."""
    with session_scope(readonly=True) as session:
        connections = session.scalars(
            select(Connection).where(Connection.tenant_id == tenant_id)
        ).all()
        rows = {c.name: (c.id, c.status, c.provider) for c in connections}
        settings = {c.id: dict(c.settings or {}) for c in connections}
    result = BusyFetch({})
    wanted: dict[str, dict[str, list[str]]] = {}  # connection id → calendar id → staff ids
    for member in members:
        calendar = member.calendar
        if calendar is None:
            result.by_staff[member.id] = CalendarBusy("", error="no calendar is configured")
            continue
        row = rows.get(calendar.connection)
        if row is None or row[1] != "active":
            status = row[1].replace("_", " ") if row else "not stored yet"
            result.by_staff[member.id] = CalendarBusy(
                calendar.id, error=f"calendar connection {calendar.connection!r} is {status}"
            )
            continue
        connection_id = row[0]
        result.calendars[member.id] = (connection_id, calendar.id)
        blocks = None if fresh else cache.get((tenant_id, connection_id, calendar.id), lo, hi)
        if blocks is not None:
            result.cache_hits += 1
            result.by_staff[member.id] = CalendarBusy(calendar.id, blocks)
            continue
        wanted.setdefault(connection_id, {}).setdefault(calendar.id, []).append(member.id)

    if not fresh and wanted:  # the busy store the calendar pulls keep up to date
        pairs = [(cid, cal) for cid, calendars in wanted.items() for cal in calendars]
        for (connection_id, calendar_id), blocks in stored_busy(pairs, lo, hi, settings).items():
            staff_ids = wanted[connection_id].pop(calendar_id)
            if not wanted[connection_id]:
                del wanted[connection_id]
            cache.put((tenant_id, connection_id, calendar_id), lo, hi, blocks)
            for staff_id in staff_ids:
                result.store_hits += 1
                result.by_staff[staff_id] = CalendarBusy(calendar_id, blocks)

    jobs = [(cid, list(calendars)) for cid, calendars in wanted.items()]
    if len(jobs) == 1:
        answers = [_ask(jobs[0][0], jobs[0][1], lo, hi)]
    else:
        futures = [_pool().submit(_ask, cid, ids, lo, hi) for cid, ids in jobs]
        answers = [f.result() for f in futures]
    for (connection_id, calendar_ids), (answer, calls) in zip(jobs, answers, strict=True):
        result.provider_calls += calls
        for calendar_id in calendar_ids:
            busy = answer[calendar_id]
            if busy.error is None:
                cache.put((tenant_id, connection_id, calendar_id), lo, hi, busy.busy)
            for staff_id in wanted[connection_id][calendar_id]:
                result.by_staff[staff_id] = busy
    return result


def invalidate_staff(tenant_id: str, member: StaffMember, connection_id: str | None) -> None:
    if member.calendar is not None and connection_id is not None:
        CACHE.invalidate(tenant_id, connection_id, member.calendar.id)


def external_intervals(
    busy: CalendarBusy, *, minus: tuple[datetime, datetime] | None = None
) -> list[BusyInterval]:
    """Calendar blocks as EXTERNAL intervals; ``minus`` cuts out one range (an
    appointment's own event while it is being moved)."""
    out = []
    for block in busy.busy:
        pieces = [(block.start, block.end)]
        if minus is not None:
            m_lo, m_hi = minus
            pieces = [
                (s, e)
                for s, e in (
                    (block.start, min(block.end, m_lo)),
                    (max(block.start, m_hi), block.end),
                )
                if e > s
            ]
        out.extend(BusyInterval.external(s, e) for s, e in pieces)
    return out


# --------------------------------------------------------------------------- busy store


def store_window(
    provider: str, settings: dict[str, Any], now: datetime
) -> tuple[datetime, datetime]:
    """The window a full read stores (see the module doc), from ``now`` (taken before
    the read, so it lies inside the provider's own window: the connector's
    ``changes_window`` when its full read follows one, else ours)."""
    from connectors.registry import calendar_connector_class

    window = calendar_connector_class(provider).changes_window(settings, now)
    if window is not None:
        return window[0] + timedelta(minutes=1), window[1]
    past = float(settings.get("busy_window_past_days", WINDOW_PAST_DAYS))
    future = float(settings.get("busy_window_future_days", WINDOW_FUTURE_DAYS))
    return now - timedelta(days=past), now + timedelta(days=future)


def _chunks(items: Sequence[str], size: int = 500) -> Iterator[list[str]]:
    for lo in range(0, len(items), size):
        yield list(items[lo : lo + size])


def record_pull(
    session: Session,
    connection_id: str,
    calendar_id: str,
    changes: Sequence[EventChange],
    *,
    full_window: tuple[datetime, datetime] | None = None,
) -> int:
    """Apply what a pull read to the busy store; ``full_window`` set = a full read
    (the calendar's stored events are replaced and the window reset). Returns the
    number of events stored or updated."""
    here = (
        CalendarBusyEvent.connection_id == connection_id,
        CalendarBusyEvent.calendar_id == calendar_id,
    )
    window = session.get(CalendarBusyWindow, (connection_id, calendar_id), with_for_update=True)
    if full_window is not None:
        session.execute(delete(CalendarBusyEvent).where(*here))
        if window is None:
            window = CalendarBusyWindow(connection_id=connection_id, calendar_id=calendar_id)
            session.add(window)
        window.window_start, window.window_end = full_window
        window.filled_at = utcnow()
    elif window is None:
        return 0  # never read in full since the store exists: it does not answer yet
    lo, hi = window.window_start, window.window_end
    latest: dict[str, EventChange] = {}
    for change in changes:
        latest[change.event_id] = change  # the last word on an event wins
    gone: list[str] = []
    rows: list[dict[str, Any]] = []
    for event_id, change in latest.items():
        span = (change.start, change.end) if change.start and change.end else change.busy_span
        if change.cancelled or change.status == "removed" or span is None:
            gone.append(event_id)
        elif span[1] <= span[0] or span[0] >= hi or span[1] <= lo:
            gone.append(event_id)  # empty, or outside the window
        else:
            rows.append(
                {
                    "connection_id": connection_id,
                    "calendar_id": calendar_id,
                    "event_id": event_id,
                    "series_id": change.series_id,
                    "start": span[0],
                    "end": span[1],
                    "status": "tentative" if change.status == "tentative" else "confirmed",
                    "transparent": change.transparent,
                }
            )
    if full_window is None:
        cancelled = [e for e, c in latest.items() if c.cancelled or c.status == "removed"]
        for part in _chunks(cancelled):  # a cancelled series takes its instances along
            session.execute(
                delete(CalendarBusyEvent).where(*here, CalendarBusyEvent.series_id.in_(part))
            )
        for part in _chunks(gone + [r["event_id"] for r in rows]):
            session.execute(
                delete(CalendarBusyEvent).where(*here, CalendarBusyEvent.event_id.in_(part))
            )
    for lo_i in range(0, len(rows), 1000):
        session.execute(insert(CalendarBusyEvent), rows[lo_i : lo_i + 1000])
    return len(rows)


def stored_busy(
    pairs: Sequence[tuple[str, str]],
    lo: datetime,
    hi: datetime,
    settings: dict[str, dict[str, Any]],
    now: datetime | None = None,
) -> dict[tuple[str, str], tuple[BusyBlock, ...]]:
    """Busy blocks in ``[lo, hi)`` from the busy store, for each (connection,
    calendar) whose store is fresh and covers the range; the others are left out."""
    now = now or utcnow()
    out: dict[tuple[str, str], tuple[BusyBlock, ...]] = {}
    with session_scope(readonly=True) as session:
        for connection_id, calendar_id in pairs:
            window = session.get(CalendarBusyWindow, (connection_id, calendar_id))
            if window is None or lo < window.window_start or hi > window.window_end:
                continue
            cursor = session.get(PullCursor, (connection_id, CALENDAR_STREAM, calendar_id))
            if cursor is None or cursor.cursor is None:
                continue  # never read, or a full resync is due
            minutes = float(
                settings.get(connection_id, {}).get("busy_store_fresh_minutes", STORE_FRESH_MINUTES)
            )
            if cursor.updated_at < now - timedelta(minutes=minutes):
                channel = session.scalar(
                    select(CalendarChannel.id).where(
                        CalendarChannel.connection_id == connection_id,
                        CalendarChannel.calendar_id == calendar_id,
                        CalendarChannel.status == "active",
                        CalendarChannel.expires_at > now,
                    )
                )
                if channel is None:
                    continue
            events = session.execute(
                select(CalendarBusyEvent.start, CalendarBusyEvent.end, CalendarBusyEvent.status)
                .where(
                    CalendarBusyEvent.connection_id == connection_id,
                    CalendarBusyEvent.calendar_id == calendar_id,
                    CalendarBusyEvent.start < hi,
                    CalendarBusyEvent.end > lo,
                    CalendarBusyEvent.transparent.is_(False),
                )
                .order_by(CalendarBusyEvent.start)
            ).all()
            out[(connection_id, calendar_id)] = tuple(
                BusyBlock(max(s, lo), min(e, hi), "tentative" if st == "tentative" else "busy")
                for s, e, st in events
            )
    return out


# --------------------------------------------------------------------------- own bookings


def _active_clause(now: datetime) -> Any:
    return or_(
        Appointment.status == "confirmed",
        and_(Appointment.status == "pending", Appointment.updated_at > now - PENDING_TTL),
    )


def max_buffer(config: TenantConfig) -> timedelta:
    minutes = max(
        (max(t.buffer_before_minutes, t.buffer_after_minutes) for t in config.appointment_types),
        default=0,
    )
    return timedelta(minutes=minutes)


def own_busy(
    session: Session,
    tenant_id: str,
    config: TenantConfig,
    staff_ids: Sequence[str],
    lo: datetime,
    hi: datetime,
    *,
    exclude: str | None = None,
) -> dict[str, list[BusyInterval]]:
    """Our pending and confirmed bookings touching ``[lo, hi)`` (widened by the
    largest buffer an existing booking may carry), as OWN intervals."""
    now = utcnow()  # the rows' own timestamps: real time, whatever the query's "now"
    widen = max_buffer(config)
    query = select(
        Appointment.id,
        Appointment.staff_id,
        Appointment.start,
        Appointment.end,
        Appointment.appointment_type,
    ).where(
        Appointment.tenant_id == tenant_id,
        Appointment.staff_id.in_(list(staff_ids)),
        Appointment.start < hi + widen,
        Appointment.end > lo - widen,
        _active_clause(now),
    )
    out: dict[str, list[BusyInterval]] = {staff_id: [] for staff_id in staff_ids}
    types = {t.id: t for t in config.appointment_types}
    for appointment_id, staff_id, start, end, type_id in session.execute(query):
        if appointment_id == exclude:
            continue
        spec = types.get(type_id or "")
        before = timedelta(minutes=spec.buffer_before_minutes) if spec else timedelta(0)
        after = timedelta(minutes=spec.buffer_after_minutes) if spec else timedelta(0)
        out[staff_id].append(BusyInterval(start, end, BusyKind.OWN, before, after))
    return out


def fairness(
    session: Session, tenant_id: str, staff_ids: Sequence[str]
) -> dict[str, FairnessStats]:
    """Round-robin input: own bookings made over the last ``FAIRNESS_LOOKBACK``."""
    now = utcnow()
    rows = session.execute(
        select(Appointment.staff_id, func.count(), func.max(Appointment.created_at))
        .where(
            Appointment.tenant_id == tenant_id,
            Appointment.staff_id.in_(list(staff_ids)),
            Appointment.status.in_(ACTIVE),
            Appointment.created_at >= now - FAIRNESS_LOOKBACK,
        )
        .group_by(Appointment.staff_id)
    )
    out = {}
    for staff_id, count, last in rows:
        if last is not None and last.tzinfo is None:  # an aggregate skips the column type
            last = last.replace(tzinfo=now.tzinfo)
        out[staff_id] = FairnessStats(int(count), last)
    return out
