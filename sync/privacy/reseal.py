"""Seal what was written in clear before sealing applied to it: a tenant made
sensitive later (or a call type), or rows older than sealing itself.

What is sealed is what a new row would be sealed as today: messages of the
tenant's sensitive call types (``config.is_sensitive``), and, for a sensitive
tenant, its appointments and contact directory; sync conflicts of sealed
appointments; and a sensitive tenant's caller links (``external_links``), whose local
id is a phone or email, rewritten as its keyed hash (``sync.links``). Rows are
sealed by the models' own write events (setting ``sealed``
makes the next flush encrypt them: ``sync.store.models``, ``sync.store.directory``,
``sync.store.conflict_models``), so there is one sealing code path.

Invariants:

- Batches of ``batch`` rows, each in its own transaction: a run cut short keeps
  what it sealed and the next run goes on (a sealed row is never selected again);
  concurrent writers are locked out of a batch's rows only while it commits.
- A directory contact's ``directory_phones`` rows are rewritten as keyed hashes in
  the same transaction as the contact (no moment where one is sealed, the other not).
- Idempotent: a second run seals nothing. Plaintext is never logged or returned;
  the report holds counts only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from sync.contacts import phone_rows
from sync.links import CALLER, HASHED, caller_link_ids
from sync.store.conflict_models import SyncConflict
from sync.store.db import session_scope
from sync.store.directory import DirectoryContact, DirectoryPhone
from sync.store.models import Appointment, ExternalLink, Message
from sync.tenants import get_tenant, parsed_config

KINDS = ("messages", "appointments", "directory_contacts", "sync_conflicts", "caller_links")
Progress = Callable[[str, int], None]  # (kind, rows sealed so far of that kind)


@dataclass
class ResealReport:
    tenant: str
    sensitive: bool
    sensitive_call_types: list[str]
    sealed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    batches: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "sensitive": self.sensitive,
                "sensitive_call_types": self.sensitive_call_types, "sealed": self.sealed,
                "batches": self.batches}


def _batch(session: Session, kind: str, tenant_id: str, messages: Any, size: int) -> int:
    """Seal up to ``size`` rows of ``kind``; how many were sealed."""
    if kind == "messages":
        rows: list[Any] = list(session.scalars(
            select(Message).where(Message.tenant_id == tenant_id, Message.sealed.is_(False),
                                  messages)
            .order_by(Message.id).limit(size).with_for_update()))
    elif kind == "appointments":
        rows = list(session.scalars(
            select(Appointment).where(Appointment.tenant_id == tenant_id,
                                      Appointment.sealed.is_(False))
            .order_by(Appointment.id).limit(size).with_for_update()))
    elif kind == "directory_contacts":
        rows = list(session.scalars(
            select(DirectoryContact).where(DirectoryContact.tenant_id == tenant_id,
                                           DirectoryContact.sealed.is_(False))
            .order_by(DirectoryContact.id).limit(size).with_for_update()))
        if rows:
            live = [c for c in rows if not c.deleted]
            numbers = {c.id: list(c.phones or []) for c in live}  # plaintext, before sealing
            session.execute(delete(DirectoryPhone).where(
                DirectoryPhone.contact_id.in_([c.id for c in rows])))
            phones = [row for c in live for row in phone_rows(c.id, tenant_id, numbers[c.id],
                                                              True)]
            if phones:
                session.execute(insert(DirectoryPhone), phones)
    elif kind == "caller_links":
        return _hash_caller_links(session, tenant_id, size)
    else:
        sealed_apts = select(Appointment.id).where(Appointment.tenant_id == tenant_id,
                                                   Appointment.sealed.is_(True))
        rows = list(session.scalars(
            select(SyncConflict).where(SyncConflict.tenant_id == tenant_id,
                                       SyncConflict.sealed.is_(False),
                                       SyncConflict.appointment_id.in_(sealed_apts))
            .order_by(SyncConflict.id).limit(size).with_for_update()))
    for row in rows:
        row.sealed = True  # the model's before_update event encrypts the row
    session.flush()
    return len(rows)


def _hash_caller_links(session: Session, tenant_id: str, size: int) -> int:
    """Rewrite up to ``size`` caller links kept in clear as their keyed hash; a link
    already stored hashed for the same record makes the plain one redundant: deleted."""
    rows = list(session.scalars(
        select(ExternalLink).where(ExternalLink.tenant_id == tenant_id,
                                   ExternalLink.local_type == CALLER,
                                   ExternalLink.local_id.not_like(HASHED + "%"))
        .order_by(ExternalLink.id).limit(size).with_for_update()))
    for row in rows:
        hashed = caller_link_ids(row.local_id)
        twin = session.scalar(select(ExternalLink.id).where(
            ExternalLink.connection_id == row.connection_id, ExternalLink.local_type == CALLER,
            ExternalLink.remote_type == row.remote_type, ExternalLink.local_id.in_(hashed)))
        if twin is None:
            row.local_id = hashed[0]
        else:
            session.delete(row)
    session.flush()
    return len(rows)


def reseal(tenant_id: str, batch: int = 500, progress: Progress | None = None) -> ResealReport:
    """Seal the tenant's rows that should be sealed and are not (see the module)."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    with session_scope(readonly=True) as session:
        config = parsed_config(get_tenant(session, tenant_id))  # UnknownTenant
    call_types = sorted(t.id for t in config.call_types if config.is_sensitive(t.id))
    plain = sorted(t.id for t in config.call_types if not config.is_sensitive(t.id))
    report = ResealReport(tenant_id, bool(config.sensitive), call_types)
    # a call type no longer configured is as sensitive as the tenant (is_sensitive)
    messages = (Message.call_type.not_in(plain) if config.sensitive
                else Message.call_type.in_(call_types))
    kinds = [k for k in KINDS if k != "messages" or call_types or config.sensitive]
    if not config.sensitive:
        kinds = [k for k in kinds if k in ("messages", "sync_conflicts")]
    for kind in kinds:
        while True:
            with session_scope() as session:
                done = _batch(session, kind, tenant_id, messages, batch)
            if not done:
                break
            report.sealed[kind] += done
            report.batches += 1
            if progress is not None:
                progress(kind, report.sealed[kind])
            if done < batch:
                break
    return report
