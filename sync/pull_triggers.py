"""What a provider's change notification starts: a pull, by default as a Celery
task (``sync.queue``), after the notification was answered.

The notification handlers (``sync.calendar_sync.notification``, the HubSpot route
in ``relais.api.notifications``) receive a :class:`PullTriggers` as a parameter;
the API gets its own from ``create_app(triggers=...)`` (``app.state.pull_triggers``).
Tests and tools inject theirs there, never by patching a module attribute (a patch
on a name the code no longer reads passes silently). ``QUEUED`` is what the
served API uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

CalendarTrigger = Callable[[str, Sequence[str]], None]
"""``(connection id, calendar ids)``: pull those calendars of the connection."""
ContactsTrigger = Callable[[str], None]
"""``(connection id)``: pull the connection's contact directory now."""


def enqueue_calendar_pull(connection_id: str, calendar_ids: Sequence[str]) -> None:
    """A notification said a calendar changed: pull it now (a Celery task)."""
    from sync.queue import enqueue_calendar_pull as enqueue

    enqueue(connection_id, list(calendar_ids))


def enqueue_contacts_pull(connection_id: str) -> None:
    """A CRM webhook said contacts changed: pull that directory now (a Celery task)."""
    from sync.queue import enqueue_contact_pull_now

    enqueue_contact_pull_now(connection_id)


@dataclass(frozen=True)
class PullTriggers:
    """The pulls a notification starts (each one a callable, injectable)."""

    calendar: CalendarTrigger = enqueue_calendar_pull
    contacts: ContactsTrigger = enqueue_contacts_pull


QUEUED = PullTriggers()
"""Every pull as a Celery task: what the served API and the worker use."""
