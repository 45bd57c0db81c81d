"""Booking's calls to a staff member's calendar: the event written, the write
itself, and a failed write turned into an error code.

Writes are idempotent (an event created under :func:`calendar_key` is found
again by a retry), so :func:`calendar_call` tries a transient failure once
more; a rate limit (the connection paused by ``sync.connection_use``) is not
retried. No call here runs under a database lock (the workflow commits before
calling).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from connectors.base import AuthExpired, RateLimited, Rejected, TransientError
from connectors.calendar import CalendarConnector, EventSpec
from mappings.schema import StaffMember, TenantConfig
from sync import busy as busy_mod
from sync.booking.errors import (
    CALENDAR_ERROR,
    CALENDAR_REJECTED,
    CALENDAR_UNAVAILABLE,
    CalendarWriteFailed,
)
from sync.connection_use import use
from sync.domain import as_utc_iso
from sync.store.models import Appointment


def event_spec(config: TenantConfig, row: Appointment, member: StaffMember) -> EventSpec:
    """The calendar event of an appointment (its description carries the caller and notes;
    ``sync.conflicts`` reads the notes back)."""
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


def calendar_key(row: Appointment) -> str:
    """Same appointment, same slot → same key (a retry finds the event it wrote)."""
    slot = f"{row.staff_id}|{as_utc_iso(row.start)}"
    return f"relais-{row.id}-{hashlib.sha256(slot.encode()).hexdigest()[:10]}"


def calendar_call(connection_id: str, call: Callable[[CalendarConnector], Any]) -> Any:
    """A calendar write; a transient failure is tried once more (writes are idempotent).

    Each attempt opens the connection through ``sync.connection_use.use`` (the
    calendar client pool of ``sync.busy``): a fresh token, tried again once after
    an early 401, no call while the connection is paused or inactive
    (``ConnectionUnavailable``); a rate limit pauses the connection there (a pause
    only moves later) and is raised again, not retried here.
    """
    for attempt in (1, 2):
        try:
            return use(connection_id, "calendar", call, what="calendar", pool=busy_mod.POOL)
        except TransientError:
            if attempt == 2:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")  # pragma: no cover


def write_failure(exc: BaseException, what: str) -> CalendarWriteFailed:
    """A failed calendar write as an error code; ``what`` says what was NOT done."""
    if isinstance(exc, busy_mod.CalendarUnreachable):
        return CalendarWriteFailed(f"{exc}; {what}", code=CALENDAR_UNAVAILABLE)
    if isinstance(exc, RateLimited):
        return CalendarWriteFailed(
            f"the calendar provider asks us to slow down until "
            f"{exc.reset_at.isoformat()}; {what}", code=CALENDAR_UNAVAILABLE,
        )  # fmt: skip
    if isinstance(exc, AuthExpired):
        return CalendarWriteFailed(
            f"the calendar refused our credentials ({exc}); {what}", code=CALENDAR_UNAVAILABLE
        )
    if isinstance(exc, TransientError):
        return CalendarWriteFailed(
            f"the calendar provider failed ({exc}); {what}", code=CALENDAR_UNAVAILABLE
        )
    if isinstance(exc, Rejected):
        return CalendarWriteFailed(
            f"the calendar provider refused the event ({exc}); {what}", code=CALENDAR_REJECTED
        )
    return CalendarWriteFailed(
        f"internal error writing to the calendar ({type(exc).__name__}); {what}",
        code=CALENDAR_ERROR,
    )
