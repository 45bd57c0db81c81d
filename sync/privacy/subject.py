"""The rights of the person (GDPR articles 15 and 17): everything Relais holds
about one caller, found by phone (any format, read in the tenant's region) or
email, exported as one JSON document or erased.

What is found (:func:`find`): the tenant's messages whose caller has that phone
or email, the appointments with that caller or made from those messages, the
directory contacts with that phone or email, the deliveries of those messages
and appointments (destination, external id), the records linked to them in the
providers (``external_links``), their history (``audit_events``), calendar
conflicts of those appointments and the access log entries naming them.

Erasure (:func:`erase`) keeps each message's and appointment's row, with its
call type, urgency, instants and status (reports still count them), and
removes what identifies or describes the person: caller, subject, body, intake
answers, notes, delivery payloads and errors, conflict values, the directory
entries. A delivery still pending is cancelled (``dead``, said so); one in
flight is reported, not touched. The answer lists where the data was sent
(CRM record ids, calendar events, webhook deliveries) so the client can erase
it there. The access log gets one entry naming a keyed hash of the person,
never the phone or email.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from sync.contacts import normalize_phone
from sync.domain import as_utc_iso
from sync.links import caller_candidates
from sync.privacy import audit
from sync.settings import get_settings
from sync.store.conflict_models import SyncConflict
from sync.store.crypto import keyed_hashes, lookup_tokens
from sync.store.directory import DirectoryContact, DirectoryPhone
from sync.store.models import (
    Appointment,
    AuditEvent,
    Connection,
    Delivery,
    Escalation,
    ExternalLink,
    Message,
)
from sync.store.privacy_models import AccessLogEntry

ERASED = "[effacé]"


class BadSubject(ValueError):
    """No usable phone or email; ``field`` names the option to fix."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field_name


@dataclass(frozen=True)
class Person:
    """Who is asked about: an E.164 phone and/or a lower-case email."""

    phone: str | None
    email: str | None

    @classmethod
    def parse(cls, phone: str | None, email: str | None, region: str | None) -> Person:
        if not phone and not email:
            raise BadSubject("phone", "give the person's phone or email")
        e164 = None
        if phone:
            e164 = normalize_phone(phone, region)
            if e164 is None:
                raise BadSubject("phone", f"{phone!r} is not a phone number in region {region}")
        mail = email.strip().lower() if email else None
        if email is not None and (not mail or "@" not in mail):
            raise BadSubject("email", f"{email!r} is not an email address")
        return cls(e164, mail)

    def ref(self) -> str:
        """A keyed hash naming the person in the access log (not reversible without the key)."""
        key = get_settings().fernet_keys()[0]
        text = f"phone:{self.phone or ''}|email:{self.email or ''}"
        return "person_" + hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:24]


def _same_phone(raw: Any, e164: str, region: str | None) -> bool:
    if not isinstance(raw, str) or not raw.strip():
        return False
    if raw.startswith("+") and raw[1:].isdigit():  # stored E.164: no parse needed
        return raw == e164
    return normalize_phone(raw, region) == e164


def _caller_matches(caller: Any, person: Person, region: str | None,
                    hashes: frozenset[str] = frozenset()) -> bool:
    if not isinstance(caller, dict):
        return False
    if "sealed" in caller:  # encrypted at rest: matched by keyed hash
        return bool({caller.get("phone_kh"), caller.get("email_kh")} & hashes)
    if person.phone and _same_phone(caller.get("phone"), person.phone, region):
        return True
    email = caller.get("email")
    return bool(person.email and isinstance(email, str) and email.strip().lower() == person.email)


@dataclass
class Found:
    person: Person
    messages: list[Message] = field(default_factory=list)
    appointments: list[Appointment] = field(default_factory=list)
    contacts: list[DirectoryContact] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    links: list[ExternalLink] = field(default_factory=list)
    events: list[AuditEvent] = field(default_factory=list)
    conflicts: list[SyncConflict] = field(default_factory=list)
    access: list[AccessLogEntry] = field(default_factory=list)
    connections: dict[str, Connection] = field(default_factory=dict)
    # Connections given an erasure delivery (crm_erase): to wake after commit.
    to_wake: list[str] = field(default_factory=list)

    def names(self) -> set[str]:
        """The person's names as held (to check nothing else quotes them)."""
        out = {str(m.caller.get("name")) for m in self.messages if (m.caller or {}).get("name")}
        out |= {str(a.caller.get("name")) for a in self.appointments
                if (a.caller or {}).get("name")}
        out |= {c.name for c in self.contacts if c.name}
        return {n for n in out if n.strip()}


