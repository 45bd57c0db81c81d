"""Accepting a message: validate against the tenant's config, then write the
message and one delivery per destination in one transaction (transactional
outbox). Enqueuing happens after commit, in the caller."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from mappings.config import TenantConfig
from mappings.plan import PlanError, PlannedDelivery, plan_for
from mappings.recipients import RELAIS_SENDER
from mappings.rules import CallContext
from mappings.schema import CONNECTION_KINDS
from sync import digest as digests
from sync import escalation as escalations
from sync.contacts import is_known_caller
from sync.domain import CallMessage, check_instant
from sync.senders import SENDER_NAMES, SenderMissing, ensure_sender, sender_config
from sync.store.crypto import encrypt_json
from sync.store.models import AuditEvent, Connection, Delivery, Message, new_id, utcnow


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
    # The tenant's connections accepting loaded, by id (the answer shows them; the
    # session's identity map keeps only what something references).
    connections: dict[str, Connection] = field(default_factory=dict)

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
    every writing transaction (sync.store.db).
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
    declared = {spec.name: spec for spec in call_type.intake_fields}
    for name in msg.intake:
        if name not in declared:
            raise MessageRejected(
                f"intake.{name}",
                f"call type {call_type.id!r} has no intake field {name!r}",
                f"known fields: {', '.join(declared) or 'none'}",
            )
    for spec in call_type.intake_fields:
        value = msg.intake.get(spec.name)
        if value in (None, ""):
            if spec.required:
                raise MessageRejected(
                    f"intake.{spec.name}",
                    f"intake field {spec.name!r} is required for call type {call_type.id!r}",
                    f"add intake.{spec.name} ({spec.label})",
                )
            continue
        problem = _intake_problem(spec.type, spec.choices, value)
        if problem:
            raise MessageRejected(f"intake.{spec.name}", f"{value!r} {problem[0]}", problem[1])


def _intake_problem(kind: str, choices: list[str] | None, value: Any) -> tuple[str, str] | None:
    """Why ``value`` is no answer of type ``kind``: (problem, hint); None when it is."""
    if kind == "number":
        number = value.replace(",", ".").strip() if isinstance(value, str) else value
        try:
            ok = not isinstance(number, bool) and math.isfinite(float(number))
        except (TypeError, ValueError):
            ok = False
        return None if ok else ("is not a number", "send a number such as 3 or 2.5")
    if kind == "bool":
        return None if isinstance(value, bool) else ("is not true or false",
                                                     "send true or false")
    if kind == "date":
        try:
            check_instant(datetime.combine(date.fromisoformat(value), time(), UTC))
        except (TypeError, ValueError):
            return "is not a date", "send a date as YYYY-MM-DD, e.g. 2026-12-24"
        return None
    if kind == "choice":
        return None if value in (choices or []) else (
            "is not one of the choices", f"use one of: {', '.join(choices or [])}")
    return None if isinstance(value, str) else ("is not text", "send text in quotes")


def accept_message(
    session: Session,
    tenant_id: str,
    config: TenantConfig,
    msg: CallMessage,
    idempotency_key: str | None = None,
    now: datetime | None = None,
    *,
    request_key: str | None = None,
    retried: bool = False,
) -> Accepted:
    """Write the message and its deliveries; ``now`` (tests) is when escalations start.

    ``request_key`` (used when the client sent no ``idempotency_key``) is the
    API's own token for one request, the same in each attempt of it: stored as
    the message's idempotency key, it lets an attempt retried after a dropped
    connection (``retried``) find the message whose COMMIT did reach the server,
    and answer it as created instead of storing it twice. A first attempt
    costs no lookup and no lock (no other request carries this token).
    """
    if request_key and retried and not idempotency_key:
        stored = _committed_before(session, tenant_id, request_key, msg)
        if stored is not None:
            return stored
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
                known_contact=is_known_caller(session, tenant_id, msg.caller.phone)
                if _asks_known_contact(config) else None,
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
    unsendable = _missing_senders(config, plan.deliveries)
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
        idempotency_key=idempotency_key or request_key,
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
        call_id=msg.call_id,
        status="dropped" if plan.dropped and not plan.deliveries else "accepted",
        sealed=config.is_sensitive(msg.call_type),  # content encrypted at rest
    )
    session.add(message)
    session.flush()  # no ORM relationships: write the parent row before its deliveries
    deliveries: list[Delivery] = []
    later: list[tuple[str, float]] = []
    started: list[tuple[str, float]] = []
    now = now or utcnow()
    for index, planned in enumerate(plan.deliveries):
        if index in unsendable:
            deliveries.append(_unsent(session, tenant_id, message.id, planned, unsendable[index]))
            continue
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
                        escalations=started, connections={c.id: c for c in connections.values()})
    due_now = {d.connection_id for d in deliveries
               if d.action != digests.ITEM and d.status != "dead"}
    accepted.to_wake = mark_wake(session, sorted(due_now))
    return accepted


def _asks_known_contact(config: TenantConfig) -> bool:
    """Whether a rule asks if the caller is in the CRM (only rules read it): if
    none does, accepting skips the directory query."""
    return any(rule.when.known_contact is not None for rule in config.rules.rules)


def _committed_before(session: Session, tenant_id: str, request_key: str,
                      msg: CallMessage) -> Accepted | None:
    """The message an earlier attempt of this request committed, as created
    (its content is compared too: the token is never shown, but a client could
    send any ``Idempotency-Key``).

    Its connections are woken again: the attempt that committed died before
    enqueuing (an extra wake finds nothing or what is due; the sweep would too).
    """
    message = session.scalar(select(Message).where(
        Message.tenant_id == tenant_id, Message.idempotency_key == request_key))
    if message is None or _content(message) != _content_of(msg, message.urgency):
        return None
    deliveries = list(session.scalars(select(Delivery).where(Delivery.message_id == message.id)))
    wake = sorted({d.connection_id for d in deliveries
                   if d.action != digests.ITEM and d.status == "pending"})
    return Accepted(message, deliveries, created=True, to_wake=wake)


def _missing_senders(
    config: TenantConfig, planned: list[PlannedDelivery]
) -> dict[int, SenderMissing]:
    """Planned deliveries (by index) needing a Relais sender the operator has not set up.

    The call is accepted anyway (``tenants apply`` refuses such rules, but the
    operator may unset a sender later): those deliveries are recorded dead, with
    the reason, instead of refusing what the secretary took down.
    """
    out = {}
    for index, delivery in enumerate(planned):
        try:
            if delivery.kind == "escalate":
                assert delivery.ladder is not None
                escalations.check_senders(config, delivery.ladder)
            elif delivery.kind not in CONNECTION_KINDS and delivery.connection == RELAIS_SENDER:
                sender_config(str(delivery.action.get("channel") or delivery.kind))
        except SenderMissing as exc:
            out[index] = exc
    return out


def _unsent(session: Session, tenant_id: str, message_id: str, planned: PlannedDelivery,
            exc: SenderMissing) -> Delivery:
    """A dead delivery saying why it was not sent, on the sender's (inactive) connection."""
    name = SENDER_NAMES[exc.channel]
    row = session.scalar(
        select(Connection).where(Connection.tenant_id == tenant_id, Connection.name == name)
    )
    if row is None:
        row = Connection(tenant_id=tenant_id, name=name, provider=exc.channel, role="notify",
                         status="not_configured", settings={}, credentials=encrypt_json({}))
        session.add(row)
        session.flush()
    what = (f"escalate {planned.ladder}" if planned.kind == "escalate"
            else f"{planned.kind} to {planned.recipients[0].address}")
    return Delivery.new(
        tenant_id=tenant_id, message_id=message_id, connection_id=row.id, rule=planned.rule,
        action="message.created", params=dict(planned.action), status="dead",
        last_error=f"not sent: rule {planned.rule!r} ({what}) needs Relais's own "
                   f"{exc.channel} sender; the operator must set {', '.join(exc.missing)}",
    )


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
    from sync.queue import enqueue_connections, enqueue_escalation

    enqueue_connections(accepted.to_wake)
    for connection_id, seconds in accepted.wake_later:
        enqueue_connections([connection_id], countdown=seconds)
    for escalation_id, seconds in accepted.escalations:
        enqueue_escalation(escalation_id, countdown=seconds)
