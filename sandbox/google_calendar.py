"""Google Calendar API v3 emulator (+ the Google OAuth token endpoint).

Plain HTTP is fine::

    build("calendar", "v3", credentials=Credentials(token=..., refresh_token=...,
          token_uri=emu.url + "/token", client_id=..., client_secret=...),
          static_discovery=True,
          client_options={"api_endpoint": emu.url + "/calendar/v3/"})
    BatchHttpRequest(batch_uri=emu.url + "/batch/calendar/v3")

What it honours (Google's public reference and guides, and the
google-api-python-client sources):

* OAuth ``POST /token`` (form; ``authorization_code``, ``refresh_token``) →
  ``{access_token, expires_in (3600), scope, token_type}`` (+
  ``refresh_token`` on a code exchange, only when the authorize URL asked
  ``access_type=offline`` and, after a first consent, ``prompt=consent``; PKCE
  ``code_challenge`` checked against ``code_verifier``); ``invalid_grant`` "Token has been
  expired or revoked." for a revoked refresh token, ``invalid_client`` for a
  bad client. ``GET /o/oauth2/v2/auth`` auto-consents (demo),
  ``POST /revoke``. Every API call checks the bearer token: 401 ``authError``
  when unknown or expired (the emulator's clock decides).
* Calendars addressed by id (e.g. a staff e-mail), created through the
  control API (``primary`` = the token's user). ``calendars.get``,
  ``calendarList.list/get``.
* Events: insert with a client-chosen id (5-1024 chars of base32hex
  ``[a-v0-9]``; any id ever used in the calendar, deleted ones included →
  409 ``duplicate``), get, list, patch (deep merge), update (PUT), delete
  (204, then 410 ``deleted``), ``If-Match`` → 412, ``etag``/``updated``/
  ``sequence``; ``status`` confirmed/tentative/cancelled, ``transparency``,
  ``eventType``; start/end as ``dateTime`` (+ ``timeZone``) or all-day
  ``date`` (the calendar's zone).
* Recurrence: ``RRULE``/``EXRULE``/``RDATE``/``EXDATE`` expanded in the
  event's ``timeZone`` (wall time kept across DST); instances have ids
  ``{id}_{YYYYMMDDTHHMMSSZ}`` (``{id}_{YYYYMMDD}`` all-day), patching or
  deleting one stores an exception (``recurringEventId`` +
  ``originalStartTime``); ``events.instances``; ``singleEvents`` expansion.
* ``events.list``: timeMin/timeMax/updatedMin/q/iCalUID/eventTypes/
  showDeleted/singleEvents/orderBy(startTime|updated)/maxResults (≤ 2500)
  and ``pageToken``; the last page carries ``nextSyncToken``. With
  ``syncToken``: only events changed since, deleted ones included as
  ``{"id", "status": "cancelled"}``; forbidden companions → 400; an unknown,
  expired or invalidated token → 410 ``fullSyncRequired``.
* ``POST /freeBusy``: busy = not cancelled, not ``transparent``, not a
  ``workingLocation`` event and not declined by the calendar's owner.
  ``tentative`` events and ``outOfOffice``/``focusTime`` events are busy
  (Google shows STATUS:TENTATIVE as busy — derekantrican/GAS-ICS-Sync#384;
  the reference's TimePeriod is "time ranges during which this calendar
  should be regarded as busy"). Busy blocks are merged and clipped to the
  query range. Unknown calendars get ``errors: [{domain: "global", reason:
  "notFound"}]``, calendars past ``calendarExpansionMax`` (≤ 50)
  ``tooManyCalendarsRequested``; ranges over ``freebusy_max_days`` → 400
  ``timeRangeTooLong``.
* ``POST .../events/watch`` (``web_hook`` channels: id, token, expiration,
  ``params.ttl``) then real POSTs to the address: ``sync`` first, then
  ``exists`` on every change, with ``X-Goog-Channel-ID``, ``-Token``,
  ``-Expiration``, ``X-Goog-Resource-ID``, ``-URI``, ``-State`` and
  ``X-Goog-Message-Number``; ``POST /channels/stop``.
* ``POST /batch/calendar/v3`` multipart/mixed (≤ 1000 parts), each part
  authenticated, counted and answered on its own (``Content-ID:
  <response-...>``).
* Quotas: ``quota_per_user_per_minute`` and ``quota_per_project_per_minute``
  (rolling 60 s on the emulator clock) → ``quota_status`` (403 or 429)
  ``{"error": {"errors": [{"domain": "usageLimits", "reason":
  "rateLimitExceeded", ...}], "code", "message"}}``.

Deliberately not emulated: ACLs and sharing (a valid token sees every
calendar), attendees' copies and invitations, reminders, conference data,
``fields`` partial responses (ignored: answers are a superset), ``import``
/``move``/``quickAdd``, calendarList/settings/acl watch, groups in freeBusy.
Guessed (kept as settings or noted): clipping of busy blocks to the query,
the 90-day freeBusy limit, per-calendar ``tooManyCalendarsRequested``,
declined events not busy, the messages of 400s, dateTime printed in the
calendar's (or ``timeZone`` parameter's) zone, a full resource for
``events.get`` of a deleted event, horizon of ``expansion_horizon_days``
for open-ended series when no timeMax is given.
"""

from __future__ import annotations

import base64
import collections
import copy
import itertools
import json
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from email import message_from_bytes
from email.utils import format_datetime
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from sandbox.calendar_common import (
    Notifier,
    UnknownTimeZone,
    google_dt,
    google_stamp,
    localize,
    merge_intervals,
    parse_rfc3339,
    resolve_tz,
)
from sandbox.knobs import ASGIApp, Clock, Receive, Scope, Send, control_routes
from sandbox.oauth import (
    basic_credentials,
    read_form,
    redirect_with,
    token_control_routes,
    verifier_matches,
)
from sandbox.routing import RouteTable
from sandbox.rrule_expand import Occurrences, RecurrenceError, from_rfc5545
from sandbox.server import Emulator

__all__ = ["GError", "GoogleCalendarConfig", "GoogleCalendarEmulator"]

JSON_CT = "application/json; charset=UTF-8"
API_PREFIX = "/calendar/v3"
SCOPE = "https://www.googleapis.com/auth/calendar"
_ID_RE = re.compile(r"^[a-v0-9]{5,1024}$")
_INSTANCE_RE = re.compile(r"^(?P<base>.+)_(?P<stamp>\d{8}(?:T\d{6}Z)?)$")
_EVENT_TYPES = ("default", "outOfOffice", "focusTime", "workingLocation", "fromGmail",
                "birthday")
_READ_ONLY = {"kind", "etag", "created", "updated", "htmlLink", "creator",
              "recurringEventId", "originalStartTime", "hangoutLink", "privateCopy", "locked"}
_SYNC_FORBIDDEN = ("timeMin", "timeMax", "orderBy", "q", "updatedMin", "iCalUID",
                   "privateExtendedProperty", "sharedExtendedProperty")
QUOTA_MESSAGES = {"rateLimitExceeded": "Rate Limit Exceeded",
                  "userRateLimitExceeded": "User Rate Limit Exceeded",
                  "quotaExceeded": "Calendar usage limits exceeded."}


# ---------------------------------------------------------------- errors


