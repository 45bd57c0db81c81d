"""What a destination receives for each action: built from stored rows.

Built at delivery time from the stored message, so a retry sends exactly what
was accepted.
"""

from __future__ import annotations

from typing import Any

from sync.domain import as_utc_iso
from sync.store.crypto import unseal_text
from sync.store.models import Delivery, Message, Tenant


def message_payload(
    tenant: Tenant, message: Message, delivery: Delivery, labels: dict[str, Any]
) -> dict[str, Any]:
    return {
        "event": delivery.action,
        "delivery_id": delivery.id,
        "tenant": {"id": tenant.id, "name": tenant.name, **labels.get("tenant", {})},
        "rule": delivery.rule,
        "message": {
            "id": message.id,
            "call_type": message.call_type,
            "call_type_label": labels.get("call_type_label"),
            "urgency": message.urgency,
            "caller": message.caller,
            "subject": message.subject,
            "body": message.body,
            "taken_by": message.taken_by,
            "taken_at": as_utc_iso(message.taken_at),
            "staff": labels.get("staff"),
            "callback_requested": message.callback_requested,
            "intake": message.intake,
            "received_at": as_utc_iso(message.created_at),
        },
    }


def notice_form(config: Any, tenant: Tenant, message: Message,
                payload: dict[str, Any]) -> dict[str, Any]:
    """The message payload of a connection whose ``content`` is ``notice``
    (``params.redact`` on a webhook or CRM delivery): the same document, but
    ``subject``/``body`` are the built-in notice and its signed link (as Relais's own
    email/SMS get), ``intake`` is empty and the caller keeps only the key a receiver
    files the call under (phone, else email): no name, company or other field."""
    from sync.signed_links import message_link

    words = texts(config)
    link = message_link(tenant.id, message.id, sensitive=True)
    msg = dict(payload["message"])
    caller = msg.get("caller") or {}
    key = ({"phone": caller["phone"]} if caller.get("phone")
           else {"email": caller["email"]} if caller.get("email") else {})
    msg.update(caller=key, intake={}, content="notice", link=link,
               subject=words["notice_subject"].format(tenant=tenant.name),
               body=words["notice"].format(urgency=message.urgency, link=link))
    return {**payload, "message": msg}


def appointment_payload(
    tenant: Tenant, delivery: Delivery, labels: dict[str, Any]
) -> dict[str, Any]:
    """``appointment.created|updated|cancelled``: the appointment as it was at that
    change (snapshot in ``Delivery.params``, written by sync.booking), the caller
    and the staff member."""
    snapshot = delivery.params or {}
    return {
        "event": delivery.action,
        "delivery_id": delivery.id,
        "tenant": {"id": tenant.id, "name": tenant.name, **labels.get("tenant", {})},
        "rule": delivery.rule,
        "appointment": dict(snapshot.get("appointment") or {}),
        "caller": dict(snapshot.get("caller") or {}),
        "staff": labels.get("staff"),
    }


# ----------------------------------------------------------------- email and SMS
#
# Email and SMS deliveries carry only their channel section (never the message
# record itself): ``payload["email"]`` / ``payload["sms"]`` as the connectors'
# contracts say. In sensitive mode (``params.redact``) the section holds a notice
# and a signed link, never the subject, body or caller.

_TEXTS = {
    "fr": {
        "notice_subject": "Nouveau message ({tenant})",
        "notice": "Nouveau message pour vous (urgence : {urgency}).\nConsultez-le : {link}",
        "ack": "Pour confirmer la prise en charge : {link}",
        "ack_sms": "Répondez OK{ref} pour confirmer la prise en charge, ou : {link}",
        "dead_end": "Personne n'a confirmé la prise en charge (escalade {ladder}).",
        "digest_subject": "Résumé : {count} message(s) ({tenant})",
        "digest_item": "message (urgence : {urgency}) : {link}",
    },
    "en": {
        "notice_subject": "New message ({tenant})",
        "notice": "New message for you (urgency: {urgency}).\nRead it here: {link}",
        "ack": "To acknowledge: {link}",
        "ack_sms": "Reply OK{ref} to acknowledge, or: {link}",
        "dead_end": "Nobody acknowledged (escalation {ladder}).",
        "digest_subject": "Digest: {count} message(s) ({tenant})",
        "digest_item": "message (urgency: {urgency}): {link}",
    },
}


def texts(config: Any) -> dict[str, str]:
    return _TEXTS.get(str(config.language).split("-")[0], _TEXTS["en"])


