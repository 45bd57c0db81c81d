"""OAuth 2 token endpoints, the same for every provider: authorization code
(with PKCE where the provider supports it), refresh, client credentials.

Token responses differ only in what they omit; ``TokenSet`` normalises them.
Salesforce sends no ``expires_in`` (its sessions time out on inactivity), so
the catalogue's ``default_token_lifetime`` stands in.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from connectors.base import AuthExpired, TransientError
from connectors.catalog import ProviderSpec
from connectors.http import make_client


class InvalidGrant(AuthExpired):
    """The refresh token or code was refused for good: a person must reconnect."""


@dataclass
class TokenSet:
    access_token: str
    expires_at: datetime
    refresh_token: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # instance_url, hub_id, scope…

    def as_credentials(self) -> dict[str, Any]:
        data = {"access_token": self.access_token, **self.extra}
        if self.refresh_token:
            data["refresh_token"] = self.refresh_token
        return data


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) per RFC 7636."""
    verifier = secrets.token_urlsafe(64)[:96]
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_url(
    spec: ProviderSpec,
    settings: dict[str, Any],
    client_id: str,
    redirect_uri: str,
    state: str,
    code_challenge: str | None,
) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "scope": " ".join(settings.get("scopes") or spec.scopes),
    }
    if code_challenge and spec.pkce:
        params |= {"code_challenge": code_challenge, "code_challenge_method": "S256"}
    params |= spec.authorize_params  # declared in providers.yaml, e.g. Google's offline access
    return f"{spec.url('authorization_url', settings)}?{urlencode(params)}"


def _token_request(
    spec: ProviderSpec, settings: dict[str, Any], form: dict[str, str], now: datetime
) -> TokenSet:
    url = spec.url("token_url", settings)
    verify = settings.get("ca_file")  # the sandbox CA; None: the system trust store
    try:
        if verify:
            context = ssl.create_default_context(cafile=verify)
            with httpx.Client(timeout=15, verify=context) as client:
                response = client.post(url, data=form, headers={"Accept": "application/json"})
        else:
            with make_client(15) as client:
                response = client.post(url, data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise TransientError(f"{spec.name} token endpoint unreachable: {exc!r}") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code in (400, 401) and body.get("error") in (
        "invalid_grant",
        "invalid_client",
        "unauthorized_client",
    ):
        detail = body.get("error_description") or body.get("message") or body["error"]
        raise InvalidGrant(f"{spec.name} refused the grant ({body['error']}): {detail}")
    if not response.is_success or "access_token" not in body:
        raise TransientError(
            f"{spec.name} token endpoint answered {response.status_code}: {response.text[:200]}"
        )
    lifetime = int(body.get("expires_in") or spec.default_token_lifetime)
    extra = {
        k: v
        for k, v in body.items()
        if k not in ("access_token", "refresh_token", "expires_in", "token_type", "id_token")
    }
    return TokenSet(
        access_token=body["access_token"],
        refresh_token=body.get("refresh_token"),
        expires_at=now + timedelta(seconds=lifetime),
        extra=extra,
    )


def exchange_code(
    spec: ProviderSpec,
    settings: dict[str, Any],
    client: dict[str, str],
    code: str,
    redirect_uri: str,
    code_verifier: str | None,
) -> TokenSet:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
    }
    if code_verifier and spec.pkce:
        form["code_verifier"] = code_verifier
    if spec.token_scopes:  # Microsoft identity wants them on redemption too
        form["scope"] = " ".join(settings.get("scopes") or spec.scopes)
    return _token_request(spec, settings, form, datetime.now(UTC))


def refresh(spec: ProviderSpec, settings: dict[str, Any], credentials: dict[str, Any]) -> TokenSet:
    if not credentials.get("refresh_token"):
        raise InvalidGrant(f"{spec.name}: no refresh token stored; reconnect the account")
    form = {
        "grant_type": "refresh_token",
        "refresh_token": credentials["refresh_token"],
        "client_id": credentials.get("client_id", ""),
        "client_secret": credentials.get("client_secret", ""),
    }
    if spec.token_scopes:  # required on refresh by Microsoft identity (AADSTS900144)
        form["scope"] = " ".join(settings.get("scopes") or spec.scopes)
    tokens = _token_request(spec, settings, form, datetime.now(UTC))
    if not tokens.refresh_token:  # most providers keep the old one valid
        tokens.refresh_token = credentials["refresh_token"]
    return tokens


def client_credentials(
    spec: ProviderSpec, settings: dict[str, Any], client: dict[str, str]
) -> TokenSet:
    """Server-to-server tokens (Salesforce client credentials flow): no person, no
    refresh token; the engine asks again when the token expires."""
    form = {
        "grant_type": "client_credentials",
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
    }
    if settings.get("scopes"):
        form["scope"] = " ".join(settings["scopes"])
    return _token_request(spec, settings, form, datetime.now(UTC))


def revoke_token(spec: ProviderSpec, settings: dict[str, Any], token: str) -> bool:
    """Revoke ``token`` (a refresh token, else an access token) at the provider.

    False when the provider has no revocation endpoint (Microsoft identity: the
    consent is withdrawn in its admin centre). A token the provider no longer
    knows counts as revoked. Raises ``TransientError`` when it cannot be reached
    or answers 5xx.
    """
    if not (settings.get("revocation_url") or spec.revocation_url):
        return False
    url = spec.url("revocation_url", settings)
    verify = settings.get("ca_file")
    try:
        context = ssl.create_default_context(cafile=verify) if verify else None
        with (httpx.Client(timeout=15, verify=context) if context else make_client(15)) as client:
            if spec.revocation == "delete":
                response = client.delete(url.replace("{token}", token))
            else:
                response = client.post(url, data={"token": token})
    except httpx.HTTPError as exc:
        raise TransientError(f"{spec.name} revocation endpoint unreachable: {exc!r}") from None
    if response.status_code >= 500:
        raise TransientError(f"{spec.name} revocation endpoint answered {response.status_code}")
    # 2xx: revoked; 400/404: unknown or already revoked token: gone either way.
    return response.is_success or response.status_code in (400, 404)
