"""Connections: their health, and connecting them with OAuth."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from pydantic import BaseModel
from sqlalchemy import func, select

from connectors.base import AuthExpired, TransientError
from relais.api.deps import DB, Caller, tenant_for
from relais.api.engine_errors import connect_error
from relais.api.errors import ApiError
from sync.connections import (
    ConnectError,
    complete_authorization,
    disconnect,
    forget_state,
    return_to_of,
    start_authorization,
)
from sync.domain import as_utc_iso
from sync.queue import enqueue_connections
from sync.store.db import session_scope
from sync.store.models import Connection, Delivery

router = APIRouter(tags=["connections"])


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
    # A console page (relative path): the callback redirects there with the outcome.
    return_to: str | None = None


@router.post("/v1/tenants/{tenant_id}/connections/{name}/authorize")
def authorize(
    tenant_id: str, name: str, who: Caller, body: AuthorizeBody | None = None
) -> dict[str, Any]:
    with session_scope() as session:
        tenant_for(session, who, tenant_id, "admin")
        try:
            started = start_authorization(
                session, tenant_id, name, body.redirect_uri if body else None,
                return_to=body.return_to if body else None,
            )
        except ConnectError as exc:
            raise connect_error(exc) from None
    return {
        "authorize_url": started.url,
        "state": started.state,
        "expires_at": as_utc_iso(started.expires_at),
    }


def _back(return_to: str, **outcome: str) -> RedirectResponse:
    """The console page the flow started from, told the outcome in its query."""
    joiner = "&" if "?" in return_to else "?"
    return RedirectResponse(return_to + joiner + urlencode(outcome), status_code=303)


@router.get("/oauth/callback", response_model=None)
def oauth_callback(
    state: str | None = None,
    code: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
) -> dict[str, Any] | RedirectResponse:
    """Where providers send the admin back. The state is the only credential here.
    A flow started with ``return_to`` is sent back there (303) with
    ``outcome=connected`` or ``outcome=error&code=…&reason=…`` (and ``field``, and
    ``detail``: the provider's own words when it refused); otherwise JSON."""
    return_to = None
    if state:
        with session_scope(readonly=True) as session:
            return_to = return_to_of(session, state)
    try:
        return _complete(state, code, error, error_description, return_to)
    except ApiError as exc:
        if return_to is None:
            raise
        field = next((d.get("field") for d in exc.details or [] if d.get("field")), None)
        extra = {"field": str(field)} if field else {}
        if exc.code == "authorization_refused" and (error_description or error):
            extra["detail"] = (error_description or error or "")[:300]  # the provider's words
        return _back(return_to, outcome="error", code=exc.code, reason=exc.message, **extra)


def _complete(state: str | None, code: str | None, error: str | None,
              error_description: str | None,
              return_to: str | None) -> dict[str, Any] | RedirectResponse:
    if error:
        if state:
            with session_scope() as session:  # refused: this state is spent
                forget_state(session, state)
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
        raise connect_error(exc) from None
    except AuthExpired as exc:
        raise ApiError(400, "authorization_refused", str(exc)) from None
    except TransientError as exc:
        raise ApiError(502, "provider_unavailable", str(exc)) from None
    enqueue_connections([connection_id])  # deliveries that waited for the account
    if return_to is not None:
        return _back(return_to, outcome="connected", connection=name)
    return {"tenant": tenant_id, "connection": name, "status": "active"}


@router.post("/v1/tenants/{tenant_id}/connections/{name}/disconnect")
def disconnect_connection(tenant_id: str, name: str, who: Caller) -> dict[str, Any]:
    """Revoke the tokens at the provider where it can, erase them here; the
    connection waits in ``not_connected`` until connected again."""
    try:
        with session_scope() as session:
            tenant_for(session, who, tenant_id, "admin")
            done = disconnect(session, tenant_id, name, actor=who.label)
            answer = {"connection": done.connection.name, "status": done.connection.status,
                      "revoked": done.revoked, "note": done.note}
    except ConnectError as exc:
        raise connect_error(exc) from None
    except TransientError as exc:
        raise ApiError(502, "provider_unavailable",
                       f"{exc}; nothing was changed: try again") from None
    return answer
