"""API keys: ``rls_<id>_<secret>``, stored as id + SHA-256 of the secret.

Secrets are 256 random bits, so a plain hash is enough (no password KDF); the
id lets us find the row without scanning. Each key is scoped to one tenant
(role secretary or admin) or to the operator (every tenant).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from sync.store.models import ApiKey, AuditEvent, utcnow

ROLES = ("secretary", "admin", "operator")
# What each role may do, from least to most.
RANK = {"secretary": 1, "admin": 2, "operator": 3}


class BadKey(PermissionError):
    pass


@dataclass(frozen=True)
class Principal:
    key_id: str
    tenant_id: str | None
    role: str

    def can_see(self, tenant_id: str) -> bool:
        return self.role == "operator" or self.tenant_id == tenant_id

    def at_least(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]

    @property
    def label(self) -> str:
        return f"key {self.key_id} ({self.role})"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, role: str, tenant_id: str | None, name: str = "") -> str:
    """Store a new key and return it in full; it is shown once and never again."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if (role == "operator") != (tenant_id is None):
        raise ValueError("an operator key has no tenant; secretary and admin keys need one")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    session.add(
        ApiKey(id=key_id, secret_hash=_hash(secret), tenant_id=tenant_id, role=role, name=name)
    )
    session.add(
        AuditEvent(
            tenant_id=tenant_id,
            kind="api_key.created",
            subject_type="api_key",
            subject_id=key_id,
            detail={"role": role, "name": name},
        )
    )
    return f"rls_{key_id}_{secret}"


def authenticate(session: Session, token: str) -> tuple[Principal, bool]:
    """The key's principal, and whether its last use is stale enough to record.

    Only reads, so it runs in a read-only transaction; ``touch_key`` writes.
    """
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "rls":
        raise BadKey("malformed API key: expected 'Bearer rls_<id>_<secret>'")
    _, key_id, secret = parts
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        raise BadKey("unknown or revoked API key")
    if not hmac.compare_digest(row.secret_hash, _hash(secret)):
        raise BadKey("unknown or revoked API key")
    stale = row.last_used_at is None or utcnow() - row.last_used_at > timedelta(minutes=1)
    return Principal(key_id=row.id, tenant_id=row.tenant_id, role=row.role), stale


def touch_key(session: Session, key_id: str) -> None:
    """Record a key's use: at most one write a minute per key."""
    row = session.get(ApiKey, key_id)
    if row is not None:
        row.last_used_at = utcnow()


def revoke_key(session: Session, key_id: str) -> bool:
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    verified.forget(key_id)
    return True


class VerifiedKeys:
    """Keys this process verified in the last ``ttl`` seconds: a request with one
    skips the store (a whole transaction, four round trips on PostgreSQL).

    The price: a key revoked by another process (``relais keys revoke``) still
    works here for at most ``ttl`` seconds; one revoked through this process
    stops at once. The secret is checked on every request (SHA-256 of the token
    compared with the one verified), so a cached id never admits another secret.
    Ages are read on the monotonic clock: only durations matter here.
    """

    MAX = 10_000

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[str, Principal, float]] = {}

    def get(self, token: str) -> Principal | None:
        key_id = token.split("_", 2)[1] if token.count("_") >= 2 else ""
        with self._lock:
            entry = self._keys.get(key_id)
        if entry is None or time.monotonic() - entry[2] > self.ttl:
            return None
        return entry[1] if hmac.compare_digest(entry[0], _hash(token)) else None

    def remember(self, token: str, who: Principal) -> None:
        with self._lock:
            if len(self._keys) >= self.MAX:
                self._keys.clear()
            self._keys[who.key_id] = (_hash(token), who, time.monotonic())

    def forget(self, key_id: str) -> None:
        with self._lock:
            self._keys.pop(key_id, None)


verified = VerifiedKeys()
