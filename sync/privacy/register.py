"""The record of processing activities (GDPR article 30) of one tenant, generated
from its configuration: who is the controller and the processor, the purposes
(its call types, bookings, escalations), the categories of persons and data
(with the questions its secretaries ask), the recipients (its connections and
Relais's own senders), the retention periods and the security measures in place.
A pure function of the configuration: the same YAML gives the same record."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from connectors import catalog
from mappings.schema import content_of


def _recipient(provider: str) -> str:
    """The provider in words, from the catalogue (connectors/providers.yaml)."""
    try:
        return catalog.provider(provider).recipient or provider
    except LookupError:
        return provider


def _host(connection: Any) -> str | None:
    url = getattr(connection, "url", None)
    return urlsplit(str(url)).hostname if url else None


def _content(connection: Any, config: Any, sensitive_types: list[str]) -> dict[str, str]:
    """What of a message a webhook or CRM connection receives (``content``)."""
    if "content" not in getattr(type(connection), "model_fields", {}):
        return {}  # calendars, email, SMS: no content permission to declare
    kinds = {content_of(connection, config.is_sensitive(c.id)) for c in config.call_types}
    if len(kinds) == 1:
        return {"content": kinds.pop()}
    return {"content": "notice for " + ", ".join(sensitive_types) + "; full otherwise"}


def record(config: Any) -> dict[str, Any]:
    """The article 30 record of ``config`` (a ``mappings.TenantConfig``) as JSON data."""
    sensitive_types = [c.id for c in config.call_types if config.is_sensitive(c.id)]
    intake = [{"call_type": c.id, "question": f.label, "field": f.name}
              for c in config.call_types for f in c.intake_fields]
    purposes = [f"take and pass on the calls of {config.name}'s callers: "
                + ", ".join(c.label for c in config.call_types)]
    if config.appointment_types:
        purposes.append("book appointments in staff calendars: "
                        + ", ".join(t.label for t in config.appointment_types))
    if config.escalations:
        purposes.append("reach the person on call for urgent calls (escalation ladders: "
                        + ", ".join(sorted(config.escalations)) + ")")
    recipients = [{"connection": name, "recipient": _recipient(c.provider),
                   "role": c.role, "host": _host(c), **_content(c, config, sensitive_types)}
                  for name, c in sorted(config.connections.items())]
    data = ["caller identity: name, phone number, email, company",
            "what the call is about: subject, message, callback requested, urgency",
            "when and by whom the call was taken"]
    if intake:
        data.append("answers to the call types' questions (see intake)")
    if config.appointment_types:
        data.append("appointments: time, staff member, caller, notes")
    keep = config.retention
    return {
        "tenant": config.id,
        "controller": config.name,
        "processor": "the telephone answering service operating Relais",
        "purposes": purposes,
        "persons": ["callers", f"staff members ({len(config.staff)})"],
        "data": data,
        "intake": intake,
        "special_categories": {
            "possible": bool(sensitive_types),
            "call_types": sensitive_types,
            "note": ("calls of these types may reveal health or legal matters (article 9): "
                     "their content is encrypted at rest and notices carry a link, not "
                     "the content") if sensitive_types else "none declared",
        },
        "recipients": recipients,
        "retention": {
            "message content (subject, body, answers)": f"{keep.bodies.days} days",
            "messages with the caller's identity": f"{keep.messages.days} days, then "
                                                   "anonymised",
            "delivery histories": f"{keep.call_events.days} days",
            "access log": f"{keep.audit.days} days",
        },
        "security": [
            "credentials and sensitive message content encrypted with rotating keys",
            "access log of every read, export and erasure, hash-chained (relais audit verify)",
            "API keys per tenant and role, stored hashed",
            "signed links to messages: expiring, revocable per message"
            + (", one-time code by SMS" if config.link_second_factor == "sms" else ""),
            "retention applied hourly (relais privacy status)",
            *(["an erasure is also sent to the CRM (HubSpot GDPR delete, Salesforce delete)"]
              if config.privacy.erase_in_crm else []),
        ],
    }


def as_text(doc: dict[str, Any]) -> str:
    """The record as plain text for a DPO's file."""
    lines = [f"Record of processing — {doc['controller']} (tenant {doc['tenant']})",
             f"Controller: {doc['controller']}", f"Processor: {doc['processor']}", "",
             "Purposes:", *(f"  - {p}" for p in doc["purposes"]), "",
             "Persons concerned: " + ", ".join(doc["persons"]), "",
             "Data:", *(f"  - {d}" for d in doc["data"])]
    lines += [f"      {i['call_type']}: {i['question']}" for i in doc["intake"]]
    special = doc["special_categories"]
    lines += ["", "Special categories: " + special["note"]]
    lines += ["", "Recipients:"] + [
        f"  - {r['connection']}: {r['recipient']} ({r['role']})"
        + (f", {r['host']}" if r["host"] else "")
        + (f", content {r['content']}" if r.get("content") else "") for r in doc["recipients"]]
    lines += ["", "Retention:"] + [f"  - {k}: {v}" for k, v in doc["retention"].items()]
    lines += ["", "Security measures:"] + [f"  - {m}" for m in doc["security"]]
    return "\n".join(lines)
