"""Booking, moving and cancelling an appointment: a slot turned into exactly one
calendar event.

**Booking** (:func:`book`), never double-booked:

1. an ``Idempotency-Key`` already used (in this tenant) returns its
   appointment, creates nothing;
2. the staff member's calendar is read fresh (no cache);
3. the staff member is locked: on PostgreSQL ``SELECT … FOR UPDATE`` of their
   row in ``staff_locks`` (created on first use), so bookings for the same
   person run one at a time while other people's bookings proceed; on SQLite
   every writing transaction is ``BEGIN IMMEDIATE``, i.e. holds the database
   write lock, which serialises all bookings
   (:func:`~sync.booking.records.lock_staff`);
4. under the lock the slot is checked (:func:`~sync.availability.check_slot`,
   the listing's exact rules) against the fresh calendar plus our pending and
   confirmed appointments, read under the lock; taken → :class:`SlotTaken`
   (code ``slot_taken``) with the next free slots;
5. the appointment is inserted ``pending`` and committed: from now on every
   other secretary sees the slot as taken;
6. the calendar event is created outside any database lock, with an
   idempotency key (a retry returns the same event);
7. success → ``confirmed``, the event reference stored, and one
   ``appointment.created`` delivery per CRM connection written in the same
   transaction (transactional outbox, :mod:`sync.booking.records`), enqueued
   after commit; failure → ``failed`` (the slot is free again) and
   :class:`CalendarWriteFailed` (codes ``calendar_unavailable``,
   ``calendar_rejected``, ``calendar_error``) saying the booking was NOT made.

The calendar is read *before* taking the lock so that no provider call ever
runs under a database lock (on SQLite that lock is the whole database's write
lock). That costs nothing in safety: two of our own bookings are told apart
by the database check under the lock, and a change made in the calendar
itself is never serialised by our lock, wherever the read happens.

**Moving** (:func:`reschedule`) takes the same lock and checks as a booking
(the appointment's own event does not conflict with itself) and holds the new
slot ``pending`` while the event is updated; a failed update puts the old time
back. **Cancelling** (:func:`cancel`) deletes the event first, then marks the
appointment cancelled; cancelling twice changes nothing. Each confirmed change
writes its ``appointment.updated|cancelled`` deliveries in the transaction
that records it.

The engine speaks in error codes (:mod:`sync.booking.errors`), never HTTP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from connectors.base import DeliveryError, Rejected
from connectors.calendar import CalendarBusy, EventRef
from mappings.schema import AppointmentTypeSpec, StaffMember, TenantConfig
from sync import busy as busy_mod
from sync.availability import (
    AppointmentType,
    AvailabilityQuery,
    FairnessStats,
    StaffCalendar,
    StaffSchedule,
    busy_window,
    check_slot,
    compute_any_staff_availability,
    compute_availability,
)
from sync.booking.adapters import (
    ANY,
    appointment_type,
    bookable_members,
    check_window,
    engine_type,
    staff_calendar,
    staff_schedule,
)
from sync.booking.calendar_calls import calendar_call, calendar_key, event_spec, write_failure
from sync.booking.errors import (
    CALENDAR_UNAVAILABLE,
    CalendarWriteFailed,
    Conflict,
    SlotTaken,
    SlotUnavailable,
)
from sync.booking.records import (
    appointment_row,
    by_key,
    calendar_connection_id,
    enqueue_deliveries,
    load_config,
    lock_staff,
    must_be_booked,
    write_appointment_deliveries,
)
from sync.booking.records import record_appointment_event as audit
from sync.domain import as_utc_iso
from sync.outbox import mark_wake
from sync.store.db import session_scope
from sync.store.models import Appointment, Delivery, new_id, utcnow

log = logging.getLogger(__name__)

NEXT_SLOTS = 5
"""How many next free slots a refusal offers."""
NEXT_SLOTS_DAYS = 7
"""How far ahead those next free slots are looked for."""


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
    call_id: str | None = None  # the call it came from (sync/calls.py), for reports


@dataclass
class Outcome:
    appointment: Appointment
    created: bool  # False: an Idempotency-Key replay (or nothing changed)
    deliveries: list[Delivery] = field(default_factory=list)


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
    config = load_config(tenant_id)
    with session_scope(readonly=True) as session:
        existing = by_key(session, tenant_id, request.idempotency_key)
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

    spec = appointment_type(config, request.type_id)
    members, any_mode = bookable_members(config, spec, request.staff_id, "staff_id")
    now = utcnow()
    start = request.start
    if start < now - timedelta(days=1):
        raise SlotUnavailable("start is in the past", field="start")
    check_window(spec, start, start + timedelta(minutes=1), now)
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
    next_slots = [s.to_dict() for s in result.slots[:NEXT_SLOTS]]
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
            code=CALENDAR_UNAVAILABLE,
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
            row = by_key(session, tenant_id, request.idempotency_key)
            if row is not None and row.id != retry_of:
                return Outcome(row, created=False)
            own = busy_mod.own_busy(session, tenant_id, config, [member.id], lo, hi)
            calendar = staff_calendar(member, schedule, external, own[member.id])
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
            row.call_id = request.call_id
            row.sealed = config.sensitive  # caller, subject, notes encrypted at rest
            row.event_id = row.event_etag = row.calendar_id = row.calendar_connection_id = None
            row.updated_at = utcnow()
            session.flush()
            audit(session, row, "appointment.reserved", by=request.booked_by)
            return row
    except IntegrityError:
        # The same Idempotency-Key committed meanwhile for another staff member.
        with session_scope(readonly=True) as session:
            row = by_key(session, tenant_id, request.idempotency_key)
        if row is None:
            raise
        return Outcome(row, created=False)


def _write_event(
    tenant_id: str,
    config: TenantConfig,
    row: Appointment,
    member: StaffMember,
    spec: AppointmentTypeSpec,
) -> Outcome:
    """Steps 6-7: create the event, then confirm + outbox (or fail and free the slot)."""
    with session_scope(readonly=True) as session:
        connection_id = calendar_connection_id(session, tenant_id, member)
    assert member.calendar is not None and connection_id is not None
    calendar_id = member.calendar.id
    event = event_spec(config, row, member)
    key = calendar_key(row)
    try:
        ref: EventRef = calendar_call(
            connection_id, lambda c: c.create_event(calendar_id, event, key)
        )
    except Exception as exc:  # noqa: BLE001 - every failure: the slot is freed
        if not isinstance(exc, DeliveryError | busy_mod.CalendarUnreachable):
            log.exception("calendar connector crashed creating an event")
        failure = write_failure(exc, "the appointment was NOT booked and the slot is free again")
        with session_scope() as session:
            failed = session.get(Appointment, row.id, with_for_update=True, populate_existing=True)
            assert failed is not None
            failed.status, failed.last_error = "failed", failure.message
            audit(session, failed, "appointment.failed", reason=failure.message)
        failure.details = [{"field": "calendar", "problem": failure.message,
                            "appointment_id": row.id, "status": "failed"}]  # fmt: skip
        raise failure from None
    with session_scope() as session:
        done = session.get(Appointment, row.id, with_for_update=True, populate_existing=True)
        assert done is not None
        done.status = "confirmed"
        done.calendar_connection_id, done.calendar_id = connection_id, ref.calendar_id
        done.event_id, done.event_etag = ref.event_id, ref.etag
        audit(session, done, "appointment.confirmed", event_id=ref.event_id)
        deliveries = write_appointment_deliveries(session, config, done, "appointment.created")
        to_wake = mark_wake(session, [d.connection_id for d in deliveries])
    enqueue_deliveries(to_wake)
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



# --------------------------------------------------------------------------- move, cancel


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
    config = load_config(tenant_id)
    with session_scope(readonly=True) as session:
        row = appointment_row(session, tenant_id, appointment_id)
    must_be_booked(row, "move")
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
        check_window(spec, new_start, new_start + timedelta(minutes=1), now)
        next_lo = max(new_start, now)
        next_hi = next_lo + timedelta(days=NEXT_SLOTS_DAYS)
        window = AvailabilityQuery(min(new_start, next_lo), next_hi, now=now)
        lo, hi = busy_window(window, etype, [schedule])
        fetched = busy_mod.fetch_calendar_busy(tenant_id, config, [member], lo, hi, fresh=True)
        external = fetched.by_staff[member.id]
    with session_scope() as session:
        lock_staff(session, tenant_id, member.id)
        row = appointment_row(session, tenant_id, appointment_id, lock=True)
        must_be_booked(row, "move")
        old = (row.start, row.end, row.subject, row.notes)
        if moved:
            own = busy_mod.own_busy(session, tenant_id, config, [member.id], lo, hi, exclude=row.id)
            # Our own event still sits at the old time in the calendar: not a conflict.
            calendar = staff_calendar(member, schedule, external, own[member.id], (old[0], old[1]))
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
                    "next_slots": [s.to_dict() for s in slots],
                }
                if check.code in ("busy", "daily_limit"):
                    raise SlotTaken("this slot is not free", details)
                if check.code == "calendar_unknown":
                    raise CalendarWriteFailed(
                        f"the calendar cannot be read ({check.reason}); the appointment was "
                        "NOT moved", code=CALENDAR_UNAVAILABLE, details=details,
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
        audit(session, row, "appointment.moving", by=actor, previous=as_utc_iso(old[0]),
              fields=edited)  # fmt: skip
    busy_mod.invalidate_staff(tenant_id, member, row.calendar_connection_id)
    ref = EventRef(row.calendar_id or member.calendar.id, row.event_id or "", row.event_etag)
    event = event_spec(config, row, member)
    try:
        if not row.event_id or not row.calendar_connection_id:
            raise Rejected("the appointment has no calendar event to move")
        connection_id = row.calendar_connection_id
        new_ref: EventRef = calendar_call(connection_id, lambda c: c.update_event(ref, event))
    except Exception as exc:  # noqa: BLE001 - every failure: put the appointment back
        if not isinstance(exc, DeliveryError | busy_mod.CalendarUnreachable):
            log.exception("calendar connector crashed updating an event")
        failure = write_failure(exc, "the appointment was NOT moved")
        with session_scope() as session:
            back = appointment_row(session, tenant_id, appointment_id, lock=True)
            back.start, back.end, back.subject, back.notes = old
            back.status = "confirmed"
            audit(session, back, "appointment.move_failed", reason=failure.message)
        raise failure from None
    with session_scope() as session:
        done = appointment_row(session, tenant_id, appointment_id, lock=True)
        done.status = "confirmed"
        done.event_id, done.event_etag = new_ref.event_id or done.event_id, new_ref.etag
        audit(session, done, "appointment.updated", by=actor)
        deliveries = write_appointment_deliveries(session, config, done, "appointment.updated")
        to_wake = mark_wake(session, [d.connection_id for d in deliveries])
    enqueue_deliveries(to_wake)
    return Outcome(done, created=True, deliveries=deliveries)


def cancel(tenant_id: str, appointment_id: str, *, actor: str) -> Outcome:
    """Delete the event, then mark cancelled + ``appointment.cancelled`` deliveries.

    Idempotent: cancelling a cancelled appointment changes nothing (created=False).
    """
    config = load_config(tenant_id)
    with session_scope(readonly=True) as session:
        row = appointment_row(session, tenant_id, appointment_id)
    if row.status == "cancelled":
        return Outcome(row, created=False)
    must_be_booked(row, "cancel")
    if row.event_id and row.calendar_connection_id:
        ref = EventRef(row.calendar_id or "", row.event_id, row.event_etag)
        try:
            calendar_call(row.calendar_connection_id, lambda c: c.delete_event(ref))
        except Exception as exc:  # noqa: BLE001
            if not isinstance(exc, DeliveryError | busy_mod.CalendarUnreachable):
                log.exception("calendar connector crashed deleting an event")
            raise write_failure(exc, "the appointment was NOT cancelled") from None
    with session_scope() as session:
        done = appointment_row(session, tenant_id, appointment_id, lock=True)
        if done.status == "cancelled":  # a concurrent cancel got here first
            return Outcome(done, created=False)
        done.status = "cancelled"
        audit(session, done, "appointment.cancelled", by=actor)
        deliveries = write_appointment_deliveries(session, config, done, "appointment.cancelled")
        to_wake = mark_wake(session, [d.connection_id for d in deliveries])
    member = config.staff_member(done.staff_id)
    if member is not None:
        busy_mod.invalidate_staff(tenant_id, member, done.calendar_connection_id)
    enqueue_deliveries(to_wake)
    return Outcome(done, created=True, deliveries=deliveries)


