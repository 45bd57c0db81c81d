"""Retention: what a tenant's ``retention:`` expired is purged or redacted, in
batches (one transaction each), by the beat job (``worker.py``) or
``relais privacy run``.

Per tenant, at the hub's now (``sync.clock``):

- ``bodies``: messages older than that lose subject, body and intake answers
  (``redaction = content``);
- ``messages``: messages older than that lose the caller too (``anonymised``),
  with the payloads and errors of their deliveries; appointments that ended
  before it lose caller, subject and notes. Rows stay, so reports still count
  calls, urgencies and outcomes, and every foreign key still points somewhere;
- ``call_events``: delivery histories (``audit_events``) older than that are deleted;
- one-time codes of signed links are deleted once expired;
- ``audit``: the oldest access log entries are deleted, a prefix of the chain
  only, and the chain's base moves to the last one deleted, so
  :func:`sync.privacy.audit.verify` still holds.

A message with a delivery still ``pending`` or ``in_flight``, or with a running
escalation ladder, is never touched: the next run takes it once it is done.
Each run is recorded in ``retention_runs`` (``relais privacy status``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.orm import Session

from sync.domain import as_utc_iso
from sync.store.db import session_scope
from sync.store.models import Appointment, AuditEvent, Delivery, Escalation, Message, Tenant, utcnow
from sync.store.privacy_models import AccessLogEntry, AccessLogHead, LinkCode, RetentionRun
from sync.tenants import parsed_config

log = logging.getLogger("relais.privacy")
BATCH = 500
BUSY = ("pending", "in_flight")


@dataclass
class Outcome:
    tenant_id: str
    counts: dict[str, int] = field(default_factory=dict)
    cutoffs: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def _settled(message_id: Any) -> Any:
    """No delivery of the message still to send, no ladder still running."""
    return ~exists().where(Delivery.message_id == message_id, Delivery.status.in_(BUSY)) & \
        ~exists().where(Escalation.message_id == message_id, Escalation.finished.is_(False))


def _batch(session: Session, query: Any) -> list[str]:
    return list(session.scalars(query.limit(BATCH)))


def _redact_bodies(tenant_id: str, cutoff: datetime) -> int:
    done = 0
    while True:
        with session_scope() as session:
            ids = _batch(session, select(Message.id).where(
                Message.tenant_id == tenant_id, Message.created_at < cutoff,
                Message.redaction.is_(None), _settled(Message.id)).order_by(Message.created_at))
            if not ids:
                return done
            session.execute(update(Message).where(Message.id.in_(ids)).values(
                subject="", body="", intake={}, redaction="content"))
            done += len(ids)


def _anonymise_messages(tenant_id: str, cutoff: datetime) -> tuple[int, int]:
    messages = deliveries = 0
    while True:
        with session_scope() as session:
            ids = _batch(session, select(Message.id).where(
                Message.tenant_id == tenant_id, Message.created_at < cutoff,
                or_(Message.redaction.is_(None), Message.redaction == "content"),
                _settled(Message.id)).order_by(Message.created_at))
            if not ids:
                return messages, deliveries
            session.execute(update(Message).where(Message.id.in_(ids)).values(
                caller={}, subject="", body="", intake={}, redaction="anonymised"))
            result = session.execute(update(Delivery).where(
                Delivery.message_id.in_(ids), Delivery.status.not_in(BUSY)).values(
                params={"redacted": True}, last_error=None))
            messages += len(ids)
            deliveries += result.rowcount or 0  # type: ignore[attr-defined]


def _anonymise_appointments(tenant_id: str, cutoff: datetime) -> int:
    done = 0
    busy = exists().where(Delivery.appointment_id == Appointment.id, Delivery.status.in_(BUSY))
    while True:
        with session_scope() as session:
            ids = _batch(session, select(Appointment.id).where(
                Appointment.tenant_id == tenant_id, Appointment.end < cutoff,
                Appointment.redaction.is_(None), ~busy).order_by(Appointment.end))
            if not ids:
                return done
            session.execute(update(Appointment).where(Appointment.id.in_(ids)).values(
                caller={}, subject="", notes="", last_error=None, redaction="anonymised"))
            session.execute(update(Delivery).where(
                Delivery.appointment_id.in_(ids), Delivery.status.not_in(BUSY)).values(
                params={"redacted": True}, last_error=None))
            done += len(ids)


def _purge_call_events(tenant_id: str, cutoff: datetime) -> int:
    done = 0
    while True:
        with session_scope() as session:
            busy = exists().where(Delivery.id == AuditEvent.subject_id,
                                  Delivery.status.in_(BUSY))
            ids = list(session.scalars(select(AuditEvent.id).where(
                AuditEvent.tenant_id == tenant_id, AuditEvent.at < cutoff, ~busy).limit(BATCH)))
            if not ids:
                return done
            session.execute(delete(AuditEvent).where(AuditEvent.id.in_(ids)))
            done += len(ids)


def _purge_access_log(tenant_id: str, cutoff: datetime) -> int:
    """Delete the chain's oldest entries (a prefix) and move its base past them."""
    done = 0
    while True:
        with session_scope() as session:
            head = session.get(AccessLogHead, tenant_id, with_for_update=True)
            if head is None:
                return done
            rows = list(session.scalars(select(AccessLogEntry).where(
                AccessLogEntry.tenant_id == tenant_id, AccessLogEntry.seq > head.base_seq)
                .order_by(AccessLogEntry.seq).limit(BATCH)))
            expired = []
            for entry in rows:
                if entry.at >= cutoff:
                    break
                expired.append(entry)
            if not expired:
                return done
            session.execute(delete(AccessLogEntry).where(
                AccessLogEntry.id.in_([e.id for e in expired])))
            head.base_seq, head.base_hash = expired[-1].seq, expired[-1].hash
            done += len(expired)
            if len(expired) < len(rows):
                return done


