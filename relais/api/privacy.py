"""The tenant admin's privacy routes: the access log, and a person's data
exported or erased (GDPR articles 15 and 17). Each export and erasure is itself
an access log entry. The phone or email travels in the JSON body, never in a
URL (URLs end up in proxy logs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ValidationError

from relais.api.deps import DB, Caller, json_body, tenant_for
from relais.api.errors import ApiError, field_errors, not_found, summary
from relais.api.openapi import json_request
from sync.privacy import audit, links, subject
from sync.queue import enqueue_connections
from sync.store.db import session_scope
from sync.store.models import Message
from sync.tenants import parsed_config

router = APIRouter(prefix="/v1/tenants/{tenant_id}", tags=["privacy"])


class PersonRequest(BaseModel):
    """The person: a phone (any format, read in the tenant's region) and/or an email."""

    phone: str | None = None
    email: str | None = None


def _person(data: Any, region: str | None) -> subject.Person:
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON object")
    try:
        body = PersonRequest.model_validate(data, strict=True)
    except ValidationError as exc:
        details = field_errors(exc)
        raise ApiError(422, "invalid_request", summary(details), details) from None
    try:
        return subject.Person.parse(body.phone, body.email, region)
    except subject.BadSubject as exc:
        raise ApiError(422, "invalid_request", f"{exc.field}: {exc}", [{
            "field": exc.field, "problem": str(exc),
            "hint": "send {\"phone\": \"+33612345678\"} or {\"email\": \"name@example.org\"}"}],
        ) from None


def _bad_query(field: str, problem: str, hint: str) -> ApiError:
    return ApiError(422, "invalid_request", f"{field}: {problem}",
                    [{"field": field, "problem": problem, "hint": hint}])


@router.get("/audit")
def list_access_log(
    tenant_id: str, who: Caller, session: DB,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[int | None, Query(ge=1, description="entries with a smaller seq")] = None,
    action: Annotated[str | None, Query(description=f"one of {', '.join(audit.ACTIONS)}")]
    = None,
    actor: Annotated[str | None, Query(max_length=200, description="part of the actor")]
    = None,
    start: Annotated[datetime | None, Query(description="from this instant (with offset)")]
    = None,
    end: Annotated[datetime | None, Query(description="before this instant (with offset)")]
    = None,
) -> dict[str, Any]:
    """Who read message content, exported or erased a person's data: newest first
    (the console's access log page reads the same function)."""
    tenant_for(session, who, tenant_id, "admin")
    if action is not None and action not in audit.ACTIONS:
        raise _bad_query("action", f"{action!r} is not an access log action",
                         f"one of {', '.join(audit.ACTIONS)}")
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise _bad_query(name, "the instant has no UTC offset",
                             "write it as 2026-11-27T00:00:00+01:00 or …Z")
    rows = audit.listing(session, tenant_id, limit=limit, before_seq=before,
                         actions=[action] if action else None, start=start, end=end,
                         actor=actor or None)
    return {"entries": [audit.entry_view(e) for e in rows]}


@router.post("/privacy/export", openapi_extra=json_request(PersonRequest))
def export_person(tenant_id: str, who: Caller,
                  data: Annotated[Any, Depends(json_body)]) -> dict[str, Any]:
    with session_scope() as session:
        tenant = tenant_for(session, who, tenant_id, "admin")
        region = parsed_config(tenant).phone_region
        return subject.export(session, tenant_id, _person(data, region), region,
                              actor=who.label)


@router.post("/privacy/erase", openapi_extra=json_request(PersonRequest))
def erase_person(tenant_id: str, who: Caller,
                 data: Annotated[Any, Depends(json_body)]) -> dict[str, Any]:
    with session_scope() as session:
        tenant = tenant_for(session, who, tenant_id, "admin")
        region = parsed_config(tenant).phone_region
        person = _person(data, region)
        found = subject.find(session, tenant_id, person, region)
        result = subject.erase(session, found, tenant_id, actor=who.label)
    enqueue_connections(found.to_wake)  # after commit: the CRM erasures
    return result


@router.delete("/messages/{message_id}/links")
def revoke_links(tenant_id: str, message_id: str, who: Caller) -> dict[str, Any]:
    """Every signed link of the message sent so far stops opening (a forwarded notice)."""
    with session_scope() as session:
        tenant_for(session, who, tenant_id, "secretary")
        message = session.get(Message, message_id)
        if message is None or message.tenant_id != tenant_id:
            raise not_found(f"message {message_id!r}")
        at = links.revoke(session, tenant_id, message_id, actor=who.label)
    return {"message_id": message_id, "links_revoked_at": at.isoformat().replace("+00:00", "Z")}
