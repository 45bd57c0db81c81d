"""Calendar → Relais: staff calendars pulled incrementally, and the change
notifications that trigger those pulls.

**A pull** (:func:`pull_connection`) reads every staff calendar of one calendar
connection (Google Calendar, Outlook) through ``list_changes(calendar_id,
cursor)``: a Google ``syncToken`` or a Graph ``deltaLink``, kept per calendar in
``pull_cursors`` (stream ``calendar``). The first pull reads everything (Google: all events,
deleted ones included; Graph: the delta window) and stores the cursor; later
pulls read only what changed. A cursor the provider no longer knows (410)
raises ``CursorExpired``: the calendar's cursor is wiped and read in full again.

**What a change does.** Only events that are one of OUR appointments matter,
recognised by the event id stored on the appointment (``Appointment.event_id``
on that connection and calendar). A confirmed appointment whose event:

- carries the ETag we stored → our own write coming back: ignored (no echo);
- moved (other start/end) → the appointment takes the new times (it stays
  confirmed), one ``appointment.updated`` delivery per CRM connection
  (booking's outbox rule, same transaction) and an audit event
  ``appointment.moved_in_calendar`` ("moved in the calendar by the office");
- was cancelled or deleted → ``cancelled``, ``appointment.cancelled``
  deliveries and an audit event ``appointment.cancelled`` (by the calendar);
- changed otherwise (title, notes) → the new ETag is stored, nothing sent.

Pending appointments (our own calendar write under way) are left alone. Every
event read also goes to the busy store (:func:`sync.busy.record_pull`, in the
cursor's transaction), and every calendar with any change has its busy-cache
entry dropped, so the next availability query is answered from the store with
no provider call while the pulls keep it fresh (see :mod:`sync.busy`).

**The run** is :mod:`sync.pull_runner`'s (this module is its calendar stream:
partitions = staff calendars, "read the changes since the cursor", "apply them"):
one pull per connection at a time (``calendar_sync_state``; a pull older than
``sync_lock_minutes`` (10) is presumed dead), a ``RateLimited`` error pauses the
connection and the pull, the cursor is kept, a failing calendar fails alone.

**Notifications.** After a successful pull, each calendar gets a channel when
the connection has a notification address (connection setting
``notification_url``, else ``RELAIS_PUBLIC_URL`` when it is https; ``watch:
false`` disables): a Google watch channel with a random token, or a Graph
subscription with a random ``clientState``. Only the SHA-256 of that secret
is stored. :func:`google_notification` and :func:`graph_notification` check
channel id + token / subscription id + clientState (constant-time), refuse
unknown, stopped or expired channels, acknowledge Google's ``sync`` message
without pulling, ignore a message number already seen, and trigger a pull of
that one calendar (the ``trigger`` the caller passes: ``sync.pull_triggers``, by
default a Celery task). Channels expiring
within ``RENEW_BEFORE`` are renewed by the beat (:func:`renew_channels`):
Google channels are replaced (a new channel, then the old one stopped),
Graph subscriptions extended.

**Scheduling**: :func:`due_connections` lists active calendar connections whose
``sync_interval_minutes`` (default 15; 0 disables) has passed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import CursorExpired, DeliveryError
from connectors.calendar import Channel, EventChange, Notice
from connectors.catalog import by_webhook, with_part
from connectors.catalog import provider as spec_of
from connectors.registry import calendar_connector_class
from mappings.schema import StaffMember, TenantConfig
from sync import busy as busy_mod
from sync import clock, pull_runner
from sync.connection_use import ClientPool, Part
from sync.domain import as_utc_iso
from sync.outbox import mark_wake
from sync.pull_runner import Page, PullContext, PullOutcome, Save
from sync.pull_triggers import CalendarTrigger, enqueue_calendar_pull
from sync.store.calendar_sync_models import CalendarChannel, CalendarSyncState
from sync.store.db import session_scope
from sync.store.models import Appointment, Connection, PullCursor, utcnow

log = logging.getLogger(__name__)

PROVIDERS = with_part("calendar")  # the catalogue's providers with a calendar connector
DEFAULT_INTERVAL_MINUTES = 15
DEFAULT_LOCK_MINUTES = 10
RENEW_BEFORE = timedelta(hours=24)
"""A channel expiring sooner than this is renewed by the beat."""
ACTOR = "calendar"
MOVED_NOTE = "moved in the calendar by the office"
CANCELLED_NOTE = "cancelled in the calendar by the office"


@dataclass
class CalendarPull(PullOutcome):
    """A calendar pull's outcome (``sync.pull_runner.PullOutcome`` and its counters)."""

    calendars: int = 0
    changes: int = 0  # events read as changed
    moved: int = 0
    cancelled: int = 0
    own_writes: int = 0  # our own writes recognised by their ETag
    conflicts: int = 0  # fields changed on both sides, resolved (sync.conflicts)
    written_back: int = 0  # events PATCHed back because Relais won a conflict
    full_resyncs: int = 0  # cursors expired (410) and read in full again
    channels: dict[str, str] = field(default_factory=dict)  # calendar → created|renewed|kept|error


