"""The client's page (the business's own people): the messages and appointments
the answering service took for them, newest first, filtered by date and status,
and a "handled" mark on a message, kept in ``console_message_marks``.

Invariants: everything is read and written for the tenant in the URL, which the
viewer must be allowed to see (else 404, as if it did not exist); a mark belongs
to a message of that tenant (else 404); marking twice changes nothing.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column
from starlette.concurrency import run_in_threadpool

from relais.console.i18n import _
from relais.console.reads import record_reads
from relais.console.web import ConsoleError, Viewer, checked_form, render, viewer_of, visible_tenant
from sync.store.db import session_scope
from sync.store.models import Appointment, Base, Message, utcnow
from sync.tenants import parsed_config

router = APIRouter(include_in_schema=False)
HANDLED = ("all", "open", "handled")
APPOINTMENT_STATUSES = ("", "confirmed", "cancelled", "pending", "failed")
LIMIT = 200


class MessageMark(Base):
    """A message the client marked handled: who and when (one row per message)."""

    __tablename__ = "console_message_marks"
    message_id: Mapped[str] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                           index=True)
    handled_by: Mapped[str] = mapped_column(String(200))
    handled_at: Mapped[datetime] = mapped_column(default=utcnow)


def _day(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        raise ConsoleError(422, _("Date invalide : écrivez-la comme 2026-12-31.")) from None


def inbox(session: Session, tenant_id: str, zone: Any, *, day_from: date | None,
          day_to: date | None, handled: str, appointment_status: str) -> dict[str, Any]:
    """The tenant's messages (by when taken) and appointments (by when booked), newest first;
    ``day_from``/``day_to`` (the tenant's local days, both included) bound
    when a message was taken and when an appointment starts."""
    if handled not in HANDLED:
        raise ConsoleError(422, _("Filtre « traité » inconnu : choisissez-en un dans la liste."))
    if appointment_status not in APPOINTMENT_STATUSES:
        raise ConsoleError(422, _("Statut de rendez-vous inconnu : choisissez-en un dans la "
                                  "liste."))
    lo = datetime.combine(day_from, time.min, zone) if day_from else None
    hi = datetime.combine(day_to + timedelta(days=1), time.min, zone) if day_to else None
    marks = {m.message_id: m for m in session.scalars(
        select(MessageMark).where(MessageMark.tenant_id == tenant_id))}
    stmt = select(Message).where(Message.tenant_id == tenant_id)
    if lo:
        stmt = stmt.where(Message.taken_at >= lo)
    if hi:
        stmt = stmt.where(Message.taken_at < hi)
    if handled == "handled":
        stmt = stmt.where(Message.id.in_(list(marks)))
    elif handled == "open":
        stmt = stmt.where(Message.id.not_in(list(marks)))
    messages = list(session.scalars(stmt.order_by(Message.taken_at.desc(), Message.id.desc())
                                    .limit(LIMIT)))
    astmt = select(Appointment).where(Appointment.tenant_id == tenant_id)
    if lo:
        astmt = astmt.where(Appointment.start >= lo)
    if hi:
        astmt = astmt.where(Appointment.start < hi)
    if appointment_status:
        astmt = astmt.where(Appointment.status == appointment_status)
    appointments = list(session.scalars(
        astmt.order_by(Appointment.created_at.desc(), Appointment.id.desc()).limit(LIMIT)))
    return {"messages": messages, "marks": marks, "appointments": appointments}


@router.get("/t/{tenant_id}/inbox")
async def inbox_page(request: Request, tenant_id: str, day_from: str = "", day_to: str = "",
                     handled: str = "all", appointment_status: str = "") -> Response:
    viewer = await viewer_of(request)
    start, end = _day(day_from), _day(day_to)

    def build() -> dict[str, Any]:
        with session_scope(readonly=True) as session:
            tenant = visible_tenant(session, viewer, tenant_id)
            config = parsed_config(tenant)
            found = inbox(session, tenant_id, config.zone, day_from=start, day_to=end,
                          handled=handled, appointment_status=appointment_status)
            record_reads(viewer, tenant_id, "inbox", [m.id for m in found["messages"]],
                         [a.id for a in found["appointments"]])
            return {"tenant": tenant, "config": config, **found,
                    "filters": {"day_from": day_from, "day_to": day_to, "handled": handled,
                                "appointment_status": appointment_status},
                    "handled_choices": HANDLED, "statuses": APPOINTMENT_STATUSES,
                    "staff_names": {m.id: m.name for m in config.staff}}

    return render(request, "inbox.html", await run_in_threadpool(build), viewer=viewer)


def mark(session: Session, viewer: Viewer, tenant_id: str, message_id: str,
         handled: bool) -> None:
    """Mark (or unmark) a message of ``tenant_id`` handled; 404 for anyone else's."""
    visible_tenant(session, viewer, tenant_id)
    message = session.get(Message, message_id)
    if message is None or message.tenant_id != tenant_id:
        raise ConsoleError(404, "not_found")
    existing = session.get(MessageMark, message_id)
    if handled and existing is None:
        session.add(MessageMark(message_id=message_id, tenant_id=tenant_id,
                                handled_by=viewer.name, handled_at=utcnow()))
    elif not handled and existing is not None:
        session.delete(existing)


@router.post("/t/{tenant_id}/inbox/messages/{message_id}/handled")
async def mark_handled(request: Request, tenant_id: str, message_id: str) -> Response:
    """``handled=1`` marks the message handled, ``handled=0`` reopens it."""
    viewer = await viewer_of(request)
    form = await checked_form(request, viewer)

    def apply() -> None:
        with session_scope() as session:
            mark(session, viewer, tenant_id, message_id, form.get("handled", "1") == "1")

    await run_in_threadpool(apply)
    back = form.get("back", "")
    target = back if back.startswith(f"/t/{tenant_id}/inbox") else f"/t/{tenant_id}/inbox"
    return RedirectResponse(target, status_code=303)
