"""Signed message links revoked per message.

A revocation records an instant per message; a link whose issue time (``iat``
claim, whole seconds) is at or before it no longer opens, whoever holds it. A link
issued afterwards (a new notice) opens again. Revoking is an access log entry.

Second factor (tenant ``link_second_factor: sms``): a sensitive link names its
recipient (a staff id); before the content is shown, a six-digit code goes by SMS
to that person's phone on file, through Relais's own SMS sender (an outbox
delivery). The code is stored as a keyed hash bound to the link, lives ten
minutes, allows five tries and is spent once it opened the link.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from sync.privacy import audit
from sync.senders import ensure_sender
from sync.settings import get_settings
from sync.store.crypto import seal_text
from sync.store.models import Delivery, utcnow
from sync.store.privacy_models import LinkCode, LinkRevocation


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


# ------------------------------------------------------------------ second factor

CODE_TTL = timedelta(minutes=10)
RESEND_AFTER = timedelta(seconds=60)
MAX_ATTEMPTS = 5


class SecondFactorUnavailable(LookupError):
    """The link needs a code but there is no phone on file to send it to."""


def staff_for(config: Any, address: str | None) -> str | None:
    """The id of the staff member whose email or phone is ``address`` (None: nobody)."""
    if not address:
        return None
    wanted = address.strip().lower()
    for member in getattr(config, "staff", []):
        if wanted in {str(member.email or "").lower(), str(member.phone or "")}:
            return str(member.id)
    return None


def needs_code(config: Any) -> bool:
    return getattr(config, "link_second_factor", "none") == "sms"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _code_hash(token: str, code: str) -> str:
    key = get_settings().fernet_keys()[0]
    return hmac.new(key, f"{_digest(token)}:{code}".encode(), hashlib.sha256).hexdigest()


def phone_for(config: Any, claims: dict[str, Any]) -> str:
    """The recipient's phone on file; :class:`SecondFactorUnavailable` when none."""
    member = config.staff_member(str(claims.get("r") or "")) if claims.get("r") else None
    if member is None or not member.phone:
        raise SecondFactorUnavailable(
            "this link needs a one-time code and its recipient has no phone on file: "
            "open the message with an API key instead")
    return str(member.phone)


def masked(phone: str) -> str:
    return phone[:3] + "•" * max(0, len(phone) - 5) + phone[-2:]


def send_code(session: Session, tenant_id: str, message_id: str, token: str,
              phone: str) -> Delivery | None:
    """A fresh code for this link, sent by SMS through Relais's own sender (a delivery
    of the outbox: the caller enqueues its connection after commit). None when a code
    was sent less than a minute ago (it is still valid: no new one)."""
    now = utcnow()
    row = session.get(LinkCode, _digest(token), with_for_update=True)
    if row is not None and now - row.sent_at < RESEND_AFTER and row.expires_at > now:
        return None
    code = f"{secrets.randbelow(10**6):06d}"
    if row is None:
        row = LinkCode(token_digest=_digest(token), tenant_id=tenant_id, message_id=message_id)
        session.add(row)
    row.code_hash, row.sent_at, row.expires_at, row.attempts = (
        _code_hash(token, code), now, now + CODE_TTL, 0)
    sender = ensure_sender(session, tenant_id, "sms")
    delivery = Delivery.new(
        tenant_id=tenant_id, message_id=message_id, connection_id=sender.id,
        rule="link-second-factor", action="link.code",
        params={"kind": "sms", "channel": "sms", "to": phone,
                # sealed: the code is not readable in the outbox row
                "reply": seal_text(f"Relais : code {code} (valable 10 min)")})
    session.add(delivery)
    session.flush()
    return delivery


def check_code(session: Session, token: str, code: str) -> bool:
    """Whether ``code`` is this link's current code (five tries, ten minutes; a code
    that opened the link is spent)."""
    row = session.get(LinkCode, _digest(token), with_for_update=True)
    if row is None or row.expires_at <= utcnow() or row.attempts >= MAX_ATTEMPTS:
        return False
    if hmac.compare_digest(row.code_hash, _code_hash(token, code.strip())):
        session.delete(row)
        return True
    row.attempts += 1
    return False
