"""Connection credentials for the engine: decrypted, and fresh.

A token is refreshed a few minutes before it expires, by one worker at a time
per connection: the refresh runs under the connection's row lock (on SQLite,
the database write lock) and re-reads the row first, so a worker that waited
finds the token another one just refreshed. A refused refresh (invalid_grant)
parks the connection in ``needs_reauth``: its deliveries wait, nothing is
dropped, and the tenant admin sees it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from connectors.base import ConnectionInfo
from connectors.catalog import provider
from connectors.oauth import InvalidGrant, TokenSet, refresh
from sync.crm_mapping import crm_mapping
from sync.store.crypto import decrypt_json, encrypt_json
from sync.store.db import session_scope
from sync.store.models import AuditEvent, Connection, utcnow
from sync.store.provider_apps import oauth_context

log = logging.getLogger(__name__)
REFRESH_MARGIN = timedelta(minutes=5)


class NeedsReauth(RuntimeError):
    pass


def connection_info(connection: Connection) -> ConnectionInfo:
    return ConnectionInfo(
        id=connection.id,
        tenant_id=connection.tenant_id,
        name=connection.name,
        provider=connection.provider,
        settings=dict(connection.settings),
        credentials=decrypt_json(connection.credentials),
        mapping=crm_mapping(connection.provider),  # the tenant's replaces it (delivery)
    )


def _due(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and expires_at - REFRESH_MARGIN <= now


def ensure_fresh(connection_id: str) -> None:
    """Refresh the connection's access token if it expires soon (or was revoked)."""
    now = utcnow()
    with session_scope(readonly=True) as session:
        row = session.get(Connection, connection_id)
        if row is None or not _due(row.token_expires_at, now):
            return
    with session_scope() as session:
        row = session.get(Connection, connection_id, with_for_update=True, populate_existing=True)
        if row is None or row.status != "active" or not _due(row.token_expires_at, utcnow()):
            return  # another worker refreshed it while we waited for the lock
        credentials = decrypt_json(row.credentials)
        try:
            # The connection's own OAuth app, else the operator's (never stored here).
            settings, client = oauth_context(session, row.provider, dict(row.settings),
                                             credentials)
            tokens = refresh(provider(row.provider), settings, client)
        except InvalidGrant as exc:
            refused = str(exc)
            row.status = "needs_reauth"
            session.add(
                AuditEvent(
                    tenant_id=row.tenant_id,
                    kind="connection.needs_reauth",
                    subject_type="connection",
                    subject_id=row.id,
                    detail={"reason": refused, "connection": row.name},
                )
            )
            log.warning("connection %s of %s needs re-authorization", row.name, row.tenant_id)
        else:
            refused = None
            _store(session, row, credentials, tokens)
    if refused is not None:  # raised after the commit: the new status must stick
        raise NeedsReauth(refused)


def _store(
    session: Session, row: Connection, credentials: dict[str, Any], tokens: TokenSet
) -> None:
    credentials |= tokens.as_credentials()
    row.credentials = encrypt_json(credentials)
    row.token_expires_at = tokens.expires_at
    session.add(
        AuditEvent(
            tenant_id=row.tenant_id,
            kind="connection.token_refreshed",
            subject_type="connection",
            subject_id=row.id,
            detail={"expires_at": tokens.expires_at.isoformat()},
        )
    )
