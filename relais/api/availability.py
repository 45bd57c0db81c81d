"""Live availability: the free slots of a staff member (or of anyone) for an
appointment type, read from their real calendars (see sync.booking.finder).
The engine answers in its terms; :func:`availability_view` is the JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from relais.api.booking_errors import api_error
from relais.api.deps import Caller, tenant_for
from relais.api.errors import HINTS, ApiError
from sync.booking import ANY, AvailabilityAnswer, BookingError, find_availability
from sync.domain import check_instant
from sync.store.db import session_scope
from sync.tenants import parsed_config

router = APIRouter(prefix="/v1/tenants/{tenant_id}", tags=["appointments"])


def parse_instant(value: str | None, name: str) -> datetime | None:
    """An aware ISO 8601 instant, or a 422 naming the parameter."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if "T" in text and " " in text:  # an unencoded '+' in a query string arrives as a space
        text = text.replace(" ", "+")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(
            422,
            "invalid_request",
            f"{name}: {value!r} is not an ISO 8601 date-time",
            [{"field": name, "problem": "not an ISO 8601 date-time",
              "hint": "e.g. 2026-12-01T09:00:00+01:00 (encode '+' as %2B in a URL)"}],
        ) from None  # fmt: skip
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ApiError(
            422,
            "invalid_request",
            f"{name}: {value!r} has no UTC offset",
            [{"field": name, "problem": "timezone-naive date-time",
              "hint": HINTS["timezone_aware"]}],
        )  # fmt: skip
    try:
        return check_instant(parsed)
    except ValueError as exc:
        raise ApiError(422, "invalid_request", f"{name}: {exc}",
                       [{"field": name, "problem": str(exc)}]) from None


def availability_view(answer: AvailabilityAnswer) -> dict[str, Any]:
    """The answer's JSON: slots and unavailable staff, instants rendered in its zone."""
    zone = ZoneInfo(answer.timezone)
    return {
        "type": answer.spec.id,
        "type_label": answer.spec.label,
        "duration_minutes": answer.spec.duration_minutes,
        "timezone": answer.timezone,
        "start": answer.start.astimezone(zone).isoformat(),
        "end": answer.end.astimezone(zone).isoformat(),
        "staff": ANY if answer.staff is None else answer.staff,
        "slots": [s.to_dict() for s in answer.result.slots],
        "unavailable": [
            {"staff": u.staff_id, "code": u.code, "reason": u.reason}
            for u in answer.result.unavailable
        ],
    }


@router.get("/availability")
def get_availability(
    tenant_id: str,
    who: Caller,
    staff: Annotated[str, Query(min_length=1, max_length=2000, description="ids, or any")],
    type: Annotated[str, Query(min_length=1, max_length=64, description="appointment type")],
    start: Annotated[str | None, Query(description="aware ISO 8601; default now")] = None,
    end: Annotated[str | None, Query(description="aware ISO 8601; default start + 7 days")] = None,
    tz: Annotated[str | None, Query(max_length=64, description="caller's IANA zone")] = None,
) -> JSONResponse:
    """Free slots whose start lies in ``[start, end)``, rendered in ``tz``.

    Staff whose calendar cannot be read get no slot and are listed in
    ``unavailable`` with the reason (an unknown calendar is never free).
    """
    with session_scope(readonly=True) as session:
        config = parsed_config(tenant_for(session, who, tenant_id, "secretary"))
    begin, finish = parse_instant(start, "start"), parse_instant(end, "end")
    try:
        answer = find_availability(
            tenant_id, config, staff=staff, type_id=type, start=begin, end=finish, tz=tz
        )
    except BookingError as exc:
        raise api_error(exc) from None
    return JSONResponse(availability_view(answer))  # plain JSON: skip the generic encoder
