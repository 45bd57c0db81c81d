"""Scheduled reports: each tenant's ``reports:`` sent once per period, by email.

Invariants:
- the period due at ``now`` is the last complete one whose send time has passed
  (weekly: the ISO week before, sent on ``weekly``'s day and time; monthly: the
  month before, sent on the 1st at ``weekly``'s time, else 08:00), all in the
  tenant's zone; only the latest one is sent (no backfill of older periods);
- exactly once per (tenant, kind, period, recipient), even across restarts or
  two beats at once: each is a delivery whose idempotency key names them
  (``relais-report-<tenant>-<kind>-<first day>-<n>``), unique in the store; the
  outbox then delivers it like any email (retries, dead letters, replay);
- the report is computed and rendered when the delivery is written (the page
  kept in its params): a resend shows the same figures;
- its PDF (``sync.reports.pdf``) is rendered then too, once per period for all
  its recipients, and its bytes kept in the params (base64): a retry, a replay
  or another worker after a crash sends exactly the same attachment, and no
  delivery waits on a renderer while it holds its claim. Computing and
  rendering happen in a read-only transaction, the rows are written in a short
  one (on SQLite no writer waits on a renderer either). Without WeasyPrint the
  report goes without the PDF (logged with the tenant and period only).
"""

from __future__ import annotations

import base64
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from mappings.schema import TenantConfig
from sync.reports.load import tenant_report
from sync.reports.pdf import PdfUnavailable, report_pdf
from sync.reports.periods import local_range, period
from sync.reports.render import html_report, report_title
from sync.senders import SenderMissing, ensure_sender, sender_config
from sync.store.models import Delivery, Tenant, new_id

log = logging.getLogger(__name__)

ACTION = "report.scheduled"
DEFAULT_CLOCK = time(8, 0)


def due_periods(config: TenantConfig, now: datetime) -> list[tuple[str, date, date]]:
    """``(kind, first day, end day)`` of each report due at ``now`` (see the invariants)."""
    schedule = config.reports
    if schedule is None:
        return []
    zone = config.zone
    today = now.astimezone(zone).date()
    out: list[tuple[str, date, date]] = []
    if schedule.weekly is not None:
        monday = today - timedelta(days=today.weekday())
        send_day = monday + timedelta(days=schedule.weekly.day)
        if _at(send_day, schedule.weekly.clock, zone) > now:
            send_day -= timedelta(days=7)  # this week's send time is still ahead
        week_start = send_day - timedelta(days=send_day.weekday())
        out.append(("weekly", *period("week", week_start - timedelta(days=7))))
    if schedule.monthly:
        clock = schedule.weekly.clock if schedule.weekly is not None else DEFAULT_CLOCK
        first = today.replace(day=1)
        if _at(first, clock, zone) > now:
            first = (first - timedelta(days=1)).replace(day=1)
        out.append(("monthly", *period("month", first - timedelta(days=1))))
    return out


