"""Microsoft identity platform (v2.0 endpoints) for the Graph emulator.

Served by :class:`sandbox.graph.GraphEmulator` on the same TLS port, so the
msal authority is ``https://127.0.0.1:PORT/{tenant}``::

    msal.ConfidentialClientApplication(client_id, client_credential=secret,
        authority=emu.authority, instance_discovery=False, http_client=session)

What msal fetches and parses (msal 1.39 sources): ``{authority}/v2.0/.well-
known/openid-configuration`` at construction (``authorization_endpoint``
and ``token_endpoint`` are required; the token endpoint's first path segment
becomes the tenant), then form POSTs to the token endpoint with
``client_secret`` in the body *and* HTTP Basic. Token responses carry
``token_type, expires_in, ext_expires_in, access_token`` (+ ``scope,
refresh_token, id_token, client_info`` for users; msal builds the account
from ``client_info`` = base64url ``{"uid", "utid"}`` and the id_token
claims, which it decodes without validating).

Honoured: ``client_credentials`` (scope must be ``{resource}/.default`` →
``invalid_scope`` AADSTS1002012 otherwise; app roles in ``roles``),
``authorization_code`` (redirect_uri and PKCE S256/plain checked, single
use), ``refresh_token`` (rotated; the old one stays valid, as in Entra ID),
``/authorize`` auto-consent redirect (``login_hint`` picks the mailbox),
JWKS at ``/{tenant}/discovery/v2.0/keys``. Tokens are real RS256 JWTs
(v1.0 access tokens for Graph as Entra issues them, v2.0 id tokens).
Errors: ``{"error", "error_description": "AADSTSnnnn: ...", "error_codes",
"timestamp", "trace_id", "correlation_id", "error_uri"}`` — 400
``unauthorized_client`` (unknown app), 401 ``invalid_client`` (bad secret),
400 ``invalid_grant`` (bad/used code, revoked or unknown refresh token).

Not emulated: certificates/assertions, device code, ROPC, OBO, conditional
access, consent prompts (every scope is granted), v1 endpoints.
"""

from __future__ import annotations

import hashlib
import html
import json
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import unquote, urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from sandbox.knobs import Clock, Knobs
from sandbox.oauth import b64url, basic_credentials, read_form, redirect_with, verifier_matches


class Mailbox(Protocol):
    """A directory user as the identity platform reads it (``sandbox.graph.Mailbox``)."""

    @property
    def id(self) -> str: ...
    @property
    def upn(self) -> str: ...
    @property
    def display_name(self) -> str: ...


class _Settings(Protocol):
    @property
    def require_token_scope(self) -> bool: ...
    @property
    def access_token_ttl_seconds(self) -> int: ...
    @property
    def auth_code_ttl_seconds(self) -> int: ...


class Directory(Protocol):
    """The emulator serving this identity platform (``sandbox.graph.GraphEmulator``): its
    clock, knobs, lock, settings and users. A protocol, so neither module imports the other."""

    clock: Clock
    knobs: Knobs
    lock: threading.RLock

    @property
    def config(self) -> _Settings: ...
    @property
    def default_mailbox(self) -> Mailbox: ...
    def find_mailbox(self, ident: str) -> Mailbox | None: ...
    def mailbox_by_id(self, user_id: str) -> Mailbox: ...

__all__ = ["AccessToken", "MsApp", "MsIdentity"]

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_RESOURCES = ("https://graph.microsoft.com", "https://graph.microsoft.com/", GRAPH_APP_ID,
                   "https://graph.microsoft.com/v1.0")
RESERVED_SCOPES = {"openid", "profile", "offline_access", "email"}


@dataclass
class MsApp:
    client_id: str
    client_secret: str
    display_name: str = "Relais sandbox"
    roles: tuple[str, ...] = ("Calendars.ReadWrite", "MailboxSettings.Read", "User.Read.All")


