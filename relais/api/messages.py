"""Messages: accept a qualified call, show it with its deliveries' history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import ValidationError
from sqlalchemy import select

from relais.api.deps import DB, Caller, json_body, tenant_for
from relais.api.errors import ApiError, error_body, field_errors, not_found, summary
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
from relais.api.openapi import json_request
from relais.api.ops import MESSAGES_ACCEPTED
from relais.api.outage import request_attempt
from sync.domain import CallMessage, as_utc_iso
from sync.escalation import history as escalation_history
from sync.lists import BadFilter, list_messages
from sync.outbox import IdempotencyKeyReused, MessageRejected, accept_message, enqueue_accepted
from sync.privacy import audit
from sync.store.db import session_scope
from sync.store.models import AuditEvent, Connection, Delivery, Message
from sync.tenants import parsed_config

router = APIRouter(prefix="/v1/tenants/{tenant_id}", tags=["messages"])


def message_fields(message: Message) -> dict[str, Any]:
    """What a call says, as every view of a message shows it."""
    return {
        "call_type": message.call_type,
        "urgency": message.urgency,
        "caller": message.caller,
        "subject": message.subject,
        "body": message.body,
        "taken_by": message.taken_by,
        "taken_at": as_utc_iso(message.taken_at),
        "staff_id": message.staff_id,
        "callback_requested": message.callback_requested,
        "intake": message.intake,
    }


def delivery_view(delivery: Delivery, connection: Connection | None) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "connection": connection.name if connection else None,
        "provider": connection.provider if connection else None,
        "rule": delivery.rule,
        "action": delivery.action,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": as_utc_iso(delivery.next_attempt_at)
        if delivery.status == "pending"
        else None,
        "last_error": delivery.last_error,
        "external_id": delivery.external_id,
        "delivered_at": as_utc_iso(delivery.delivered_at) if delivery.delivered_at else None,
    }


@router.post("/messages", status_code=202, openapi_extra=json_request(CallMessage), responses={
    202: {"description": "Accepted: the message and its planned deliveries"},
    200: {"description": "The same Idempotency-Key and body: the original message"}})
def post_message(
    tenant_id: str,
    who: Caller,
    response: Response,
    data: Annotated[Any, Depends(json_body)],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    with session_scope() as session:
        tenant = tenant_for(session, who, tenant_id, "secretary")
        config = parsed_config(tenant)
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_json", "body must be a JSON object")
        try:
            msg = CallMessage.model_validate(data, context={"region": config.phone_region})
        except ValidationError as exc:
            details = field_errors(exc)
            raise ApiError(422, "invalid_message", summary(details), details) from None
        try:
            attempt = request_attempt()
            accepted = accept_message(session, tenant_id, config, msg, idempotency_key,
                                      request_key=f"relais-request-{attempt.token}",
                                      retried=attempt.retries > 0)
        except IdempotencyKeyReused as exc:
            detail = {"field": "Idempotency-Key", "problem": str(exc),
                      "hint": "use a new key for a different call, or resend the same body"}
            raise ApiError(422, "idempotency_key_reused", str(exc), [detail]) from None
        except MessageRejected as exc:
            detail = {"field": exc.field, "problem": str(exc), "hint": exc.hint}
            raise ApiError(422, "invalid_message", f"{exc.field}: {exc}", [detail]) from None
        body = {
            "id": accepted.message.id,
            "status": accepted.message.status,
            "deliveries": [
                delivery_view(d, accepted.connections.get(d.connection_id)
                              or session.get(Connection, d.connection_id))
                for d in accepted.deliveries
            ],
        }
    if accepted.created:
        MESSAGES_ACCEPTED.inc()
        enqueue_accepted(accepted)  # after commit: the outbox rule
    else:
        response.status_code = 200  # same Idempotency-Key: the original answer
    return body


@router.get("/messages")
def get_messages(
    tenant_id: str,
    who: Caller,
    session: DB,
    start: From = None,
    to: To = None,
    staff: Staff = None,
    caller: CallerPhone = None,
    status: Annotated[str | None, Query(max_length=16,
                                        description="accepted | dropped")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """The tenant's messages, newest call first; ``next_cursor`` fetches the next page."""
    tenant = tenant_for(session, who, tenant_id, "secretary")
    filters = read_filters(start=start, end=to, staff=staff, caller=caller, status=status,
                           region=parsed_config(tenant).phone_region)
    try:
        page = list_messages(session, tenant_id, filters, limit=limit, cursor=cursor)
    except BadFilter as exc:
        raise bad_filter(exc) from None
    with session_scope() as writer:  # the read is on the record before any content leaves
        audit.record_reads(writer, tenant_id, actor=who.label, via="api", page="messages",
                           messages=[m.id for m in page.items])
    return page_body("messages", page, [
        {"id": m.id, "status": m.status, **message_fields(m),
         "received_at": as_utc_iso(m.created_at)} for m in page.items])


@router.get("/messages/{message_id}")
def get_message(tenant_id: str, message_id: str, who: Caller, session: DB) -> dict[str, Any]:
    tenant_for(session, who, tenant_id, "secretary")
    message = session.get(Message, message_id)
    if message is None or message.tenant_id != tenant_id:
        raise not_found(f"message {message_id!r}")
    with session_scope() as writer:  # the read is on the record before any content leaves
        audit.append(writer, tenant_id, actor=who.label, action="message.read",
                     subject_type="message", subject_id=message.id, detail={"via": "api"})
    deliveries = list(
        session.scalars(
            select(Delivery).where(Delivery.message_id == message.id).order_by(Delivery.id)
        )
    )
    connections = {
        c.id: c
        for c in session.scalars(select(Connection).where(Connection.tenant_id == tenant_id))
    }
    events = session.scalars(
        select(AuditEvent)
        .where(
            AuditEvent.subject_type == "delivery",
            AuditEvent.subject_id.in_([d.id for d in deliveries]),
        )
        .order_by(AuditEvent.id)
    )
    history: dict[str, list[dict[str, Any]]] = {d.id: [] for d in deliveries}
    for event in events:
        history[event.subject_id].append(
            {"at": as_utc_iso(event.at), "event": event.kind, **event.detail}
        )
    return {
        "id": message.id,
        "status": message.status,
        **message_fields(message),
        "received_at": as_utc_iso(message.created_at),
        "deliveries": [
            {**delivery_view(d, connections.get(d.connection_id)), "history": history[d.id]}
            for d in deliveries
        ],
        # Ladders run for this message: each step (who was told, when), who acknowledged.
        "escalations": escalation_history(session, message.id),
    }


__all__ = ["router", "error_body"]