def render_context(config: Any, message: Message, staff: dict[str, Any] | None) -> Any:
    from mappings.fieldmap import RenderContext, tenant_info

    call_type = config.call_type(message.call_type)
    return RenderContext(
        caller=dict(message.caller or {}),
        message={
            "id": message.id,
            "subject": message.subject,
            "body": message.body,
            "urgency": message.urgency,
            "call_type": message.call_type,
            "call_type_label": call_type.label if call_type else message.call_type,
            "taken_by": message.taken_by,
            "taken_at": message.taken_at,
            "callback_requested": message.callback_requested,
            "intake": dict(message.intake or {}),
        },
        staff=staff,
        tenant=tenant_info(config),
    )


def _html(text: str) -> str:
    import html
    import re

    escaped = html.escape(text)
    linked = re.sub(r"(https?://[^\s<]+)", r'<a href="\1">\1</a>', escaped)
    return "<html><body><p>" + linked.replace("\n", "<br>\n") + "</p></body></html>"


def _section(channel: str, to: str, subject: str, text: str) -> dict[str, Any]:
    if channel == "email":
        return {"email": {"to": [to], "subject": subject, "text": text, "html": _html(text)}}
    return {"sms": {"to": to, "text": text}}


def channel_payload(
    config: Any, tenant: Tenant, message: Message, delivery: Delivery,
    staff: dict[str, Any] | None,
) -> dict[str, Any]:
    """``payload["email"|"sms"]`` of an email / SMS / escalation delivery (renders the
    template; raises ``TemplateRenderError`` when it fails on this message)."""
    from mappings.rules import render_template
    from sync.privacy.links import staff_for
    from sync.signed_links import ack_link, message_link

    params = delivery.params or {}
    channel = str(params.get("channel") or params.get("kind"))
    to = str(params.get("to") or "")
    words = texts(config)
    if "reply" in params:  # the answer to an "OK" (sync.escalation): refs and ladder names
        return {"event": delivery.action, "delivery_id": delivery.id,
                "tenant": {"id": tenant.id, "name": tenant.name}, "rule": delivery.rule,
                **_section(channel, to, "", str(unseal_text(params["reply"])))}
    if params.get("redact"):
        link = message_link(tenant.id, message.id, sensitive=True,
                            recipient=staff_for(config, to))
        subject = words["notice_subject"].format(tenant=tenant.name)
        text = words["notice"].format(urgency=message.urgency, link=link)
    else:
        subject, text = render_template(config, params.get("template"),
                                        render_context(config, message, staff))
    if params.get("kind") == "escalation":
        if params.get("dead_end"):
            text = words["dead_end"].format(ladder=params.get("ladder")) + "\n" + text
        else:
            ack = ack_link(tenant.id, str(params.get("escalation_id")), to)
            if channel == "sms":  # first: a long SMS is cut at the end, never the link
                ref = params.get("ref")  # the ladder's reference: "Répondez OK 47"
                text = words["ack_sms"].format(link=ack, ref=f" {ref}" if ref else "") + (
                    "\n" + text)
            else:
                text = text + "\n\n" + words["ack"].format(link=ack)
    return {
        "event": delivery.action,
        "delivery_id": delivery.id,
        "tenant": {"id": tenant.id, "name": tenant.name},
        "rule": delivery.rule,
        **_section(channel, to, subject, text),
    }


def digest_payload(
    config: Any, tenant: Tenant, delivery: Delivery, items: list[tuple[Delivery, Message]],
    staff_of: Any,
) -> dict[str, Any]:
    """One summary listing the bucket's messages (each redacted as its own delivery says)."""
    from mappings.rules import render_template
    from mappings.wallclock import local
    from sync.privacy.links import staff_for
    from sync.signed_links import message_link

    params = delivery.params or {}
    channel = str(params.get("channel") or "email")
    words = texts(config)
    lines = []
    for item, message in items:
        when = local(message.taken_at, config.zone).strftime("%H:%M")
        if (item.params or {}).get("redact"):
            link = message_link(tenant.id, message.id, sensitive=True,
                                recipient=staff_for(config, str(params.get("to") or "")))
            line = words["digest_item"].format(urgency=message.urgency, link=link)
            lines.append(f"- {when} {line}")
            continue
        subject, body = render_template(config, (item.params or {}).get("template"),
                                        render_context(config, message, staff_of(message)))
        if channel == "email":
            indented = "\n".join("  " + row for row in body.splitlines())
            lines.append(f"- {when} {subject}\n{indented}")
        else:
            lines.append(f"- {when} {subject}")
    subject = words["digest_subject"].format(count=len(items), tenant=tenant.name)
    text = subject + "\n" + "\n".join(lines)
    return {
        "event": delivery.action,
        "delivery_id": delivery.id,
        "tenant": {"id": tenant.id, "name": tenant.name},
        "rule": delivery.rule,
        "digest": {"messages": [m.id for _, m in items]},
        **_section(channel, str(params.get("to") or ""), subject, text),
    }
