"""HubSpot's webhook requests: signature v3 and the events they carry.

A request is genuine when ``X-HubSpot-Signature-v3`` is the base64 HMAC-SHA256, keyed
with the app's client secret, of method + URI + body + ``X-HubSpot-Request-Timestamp``
(as ``hubspot.utils.signature.Signature.get_signature``), and the timestamp (ms since
the epoch) is at most 5 minutes away:
https://developers.hubspot.com/docs/api/webhooks/validating-requests
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

PROVIDER = "hubspot"
TOLERANCE_SECONDS = 300


def signature_v3(secret: str, method: str, uri: str, body: str, timestamp: str) -> str:
    source = f"{method}{uri}{body}{timestamp}".encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


def timestamp_fresh(timestamp: str, now: float) -> bool:
    """Milliseconds since the epoch (13 digits today; more is no timestamp), within
    ``TOLERANCE_SECONDS`` of ``now`` (seconds since the epoch)."""
    if not (timestamp.isdigit() and len(timestamp) <= 16):
        return False
    return abs(now - int(timestamp) / 1000) <= TOLERANCE_SECONDS


def verify(
    secret: str, method: str, uris: Iterable[str], body: str, timestamp: str, signature: str
) -> bool:
    """Whether ``signature`` is this secret's for the request under any of ``uris``
    (the URL as received, and as the public URL when behind a proxy)."""
    return any(
        hmac.compare_digest(signature_v3(secret, method, uri, body, timestamp), signature)
        for uri in uris
    )


def contact_events(events: list[Any]) -> list[dict[str, Any]]:
    """The events about contacts (``contact.creation``, ``contact.propertyChange``…)."""
    return [
        e for e in events
        if isinstance(e, dict) and str(e.get("subscriptionType", "")).startswith("contact.")
    ]  # fmt: skip
