"""What booking refuses, as error codes: the engine never speaks HTTP.

Every refusal is a :class:`BookingError` carrying a ``code`` (one of
:data:`CODES`), a message for people, the offending ``field`` of the request
when there is one, and ``details`` (a list or dict of plain JSON values: the
problem, a hint, the next free slots…). The shell maps codes to HTTP statuses
(``relais.api.booking_errors``); a code added here without a status there
fails ``tests/test_booking_errors.py``.
"""

from __future__ import annotations

from typing import Any

INVALID_REQUEST = "invalid_request"
NOT_FOUND = "not_found"
SLOT_UNAVAILABLE = "slot_unavailable"
SLOT_TAKEN = "slot_taken"
CONFLICT = "conflict"
CALENDAR_UNAVAILABLE = "calendar_unavailable"
CALENDAR_REJECTED = "calendar_rejected"
CALENDAR_ERROR = "calendar_error"

CODES = frozenset({
    INVALID_REQUEST, NOT_FOUND, SLOT_UNAVAILABLE, SLOT_TAKEN, CONFLICT,
    CALENDAR_UNAVAILABLE, CALENDAR_REJECTED, CALENDAR_ERROR,
})  # fmt: skip
"""Every code a :class:`BookingError` may carry."""


class BookingError(Exception):
    """A request the engine refuses: ``code`` says which kind, ``field`` which input.

    ``details`` defaults to ``[{"field", "problem"}]`` when only a field is
    given; ``field`` defaults to the first ``field`` named in ``details``.
    """

    code: str = INVALID_REQUEST

    def __init__(self, message: str, details: Any = None, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if details is None and field is not None:
            details = [{"field": field, "problem": message}]
        self.details = details
        self._field = field

    @property
    def field(self) -> str | None:
        """The offending input: the one given, else the first named in ``details``."""
        return self._field if self._field is not None else _first_field(self.details)


def _first_field(details: Any) -> str | None:
    first = details[0] if isinstance(details, list) and details else details
    if isinstance(first, dict) and isinstance(first.get("field"), str):
        return first["field"]
    return None


class InvalidRequest(BookingError):
    """The request names something the tenant does not have, or asks too much."""


class NotFound(BookingError):
    code = NOT_FOUND


class SlotUnavailable(BookingError):
    """The time is not bookable at all (outside hours, notice, horizon, grid)."""

    code = SLOT_UNAVAILABLE


class SlotTaken(BookingError):
    """Someone or something already holds the slot (or the daily limit is reached)."""

    code = SLOT_TAKEN


class Conflict(BookingError):
    """The appointment is not in a state that allows this (pending, cancelled, unconfigured)."""

    code = CONFLICT


class CalendarWriteFailed(BookingError):
    """The calendar refused or did not answer; nothing was booked, moved or cancelled.

    ``code``: ``calendar_unavailable`` (unreachable, slowed down, credentials
    refused, provider failure: worth asking again later), ``calendar_rejected``
    (the provider refused the event), ``calendar_error`` (our connector failed).
    """

    def __init__(self, message: str, *, code: str, details: Any = None) -> None:
        if code not in (CALENDAR_UNAVAILABLE, CALENDAR_REJECTED, CALENDAR_ERROR):
            raise ValueError(f"not a calendar failure code: {code!r}")
        super().__init__(message, details)
        self.code = code
