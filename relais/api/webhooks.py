"""Provider webhooks: ``POST /v1/webhooks/sms`` (Sinch callbacks to Relais's own SMS sender).

Every callback must carry a valid, fresh Sinch HMAC signature made with
``RELAIS_SMS_WEBHOOK_SECRET``; anything else is refused (401) and not acted on.
Delivery receipts join the history of the delivery they report on; an inbound
"OK 47" acknowledges ladder 47, a bare "OK" the most recent one that told that number,
and a reply SMS says which (sync.escalation.acknowledge_sms).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from connectors.sms import (
    NONCE_HEADER,
    DeliveryReceipt,
    InboundSms,
    parse_webhook,
    verify_webhook_signature,
)
from relais.api.errors import ApiError
from relais.replay import first_time
from sync.escalation import acknowledge_sms
from sync.queue import enqueue_connections
from sync.settings import get_settings
from sync.store.db import session_scope
from sync.store.models import AuditEvent, Connection, Delivery

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])
SIGNATURE_WINDOW_SECONDS = 300.0  # verify_webhook_signature's default tolerance


@router.post("/v1/webhooks/sms")
async def sms_webhook(request: Request) -> dict[str, Any]:
    raw = await request.body()
    secret = get_settings().sms_webhook_secret or ""
    if not secret:
        raise ApiError(401, "unauthenticated", "SMS callbacks are not accepted: "
                       "RELAIS_SMS_WEBHOOK_SECRET is not set")
    if not verify_webhook_signature(secret, dict(request.headers), raw):
        log.warning("SMS callback refused: bad or stale signature")
        raise ApiError(401, "unauthenticated", "invalid or stale webhook signature")
    nonce = request.headers.get(NONCE_HEADER, "")
    if not await run_in_threadpool(first_time, "sms", nonce, SIGNATURE_WINDOW_SECONDS):
        log.warning("SMS callback refused: a replay of a callback already received")
        raise ApiError(409, "replayed", "this signed callback was already received")
    try:
        records = parse_webhook(raw)
    except ValueError as exc:  # includes JSON errors
        raise ApiError(400, "invalid_callback", str(exc)) from None
    receipts = acknowledged = ignored = 0
    replies: list[str] = []  # connections of the reply SMS, woken after commit
    with session_scope() as session:
        for record in records:
            if isinstance(record, DeliveryReceipt):
                receipts += _receipt(session, record)
            elif isinstance(record, InboundSms):
                done = acknowledge_sms(session, record.from_number, record.text)
                if done is not None and done.reply is not None:
                    replies.append(done.reply.connection_id)
                if done is not None and done.acknowledged is not None:
                    acknowledged += 1
                else:
                    ignored += 1
    if replies:
        enqueue_connections(replies)
    return {"receipts": receipts, "acknowledged": acknowledged, "ignored": ignored}


def _receipt(session: Any, receipt: DeliveryReceipt) -> int:
    query = (
        select(Delivery)
        .join(Connection, Connection.id == Delivery.connection_id)
        .where(Connection.provider == "sms")
    )
    if receipt.client_ref:
        query = query.where(Delivery.idempotency_key == receipt.client_ref)
    elif receipt.message_id:
        query = query.where(Delivery.external_id == receipt.message_id)
    else:
        return 0
    found = session.scalar(query.limit(1))
    if found is None:
        return 0
    session.add(AuditEvent(
        tenant_id=found.tenant_id, kind="delivery.receipt", subject_type="delivery",
        subject_id=found.id,
        detail={"status": receipt.status, "provider_status": receipt.provider_status,
                "code": receipt.code, "final": receipt.final,
                "reported_at": receipt.at.isoformat() if receipt.at else None},
    ))
    return 1
