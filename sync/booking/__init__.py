"""Availability and booking: the tenant's configuration and the live calendars
turned into free slots, and a slot turned into exactly one calendar event.

The package, by concern (each module's docstring states its invariants):

- :mod:`~sync.booking.errors` — what booking refuses, as error codes (and the
  offending field); the engine never speaks HTTP, ``relais.api`` maps codes
  to statuses and renders the answers;
- :mod:`~sync.booking.adapters` — the tenant's YAML in the pure engine's terms
  (schedules, appointment types, staff, windows); no I/O;
- :mod:`~sync.booking.finder` — availability: busy time from the calendars
  (one provider call per connection per chunk, cached briefly: :mod:`sync.busy`)
  plus our own pending and confirmed appointments, read on every query; a
  calendar whose busy state is unknown gives no slot and is listed as
  unavailable;
- :mod:`~sync.booking.workflow` — book (never double-booked: lock the staff
  member, re-check under the lock, commit ``pending``, write the event outside
  any lock, confirm), move, cancel;
- :mod:`~sync.booking.calendar_calls` — the event written, the calendar write
  (idempotent, a transient failure tried once more), a failed write as a code;
- :mod:`~sync.booking.records` — appointment rows (every lookup carries the
  tenant), the per-staff lock, audit events, and the outbox rule: every
  ``crm`` connection of the tenant receives
  ``appointment.created|updated|cancelled`` with a snapshot of the
  appointment at that change, written in the change's transaction and
  enqueued after commit.

Import from here; the modules are the package's inside.
"""

from sync.booking.adapters import ANY, MAX_WINDOW_DAYS, engine_type, staff_schedule
from sync.booking.calendar_calls import event_spec
from sync.booking.errors import (
    CODES,
    BookingError,
    CalendarWriteFailed,
    Conflict,
    InvalidRequest,
    NotFound,
    SlotTaken,
    SlotUnavailable,
)
from sync.booking.finder import DEFAULT_DAYS, AvailabilityAnswer, find_availability
from sync.booking.records import (
    appointment_snapshot,
    enqueue_deliveries,
    lock_staff,
    record_appointment_event,
    write_appointment_deliveries,
)
from sync.booking.workflow import (
    NEXT_SLOTS,
    NEXT_SLOTS_DAYS,
    BookingRequest,
    Outcome,
    book,
    cancel,
    reschedule,
)

__all__ = [
    "ANY",
    "CODES",
    "DEFAULT_DAYS",
    "MAX_WINDOW_DAYS",
    "NEXT_SLOTS",
    "NEXT_SLOTS_DAYS",
    "AvailabilityAnswer",
    "BookingError",
    "BookingRequest",
    "CalendarWriteFailed",
    "Conflict",
    "InvalidRequest",
    "NotFound",
    "Outcome",
    "SlotTaken",
    "SlotUnavailable",
    "appointment_snapshot",
    "book",
    "cancel",
    "engine_type",
    "enqueue_deliveries",
    "event_spec",
    "find_availability",
    "lock_staff",
    "record_appointment_event",
    "reschedule",
    "staff_schedule",
    "write_appointment_deliveries",
]
