"""HubSpot CRM emulator (objects v3, associations v4, properties, OAuth v1).

Plain HTTP is fine: ``HubSpot(access_token=..., host=emulator.url)``.
What it honours:

* OAuth ``POST /oauth/v1/token`` (form-encoded; authorization_code,
  refresh_token) → ``{token_type, refresh_token, access_token, expires_in}``
  (``expires_in`` = ``access_token_ttl_seconds``, 1800 by default); a bad
  refresh token answers 400 ``{"status": "BAD_REFRESH_TOKEN", "error":
  "invalid_grant", ...}``. ``GET /oauth/v1/access-tokens/{t}`` (hub_id,
  scopes), ``DELETE /oauth/v1/refresh-tokens/{t}``, ``GET /oauth/authorize``
  (auto-consent redirect, demo only). Private-app tokens never expire.
* Bearer auth on every CRM call: 401 ``INVALID_AUTHENTICATION`` (unknown) or
  ``EXPIRED_AUTHENTICATION`` ("The OAuth token used to make this call
  expired N second(s) ago.").
* Objects contacts, companies, notes, calls, meetings, tasks: create (201,
  inline ``associations``), get (``properties``, ``associations``,
  ``idProperty``), PATCH, archive (204), GDPR delete of contacts (204,
  permanent), list with ``after`` paging; batch
  create/read/update/upsert/archive (≤ 100 inputs; 200, or 207 with
  ``errors``/``numErrors``); search with filterGroups (EQ NEQ LT LTE GT GTE
  BETWEEN IN NOT_IN HAS_PROPERTY NOT_HAS_PROPERTY CONTAINS_TOKEN
  NOT_CONTAINS_TOKEN), sorts, ``limit`` ≤ 200, ``after`` paging refused past
  10,000 results, its own per-token rate limit.
* Property validation against ``GET /crm/v3/properties/{type}`` (unknown or
  read-only properties, enumeration options, numbers, datetimes); unique
  properties (``hasUniqueValue``: contact ``email`` and ``relais_id`` on
  every type) → 409 ``CONFLICT`` (contacts: "Contact already exists.
  Existing ID: N"); ``createdate``/``hs_createdate``,
  ``lastmodifieddate``/``hs_lastmodifieddate``, ``createdAt/updatedAt/
  archived`` maintained.
* Associations v4 (default and labelled PUT, GET, DELETE, batch
  associate/default, create, read, archive) with HubSpot-defined type ids.
* Rate limit: ``rate_limit_max`` requests per rolling
  ``rate_limit_interval_ms`` per app (private app, or OAuth client + portal)
  → 429 ``{"status":"error","message":"You have reached your secondly
  limit.","errorType":"RATE_LIMIT","correlationId":…,"policyName":
  "SECONDLY"}``; daily cap for private apps (``policyName: "DAILY"``);
  ``X-HubSpot-RateLimit-Max/-Remaining/-Interval-Milliseconds`` (+ ``-Daily``
  and ``-Daily-Remaining`` for private apps) on every authenticated answer.

Not emulated: owners, pipelines, deals/tickets, lists, imports, webhooks
delivery, merges, property history, the legacy v1/v2 APIs.
Unverified details (kept as settings or noted inline): the 409 message for
custom unique properties, the 400 body when paging past 10,000 search
results, the search 429 body. The daily limit resets at midnight in the account's
time zone (``time_zone``, served by ``/account-info/v3/details``).
"""

from __future__ import annotations

import collections
import json
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from sandbox.knobs import ASGIApp, Clock, Receive, Scope, Send, control_routes
from sandbox.oauth import read_form, redirect_with, token_control_routes
from sandbox.routing import RouteTable, segments
from sandbox.server import Emulator
from sandbox.soql import parse_datetime

__all__ = ["HubSpotConfig", "HubSpotEmulator", "hs_datetime"]

JSON_CT = "application/json;charset=utf-8"
OBJECT_TYPE_IDS = {
    "contacts": "0-1", "companies": "0-2", "notes": "0-46", "calls": "0-48",
    "meetings": "0-47", "tasks": "0-27",
}
_ALIASES = {
    **{k: k for k in OBJECT_TYPE_IDS}, **{v: k for k, v in OBJECT_TYPE_IDS.items()},
    "contact": "contacts", "company": "companies", "note": "notes", "call": "calls",
    "meeting": "meetings", "task": "tasks",
}
SINGULAR = {"contacts": "contact", "companies": "company", "notes": "note", "calls": "call",
            "meetings": "meeting", "tasks": "task"}
_ID_BASE = {"contacts": 100, "companies": 5_000_000, "notes": 20_000_000,
            "calls": 30_000_000, "meetings": 40_000_000, "tasks": 50_000_000}
# HubSpot-defined association type ids: (from, to) -> (default id, inverse id)
ASSOCIATION_TYPES: dict[tuple[str, str], int] = {
    ("contacts", "companies"): 279, ("companies", "contacts"): 280,
    ("notes", "contacts"): 202, ("contacts", "notes"): 201,
    ("calls", "contacts"): 194, ("contacts", "calls"): 193,
    ("meetings", "contacts"): 200, ("contacts", "meetings"): 199,
    ("tasks", "contacts"): 204, ("contacts", "tasks"): 203,
    ("notes", "companies"): 190, ("companies", "notes"): 189,
    ("calls", "companies"): 182, ("companies", "calls"): 181,
    ("meetings", "companies"): 188, ("companies", "meetings"): 187,
    ("tasks", "companies"): 192, ("companies", "tasks"): 191,
}
# labelled ("Primary") variants
EXTRA_TYPES: dict[tuple[str, str], dict[int, str]] = {
    ("contacts", "companies"): {1: "Primary"}, ("companies", "contacts"): {2: "Primary"},
}
TYPE_NAMES = {
    type_id: f"{SINGULAR[a]}_to_{SINGULAR[b]}" for (a, b), type_id in ASSOCIATION_TYPES.items()
}
AUTH_NOT_FOUND = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
    "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)
FILTER_OPERATORS = {
    "EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY",
    "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN",
}


