"""Live availability: the free slots of a staff member (or of anyone) for an
appointment type, read from their real calendars (see sync.booking)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from relais.api.deps import Caller, tenant_for
from relais.api.errors import HINTS, ApiError
from sync.booking import BookingError, find_availability
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


def api_error(exc: BookingError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message, exc.details)


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
    return JSONResponse(answer.body)  # plain JSON already: skip the generic encoder
