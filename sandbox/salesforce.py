"""Salesforce REST emulator (API v59.0), wire-faithful for simple-salesforce.

Serves TLS by default (simple-salesforce always builds ``https://`` URLs).
What it honours, from the public REST documentation:

* OAuth ``/services/oauth2/token`` (authorization_code, refresh_token,
  client_credentials) answering ``access_token, instance_url, id, issued_at
  (epoch ms, a string), signature, scope, token_type`` and no ``expires_in``;
  ``/services/oauth2/authorize`` (auto-consent redirect; a PKCE
  ``code_challenge`` is checked against the ``code_verifier``), ``/revoke``,
  ``/userinfo``. Sessions expire after ``session_timeout_seconds`` of
  inactivity → 401 ``INVALID_SESSION_ID``; revoked refresh tokens → 400
  ``invalid_grant``.
* sObjects Lead, Contact, Task, Event: describe, create, get, update,
  delete, upsert by external id (201 created; update answers 200 with
  ``created: false`` as v46+ does, or 204 with ``upsert_update_status=204``;
  300 when several records match), ``updated/`` and ``deleted/``.
* sObject Collections (``/composite/sobjects``, ≤ 200 records, allOrNone),
  Composite (``/composite``, ≤ 25 subrequests of which ≤ 5 queries or
  Collections, ``@{ref.path}`` references, one API call), SOQL subset (see
  ``sandbox.soql``) with ``nextRecordsUrl`` paging, ``/limits``, ``/services/data/`` versions.
* Duplicate rules on Lead/Contact Email and Phone → 400
  ``DUPLICATES_DETECTED`` with the ``duplicateResut`` body seen in the wild,
  bypassed by ``Sforce-Duplicate-Rule-Header: allowSave=true``.
* Rolling-24 h API allocation; ``Sforce-Limit-Info: api-usage=N/M`` on every
  data API response; 403 ``REQUEST_LIMIT_EXCEEDED`` past it.
* Error bodies are JSON arrays ``[{"message", "errorCode", "fields"?}]``.

Deliberately not emulated: Bulk API, SOAP login, SOSL search, relationship
queries, triggers/validation rules, field-level security, sharing, record
types, CDC/streaming, per-app usage. Duplicate matching is exact (case-
insensitive email, digits-only phone) within one sObject type.
"""

from __future__ import annotations

import base64
import collections
import copy
import hashlib
import hmac
import itertools
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from sandbox.knobs import ASGIApp, Clock, Receive, Scope, Send, control_routes
from sandbox.oauth import (
    basic_credentials,
    read_form,
    redirect_with,
    token_control_routes,
    verifier_matches,
)
from sandbox.routing import RouteTable, segments
from sandbox.server import Emulator
from sandbox.soql import FieldInfo, SoqlError, compile_soql, parse_datetime

__all__ = ["SalesforceConfig", "SalesforceEmulator", "sf_datetime", "sf_id18"]

JSON_CT = "application/json;charset=UTF-8"
KEY_PREFIX = {"Lead": "00Q", "Contact": "003", "Task": "00T", "Event": "00U"}
PREFIX_OBJECT = {v: k for k, v in KEY_PREFIX.items()}
SESSION_EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
NOT_FOUND = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
DUP_MESSAGE = "You're creating a duplicate record. We recommend you use an existing record instead."
ROLLED_BACK = (
    "The transaction was rolled back since another operation in the same transaction failed."
)
_ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[A-Z0-5]{3})?$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def sf_datetime(dt: datetime) -> str:
    """Salesforce's datetime wire format: ``2024-01-31T08:00:00.000+0000``."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+0000"


def sf_id18(id15: str) -> str:
    """Append Salesforce's case-safe checksum to a 15-character id."""
    suffix = ""
    for i in range(3):
        chunk = id15[i * 5 : i * 5 + 5]
        flags = sum(1 << j for j, c in enumerate(chunk) if "A" <= c <= "Z")
        suffix += _CHECKSUM[flags]
    return id15 + suffix


def normalize_id(value: str) -> str:
    return sf_id18(value) if isinstance(value, str) and len(value) == 15 else value


def _b62(n: int, width: int) -> str:
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = _B62[r] + out
    return out.rjust(width, "0")


# ---------------------------------------------------------------- schema


@dataclass
class FieldDef:
    name: str
    type: str
    label: str = ""
    createable: bool = True
    updateable: bool = True
    nillable: bool = True
    external_id: bool = False
    unique: bool = False
    length: int = 0
    reference_to: tuple[str, ...] = ()
    default: Any = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label or self.name,
            "type": self.type,
            "length": self.length,
            "createable": self.createable,
            "updateable": self.updateable,
            "nillable": self.nillable,
            "externalId": self.external_id,
            "unique": self.unique,
            "idLookup": self.type == "id" or self.external_id,
            "custom": self.name.endswith("__c"),
            "defaultedOnCreate": self.default is not None or not self.createable,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.name[:-2] if self.type == "reference" else None,
            "filterable": True,
            "sortable": self.type != "textarea",
            "picklistValues": [],
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
        }


_SOAP_TYPES = {
    "id": "tns:ID", "reference": "tns:ID", "datetime": "xsd:dateTime", "date": "xsd:date",
    "boolean": "xsd:boolean", "int": "xsd:int", "double": "xsd:double",
}
_SYSTEM = {"Id", "CreatedDate", "LastModifiedDate", "SystemModstamp", "IsDeleted",
           "CreatedById", "LastModifiedById"}
REQUIRED_ON_CREATE = {"Lead": ("LastName", "Company"), "Contact": ("LastName",)}


def _build_schema(ext_field: str, ext_unique: bool) -> dict[str, dict[str, FieldDef]]:
    def system() -> list[FieldDef]:
        return [
            FieldDef("Id", "id", "Record ID", False, False, False, length=18),
            FieldDef("IsDeleted", "boolean", "Deleted", False, False, False),
            FieldDef("CreatedDate", "datetime", "Created Date", False, False, False),
            FieldDef("CreatedById", "reference", "Created By ID", False, False, False, length=18,
                     reference_to=("User",)),
            FieldDef("LastModifiedDate", "datetime", "Last Modified Date", False, False, False),
            FieldDef("LastModifiedById", "reference", "Last Modified By ID", False, False, False,
                     length=18, reference_to=("User",)),
            FieldDef("SystemModstamp", "datetime", "System Modstamp", False, False, False),
            FieldDef("OwnerId", "reference", "Owner ID", nillable=False, length=18,
                     reference_to=("User",)),
        ]

    def s(name: str, length: int = 255, ftype: str = "string", label: str = "") -> FieldDef:
        return FieldDef(name, ftype, label or name, length=length)

    ext = FieldDef(ext_field, "string", "Relais Id", external_id=True, unique=ext_unique,
                   length=255)
    person = [
        s("FirstName", 40, label="First Name"), s("LastName", 80, label="Last Name"),
        s("Email", 80, "email"), s("Phone", 40, "phone"), s("MobilePhone", 40, "phone"),
        s("Title", 128), s("Description", 32000, "textarea"), s("LeadSource", 255, "picklist"),
    ]
    lead = system() + person + [
        s("Company", 255), s("Status", 255, "picklist"), s("City", 40), s("PostalCode", 20),
        s("Country", 80), s("Street", 255, "textarea"), ext,
    ]
    contact = system() + person + [
        FieldDef("AccountId", "reference", "Account ID", length=18, reference_to=("Account",)),
        s("MailingCity", 40), s("MailingPostalCode", 20), s("MailingCountry", 80),
        copy.copy(ext),
    ]
    who = FieldDef("WhoId", "reference", "Name ID", length=18, reference_to=("Contact", "Lead"))
    what = FieldDef("WhatId", "reference", "Related To ID", length=18,
                    reference_to=("Account", "Opportunity"))
    activity = [copy.copy(who), copy.copy(what), s("Subject", 255, "combobox"),
                s("Description", 32000, "textarea"), s("Type", 255, "picklist")]
    task = system() + activity + [
        s("Status", 255, "picklist"), s("Priority", 255, "picklist"),
        FieldDef("ActivityDate", "date", "Due Date Only"),
        s("TaskSubtype", 255, "picklist"), s("CallType", 255, "picklist"),
        FieldDef("CallDurationInSeconds", "int", "Call Duration"),
        s("CallDisposition", 255), s("CallObject", 255), copy.copy(ext),
    ]
    event = system() + activity + [
        FieldDef("StartDateTime", "datetime", "Start Date Time"),
        FieldDef("EndDateTime", "datetime", "End Date Time"),
        FieldDef("ActivityDateTime", "datetime", "Due Date Time"),
        FieldDef("DurationInMinutes", "int", "Duration"),
        FieldDef("IsAllDayEvent", "boolean", "All-Day Event", nillable=False),
        s("Location", 255), s("ShowAs", 255, "picklist"), copy.copy(ext),
    ]
    return {
        name: {f.name: f for f in fields}
        for name, fields in (("Lead", lead), ("Contact", contact), ("Task", task),
                             ("Event", event))
    }


