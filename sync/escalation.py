"""Escalation ladders in the engine: start, advance, acknowledge, sweep.

A rule action ``escalate: <ladder>`` creates an :class:`sync.store.models.Escalation`
row and sends step 0 through the outbox at once (one delivery per recipient,
resolved when the step is sent: ``on_call`` reaches whoever is on call *then*).
While nobody acknowledges, step *i + 1* is sent when step *i*'s wait is over,
then the dead-end alert. Each advance is a Celery task (``relais.escalation_step``)
scheduled with the wait as countdown; it re-checks the row under lock, so a
duplicate or early task does nothing, and the beat sweep (:func:`due`) advances
overdue ladders, so a lost broker message only delays.

Acknowledgement (an SMS reply "OK", or the signed link of a step) stops it.
Every step, acknowledgement and end is an audit event on the escalation,
which the message's history shows.

One "OK" never leaves an emergency silently running: each ladder has a short
reference (``ref``, the smallest number no running ladder uses) that its SMS
carries ("Répondez OK 47"). "OK 47" acknowledges that ladder; a bare "OK" the
most recent one that told the number. Either way the phone gets a reply SMS
naming the ladder acknowledged and listing, with their references, those of
the tenant still open to it. (Two ladders started in the same instant on two
API processes may draw the same ref: "OK 47" then takes the most recent, and
the reply lists the other, so it is still not silent.)
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mappings.config import TenantConfig
from mappings.escalation import Ladder, LadderStep, ack_reply_text
from mappings.escalation import ladder as get_ladder
from mappings.recipients import RELAIS_SENDER
from sync.senders import SenderMissing, ensure_sender, sender_config
from sync.store.models import (
    AuditEvent,
    Connection,
    Delivery,
    Escalation,
    Message,
    Tenant,
    utcnow,
)
from sync.tenants import parsed_config

_OK = re.compile(r"^\W*ok\b(?:\W*?(\d{1,6})\b)?", re.IGNORECASE)
ACK_REPLY = "escalation.ack_reply"
log = logging.getLogger(__name__)


@dataclass
class Advanced:
    """What an advance did: deliveries to wake, and when to look again (seconds)."""

    deliveries: list[Delivery] = field(default_factory=list)
    run_again_in: float | None = None
    note: str = ""
    escalation_id: str = ""

    @property
    def connection_ids(self) -> list[str]:
        return sorted({d.connection_id for d in self.deliveries})


def _event(session: Session, esc: Escalation, kind: str, **detail: Any) -> None:
    session.add(AuditEvent(tenant_id=esc.tenant_id, kind=kind, subject_type="escalation",
                           subject_id=esc.id, detail=detail))


def check_senders(config: TenantConfig, name: str) -> None:
    """Raise ``SenderMissing`` when a step (or the dead end) needs an unconfigured sender."""
    found = get_ladder(config, name)
    for step in (*found.steps, found.dead_end):
        if step.connection == RELAIS_SENDER:
            sender_config(step.channel)


def _connection(session: Session, tenant_id: str, step: LadderStep) -> Connection:
    if step.connection == RELAIS_SENDER:
        return ensure_sender(session, tenant_id, step.channel)
    row = session.scalar(select(Connection).where(Connection.tenant_id == tenant_id,
                                                  Connection.name == step.connection))
    if row is None:
        raise RuntimeError(f"connection {step.connection!r} of {tenant_id} is not stored")
    return row


def _send_step(session: Session, config: TenantConfig, esc: Escalation, found: Ladder,
               index: int, now: datetime) -> list[Delivery]:
    step = found.step(index)
    connection = _connection(session, esc.tenant_id, step)
    recipients = step.recipients(config, now)
    out = []
    for recipient in recipients:
        delivery = Delivery.new(
            tenant_id=esc.tenant_id,
            message_id=esc.message_id,
            connection_id=connection.id,
            rule=esc.rule, action="escalation.dead_end" if step.dead_end else "escalation.step",
            params={
                "kind": "escalation", "channel": step.channel, "to": recipient.address,
                "template": step.template, "redact": esc.redact, "escalation_id": esc.id,
                "ladder": esc.ladder, "step": index, "dead_end": step.dead_end,
                "ref": esc.ref,
                **({"staff_id": recipient.staff_id} if recipient.staff_id else {}),
                **({"on_call": True} if recipient.on_call else {}),
            },
            next_attempt_at=utcnow(),  # due at once (``now`` may be a test's clock)
        )
        out.append(delivery)
    session.add_all(out)
    esc.step = index
    esc.notified = sorted({*esc.notified, *(r.address for r in recipients)})
    _event(session, esc, "escalation.dead_end" if step.dead_end else "escalation.step",
           step=index, channel=step.channel, at=now.isoformat(),
           told=[str(r) for r in recipients],
           deliveries=[d.id for d in out],
           **({} if recipients else {"note": "nobody to tell at this step"}))
    return out


def start(session: Session, config: TenantConfig, message: Message, ladder: str, rule: str,
          redact: bool, now: datetime | None = None) -> tuple[Escalation, list[Delivery]]:
    """Create the escalation of ``message`` and send step 0 (in the caller's transaction)."""
    now = now or utcnow()
    found = get_ladder(config, ladder)
    esc = Escalation(tenant_id=message.tenant_id, message_id=message.id, ladder=ladder,
                     rule=rule, redact=redact, step=0, notified=[], finished=False,
                     outcome="running", ref=_free_ref(session))
    session.add(esc)
    session.flush()
    _event(session, esc, "escalation.started", ladder=ladder, rule=rule,
           steps=len(found.steps), ref=esc.ref)
    deliveries = _send_step(session, config, esc, found, 0, now)
    esc.next_at = now + found.steps[0].wait
    return esc, deliveries


def advance(session: Session, escalation_id: str, now: datetime | None = None) -> Advanced:
    """Send the next step if it is due and nobody acknowledged (idempotent)."""
    now = now or utcnow()
    esc = session.get(Escalation, escalation_id, with_for_update=True, populate_existing=True)
    if esc is None or esc.finished:
        return Advanced(note="finished" if esc else "gone")
    if esc.next_at is not None and esc.next_at > now:
        return Advanced(run_again_in=(esc.next_at - now).total_seconds(), note="not due")
    tenant = session.get(Tenant, esc.tenant_id)
    assert tenant is not None
    config = parsed_config(tenant)
    try:
        found = get_ladder(config, esc.ladder)
    except LookupError:
        esc.finished, esc.outcome, esc.next_at = True, "abandoned", None
        _event(session, esc, "escalation.abandoned",
               reason=f"ladder {esc.ladder!r} is no longer in the configuration")
        return Advanced(note="abandoned")
    index = min(esc.step + 1, len(found.steps))
    deliveries = _send_step(session, config, esc, found, index, now)
    if index >= len(found.steps):
        esc.finished, esc.outcome, esc.next_at = True, "dead_end", None
        return Advanced(deliveries, note="dead end")
    wait = found.steps[index].wait
    esc.next_at = now + wait
    return Advanced(deliveries, run_again_in=wait.total_seconds(), note=f"step {index}")


def acknowledge(session: Session, escalation_id: str, by: str, via: str,
                now: datetime | None = None) -> tuple[Escalation | None, bool]:
    """Stop the ladder; ``(escalation, newly)``. A second acknowledgement changes nothing."""
    now = now or utcnow()
    esc = session.get(Escalation, escalation_id, with_for_update=True, populate_existing=True)
    if esc is None:
        return None, False
    if esc.acknowledged_at is not None or esc.finished:
        return esc, False
    esc.acknowledged_at, esc.acknowledged_by, esc.acknowledged_via = now, by, via
    esc.finished, esc.outcome, esc.next_at = True, "acknowledged", None
    _event(session, esc, "escalation.acknowledged", by=by, via=via, at=now.isoformat(),
           step=esc.step, ref=esc.ref)
    return esc, True


def is_ok_reply(text: str) -> bool:
    """``OK``, ``ok``, `` Ok ! ``, ``ok merci``, ``OK 47``: an acknowledgement."""
    return bool(_OK.match(text or ""))


def ok_reference(text: str) -> int | None:
    """The ladder an "OK" names: ``OK 47`` / ``ok #47 merci`` → 47; a bare OK → None."""
    found = _OK.match(text or "")
    return int(found.group(1)) if found and found.group(1) else None


def _free_ref(session: Session) -> int:
    """The smallest reference no running ladder holds: short to type on a phone."""
    held = set(session.scalars(select(Escalation.ref).where(
        Escalation.finished.is_(False), Escalation.ref.is_not(None))))
    ref = 1
    while ref in held:
        ref += 1
    return ref


def open_for_number(session: Session, number: str) -> list[Escalation]:
    """Running escalations that told ``number``, the most recent first."""
    rows = session.scalars(
        select(Escalation).where(Escalation.finished.is_(False))
        .order_by(Escalation.created_at.desc(), Escalation.id.desc())
    )
    return [e for e in rows if number in (e.notified or [])]


@dataclass
class SmsAck:
    """What an inbound "OK" did: the ladder it stopped (None: none), the tenant's ladders
    still open to that phone, and the reply SMS (None: no sender to reply with)."""

    acknowledged: Escalation | None
    still_open: list[Escalation]
    reply: Delivery | None


def acknowledge_sms(session: Session, number: str, text: str,
                    now: datetime | None = None) -> SmsAck | None:
    """Act on an SMS from ``number`` (None: not an "OK", or nothing open to that phone).

    "OK 47" stops ladder 47, a bare "OK" the most recent; the reply SMS says which and
    lists the tenant's ladders still open to the phone. One reply delivery (outbox)."""
    if not is_ok_reply(text):
        return None
    running = open_for_number(session, number)
    if not running:
        return None
    ref = ok_reference(text)
    target = running[0] if ref is None else next((e for e in running if e.ref == ref), None)
    acknowledged = None
    if target is not None:
        acknowledged, newly = acknowledge(session, target.id, by=number, via="sms", now=now)
        if not newly:
            acknowledged = None
    tenant_id = (target or running[0]).tenant_id
    still = [e for e in running if e is not target and e.tenant_id == tenant_id]
    reply = _reply(session, tenant_id, number, target or running[0], acknowledged, ref, still)
    return SmsAck(acknowledged, still, reply)


def _reply(session: Session, tenant_id: str, number: str, about: Escalation,
           acknowledged: Escalation | None, asked: int | None,
           still: list[Escalation]) -> Delivery | None:
    tenant = session.get(Tenant, tenant_id)
    assert tenant is not None
    config = parsed_config(tenant)
    try:
        sender = ensure_sender(session, tenant_id, "sms")
    except SenderMissing as exc:  # the "OK" came through Relais's own SMS webhook: rare
        log.warning("no reply to an OK for escalation %s: %s", about.id, exc)
        return None

    def label(esc: Escalation) -> tuple[int | None, str, datetime]:
        return esc.ref, esc.ladder, esc.created_at

    text = ack_reply_text(
        config, label(acknowledged) if acknowledged else None,
        None if acknowledged else asked, [label(e) for e in still])
    delivery = Delivery.new(
        tenant_id=tenant_id, message_id=about.message_id, connection_id=sender.id,
        rule=about.rule, action=ACK_REPLY,
        params={"kind": "escalation", "channel": "sms", "to": number, "reply": text,
                "escalation_id": about.id, "redact": about.redact},
        next_attempt_at=utcnow(),
    )
    session.add(delivery)
    return delivery


def due(session: Session, now: datetime | None = None, grace: float = 0.0) -> list[str]:
    """Running escalations whose next step is overdue by ``grace`` seconds (beat sweep)."""
    now = now or utcnow()
    return list(session.scalars(
        select(Escalation.id).where(Escalation.finished.is_(False),
                                    Escalation.next_at <= now - timedelta(seconds=grace))
    ))


def history(session: Session, message_id: str) -> list[dict[str, Any]]:
    """The escalations of a message with their events, for the message view."""
    from sync.domain import as_utc_iso

    out = []
    for esc in session.scalars(select(Escalation).where(Escalation.message_id == message_id)
                               .order_by(Escalation.created_at)):
        events = session.scalars(select(AuditEvent).where(
            AuditEvent.subject_type == "escalation", AuditEvent.subject_id == esc.id)
            .order_by(AuditEvent.id))
        out.append({
            "id": esc.id, "ref": esc.ref, "ladder": esc.ladder, "rule": esc.rule,
            "outcome": esc.outcome,
            "step": esc.step, "finished": esc.finished,
            "next_at": as_utc_iso(esc.next_at) if esc.next_at else None,
            "acknowledged_at": as_utc_iso(esc.acknowledged_at) if esc.acknowledged_at else None,
            "acknowledged_by": esc.acknowledged_by, "acknowledged_via": esc.acknowledged_via,
            "history": [{"at": as_utc_iso(e.at), "event": e.kind, **e.detail} for e in events],
        })
    return out


def run_step(escalation_id: str, now: datetime | None = None) -> Advanced:
    """One advance in its own transaction (the Celery task ``relais.escalation_step``)."""
    from sync.store.db import session_scope

    with session_scope() as session:
        result = advance(session, escalation_id, now)
        result.escalation_id = escalation_id
        ids = result.connection_ids  # read while attached
    result.deliveries = [Delivery(connection_id=c) for c in ids]
    return result


def run_due(now: datetime | None = None) -> list[Advanced]:
    """Advance every overdue ladder (the beat sweep ``relais.escalation_sweep``)."""
    from sync.store.db import session_scope

    with session_scope(readonly=True) as session:
        ids = due(session, now)
    return [run_step(escalation_id, now) for escalation_id in ids]
