"""Digests: messages collected per (tenant, rule, recipient, due time), sent as one summary.

A ``digest`` action gives each message a delivery that is not sent alone: it
waits (status ``pending``, ``next_attempt_at`` = the digest's due time, action
``digest.item``) with ``digest_key`` = the id of its bucket's summary delivery.
The summary (action ``digest.summary``, ``digest_key`` = the bucket key) is
created when the bucket's first message arrives, due at the same time, on the
same sender connection; its payload is built at send time from the bucket's
messages. When it is delivered (or dead), its items follow. An item never joins
a summary already claimed: a message arriving then starts a new summary.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.store.models import AuditEvent, Delivery, Message, utcnow

ITEM, SUMMARY = "digest.item", "digest.summary"


def bucket_key(tenant_id: str, rule: str, channel: str, to: str, due_at: str) -> str:
    return f"{tenant_id}|{rule}|{channel}|{to}|{due_at}"[:300]


def collect(session: Session, message: Message, connection_id: str, rule: str,
            params: dict[str, Any]) -> tuple[Delivery, Delivery | None]:
    """The message's item delivery, and the new summary when this message opens a bucket."""
    digest = params.get("digest") or {}
    due_text = digest.get("due_at")
    due = datetime.fromisoformat(due_text) if due_text else utcnow()
    key = bucket_key(message.tenant_id, rule, str(params.get("channel")), str(params.get("to")),
                     due.isoformat())
    summary = session.scalar(
        select(Delivery).where(Delivery.digest_key == key, Delivery.action == SUMMARY,
                               Delivery.status == "pending")
        .order_by(Delivery.created_at.desc()).limit(1).with_for_update()
    )
    created = None
    if summary is None:
        summary = created = Delivery.new(
            tenant_id=message.tenant_id,
            message_id=None, connection_id=connection_id, rule=rule, action=SUMMARY,
            params={k: v for k, v in params.items() if k != "redact"},
            next_attempt_at=max(due, utcnow()), digest_key=key,
        )
        session.add(summary)
    item = Delivery.new(
        tenant_id=message.tenant_id,
        message_id=message.id, connection_id=connection_id, rule=rule, action=ITEM,
        params=dict(params), next_attempt_at=summary.next_attempt_at, digest_key=summary.id,
    )
    session.add(item)
    return item, created


def items(session: Session, summary: Delivery) -> list[tuple[Delivery, Message]]:
    rows = session.execute(
        select(Delivery, Message).join(Message, Message.id == Delivery.message_id)
        .where(Delivery.digest_key == summary.id, Delivery.action == ITEM)
        .order_by(Message.taken_at, Message.id)
    )
    return [(d, m) for d, m in rows.all()]


def settle(session: Session, summary: Delivery) -> None:
    """After the summary is recorded: its items take its status (delivered or dead)."""
    if summary.action != SUMMARY or summary.status not in ("delivered", "dead"):
        return
    rows = session.scalars(select(Delivery).where(
        Delivery.digest_key == summary.id, Delivery.action == ITEM,
        Delivery.status.in_(("pending", "dead"))))
    for item in rows:
        item.status = summary.status
        item.delivered_at = summary.delivered_at
        item.external_id = summary.external_id
        item.last_error = summary.last_error
        session.add(AuditEvent(
            tenant_id=item.tenant_id, subject_type="delivery", subject_id=item.id,
            kind="delivery.delivered" if summary.status == "delivered" else "delivery.dead",
            detail={"in_digest": summary.id,
                    **({"reason": summary.last_error} if summary.last_error else {})}))
