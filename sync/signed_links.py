"""Signed, expiring links sent to people: ``/v1/m/<token>`` (read a message) and
``/v1/ack/<token>`` (acknowledge an escalation).

A token is ``base64url(JSON claims) "." base64url(HMAC-SHA256)``. The HMAC key is
derived from each of ``RELAIS_SECRET_KEYS`` (newest first signs, any verifies, so
keys rotate like the credential keys). The token is the credential: it names one
record of one tenant and expires (``RELAIS_LINK_TTL_SECONDS``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from sync import clock
from sync.settings import get_settings

_CONTEXT = b"relais-signed-links-v1"


class BadLink(ValueError):
    """Forged, altered, expired or malformed."""


def _keys() -> list[bytes]:
    return [hmac.new(k, _CONTEXT, hashlib.sha256).digest() for k in get_settings().fernet_keys()]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(kind: str, claims: dict[str, Any], ttl: float | None = None,
         now: float | None = None) -> str:
    """A token for ``kind`` (``m`` message, ``ack`` escalation) carrying ``claims``."""
    lifetime = get_settings().link_ttl_seconds if ttl is None else ttl
    issued = clock.now().timestamp() if now is None else now  # the hub's clock
    body = {"k": kind, **claims, "iat": int(issued), "exp": int(issued + lifetime)}
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(_keys()[0], payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}"


def verify(kind: str, token: str, now: float | None = None) -> dict[str, Any]:
    """The claims of a valid token of ``kind``; :class:`BadLink` otherwise."""
    payload, _, mac = token.partition(".")
    if not payload or not mac:
        raise BadLink("malformed link")
    try:
        given = _unb64(mac)
    except ValueError:
        raise BadLink("malformed link") from None
    if not any(
        hmac.compare_digest(hmac.new(k, payload.encode(), hashlib.sha256).digest(), given)
        for k in _keys()
    ):
        raise BadLink("bad signature")
    try:
        claims = json.loads(_unb64(payload))
    except ValueError:
        raise BadLink("malformed link") from None
    if not isinstance(claims, dict) or claims.get("k") != kind:
        raise BadLink("not a link of this kind")
    if float(claims.get("exp", 0)) < (clock.now().timestamp() if now is None else now):
        raise BadLink("link expired")
    return claims


def url(path: str, token: str) -> str:
    return f"{get_settings().public_url.rstrip('/')}/{path.strip('/')}/{token}"


def message_link(tenant_id: str, message_id: str, *, sensitive: bool = False,
                 recipient: str | None = None) -> str:
    """The link to a message; ``sensitive`` (a notice withholding the content): it
    lives ``RELAIS_SENSITIVE_LINK_TTL_SECONDS`` only and names its ``recipient``
    (the staff id it was sent to: a second factor goes to their phone). Every link
    of a message can be revoked (``sync.privacy.links``)."""
    ttl = get_settings().sensitive_link_ttl_seconds if sensitive else None
    claims = {"t": tenant_id, "m": message_id}
    if recipient:
        claims["r"] = recipient
    return url("v1/m", sign("m", claims, ttl=ttl))


def ack_link(tenant_id: str, escalation_id: str, recipient: str) -> str:
    return url("v1/ack", sign("ack", {"t": tenant_id, "e": escalation_id, "r": recipient}))
