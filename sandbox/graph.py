"""Microsoft Graph calendar emulator (v1.0) with the identity platform, over TLS.

One HTTPS port serves both (msal insists on https; trust ``emu.ca_file``)::

    authority = emu.authority            # https://127.0.0.1:PORT/{tenant id}
    app = msal.ConfidentialClientApplication(emu.client_id,
              client_credential=emu.client_secret, authority=authority,
              instance_discovery=False, http_client=session)  # verify=ca_file,
                                                              # trust_env=False
    httpx.Client(base_url=emu.url + "/v1.0", verify=str(emu.ca_file))

Identity: see :mod:`sandbox.ms_identity`. Graph, from the public v1.0
reference, the throttling and webhook guides:

* Bearer tokens checked on every call: 401 ``InvalidAuthenticationToken``
  (empty, unknown, expired on the emulator clock). App tokens need the
  ``Calendars.Read``/``Calendars.ReadWrite`` role, delegated ones the scope
  (other mailboxes only with ``*.Shared``) → 403 ``ErrorAccessDenied``.
  ``/me`` only with delegated tokens.
* Mailboxes (users) created through the control API, addressed by id or
  UPN/mail (case-insensitive); unknown → 404 ``ErrorInvalidUser``.
  ``GET /users/{id}``, ``/users/{id}/mailboxSettings``.
* Events: ``POST /users/{id}/events`` (also ``/calendar/events``) → 201;
  ``transactionId`` makes it idempotent (same id → the existing event, no
  duplicate); GET, PATCH (top-level properties replaced), DELETE (204, then
  404); ``showAs`` free/tentative/busy/oof/workingElsewhere/unknown,
  ``isCancelled`` (seedable), ``isAllDay``, ``sensitivity``; start/end as
  ``{dateTime, timeZone}`` with IANA or Windows zone names; answers in UTC
  unless ``Prefer: outlook.timezone="..."`` (then ``Preference-Applied``).
  ``patternedRecurrence`` series (``type: seriesMaster``) expand into
  ``occurrence``s (id ``{masterId}_{UTC start}``); PATCH/DELETE of an
  occurrence makes an ``exception``/removes it; ``/events/{id}/instances``.
* ``GET /users/{id}/calendarView`` (expanded, ``$top`` default 10, ``$skip``
  nextLink) and ``/calendarView/delta``: ``@odata.nextLink`` pages
  (``Prefer: odata.maxpagesize``) then ``@odata.deltaLink``; later rounds
  return changed instances and ``{"id", "@removed": {"reason":
  "deleted"}}``; unknown/expired/invalidated tokens → 410
  ``syncStateNotFound``.
* ``POST /users/{id}/calendar/getSchedule``: ≤ 20 schedules, range < 62
  days, ``availabilityViewInterval`` 5-1440 (default 30); ``availabilityView``
  digits 0 free/workingElsewhere, 1 tentative, 2 busy, 3 oof (the v1.0 note:
  workingElsewhere prints 0); ``scheduleItems`` with status and times in
  the ``Prefer`` zone (UTC by default); ``workingHours``; an unknown address
  gets an item with ``error: {message, responseCode:
  "ErrorMailRecipientNotFound"}``. Cancelled events are not listed.
* Subscriptions: ``POST /subscriptions`` first POSTs
  ``?validationToken=...`` to ``notificationUrl`` (and
  ``lifecycleNotificationUrl``) and requires a 200 ``text/plain`` echo within
  ``validation_timeout_seconds`` (10) → else 400 ``ValidationError``;
  ``expirationDateTime`` ≤ 10080 minutes ahead; ``clientState`` ≤ 128
  chars; GET/PATCH (renew)/DELETE. Changes POST ``{value: [{subscriptionId,
  subscriptionExpirationDateTime, changeType, resource, resourceData: {id,
  @odata.type, @odata.id, @odata.etag}, clientState, tenantId}]}``.
* ``POST /$batch``: ≤ 20 requests, ``dependsOn`` (424 when a dependency
  failed), answers in shuffled order, each inner request authenticated,
  throttled and possibly 429 on its own.
* Throttling: ``mailbox_concurrency_limit`` (4) concurrent requests per
  app and mailbox → 429 ``ApplicationThrottled`` "Application is over its
  MailboxConcurrency limit." (requests hold their slot for
  ``request_service_ms``; a batch's parallel requests to one mailbox count
  together, a ``dependsOn`` chain as one); ``rate_limit_requests`` per
  ``rate_limit_window_seconds`` (10,000 / 10 min) per app and mailbox →
  429 ``TooManyRequests``; both with ``Retry-After``.

Not emulated: other calendars than the default one, attendees' copies and
meeting responses, online meetings, attachments, ``$filter`` beyond ``prop
eq 'value'``, ``$select``/``$expand`` (answers are a superset), rich
notifications, sharing. Lifecycle events are sent on demand
(``lifecycle_event``). Guessed (settings or notes):
the answer to a repeated ``transactionId`` (201 with the existing event for an
identical body; 400 ``ErrorDuplicateTransactionId`` for a different one),
the exact 400 codes for bad events/windows/batches, ``unknown`` showAs
counted as busy (2) in ``availabilityView``, free items listed in
``scheduleItems`` (``schedule_include_free_items``), events moved out of a
delta window reported as ``@removed`` ``deleted``, notifications for an
occurrence's change naming the series master.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import json
import math
import random
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from sandbox.calendar_common import (
    Notifier,
    UnknownTimeZone,
    graph_local,
    graph_stamp,
    localize,
    parse_rfc3339,
    resolve_tz,
)
from sandbox.knobs import ASGIApp, Clock, Receive, Scope, Send, control_routes
from sandbox.ms_identity import AccessToken, MsIdentity
from sandbox.oauth import token_control_routes
from sandbox.routing import RouteTable
from sandbox.rrule_expand import Occurrences, RecurrenceError, from_graph_pattern
from sandbox.server import Emulator

__all__ = ["GraphConfig", "GraphEmulator", "GraphError", "Mailbox"]

JSON_CT = ("application/json;odata.metadata=minimal;odata.streaming=true;"
           "IEEE754Compatible=false;charset=utf-8")
SHOW_AS = ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown")
VIEW_CODE = {"free": 0, "workingElsewhere": 0, "tentative": 1, "busy": 2, "oof": 3,
             "unknown": 2}
_STAMP_RE = re.compile(r"^(?P<base>.+)_(?P<stamp>\d{8}T\d{6}Z)$")
_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_EXTENDED_FILTER = re.compile(
    r"\s*singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*\1/id\s+eq\s+'((?:[^']|'')*)'"
    r"\s+and\s+\1/value\s+eq\s+'((?:[^']|'')*)'\s*\)\s*", re.IGNORECASE)
_READ_ONLY = {"id", "createdDateTime", "lastModifiedDateTime", "changeKey", "seriesMasterId",
              "type", "webLink", "iCalUId", "uid", "isOrganizer", "originalStart",
              "@odata.etag", "@odata.context", "occurrenceId", "isCancelled", "hasAttachments",
              "bodyPreview", "responseStatus", "organizer"}


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, *,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        rid = request_id or str(uuid.uuid4())
        return {"error": {"code": self.code, "message": self.message,
                          "innerError": {"date": now, "request-id": rid,
                                         "client-request-id": rid}}}


def _bad(message: str, code: str = "ErrorInvalidRequest") -> GraphError:
    return GraphError(400, code, message)


def _item_not_found() -> GraphError:
    return GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


@dataclass(frozen=True)
class _Call:
    """A calendar call once its mailbox is resolved and allowed, as route handlers read it."""

    mb: Mailbox
    query: dict[str, list[str]]
    payload: Any
    out_tz: tzinfo
    tz_name: str | None
    page_size: int | None
    base: str
    user_path: str
    headers: dict[str, str]  # the response headers (Preference-Applied)


@dataclass
class GResp:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class GraphConfig:
    # A transactionId reused with a different event body answers 400
    # ErrorDuplicateTransactionId; an identical retry gets the existing event. False: any
    # reuse returns the existing event (the lenient old behaviour).
    duplicate_transaction_conflicts: bool = True
    # The token endpoint wants ``scope`` on code redemption and refresh (AADSTS900144);
    # "scope: Required" for the refresh request (auth code flow, Microsoft identity
    # platform: https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow).
    # False: fall back to the scopes of the code or the refresh token.
    require_token_scope: bool = True
    access_token_ttl_seconds: int = 3599
    auth_code_ttl_seconds: int = 600
    mailbox_concurrency_limit: int = 4
    request_service_ms: float = 0.0  # time a request holds its mailbox concurrency slot
    rate_limit_requests: int = 10_000
    rate_limit_window_seconds: float = 600.0
    retry_after_seconds: int = 2  # concurrency 429s and injected 429/503 faults
    batch_max_requests: int = 20
    batch_shuffle: bool = True
    batch_counts_concurrency: bool = True
    schedule_max_schedules: int = 20
    schedule_max_days: int = 62  # the range must be shorter
    schedule_include_free_items: bool = True
    list_default_top: int = 10
    list_max_top: int = 1000
    delta_default_page_size: int = 100
    delta_max_page_size: int = 1000
    delta_token_max_age_seconds: float | None = None
    expansion_horizon_days: int = 730
    subscription_max_minutes: int = 10_080
    validation_timeout_seconds: float = 10.0
    notification_timeout_seconds: float = 10.0
    require_https_notification_url: bool = False  # Graph does; relaxed for local receivers
    notify_retries: int = 0
    webhook_verify: Any = None  # CA path or bool for https receivers; None: the sandbox CA


@dataclass
class Mailbox:
    id: str
    mail: str
    upn: str
    display_name: str
    time_zone: str = "UTC"
    working_days: tuple[str, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday")
    working_start: str = "08:00:00"
    working_end: str = "17:00:00"
    events: dict[str, _Event] = field(default_factory=dict)
    epoch: int = 0

    def wire(self) -> dict[str, Any]:
        return {"id": self.id, "displayName": self.display_name, "mail": self.mail,
                "userPrincipalName": self.upn, "businessPhones": [], "givenName": None,
                "surname": None, "jobTitle": None, "mobilePhone": None, "officeLocation": None,
                "preferredLanguage": "fr-FR"}


@dataclass
class _Event:
    res: dict[str, Any]
    start: datetime
    end: datetime
    tz: tzinfo
    local_start: datetime
    occ: Occurrences | None = None
    exceptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancelled_occ: set[str] = field(default_factory=set)
    deleted: bool = False
    fingerprint: str = ""  # the create body (transactionId aside): what a retry must repeat

    @property
    def id(self) -> str:
        return str(self.res["id"])


@dataclass
class _Instance:
    """One event as a calendar view shows it (single, occurrence or exception)."""

    res: dict[str, Any]
    start: datetime
    end: datetime
    version: str
    master_id: str | None = None


@dataclass
class _DeltaToken:
    mailbox: str
    lo: datetime
    hi: datetime
    snapshot: dict[str, str]
    epoch: int
    issued: float


@dataclass
class _DeltaRound:
    mailbox: str
    items: list[dict[str, Any]]
    delta_token: str
    page_size: int
    epoch: int


@dataclass
class _Subscription:
    id: str
    resource: str
    mailbox: str
    change_types: tuple[str, ...]
    notification_url: str
    client_state: str | None
    expires: datetime
    application_id: str
    creator_id: str
    lifecycle_url: str | None = None
    latest_tls: str = "v1_2"
    needs_reauth: bool = False  # after reauthorizationRequired: no notifications until renewed

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": ",".join(self.change_types),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": graph_stamp(self.expires),
            "creatorId": self.creator_id,
            "includeResourceData": None,
            "latestSupportedTlsVersion": self.latest_tls,
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }


def _new_id() -> str:
    raw = b"\x00\x00\x00\x00" + uuid.uuid4().bytes + secrets.token_bytes(14)
    return "AAMkAG" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _prefer(headers: dict[str, str]) -> tuple[str | None, int | None]:
    raw = headers.get("prefer", "")
    tz = re.search(r'outlook\.timezone\s*=\s*"([^"]+)"', raw, re.I)
    size = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", raw, re.I)
    return (tz.group(1) if tz else None), (int(size.group(1)) if size else None)


def _q1(query: dict[str, list[str]], key: str) -> str | None:
    for k, values in query.items():
        if k.lower() == key.lower() and values:
            return values[0]
    return None


# ---------------------------------------------------------------- emulator


class GraphEmulator(Emulator):
    name = "graph"
    label = "Graph"
    default_tls = True

    def __init__(self, *, config: GraphConfig | None = None, clock: Clock | None = None,
                 tenant_id: str | None = None, client_id: str | None = None,
                 client_secret: str | None = None,
                 default_user: str = "assistant@relaissandbox.onmicrosoft.com") -> None:
        super().__init__(clock=clock)
        self.config = config or GraphConfig()
        self.identity = MsIdentity(self, tenant_id=tenant_id, client_id=client_id,
                                   client_secret=client_secret)
        self._default_user_mail = default_user
        self._notifier: Notifier | None = None
        self._inflight: collections.Counter[tuple[str, str]] = collections.Counter()
        self._rng = random.Random(7)  # noqa: S311 - shuffling batch answers
        self.reset_data()

    # ============================================================ public API
    @property
    def tenant_id(self) -> str:
        return self.identity.tenant_id

    @property
    def client_id(self) -> str:
        return self.identity.default_app.client_id

    @property
    def client_secret(self) -> str:
        return self.identity.default_app.client_secret

    @property
    def authority(self) -> str:
        return f"{self.url}/{self.tenant_id}"

    @property
    def graph_url(self) -> str:
        return f"{self.url}/v1.0"

    @property
    def default_mailbox(self) -> Mailbox:
        return self.mailboxes[self._default_id]

    def credentials(self) -> dict[str, Any]:
        running = self.running
        return {
            "authority": self.authority if running else None,
            "graph_url": self.graph_url if running else None,
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "scope": "https://graph.microsoft.com/.default",
            "default_user": self.default_mailbox.upn,
            "ca_file": str(self.ca_file) if self.ca_file else None,
        }

    def add_mailbox(self, mail: str, *, display_name: str | None = None,
                    time_zone: str = "UTC", user_id: str | None = None) -> dict[str, Any]:
        with self.lock:
            try:
                resolve_tz(time_zone)
            except UnknownTimeZone as exc:
                raise ValueError(f"unknown time zone {time_zone!r}") from exc
            existing = self.find_mailbox(mail)
            if existing is not None:
                existing.time_zone = time_zone
                if display_name:
                    existing.display_name = display_name
                return existing.wire()
            mb = Mailbox(user_id or str(uuid.uuid4()), mail, mail,
                         display_name or mail.split("@")[0].replace(".", " ").title(),
                         time_zone)
            self.mailboxes[mb.id] = mb
            return mb.wire()

    def find_mailbox(self, ident: str) -> Mailbox | None:
        if not ident:
            return None
        mb = self.mailboxes.get(ident)
        if mb is not None:
            return mb
        low = ident.lower()
        for mb in self.mailboxes.values():
            if low in (mb.mail.lower(), mb.upn.lower(), mb.id.lower()):
                return mb
        return None

    def mailbox_by_id(self, user_id: str) -> Mailbox:
        return self.mailboxes[user_id]

    def issue_app_token(self, *, ttl: float | None = None) -> str:
        with self.lock:
            return self.identity.issue_app_token(ttl=ttl)

    def issue_user_token(self, user: str | None = None, *, ttl: float | None = None,
                         scopes: tuple[str, ...] = ("Calendars.ReadWrite",)) -> str:
        with self.lock:
            mb = self.find_mailbox(user or "") or self.default_mailbox
            return self.identity.issue_user_token(mb, scopes=scopes, ttl=ttl)

    def issue_auth_code(self, user: str | None = None, *, redirect_uri: str | None = None,
                        scopes: tuple[str, ...] = ("openid", "profile", "offline_access",
                                                   "Calendars.ReadWrite")) -> str:
        with self.lock:
            mb = self.find_mailbox(user or "") or self.default_mailbox
            return self.identity.issue_auth_code(mb, redirect_uri=redirect_uri, scopes=scopes)

    def expire_access_tokens(self, token: str | None = None) -> int:
        with self.lock:
            return self.identity.expire_access_tokens(token)

    def revoke_refresh_token(self, token: str | None = None) -> int:
        with self.lock:
            return self.identity.revoke_refresh_token(token)

    def seed_events(self, user: str, bodies: list[dict[str, Any]], *,
                    notify: bool = True) -> list[dict[str, Any]]:
        """Create events as the mailbox owner would in Outlook (``isCancelled`` allowed)."""
        with self.lock:
            mb = self._mailbox(user)
            out = []
            for body in bodies:
                cancelled = bool(body.get("isCancelled"))
                ev = self._create(mb, {k: v for k, v in body.items() if k != "isCancelled"},
                                  dedupe=False)
                if cancelled:
                    ev.res["isCancelled"] = True
                if notify:
                    self._changed(mb, ev.id, "created")
                out.append(self._wire(ev.res, None))
            return out

    def patch_event(self, user: str, event_id: str, patch: dict[str, Any], *,
                    notify: bool = True) -> dict[str, Any]:
        """Edit as the owner would in Outlook (an external change)."""
        with self.lock:
            mb = self._mailbox(user)
            cancelled = patch.get("isCancelled")
            res = self._update(mb, event_id, {k: v for k, v in patch.items()
                                              if k != "isCancelled"}, notify=notify)
            if cancelled is not None:
                ev = mb.events.get(event_id)
                if ev is not None:
                    ev.res["isCancelled"] = bool(cancelled)
                    res["isCancelled"] = bool(cancelled)
            return res

    def delete_event(self, user: str, event_id: str, *, notify: bool = True) -> None:
        with self.lock:
            self._delete(self._mailbox(user), event_id, notify=notify)

    def events(self, user: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Stored events (series masters, singles) as Graph prints them (UTC)."""
        with self.lock:
            mb = self.find_mailbox(user)
            if mb is None:
                return []
            return [self._wire(ev.res, None) for ev in mb.events.values()
                    if include_deleted or not ev.deleted]

    def invalidate_delta_tokens(self, user: str | None = None) -> int:
        """Every delta/skip token issued so far (one mailbox or all) now answers 410."""
        with self.lock:
            n = 0
            for mb in self.mailboxes.values():
                if user is None or mb is self.find_mailbox(user):
                    mb.epoch += 1
                    n += 1
            return n

    def subscriptions(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(sub.wire(), active=sub.expires > self.clock.now())
                    for sub in self.subs.values()]

    def notifications(self) -> list[dict[str, Any]]:
        return self.notifier.deliveries()

    def wait_notifications(self, timeout: float = 10.0) -> bool:
        return self.notifier.wait_idle(timeout)

    @property
    def notifier(self) -> Notifier:
        if self._notifier is None:
            verify = self.config.webhook_verify
            if verify is None:
                from sandbox.tls import shared_tls

                verify = str((self._tls or shared_tls()).ca_file)
            self._notifier = Notifier("graph", verify=verify,
                                      timeout=self.config.notification_timeout_seconds,
                                      retries=self.config.notify_retries)
        return self._notifier

    # ======================================================= Emulator hooks
    def reset_data(self) -> None:
        self.mailboxes: dict[str, Mailbox] = {}
        self.subs: dict[str, _Subscription] = {}
        self._delta_tokens: dict[str, _DeltaToken] = {}
        self._rounds: dict[str, _DeltaRound] = {}
        self._pages: dict[str, list[dict[str, Any]]] = {}
        self._hits: dict[tuple[str, str], collections.deque[float]] = \
            collections.defaultdict(collections.deque)
        self._inflight.clear()
        self.identity.reset()
        mb = Mailbox(str(uuid.uuid5(uuid.NAMESPACE_DNS, self._default_user_mail)),
                     self._default_user_mail, self._default_user_mail, "Relais Assistant")
        self.mailboxes[mb.id] = mb
        self._default_id = mb.id
        if self._notifier is not None:
            self._notifier.clear()

    def stop(self) -> None:
        super().stop()
        if self._notifier is not None:
            self._notifier.close()
            self._notifier = None

    def reconfigured(self, settings: dict[str, Any]) -> None:
        if self._notifier is not None:
            self._notifier.retries = self.config.notify_retries
            self._notifier.timeout = self.config.notification_timeout_seconds

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"mailboxes": {mb.upn: {"user": mb.wire(), "timeZone": mb.time_zone,
                                           "events": self.events(mb.id)}
                                  for mb in self.mailboxes.values()},
                    "subscriptions": self.subscriptions()}

    def fault_response(self, status: int) -> tuple[int, dict[str, str], bytes]:
        headers = {"content-type": JSON_CT}
        if status == 429:
            err = GraphError(429, "TooManyRequests", "Please retry again later.")
            headers["retry-after"] = str(self.config.retry_after_seconds)
        elif status == 503:
            err = GraphError(503, "ServiceNotAvailable", "Service unavailable, retry later.")
            headers["retry-after"] = str(self.config.retry_after_seconds)
        elif status == 401:
            err = GraphError(401, "InvalidAuthenticationToken",
                             "Lifetime validation failed, the token is expired.")
        elif status == 410:
            err = GraphError(410, "syncStateNotFound", "The sync state generation is not found.")
        elif status == 404:
            err = _item_not_found()
        elif status >= 500:
            err = GraphError(status, "generalException", "General exception while processing.")
        else:
            err = GraphError(status, "BadRequest", "sandbox injected fault")
        return status, headers, json.dumps(err.body()).encode()

    def control_routes(self) -> list[BaseRoute]:
        def users(data: dict[str, Any], request: Request) -> dict[str, Any]:
            if request.method == "POST":
                return self.add_mailbox(data["mail"], display_name=data.get("displayName"),
                                        time_zone=data.get("timeZone") or "UTC",
                                        user_id=data.get("id"))
            with self.lock:
                return {"value": [mb.wire() for mb in self.mailboxes.values()]}

        def events(data: dict[str, Any], request: Request) -> dict[str, Any]:
            if request.method == "POST":
                user = data["user"]
                if self.find_mailbox(user) is None:
                    self.add_mailbox(user, time_zone=data.get("timeZone") or "UTC")
                return {"value": self.seed_events(user, data.get("events", []),
                                                  notify=bool(data.get("notify", True)))}
            user = request.query_params.get("user", "")
            deleted = request.query_params.get("includeDeleted", "false").lower() == "true"
            return {"value": self.events(user, include_deleted=deleted)}

        def token(data: dict[str, Any]) -> str:
            if data.get("user"):
                return self.issue_user_token(data["user"], ttl=data.get("ttl"))
            return self.issue_app_token(ttl=data.get("ttl"))

        errors = (GraphError, lambda exc: (exc.status, exc.body()))
        return [
            *token_control_routes(
                credentials=self.credentials,
                token=token,
                expire=self.expire_access_tokens,
                revoke=self.revoke_refresh_token,
                code=lambda data: self.issue_auth_code(data.get("user"),
                                                       redirect_uri=data.get("redirect_uri")),
                errors=errors,
            ),
            *control_routes({
                "/users": ("GET|POST", users),
                "/events": ("GET|POST", events),
                "/delta-tokens/invalidate": ("POST", lambda data, request: {
                    "invalidated": self.invalidate_delta_tokens(data.get("user"))}),
                "/subscriptions": ("GET", lambda data, request: {
                    "value": self.subscriptions()}),
                "/notifications": ("GET", lambda data, request: {
                    "value": self.notifications()}),
            }, errors=errors),
        ]

    def build_app(self) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            request = Request(scope, receive)
            raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
            path = raw_path.split("?", 1)[0]
            parts = [unquote(p) for p in path.split("/") if p]
            headers = {k.lower(): v for k, v in request.headers.items()}
            request_id = headers.get("client-request-id") or str(uuid.uuid4())
            if parts[:1] == ["v1.0"]:
                body = await request.body()
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"),
                                 keep_blank_values=True)
                base = str(request.base_url).rstrip("/")
                resp = await self._entry(scope["method"], parts[1:], query, headers, body, base)
                response = self._to_response(resp, request_id)
            else:
                identity = await self.identity.handle(request, parts)
                response = identity if identity is not None else JSONResponse(
                    {"error": "not_found"}, status_code=404)
            await response(scope, receive, send)

        return app

    def _to_response(self, resp: GResp, request_id: str) -> Response:
        headers = {"request-id": request_id, "client-request-id": request_id,
                   "x-ms-ags-diagnostic": '{"ServerInfo":{"DataCenter":"Sandbox","Slice":"E",'
                                          '"Ring":"0","ScaleUnit":"000","RoleInstance":'
                                          '"SANDBOX"}}'}
        headers.update(resp.headers)
        if resp.status in (202, 204) or resp.body is None:
            return Response(b"", status_code=resp.status, headers=headers)
        headers["content-type"] = JSON_CT
        headers["odata-version"] = "4.0"
        return Response(json.dumps(resp.body).encode(), status_code=resp.status,
                        headers=headers)

    # ================================================================ entry
    async def _entry(self, method: str, parts: list[str], query: dict[str, list[str]],
                     headers: dict[str, str], raw: bytes, base: str) -> GResp:
        try:
            with self.lock:
                tok = self._authenticate(headers)
            if parts == ["$batch"]:
                if method != "POST":
                    raise _bad("Batch requests must use POST.", "BadRequest")
                return await self._batch(tok, headers, raw, base)
            payload = self._json(raw)
            return await self._call(method, parts, query, headers, payload, tok, base,
                                    count_concurrency=True)
        except GraphError as exc:
            return GResp(exc.status, exc.body(headers.get("client-request-id")),
                         dict(exc.headers))

    @staticmethod
    def _json(raw: bytes) -> Any:
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise _bad("Unable to read JSON request payload. Please ensure Content-Type header "
                       "is set and payload is of valid JSON format.", "BadRequest") from exc

    def _authenticate(self, headers: dict[str, str]) -> AccessToken:
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        result = self.identity.validate(bearer)
        if isinstance(result, str):
            self.knobs.count("graph.unauthorized")
            raise GraphError(401, "InvalidAuthenticationToken", result, headers={
                "www-authenticate": 'Bearer realm="", authorization_uri="https://login.'
                                    'microsoftonline.com/common/oauth2/authorize", client_id="'
                                    '00000003-0000-0000-c000-000000000000"'})
        return result

    def _mailbox_of(self, parts: list[str], tok: AccessToken) -> Mailbox | None:
        """The mailbox a request targets (for throttling), or None."""
        if not parts:
            return None
        head = parts[0].lower()
        if head == "me":
            return self.mailboxes.get(tok.user_id or "")
        if head == "users" and len(parts) >= 2:
            return self.find_mailbox(parts[1])
        return None

    async def _call(self, method: str, parts: list[str], query: dict[str, list[str]],
                    headers: dict[str, str], payload: Any, tok: AccessToken, base: str, *,
                    count_concurrency: bool) -> GResp:
        """One Graph request: throttling, then the handler. Raises GraphError."""
        with self.lock:
            mb = self._mailbox_of(parts, tok)
            key = (tok.client_id, mb.id) if mb is not None else None
            if key is not None:
                self._rate_limit(key)
                if count_concurrency:
                    self._acquire(key, 1)
        try:
            if key is not None and count_concurrency and self.config.request_service_ms > 0:
                await asyncio.sleep(self.config.request_service_ms / 1000)
            if [p.lower() for p in parts[:1]] == ["subscriptions"]:
                return await self._subscriptions(method, parts[1:], payload, tok)
            with self.lock:
                return self._route(method, parts, query, headers, payload, tok, base)
        finally:
            if key is not None and count_concurrency:
                with self.lock:
                    self._release(key, 1)

    def _acquire(self, key: tuple[str, str], n: int) -> None:
        limit = self.config.mailbox_concurrency_limit
        if self._inflight[key] + n > limit:
            self.knobs.count("graph.throttled.concurrency")
            raise GraphError(429, "ApplicationThrottled",
                             "Application is over its MailboxConcurrency limit.",
                             headers={"retry-after": str(self.config.retry_after_seconds)})
        self._inflight[key] += n

    def _release(self, key: tuple[str, str], n: int) -> None:
        self._inflight[key] -= n
        if self._inflight[key] <= 0:
            del self._inflight[key]

    def _rate_limit(self, key: tuple[str, str]) -> None:
        now = self.clock.time()
        window = self.config.rate_limit_window_seconds
        hits = self._hits[key]
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= self.config.rate_limit_requests:
            retry = max(1, math.ceil(hits[0] + window - now))
            self.knobs.count("graph.throttled.rate")
            raise GraphError(429, "TooManyRequests", "Please retry again later.",
                             headers={"retry-after": str(retry)})
        hits.append(now)

    # ================================================================ routes
    def _route(self, method: str, parts: list[str], query: dict[str, list[str]],
               headers: dict[str, str], payload: Any, tok: AccessToken, base: str) -> GResp:
        low = [p.lower() for p in parts]
        if not low or low[0] not in ("me", "users"):
            raise _bad(f"Resource not found for the segment '{parts[0] if parts else ''}'.",
                       "BadRequest")
        if low[0] == "me":
            if tok.kind != "user":
                raise _bad("/me request is only valid with delegated authentication flow.",
                           "BadRequest")
            mb = self.mailboxes[tok.user_id or ""]
            rest, low_rest = parts[1:], low[1:]
            user_path = "me"
        else:
            if len(parts) < 2:
                return GResp(200, {"value": [m.wire() for m in self.mailboxes.values()]})
            mb = self._mailbox(parts[1])
            rest, low_rest = parts[2:], low[2:]
            user_path = f"users/{parts[1]}"
        tz_name, page_size = _prefer(headers)
        out_tz = self._out_tz(tz_name)
        resp_headers = {"preference-applied": f'outlook.timezone="{tz_name}"'} if tz_name else {}
        write = method in ("POST", "PATCH", "PUT", "DELETE")
        if not low_rest:
            self._require(tok, mb, "user")
            return GResp(200, mb.wire())
        if low_rest == ["mailboxsettings"] and method == "GET":
            self._require(tok, mb, "read")
            return GResp(200, self._mailbox_settings(mb))
        if low_rest[:2] == ["calendar", "getschedule"] and len(low_rest) == 2:
            if method != "POST":
                raise GraphError(405, "ErrorInvalidRequest", "The OData request is not "
                                 "supported.")
            self._require(tok, mb, "read", other_ok=True)
            return GResp(200, self._get_schedule(_obj(payload), tz_name, out_tz),
                         resp_headers)
        self._require(tok, mb, "write" if write else "read")
        if low_rest[:1] == ["calendar"] and low_rest[1:2] == ["events"]:
            rest = rest[1:]
        found = self._calendar_routes.match(method, rest)
        if found is None:
            raise _bad(f"Resource not found for the segment '{rest[-1] if rest else ''}'.",
                       "BadRequest")
        call = _Call(mb, query, payload, out_tz, tz_name, page_size, base, user_path,
                     resp_headers)
        return found.handler(call, **found.params)

    @cached_property
    def _calendar_routes(self) -> RouteTable[Callable[..., GResp]]:
        # under /me or /users/{id} (``calendar/events`` is ``events``); handler(call, **captures)
        return RouteTable([
            ("GET", "calendar", lambda c: GResp(200, self._calendar_wire(c.mb))),
            ("GET", "calendarView", lambda c: GResp(200, self._calendar_view(
                c.mb, c.query, c.out_tz, c.tz_name, c.base, c.user_path), c.headers)),
            ("GET", "calendarView/delta", self._delta_endpoint),
            ("GET", "events", lambda c: GResp(200, self._list_events(
                c.mb, c.query, c.out_tz, c.tz_name, c.base, c.user_path), c.headers)),
            ("POST", "events", self._create_endpoint),
            ("GET", "events/{id}", lambda c, id: GResp(
                200, self._wire(self._get(c.mb, id), c.out_tz, c.tz_name), c.headers)),
            ("PATCH", "events/{id}", lambda c, id: GResp(200, self._update(
                c.mb, id, _obj(c.payload), out_tz=c.out_tz, tz_name=c.tz_name), c.headers)),
            ("DELETE", "events/{id}", lambda c, id: self._delete_endpoint(c, id, 204)),
            ("GET", "events/{id}/instances", lambda c, id: GResp(200, self._instances(
                c.mb, id, c.query, c.out_tz, c.tz_name), c.headers)),
            ("POST", "events/{id}/cancel", lambda c, id: self._delete_endpoint(c, id, 202)),
        ], fold_case=True)

    @staticmethod
    def _calendar_wire(mb: Mailbox) -> dict[str, Any]:
        return {"id": "AAMkAG" + mb.id.replace("-", ""), "name": "Calendar",
                "color": "auto", "isDefaultCalendar": True,
                "canShare": True, "canViewPrivateItems": True, "canEdit": True,
                "defaultOnlineMeetingProvider": "teamsForBusiness",
                "owner": {"name": mb.display_name, "address": mb.mail}}

    def _delta_endpoint(self, c: _Call) -> GResp:
        body, extra = self._delta(c.mb, c.query, c.out_tz, c.tz_name, c.page_size, c.base,
                                  c.user_path)
        return GResp(200, body, {**c.headers, **extra})

    def _create_endpoint(self, c: _Call) -> GResp:
        body = _obj(c.payload)
        before = len(c.mb.events)
        ev = self._create(c.mb, body, dedupe=True)
        if len(c.mb.events) > before:
            self._changed(c.mb, ev.id, "created")
        wire = self._wire(ev.res, c.out_tz, c.tz_name)
        wire["@odata.context"] = (f"{c.base}/v1.0/$metadata#users('{quote(c.mb.id)}')"
                                  "/events/$entity")
        return GResp(201, wire, c.headers)

    def _delete_endpoint(self, c: _Call, eid: str, status: int) -> GResp:
        self._delete(c.mb, eid)
        return GResp(status)

    def _require(self, tok: AccessToken, mb: Mailbox, need: str, *, other_ok: bool = False) -> None:
        perms = tok.permissions()
        if need == "user":
            ok = tok.kind == "user" or bool(perms & {"user.read.all", "user.readbasic.all",
                                                     "calendars.read", "calendars.readwrite"})
        elif need == "read":
            ok = bool(perms & {"calendars.read", "calendars.readwrite", "calendars.read.shared",
                               "calendars.readwrite.shared", "calendars.readbasic"})
        else:
            ok = bool(perms & {"calendars.readwrite", "calendars.readwrite.shared"})
        if ok and tok.kind == "user" and mb.id != tok.user_id and not other_ok:
            ok = any(p.endswith(".shared") for p in perms)
        if not ok:
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials "
                             "and try again.")

    def _mailbox(self, ident: str) -> Mailbox:
        mb = self.find_mailbox(ident)
        if mb is None:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{ident}' is invalid.")
        return mb

    def _out_tz(self, name: str | None) -> tzinfo:
        if not name:
            return UTC
        try:
            return resolve_tz(name)
        except UnknownTimeZone as exc:
            raise _bad(f"A valid TimeZone value must be specified. The following TimeZone value "
                       f"is not supported: '{name}'.", "TimeZoneNotSupportedException") from exc

    def _mailbox_settings(self, mb: Mailbox) -> dict[str, Any]:
        return {"timeZone": mb.time_zone, "dateFormat": "dd/MM/yyyy", "timeFormat": "HH:mm",
                "language": {"locale": "fr-FR", "displayName": "français (France)"},
                "workingHours": self._working_hours(mb)}

    def _working_hours(self, mb: Mailbox) -> dict[str, Any]:
        return {"daysOfWeek": list(mb.working_days),
                "startTime": mb.working_start + ".0000000",
                "endTime": mb.working_end + ".0000000",
                "timeZone": {"name": mb.time_zone}}

    # ================================================================ events
    def _parse_dtz(self, spec: Any, which: str) -> tuple[datetime, tzinfo, str, datetime]:
        if not isinstance(spec, dict) or not spec.get("dateTime"):
            raise _bad(f"Your request can't be completed. The {which} time must be specified.")
        tz_name = str(spec.get("timeZone") or "UTC")
        try:
            tz = resolve_tz(tz_name)
        except UnknownTimeZone as exc:
            raise _bad("A valid TimeZone value must be specified. The following TimeZone value "
                       f"is not supported: '{tz_name}'.", "TimeZoneNotSupportedException") from exc
        try:
            instant = parse_rfc3339(str(spec["dateTime"]), default_tz=tz)
        except ValueError as exc:
            raise _bad(f"Cannot convert the literal '{spec['dateTime']}' to the expected type "
                       "'Edm.DateTimeOffset'.", "RequestBodyRead") from exc
        return instant, tz, tz_name, instant.astimezone(tz).replace(tzinfo=None)

    def _derive(self, res: dict[str, Any]) -> _Event:
        start, tz, _, local_start = self._parse_dtz(res.get("start"), "start")
        end, _, _, _ = self._parse_dtz(res.get("end"), "end")
        if end < start:
            raise _bad("Your request can't be completed. The end date is before the start date.")
        if res.get("showAs", "busy") not in SHOW_AS:
            raise _bad(f"Cannot convert the literal '{res.get('showAs')}' to the expected type "
                       "'microsoft.graph.freeBusyStatus'.", "RequestBodyRead")
        if res.get("isAllDay"):
            for instant, zone in ((start, tz), (end, tz)):
                local = instant.astimezone(zone)
                if (local.hour, local.minute, local.second) != (0, 0, 0):
                    raise _bad("Your request can't be completed. All-day events must start and "
                               "end at midnight.", "ErrorPropertyValidationFailure")
        occ = None
        if res.get("recurrence"):
            try:
                occ = from_graph_pattern(res["recurrence"], local_start, tz, end - start,
                                         all_day=bool(res.get("isAllDay")))
            except (RecurrenceError, ValueError, TypeError) as exc:
                raise _bad(f"Your request can't be completed. {exc}.",
                           "ErrorPropertyValidationFailure") from exc
        return _Event(res, start, end, tz, local_start, occ)

    def _stamp(self, res: dict[str, Any]) -> None:
        now = self.clock.now()
        res["lastModifiedDateTime"] = graph_stamp(now)
        res["changeKey"] = base64.b64encode(secrets.token_bytes(12)).decode()
        res["@odata.etag"] = f'W/"{res["changeKey"]}"'

    def _create(self, mb: Mailbox, body: dict[str, Any], *, dedupe: bool) -> _Event:
        txn = body.get("transactionId")
        fingerprint = json.dumps({k: v for k, v in body.items() if k != "transactionId"},
                                 sort_keys=True, default=str)
        if dedupe and txn:
            for ev in mb.events.values():
                if not ev.deleted and ev.res.get("transactionId") == txn:
                    # transactionId protects only a retry of the same create ("avoid redundant
                    # POST operations in case of client retries to create the same event",
                    # event resource, https://learn.microsoft.com/graph/api/resources/event);
                    # a different event under a used id is refused.
                    if (self.config.duplicate_transaction_conflicts
                            and ev.fingerprint != fingerprint):
                        self.knobs.count("graph.events.transaction_conflict")
                        raise _bad("Your request can't be completed. The transactionId has "
                                   "already been used to create a different event.",
                                   "ErrorDuplicateTransactionId")
                    self.knobs.count("graph.events.transaction_replayed")
                    return ev
        eid = _new_id()
        now = graph_stamp(self.clock.now())
        res: dict[str, Any] = {
            "id": eid,
            "createdDateTime": now,
            "categories": [],
            "transactionId": txn,
            "originalStartTimeZone": (body.get("start") or {}).get("timeZone") or "UTC",
            "originalEndTimeZone": (body.get("end") or {}).get("timeZone") or "UTC",
            "iCalUId": "040000008200E00074C5B7101A82E008" + secrets.token_hex(28).upper(),
            "uid": "040000008200E00074C5B7101A82E008" + secrets.token_hex(28).upper(),
            "reminderMinutesBeforeStart": 15,
            "isReminderOn": True,
            "hasAttachments": False,
            "subject": "",
            "bodyPreview": "",
            "importance": "normal",
            "sensitivity": "normal",
            "isAllDay": False,
            "isCancelled": False,
            "isOrganizer": True,
            "responseRequested": True,
            "seriesMasterId": None,
            "showAs": "busy",
            "type": "singleInstance",
            "webLink": f"https://outlook.office365.com/owa/?itemid={quote(eid)}&exvsurl=1"
                       "&path=/calendar/item",
            "onlineMeetingUrl": None,
            "isOnlineMeeting": False,
            "onlineMeetingProvider": "unknown",
            "allowNewTimeProposals": True,
            "occurrenceId": None,
            "isDraft": False,
            "hideAttendees": False,
            "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
            "body": {"contentType": "html", "content": ""},
            "location": {"displayName": "", "locationType": "default",
                         "uniqueIdType": "unknown", "address": {}, "coordinates": {}},
            "locations": [],
            "recurrence": None,
            "attendees": [],
            "organizer": {"emailAddress": {"name": mb.display_name, "address": mb.mail}},
            "onlineMeeting": None,
        }
        for key, value in body.items():
            if key not in _READ_ONLY:
                res[key] = copy.deepcopy(value)
        res["transactionId"] = txn
        res["bodyPreview"] = str((res.get("body") or {}).get("content") or "")[:255]
        if res.get("recurrence"):
            res["type"] = "seriesMaster"
        self._stamp(res)
        ev = self._derive(res)
        ev.fingerprint = fingerprint
        mb.events[eid] = ev
        self.knobs.count("graph.events.created")
        return ev

    def _find(self, mb: Mailbox, eid: str) -> tuple[_Event, str | None]:
        """(event, occurrence stamp or None); 404 when absent or deleted."""
        ev = mb.events.get(eid)
        if ev is not None:
            if ev.deleted:
                raise _item_not_found()
            return ev, None
        match = _STAMP_RE.match(eid)
        if match:
            master = mb.events.get(match.group("base"))
            stamp = match.group("stamp")
            if master is not None and not master.deleted and master.occ is not None and \
                    stamp not in master.cancelled_occ and self._occ_of(master, stamp):
                return master, stamp
        raise _item_not_found()

    @staticmethod
    def _stamp_of(master: _Event, occ: datetime) -> str:
        return localize(occ, master.tz).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")

    def _occ_of(self, master: _Event, stamp: str) -> datetime | None:
        assert master.occ is not None
        start = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        for occ in master.occ.between(start, start + timedelta(seconds=1)):
            if self._stamp_of(master, occ) == stamp:
                return occ
        return None

    def _get(self, mb: Mailbox, eid: str) -> dict[str, Any]:
        ev, stamp = self._find(mb, eid)
        if stamp is None:
            return ev.res
        return self._occurrence(ev, stamp).res

    def _occurrence(self, master: _Event, stamp: str) -> _Instance:
        occ = self._occ_of(master, stamp)
        assert occ is not None
        begin = localize(occ, master.tz)
        duration = master.end - master.start
        res = copy.deepcopy(master.res)
        res.update({
            "id": f"{master.id}_{stamp}",
            "type": "occurrence",
            "seriesMasterId": master.id,
            "recurrence": None,
            "occurrenceId": f"OID.{master.id}.{begin.date().isoformat()}",
            "originalStart": begin.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "start": {"dateTime": graph_local(begin, master.tz),
                      "timeZone": master.res["start"].get("timeZone") or "UTC"},
            "end": {"dateTime": graph_local(begin + duration, master.tz),
                    "timeZone": master.res["end"].get("timeZone") or "UTC"},
        })
        version = master.res["changeKey"]
        exc = master.exceptions.get(stamp)
        start, end = begin, begin + duration
        if exc is not None:
            res.update(copy.deepcopy(exc))
            res["type"] = "exception"
            version += ":" + exc["changeKey"]
            start = self._parse_dtz(res["start"], "start")[0]
            end = self._parse_dtz(res["end"], "end")[0]
        return _Instance(res, start, end, version, master.id)

    def _update(self, mb: Mailbox, eid: str, patch: dict[str, Any], *,
                out_tz: tzinfo | None = None, tz_name: str | None = None,
                notify: bool = True) -> dict[str, Any]:
        ev, stamp = self._find(mb, eid)
        clean = {k: copy.deepcopy(v) for k, v in patch.items() if k not in _READ_ONLY}
        if stamp is not None:
            if "recurrence" in clean and clean["recurrence"]:
                raise _bad("Your request can't be completed. An occurrence cannot have a "
                           "recurrence.")
            current = self._occurrence(ev, stamp).res
            trial = dict(current, **clean)
            self._derive(dict(trial, recurrence=None))  # validates times and showAs
            overrides = dict(ev.exceptions.get(stamp, {}), **clean)
            overrides["lastModifiedDateTime"] = graph_stamp(self.clock.now())
            overrides["changeKey"] = base64.b64encode(secrets.token_bytes(12)).decode()
            overrides["@odata.etag"] = f'W/"{overrides["changeKey"]}"'
            ev.exceptions[stamp] = overrides
            self.knobs.count("graph.events.updated")
            if notify:
                self._changed(mb, ev.id, "updated")
            return self._wire(self._occurrence(ev, stamp).res, out_tz, tz_name)
        res = dict(ev.res, **clean)
        if "start" in clean:
            res["originalStartTimeZone"] = (clean["start"] or {}).get("timeZone") or "UTC"
        if "end" in clean:
            res["originalEndTimeZone"] = (clean["end"] or {}).get("timeZone") or "UTC"
        if "body" in clean:
            res["bodyPreview"] = str((res.get("body") or {}).get("content") or "")[:255]
        res["type"] = "seriesMaster" if res.get("recurrence") else "singleInstance"
        self._stamp(res)
        new = self._derive(res)
        new.exceptions, new.cancelled_occ = ev.exceptions, ev.cancelled_occ
        new.fingerprint = ev.fingerprint
        if "recurrence" in clean or "start" in clean:
            new.exceptions, new.cancelled_occ = {}, set()
        mb.events[eid] = new
        self.knobs.count("graph.events.updated")
        if notify:
            self._changed(mb, eid, "updated")
        return self._wire(new.res, out_tz, tz_name)

    def _delete(self, mb: Mailbox, eid: str, *, notify: bool = True) -> None:
        ev, stamp = self._find(mb, eid)
        if stamp is not None:
            ev.cancelled_occ.add(stamp)
            ev.exceptions.pop(stamp, None)
            if notify:
                self._changed(mb, ev.id, "updated")
        else:
            ev.deleted = True
            if notify:
                self._changed(mb, eid, "deleted")
        self.knobs.count("graph.events.deleted")

    def _wire(self, res: dict[str, Any], out_tz: tzinfo | None,
              tz_name: str | None = None) -> dict[str, Any]:
        out = copy.deepcopy(res)
        zone = out_tz or UTC
        label = tz_name or "UTC"
        for key in ("start", "end"):
            spec = out.get(key)
            if isinstance(spec, dict) and spec.get("dateTime"):
                try:
                    instant = parse_rfc3339(str(spec["dateTime"]),
                                            default_tz=resolve_tz(spec.get("timeZone") or "UTC"))
                except (ValueError, UnknownTimeZone):
                    continue
                out[key] = {"dateTime": graph_local(instant, zone), "timeZone": label}
        return out

    # ============================================================ instances
    def _view(self, mb: Mailbox, lo: datetime, hi: datetime) -> list[_Instance]:
        """Every instance (singles, occurrences, exceptions) overlapping [lo, hi)."""
        out: list[_Instance] = []
        for ev in mb.events.values():
            if ev.deleted:
                continue
            if ev.occ is None:
                if self._overlaps(ev.start, ev.end, lo, hi):
                    out.append(_Instance(ev.res, ev.start, ev.end, ev.res["changeKey"]))
                continue
            margin = timedelta(days=1)
            for occ in ev.occ.between(lo - margin, hi + margin):
                stamp = self._stamp_of(ev, occ)
                if stamp in ev.cancelled_occ:
                    continue
                inst = self._occurrence(ev, stamp)
                if self._overlaps(inst.start, inst.end, lo, hi):
                    out.append(inst)
        out.sort(key=lambda i: (i.start, i.res["id"]))
        return out

    @staticmethod
    def _overlaps(start: datetime, end: datetime, lo: datetime, hi: datetime) -> bool:
        if end == start:
            return lo <= start < hi
        return start < hi and end > lo

    def _window(self, query: dict[str, list[str]]) -> tuple[datetime, datetime]:
        raw_lo, raw_hi = _q1(query, "startDateTime"), _q1(query, "endDateTime")
        if not raw_lo or not raw_hi:
            raise _bad("This request requires a time window specified by the query string "
                       "parameters StartDateTime and EndDateTime.", "ErrorInvalidParameter")
        try:
            lo, hi = parse_rfc3339(raw_lo, default_tz=UTC), parse_rfc3339(raw_hi, default_tz=UTC)
        except ValueError as exc:
            raise _bad("The value of the parameter 'StartDateTime' or 'EndDateTime' is "
                       "invalid.", "ErrorInvalidParameter") from exc
        if hi <= lo:
            raise _bad("The parameter 'EndDateTime' must be later than 'StartDateTime'.",
                       "ErrorInvalidParameter")
        return lo, hi

    def _paged(self, items: list[dict[str, Any]], query: dict[str, list[str]], link: str,
               extra_query: dict[str, str]) -> dict[str, Any]:
        try:
            top = int(_q1(query, "$top") or self.config.list_default_top)
            skip = int(_q1(query, "$skip") or 0)
        except ValueError as exc:
            raise _bad("Invalid $top or $skip value.", "BadRequest") from exc
        top = max(1, min(top, self.config.list_max_top))
        page = items[skip:skip + top]
        out: dict[str, Any] = {"value": page}
        if skip + top < len(items):
            params = dict(extra_query, **{"$top": str(top), "$skip": str(skip + top)})
            out["@odata.nextLink"] = f"{link}?{urlencode(params)}"
        return out

    def _filter(self, items: list[dict[str, Any]], query: dict[str, list[str]]) -> list[dict[
            str, Any]]:
        raw = _q1(query, "$filter")
        if not raw:
            return items
        extended = _EXTENDED_FILTER.fullmatch(raw)
        if extended:
            # singleValueExtendedProperties/Any(ep: ep/id eq '…' and ep/value eq '…'), the
            # documented way to find items by an extended property
            # (https://learn.microsoft.com/graph/api/singlevaluelegacyextendedproperty-get).
            pid, pvalue = (extended.group(n).replace("''", "'") for n in (2, 3))
            return [i for i in items if any(
                str(p.get("id", "")).lower() == pid.lower() and p.get("value") == pvalue
                for p in i.get("singleValueExtendedProperties") or [])]
        match = re.fullmatch(r"\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*", raw)
        if not match:
            raise _bad(f"Invalid filter clause: {raw}", "BadRequest")
        prop, value = match.group(1), match.group(2).replace("''", "'")
        return [i for i in items if str(i.get(prop)) == value]

    def _calendar_view(self, mb: Mailbox, query: dict[str, list[str]], out_tz: tzinfo,
                       tz_name: str | None, base: str, user_path: str) -> dict[str, Any]:
        lo, hi = self._window(query)
        items = [self._wire(i.res, out_tz, tz_name) for i in self._view(mb, lo, hi)]
        items = self._filter(items, query)
        return self._paged(items, query, f"{base}/v1.0/{user_path}/calendarView",
                           {"startDateTime": _q1(query, "startDateTime") or "",
                            "endDateTime": _q1(query, "endDateTime") or ""})

    def _list_events(self, mb: Mailbox, query: dict[str, list[str]], out_tz: tzinfo,
                     tz_name: str | None, base: str, user_path: str) -> dict[str, Any]:
        items = [self._wire(ev.res, out_tz, tz_name)
                 for ev in sorted(mb.events.values(), key=lambda e: e.res["createdDateTime"])
                 if not ev.deleted]
        items = self._filter(items, query)
        return self._paged(items, query, f"{base}/v1.0/{user_path}/events", {})

    def _instances(self, mb: Mailbox, eid: str, query: dict[str, list[str]], out_tz: tzinfo,
                   tz_name: str | None) -> dict[str, Any]:
        master, stamp = self._find(mb, eid)
        if stamp is not None or master.occ is None:
            raise _bad("The specified event is not a recurring series master.")
        lo, hi = self._window(query)
        items = [self._wire(i.res, out_tz, tz_name) for i in self._view(mb, lo, hi)
                 if i.master_id == master.id]
        return {"value": items}

    # ================================================================ delta
    def _delta(self, mb: Mailbox, query: dict[str, list[str]], out_tz: tzinfo,
               tz_name: str | None, page_size: int | None, base: str,
               user_path: str) -> tuple[dict[str, Any], dict[str, str]]:
        size = min(page_size or self.config.delta_default_page_size,
                   self.config.delta_max_page_size)
        link = f"{base}/v1.0/{user_path}/calendarView/delta"
        skip = _q1(query, "$skiptoken")
        delta = _q1(query, "$deltatoken")
        gone = GraphError(410, "syncStateNotFound",
                          "The sync state generation is not found. Please start a new delta "
                          "query without a delta token.")
        if skip is not None:
            rnd = self._rounds.get(skip)
            if rnd is None or rnd.mailbox != mb.id or rnd.epoch != mb.epoch:
                self.knobs.count("graph.delta.gone")
                raise gone
            del self._rounds[skip]
        else:
            if delta is not None:
                state = self._delta_tokens.get(delta)
                max_age = self.config.delta_token_max_age_seconds
                if (state is None or state.mailbox != mb.id or state.epoch != mb.epoch or (
                        max_age is not None and self.clock.time() - state.issued > max_age)):
                    self.knobs.count("graph.delta.gone")
                    raise gone
                lo, hi, previous = state.lo, state.hi, state.snapshot
            else:
                lo, hi = self._window(query)
                previous = {}
            current = self._view(mb, lo, hi)
            snapshot = {i.res["id"]: i.version for i in current}
            items: list[dict[str, Any]] = []
            for inst in current:
                if previous.get(inst.res["id"]) != inst.version:
                    items.append(self._wire(inst.res, out_tz, tz_name))
            for iid in previous:
                if iid not in snapshot:
                    items.append({"@odata.type": "#microsoft.graph.event", "id": iid,
                                  "@removed": {"reason": "deleted"}})
            token = secrets.token_urlsafe(32)
            self._delta_tokens[token] = _DeltaToken(mb.id, lo, hi, snapshot, mb.epoch,
                                                    self.clock.time())
            rnd = _DeltaRound(mb.id, items, token, size, mb.epoch)
        page, rest = rnd.items[:size], rnd.items[size:]
        body: dict[str, Any] = {"@odata.context": f"{base}/v1.0/$metadata#Collection(event)",
                                "value": page}
        if rest:
            key = secrets.token_urlsafe(32)
            self._rounds[key] = _DeltaRound(mb.id, rest, rnd.delta_token, size, rnd.epoch)
            body["@odata.nextLink"] = f"{link}?{urlencode({'$skiptoken': key})}"
        else:
            body["@odata.deltaLink"] = f"{link}?{urlencode({'$deltatoken': rnd.delta_token})}"
        headers = {"preference-applied": f"odata.maxpagesize={size}"} if page_size else {}
        return body, headers

    # ============================================================ schedule
    def _get_schedule(self, body: dict[str, Any], tz_name: str | None,
                      out_tz: tzinfo) -> dict[str, Any]:
        schedules = body.get("schedules") or body.get("Schedules")
        start_spec = body.get("startTime") or body.get("StartTime")
        end_spec = body.get("endTime") or body.get("EndTime")
        if not isinstance(schedules, list) or not schedules:
            raise _bad("The parameter 'schedules' is missing or empty.", "ErrorInvalidParameter")
        if len(schedules) > self.config.schedule_max_schedules:
            raise _bad(f"The number of schedules ({len(schedules)}) exceeds the maximum of "
                       f"{self.config.schedule_max_schedules}.", "ErrorInvalidParameter")
        lo = self._parse_dtz(start_spec, "start")[0]
        hi = self._parse_dtz(end_spec, "end")[0]
        if hi <= lo:
            raise _bad("The end time must be after the start time.", "ErrorInvalidTimeInterval")
        if hi - lo >= timedelta(days=self.config.schedule_max_days):
            raise _bad(f"The requested time interval must be less than "
                       f"{self.config.schedule_max_days} days.", "ErrorInvalidTimeInterval")
        raw_interval = body.get("availabilityViewInterval", body.get("AvailabilityViewInterval"))
        try:
            interval = int(raw_interval) if raw_interval not in (None, "") else 30
        except (TypeError, ValueError) as exc:
            raise _bad("Invalid availabilityViewInterval.", "ErrorInvalidParameter") from exc
        if not 5 <= interval <= 1440:
            raise _bad("The availabilityViewInterval must be between 5 and 1440 minutes.",
                       "ErrorInvalidParameter")
        step = timedelta(minutes=interval)
        slots = math.ceil((hi - lo) / step)
        label = tz_name or "UTC"
        value = []
        for address in schedules:
            mb = self.find_mailbox(str(address))
            if mb is None:
                value.append({"scheduleId": address, "availabilityView": "",
                              "scheduleItems": [],
                              "error": {"message": f"The specified address {address} could not "
                                                  "be resolved to a mailbox.",
                                        "responseCode": "ErrorMailRecipientNotFound"}})
                continue
            items, view = [], [0] * slots
            for inst in self._view(mb, lo, hi):
                res = inst.res
                status = res.get("showAs") or "busy"
                if res.get("isCancelled"):
                    continue
                code = VIEW_CODE.get(status, 2)
                for n in range(slots):
                    s0 = lo + n * step
                    if inst.start < s0 + step and inst.end > s0:
                        view[n] = max(view[n], code)
                if status == "free" and not self.config.schedule_include_free_items:
                    continue
                location = (res.get("location") or {}).get("displayName") or ""
                items.append({
                    "isPrivate": res.get("sensitivity") == "private",
                    "status": status,
                    "subject": res.get("subject") or "",
                    "location": location,
                    "isMeeting": bool(res.get("attendees")),
                    "isRecurring": inst.master_id is not None,
                    "isException": res.get("type") == "exception",
                    "isReminderSet": bool(res.get("isReminderOn")),
                    "start": {"dateTime": graph_local(inst.start, out_tz), "timeZone": label},
                    "end": {"dateTime": graph_local(inst.end, out_tz), "timeZone": label},
                })
            value.append({"scheduleId": address,
                          "availabilityView": "".join(str(c) for c in view),
                          "scheduleItems": items, "workingHours": self._working_hours(mb)})
        self.knobs.count("graph.schedule.lookups", len(schedules))
        return {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection("
                                  "microsoft.graph.scheduleInformation)", "value": value}

    # ======================================================= subscriptions
    def _resource_mailbox(self, resource: str, tok: AccessToken) -> Mailbox:
        parts = [p for p in resource.strip().split("/") if p]
        low = [p.lower() for p in parts]
        if low[:1] == ["me"] and low[1:] in (["events"], ["calendar", "events"]):
            if tok.kind != "user":
                raise _bad("/me request is only valid with delegated authentication flow.",
                           "BadRequest")
            return self.mailboxes[tok.user_id or ""]
        if len(low) >= 3 and low[0] == "users" and low[2:] in (["events"], ["calendar", "events"]):
            return self._mailbox(parts[1])
        raise _bad(f"Resource '{resource}' is not supported by the sandbox: subscribe to "
                   "'/users/{id}/events'.", "InvalidRequest")

    def _validate_url(self, url: str, sub_id: str, which: str) -> None:
        """The handshake: POST ?validationToken=..., expect a 200 text/plain echo."""
        token = ("Validation: Testing client application reachability for subscription "
                 f"Request-Id: {uuid.uuid4()}")
        delivery = self.notifier.send_now(
            "graph.validation", url, params={"validationToken": token},
            headers={"Content-Type": "text/plain; charset=utf-8"},
            timeout=self.config.validation_timeout_seconds,
            meta={"subscription": sub_id, "url": which, "validationToken": token})
        ok = delivery.status == 200 and delivery.response_body == token
        if not ok or not delivery.response_content_type.lower().startswith("text/plain"):
            self.knobs.count("graph.subscriptions.validation_failed")
            raise _bad("Subscription validation request failed. Notification endpoint must "
                       "respond with 200 OK to validation request.", "ValidationError")

    def _expiry(self, raw: Any) -> datetime:
        if not raw:
            raise _bad("expirationDateTime is a required property for subscription creation.",
                       "InvalidRequest")
        try:
            expires = parse_rfc3339(str(raw), default_tz=UTC)
        except ValueError as exc:
            raise _bad("Invalid expirationDateTime.", "InvalidRequest") from exc
        now = self.clock.now()
        if expires <= now:
            raise _bad("Subscription expiration must be in the future.", "InvalidRequest")
        limit = self.config.subscription_max_minutes
        if expires - now > timedelta(minutes=limit):
            raise _bad(f"Subscription expiration can only be {limit} minutes in the future.",
                       "InvalidRequest")
        return expires

    async def _subscriptions(self, method: str, rest: list[str], payload: Any,
                             tok: AccessToken) -> GResp:
        if not rest and method == "GET":
            with self.lock:
                return GResp(200, {"value": [s.wire() for s in self.subs.values()
                                             if s.application_id == tok.client_id]})
        if not rest and method == "POST":
            body = _obj(payload)
            url = body.get("notificationUrl")
            if not url or not isinstance(url, str) or urlsplit(url).scheme not in (
                    "http", "https"):
                raise _bad("notificationUrl is a required property for subscription creation.",
                           "InvalidRequest")
            if self.config.require_https_notification_url and not url.startswith("https://"):
                raise _bad("The Notification Url must be HTTPS.", "InvalidRequest")
            change_types = tuple(c.strip() for c in str(body.get("changeType") or "").split(",")
                                 if c.strip())
            if not change_types or any(c not in ("created", "updated", "deleted")
                                       for c in change_types):
                raise _bad(f"Invalid changeType '{body.get('changeType')}'.", "InvalidRequest")
            client_state = body.get("clientState")
            if client_state is not None and len(str(client_state)) > 128:
                raise _bad("clientState must be at most 128 characters.", "InvalidRequest")
            with self.lock:
                mb = self._resource_mailbox(str(body.get("resource") or ""), tok)
                self._require(tok, mb, "read")
                expires = self._expiry(body.get("expirationDateTime"))
            sub_id = str(uuid.uuid4())
            lifecycle = body.get("lifecycleNotificationUrl")
            await asyncio.to_thread(self._validate_url, url, sub_id, "notificationUrl")
            if lifecycle:
                await asyncio.to_thread(self._validate_url, str(lifecycle), sub_id,
                                        "lifecycleNotificationUrl")
            with self.lock:
                sub = _Subscription(sub_id, str(body["resource"]), mb.id, change_types, url,
                                    client_state, expires, tok.client_id,
                                    tok.user_id or str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                                  tok.client_id)),
                                    str(lifecycle) if lifecycle else None,
                                    str(body.get("latestSupportedTlsVersion") or "v1_2"))
                self.subs[sub_id] = sub
                self.knobs.count("graph.subscriptions.created")
                wire = sub.wire()
            wire["@odata.context"] = "https://graph.microsoft.com/v1.0/$metadata#subscriptions/" \
                                     "$entity"
            return GResp(201, wire)
        if len(rest) == 1:
            with self.lock:
                sub = self.subs.get(rest[0])
                if sub is None or sub.application_id != tok.client_id:
                    raise GraphError(404, "ResourceNotFound",
                                     f"The object was not found. Subscription '{rest[0]}'.")
                if method == "GET":
                    return GResp(200, sub.wire())
                if method == "DELETE":
                    del self.subs[rest[0]]
                    return GResp(204)
                if method == "PATCH":
                    body = _obj(payload)
                    if "expirationDateTime" in body:
                        sub.expires = self._expiry(body["expirationDateTime"])
                        sub.needs_reauth = False  # renewing reauthorizes
                    if "notificationUrl" in body:
                        raise _bad("notificationUrl cannot be updated.", "InvalidRequest")
                    self.knobs.count("graph.subscriptions.renewed")
                    return GResp(200, sub.wire())
        if len(rest) == 2 and rest[1].lower() == "reauthorize" and method == "POST":
            with self.lock:
                sub = self.subs.get(rest[0])
                if sub is None or sub.application_id != tok.client_id:
                    raise GraphError(404, "ResourceNotFound",
                                     f"The object was not found. Subscription '{rest[0]}'.")
                sub.needs_reauth = False
                self.knobs.count("graph.subscriptions.reauthorized")
                return GResp(204)
        raise _bad("Unsupported subscriptions request.", "BadRequest")

    def lifecycle_event(self, subscription_id: str, event: str) -> bool:
        """Send a lifecycle notification as Graph does ("Reduce missing subscriptions and
        change notifications", https://learn.microsoft.com/graph/change-notifications-lifecycle-events):
        ``subscriptionRemoved`` (the subscription is gone: create a new one and resync),
        ``missed`` (notifications were lost: resync), ``reauthorizationRequired``
        (notifications stop until the subscription is renewed or reauthorized). It goes to
        ``lifecycleNotificationUrl`` only: without one, nobody hears it. True if sent."""
        if event not in ("subscriptionRemoved", "missed", "reauthorizationRequired"):
            raise ValueError(f"unknown lifecycle event {event!r}")
        with self.lock:
            sub = self.subs.get(subscription_id)
            if sub is None:
                raise KeyError(subscription_id)
            if event == "subscriptionRemoved":
                del self.subs[subscription_id]
            elif event == "reauthorizationRequired":
                sub.needs_reauth = True
            self.knobs.count(f"graph.lifecycle.{event}")
            if not sub.lifecycle_url:
                return False
            note = {"subscriptionId": sub.id, "lifecycleEvent": event,
                    "subscriptionExpirationDateTime": graph_stamp(sub.expires),
                    "clientState": sub.client_state, "tenantId": self.tenant_id,
                    "resource": sub.resource}
        self.notifier.post("graph.lifecycle", sub.lifecycle_url,
                           headers={"Content-Type": "application/json; charset=utf-8"},
                           body=json.dumps({"value": [note]}),
                           meta={"subscription": sub.id, "lifecycleEvent": event})
        return True

    def _changed(self, mb: Mailbox, event_id: str, change: str) -> None:
        now = self.clock.now()
        ev = mb.events.get(event_id)
        etag = ev.res.get("@odata.etag") if ev is not None else None
        for sub in self.subs.values():
            if sub.mailbox != mb.id or sub.expires <= now or change not in sub.change_types \
                    or sub.needs_reauth:
                continue
            resource = f"Users/{mb.id}/Events/{event_id}"
            data: dict[str, Any] = {"@odata.type": "#Microsoft.Graph.Event",
                                    "@odata.id": resource, "id": event_id}
            if etag and change != "deleted":
                data["@odata.etag"] = etag
            note = {"subscriptionId": sub.id,
                    "subscriptionExpirationDateTime": graph_stamp(sub.expires),
                    "changeType": change, "resource": resource, "resourceData": data,
                    "clientState": sub.client_state, "tenantId": self.tenant_id}
            self.knobs.count(f"graph.notifications.{change}")
            self.notifier.post("graph.notification", sub.notification_url,
                               headers={"Content-Type": "application/json; charset=utf-8"},
                               body=json.dumps({"value": [note]}),
                               meta={"subscription": sub.id, "changeType": change,
                                     "event": event_id})

    # ================================================================ batch
    async def _batch(self, tok: AccessToken, headers: dict[str, str], raw: bytes,
                     base: str) -> GResp:
        payload = self._json(raw)
        requests = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(requests, list) or not requests:
            raise _bad("Invalid batch payload: 'requests' must be a non-empty array.",
                       "BadRequest")
        if len(requests) > self.config.batch_max_requests:
            raise _bad(f"Invalid batch payload format. The number of requests "
                       f"({len(requests)}) exceeds the limit of "
                       f"{self.config.batch_max_requests}.", "BadRequest")
        by_id: dict[str, dict[str, Any]] = {}
        for item in requests:
            if not isinstance(item, dict) or not item.get("id") or not item.get("method") or \
                    not item.get("url"):
                raise _bad("Each batch request needs id, method and url.", "BadRequest")
            rid = str(item["id"])
            if rid in by_id:
                raise _bad(f"Batch request ids must be unique: '{rid}'.", "BadRequest")
            by_id[rid] = item
        for item in requests:
            for dep in item.get("dependsOn") or []:
                if str(dep) not in by_id:
                    raise _bad(f"Request '{item['id']}' depends on unknown request '{dep}'.",
                               "BadRequest")
        self.knobs.count("graph.batch.requests", len(requests))
        # concurrency: the requests a batch runs in parallel (no dependsOn) share the
        # mailbox slots; a dependsOn chain runs one at a time behind its root.
        granted: set[str] = set()
        held: collections.Counter[tuple[str, str]] = collections.Counter()
        with self.lock:
            for item in requests:
                if item.get("dependsOn"):
                    continue
                parts = self._split_url(str(item["url"]))[0]
                mb = self._mailbox_of(parts, tok)
                if mb is None or not self.config.batch_counts_concurrency:
                    granted.add(str(item["id"]))
                    continue
                key = (tok.client_id, mb.id)
                try:
                    self._acquire(key, 1)
                except GraphError:
                    continue
                held[key] += 1
                granted.add(str(item["id"]))
        results: dict[str, dict[str, Any]] = {}
        try:
            if self.config.request_service_ms > 0 and held:
                await asyncio.sleep(self.config.request_service_ms / 1000)
            pending = [str(i["id"]) for i in requests]
            while pending:
                progressed = False
                for rid in list(pending):
                    item = by_id[rid]
                    deps = [str(d) for d in item.get("dependsOn") or []]
                    if any(d not in results for d in deps):
                        continue
                    pending.remove(rid)
                    progressed = True
                    if any(not 200 <= results[d]["status"] < 300 for d in deps):
                        results[rid] = {"id": rid, "status": 424, "headers": {
                            "Content-Type": "application/json"}, "body": GraphError(
                            424, "BadRequest", "Failed dependency").body()}
                        continue
                    root_granted = rid in granted or bool(deps)
                    results[rid] = await self._batch_one(item, tok, headers, base, root_granted)
                if not progressed:  # a dependency cycle
                    for rid in pending:
                        results[rid] = {"id": rid, "status": 400, "headers": {
                            "Content-Type": "application/json"}, "body": _bad(
                            "Circular dependsOn.", "BadRequest").body()}
                    break
        finally:
            with self.lock:
                for key, n in held.items():
                    self._release(key, n)
        answers = [results[str(i["id"])] for i in requests]
        if self.config.batch_shuffle:
            self._rng.shuffle(answers)
        return GResp(200, {"responses": answers})

    @staticmethod
    def _split_url(url: str) -> tuple[list[str], dict[str, list[str]]]:
        split = urlsplit(url)
        path = split.path
        if path.startswith("/v1.0/"):
            path = path[len("/v1.0"):]
        parts = [unquote(p) for p in path.split("/") if p]
        return parts, parse_qs(split.query, keep_blank_values=True)

    async def _batch_one(self, item: dict[str, Any], tok: AccessToken, outer: dict[str, str],
                         base: str, granted: bool) -> dict[str, Any]:
        rid = str(item["id"])
        method = str(item["method"]).upper()
        inner_headers = {str(k).lower(): str(v) for k, v in (item.get("headers") or {}).items()}
        for key in ("prefer",):
            if key in outer and key not in inner_headers:
                inner_headers[key] = outer[key]
        try:
            if not granted:
                self.knobs.count("graph.throttled.concurrency")
                raise GraphError(429, "ApplicationThrottled",
                                 "Application is over its MailboxConcurrency limit.",
                                 headers={"retry-after": str(self.config.retry_after_seconds)})
            parts, query = self._split_url(str(item["url"]))
            self.knobs.count(f"batch:{method} /v1.0/{'/'.join(parts)}")
            if parts[:1] == ["$batch"]:
                raise _bad("Nested batch requests are not supported.", "BadRequest")
            body = item.get("body")
            if body is not None and "content-type" not in inner_headers:
                raise _bad("Content-Type header is required for requests with a body.",
                           "BadRequest")
            if isinstance(body, str):
                body = self._json(body.encode())
            resp = await self._call(method, parts, query, inner_headers, body, tok, base,
                                    count_concurrency=False)
        except GraphError as exc:
            resp = GResp(exc.status, exc.body(), dict(exc.headers))
        headers = {k.title() if k != "retry-after" else "Retry-After": v
                   for k, v in resp.headers.items()}
        out: dict[str, Any] = {"id": rid, "status": resp.status, "headers": headers}
        if resp.body is not None and resp.status not in (202, 204):
            headers["Content-Type"] = "application/json"
            out["body"] = resp.body
        return out


def _obj(payload: Any) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise _bad("Unable to read JSON request payload.", "BadRequest")
    return payload
