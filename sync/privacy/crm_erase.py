"""Erasure at the CRM (GDPR art. 17), through the outbox.

Where the tenant enables it (``privacy: {erase_in_crm: true}``), an erase writes, in
its own transaction, one delivery per HubSpot or Salesforce connection that holds a
record of the person: action :data:`connectors.crm.ERASE_ACTION`, ``params.records``
the CRM records to delete. The records come from what Relais knows, not from a
search by phone or email at the CRM: the caller links the connector recorded when it
created or found the contact (``external_links``, ``local_type="caller"``) and the
directory entries read from that CRM. So a CRM record Relais never touched is not
deleted, and the delivery holds ids only, never the phone, email or name.

The delivery is retried like any other (transient errors, rate limits, expired
tokens) and delivered once: the connectors count a record already gone as erased.
A connection without any record of the person gets no delivery.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from connectors import catalog
from connectors.crm import ERASE_ACTION
from sync.store.models import Delivery, Tenant


def _person_objects(provider: str) -> list[str]:
    """The provider's objects that hold a person (the catalogue's ``person_objects``;
    none: the provider keeps no person records we can erase)."""
    try:
        return catalog.provider(provider).person_objects
    except LookupError:
        return []


RULE = "privacy.erase"


def records_by_connection(found: Any) -> dict[str, list[dict[str, str]]]:
    """The CRM records of the person per connection id (HubSpot and Salesforce only),
    sorted and without repeats."""
    out: dict[str, set[tuple[str, str]]] = {}
    for link in found.links:
        conn = found.connections.get(link.connection_id)
        if conn is None or not _person_objects(conn.provider):
            continue
        if link.local_type == "caller" and link.remote_type in _person_objects(conn.provider):
            out.setdefault(conn.id, set()).add((link.remote_type, link.remote_id))
    for contact in found.contacts:
        conn = found.connections.get(contact.connection_id)
        objects = _person_objects(conn.provider) if conn is not None else []
        if not objects or not contact.crm_id:
            continue
        obj = contact.crm_object or objects[0]
        if obj in objects:
            out.setdefault(conn.id, set()).add((obj, contact.crm_id))
    return {cid: [{"object": o, "id": i} for o, i in sorted(recs)]
            for cid, recs in sorted(out.items())}


def write_erasures(session: Session, found: Any, tenant_id: str) -> list[Delivery]:
    """One pending erasure delivery per CRM connection holding the person (in the
    caller's transaction); the caller wakes the connections after commit."""
    deliveries = []
    for connection_id, records in records_by_connection(found).items():
        delivery = Delivery.new(tenant_id=tenant_id, connection_id=connection_id, rule=RULE,
                                action=ERASE_ACTION, params={"records": records})
        session.add(delivery)
        deliveries.append(delivery)
    session.flush()
    return deliveries


def erase_payload(tenant: Tenant, delivery: Delivery) -> dict[str, Any]:
    """What the CRM connector receives: the records to delete, nothing else."""
    return {"event": ERASE_ACTION, "delivery_id": delivery.id,
            "tenant": {"id": tenant.id, "name": tenant.name},
            "records": list((delivery.params or {}).get("records") or [])}


def status(session: Session, tenant_id: str) -> dict[str, int]:
    """Erasure deliveries of the tenant by status (``relais privacy status``)."""
    from sqlalchemy import func, select

    rows = session.execute(
        select(Delivery.status, func.count()).where(
            Delivery.tenant_id == tenant_id, Delivery.action == ERASE_ACTION)
        .group_by(Delivery.status))
    return {str(s): int(n) for s, n in rows}
