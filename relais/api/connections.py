"""Connections: their health, and connecting them with OAuth."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import func, select

from connectors.base import AuthExpired, TransientError
from relais.api.deps import DB, Caller, tenant_for
from relais.api.errors import ApiError
from sync.connections import ConnectError, complete_authorization, start_authorization
from sync.domain import as_utc_iso
from sync.queue import enqueue_connections
from sync.store.db import session_scope
from sync.store.models import Connection, Delivery

router = APIRouter(tags=["connections"])


def _connect_error(exc: ConnectError) -> ApiError:
    code = {404: "not_found", 400: "invalid_request"}.get(exc.status, "cannot_connect")
    details = [{"field": exc.field, "problem": str(exc)}] if exc.field else []
    return ApiError(exc.status, code, str(exc), details)


@router.get("/v1/tenants/{tenant_id}/connections")
def list_connections(tenant_id: str, who: Caller, session: DB) -> dict[str, Any]:
    tenant_for(session, who, tenant_id, "admin")
    counts: dict[tuple[str, str], int] = {
        (cid, status): n
        for cid, status, n in session.execute(
            select(Delivery.connection_id, Delivery.status, func.count())
            .where(Delivery.tenant_id == tenant_id)
            .group_by(Delivery.connection_id, Delivery.status)
        )
    }
    rows = session.scalars(
        select(Connection).where(Connection.tenant_id == tenant_id).order_by(Connection.name)
    )
    return {
        "connections": [
            {
                "name": c.name,
                "provider": c.provider,
                "role": c.role,
                "status": c.status,
                "token_expires_at": as_utc_iso(c.token_expires_at) if c.token_expires_at else None,
                "paused_until": as_utc_iso(c.paused_until) if c.paused_until else None,
                "deliveries": {
                    s: counts.get((c.id, s), 0)
                    for s in ("pending", "in_flight", "delivered", "dead")
                },
            }
            for c in rows
        ]
    }


class AuthorizeBody(BaseModel):
    redirect_uri: str | None = None


@router.post("/v1/tenants/{tenant_id}/connections/{name}/authorize")
def authorize(
    tenant_id: str, name: str, who: Caller, body: AuthorizeBody | None = None
) -> dict[str, Any]:
    with session_scope() as session:
        tenant_for(session, who, tenant_id, "admin")
        try:
            started = start_authorization(
                session, tenant_id, name, body.redirect_uri if body else None
            )
        except ConnectError as exc:
            raise _connect_error(exc) from None
    return {
        "authorize_url": started.url,
        "state": started.state,
        "expires_at": as_utc_iso(started.expires_at),
    }


@router.get("/oauth/callback")
def oauth_callback(
    state: str | None = None,
    code: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
) -> dict[str, Any]:
    """Where providers send the admin back. The state is the only credential here."""
    if error:
        raise ApiError(
            400,
            "authorization_refused",
            f"the provider refused the authorization: {error_description or error}",
        )
    if not state or not code:
        missing = "state" if not state else "code"
        raise ApiError(
            400,
            "invalid_request",
            f"missing {missing} in the callback",
            [{"field": missing, "problem": "missing"}],
        )
    try:
        with session_scope() as session:
            row = complete_authorization(session, state, code)
            connection_id, tenant_id, name = row.id, row.tenant_id, row.name
    except ConnectError as exc:
        raise _connect_error(exc) from None
    except AuthExpired as exc:
        raise ApiError(400, "authorization_refused", str(exc)) from None
    except TransientError as exc:
        raise ApiError(502, "provider_unavailable", str(exc)) from None
    enqueue_connections([connection_id])  # deliveries that waited for the account
    return {"tenant": tenant_id, "connection": name, "status": "active"}