UNKNOWN_CHANNEL = "unknown_channel"  # no such channel, or stopped, or expired
UNAUTHENTICATED = "unauthenticated"  # wrong secret or resource; or none of a batch valid
INVALID_NOTIFICATION = "invalid_notification"  # the provider's format not followed

NOTIFICATION_CODES = frozenset({UNKNOWN_CHANNEL, UNAUTHENTICATED, INVALID_NOTIFICATION})
"""Every code a :class:`NotificationRejected` may carry; ``relais.api.engine_errors``
gives each its HTTP answer (the engine never speaks HTTP)."""


class NotificationRejected(Exception):
    """A forged, unknown or stale notification: never acted on. ``code`` is one of
    :data:`NOTIFICATION_CODES` (checked), ``reason`` says why for the log and answer."""

    def __init__(self, code: str, reason: str) -> None:
        if code not in NOTIFICATION_CODES:
            raise ValueError(f"not a notification refusal code: {code!r}")
        super().__init__(reason)
        self.code, self.reason = code, reason


# ------------------------------------------------------------------ config


def staff_calendars(config: TenantConfig, connection_name: str) -> dict[str, list[StaffMember]]:
    """The staff calendars of one connection: calendar id → staff members."""
    out: dict[str, list[StaffMember]] = {}
    for member in config.staff:
        if member.calendar is not None and member.calendar.connection == connection_name:
            out.setdefault(member.calendar.id, []).append(member)
    return out


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# ------------------------------------------------------------------ cursors


def _cursor_key(connection_id: str, calendar_id: str) -> pull_runner.CursorKey:
    return pull_runner.CursorKey(connection_id, pull_runner.CALENDAR_STREAM, calendar_id)


def wipe_cursor(connection_id: str, calendar_id: str) -> None:
    pull_runner.wipe_cursor(_cursor_key(connection_id, calendar_id))


# ------------------------------------------------------------------ the pull


