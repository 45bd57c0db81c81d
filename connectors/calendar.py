"""The calendar connector protocol: busy times, and events written exactly once.

Google Calendar and Microsoft Graph implement it (``connectors/google_calendar/client.py``,
``connectors/outlook/client.py``); the availability and booking engine (``sync/``)
only sees this. Every datetime is aware; busy blocks come back in UTC.
Errors are the kinds of ``connectors.base`` (TransientError, RateLimited,
AuthExpired, Rejected).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol


@dataclass(frozen=True)
class BusyBlock:
    start: datetime  # aware, UTC
    end: datetime
    status: str = "busy"  # busy | tentative | oof | workingElsewhere


@dataclass(frozen=True)
class CalendarBusy:
    """One calendar's busy time over the asked range.

    ``error`` set means the busy state is *unknown* (calendar not found, no
    access, provider error for that calendar): never treat it as free.
    """

    calendar_id: str
    busy: tuple[BusyBlock, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class EventSpec:
    subject: str
    start: datetime  # aware
    end: datetime
    time_zone: str  # IANA zone the event is shown in (the staff member's)
    description: str = ""
    attendees: tuple[str, ...] = ()  # email addresses
    location: str | None = None


@dataclass(frozen=True)
class EventRef:
    calendar_id: str
    event_id: str
    etag: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class CalendarConnector(Protocol):
    provider: ClassVar[str]
    # How many calendars one busy-time request may ask about (freeBusy: 50, getSchedule: 20).
    max_calendars_per_query: ClassVar[int]

    def free_busy(
        self, calendar_ids: Sequence[str], start: datetime, end: datetime
    ) -> dict[str, CalendarBusy]:
        """Busy time of every calendar, in as few provider calls as the API allows
        (chunked and concurrent); one entry per asked id, errors included."""
        ...

    def create_event(self, calendar_id: str, event: EventSpec, idempotency_key: str) -> EventRef:
        """Create once: a retry with the same key returns the same event, never a second."""
        ...

    def update_event(self, ref: EventRef, event: EventSpec) -> EventRef: ...

    def delete_event(self, ref: EventRef) -> None:
        """Delete; an event already gone counts as deleted."""
        ...

    # ---- incremental sync and change notifications (``sync.calendar_sync``)
    # One HTTP request carries one notification (Google) or a batch (Graph).
    notifications_batched: ClassVar[bool]

    def list_changes(self, calendar_id: str, cursor: str | None) -> tuple[list[EventChange], str]:
        """Events changed since ``cursor`` (None: every event of the window) and the
        next cursor; ``CursorExpired`` when the provider forgot the cursor."""
        ...

    @staticmethod
    def changes_window(
        settings: Mapping[str, Any], now: datetime
    ) -> tuple[datetime, datetime] | None:
        """The window a full ``list_changes`` covers, or None when it reads every event
        (the engine then keeps its own window)."""
        ...

    def open_channel(self, calendar_id: str, address: str, secret: str) -> Channel:
        """Ask the provider to POST changes of the calendar to ``address`` carrying
        ``secret`` (checked by ``parse_notifications``' caller)."""
        ...

    def renew_channel(self, channel_id: str) -> datetime | None:
        """Extend a live channel in place: its new expiry, or None when the provider
        cannot (a new channel then replaces it)."""
        ...

    def close_channel(self, channel_id: str, resource_id: str | None) -> None:
        """Stop a channel; one the provider no longer knows counts as stopped."""
        ...

    @staticmethod
    def parse_notifications(headers: Mapping[str, str], body: Any) -> list[Notice]:
        """The notifications of one request (lower-case header names, parsed JSON
        body); ``ValueError`` when the request carries none."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Notice:
    """One change notification as the provider sent it, before it is checked against
    the channel we stored (id, secret, resource, message number)."""

    channel_id: str
    secret: str | None
    resource_id: str | None = None  # checked when the channel has one (Google)
    message_number: int = 0  # increasing per channel (Google); 0: none
    state: str = ""  # Google's resource state: ``sync`` only acknowledges the channel
    lifecycle: str | None = None  # Graph's lifecycle event, if any
    well_formed: bool = True  # False: an item of the batch that is no notification


# ------------------------------------------------------------------ incremental sync


@dataclass(frozen=True)
class EventChange:
    """One event changed since the cursor. ``start``/``end`` are aware UTC (None for a
    cancelled or deleted event, or an all-day one we cannot place)."""

    event_id: str
    etag: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    # confirmed | tentative | cancelled (deleted included) | removed (Graph ``@removed``:
    # deleted, or moved out of the delta window; the sync reads the event to know which)
    status: str = "confirmed"
    # Additive (conflict resolution, ``sync.conflicts``): the event's title and
    # description as the provider holds them, and its last modification by the
    # PROVIDER's clock (Google ``updated``, Graph ``lastModifiedDateTime``), aware UTC.
    # None when the provider did not say.
    subject: str | None = None
    description: str | None = None
    updated: datetime | None = None
    # Additive (the busy store, ``sync.busy``): shown as free (Google ``transparency:
    # transparent``, working location or declined by the owner; Graph ``showAs`` free /
    # workingElsewhere); the recurring series an instance belongs to; where an all-day
    # event lies (``start``/``end`` stay None for those).
    transparent: bool = False
    series_id: str | None = None
    busy_span: tuple[datetime, datetime] | None = None

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"


@dataclass(frozen=True)
class Channel:
    """A change-notification channel (Google watch channel, Graph subscription)."""

    id: str
    calendar_id: str
    expires_at: datetime  # aware UTC
    resource_id: str | None = None