def hs_datetime(dt: datetime) -> str:
    """HubSpot's timestamp format: ``2024-01-31T08:00:00.000Z``."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------- schema


@dataclass
class PropDef:
    name: str
    type: str = "string"  # string number datetime date enumeration bool phone_number
    field_type: str = "text"
    label: str = ""
    group: str = "info"
    options: tuple[str, ...] = ()
    unique: bool = False
    read_only: bool = False
    required: bool = False
    custom: bool = False
    created: str = "2020-01-01T00:00:00.000Z"

    def describe(self, order: int) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label or self.name.replace("_", " ").title(),
            "type": self.type,
            "fieldType": self.field_type,
            "description": "",
            "groupName": self.group,
            "options": [{"label": o.replace("_", " ").title(), "value": o, "displayOrder": i,
                         "hidden": False} for i, o in enumerate(self.options)],
            "displayOrder": order,
            "calculated": False,
            "externalOptions": False,
            "hasUniqueValue": self.unique,
            "hidden": False,
            "hubspotDefined": not self.custom,
            "formField": not self.read_only,
            "modificationMetadata": {"archivable": self.custom, "readOnlyDefinition": not
                                     self.custom, "readOnlyValue": self.read_only},
            "createdAt": self.created,
            "updatedAt": self.created,
            "archived": False,
        }


def _props(*items: PropDef) -> dict[str, PropDef]:
    return {p.name: p for p in items}


def _build_schema(unique_property: str) -> dict[str, dict[str, PropDef]]:
    def s(name: str, **kw: Any) -> PropDef:
        return PropDef(name, **kw)

    def ro(name: str, ptype: str = "datetime") -> PropDef:
        return PropDef(name, ptype, "date" if ptype == "datetime" else "text", read_only=True)

    def enum(name: str, *options: str) -> PropDef:
        return PropDef(name, "enumeration", "select", options=options)

    def dt(name: str, required: bool = False) -> PropDef:
        return PropDef(name, "datetime", "date", required=required)

    relais = PropDef(unique_property, "string", "text", label="Relais Id", group="relais",
                     unique=True, custom=True)
    owner = s("hubspot_owner_id", type="enumeration", field_type="select")
    contacts = _props(
        ro("hs_object_id", "number"), ro("createdate"), ro("lastmodifieddate"),
        ro("hs_lastmodifieddate"),
        s("email", unique=True), s("firstname"), s("lastname"),
        s("phone", type="string", field_type="phonenumber"),
        s("mobilephone", type="string", field_type="phonenumber"),
        s("company"), s("jobtitle"), s("website"), s("city"), s("zip"), s("country"),
        s("message", field_type="textarea"),
        enum("lifecyclestage", "subscriber", "lead", "marketingqualifiedlead",
             "salesqualifiedlead", "opportunity", "customer", "evangelist", "other"),
        enum("hs_lead_status", "NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED",
             "ATTEMPTED_TO_CONTACT", "CONNECTED", "BAD_TIMING"),
        owner, relais,
    )
    companies = _props(
        ro("hs_object_id", "number"), ro("createdate"), ro("hs_lastmodifieddate"),
        s("name"), s("domain"), s("phone", field_type="phonenumber"), s("city"), s("zip"),
        s("country"), s("website"), s("industry"), owner, relais,
    )

    def engagement(*extra: PropDef) -> dict[str, PropDef]:
        return _props(ro("hs_object_id", "number"), ro("hs_createdate"),
                      ro("hs_lastmodifieddate"), dt("hs_timestamp", required=True),
                      owner, relais, *extra)

    notes = engagement(s("hs_note_body", field_type="html"), s("hs_attachment_ids"))
    calls = engagement(
        s("hs_call_title"), s("hs_call_body", field_type="html"),
        enum("hs_call_direction", "INBOUND", "OUTBOUND"),
        enum("hs_call_status", "BUSY", "CALLING_CRM_USER", "CANCELED", "COMPLETED",
             "CONNECTING", "FAILED", "IN_PROGRESS", "NO_ANSWER", "QUEUED", "RINGING"),
        s("hs_call_duration", type="number", field_type="number"),
        s("hs_call_from_number"), s("hs_call_to_number"), s("hs_call_disposition"),
        s("hs_call_recording_url"),
    )
    meetings = engagement(
        s("hs_meeting_title"), s("hs_meeting_body", field_type="html"),
        s("hs_internal_meeting_notes", field_type="html"), s("hs_meeting_location"),
        dt("hs_meeting_start_time"), dt("hs_meeting_end_time"),
        enum("hs_meeting_outcome", "SCHEDULED", "COMPLETED", "RESCHEDULED", "NO_SHOW",
             "CANCELED"),
    )
    tasks = engagement(
        s("hs_task_subject"), s("hs_task_body", field_type="html"),
        enum("hs_task_status", "NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED",
             "DEFERRED"),
        enum("hs_task_priority", "NONE", "LOW", "MEDIUM", "HIGH"),
        enum("hs_task_type", "CALL", "EMAIL", "TODO", "LINKED_IN", "MEETING"),
    )
    return {"contacts": contacts, "companies": companies, "notes": notes, "calls": calls,
            "meetings": meetings, "tasks": tasks}


DEFAULT_PROPERTIES = {
    "contacts": ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate",
                 "lastname"),
    "companies": ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
}
ENGAGEMENT_DEFAULTS = ("hs_createdate", "hs_lastmodifieddate", "hs_object_id")
TEXT_SEARCH = {
    "contacts": ("email", "firstname", "lastname", "phone", "mobilephone", "company"),
    "companies": ("name", "domain", "phone", "website"),
}


# ---------------------------------------------------------------- errors


class HsError(Exception):
    def __init__(self, status: int, message: str, category: str = "VALIDATION_ERROR",
                 **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.category = category
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "error", "message": self.message,
                               "correlationId": str(uuid.uuid4()), "category": self.category}
        out.update(self.extra)
        return out

    def batch_error(self, **context: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "error", "category": self.category,
                               "message": self.message, "context": context or {}}
        for key in ("subCategory", "errors"):
            if key in self.extra:
                out[key] = self.extra[key]
        return out


def _invalid(problems: list[dict[str, Any]], portal: int) -> HsError:
    detail = [{"isValid": False, "message": p["message"], "error": p["error"], "name": p["name"],
               "localizedErrorMessage": p["message"], "portalId": portal} for p in problems]
    return HsError(400, "Property values were not valid: " + json.dumps(detail),
                   "VALIDATION_ERROR")


# What a token may be granted, and the scope each endpoint requires. The CRM object APIs
# (contacts and the engagements calls, notes, meetings, tasks, which HubSpot files under
# the contacts scopes: "Scope requirements: crm.objects.contacts.read,
# crm.objects.contacts.write", https://developers.hubspot.com/docs/api-reference/latest/crm/activities/calls/guide)
# need read to read and write to write; properties need crm.schemas.<type>.read
# (unverified for the engagements: kept strict).
ALL_SCOPES = ("oauth", "crm.objects.contacts.read", "crm.objects.contacts.write",
              "crm.schemas.contacts.read", "crm.objects.companies.read",
              "crm.objects.companies.write", "crm.schemas.companies.read")
_SCOPE_FAMILY = {"companies": "companies"}  # every other object type: the contacts scopes


def required_scope(method: str, parts: list[str], is_search: bool) -> str | None:
    """The scope an API call needs (None: any valid token, e.g. account-info)."""
    if len(parts) < 4 or parts[0] != "crm":
        return None
    kind = _ALIASES.get(parts[3].lower(), "contacts") if parts[1] in ("v3", "v4") else "contacts"
    family = _SCOPE_FAMILY.get(kind, "contacts")
    if parts[2] == "properties":
        return f"crm.schemas.{family}.read" if method == "GET" else f"crm.schemas.{family}.write"
    reading = method == "GET" or is_search or parts[-2:] == ["batch", "read"]
    return f"crm.objects.{family}.{'read' if reading else 'write'}"


@dataclass
class HsResponse:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- state


@dataclass
class HubSpotConfig:
    portal_id: int = 12345678
    access_token_ttl_seconds: int = 1800
    rate_limit_max: int = 100
    rate_limit_interval_ms: int = 10_000
    search_rate_limit_per_second: int = 5
    daily_limit: int = 250_000
    # The account's time-zone setting: the daily limit resets at its midnight ("the
    # daily limit resets at midnight based on your time zone setting", HubSpot API usage
    # guidelines, https://developers.hubspot.com/docs/guides/apps/api-usage/usage-details);
    # served by GET /account-info/v3/details.
    time_zone: str = "America/New_York"
    # OAuth scopes checked per endpoint (``required_scope``): 403 MISSING_SCOPES.
    enforce_scopes: bool = True
    search_max_results: int = 10_000
    # Search results lag writes: a record created through the API is found by search only
    # this long after ("Search results may exclude newly created and updated objects",
    # HubSpot's integrators observe seconds; https://developers.hubspot.com/docs/api/crm/search).
    # Seeded records (``insert``/``seed``) count as indexed long ago.
    search_index_delay_seconds: float = 3.0
    unique_property: str = "relais_id"
    list_max_limit: int = 100
    batch_max_inputs: int = 100
    search_max_limit: int = 200
    # One conflicting input fails the whole batch upsert with its 409 ("Contact already
    # exists. Existing ID: N", category CONFLICT), nothing written: HubSpot answers batches
    # with one such input as a whole (HubSpot/hubspot-api-python#51). False: per-input
    # errors in a 207.
    batch_all_or_nothing: bool = True


@dataclass
class _Obj:
    id: int
    type: str
    properties: dict[str, str | None]
    created_at: datetime
    updated_at: datetime
    archived: bool = False
    archived_at: datetime | None = None
    seeded: bool = False  # put there by the control API: already in the search index


@dataclass
class _Token:
    token: str
    kind: str  # private | oauth
    app_key: str
    expires_at: float | None
    refresh_token: str | None = None
    scopes: tuple[str, ...] = ALL_SCOPES  # a private app: what its settings granted


class HubSpotEmulator(Emulator):
    name = "hubspot"
    label = "HubSpot"
    default_tls = False

    def __init__(self, *, config: HubSpotConfig | None = None, clock: Clock | None = None,
                 client_id: str | None = None, client_secret: str | None = None) -> None:
        super().__init__(clock=clock)
        self.config = config or HubSpotConfig()
        self.client_id = client_id or str(uuid.uuid4())
        self.client_secret = client_secret or str(uuid.uuid4())
        self.app_id = 2_000_002
        self.private_app_id = 1_000_001
        self.tokens: dict[str, _Token] = {}
        self.refresh_tokens: dict[str, bool] = {}  # token -> revoked
        self.auth_codes: dict[str, tuple[str | None, float]] = {}
        self.code_scopes: dict[str, tuple[str, ...]] = {}  # code -> scopes it grants
        self.granted: dict[str, tuple[str, ...]] = {}  # refresh token -> scopes granted
        self._hits: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque)
        self._search_hits: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque)
        self._daily: dict[str, tuple[str, int]] = {}
        self.schema = _build_schema(self.config.unique_property)
        self.reset_data()
        self.private_app_token = "pat-na1-" + str(uuid.uuid4())
        self.tokens[self.private_app_token] = _Token(
            self.private_app_token, "private", f"private:{self.private_app_id}", None)
        self.refresh_token = self._new_refresh_token()
        self.access_token = self.issue_access_token(refresh_token=self.refresh_token)

    # ------------------------------------------------------------ public API
    def credentials(self) -> dict[str, Any]:
        return {
            "host": self.url if self.running else None,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "private_app_token": self.private_app_token,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "portal_id": self.config.portal_id,
        }

    def issue_access_token(self, *, ttl: float | None = None,
                           refresh_token: str | None = None) -> str:
        with self.lock:
            token = "CO" + secrets.token_urlsafe(48)
            ttl = self.config.access_token_ttl_seconds if ttl is None else ttl
            scopes = self.granted.get(refresh_token or "", ALL_SCOPES)
            self.tokens[token] = _Token(token, "oauth",
                                        f"oauth:{self.client_id}:{self.config.portal_id}",
                                        self.clock.time() + ttl, refresh_token, scopes)
            return token

    def issue_auth_code(self, *, redirect_uri: str | None = None,
                        scopes: tuple[str, ...] = ALL_SCOPES) -> str:
        """A code as the install screen hands it out, granting ``scopes`` (what the
        authorize URL asked in ``scope``)."""
        with self.lock:
            code = str(uuid.uuid4())
            self.auth_codes[code] = (redirect_uri, self.clock.time() + 600)
            self.code_scopes[code] = scopes
            return code

    def expire_access_tokens(self, token: str | None = None) -> int:
        with self.lock:
            n = 0
            for t in self.tokens.values():
                if t.kind == "oauth" and (token is None or t.token == token):
                    t.expires_at = self.clock.time() - 1
                    n += 1
            return n

    def revoke_refresh_token(self, token: str) -> bool:
        with self.lock:
            if token not in self.refresh_tokens:
                return False
            self.refresh_tokens[token] = True
            return True

    def objects(self, object_type: str, *, archived: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            t = self._type(object_type)
            return [self._wire(o, None, created=True) for o in self.store[t].values()
                    if o.archived == archived]

    def get_object(self, object_type: str, object_id: str | int) -> dict[str, Any] | None:
        with self.lock:
            t = self._type(object_type)
            obj = self.store[t].get(int(object_id))
            return self._wire(obj, None, created=True) if obj and not obj.archived else None

    def find(self, object_type: str, **properties: Any) -> list[dict[str, Any]]:
        """Live objects whose properties equal ``properties`` (case-insensitive)."""
        want = {k: str(v).lower() for k, v in properties.items()}
        return [o for o in self.objects(object_type)
                if all(str(o["properties"].get(k) or "").lower() == v for k, v in want.items())]

    def insert(self, object_type: str, properties: dict[str, Any]) -> str:
        """Seed one object directly (no API call, no rate limit)."""
        with self.lock:
            obj = self._create(self._type(object_type), properties, None)
            obj.seeded = True
            return str(obj.id)

    def seed(self, object_type: str, count: int, factory: Any = None) -> list[str]:
        """Seed ``count`` objects; ``factory(i) -> properties`` (default: numbered contacts)."""
        with self.lock:
            t = self._type(object_type)
            make = factory or (lambda i: {"email": f"seed{i}@example.com",
                                          "firstname": f"Seed{i}", "lastname": "Sandbox"})
            made = [self._create(t, make(i), None) for i in range(count)]
            for obj in made:
                obj.seeded = True
            return [str(obj.id) for obj in made]

    def associations(self, from_type: str, from_id: str | int, to_type: str) -> list[int]:
        with self.lock:
            a, b = self._type(from_type), self._type(to_type)
            return sorted({to_id for (ft, fid, tt, to_id, _t) in self.assocs
                           if ft == a and fid == int(from_id) and tt == b})

    # --------------------------------------------------------- Emulator API
    def reset_data(self) -> None:
        self.store: dict[str, dict[int, _Obj]] = {t: {} for t in OBJECT_TYPE_IDS}
        self._unique: dict[tuple[str, str], dict[str, int]] = {}
        self.assocs: set[tuple[str, int, str, int, int]] = set()
        # emails a GDPR delete blocked from coming back (not enforced on create: unverified)
        self.gdpr_blocklist: set[str] = set()
        self._next_id = {t: _ID_BASE[t] + 1 for t in OBJECT_TYPE_IDS}
        self._hits.clear()
        self._search_hits.clear()
        self._daily.clear()
        if hasattr(self, "access_token"):  # keep only the ready-made credentials, valid again
            self.tokens = {t: v for t, v in self.tokens.items()
                           if t in (self.private_app_token, self.access_token)}
            self.tokens[self.access_token].expires_at = (
                self.clock.time() + self.config.access_token_ttl_seconds)
            self.refresh_tokens = {self.refresh_token: False}
            self.auth_codes.clear()

    def reconfigured(self, settings: dict[str, Any]) -> None:
        if not settings or "unique_property" in settings:
            self.schema = _build_schema(self.config.unique_property)
            self._reindex()

    def snapshot(self) -> dict[str, Any]:
        return {
            "objects": {t: self.objects(t) for t in OBJECT_TYPE_IDS},
            "associations": [
                {"from": {"type": a, "id": str(i)}, "to": {"type": b, "id": str(j)},
                 "typeId": tid} for (a, i, b, j, tid) in sorted(self.assocs)],
        }

    def fault_response(self, status: int) -> tuple[int, dict[str, str], bytes]:
        body = {"status": "error", "message": "internal error", "correlationId":
                str(uuid.uuid4()), "category": "INTERNAL_ERROR" if status >= 500 else "ERROR"}
        if status == 429:
            body = self._rate_body("SECONDLY")
        return status, {"content-type": JSON_CT}, json.dumps(body).encode()

    def control_routes(self) -> list[BaseRoute]:
        def objects(data: dict[str, Any], request: Request) -> Response:
            try:
                return JSONResponse({"results": self.objects(request.path_params["type"])})
            except KeyError:
                return JSONResponse({"error": "unknown object type"}, status_code=404)

        return [
            *token_control_routes(
                credentials=self.credentials,
                token=lambda data: self.issue_access_token(ttl=data.get("ttl")),
                expire=self.expire_access_tokens,
                revoke=lambda token: self.revoke_refresh_token(token or ""),
                code=lambda data: self.issue_auth_code(redirect_uri=data.get("redirect_uri")),
            ),
            *control_routes({"/objects/{type}": ("GET", objects)}),
        ]

    # ----------------------------------------------------------------- ASGI
    def build_app(self) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            request = Request(scope, receive)
            raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
            parts = segments(raw_path)
            if parts[:1] == ["oauth"]:  # the OAuth server answers before any token check
                response = await self._oauth(request, parts[1:])
                await response(scope, receive, send)
                return
            body = await request.body()
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"),
                             keep_blank_values=True)
            auth = request.headers.get("authorization", "")
            with self.lock:
                resp = self._handle(scope["method"], parts, query, auth, body)
            headers = dict(resp.headers)
            headers["X-HubSpot-Correlation-Id"] = str(uuid.uuid4())
            if resp.status == 204 or resp.body is None:
                response = Response(b"", status_code=resp.status, headers=headers)
            else:
                headers["content-type"] = JSON_CT
                response = Response(json.dumps(resp.body).encode(), status_code=resp.status,
                                    headers=headers)
            await response(scope, receive, send)

        return app

    def _handle(self, method: str, parts: list[str], query: dict[str, list[str]], auth: str,
                raw: bytes) -> HsResponse:
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        tok = self.tokens.get(token)
        now = self.clock.time()
        if tok is None:
            return HsResponse(401, HsError(401, AUTH_NOT_FOUND, "INVALID_AUTHENTICATION").body())
        if tok.expires_at is not None and tok.expires_at <= now:
            ago = int(now - tok.expires_at)
            expired_at = hs_datetime(datetime.fromtimestamp(tok.expires_at, UTC))
            return HsResponse(401, HsError(
                401, f"The OAuth token used to make this call expired {ago} second(s) ago.",
                "EXPIRED_AUTHENTICATION", context={"expire time": [expired_at]}).body())
        is_search = len(parts) == 5 and parts[:3] == ["crm", "v3", "objects"] and \
            parts[4] == "search" and method == "POST"
        needed = required_scope(method, parts, is_search)
        if self.config.enforce_scopes and needed and needed not in tok.scopes:
            self.knobs.count("hs.missing_scopes")
            return HsResponse(403, HsError(
                403, "This app hasn't been granted all required scopes to make this call. "
                "Read more about required scopes here: https://developers.hubspot.com/scopes.",
                "MISSING_SCOPES", errors=[{
                    "message": "One or more of the following scopes are required.",
                    "context": {"requiredGranularScopes": [needed]}}]).body())
        limited = self._rate_limit(tok, is_search, token)
        if limited is not None:
            return limited
        headers = self._rate_headers(tok)
        try:
            payload = json.loads(raw) if raw.strip() else None
        except ValueError:
            return HsResponse(400, HsError(400, "Invalid input JSON on line 1",
                                           "VALIDATION_ERROR").body(), headers)
        try:
            resp = self._dispatch(method, parts, query, payload)
        except HsError as exc:
            resp = HsResponse(exc.status, exc.body())
        resp.headers.update(headers)
        return resp

    # ---------------------------------------------------------- rate limits
    def _rate_body(self, policy: str) -> dict[str, Any]:
        message = ("You have reached your daily limit." if policy == "DAILY"
                   else "You have reached your secondly limit.")
        return {"status": "error", "message": message, "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()), "policyName": policy}

    def _day(self, now: float) -> str:
        """The account's calendar day: the daily limit resets at its midnight."""
        return datetime.fromtimestamp(now, ZoneInfo(self.config.time_zone)).date().isoformat()

    def _rate_limit(self, tok: _Token, is_search: bool, token: str) -> HsResponse | None:
        cfg = self.config
        now = self.clock.time()
        key = tok.app_key
        if tok.kind == "private":
            day = self._day(now)
            current_day, used = self._daily.get(key, (day, 0))
            if current_day != day:
                used = 0
            if used >= cfg.daily_limit:
                self.knobs.count("hs.rate_limited.daily")
                return HsResponse(429, self._rate_body("DAILY"), self._rate_headers(tok))
        hits = self._hits[key]
        horizon = now - cfg.rate_limit_interval_ms / 1000.0
        while hits and hits[0] <= horizon:
            hits.popleft()
        if len(hits) >= cfg.rate_limit_max:
            self.knobs.count("hs.rate_limited.secondly")
            return HsResponse(429, self._rate_body("SECONDLY"), self._rate_headers(tok))
        if is_search:
            shits = self._search_hits[token]
            while shits and shits[0] <= now - 1.0:
                shits.popleft()
            if len(shits) >= cfg.search_rate_limit_per_second:
                self.knobs.count("hs.rate_limited.search")
                return HsResponse(429, self._rate_body("SECONDLY"), self._rate_headers(tok))
            shits.append(now)
        hits.append(now)
        if tok.kind == "private":
            day = self._day(now)
            current_day, used = self._daily.get(key, (day, 0))
            self._daily[key] = (day, (used if current_day == day else 0) + 1)
        self.knobs.count("hs.api_calls")
        return None

    def _rate_headers(self, tok: _Token) -> dict[str, str]:
        cfg = self.config
        hits = self._hits[tok.app_key]
        headers = {
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(cfg.rate_limit_interval_ms),
            "X-HubSpot-RateLimit-Max": str(cfg.rate_limit_max),
            "X-HubSpot-RateLimit-Remaining": str(max(0, cfg.rate_limit_max - len(hits))),
        }
        if tok.kind == "private":
            day = self._day(self.clock.time())
            current_day, used = self._daily.get(tok.app_key, (day, 0))
            used = used if current_day == day else 0
            headers["X-HubSpot-RateLimit-Daily"] = str(cfg.daily_limit)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(max(0, cfg.daily_limit - used))
        return headers

    # ------------------------------------------------------------- dispatch
    def _type(self, name: str) -> str:
        t = _ALIASES.get(name.lower()) if isinstance(name, str) else None
        if t is None:
            raise KeyError(name)
        return t

    def _req_type(self, name: str) -> str:
        try:
            return self._type(name)
        except KeyError:
            raise HsError(400, f"Unable to infer object type from: {name}",
                          "VALIDATION_ERROR") from None

    def _dispatch(self, method: str, parts: list[str], query: dict[str, list[str]],
                  payload: Any) -> HsResponse:
        found = self._api_routes.match(method, parts)
        if found is None:
            return HsResponse(404, {"status": "error", "message": "Not Found",
                                    "correlationId": str(uuid.uuid4())})
        return found.handler(method, query, payload, **found.params)

    @cached_property
    def _api_routes(self) -> RouteTable[Callable[..., HsResponse]]:
        # (method, path, handler(method, query, payload, **captures)); first match wins
        return RouteTable([
            *self._object_routes("crm/v3/objects/{type}"),
            ("*", "crm/v3/properties/{type}/{rest*}",
             lambda m, q, p, type, rest: self._properties(m, self._req_type(type), rest, p)),
            ("*", "crm/v4/objects/{from_type}/{id}/{to_type}/{rest*}",
             lambda m, q, p, from_type, id, to_type, rest:
                 self._assoc_single(m, [from_type, id, to_type, *rest], p)),
            ("*", "crm/v4/associations/{from_type}/{to_type}/batch/{rest+}",
             lambda m, q, p, from_type, to_type, rest: self._assoc_batch(
                 m, self._req_type(from_type), self._req_type(to_type), rest, p)),
            ("GET", "account-info/v3/details", lambda m, q, p: self._account_info()),
        ])

    def _account_info(self) -> HsResponse:
        local = self.clock.now().astimezone(ZoneInfo(self.config.time_zone))
        offset = local.utcoffset() or timedelta()
        return HsResponse(200, {"portalId": self.config.portal_id, "accountType": "STANDARD",
                                "timeZone": self.config.time_zone, "companyCurrency": "EUR",
                                "additionalCurrencies": [],
                                "utcOffset": local.isoformat()[-6:],
                                "utcOffsetMilliseconds": int(offset.total_seconds() * 1000),
                                "uiDomain": "app-eu1.hubspot.com",
                                "dataHostingLocation": "eu1"})

    # -------------------------------------------------------------- objects
    def _object_routes(self, base: str) -> list[tuple[str, str, Callable[..., HsResponse]]]:
        """The CRM object endpoints under ``base`` (``.../objects/{type}``): every handler
        resolves the type first (400 for an unknown one, whatever the rest of the path)."""
        def on(handler: Callable[..., HsResponse]) -> Callable[..., HsResponse]:
            return lambda m, q, p, type, **kw: handler(self._req_type(type), q, p, **kw)

        def not_allowed(t: str, q: dict[str, list[str]], p: Any) -> HsResponse:
            raise HsError(405, "Method Not Allowed", "VALIDATION_ERROR")

        def not_found(t: str, q: dict[str, list[str]], p: Any, rest: list[str]) -> HsResponse:
            raise HsError(404, "resource not found", "OBJECT_NOT_FOUND")

        return [
            ("POST", base, on(self._create_endpoint)),
            ("GET", base, on(lambda t, q, p: self._list(
                t, q, _multi(q, "properties"), _multi(q, "associations"), _archived(q)))),
            ("*", base, on(not_allowed)),
            ("POST", base + "/search", on(lambda t, q, p: self._search(t, _dict(p)))),
            ("POST", base + "/gdpr-delete", on(self._gdpr_delete_endpoint)),
            ("POST", base + "/batch/{action}",
             on(lambda t, q, p, action: self._batch(t, action, _dict(p)))),
            ("GET", base + "/{id}", on(self._read_endpoint)),
            ("PATCH", base + "/{id}", on(self._update_endpoint)),
            ("DELETE", base + "/{id}", on(self._archive_endpoint)),
            ("*", base + "/{rest*}", on(not_found)),
        ]

    def _create_endpoint(self, t: str, query: dict[str, list[str]], payload: Any) -> HsResponse:
        body = _dict(payload)
        obj = self._create(t, _dict(body.get("properties", {})), body.get("associations"))
        return HsResponse(201, self._wire(obj, None, created=True))

    def _read_endpoint(self, t: str, query: dict[str, list[str]], payload: Any,
                       id: str) -> HsResponse:
        props, assoc_types = _multi(query, "properties"), _multi(query, "associations")
        obj = self._lookup(t, id, _id_property(query), archived=_archived(query))
        if obj is None:
            raise HsError(404, "resource not found", "OBJECT_NOT_FOUND")
        return HsResponse(200, self._wire(obj, props or None, assoc_types=assoc_types))

    def _update_endpoint(self, t: str, query: dict[str, list[str]], payload: Any,
                         id: str) -> HsResponse:
        obj = self._lookup(t, id, _id_property(query))
        if obj is None:
            raise HsError(404, "resource not found", "OBJECT_NOT_FOUND")
        self._update(obj, _dict(_dict(payload).get("properties", {})))
        return HsResponse(200, self._wire(obj, None, created=True))

    def _archive_endpoint(self, t: str, query: dict[str, list[str]], payload: Any,
                          id: str) -> HsResponse:
        obj = self._lookup(t, id, None)
        if obj is not None:
            self._archive(obj)
        return HsResponse(204)

    def _gdpr_delete_endpoint(self, t: str, query: dict[str, list[str]],
                              payload: Any) -> HsResponse:
        """``POST /crm/v3/objects/contacts/gdpr-delete`` ``{"objectId", "idProperty"?}``
        → 204, no body: "Permanently delete a contact and all associated content to
        follow GDPR. Use optional property idProperty set to email to identify contact
        by email address. If email address is not found, the email address will be added
        to a blocklist" (https://developers.hubspot.com/docs/api-reference/crm-contacts-v3/
        basic/post-crm-v3-objects-contacts-gdpr-delete; hubspot-api-client
        ``crm.contacts.basic_api.purge``, ``PublicGdprDeleteInput``, objectId required).
        Contacts only. The record leaves the store for good (not archived: no longer
        readable with ``archived=true``), with its associations. Unverified, kept
        strict: an unknown id answers 404 ``OBJECT_NOT_FOUND`` like a read."""
        if t != "contacts":
            raise HsError(400, f"GDPR delete is only available for contacts, not {t}")
        body = _dict(payload)
        object_id = body.get("objectId")
        if not isinstance(object_id, str) or not object_id:
            raise HsError(400, "Invalid input JSON on line 1: objectId is required "
                               "and must be a string")
        id_property = body.get("idProperty")
        if id_property is not None and not isinstance(id_property, str):
            raise HsError(400, "idProperty must be a string")
        obj = self._lookup(t, object_id, id_property or None)
        if obj is None:
            obj = self._lookup(t, object_id, id_property or None, archived=True)
        if obj is None:
            if id_property == "email":
                self.gdpr_blocklist.add(object_id.lower())
                return HsResponse(204)
            raise HsError(404, "resource not found", "OBJECT_NOT_FOUND")
        email = obj.properties.get("email")
        if not obj.archived:
            self._archive(obj)
        del self.store[t][obj.id]
        if email:
            self.gdpr_blocklist.add(str(email).lower())
        self.knobs.count("hs.gdpr_delete")
        return HsResponse(204)

    def _list(self, t: str, query: dict[str, list[str]], props: list[str],
              assoc_types: list[str], archived: bool) -> HsResponse:
        try:
            limit = int((query.get("limit") or ["10"])[0])
            after = int((query.get("after") or ["0"])[0] or 0)
        except ValueError:
            raise HsError(400, "limit and after must be integers") from None
        if limit < 1 or limit > self.config.list_max_limit:
            raise HsError(400, f"limit must be between 1 and {self.config.list_max_limit}")
        objs = sorted((o for o in self.store[t].values() if o.archived == archived),
                      key=lambda o: o.id)
        objs = [o for o in objs if o.id > after]
        page = objs[:limit]
        body: dict[str, Any] = {"results": [self._wire(o, props or None, assoc_types=assoc_types)
                                            for o in page]}
        if len(objs) > limit:
            nxt = str(page[-1].id)
            base = self.url if self.running else ""
            link = f"{base}/crm/v3/objects/{t}?{urlencode({'after': nxt})}"
            body["paging"] = {"next": {"after": nxt, "link": link}}
        return HsResponse(200, body)

    def _lookup(self, t: str, ident: str, id_property: str | None, *,
                archived: bool = False) -> _Obj | None:
        if id_property and id_property != "hs_object_id":
            pdef = self.schema[t].get(id_property)
            if pdef is None or not pdef.unique:
                raise HsError(400, f"Unable to perform lookup by non-unique {SINGULAR[t]} "
                                   f"property {id_property}")
            oid = self._unique.get((t, id_property), {}).get(ident.lower())
            return self.store[t].get(oid) if oid is not None else None
        try:
            obj = self.store[t].get(int(ident))
        except ValueError:
            return None
        if obj is None or obj.archived != archived:
            return None
        return obj

    def _wire(self, obj: _Obj, props: list[str] | None, *, created: bool = False,
              assoc_types: list[str] | None = None) -> dict[str, Any]:
        t = obj.type
        defaults = DEFAULT_PROPERTIES.get(t, ENGAGEMENT_DEFAULTS)
        if props is None:
            names = list(defaults)
            if created:
                names += [k for k, v in obj.properties.items() if v is not None]
        else:
            names = list(defaults) + [p for p in props if p in self.schema[t]]
        out_props = {n: obj.properties.get(n) for n in sorted(set(names))}
        out: dict[str, Any] = {"id": str(obj.id), "properties": out_props,
                               "createdAt": hs_datetime(obj.created_at),
                               "updatedAt": hs_datetime(obj.updated_at),
                               "archived": obj.archived}
        if obj.archived and obj.archived_at:
            out["archivedAt"] = hs_datetime(obj.archived_at)
        if assoc_types:
            assoc: dict[str, Any] = {}
            for name in assoc_types:
                try:
                    to = self._type(name)
                except KeyError:
                    continue
                rows = sorted((to_id, tid) for (ft, fid, tt, to_id, tid) in self.assocs
                              if ft == t and fid == obj.id and tt == to)
                if rows:
                    assoc[name] = {"results": [{"id": str(i), "type": TYPE_NAMES.get(
                        tid, str(tid))} for i, tid in rows]}
            if assoc:
                out["associations"] = assoc
        return out

    # ---------------------------------------------------------- validation
    def _coerce(self, t: str, properties: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        problems: list[dict[str, Any]] = []
        out: dict[str, str | None] = {}
        for name, raw in properties.items():
            pdef = self.schema[t].get(name)
            if pdef is None:
                problems.append({"name": name, "error": "PROPERTY_DOESNT_EXIST",
                                 "message": f'Property "{name}" does not exist'})
                continue
            if pdef.read_only:
                problems.append({"name": name, "error": "READ_ONLY_VALUE",
                                 "message": f'"{name}" is a read only property; its value cannot'
                                            " be set."})
                continue
            try:
                out[name] = self._value(pdef, raw)
            except ValueError as exc:
                problems.append({"name": name, "error": exc.args[0], "message": exc.args[1]})
        if creating:
            for pdef in self.schema[t].values():
                if pdef.required and not out.get(pdef.name):
                    problems.append({"name": pdef.name, "error": "REQUIRED_PROPERTY",
                                     "message": f"{pdef.name} is required"})
        if problems:
            raise _invalid(problems, self.config.portal_id)
        return out

    def _value(self, pdef: PropDef, raw: Any) -> str | None:
        if raw is None or raw == "":
            return None
        if isinstance(raw, bool):
            raw = "true" if raw else "false"
        text = str(raw).strip() if not isinstance(raw, (dict, list)) else None
        if text is None:
            raise ValueError("INVALID_PROPERTY_VALUE", f"{raw!r} is not a valid value")
        if pdef.type == "number":
            try:
                number = float(text)
            except ValueError:
                raise ValueError("INVALID_FLOAT", f"{text} was not a valid number") from None
            return str(int(number)) if number.is_integer() else repr(number)
        if pdef.type == "datetime":
            try:
                if re.fullmatch(r"-?\d+", text):
                    dt = datetime.fromtimestamp(int(text) / 1000, UTC)
                else:
                    dt = parse_datetime(text if "T" in text else text + "T00:00:00Z")
            except (ValueError, OverflowError):
                raise ValueError("INVALID_DATE", f"{text} was not a valid long or ISO 8601 "
                                                 "timestamp") from None
            return hs_datetime(dt)
        if pdef.type == "date":
            try:
                if re.fullmatch(r"\d+", text):
                    d = datetime.fromtimestamp(int(text) / 1000, UTC)
                    if d.hour or d.minute or d.second:
                        raise ValueError
                    return d.date().isoformat()
                return date.fromisoformat(text).isoformat()
            except ValueError:
                raise ValueError("INVALID_DATE", f"{text} is not a valid date") from None
        if pdef.type == "bool":
            if text.lower() not in ("true", "false"):
                raise ValueError("INVALID_BOOLEAN", f"{text} is not a valid boolean")
            return text.lower()
        if pdef.type == "enumeration" and pdef.options:
            if text not in pdef.options:
                raise ValueError("INVALID_OPTION", f"{text} was not one of the allowed options: "
                                                   f"[{', '.join(pdef.options)}]")
        if pdef.name == "email":
            text = text.lower()
            if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text):
                raise ValueError("INVALID_EMAIL", f"Email address {text} is invalid")
        return text

    def _check_unique(self, t: str, values: dict[str, str | None], self_id: int | None) -> None:
        for name, value in values.items():
            pdef = self.schema[t].get(name)
            if not pdef or not pdef.unique or value is None:
                continue
            other = self._unique.get((t, name), {}).get(value.lower())
            if other is None or other == self_id:
                continue
            if t == "contacts" and name == "email":
                raise HsError(409, f"Contact already exists. Existing ID: {other}", "CONFLICT")
            # message shape for custom unique properties is unverified
            raise HsError(409, f"A {SINGULAR[t]} with {name} \"{value}\" already exists."
                               f" Existing ID: {other}", "CONFLICT")

    def _index(self, obj: _Obj, *, add: bool) -> None:
        """Maintain the unique-value index (live objects only)."""
        for name, pdef in self.schema[obj.type].items():
            value = obj.properties.get(name)
            if not pdef.unique or value is None:
                continue
            bucket = self._unique.setdefault((obj.type, name), {})
            if add:
                bucket[value.lower()] = obj.id
            elif bucket.get(value.lower()) == obj.id:
                del bucket[value.lower()]

    def _reindex(self) -> None:
        self._unique = {}
        for objs in self.store.values():
            for obj in objs.values():
                if not obj.archived:
                    self._index(obj, add=True)

    # -------------------------------------------------------------- writes
    def _stamp(self) -> datetime:
        now = self.clock.now()
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    def _create(self, t: str, properties: dict[str, Any], associations: Any) -> _Obj:
        values = self._coerce(t, properties, creating=True)
        self._check_unique(t, values, None)
        links = self._parse_inline_associations(t, associations)
        now = self._stamp()
        oid = self._next_id[t]
        self._next_id[t] = oid + 1
        props: dict[str, str | None] = dict(values)
        stamp = hs_datetime(now)
        props["hs_object_id"] = str(oid)
        props["hs_lastmodifieddate"] = stamp
        if t in ("contacts", "companies"):
            props["createdate"] = stamp
        else:
            props["hs_createdate"] = stamp
        if t == "contacts":
            props["lastmodifieddate"] = stamp
        obj = _Obj(oid, t, props, now, now)
        self.store[t][oid] = obj
        self._index(obj, add=True)
        for to_type, to_id, type_id in links:
            self._associate(t, oid, to_type, to_id, type_id)
        self.knobs.count(f"hs.create.{t}")
        return obj

    def _update(self, obj: _Obj, properties: dict[str, Any]) -> None:
        values = self._coerce(obj.type, properties, creating=False)
        self._check_unique(obj.type, values, obj.id)
        merged = dict(obj.properties)
        merged.update(values)
        for pdef in self.schema[obj.type].values():
            if pdef.required and not merged.get(pdef.name):
                raise _invalid([{"name": pdef.name, "error": "REQUIRED_PROPERTY",
                                 "message": f"{pdef.name} is required"}], self.config.portal_id)
        now = self._stamp()
        merged["hs_lastmodifieddate"] = hs_datetime(now)
        if obj.type == "contacts":
            merged["lastmodifieddate"] = hs_datetime(now)
        self._index(obj, add=False)
        obj.properties = merged
        obj.updated_at = now
        self._index(obj, add=True)
        self.knobs.count(f"hs.update.{obj.type}")

    def _archive(self, obj: _Obj) -> None:
        self._index(obj, add=False)
        obj.archived = True
        obj.archived_at = self._stamp()
        self.assocs = {a for a in self.assocs if not ((a[0] == obj.type and a[1] == obj.id) or
                                                       (a[2] == obj.type and a[3] == obj.id))}
        self.knobs.count(f"hs.archive.{obj.type}")

    # -------------------------------------------------------------- batches
    def _batch(self, t: str, action: str, body: dict[str, Any]) -> HsResponse:
        inputs = body.get("inputs")
        if not isinstance(inputs, list):
            raise HsError(400, "Invalid input JSON: 'inputs' is required")
        if len(inputs) > self.config.batch_max_inputs:
            raise HsError(400, f"Batch input size must be less than or equal to "
                               f"{self.config.batch_max_inputs}; got {len(inputs)}")
        started = hs_datetime(self.clock.now())
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        status = 200
        if action == "create":
            multi = bool(inputs) and all(isinstance(i, dict) and i.get("objectWriteTraceId")
                                         for i in inputs)
            if not multi:  # all or nothing: validate everything first
                snapshot = self._snapshot_data()
                try:
                    for item in inputs:
                        item = _dict(item)
                        obj = self._create(t, _dict(item.get("properties", {})),
                                           item.get("associations"))
                        results.append(self._wire(obj, None, created=True))
                except HsError:
                    self._restore_data(snapshot)
                    raise
            else:
                for item in inputs:
                    try:
                        obj = self._create(t, _dict(item.get("properties", {})),
                                           item.get("associations"))
                        wired = self._wire(obj, None, created=True)
                        wired["objectWriteTraceId"] = item["objectWriteTraceId"]
                        results.append(wired)
                    except HsError as exc:
                        errors.append(exc.batch_error(
                            objectWriteTraceId=[str(item["objectWriteTraceId"])]))
            status = 201
        elif action == "read":
            props = body.get("properties") or []
            id_property = body.get("idProperty")
            missing = []
            for item in inputs:
                ident = str(_dict(item).get("id", ""))
                obj = self._lookup(t, ident, id_property)
                if obj is None:
                    missing.append(ident)
                else:
                    results.append(self._wire(obj, list(props) or None))
            if missing:
                errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                               "message": f"Could not get some {SINGULAR[t].upper()} objects, "
                                          "they may be deleted or not exist. Check that ids are "
                                          "valid.", "context": {"ids": missing}})
        elif action == "update":
            missing = []
            for item in inputs:
                item = _dict(item)
                ident = str(item.get("id", ""))
                obj = self._lookup(t, ident, item.get("idProperty"))
                if obj is None:
                    missing.append(ident)
                    continue
                try:
                    self._update(obj, _dict(item.get("properties", {})))
                    results.append(self._wire(obj, None, created=True))
                except HsError as exc:
                    errors.append(exc.batch_error(ids=[ident]))
            if missing:
                errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                               "message": "Could not find some objects to update",
                               "context": {"ids": missing}})
        elif action == "upsert":
            results, errors = self._batch_upsert(t, inputs)
        elif action == "archive":
            for item in inputs:
                obj = self._lookup(t, str(_dict(item).get("id", "")), None)
                if obj is not None:
                    self._archive(obj)
            return HsResponse(204)
        else:
            raise HsError(404, "resource not found", "OBJECT_NOT_FOUND")
        out: dict[str, Any] = {"status": "COMPLETE", "results": results,
                               "startedAt": started,
                               "completedAt": hs_datetime(self.clock.now())}
        if errors:
            out["numErrors"] = len(errors)
            out["errors"] = errors
            status = 207
        return HsResponse(status, out)

    def _batch_upsert(self, t: str, inputs: list[Any]) -> tuple[list[dict[str, Any]],
                                                                 list[dict[str, Any]]]:
        seen: set[tuple[str, str]] = set()
        dupes: list[str] = []
        for item in inputs:
            item = _dict(item)
            prop = item.get("idProperty")
            if not prop:
                raise HsError(400, "idProperty is required for upsert")
            pdef = self.schema[t].get(prop)
            if pdef is None or not pdef.unique:
                raise HsError(400, f"Unable to perform update/upsert by non-unique "
                                   f"{OBJECT_TYPE_IDS[t]} property {prop} in portal ID "
                                   f"{self.config.portal_id}")
            key = (prop, str(item.get("id", "")).lower())
            if key in seen:
                dupes.append(key[1])
            seen.add(key)
        if dupes:
            raise HsError(400, f"Duplicate IDs found in batch input: {sorted(set(dupes))}. IDs "
                               "must be unique")
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        snapshot = self._snapshot_data() if self.config.batch_all_or_nothing else None
        undo: list[tuple[_Obj, dict[str, str | None], datetime]] = []  # updates to roll back
        for item in inputs:
            prop, ident = item["idProperty"], str(item.get("id", ""))
            props = dict(_dict(item.get("properties", {})))
            try:
                obj = self._lookup(t, ident, prop)
                if obj is None:
                    props.setdefault(prop, ident)
                    obj = self._create(t, props, None)
                    new = True
                else:
                    undo.append((obj, obj.properties, obj.updated_at))
                    self._update(obj, props)
                    new = False
            except HsError as exc:
                if snapshot is not None and exc.status == 409:
                    for obj, properties, updated_at in undo:
                        obj.properties, obj.updated_at = properties, updated_at
                    self._restore_data(snapshot)
                    self.knobs.count(f"hs.batch_refused.{t}")
                    raise
                errors.append(exc.batch_error(ids=[ident]))
                continue
            wired = self._wire(obj, None, created=True)
            wired["new"] = new
            if item.get("objectWriteTraceId"):
                wired["objectWriteTraceId"] = item["objectWriteTraceId"]
            results.append(wired)
        return results, errors

    def _snapshot_data(self) -> Any:
        return ({t: dict(objs) for t, objs in self.store.items()}, set(self.assocs),
                dict(self._next_id))

    def _restore_data(self, snapshot: Any) -> None:
        self.store, self.assocs, self._next_id = snapshot
        self._reindex()

    # --------------------------------------------------------------- search
    def _search(self, t: str, body: dict[str, Any]) -> HsResponse:
        cfg = self.config
        limit = body.get("limit", 10)
        try:
            limit = int(limit)
            after = int(body.get("after") or 0)
        except (TypeError, ValueError):
            raise HsError(400, "limit and after must be integers") from None
        if limit < 1 or limit > cfg.search_max_limit:
            raise HsError(400, f"limit must be between 1 and {cfg.search_max_limit}; got {limit}")
        if after + limit > cfg.search_max_results:
            # HubSpot refuses to page past 10,000 results (exact body unverified)
            raise HsError(400, f"Paging beyond {cfg.search_max_results} results is not "
                               f"supported: after={after}, limit={limit}")
        groups = body.get("filterGroups") or []
        if len(groups) > 5:
            raise HsError(400, "Too many filter groups: at most 5 are allowed")
        if sum(len(_dict(g).get("filters") or []) for g in groups) > 18:
            raise HsError(400, "Too many filters: at most 18 in total are allowed")
        matchers = [[self._filter(t, _dict(f)) for f in (_dict(g).get("filters") or [])]
                    for g in groups]
        for g in groups:
            if len(_dict(g).get("filters") or []) > 6:
                raise HsError(400, "Too many filters in a group: at most 6 are allowed")
        text = str(body.get("query") or "").strip().lower()
        visible_after = self.clock.now() - timedelta(seconds=cfg.search_index_delay_seconds)
        rows = [o for o in self.store[t].values() if not o.archived and
                (cfg.search_index_delay_seconds <= 0 or o.seeded or o.created_at <= visible_after)]
        if matchers:
            rows = [o for o in rows if any(all(m(o) for m in group) for group in matchers)]
        if text:
            fields = TEXT_SEARCH.get(t, tuple(n for n, p in self.schema[t].items()
                                              if p.type == "string"))
            rows = [o for o in rows if any(text in (o.properties.get(f) or "").lower()
                                           for f in fields)]
        rows.sort(key=lambda o: o.id)
        for spec in reversed(body.get("sorts") or []):
            prop, desc = _sort_spec(spec)
            pdef = self.schema[t].get(prop)
            if pdef is None:
                raise HsError(400, f"Invalid sort property {prop}")
            present = [o for o in rows if o.properties.get(prop) is not None]
            absent = [o for o in rows if o.properties.get(prop) is None]
            present.sort(key=lambda o, p=pdef: _typed_key(p, o.properties.get(p.name)),
                         reverse=desc)
            rows = present + absent
        page = rows[after : after + limit]
        props = list(body.get("properties") or [])
        out: dict[str, Any] = {"total": len(rows),
                               "results": [self._wire(o, props or None) for o in page]}
        if after + limit < len(rows):
            out["paging"] = {"next": {"after": str(after + limit)}}
        self.knobs.count(f"hs.search.{t}")
        return HsResponse(200, out)

    def _filter(self, t: str, f: dict[str, Any]) -> Any:
        prop = f.get("propertyName")
        op = str(f.get("operator") or "EQ").upper()
        if op not in FILTER_OPERATORS:
            raise HsError(400, f"Unsupported filter operator {op}")
        pdef = self.schema[t].get(str(prop))
        if pdef is None:
            raise HsError(400, f"Invalid filter property {prop}: it does not exist on "
                               f"{SINGULAR[t]}")

        def value(v: Any) -> Any:
            return _typed_key(pdef, self._filter_value(pdef, v))

        if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
            want = op == "HAS_PROPERTY"
            return lambda o: (o.properties.get(pdef.name) is not None) == want
        if op in ("IN", "NOT_IN"):
            values = {value(v) for v in (f.get("values") or [])}
            neg = op == "NOT_IN"
            return lambda o: (_typed_key(pdef, o.properties.get(pdef.name)) in values) != neg
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            pattern = str(f.get("value") or "").lower()
            rx = re.compile("^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$")
            neg = op == "NOT_CONTAINS_TOKEN"

            def contains(o: _Obj) -> bool:
                raw = (o.properties.get(pdef.name) or "").lower()
                tokens = [raw, *re.split(r"[\s@.,;:/\-_]+", raw)]
                return any(rx.match(tok) for tok in tokens if tok) != neg

            return contains
        if op == "BETWEEN":
            low, high = value(f.get("value")), value(f.get("highValue"))

            def between(o: _Obj) -> bool:
                v = _typed_key(pdef, o.properties.get(pdef.name))
                try:
                    return v is not None and low <= v <= high
                except TypeError:
                    return False

            return between
        target = value(f.get("value"))

        def compare(o: _Obj) -> bool:
            v = _typed_key(pdef, o.properties.get(pdef.name))
            if op == "EQ":
                return v is not None and v == target
            if op == "NEQ":
                return v != target
            if v is None or target is None:
                return False
            try:
                return {"LT": v < target, "LTE": v <= target, "GT": v > target,
                        "GTE": v >= target}[op]
            except TypeError:
                return False

        return compare

    def _filter_value(self, pdef: PropDef, raw: Any) -> str | None:
        if raw is None:
            return None
        if pdef.type in ("datetime", "date", "number"):
            try:
                return self._value(pdef, raw)
            except ValueError as exc:
                raise HsError(400, f"Invalid filter value for {pdef.name}: {exc.args[1]}") \
                    from None
        return str(raw)

    # --------------------------------------------------------- associations
    def _parse_inline_associations(self, t: str, associations: Any) -> list[tuple[str, int, int]]:
        links: list[tuple[str, int, int]] = []
        for assoc in associations or []:
            assoc = _dict(assoc)
            to_id = str(_dict(assoc.get("to")).get("id", ""))
            for spec in assoc.get("types") or []:
                spec = _dict(spec)
                type_id = int(spec.get("associationTypeId", 0))
                to_type = self._target_type(t, type_id)
                if to_type is None:
                    raise HsError(400, f"{type_id} is not a valid association type id from "
                                       f"{SINGULAR[t]}", "VALIDATION_ERROR")
                target = self._lookup(to_type, to_id, None)
                if target is None:
                    raise HsError(400, f"One or more associations are invalid: {SINGULAR[to_type]}"
                                       f" {to_id} does not exist", "VALIDATION_ERROR")
                links.append((to_type, target.id, type_id))
        return links

    def _target_type(self, from_type: str, type_id: int) -> str | None:
        for (a, b), tid in ASSOCIATION_TYPES.items():
            if a == from_type and tid == type_id:
                return b
        for (a, b), extra in EXTRA_TYPES.items():
            if a == from_type and type_id in extra:
                return b
        return None

    def _inverse_type(self, a: str, b: str, type_id: int) -> int:
        if type_id == ASSOCIATION_TYPES.get((a, b)):
            return ASSOCIATION_TYPES[(b, a)]
        fwd, back = EXTRA_TYPES.get((a, b), {}), EXTRA_TYPES.get((b, a), {})
        if type_id in fwd:
            label = fwd[type_id]
            return next((k for k, v in back.items() if v == label), ASSOCIATION_TYPES[(b, a)])
        return ASSOCIATION_TYPES[(b, a)]

    def _associate(self, a: str, a_id: int, b: str, b_id: int, type_id: int) -> None:
        self.assocs.add((a, a_id, b, b_id, type_id))
        self.assocs.add((b, b_id, a, a_id, self._inverse_type(a, b, type_id)))
        self.knobs.count("hs.associate")

    def _pair(self, a: str, b: str) -> int:
        type_id = ASSOCIATION_TYPES.get((a, b))
        if type_id is None:
            raise HsError(400, f"No default association type from {SINGULAR[a]} to "
                               f"{SINGULAR[b]}")
        return type_id

    def _need(self, t: str, ident: Any) -> _Obj:
        obj = self._lookup(t, str(ident), None)
        if obj is None:
            raise HsError(404, f"No {SINGULAR[t]} with id {ident} exists", "OBJECT_NOT_FOUND")
        return obj

    def _labels(self, a: str, b: str, type_ids: list[int]) -> list[dict[str, Any]]:
        out = []
        for tid in sorted(type_ids):
            label = EXTRA_TYPES.get((a, b), {}).get(tid)
            out.append({"category": "HUBSPOT_DEFINED", "typeId": tid, "label": label})
        return out

    def _assoc_single(self, method: str, parts: list[str], payload: Any) -> HsResponse:
        # parts: {from}/{id}/associations/[default/]{to}[/{toId}]
        if parts[2] != "associations":
            raise HsError(404, "resource not found", "OBJECT_NOT_FOUND")
        a = self._req_type(parts[0])
        obj = self._need(a, parts[1])
        rest = parts[3:]
        if rest and rest[0] == "default" and len(rest) == 3 and method == "PUT":
            b = self._req_type(rest[1])
            target = self._need(b, rest[2])
            type_id = self._pair(a, b)
            self._associate(a, obj.id, b, target.id, type_id)
            now = hs_datetime(self.clock.now())
            results = [
                {"from": {"id": str(obj.id)}, "to": {"id": str(target.id)},
                 "associationSpec": {"associationCategory": "HUBSPOT_DEFINED",
                                     "associationTypeId": type_id}},
                {"from": {"id": str(target.id)}, "to": {"id": str(obj.id)},
                 "associationSpec": {"associationCategory": "HUBSPOT_DEFINED",
                                     "associationTypeId": self._inverse_type(a, b, type_id)}},
            ]
            return HsResponse(200, {"status": "COMPLETE", "results": results,
                                    "startedAt": now, "completedAt": now})
        if len(rest) == 1 and method == "GET":
            b = self._req_type(rest[0])
            grouped: dict[int, list[int]] = collections.defaultdict(list)
            for (ft, fid, tt, to_id, tid) in self.assocs:
                if ft == a and fid == obj.id and tt == b:
                    grouped[to_id].append(tid)
            results = [{"toObjectId": to_id, "associationTypes": self._labels(a, b, tids)}
                       for to_id, tids in sorted(grouped.items())]
            return HsResponse(200, {"results": results})
        if len(rest) == 2 and method == "PUT":
            b = self._req_type(rest[0])
            target = self._need(b, rest[1])
            specs = payload if isinstance(payload, list) else []
            if not specs:
                raise HsError(400, "At least one association type is required")
            type_ids = []
            for spec in specs:
                tid = int(_dict(spec).get("associationTypeId", 0))
                if self._target_type(a, tid) != b:
                    raise HsError(400, f"{tid} is not a valid association type id from "
                                       f"{SINGULAR[a]} to {SINGULAR[b]}")
                self._associate(a, obj.id, b, target.id, tid)
                type_ids.append(tid)
            labels = [lbl["label"] for lbl in self._labels(a, b, type_ids) if lbl["label"]]
            return HsResponse(201, {"fromObjectTypeId": OBJECT_TYPE_IDS[a],
                                    "fromObjectId": obj.id, "toObjectTypeId": OBJECT_TYPE_IDS[b],
                                    "toObjectId": target.id, "labels": labels})
        if len(rest) == 2 and method == "DELETE":
            b = self._req_type(rest[0])
            to_id = int(rest[1]) if rest[1].isdigit() else -1
            self.assocs = {x for x in self.assocs if not (
                (x[0] == a and x[1] == obj.id and x[2] == b and x[3] == to_id) or
                (x[0] == b and x[1] == to_id and x[2] == a and x[3] == obj.id))}
            return HsResponse(204)
        raise HsError(404, "resource not found", "OBJECT_NOT_FOUND")

    def _assoc_batch(self, method: str, a: str, b: str, rest: list[str],
                     payload: Any) -> HsResponse:
        action = "/".join(rest)
        if method != "POST" or action not in ("read", "create", "archive", "associate/default"):
            raise HsError(404, "resource not found", "OBJECT_NOT_FOUND")
        inputs = _dict(payload).get("inputs")
        if not isinstance(inputs, list):
            raise HsError(400, "Invalid input JSON: 'inputs' is required")
        if len(inputs) > 2000:
            raise HsError(400, "Batch input size must be less than or equal to 2000")
        if action == "associate/default":
            return self._associate_default_batch(a, b, inputs)
        started = hs_datetime(self.clock.now())
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for item in inputs:
            item = _dict(item)
            try:
                if action == "read":
                    obj = self._need(a, item.get("id"))
                    grouped: dict[int, list[int]] = collections.defaultdict(list)
                    for (ft, fid, tt, to_id, tid) in self.assocs:
                        if ft == a and fid == obj.id and tt == b:
                            grouped[to_id].append(tid)
                    if grouped:
                        results.append({"from": {"id": str(obj.id)}, "to": [
                            {"toObjectId": to_id, "associationTypes": self._labels(a, b, tids)}
                            for to_id, tids in sorted(grouped.items())]})
                    continue
                src = self._need(a, _dict(item.get("from")).get("id"))
                dst = self._need(b, _dict(item.get("to")).get("id"))
                if action == "archive":
                    self.assocs = {x for x in self.assocs if not (
                        (x[0] == a and x[1] == src.id and x[2] == b and x[3] == dst.id) or
                        (x[0] == b and x[1] == dst.id and x[2] == a and x[3] == src.id))}
                    continue
                tids = []
                for spec in item.get("types") or []:
                    tid = int(_dict(spec).get("associationTypeId", 0))
                    if self._target_type(a, tid) != b:
                        raise HsError(400, f"{tid} is not a valid association type id from "
                                           f"{SINGULAR[a]} to {SINGULAR[b]}")
                    tids.append(tid)
                for tid in tids:
                    self._associate(a, src.id, b, dst.id, tid)
                results.append({"fromObjectTypeId": OBJECT_TYPE_IDS[a],
                                "fromObjectId": src.id, "toObjectTypeId": OBJECT_TYPE_IDS[b],
                                "toObjectId": dst.id,
                                "labels": [x["label"] for x in self._labels(a, b, tids)
                                           if x["label"]]})
            except HsError as exc:
                errors.append(exc.batch_error())
        if action == "archive":
            return HsResponse(204)
        out: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started,
                               "completedAt": hs_datetime(self.clock.now())}
        status = 201 if action == "create" else 200
        if errors:
            out["numErrors"] = len(errors)
            out["errors"] = errors
            status = 207
        return HsResponse(status, out)

    def _associate_default_batch(self, a: str, b: str, inputs: list[Any]) -> HsResponse:
        type_id = self._pair(a, b)
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        started = hs_datetime(self.clock.now())
        for item in inputs:
            item = _dict(item)
            try:
                src = self._need(a, _dict(item.get("from")).get("id"))
                dst = self._need(b, _dict(item.get("to")).get("id"))
            except HsError as exc:
                errors.append(exc.batch_error())
                continue
            self._associate(a, src.id, b, dst.id, type_id)
            results.append({"from": {"id": str(src.id)}, "to": {"id": str(dst.id)},
                            "associationSpec": {"associationCategory": "HUBSPOT_DEFINED",
                                                "associationTypeId": type_id}})
        out: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started,
                               "completedAt": hs_datetime(self.clock.now())}
        if errors:  # the published spec (and the SDK) know only 200 here, errors inside
            out["numErrors"] = len(errors)
            out["errors"] = errors
        return HsResponse(200, out)

    # ------------------------------------------------------------ properties
    def _properties(self, method: str, t: str, rest: list[str], payload: Any) -> HsResponse:
        props = self.schema[t]
        if not rest and method == "GET":
            return HsResponse(200, {"results": [p.describe(i) for i, p in
                                                enumerate(props.values())]})
        if len(rest) == 1 and method == "GET":
            pdef = props.get(rest[0])
            if pdef is None:
                raise HsError(404, f"Property {rest[0]} does not exist", "OBJECT_NOT_FOUND")
            return HsResponse(200, pdef.describe(list(props).index(rest[0])))
        if not rest and method == "POST":
            body = _dict(payload)
            name = str(body.get("name") or "")
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise HsError(400, f"Invalid property name {name!r}")
            if name in props:
                raise HsError(409, f"Property named '{name}' already exists.",
                              "OBJECT_ALREADY_EXISTS")
            options = tuple(str(_dict(o).get("value")) for o in body.get("options") or [])
            pdef = PropDef(name, str(body.get("type") or "string"),
                           str(body.get("fieldType") or "text"), str(body.get("label") or name),
                           str(body.get("groupName") or "info"), options,
                           unique=bool(body.get("hasUniqueValue")), custom=True,
                           created=hs_datetime(self.clock.now()))
            props[name] = pdef
            self._reindex()
            return HsResponse(201, pdef.describe(len(props) - 1))
        raise HsError(404, "resource not found", "OBJECT_NOT_FOUND")

    # ----------------------------------------------------------------- OAuth
    def _oauth_error(self, status: str, error: str, message: str) -> JSONResponse:
        return JSONResponse({"status": status, "message": message,
                             "correlationId": str(uuid.uuid4()), "error": error,
                             "error_description": message}, status_code=400)

    async def _oauth(self, request: Request, rest: list[str]) -> Response:
        found = self._oauth_routes.match(request.method, rest)
        if found is None:
            return JSONResponse({"status": "error", "message": "Not Found",
                                 "correlationId": str(uuid.uuid4())}, status_code=404)
        return await found.handler(request, **found.params)

    @cached_property
    def _oauth_routes(self) -> RouteTable[Callable[..., Awaitable[Response]]]:
        return RouteTable([
            ("GET", "authorize", self._authorize),
            ("POST", "v1/token", self._token_endpoint),
            ("GET", "v1/access-tokens/{token}", self._access_token_info),
            ("*", "v1/refresh-tokens/{token}", self._refresh_token_info),
        ])

    async def _authorize(self, request: Request) -> Response:
        params = request.query_params
        if params.get("client_id") != self.client_id or not params.get("redirect_uri"):
            return self._oauth_error("BAD_CLIENT_ID", "invalid_client",
                                     "missing or unknown client id / redirect_uri")
        asked = tuple((params.get("scope") or "").split())
        code = self.issue_auth_code(redirect_uri=params["redirect_uri"], scopes=asked)
        query = {"code": code}
        if params.get("state") is not None:
            query["state"] = params["state"]
        return redirect_with(params["redirect_uri"], query)

    async def _token_endpoint(self, request: Request) -> Response:
        form = read_form(await request.body())
        with self.lock:
            return self._token(form)

    async def _access_token_info(self, request: Request, token: str) -> Response:
        with self.lock:
            tok = self.tokens.get(token)
            if tok is None or tok.kind != "oauth":
                return JSONResponse({"status": "error", "message": "token not found",
                                     "correlationId": str(uuid.uuid4())}, status_code=404)
            left = max(0, round((tok.expires_at or 0) - self.clock.time()))
        return JSONResponse({"token": tok.token, "user": "sandbox@example.com",
                             "hub_domain": "relais-sandbox.hubspot.com",
                             "scopes": list(tok.scopes), "hub_id": self.config.portal_id,
                             "app_id": self.app_id, "expires_in": left, "user_id": 1,
                             "token_type": "access"})

    async def _refresh_token_info(self, request: Request, token: str) -> Response:
        with self.lock:
            revoked = self.refresh_tokens.get(token)
            if revoked is None or revoked:
                return JSONResponse({"status": "error", "message": "token not found",
                                     "correlationId": str(uuid.uuid4())}, status_code=404)
            if request.method == "DELETE":
                self.revoke_refresh_token(token)
                return Response(b"", status_code=204)
        return JSONResponse({"token": token, "user": "sandbox@example.com",
                             "hub_domain": "relais-sandbox.hubspot.com",
                             "scopes": list(self.granted.get(token, ALL_SCOPES)),
                             "hub_id": self.config.portal_id, "client_id": self.client_id,
                             "user_id": 1, "token_type": "refresh"})

    def _token(self, form: dict[str, str]) -> JSONResponse:
        grant = form.get("grant_type")
        if grant not in ("authorization_code", "refresh_token"):
            return self._oauth_error("BAD_GRANT_TYPE", "unsupported_grant_type",
                                     "grant_type must be authorization_code or refresh_token")
        if form.get("client_id") != self.client_id:
            return self._oauth_error("BAD_CLIENT_ID", "invalid_client",
                                     "missing or unknown client id")
        if form.get("client_secret") != self.client_secret:
            return self._oauth_error("BAD_CLIENT_SECRET", "invalid_client",
                                     "missing or invalid client secret")
        if grant == "authorization_code":
            entry = self.auth_codes.pop(form.get("code", ""), None)
            if entry is None:
                return self._oauth_error("BAD_AUTH_CODE", "invalid_grant",
                                         "missing or invalid auth code")
            if entry[1] < self.clock.time():
                return self._oauth_error("EXPIRED_AUTH_CODE", "invalid_grant",
                                         "auth code is expired")
            if entry[0] and form.get("redirect_uri") != entry[0]:
                return self._oauth_error("BAD_REDIRECT_URI", "invalid_grant",
                                         "redirect_uri does not match the authorization request")
            refresh = self._new_refresh_token()
            self.granted[refresh] = self.code_scopes.pop(form.get("code", ""), ALL_SCOPES)
        else:
            refresh = form.get("refresh_token", "")
            if self.refresh_tokens.get(refresh, True):
                return self._oauth_error("BAD_REFRESH_TOKEN", "invalid_grant",
                                         "missing or unknown refresh token")
        access = self.issue_access_token(refresh_token=refresh)
        self.knobs.count(f"hs.oauth.{grant}")
        return JSONResponse({"token_type": "bearer", "refresh_token": refresh,
                             "access_token": access,
                             "expires_in": int(self.config.access_token_ttl_seconds)})

    def _new_refresh_token(self) -> str:
        token = "na1-" + "-".join(secrets.token_hex(2) for _ in range(4)) + "-" + \
            str(uuid.uuid4())
        self.refresh_tokens[token] = False
        return token


# ---------------------------------------------------------------- helpers


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise HsError(400, "Invalid input JSON: expected an object", "VALIDATION_ERROR")
    return value


def _archived(query: dict[str, list[str]]) -> bool:
    return (query.get("archived") or ["false"])[0] == "true"


def _id_property(query: dict[str, list[str]]) -> str | None:
    return (query.get("idProperty") or [None])[0]


def _multi(query: dict[str, list[str]], key: str) -> list[str]:
    out: list[str] = []
    for raw in query.get(key, []):
        out += [p.strip() for p in raw.split(",") if p.strip()]
    return out


def _sort_spec(spec: Any) -> tuple[str, bool]:
    if isinstance(spec, str):
        return (spec[1:], True) if spec.startswith("-") else (spec, False)
    spec = _dict(spec)
    return str(spec.get("propertyName")), str(spec.get("direction", "ASCENDING")).upper() in (
        "DESCENDING", "DESC")


def _typed_key(pdef: PropDef, value: str | None) -> Any:
    if value is None:
        return None
    if pdef.type == "number":
        try:
            return float(value)
        except ValueError:
            return None
    if pdef.type == "datetime":
        try:
            return parse_datetime(value).timestamp()
        except ValueError:
            return None
    return value.lower()
