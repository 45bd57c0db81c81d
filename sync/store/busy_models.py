"""The busy store: staff calendars' events as the calendar pulls read them, shared
by every process, so a warm availability query needs no provider call.

Defined on the shared ``Base`` (``sync.store.models``); ``relais/migrations/env.py``
imports it so Alembic sees the tables.

- ``calendar_busy_events``: per (connection, calendar, event id) the event's UTC
  start/end, status and whether it shows as free (transparent). Recurring events
  are stored as concrete instances (``series_id`` = their series).
- ``calendar_busy_windows``: per (connection, calendar), the window the store
  covers: fixed by the last full read, ``[read - past days, read + future days]``.
  Events outside it are not stored, so the store answers only inside it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from sync.store.models import Base, utcnow


class CalendarBusyEvent(Base):
    __tablename__ = "calendar_busy_events"
    __table_args__ = (
        Index("ix_calendar_busy_events_span", "connection_id", "calendar_id", "start"),
        Index("ix_calendar_busy_events_series", "connection_id", "calendar_id", "series_id"),
    )
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    calendar_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(1100), primary_key=True)
    series_id: Mapped[str | None] = mapped_column(String(1100), nullable=True)
    start: Mapped[datetime] = mapped_column()
    end: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="confirmed")  # confirmed|tentative
    transparent: Mapped[bool] = mapped_column(Boolean, default=False)


class CalendarBusyWindow(Base):
    __tablename__ = "calendar_busy_windows"
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    calendar_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    window_start: Mapped[datetime] = mapped_column()
    window_end: Mapped[datetime] = mapped_column()
    filled_at: Mapped[datetime] = mapped_column(default=utcnow)