def _in(column: Any, ids: list[str]) -> Any:
    return column.in_(ids or ["\x01none"])


def find(session: Session, tenant_id: str, person: Person, region: str | None) -> Found:
    """Everything the tenant holds about ``person`` (rows locked for update on PostgreSQL)."""
    found = Found(person)
    hashes = frozenset(keyed_hashes(person.phone) if person.phone else []) | frozenset(
        keyed_hashes(person.email) if person.email else [])
    ids = [mid for mid, caller in session.execute(
        select(Message.id, Message.caller).where(Message.tenant_id == tenant_id)
        .execution_options(yield_per=2000)) if _caller_matches(caller, person, region, hashes)]
    found.messages = list(session.scalars(select(Message).where(_in(Message.id, ids))
                                          .order_by(Message.created_at)))
    apt_ids = [aid for aid, caller, mid in session.execute(
        select(Appointment.id, Appointment.caller, Appointment.message_id)
        .where(Appointment.tenant_id == tenant_id).execution_options(yield_per=2000))
        if mid in ids or _caller_matches(caller, person, region, hashes)]
    found.appointments = list(session.scalars(
        select(Appointment).where(_in(Appointment.id, apt_ids)).order_by(Appointment.start)))
    contact_ids: set[str] = set()
    if person.phone:
        contact_ids |= set(session.scalars(select(DirectoryPhone.contact_id).where(
            DirectoryPhone.tenant_id == tenant_id,
            DirectoryPhone.e164.in_([person.phone, *lookup_tokens(person.phone)]))))
    for cid, phones, emails in session.execute(
            select(DirectoryContact.id, DirectoryContact.phones, DirectoryContact.emails)
            .where(DirectoryContact.tenant_id == tenant_id).execution_options(yield_per=2000)):
        if isinstance(phones, dict) or isinstance(emails, dict):  # sealed: by keyed hash
            held = {h for v in (phones, emails) if isinstance(v, dict) for h in v.get("kh", [])}
            if held & hashes:
                contact_ids.add(cid)
            continue
        if person.phone and any(_same_phone(p, person.phone, region) for p in phones or []):
            contact_ids.add(cid)
        if person.email and any(str(e).strip().lower() == person.email for e in emails or []):
            contact_ids.add(cid)
    found.contacts = list(session.scalars(
        select(DirectoryContact).where(_in(DirectoryContact.id, sorted(contact_ids)))))
    msg_ids = [m.id for m in found.messages]
    apt_ids = [a.id for a in found.appointments]
    found.deliveries = list(session.scalars(
        select(Delivery).where(Delivery.tenant_id == tenant_id,
                               _in(Delivery.message_id, msg_ids) | _in(Delivery.appointment_id,
                                                                         apt_ids))
        .order_by(Delivery.created_at, Delivery.id)))
    dlv_ids = [d.id for d in found.deliveries]
    local = msg_ids + apt_ids + dlv_ids + sorted(contact_ids)
    # The CRM connectors link a caller by key ("tel:+33…", "mail:…") to its record; a
    # sensitive tenant's key is stored as its keyed hash (sync.links): any form matches.
    keys = [form for k in (f"tel:{person.phone}" if person.phone else None,
                           f"mail:{person.email}" if person.email else None) if k
            for form in caller_candidates(k)]
    found.links = list(session.scalars(select(ExternalLink).where(
        ExternalLink.tenant_id == tenant_id,
        _in(ExternalLink.local_id, local)
        | ((ExternalLink.local_type == "caller") & _in(ExternalLink.local_id, keys)))))
    found.events = list(session.scalars(select(AuditEvent).where(
        AuditEvent.tenant_id == tenant_id, _in(AuditEvent.subject_id, local))
        .order_by(AuditEvent.id)))
    found.conflicts = list(session.scalars(select(SyncConflict).where(
        SyncConflict.tenant_id == tenant_id, _in(SyncConflict.appointment_id, apt_ids))))
    shown = set(msg_ids + apt_ids)
    # A single read names its message or appointment as subject; a list (console page,
    # API list) names what it showed in its detail: read through once, exports are rare.
    found.access = [e for e in session.scalars(select(AccessLogEntry).where(
        AccessLogEntry.tenant_id == tenant_id,
        _in(AccessLogEntry.subject_id, msg_ids + apt_ids)
        | AccessLogEntry.subject_type.in_(("console", "api")))
        .order_by(AccessLogEntry.seq))
        if e.subject_id in shown or shown.intersection(
            [*(e.detail or {}).get("messages", []), *(e.detail or {}).get("appointments", [])])]
    found.connections = {c.id: c for c in session.scalars(
        select(Connection).where(Connection.tenant_id == tenant_id))}
    return found