class GError(Exception):
    """An error answer in Google's (Apiary) shape."""

    def __init__(self, status: int, reason: str, message: str, *, domain: str = "global",
                 location: str | None = None, location_type: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.domain = domain
        self.location = location
        self.location_type = location_type
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        item: dict[str, Any] = {"domain": self.domain, "reason": self.reason,
                                "message": self.message}
        if self.location_type:
            item["locationType"] = self.location_type
        if self.location:
            item["location"] = self.location
        return {"error": {"errors": [item], "code": self.status, "message": self.message}}


def _not_found() -> GError:
    return GError(404, "notFound", "Not Found")


def _bad(message: str, reason: str = "invalid", **kw: Any) -> GError:
    return GError(400, reason, message, **kw)


@dataclass(frozen=True)
class _Call:
    """One REST call under /calendar/v3, as the route handlers read it."""

    method: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    payload: Any
    tok: _Token


@dataclass
class GResp:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- state


@dataclass
class GoogleCalendarConfig:
    access_token_ttl_seconds: int = 3600
    auth_code_ttl_seconds: int = 600
    # A refresh token only for access_type=offline, and only at the first consent
    # unless prompt=consent asks again ("Refreshing an access token (offline access)",
    # https://developers.google.com/identity/protocols/oauth2/web-server#offline).
    # False: every code exchange gets one (the lenient old behaviour).
    refresh_token_needs_offline: bool = True
    # A client-chosen id already used answers 409 duplicate; False: not detected, the
    # insert lands (Google does not promise detection, see _insert).
    detect_id_collisions: bool = True
    quota_per_user_per_minute: int = 600
    quota_per_project_per_minute: int = 10_000
    quota_status: int = 403  # 403 or 429, both are documented
    quota_reason: str = "rateLimitExceeded"  # or userRateLimitExceeded / quotaExceeded
    quota_retry_after: bool = False  # add Retry-After (seconds to the window's end); unverified
    freebusy_max_calendars: int = 50
    freebusy_max_days: int = 90  # unverified: observed "timeRangeTooLong" past ~3 months
    list_default_max_results: int = 250
    list_max_results: int = 2500
    batch_max_requests: int = 1000
    sync_token_max_age_seconds: float | None = None  # None: only invalidation expires them
    expansion_horizon_days: int = 730  # open-ended series without timeMax
    default_time_zone: str = "UTC"
    auto_create_calendars: bool = False
    channel_default_ttl_seconds: int = 604_800
    channel_max_ttl_seconds: int = 2_592_000
    require_https_webhooks: bool = False  # Google does; relaxed for local receivers
    notify_retries: int = 0
    notify_timeout_seconds: float = 10.0
    webhook_verify: Any = None  # CA path or bool for https receivers; None: the sandbox CA


@dataclass
class _Token:
    token: str
    user: str
    client_id: str
    expires_at: float
    scope: str = SCOPE
    refresh_token: str | None = None


@dataclass
class _Code:
    user: str
    redirect_uri: str | None
    expires_at: float
    offline: bool = True  # access_type=offline was granted: a refresh token comes with it
    challenge: str | None = None  # PKCE code_challenge, checked on redemption
    method: str = "plain"


@dataclass
class _Refresh:
    token: str
    user: str
    client_id: str
    scope: str = SCOPE
    revoked: bool = False


@dataclass
class _Event:
    res: dict[str, Any]
    seq: int
    start: datetime
    end: datetime
    all_day: bool
    tz: tzinfo
    local_start: datetime
    occ: Occurrences | None = None

    @property
    def id(self) -> str:
        return str(self.res["id"])

    @property
    def cancelled(self) -> bool:
        return self.res.get("status") == "cancelled"

    @property
    def master(self) -> bool:
        return self.occ is not None

    @property
    def exception_of(self) -> str | None:
        return self.res.get("recurringEventId")


@dataclass
class _Calendar:
    id: str
    summary: str
    time_zone: str
    resource_id: str
    events: dict[str, _Event] = field(default_factory=dict)
    epoch: int = 0
    updated: datetime | None = None

    @property
    def tz(self) -> tzinfo:
        return resolve_tz(self.time_zone)


@dataclass
class _SyncState:
    calendar: str
    seq: int
    epoch: int
    issued: float


@dataclass
class _PageState:
    calendar: str
    items: list[dict[str, Any]]
    sync_token: str | None


@dataclass
class _Channel:
    id: str
    resource_id: str
    resource_uri: str
    calendar: str
    address: str
    token: str | None
    expiration_ms: int
    params: dict[str, Any]
    message_number: int = 0
    stopped: bool = False


def _etag(n: int) -> str:
    return f'"{n}"'


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _q1(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


def _qbool(query: dict[str, list[str]], key: str) -> bool:
    return (_q1(query, key) or "").lower() == "true"


# ---------------------------------------------------------------- emulator


class GoogleCalendarEmulator(Emulator):
    name = "google"
    label = "Google Calendar"
    default_tls = False

    def __init__(self, *, config: GoogleCalendarConfig | None = None,
                 clock: Clock | None = None, client_id: str | None = None,
                 client_secret: str | None = None,
                 user: str = "assistant@relais.test") -> None:
        super().__init__(clock=clock)
        self.config = config or GoogleCalendarConfig()
        self.client_id = client_id or (
            f"{secrets.randbelow(10**12):012d}-{secrets.token_hex(16)}.apps.googleusercontent.com")
        self.client_secret = client_secret or "GOCSPX-" + secrets.token_urlsafe(21)
        self.project_number = "123456789012"
        self.default_user = user
        self.users: set[str] = {user}
        self.tokens: dict[str, _Token] = {}
        self.refresh_tokens: dict[str, _Refresh] = {}
        self.auth_codes: dict[str, _Code] = {}
        self.consented: set[tuple[str, str]] = set()  # (user, client id) given offline access
        self._notifier: Notifier | None = None
        self.reset_data()
        self.refresh_token = self._new_refresh(user)
        self.access_token = self.issue_access_token(user=user, refresh_token=self.refresh_token)

    # ============================================================ public API
    def credentials(self) -> dict[str, Any]:
        base = self.url if self.running else None
        return {
            "api_endpoint": f"{base}{API_PREFIX}/" if base else None,
            "batch_uri": f"{base}/batch/calendar/v3" if base else None,
            "token_uri": f"{base}/token" if base else None,
            "auth_uri": f"{base}/o/oauth2/v2/auth" if base else None,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "user": self.default_user,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "scope": SCOPE,
        }

    def add_user(self, email: str) -> dict[str, str]:
        """Another Google account connected to the same OAuth client."""
        with self.lock:
            self.users.add(email)
            refresh = self._new_refresh(email)
            return {"user": email, "refresh_token": refresh,
                    "access_token": self.issue_access_token(user=email, refresh_token=refresh)}

    def issue_access_token(self, *, user: str | None = None, ttl: float | None = None,
                           refresh_token: str | None = None) -> str:
        with self.lock:
            token = "ya29.a0" + secrets.token_urlsafe(60)
            ttl = self.config.access_token_ttl_seconds if ttl is None else ttl
            self.tokens[token] = _Token(token, user or self.default_user, self.client_id,
                                        self.clock.time() + ttl, refresh_token=refresh_token)
            return token

    def issue_auth_code(self, *, user: str | None = None, redirect_uri: str | None = None,
                        offline: bool = True, challenge: str | None = None,
                        method: str = "plain") -> str:
        """A code as the consent screen hands it out; ``offline``: the authorize URL
        had ``access_type=offline`` (and consent was given for it)."""
        with self.lock:
            code = "4/0A" + secrets.token_urlsafe(40)
            self.auth_codes[code] = _Code(
                user or self.default_user, redirect_uri,
                self.clock.time() + self.config.auth_code_ttl_seconds, offline, challenge,
                method)  # fmt: skip
            return code

    def expire_access_tokens(self, token: str | None = None) -> int:
        with self.lock:
            n = 0
            for tok in self.tokens.values():
                if token is None or tok.token == token:
                    tok.expires_at = self.clock.time() - 1
                    n += 1
            return n

    def revoke_refresh_token(self, token: str | None = None) -> int:
        """Revoke one refresh token (or all), and the access tokens minted from it."""
        with self.lock:
            n = 0
            for rt in self.refresh_tokens.values():
                if token is None or rt.token == token:
                    rt.revoked = True
                    n += 1
                    for tok in self.tokens.values():
                        if tok.refresh_token == rt.token:
                            tok.expires_at = self.clock.time() - 1
            return n

    def add_calendar(self, calendar_id: str, *, time_zone: str | None = None,
                     summary: str | None = None) -> dict[str, Any]:
        with self.lock:
            tz_name = time_zone or self.config.default_time_zone
            try:
                resolve_tz(tz_name)
            except UnknownTimeZone as exc:
                raise ValueError(f"unknown time zone {tz_name!r}") from exc
            cal = self.calendars.get(calendar_id)
            if cal is None:
                cal = _Calendar(calendar_id, summary or calendar_id, tz_name,
                                secrets.token_urlsafe(20), updated=self.clock.now())
                self.calendars[calendar_id] = cal
            else:
                cal.time_zone = tz_name
                if summary:
                    cal.summary = summary
            return self._calendar_wire(cal)

    def insert_event(self, calendar_id: str, body: dict[str, Any], *,
                     notify: bool = True) -> dict[str, Any]:
        """Insert as the API would (same validation); raises :class:`GError`."""
        with self.lock:
            cal = self._calendar(calendar_id, None)
            ev = self._insert(cal, copy.deepcopy(body), user=self.default_user)
            self._changed(cal, notify=notify)
            return self._full(cal, ev.res, None)

    def seed_events(self, calendar_id: str, bodies: list[dict[str, Any]], *,
                    notify: bool = True) -> list[dict[str, Any]]:
        with self.lock:
            cal = self._calendar(calendar_id, None)
            out = []
            for body in bodies:
                ev = self._insert(cal, copy.deepcopy(body), user=self.default_user)
                out.append(self._full(cal, ev.res, None))
            self._changed(cal, notify=notify)
            return out

    def patch_event(self, calendar_id: str, event_id: str, patch: dict[str, Any], *,
                    notify: bool = True) -> dict[str, Any]:
        """Edit as a user in the Google Calendar UI would (an external change)."""
        with self.lock:
            cal = self._calendar(calendar_id, None)
            ev = self._write(cal, event_id, copy.deepcopy(patch), replace=False, if_match=None)
            self._changed(cal, notify=notify)
            return self._full(cal, ev.res, None)

    def delete_event(self, calendar_id: str, event_id: str, *, notify: bool = True) -> None:
        with self.lock:
            cal = self._calendar(calendar_id, None)
            self._delete(cal, event_id, if_match=None)
            self._changed(cal, notify=notify)

    def events(self, calendar_id: str, *, include_cancelled: bool = True) -> list[dict[str, Any]]:
        """Stored events (masters, exceptions, singles) as Google would print them."""
        with self.lock:
            cal = self.calendars.get(calendar_id)
            if cal is None:
                return []
            return [self._full(cal, ev.res, None) for ev in cal.events.values()
                    if include_cancelled or not ev.cancelled]

    def busy(self, calendar_id: str, start: datetime, end: datetime) -> list[tuple[datetime,
                                                                                  datetime]]:
        """The busy blocks freeBusy would answer (UTC, merged, clipped)."""
        with self.lock:
            return self._busy(self.calendars[calendar_id], start, end)

    def invalidate_sync_tokens(self, calendar_id: str | None = None) -> int:
        """Every sync token issued so far (for one calendar or all) now answers 410."""
        with self.lock:
            n = 0
            for cal in self.calendars.values():
                if calendar_id is None or cal.id == calendar_id:
                    cal.epoch += 1
                    n += 1
            return n

    def channels(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(asdict(ch), active=self._channel_active(ch))
                    for ch in self.channels_by_id.values()]

    def notifications(self) -> list[dict[str, Any]]:
        return self.notifier.deliveries()

    def wait_notifications(self, timeout: float = 10.0) -> bool:
        """Block until every queued webhook POST has been attempted."""
        return self.notifier.wait_idle(timeout)

    @property
    def notifier(self) -> Notifier:
        if self._notifier is None:
            verify = self.config.webhook_verify
            if verify is None:
                from sandbox.tls import shared_tls

                verify = str(shared_tls().ca_file)
            self._notifier = Notifier("google", verify=verify,
                                      timeout=self.config.notify_timeout_seconds,
                                      retries=self.config.notify_retries)
        return self._notifier

    # ======================================================= Emulator hooks
    def reset_data(self) -> None:
        self.calendars: dict[str, _Calendar] = {}
        self.channels_by_id: dict[str, _Channel] = {}
        self._sync_tokens: dict[str, _SyncState] = {}
        self._pages: dict[str, _PageState] = {}
        self._seq = itertools.count(1)
        self._last_seq = 0
        self._hits: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque)
        if self._notifier is not None:
            self._notifier.clear()
        if hasattr(self, "access_token"):  # ready-made credentials valid again
            self.users = {self.default_user}
            self.tokens = {self.access_token: self.tokens[self.access_token]}
            self.tokens[self.access_token].expires_at = (
                self.clock.time() + self.config.access_token_ttl_seconds)
            self.refresh_tokens = {self.refresh_token: self.refresh_tokens[self.refresh_token]}
            self.refresh_tokens[self.refresh_token].revoked = False
            self.auth_codes.clear()
            self.consented.clear()

    def stop(self) -> None:
        super().stop()
        if self._notifier is not None:
            self._notifier.close()
            self._notifier = None

    def reconfigured(self, settings: dict[str, Any]) -> None:
        if self._notifier is not None:
            self._notifier.retries = self.config.notify_retries
            self._notifier.timeout = self.config.notify_timeout_seconds

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "calendars": {cid: {"calendar": self._calendar_wire(cal),
                                    "events": self.events(cid)}
                              for cid, cal in self.calendars.items()},
                "channels": self.channels(),
            }

    def fault_response(self, status: int) -> tuple[int, dict[str, str], bytes]:
        if status in (403, 429):
            reason = self.config.quota_reason
            err = GError(status, reason, QUOTA_MESSAGES.get(reason, "Rate Limit Exceeded"),
                         domain="usageLimits")
        elif status == 401:
            err = GError(401, "authError", "Invalid Credentials", location="Authorization",
                         location_type="header")
        elif status == 410:
            err = GError(410, "fullSyncRequired",
                         "Sync token is no longer valid, a full sync is required.",
                         domain="calendar", location="syncToken", location_type="parameter")
        elif status == 404:
            err = _not_found()
        elif status == 409:
            err = GError(409, "duplicate", "The requested identifier already exists.")
        elif status >= 500:
            err = GError(status, "backendError", "Backend Error")
        else:
            err = GError(status, "invalid", "sandbox injected fault")
        return status, {"content-type": JSON_CT}, json.dumps(err.body()).encode()

    def control_routes(self) -> list[BaseRoute]:
        def calendars(data: dict[str, Any], request: Request) -> dict[str, Any]:
            if request.method == "POST":
                return self.add_calendar(data["id"], time_zone=data.get("timeZone"),
                                         summary=data.get("summary"))
            with self.lock:
                return {"items": [self._calendar_wire(c) for c in self.calendars.values()]}

        def events(data: dict[str, Any], request: Request) -> dict[str, Any]:
            if request.method == "POST":
                cid = data["calendarId"]
                if cid not in self.calendars and data.get("timeZone"):
                    self.add_calendar(cid, time_zone=data["timeZone"])
                items = self.seed_events(cid, data.get("events", []),
                                         notify=bool(data.get("notify", True)))
                return {"items": items}
            cid = request.query_params.get("calendarId", "")
            include = request.query_params.get("includeCancelled", "true").lower() != "false"
            return {"items": self.events(cid, include_cancelled=include)}

        errors = (GError, lambda exc: (exc.status, exc.body()))
        return [
            *token_control_routes(
                credentials=self.credentials,
                token=lambda data: self.issue_access_token(user=data.get("user"),
                                                           ttl=data.get("ttl")),
                expire=self.expire_access_tokens,
                revoke=self.revoke_refresh_token,
                code=lambda data: self.issue_auth_code(user=data.get("user"),
                                                       redirect_uri=data.get("redirect_uri")),
                errors=errors,
            ),
            *control_routes({
                "/calendars": ("GET|POST", calendars),
                "/events": ("GET|POST", events),
                "/sync-tokens/invalidate": ("POST", lambda data, request: {
                    "invalidated": self.invalidate_sync_tokens(data.get("calendarId"))}),
                "/users": ("POST", lambda data, request: self.add_user(data["email"])),
                "/channels": ("GET", lambda data, request: {"items": self.channels()}),
                "/notifications": ("GET", lambda data, request: {
                    "items": self.notifications()}),
            }, errors=errors),
        ]

    def build_app(self) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            request = Request(scope, receive)
            raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
            path = raw_path.split("?", 1)[0]
            method = scope["method"]
            body = await request.body()
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"),
                             keep_blank_values=True)
            headers = {k.lower(): v for k, v in request.headers.items()}
            response: Response
            endpoint = self._endpoints.get((method, path))
            if endpoint is not None:
                response = endpoint(request, body, query, headers)
            elif path == API_PREFIX or path.startswith(API_PREFIX + "/"):
                with self.lock:
                    resp = self._api(method, raw_path, query, headers, body)
                response = self._to_response(resp)
            else:
                response = self._to_response(GResp(404, _not_found().body()))
            await response(scope, receive, send)

        return app

    @cached_property
    def _endpoints(self) -> dict[tuple[str, str], Callable[..., Response]]:
        """(method, exact path) -> handler(request, body, query, headers): the endpoints
        outside the REST API (the OAuth server's old and new paths, batch)."""
        table: dict[tuple[str, str], Callable[..., Response]] = {}
        for method, paths, handler in [
            ("POST", ("/token", "/oauth2/v4/token"),
             lambda r, body, q, headers: self._oauth_token(body, headers)),
            ("GET", ("/o/oauth2/v2/auth", "/o/oauth2/auth"),
             lambda r, body, q, headers: self._oauth_authorize(r)),
            ("POST", ("/revoke", "/o/oauth2/revoke"),
             lambda r, body, q, headers: self._oauth_revoke(body, q)),
            ("POST", ("/batch/calendar/v3", "/batch"),
             lambda r, body, q, headers: self._batch(headers, body)),
        ]:
            table.update({(method, path): handler for path in paths})
        return table

    @staticmethod
    def _to_response(resp: GResp) -> Response:
        headers = dict(resp.headers)
        if resp.status == 204 or resp.body is None:
            return Response(b"", status_code=resp.status, headers=headers)
        headers["content-type"] = JSON_CT
        headers.setdefault("cache-control", "no-cache, no-store, max-age=0, must-revalidate")
        return Response(json.dumps(resp.body).encode(), status_code=resp.status,
                        headers=headers)

    # ================================================================ OAuth
    def _oauth_error(self, status: int, error: str, description: str) -> JSONResponse:
        return JSONResponse({"error": error, "error_description": description},
                            status_code=status)

    def _oauth_token(self, raw: bytes, headers: dict[str, str]) -> Response:
        form = read_form(raw)
        basic = basic_credentials(headers.get("authorization", ""))
        if basic is not None:  # the client id and secret form-urlencoded (RFC 6749 2.3.1)
            form.setdefault("client_id", unquote(basic[0]))
            form.setdefault("client_secret", unquote(basic[1]))
        with self.lock:
            grant = form.get("grant_type")
            if form.get("client_id") != self.client_id:
                return self._oauth_error(401, "invalid_client", "The OAuth client was not found.")
            if form.get("client_secret") != self.client_secret:
                return self._oauth_error(401, "invalid_client", "Unauthorized")
            if grant == "authorization_code":
                entry = self.auth_codes.pop(form.get("code", ""), None)
                if entry is None or entry.expires_at < self.clock.time():
                    return self._oauth_error(400, "invalid_grant", "Malformed auth code.")
                if entry.redirect_uri and form.get("redirect_uri") != entry.redirect_uri:
                    return self._oauth_error(400, "redirect_uri_mismatch", "Bad Request")
                if entry.challenge is not None:
                    # PKCE, RFC 7636 4.6; Google's error texts as its token endpoint answers.
                    verifier = form.get("code_verifier")
                    if not verifier:
                        return self._oauth_error(400, "invalid_grant", "Missing code verifier.")
                    if not verifier_matches(entry.challenge, entry.method, verifier):
                        return self._oauth_error(400, "invalid_grant", "Invalid code verifier.")
                offline = entry.offline or not self.config.refresh_token_needs_offline
                refresh = self._new_refresh(entry.user) if offline else None
                access = self.issue_access_token(user=entry.user, refresh_token=refresh)
                self.knobs.count("google.oauth.authorization_code")
                body = {"access_token": access, "expires_in": self.config.access_token_ttl_seconds,
                        "scope": SCOPE, "token_type": "Bearer"}
                if refresh:
                    body["refresh_token"] = refresh
                return JSONResponse(body)
            if grant == "refresh_token":
                rt = self.refresh_tokens.get(form.get("refresh_token", ""))
                if rt is None or rt.revoked:
                    return self._oauth_error(400, "invalid_grant",
                                             "Token has been expired or revoked.")
                access = self.issue_access_token(user=rt.user, refresh_token=rt.token)
                self.knobs.count("google.oauth.refresh_token")
                return JSONResponse({"access_token": access,
                                     "expires_in": self.config.access_token_ttl_seconds,
                                     "scope": rt.scope, "token_type": "Bearer"})
            return self._oauth_error(400, "unsupported_grant_type", "Invalid grant_type: "
                                     + str(grant))

    def _oauth_authorize(self, request: Request) -> Response:
        params = request.query_params
        if params.get("client_id") != self.client_id:
            return self._oauth_error(401, "invalid_client", "The OAuth client was not found.")
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:
            return self._oauth_error(400, "invalid_request", "Missing required parameter: "
                                     "redirect_uri")
        user = params.get("login_hint") or self.default_user
        method = params.get("code_challenge_method") or "plain"
        if params.get("code_challenge") and method not in ("S256", "plain"):
            return self._oauth_error(400, "invalid_request", "Invalid code_challenge_method")
        with self.lock:
            self.users.add(user)
            # Offline access is granted once per user and client; a later consent yields a
            # refresh token again only with prompt=consent (web-server guide, #offline).
            offline = params.get("access_type") == "offline" and (
                (user, self.client_id) not in self.consented
                or "consent" in (params.get("prompt") or "").split())
            if params.get("access_type") == "offline":
                self.consented.add((user, self.client_id))
            code = self.issue_auth_code(user=user, redirect_uri=redirect_uri, offline=offline,
                                        challenge=params.get("code_challenge"), method=method)
        query = {"code": code, "scope": params.get("scope") or SCOPE}
        if params.get("state") is not None:
            query["state"] = params["state"]
        return redirect_with(redirect_uri, query)

    def _oauth_revoke(self, raw: bytes, query: dict[str, list[str]]) -> Response:
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        token = form.get("token") or _q1(query, "token") or ""
        with self.lock:
            if token in self.refresh_tokens:
                self.revoke_refresh_token(token)
            elif token in self.tokens:
                self.expire_access_tokens(token)
            else:
                return self._oauth_error(400, "invalid_token", "Bad Request")
        return JSONResponse({})

    def _new_refresh(self, user: str) -> str:
        token = "1//0" + secrets.token_urlsafe(70)
        self.refresh_tokens[token] = _Refresh(token, user, self.client_id)
        return token

    # ================================================================== API
    def _authenticate(self, headers: dict[str, str]) -> _Token:
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            raise GError(401, "required", "Login Required.", location="Authorization",
                         location_type="header",
                         headers={"www-authenticate": 'Bearer realm="https://accounts.google.com/"'})
        tok = self.tokens.get(auth[7:].strip())
        if tok is None or tok.expires_at <= self.clock.time():
            raise GError(401, "authError", "Invalid Credentials", location="Authorization",
                         location_type="header",
                         headers={"www-authenticate": 'Bearer realm="https://accounts.google.com/",'
                                  ' error="invalid_token"'})
        return tok

    def _quota(self, tok: _Token) -> None:
        cfg = self.config
        now = self.clock.time()
        for key, limit in ((f"user:{tok.client_id}:{tok.user}", cfg.quota_per_user_per_minute),
                           (f"project:{tok.client_id}", cfg.quota_per_project_per_minute)):
            hits = self._hits[key]
            while hits and hits[0] <= now - 60:
                hits.popleft()
            if len(hits) >= limit:
                self.knobs.count("google.quota_exceeded")
                headers = {}
                if cfg.quota_retry_after and hits:
                    headers["retry-after"] = str(max(1, int(hits[0] + 60 - now + 0.999)))
                reason = cfg.quota_reason
                raise GError(cfg.quota_status, reason,
                             QUOTA_MESSAGES.get(reason, "Rate Limit Exceeded"),
                             domain="usageLimits", headers=headers)
        for key in (f"user:{tok.client_id}:{tok.user}", f"project:{tok.client_id}"):
            self._hits[key].append(now)

    def _api(self, method: str, raw_path: str, query: dict[str, list[str]],
             headers: dict[str, str], raw: bytes,
             inherited_auth: str | None = None) -> GResp:
        try:
            if inherited_auth and "authorization" not in headers:
                headers = dict(headers, authorization=inherited_auth)
            tok = self._authenticate(headers)
            self._quota(tok)
            alt = _q1(query, "alt")
            if alt not in (None, "json"):
                raise _bad(f"Invalid value '{alt}'. Values must match the following regular "
                           "expression: 'json'", location="alt", location_type="parameter")
            payload: Any = None
            if raw.strip():
                try:
                    payload = json.loads(raw)
                except ValueError as exc:
                    raise GError(400, "parseError", "Parse Error") from exc
            parts = [unquote(p) for p in raw_path.split("?", 1)[0][len(API_PREFIX):].split("/")
                     if p]
            return self._route(method, parts, query, headers, payload, tok)
        except GError as exc:
            return GResp(exc.status, exc.body(), dict(exc.headers))

    def _route(self, method: str, parts: list[str], query: dict[str, list[str]],
               headers: dict[str, str], payload: Any, tok: _Token) -> GResp:
        call = _Call(method, query, headers, payload, tok)
        found = self._api_routes.match(method, parts)
        if found is not None:
            return found.handler(call, **found.params)
        if not parts or parts[0] != "calendars" or len(parts) < 2:
            raise _not_found()
        # the calendar is resolved (404, or auto-created) before the rest of the path is read
        cal = self._calendar(parts[1], tok)
        if len(parts) == 2 and method == "GET":
            return GResp(200, self._calendar_wire(cal))
        if len(parts) < 3 or parts[2] != "events":
            raise _not_found()
        out_tz = self._out_tz(cal, query)
        found_event = self._event_routes.match(method, parts[3:])
        if found_event is None:
            raise _not_found()
        return found_event.handler(call, cal, out_tz, **found_event.params)

    @cached_property
    def _api_routes(self) -> RouteTable[Callable[..., GResp]]:
        # under /calendar/v3, outside calendars/{id}; handler(call, **captures)
        return RouteTable([
            ("POST", "freeBusy", lambda c: GResp(200, self._freebusy(_obj(c.payload)))),
            ("POST", "channels/stop", lambda c: self._stop_channel(_obj(c.payload))),
            ("GET", "users/me/calendarList", lambda c: GResp(200, {
                "kind": "calendar#calendarList", "etag": _etag(self._last_seq),
                "nextSyncToken": self._new_sync_token("*"),
                "items": [self._calendar_list_entry(cal) for cal in self.calendars.values()]})),
            ("GET", "users/me/calendarList/{cid}", lambda c, cid: GResp(
                200, self._calendar_list_entry(self._calendar(cid, c.tok)))),
        ])

    @cached_property
    def _event_routes(self) -> RouteTable[Callable[..., GResp]]:
        # under calendars/{id}/events; handler(call, calendar, output zone, **captures)
        return RouteTable([
            ("GET", "", lambda c, cal, tz: GResp(200, self._list(cal, c.query, tz))),
            ("POST", "", self._insert_endpoint),
            ("POST", "watch", lambda c, cal, tz: GResp(200, self._watch(cal, _obj(c.payload)))),
            ("GET", "{eid}/instances", lambda c, cal, tz, eid: GResp(
                200, self._instances_list(cal, eid, c.query, tz))),
            ("GET", "{eid}", lambda c, cal, tz, eid: GResp(
                200, self._full(cal, self._get(cal, eid), tz))),
            ("PATCH|PUT", "{eid}", self._write_endpoint),
            ("DELETE", "{eid}", self._delete_endpoint),
        ])

    def _insert_endpoint(self, c: _Call, cal: _Calendar, out_tz: tzinfo) -> GResp:
        ev = self._insert(cal, _obj(c.payload), user=c.tok.user)
        self._changed(cal)
        return GResp(200, self._full(cal, ev.res, out_tz))

    def _write_endpoint(self, c: _Call, cal: _Calendar, out_tz: tzinfo, eid: str) -> GResp:
        ev = self._write(cal, eid, _obj(c.payload), replace=c.method == "PUT",
                         if_match=c.headers.get("if-match"))
        self._changed(cal)
        return GResp(200, self._full(cal, ev.res, out_tz))

    def _delete_endpoint(self, c: _Call, cal: _Calendar, out_tz: tzinfo, eid: str) -> GResp:
        self._delete(cal, eid, if_match=c.headers.get("if-match"))
        self._changed(cal)
        return GResp(204)

    # ---------------------------------------------------------- calendars
    def _calendar(self, calendar_id: str, tok: _Token | None) -> _Calendar:
        if calendar_id == "primary":
            calendar_id = tok.user if tok else self.default_user
        cal = self.calendars.get(calendar_id)
        if cal is None:
            if self.config.auto_create_calendars and "@" in calendar_id:
                self.add_calendar(calendar_id)
                return self.calendars[calendar_id]
            raise _not_found()
        return cal

    def _calendar_wire(self, cal: _Calendar) -> dict[str, Any]:
        return {"kind": "calendar#calendar", "etag": _etag(cal.epoch), "id": cal.id,
                "summary": cal.summary, "timeZone": cal.time_zone,
                "conferenceProperties": {"allowedConferenceSolutionTypes": ["hangoutsMeet"]}}

    def _calendar_list_entry(self, cal: _Calendar) -> dict[str, Any]:
        entry = self._calendar_wire(cal)
        entry.update({"kind": "calendar#calendarListEntry", "accessRole": "owner",
                      "defaultReminders": [], "primary": cal.id == self.default_user})
        return entry

    def _out_tz(self, cal: _Calendar, query: dict[str, list[str]]) -> tzinfo:
        name = _q1(query, "timeZone")
        if name:
            try:
                return resolve_tz(name)
            except UnknownTimeZone as exc:
                raise _bad("Invalid time zone.", location="timeZone",
                           location_type="parameter") from exc
        return cal.tz

    # ------------------------------------------------------------- events
    def _parse_when(self, spec: Any, cal: _Calendar, which: str,
                    tz_hint: str | None = None) -> tuple[datetime, bool, tzinfo, datetime, str]:
        """-> (instant, all_day, zone for expansion, naive local, the zone's name)."""
        if not isinstance(spec, dict) or not (spec.get("dateTime") or spec.get("date")):
            raise _bad(f"Missing {which} time.", reason="required")
        tz_name = spec.get("timeZone") or tz_hint
        tz: tzinfo | None = None
        if tz_name:
            try:
                tz = resolve_tz(tz_name)
            except UnknownTimeZone as exc:
                raise _bad(f"Invalid time zone definition for {which} time.") from exc
        if spec.get("date") and not spec.get("dateTime"):
            try:
                day = date.fromisoformat(str(spec["date"]))
            except ValueError as exc:
                raise _bad(f"Invalid {which} time.") from exc
            zone = tz or cal.tz
            midnight = datetime.combine(day, time())
            return localize(midnight, zone), True, zone, midnight, tz_name or cal.time_zone
        try:
            instant = parse_rfc3339(str(spec["dateTime"]), default_tz=tz)
        except ValueError as exc:
            if "offset" in str(exc):
                raise _bad(f"Missing time zone definition for {which} time.",
                           reason="required") from exc
            raise _bad(f"Invalid {which} time.") from exc
        zone = tz or instant.tzinfo or UTC
        return (instant, False, zone, instant.astimezone(zone).replace(tzinfo=None),
                tz_name or "")

    def _derive(self, cal: _Calendar, res: dict[str, Any], seq: int) -> _Event:
        start, all_day, tz, local_start, _ = self._parse_when(res.get("start"), cal, "start")
        end, end_all_day, _, _, _ = self._parse_when(res.get("end"), cal, "end")
        if all_day != end_all_day:
            raise _bad("Start and end times must either both be date or both be dateTime.")
        if end < start:
            raise GError(400, "timeRangeEmpty", "The specified time range is empty.",
                         domain="calendar", location="end.dateTime", location_type="parameter")
        occ = None
        recurrence = res.get("recurrence")
        if recurrence:
            if not isinstance(recurrence, list):
                raise _bad("Invalid recurrence rule.")
            if not all_day and not (res.get("start") or {}).get("timeZone"):
                raise _bad("Missing time zone definition for start time.", reason="required")
            try:
                occ = from_rfc5545(recurrence, local_start, tz, end - start, all_day=all_day)
            except RecurrenceError as exc:
                raise _bad("Invalid recurrence rule.") from exc
        return _Event(res, seq, start, end, all_day, tz, local_start, occ)

    def _validate_fields(self, body: dict[str, Any]) -> None:
        status = body.get("status")
        if status is not None and status not in ("confirmed", "tentative", "cancelled"):
            raise _bad("Invalid value for status.")
        transparency = body.get("transparency")
        if transparency is not None and transparency not in ("opaque", "transparent"):
            raise _bad("Invalid value for transparency.")
        event_type = body.get("eventType")
        if event_type is not None and event_type not in _EVENT_TYPES:
            raise _bad("Invalid event type.")
        if event_type in ("outOfOffice", "focusTime") and (body.get("start") or {}).get("date"):
            raise _bad(f"A {event_type} event cannot be an all-day event.",
                       reason="invalidEventType")

    def _next_seq(self) -> int:
        self._last_seq = next(self._seq)
        return self._last_seq

    def _stamp_write(self, res: dict[str, Any], seq: int) -> None:
        now = self.clock.now()
        res["updated"] = google_stamp(now)
        res["etag"] = _etag(int(now.timestamp() * 1000) * 1000 + seq % 1000)

    def _insert(self, cal: _Calendar, body: dict[str, Any], *, user: str) -> _Event:
        self._validate_fields(body)
        eid = body.get("id")
        if eid is not None:
            if not isinstance(eid, str) or not _ID_RE.match(eid):
                raise _bad("Invalid resource id value.")
            if eid in cal.events:
                if self.config.detect_id_collisions:
                    raise GError(409, "duplicate", "The requested identifier already exists.")
                # Google does not promise to catch it ("we cannot guarantee that ID
                # collisions will be detected at event creation time", events.insert, id:
                # https://developers.google.com/calendar/api/v3/reference/events/insert):
                # the second write lands over the first.
                self.knobs.count("google.events.collision_undetected")
        else:
            eid = uuid.uuid4().hex[:26]
            while eid in cal.events:
                eid = uuid.uuid4().hex[:26]
        if body.get("recurringEventId"):
            raise _bad("Creating exceptions through insert is not supported by the sandbox; "
                       "patch the instance instead.")
        res: dict[str, Any] = {k: copy.deepcopy(v) for k, v in body.items()
                               if k not in _READ_ONLY and v is not None}
        now = google_stamp(self.clock.now())
        res.update({
            "kind": "calendar#event",
            "id": eid,
            "status": body.get("status") or "confirmed",
            "htmlLink": "https://www.google.com/calendar/event?eid=" + _b64(f"{eid} {cal.id}"),
            "created": now,
            "creator": {"email": user, **({"self": True} if user == cal.id else {})},
            "organizer": body.get("organizer") or {"email": cal.id, "self": True},
            "iCalUID": body.get("iCalUID") or f"{eid}@google.com",
            "sequence": int(body.get("sequence") or 0),
            "reminders": body.get("reminders") or {"useDefault": True},
            "eventType": body.get("eventType") or "default",
        })
        if res.get("transparency") == "opaque":
            res.pop("transparency")
        seq = self._next_seq()
        self._stamp_write(res, seq)
        ev = self._derive(cal, res, seq)
        cal.events[eid] = ev
        self.knobs.count("google.events.created")
        return ev

    def _get(self, cal: _Calendar, eid: str) -> dict[str, Any]:
        ev = cal.events.get(eid)
        if ev is not None:
            return ev.res
        master, occ = self._virtual_instance(cal, eid)
        return self._instance_res(cal, master, occ)

    def _virtual_instance(self, cal: _Calendar, eid: str) -> tuple[_Event, datetime]:
        match = _INSTANCE_RE.match(eid)
        if not match:
            raise _not_found()
        master = cal.events.get(match.group("base"))
        if master is None or master.occ is None or master.cancelled:
            raise _not_found()
        stamp = match.group("stamp")
        if master.all_day:
            if "T" in stamp:
                raise _not_found()
            day = datetime.strptime(stamp, "%Y%m%d")  # noqa: DTZ007 - a date only
            start, end = localize(day, master.tz), localize(day + timedelta(days=1), master.tz)
        else:
            if "T" not in stamp:
                raise _not_found()
            start = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            end = start + timedelta(seconds=1)
        for occ in master.occ.between(start, end):
            if self._stamp_of(master, occ) == stamp:
                return master, occ
        raise _not_found()

    @staticmethod
    def _stamp_of(master: _Event, occ: datetime) -> str:
        if master.all_day:
            return occ.strftime("%Y%m%d")
        return localize(occ, master.tz).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")

    def _instance_res(self, cal: _Calendar, master: _Event, occ: datetime) -> dict[str, Any]:
        res = copy.deepcopy(master.res)
        res.pop("recurrence", None)
        res["id"] = f"{master.id}_{self._stamp_of(master, occ)}"
        res["recurringEventId"] = master.id
        duration = master.end - master.start
        tz_name = (master.res.get("start") or {}).get("timeZone")
        if master.all_day:
            day = occ.date()
            end_day = day + timedelta(days=max(1, duration.days))
            res["start"] = {"date": day.isoformat()}
            res["end"] = {"date": end_day.isoformat()}
            res["originalStartTime"] = {"date": day.isoformat()}
        else:
            begin = localize(occ, master.tz)
            res["start"] = {"dateTime": google_dt(begin, master.tz)}
            res["end"] = {"dateTime": google_dt(begin + duration, master.tz)}
            res["originalStartTime"] = {"dateTime": google_dt(begin, master.tz)}
            if tz_name:
                for key in ("start", "end", "originalStartTime"):
                    res[key]["timeZone"] = tz_name
            end_tz = (master.res.get("end") or {}).get("timeZone")
            if end_tz:
                res["end"]["timeZone"] = end_tz
        return res

    def _write(self, cal: _Calendar, eid: str, body: dict[str, Any], *, replace: bool,
               if_match: str | None) -> _Event:
        self._validate_fields(body)
        ev = cal.events.get(eid)
        if ev is None:  # first edit of a recurring instance: store an exception
            master, occ = self._virtual_instance(cal, eid)
            base = self._instance_res(cal, master, occ)
            if if_match and if_match not in ("*", base.get("etag")):
                raise GError(412, "conditionNotMet", "Precondition Failed",
                             location="If-Match", location_type="header")
        else:
            base = ev.res
            if if_match and if_match not in ("*", base.get("etag")):
                raise GError(412, "conditionNotMet", "Precondition Failed",
                             location="If-Match", location_type="header")
        if "id" in body and body["id"] != eid:
            raise _bad("The event id cannot be changed.")
        kept = {k: base[k] for k in ("kind", "id", "htmlLink", "created", "creator",
                                     "organizer", "iCalUID", "recurringEventId",
                                     "originalStartTime", "eventType") if k in base}
        if replace:
            res = {k: copy.deepcopy(v) for k, v in body.items()
                   if k not in _READ_ONLY and v is not None}
            res.update(kept)
            res.setdefault("status", "confirmed")
            res.setdefault("sequence", base.get("sequence", 0))
            res.setdefault("reminders", {"useDefault": True})
        else:
            res = _deep_merge(base, {k: v for k, v in body.items() if k not in _READ_ONLY})
            res.update(kept)
        if res.get("transparency") == "opaque":
            res.pop("transparency")
        if any(res.get(k) != base.get(k) for k in ("start", "end", "recurrence")):
            res["sequence"] = int(base.get("sequence", 0)) + 1
        seq = self._next_seq()
        self._stamp_write(res, seq)
        new = self._derive(cal, res, seq)
        if new.exception_of and new.occ is not None:
            raise _bad("An instance of a recurring event cannot itself recur.")
        cal.events[eid] = new
        if ev is not None and ev.master and new.cancelled:
            self._cascade_cancel(cal, eid)
        self.knobs.count("google.events.updated")
        return new

    def _delete(self, cal: _Calendar, eid: str, *, if_match: str | None) -> None:
        ev = cal.events.get(eid)
        if ev is not None and ev.cancelled:
            raise GError(410, "deleted", "Resource has been deleted")
        if ev is None:
            self._write(cal, eid, {"status": "cancelled"}, replace=False, if_match=if_match)
        else:
            if if_match and if_match not in ("*", ev.res.get("etag")):
                raise GError(412, "conditionNotMet", "Precondition Failed",
                             location="If-Match", location_type="header")
            res = dict(ev.res, status="cancelled")
            seq = self._next_seq()
            self._stamp_write(res, seq)
            ev.res, ev.seq = res, seq
            if ev.master:
                self._cascade_cancel(cal, eid)
        self.knobs.count("google.events.deleted")

    def _cascade_cancel(self, cal: _Calendar, master_id: str) -> None:
        for other in cal.events.values():
            if other.exception_of == master_id and not other.cancelled:
                other.res = dict(other.res, status="cancelled")
                other.seq = self._next_seq()
                self._stamp_write(other.res, other.seq)

    def _changed(self, cal: _Calendar, *, notify: bool = True) -> None:
        cal.updated = self.clock.now()
        if notify:
            for ch in self.channels_by_id.values():
                if ch.calendar == cal.id and self._channel_active(ch):
                    self._notify(ch, "exists")

    # ------------------------------------------------------------ rendering
    def _render_dt(self, spec: dict[str, Any], cal: _Calendar, out_tz: tzinfo | None) -> None:
        if not isinstance(spec, dict) or not spec.get("dateTime"):
            return
        try:
            zone = resolve_tz(spec["timeZone"]) if spec.get("timeZone") else None
            instant = parse_rfc3339(str(spec["dateTime"]), default_tz=zone or cal.tz)
        except (ValueError, UnknownTimeZone):
            return
        spec["dateTime"] = google_dt(instant, out_tz or cal.tz)

    def _full(self, cal: _Calendar, res: dict[str, Any], out_tz: tzinfo | None) -> dict[str, Any]:
        out = {k: copy.deepcopy(res[k]) for k in _KEY_ORDER if k in res}
        out.update({k: copy.deepcopy(v) for k, v in res.items() if k not in out})
        for key in ("start", "end", "originalStartTime"):
            if key in out:
                self._render_dt(out[key], cal, out_tz)
        return out

    def _minimal(self, res: dict[str, Any], cal: _Calendar,
                 out_tz: tzinfo | None) -> dict[str, Any]:
        out = {"kind": "calendar#event", "etag": res.get("etag"), "id": res["id"],
               "status": "cancelled"}
        if res.get("recurringEventId"):
            out["recurringEventId"] = res["recurringEventId"]
            out["originalStartTime"] = copy.deepcopy(res.get("originalStartTime"))
            self._render_dt(out["originalStartTime"], cal, out_tz)
        return out

    # ----------------------------------------------------------- expansion
    def _window_instances(self, cal: _Calendar, master: _Event, start: datetime,
                          end: datetime) -> list[dict[str, Any]]:
        """Instances of ``master`` in the window, exceptions substituted (cancelled kept)."""
        assert master.occ is not None
        out = []
        for occ in master.occ.between(start, end):
            iid = f"{master.id}_{self._stamp_of(master, occ)}"
            exc = cal.events.get(iid)
            if exc is not None:
                continue  # exceptions are listed on their own
            out.append(self._instance_res(cal, master, occ))
        return out

    def _horizon(self) -> tuple[datetime, datetime]:
        now = self.clock.now()
        return (datetime(1970, 1, 1, tzinfo=UTC),
                now + timedelta(days=self.config.expansion_horizon_days))

    @staticmethod
    def _overlaps(ev_start: datetime, ev_end: datetime, lo: datetime | None,
                  hi: datetime | None) -> bool:
        if ev_end == ev_start:  # zero-length events count at their instant
            ev_end = ev_start + timedelta(microseconds=1)
        return (lo is None or ev_end > lo) and (hi is None or ev_start < hi)

    def _times_of(self, cal: _Calendar, res: dict[str, Any]) -> tuple[datetime, datetime]:
        start = self._parse_when(res["start"], cal, "start")[0]
        end = self._parse_when(res["end"], cal, "end")[0]
        return start, end

    # ---------------------------------------------------------------- list
    def _time_param(self, query: dict[str, list[str]], key: str) -> datetime | None:
        raw = _q1(query, key)
        if raw is None:
            return None
        try:
            return parse_rfc3339(raw)
        except ValueError as exc:
            raise _bad("Bad Request", location=key, location_type="parameter") from exc

    def _max_results(self, query: dict[str, list[str]]) -> int:
        raw = _q1(query, "maxResults")
        if raw is None:
            return self.config.list_default_max_results
        try:
            value = int(raw)
        except ValueError as exc:
            raise _bad("Invalid value for maxResults.", location="maxResults",
                       location_type="parameter") from exc
        if value < 1:
            raise _bad("Invalid value for maxResults.", location="maxResults",
                       location_type="parameter")
        return min(value, self.config.list_max_results)

    def _list(self, cal: _Calendar, query: dict[str, list[str]], out_tz: tzinfo) -> dict[str, Any]:
        page_token = _q1(query, "pageToken")
        max_results = self._max_results(query)
        if page_token is not None:
            state = self._pages.get(page_token)
            if state is None or state.calendar != cal.id:
                raise _bad("Invalid page token value.", location="pageToken",
                           location_type="parameter")
        else:
            sync_token = _q1(query, "syncToken")
            snapshot = self._last_seq
            if sync_token is not None:
                items = self._incremental(cal, query, sync_token, out_tz)
            else:
                items = self._full_listing(cal, query, out_tz)
            state = _PageState(cal.id, items, self._new_sync_token(cal.id, snapshot))
        page, rest = state.items[:max_results], state.items[max_results:]
        out: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": _etag(self._last_seq),
            "summary": cal.summary,
            "description": "",
            "updated": google_stamp(cal.updated or self.clock.now()),
            "timeZone": cal.time_zone,
            "accessRole": "owner",
            "defaultReminders": [],
        }
        if rest:
            token = secrets.token_urlsafe(24)
            self._pages[token] = _PageState(cal.id, rest, state.sync_token)
            out["nextPageToken"] = token
        else:
            out["nextSyncToken"] = state.sync_token
        out["items"] = page
        if page_token is not None:
            self._pages.pop(page_token, None)
        return out

    def _new_sync_token(self, calendar: str, seq: int | None = None) -> str:
        cal = self.calendars.get(calendar)
        token = "C" + base64.b64encode(secrets.token_bytes(18)).decode()
        self._sync_tokens[token] = _SyncState(calendar, self._last_seq if seq is None else seq,
                                              cal.epoch if cal else 0, self.clock.time())
        return token

    def _event_types(self, query: dict[str, list[str]]) -> set[str] | None:
        values = query.get("eventTypes")
        return set(values) if values else None

    def _full_listing(self, cal: _Calendar, query: dict[str, list[str]],
                      out_tz: tzinfo) -> list[dict[str, Any]]:
        single = _qbool(query, "singleEvents")
        show_deleted = _qbool(query, "showDeleted")
        order_by = _q1(query, "orderBy")
        if order_by not in (None, "startTime", "updated"):
            raise _bad("Invalid value for orderBy.", location="orderBy",
                       location_type="parameter")
        if order_by == "startTime" and not single:
            raise _bad("The requested ordering is not available for the particular query.",
                       location="orderBy", location_type="parameter")
        lo, hi = self._time_param(query, "timeMin"), self._time_param(query, "timeMax")
        if lo and hi and hi <= lo:
            raise GError(400, "timeRangeEmpty", "The specified time range is empty.",
                         domain="calendar", location="timeMax", location_type="parameter")
        updated_min = self._time_param(query, "updatedMin")
        text = (_q1(query, "q") or "").lower()
        ical = _q1(query, "iCalUID")
        types = self._event_types(query)
        h_lo, h_hi = self._horizon()
        rows: list[tuple[dict[str, Any], datetime]] = []

        def keep(res: dict[str, Any], start: datetime, end: datetime) -> None:
            if updated_min and parse_rfc3339(res["updated"]) < updated_min:
                return
            if ical and res.get("iCalUID") != ical:
                return
            if types and res.get("eventType", "default") not in types:
                return
            if text and not any(text in str(res.get(k, "")).lower()
                                for k in ("summary", "description", "location")):
                return
            if not self._overlaps(start, end, lo, hi):
                return
            rows.append((res, start))

        for ev in list(cal.events.values()):
            if ev.master:
                if ev.cancelled:
                    if show_deleted and not single:
                        keep(ev.res, ev.start, ev.end)
                    continue
                if single:
                    for res in self._window_instances(cal, ev, lo or h_lo, hi or h_hi):
                        start, end = self._times_of(cal, res)
                        keep(res, start, end)
                else:
                    window = ev.occ.between(lo or h_lo, hi or h_hi) if ev.occ else []
                    if window:
                        first = localize(window[0], ev.tz)
                        keep(ev.res, first, first + (ev.end - ev.start))
                continue
            if ev.cancelled:
                # "Cancelled instances of recurring events (but not the underlying recurring
                # event) will still be included if showDeleted and singleEvents are both False."
                if not (show_deleted or (ev.exception_of and not single)):
                    continue
                if ev.exception_of:
                    orig = self._parse_when(ev.res.get("originalStartTime"), cal, "start")[0]
                    if self._overlaps(orig, orig + (ev.end - ev.start), lo, hi):
                        rows.append((ev.res, orig))
                    continue
            keep(ev.res, ev.start, ev.end)
        if order_by == "startTime":
            rows.sort(key=lambda r: (r[1], r[0]["id"]))
        elif order_by == "updated":
            rows.sort(key=lambda r: (r[0]["updated"], r[0]["id"]))
        return [self._minimal(res, cal, out_tz) if res.get("status") == "cancelled"
                else self._full(cal, res, out_tz) for res, _ in rows]

    def _incremental(self, cal: _Calendar, query: dict[str, list[str]], token: str,
                     out_tz: tzinfo) -> list[dict[str, Any]]:
        bad = [k for k in _SYNC_FORBIDDEN if k in query]
        if bad:
            raise _bad(f"The following parameters cannot be used with syncToken: "
                       f"{', '.join(bad)}.", location="syncToken", location_type="parameter")
        if (_q1(query, "showDeleted") or "").lower() == "false":
            raise _bad("showDeleted cannot be false with syncToken.", location="showDeleted",
                       location_type="parameter")
        state = self._sync_tokens.get(token)
        max_age = self.config.sync_token_max_age_seconds
        if (state is None or state.calendar != cal.id or state.epoch != cal.epoch
                or (max_age is not None and self.clock.time() - state.issued > max_age)):
            self.knobs.count("google.sync.full_sync_required")
            raise GError(410, "fullSyncRequired",
                         "Sync token is no longer valid, a full sync is required.",
                         domain="calendar", location="syncToken", location_type="parameter")
        single = _qbool(query, "singleEvents")
        types = self._event_types(query)
        h_lo, h_hi = self._horizon()
        out: list[dict[str, Any]] = []
        changed = sorted((ev for ev in cal.events.values() if ev.seq > state.seq),
                         key=lambda e: e.seq)
        for ev in changed:
            if types and ev.res.get("eventType", "default") not in types:
                continue
            if ev.cancelled:
                out.append(self._minimal(ev.res, cal, out_tz))
            elif ev.master and single:
                out.extend(self._full(cal, res, out_tz)
                           for res in self._window_instances(cal, ev, h_lo, h_hi))
            else:
                out.append(self._full(cal, ev.res, out_tz))
        return out

    def _instances_list(self, cal: _Calendar, eid: str, query: dict[str, list[str]],
                        out_tz: tzinfo) -> dict[str, Any]:
        master = cal.events.get(eid)
        if master is None or not master.master:
            raise _not_found()
        if master.cancelled:
            raise GError(410, "deleted", "Resource has been deleted")
        lo, hi = self._time_param(query, "timeMin"), self._time_param(query, "timeMax")
        h_lo, h_hi = self._horizon()
        show_deleted = _qbool(query, "showDeleted")
        items: list[tuple[datetime, dict[str, Any]]] = []
        for res in self._window_instances(cal, master, lo or h_lo, hi or h_hi):
            items.append((self._times_of(cal, res)[0], self._full(cal, res, out_tz)))
        for ev in cal.events.values():
            if ev.exception_of != eid:
                continue
            if ev.cancelled and not show_deleted:
                continue
            if self._overlaps(ev.start, ev.end, lo, hi):
                items.append((ev.start, self._minimal(ev.res, cal, out_tz) if ev.cancelled
                              else self._full(cal, ev.res, out_tz)))
        items.sort(key=lambda r: r[0])
        max_results = self._max_results(query)
        return {"kind": "calendar#events", "etag": _etag(self._last_seq), "summary": cal.summary,
                "updated": google_stamp(cal.updated or self.clock.now()),
                "timeZone": cal.time_zone, "accessRole": "owner", "defaultReminders": [],
                "items": [r for _, r in items[:max_results]]}

    # ------------------------------------------------------------ freeBusy
    def _is_busy(self, cal: _Calendar, res: dict[str, Any]) -> bool:
        if res.get("status") == "cancelled" or res.get("eventType") == "workingLocation":
            return False
        if res.get("transparency") == "transparent" and res.get("eventType") != "outOfOffice":
            return False  # out-of-office events always block time
        for attendee in res.get("attendees") or []:
            if not isinstance(attendee, dict):
                continue
            is_owner = attendee.get("self") or str(attendee.get("email", "")).lower() == \
                cal.id.lower()
            if is_owner and attendee.get("responseStatus") == "declined":
                return False
        return True

    def _busy(self, cal: _Calendar, lo: datetime, hi: datetime) -> list[tuple[datetime,
                                                                              datetime]]:
        blocks: list[tuple[datetime, datetime]] = []
        for ev in cal.events.values():
            if ev.master:
                if not self._is_busy(cal, ev.res) or ev.occ is None:
                    continue
                duration = ev.end - ev.start
                for occ in ev.occ.between(lo, hi):
                    iid = f"{ev.id}_{self._stamp_of(ev, occ)}"
                    if iid in cal.events:
                        continue  # the exception decides
                    begin = localize(occ, ev.tz)
                    blocks.append((begin, begin + duration))
            elif self._is_busy(cal, ev.res):
                if ev.exception_of:
                    master = cal.events.get(ev.exception_of)
                    if master is None or master.cancelled:
                        continue
                blocks.append((ev.start, ev.end))
        clipped = [(max(s, lo), min(e, hi)) for s, e in blocks if e > lo and s < hi and e > s]
        return merge_intervals(clipped)

    def _freebusy(self, body: dict[str, Any]) -> dict[str, Any]:
        for key in ("timeMin", "timeMax"):
            if not body.get(key):
                raise _bad(f"Missing {key} parameter.", reason="required", location=key,
                           location_type="parameter")
        try:
            lo, hi = parse_rfc3339(str(body["timeMin"])), parse_rfc3339(str(body["timeMax"]))
        except ValueError as exc:
            raise _bad("Bad Request") from exc
        if hi <= lo:
            raise GError(400, "timeRangeEmpty", "The specified time range is empty.",
                         domain="calendar", location="timeMax", location_type="parameter")
        if hi - lo > timedelta(days=self.config.freebusy_max_days):
            raise GError(400, "timeRangeTooLong", "The requested time range is too long.",
                         domain="calendar", location="timeMax", location_type="parameter")
        try:
            out_tz = resolve_tz(body.get("timeZone") or "UTC")
        except UnknownTimeZone as exc:
            raise _bad("Invalid time zone.", location="timeZone") from exc
        items = body.get("items") or []
        if not isinstance(items, list):
            raise _bad("Invalid value for items.")
        limit = min(int(body.get("calendarExpansionMax") or self.config.freebusy_max_calendars),
                    self.config.freebusy_max_calendars)
        calendars: dict[str, Any] = {}
        for n, item in enumerate(items):
            cid = str((item or {}).get("id", "")) if isinstance(item, dict) else ""
            if n >= limit:
                calendars[cid] = {"errors": [{"domain": "calendar",
                                              "reason": "tooManyCalendarsRequested"}],
                                  "busy": []}
                continue
            cal = self.calendars.get(cid)
            if cal is None:
                calendars[cid] = {"errors": [{"domain": "global", "reason": "notFound"}],
                                  "busy": []}
                continue
            calendars[cid] = {"busy": [{"start": google_dt(s, out_tz), "end": google_dt(e, out_tz)}
                                       for s, e in self._busy(cal, lo, hi)]}
        self.knobs.count("google.freebusy.calendars", len(items))
        return {"kind": "calendar#freeBusy", "timeMin": google_stamp(lo),
                "timeMax": google_stamp(hi), "calendars": calendars}

    # -------------------------------------------------------------- watch
    def _channel_active(self, ch: _Channel) -> bool:
        return not ch.stopped and ch.expiration_ms > self.clock.time() * 1000

    def _watch(self, cal: _Calendar, body: dict[str, Any]) -> dict[str, Any]:
        cid = body.get("id")
        if not cid or not isinstance(cid, str):
            raise _bad("Required parameter: id", reason="required", location="id")
        if body.get("type") not in ("web_hook", "webhook"):
            raise _bad(f"Unknown channel type: {body.get('type')}", reason="push.channelTypeUnknown"
                       if body.get("type") else "required")
        address = body.get("address")
        if not address or not isinstance(address, str) or urlsplit(address).scheme not in (
                "http", "https"):
            raise _bad("Invalid address.", reason="push.webhookUrlInvalid", location="address")
        if self.config.require_https_webhooks and not address.startswith("https://"):
            raise _bad(f"WebHook callback must be HTTPS: {address}",
                       reason="push.webhookUrlNotHttps")
        if cid in self.channels_by_id:
            raise _bad(f"Channel id {cid} not unique", reason="channelIdNotUnique")
        now_ms = int(self.clock.time() * 1000)
        ttl = self.config.channel_default_ttl_seconds
        params = body.get("params") or {}
        if isinstance(params, dict) and params.get("ttl"):
            ttl = int(params["ttl"])
        expiration = now_ms + min(ttl, self.config.channel_max_ttl_seconds) * 1000
        if body.get("expiration"):
            expiration = min(int(body["expiration"]),
                             now_ms + self.config.channel_max_ttl_seconds * 1000)
        ch = _Channel(cid, cal.resource_id,
                      f"https://www.googleapis.com/calendar/v3/calendars/{quote(cal.id)}"
                      "/events?alt=json", cal.id, address, body.get("token"), expiration,
                      params if isinstance(params, dict) else {})
        self.channels_by_id[cid] = ch
        self._notify(ch, "sync")
        out = {"kind": "api#channel", "id": ch.id, "resourceId": ch.resource_id,
               "resourceUri": ch.resource_uri, "expiration": str(ch.expiration_ms)}
        if ch.token is not None:
            out["token"] = ch.token
        return out

    def _notify(self, ch: _Channel, state: str) -> None:
        ch.message_number += 1
        expires = datetime.fromtimestamp(ch.expiration_ms / 1000, UTC)
        headers = {
            "X-Goog-Channel-ID": ch.id,
            "X-Goog-Channel-Expiration": format_datetime(expires, usegmt=True),
            "X-Goog-Resource-ID": ch.resource_id,
            "X-Goog-Resource-URI": ch.resource_uri,
            "X-Goog-Resource-State": state,
            "X-Goog-Message-Number": str(ch.message_number),
            "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
        }
        if ch.token is not None:
            headers["X-Goog-Channel-Token"] = ch.token
        self.knobs.count(f"google.notifications.{state}")
        self.notifier.post("google." + state, ch.address, headers=headers,
                           meta={"channel": ch.id, "calendar": ch.calendar,
                                 "message_number": ch.message_number})

    def _stop_channel(self, body: dict[str, Any]) -> GResp:
        cid = body.get("id")
        ch = self.channels_by_id.get(str(cid))
        if ch is None or ch.stopped or (body.get("resourceId") and
                                        body["resourceId"] != ch.resource_id):
            raise GError(404, "notFound", f"Channel '{cid}' not found for project "
                         f"'{self.project_number}'")
        ch.stopped = True
        return GResp(204)

    # -------------------------------------------------------------- batch
    def _batch(self, headers: dict[str, str], body: bytes) -> Response:
        ctype = headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/mixed"):
            return self._to_response(GResp(400, _bad("Invalid batch request: multipart/mixed "
                                                     "expected").body()))
        message = message_from_bytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
        if not message.is_multipart():
            return self._to_response(GResp(400, _bad("Invalid multipart request").body()))
        parts = message.get_payload()
        assert isinstance(parts, list)
        if len(parts) > self.config.batch_max_requests:
            return self._to_response(GResp(400, _bad(
                f"Exceeded the maximum calls({self.config.batch_max_requests}) in a single "
                "batch request.").body()))
        boundary = "batch_" + secrets.token_hex(12)
        chunks: list[str] = []
        self.knobs.count("google.batch.parts", len(parts))
        for part in parts:
            content_id = part.get("Content-ID", "")
            payload = part.get_payload(decode=True) or b""
            status, resp_headers, resp_body = self._batch_part(payload, headers)
            reason = _REASONS.get(status, "")
            lines = [f"--{boundary}", "Content-Type: application/http"]
            if content_id:
                inner = content_id.strip()
                inner = inner[1:-1] if inner.startswith("<") and inner.endswith(">") else inner
                lines.append(f"Content-ID: <response-{inner}>")
            lines += ["", f"HTTP/1.1 {status} {reason}"]
            for key, value in resp_headers.items():
                lines.append(f"{key}: {value}")
            lines += [f"Content-Length: {len(resp_body.encode())}", "", resp_body]
            chunks.append("\r\n".join(lines))
        text = "\r\n".join(chunks) + f"\r\n--{boundary}--\r\n"
        return Response(text.encode(), status_code=200,
                        headers={"content-type": f"multipart/mixed; boundary={boundary}"})

    def _batch_part(self, payload: bytes, outer: dict[str, str]) -> tuple[int, dict[str, str],
                                                                         str]:
        text = payload.decode("utf-8", "replace").replace("\r\n", "\n")
        head, _, inner_body = text.partition("\n\n")
        lines = head.split("\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            err = _bad("Invalid batch part")
            return 400, {"Content-Type": JSON_CT}, json.dumps(err.body())
        inner_headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                key, _, value = line.partition(":")
                inner_headers[key.strip().lower()] = value.strip()
        split = urlsplit(target)
        raw_path = split.path + (f"?{split.query}" if split.query else "")
        query = parse_qs(split.query, keep_blank_values=True)
        self.knobs.count(f"batch:{method.upper()} {unquote(split.path)}")
        if not (split.path == API_PREFIX or split.path.startswith(API_PREFIX + "/")):
            resp = GResp(404, _not_found().body())
        else:
            with self.lock:
                resp = self._api(method.upper(), raw_path, query, inner_headers,
                                 inner_body.encode(), inherited_auth=outer.get("authorization"))
        out_headers = {k.title(): v for k, v in resp.headers.items()}
        if resp.status == 204 or resp.body is None:
            return resp.status, out_headers, ""
        out_headers["Content-Type"] = JSON_CT
        return resp.status, out_headers, json.dumps(resp.body)


_KEY_ORDER = ("kind", "etag", "id", "status", "htmlLink", "created", "updated", "summary",
              "description", "location", "creator", "organizer", "start", "end",
              "recurrence", "recurringEventId", "originalStartTime", "transparency",
              "visibility", "iCalUID", "sequence", "attendees")
_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 409: "Conflict", 410: "Gone",
            412: "Precondition Failed", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}


def _obj(payload: Any) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise GError(400, "parseError", "Parse Error")
    return payload
