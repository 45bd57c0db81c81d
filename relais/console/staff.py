"""The client IT admin's "Personnel et agendas" tab: each staff member with the
calendar the tenant's YAML gives them, a live "readable?" check, and a change of
calendar id.

Invariants:

- Only a tenant admin of the tenant, or the operator, reaches it; anyone else gets
  404 (``relais.console.admin.admin_tenant``), as for a tenant that does not exist;
  a staff member not in the tenant's file is 404 too.
- The check is the busy-time read booking does (``sync.busy.fetch_calendar_busy``
  with ``fresh=True``: no cache, no busy store, a real provider call over the next
  day): "readable" means a secretary would see this person's real free slots. An
  unreadable calendar is said in the admin's words: needs re-authorisation (the
  connection is not active after the call, or the call said so), not found,
  forbidden, or the provider's own reason.
- A calendar change edits the stored YAML text (``relais.console.staff_yaml``: only
  that member's calendar, the rest kept byte for byte) and applies it with
  ``sync.tenants.apply_config``, as the Configuration tab does: validated the same
  way, kept as a new version with who and when, and rolled back from that tab.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from mappings.errors import ConfigError
from mappings.schema import StaffMember, TenantConfig
from relais.console.admin import actor, admin_tenant
from relais.console.staff_yaml import StaffEditError, set_staff_calendar
from relais.console.web import ConsoleError, Viewer, checked_form, render, viewer_of
from sync import calendar_sync
from sync.busy import fetch_calendar_busy
from sync.store.db import session_scope
from sync.store.models import Connection, utcnow
from sync.tenants import apply_config, parsed_config

router = APIRouter(include_in_schema=False)
CHECK_SPAN = timedelta(days=1)  # the window read by the check: short, but a real query

# Provider wording of "no such calendar" and "no right to read it", as the connectors
# pass it on (a reason, not a provider name): the check says it in the admin's words.
NOT_FOUND = re.compile(r"not\s*found|notfound|does not exist|no such|invalid\s*user|\b404\b",
                       re.IGNORECASE)
FORBIDDEN = re.compile(r"forbidden|access\s*denied|accessdenied|\b403\b|insufficient|permission",
                       re.IGNORECASE)
REAUTH = re.compile(r"re-?authori[sz]|auth_expired", re.IGNORECASE)  # a refused token


@dataclass
class Check:
    """A calendar check's outcome: ``readable``, ``needs_reauth``, ``not_found``,
    ``forbidden``, ``no_calendar`` or ``unreadable``; ``detail``: the engine's reason."""

    staff_id: str
    outcome: str
    detail: str = ""
    busy_blocks: int = 0

    @property
    def readable(self) -> bool:
        return self.outcome == "readable"


def classify(reason: str, connection_status: str | None) -> str:
    """The admin's word for why a calendar could not be read."""
    if connection_status in ("needs_reauth", "not_connected") or REAUTH.search(reason):
        return "needs_reauth"
    if NOT_FOUND.search(reason):
        return "not_found"
    if FORBIDDEN.search(reason):
        return "forbidden"
    return "unreadable"


def _member(config: TenantConfig, staff_id: str) -> StaffMember:
    for member in config.staff:
        if member.id == staff_id:
            return member
    raise ConsoleError(404, "not_found")


def check_calendar(tenant_id: str, config: TenantConfig, member: StaffMember) -> Check:
    """Read ``member``'s busy time now, fresh, as booking does; say if it is readable."""
    if member.calendar is None:
        return Check(member.id, "no_calendar")
    now = utcnow()
    fetched = fetch_calendar_busy(tenant_id, config, [member], now, now + CHECK_SPAN, fresh=True)
    busy = fetched.by_staff[member.id]
    if busy.error is None:
        return Check(member.id, "readable", busy_blocks=len(busy.busy))
    with session_scope(readonly=True) as session:  # after the call: a refused refresh shows
        status = session.scalar(select(Connection.status).where(
            Connection.tenant_id == tenant_id, Connection.name == member.calendar.connection))
    return Check(member.id, classify(busy.error, status), busy.error)


@dataclass
class StaffRow:
    id: str
    name: str
    connection: str | None
    calendar_id: str | None
    connection_status: str | None


def _context(viewer: Viewer, tenant_id: str, **extra: Any) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        tenant = admin_tenant(session, viewer, tenant_id)
        statuses = {c.name: c.status for c in session.scalars(
            select(Connection).where(Connection.tenant_id == tenant_id))}
        session.expunge_all()
    config = parsed_config(tenant)
    calendars = sorted(name for name, spec in config.connections.items()
                       if spec.provider in calendar_sync.PROVIDERS)
    rows = [StaffRow(m.id, m.name, m.calendar.connection if m.calendar else None,
                     m.calendar.id if m.calendar else None,
                     statuses.get(m.calendar.connection) if m.calendar else None)
            for m in config.staff]
    return {"tenant": tenant, "zone": config.zone, "staff": rows,
            "calendar_connections": calendars, "section": "staff", "check": None,
            "notice": {}, "errors": [], "form": {}, **extra}


@router.get("/t/{tenant_id}/staff")
async def staff_page(request: Request, tenant_id: str) -> HTMLResponse:
    viewer = await viewer_of(request)
    context = await run_in_threadpool(_context, viewer, tenant_id)
    return render(request, "admin_staff.html", context, viewer=viewer)


@router.post("/t/{tenant_id}/staff/{staff_id}/check")
async def check_page(request: Request, tenant_id: str, staff_id: str) -> HTMLResponse:
    """The live check of one member's calendar (a POST: it calls the provider)."""
    viewer = await viewer_of(request)
    await checked_form(request, viewer)

    def run() -> Check:
        with session_scope(readonly=True) as session:
            tenant = admin_tenant(session, viewer, tenant_id)
            config = parsed_config(tenant)
        return check_calendar(tenant_id, config, _member(config, staff_id))

    check = await run_in_threadpool(run)
    context = await run_in_threadpool(_context, viewer, tenant_id, check=check)
    return render(request, "admin_staff.html", context, viewer=viewer)


@router.post("/t/{tenant_id}/staff/{staff_id}/calendar")
async def change_calendar(request: Request, tenant_id: str, staff_id: str) -> HTMLResponse:
    """Set the member's calendar (``connection``, ``calendar_id``) in the tenant's YAML
    and apply it: a new configuration version, by this user."""
    viewer = await viewer_of(request)
    form = await checked_form(request, viewer)
    connection = form.get("connection", "")[:100]
    calendar_id = form.get("calendar_id", "")[:300]

    def run() -> dict[str, Any]:
        with session_scope() as session:
            tenant = admin_tenant(session, viewer, tenant_id)
            _member(parsed_config(tenant), staff_id)  # 404 before anything else
            try:
                text = set_staff_calendar(tenant.config_yaml, staff_id, connection, calendar_id)
            except StaffEditError as exc:
                return {"errors": [{"field": exc.field, "message": exc.problem}]}
            try:
                result = apply_config(session, text, f"{tenant_id}.yaml",
                                      expect_tenant=tenant_id, actor=actor(viewer))
            except ConfigError as exc:
                session.rollback()
                return {"errors": [i.as_dict() for i in exc.issues]}
            return {"notice": {"staff": staff_id, "applied": str(result.version)}}

    outcome = await run_in_threadpool(run)
    context = await run_in_threadpool(
        _context, viewer, tenant_id,
        form={"staff": staff_id, "connection": connection, "calendar_id": calendar_id},
        **outcome)
    return render(request, "admin_staff.html", context, 422 if outcome.get("errors") else 200,
                  viewer)