def _purge_link_codes(tenant_id: str, now: datetime) -> int:
    """One-time codes of signed links that expired (they open nothing any more)."""
    with session_scope() as session:
        result = session.execute(delete(LinkCode).where(
            LinkCode.tenant_id == tenant_id, LinkCode.expires_at < now))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def run_tenant(tenant_id: str) -> Outcome:
    """One retention run for one tenant; its outcome is stored whatever happens."""
    started = utcnow()
    outcome = Outcome(tenant_id)
    with session_scope(readonly=True) as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            raise LookupError(f"no tenant {tenant_id!r}")
        keep = parsed_config(tenant).retention
    cut = {name: started - getattr(keep, name)
           for name in ("bodies", "messages", "call_events", "audit")}
    outcome.cutoffs = {k: as_utc_iso(v) for k, v in cut.items()}
    try:
        outcome.counts["bodies_redacted"] = _redact_bodies(tenant_id, cut["bodies"])
        messages, deliveries = _anonymise_messages(tenant_id, cut["messages"])
        outcome.counts["messages_anonymised"] = messages
        outcome.counts["delivery_payloads_redacted"] = deliveries
        outcome.counts["appointments_anonymised"] = _anonymise_appointments(
            tenant_id, cut["messages"])
        outcome.counts["call_events_deleted"] = _purge_call_events(tenant_id, cut["call_events"])
        outcome.counts["access_log_deleted"] = _purge_access_log(tenant_id, cut["audit"])
        outcome.counts["link_codes_deleted"] = _purge_link_codes(tenant_id, started)
    except Exception as exc:
        outcome.error = f"{type(exc).__name__}"  # never the message: SQL parameters stay out
        log.exception("retention run of tenant %s failed", tenant_id)
    with session_scope() as session:
        run = session.get(RetentionRun, tenant_id) or RetentionRun(tenant_id=tenant_id)
        run.started_at, run.finished_at = started, utcnow()
        run.counts, run.cutoffs, run.error = outcome.counts, outcome.cutoffs, outcome.error
        session.add(run)
    return outcome


def run_all() -> list[Outcome]:
    """A retention run of every tenant (the beat job)."""
    with session_scope(readonly=True) as session:
        tenants = list(session.scalars(select(Tenant.id).order_by(Tenant.id)))
    outcomes = [run_tenant(t) for t in tenants]
    for o in outcomes:
        if any(o.counts.values()):
            log.info("retention %s: %s", o.tenant_id,
                     ", ".join(f"{k} {v}" for k, v in o.counts.items() if v))
    return outcomes


def status(session: Session, tenant_id: str | None = None) -> list[dict[str, Any]]:
    """Each tenant's retention periods and last run, for ``relais privacy status``."""
    query = select(Tenant).order_by(Tenant.id)
    if tenant_id is not None:
        query = query.where(Tenant.id == tenant_id)
    out = []
    for tenant in session.scalars(query):
        keep = parsed_config(tenant).retention
        run = session.get(RetentionRun, tenant.id)
        out.append({
            "tenant": tenant.id,
            "retention": {k: f"{getattr(keep, k).days}d"
                          for k in ("messages", "bodies", "call_events", "audit")},
            "last_run_started_at": as_utc_iso(run.started_at) if run else None,
            "last_run_finished_at": as_utc_iso(run.finished_at)
            if run and run.finished_at else None,
            "last_run": run.counts if run else {},
            "last_error": run.error if run else None,
        })
    return out
