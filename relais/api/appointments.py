"""Appointments: book a slot (never twice), show, move, cancel (see sync.booking.workflow).

``POST /v1/tenants/{t}/appointments`` needs an ``Idempotency-Key`` header: the
same key returns the same appointment (200) and books nothing more. A slot
someone else took answers 409 ``slot_taken`` with ``details.next_slots``; a
calendar that failed answers 502/503 and says that nothing was booked.
"""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import Field, ValidationError
from sqlalchemy import select

from mappings.schema import TenantConfig
from relais.api.booking_errors import api_error
from relais.api.deps import Caller, json_body, tenant_for
from relais.api.errors import ApiError, field_errors, not_found, summary
from relais.api.listing import (
    CallerPhone,
    Cursor,
    From,
    Limit,
    Staff,
    To,
    bad_filter,
    page_body,
    read_filters,
)
from relais.api.messages import delivery_view
from relais.api.openapi import json_request
from sync.booking import BookingError, BookingRequest, Outcome, book, cancel, reschedule
from sync.conflicts import conflicts_of
from sync.domain import Caller as CallerRecord
from sync.domain import Instant, Record, as_utc_iso
from sync.lists import BadFilter, list_appointments
from sync.privacy import audit
from sync.store.db import session_scope
from sync.store.models import Appointment, Connection, Delivery, Tenant
from sync.tenants import parsed_config

router = APIRouter(prefix="/v1/tenants/{tenant_id}", tags=["appointments"])
Short = Annotated[str, Field(min_length=1, max_length=64)]


class BookingBody(Record):
    staff_id: Short  # a staff id, or "any" (round robin among the type's staff)
    type: Short
    start: Instant
    caller: CallerRecord
    subject: Annotated[str, Field(max_length=300)] = ""
    notes: Annotated[str, Field(max_length=5000)] = ""
    booked_by: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    call_id: Annotated[str | None, Field(min_length=1, max_length=200)] = None  # POST /v1/calls


class ChangeBody(Record):
    start: Instant | None = None
    subject: Annotated[str | None, Field(min_length=1, max_length=300)] = None
    notes: Annotated[str | None, Field(max_length=5000)] = None


def _parse(model: type[Record], data: Any, region: str | None) -> Any:
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON object")
    try:
        return model.model_validate(data, context={"region": region})
    except ValidationError as exc:
        details = field_errors(exc)
        raise ApiError(422, "invalid_request", summary(details), details) from None


def appointment_view(config: TenantConfig, row: Appointment) -> dict[str, Any]:
    """An appointment as the API shows it: times in the staff member's zone (and UTC)."""
    member = config.staff_member(row.staff_id)
    zone = ZoneInfo((member.timezone if member else None) or config.timezone)
    spec = config.appointment_type(row.appointment_type or "")
    return {
        "id": row.id,
        "status": row.status,
        "staff_id": row.staff_id,
        "type": row.appointment_type,
        "type_label": spec.label if spec else None,
        "timezone": str(zone),
        "start": row.start.astimezone(zone).isoformat(),
        "end": row.end.astimezone(zone).isoformat(),
        "start_utc": as_utc_iso(row.start),
        "end_utc": as_utc_iso(row.end),
        "caller": row.caller,
        "subject": row.subject,
        "notes": row.notes,
        "event": {
            "calendar_id": row.calendar_id,
            "event_id": row.event_id,
            "etag": row.event_etag,
        }
        if row.event_id
        else None,
        "error": row.last_error if row.status == "failed" else None,
        "booked_by": row.booked_by,
        "created_at": as_utc_iso(row.created_at),
        "updated_at": as_utc_iso(row.updated_at),
    }


def _answer(tenant_id: str, outcome: Outcome) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        config = parsed_config(tenant)
        deliveries = list(
            session.scalars(
                select(Delivery)
                .where(Delivery.appointment_id == outcome.appointment.id)
                .order_by(Delivery.created_at, Delivery.id)
            )
        )
        connections = {
            c.id: c
            for c in session.scalars(select(Connection).where(Connection.tenant_id == tenant_id))
        }
    return {
        **appointment_view(config, outcome.appointment),
        "deliveries": [delivery_view(d, connections.get(d.connection_id)) for d in deliveries],
    }


