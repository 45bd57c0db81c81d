"""The tenant admin's access log page (``/t/{tenant}/audit``): who read message
content (console, API, signed links), exported or erased a person's data and
revoked links, newest first, with the chain's verification.

Invariants:

- Only the tenant's admin or the operator reaches it; anyone else gets 404
  (``relais.console.admin.admin_tenant``), as for a tenant that does not exist.
- The entries come from ``sync.privacy.audit.listing`` (what ``GET
  /v1/tenants/{t}/audit`` returns) and the status from ``sync.privacy.audit.verify``
  (what ``relais audit verify`` prints): no second reading of the chain.
- Paging by ``before`` (the smallest ``seq`` shown; the filters kept): stable while entries are
  appended, unlike an offset.
- A bad filter is a 422 page naming the field, never a 500.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from relais.console.admin import _day, _zone, admin_tenant
from relais.console.users import ConsoleUser
from relais.console.web import Viewer, render, viewer_of
from sync.lists import BadFilter
from sync.privacy import audit
from sync.store.db import session_scope
from sync.store.privacy_models import AccessLogEntry

router = APIRouter(include_in_schema=False)
PAGE = 50


@dataclass(frozen=True)
class Row:
    seq: int
    at: Any
    actor: str
    action: str
    subject: str
    detail: str


def _actor_label(actor: str, users: dict[str, str]) -> str:
    """``user:<id>`` shown with the user's name (the id stays: names change)."""
    if actor.startswith("user:") and actor[5:] in users:
        return f"{users[actor[5:]]} ({actor})"
    return actor


def _detail(entry: AccessLogEntry) -> str:
    """The entry's detail as ``key=value`` pairs (ids and counts only, never content);
    a list (the ids a console page showed) as its items separated by spaces."""
    return ", ".join(f"{k}={' '.join(map(str, v)) if isinstance(v, list) else v}"
                     for k, v in sorted((entry.detail or {}).items()))


def _before(value: str) -> int | None:
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise BadFilter("before", f"{value!r} is not a positive number",
                        "follow the “older entries” link")
    return int(value)


def _context(viewer: Viewer, tenant_id: str, params: dict[str, str]) -> dict[str, Any]:
    filters = {k: params.get(k, "").strip() for k in ("action", "actor", "start", "end",
                                                      "before")}
    with session_scope(readonly=True) as session:
        tenant = admin_tenant(session, viewer, tenant_id)
        zone: ZoneInfo = _zone(tenant)
        report = audit.verify(session, tenant_id)[0]
        error, rows, older = None, [], ""
        try:
            if filters["action"] and filters["action"] not in audit.ACTIONS:
                raise BadFilter("action", f"{filters['action']!r} is not an access log action",
                                "pick one in the list")
            start = _day(filters["start"], zone, "start")
            last = _day(filters["end"], zone, "end")
            entries = audit.listing(
                session, tenant_id, limit=PAGE + 1, before_seq=_before(filters["before"]),
                actions=[filters["action"]] if filters["action"] else None, start=start,
                end=last + timedelta(days=1) if last else None,  # the end day included
                actor=filters["actor"] or None)
            if len(entries) > PAGE:
                entries = entries[:PAGE]
                kept = {k: v for k, v in filters.items() if v and k != "before"}
                older = urlencode({**kept, "before": entries[-1].seq})
            ids = {e.actor[5:] for e in entries if e.actor.startswith("user:")}
            users = dict(session.execute(
                select(ConsoleUser.id, ConsoleUser.name).where(ConsoleUser.id.in_(ids))).all()
            ) if ids else {}
            rows = [Row(e.seq, e.at.astimezone(zone), _actor_label(e.actor, users), e.action,
                        f"{e.subject_type} {e.subject_id}", _detail(e)) for e in entries]
        except BadFilter as exc:
            error = f"{exc.field}: {exc.problem} ({exc.hint})"
        session.expunge_all()
    return {"tenant": tenant, "zone": zone, "rows": rows, "older": older, "report": report,
            "actions": audit.ACTIONS, "filters": filters, "filter_error": error,
            "section": "audit"}


@router.get("/t/{tenant_id}/audit")
async def audit_page(request: Request, tenant_id: str) -> HTMLResponse:
    viewer = await viewer_of(request)
    context = await run_in_threadpool(_context, viewer, tenant_id, dict(request.query_params))
    return render(request, "admin_audit.html", context, 422 if context["filter_error"] else 200,
                  viewer)
