"""Read a period's facts from the store and compute its report.

Every read is an index range: calls by ``ix_calls_tenant_offered``, messages by
``ix_messages_tenant_created``, deliveries by ``ix_deliveries_tenant_delivered``
(and the tenant's dead ones by ``ix_deliveries_tenant_status``), escalations by
``ix_escalations_tenant_created``, appointment audit events by the partial
``ix_audit_appointments``. :func:`call_facts_from_events` is the slow path the
benchmark compares with: the raw ``call_events`` folded per call.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, String, and_, any_, bindparam, cast, exists, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from sync.calls import EventRow, aggregate
from sync.domain import as_utc_iso
from sync.reports.indicators import (
    AppointmentCounts,
    CallFacts,
    CallGroup,
    DeliveryFacts,
    EscalationFacts,
    MessageFacts,
    call_indicators,
    combine_calls,
    group_calls,
    report,
)
from sync.store.calls_models import Call, CallEvent
from sync.store.db import is_postgres
from sync.store.models import Appointment, AuditEvent, Connection, Delivery, Escalation, Message

BOOKED = ("confirmed", "cancelled")  # written to the calendar at some point
MOVED_KINDS = ("appointment.updated", "appointment.moved_in_calendar")


def _qualified(tenant_column: Any, call_column: Any) -> Any:
    by_message = exists().where(Message.tenant_id == tenant_column,
                                Message.call_id == call_column, Message.status == "accepted")
    by_booking = exists().where(Appointment.tenant_id == tenant_column,
                                Appointment.call_id == call_column,
                                Appointment.status.in_(BOOKED))
    return or_(by_message, by_booking)


def call_facts(session: Session, tenant_id: str, zone: ZoneInfo, start: datetime,
               end: datetime) -> list[CallFacts]:
    rows = session.execute(
        select(Call.offered_at, Call.outcome, Call.wait_seconds, Call.talk_seconds,
               _qualified(Call.tenant_id, Call.call_id))
        .where(Call.tenant_id == tenant_id, Call.offered_at >= start, Call.offered_at < end)
    ).all()
    return [CallFacts(at.astimezone(zone), outcome, wait, talk, bool(q))
            for at, outcome, wait, talk, q in rows]


def call_groups(session: Session, tenant_id: str, zone: ZoneInfo, start: datetime,
                end: datetime) -> tuple[list[CallGroup], list[float]]:
    """The period's calls grouped by local day, hour and outcome, and the answered
    calls' times to answer. PostgreSQL groups in SQL (``AT TIME ZONE`` the tenant's
    zone) and sends back a few hundred rows and one float column; SQLite, which
    knows no zones, reads the calls and groups them here."""
    if not is_postgres(session.get_bind()):  # type: ignore[arg-type]
        return group_calls(call_facts(session, tenant_id, zone, start, end))
    inside = (Call.tenant_id == tenant_id, Call.offered_at >= start, Call.offered_at < end)
    local = func.timezone(zone.key, Call.offered_at)
    day, hour = func.date(local), cast(func.extract("hour", local), Integer)
    qualified = cast(_qualified(Call.tenant_id, Call.call_id), Integer)
    rows = session.execute(
        select(day, hour, Call.outcome, func.count(), func.coalesce(func.sum(Call.wait_seconds), 0),
               func.count(Call.wait_seconds), func.coalesce(func.sum(Call.talk_seconds), 0),
               func.count(Call.talk_seconds), func.coalesce(func.sum(qualified), 0))
        .where(*inside).group_by(day, hour, Call.outcome)
    ).all()
    groups = [CallGroup(d, int(h), o, int(n), float(ws), int(wn), float(ts), int(tn), int(q))
              for d, h, o, n, ws, wn, ts, tn, q in rows]
    waits = list(session.scalars(select(Call.wait_seconds).where(
        *inside, Call.outcome == "answered", Call.wait_seconds.is_not(None))))
    return groups, waits


def call_facts_from_events(session: Session, tenant_id: str, zone: ZoneInfo, start: datetime,
                           end: datetime, slack: timedelta = timedelta(days=1)) -> list[CallFacts]:
    """The same facts from the raw events (every event within ``slack`` of the
    period, folded per call by :func:`sync.calls.aggregate`)."""
    rows = session.execute(
        select(CallEvent.call_id, CallEvent.kind, CallEvent.at)
        .where(CallEvent.tenant_id == tenant_id, CallEvent.at >= start - slack,
               CallEvent.at < end + slack)
    ).all()
    by_call: dict[str, list[EventRow]] = {}
    for call_id, kind, at in rows:
        by_call.setdefault(call_id, []).append(EventRow(kind, at))
    folded = {call_id: aggregate(events) for call_id, events in by_call.items()}
    inside = [c for c, agg in folded.items() if start <= agg["offered_at"] < end]
    qualified: set[str] = set()
    postgres = is_postgres(session.get_bind())  # type: ignore[arg-type]
    step = (len(inside) or 1) if postgres else 500
    for chunk in range(0, len(inside), step):
        ids = inside[chunk:chunk + step]
        qualified.update(session.scalars(select(Message.call_id).where(
            Message.tenant_id == tenant_id, _among(Message.call_id, ids, postgres),
            Message.status == "accepted")))
        qualified.update(session.scalars(select(Appointment.call_id).where(
            Appointment.tenant_id == tenant_id, _among(Appointment.call_id, ids, postgres),
            Appointment.status.in_(BOOKED))))
    return [CallFacts(folded[c]["offered_at"].astimezone(zone), folded[c]["outcome"],
                      folded[c]["wait_seconds"], folded[c]["talk_seconds"], c in qualified)
            for c in inside]


def _among(column: Any, ids: list[str], postgres: bool) -> Any:
    """``column`` in ``ids``. PostgreSQL: ``= ANY(one array parameter)``; a list of IN
    parameters is prepared by psycopg after five runs and its generic plan was
    measured 30x slower (bench/report.py)."""
    if postgres:
        return column == any_(bindparam("ids", ids, type_=ARRAY(String)))
    return column.in_(ids)


def message_facts(session: Session, tenant_id: str, start: datetime,
                  end: datetime) -> list[MessageFacts]:
    rows = session.execute(select(Message.call_type, func.count()).where(
        Message.tenant_id == tenant_id, Message.created_at >= start, Message.created_at < end)
        .group_by(Message.call_type))
    return [MessageFacts(call_type, count) for call_type, count in rows]


def appointment_counts(session: Session, tenant_id: str, start: datetime,
                       end: datetime) -> AppointmentCounts:
    kinds = dict(session.execute(
        select(AuditEvent.kind, func.count())
        .where(AuditEvent.subject_type == "appointment", AuditEvent.tenant_id == tenant_id,
               AuditEvent.at >= start, AuditEvent.at < end,
               AuditEvent.kind.in_(("appointment.confirmed", "appointment.cancelled",
                                    *MOVED_KINDS)))
        .group_by(AuditEvent.kind)
    ).all())
    return AppointmentCounts(
        booked=kinds.get("appointment.confirmed", 0),
        moved=sum(kinds.get(k, 0) for k in MOVED_KINDS),
        cancelled=kinds.get("appointment.cancelled", 0),
    )


def delivery_facts(session: Session, tenant_id: str, start: datetime,
                   end: datetime) -> list[DeliveryFacts]:
    names = dict(session.execute(select(Connection.id, Connection.name)
                                 .where(Connection.tenant_id == tenant_id)).all())
    delivered = session.execute(
        select(Delivery.connection_id, Delivery.created_at, Delivery.delivered_at)
        .where(Delivery.tenant_id == tenant_id, Delivery.delivered_at >= start,
               Delivery.delivered_at < end)
    ).all()
    dead = session.execute(
        select(Delivery.connection_id).where(
            Delivery.tenant_id == tenant_id, Delivery.status == "dead",
            and_(Delivery.updated_at >= start, Delivery.updated_at < end))
    ).scalars()
    facts = [DeliveryFacts(names.get(c, c), "delivered", (done - made).total_seconds())
             for c, made, done in delivered]
    facts += [DeliveryFacts(names.get(c, c), "dead", None) for c in dead]
    return facts


def escalation_facts(session: Session, tenant_id: str, start: datetime,
                     end: datetime) -> list[EscalationFacts]:
    rows = session.execute(
        select(Escalation.outcome, Escalation.created_at, Escalation.acknowledged_at)
        .where(Escalation.tenant_id == tenant_id, Escalation.created_at >= start,
               Escalation.created_at < end)
    ).all()
    return [EscalationFacts(outcome, (ack - made).total_seconds() if ack else None)
            for outcome, made, ack in rows]


def tenant_report(session: Session, tenant_id: str, zone: ZoneInfo, start: datetime,
                  end: datetime, *, now: datetime, from_raw: bool = False) -> dict[str, Any]:
    """The report of ``tenant_id`` over [start, end); ``complete`` once ``now`` is past it."""
    if from_raw:
        calls = call_indicators(call_facts_from_events(session, tenant_id, zone, start, end))
    else:
        calls = combine_calls(*call_groups(session, tenant_id, zone, start, end))
    body = report(calls, message_facts(session, tenant_id, start, end),
                  appointment_counts(session, tenant_id, start, end),
                  delivery_facts(session, tenant_id, start, end),
                  escalation_facts(session, tenant_id, start, end))
    return {"tenant": tenant_id, "zone": zone.key, "from": as_utc_iso(start),
            "to": as_utc_iso(end), "complete": now >= end, **body}


def operator_report(session: Session, first: date, end: date, *, now: datetime,
                    tenants: list[str] | None = None) -> dict[str, Any]:
    """Every tenant (or ``tenants``) over the days [first, end), each in its own zone:
    the indicators over all their facts together, and each tenant's side by side."""
    from sync.reports.periods import local_range
    from sync.store.models import Tenant
    from sync.tenants import parsed_config

    query = select(Tenant).order_by(Tenant.id)
    if tenants is not None:
        query = query.where(Tenant.id.in_(tenants))
    all_groups: list[CallGroup] = []
    waits: list[float] = []
    messages: list[MessageFacts] = []
    deliveries: list[DeliveryFacts] = []
    escalations: list[EscalationFacts] = []
    booked = moved = cancelled = 0
    rows: list[dict[str, Any]] = []
    for tenant in session.scalars(query):
        zone = parsed_config(tenant).zone
        start, stop = local_range(first, end, zone)
        groups, tenant_waits = call_groups(session, tenant.id, zone, start, stop)
        facts = (combine_calls(groups, tenant_waits),
                 message_facts(session, tenant.id, start, stop),
                 appointment_counts(session, tenant.id, start, stop),
                 delivery_facts(session, tenant.id, start, stop),
                 escalation_facts(session, tenant.id, start, stop))
        all_groups += groups
        waits += tenant_waits
        messages += facts[1]
        booked, moved = booked + facts[2].booked, moved + facts[2].moved
        cancelled += facts[2].cancelled
        deliveries += facts[3]
        escalations += facts[4]
        rows.append({"tenant": tenant.id, "zone": zone.key, **report(*facts)})
    body = report(combine_calls(all_groups, waits), messages,
                  AppointmentCounts(booked, moved, cancelled), deliveries,
                  escalations)
    return {"from": first.isoformat(), "to": end.isoformat(),
            "complete": all(local_range(first, end, ZoneInfo(r["zone"]))[1] <= now
                            for r in rows),
            **body, "tenants": rows}
