"""Accepting a message: validate against the tenant's config, then write the
message and one delivery per destination in one transaction (transactional
outbox). Enqueuing happens after commit, in the caller."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from mappings.config import TenantConfig
from mappings.plan import plan_deliveries
from relais.domain import CallMessage
from relais.models import AuditEvent, Connection, Delivery, Message, new_id


class MessageRejected(ValueError):
    """The message is well-formed JSON but the tenant cannot take it."""

    def __init__(self, field: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.field, self.hint = field, hint


@dataclass
class Accepted:
    message: Message
    deliveries: list[Delivery]
    created: bool  # False when an Idempotency-Key replay returned the original
    # Connections that need a delivery task enqueued after commit.
    to_wake: list[str] = field(default_factory=list)

    @property
    def connection_ids(self) -> list[str]:
        return sorted({d.connection_id for d in self.deliveries})


def mark_wake(session: Session, connection_ids: list[str]) -> list[str]:
    """Flag connections as having a task queued; return those not flagged yet.

    The row lock orders this against the worker's claim, which clears the flag
    in the same transaction as it claims: a delivery committed before the claim
    is claimed by it, one committed after finds the flag clear and enqueues.
    """
    to_wake = []
    for connection_id in sorted(set(connection_ids)):
        row = session.get(Connection, connection_id, with_for_update=True, populate_existing=True)
        if row is not None and not row.wake_queued:
            row.wake_queued = True
            to_wake.append(connection_id)
    return to_wake


def _check(config: TenantConfig, msg: CallMessage) -> None:
    call_type = config.call_type(msg.call_type)
    if call_type is None:
        known = ", ".join(ct.id for ct in config.call_types)
        raise MessageRejected(
            "call_type", f"unknown call type {msg.call_type!r}", f"use one of: {known}"
        )
    if msg.staff_id and config.staff_member(msg.staff_id) is None:
        known = ", ".join(s.id for s in config.staff)
        raise MessageRejected(
            "staff_id", f"unknown staff member {msg.staff_id!r}", f"use one of: {known}"
        )
    for spec in call_type.intake_fields:
        if spec.required and msg.intake.get(spec.name) in (None, ""):
            raise MessageRejected(
                f"intake.{spec.name}",
                f"intake field {spec.name!r} is required for call type {call_type.id!r}",
                f"add intake.{spec.name} ({spec.label})",
            )


def accept_message(
    session: Session,
    tenant_id: str,
    config: TenantConfig,
    msg: CallMessage,
    idempotency_key: str | None = None,
) -> Accepted:
    if idempotency_key:
        existing = session.scalar(
            select(Message).where(
                Message.tenant_id == tenant_id, Message.idempotency_key == idempotency_key
            )
        )
        if existing is not None:
            deliveries = list(
                session.scalars(select(Delivery).where(Delivery.message_id == existing.id))
            )
            return Accepted(existing, deliveries, created=False)

    _check(config, msg)
    call_type = config.call_type(msg.call_type)
    assert call_type is not None
    chosen = msg.urgency or call_type.urgency_default
    urgency = str(getattr(chosen, "value", chosen))
    plan = plan_deliveries(config, msg.call_type, urgency)
    if not plan.deliveries and not plan.dropped:
        raise MessageRejected(
            "call_type",
            f"no rule routes call type {msg.call_type!r} and the tenant has no default rule",
            "ask the tenant admin to add a rule or a default rule",
        )
    connections = {
        c.name: c
        for c in session.scalars(
            select(Connection).where(
                Connection.tenant_id == tenant_id, Connection.status != "disabled"
            )
        )
    }
    message = Message(
        id=new_id("msg"),
        tenant_id=tenant_id,
        idempotency_key=idempotency_key,
        call_type=msg.call_type,
        urgency=urgency,
        caller=msg.caller.model_dump(mode="json", exclude_none=True),
        subject=msg.subject,
        body=msg.body,
        taken_by=msg.taken_by,
        taken_at=msg.taken_at,
        staff_id=msg.staff_id,
        callback_requested=msg.callback_requested,
        intake=msg.intake,
        status="dropped" if plan.dropped and not plan.deliveries else "accepted",
    )
    session.add(message)
    session.flush()  # no ORM relationships: write the parent row before its deliveries
    deliveries = []
    for planned in plan.deliveries:
        connection = connections.get(planned.connection)
        if connection is None:  # config and store disagree: a bug, not user input
            raise RuntimeError(f"connection {planned.connection!r} of {tenant_id} is not stored")
        delivery_id = new_id("dlv")
        deliveries.append(
            Delivery(
                id=delivery_id,
                tenant_id=tenant_id,
                message_id=message.id,
                connection_id=connection.id,
                rule=planned.rule,
                action="message.created",
                params=dict(planned.action),
                idempotency_key=f"relais-{delivery_id}",
            )
        )
    session.add_all(deliveries)
    session.add(
        AuditEvent(
            tenant_id=tenant_id,
            kind="message.accepted" if deliveries else "message.dropped",
            subject_type="message",
            subject_id=message.id,
            detail={"deliveries": [d.id for d in deliveries], "taken_by": msg.taken_by},
        )
    )
    session.flush()
    accepted = Accepted(message, deliveries, created=True)
    accepted.to_wake = mark_wake(session, accepted.connection_ids)
    return accepted