class CalendarStream:
    """The staff calendars as a :class:`sync.pull_runner.Stream`: one partition per
    staff calendar of the connection; the cursor is the provider's (a Google
    ``syncToken``, a Graph ``deltaLink``); a page is every change since it, applied
    to our appointments and, with the cursor, to the busy store."""

    name: ClassVar[str] = pull_runner.CALENDAR_STREAM
    part: ClassVar[Part] = "calendar"
    what: ClassVar[str] = "calendar"
    state: ClassVar[Any] = CalendarSyncState
    zeros: ClassVar[dict[str, int]] = {"changes_in": 0, "moved": 0, "cancelled": 0}
    lock_minutes: ClassVar[float] = DEFAULT_LOCK_MINUTES
    interval_minutes: ClassVar[float] = DEFAULT_INTERVAL_MINUTES
    pool: ClassVar[ClientPool | None] = busy_mod.POOL

    def providers(self) -> Sequence[str]:
        return PROVIDERS

    def not_mine(self, provider: str) -> str:
        return f"{provider} is not a calendar"

    def outcome(self, row: Connection) -> CalendarPull:
        return CalendarPull(row.id, row.tenant_id, row.name, row.provider)

    def counts(self, outcome: CalendarPull) -> dict[str, int]:
        return {"changes_in": outcome.changes, "moved": outcome.moved,
                "cancelled": outcome.cancelled}  # fmt: skip

    def partitions(self, ctx: PullContext, only: Sequence[str] | None) -> list[str]:
        calendars = staff_calendars(ctx.config, ctx.row.name)
        return [c for c in calendars if only is None or c in set(only)]

    def summary(self, outcome: CalendarPull) -> str:
        return (f"{outcome.calendars} calendar(s), {outcome.changes} change(s), "
                f"{outcome.moved} moved, {outcome.cancelled} cancelled, {outcome.own_writes} "
                f"own, {outcome.full_resyncs} full resync(s), {outcome.calls} call(s)")  # fmt: skip

    def read(
        self, client: Any, ctx: PullContext, partition: str, cursor: str | None, full: bool,
        outcome: CalendarPull,
    ) -> Iterator[Page]:  # fmt: skip
        row = ctx.row
        cursor = None if full else cursor
        # the busy store's window, should this be a full read: from before the read
        window = busy_mod.store_window(row.provider, ctx.settings, utcnow())
        changes, new_cursor = client.list_changes(partition, cursor)
        outcome.changes += len(changes)
        changes = _resolve_removed(client, row, partition, changes)
        read_full = cursor is None
        yield Page(new_cursor, full=read_full, data=(changes, window if read_full else None))

    def expired(
        self, ctx: PullContext, key: pull_runner.CursorKey, exc: CursorExpired,
        outcome: CalendarPull,
    ) -> str | None:  # fmt: skip
        """The calendar's cursor is wiped at once (the busy store stops answering from
        it) and the calendar read in full."""
        pull_runner.wipe_cursor(key)
        outcome.full_resyncs += 1
        return None

    def apply(
        self, ctx: PullContext, partition: str, page: Page, outcome: CalendarPull, save: Save
    ) -> None:
        row = ctx.row
        changes, full_window = page.data
        _apply(row, ctx.config, partition, changes, outcome)
        with session_scope() as session:  # the busy store moves with the cursor, atomically
            busy_mod.record_pull(session, row.id, partition, changes, full_window=full_window)
            save(session)
        if changes or full_window is not None:  # again: a query between _apply and here
            busy_mod.CACHE.invalidate(row.tenant_id, row.id, partition)  # may have cached
        outcome.calendars += 1

    def finish(self, ctx: PullContext, done: list[str], outcome: CalendarPull) -> None:
        # Channels for the calendars that could be read; after a notification too, since
        # a lifecycle event (subscription removed, reauthorization) may have ended one.
        _channels_after_pull(ctx.row, done, outcome)


CALENDARS = CalendarStream()


def pull_connection(
    connection_id: str,
    *,
    calendar_ids: Sequence[str] | None = None,
    full: bool = False,
    force: bool = False,
    only_if_due: bool = False,
) -> CalendarPull:
    """Pull the staff calendars of one calendar connection (all, or ``calendar_ids``);
    the lock, pause, cursors and outcome are :mod:`sync.pull_runner`'s."""
    outcome: CalendarPull = pull_runner.run(
        CALENDARS, connection_id, full=full, force=force, only_if_due=only_if_due,
        partitions=calendar_ids,
    )  # fmt: skip
    return outcome


def _resolve_removed(
    client: Any, row: Connection, calendar_id: str, changes: list[EventChange]
) -> list[EventChange]:
    """Graph reports an event moved out of the delta window like a deleted one: for our
    confirmed appointments only, read the event to tell a deletion from a move."""
    removed = {c.event_id for c in changes if c.status == "removed"}
    if not removed:
        return changes
    with session_scope(readonly=True) as session:
        ours = set(
            session.scalars(
                select(Appointment.event_id).where(
                    Appointment.tenant_id == row.tenant_id,
                    Appointment.calendar_connection_id == row.id,
                    Appointment.event_id.in_(list(removed)),
                    Appointment.status == "confirmed",
                )
            )
        )
    resolved: dict[str, EventChange] = {}
    for event_id in ours:
        found = client.read_event(calendar_id, event_id)
        resolved[event_id] = found or EventChange(event_id, status="cancelled")
    return [resolved.get(c.event_id, c) if c.status == "removed" else c for c in changes]


