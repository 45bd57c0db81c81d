"""Rules on `known_contact` use the CRM contact directory at acceptance time."""

from __future__ import annotations

from conftest import FIXTURES, apply_acme
from sqlalchemy import select

from sync.domain import CallMessage
from sync.outbox import accept_message
from sync.store.db import session_scope
from sync.store.directory import DirectoryContact, DirectoryPhone, DirectorySyncState
from sync.store.models import Connection, utcnow
from sync.tenants import apply_config, get_tenant, parsed_config

RULES = """rules:
  mode: first
  rules:
    - name: client-connu
      when: {known_contact: true}
      then:
        - connection: hook
    - name: spam
      when: {call_types: [demarchage]}
      then:
        - drop: true
  default:
    name: inconnu-ignore
    then:
      - drop: true
"""


def accept(phone: str):
    with session_scope() as session:
        config = parsed_config(get_tenant(session, "acme"))
        msg = CallMessage.model_validate({
            "call_type": "message", "caller": {"name": "Jeanne Dupont", "phone": phone},
            "subject": "Rappel", "taken_by": "Sophie",
            "taken_at": "2026-11-27T10:15:00+01:00"}, context={"region": "FR"})
        accepted = accept_message(session, "acme", config, msg)
        return accepted.message.status, len(accepted.deliveries)


def test_known_contact_rule(env, receiver, monkeypatch):
    apply_acme(receiver, monkeypatch)
    text = (FIXTURES / "acme.yaml").read_text()
    text = text[: text.index("rules:")] + RULES
    with session_scope() as session:
        apply_config(session, text, "acme.yaml", actor="test")
    # No directory has been pulled yet: unknown, so the rule does not match.
    assert accept("+33612345678") == ("dropped", 0)
    with session_scope() as session:
        conn = session.scalar(select(Connection.id).where(Connection.name == "hook"))
        session.add(DirectorySyncState(connection_id=conn, tenant_id="acme",
                                       last_success_at=utcnow()))
        session.add(DirectoryContact(id="c1", tenant_id="acme", connection_id=conn,
                                     provider="hubspot", crm_object="contacts", crm_id="1",
                                     name="Jeanne Dupont", phones=["+33612345678"]))
        session.flush()
        session.add(DirectoryPhone(contact_id="c1", tenant_id="acme", e164="+33612345678",
                                   reversed_digits="87654321633"))
    assert accept("06 12 34 56 78") == ("accepted", 1)
    assert accept("06 99 88 77 66") == ("dropped", 0)
