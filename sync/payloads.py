"""What a destination receives for each action: built from stored rows.

Built at delivery time from the stored message, so a retry sends exactly what
was accepted.
"""

from __future__ import annotations

from typing import Any

from relais.domain import as_utc_iso
from relais.models import Delivery, Message, Tenant


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