def _apply(
    row: Connection,
    config: TenantConfig,
    calendar_id: str,
    changes: Sequence[EventChange],
    outcome: CalendarPull,
) -> None:
    """Our appointments among ``changes``: moved, cancelled, or our own write (ignored)."""
    from sync import conflicts as conflicts_mod
    from sync.booking import (
        enqueue_deliveries,
        record_appointment_event,
        write_appointment_deliveries,
    )
    from sync.calendar_notices import write_calendar_notices

    latest: dict[str, EventChange] = {}
    for change in changes:
        latest[change.event_id] = change  # the last word on an event wins
    to_wake: list[str] = []
    since = _last_pull(row.id, calendar_id)  # conflicts: Relais edits after this one
    write_back: list[str] = []  # appointments where Relais won a conflict
    ids = list(latest)
    for lo in range(0, len(ids), 500):
        part = ids[lo : lo + 500]
        with session_scope() as session:
            rows = session.scalars(
                select(Appointment)
                .where(
                    Appointment.tenant_id == row.tenant_id,
                    Appointment.calendar_connection_id == row.id,
                    Appointment.event_id.in_(part),
                )
                .with_for_update()
                .execution_options(populate_existing=True)
            ).all()
            deliveries = []
            for appointment in rows:
                if appointment.calendar_id not in (None, calendar_id):
                    continue
                change = latest[appointment.event_id or ""]
                if appointment.status != "confirmed":
                    continue  # pending: our own write under way; cancelled/failed: done
                if change.cancelled or change.status == "removed":
                    appointment.status = "cancelled"
                    appointment.updated_at = utcnow()
                    record_appointment_event(
                        session, appointment, "appointment.cancelled", by=ACTOR,
                        note=CANCELLED_NOTE, event_id=change.event_id,
                    )  # fmt: skip
                    deliveries += write_appointment_deliveries(
                        session, config, appointment, "appointment.cancelled"
                    )
                    deliveries += write_calendar_notices(session, config, appointment, "cancelled")
                    outcome.cancelled += 1
                elif change.etag is not None and change.etag == appointment.event_etag:
                    outcome.own_writes += 1
                elif (
                    solved := conflicts_mod.resolve(
                        session, config, row.id, appointment, change, since
                    )
                ) is not None:  # changed on both sides: each field per the tenant's policy
                    appointment.event_etag = change.etag
                    outcome.conflicts += len(solved.conflicts)
                    if solved.write_back:
                        write_back.append(appointment.id)
                    if solved.took_calendar:
                        appointment.updated_at = utcnow()
                        deliveries += write_appointment_deliveries(
                            session, config, appointment, "appointment.updated"
                        )
                    if solved.previous is not None:
                        record_appointment_event(
                            session, appointment, "appointment.moved_in_calendar", by=ACTOR,
                            note=MOVED_NOTE, previous_start=as_utc_iso(solved.previous[0]),
                            previous_end=as_utc_iso(solved.previous[1]),
                            end=as_utc_iso(appointment.end),
                        )  # fmt: skip
                        deliveries += write_calendar_notices(
                            session, config, appointment, "moved", solved.previous
                        )
                        outcome.moved += 1
                elif (
                    change.start is not None
                    and change.end is not None
                    and (change.start, change.end) != (appointment.start, appointment.end)
                ):
                    previous = (appointment.start, appointment.end)
                    appointment.start, appointment.end = change.start, change.end
                    appointment.event_etag = change.etag
                    appointment.updated_at = utcnow()
                    record_appointment_event(
                        session, appointment, "appointment.moved_in_calendar", by=ACTOR,
                        note=MOVED_NOTE, previous_start=as_utc_iso(previous[0]),
                        previous_end=as_utc_iso(previous[1]), end=as_utc_iso(change.end),
                    )  # fmt: skip
                    deliveries += write_appointment_deliveries(
                        session, config, appointment, "appointment.updated"
                    )
                    deliveries += write_calendar_notices(
                        session, config, appointment, "moved", previous
                    )
                    outcome.moved += 1
                else:  # retitled, notes edited…: nothing we send; remember the new version
                    appointment.event_etag = change.etag
            to_wake += mark_wake(session, [d.connection_id for d in deliveries])
    if changes:
        busy_mod.CACHE.invalidate(row.tenant_id, row.id, calendar_id)
    enqueue_deliveries(to_wake)
    for appointment_id in write_back:  # Relais won: the calendar shows our values again
        _write_back(row, config, appointment_id, outcome)


