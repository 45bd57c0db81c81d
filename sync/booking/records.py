"""The appointment rows and what is written with them: the per-staff lock, audit
events, and the outbox deliveries of each change.

Outbox rule for appointments: every connection of the tenant with role
``crm`` (not disabled) receives ``appointment.created|updated|cancelled``;
the payload is a snapshot of the appointment at that change
(``Delivery.params``), so a late retry sends what was true then. The
deliveries are written in the caller's transaction (the one that records the
change) and enqueued after commit (:func:`enqueue_deliveries`).

Every lookup carries the tenant: an appointment id or an ``Idempotency-Key``
of another tenant is not found.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from mappings.schema import StaffMember, TenantConfig
from sync.booking.errors import Conflict, NotFound
from sync.domain import as_utc_iso
from sync.store.db import is_postgres, session_scope
from sync.store.models import Appointment, AuditEvent, Connection, Delivery, StaffLock, Tenant
from sync.tenants import parsed_config


def load_config(tenant_id: str) -> TenantConfig:
    """The tenant's parsed configuration, or :class:`NotFound`."""
    with session_scope(readonly=True) as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id!r} not found")
        return parsed_config(tenant)


def lock_staff(session: Session, tenant_id: str, staff_id: str) -> None:
    """Serialise bookings of one staff member until the transaction ends.

    PostgreSQL: row lock on ``staff_locks`` (inserted on first use; the
    insert never waits on a committed row). SQLite: nothing to do, the
    transaction already holds the write lock (``BEGIN IMMEDIATE``).
    """
    bind = session.get_bind()
    if not is_postgres(bind):  # type: ignore[arg-type]
        return
    from sqlalchemy.dialects.postgresql import insert

    where = (StaffLock.tenant_id == tenant_id, StaffLock.staff_id == staff_id)
    if session.execute(select(StaffLock.staff_id).where(*where).with_for_update()).first():
        return
    session.execute(
        insert(StaffLock).values(tenant_id=tenant_id, staff_id=staff_id).on_conflict_do_nothing()
    )
    session.execute(select(StaffLock.staff_id).where(*where).with_for_update())


def by_key(session: Session, tenant_id: str, key: str) -> Appointment | None:
    """The tenant's appointment booked under ``Idempotency-Key`` ``key``, if any."""
    return session.scalar(
        select(Appointment).where(
            Appointment.tenant_id == tenant_id, Appointment.idempotency_key == key
        )
    )


def appointment_row(
    session: Session, tenant_id: str, appointment_id: str, lock: bool = False
) -> Appointment:
    """The tenant's appointment (row-locked when ``lock``), or :class:`NotFound`."""
    row = session.get(Appointment, appointment_id, with_for_update=lock, populate_existing=lock)
    if row is None or row.tenant_id != tenant_id:
        raise NotFound(f"appointment {appointment_id!r} not found")
    return row


def must_be_booked(row: Appointment, doing: str) -> None:
    """Only a confirmed appointment is moved or cancelled (:class:`Conflict` otherwise)."""
    if row.status == "pending":
        raise Conflict(
            f"cannot {doing} this appointment: it is still being written to the calendar",
            field="status",
        )
    if row.status != "confirmed":
        raise Conflict(f"cannot {doing} this appointment: it is {row.status}", field="status")


def calendar_connection_id(session: Session, tenant_id: str, member: StaffMember) -> str | None:
    """The id of the connection holding ``member``'s calendar, if configured and connected."""
    if member.calendar is None:
        return None
    return session.scalar(
        select(Connection.id).where(
            Connection.tenant_id == tenant_id, Connection.name == member.calendar.connection
        )
    )


def record_appointment_event(session: Session, row: Appointment, kind: str, **detail: Any) -> None:
    """An audit event on the appointment, in ``session`` (booking's and two-way sync's)."""
    session.add(
        AuditEvent(
            tenant_id=row.tenant_id,
            kind=kind,
            subject_type="appointment",
            subject_id=row.id,
            detail={"staff_id": row.staff_id, "start": as_utc_iso(row.start), **detail},
        )
    )


def appointment_snapshot(config: TenantConfig, row: Appointment, action: str) -> dict[str, Any]:
    """What a destination gets for one change of an appointment (``Delivery.params``)."""
    member = config.staff_member(row.staff_id)
    zone = ZoneInfo((member.timezone if member else None) or config.timezone)
    spec = config.appointment_type(row.appointment_type or "")
    return {
        "appointment": {
            "id": row.id,
            "start": row.start.astimezone(zone).isoformat(),
            "end": row.end.astimezone(zone).isoformat(),
            "subject": row.subject,
            "notes": row.notes,
            "status": "cancelled" if action == "appointment.cancelled" else row.status,
            "type": row.appointment_type,
            "type_label": spec.label if spec else None,
            "timezone": str(zone),
            "staff_id": row.staff_id,
            "event_id": row.event_id,
        },
        "caller": dict(row.caller or {}),
    }


def write_appointment_deliveries(
    session: Session, config: TenantConfig, row: Appointment, action: str
) -> list[Delivery]:
    """The appointment outbox rule: one delivery per CRM connection of the tenant,
    in ``session`` (booking's changes and those from the calendar, ``sync.calendar_sync``)."""
    connections = session.scalars(
        select(Connection)
        .where(
            Connection.tenant_id == row.tenant_id,
            Connection.role == "crm",
            Connection.status != "disabled",
        )
        .order_by(Connection.name)
    )
    deliveries = []
    snapshot = appointment_snapshot(config, row, action)
    for connection in connections:
        deliveries.append(
            Delivery.new(
                tenant_id=row.tenant_id,
                appointment_id=row.id,
                connection_id=connection.id,
                rule="appointments",
                action=action,
                params=snapshot,
            )
        )
    session.add_all(deliveries)
    session.flush()
    return deliveries


def enqueue_deliveries(connection_ids: list[str]) -> None:
    """Enqueue the delivery tasks of connections marked by ``mark_wake`` (after commit)."""
    if connection_ids:
        from sync.queue import enqueue_connections

        enqueue_connections(connection_ids)
