"""Calls in (``POST /v1/calls``, ``POST /v1/tenants/{t}/calls``) and the reports out
(``GET /v1/tenants/{t}/report``; every tenant side by side: ``GET /v1/report``, the
operator's, computed by :func:`sync.reports.load.operator_report` like ``relais
report --all``).

A body is one event object or ``{"events": [...]}`` (at most ``MAX_EVENTS``).
On ``/v1/calls`` (operator key) each event's ``called`` number (E.164) finds its
tenant through the tenants' ``forwarding_numbers``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ValidationError

from relais.api.deps import DB, Caller, json_body, tenant_for
from relais.api.errors import ApiError, field_errors, summary
from relais.api.openapi import json_request
from sync.calls import MAX_EVENTS, CallEventIn, EventConflict, record_events
from sync.reports.load import operator_report, tenant_report
from sync.reports.periods import local_range
from sync.store.db import session_scope
from sync.tenants import parsed_config, tenant_for_number

router = APIRouter(tags=["calls"])


class CallEventsBody(BaseModel):
    """``{"events": [event, …]}``, or one event object alone."""

    events: list[CallEventIn]


def _events(data: Any, region: str | None) -> list[CallEventIn]:
    if isinstance(data, dict) and "events" not in data:
        data = {"events": [data]}
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON object: an event or "
                       '{"events": [...]}')
    raw = data.get("events")
    if not isinstance(raw, list) or not raw:
        raise ApiError(422, "invalid_calls", "events: must be a non-empty list",
                       [{"field": "events", "problem": "must be a non-empty list",
                         "hint": "send {\"events\": [{\"call_id\": …, \"event\": \"offered\", "
                                 "\"at\": …}]}"}])
    if len(raw) > MAX_EVENTS:
        raise ApiError(413, "too_many_events", f"events: {len(raw)} events; at most {MAX_EVENTS}",
                       [{"field": "events", "problem": f"more than {MAX_EVENTS} events",
                         "hint": "split the batch"}])
    try:
        return CallEventsBody.model_validate(data, context={"region": region}).events
    except ValidationError as exc:
        details = field_errors(exc)
        raise ApiError(422, "invalid_calls", summary(details), details) from None


def _conflict(exc: EventConflict) -> ApiError:
    field = f"events[{exc.index}].at"
    return ApiError(409, "event_conflict", f"{field}: {exc}",
                    [{"field": field, "problem": str(exc),
                      "hint": "an event is sent once per call and kind; resend it unchanged"}])


def _answer(tenants: list[str], results: list[Any]) -> dict[str, Any]:
    created = sum(1 for r in results if r.status == "created")
    return {
        "created": created, "duplicates": len(results) - created,
        "events": [{"tenant": t, "call_id": r.call_id, "event": r.event, "status": r.status}
                   for t, r in zip(tenants, results, strict=True)],
    }


@router.post("/v1/calls", openapi_extra=json_request(CallEventsBody))
def post_calls(who: Caller, data: Annotated[Any, Depends(json_body)]) -> dict[str, Any]:
    """Events from the telephony for any tenant: each finds its tenant by ``called``."""
    if who.role != "operator":
        raise ApiError(403, "forbidden", f"POST /v1/calls needs an operator key; yours is "
                       f"{who.role} (a tenant's key posts to /v1/tenants/{{t}}/calls)")
    events = _events(data, None)
    with session_scope() as session:
        grouped: dict[str, list[int]] = {}
        for index, event in enumerate(events):
            field = f"events[{index}].called"
            if event.called is None:
                raise ApiError(422, "invalid_calls", f"{field}: required on /v1/calls",
                               [{"field": field, "problem": "required on /v1/calls",
                                 "hint": "send the dialled number in E.164 (+33…)"}])
            tenant_id = tenant_for_number(session, event.called)
            if tenant_id is None:
                raise ApiError(422, "unknown_number", f"{field}: {event.called} forwards to no "
                               "tenant", [{"field": field, "problem": "forwards to no tenant",
                                           "hint": "add it to the tenant's forwarding_numbers"}])
            grouped.setdefault(tenant_id, []).append(index)
        tenants: list[str] = [""] * len(events)
        results: list[Any] = [None] * len(events)
        for tenant_id in sorted(grouped):
            indexes = grouped[tenant_id]
            try:
                recorded = record_events(session, tenant_id, [events[i] for i in indexes])
            except EventConflict as exc:
                exc.index = indexes[exc.index]
                raise _conflict(exc) from None
            for i, r in zip(indexes, recorded, strict=True):
                tenants[i], results[i] = tenant_id, r
    return _answer(tenants, results)


@router.post("/v1/tenants/{tenant_id}/calls", openapi_extra=json_request(CallEventsBody))
def post_tenant_calls(tenant_id: str, who: Caller,
                      data: Annotated[Any, Depends(json_body)]) -> dict[str, Any]:
    """Events of one tenant's calls (``called`` optional, read in its phone region)."""
    with session_scope() as session:
        tenant = tenant_for(session, who, tenant_id, "secretary")
        events = _events(data, parsed_config(tenant).phone_region)
        try:
            results = record_events(session, tenant_id, events)
        except EventConflict as exc:
            raise _conflict(exc) from None
    return _answer([tenant_id] * len(results), results)


FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9000, 1, 1)  # no instant overflows near them


def _day(value: str, field: str) -> date:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ApiError(422, "invalid_query", f"{field}: {value!r} is not a date",
                       [{"field": field, "problem": "not a date",
                         "hint": "write YYYY-MM-DD (a day in the tenant's time zone)"}]) from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ApiError(422, "invalid_query", f"{field}: {value} is out of range",
                       [{"field": field, "problem": "out of range",
                         "hint": f"a day from {FIRST_DAY} to {LAST_DAY}"}])
    return day


def _days(from_: str, to: str) -> tuple[date, date]:
    """The days [from, to): ``to`` after ``from``, at most 366 days later (else 422)."""
    first, last = _day(from_, "from"), _day(to, "to")
    if last <= first or (last - first).days > 366:
        raise ApiError(422, "invalid_query", "to: must be after from, within 366 days",
                       [{"field": "to", "problem": "must be after from, within 366 days",
                         "hint": "e.g. from=2026-11-01&to=2026-12-01"}])
    return first, last


@router.get("/v1/tenants/{tenant_id}/report")
def get_report(tenant_id: str, who: Caller, session: DB,
               from_: Annotated[str, Query(alias="from")],
               to: Annotated[str, Query()]) -> dict[str, Any]:
    """Indicators over the days ``from`` (included) to ``to`` (excluded), in the
    tenant's zone; admin role (a client's own figures)."""
    tenant = tenant_for(session, who, tenant_id, "admin")
    first, last = _days(from_, to)
    zone = parsed_config(tenant).zone
    start, end = local_range(first, last, zone)
    return tenant_report(session, tenant_id, zone, start, end, now=_now())


@router.get("/v1/report")
def get_operator_report(who: Caller, session: DB,
                        from_: Annotated[str, Query(alias="from")],
                        to: Annotated[str, Query()]) -> dict[str, Any]:
    """Every tenant side by side over the days ``from`` to ``to`` (excluded), each
    in its own zone, and the indicators over all of them together: the body of
    ``relais report --all --json``. Operator key only (it covers every tenant)."""
    if who.role != "operator":
        raise ApiError(403, "forbidden", f"GET /v1/report needs an operator key; yours is "
                       f"{who.role} (a tenant's report: /v1/tenants/{{t}}/report)")
    first, last = _days(from_, to)
    return operator_report(session, first, last, now=_now())


def _now() -> datetime:
    from sync import clock

    return clock.now()