def _last_pull(connection_id: str, calendar_id: str) -> datetime | None:
    """When this calendar's cursor was last stored (the last pull that read it), or
    None (never read: nothing can have changed on both sides "since")."""
    with session_scope(readonly=True) as session:
        found = session.get(PullCursor, (connection_id, CALENDARS.name, calendar_id))
        return found.updated_at if found is not None and found.cursor else None


def _write_back(
    row: Connection, config: TenantConfig, appointment_id: str, outcome: CalendarPull
) -> None:
    """PATCH the event with the appointment as Relais holds it (a conflict Relais won);
    the new ETag is stored so that write is not echoed back."""
    from connectors.calendar import EventRef
    from sync.booking import event_spec, record_appointment_event

    with session_scope(readonly=True) as session:
        apt = session.get(Appointment, appointment_id)
        assert apt is not None
        session.expunge(apt)
    member = config.staff_member(apt.staff_id)
    if member is None or not apt.event_id or apt.status != "confirmed":
        return
    ref = EventRef(apt.calendar_id or "", apt.event_id, apt.event_etag)
    spec = event_spec(config, apt, member)
    try:
        new_ref = busy_mod.with_connector(row.id, lambda c: c.update_event(ref, spec))
    except (DeliveryError, busy_mod.CalendarUnreachable) as exc:
        log.warning("writing back %s after a conflict failed: %s", appointment_id, exc)
        outcome.note = f"conflict write-back failed: {exc}"
        with session_scope() as session:
            failed = session.get(Appointment, appointment_id, with_for_update=True)
            if failed is not None:
                record_appointment_event(session, failed, "appointment.write_back_failed",
                                         by=ACTOR, reason=str(exc))  # fmt: skip
        return
    outcome.calls += 1
    outcome.written_back += 1
    with session_scope() as session:
        done = session.get(Appointment, appointment_id, with_for_update=True,
                           populate_existing=True)  # fmt: skip
        if done is not None and done.event_etag == apt.event_etag:
            done.event_etag = new_ref.etag
            record_appointment_event(session, done, "appointment.written_back", by="relais",
                                     event_id=done.event_id)  # fmt: skip


# ------------------------------------------------------------------ scheduling


def due_connections(now: datetime | None = None) -> list[str]:
    """Active calendar connections whose pull interval has passed (beat)."""
    return pull_runner.due_connections(CALENDARS, now)


# ------------------------------------------------------------------ channels


def channels_off(settings: dict[str, Any]) -> str | None:
    """Why a calendar connection gets no watch channel / subscription (None: it does)."""
    if settings.get("watch") is False:
        return "watch: false in the connection's settings"
    if settings.get("notification_url"):
        return None
    return public_url_not_https()


def public_url_not_https() -> str | None:
    """Google and Graph only call https endpoints: without an https RELAIS_PUBLIC_URL,
    calendars without a ``notification_url`` are only pulled on schedule."""
    public = _public_url()
    if public.startswith("https://"):
        return None
    shown = repr(public) if public else "not set"
    return (f"RELAIS_PUBLIC_URL is {shown}, not https: no watch channel or subscription "
            "(calendar changes are seen at the scheduled pull only)")