@router.post(
    "/appointments",
    status_code=201,
    responses={200: {"description": "the same Idempotency-Key was used before"}},
    openapi_extra=json_request(BookingBody),
)
def post_appointment(
    tenant_id: str,
    who: Caller,
    response: Response,
    data: Annotated[Any, Depends(json_body)],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """Book a slot: lock the staff member, re-check live, write the calendar event,
    confirm, then tell the CRM (outbox)."""
    with session_scope(readonly=True) as session:
        config = parsed_config(tenant_for(session, who, tenant_id, "secretary"))
    if not idempotency_key or not idempotency_key.strip():
        raise ApiError(
            400,
            "idempotency_key_required",
            "booking needs an Idempotency-Key header",
            [{"field": "Idempotency-Key", "problem": "missing",
              "hint": "send a unique key per booking (e.g. a UUID) and reuse it on retries"}],
        )  # fmt: skip
    body: BookingBody = _parse(BookingBody, data, config.phone_region)
    request = BookingRequest(
        staff_id=body.staff_id,
        type_id=body.type,
        start=body.start,
        caller=body.caller.model_dump(mode="json", exclude_none=True),
        subject=body.subject,
        notes=body.notes,
        idempotency_key=idempotency_key.strip(),
        booked_by=body.booked_by or who.label,
        call_id=body.call_id,
    )
    try:
        outcome = book(tenant_id, request)
    except BookingError as exc:
        raise api_error(exc) from None
    if not outcome.created:
        response.status_code = 200
    return _answer(tenant_id, outcome)


@router.get("/appointments")
def get_appointments(
    tenant_id: str,
    who: Caller,
    start: From = None,
    to: To = None,
    staff: Staff = None,
    caller: CallerPhone = None,
    status: Annotated[str | None, Query(
        max_length=16, description="pending | confirmed | cancelled | failed")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The tenant's appointments by start, latest first (``from``/``to`` bound the start)."""
    with session_scope(readonly=True) as session:
        config = parsed_config(tenant_for(session, who, tenant_id, "secretary"))
        filters = read_filters(start=start, end=to, staff=staff, caller=caller, status=status,
                               region=config.phone_region)
        try:
            page = list_appointments(session, tenant_id, filters, limit=limit, cursor=cursor)
        except BadFilter as exc:
            raise bad_filter(exc) from None
        body = page_body("appointments", page,
                         [appointment_view(config, row) for row in page.items])
        shown = [row.id for row in page.items]
    with session_scope() as writer:  # the read is on the record before any content leaves
        audit.record_reads(writer, tenant_id, actor=who.label, via="api", page="appointments",
                           appointments=shown)
    return body


def _visible(tenant_id: str, who: Any) -> None:
    with session_scope(readonly=True) as session:
        tenant_for(session, who, tenant_id, "secretary")


@router.get("/appointments/{appointment_id}")
def get_appointment(tenant_id: str, appointment_id: str, who: Caller) -> dict[str, Any]:
    _visible(tenant_id, who)
    with session_scope(readonly=True) as session:
        row = session.get(Appointment, appointment_id)
        if row is None or row.tenant_id != tenant_id:
            raise not_found(f"appointment {appointment_id!r}")
    answer = _answer(tenant_id, Outcome(row, created=False))
    with session_scope(readonly=True) as session:  # two-way sync conflicts resolved on it
        answer["conflicts"] = conflicts_of(session, tenant_id, appointment_id)
    with session_scope() as writer:  # the read is on the record before any content leaves
        audit.record_reads(writer, tenant_id, actor=who.label, via="api", page="appointment",
                           appointments=[appointment_id])
    return answer


@router.patch("/appointments/{appointment_id}", openapi_extra=json_request(ChangeBody))
def patch_appointment(
    tenant_id: str,
    appointment_id: str,
    who: Caller,
    data: Annotated[Any, Depends(json_body)],
) -> dict[str, Any]:
    """Move (new ``start``) and/or retitle; the calendar event follows."""
    with session_scope(readonly=True) as session:
        config = parsed_config(tenant_for(session, who, tenant_id, "secretary"))
    body: ChangeBody = _parse(ChangeBody, data, config.phone_region)
    if body.start is None and body.subject is None and body.notes is None:
        raise ApiError(
            422,
            "invalid_request",
            "nothing to change: send start, subject or notes",
            [{"field": "(body)", "problem": "empty change", "hint": "send a new start"}],
        )
    try:
        outcome = reschedule(
            tenant_id,
            appointment_id,
            start=body.start,
            subject=body.subject,
            notes=body.notes,
            actor=who.label,
        )
    except BookingError as exc:
        raise api_error(exc) from None
    return _answer(tenant_id, outcome)


@router.delete("/appointments/{appointment_id}")
def delete_appointment(tenant_id: str, appointment_id: str, who: Caller) -> dict[str, Any]:
    """Cancel: the calendar event is deleted, the CRM told. Cancelling twice is fine."""
    _visible(tenant_id, who)
    try:
        outcome = cancel(tenant_id, appointment_id, actor=who.label)
    except BookingError as exc:
        raise api_error(exc) from None
    return _answer(tenant_id, outcome)
