"""Two-way sync conflicts: an appointment changed on BOTH sides since the last
calendar pull — Relais moved/retitled it (a PATCH, ``sync.booking.reschedule``) and
the office then changed the same event in its calendar before the pull saw our write.

**When is it a conflict?** During a pull (:mod:`sync.calendar_sync`), an event of one
of our confirmed appointments comes back with an ETag other than the one we stored
(so the calendar changed it after our last write), AND Relais PATCHed the appointment
after the last pull of that calendar (an ``appointment.moving`` audit event by a
person, later than the calendar's cursor). Each field both sides touched and that now
differs is one conflict: ``start`` (the end moves with it), ``subject``, ``notes``.
Relais knows which fields its PATCH changed (the audit event's ``fields``; an older
event without them counts as all three). A field only the calendar changed is not a
conflict: the pull takes it as before (a move in the calendar is a move).

**Who wins** — the tenant's ``sync: {conflicts: {start|subject|notes: policy}}``:

- ``calendar``: the calendar's value is taken (as a move/edit by the office);
- ``relais``: Relais keeps its value and the event is written back (PATCH) so the
  calendar shows it again;
- ``latest`` (the default, for a field without a policy): the later modification
  wins. The calendar's time is the provider's clock (Google ``updated``, Graph
  ``lastModifiedDateTime``); Relais's is the time of its PATCH on Relais's clock,
  since the provider does not stamp our write separately from later edits. Both are
  UTC wall clocks (ours NTP-synced); a skew between them only matters for two edits
  made within that skew of each other. A tie, or an event without a modification
  time, goes to the calendar: it is the side we have just observed.

Every resolved conflict is a ``sync_conflicts`` row (field, both values, winner,
policy, both modification times, when) and an ``appointment.conflict_resolved``
audit event; the appointment view lists them (``conflicts``) and admins see them all
at ``GET /v1/tenants/{t}/sync/conflicts``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.calendar import EventChange
from mappings.schema import TenantConfig
from sync import clock
from sync.domain import as_utc_iso
from sync.store.conflict_models import SyncConflict
from sync.store.models import Appointment, AuditEvent

log = logging.getLogger(__name__)

FIELDS = ("start", "subject", "notes")
DEFAULT_POLICY = "latest"
RELAIS_EDIT = "appointment.moving"  # booking's audit kind for a PATCH under way
_FOOTER = re.compile(r"\n*Réservé par Relais \([^)]*\)\s*$")


def policy_for(config: TenantConfig, name: str) -> str:
    """The tenant's policy for ``name`` (start, subject, notes), else ``latest``."""
    return getattr(config.sync.conflicts, name, None) or DEFAULT_POLICY


def notes_of(description: str | None) -> str | None:
    """The notes inside an event description written by ``sync.booking.event_spec``:
    its header (caller, phone, type) up to the first blank line and its ``Réservé par
    Relais`` footer are dropped. A description without our footer is all notes."""
    if description is None:
        return None
    text = description.replace("\r\n", "\n")
    if not _FOOTER.search(text):
        return text.strip()
    body = _FOOTER.sub("", text)
    head, sep, rest = body.partition("\n\n")
    return rest.strip() if sep else ""


def relais_edits(
    session: Session, appointment: Appointment, since: datetime
) -> tuple[set[str], datetime] | None:
    """Fields Relais PATCHed after ``since`` and the time of the last such PATCH."""
    rows = session.scalars(
        select(AuditEvent).where(
            AuditEvent.subject_type == "appointment",
            AuditEvent.subject_id == appointment.id,
            AuditEvent.kind == RELAIS_EDIT,
            AuditEvent.at > since,
        )
    ).all()
    edits = [r for r in rows if (r.detail or {}).get("by") != "calendar"]
    if not edits:
        return None
    fields: set[str] = set()
    for row in edits:
        named = (row.detail or {}).get("fields")
        fields |= set(named) if isinstance(named, list) else set(FIELDS)
    return fields, max(r.at for r in edits)


def _value(name: str, start: datetime | None, end: datetime | None, text: str | None) -> Any:
    if name == "start":
        return {"start": as_utc_iso(start) if start else None,
                "end": as_utc_iso(end) if end else None}  # fmt: skip
    return text