def notification_address(provider: str, settings: dict[str, Any]) -> str | None:
    """Where the provider should POST notifications, or None (no channels)."""
    if channels_off(settings) is not None:
        return None
    path = f"/v1/webhooks/{spec_of(provider).webhook}"
    base = settings.get("notification_url") or _public_url()
    base = str(base).rstrip("/")
    return base if base.endswith(path) else base + path


def _public_url() -> str:
    from sync.settings import get_settings

    return str(get_settings().public_url or "")


def _channels_after_pull(
    row: Connection, calendar_ids: Sequence[str], outcome: CalendarPull
) -> None:
    address = notification_address(row.provider, row.settings or {})
    if address is None:
        return
    for calendar_id in calendar_ids:
        try:
            outcome.channels[calendar_id] = ensure_channel(row, calendar_id, address)
        except (DeliveryError, busy_mod.CalendarUnreachable) as exc:
            outcome.channels[calendar_id] = "error"
            outcome.note = f"notification channel not set up: {exc}"
            log.warning("calendar %s/%s: channel not set up: %s", row.tenant_id, row.name, exc)


def _active_channel(
    session: Session, connection_id: str, calendar_id: str
) -> CalendarChannel | None:
    return session.scalars(
        select(CalendarChannel)
        .where(
            CalendarChannel.connection_id == connection_id,
            CalendarChannel.calendar_id == calendar_id,
            CalendarChannel.status == "active",
        )
        .order_by(CalendarChannel.expires_at.desc())
    ).first()


def ensure_channel(
    row: Connection, calendar_id: str, address: str, now: datetime | None = None
) -> str:
    """A live channel on the calendar: ``kept`` / ``renewed`` / ``created``. Expiry is the
    provider's instant: compared with the machine's time (``clock.machine_now``)."""
    now = now or clock.machine_now()
    with session_scope(readonly=True) as session:
        current = _active_channel(session, row.id, calendar_id)
        if current is not None:
            session.expunge(current)
    if current is not None and current.expires_at > now + RENEW_BEFORE:
        return "kept"
    if current is not None and current.expires_at > now:
        expires = busy_mod.with_connector(row.id, lambda c: c.renew_channel(current.id))
        if expires is not None:  # renewed in place (Graph); else replaced (Google)
            with session_scope() as session:
                channel = session.get(CalendarChannel, current.id, with_for_update=True)
                if channel is not None:
                    channel.expires_at = expires
            return "renewed"
    secret = secrets.token_urlsafe(32)
    made: Channel = busy_mod.with_connector(
        row.id, lambda c: c.open_channel(calendar_id, address, secret)
    )
    with session_scope() as session:
        session.add(
            CalendarChannel(
                id=made.id,
                tenant_id=row.tenant_id,
                connection_id=row.id,
                provider=row.provider,
                calendar_id=calendar_id,
                secret_hash=secret_hash(secret),
                resource_id=made.resource_id,
                expires_at=made.expires_at,
                status="active",
                last_message_number=0,
            )
        )
    if current is not None:  # the old one is replaced: stop it (its notifications now fail)
        _stop(row, current)
    return "created"


def _stop(row: Connection, channel: CalendarChannel) -> None:
    with session_scope() as session:
        stored = session.get(CalendarChannel, channel.id, with_for_update=True)
        if stored is not None:
            stored.status = "stopped"
    try:
        busy_mod.with_connector(row.id, lambda c: c.close_channel(channel.id, channel.resource_id))
    except (DeliveryError, busy_mod.CalendarUnreachable) as exc:  # it expires on its own
        log.info("stopping channel of %s/%s failed: %s", row.tenant_id, row.name, exc)


