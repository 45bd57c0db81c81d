"""Tables of :mod:`sync.privacy` (on the shared declarative ``Base``).

- ``access_log``: who read message content, exported or erased a person's data.
  Append-only; each row carries ``seq`` (1, 2, … per tenant, no gap) and the hash
  of the previous row of its tenant, so an altered, deleted or reordered row breaks
  the chain (:func:`sync.privacy.audit.verify`). Rows hold ids, never content.
- ``access_log_heads``: per tenant the last ``seq`` and hash (appends lock this row,
  so concurrent appends never fork the chain; a deleted tail no longer matches it),
  and the base: the ``seq``/hash just before the first row kept (retention purges
  the oldest rows and moves the base forward).
- ``retention_runs``: per tenant, the last retention run (``relais privacy status``).
- ``link_codes``: the one-time code sent for a link of a tenant that wants a second
  factor: per link (sha256 of its token), the code's keyed hash, its expiry, the
  attempts made (five at most).
- ``link_revocations``: per message, the instant its signed links were revoked: a
  link issued (``iat``) at or before it no longer opens.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sync.store.models import Base, utcnow

GENESIS = "0" * 64


class AccessLogEntry(Base):
    __tablename__ = "access_log"
    __table_args__ = (UniqueConstraint("tenant_id", "seq", name="uq_access_log_tenant_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # No foreign key: the trail outlives what it names.
    tenant_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column()
    actor: Mapped[str] = mapped_column(String(200))
    # message.read | link.opened | privacy.export | privacy.erase
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AccessLogHead(Base):
    __tablename__ = "access_log_heads"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    hash: Mapped[str] = mapped_column(String(64), default=GENESIS)
    base_seq: Mapped[int] = mapped_column(Integer, default=0)
    base_hash: Mapped[str] = mapped_column(String(64), default=GENESIS)


class RetentionRun(Base):
    __tablename__ = "retention_runs"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # What each purge did: {"bodies_redacted": n, "messages_anonymised": n, …}
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The cutoffs used: {"bodies": iso, …}
    cutoffs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class LinkRevocation(Base):
    __tablename__ = "link_revocations"
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[datetime] = mapped_column()
    actor: Mapped[str] = mapped_column(String(200))


class LinkCode(Base):
    __tablename__ = "link_codes"
    token_digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
