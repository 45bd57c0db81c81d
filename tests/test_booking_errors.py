"""Booking refuses with error codes; the shell alone turns them into HTTP statuses.

Every code the engine may raise has its status (a new code without one would
answer a 500), and ``sync/booking/`` holds no HTTP status at all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from relais.api.booking_errors import STATUS, api_error
from sync import booking
from sync.booking.errors import CalendarWriteFailed, InvalidRequest

BOOKING = Path(booking.__file__).resolve().parent


def test_every_code_has_a_status_and_no_status_is_for_nothing() -> None:
    assert set(STATUS) == booking.CODES
    assert STATUS == {
        "invalid_request": 422, "not_found": 404, "slot_unavailable": 422, "slot_taken": 409,
        "conflict": 409, "calendar_unavailable": 503, "calendar_rejected": 502,
        "calendar_error": 502,
    }  # fmt: skip


@pytest.mark.parametrize("cls", [
    booking.InvalidRequest, booking.NotFound, booking.SlotUnavailable, booking.SlotTaken,
    booking.Conflict,
])  # fmt: skip
def test_each_error_class_carries_a_known_code(cls: type[booking.BookingError]) -> None:
    assert cls.code in booking.CODES
    assert not hasattr(cls("x"), "status")


def test_the_offending_field_is_carried() -> None:
    given = InvalidRequest("no staff given", field="staff_id")
    assert (given.field, given.details) == (
        "staff_id", [{"field": "staff_id", "problem": "no staff given"}])
    derived = booking.SlotTaken("taken", {"field": "start", "next_slots": []})
    assert derived.field == "start"
    error = api_error(derived)
    assert (error.status, error.code, error.details) == (409, "slot_taken", derived.details)


def test_a_calendar_failure_has_a_calendar_code() -> None:
    assert api_error(CalendarWriteFailed("down", code="calendar_unavailable")).status == 503
    with pytest.raises(ValueError, match="not a calendar failure code"):
        CalendarWriteFailed("down", code="slot_taken")


def test_the_engine_holds_no_http_status() -> None:
    found = []
    for path in sorted(BOOKING.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and type(node.value) is int \
                    and 400 <= node.value <= 599:  # fmt: skip
                found.append(f"{path.name}:{node.lineno} {node.value}")
            if isinstance(node, ast.keyword) and node.arg == "status":
                found.append(f"{path.name}:{node.lineno} status=")
    assert found == []
