"""Booking's error codes as HTTP answers: the engine (``sync.booking``) says what
went wrong and on which field, the shell chooses the status.

``STATUS`` covers every code in ``sync.booking.CODES`` (``tests/test_booking_errors.py``).
"""

from __future__ import annotations

from relais.api.errors import ApiError
from sync.booking import BookingError

STATUS: dict[str, int] = {
    "invalid_request": 422,
    "not_found": 404,
    "slot_unavailable": 422,  # the time is not bookable at all
    "slot_taken": 409,  # someone or something holds it: details.next_slots
    "conflict": 409,  # the appointment's state does not allow it
    "calendar_unavailable": 503,  # nothing was done; ask again later
    "calendar_rejected": 502,  # the provider refused the event
    "calendar_error": 502,  # our connector failed
}


def api_error(exc: BookingError) -> ApiError:
    """The API error for a booking refusal (same code, message and details)."""
    return ApiError(STATUS[exc.code], exc.code, exc.message, exc.details)