def renew_channels(now: datetime | None = None) -> dict[str, str]:
    """Renew every active channel expiring within ``RENEW_BEFORE`` (beat)."""
    now = now or clock.machine_now()  # the provider's expiry, the provider's time
    with session_scope(readonly=True) as session:
        due = [
            (c.connection_id, c.calendar_id)
            for c in session.scalars(
                select(CalendarChannel).where(
                    CalendarChannel.status == "active",
                    CalendarChannel.expires_at <= now + RENEW_BEFORE,
                )
            )
        ]
    done: dict[str, str] = {}
    for connection_id, calendar_id in dict.fromkeys(due):
        row = pull_runner.load_connection(connection_id).row
        address = notification_address(row.provider, row.settings or {})
        if row.status != "active" or address is None:
            continue
        try:
            done[f"{connection_id}:{calendar_id}"] = ensure_channel(row, calendar_id, address, now)
        except (DeliveryError, busy_mod.CalendarUnreachable) as exc:
            done[f"{connection_id}:{calendar_id}"] = "error"
            log.warning("renewing the channel of %s failed: %s", connection_id, exc)
    return done


# ------------------------------------------------------------------ notifications


def _check_channel(
    session: Session, channel_id: str, secret: str | None, provider: str
) -> CalendarChannel:
    channel = session.get(CalendarChannel, channel_id, with_for_update=True)
    if channel is None or channel.provider != provider:
        raise NotificationRejected(UNKNOWN_CHANNEL, "unknown channel")
    if not secret or not hmac.compare_digest(secret_hash(secret), channel.secret_hash):
        raise NotificationRejected(UNAUTHENTICATED, "wrong channel secret")
    if channel.status != "active" or channel.expires_at <= clock.machine_now():
        raise NotificationRejected(UNKNOWN_CHANNEL, "channel stopped or expired")
    return channel


def notification(
    route: str,
    headers: dict[str, str],
    body: Any,
    trigger: CalendarTrigger = enqueue_calendar_pull,
) -> dict[str, Any]:
    """Check the notification(s) of one request to ``/v1/webhooks/<route>`` (lower-case
    header names, parsed JSON body) and pull each calendar a valid one names. The
    provider's connector parses them (``parse_notifications``); the channel we
    stored checks them. One per request (Google): its refusal is the answer. A batch
    (Graph): refused items are counted; the batch is refused (``unauthenticated``)
    when none is valid. ``trigger`` starts the pulls (``sync.pull_triggers``: a
    Celery task unless the caller injects another), once the channels' rows are
    committed."""
    kind = calendar_connector_class(by_webhook(route).name)
    try:
        notices = kind.parse_notifications(headers, body)
    except ValueError as exc:
        raise NotificationRejected(INVALID_NOTIFICATION, str(exc)) from None
    if not kind.notifications_batched:
        return _one_notice(kind.provider, notices[0], trigger)
    return _notice_batch(kind.provider, notices, trigger)


def google_notification(
    headers: dict[str, str], trigger: CalendarTrigger = enqueue_calendar_pull
) -> dict[str, Any]:
    """A Google push message (all in its headers)."""
    return notification("google", headers, None, trigger)


def graph_notification(
    payload: Any, trigger: CalendarTrigger = enqueue_calendar_pull
) -> dict[str, Any]:
    """A Graph change notification batch."""
    return notification("graph", {}, payload, trigger)


def _one_notice(provider: str, notice: Notice, trigger: CalendarTrigger) -> dict[str, Any]:
    with session_scope() as session:
        channel = _check_channel(session, notice.channel_id, notice.secret, provider)
        if channel.resource_id and notice.resource_id != channel.resource_id:
            raise NotificationRejected(UNAUTHENTICATED, "resource id does not match the channel")
        if notice.message_number and notice.message_number <= channel.last_message_number:
            return {"state": notice.state, "pulled": False, "note": "message already seen"}
        channel.last_message_number = max(channel.last_message_number, notice.message_number)
        channel.last_notified_at = utcnow()
        target = (channel.connection_id, channel.calendar_id)
    if notice.state == "sync":
        return {"state": notice.state, "pulled": False}
    trigger(target[0], [target[1]])
    return {"state": notice.state, "pulled": True}


