"""Two-way sync conflicts (see sync.conflicts): every field resolved when an
appointment changed both in Relais and in the staff calendar since the last pull.

``GET /v1/tenants/{t}/sync/conflicts`` (tenant admin): newest first; ``appointment_id``
narrows to one appointment, ``limit`` (1-500, default 100) caps the list.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from relais.api.deps import Caller, tenant_for
from sync.conflicts import conflict_view
from sync.store.conflict_models import SyncConflict
from sync.store.db import session_scope

router = APIRouter(prefix="/v1/tenants/{tenant_id}", tags=["sync"])


@router.get("/sync/conflicts")
def list_conflicts(
    tenant_id: str,
    who: Caller,
    appointment_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        tenant_for(session, who, tenant_id, "admin")
        query = select(SyncConflict).where(SyncConflict.tenant_id == tenant_id)
        if appointment_id:
            query = query.where(SyncConflict.appointment_id == appointment_id)
        rows = session.scalars(query.order_by(SyncConflict.id.desc()).limit(limit)).all()
        return {"conflicts": [conflict_view(r) for r in rows]}