def _iso(value: Any) -> str | None:
    return as_utc_iso(value) if value is not None else None


def _destination(connection: Connection | None) -> dict[str, Any]:
    if connection is None:
        return {"connection": None, "provider": None}
    settings = connection.settings or {}
    out: dict[str, Any] = {"connection": connection.name, "provider": connection.provider}
    for key in ("url", "instance_url", "portal_id"):
        if settings.get(key):
            out[key] = settings[key]
    return out


def sent_to(found: Found) -> list[dict[str, Any]]:
    """Where the person's data went outside Relais: what the client must erase there."""
    out: list[dict[str, Any]] = []
    for d in found.deliveries:
        if d.status in ("delivered", "in_flight") or d.external_id:
            out.append({"kind": "delivery", "delivery_id": d.id, "action": d.action,
                        "status": d.status, "external_id": d.external_id,
                        "delivered_at": _iso(d.delivered_at),
                        **_destination(found.connections.get(d.connection_id))})
    for link in found.links:
        out.append({"kind": "record", "remote_type": link.remote_type,
                    "remote_id": link.remote_id,
                    # a caller link's local id is the phone or email: not repeated
                    "local_id": "caller" if link.local_type == "caller" else link.local_id,
                    **_destination(found.connections.get(link.connection_id))})
    for a in found.appointments:
        if a.event_id:
            out.append({"kind": "calendar_event", "appointment_id": a.id,
                        "calendar_id": a.calendar_id, "event_id": a.event_id,
                        **_destination(found.connections.get(a.calendar_connection_id or ""))})
    for c in found.contacts:
        out.append({"kind": "crm_contact", "crm_object": c.crm_object, "crm_id": c.crm_id,
                    **_destination(found.connections.get(c.connection_id))})
    return out


def export_document(found: Found, tenant_id: str) -> dict[str, Any]:
    """One JSON document of everything held about the person (article 15)."""
    conns = found.connections
    return {
        "tenant": tenant_id,
        "person": {"phone": found.person.phone, "email": found.person.email},
        "messages": [{
            "id": m.id, "received_at": _iso(m.created_at), "taken_at": _iso(m.taken_at),
            "call_type": m.call_type, "urgency": m.urgency, "status": m.status,
            "caller": m.caller, "subject": m.subject, "body": m.body, "intake": m.intake,
            "taken_by": m.taken_by, "staff_id": m.staff_id,
            "callback_requested": m.callback_requested, "redaction": m.redaction,
        } for m in found.messages],
        "appointments": [{
            "id": a.id, "staff_id": a.staff_id, "start": _iso(a.start), "end": _iso(a.end),
            "status": a.status, "caller": a.caller, "subject": a.subject, "notes": a.notes,
            "message_id": a.message_id, "calendar_id": a.calendar_id, "event_id": a.event_id,
            "redaction": a.redaction,
        } for a in found.appointments],
        "directory": [{
            "id": c.id, "provider": c.provider, "crm_object": c.crm_object, "crm_id": c.crm_id,
            "name": c.name, "company": c.company, "emails": c.emails, "phones": c.phones,
            "synced_at": _iso(c.synced_at),
        } for c in found.contacts],
        "deliveries": [{
            "id": d.id, "message_id": d.message_id, "appointment_id": d.appointment_id,
            **_destination(conns.get(d.connection_id)), "rule": d.rule, "action": d.action,
            "params": d.params, "status": d.status, "attempts": d.attempts,
            "external_id": d.external_id, "last_error": d.last_error,
            "created_at": _iso(d.created_at), "delivered_at": _iso(d.delivered_at),
        } for d in found.deliveries],
        "external_records": [{
            "local_type": link.local_type, "local_id": link.local_id,
            "remote_type": link.remote_type, "remote_id": link.remote_id,
            **_destination(conns.get(link.connection_id)),
        } for link in found.links],
        "history": [{"at": _iso(e.at), "event": e.kind, "subject_type": e.subject_type,
                     "subject_id": e.subject_id, "detail": e.detail} for e in found.events],
        "calendar_conflicts": [{"appointment_id": c.appointment_id, "field": c.field,
                                "relais_value": c.relais_value,
                                "calendar_value": c.calendar_value, "winner": c.winner,
                                "at": _iso(c.at)} for c in found.conflicts],
        "access_log": [audit.entry_view(e) for e in found.access],
    }


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().casefold()


