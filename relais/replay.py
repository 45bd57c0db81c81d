"""Webhook replays refused: a signed callback is acted on once.

A signature only proves who sent a request, not that it is the first copy:
within the freshness window (HubSpot v3 and Sinch: 5 minutes) a captured
request could be sent again. Each one's identity (HubSpot: the signature;
Sinch: the nonce) is recorded in ``webhook_replays`` until the window ends;
the store is shared by every API process. One insert per callback; expired
rows are deleted by the same statement's transaction.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import Index, String, delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from sync.store.db import session_scope
from sync.store.models import Base, utcnow


class WebhookReplay(Base):
    __tablename__ = "webhook_replays"
    __table_args__ = (Index("ix_webhook_replays_expires", "expires_at"),)
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column()


def first_time(source: str, identity: str, window_seconds: float,
               now: datetime | None = None) -> bool:
    """True the first time ``identity`` of ``source`` is seen within the window."""
    now = now or utcnow()
    key = f"{source}:{hashlib.sha256(identity.encode()).hexdigest()[:64]}"
    try:
        with session_scope() as session:
            session.execute(delete(WebhookReplay).where(WebhookReplay.expires_at < now))
            session.add(WebhookReplay(
                key=key, expires_at=now + timedelta(seconds=2 * window_seconds)))
    except IntegrityError:
        return False
    return True
