"""Booking from the desk: a week grid of the really free slots, pick, confirm;
the tenant's appointments with move and cancel.

The console calls the API's engine functions and nothing else: availability is
``sync.booking.find_availability`` (as ``GET …/availability``), booking is
``sync.booking.book`` (as ``POST …/appointments``), moving and cancelling are
``reschedule`` and ``cancel``. A slot someone took meanwhile (``slot_taken``)
shows the engine's next free slots in place of the grid, nothing booked.

Invariants: every page and action 404s for a tenant the viewer may not see;
every POST carries the session's CSRF token; each rendered booking form has a
fresh ``Idempotency-Key``, so a double submit books once.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from phonenumbers import timezone as phone_zones
from starlette.concurrency import run_in_threadpool

from mappings.config import TenantConfig
from relais.console.i18n import _
from relais.console.reads import record_reads
from relais.console.web import ConsoleError, Viewer, checked_form, render, viewer_of, visible_tenant
from sync.booking import (
    ANY,
    BookingError,
    BookingRequest,
    book,
    cancel,
    find_availability,
    reschedule,
)
from sync.lists import Filters, list_appointments
from sync.store.db import session_scope
from sync.store.models import Appointment, utcnow
from sync.tenants import parsed_config

router = APIRouter(include_in_schema=False)


def caller_zone(config: TenantConfig, phone: str, asked: str = "") -> str:
    """The zone to show slots in: the one asked for, else the caller's number's
    (when the number maps to exactly one zone), else the tenant's."""
    if asked:
        try:
            ZoneInfo(asked)
            return asked
        except (ZoneInfoNotFoundError, ValueError):
            pass
    if phone.strip():
        try:
            number = phonenumbers.parse(phone, config.phone_region)
            zones = [z for z in phone_zones.time_zones_for_number(number) if z != "Etc/Unknown"]
            if len(zones) == 1:
                return zones[0]
        except phonenumbers.NumberParseException:
            pass
    return config.timezone


def _week_start(raw: str, zone: ZoneInfo) -> date:
    today = utcnow().astimezone(zone).date()
    try:
        chosen = date.fromisoformat(raw) if raw else today
    except ValueError:
        chosen = today
    return chosen - timedelta(days=chosen.weekday())


def week_grid(slots: list[dict[str, Any]], monday: date, zone: ZoneInfo) -> list[dict[str, Any]]:
    """Seven columns (Monday first), each with its slots in local time."""
    days: list[dict[str, Any]] = [{"date": monday + timedelta(days=i), "slots": []}
                                  for i in range(7)]
    for slot in slots:
        start = datetime.fromisoformat(slot["start"]).astimezone(zone)
        offset = (start.date() - monday).days
        if 0 <= offset < 7:
            days[offset]["slots"].append({**slot, "local": start})
    return days


def _booking_context(viewer: Viewer, tenant_id: str, params: dict[str, str]) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        tenant = visible_tenant(session, viewer, tenant_id)
        config = parsed_config(tenant)
        moving = None
        if params.get("move"):
            moving = session.get(Appointment, params["move"])
            if moving is None or moving.tenant_id != tenant_id:
                raise ConsoleError(404, "not_found")
            session.expunge(moving)
    if not config.appointment_types:
        return {"tenant": tenant, "config": config, "no_types": True}
    type_id = (moving.appointment_type if moving else params.get("type")) or ""
    spec = config.appointment_type(type_id) or config.appointment_types[0]
    staff = (moving.staff_id if moving else params.get("staff")) or ANY
    phone = params.get("phone", "") or ((moving.caller or {}).get("phone", "") if moving else "")
    zone_name = caller_zone(config, phone, params.get("tz", ""))
    zone = ZoneInfo(zone_name)
    monday = _week_start(params.get("week", ""), zone)
    begin = datetime.combine(monday, datetime.min.time(), zone)
    now = utcnow()
    error = ""
    slots: list[dict[str, Any]] = []
    unavailable: list[Any] = []
    try:
        answer = find_availability(tenant_id, config, staff=staff, type_id=spec.id,
                                   start=max(begin, now), end=begin + timedelta(days=7),
                                   tz=zone_name)
        slots = [s.to_dict() for s in answer.result.slots]
        unavailable = list(answer.result.unavailable)
    except BookingError as exc:
        error = exc.message
    return {
        "tenant": tenant, "config": config, "spec": spec, "staff": staff, "any": ANY,
        "zone": zone_name, "monday": monday, "days": week_grid(slots, monday, zone),
        "previous": (monday - timedelta(days=7)).isoformat(),
        "next": (monday + timedelta(days=7)).isoformat(),
        "unavailable": unavailable, "error": error, "moving": moving,
        "caller": {k: params.get(k, "") for k in ("name", "phone", "email")},
        "subject": params.get("subject", ""), "notes": params.get("notes", ""),
        "idempotency_key": f"console-{uuid.uuid4().hex}", "taken": None,
        "first_slot": slots[0]["start"] if slots else "",
        "staff_names": {m.id: m.name for m in config.staff},
    }


@router.get("/t/{tenant_id}/book")
async def booking_page(request: Request, tenant_id: str) -> HTMLResponse:
    """The week grid for an appointment type and a staff member (or anyone)."""
    viewer = await viewer_of(request)
    if not viewer.takes_calls:
        raise ConsoleError(404, "not_found")
    params = dict(request.query_params)
    context = await run_in_threadpool(_booking_context, viewer, tenant_id, params)
    return render(request, "booking.html", context, viewer=viewer)


