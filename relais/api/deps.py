"""Request dependencies: the database session and the caller's API key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from relais.api.errors import ApiError, not_found
from relais.auth import BadKey, Principal, authenticate, touch_key
from relais.db import session_factory, session_scope
from relais.models import Tenant
from relais.settings import get_settings


def db() -> Iterator[Session]:
    """A read-only session for routes that only read (writes use session_scope)."""
    session = session_factory(readonly=True)()
    try:
        with session.begin():
            yield session
    finally:
        session.close()


DB = Annotated[Session, Depends(db)]


def principal(session: DB, authorization: Annotated[str | None, Header()] = None) -> Principal:
    if not authorization:
        raise ApiError(
            401, "unauthenticated", "missing API key: send 'Authorization: Bearer rls_…'"
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthenticated", "use 'Authorization: Bearer rls_…'")
    try:
        with session_scope(readonly=True) as session:
            who, stale = authenticate(session, token.strip())
    except BadKey as exc:
        raise ApiError(401, "unauthenticated", str(exc)) from None
    if stale:
        with session_scope() as session:
            touch_key(session, who.key_id)
    return who


Caller = Annotated[Principal, Depends(principal)]


def tenant_for(session: Session, who: Principal, tenant_id: str, role: str) -> Tenant:
    """The tenant, if this key may act on it with ``role``.

    Another tenant's resources answer 404, exactly like missing ones, so a key
    cannot even learn which tenants exist.
    """
    if not who.can_see(tenant_id):
        raise not_found(f"tenant {tenant_id!r}")
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise not_found(f"tenant {tenant_id!r}")
    if not who.at_least(role):
        raise ApiError(403, "forbidden", f"this needs the {role} role; your key is {who.role}")
    return tenant


async def json_body(request: Request) -> Any:
    raw = await request.body()
    limit = get_settings().max_message_bytes
    if len(raw) > limit:
        raise ApiError(413, "too_large", f"body is {len(raw)} bytes; the limit is {limit}")
    if not raw.strip():
        raise ApiError(400, "invalid_json", "empty body: send a JSON object")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if hasattr(exc, "lineno") else ""
        raise ApiError(
            400,
            "invalid_json",
            f"body is not valid JSON{where}: {exc}",
            [{"field": "(body)", "problem": str(exc), "hint": "send UTF-8 JSON"}],
        ) from None