class Needles:
    """Does a text quote the person? Phone by its national digits whatever the
    spacing, email and names case- and accent-insensitively."""

    def __init__(self, person: Person, names: set[str]) -> None:
        self.digits = person.phone.lstrip("+")[-9:] if person.phone else None
        self.words = {_fold(n) for n in names if len(n.strip()) >= 3}
        if person.email:
            self.words.add(person.email.casefold())

    def hit(self, text: str) -> bool:
        if self.digits and self.digits in re.sub(r"\D", "", text):
            return True
        folded = _fold(text)
        return any(w in folded for w in self.words)

    def scrub(self, value: Any) -> Any:
        """``value`` with every string quoting the person replaced by :data:`ERASED`."""
        if isinstance(value, str):
            return ERASED if self.hit(value) else value
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        return value


def erase(session: Session, found: Found, tenant_id: str, *, actor: str) -> dict[str, Any]:
    """Erase ``found`` in the caller's transaction; the answer says what and where else."""
    needles = Needles(found.person, found.names())
    destinations = sent_to(found)
    in_flight = [d.id for d in found.deliveries if d.status == "in_flight"]
    cancelled = 0
    for m in found.messages:
        m.caller, m.subject, m.body, m.intake, m.redaction = {}, "", "", {}, "erased"
    for a in found.appointments:
        a.caller, a.subject, a.notes, a.last_error, a.redaction = {}, "", "", None, "erased"
    for d in found.deliveries:
        if d.status == "in_flight":
            continue
        if d.status == "pending":
            d.status, cancelled = "dead", cancelled + 1
            d.last_error = "cancelled: the person's data was erased"
        else:
            d.last_error = None
        d.params = {"erased": True}
    for e in found.events:
        e.detail = needles.scrub(e.detail or {})
    for c in found.conflicts:
        c.relais_value, c.calendar_value = None, None
    crm = _erase_in_crm(session, found, tenant_id)
    # A caller link's local id is the person's phone or email ("tel:+33…"): it goes too
    # (a later call from them searches the CRM again).
    caller_links = [link.id for link in found.links if link.local_type == "caller"]
    if caller_links:
        session.execute(delete(ExternalLink).where(ExternalLink.id.in_(caller_links)))
    contact_ids = [c.id for c in found.contacts]
    if contact_ids:
        session.execute(delete(DirectoryPhone).where(DirectoryPhone.contact_id.in_(contact_ids)))
        session.execute(delete(DirectoryContact).where(DirectoryContact.id.in_(contact_ids)))
    # Ladders name staff, not callers: only their free-text fields are checked.
    for esc in session.scalars(select(Escalation).where(
            _in(Escalation.message_id, [m.id for m in found.messages]))):
        if esc.acknowledged_by and needles.hit(esc.acknowledged_by):
            esc.acknowledged_by = ERASED
    counts = {"messages": len(found.messages), "appointments": len(found.appointments),
              "directory_contacts": len(contact_ids), "deliveries": len(found.deliveries),
              "pending_cancelled": cancelled, "history_events": len(found.events)}
    ref = found.person.ref()
    audit.append(session, tenant_id, actor=actor, action="privacy.erase", subject_type="person",
                 subject_id=ref, detail={"counts": counts, "in_flight": in_flight,
                                         "crm_erasures": [c["delivery_id"] for c in crm]})
    session.flush()
    return {"tenant": tenant_id, "person_ref": ref, "erased": counts,
            "in_flight_not_erased": in_flight, "sent_to": destinations, "crm_erasure": crm}


def _erase_in_crm(session: Session, found: Found, tenant_id: str) -> list[dict[str, Any]]:
    """With ``privacy.erase_in_crm``: the erasure deliveries written (crm_erase)."""
    from sync.outbox import mark_wake
    from sync.privacy.crm_erase import write_erasures
    from sync.tenants import get_tenant, parsed_config

    if not parsed_config(get_tenant(session, tenant_id)).privacy.erase_in_crm:
        return []
    deliveries = write_erasures(session, found, tenant_id)
    found.to_wake = mark_wake(session, [d.connection_id for d in deliveries])
    return [{"delivery_id": d.id, "connection": found.connections[d.connection_id].name,
             "provider": found.connections[d.connection_id].provider,
             "records": len(d.params["records"]), "status": d.status} for d in deliveries]


def export(session: Session, tenant_id: str, person: Person, region: str | None, *,
           actor: str) -> dict[str, Any]:
    found = find(session, tenant_id, person, region)
    doc = export_document(found, tenant_id)
    doc["sent_to"] = sent_to(found)
    audit.append(session, tenant_id, actor=actor, action="privacy.export", subject_type="person",
                 subject_id=person.ref(), detail={"messages": len(found.messages),
                                                  "appointments": len(found.appointments),
                                                  "deliveries": len(found.deliveries)})
    return doc
