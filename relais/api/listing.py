"""Query parameters of the list routes (messages, appointments, deliveries),
read into ``sync.lists.Filters``; each mistake a 422 naming its parameter."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from relais.api.errors import ApiError
from sync.contacts import parse_phone_query
from sync.lists import BadFilter, Filters, Page, parse_instant

From = Annotated[str | None, Query(alias="from", max_length=64,
                                   description="aware ISO 8601 instant, inclusive")]
To = Annotated[str | None, Query(max_length=64, description="aware ISO 8601 instant, exclusive")]
Staff = Annotated[str | None, Query(max_length=64, description="a staff member's id")]
CallerPhone = Annotated[str | None, Query(max_length=64,
                                          description="the caller's number in any format, "
                                                      "or its last 6+ digits")]
Cursor = Annotated[str | None, Query(max_length=400, description="next_cursor of the last page")]
Limit = Annotated[int, Query(ge=1, le=500)]


def bad_filter(exc: BadFilter) -> ApiError:
    return ApiError(422, "invalid_request", str(exc),
                    [{"field": exc.field, "problem": exc.problem, "hint": exc.hint}])


def read_filters(*, start: str | None = None, end: str | None = None,
                 staff: str | None = None, caller: str | None = None,
                 status: str | None = None, connection: str | None = None,
                 region: str | None = None) -> Filters:
    try:
        phone = None
        if caller and caller.strip():
            try:
                phone = parse_phone_query(caller, region)
            except ValueError as exc:
                raise BadFilter("caller", str(exc),
                                "e.g. 06 12 34 56 78, +33612345678 or 345678") from None
        return Filters(
            start=parse_instant(start, "from") if start else None,
            end=parse_instant(end, "to") if end else None,
            staff_id=staff or None, caller=phone, status=status or None,
            connection=connection or None)
    except BadFilter as exc:
        raise bad_filter(exc) from None


def page_body(name: str, page: Page[Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    return {name: items, "count": len(items), "next_cursor": page.next_cursor}
