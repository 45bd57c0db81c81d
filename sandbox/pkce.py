"""PKCE (RFC 7636) as the authorization servers check it, shared by the emulators."""

from __future__ import annotations

import base64
import hashlib


def verifier_matches(challenge: str, method: str, verifier: str) -> bool:
    """``code_verifier`` against the ``code_challenge`` sent to the authorize endpoint
    (RFC 7636 section 4.6: S256 = BASE64URL(SHA256(verifier)), or plain)."""
    if method.upper() == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    else:
        computed = verifier
    return bool(verifier) and computed == challenge