DEFAULTS = {
    "Lead": {"Status": "Open - Not Contacted"},
    "Task": {"Status": "Not Started", "Priority": "Normal"},
    "Event": {"IsAllDayEvent": False, "ShowAs": "Busy"},
}


# ---------------------------------------------------------------- errors


class SfError(Exception):
    """An API error: HTTP status + Salesforce error list."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or []
        self.extra = extra or {}

    def rest_body(self) -> list[dict[str, Any]]:
        body: dict[str, Any] = dict(self.extra)
        body.update({"errorCode": self.code, "message": self.message})
        if self.fields or self.code not in ("NOT_FOUND",):
            body["fields"] = self.fields
        return [body]

    def collection_error(self) -> dict[str, Any]:
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


@dataclass(frozen=True)
class _Call:
    """One REST call under ``/services/data/{version}``, as the route handlers read it."""

    method: str
    version: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    payload: Any
    allow_save: bool
    in_composite: bool


@dataclass
class SfResponse:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _err(exc: SfError) -> SfResponse:
    return SfResponse(exc.status, exc.rest_body())


# ---------------------------------------------------------------- config


@dataclass
class SalesforceConfig:
    api_version: str = "59.0"
    daily_api_limit: int = 15000
    session_timeout_seconds: float = 7200.0
    query_page_size: int = 2000
    external_id_field: str = "Relais_Id__c"
    external_id_unique: bool = True
    duplicate_rules_enabled: bool = True
    duplicate_match_fields: dict[str, list[str]] = field(
        default_factory=lambda: {"Lead": ["Email", "Phone"], "Contact": ["Email", "Phone"]}
    )
    upsert_update_status: int = 200
    # Of a Composite's 25 subrequests at most 5 may be queries (query, queryAll,
    # query-more) or sObject Collections: "Up to 5 of these subrequests can be sObject
    # Collections or query operations" (REST API guide, Composite,
    # https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_composite_post.htm).
    composite_query_limit: int = 5
    # The delete log behind getDeleted: Salesforce keeps it 15 days but may purge it
    # earlier ("earliestDateAvailable: timestamp of the last physically deleted object"),
    # and a call covers deletions only up to ``latestDateCovered`` (getDeleted, REST API
    # guide: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_getdeleted.htm).
    # Seconds the log lags behind now (what latestDateCovered trails by).
    deleted_log_lag_seconds: float = 0.0
    client_credentials_enabled: bool = True
    rotate_refresh_tokens: bool = False
    instance_url: str | None = None  # what token responses advertise (default: own URL)


@dataclass
class _Session:
    token: str
    client_id: str
    user_id: str
    issued_at: float
    last_used: float
    refresh_token: str | None = None
    revoked: bool = False


@dataclass
class _RefreshToken:
    token: str
    client_id: str
    scope: str
    revoked: bool = False


@dataclass
class _Cursor:
    sobject: str
    rows: list[dict[str, Any]]
    page_size: int
    touched: float


# ---------------------------------------------------------------- emulator


class SalesforceEmulator(Emulator):
    name = "salesforce"
    label = "Salesforce"
    default_tls = True

    def __init__(
        self,
        *,
        config: SalesforceConfig | None = None,
        clock: Clock | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> None:
        super().__init__(clock=clock)
        self.config = config or SalesforceConfig()
        self.org_id = sf_id18("00D5g00000Sbx01")
        self.user_id = sf_id18("0055g00000Sbx01")
        self.username = "relais.sandbox@example.com"
        self.client_id = client_id or "3MVG9sandbox" + secrets.token_hex(12)
        self.client_secret = client_secret or secrets.token_hex(32)
        self.sessions: dict[str, _Session] = {}
        self.refresh_tokens: dict[str, _RefreshToken] = {}
        self.auth_codes: dict[str, tuple[str, str | None, float]] = {}
        self.challenges: dict[str, tuple[str, str]] = {}  # code -> PKCE (challenge, method)
        self._api_calls: collections.deque[float] = collections.deque()
        self._seq = itertools.count(1)
        self._rebuild_schema()
        self.reset_data()
        # ready-made credentials for tests and the demo
        self.refresh_token = self._new_refresh_token(self.client_id, "api refresh_token")
        self.session_id = self.issue_session(refresh_token=self.refresh_token)

    # ------------------------------------------------------------ public API
    @property
    def base_path(self) -> str:
        return f"/services/data/v{self.config.api_version}"

    @property
    def instance_url(self) -> str:
        return self.config.instance_url or self.url

    def credentials(self) -> dict[str, Any]:
        return {
            "instance_url": self.url if self.running else None,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "username": self.username,
            "session_id": self.session_id,
            "refresh_token": self.refresh_token,
            "org_id": self.org_id,
            "api_version": self.config.api_version,
            "ca_file": str(self.ca_file) if self.ca_file else None,
        }

    def issue_session(self, *, client_id: str | None = None,
                      refresh_token: str | None = None) -> str:
        """Mint a valid access token (session id) without the OAuth dance."""
        with self.lock:
            token = f"{self.org_id[:15]}!AQ" + secrets.token_urlsafe(72)
            now = self.clock.time()
            self.sessions[token] = _Session(token, client_id or self.client_id, self.user_id,
                                            now, now, refresh_token)
            return token

    def issue_auth_code(self, *, redirect_uri: str | None = None,
                        challenge: str | None = None, method: str = "S256") -> str:
        with self.lock:
            code = "aPrx" + secrets.token_urlsafe(40)
            self.auth_codes[code] = (self.client_id, redirect_uri, self.clock.time() + 900)
            if challenge:
                self.challenges[code] = (challenge, method)
            return code

    def expire_sessions(self, token: str | None = None) -> int:
        """Expire one session (or all): the next call answers 401 INVALID_SESSION_ID."""
        with self.lock:
            targets = [self.sessions[token]] if token in self.sessions else (
                [] if token else list(self.sessions.values()))
            for s in targets:
                s.last_used = -1e12
            return len(targets)

    def revoke_refresh_token(self, token: str) -> bool:
        with self.lock:
            rt = self.refresh_tokens.get(token)
            if rt is None:
                return False
            rt.revoked = True
            for s in self.sessions.values():
                if s.refresh_token == token:
                    s.revoked = True
            return True

    def api_usage(self) -> tuple[int, int]:
        with self.lock:
            self._prune_calls()
            return len(self._api_calls), self.config.daily_api_limit

    def set_api_usage(self, used: int) -> None:
        """Pretend ``used`` calls were made in the last 24 h."""
        with self.lock:
            now = self.clock.time()
            self._api_calls = collections.deque([now] * used)

    def records(self, sobject: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Wire-shaped copies of the stored records of one sObject."""
        with self.lock:
            obj = self._object_name(sobject)
            if obj is None:
                raise KeyError(sobject)
            out = [self._wire(obj, r) for r in self.store[obj].values()]
            if include_deleted:
                out += [self._wire(obj, r) for r, _ in self.deleted[obj].values()]
            return out

    def get_record(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self._object_name(sobject)
            rec = self.store.get(obj or "", {}).get(normalize_id(record_id))
            return self._wire(obj, rec) if rec and obj else None

    def find(self, sobject: str, **criteria: Any) -> list[dict[str, Any]]:
        """Records whose fields equal ``criteria`` (strings compared case-insensitively)."""

        def eq(a: Any, b: Any) -> bool:
            if isinstance(a, str) and isinstance(b, str):
                return a.lower() == b.lower()
            return bool(a == b)

        return [r for r in self.records(sobject)
                if all(eq(r.get(k), v) for k, v in criteria.items())]

    def purge_deleted_log(self, sobject: str, until: datetime | None = None) -> None:
        """Physically delete the log of deleted records up to ``until`` (now), as the
        recycle bin's purge does: getDeleted then starts there (earliestDateAvailable)."""
        with self.lock:
            obj = self._object_name(sobject) or sobject
            until = until or self.clock.now()
            self.purged_until[obj] = until
            self.deleted[obj] = {i: (r, d) for i, (r, d) in self.deleted[obj].items()
                                 if d >= until}

    def insert(self, sobject: str, data: dict[str, Any], *, allow_duplicates: bool = True) -> str:
        """Seed a record directly (no API call counted)."""
        with self.lock:
            obj = self._object_name(sobject)
            if obj is None:
                raise KeyError(sobject)
            return self._create(obj, data, allow_save=allow_duplicates)

    # --------------------------------------------------------- Emulator API
    def reset_data(self) -> None:
        self.store: dict[str, dict[str, dict[str, Any]]] = {o: {} for o in KEY_PREFIX}
        self.deleted: dict[str, dict[str, tuple[dict[str, Any], datetime]]] = {
            o: {} for o in KEY_PREFIX}
        self.cursors: collections.OrderedDict[str, _Cursor] = collections.OrderedDict()
        self.purged_until: dict[str, datetime] = {}  # sObject -> delete log purged up to
        self._api_calls = collections.deque()
        if hasattr(self, "session_id"):  # keep only the ready-made credentials, valid again
            rt = self.refresh_tokens[self.refresh_token]
            rt.revoked = False
            session = self.sessions[self.session_id]
            session.revoked = False
            session.last_used = self.clock.time()
            self.refresh_tokens = {rt.token: rt}
            self.sessions = {session.token: session}
            self.auth_codes.clear()
            self.challenges.clear()

    def config_dict(self) -> dict[str, Any]:
        data = asdict(self.config)
        data["api_usage"] = dict(zip(("used", "max"), self.api_usage(), strict=True))
        return data

    def reconfigured(self, settings: dict[str, Any]) -> None:
        if not settings or {"external_id_field", "external_id_unique"} & set(settings):
            self._rebuild_schema()

    def snapshot(self) -> dict[str, Any]:
        used, limit = self.api_usage()
        return {
            "records": {o: self.records(o) for o in KEY_PREFIX},
            "deleted": {o: [{"id": i, "deletedDate": sf_datetime(d)}
                            for i, (_, d) in self.deleted[o].items()] for o in KEY_PREFIX},
            "api_usage": {"used": used, "max": limit},
            "sessions": len(self.sessions),
        }

    def fault_response(self, status: int) -> tuple[int, dict[str, str], bytes]:
        code = {500: "UNKNOWN_EXCEPTION", 502: "SERVER_UNAVAILABLE", 503: "SERVER_UNAVAILABLE",
                504: "REQUEST_RUNNING_TOO_LONG", 429: "REQUEST_LIMIT_EXCEEDED"}.get(
            status, "UNKNOWN_EXCEPTION")
        body = [{"message": "sandbox injected fault", "errorCode": code}]
        return status, {"content-type": JSON_CT}, json.dumps(body).encode()

    def control_routes(self) -> list[BaseRoute]:
        def usage(data: dict[str, Any], request: Request) -> dict[str, Any]:
            if "used" in data:
                self.set_api_usage(int(data["used"]))
            used, limit = self.api_usage()
            return {"used": used, "max": limit}

        def records(data: dict[str, Any], request: Request) -> Response:
            try:
                return JSONResponse({"records": self.records(
                    request.path_params["sobject"],
                    include_deleted=request.query_params.get("deleted") == "true")})
            except KeyError:
                return JSONResponse({"error": "unknown sObject"}, status_code=404)

        return [
            *token_control_routes(
                credentials=self.credentials,
                token=lambda data: self.issue_session(),
                expire=self.expire_sessions,
                revoke=lambda token: self.revoke_refresh_token(token or ""),
                code=lambda data: self.issue_auth_code(redirect_uri=data.get("redirect_uri")),
                tokens="/sessions",
            ),
            *control_routes({
                "/api-usage": ("GET|POST", usage),
                "/records/{sobject}": ("GET", records),
            }),
        ]

    # ----------------------------------------------------------------- ASGI
    def build_app(self) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            request = Request(scope, receive)
            raw_path = scope.get("raw_path") or scope["path"].encode()
            parts = segments(raw_path.decode("latin-1"))
            if parts[:2] == ["services", "oauth2"]:
                response = await self._oauth(request, parts[2:])
                await response(scope, receive, send)
                return
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"),
                             keep_blank_values=True)
            with self.lock:
                sf = self._handle_http(scope["method"], parts, query, headers, body)
            await self._send(sf, scope, receive, send)

        return app

    async def _send(self, sf: SfResponse, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(sf.headers)
        if sf.status == 204 or sf.body is None:
            response = Response(b"", status_code=sf.status, headers=headers)
        else:
            headers.setdefault("content-type", JSON_CT)
            response = Response(json.dumps(sf.body).encode(), status_code=sf.status,
                                headers=headers)
        await response(scope, receive, send)

    def _limit_header(self) -> dict[str, str]:
        self._prune_calls()
        return {"Sforce-Limit-Info":
                f"api-usage={len(self._api_calls)}/{self.config.daily_api_limit}"}

    def _prune_calls(self) -> None:
        horizon = self.clock.time() - 86400
        calls = self._api_calls
        while calls and calls[0] <= horizon:
            calls.popleft()

    def _handle_http(self, method: str, parts: list[str], query: dict[str, list[str]],
                     headers: dict[str, str], body: bytes) -> SfResponse:
        if parts[:2] != ["services", "data"]:
            return SfResponse(404, NOT_FOUND)
        if len(parts) == 2:
            return SfResponse(200, self._versions())
        version = parts[2]
        if not re.fullmatch(r"v\d+\.\d", version) or float(version[1:]) > float(
                self.config.api_version) or float(version[1:]) < 20:
            return SfResponse(404, NOT_FOUND)
        # authentication
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not self._session_valid(token):
            return SfResponse(401, SESSION_EXPIRED, self._limit_header())
        self._prune_calls()
        if len(self._api_calls) >= self.config.daily_api_limit:
            return SfResponse(403, [{"message": "TotalRequests Limit exceeded.",
                                     "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
                              self._limit_header())
        self._api_calls.append(self.clock.time())
        self.knobs.count("sf.api_calls")
        try:
            payload = json.loads(body) if body.strip() else None
        except ValueError as exc:
            resp = SfResponse(400, [{"message": f"Unexpected character: {exc}",
                                     "errorCode": "JSON_PARSER_ERROR"}])
        else:
            resp = self._dispatch(method, version, parts[3:], query, headers, payload)
        resp.headers.update(self._limit_header())
        return resp

    def _session_valid(self, token: str) -> bool:
        session = self.sessions.get(token)
        if session is None or session.revoked:
            return False
        now = self.clock.time()
        if now - session.last_used > self.config.session_timeout_seconds:
            return False
        session.last_used = now
        return True

    def _versions(self) -> list[dict[str, str]]:
        latest = int(float(self.config.api_version))
        names = {59: "Winter '24", 58: "Summer '23", 57: "Spring '23", 56: "Winter '23"}
        return [{"label": names.get(v, f"v{v}"), "url": f"/services/data/v{v}.0",
                 "version": f"{v}.0"} for v in range(max(20, latest - 5), latest + 1)]

    # ------------------------------------------------------------- dispatch
    def _dispatch(self, method: str, version: str, rest: list[str],
                  query: dict[str, list[str]], headers: dict[str, str], payload: Any,
                  *, in_composite: bool = False) -> SfResponse:
        call = _Call(method, version, query, headers, payload, _allow_save(headers), in_composite)
        try:
            found = self._api_routes.match(method, rest)
            if found is not None:
                return found.handler(call, **found.params)
            if method not in ("GET", "POST", "PATCH", "DELETE", "PUT", "HEAD"):
                raise SfError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed.")
            return SfResponse(404, NOT_FOUND)
        except SfError as exc:
            return _err(exc)

    @cached_property
    def _api_routes(self) -> RouteTable[Callable[..., SfResponse]]:
        # paths under /services/data/vXX.X; handler(call, **captures); first match wins
        return RouteTable([
            ("*", "", lambda c: SfResponse(200, {
                k: f"/services/data/{c.version}/{k}"
                for k in ("sobjects", "query", "queryAll", "composite", "limits")})),
            ("GET", "limits", lambda c: self._limits()),
            ("GET", "query", lambda c: self._query_endpoint(c, "query")),
            ("GET", "queryAll", lambda c: self._query_endpoint(c, "queryAll")),
            ("GET", "query/{locator}",
             lambda c, locator: self._query_more(c.version, "query", locator)),
            ("GET", "queryAll/{locator}",
             lambda c, locator: self._query_more(c.version, "queryAll", locator)),
            ("*", "sobjects/{rest*}", lambda c, rest: self._sobjects(
                c.method, c.version, rest, c.query, c.payload, c.allow_save)),
            ("POST", "composite", self._composite_endpoint),
            ("*", "composite/sobjects/{rest*}", lambda c, rest: self._collections(
                c.method, c.version, rest, c.query, c.payload, c.allow_save)),
        ])

    def _limits(self) -> SfResponse:
        used, limit = len(self._api_calls), self.config.daily_api_limit
        return SfResponse(200, {
            "DailyApiRequests": {"Max": limit, "Remaining": max(0, limit - used)},
            "DataStorageMB": {"Max": 5, "Remaining": 5},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
        })

    def _query_endpoint(self, call: _Call, endpoint: str) -> SfResponse:
        q = (call.query.get("q") or [""])[0]
        size = _batch_size(call.headers, self.config.query_page_size)
        return self._query(call.version, q, include_deleted=endpoint == "queryAll",
                           page_size=size, endpoint=endpoint)

    def _composite_endpoint(self, call: _Call) -> SfResponse:
        if call.in_composite:
            raise SfError(400, "INVALID_INPUT", "Composite requests can't be nested")
        return self._composite(call.version, call.headers, call.payload)

    # ------------------------------------------------------------- sObjects
    def _object_name(self, name: str) -> str | None:
        for obj in self.schema:
            if obj.lower() == name.lower():
                return obj
        return None

    def _require_object(self, name: str) -> str:
        obj = self._object_name(name)
        if obj is None:
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        return obj

    def _sobjects(self, method: str, version: str, rest: list[str],
                  query: dict[str, list[str]], payload: Any, allow_save: bool) -> SfResponse:
        base = f"/services/data/{version}"
        if not rest:
            if method != "GET":
                raise SfError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed.")
            return SfResponse(200, {"encoding": "UTF-8", "maxBatchSize": 200,
                                    "sobjects": [self._object_info(o, base) for o in self.schema]})
        obj = self._require_object(rest[0])
        if len(rest) == 1:
            if method == "GET":
                return SfResponse(200, {"objectDescribe": self._object_info(obj, base),
                                        "recentItems": []})
            if method == "POST":
                data = _require_dict(payload)
                new_id = self._create(obj, data, allow_save=allow_save)
                return SfResponse(201, {"id": new_id, "success": True, "errors": []})
            raise SfError(405, "METHOD_NOT_ALLOWED",
                          f"HTTP Method '{method}' not allowed. Allowed are GET,HEAD,POST")
        sub = rest[1]
        if len(rest) == 2 and sub == "describe" and method == "GET":
            return SfResponse(200, self._describe(obj, base))
        if len(rest) == 2 and sub in ("updated", "deleted") and method == "GET":
            return self._replication(obj, sub, query)
        if len(rest) == 2:
            record_id = normalize_id(sub)
            if not _ID_RE.match(sub) or record_id[:3] != KEY_PREFIX[obj]:
                raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
            if method == "GET":
                rec = self._get_live(obj, record_id)
                fields = (query.get("fields") or [""])[0]
                return SfResponse(200, self._wire(obj, rec, self._field_list(obj, fields),
                                                  version=version))
            if method == "PATCH":
                self._update(obj, record_id, _require_dict(payload), allow_save=allow_save)
                return SfResponse(204)
            if method == "DELETE":
                self._delete(obj, record_id)
                return SfResponse(204)
            raise SfError(405, "METHOD_NOT_ALLOWED",
                          f"HTTP Method '{method}' not allowed. Allowed are GET,PATCH,DELETE")
        if len(rest) == 3:
            fdef = self.schema[obj].get(sub) or next(
                (f for n, f in self.schema[obj].items() if n.lower() == sub.lower()), None)
            if fdef is None or not (fdef.external_id or fdef.name == "Id"):
                raise SfError(404, "NOT_FOUND",
                              f"Provided external ID field does not exist or is not accessible:"
                              f" {sub}")
            value = rest[2]
            matches = self._match_external(obj, fdef.name, value)
            if len(matches) > 1:
                return SfResponse(300, [f"{base}/sobjects/{obj}/{m['Id']}" for m in matches])
            if method == "PATCH":
                if fdef.name == "Id":
                    raise SfError(400, "INVALID_FIELD", "Id is not an External ID field")
                updates = (query.get("updateOnly") or ["false"])[0] == "true"
                rid, created = self._upsert(obj, fdef.name, value, _require_dict(payload),
                                            allow_save=allow_save, update_only=updates)
                body = {"id": rid, "success": True, "errors": [], "created": created}
                if created:
                    return SfResponse(201, body)
                if self.config.upsert_update_status == 204:
                    return SfResponse(204)
                return SfResponse(200, body)
            if not matches:
                raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
            if method == "GET":
                return SfResponse(200, self._wire(obj, matches[0], version=version))
            if method == "DELETE":
                self._delete(obj, matches[0]["Id"])
                return SfResponse(204)
            raise SfError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed.")
        raise SfError(404, "NOT_FOUND", "The requested resource does not exist")

    def _object_info(self, obj: str, base: str) -> dict[str, Any]:
        url = f"{base}/sobjects/{obj}"
        return {
            "name": obj, "label": obj, "labelPlural": obj + "s", "keyPrefix": KEY_PREFIX[obj],
            "custom": False, "createable": True, "updateable": True, "deletable": True,
            "queryable": True, "replicateable": True, "retrieveable": True, "searchable": True,
            "urls": {"sobject": url, "describe": f"{url}/describe",
                     "rowTemplate": f"{url}/{{ID}}"},
        }

    def _describe(self, obj: str, base: str) -> dict[str, Any]:
        info = self._object_info(obj, base)
        info["fields"] = [f.describe() for f in self.schema[obj].values()]
        info["childRelationships"] = []
        info["recordTypeInfos"] = []
        return info

    def _rebuild_schema(self) -> None:
        self.schema = _build_schema(self.config.external_id_field, self.config.external_id_unique)

    def _field_list(self, obj: str, fields: str) -> list[str] | None:
        if not fields:
            return None
        out = []
        for name in fields.split(","):
            fdef = self._field(obj, name.strip())
            out.append(fdef.name)
        return out

    def _field(self, obj: str, name: str) -> FieldDef:
        fdef = self.schema[obj].get(name)
        if fdef is None:
            lower = name.lower()
            fdef = next((f for n, f in self.schema[obj].items() if n.lower() == lower), None)
        if fdef is None:
            raise SfError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj}",
                          [name])
        return fdef

    def _wire(self, obj: str, rec: dict[str, Any], fields: list[str] | None = None,
              *, version: str | None = None) -> dict[str, Any]:
        version = version or f"v{self.config.api_version}"
        out: dict[str, Any] = {"attributes": {
            "type": obj, "url": f"/services/data/{version}/sobjects/{obj}/{rec['Id']}"}}
        for name in fields or self.schema[obj]:
            out[name] = _to_wire(rec.get(name))
        return out

    def _get_live(self, obj: str, record_id: str) -> dict[str, Any]:
        rec = self.store[obj].get(record_id)
        if rec is None:
            if record_id in self.deleted[obj]:
                raise SfError(404, "ENTITY_IS_DELETED", "entity is deleted")
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        return rec

    # ------------------------------------------------------------ writes
    def _new_id(self, obj: str) -> str:
        return sf_id18(KEY_PREFIX[obj] + "5g0" + _b62(next(self._seq), 9))

    def _coerce(self, obj: str, data: dict[str, Any], *, insert: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key == "attributes":
                continue
            fdef = self._field(obj, key)
            name = fdef.name
            if (insert and not fdef.createable) or (not insert and not fdef.updateable):
                if name == "Id" and not insert:
                    continue
                raise SfError(400, "INVALID_FIELD_FOR_INSERT_UPDATE",
                              f"Unable to create/update fields: {name}. Please check the security"
                              " settings of this field and verify that it is read/write for your"
                              " profile or permission set.", [name])
            out[name] = self._coerce_value(obj, fdef, value)
        return out

    def _coerce_value(self, obj: str, fdef: FieldDef, value: Any) -> Any:
        if value is None:
            if not fdef.nillable and fdef.name != "OwnerId":
                raise SfError(400, "REQUIRED_FIELD_MISSING",
                              f"Required fields are missing: [{fdef.name}]", [fdef.name])
            return None
        t = fdef.type

        def parse_fail() -> SfError:
            return SfError(400, "JSON_PARSER_ERROR",
                           f"Cannot deserialize instance of {t} from VALUE_STRING value {value} or"
                           " request may be missing a required field at [line:1, column:1]")

        if t == "datetime":
            if not isinstance(value, str):
                raise parse_fail()
            try:
                parsed = parse_datetime(value)
            except ValueError:
                raise parse_fail() from None
            return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)
        if t == "date":
            try:
                return date.fromisoformat(str(value)[:10]).isoformat()
            except ValueError:
                raise parse_fail() from None
        if t == "boolean":
            if not isinstance(value, bool):
                raise parse_fail()
            return value
        if t in ("int", "double"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise parse_fail()
            return int(value) if t == "int" else float(value)
        if isinstance(value, (dict, list)):
            raise parse_fail()
        text = value if isinstance(value, str) else json.dumps(value)
        if t == "reference":
            if not _ID_RE.match(text):
                raise SfError(400, "MALFORMED_ID",
                              f"{fdef.label}: id value of incorrect type: {text}", [fdef.name])
            text = normalize_id(text)
            targets = [o for o in fdef.reference_to if o in self.store]
            if targets and PREFIX_OBJECT.get(text[:3]) in targets:
                target = PREFIX_OBJECT[text[:3]]
                if text not in self.store[target]:
                    raise SfError(400, "INVALID_CROSS_REFERENCE_KEY",
                                  f"invalid cross reference id: {text}", [fdef.name])
            elif targets and not [o for o in fdef.reference_to if o not in self.store]:
                raise SfError(400, "FIELD_INTEGRITY_EXCEPTION",
                              f"{fdef.label}: id value of incorrect type: {text}", [fdef.name])
            return text
        if fdef.length and len(text) > fdef.length:
            raise SfError(400, "STRING_TOO_LONG",
                          f"{fdef.label}: data value too large: {text[:40]} (max length="
                          f"{fdef.length})", [fdef.name])
        if t == "email" and text and not _EMAIL_RE.match(text):
            raise SfError(400, "INVALID_EMAIL_ADDRESS",
                          f"{fdef.label}: invalid email address: {text}", [fdef.name])
        return text

    def _check_required(self, obj: str, rec: dict[str, Any]) -> None:
        missing = [f for f in REQUIRED_ON_CREATE.get(obj, ()) if rec.get(f) in (None, "")]
        if obj == "Event":
            has_range = rec.get("StartDateTime") and rec.get("EndDateTime")
            has_dur = rec.get("ActivityDateTime") and rec.get("DurationInMinutes") is not None
            if not (has_range or has_dur):
                missing.append("DurationInMinutes")
        if missing:
            raise SfError(400, "REQUIRED_FIELD_MISSING",
                          f"Required fields are missing: [{', '.join(missing)}]", missing)

    def _normalize_event(self, rec: dict[str, Any]) -> None:
        start, end = rec.get("StartDateTime"), rec.get("EndDateTime")
        if start is None and rec.get("ActivityDateTime"):
            start = rec["StartDateTime"] = rec["ActivityDateTime"]
        if start is not None and end is None and rec.get("DurationInMinutes") is not None:
            end = rec["EndDateTime"] = start + timedelta(minutes=rec["DurationInMinutes"])
        if start is not None and end is not None:
            if end < start:
                raise SfError(400, "FIELD_INTEGRITY_EXCEPTION",
                              "End Date Time: End Date Time cannot be earlier than Start Date"
                              " Time.", ["EndDateTime"])
            rec["ActivityDateTime"] = start
            rec["DurationInMinutes"] = int((end - start).total_seconds() // 60)

    def _check_unique(self, obj: str, rec: dict[str, Any], self_id: str | None) -> None:
        ext = self.config.external_id_field
        value = rec.get(ext)
        if not self.config.external_id_unique or value in (None, ""):
            return
        for other in self.store[obj].values():
            if other["Id"] != self_id and str(other.get(ext) or "").lower() == str(value).lower():
                raise SfError(400, "DUPLICATE_VALUE",
                              f"duplicate value found: {ext} duplicates value on record with id:"
                              f" {other['Id']}", [ext])

    def _check_duplicates(self, obj: str, rec: dict[str, Any], self_id: str | None) -> None:
        if not self.config.duplicate_rules_enabled:
            return
        fields = self.config.duplicate_match_fields.get(obj) or []
        if not fields:
            return
        keys = {f: _match_key(f, rec.get(f)) for f in fields}
        keys = {f: k for f, k in keys.items() if k}
        if not keys:
            return
        matches = [other for other in self.store[obj].values()
                   if other["Id"] != self_id
                   and any(_match_key(f, other.get(f)) == k for f, k in keys.items())]
        if not matches:
            return
        version = f"v{self.config.api_version}"
        detail = {
            "allowSave": True,
            "duplicateRule": f"Standard_{obj}_Duplicate_Rule",
            "duplicateRuleEntityType": obj,
            "errorMessage": DUP_MESSAGE,
            "matchResults": [{
                "entityType": obj,
                "errors": [],
                "matchEngine": "ExactMatchEngine",
                "matchRecords": [{
                    "additionalInformation": [],
                    "fieldDiffs": [],
                    "matchConfidence": 100.0,
                    "record": {"attributes": {
                        "type": obj, "url": f"/services/data/{version}/sobjects/{obj}/{m['Id']}"},
                        "Id": m["Id"]},
                } for m in matches],
                "rule": f"Standard_{obj}_Match_Rule_v1_0",
                "size": len(matches),
                "success": True,
            }],
        }
        raise SfError(400, "DUPLICATES_DETECTED", DUP_MESSAGE, [],
                      extra={"duplicateResut": detail})

    def _create(self, obj: str, data: dict[str, Any], *, allow_save: bool) -> str:
        if any(k.lower() == "id" for k in data):
            raise SfError(400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
        values = self._coerce(obj, data, insert=True)
        rec: dict[str, Any] = {name: None for name in self.schema[obj]}
        rec.update(DEFAULTS.get(obj, {}))
        rec.update(values)
        if obj == "Event":
            self._normalize_event(rec)
        self._check_required(obj, rec)
        self._check_unique(obj, rec, None)
        if not allow_save:
            self._check_duplicates(obj, rec, None)
        now = self._now_ms()
        new_id = self._new_id(obj)
        rec.update({"Id": new_id, "IsDeleted": False, "CreatedDate": now, "LastModifiedDate": now,
                    "SystemModstamp": now, "CreatedById": self.user_id,
                    "LastModifiedById": self.user_id})
        if rec.get("OwnerId") is None:
            rec["OwnerId"] = self.user_id
        self.store[obj][new_id] = rec
        self.knobs.count(f"sf.create.{obj}")
        return new_id

    def _update(self, obj: str, record_id: str, data: dict[str, Any], *, allow_save: bool) -> None:
        rec = self._get_live(obj, record_id)
        if any(k.lower() == "id" and normalize_id(str(v)) != record_id for k, v in data.items()):
            raise SfError(400, "INVALID_FIELD_FOR_INSERT_UPDATE",
                          "Unable to create/update fields: Id.", ["Id"])
        values = self._coerce(obj, data, insert=False)
        merged = dict(rec)
        merged.update(values)
        if obj == "Event":
            if "DurationInMinutes" in values and "EndDateTime" not in values:
                merged["EndDateTime"] = None
            self._normalize_event(merged)
        for name in REQUIRED_ON_CREATE.get(obj, ()):
            if merged.get(name) in (None, ""):
                raise SfError(400, "REQUIRED_FIELD_MISSING",
                              f"Required fields are missing: [{name}]", [name])
        self._check_unique(obj, merged, record_id)
        if not allow_save:
            self._check_duplicates(obj, merged, record_id)
        now = self._now_ms()
        merged["LastModifiedDate"] = now
        merged["SystemModstamp"] = now
        merged["LastModifiedById"] = self.user_id
        rec.clear()
        rec.update(merged)
        self.knobs.count(f"sf.update.{obj}")

    def _now_ms(self) -> datetime:
        now = self.clock.now()
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    def _delete(self, obj: str, record_id: str) -> None:
        """``DELETE /sobjects/{Obj}/{id}`` → 204, no body ("Delete a Record",
        https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/
        dome_delete_record.htm): the record leaves every query and goes to the Recycle
        Bin (``queryAll``, ``deleted/``) for up to 15 days; deleting it again → 404
        ``ENTITY_IS_DELETED``, an unknown id → 404 ``NOT_FOUND``."""
        rec = self._get_live(obj, record_id)
        del self.store[obj][record_id]
        now = self._now_ms()
        rec["IsDeleted"] = True
        rec["SystemModstamp"] = now
        self.deleted[obj][record_id] = (rec, now)
        self.knobs.count(f"sf.delete.{obj}")

    def _match_external(self, obj: str, field_name: str, value: str) -> list[dict[str, Any]]:
        if field_name == "Id":
            rec = self.store[obj].get(normalize_id(value))
            return [rec] if rec else []
        lower = value.lower()
        return [r for r in self.store[obj].values()
                if r.get(field_name) is not None and str(r[field_name]).lower() == lower]

    def _upsert(self, obj: str, field_name: str, value: str, data: dict[str, Any], *,
                allow_save: bool, update_only: bool = False) -> tuple[str, bool]:
        for key in data:
            if key.lower() in ("id", field_name.lower()) and key != "attributes":
                raise SfError(400, "INVALID_FIELD",
                              f"{field_name} is the external ID used in the URL and can't be"
                              " specified in the request body", [key])
        matches = self._match_external(obj, field_name, value)
        if len(matches) > 1:
            ids = ", ".join(m["Id"] for m in matches)
            raise SfError(300, "MULTIPLE_CHOICES",
                          f"More than one record found for external id field {field_name}: {ids}")
        if matches:
            self._update(obj, matches[0]["Id"], data, allow_save=allow_save)
            return matches[0]["Id"], False
        if update_only:
            raise SfError(404, "NOT_FOUND", "The requested resource does not exist")
        body = dict(data)
        body[field_name] = value
        return self._create(obj, body, allow_save=allow_save), True

    # ----------------------------------------------------------- replication
    def _replication(self, obj: str, kind: str, query: dict[str, list[str]]) -> SfResponse:
        try:
            start = parse_datetime((query.get("start") or [""])[0])
            end = parse_datetime((query.get("end") or [""])[0])
        except ValueError:
            raise SfError(400, "INVALID_REPLICATION_DATE",
                          "start and end must be ISO-8601 datetimes with an offset") from None
        now = self.clock.now()
        start = start.replace(second=0, microsecond=0)
        end = min(end, now).replace(second=0, microsecond=0)
        window = 30 if kind == "updated" else 15
        if start < now - timedelta(days=window):
            raise SfError(400, "INVALID_REPLICATION_DATE",
                          f"startDate cannot be more than {window} days ago")
        if end - start < timedelta(minutes=1):
            raise SfError(400, "INVALID_REPLICATION_DATE",
                          "startDate must chronologically precede endDate by more than one minute")
        if kind == "updated":
            ids = [r["Id"] for r in self.store[obj].values()
                   if start <= r["SystemModstamp"] < end]
            return SfResponse(200, {"ids": ids, "latestDateCovered": sf_datetime(end)})
        earliest = max(now - timedelta(days=15), self.purged_until.get(obj, now - timedelta(
            days=15))).replace(second=0, microsecond=0)
        covered = min(end, (now - timedelta(seconds=self.config.deleted_log_lag_seconds))
                      .replace(second=0, microsecond=0))
        deleted = [{"id": i, "deletedDate": sf_datetime(d)}
                   for i, (_, d) in self.deleted[obj].items() if start <= d < covered]
        return SfResponse(200, {"deletedRecords": deleted,
                                "earliestDateAvailable": sf_datetime(earliest),
                                "latestDateCovered": sf_datetime(covered)})

    # ----------------------------------------------------------------- query
    def _soql_describe(self, name: str) -> tuple[str, dict[str, FieldInfo]] | None:
        obj = self._object_name(name)
        if obj is None:
            return None
        return obj, {n.lower(): FieldInfo(n, f.type) for n, f in self.schema[obj].items()}

    def _query(self, version: str, q: str, *, include_deleted: bool, page_size: int,
               endpoint: str) -> SfResponse:
        if not q.strip():
            raise SfError(400, "MALFORMED_QUERY", "A query string has to be specified")
        try:
            compiled = compile_soql(q, self._soql_describe, normalize_id=normalize_id)
        except SoqlError as exc:
            raise SfError(400, exc.code, exc.message) from None
        obj = compiled.sobject
        pool = list(self.store[obj].values())
        if include_deleted:
            pool += [r for r, _ in self.deleted[obj].values()]
        rows = compiled.run(pool)
        self.knobs.count("sf.query")
        if compiled.count_only:
            return SfResponse(200, {"totalSize": len(rows), "done": True, "records": []})
        wire = [self._wire(obj, r, compiled.fields, version=version) for r in rows]
        return self._page(version, endpoint, obj, wire, 0, page_size)

    def _page(self, version: str, endpoint: str, obj: str, rows: list[dict[str, Any]],
              offset: int, page_size: int, locator: str | None = None) -> SfResponse:
        page = rows[offset : offset + page_size]
        body: dict[str, Any] = {"totalSize": len(rows), "done": True, "records": page}
        nxt = offset + page_size
        if nxt < len(rows):
            if locator is None:
                locator = "01g5g0" + secrets.token_hex(5)[:9] + "AAA"
                self.cursors[locator] = _Cursor(obj, rows, page_size, self.clock.time())
                while len(self.cursors) > 50:
                    self.cursors.popitem(last=False)
            body["done"] = False
            body["nextRecordsUrl"] = f"/services/data/{version}/{endpoint}/{locator}-{nxt}"
        elif locator is not None:
            self.cursors.pop(locator, None)
        return SfResponse(200, body)

    def _query_more(self, version: str, endpoint: str, token: str) -> SfResponse:
        locator, _, offset = token.rpartition("-")
        cursor = self.cursors.get(locator)
        if cursor is None or not offset.isdigit() or \
                self.clock.time() - cursor.touched > 900:
            self.cursors.pop(locator, None)
            raise SfError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        cursor.touched = self.clock.time()
        return self._page(version, endpoint, cursor.sobject, cursor.rows, int(offset),
                          cursor.page_size, locator)

    # ----------------------------------------------------------- collections
    def _collections(self, method: str, version: str, rest: list[str],
                     query: dict[str, list[str]], payload: Any,
                     allow_save: bool) -> SfResponse:
        if method == "DELETE" and not rest:
            ids = [i for i in (query.get("ids") or [""])[0].split(",") if i]
            all_or_none = (query.get("allOrNone") or ["false"])[0] == "true"
            _check_count(ids)
            return self._run_collection(
                [(None, {"id": i}) for i in ids], all_or_none,
                lambda _o, rec: self._delete_any(rec["id"]), upsert=False)
        if method == "GET" and len(rest) == 1:
            obj = self._require_object(rest[0])
            ids = [i for i in (query.get("ids") or [""])[0].split(",") if i]
            fields = self._field_list(obj, (query.get("fields") or [""])[0])
            _check_count(ids)
            out = []
            for i in ids:
                rec = self.store[obj].get(normalize_id(i))
                out.append(self._wire(obj, rec, fields, version=version) if rec else None)
            return SfResponse(200, out)
        body = _require_dict(payload)
        records = body.get("records")
        if not isinstance(records, list):
            raise SfError(400, "INVALID_FIELD", "records: required field is missing")
        _check_count(records)
        all_or_none = bool(body.get("allOrNone", False))
        items = []
        for rec in records:
            rtype = (rec.get("attributes") or {}).get("type") if isinstance(rec, dict) else None
            items.append((rtype, rec))
        if method == "POST" and not rest:
            def create(obj: str | None, rec: dict[str, Any]) -> str:
                return self._create(self._typed(obj), rec, allow_save=allow_save)

            return self._run_collection(items, all_or_none, create, upsert=False)
        if method == "PATCH" and not rest:
            def update(obj: str | None, rec: dict[str, Any]) -> str:
                rid = normalize_id(str(rec.get("id") or rec.get("Id") or ""))
                if not rid:
                    raise SfError(400, "MISSING_ARGUMENT", "Id not specified in an update call")
                data = {k: v for k, v in rec.items() if k not in ("id", "Id")}
                self._update(self._typed(obj), rid, data, allow_save=allow_save)
                return rid

            return self._run_collection(items, all_or_none, update, upsert=False)
        if method == "PATCH" and len(rest) == 2:
            obj = self._require_object(rest[0])
            fdef = self._field(obj, rest[1])
            if not fdef.external_id:
                raise SfError(400, "INVALID_FIELD",
                              f"Field name provided, {rest[1]} is not an External ID or indexed"
                              " field for " + obj, [rest[1]])

            def upsert(rtype: str | None, rec: dict[str, Any]) -> tuple[str, bool]:
                if self._typed(rtype) != obj:
                    raise SfError(400, "INVALID_INPUT",
                                  f"sObject type in attributes must be {obj}")
                value = rec.get(fdef.name)
                if value in (None, ""):
                    raise SfError(400, "MISSING_ARGUMENT",
                                  f"{fdef.name} not specified", [fdef.name])
                data = {k: v for k, v in rec.items() if k != fdef.name}
                return self._upsert(obj, fdef.name, str(value), data, allow_save=allow_save)

            return self._run_collection(items, all_or_none, upsert, upsert=True)
        raise SfError(404, "NOT_FOUND", "The requested resource does not exist")

    def _typed(self, rtype: str | None) -> str:
        if not rtype:
            raise SfError(400, "INVALID_TYPE", "attributes.type is required on each record")
        obj = self._object_name(rtype)
        if obj is None:
            raise SfError(400, "INVALID_TYPE", f"sObject type '{rtype}' is not supported.")
        return obj

    def _delete_any(self, record_id: str) -> str:
        rid = normalize_id(record_id)
        obj = PREFIX_OBJECT.get(rid[:3])
        if obj is None or not _ID_RE.match(record_id):
            raise SfError(400, "MALFORMED_ID", f"malformed id {record_id}")
        self._delete(obj, rid)
        return rid

    def _run_collection(self, items: list[tuple[str | None, Any]], all_or_none: bool,
                        op: Any, *, upsert: bool) -> SfResponse:
        snapshot = self._snapshot_state() if all_or_none else None
        results: list[dict[str, Any]] = []
        failed = False
        for rtype, rec in items:
            try:
                if not isinstance(rec, dict):
                    raise SfError(400, "INVALID_INPUT", "each record must be an object")
                out = op(rtype, rec)
                if upsert:
                    rid, created = out
                    results.append({"id": rid, "success": True, "errors": [], "created": created})
                else:
                    results.append({"id": out, "success": True, "errors": []})
            except SfError as exc:
                failed = True
                results.append({"success": False, "errors": [exc.collection_error()]})
        if all_or_none and failed:
            assert snapshot is not None
            self._restore_state(snapshot)
            rolled = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                      "message": "Record rolled back because not all records were valid and the"
                                 " request was using AllOrNone header", "fields": []}
            results = [r if not r["success"] else {"success": False, "errors": [rolled]}
                       for r in results]
            for r in results:
                r.pop("id", None)
                r.pop("created", None)
        return SfResponse(200, results)

    def _snapshot_state(self) -> Any:
        return copy.deepcopy((self.store, self.deleted))

    def _restore_state(self, snapshot: Any) -> None:
        self.store, self.deleted = snapshot

    # ------------------------------------------------------------- composite
    def _composite(self, version: str, headers: dict[str, str], payload: Any) -> SfResponse:
        body = _require_dict(payload)
        subs = body.get("compositeRequest")
        if not isinstance(subs, list) or not subs:
            raise SfError(400, "INVALID_INPUT", "compositeRequest: required field is missing")
        if len(subs) > 25:
            raise SfError(400, "INVALID_INPUT",
                          "compositeRequest: the number of subrequests exceeds the limit of 25")
        heavy = sum(1 for sub in subs if isinstance(sub, dict) and _query_or_collection(sub))
        if heavy > self.config.composite_query_limit:
            # Refused as a whole, nothing runs. Shape as Salesforce answers a Composite over
            # its operation limit (errorCode LIMIT_EXCEEDED, one item, referenceId null; seen
            # in guardian/support-service-lambdas#766); the message wording is unverified.
            limit = self.config.composite_query_limit
            return SfResponse(400, {"compositeResponse": [{
                "body": [{"errorCode": "LIMIT_EXCEEDED", "message":
                          f"The request can't contain more than {limit} query or "
                          "sObject Collections operations."}],
                "httpHeaders": {}, "httpStatusCode": 400, "referenceId": None}]})
        refs: set[str] = set()
        for sub in subs:
            ref = sub.get("referenceId") if isinstance(sub, dict) else None
            if not isinstance(ref, str) or not re.fullmatch(r"[A-Za-z0-9_]+", ref) or ref in refs:
                raise SfError(400, "INVALID_INPUT",
                              f"Invalid or duplicate referenceId: {ref!r}")
            refs.add(ref)
        all_or_none = bool(body.get("allOrNone", False))
        snapshot = self._snapshot_state() if all_or_none else None
        done: dict[str, SfResponse] = {}
        out: list[dict[str, Any]] = []
        failed = False
        for sub in subs:
            ref = sub["referenceId"]
            if failed and all_or_none:
                resp = SfResponse(400, [{"errorCode": "PROCESSING_HALTED", "message": ROLLED_BACK}])
            else:
                try:
                    url = _resolve_refs(sub.get("url", ""), done)
                    sub_body = _resolve_refs(sub.get("body"), done)
                except SfError as exc:
                    resp = _err(exc)
                else:
                    resp = self._composite_sub(version, sub.get("method", "GET").upper(), url,
                                               headers, sub.get("httpHeaders") or {}, sub_body)
            if resp.status >= 400:
                failed = True
            done[ref] = resp
            out.append({"body": resp.body, "httpHeaders": resp.headers,
                        "httpStatusCode": resp.status, "referenceId": ref})
        if all_or_none and failed:
            assert snapshot is not None
            self._restore_state(snapshot)
            for item in out:
                if item["httpStatusCode"] < 400:
                    item.update(body=[{"errorCode": "PROCESSING_HALTED", "message": ROLLED_BACK}],
                                httpHeaders={}, httpStatusCode=400)
        return SfResponse(200, {"compositeResponse": out})

    def _composite_sub(self, version: str, method: str, url: str, outer: dict[str, str],
                       sub_headers: dict[str, str], body: Any) -> SfResponse:
        split = urlsplit(url)
        parts = [unquote(p) for p in split.path.split("/") if p]
        if parts[:2] != ["services", "data"] or len(parts) < 3:
            return SfResponse(400, [{"errorCode": "INVALID_INPUT",
                                     "message": f"Invalid subrequest url: {url}"}])
        if parts[2] != version:
            return SfResponse(400, [{"errorCode": "INVALID_INPUT", "message":
                                     "All subrequests must use the composite request's version"}])
        headers = dict(outer)
        headers.update({k.lower(): v for k, v in sub_headers.items()})
        query = parse_qs(split.query, keep_blank_values=True)
        resp = self._dispatch(method, version, parts[3:], query, headers, body, in_composite=True)
        if resp.status == 201 and isinstance(resp.body, dict) and "id" in resp.body \
                and len(parts) >= 5:
            resp.headers = {"Location": f"/services/data/{version}/sobjects/{parts[4]}/"
                                        f"{resp.body['id']}"}
        return resp

    # ----------------------------------------------------------------- OAuth
    async def _oauth(self, request: Request, rest: list[str]) -> Response:
        found = self._oauth_routes.match(request.method, rest[:1])
        if found is None:
            return JSONResponse({"error": "not_found", "error_description": "unknown endpoint"},
                                status_code=404)
        return await found.handler(request)

    @cached_property
    def _oauth_routes(self) -> RouteTable[Callable[[Request], Awaitable[Response]]]:
        # /services/oauth2/<endpoint>[/...]: only the first segment names the endpoint
        return RouteTable([
            ("POST", "token", self._token_endpoint),
            ("GET", "authorize", self._authorize),
            ("POST|GET", "revoke", self._revoke),
            ("GET", "userinfo", self._userinfo),
        ])

    async def _token_endpoint(self, request: Request) -> Response:
        form = read_form(await request.body())
        with self.lock:
            status, body = self._token(form, request.headers.get("authorization", ""))
        return JSONResponse(body, status_code=status)

    async def _authorize(self, request: Request) -> Response:
        params = request.query_params
        if params.get("client_id") != self.client_id:
            return JSONResponse({"error": "invalid_client_id",
                                 "error_description": "client identifier invalid"},
                                status_code=400)
        redirect = params.get("redirect_uri")
        if not redirect:
            return JSONResponse({"error": "redirect_uri_mismatch",
                                 "error_description": "redirect_uri must match configuration"},
                                status_code=400)
        code = self.issue_auth_code(
            redirect_uri=redirect, challenge=params.get("code_challenge"),
            method=params.get("code_challenge_method") or "plain")
        query = {"code": code}
        if params.get("state") is not None:
            query["state"] = params["state"]
        return redirect_with(redirect, query)

    async def _revoke(self, request: Request) -> Response:
        form = read_form(await request.body()) if request.method == "POST" else dict(
            request.query_params)
        token = form.get("token", "")
        with self.lock:
            if token in self.refresh_tokens:
                self.revoke_refresh_token(token)
            elif token in self.sessions:
                self.sessions[token].revoked = True
            else:
                return JSONResponse({"error": "unsupported_token_type",
                                     "error_description": "this token type is not supported"},
                                    status_code=400)
        return Response(b"", status_code=200)

    async def _userinfo(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        with self.lock:
            ok = self._session_valid(token)
        if not ok:
            return Response(b"Bad_OAuth_Token", status_code=403)
        return JSONResponse({
            "sub": f"{self.instance_url}/id/{self.org_id}/{self.user_id}",
            "user_id": self.user_id, "organization_id": self.org_id,
            "preferred_username": self.username, "email": self.username,
            "name": "Relais Sandbox",
        })

    def _token(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = basic_credentials(authorization)
        if basic is not None:
            client_id, client_secret = basic
        grant = form.get("grant_type")
        if grant not in ("authorization_code", "refresh_token", "client_credentials"):
            return 400, {"error": "unsupported_grant_type",
                         "error_description": "grant type not supported"}
        if client_id != self.client_id:
            return 400, {"error": "invalid_client_id",
                         "error_description": "client identifier invalid"}
        if client_secret is not None and not hmac.compare_digest(client_secret,
                                                                 self.client_secret):
            return 400, {"error": "invalid_client",
                         "error_description": "invalid client credentials"}
        now = self.clock.time()
        refresh: str | None = None
        scope = "api refresh_token"
        if grant == "authorization_code":
            if client_secret is None:
                return 400, {"error": "invalid_client",
                             "error_description": "invalid client credentials"}
            entry = self.auth_codes.pop(form.get("code", ""), None)
            pkce = self.challenges.pop(form.get("code", ""), None)
            if entry is None or entry[2] < now:
                return 400, {"error": "invalid_grant",
                             "error_description": "authentication failure"}
            # PKCE (RFC 7636 4.6) as Salesforce's web server flow checks it ("OAuth 2.0 Web
            # Server Flow", code_verifier required when code_challenge was sent).
            if pkce and not verifier_matches(*pkce, form.get("code_verifier") or ""):
                return 400, {"error": "invalid_grant",
                             "error_description": "invalid code verifier"}
            if entry[1] and form.get("redirect_uri") != entry[1]:
                return 400, {"error": "redirect_uri_mismatch",
                             "error_description": "redirect_uri must match configuration"}
            refresh = self._new_refresh_token(client_id, scope)
        elif grant == "refresh_token":
            rt = self.refresh_tokens.get(form.get("refresh_token", ""))
            if rt is None or rt.revoked or rt.client_id != client_id:
                return 400, {"error": "invalid_grant",
                             "error_description": "expired access/refresh token"}
            refresh = rt.token
            scope = rt.scope
        else:
            if not self.config.client_credentials_enabled or client_secret is None:
                return 400, {"error": "invalid_grant",
                             "error_description": "no client credentials user enabled"}
            scope = "api"
        access = self.issue_session(client_id=client_id, refresh_token=refresh)
        issued_at = str(int(now * 1000))
        ident = f"{self.instance_url}/id/{self.org_id}/{self.user_id}"
        signature = base64.b64encode(hmac.new(self.client_secret.encode(),
                                              (ident + issued_at).encode(),
                                              hashlib.sha256).digest()).decode()
        body: dict[str, Any] = {
            "access_token": access,
            "signature": signature,
            "scope": scope,
            "instance_url": self.instance_url,
            "id": ident,
            "token_type": "Bearer",
            "issued_at": issued_at,
        }
        if grant == "authorization_code":
            body["refresh_token"] = refresh
        elif grant == "refresh_token" and self.config.rotate_refresh_tokens and refresh:
            self.revoke_refresh_token(refresh)
            self.sessions[access].revoked = False
            new_rt = self._new_refresh_token(client_id, scope)
            self.sessions[access].refresh_token = new_rt
            body["refresh_token"] = new_rt
        self.knobs.count(f"sf.oauth.{grant}")
        return 200, body

    def _new_refresh_token(self, client_id: str, scope: str) -> str:
        token = "5Aep861" + secrets.token_urlsafe(64)
        self.refresh_tokens[token] = _RefreshToken(token, client_id, scope)
        return token


# ---------------------------------------------------------------- helpers


def _to_wire(value: Any) -> Any:
    if isinstance(value, datetime):
        return sf_datetime(value)
    return value


def _match_key(field_name: str, value: Any) -> str | None:
    if value in (None, ""):
        return None
    text = str(value).strip()
    if "phone" in field_name.lower():
        digits = re.sub(r"\D", "", text)
        return digits or None
    return text.lower()


def _allow_save(headers: dict[str, str]) -> bool:
    raw = headers.get("sforce-duplicate-rule-header", "")
    for part in re.split(r"[;,]", raw):
        key, _, value = part.partition("=")
        if key.strip().lower() == "allowsave" and value.strip().lower() == "true":
            return True
    return False


def _batch_size(headers: dict[str, str], default: int) -> int:
    raw = headers.get("sforce-query-options", "")
    m = re.search(r"batchSize\s*=\s*(\d+)", raw, re.IGNORECASE)
    if not m:
        return default
    return max(200, min(2000, int(m.group(1))))


def _require_dict(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise SfError(400, "JSON_PARSER_ERROR",
                      "Cannot deserialize instance of sObject: a JSON object is expected")
    return payload


def _check_count(items: list[Any]) -> None:
    if len(items) > 200:
        raise SfError(400, "EXCEEDED_ID_LIMIT",
                      "record limit reached. cannot submit more than 200 records into this call")


_REF_RE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")


def _query_or_collection(sub: dict[str, Any]) -> bool:
    """A Composite subrequest that counts against the limit of 5: query, queryAll
    (first page or next batch) or sObject Collections."""
    parts = [p for p in urlsplit(str(sub.get("url") or "")).path.split("/") if p]
    rest = parts[3:] if parts[:2] == ["services", "data"] else []
    return bool(rest) and (rest[0] in ("query", "queryAll")
                           or rest[:2] == ["composite", "sobjects"])


def _resolve_refs(value: Any, done: dict[str, SfResponse]) -> Any:
    if isinstance(value, dict):
        return {k: _resolve_refs(v, done) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(v, done) for v in value]
    if not isinstance(value, str) or "@{" not in value:
        return value

    def lookup(m: re.Match[str]) -> str:
        ref, path = m.group(1), m.group(2)
        resp = done.get(ref)
        if resp is None or resp.status >= 400:
            raise SfError(400, "PROCESSING_HALTED",
                          f"Invalid reference specified. No value for {ref}{path} found in"
                          f" {ref}. Provided referenceId ('{ref}') might be incorrect.")
        node: Any = resp.body
        for key, idx in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
            try:
                node = node[int(idx)] if idx else node[key]
            except (KeyError, IndexError, TypeError):
                raise SfError(400, "PROCESSING_HALTED",
                              f"Invalid reference specified. No value for {ref}{path} found in"
                              f" {ref}.") from None
        return str(node)

    return _REF_RE.sub(lookup, value)


