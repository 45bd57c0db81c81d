"""Signed links sent to people (the token is the credential: no API key).

* ``GET /v1/m/{token}``: the message a sensitive notice points to (JSON);
* ``GET /v1/ack/{token}``: acknowledge an escalation (one click).

A forged, altered, expired or revoked token answers 404, like a missing record.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from relais.api.errors import not_found
from relais.api.messages import message_fields
from sync.domain import as_utc_iso
from sync.escalation import acknowledge
from sync.privacy import audit, links
from sync.signed_links import BadLink, verify
from sync.store.db import session_scope
from sync.store.models import Escalation, Message

router = APIRouter(tags=["links"])


@router.get("/v1/m/{token}")
def read_message(token: str) -> dict[str, Any]:
    try:
        claims = verify("m", token)
    except BadLink:
        raise not_found("link") from None
    with session_scope() as session:
        message = session.get(Message, str(claims.get("m")))
        if message is None or message.tenant_id != claims.get("t"):
            raise not_found("link")
        if links.is_revoked(session, claims):
            raise not_found("link")
        # Each opening is on the record, in the transaction that reads the content.
        audit.append(session, message.tenant_id, actor="signed link", action="link.opened",
                     subject_type="message", subject_id=message.id,
                     detail={"link_expires": int(claims.get("exp", 0))})
        return {
            "id": message.id,
            "tenant": message.tenant_id,
            **message_fields(message),
        }


@router.get("/v1/ack/{token}")
def acknowledge_link(token: str) -> dict[str, Any]:
    try:
        claims = verify("ack", token)
    except BadLink:
        raise not_found("link") from None
    with session_scope() as session:
        found = session.get(Escalation, str(claims.get("e")))
        if found is None or found.tenant_id != claims.get("t"):
            raise not_found("link")
        esc, newly = acknowledge(session, found.id, by=str(claims.get("r")), via="link")
        assert esc is not None
        return {
            "escalation": esc.id,
            "message_id": esc.message_id,
            "acknowledged": esc.outcome == "acknowledged",
            "newly": newly,
            "outcome": esc.outcome,
            "acknowledged_by": esc.acknowledged_by,
            "acknowledged_at": as_utc_iso(esc.acknowledged_at) if esc.acknowledged_at else None,
        }
