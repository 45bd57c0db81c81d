"""The operator's OAuth app per provider: ``provider_apps``.

An answering service registers one OAuth app with each provider (HubSpot,
Salesforce, Google, Microsoft) and enters its client id and secret once; a
tenant admin then only consents. A connection with its own client credentials
(``relais connect … --client-id``) keeps using them; one without uses the
operator's app, for the authorization, the code exchange and every refresh.
The secret is stored encrypted (``crypto.encrypt_json``) and never shown again.

Invariant: the operator's client secret only ever goes to the endpoints the
operator chose (the catalogue's, or the app's own ``settings`` overrides, e.g. a
sandbox): a tenant's YAML may override ``token_url`` and friends for its own
client, but those overrides are ignored whenever the operator's app is used, so
a tenant admin cannot have the operator's secret posted to a server of theirs.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, LargeBinary, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from sync.store.crypto import decrypt_json, encrypt_json
from sync.store.models import AuditEvent, Base, Connection, utcnow


class ProviderApp(Base):
    __tablename__ = "provider_apps"
    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(500))
    secret: Mapped[bytes] = mapped_column(LargeBinary)  # encrypt_json({"client_secret": …})
    registered_by: Mapped[str] = mapped_column(String(200))
    # The operator's own endpoint overrides (OAUTH_URL_KEYS), e.g. a sandbox's.
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# Settings that say where OAuth requests (and so the client secret) go.
OAUTH_URL_KEYS = ("authorization_url", "token_url", "revocation_url", "ca_file")


def register_app(session: Session, provider: str, client_id: str, client_secret: str,
                 actor: str, settings: dict[str, str] | None = None) -> bool:
    """Store (or replace) the operator's app for ``provider``; True if new.
    ``settings``: endpoint overrides, only the keys of ``OAUTH_URL_KEYS``.
    The caller checks that ``provider`` is an OAuth provider of the catalogue."""
    extra = set(settings or {}) - set(OAUTH_URL_KEYS)
    if extra:
        raise ValueError(f"unknown app settings {sorted(extra)}; allowed: "
                         f"{', '.join(OAUTH_URL_KEYS)}")
    row = session.get(ProviderApp, provider, with_for_update=True)
    created = row is None
    if row is None:
        row = ProviderApp(provider=provider)
        session.add(row)
    row.client_id, row.registered_by = client_id, actor[:200]
    row.settings = {k: v for k, v in (settings or {}).items() if v}
    row.secret = encrypt_json({"client_secret": client_secret})
    session.add(AuditEvent(tenant_id=None, kind="provider_app.registered",
                           subject_type="provider_app", subject_id=provider,
                           detail={"actor": actor, "replaced": not created}))  # no secret
    return created


def remove_app(session: Session, provider: str, actor: str) -> bool:
    row = session.get(ProviderApp, provider)
    if row is None:
        return False
    session.delete(row)
    session.add(AuditEvent(tenant_id=None, kind="provider_app.removed",
                           subject_type="provider_app", subject_id=provider,
                           detail={"actor": actor}))
    return True


def list_apps(session: Session) -> list[ProviderApp]:
    return list(session.scalars(select(ProviderApp).order_by(ProviderApp.provider)))


def relying_connections(session: Session) -> dict[str, int]:
    """Live connections per provider (every tenant) without a client of their own:
    those that use the operator's app, so removing it stops their consent and refresh."""
    counts: dict[str, int] = {}
    for row in session.scalars(select(Connection).where(Connection.status != "disabled")):
        own = decrypt_json(row.credentials)
        if not (own.get("client_id") and own.get("client_secret")):
            counts[row.provider] = counts.get(row.provider, 0) + 1
    return counts


def secret_fingerprint(row: ProviderApp) -> str:
    """What a screen may show of the stored secret: the first 8 hex digits of its
    SHA-256, so the operator can tell which secret is set without reading it."""
    secret = decrypt_json(row.secret)["client_secret"]
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def operator_client(session: Session, provider: str) -> dict[str, str] | None:
    """The operator's ``{client_id, client_secret}`` for ``provider``, if registered."""
    row = session.get(ProviderApp, provider)
    if row is None:
        return None
    return {"client_id": row.client_id,
            "client_secret": decrypt_json(row.secret)["client_secret"]}


def oauth_context(session: Session, provider: str, settings: dict[str, Any],
                  credentials: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings and credentials for a connection's OAuth requests: its own
    client and settings; or, without a client of its own, the operator's app
    with the operator's endpoints (the connection's ``OAUTH_URL_KEYS`` dropped).
    For the requests only: never store the result."""
    if credentials.get("client_id") and credentials.get("client_secret"):
        return settings, credentials
    row = session.get(ProviderApp, provider)
    if row is None:
        return settings, credentials
    own = {k: v for k, v in settings.items() if k not in OAUTH_URL_KEYS}
    client = {"client_id": row.client_id,
              "client_secret": decrypt_json(row.secret)["client_secret"]}
    return own | dict(row.settings), credentials | client
