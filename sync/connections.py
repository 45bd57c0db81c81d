"""Connecting a tenant's accounts: OAuth authorization code with state (and
PKCE where the provider supports it), private-app tokens and client
credentials. Tokens are stored encrypted; nothing here logs a secret."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.catalog import oauth_providers, provider
from connectors.oauth import (
    TokenSet,
    authorize_url,
    client_credentials,
    exchange_code,
    pkce_pair,
    revoke_token,
)
from sync.settings import get_settings
from sync.store.crypto import decrypt_json, encrypt_json
from sync.store.models import AuditEvent, Connection, OAuthState, utcnow
from sync.store.provider_apps import oauth_context

STATE_LIFETIME = timedelta(minutes=15)
OAUTH_PROVIDERS = oauth_providers()  # the catalogue's auth_mode: oauth2


NOT_FOUND = "not_found"  # no such connection
AMBIGUOUS = "ambiguous"  # several connections answer to the name given
INVALID_STATE = "invalid_state"  # an OAuth state unknown, already used or expired
CANNOT_CONNECT = "cannot_connect"  # this connection cannot be connected (or disconnected) so

CODES = frozenset({NOT_FOUND, AMBIGUOUS, INVALID_STATE, CANNOT_CONNECT})
"""Every code a :class:`ConnectError` may carry; ``relais.api.engine_errors``
gives each its HTTP answer (the engine never speaks HTTP)."""


class ConnectError(ValueError):
    """A request to connect that cannot be honoured; the message says why and what to do.

    ``code`` is one of :data:`CODES` (checked), ``field`` the offending input if any."""

    def __init__(self, message: str, code: str = CANNOT_CONNECT, field: str | None = None) -> None:
        if code not in CODES:
            raise ValueError(f"not a connect error code: {code!r}")
        super().__init__(message)
        self.code, self.field = code, field


def find_connection(session: Session, tenant_id: str, name: str) -> Connection:
    """A connection by its name, or by its provider when the tenant has only one."""
    rows = [
        r
        for r in session.scalars(select(Connection).where(Connection.tenant_id == tenant_id))
        if r.status != "disabled"
    ]
    named = [r for r in rows if r.name == name]
    by_provider = [r for r in rows if r.provider == name]
    if named:
        return named[0]
    if len(by_provider) == 1:
        return by_provider[0]
    if by_provider:
        names = ", ".join(sorted(r.name for r in by_provider))
        raise ConnectError(
            f"tenant {tenant_id} has several {name} connections ({names}): name the one to connect",
            code=AMBIGUOUS,
        )
    raise ConnectError(f"tenant {tenant_id} has no connection {name!r}", code=NOT_FOUND)


def _token_connection(session: Session, tenant_id: str, name: str) -> Connection:
    row = find_connection(session, tenant_id, name)
    if row.provider not in OAUTH_PROVIDERS:
        hint = ""
        if row.provider == "webhook":
            hint = ("; Relais signs each request with its signing secret, and a token the "
                    "receiver wants goes in its `headers:` in the tenant YAML")
        raise ConnectError(f"{row.name!r} is a {row.provider} connection: it takes no token or "
                           f"OAuth app (only {', '.join(OAUTH_PROVIDERS)} do){hint}", field="token")
    return row


def _oauth(session: Session, row: Connection) -> tuple[dict[str, Any], dict[str, str]]:
    """Settings and client for the connection's OAuth requests: its own app, else
    the operator's for its provider (with the operator's endpoints)."""
    settings, creds = oauth_context(session, row.provider, dict(row.settings),
                                    decrypt_json(row.credentials))
    if not creds.get("client_id") or not creds.get("client_secret"):
        raise ConnectError(
            f"connection {row.name!r} has no OAuth app: the operator registers one for "
            f"{row.provider} (`relais providers register-app {row.provider} --client-id … "
            f"--client-secret …`), or run `relais connect {row.tenant_id} {row.name} "
            "--client-id … --client-secret …`",
            field="client_id",
        )
    return settings, {"client_id": creds["client_id"], "client_secret": creds["client_secret"]}


def check_return_to(value: str | None) -> str | None:
    """A console page to come back to after the consent: a relative path of this
    site only (``/console/…``), never another site (open redirect)."""
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    if (not value.startswith("/") or value.startswith("//") or "\\" in value
            or parts.scheme or parts.netloc or any(ord(c) < 32 for c in value)
            or len(value) > 500):
        raise ConnectError("return_to must be a relative path on this site, e.g. "
                           "/console/acme/connections", field="return_to")
    return value


def callback_url() -> str:
    """The redirect URI of every authorization: the operator gives it to each
    provider when registering the OAuth app (``public_url`` + ``/oauth/callback``)."""
    return get_settings().public_url.rstrip("/") + "/oauth/callback"


@dataclass
class Authorization:
    url: str
    state: str
    expires_at: datetime


def start_authorization(
    session: Session, tenant_id: str, name: str, redirect_uri: str | None = None,
    return_to: str | None = None,
) -> Authorization:
    """A new authorization: the provider's consent URL and its single-use state.
    ``return_to`` (a relative path, checked) is where the callback sends the
    browser back with the outcome, instead of answering JSON."""
    row = find_connection(session, tenant_id, name)
    if row.provider not in OAUTH_PROVIDERS:
        raise ConnectError(f"a {row.provider} connection is not connected with OAuth")
    return_to = check_return_to(return_to)
    spec = provider(row.provider)
    settings, client = _oauth(session, row)
    redirect_uri = redirect_uri or callback_url()
    verifier, challenge = pkce_pair() if spec.pkce else (None, None)
    state = secrets.token_urlsafe(32)
    expires_at = utcnow() + STATE_LIFETIME
    session.add(
        OAuthState(
            state=state,
            tenant_id=tenant_id,
            connection_id=row.id,
            code_verifier=verifier,
            redirect_uri=redirect_uri,
            return_to=return_to,
            expires_at=expires_at,
        )
    )
    url = authorize_url(
        spec, settings, client["client_id"], redirect_uri, state, challenge
    )
    return Authorization(url=url, state=state, expires_at=expires_at)


def store_tokens(session: Session, row: Connection, tokens: TokenSet, how: str) -> None:
    creds = decrypt_json(row.credentials) | tokens.as_credentials()
    row.credentials = encrypt_json(creds)
    row.token_expires_at = tokens.expires_at
    reconnected = row.status == "needs_reauth"
    row.status = "active"
    session.add(
        AuditEvent(
            tenant_id=row.tenant_id,
            kind="connection.connected",
            subject_type="connection",
            subject_id=row.id,
            detail={"how": how, "reconnected": reconnected},
        )
    )


def complete_authorization(session: Session, state: str, code: str) -> Connection:
    """The provider's redirect: check the state, exchange the code, store the tokens."""
    pending = session.get(OAuthState, state, with_for_update=True)
    if pending is None:
        raise ConnectError(
            "unknown or already used OAuth state; start the connection again",
            code=INVALID_STATE,
            field="state",
        )
    session.delete(pending)  # single use: gone once the tokens are stored
    if pending.expires_at < utcnow():
        raise ConnectError(
            "this authorization link expired; start the connection again", code=INVALID_STATE,
            field="state",
        )
    row = session.get(Connection, pending.connection_id, with_for_update=True)
    assert row is not None
    settings, client = _oauth(session, row)
    tokens = exchange_code(
        provider(row.provider),
        settings,
        client,
        code,
        pending.redirect_uri,
        pending.code_verifier,
    )
    store_tokens(session, row, tokens, "authorization_code")
    return row


