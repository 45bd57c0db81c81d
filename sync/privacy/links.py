"""Signed message links revoked per message.

A revocation records an instant per message; a link whose issue time (``iat``
claim, whole seconds) is at or before it no longer opens, whoever holds it. A link
issued afterwards (a new notice) opens again. Revoking is an access log entry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from sync.privacy import audit
from sync.store.models import utcnow
from sync.store.privacy_models import LinkRevocation


def revoke(session: Session, tenant_id: str, message_id: str, *, actor: str) -> datetime:
    """Revoke every link of the message issued until now; the instant of revocation."""
    now = utcnow()
    row = session.get(LinkRevocation, message_id, with_for_update=True)
    if row is None:
        session.add(LinkRevocation(message_id=message_id, tenant_id=tenant_id, revoked_at=now,
                                   actor=actor[:200]))
    else:
        row.revoked_at, row.actor = now, actor[:200]
    audit.append(session, tenant_id, actor=actor, action="link.revoked",
                 subject_type="message", subject_id=message_id)
    return now


def is_revoked(session: Session, claims: dict[str, Any]) -> bool:
    """Whether the link of these (verified) claims was revoked after it was issued."""
    row = session.get(LinkRevocation, str(claims.get("m")))
    if row is None or row.tenant_id != claims.get("t"):
        return False
    issued = claims.get("iat")
    return not isinstance(issued, (int, float)) or issued <= row.revoked_at.timestamp()