# ``sync.booking.CODES`` as French msgids (the engine's English message is for API
# callers; ``tests/test_console_operator.py`` checks every code has one).
BOOKING_PROBLEMS = {
    "invalid_request": _("La demande est incomplète ou invalide : vérifiez les champs."),
    "not_found": _("Ce rendez-vous ou ce type de rendez-vous n'existe plus."),
    "slot_unavailable": _("Ce créneau n'est pas réservable (hors horaires ou délai trop court)."),
    "slot_taken": _("Ce créneau vient d'être pris : rien n'a été réservé. Voici les suivants."),
    "conflict": _("L'état de ce rendez-vous ne permet pas cette action."),
    "calendar_unavailable": _("L'agenda ne répond pas : rien n'a été fait, réessayez dans un "
                              "instant."),
    "calendar_rejected": _("L'agenda a refusé l'événement : rien n'a été réservé."),
    "calendar_error": _("L'agenda a renvoyé une erreur : rien n'a été réservé."),
}


def booking_problem(code: str) -> str:
    return BOOKING_PROBLEMS.get(code, _("La réservation n'a pas abouti : réessayez."))


def _taken(context: dict[str, Any], exc: BookingError) -> dict[str, Any]:
    """The page after ``slot_taken``: the engine's next free slots replace the grid."""
    details = exc.details if isinstance(exc.details, dict) else {}
    zone = ZoneInfo(context["zone"])
    nexts = [{**s, "local": datetime.fromisoformat(s["start"]).astimezone(zone)}
             for s in details.get("next_slots", [])]
    return {**context, "taken": nexts, "error": booking_problem(exc.code)}


@router.post("/t/{tenant_id}/book")
async def book_slot(request: Request, tenant_id: str) -> HTMLResponse:
    """Book the picked slot with the caller's details (``sync.booking.book``)."""
    viewer = await viewer_of(request)
    if not viewer.takes_calls:
        raise ConsoleError(404, "not_found")
    form = await checked_form(request, viewer)

    def attempt() -> tuple[str, dict[str, Any], int]:
        context = _booking_context(viewer, tenant_id, form)
        try:
            start = datetime.fromisoformat(form.get("slot", ""))
            if start.tzinfo is None:
                raise ValueError("naive")
        except ValueError:
            return "booking.html", {**context, "error": "pick"}, 422
        caller = {k: v.strip() for k, v in context["caller"].items() if v.strip()}
        try:
            if context.get("moving") is not None:
                outcome = reschedule(tenant_id, context["moving"].id, start=start,
                                     actor=viewer.name)
            else:
                outcome = book(tenant_id, BookingRequest(
                    staff_id=form.get("staff") or ANY, type_id=context["spec"].id, start=start,
                    caller=caller, subject=form.get("subject", "").strip(),
                    notes=form.get("notes", "").strip(),
                    idempotency_key=form.get("idempotency_key") or f"console-{uuid.uuid4().hex}",
                    booked_by=viewer.name))
        except BookingError as exc:
            if exc.code == "slot_taken":
                return "booking.html", _taken(context, exc), 409
            return "booking.html", {**context, "error": booking_problem(exc.code)}, 422
        row = outcome.appointment
        zone = ZoneInfo(context["zone"])
        return "booked.html", {"tenant": context["tenant"], "appointment": row,
                               "local": row.start.astimezone(zone), "zone": context["zone"],
                               "staff_names": context["staff_names"],
                               "moved": context.get("moving") is not None}, 200

    name, context, status = await run_in_threadpool(attempt)
    return render(request, name, context, status, viewer)


@router.get("/t/{tenant_id}/appointments")
async def appointments(request: Request, tenant_id: str, status: str = "") -> HTMLResponse:
    """The tenant's appointments, latest start first, with move and cancel."""
    viewer = await viewer_of(request)
    if not viewer.takes_calls:
        raise ConsoleError(404, "not_found")

    def build() -> dict[str, Any]:
        with session_scope(readonly=True) as session:
            tenant = visible_tenant(session, viewer, tenant_id)
            config = parsed_config(tenant)
            page = list_appointments(session, tenant_id, Filters(status=status or None),
                                     limit=100)
            record_reads(viewer, tenant_id, "appointments",
                         appointments=[a.id for a in page.items])
            return {"tenant": tenant, "config": config, "appointments": page.items,
                    "staff_names": {m.id: m.name for m in config.staff}}

    return render(request, "appointments.html", await run_in_threadpool(build), viewer=viewer)


@router.post("/t/{tenant_id}/appointments/{appointment_id}/cancel")
async def cancel_appointment(request: Request, tenant_id: str,
                             appointment_id: str) -> HTMLResponse:
    """Cancel (``sync.booking.cancel``): the calendar event goes, the CRM is told."""
    viewer = await viewer_of(request)
    if not viewer.takes_calls:
        raise ConsoleError(404, "not_found")
    await checked_form(request, viewer)

    def apply() -> str:
        with session_scope(readonly=True) as session:
            visible_tenant(session, viewer, tenant_id)
            row = session.get(Appointment, appointment_id)
            if row is None or row.tenant_id != tenant_id:
                raise ConsoleError(404, "not_found")
        try:
            cancel(tenant_id, appointment_id, actor=viewer.name)
        except BookingError as exc:
            return booking_problem(exc.code)
        return ""

    error = await run_in_threadpool(apply)
    if error:
        raise ConsoleError(409, error)
    return await appointments(request, tenant_id)