@dataclass
class AccessToken:
    token: str
    kind: str  # "app" | "user"
    client_id: str
    expires_at: float
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    user_id: str | None = None
    refresh_token: str | None = None

    def permissions(self) -> set[str]:
        return {p.lower() for p in (self.roles if self.kind == "app" else self.scopes)}


@dataclass
class _Refresh:
    token: str
    client_id: str
    user_id: str
    scopes: tuple[str, ...]
    revoked: bool = False


@dataclass
class _Code:
    client_id: str
    user_id: str
    redirect_uri: str | None
    scopes: tuple[str, ...]
    expires_at: float
    nonce: str | None = None
    challenge: str | None = None
    method: str = "plain"
    extra: dict[str, Any] = field(default_factory=dict)


class AadError(Exception):
    def __init__(self, status: int, error: str, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.code, self.message = status, error, code, message

    def response(self) -> JSONResponse:
        now = datetime.now(UTC)
        trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        return JSONResponse({
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.message} Trace ID: {trace} "
                                 f"Correlation ID: {corr} Timestamp: {stamp}",
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }, status_code=self.status)


class MsIdentity:
    """Token issuance and validation; HTTP handled by :meth:`handle`."""

    def __init__(self, owner: Directory, *, tenant_id: str | None = None,
                 tenant_domain: str = "relaissandbox.onmicrosoft.com",
                 client_id: str | None = None, client_secret: str | None = None) -> None:
        self.owner = owner
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.tenant_domain = tenant_domain
        app = MsApp(client_id or str(uuid.uuid4()),
                    client_secret or f"{secrets.token_urlsafe(3)}8Q~{secrets.token_urlsafe(28)}")
        self.apps: dict[str, MsApp] = {app.client_id: app}
        self.default_app = app
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = b64url(hashlib.sha1(  # noqa: S324 - a key thumbprint, not security
            str(self._key.public_key().public_numbers().n).encode()).digest())
        self.reset()

    def reset(self) -> None:
        self.tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, _Refresh] = {}
        self.codes: dict[str, _Code] = {}

    # ----------------------------------------------------------- helpers
    @property
    def clock(self) -> Any:
        return self.owner.clock

    def _tenant_ok(self, segment: str) -> bool:
        return segment.lower() in (self.tenant_id.lower(), self.tenant_domain.lower(), "common",
                                   "organizations")

    def openid_configuration(self, base: str, segment: str) -> dict[str, Any]:
        generic = segment.lower() in ("common", "organizations")
        path_tenant = segment if generic else self.tenant_id
        issuer_tenant = "{tenantid}" if generic else self.tenant_id
        root = f"{base}/{path_tenant}"
        return {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{issuer_tenant}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
                                 "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat",
                                 "auth_time", "acr", "nonce", "preferred_username", "name",
                                 "tid", "ver", "at_hash", "c_hash", "email"],
            "kerberos_endpoint": f"{root}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        jwk.update({"kid": self.kid, "x5t": self.kid, "use": "sig",
                    "issuer": f"https://login.microsoftonline.com/{self.tenant_id}/v2.0"})
        return {"keys": [jwk]}

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm="RS256",
                          headers={"kid": self.kid, "x5t": self.kid})

    # ------------------------------------------------------------- tokens
    def issue_app_token(self, client_id: str | None = None, *, ttl: float | None = None) -> str:
        app = self.apps[client_id or self.default_app.client_id]
        return self._access_token("app", app, ttl=ttl, roles=app.roles)

    def issue_user_token(self, user: Mailbox, *, client_id: str | None = None,
                         scopes: tuple[str, ...] = ("Calendars.ReadWrite",),
                         ttl: float | None = None, refresh_token: str | None = None) -> str:
        app = self.apps[client_id or self.default_app.client_id]
        return self._access_token("user", app, ttl=ttl, scopes=scopes, user=user,
                                  refresh_token=refresh_token)

    def _access_token(self, kind: str, app: MsApp, *, ttl: float | None,
                      roles: tuple[str, ...] = (), scopes: tuple[str, ...] = (),
                      user: Mailbox | None = None, refresh_token: str | None = None) -> str:
        now = int(self.clock.time())
        ttl = self.owner.config.access_token_ttl_seconds if ttl is None else ttl
        claims: dict[str, Any] = {
            "aud": "https://graph.microsoft.com",
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": now, "nbf": now, "exp": int(now + ttl),
            "app_displayname": app.display_name,
            "appid": app.client_id,
            "appidacr": "1",
            "idp": f"https://sts.windows.net/{self.tenant_id}/",
            "idtyp": kind,
            "tid": self.tenant_id,
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "1.0",
        }
        if kind == "app":
            oid = str(uuid.uuid5(uuid.NAMESPACE_URL, app.client_id))
            claims.update({"oid": oid, "sub": oid, "roles": list(roles)})
        else:
            assert user is not None
            claims.update({"oid": user.id, "sub": b64url(hashlib.sha256(
                (user.id + app.client_id).encode()).digest()), "scp": " ".join(scopes),
                "name": user.display_name, "upn": user.upn, "unique_name": user.upn})
        token = self._sign(claims)
        self.tokens[token] = AccessToken(token, kind, app.client_id, now + ttl, tuple(roles),
                                         tuple(scopes), user.id if user else None,
                                         refresh_token)
        return token

    def _id_token(self, base: str, app: MsApp, user: Mailbox, nonce: str | None) -> str:
        now = int(self.clock.time())
        claims = {
            "aud": app.client_id,
            "iss": f"{base}/{self.tenant_id}/v2.0",
            "iat": now, "nbf": now, "exp": now + 3600, "auth_time": now,
            "name": user.display_name,
            "oid": user.id,
            "preferred_username": user.upn,
            "rh": "0.sandbox",
            "sub": b64url(hashlib.sha256((user.id + app.client_id).encode()).digest()),
            "tid": self.tenant_id,
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "2.0",
        }
        if nonce:
            claims["nonce"] = nonce
        return self._sign(claims)

    def issue_auth_code(self, user: Mailbox, *, client_id: str | None = None,
                        redirect_uri: str | None = None,
                        scopes: tuple[str, ...] = ("openid", "profile", "offline_access",
                                                   "Calendars.ReadWrite"),
                        nonce: str | None = None, challenge: str | None = None,
                        method: str = "plain") -> str:
        code = "0.A" + secrets.token_urlsafe(80)
        self.codes[code] = _Code(client_id or self.default_app.client_id, user.id, redirect_uri,
                                 tuple(scopes), self.clock.time() +
                                 self.owner.config.auth_code_ttl_seconds, nonce, challenge,
                                 method)
        return code

    def _new_refresh(self, client_id: str, user_id: str, scopes: tuple[str, ...]) -> str:
        token = "1.A" + secrets.token_urlsafe(120)
        self.refresh_tokens[token] = _Refresh(token, client_id, user_id, scopes)
        return token

    def expire_access_tokens(self, token: str | None = None) -> int:
        n = 0
        for tok in self.tokens.values():
            if token is None or tok.token == token:
                tok.expires_at = self.clock.time() - 1
                n += 1
        return n

    def revoke_refresh_token(self, token: str | None = None) -> int:
        n = 0
        for rt in self.refresh_tokens.values():
            if token is None or rt.token == token:
                rt.revoked = True
                n += 1
        return n

    def validate(self, bearer: str) -> AccessToken | str:
        """The token's record, or the Graph error message explaining the 401."""
        if not bearer:
            return "Access token is empty."
        tok = self.tokens.get(bearer)
        if tok is None:
            return "Access token validation failure. Invalid audience." if bearer.count(
                ".") == 2 else "IDX14100: JWT is not well formed, there are no dots (.)."
        if tok.expires_at <= self.clock.time():
            return "Lifetime validation failed, the token is expired."
        return tok

    # --------------------------------------------------------------- HTTP
    async def handle(self, request: Request, parts: list[str]) -> Response | None:
        """Identity routes (``/{tenant}/...``); None when the path is not one."""
        if not parts:
            return None
        tenant, rest = parts[0], parts[1:]
        base = str(request.base_url).rstrip("/")
        routes = {
            ("GET", ("v2.0", ".well-known", "openid-configuration")): "oidc",
            ("GET", (".well-known", "openid-configuration")): "oidc",
            ("GET", ("discovery", "v2.0", "keys")): "keys",
            ("GET", ("discovery", "keys")): "keys",
            ("GET", ("oauth2", "v2.0", "authorize")): "authorize",
            ("POST", ("oauth2", "v2.0", "token")): "token",
        }
        kind = routes.get((request.method, tuple(rest)))
        if kind is None:
            return None
        if not self._tenant_ok(tenant):
            err = AadError(400, "invalid_tenant", 90002,
                           f"Tenant '{tenant}' not found. Check to make sure you have the correct "
                           "tenant ID and are signing into the correct cloud.")
            return err.response()
        if kind == "oidc":
            return JSONResponse(self.openid_configuration(base, tenant))
        if kind == "keys":
            return JSONResponse(self.jwks())
        if kind == "authorize":
            return self._authorize(request)
        form = read_form(await request.body())
        basic = basic_credentials(request.headers.get("authorization", ""))
        if basic is not None:  # form-urlencoded id and secret (RFC 6749 2.3.1)
            form.setdefault("client_id", unquote(basic[0].replace("+", " ")))
            form.setdefault("client_secret", unquote(basic[1].replace("+", " ")))
        try:
            with self.owner.lock:
                return JSONResponse(self._token(form, base))
        except AadError as exc:
            return exc.response()

    def _authorize(self, request: Request) -> Response:
        params = request.query_params
        app = self.apps.get(params.get("client_id", ""))
        if app is None:
            return AadError(400, "unauthorized_client", 700016,
                            f"Application with identifier '{params.get('client_id')}' was not "
                            f"found in the directory '{self.tenant_domain}'.").response()
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:
            return AadError(400, "invalid_request", 900144,
                            "The request body must contain the following parameter: "
                            "'redirect_uri'.").response()
        with self.owner.lock:
            user = self.owner.find_mailbox(params.get("login_hint") or "") or \
                self.owner.default_mailbox
            code = self.issue_auth_code(
                user, client_id=app.client_id, redirect_uri=redirect_uri,
                scopes=tuple((params.get("scope") or "openid").split()),
                nonce=params.get("nonce"), challenge=params.get("code_challenge"),
                method=params.get("code_challenge_method") or "plain")
        query = {"code": code, "session_state": str(uuid.uuid4())}
        if params.get("state") is not None:
            query["state"] = params["state"]
        self.owner.knobs.count("ms.authorize")
        if params.get("response_mode") == "fragment":
            return RedirectResponse(f"{redirect_uri}#{urlencode(query)}", 302)
        if params.get("response_mode") == "form_post":  # the page a browser auto-submits
            fields = "".join(f'<input type="hidden" name="{html.escape(k)}" '
                             f'value="{html.escape(v)}"/>' for k, v in query.items())
            page = (f'<html><body onload="document.forms[0].submit()"><form method="POST" '
                    f'action="{html.escape(redirect_uri)}">{fields}</form></body></html>')
            return HTMLResponse(page)
        return redirect_with(redirect_uri, query)

    def _token(self, form: dict[str, str], base: str) -> dict[str, Any]:
        client_id = form.get("client_id", "")
        app = self.apps.get(client_id)
        if app is None:
            raise AadError(400, "unauthorized_client", 700016,
                           f"Application with identifier '{client_id}' was not found in the "
                           f"directory '{self.tenant_domain}'.")
        if form.get("client_secret") != app.client_secret:
            raise AadError(401, "invalid_client", 7000215,
                           "Invalid client secret provided. Ensure the secret being sent in the "
                           "request is the client secret value, not the client secret ID, for a "
                           f"secret added to app '{client_id}'.")
        grant = form.get("grant_type")
        ttl = self.owner.config.access_token_ttl_seconds
        if grant == "client_credentials":
            scope = form.get("scope", "")
            resource, _, suffix = scope.rpartition("/")
            if suffix != ".default" or len(scope.split()) != 1:
                raise AadError(400, "invalid_scope", 1002012,
                               f"The provided value for scope {scope} is not valid. Client "
                               "credential flows must have a scope value with /.default "
                               "suffixed to the resource identifier (application ID URI).")
            if resource not in GRAPH_RESOURCES:
                raise AadError(400, "invalid_resource", 500011,
                               f"The resource principal named {resource} was not found in the "
                               f"tenant named {self.tenant_domain}.")
            self.owner.knobs.count("ms.token.client_credentials")
            return {"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl,
                    "access_token": self.issue_app_token(app.client_id)}
        if grant in ("authorization_code", "refresh_token") and not form.get("scope") and \
                self.owner.config.require_token_scope:
            raise AadError(400, "invalid_request", 900144,
                           "The request body must contain the following parameter: 'scope'.")
        if grant == "authorization_code":
            code = self.codes.pop(form.get("code", ""), None)
            if code is None or code.client_id != app.client_id or \
                    code.expires_at < self.clock.time():
                raise AadError(400, "invalid_grant", 70008,
                               "The provided authorization code or refresh token has expired "
                               "due to inactivity, or was already redeemed.")
            if code.redirect_uri and form.get("redirect_uri") != code.redirect_uri:
                raise AadError(400, "invalid_grant", 50148,
                               "The redirect_uri does not match the one used to obtain the "
                               "authorization code.")
            if code.challenge and not verifier_matches(code.challenge, code.method,
                                                       form.get("code_verifier", "")):
                raise AadError(400, "invalid_grant", 501481,
                               "The Code_Verifier does not match the code_challenge "
                               "supplied in the authorization request.")
            user = self.owner.mailbox_by_id(code.user_id)
            requested = tuple(form["scope"].split()) if form.get("scope") else code.scopes
            self.owner.knobs.count("ms.token.authorization_code")
            return self._user_tokens(base, app, user, requested, code.nonce)
        if grant == "refresh_token":
            rt = self.refresh_tokens.get(form.get("refresh_token", ""))
            if rt is None or rt.client_id != app.client_id:
                raise AadError(400, "invalid_grant", 9002313,
                               "Invalid request. Request is malformed or invalid.")
            if rt.revoked:
                raise AadError(400, "invalid_grant", 50173,
                               "The provided grant has expired due to it being revoked, a fresh "
                               "auth token is needed. The user might have changed or reset "
                               "their password.")
            user = self.owner.mailbox_by_id(rt.user_id)
            requested = tuple(form["scope"].split()) if form.get("scope") else rt.scopes
            self.owner.knobs.count("ms.token.refresh_token")
            return self._user_tokens(base, app, user, requested, None)
        raise AadError(400, "unsupported_grant_type", 70003,
                       f"The app requested an unsupported grant type '{grant}'.")

    def _user_tokens(self, base: str, app: MsApp, user: Mailbox, requested: tuple[str, ...],
                     nonce: str | None) -> dict[str, Any]:
        scopes = tuple(s.removeprefix("https://graph.microsoft.com/") for s in requested
                       if s.lower() not in RESERVED_SCOPES) or ("User.Read",)
        ttl = self.owner.config.access_token_ttl_seconds
        refresh = None
        if "offline_access" in {s.lower() for s in requested}:
            refresh = self._new_refresh(app.client_id, user.id, tuple(requested))
        out: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(scopes),
            "expires_in": ttl,
            "ext_expires_in": ttl,
            "access_token": self.issue_user_token(user, client_id=app.client_id, scopes=scopes,
                                                  refresh_token=refresh),
        }
        if refresh:
            out["refresh_token"] = refresh
        if "openid" in {s.lower() for s in requested}:
            out["id_token"] = self._id_token(base, app, user, nonce)
            out["client_info"] = b64url(json.dumps({"uid": user.id,
                                                     "utid": self.tenant_id}).encode())
        return out
