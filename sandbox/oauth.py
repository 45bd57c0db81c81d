"""The OAuth 2.0 authorization-server pieces every emulator shares.

Each emulator keeps its provider's error bodies and token shapes (they differ
on the wire, and the SDKs parse them); what is the same everywhere lives here:
reading the form-encoded token request (RFC 6749 section 4.1.3), client
credentials in an ``Authorization: Basic`` header (section 2.3.1), the redirect
back with the code (section 4.1.2), PKCE (RFC 7636 section 4.6), and the
``/__sandbox__`` control routes that mint, expire and revoke credentials.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute

from sandbox.knobs import ControlHandler, control_routes

__all__ = [
    "b64url",
    "basic_credentials",
    "read_form",
    "redirect_with",
    "token_control_routes",
    "verifier_matches",
]


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 appendix C), as JWTs and PKCE write it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verifier_matches(challenge: str, method: str, verifier: str) -> bool:
    """``code_verifier`` against the ``code_challenge`` sent to the authorize endpoint
    (RFC 7636 section 4.6: S256 = BASE64URL(SHA256(verifier)), or plain)."""
    computed = b64url(hashlib.sha256(verifier.encode()).digest()) if method.upper() == "S256" \
        else verifier  # fmt: skip
    return bool(verifier) and computed == challenge


def read_form(raw: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body, first value of each key, blanks kept."""
    text = raw.decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}


def basic_credentials(authorization: str) -> tuple[str, str] | None:
    """``(client_id, client_secret)`` of an ``Authorization: Basic`` header, else None."""
    if not authorization.lower().startswith("basic "):
        return None
    try:
        client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
    except (ValueError, binascii.Error):
        return None
    return client_id, secret


def redirect_with(redirect_uri: str, query: Mapping[str, str]) -> RedirectResponse:
    """The 302 back to the client with ``query`` appended (RFC 6749 section 4.1.2)."""
    sep = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(f"{redirect_uri}{sep}{urlencode(query)}", 302)


def token_control_routes(
    *,
    credentials: Callable[[], Any],
    token: Callable[[dict[str, Any]], str],
    expire: Callable[[str | None], Any],
    revoke: Callable[[str | None], Any],
    code: Callable[[dict[str, Any]], str],
    tokens: str = "/tokens",
    errors: tuple[type[Exception], Callable[[Any], tuple[int, Any]]] | None = None,
) -> list[BaseRoute]:
    """The credential knobs every OAuth emulator has, under ``/__sandbox__``:

    ``GET /credentials``; ``POST {tokens}`` (a fresh access token, ``token(body)``);
    ``POST {tokens}/expire`` (``{"access_token": t}`` or all); ``POST
    /refresh-tokens/revoke`` (``{"refresh_token": t}``); ``POST /auth-codes``
    (``code(body)``)."""
    table: dict[str, tuple[str, ControlHandler]] = {
        "/credentials": ("GET", lambda data, request: credentials()),
        tokens: ("POST", lambda data, request: {"access_token": token(data)}),
        tokens + "/expire": (
            "POST", lambda data, request: {"expired": expire(data.get("access_token"))}),
        "/refresh-tokens/revoke": (
            "POST", lambda data, request: {"revoked": revoke(data.get("refresh_token"))}),
        "/auth-codes": ("POST", lambda data, request: {"code": code(data)}),
    }  # fmt: skip
    return control_routes(table, errors=errors)
