"""Two-way sync conflicts: one row per field resolved when an appointment changed on
both sides (Relais and the staff calendar) since the last calendar pull.

Defined on the shared ``Base`` (``sync.store.models``) in their own module;
``relais/migrations/env.py`` imports it so Alembic sees the table. Written by
``sync.conflicts``, shown by ``GET /v1/tenants/{t}/appointments/{id}`` (``conflicts``)
and ``GET /v1/tenants/{t}/sync/conflicts``.

A conflict of a sealed appointment (a sensitive tenant's) is ``sealed`` too: both
values are stored as ``{"sealed": token}`` (encrypted with the credential keys,
``sync.store.crypto``) and unsealed in memory when loaded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.orm.attributes import set_committed_value

from sync.store.crypto import seal_json, unseal_json
from sync.store.models import Base, seal_at_rest, utcnow


class SyncConflict(Base):
    __tablename__ = "sync_conflicts"
    __table_args__ = (
        Index("ix_sync_conflicts_tenant_at", "tenant_id", "at"),
        Index("ix_sync_conflicts_appointment", "appointment_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    appointment_id: Mapped[str] = mapped_column(
        ForeignKey("appointments.id", ondelete="CASCADE")
    )
    connection_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    field: Mapped[str] = mapped_column(String(16))  # start | subject | notes
    # start: {"start": iso, "end": iso}; subject / notes: the text
    relais_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    calendar_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    winner: Mapped[str] = mapped_column(String(16))  # calendar | relais
    policy: Mapped[str] = mapped_column(String(16))  # calendar | relais | latest
    # The two modification times compared (``latest``); the calendar's is the
    # provider's clock, ours is Relais's (see sync.conflicts).
    relais_modified_at: Mapped[datetime | None] = mapped_column(nullable=True)
    calendar_modified_at: Mapped[datetime | None] = mapped_column(nullable=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # The appointment's ``sealed``: both values encrypted at rest.
    sealed: Mapped[bool] = mapped_column(Boolean, default=False)


_VALUES = ("relais_value", "calendar_value")


def _seal(_mapper: Any, _connection: Any, target: SyncConflict) -> None:
    if not target.sealed:
        return
    for name in _VALUES:
        value = getattr(target, name)
        if value is not None and not (isinstance(value, dict) and "sealed" in value):
            setattr(target, name, seal_json(value))


def _unseal(target: SyncConflict, *_args: Any) -> None:
    if not target.__dict__.get("sealed"):
        return
    for name in _VALUES:
        if name in target.__dict__:
            set_committed_value(target, name, unseal_json(target.__dict__[name]))


seal_at_rest(SyncConflict, _seal, _unseal)
