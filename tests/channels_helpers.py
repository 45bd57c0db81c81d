"""A medical-ish tenant sending through Relais's own email and SMS senders, pointed at
the SMTP sandbox and the SMS-gateway emulator over real sockets."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from sync.delivery import process_connection
from sync.domain import CallMessage
from sync.outbox import accept_message
from sync.settings import reset_settings
from sync.store.db import session_scope
from sync.store.models import Connection, Delivery, Escalation
from sync.tenants import apply_config, get_tenant, parsed_config

VET = """\
id: vet
name: Clinique Test
timezone: Europe/Paris
phone_region: FR
language: fr
staff:
  - {id: jean, name: Jean Martin, email: jean@vet.example, phone: "+33611111111"}
  - {id: lucas, name: Lucas Martin, email: lucas@vet.example, phone: "+33622222222"}
  - {id: chef, name: Claire Chef, email: chef@vet.example, phone: "+33633333333"}
call_types:
  - {id: urgence, label: Urgence, urgency_default: urgent}
  - {id: nuit, label: Urgence de nuit, urgency_default: urgent}
  - {id: message, label: Message}
  - {id: dossier, label: Dossier patient, sensitive: true}
  - {id: dossier-urgent, label: Dossier urgent, sensitive: true, urgency_default: urgent}
  - {id: fragile, label: Fragile}
  - {id: suivi, label: Suivi}
on_call:
  rotation:
    - {staff: jean, from: "mon 08:00"}
    - {staff: lucas, from: "fri 18:00"}
templates:
  urgence:
    subject: "Urgence : {{ caller.name }}"
    body: "{{ caller.name }} ({{ caller.phone }}) : {{ message.body }}"
  fragile:
    body: "{{ 100 // (message.intake | length) }}"
escalations:
  astreinte:
    steps:
      - {to: on_call, channel: sms, wait: 30s, template: urgence}
      - {to: chef, channel: sms, wait: 30s, template: urgence}
      - {to: [jean, lucas], channel: email, wait: 30s, template: urgence}
    dead_end: {to: bureau@vet.example}
  relais-garde:
    steps:
      - {to: on_call, channel: sms, wait: 30s}
      - {to: on_call, channel: sms, wait: 30s}
    dead_end: {to: bureau@vet.example}
rules:
  mode: first
  rules:
    - name: urgences
      when: {call_types: [urgence, dossier-urgent]}
      then: [{escalate: astreinte}]
    - name: nuit
      when: {call_types: [nuit]}
      then: [{escalate: relais-garde}]
    - name: dossiers
      when: {call_types: [dossier]}
      then:
        - email: {to: [jean]}
        - sms: {to: [jean]}
    - name: messages
      when: {call_types: [message]}
      then:
        - digest: {to: [chef], every: 30m}
    - name: fragile
      when: {call_types: [fragile]}
      then: [{email: {to: [chef], template: fragile}}]
  default:
    name: defaut
    then: [{email: {to: [chef]}}]
"""

SECRET_BODY = "Le chien Rex a avale du chocolat, diabete connu"
CALLER = {"name": "Jeanne Dupont", "phone": "06 12 34 56 78", "email": "j.dupont@exemple.fr"}


def sender_env(smtp, gateway, public_url: str = "http://127.0.0.1:9") -> dict[str, str]:
    from sandbox.testing import SMS_WEBHOOK_SECRET

    return {
        "RELAIS_EMAIL_HOST": smtp.host,
        "RELAIS_EMAIL_PORT": str(smtp.port),
        "RELAIS_EMAIL_SECURITY": smtp.mode,
        "RELAIS_EMAIL_USERNAME": smtp.username,
        "RELAIS_EMAIL_PASSWORD": smtp.password,
        "RELAIS_EMAIL_FROM_ADDRESS": "relais@relais-sandbox.test",
        "RELAIS_EMAIL_CA_FILE": smtp.ca_file or "",
        "RELAIS_SMS_BASE_URL": gateway.url,
        "RELAIS_SMS_SERVICE_PLAN_ID": gateway.config.service_plan_id,
        "RELAIS_SMS_API_TOKEN": gateway.api_token,
        "RELAIS_SMS_FROM": "RelaisDesk",
        "RELAIS_SMS_WEBHOOK_SECRET": SMS_WEBHOOK_SECRET,
        "RELAIS_PUBLIC_URL": public_url,
    }


def setup_vet(monkeypatch, env, smtp, gateway, public_url: str = "http://127.0.0.1:9") -> None:
    values = sender_env(smtp, gateway, public_url)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    env.vars.update(values)
    reset_settings()
    with session_scope() as session:
        apply_config(session, VET, "vet.yaml", actor="test")


def accept(call_type: str, *, taken_at: str = "2026-11-25T10:15:00+01:00",
           now: datetime | None = None, body: str = SECRET_BODY, caller=None):
    with session_scope() as session:
        config = parsed_config(get_tenant(session, "vet"))
        msg = CallMessage.model_validate(
            {"call_type": call_type, "caller": caller or CALLER, "subject": "Rappel urgent",
             "body": body, "taken_by": "Sophie", "taken_at": taken_at},
            context={"region": "FR"})
        accepted = accept_message(session, "vet", config, msg, now=now)
        return accepted.message.id, [d.id for d in accepted.deliveries], accepted


def deliver_all() -> None:
    """Run every system sender connection until nothing is due (what the worker does)."""
    with session_scope(readonly=True) as session:
        ids = list(session.scalars(select(Connection.id).where(Connection.tenant_id == "vet")))
    for connection_id in ids:
        while process_connection(connection_id).claimed:
            pass


def escalation_of(message_id: str) -> Escalation:
    with session_scope(readonly=True) as session:
        row = session.scalar(select(Escalation).where(Escalation.message_id == message_id))
        assert row is not None
        session.expunge(row)
        return row


def deliveries_of(message_id: str) -> list[Delivery]:
    with session_scope(readonly=True) as session:
        rows = list(session.scalars(select(Delivery).where(Delivery.message_id == message_id)
                                    .order_by(Delivery.created_at, Delivery.id)))
        for row in rows:
            session.expunge(row)
        return rows


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]