def _at(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """``day`` at ``clock`` on the tenant's wall clock (fold 0 in a repeated hour)."""
    return datetime.combine(day, clock, tzinfo=zone)


@dataclass(frozen=True)
class DueReport:
    """One period's report, computed and rendered, for the recipients not yet written."""

    kind: str
    first: date
    end: date
    recipients: list[tuple[str, str]]  # (idempotency key, address)
    notice: dict[str, Any]


def prepare_due_reports(session: Session, tenant_id: str, config: TenantConfig,
                        now: datetime) -> list[DueReport]:
    """The reports due now and not yet written, computed and rendered (page and PDF).

    Reads only: it runs in a read-only transaction, so rendering (a second or two the
    first time) never holds the store's write lock. Raises :class:`SenderMissing` when
    one is due and Relais's email sender is not configured.
    """
    out: list[DueReport] = []
    for kind, first, end in due_periods(config, now):
        assert config.reports is not None
        keys = [f"relais-report-{tenant_id}-{kind}-{first.isoformat()}-{n}"
                for n in range(len(config.reports.to))]
        known = set(session.scalars(select(Delivery.idempotency_key)
                                    .where(Delivery.idempotency_key.in_(keys))))
        missing = [(k, to) for k, to in zip(keys, config.reports.to, strict=True)
                   if k not in known]
        if not missing:
            continue
        sender_config("email")  # SenderMissing before any work
        start, stop = local_range(first, end, config.zone)
        body = tenant_report(session, tenant_id, config.zone, start, stop, now=now)
        title = report_title(config.name, kind, first, end - timedelta(days=1))
        page = html_report(body, title)
        notice: dict[str, Any] = {"subject": title, "text": _text(title, body), "html": page}
        attachment = _pdf_attachment(tenant_id, kind, first, page)
        if attachment is not None:
            notice["attachments"] = [attachment]
        out.append(DueReport(kind, first, end, missing, notice))
    return out


def write_due_reports(session: Session, tenant_id: str, due: list[DueReport],
                      now: datetime) -> list[Delivery]:
    """The deliveries of ``due`` (from :func:`prepare_due_reports`), added to ``session``;
    a key written meanwhile by another run is skipped (or fails the insert, unique)."""
    if not due:
        return []
    connection = ensure_sender(session, tenant_id, "email")
    keys = [key for report in due for key, _ in report.recipients]
    known = set(session.scalars(select(Delivery.idempotency_key)
                                .where(Delivery.idempotency_key.in_(keys))))
    out: list[Delivery] = []
    for report in due:
        for key, to in report.recipients:
            if key in known:
                continue
            row = Delivery(id=new_id("dlv"), idempotency_key=key, tenant_id=tenant_id,
                           connection_id=connection.id, rule=f"reports.{report.kind}",
                           action=ACTION,
                           params={"kind": "email", "channel": "email", "to": to,
                                   "period": {"kind": report.kind,
                                              "from": report.first.isoformat(),
                                              "to": report.end.isoformat()},
                                   "notice": report.notice},
                           next_attempt_at=now)
            session.add(row)
            out.append(row)
    return out


def pdf_filename(tenant_id: str, kind: str, first: date) -> str:
    """``rapport-<tenant>-semaine-2026-10-26.pdf`` / ``rapport-<tenant>-mois-2026-10.pdf``."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", tenant_id).strip("-") or "tenant"
    when = f"semaine-{first.isoformat()}" if kind == "weekly" else f"mois-{first:%Y-%m}"
    return f"rapport-{safe}-{when}.pdf"


def _pdf_attachment(tenant_id: str, kind: str, first: date, page: str
                    ) -> dict[str, str] | None:
    """The report's PDF as an email attachment (None: no renderer on this machine)."""
    try:
        pdf = report_pdf(page)
    except PdfUnavailable as exc:
        log.warning("%s report of %s for %s sent without its PDF: %s",
                    kind, tenant_id, first.isoformat(), exc)
        return None
    return {"filename": pdf_filename(tenant_id, kind, first), "content_type": "application/pdf",
            "data_base64": base64.b64encode(pdf).decode("ascii")}


def _text(title: str, body: dict[str, Any]) -> str:
    calls = body["calls"]

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:.1f} %"

    mean = calls["time_to_answer_seconds"]["mean"]
    return "\n".join([
        title,
        f"Appels présentés : {calls['offered']}",
        f"Taux de décroché : {pct(calls['answer_rate'])}",
        f"Temps moyen de réponse : {'-' if mean is None else f'{mean:.1f} s'}",
        f"Taux de qualification : {pct(calls['qualification_rate'])}",
        f"Messages : {body['messages']['total']}",
        f"Rendez-vous pris : {body['appointments']['booked']}",
    ])


def report_payload(tenant_id: str, tenant_name: str, delivery: Delivery) -> dict[str, Any]:
    """What the email connector receives: the text, the HTML page with its charts and
    the PDF attachment, all as written with the delivery."""
    params = delivery.params or {}
    notice = params.get("notice") or {}
    email: dict[str, Any] = {
        "to": [str(params.get("to") or "")], "subject": str(notice.get("subject")),
        "text": str(notice.get("text")), "html": notice.get("html")}
    if notice.get("attachments"):
        email["attachments"] = list(notice["attachments"])
    return {
        "event": delivery.action, "delivery_id": delivery.id,
        "tenant": {"id": tenant_id, "name": tenant_name}, "rule": delivery.rule,
        "email": email,
    }


def run_due(now: datetime) -> list[str]:
    """Write every tenant's due reports; the connections to wake. Per tenant, the
    reports are computed and rendered in a read-only transaction, then written in a
    short one. Two runs at once: the loser's insert fails on the unique key and
    rolls back."""
    from sqlalchemy.exc import IntegrityError

    from sync.store.db import session_scope
    from sync.tenants import parsed_config

    with session_scope(readonly=True) as session:
        tenant_ids = list(session.scalars(select(Tenant.id).order_by(Tenant.id)))
    woken: set[str] = set()
    for tenant_id in tenant_ids:
        try:
            with session_scope(readonly=True) as session:
                tenant = session.get(Tenant, tenant_id)
                config = parsed_config(tenant) if tenant is not None else None
                if config is None or config.reports is None:
                    continue
                due = prepare_due_reports(session, tenant_id, config, now)
        except SenderMissing as exc:
            log.warning("report of %s not sent: %s", tenant_id, exc)
            continue
        if not due:
            continue
        try:
            with session_scope() as session:
                woken.update(d.connection_id
                             for d in write_due_reports(session, tenant_id, due, now))
        except IntegrityError:
            log.info("reports of %s written by another run meanwhile", tenant_id)
    return sorted(woken)