def connect_client_credentials(session: Session, tenant_id: str, name: str) -> Connection:
    """Fetch a server-to-server token with the stored app credentials."""
    row = _token_connection(session, tenant_id, name)
    tokens = client_credentials(provider(row.provider), *_oauth(session, row))
    store_tokens(session, row, tokens, "client_credentials")
    return row


def set_credentials(session: Session, tenant_id: str, name: str, values: dict[str, Any]) -> str:
    """Store app credentials or a private-app token given by an operator (CLI)."""
    row = _token_connection(session, tenant_id, name)
    creds = decrypt_json(row.credentials) | {k: v for k, v in values.items() if v}
    row.credentials = encrypt_json(creds)
    if values.get("access_token"):  # a private-app token does not expire
        row.token_expires_at = None
        row.status = "active"
    session.add(
        AuditEvent(
            tenant_id=tenant_id,
            kind="connection.credentials_set",
            subject_type="connection",
            subject_id=row.id,
            detail={"fields": sorted(k for k, v in values.items() if v)},  # names, not values
        )
    )
    return row.id


def return_to_of(session: Session, state: str) -> str | None:
    """Where the authorization with ``state`` asked to come back (None: answer JSON)."""
    pending = session.get(OAuthState, state)
    return pending.return_to if pending is not None else None


def forget_state(session: Session, state: str) -> None:
    pending = session.get(OAuthState, state)
    if pending is not None:
        session.delete(pending)


@dataclass
class Disconnected:
    connection: Connection
    revoked: bool  # the provider revoked the token
    note: str  # what happened, for the admin (English)
    how: str = "revoked"  # revoked | no_token | not_revocable (a screen says it its own way)


def disconnect(session: Session, tenant_id: str, name: str, actor: str) -> Disconnected:
    """Revoke the connection's tokens at the provider where it offers that, then
    erase them here; the connection waits in ``not_connected`` (its deliveries
    wait, nothing is dropped) until someone connects it again. The connection's
    own OAuth app credentials, if any, are kept."""
    row = find_connection(session, tenant_id, name)
    row = session.get(Connection, row.id, with_for_update=True) or row
    if row.provider not in OAUTH_PROVIDERS:
        raise ConnectError(f"a {row.provider} connection has no OAuth tokens to revoke")
    creds = decrypt_json(row.credentials)
    token = creds.get("refresh_token") or creds.get("access_token")
    spec = provider(row.provider)
    # The endpoints of the app that issued the token (the operator's, if it did).
    settings, _ = oauth_context(session, row.provider, dict(row.settings), creds)
    if not token:
        revoked, note, how = False, "no token was stored", "no_token"
    elif revoke_token(spec, settings, token):
        revoked, note, how = True, f"{row.provider} revoked the token", "revoked"
    else:
        revoked, how = False, "not_revocable"
        note = (f"{row.provider} offers no token revocation: the tokens were erased from "
                "Relais; withdraw the app's consent in the provider's admin centre")
    kept = {k: v for k, v in creds.items() if k in ("client_id", "client_secret")}
    row.credentials = encrypt_json(kept) if kept else None
    row.token_expires_at = None
    row.status = "not_connected"
    session.add(AuditEvent(tenant_id=tenant_id, kind="connection.disconnected",
                           subject_type="connection", subject_id=row.id,
                           detail={"actor": actor, "revoked": revoked}))
    return Disconnected(row, revoked, note, how)