@dataclass
class Resolution:
    conflicts: list[SyncConflict] = field(default_factory=list)
    took_calendar: set[str] = field(default_factory=set)  # fields the calendar won
    write_back: bool = False  # Relais won a field: the event must be PATCHed back
    previous: tuple[datetime, datetime] | None = None  # start/end before a calendar win


def resolve(
    session: Session,
    config: TenantConfig,
    connection_id: str,
    appointment: Appointment,
    change: EventChange,
    since: datetime | None,
) -> Resolution | None:
    """Resolve the conflicts of one changed event (None: not a conflict, the pull goes
    on as before). Applies the winners to ``appointment`` and records each conflict."""
    if since is None or change.etag == appointment.event_etag:
        return None
    edits = relais_edits(session, appointment, since)
    if edits is None:
        return None
    touched, relais_at = edits
    calendar_side = {
        "start": (change.start, change.end) if change.start and change.end else None,
        "subject": change.subject,
        "notes": notes_of(change.description),
    }
    ours = {
        "start": (appointment.start, appointment.end),
        "subject": appointment.subject,
        "notes": appointment.notes,
    }
    out = Resolution()
    for name in FIELDS:
        theirs = calendar_side[name]
        if name not in touched or theirs is None or theirs == ours[name]:
            continue
        policy = policy_for(config, name)
        if policy == "latest":
            # the provider's stamp is on the machine's clock; ours on the hub's
            later = change.updated is None or change.updated >= clock.to_machine(relais_at)
            winner = "calendar" if later else "relais"
        else:
            winner = policy
        if name == "start":
            assert isinstance(theirs, tuple)
            relais_value = _value("start", appointment.start, appointment.end, None)
            calendar_value = _value("start", theirs[0], theirs[1], None)
        else:
            relais_value, calendar_value = ours[name], theirs
        row = SyncConflict(
            tenant_id=appointment.tenant_id,
            appointment_id=appointment.id,
            connection_id=connection_id,
            field=name,
            relais_value=relais_value,
            calendar_value=calendar_value,
            winner=winner,
            policy=policy,
            relais_modified_at=relais_at,
            calendar_modified_at=change.updated,
            sealed=bool(appointment.sealed),  # a sensitive tenant's: encrypted at rest
        )
        session.add(row)
        out.conflicts.append(row)
        if winner == "calendar":
            out.took_calendar.add(name)
            if name == "start":
                assert isinstance(theirs, tuple)
                out.previous = (appointment.start, appointment.end)
                appointment.start, appointment.end = theirs
            else:
                setattr(appointment, name, theirs)
        else:
            out.write_back = True
    if not out.conflicts:
        return None
    session.add(
        AuditEvent(
            tenant_id=appointment.tenant_id,
            kind="appointment.conflict_resolved",
            subject_type="appointment",
            subject_id=appointment.id,
            detail={
                "staff_id": appointment.staff_id,
                "start": as_utc_iso(appointment.start),
                "conflicts": [
                    {"field": c.field, "winner": c.winner, "policy": c.policy}
                    for c in out.conflicts
                ],
            },
        )
    )
    return out


def conflict_view(row: SyncConflict) -> dict[str, Any]:
    return {
        "id": row.id,
        "appointment_id": row.appointment_id,
        "field": row.field,
        "relais_value": row.relais_value,
        "calendar_value": row.calendar_value,
        "winner": row.winner,
        "policy": row.policy,
        "relais_modified_at": as_utc_iso(row.relais_modified_at)
        if row.relais_modified_at
        else None,
        "calendar_modified_at": as_utc_iso(row.calendar_modified_at)
        if row.calendar_modified_at
        else None,
        "at": as_utc_iso(row.at),
    }


def conflicts_of(session: Session, tenant_id: str, appointment_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(SyncConflict)
        .where(SyncConflict.tenant_id == tenant_id, SyncConflict.appointment_id == appointment_id)
        .order_by(SyncConflict.id)
    )
    return [conflict_view(r) for r in rows]
