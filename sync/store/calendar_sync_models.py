"""Two-way calendar sync: pull state, cursors and change-notification channels.

Defined on the shared ``Base`` (``sync.store.models``) in their own module;
``relais/migrations/env.py`` imports it so Alembic sees the tables.

- ``calendar_sync_state``: per calendar connection, the pull lock
  (``running_since`` with an expiry: a connection never runs two pulls at
  once), the pause after a provider limit, and what the sync status shows.
- the cursors (a Google syncToken, a Graph deltaLink per calendar) are rows of
  ``pull_cursors`` (``sync.store.models.PullCursor``: stream ``calendar``, partition
  = the calendar id); wiped on 410 and rebuilt by a full read.
- ``calendar_channels``: Google watch channels and Graph subscriptions. The
  secret a notification must carry (channel token, ``clientState``) is kept
  only as its SHA-256.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sync.store.models import Base, utcnow


class CalendarSyncState(Base):
    __tablename__ = "calendar_sync_state"
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[str] = mapped_column(String(64))
    running_since: Mapped[datetime | None] = mapped_column(nullable=True)
    run_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    paused_until: Mapped[datetime | None] = mapped_column(nullable=True)
    last_started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error_at: Mapped[datetime | None] = mapped_column(nullable=True)
    changes_in: Mapped[int] = mapped_column(Integer, default=0)  # cumulative
    moved: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0)
    last_run: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CalendarChannel(Base):
    __tablename__ = "calendar_channels"
    __table_args__ = (Index("ix_calendar_channels_calendar", "connection_id", "calendar_id"),)
    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # channel / subscription id
    tenant_id: Mapped[str] = mapped_column(String(64))
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    calendar_id: Mapped[str] = mapped_column(String(300))
    secret_hash: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(300), nullable=True)
    expires_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | stopped
    last_message_number: Mapped[int] = mapped_column(Integer, default=0)
    last_notified_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
