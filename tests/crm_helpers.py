"""Helpers for the CRM connector tests: accept calls, drain a connection."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from sync.delivery import process_connection
from sync.domain import CallMessage
from sync.outbox import accept_message
from sync.store.db import session_scope
from sync.store.models import Connection, Delivery
from sync.tenants import get_tenant, parsed_config


def call(n: int, **extra) -> dict:
    base = {
        "call_type": "message",
        "caller": {"name": f"Camille Martin{n}", "phone": f"+3361234{n % 10000:04d}"},
        "subject": f"Demande {n}",
        "body": "Souhaite un rappel.",
        "taken_by": "Sophie",
        "taken_at": "2026-11-27T10:15:00+01:00",
    }
    return base | extra


def accept(tenant: str, message: dict) -> str:
    with session_scope() as session:
        config = parsed_config(get_tenant(session, tenant))
        msg = CallMessage.model_validate(message, context={"region": config.phone_region})
        return accept_message(session, tenant, config, msg).deliveries[0].id


def connection_id(tenant: str, name: str) -> str:
    with session_scope(readonly=True) as session:
        return session.scalar(select(Connection.id).where(
            Connection.tenant_id == tenant, Connection.name == name))


def statuses(tenant: str) -> dict[str, int]:
    with session_scope(readonly=True) as session:
        return dict(session.execute(
            select(Delivery.status, func.count()).where(Delivery.tenant_id == tenant)
            .group_by(Delivery.status)).all())


def drain(conn: str, tenant: str, timeout: float = 30, until=None) -> dict[str, int]:
    """Run the worker's step in-process until nothing is pending or in flight."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = statuses(tenant)
        if until is not None and until(counts):
            return counts
        if until is None and not counts.get("pending") and not counts.get("in_flight"):
            return counts
        outcome = process_connection(conn)
        if outcome.claimed == 0:
            time.sleep(min(outcome.run_again_in or 0.05, 0.5))
    raise AssertionError(f"not settled after {timeout} s: {statuses(tenant)}")


def force_due(tenant: str) -> None:
    from sync.store.models import utcnow

    with session_scope() as session:
        for d in session.scalars(select(Delivery).where(Delivery.tenant_id == tenant,
                                                        Delivery.status == "pending")):
            d.next_attempt_at = utcnow()
