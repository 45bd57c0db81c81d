"""Caller lookup in the contact directory, and the directory's sync health.

``GET /v1/tenants/{t}/contacts?phone=`` (secretary): any format
(``+33 6 12 34 56 78``, ``0612345678``, ``06.12.34.56.78``) or the last digits
(at least 6, e.g. ``56 78 90``); best match first. ``?q=`` searches names by
prefix. ``GET /v1/tenants/{t}/sync`` (admin): the pull status per CRM connection.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from relais.api.deps import Caller, tenant_for
from relais.api.errors import ApiError
from sync.contacts import lookup_phone, parse_phone_query, search_name, sync_status
from sync.store.db import session_scope
from sync.tenants import parsed_config

router = APIRouter(prefix="/v1/tenants/{tenant_id}", tags=["contacts"])


@router.get("/contacts")
def find_contacts(
    tenant_id: str,
    who: Caller,
    phone: Annotated[str | None, Query(max_length=64, description="number or its end")] = None,
    q: Annotated[str | None, Query(max_length=100, description="name prefix")] = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> JSONResponse:
    """Directory matches, best first (exact number, same number written otherwise,
    number ending with the digits given, then name prefix)."""
    if not (phone and phone.strip()) and not (q and q.strip()):
        raise ApiError(
            422,
            "invalid_request",
            "phone: give a phone number (or its last 6+ digits), or q: a name",
            [{"field": "phone", "problem": "missing", "hint": "e.g. ?phone=0612345678"}],
        )
    with session_scope(readonly=True) as session:
        tenant = tenant_for(session, who, tenant_id, "secretary")
        if phone and phone.strip():
            try:
                query = parse_phone_query(phone, parsed_config(tenant).phone_region)
            except ValueError as exc:
                raise ApiError(
                    422,
                    "invalid_request",
                    f"phone: {exc}",
                    [{"field": "phone", "problem": str(exc),
                      "hint": "e.g. 06 12 34 56 78, +33612345678 or 345678"}],
                ) from None  # fmt: skip
            matches = lookup_phone(session, tenant_id, query, limit)
            asked = {"phone": phone, "e164": query.e164, "digits": query.digits}
        else:
            matches = search_name(session, tenant_id, q or "", limit)
            asked = {"q": q}
    return JSONResponse({"query": asked, "count": len(matches), "contacts": matches})


@router.get("/sync")
def get_sync_status(tenant_id: str, who: Caller) -> JSONResponse:
    """Per CRM connection: state, last success, cursor age, records in/out, last error."""
    with session_scope(readonly=True) as session:
        tenant_for(session, who, tenant_id, "admin")
        return JSONResponse({"connections": sync_status(session, tenant_id)})
