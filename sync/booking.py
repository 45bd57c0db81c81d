"""Availability and booking: the tenant's configuration and the live calendars
turned into free slots, and a slot turned into exactly one calendar event.

**Availability** (:func:`find_availability`): working hours, overrides,
holidays, buffers and notice from the tenant's YAML (:func:`staff_schedule`,
:func:`engine_type`); busy time from the calendars (one provider call per
connection per chunk, cached briefly: :mod:`sync.busy`) plus our own pending
and confirmed appointments from the database, read on every query; the pure
engine (:mod:`sync.availability`) does the rest. A calendar whose busy state
is unknown gives no slot and is listed as unavailable.

**Booking** (:func:`book`), never double-booked:

1. an ``Idempotency-Key`` already used returns its appointment, creates nothing;
2. the staff member's calendar is read fresh (no cache);
3. the staff member is locked: on PostgreSQL ``SELECT … FOR UPDATE`` of their
   row in ``staff_locks`` (created on first use), so bookings for the same
   person run one at a time while other people's bookings proceed; on SQLite
   every writing transaction is ``BEGIN IMMEDIATE``, i.e. holds the database
   write lock, which serialises all bookings;
4. under the lock the slot is checked (:func:`~sync.availability.check_slot`,
   the listing's exact rules) against the fresh calendar plus our pending and
   confirmed appointments, read under the lock; taken → :class:`SlotTaken`
   (409) with the next free slots;
5. the appointment is inserted ``pending`` and committed: from now on every
   other secretary sees the slot as taken;
6. the calendar event is created outside any database lock, with an
   idempotency key (a retry returns the same event);
7. success → ``confirmed``, the event reference stored, and one
   ``appointment.created`` delivery per CRM connection written in the same
   transaction (transactional outbox), enqueued after commit; failure →
   ``failed`` (the slot is free again) and :class:`CalendarWriteFailed`
   (502/503) saying the booking was NOT made.

The calendar is read *before* taking the lock so that no provider call ever
runs under a database lock (on SQLite that lock is the whole database's write
lock). That costs nothing in safety: two of our own bookings are told apart
by the database check under the lock, and a change made in the calendar
itself is never serialised by our lock, wherever the read happens.

Outbox rule for appointments: every connection of the tenant with role
``crm`` (not disabled) receives ``appointment.created|updated|cancelled``;
the payload is a snapshot of the appointment at that change
(``Delivery.params``), so a late retry sends what was true then.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connectors.base import AuthExpired, DeliveryError, RateLimited, Rejected, TransientError
from connectors.calendar import CalendarBusy, CalendarConnector, EventRef, EventSpec
from mappings.schema import AppointmentTypeSpec, StaffMember, TenantConfig
from sync import busy as busy_mod
from sync.availability import (
    AppointmentType,
    AvailabilityQuery,
    BusyInterval,
    FairnessStats,
    HolidayRules,
    Slot,
    StaffCalendar,
    StaffSchedule,
    TimeRange,
    busy_window,
    check_slot,
    compute_any_staff_availability,
    compute_availability,
)
from sync.domain import as_utc_iso
from sync.outbox import mark_wake
from sync.store.db import is_postgres, session_scope
from sync.store.models import (
    Appointment,
    AuditEvent,
    Connection,
    Delivery,
    StaffLock,
    Tenant,
    new_id,
    utcnow,
)
from sync.tenants import parsed_config

log = logging.getLogger(__name__)

MAX_WINDOW_DAYS = 62
"""Longest availability window one query may ask for (getSchedule's limit)."""
NEXT_SLOTS = 5
DEFAULT_DAYS = 7
NEXT_SLOTS_DAYS = 7
ANY = "any"


# --------------------------------------------------------------------------- errors


class BookingError(Exception):
    """A request the hub refuses; ``status``/``code`` map to the API error."""

    status = 422
    code = "invalid_request"

    def __init__(self, message: str, details: Any = None, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if details is None and field is not None:
            details = [{"field": field, "problem": message}]
        self.details = details


class InvalidRequest(BookingError):
    pass


class NotFound(BookingError):
    status, code = 404, "not_found"


class SlotUnavailable(BookingError):
    """The time is not bookable at all (outside hours, notice, horizon, grid)."""

    status, code = 422, "slot_unavailable"


class SlotTaken(BookingError):
    """Someone or something already holds the slot (or the daily limit is reached)."""

    status, code = 409, "slot_taken"


class Conflict(BookingError):
    status, code = 409, "conflict"


class CalendarWriteFailed(BookingError):
    """The calendar refused or did not answer; nothing was booked, moved or cancelled."""

    def __init__(self, message: str, *, status: int, code: str, details: Any = None) -> None:
        super().__init__(message, details)
        self.status, self.code = status, code


# --------------------------------------------------------------------------- config → engine


def staff_schedule(config: TenantConfig, member: StaffMember) -> StaffSchedule:
    """The engine's schedule of one staff member from the tenant's YAML.

    Weekly hours: the member's ``working_hours``, else the tenant's
    ``business_hours``. Overrides: the member's own closures (closed) and
    ``overrides``. Tenant-wide: ``business_hours.closures`` and ``holidays``.
    """
    hours = config.working_hours(member)
    weekly: dict[int, list[TimeRange]] = {}
    if hours is not None:
        for day in range(7):
            weekly[day] = [TimeRange(r.start, r.end) for r in hours.day(day)]
    overrides: dict[Any, list[TimeRange]] = {}
    if member.working_hours is not None:
        overrides.update({day: [] for day in member.working_hours.closures})
    for day, ranges in member.overrides.items():
        overrides[day] = [TimeRange(r.start, r.end) for r in ranges]
    closures = frozenset(config.business_hours.closures) if config.business_hours else frozenset()
    holidays = config.holidays
    rules = HolidayRules(
        holidays.country if holidays else None,
        holidays.subdivision if holidays else None,
        closures,
    )
    return StaffSchedule(member.timezone or config.timezone, weekly, overrides, rules)


def engine_type(spec: AppointmentTypeSpec) -> AppointmentType:
    return AppointmentType(
        duration=timedelta(minutes=spec.duration_minutes),
        buffer_before=timedelta(minutes=spec.buffer_before_minutes),
        buffer_after=timedelta(minutes=spec.buffer_after_minutes),
        minimum_notice=timedelta(minutes=spec.minimum_notice_minutes),
        booking_horizon_days=spec.booking_horizon_days,
        interval=timedelta(minutes=spec.interval_minutes) if spec.interval_minutes else None,
        align=spec.align,
        daily_limit=spec.daily_limit,
    )


def _zone(name: str, field_name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except Exception:  # noqa: BLE001 - every failure means "not a zone"
        raise InvalidRequest(
            f"{name!r} is not an IANA time zone",
            [{"field": field_name, "problem": f"unknown time zone {name!r}",
              "hint": "use an IANA zone such as Europe/Paris"}],
        ) from None  # fmt: skip


def _type(config: TenantConfig, type_id: str, field_name: str = "type") -> AppointmentTypeSpec:
    spec = config.appointment_type(type_id)
    if spec is None:
        known = ", ".join(t.id for t in config.appointment_types) or "none configured"
        raise InvalidRequest(
            f"unknown appointment type {type_id!r}",
            [{"field": field_name, "problem": f"unknown appointment type {type_id!r}",
              "hint": f"use one of: {known}"}],
        )  # fmt: skip
    return spec


def _members(
    config: TenantConfig, spec: AppointmentTypeSpec, wanted: str, field_name: str
) -> tuple[list[StaffMember], bool]:
    """The staff asked for (comma-separated ids, or ``any``) and whether it is any-staff."""
    able = config.bookable_staff(spec)
    if wanted.strip().lower() == ANY:
        if not able:
            raise InvalidRequest(
                f"nobody can take appointments of type {spec.id!r}",
                [{"field": field_name, "problem": "no staff member with a calendar takes "
                  f"{spec.id!r}", "hint": "ask the tenant admin to connect a calendar"}],
            )  # fmt: skip
        return able, True
    ids = list(dict.fromkeys(s.strip() for s in wanted.split(",") if s.strip()))
    if not ids:
        raise InvalidRequest("no staff given", field=field_name)
    members = []
    able_ids = {m.id for m in able}
    for staff_id in ids:
        member = config.staff_member(staff_id)
        if member is None:
            known = ", ".join(s.id for s in config.staff)
            raise InvalidRequest(
                f"unknown staff member {staff_id!r}",
                [{"field": field_name, "problem": f"unknown staff member {staff_id!r}",
                  "hint": f"use one of: {known}, or {ANY}"}],
            )  # fmt: skip
        if member.id not in able_ids:
            who = ", ".join(sorted(able_ids)) or "nobody"
            raise InvalidRequest(
                f"{staff_id} does not take appointments of type {spec.id!r}",
                [{"field": field_name, "problem": f"{staff_id} does not take {spec.id!r}",
                  "hint": f"staff who do: {who}"}],
            )  # fmt: skip
        members.append(member)
    return members, False


def _staff_calendar(
    member: StaffMember,
    schedule: StaffSchedule,
    external: CalendarBusy,
    own: Sequence[BusyInterval],
    minus: tuple[datetime, datetime] | None = None,
) -> StaffCalendar:
    if external.error is not None:
        return StaffCalendar.unknown(member.id, schedule, external.error)
    return StaffCalendar(
        member.id, schedule, [*busy_mod.external_intervals(external, minus=minus), *own]
    )


def _slot_view(slot: Slot) -> dict[str, Any]:
    return slot.to_dict()


# --------------------------------------------------------------------------- availability


@dataclass
class AvailabilityAnswer:
    body: dict[str, Any]
    provider_calls: int
    cache_hits: int


def find_availability(
    tenant_id: str,
    config: TenantConfig,
    *,
    staff: str,
    type_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    tz: str | None = None,
) -> AvailabilityAnswer:
    """Free slots of ``type_id`` whose start lies in ``[start, end)``, in zone ``tz``.

    Defaults: from now, over ``DEFAULT_DAYS`` (or the booking horizon if shorter).
    """
    spec = _type(config, type_id)
    members, any_mode = _members(config, spec, staff, "staff")
    tz = tz or config.timezone
    _zone(tz, "tz")
    now = utcnow()
    start = start or now
    end = end or start + timedelta(days=min(DEFAULT_DAYS, spec.booking_horizon_days + 1))
    _check_window(spec, start, end, now)
    etype = engine_type(spec)
    schedules = {m.id: staff_schedule(config, m) for m in members}
    query = AvailabilityQuery(start, end, now=now, timezone=tz)
    lo, hi = busy_window(query, etype, schedules.values())
    fetched = busy_mod.fetch_calendar_busy(tenant_id, config, members, lo, hi)
    ids = [m.id for m in members]
    with session_scope(readonly=True) as session:
        own = busy_mod.own_busy(session, tenant_id, config, ids, lo, hi)
        stats = busy_mod.fairness(session, tenant_id, ids) if any_mode else None
    calendars = [
        _staff_calendar(m, schedules[m.id], fetched.by_staff[m.id], own[m.id]) for m in members
    ]
    if any_mode:
        result = compute_any_staff_availability(query, etype, calendars, stats)
    else:
        result = compute_availability(query, etype, calendars)
    body = {
        "type": spec.id,
        "type_label": spec.label,
        "duration_minutes": spec.duration_minutes,
        "timezone": tz,
        "start": start.astimezone(ZoneInfo(tz)).isoformat(),
        "end": end.astimezone(ZoneInfo(tz)).isoformat(),
        "staff": ANY if any_mode else ids,
        "slots": [_slot_view(s) for s in result.slots],
        "unavailable": [
            {"staff": u.staff_id, "code": u.code, "reason": u.reason} for u in result.unavailable
        ],
    }
    return AvailabilityAnswer(body, fetched.provider_calls, fetched.cache_hits)


def _check_window(spec: AppointmentTypeSpec, start: datetime, end: datetime, now: datetime) -> None:
    if end <= start:
        raise InvalidRequest("end must be after start", field="end")
    longest = min(spec.booking_horizon_days + 1, MAX_WINDOW_DAYS)
    if end - start > timedelta(days=longest):
        raise InvalidRequest(
            f"the window is longer than {longest} days",
            [{"field": "end", "problem": f"the window is {(end - start).days} days or more; "
              f"at most {longest} days", "hint": f"appointment type {spec.id!r} is bookable "
              f"{spec.booking_horizon_days} days ahead; ask a shorter window"}],
        )  # fmt: skip
    if start > now + timedelta(days=spec.booking_horizon_days + 1):
        raise InvalidRequest(
            f"start is after the booking horizon of {spec.booking_horizon_days} days",
            [{"field": "start", "problem": "after the booking horizon",
              "hint": f"{spec.id!r} is bookable up to {spec.booking_horizon_days} days ahead"}],
        )  # fmt: skip


# --------------------------------------------------------------------------- booking


@dataclass
class BookingRequest:
    staff_id: str  # a staff id, or "any"
    type_id: str
    start: datetime
    caller: dict[str, Any]
    subject: str
    notes: str
    idempotency_key: str
    booked_by: str


@dataclass
class Outcome:
    appointment: Appointment
    created: bool  # False: an Idempotency-Key replay (or nothing changed)
    deliveries: list[Delivery] = field(default_factory=list)


def lock_staff(session: Session, tenant_id: str, staff_id: str) -> None:
    """Serialise bookings of one staff member until the transaction ends.

    PostgreSQL: row lock on ``staff_locks`` (inserted on first use; the
    insert never waits on a committed row). SQLite: nothing to do, the
    transaction already holds the write lock (``BEGIN IMMEDIATE``).
    """
    bind = session.get_bind()
    if not is_postgres(bind):  # type: ignore[arg-type]
        return
    from sqlalchemy.dialects.postgresql import insert

    where = (StaffLock.tenant_id == tenant_id, StaffLock.staff_id == staff_id)
    if session.execute(select(StaffLock.staff_id).where(*where).with_for_update()).first():
        return
    session.execute(
        insert(StaffLock).values(tenant_id=tenant_id, staff_id=staff_id).on_conflict_do_nothing()
    )
    session.execute(select(StaffLock.staff_id).where(*where).with_for_update())


def _load(tenant_id: str) -> TenantConfig:
    with session_scope(readonly=True) as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id!r} not found")
        return parsed_config(tenant)


def _by_key(session: Session, tenant_id: str, key: str) -> Appointment | None:
    return session.scalar(
        select(Appointment).where(
            Appointment.tenant_id == tenant_id, Appointment.idempotency_key == key
        )
    )


def _fairness_order(
    members: list[StaffMember], stats: dict[str, FairnessStats]
) -> list[StaffMember]:
    """Fewest recent bookings first, then least recently booked, then id (as the engine)."""

    def key(member: StaffMember) -> tuple[int, int, float, str]:
        s = stats.get(member.id)
        if s is None:
            return (0, 0, 0.0, member.id)
        last = s.last_booking.timestamp() if s.last_booking else 0.0
        return (s.bookings, 1 if s.last_booking else 0, last, member.id)

    return sorted(members, key=key)


def book(tenant_id: str, request: BookingRequest) -> Outcome:
    """Book one slot (see the module docstring for every step)."""
    config = _load(tenant_id)
    with session_scope(readonly=True) as session:
        existing = _by_key(session, tenant_id, request.idempotency_key)
    retry_of: str | None = None
    if existing is not None:
        if existing.status == "failed":
            retry_of = existing.id  # the same booking asked again: try it again
        elif existing.status == "pending" and _fresh_pending(existing):
            raise Conflict(
                "a booking with this Idempotency-Key is still being written to the calendar",
                [{"field": "Idempotency-Key", "problem": "in progress",
                  "hint": "ask again in a few seconds"}],
            )  # fmt: skip
        elif existing.status == "pending":
            return _resume(tenant_id, config, existing)
        else:
            return Outcome(existing, created=False)

    spec = _type(config, request.type_id)
    members, any_mode = _members(config, spec, request.staff_id, "staff_id")
    now = utcnow()
    start = request.start
    if start < now - timedelta(days=1):
        raise SlotUnavailable("start is in the past", field="start")
    _check_window(spec, start, start + timedelta(minutes=1), now)
    etype = engine_type(spec)
    schedules = {m.id: staff_schedule(config, m) for m in members}
    next_lo = max(start, now)
    next_hi = next_lo + timedelta(days=NEXT_SLOTS_DAYS)
    window = AvailabilityQuery(min(start, next_lo), next_hi, now=now, timezone=config.timezone)
    lo, hi = busy_window(window, etype, schedules.values())
    fetched = busy_mod.fetch_calendar_busy(tenant_id, config, members, lo, hi, fresh=True)
    if any_mode:
        with session_scope(readonly=True) as session:
            stats = busy_mod.fairness(session, tenant_id, [m.id for m in members])
        members = _fairness_order(members, stats)

    refusals: list[tuple[StaffMember, str | None, str]] = []
    calendars: list[StaffCalendar] = []
    for member in members:
        external = fetched.by_staff[member.id]
        try:
            reserved = _reserve(
                tenant_id, config, spec, etype, member, schedules[member.id], external,
                request, now, lo, hi, retry_of,
            )  # fmt: skip
        except _Refused as refused:
            refusals.append((member, refused.code, refused.reason))
            calendars.append(refused.calendar)
            continue
        if isinstance(reserved, Outcome):
            return reserved  # the same Idempotency-Key won meanwhile
        connection_id = fetched.calendars.get(member.id, (None, ""))[0]
        busy_mod.invalidate_staff(tenant_id, member, connection_id)
        return _write_event(tenant_id, config, reserved, member, spec)

    # Nobody could take it: say why, and offer the next free slots.
    query = AvailabilityQuery(next_lo, next_hi, now=now, timezone=members[0].timezone or "UTC")
    if any_mode:
        result = compute_any_staff_availability(query, etype, calendars)
    else:
        result = compute_availability(query, etype, calendars)
    next_slots = [_slot_view(s) for s in result.slots[:NEXT_SLOTS]]
    member, code, reason = refusals[0]
    details: dict[str, Any] = {
        "field": "start",
        "staff_id": ANY if any_mode else member.id,
        "reason": code,
        "problem": reason,
        "next_slots": next_slots,
    }
    if any_mode:
        details["refusals"] = [
            {"staff_id": m.id, "reason": c, "problem": r} for m, c, r in refusals
        ]
    codes = {c for _m, c, _r in refusals}
    if "busy" in codes:
        raise SlotTaken("this slot is no longer free; nothing was booked", details)
    if "daily_limit" in codes:
        raise SlotTaken("the daily booking limit is reached that day; nothing was booked", details)
    if codes == {"calendar_unknown"}:
        raise CalendarWriteFailed(
            f"the calendar cannot be read, so the slot cannot be checked ({reason}); "
            "nothing was booked",
            status=503,
            code="calendar_unavailable",
            details=details,
        )
    raise SlotUnavailable(f"this time cannot be booked: {reason}", details)


class _Refused(Exception):
    def __init__(self, code: str | None, reason: str, calendar: StaffCalendar) -> None:
        super().__init__(reason)
        self.code, self.reason, self.calendar = code, reason, calendar


def _fresh_pending(row: Appointment) -> bool:
    return row.updated_at > utcnow() - busy_mod.PENDING_TTL


def _snapshot_caller(caller: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in caller.items() if v not in (None, "")}


def _reserve(
    tenant_id: str,
    config: TenantConfig,
    spec: AppointmentTypeSpec,
    etype: AppointmentType,
    member: StaffMember,
    schedule: StaffSchedule,
    external: CalendarBusy,
    request: BookingRequest,
    now: datetime,
    lo: datetime,
    hi: datetime,
    retry_of: str | None,
) -> Appointment | Outcome:
    """Steps 3-5: lock, check, insert pending, commit. Raises :class:`_Refused`."""
    start = request.start.astimezone(UTC)
    end = start + etype.duration
    try:
        with session_scope() as session:
            lock_staff(session, tenant_id, member.id)
            row = _by_key(session, tenant_id, request.idempotency_key)
            if row is not None and row.id != retry_of:
                return Outcome(row, created=False)
            own = busy_mod.own_busy(session, tenant_id, config, [member.id], lo, hi)
            calendar = _staff_calendar(member, schedule, external, own[member.id])
            check = check_slot(start, etype, calendar, now)
            if not check.available:
                raise _Refused(check.code, check.reason, calendar)
            if row is None:
                row = Appointment(
                    id=new_id("apt"), tenant_id=tenant_id, idempotency_key=request.idempotency_key
                )
                session.add(row)
            row.staff_id, row.appointment_type = member.id, spec.id
            row.start, row.end, row.status = start, end, "pending"
            row.caller = _snapshot_caller(request.caller)
            row.subject = request.subject or f"{spec.label} — {request.caller.get('name', '')}"
            row.notes, row.booked_by, row.last_error = request.notes, request.booked_by, None
            row.sealed = config.sensitive  # caller, subject, notes encrypted at rest
            row.event_id = row.event_etag = row.calendar_id = row.calendar_connection_id = None
            row.updated_at = utcnow()
            session.flush()
            _audit(session, row, "appointment.reserved", by=request.booked_by)
            return row
    except IntegrityError:
        # The same Idempotency-Key committed meanwhile for another staff member.
        with session_scope(readonly=True) as session:
            row = _by_key(session, tenant_id, request.idempotency_key)
        if row is None:
            raise
        return Outcome(row, created=False)


def _audit(session: Session, row: Appointment, kind: str, **detail: Any) -> None:
    session.add(
        AuditEvent(
            tenant_id=row.tenant_id,
            kind=kind,
            subject_type="appointment",
            subject_id=row.id,
            detail={"staff_id": row.staff_id, "start": as_utc_iso(row.start), **detail},
        )
    )


def _calendar_connection_id(session: Session, tenant_id: str, member: StaffMember) -> str | None:
    if member.calendar is None:
        return None
    return session.scalar(
        select(Connection.id).where(
            Connection.tenant_id == tenant_id, Connection.name == member.calendar.connection
        )
    )


def event_spec(config: TenantConfig, row: Appointment, member: StaffMember) -> EventSpec:
    spec = config.appointment_type(row.appointment_type or "")
    caller = row.caller or {}
    lines = [f"Appelant : {caller.get('name', '')}".rstrip()]
    if caller.get("phone"):
        lines.append(f"Téléphone : {caller['phone']}")
    if caller.get("email"):
        lines.append(f"E-mail : {caller['email']}")
    if spec is not None:
        lines.append(f"Type : {spec.label}")
    if row.notes:
        lines += ["", row.notes]
    lines += ["", f"Réservé par Relais ({row.id})"]
    return EventSpec(
        subject=row.subject,
        start=row.start,
        end=row.end,
        time_zone=member.timezone or config.timezone,
        description="\n".join(lines),
    )


def _calendar_key(row: Appointment) -> str:
    """Same appointment, same slot → same key (a retry finds the event it wrote)."""
    slot = f"{row.staff_id}|{as_utc_iso(row.start)}"
    return f"relais-{row.id}-{hashlib.sha256(slot.encode()).hexdigest()[:10]}"


def _calendar_call(connection_id: str, call: Callable[[CalendarConnector], Any]) -> Any:
    """A calendar write; a transient failure is tried once more (writes are idempotent)."""
    for attempt in (1, 2):
        try:
            return busy_mod.with_connector(connection_id, call)
        except RateLimited as exc:
            busy_mod.pause_connection(connection_id, exc.reset_at)
            raise
        except TransientError:
            if attempt == 2:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")  # pragma: no cover


def _failure(exc: BaseException, what: str) -> CalendarWriteFailed:
    if isinstance(exc, busy_mod.CalendarUnreachable):
        return CalendarWriteFailed(f"{exc}; {what}", status=503, code="calendar_unavailable")
    if isinstance(exc, RateLimited):
        return CalendarWriteFailed(
            f"the calendar provider asks us to slow down until "
            f"{exc.reset_at.isoformat()}; {what}", status=503, code="calendar_unavailable",
        )  # fmt: skip
    if isinstance(exc, AuthExpired):
        return CalendarWriteFailed(
            f"the calendar refused our credentials ({exc}); {what}",
            status=503, code="calendar_unavailable",
        )  # fmt: skip
    if isinstance(exc, TransientError):
        return CalendarWriteFailed(
            f"the calendar provider failed ({exc}); {what}", status=503,
            code="calendar_unavailable",
        )  # fmt: skip
    if isinstance(exc, Rejected):
        return CalendarWriteFailed(
            f"the calendar provider refused the event ({exc}); {what}", status=502,
            code="calendar_rejected",
        )  # fmt: skip
    return CalendarWriteFailed(
        f"internal error writing to the calendar ({type(exc).__name__}); {what}",
        status=502, code="calendar_error",
    )  # fmt: skip


def _write_event(
    tenant_id: str,
    config: TenantConfig,
    row: Appointment,
    member: StaffMember,
    spec: AppointmentTypeSpec,
) -> Outcome:
    """Steps 6-7: create the event, then confirm + outbox (or fail and free the slot)."""
    with session_scope(readonly=True) as session:
        connection_id = _calendar_connection_id(session, tenant_id, member)
    assert member.calendar is not None and connection_id is not None
    calendar_id = member.calendar.id
    event = event_spec(config, row, member)
    key = _calendar_key(row)
    try:
        ref: EventRef = _calendar_call(
            connection_id, lambda c: c.create_event(calendar_id, event, key)
        )
    except Exception as exc:  # noqa: BLE001 - every failure: the slot is freed
        if not isinstance(exc, DeliveryError | busy_mod.CalendarUnreachable):
            log.exception("calendar connector crashed creating an event")
        failure = _failure(exc, "the appointment was NOT booked and the slot is free again")
        with session_scope() as session:
            failed = session.get(Appointment, row.id, with_for_update=True, populate_existing=True)
            assert failed is not None
            failed.status, failed.last_error = "failed", failure.message
            _audit(session, failed, "appointment.failed", reason=failure.message)
        failure.details = [{"field": "calendar", "problem": failure.message,
                            "appointment_id": row.id, "status": "failed"}]  # fmt: skip
        raise failure from None
    with session_scope() as session:
        done = session.get(Appointment, row.id, with_for_update=True, populate_existing=True)
        assert done is not None
        done.status = "confirmed"
        done.calendar_connection_id, done.calendar_id = connection_id, ref.calendar_id
        done.event_id, done.event_etag = ref.event_id, ref.etag
        _audit(session, done, "appointment.confirmed", event_id=ref.event_id)
        deliveries = _outbox(session, config, done, "appointment.created")
        to_wake = mark_wake(session, [d.connection_id for d in deliveries])
    _enqueue(to_wake)
    return Outcome(done, created=True, deliveries=deliveries)


def _resume(tenant_id: str, config: TenantConfig, row: Appointment) -> Outcome:
    """A pending booking whose request died: write (or find) its event now."""
    member = config.staff_member(row.staff_id)
    spec = config.appointment_type(row.appointment_type or "")
    if member is None or spec is None or member.calendar is None:
        raise Conflict("this booking's staff member or type is no longer configured")
    with session_scope() as session:
        lock_staff(session, tenant_id, row.staff_id)
        again = session.get(Appointment, row.id, with_for_update=True, populate_existing=True)
        assert again is not None
        if again.status != "pending":
            return Outcome(again, created=False)
        again.updated_at = utcnow()  # fresh again: it holds the slot while we write
    return _write_event(tenant_id, config, again, member, spec)


def _enqueue(connection_ids: list[str]) -> None:
    if connection_ids:
        from sync.queue import enqueue_connections

        enqueue_connections(connection_ids)


# --------------------------------------------------------------------------- outbox


def appointment_snapshot(config: TenantConfig, row: Appointment, action: str) -> dict[str, Any]:
    """What a destination gets for one change of an appointment (``Delivery.params``)."""
    member = config.staff_member(row.staff_id)
    zone = ZoneInfo((member.timezone if member else None) or config.timezone)
    spec = config.appointment_type(row.appointment_type or "")
    return {
        "appointment": {
            "id": row.id,
            "start": row.start.astimezone(zone).isoformat(),
            "end": row.end.astimezone(zone).isoformat(),
            "subject": row.subject,
            "notes": row.notes,
            "status": "cancelled" if action == "appointment.cancelled" else row.status,
            "type": row.appointment_type,
            "type_label": spec.label if spec else None,
            "timezone": str(zone),
            "staff_id": row.staff_id,
            "event_id": row.event_id,
        },
        "caller": dict(row.caller or {}),
    }


def _outbox(
    session: Session, config: TenantConfig, row: Appointment, action: str
) -> list[Delivery]:
    """One delivery per CRM connection of the tenant, in the caller's transaction."""
    connections = session.scalars(
        select(Connection)
        .where(
            Connection.tenant_id == row.tenant_id,
            Connection.role == "crm",
            Connection.status != "disabled",
        )
        .order_by(Connection.name)
    )
    deliveries = []
    snapshot = appointment_snapshot(config, row, action)
    for connection in connections:
        deliveries.append(
            Delivery.new(
                tenant_id=row.tenant_id,
                appointment_id=row.id,
                connection_id=connection.id,
                rule="appointments",
                action=action,
                params=snapshot,
            )
        )
    session.add_all(deliveries)
    session.flush()
    return deliveries


# --------------------------------------------------------------------------- reschedule, cancel


def _row(session: Session, tenant_id: str, appointment_id: str, lock: bool = False) -> Appointment:
    row = session.get(Appointment, appointment_id, with_for_update=lock, populate_existing=lock)
    if row is None or row.tenant_id != tenant_id:
        raise NotFound(f"appointment {appointment_id!r} not found")
    return row


def _must_be_booked(row: Appointment, doing: str) -> None:
    if row.status == "pending":
        raise Conflict(
            f"cannot {doing} this appointment: it is still being written to the calendar",
            field="status",
        )
    if row.status != "confirmed":
        raise Conflict(f"cannot {doing} this appointment: it is {row.status}", field="status")


def reschedule(
    tenant_id: str,
    appointment_id: str,
    *,
    start: datetime | None,
    subject: str | None = None,
    notes: str | None = None,
    actor: str,
) -> Outcome:
    """Move (and/or retitle) a confirmed appointment: same lock and checks as a booking."""
    config = _load(tenant_id)
    with session_scope(readonly=True) as session:
        row = _row(session, tenant_id, appointment_id)
    _must_be_booked(row, "move")
    member = config.staff_member(row.staff_id)
    spec = config.appointment_type(row.appointment_type or "")
    if member is None or spec is None or member.calendar is None:
        raise Conflict("this appointment's staff member or type is no longer configured")
    new_start = start.astimezone(UTC) if start is not None else row.start
    moved = new_start != row.start
    changed = (
        moved
        or (subject is not None and subject != row.subject)
        or (notes is not None and notes != row.notes)
    )
    if not changed:
        return Outcome(row, created=False)
    etype = engine_type(spec)
    schedule = staff_schedule(config, member)
    old = (row.start, row.end, row.subject, row.notes)
    if moved:
        now = utcnow()
        if new_start < now - timedelta(days=1):
            raise SlotUnavailable("start is in the past", field="start")
        _check_window(spec, new_start, new_start + timedelta(minutes=1), now)
        next_lo = max(new_start, now)
        next_hi = next_lo + timedelta(days=NEXT_SLOTS_DAYS)
        window = AvailabilityQuery(min(new_start, next_lo), next_hi, now=now)
        lo, hi = busy_window(window, etype, [schedule])
        fetched = busy_mod.fetch_calendar_busy(tenant_id, config, [member], lo, hi, fresh=True)
        external = fetched.by_staff[member.id]
    with session_scope() as session:
        lock_staff(session, tenant_id, member.id)
        row = _row(session, tenant_id, appointment_id, lock=True)
        _must_be_booked(row, "move")
        old = (row.start, row.end, row.subject, row.notes)
        if moved:
            own = busy_mod.own_busy(session, tenant_id, config, [member.id], lo, hi, exclude=row.id)
            # Our own event still sits at the old time in the calendar: not a conflict.
            calendar = _staff_calendar(member, schedule, external, own[member.id], (old[0], old[1]))
            check = check_slot(new_start, etype, calendar, now)
            if not check.available:
                query = AvailabilityQuery(
                    next_lo, next_hi, now=now, timezone=member.timezone or "UTC"
                )
                slots = compute_availability(query, etype, [calendar]).slots[:NEXT_SLOTS]
                details = {
                    "field": "start",
                    "staff_id": member.id,
                    "reason": check.code,
                    "problem": check.reason,
                    "next_slots": [_slot_view(s) for s in slots],
                }
                if check.code in ("busy", "daily_limit"):
                    raise SlotTaken("this slot is not free", details)
                if check.code == "calendar_unknown":
                    raise CalendarWriteFailed(
                        f"the calendar cannot be read ({check.reason}); the appointment was "
                        "NOT moved", status=503, code="calendar_unavailable", details=details,
                    )  # fmt: skip
                raise SlotUnavailable(f"this time cannot be booked: {check.reason}", details)
            row.start, row.end = new_start, new_start + etype.duration
            row.status = "pending"  # holds the new slot while the calendar is updated
        if subject is not None:
            row.subject = subject
        if notes is not None:
            row.notes = notes
        row.updated_at = utcnow()
        edited = [name for name, did in (("start", moved),
                                         ("subject", subject is not None and subject != old[2]),
                                         ("notes", notes is not None and notes != old[3])) if did]
        # ``fields``: what this PATCH changed (two-way sync conflicts, sync.conflicts)
        _audit(session, row, "appointment.moving", by=actor, previous=as_utc_iso(old[0]),
               fields=edited)  # fmt: skip
    busy_mod.invalidate_staff(tenant_id, member, row.calendar_connection_id)
    ref = EventRef(row.calendar_id or member.calendar.id, row.event_id or "", row.event_etag)
    event = event_spec(config, row, member)
    try:
        if not row.event_id or not row.calendar_connection_id:
            raise Rejected("the appointment has no calendar event to move")
        connection_id = row.calendar_connection_id
        new_ref: EventRef = _calendar_call(connection_id, lambda c: c.update_event(ref, event))
    except Exception as exc:  # noqa: BLE001 - every failure: put the appointment back
        if not isinstance(exc, DeliveryError | busy_mod.CalendarUnreachable):
            log.exception("calendar connector crashed updating an event")
        failure = _failure(exc, "the appointment was NOT moved")
        with session_scope() as session:
            back = _row(session, tenant_id, appointment_id, lock=True)
            back.start, back.end, back.subject, back.notes = old
            back.status = "confirmed"
            _audit(session, back, "appointment.move_failed", reason=failure.message)
        raise failure from None
    with session_scope() as session:
        done = _row(session, tenant_id, appointment_id, lock=True)
        done.status = "confirmed"
        done.event_id, done.event_etag = new_ref.event_id or done.event_id, new_ref.etag
        _audit(session, done, "appointment.updated", by=actor)
        deliveries = _outbox(session, config, done, "appointment.updated")
        to_wake = mark_wake(session, [d.connection_id for d in deliveries])
    _enqueue(to_wake)
    return Outcome(done, created=True, deliveries=deliveries)


def cancel(tenant_id: str, appointment_id: str, *, actor: str) -> Outcome:
    """Delete the event, then mark cancelled + ``appointment.cancelled`` deliveries.

    Idempotent: cancelling a cancelled appointment changes nothing (created=False).
    """
    config = _load(tenant_id)
    with session_scope(readonly=True) as session:
        row = _row(session, tenant_id, appointment_id)
    if row.status == "cancelled":
        return Outcome(row, created=False)
    _must_be_booked(row, "cancel")
    if row.event_id and row.calendar_connection_id:
        ref = EventRef(row.calendar_id or "", row.event_id, row.event_etag)
        try:
            _calendar_call(row.calendar_connection_id, lambda c: c.delete_event(ref))
        except Exception as exc:  # noqa: BLE001
            if not isinstance(exc, DeliveryError | busy_mod.CalendarUnreachable):
                log.exception("calendar connector crashed deleting an event")
            raise _failure(exc, "the appointment was NOT cancelled") from None
    with session_scope() as session:
        done = _row(session, tenant_id, appointment_id, lock=True)
        if done.status == "cancelled":  # a concurrent cancel got here first
            return Outcome(done, created=False)
        done.status = "cancelled"
        _audit(session, done, "appointment.cancelled", by=actor)
        deliveries = _outbox(session, config, done, "appointment.cancelled")
        to_wake = mark_wake(session, [d.connection_id for d in deliveries])
    member = config.staff_member(done.staff_id)
    if member is not None:
        busy_mod.invalidate_staff(tenant_id, member, done.calendar_connection_id)
    _enqueue(to_wake)
    return Outcome(done, created=True, deliveries=deliveries)


# --------------------------------------------------------------------------- views


def appointment_view(config: TenantConfig, row: Appointment) -> dict[str, Any]:
    member = config.staff_member(row.staff_id)
    zone = ZoneInfo((member.timezone if member else None) or config.timezone)
    spec = config.appointment_type(row.appointment_type or "")
    return {
        "id": row.id,
        "status": row.status,
        "staff_id": row.staff_id,
        "type": row.appointment_type,
        "type_label": spec.label if spec else None,
        "timezone": str(zone),
        "start": row.start.astimezone(zone).isoformat(),
        "end": row.end.astimezone(zone).isoformat(),
        "start_utc": as_utc_iso(row.start),
        "end_utc": as_utc_iso(row.end),
        "caller": row.caller,
        "subject": row.subject,
        "notes": row.notes,
        "event": {
            "calendar_id": row.calendar_id,
            "event_id": row.event_id,
            "etag": row.event_etag,
        }
        if row.event_id
        else None,
        "error": row.last_error if row.status == "failed" else None,
        "booked_by": row.booked_by,
        "created_at": as_utc_iso(row.created_at),
        "updated_at": as_utc_iso(row.updated_at),
    }


# --------------------------------------------------------------------------- two-way sync


def write_appointment_deliveries(
    session: Session, config: TenantConfig, row: Appointment, action: str
) -> list[Delivery]:
    """The appointment outbox rule, for changes that come from the calendar
    (``sync.calendar_sync``): one delivery per CRM connection, in ``session``."""
    return _outbox(session, config, row, action)


def record_appointment_event(session: Session, row: Appointment, kind: str, **detail: Any) -> None:
    """An audit event on the appointment (same shape as booking's own)."""
    _audit(session, row, kind, **detail)


def enqueue_deliveries(connection_ids: list[str]) -> None:
    """Enqueue the delivery tasks of connections marked by ``mark_wake`` (after commit)."""
    _enqueue(connection_ids)
