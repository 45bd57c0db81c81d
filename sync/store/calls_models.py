"""Calls from the answering service's telephony (issue 14).

``call_events`` keeps every event as it came in, once per (tenant, call id, kind):
a resent event is the same row. ``calls`` is the per-call aggregate, recomputed
from the call's events on every ingest (``sync.calls``) while the call's row is
locked, so whatever the order or repetition of the events, it is the same.
Reports read ``calls`` through ``ix_calls_tenant_offered``, never the raw events.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sync.store.models import Base, utcnow

EVENT_KINDS = ("offered", "answered", "transferred", "abandoned", "ended")


class CallEvent(Base):
    __tablename__ = "call_events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "call_id", "kind", name="uq_call_events_call_kind"),
        Index("ix_call_events_tenant_at", "tenant_id", "at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # No foreign key: events are kept even if a tenant is removed and re-applied.
    tenant_id: Mapped[str] = mapped_column(String(64))
    call_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column()
    called: Mapped[str | None] = mapped_column(String(32), nullable=True)
    caller: Mapped[str | None] = mapped_column(String(64), nullable=True)
    secretary: Mapped[str | None] = mapped_column(String(200), nullable=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Call(Base):
    """One call as its events so far describe it (``sync.calls.aggregate``)."""

    __tablename__ = "calls"
    __table_args__ = (Index("ix_calls_tenant_offered", "tenant_id", "offered_at"),)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    # The instant the call reached the service (its "offered" event, else its
    # earliest event): the call counts in the period and hour that hold it.
    offered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    transferred_at: Mapped[datetime | None] = mapped_column(nullable=True)
    abandoned_at: Mapped[datetime | None] = mapped_column(nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # ringing | answered | abandoned
    outcome: Mapped[str] = mapped_column(String(16), default="ringing")
    # answered: offered -> answered; abandoned: offered -> hang-up; else None
    wait_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    # answered -> ended (else -> transferred); None while the call goes on
    talk_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    called: Mapped[str | None] = mapped_column(String(32), nullable=True)
    caller: Mapped[str | None] = mapped_column(String(64), nullable=True)
    secretary: Mapped[str | None] = mapped_column(String(200), nullable=True)
    events: Mapped[int] = mapped_column(Integer, default=0)


class TenantNumber(Base):
    """A dialled number (E.164) -> the tenant whose calls it forwards
    (``forwarding_numbers`` in the tenant YAML), kept by ``apply_config``."""

    __tablename__ = "tenant_numbers"
    number: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
