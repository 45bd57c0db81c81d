"""Accepting a message: validate against the tenant's config, then write the
message and one delivery per destination in one transaction (transactional
outbox). Enqueuing happens after commit, in the caller."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from mappings.config import TenantConfig
from mappings.plan import PlanError, PlannedDelivery, plan_for
from mappings.recipients import RELAIS_SENDER
from mappings.rules import CallContext
from mappings.schema import CONNECTION_KINDS
from relais.domain import CallMessage
from relais.models import AuditEvent, Connection, Delivery, Message, new_id, utcnow
from sync import digest as digests
from sync import escalation as escalations
from sync.contacts import is_known_caller
from sync.senders import SenderMissing, ensure_sender, sender_config


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
    # (connection id, seconds): digests due later need a delayed task.
    wake_later: list[tuple[str, float]] = field(default_factory=list)
    # (escalation id, seconds until its next step).
    escalations: list[tuple[str, float]] = field(default_factory=list)

    @property
    def connection_ids(self) -> list[str]:
        return sorted({d.connection_id for d in self.deliveries})


def mark_wake(session: Session, connection_ids: list[str]) -> list[str]:
    """Flag connections as having a task queued; return those not flagged yet.

    The row lock orders this against the worker's claim, which clears the flag
    in the same transaction as it claims: a delivery committed before the claim
    is claimed by it, one committed after finds the flag clear and enqueues.

    The lock is ``FOR NO KEY UPDATE`` (SQLAlchemy's ``key_share``): the deliveries
    just inserted hold a key-share lock on these rows through their foreign key,
    which a plain ``FOR UPDATE`` waits for, so two concurrent posts to one
    connection deadlocked (each waiting for the other's key-share lock).
    Rows are locked in sorted order so that posts to several connections queue
    instead of crossing.
    """
    to_wake = []
    for connection_id in sorted(set(connection_ids)):
        row = session.get(Connection, connection_id, with_for_update={"key_share": True},
                          populate_existing=True)
        if row is not None and not row.wake_queued:
            row.wake_queued = True
            to_wake.append(connection_id)
    return to_wake


class IdempotencyKeyReused(ValueError):
    """The key already stored a message with different content (Stripe's rule)."""

    def __init__(self, key: str, message_id: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used for message {message_id} "
                         "with a different body")
        self.key, self.message_id = key, message_id


def _lock_key(session: Session, tenant_id: str, key: str) -> None:
    """Serialise posts carrying one tenant's key until the first one commits.

    Without it concurrent retries all miss the lookup and all but one insert
    fail on the unique constraint (500). PostgreSQL: a transaction-scoped
    advisory lock on a hash of (tenant, key), so the waiter's next statement
    sees the committed message. SQLite: ``BEGIN IMMEDIATE`` already serialises
    every writing transaction (relais.db).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                        {"k": f"message-idempotency:{tenant_id}:{key}"})


def _content(message: Message) -> dict[str, Any]:
    return {
        "call_type": message.call_type, "urgency": message.urgency, "caller": message.caller,
        "subject": message.subject, "body": message.body, "taken_by": message.taken_by,
        "taken_at": message.taken_at, "staff_id": message.staff_id,
        "callback_requested": message.callback_requested, "intake": message.intake,
    }


def _content_of(msg: CallMessage, stored_urgency: str) -> dict[str, Any]:
    """What ``msg`` would store; an omitted urgency matches the stored default."""
    return {
        "call_type": msg.call_type,
        "urgency": str(msg.urgency.value) if msg.urgency else stored_urgency,
        "caller": msg.caller.model_dump(mode="json", exclude_none=True),
        "subject": msg.subject, "body": msg.body, "taken_by": msg.taken_by,
        "taken_at": msg.taken_at, "staff_id": msg.staff_id,
        "callback_requested": msg.callback_requested, "intake": msg.intake,
    }


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
    now: datetime | None = None,
) -> Accepted:
    """Write the message and its deliveries; ``now`` (tests) is when escalations start."""
    if idempotency_key:
        _lock_key(session, tenant_id, idempotency_key)
        existing = session.scalar(
            select(Message).where(
                Message.tenant_id == tenant_id, Message.idempotency_key == idempotency_key
            )
        )
        if existing is not None:
            if _content(existing) != _content_of(msg, existing.urgency):
                raise IdempotencyKeyReused(idempotency_key, existing.id)
            deliveries = list(
                session.scalars(select(Delivery).where(Delivery.message_id == existing.id))
            )
            return Accepted(existing, deliveries, created=False)

    _check(config, msg)
    call_type = config.call_type(msg.call_type)
    assert call_type is not None
    chosen = msg.urgency or call_type.urgency_default
    urgency = str(getattr(chosen, "value", chosen))
    try:
        plan = plan_for(
            config,
            CallContext(
                call_type=msg.call_type,
                urgency=urgency,
                at=msg.taken_at,
                known_contact=is_known_caller(session, tenant_id, msg.caller.phone),
                staff_id=msg.staff_id,
                intake=msg.intake,
            ),
        )
    except PlanError as exc:
        raise MessageRejected("call_type", str(exc), "fix the call") from None
    if not plan.deliveries and not plan.dropped:
        raise MessageRejected(
            "call_type",
            f"no rule routes call type {msg.call_type!r} and the tenant has no default rule",
            "ask the tenant admin to add a rule or a default rule",
        )
    _check_senders(config, plan.deliveries)
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
    deliveries: list[Delivery] = []
    later: list[tuple[str, float]] = []
    started: list[tuple[str, float]] = []
    now = now or utcnow()
    for planned in plan.deliveries:
        if planned.kind == "escalate":
            assert planned.ladder is not None
            esc, sent = escalations.start(
                session, config, message, planned.ladder, planned.rule, planned.redact, now
            )
            deliveries += sent
            assert esc.next_at is not None
            started.append((esc.id, max(0.0, (esc.next_at - now).total_seconds())))
            continue
        connection = _connection_for(session, tenant_id, connections, planned)
        if planned.kind == "digest":
            item, summary = digests.collect(
                session, message, connection.id, planned.rule, dict(planned.action)
            )
            deliveries.append(item)
            if summary is not None:
                wait = (summary.next_attempt_at - utcnow()).total_seconds()
                later.append((connection.id, max(0.0, wait)))
            continue
        deliveries.append(
            Delivery.new(
                tenant_id=tenant_id,
                message_id=message.id,
                connection_id=connection.id,
                rule=planned.rule,
                action="message.created",
                params=dict(planned.action),
            )
        )
    session.add_all(deliveries)
    session.add(
        AuditEvent(
            tenant_id=tenant_id,
            kind="message.dropped" if plan.dropped else "message.accepted",
            subject_type="message",
            subject_id=message.id,
            detail={
                "deliveries": [d.id for d in deliveries],
                "taken_by": msg.taken_by,
                **({"notes": plan.notes} if plan.notes else {}),
            },
        )
    )
    session.flush()
    accepted = Accepted(message, deliveries, created=True, wake_later=later,
                        escalations=started)
    due_now = {d.connection_id for d in deliveries if d.action != digests.ITEM}
    accepted.to_wake = mark_wake(session, sorted(due_now))
    return accepted


def _check_senders(config: TenantConfig, planned: list[PlannedDelivery]) -> None:
    """Refuse a message whose rules need Relais's own sender when the operator has none."""
    for delivery in planned:
        try:
            if delivery.kind == "escalate":
                assert delivery.ladder is not None
                escalations.check_senders(config, delivery.ladder)
            elif delivery.kind not in CONNECTION_KINDS and delivery.connection == RELAIS_SENDER:
                sender_config(str(delivery.action.get("channel") or delivery.kind))
        except SenderMissing as exc:
            what = (f"escalate {delivery.ladder}" if delivery.kind == "escalate"
                    else f"{delivery.kind} to {delivery.recipients[0].address}")
            raise MessageRejected(
                "rules",
                f"rule {delivery.rule!r} ({what}) sends through Relais's own "
                f"{exc.channel} sender, which is not configured",
                f"the operator must set {', '.join(exc.missing)}, or the tenant must add an "
                f"{exc.channel} connection and name it with `via:`",
            ) from None


def _connection_for(
    session: Session, tenant_id: str, connections: dict[str, Connection], planned: PlannedDelivery
) -> Connection:
    if planned.kind not in CONNECTION_KINDS and planned.connection == RELAIS_SENDER:
        channel = str(planned.action.get("channel") or planned.kind)
        return ensure_sender(session, tenant_id, channel)
    connection = connections.get(planned.connection)
    if connection is None:  # config and store disagree: a bug, not user input
        raise RuntimeError(f"connection {planned.connection!r} of {tenant_id} is not stored")
    return connection


def enqueue_accepted(accepted: Accepted) -> None:
    """After commit: wake the connections, schedule digests and escalation steps."""
    from relais.queue import enqueue_connections, enqueue_escalation

    enqueue_connections(accepted.to_wake)
    for connection_id, seconds in accepted.wake_later:
        enqueue_connections([connection_id], countdown=seconds)
    for escalation_id, seconds in accepted.escalations:
        enqueue_escalation(escalation_id, countdown=seconds)