def lifecycle_reaction(channel: CalendarChannel, event: Any) -> None:
    """Graph's lifecycle events, which come to the same endpoint as changes. Each is
    followed by a pull of the calendar (a resync: changes may have been missed), whose
    end makes sure a live subscription exists (``ensure_channel``):

    - ``subscriptionRemoved``: Graph dropped it; the pull creates a new one;
    - ``reauthorizationRequired``: notifications stop until it is renewed; it is treated
      as expired, so the pull replaces it (and deletes the old one);
    - ``missed``: notifications were lost; the pull catches up."""
    if event == "subscriptionRemoved":
        channel.status = "removed"
    elif event == "reauthorizationRequired":  # expiry is the provider's instant
        channel.expires_at = clock.machine_now()
    if event:
        log.info("Graph lifecycle event %s on a subscription of %s", event, channel.connection_id)


def _notice_batch(
    provider: str, notices: list[Notice], trigger: CalendarTrigger
) -> dict[str, Any]:
    targets: dict[str, set[str]] = {}
    rejected = 0
    with session_scope() as session:
        for notice in notices:
            if not notice.well_formed:
                rejected += 1
                continue
            try:
                channel = _check_channel(session, notice.channel_id, notice.secret, provider)
            except NotificationRejected as exc:
                rejected += 1
                log.warning("notification refused: %s", exc.reason)
                continue
            channel.last_notified_at = utcnow()
            lifecycle_reaction(channel, notice.lifecycle)
            targets.setdefault(channel.connection_id, set()).add(channel.calendar_id)
    if not targets:
        raise NotificationRejected(UNAUTHENTICATED, f"{rejected} notification(s) refused")
    for connection_id, calendars in targets.items():
        trigger(connection_id, sorted(calendars))
    return {"accepted": len(notices) - rejected, "rejected": rejected}


# ------------------------------------------------------------------ status


def _iso(value: datetime | None) -> str | None:
    return as_utc_iso(value) if value is not None else None


def sync_status(session: Session, tenant_id: str | None = None) -> list[dict[str, Any]]:
    """Per calendar connection: state, last success, cursor age per calendar, channels."""
    now = utcnow()
    query = select(Connection).where(Connection.provider.in_(PROVIDERS))
    if tenant_id:
        query = query.where(Connection.tenant_id == tenant_id)
    out = []
    for conn in session.scalars(query.order_by(Connection.tenant_id, Connection.name)):
        state = session.get(CalendarSyncState, conn.id)
        cursors = session.scalars(
            select(PullCursor).where(PullCursor.connection_id == conn.id,
                                     PullCursor.stream == CALENDARS.name)
        ).all()
        channels = session.scalars(
            select(CalendarChannel).where(
                CalendarChannel.connection_id == conn.id, CalendarChannel.status == "active"
            )
        ).all()
        running = bool(state and state.running_since)
        paused = bool(state and state.paused_until and state.paused_until > now)
        out.append(
            {
                "tenant": conn.tenant_id,
                "connection": conn.name,
                "provider": conn.provider,
                "connection_status": conn.status,
                "state": "running" if running else "paused" if paused else "idle",
                "last_started_at": _iso(state.last_started_at) if state else None,
                "last_success_at": _iso(state.last_success_at) if state else None,
                "calendars": [
                    {
                        "calendar": c.partition,
                        "has_cursor": c.cursor is not None,
                        "cursor_age_seconds": round((now - c.updated_at).total_seconds(), 1),
                        "full_syncs": c.full_syncs,
                    }
                    for c in cursors
                ],
                "channels": [
                    {"calendar": c.calendar_id, "expires_at": as_utc_iso(c.expires_at)}
                    for c in channels
                ],
                "channels_off": channels_off(conn.settings or {}),
                "changes_in": state.changes_in if state else 0,
                "moved": state.moved if state else 0,
                "cancelled": state.cancelled if state else 0,
                "last_error": state.last_error if state else None,
                "last_error_at": _iso(state.last_error_at) if state else None,
                "last_run": (state.last_run if state else None) or None,
            }
        )
    return out
