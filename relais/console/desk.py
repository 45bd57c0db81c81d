"""The secretary's desk: open a call on the right tenant and caller, qualify it,
see where it will go, send it, watch its deliveries land.

``/desk?called=+33…&caller=+33…`` (a softphone's screen-pop) finds the tenant by
its ``forwarding_numbers`` among the tenants the viewer may see, and the caller
in the tenant's contact directory. Sending goes through the very functions of
``POST /v1/tenants/{t}/messages`` (``sync.outbox.accept_message`` then
``enqueue_accepted`` after commit); the preview is ``mappings.plan.plan_for``,
the engine of ``POST /v1/tenants/{t}/rules/explain``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import phonenumbers
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, load_only
from starlette.concurrency import run_in_threadpool

from mappings.config import TenantConfig
from mappings.oncall import NoOnCallSchedule, on_call_at
from mappings.plan import DeliveryPlan, PlanError, plan_for
from mappings.rules import CallContext, closed_day, open_range, window_weekly
from mappings.wallclock import local
from relais.console import desk_problems as problems
from relais.console.reads import record_reads
from relais.console.web import (
    ConsoleError,
    Viewer,
    checked_form,
    render,
    viewer_of,
    visible_tenant,
)
from sync.contacts import (
    PhoneQuery,
    is_known_caller,
    lookup_phone,
    parse_phone_query,
    search_name,
)
from sync.domain import CallMessage
from sync.lists import Filters, list_appointments, list_messages
from sync.outbox import IdempotencyKeyReused, MessageRejected, accept_message, enqueue_accepted
from sync.store.db import session_scope
from sync.store.models import Appointment, Connection, Delivery, Message, Tenant, utcnow
from sync.tenants import numbers_ending_like, parsed_config

router = APIRouter(include_in_schema=False)
URGENCIES = ("low", "normal", "high", "urgent")
FINAL = frozenset({"delivered", "dead"})
RECENT = 5
RECENT_APPOINTMENTS = 3


def _e164(raw: str, region: str | None) -> str | None:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def tenants_of(session: Session, viewer: Viewer) -> list[Tenant]:
    """The tenants the viewer may take calls for, by name: their id and name only
    (not every tenant's YAML, which the search list never shows)."""
    rows = session.scalars(select(Tenant).options(load_only(Tenant.id, Tenant.name))
                           .order_by(Tenant.name))
    return [t for t in rows if viewer.can_see(t.id)]


def tenant_for_number(session: Session, viewer: Viewer, called: str) -> Tenant | None:
    """The visible tenant whose ``forwarding_numbers`` include ``called`` (read in each
    tenant's region when it is written without +country).

    The candidates come from ``tenant_numbers`` (kept by ``apply_config``; the index
    ``POST /v1/calls`` reads), so only a candidate's configuration is parsed: a
    screen-pop costs the same for 3 tenants or 3,000, and never walks every tenant's
    YAML (a cold cache, or more tenants than it holds, made that seconds)."""
    for _number, tenant_id in numbers_ending_like(session, called):
        if not viewer.can_see(tenant_id):
            continue
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            continue
        config = parsed_config(tenant)
        number = _e164(called, config.phone_region)
        if number is not None and number in config.forwarding_numbers:
            return tenant
    return None


@dataclass
class OpenState:
    open: bool
    until: datetime | None = None  # local wall time the current state ends, if known
    note: str = ""


def open_now(config: TenantConfig, now: datetime) -> OpenState | None:
    """Whether the business is open now, and until when (None: no business hours)."""
    if config.business_hours is None:
        return None
    found = open_range(window_weekly(config, "business_hours"), now, config.zone,
                       lambda d: closed_day(config, d))
    if found is not None:
        return OpenState(True, local(found.end, config.zone))
    return OpenState(False, None, closed_day(config, local(now, config.zone).date()) or "")


@dataclass
class CallerView:
    phone: str  # as given by the screen-pop
    e164: str | None
    contact: dict[str, Any] | None = None
    recent: list[Message] = field(default_factory=list)
    appointments: list[Appointment] = field(default_factory=list)


def recognise(session: Session, tenant_id: str, config: TenantConfig, raw: str) -> CallerView:
    """The caller from the directory (best match), their last messages and appointments
    here. A fixed number of indexed queries (``sync.contacts.lookup_phone`` and the
    lists of ``GET …/messages|appointments?caller=``), whatever the directory or
    history holds: no query per row."""
    view = CallerView(raw, _e164(raw, config.phone_region))
    if not raw.strip():
        return view
    try:
        query = parse_phone_query(raw, config.phone_region)
    except ValueError:
        return view
    matches = lookup_phone(session, tenant_id, query, 1)
    view.contact = matches[0] if matches else None
    if view.e164:
        exact = Filters(caller=PhoneQuery(query.digits, view.e164, query.suffix))
        view.recent = list_messages(session, tenant_id, exact, limit=RECENT).items
        view.appointments = list_appointments(session, tenant_id, exact,
                                              limit=RECENT_APPOINTMENTS).items
    return view


def _desk_context(session: Session, viewer: Viewer, tenant: Tenant, caller: str,
                  call_type: str | None = None) -> dict[str, Any]:
    config = parsed_config(tenant)
    now = utcnow()
    on_call = None
    if config.on_call is not None:
        try:
            shift = on_call_at(config, now)
        except NoOnCallSchedule:  # e.g. before the rotation's first turn
            shift = None
        if shift is not None:
            on_call = {"name": shift.staff.name, "phone": shift.staff.phone,
                       "until": local(shift.end, config.zone)}
    chosen = config.call_type(call_type or "") or config.call_types[0]
    return {
        "tenant": tenant, "config": config, "now": local(now, config.zone),
        "open": open_now(config, now), "on_call": on_call,
        "caller": recognise(session, tenant.id, config, caller),
        "call_type": chosen, "urgencies": URGENCIES,
        # One opened call, one message: a second press of "send" repeats the same body
        # under the same key, so the outbox answers the first message.
        "idempotency_key": f"desk-{uuid.uuid4().hex}", "taken_at": now.isoformat(),
    }


@router.get("/desk")
async def desk(request: Request, called: str = "", caller: str = "", tenant: str = "",
               q: str = "") -> HTMLResponse:
    """Open a call: on ``tenant``, or the tenant answering on ``called``; else a search."""
    viewer = await viewer_of(request)
    if not viewer.takes_calls:
        raise ConsoleError(404, "not_found")

    def build() -> tuple[str, dict[str, Any], int]:
        with session_scope(readonly=True) as session:
            if tenant:
                found = visible_tenant(session, viewer, tenant)
            elif called:
                found = tenant_for_number(session, viewer, called)
                if found is None:
                    return "desk_search.html", {
                        "tenants": tenants_of(session, viewer), "called": called,
                        "caller": caller, "q": q, "unknown_number": True}, 404
            else:
                visible = tenants_of(session, viewer)
                if q:
                    key = q.casefold()
                    visible = [t for t in visible if key in t.name.casefold() or key in t.id]
                return "desk_search.html", {"tenants": visible, "called": called,
                                            "caller": caller, "q": q}, 200
            context = _desk_context(session, viewer, found, caller)
            seen: CallerView = context["caller"]
            record_reads(viewer, found.id, "desk", [m.id for m in seen.recent],
                         [a.id for a in seen.appointments])
            return "desk.html", context, 200

    name, context, status = await run_in_threadpool(build)
    return render(request, name, context, status, viewer)


@router.get("/t/{tenant_id}/desk/form")
async def intake_form(request: Request, tenant_id: str, call_type: str = "") -> HTMLResponse:
    """The call type's part of the form: its instructions, urgency and intake fields."""
    viewer = await viewer_of(request)

    def build() -> dict[str, Any]:
        with session_scope(readonly=True) as session:
            config = parsed_config(visible_tenant(session, viewer, tenant_id))
            chosen = config.call_type(call_type)
            if chosen is None:
                raise ConsoleError(404, "not_found")
            return {"config": config, "call_type": chosen, "urgencies": URGENCIES}

    context = await run_in_threadpool(build)
    response = render(request, "desk_intake.html", context, viewer=viewer)
    response.headers["HX-Trigger-After-Swap"] = "intake-changed"  # the preview follows
    return response


def _intake(config: TenantConfig, call_type: str, form: dict[str, str]) -> dict[str, Any]:
    """The intake answers of the form (``intake.<name>``), typed as the call type says."""
    chosen = config.call_type(call_type)
    answers: dict[str, Any] = {}
    for spec in chosen.intake_fields if chosen else []:
        raw = form.get(f"intake.{spec.name}", "").strip()
        if spec.type == "bool":
            answers[spec.name] = raw in ("on", "true", "1")
        elif raw:
            if spec.type == "number":
                try:
                    answers[spec.name] = float(raw) if "." in raw else int(raw)
                except ValueError:
                    answers[spec.name] = raw  # refused, with its field, by the engine
            else:
                answers[spec.name] = raw
    return answers


def _preview(session: Session, tenant: Tenant, config: TenantConfig,
             form: dict[str, str]) -> tuple[DeliveryPlan | None, dict[str, str] | None]:
    """The plan, or the problem (field, label, French sentence) that prevents it."""
    refused = problems.preview_problem(config, form)
    if refused is not None:
        return None, refused
    phone = form.get("caller.phone", "").strip()
    e164 = _e164(phone, config.phone_region) if phone else None
    try:
        plan = plan_for(config, CallContext(
            call_type=form.get("call_type", ""), urgency=form.get("urgency") or None,
            at=utcnow(), known_contact=is_known_caller(session, tenant.id, e164),
            staff_id=form.get("staff_id") or None,
            intake=_intake(config, form.get("call_type", ""), form)))
    except PlanError:  # what preview_problem does not foresee: never the engine's English
        return None, {"field": "call_type", "label": problems.LABELS["call_type"],
                      "problem": problems.PREVIEW_FAILED}
    return plan, None


@router.post("/t/{tenant_id}/desk/preview")
async def preview(request: Request, tenant_id: str) -> HTMLResponse:
    """Where the message would go, from the rules, before it is sent."""
    viewer = await viewer_of(request)
    form = await checked_form(request, viewer)

    def build() -> dict[str, Any]:
        with session_scope(readonly=True) as session:
            tenant = visible_tenant(session, viewer, tenant_id)
            config = parsed_config(tenant)
            plan, error = _preview(session, tenant, config, form)
            return {"plan": plan, "error": error, "config": config}

    return render(request, "desk_preview.html", await run_in_threadpool(build), viewer=viewer)


def _message_data(config: TenantConfig, viewer: Viewer, form: dict[str, str]) -> dict[str, Any]:
    caller = {k: form.get(f"caller.{k}", "").strip() for k in ("name", "phone", "email",
                                                               "company")}
    return {
        "call_type": form.get("call_type", ""),
        "urgency": form.get("urgency") or None,
        "caller": {k: v for k, v in caller.items() if v},
        "subject": form.get("subject", "").strip(),
        "body": form.get("body", "").strip(),
        "taken_by": viewer.name,
        "taken_at": _taken_at(form.get("taken_at", "")),
        "staff_id": form.get("staff_id") or None,
        "callback_requested": form.get("callback_requested") in ("on", "true", "1"),
        "intake": _intake(config, form.get("call_type", ""), form),
    }


def _taken_at(raw: str) -> str:
    """When the call was opened (the form's), else now: never a naive or odd instant."""
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        return utcnow().isoformat()
    return at.isoformat() if at.tzinfo is not None else utcnow().isoformat()


@router.post("/t/{tenant_id}/desk/send")
async def send(request: Request, tenant_id: str) -> HTMLResponse:
    """Accept the call as ``POST /v1/tenants/{t}/messages`` does, then show it live."""
    viewer = await viewer_of(request)
    form = await checked_form(request, viewer)
    key = form.get("idempotency_key") or None

    def accept() -> tuple[Any, dict[str, Any]]:
        with session_scope() as session:
            tenant = visible_tenant(session, viewer, tenant_id)
            config = parsed_config(tenant)
            call_type = form.get("call_type", "")
            try:
                msg = CallMessage.model_validate(_message_data(config, viewer, form),
                                                 context={"region": config.phone_region})
            except ValidationError as exc:
                return None, {"problems": problems.from_validation(config, call_type, exc)}
            try:
                accepted = accept_message(session, tenant_id, config, msg, key)
            except IdempotencyKeyReused:
                return None, {"problems": [problems.problem(config, call_type, "message",
                                                            "reused")]}
            except MessageRejected as exc:
                return None, {"problems": [problems.rejected(config, call_type, exc.field,
                                                             str(exc))]}
            return accepted, {"message_id": accepted.message.id}

    accepted, context = await run_in_threadpool(accept)
    if accepted is None:
        return render(request, "desk_problems.html", context, 422, viewer)
    if accepted.created:
        await run_in_threadpool(enqueue_accepted, accepted)  # after commit: the outbox rule
    return await _status(request, viewer, tenant_id, context["message_id"])


def message_status(session: Session, tenant_id: str, message_id: str) -> dict[str, Any]:
    message = session.get(Message, message_id)
    if message is None or message.tenant_id != tenant_id:
        raise ConsoleError(404, "not_found")
    deliveries = list(session.scalars(
        select(Delivery).where(Delivery.message_id == message.id).order_by(Delivery.id)))
    names = {c.id: c for c in session.scalars(
        select(Connection).where(Connection.tenant_id == tenant_id))}
    rows = [{"id": d.id, "status": d.status, "attempts": d.attempts, "rule": d.rule,
             "target": _target(d, names.get(d.connection_id)), "error": d.last_error}
            for d in deliveries]
    return {"message": message, "deliveries": rows,
            "settled": all(r["status"] in FINAL for r in rows)}


def _target(delivery: Delivery, connection: Connection | None) -> str:
    params = delivery.params or {}
    to = params.get("to") or params.get("address") or ""
    name = connection.name if connection is not None else ""
    return f"{name} → {to}" if to else name


async def _status(request: Request, viewer: Viewer, tenant_id: str,
                  message_id: str) -> HTMLResponse:
    # The fragment's own poll (every second until the deliveries settle) re-shows what
    # this viewer's first view of it (the send, or a direct GET) already put on the
    # access log: one entry per opening, not one per second.
    poll = request.headers.get("HX-Trigger") == "sent-status"

    def build() -> dict[str, Any]:
        with session_scope(readonly=True) as session:
            visible_tenant(session, viewer, tenant_id)
            status = message_status(session, tenant_id, message_id)
            if not poll:
                record_reads(viewer, tenant_id, "desk.sent", [message_id])
            return {"tenant_id": tenant_id, **status}

    return render(request, "desk_sent.html", await run_in_threadpool(build), viewer=viewer)


@router.get("/t/{tenant_id}/desk/messages/{message_id}")
async def sent_status(request: Request, tenant_id: str, message_id: str) -> HTMLResponse:
    """The sent message and its deliveries (polled by htmx until all have settled)."""
    viewer = await viewer_of(request)
    return await _status(request, viewer, tenant_id, message_id)


@router.get("/t/{tenant_id}/messages")
async def messages(request: Request, tenant_id: str) -> HTMLResponse:
    """The tenant's latest messages, newest first (every role that sees the tenant)."""
    viewer = await viewer_of(request)

    def build() -> dict[str, Any]:
        with session_scope(readonly=True) as session:
            tenant = visible_tenant(session, viewer, tenant_id)
            rows = list(session.scalars(
                select(Message).where(Message.tenant_id == tenant_id)
                .order_by(Message.created_at.desc()).limit(50)))
            record_reads(viewer, tenant_id, "messages", [m.id for m in rows])
            return {"tenant": tenant, "config": parsed_config(tenant), "messages": rows}

    return render(request, "messages.html", await run_in_threadpool(build), viewer=viewer)


@router.get("/t/{tenant_id}/desk/contacts")
async def contacts(request: Request, tenant_id: str, q: str = "") -> HTMLResponse:
    """Directory search by name for an unrecognised caller (htmx, as typed)."""
    viewer = await viewer_of(request)

    def build() -> dict[str, Any]:
        with session_scope(readonly=True) as session:
            visible_tenant(session, viewer, tenant_id)
            searched = len(q.strip()) >= 2
            return {"contacts": search_name(session, tenant_id, q, 8) if searched else [],
                    "searched": searched}

    return render(request, "desk_contacts.html", await run_in_threadpool(build), viewer=viewer)
