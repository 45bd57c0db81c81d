"""Telling the people: when the office moves or cancels one of our appointments in
its calendar (:mod:`sync.calendar_sync`), Relais sends a notice per the tenant's
``notify_on_calendar_change: {to: [staff ids | on_call | addresses], channel:
email|sms, template: name, via: connection}`` — e.g. « Votre rendez-vous du
23/03/2027 de 15:00 avec Mme Martin a été annulé par le cabinet. »

The notices are deliveries written in the pull's transaction (transactional outbox),
one per recipient, through Relais's own email/SMS sender (:mod:`sync.senders`) unless
``via`` (or the tenant's only email/SMS connection) sends them. The text is rendered
when the change is seen (the appointment's time *before* the change is the one the
reader knows) and kept in ``Delivery.params["notice"]``; :mod:`sync.delivery` hands
it to the connector as ``payload["email"|"sms"]``.

``template`` renders with the usual roots: ``message.subject`` / ``message.body``
hold the built-in notice, ``caller`` the appointment's caller, ``appointment`` its
start/end/subject/status. A **sensitive** tenant never gets the caller's name, the
subject or a template: only the built-in notice without them. A tenant without
``notify_on_calendar_change`` gets no notice; a missing operator sender is logged
and skipped (the pull itself never fails for a notice).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from mappings.fieldmap import RenderContext, tenant_info
from mappings.recipients import RELAIS_SENDER, channel_connection, resolve_recipients
from mappings.rules import TemplateRenderError, render_template
from mappings.schema import TenantConfig
from sync.domain import as_utc_iso
from sync.senders import SenderMissing, ensure_sender
from sync.store.models import Appointment, Connection, Delivery, utcnow

log = logging.getLogger(__name__)

ACTION = "appointment.notice"
CALL_TYPE = "calendar_change"  # the synthetic call type of a notice's message root

_TEXTS = {
    "fr": {
        "cancelled": "Votre rendez-vous du {day} de {time}{who} a été annulé par le cabinet.",
        "moved": "Votre rendez-vous du {day} de {time}{who} a été déplacé par le cabinet "
        "au {new_day} à {new_time}.",
        "who": " avec {name}",
        "subject_cancelled": "Rendez-vous annulé ({tenant})",
        "subject_moved": "Rendez-vous déplacé ({tenant})",
        "day": "%d/%m/%Y",
    },
    "en": {
        "cancelled": "Your appointment on {day} at {time}{who} was cancelled by the office.",
        "moved": "Your appointment on {day} at {time}{who} was moved by the office "
        "to {new_day} at {new_time}.",
        "who": " with {name}",
        "subject_cancelled": "Appointment cancelled ({tenant})",
        "subject_moved": "Appointment moved ({tenant})",
        "day": "%Y-%m-%d",
    },
}


def _words(config: TenantConfig) -> dict[str, str]:
    return _TEXTS.get(str(config.language).split("-")[0], _TEXTS["en"])


def notice_text(
    config: TenantConfig,
    appointment: Appointment,
    kind: str,
    previous: tuple[datetime, datetime] | None = None,
) -> tuple[str, str]:
    """``(subject, text)`` of the built-in notice; no caller name when sensitive."""
    words = _words(config)
    member = config.staff_member(appointment.staff_id)
    zone = ZoneInfo((member.timezone if member else None) or config.timezone)
    was = (previous[0] if previous else appointment.start).astimezone(zone)
    now = appointment.start.astimezone(zone)
    name = str((appointment.caller or {}).get("name") or "").strip()
    who = words["who"].format(name=name) if name and not config.sensitive else ""
    text = words[kind].format(
        day=was.strftime(words["day"]), time=was.strftime("%H:%M"), who=who,
        new_day=now.strftime(words["day"]), new_time=now.strftime("%H:%M"),
    )  # fmt: skip
    return words[f"subject_{kind}"].format(tenant=config.name), text


def _render(
    config: TenantConfig, appointment: Appointment, subject: str, text: str
) -> tuple[str, str]:
    notice = config.notify_on_calendar_change
    if notice is None or notice.template is None or config.sensitive:
        return subject, text
    member = config.staff_member(appointment.staff_id)
    context = RenderContext(
        caller=dict(appointment.caller or {}),
        message={
            "id": appointment.id, "subject": subject, "body": text, "urgency": "normal",
            "call_type": CALL_TYPE, "call_type_label": subject, "taken_by": "calendar",
            "taken_at": utcnow(), "callback_requested": False, "intake": {},
        },
        staff={"id": member.id, "name": member.name, "email": member.email} if member else None,
        appointment={
            "start": appointment.start, "end": appointment.end,
            "subject": appointment.subject, "notes": appointment.notes,
            "status": appointment.status,
        },
        tenant=tenant_info(config),
    )  # fmt: skip
    try:
        return render_template(config, notice.template, context)
    except (TemplateRenderError, KeyError) as exc:  # the built-in notice still goes out
        log.warning("calendar notice template %r failed: %s", notice.template, exc)
        return subject, text


def write_calendar_notices(
    session: Session,
    config: TenantConfig,
    appointment: Appointment,
    kind: str,
    previous: tuple[datetime, datetime] | None = None,
) -> list[Delivery]:
    """The notice deliveries of one appointment moved/cancelled in the calendar
    (``kind``: ``moved`` | ``cancelled``), added to ``session``; [] when the tenant
    asks for none."""
    notice = config.notify_on_calendar_change
    if notice is None:
        return []
    channel = notice.channel
    recipients, notes = resolve_recipients(config, notice.to, channel, utcnow())
    for note in notes:
        log.info("calendar notice of %s: %s", appointment.id, note)
    if not recipients:
        return []
    name, _ = channel_connection(config, channel, notice.via)
    connection: Connection | None
    try:
        if name == RELAIS_SENDER:
            connection = ensure_sender(session, appointment.tenant_id, channel)
        else:
            connection = session.scalar(
                select(Connection).where(
                    Connection.tenant_id == appointment.tenant_id, Connection.name == name
                )
            )
    except SenderMissing as exc:
        log.warning("calendar notice of %s not sent: %s", appointment.id, exc)
        return []
    if connection is None:
        log.warning("calendar notice of %s not sent: no connection %r", appointment.id, name)
        return []
    subject, text = _render(config, appointment, *notice_text(config, appointment, kind, previous))
    out: list[Delivery] = []
    for recipient in recipients:
        params: dict[str, Any] = {
            "kind": channel,
            "channel": channel,
            "to": recipient.address,
            "change": kind,
            "redact": config.sensitive,
            "appointment": {"id": appointment.id, "start": as_utc_iso(appointment.start),
                            "status": appointment.status},  # fmt: skip
            "notice": {"subject": subject, "text": text},
        }
        if recipient.staff_id is not None:
            params["staff_id"] = recipient.staff_id
        out.append(
            Delivery.new(
                tenant_id=appointment.tenant_id,
                appointment_id=appointment.id,
                connection_id=connection.id,
                rule="notify_on_calendar_change",
                action=ACTION,
                params=params,
            )
        )
    session.add_all(out)
    return out


def notice_payload(tenant_id: str, tenant_name: str, delivery: Delivery) -> dict[str, Any]:
    """What the email / SMS connector receives for a notice delivery."""
    from sync.payloads import _section

    params = delivery.params or {}
    notice = params.get("notice") or {}
    channel = str(params.get("channel") or params.get("kind") or "email")
    return {
        "event": delivery.action,
        "delivery_id": delivery.id,
        "tenant": {"id": tenant_id, "name": tenant_name},
        "rule": delivery.rule,
        **_section(channel, str(params.get("to") or ""), str(notice.get("subject") or ""),
                   str(notice.get("text") or "")),  # fmt: skip
    }
