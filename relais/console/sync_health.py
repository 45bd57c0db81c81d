"""The client IT admin's Sync tab: the health of each pull stream (CRM contacts,
staff calendars), each calendar's change channel, the recent two-way sync
conflicts, and "Synchroniser maintenant".

Invariants:

- Only a tenant admin of the tenant, or the operator, reaches it; anyone else gets
  404, as for a tenant that does not exist (``relais.console.admin.admin_tenant``).
- The figures are the engine's, read by the functions ``GET /v1/tenants/{t}/sync``,
  ``GET …/sync/calendars``, ``GET …/sync/conflicts`` and ``relais sync status`` use
  (``sync.contacts.sync_status``, ``sync.calendar_sync.sync_status``,
  ``sync.conflicts.conflict_view``): no second path to the data.
- "Sync now" starts the pulls a provider's change notification starts: the app's
  ``PullTriggers`` (``request.app.state.pull_triggers``: Celery tasks in the served
  API, an inline pull where a test or tool injected one). Only active connections
  are pulled; the others are listed with the reason. Whether a pull *ran* or is only
  *queued* is read from the stream's run record afterwards (``last_started_at``
  moved), never assumed.
- Conflicts are resolved by the engine as they are found (the tenant's policy
  picks a winner per field): the tab shows them, it has nothing to decide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from relais.console.admin import admin_tenant
from relais.console.web import ConsoleError, Viewer, checked_form, render, viewer_of
from sync import calendar_sync, clock, contacts
from sync.conflicts import conflict_view
from sync.pull_triggers import PullTriggers
from sync.store.conflict_models import SyncConflict
from sync.store.db import session_scope
from sync.store.models import Connection, Tenant
from sync.tenants import parsed_config

router = APIRouter(include_in_schema=False)
CONFLICTS_SHOWN = 50


@dataclass
class CalendarHealth:
    """One staff calendar of a calendar connection: its cursor and its channel.

    ``channel``: ``active`` (``expires_at`` set), ``expired`` (still marked active by
    the engine but past its expiry: the beat renews it), ``error`` (the last pull
    could not open it, ``reason`` says why), ``off`` (no channel by configuration,
    ``reason`` says why) or ``none`` (none yet: one opens after a successful pull)."""

    calendar: str
    staff: list[str]
    has_cursor: bool = False
    cursor_age_seconds: float | None = None
    full_syncs: int = 0
    channel: str = "none"
    expires_at: datetime | None = None
    reason: str = ""


@dataclass
class StreamHealth:
    """One connection's pull stream (``kind``: ``crm`` or ``calendar``), as the engine's
    status function reports it (``status``), and its calendars for a calendar one."""

    kind: str
    status: dict[str, Any]
    calendars: list[CalendarHealth] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.status["connection"])


def _calendars(status: dict[str, Any], staff: dict[str, list[str]],
               now: datetime) -> list[CalendarHealth]:
    """The connection's staff calendars (from the tenant's file) and those it has a
    cursor for, each with its cursor and channel."""
    out = {cid: CalendarHealth(cid, names) for cid, names in staff.items()}
    for cursor in status["calendars"]:
        row = out.setdefault(cursor["calendar"], CalendarHealth(cursor["calendar"], []))
        row.has_cursor = bool(cursor["has_cursor"])
        row.cursor_age_seconds = cursor["cursor_age_seconds"]
        row.full_syncs = int(cursor["full_syncs"] or 0)
    expiries: dict[str, datetime] = {}  # the engine's active channels: the latest expiry
    for channel in status["channels"]:
        expires = datetime.fromisoformat(channel["expires_at"])
        expiries[channel["calendar"]] = max(expires, expiries.get(channel["calendar"], expires))
    last_run = status.get("last_run") or {}
    opened = last_run.get("channels") or {}
    for row in out.values():
        expires = expiries.get(row.calendar)
        if status.get("channels_off"):
            row.channel, row.reason = "off", str(status["channels_off"])
        elif expires is not None:
            # the provider's expiry: compared with the machine's time, as the engine does
            row.channel = "active" if expires > now else "expired"
            row.expires_at = expires
        elif opened.get(row.calendar) == "error":
            row.channel, row.reason = "error", str(last_run.get("note") or "")
    return sorted(out.values(), key=lambda c: c.calendar)


def streams_of(session: Session, tenant_id: str) -> list[StreamHealth]:
    """Every pull stream of the tenant: CRM directories, then calendar connections
    (a connection removed from the tenant's file, ``disabled``, is left out)."""
    out = [StreamHealth("crm", s) for s in contacts.sync_status(session, tenant_id)
           if s["connection_status"] != "disabled"]
    calendar_rows = [s for s in calendar_sync.sync_status(session, tenant_id)
                     if s["connection_status"] != "disabled"]
    if calendar_rows:
        tenant = _tenant(session, tenant_id)
        config = parsed_config(tenant)
        now = clock.machine_now()
        for status in calendar_rows:
            staff = {cid: [m.name for m in members] for cid, members in
                     calendar_sync.staff_calendars(config, status["connection"]).items()}
            out.append(StreamHealth("calendar", status, _calendars(status, staff, now)))
    return out


def _tenant(session: Session, tenant_id: str) -> Tenant:
    """The tenant row (the caller already checked the viewer may administer it)."""
    row = session.get(Tenant, tenant_id)
    if row is None:
        raise ConsoleError(404, "not_found")
    return row


def zone_of(tenant: Tenant) -> ZoneInfo:
    try:
        return parsed_config(tenant).zone
    except Exception:  # noqa: BLE001  (a stored config always parses; UTC if not)
        return ZoneInfo("UTC")


def recent_conflicts(session: Session, tenant_id: str) -> list[dict[str, Any]]:
    """The newest conflicts, as ``GET …/sync/conflicts`` shows them."""
    rows = session.scalars(select(SyncConflict).where(SyncConflict.tenant_id == tenant_id)
                           .order_by(SyncConflict.id.desc()).limit(CONFLICTS_SHOWN))
    return [conflict_view(r) for r in rows]


def _context(viewer: Viewer, tenant_id: str,
             notice: dict[str, Any] | None = None) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        tenant = admin_tenant(session, viewer, tenant_id)
        streams = streams_of(session, tenant_id)
        conflicts = recent_conflicts(session, tenant_id)
        session.expunge_all()
    return {"tenant": tenant, "zone": zone_of(tenant), "streams": streams,
            "conflicts": conflicts, "notice": notice or {}, "section": "sync",
            "as_time": _as_time}


def _as_time(value: str | None) -> datetime | None:
    """An ISO instant of a status row, for the template to show in the tenant's zone."""
    return datetime.fromisoformat(value) if value else None


@router.get("/t/{tenant_id}/sync")
async def sync_page(request: Request, tenant_id: str) -> HTMLResponse:
    viewer = await viewer_of(request)
    context = await run_in_threadpool(_context, viewer, tenant_id)
    return render(request, "admin_sync.html", context, viewer=viewer)


@dataclass
class Started:
    """What "sync now" did for one connection: ``ran`` (the run record moved: its
    ``result``), ``running`` (a worker started it already), ``queued`` (handed to the
    workers), or ``not_started`` (``reason``)."""

    connection: str
    kind: str
    outcome: str
    result: str = ""
    reason: str = ""


def _started_marks(tenant_id: str) -> dict[str, str | None]:
    """Each stream's ``last_started_at`` now, by connection name."""
    with session_scope(readonly=True) as session:
        return {s.name: s.status.get("last_started_at") for s in streams_of(session, tenant_id)}


def sync_now(tenant_id: str, only: str | None, triggers: PullTriggers) -> list[Started]:
    """Start the pull of every active pull connection of the tenant (or of ``only``)
    through ``triggers``; then tell which ran and which are queued."""
    with session_scope(readonly=True) as session:
        tenant = _tenant(session, tenant_id)
        config = parsed_config(tenant)
        query = select(Connection).where(
            Connection.tenant_id == tenant_id,
            Connection.status != "disabled",
            Connection.provider.in_(list(contacts.PROVIDERS) + list(calendar_sync.PROVIDERS)))
        if only:
            query = query.where(Connection.name == only)
        rows = [(c.id, c.name, c.provider, c.status)
                for c in session.scalars(query.order_by(Connection.name))]
    if only and not rows:
        raise ConsoleError(404, "not_found")
    before = _started_marks(tenant_id)
    started: list[Started] = []
    for conn_id, name, provider, status in rows:
        kind = "calendar" if provider in calendar_sync.PROVIDERS else "crm"
        if status != "active":
            started.append(Started(name, kind, "not_started", reason=f"connection is {status}"))
            continue
        if kind == "calendar":
            calendars = list(calendar_sync.staff_calendars(config, name))
            if not calendars:
                started.append(Started(name, kind, "not_started",
                                       reason="no staff calendar on this connection"))
                continue
            triggers.calendar(conn_id, calendars)
        else:
            triggers.contacts(conn_id)
        started.append(Started(name, kind, "queued"))
    with session_scope(readonly=True) as session:
        after = {s.name: s for s in streams_of(session, tenant_id)}
    for item in started:
        stream = after.get(item.connection)
        if item.outcome == "queued" and stream is not None and \
                stream.status.get("last_started_at") != before.get(item.connection):
            if stream.status.get("state") == "running":  # a worker took it already
                item.outcome = "running"
                continue
            last = stream.status.get("last_run") or {}
            item.outcome = "ran"
            item.result = str(last.get("status") or stream.status.get("state") or "")
            item.reason = str(last.get("error") or last.get("note") or "")
    return started


@router.post("/t/{tenant_id}/sync/now")
async def sync_now_page(request: Request, tenant_id: str) -> HTMLResponse:
    """"Synchroniser maintenant": every pull connection, or the one named in the form
    (``connection``)."""
    viewer = await viewer_of(request)
    form = await checked_form(request, viewer)
    triggers: PullTriggers = request.app.state.pull_triggers

    def run() -> list[Started]:
        with session_scope(readonly=True) as session:
            admin_tenant(session, viewer, tenant_id)
        return sync_now(tenant_id, form.get("connection") or None, triggers)

    started = await run_in_threadpool(run)
    context = await run_in_threadpool(_context, viewer, tenant_id, {"started": started})
    return render(request, "admin_sync.html", context, viewer=viewer)
