"""Outlook / Microsoft 365 calendars through Microsoft Graph (httpx) and msal.

Busy times: ``POST /users/{mailbox}/calendar/getSchedule`` asks about up to 20
mailboxes per call over less than 62 days (ranges are split in 61-day
windows), so 25 mailboxes over a week cost 2 calls, run concurrently. Graph
allows 4 concurrent requests per app and mailbox: each call goes through the
first mailbox of its chunk (or ``schedule_mailbox`` when set, ``me`` with a
delegated token), and a per-process semaphore keeps at most
``mailbox_concurrency`` (4) requests in flight per mailbox. If the mailbox a
call goes through does not exist (404 ``ErrorInvalidUser``), the call is
repeated through the chunk's next mailbox (at most 3 tries). Items ``busy``,
``tentative``, ``oof``, ``workingElsewhere`` (and ``unknown``, as busy) are busy
blocks, ``free`` ones are not; an address Graph cannot resolve answers
``error``: unknown, never free. Times are asked and answered in UTC (``Prefer:
outlook.timezone="UTC"``).

Exactly once: creates carry ``transactionId`` = uuid5 of the idempotency key;
Graph answers a repeated ``transactionId`` with the event already created.

Auth, two modes (setting ``auth``):
- ``client_credentials`` (app-only): msal ``ConfidentialClientApplication`` on
  ``authority`` (default ``https://login.microsoftonline.com/{directory_tenant}``),
  one app per (authority, client id, secret, CA) per process, so its token
  cache serves every connector instance and worker thread. A 401 from Graph
  drops the cached token and retries once with a new one; a second 401 is
  ``AuthExpired``.
- ``delegated``: the stored ``access_token`` (authorization code flow,
  refreshed by the engine); a 401 is ``AuthExpired``.
Without the setting: ``delegated`` when the credentials carry an access token,
``client_credentials`` otherwise.

Settings: ``graph_base_url`` (https://graph.microsoft.com/v1.0), ``authority``,
``directory_tenant``, ``ca_file`` (trust this CA only: the sandbox),
``timeout_seconds`` (10), ``schedule_mailbox``, ``mailbox_concurrency`` (4),
``max_concurrency`` (8), ``schedule_max_days`` (62), ``rate_limit`` /
``rate_limit_window_seconds`` (1,000 per 60 s), ``rate_limited_seconds`` (10,
when a 429 lacks Retry-After). Credentials: ``client_id``, ``client_secret``,
``tenant_id`` (app-only), ``access_token`` (delegated).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, ClassVar
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import msal
import requests

from connectors.base import (
    AuthExpired,
    ConnectionInfo,
    CursorExpired,
    DeliveryError,
    Rejected,
    Runtime,
    TransientError,
)
from connectors.calendar import (
    BusyBlock,
    CalendarBusy,
    Channel,
    EventChange,
    EventRef,
    EventSpec,
    Notice,
)
from connectors.calendar_common import (
    CallMeter,
    JobAnswer,
    check_event,
    gather_free_busy,
    rfc3339,
)
from connectors.catalog import provider as catalogue
from connectors.http import Classifier, error_for_exception, shared_ssl_context

DEFAULT_GRAPH = "https://graph.microsoft.com/v1.0"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com/{tenant}"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
BUSY_STATUSES = {"busy", "tentative", "oof", "workingElsewhere"}
# transactionId namespace: uuid5(this, idempotency key) is the same on every retry.
TRANSACTION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://relais/calendar/transaction")
_AUTH_ERRORS = {
    "invalid_client",
    "unauthorized_client",
    "invalid_grant",
    "invalid_tenant",
    "invalid_scope",
    "invalid_resource",
}
_REASON_LIMIT = 300
# What reusing a keep-alive connection the server closed while idle raises.
_STALE = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
_FRACTION = re.compile(r"(\.\d{1,6})\d*")


# Our key on every event we create, as a single-value extended property: Graph answers a
# transactionId reused for a different body with 400 ErrorDuplicateTransactionId, not the
# event, so the event is found by this property instead.
KEY_PROPERTY = "String {6f0a3c1e-5b8d-4a57-9d2e-52656c616973} Name RelaisIdempotencyKey"


def transaction_id_for(idempotency_key: str) -> str:
    return str(uuid.uuid5(TRANSACTION_NAMESPACE, idempotency_key))


def _key_filter(idempotency_key: str) -> str:
    value = idempotency_key.replace("'", "''")
    return (
        f"singleValueExtendedProperties/Any(ep: ep/id eq '{KEY_PROPERTY}' "
        f"and ep/value eq '{value}')"
    )


# ----------------------------------------------------- process-wide plumbing

_lock = threading.Lock()
_apps: dict[tuple[Any, ...], msal.ConfidentialClientApplication] = {}
_clients: dict[tuple[Any, ...], httpx.Client] = {}
_slots: dict[tuple[Any, ...], threading.BoundedSemaphore] = {}


@lru_cache(maxsize=16)
def _ssl_context(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file) if ca_file else shared_ssl_context()


def _http_client(ca_file: str | None, timeout: float) -> httpx.Client:
    """One pooled httpx client per process and (CA, timeout); auth goes per request."""
    key = (os.getpid(), ca_file, timeout)
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = httpx.Client(
                timeout=httpx.Timeout(timeout),
                verify=_ssl_context(ca_file),
                trust_env=not ca_file,  # the sandbox: no proxy, no CA from the environment
            )
            _clients[key] = client
        return client


def _msal_app(
    authority: str, client_id: str, secret: str, ca_file: str | None
) -> msal.ConfidentialClientApplication:
    """One msal app per process and (authority, client, secret, CA): its token cache is
    what spares a token request per batch. Building one fetches the OpenID metadata."""
    digest = hashlib.sha256(secret.encode()).hexdigest()
    key = (os.getpid(), authority, client_id, digest, ca_file)
    with _lock:
        app = _apps.get(key)
    if app is not None:
        return app
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would silently override verify
    session.verify = ca_file or True
    try:
        app = msal.ConfidentialClientApplication(
            client_id,
            client_credential=secret,
            authority=authority,
            instance_discovery=False,
            http_client=session,
        )
    except requests.RequestException as exc:
        raise TransientError(f"Microsoft identity platform unreachable: {exc}") from None
    except ValueError as exc:  # metadata refused or unreadable (bad tenant, outage)
        raise TransientError(f"Microsoft identity platform: {exc}") from None
    with _lock:
        return _apps.setdefault(key, app)


def forget_apps() -> None:
    """Drop this process's msal apps and their cached tokens (tests; a rotated secret
    needs nothing: the secret is part of the key)."""
    with _lock:
        _apps.clear()


@contextmanager
def _mailbox_slot(key: tuple[Any, ...], limit: int) -> Iterator[None]:
    """Graph allows 4 concurrent requests per app and mailbox: never send more."""
    key = (*key, limit)
    with _lock:
        slot = _slots.get(key)
        if slot is None:
            slot = _slots[key] = threading.BoundedSemaphore(limit)
    with slot:
        yield


def _parse_graph_time(spec: dict[str, Any]) -> datetime:
    """``{"dateTime": "2026-03-08T17:00:00.0000000", "timeZone": "UTC"}`` -> aware UTC."""
    text = _FRACTION.sub(lambda m: m.group(1), str(spec["dateTime"]))
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        zone = str(spec.get("timeZone") or "UTC")
        tz = UTC if zone.upper() in ("UTC", "ETC/UTC", "GMT") else ZoneInfo(zone)
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


class OutlookConnector:
    provider: ClassVar[str] = "outlook"
    max_calendars_per_query: ClassVar[int] = 20

    @staticmethod
    def rate_limit(info: ConnectionInfo) -> tuple[int, float]:
        """1,000 requests a minute per connection. Graph's Outlook limit is 10,000 per
        10 minutes per app *and mailbox*; one connection's traffic spread over many
        mailboxes at this pace never reaches it for any of them."""
        limit = catalogue("outlook").rate_limit(
            info.settings.get("rate_limit"), info.settings.get("rate_limit_window_seconds")
        )
        assert limit is not None  # the catalogue sets one
        return limit

    def __init__(self, info: ConnectionInfo, runtime: Runtime | None = None) -> None:
        self.info = info
        self.runtime = runtime or Runtime()
        settings, creds = info.settings, info.credentials
        self.graph_url = str(settings.get("graph_base_url") or DEFAULT_GRAPH).rstrip("/")
        self.ca_file = settings.get("ca_file") or None
        self.timeout = float(settings.get("timeout_seconds", 10))
        mode = settings.get("auth")
        if mode is None:
            mode = "delegated" if creds.get("access_token") else "client_credentials"
        if mode not in ("delegated", "client_credentials"):
            raise ValueError(f"outlook: unknown auth mode {mode!r}")
        self.mode = str(mode)
        tenant = settings.get("directory_tenant") or creds.get("tenant_id") or "organizations"
        self.authority = str(settings.get("authority") or DEFAULT_AUTHORITY).format(tenant=tenant)
        self.client_id = str(creds.get("client_id") or "")
        self.schedule_mailbox = settings.get("schedule_mailbox") or (
            "me" if self.mode == "delegated" else None
        )
        self.mailbox_concurrency = int(settings.get("mailbox_concurrency", 4))
        self.concurrency = int(settings.get("max_concurrency", 8))
        self.max_span = timedelta(days=float(settings.get("schedule_max_days", 62)) - 1)
        self.rate_limited_seconds = float(settings.get("rate_limited_seconds", 10))
        self.http = _http_client(self.ca_file, self.timeout)
        self._meter = CallMeter(self.runtime)

    @property
    def calls(self) -> int:
        """Graph API calls made by this connector (token requests not included)."""
        return self._meter.calls

    def close(self) -> None:
        return None  # the httpx client and msal app are shared by the process

    # --------------------------------------------------------------- tokens
    def _app(self) -> msal.ConfidentialClientApplication:
        secret = self.info.credentials.get("client_secret")
        if not self.client_id or not secret:
            raise AuthExpired("Outlook: the connection has no client id / client secret")
        return _msal_app(self.authority, self.client_id, str(secret), self.ca_file)

    def _token(self) -> str:
        if self.mode == "delegated":
            token = self.info.credentials.get("access_token")
            if not token:
                raise AuthExpired("Outlook: the connection has no access token")
            return str(token)
        try:
            result = self._app().acquire_token_for_client(scopes=[GRAPH_SCOPE])
        except requests.RequestException as exc:
            raise TransientError(f"Microsoft identity platform unreachable: {exc}") from None
        if "access_token" in result:
            return str(result["access_token"])
        error = str(result.get("error") or "unknown_error")
        detail = str(result.get("error_description") or "").split("\r\n")[0][:_REASON_LIMIT]
        reason = f"Microsoft identity platform refused the token ({error}): {detail}"
        if error in _AUTH_ERRORS:
            raise AuthExpired(reason)
        raise TransientError(reason)

    def _drop_token(self) -> None:
        if self.mode == "client_credentials":
            self._app().remove_tokens_for_client()

    # ------------------------------------------------------------- requests
    def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One paced Graph request (two when an app token was refused and renewed, or
        when a keep-alive connection the server had closed failed it: every request we
        send is a read or idempotent — PATCH, DELETE, POST with a transactionId — but a
        subscription, which at worst exists twice and expires unused)."""
        stale_retried = renewed = False
        for _ in range(3):
            token = self._token()
            self._meter()
            try:
                response = self.http.request(
                    method,
                    self.graph_url + path,
                    json=json,
                    headers={"Authorization": f"Bearer {token}", **(headers or {})},
                )
            except _STALE as exc:
                if stale_retried:
                    raise error_for_exception(exc, f"Graph {what}") from None
                stale_retried = True
                continue
            except httpx.HTTPError as exc:
                raise error_for_exception(exc, f"Graph {what}") from None
            if response.status_code == 401 and self.mode == "client_credentials" and not renewed:
                self._drop_token()  # revoked or expired early: one fresh token, then give up
                renewed = True
                continue
            return response
        return response

    def _error(self, response: httpx.Response, what: str) -> DeliveryError:
        status = response.status_code
        try:
            error = (response.json() or {}).get("error") or {}
        except ValueError:
            error = {}
        code = str(error.get("code") or response.reason_phrase)
        message = str(error.get("message") or response.text[:_REASON_LIMIT])[:_REASON_LIMIT]
        reason = f"Graph {what} answered {status} {code}: {message}"
        classifier = Classifier(rate_limited_seconds=self.rate_limited_seconds)
        return classifier.classify(status, response.headers, error, reason)

    def _call(
        self, method: str, path: str, what: str, *, ok: Sequence[int] = (), **kw: Any
    ) -> httpx.Response:
        response = self._request(method, path, what, **kw)
        if response.is_success or response.status_code in ok:
            return response
        raise self._error(response, what)

    @staticmethod
    def _user(mailbox: str) -> str:
        return "/me" if mailbox == "me" else f"/users/{quote(mailbox, safe='@')}"

    # ------------------------------------------------------------ busy time
    def free_busy(
        self, calendar_ids: Sequence[str], start: datetime, end: datetime
    ) -> dict[str, CalendarBusy]:
        if calendar_ids:
            self._token()  # warm msal's cache here, not in every pool thread at once
        return gather_free_busy(
            calendar_ids,
            start,
            end,
            per_query=self.max_calendars_per_query,
            span=self.max_span,
            prepare=self._prepare_schedule,
            concurrency=self.concurrency,
        )

    def _prepare_schedule(
        self, ids: list[str], lo: datetime, hi: datetime
    ) -> Callable[[], JobAnswer]:
        body = {
            "schedules": ids,
            "startTime": {"dateTime": rfc3339(lo)[:-1], "timeZone": "UTC"},
            "endTime": {"dateTime": rfc3339(hi)[:-1], "timeZone": "UTC"},
            "availabilityViewInterval": 1440,  # the view is not used: keep it short
        }
        via = [self.schedule_mailbox] if self.schedule_mailbox else ids[:3]
        return lambda: self._schedule(ids, body, via)

    def _schedule(self, ids: list[str], body: dict[str, Any], via: list[str]) -> JobAnswer:
        response: httpx.Response | None = None
        for mailbox in via:
            key = (self.client_id or self.info.id, mailbox.lower())
            with _mailbox_slot(key, self.mailbox_concurrency):
                response = self._request(
                    "POST",
                    f"{self._user(mailbox)}/calendar/getSchedule",
                    "getSchedule",
                    json=body,
                    headers={"Prefer": 'outlook.timezone="UTC"'},
                )
            if response.status_code == 404 and self._code(response) == "ErrorInvalidUser":
                continue  # that mailbox does not exist: go through the next one
            break
        assert response is not None
        if not response.is_success:
            raise self._error(response, "getSchedule")
        return self._parse_schedule(ids, response.json())

    @staticmethod
    def _code(response: httpx.Response) -> str | None:
        try:
            return str(((response.json() or {}).get("error") or {}).get("code"))
        except ValueError:
            return None

    @staticmethod
    def _parse_schedule(ids: list[str], answer: dict[str, Any]) -> JobAnswer:
        by_id = {str(v.get("scheduleId", "")).lower(): v for v in answer.get("value") or []}
        out: JobAnswer = {}
        for cid in ids:
            entry = by_id.get(cid.lower())
            if entry is None:
                out[cid] = ([], "Graph getSchedule did not answer for this mailbox")
                continue
            error = entry.get("error")
            if error:
                code = error.get("responseCode") or "error"
                out[cid] = ([], f"Graph getSchedule: {code}: {error.get('message') or ''}".strip())
                continue
            blocks: list[BusyBlock] = []
            try:
                for item in entry.get("scheduleItems") or []:
                    status = str(item.get("status") or "busy")
                    if status == "free":
                        continue
                    blocks.append(
                        BusyBlock(
                            _parse_graph_time(item["start"]),
                            _parse_graph_time(item["end"]),
                            status if status in BUSY_STATUSES else "busy",
                        )
                    )
            except (KeyError, TypeError, ValueError, ZoneInfoNotFoundError) as exc:
                out[cid] = ([], f"Graph getSchedule: unreadable schedule item ({exc})")
                continue
            out[cid] = (blocks, None)
        return out

    # --------------------------------------------------------------- events
    @staticmethod
    def _body(event: EventSpec) -> dict[str, Any]:
        check_event(event)
        zone = ZoneInfo(event.time_zone)

        def wall(value: datetime) -> dict[str, str]:
            local = value.astimezone(zone).replace(tzinfo=None)
            return {"dateTime": local.isoformat(), "timeZone": event.time_zone}

        return {
            "subject": event.subject,
            "body": {"contentType": "text", "content": event.description},
            "start": wall(event.start),
            "end": wall(event.end),
            "attendees": [
                {"emailAddress": {"address": address}, "type": "required"}
                for address in event.attendees
            ],
            "location": {"displayName": event.location or ""},
        }

    @staticmethod
    def _ref(mailbox: str, res: dict[str, Any]) -> EventRef:
        return EventRef(mailbox, str(res["id"]), res.get("@odata.etag"))

    def create_event(self, calendar_id: str, event: EventSpec, idempotency_key: str) -> EventRef:
        """One POST; a retry of the same body gets the event the first one created. When
        the body differs (the booking changed between attempts) Graph refuses the reused
        transactionId: the event is then found by our key (one GET) and brought up to
        date (one PATCH), never reported failed while it exists."""
        properties = [{"id": KEY_PROPERTY, "value": idempotency_key}]
        body = self._body(event) | {
            "transactionId": transaction_id_for(idempotency_key),
            "singleValueExtendedProperties": properties,
        }
        path = f"{self._user(calendar_id)}/events"
        response = self._request("POST", path, "event create", json=body)
        if response.is_success:
            return self._ref(calendar_id, response.json())
        if self._code(response) != "ErrorDuplicateTransactionId":
            raise self._error(response, "event create")
        existing = self.find_by_key(calendar_id, idempotency_key)
        if existing is not None:
            return self.update_event(existing, event)
        # The event that used this transactionId is gone (deleted since): a new one, under
        # a transactionId of this very body, so its own retries stay idempotent.
        fresh = transaction_id_for(f"{idempotency_key}\n{json.dumps(body, sort_keys=True)}")
        return self._ref(calendar_id, self._call(
            "POST", path, "event create", json=body | {"transactionId": fresh}).json())

    def find_by_key(self, calendar_id: str, idempotency_key: str) -> EventRef | None:
        """The event we created under ``idempotency_key``, by its extended property."""
        query = urlencode({"$filter": _key_filter(idempotency_key), "$select": "id"})
        response = self._call("GET", f"{self._user(calendar_id)}/events?{query}", "event lookup")
        found = (response.json() or {}).get("value") or []
        return self._ref(calendar_id, found[0]) if found else None

    def update_event(self, ref: EventRef, event: EventSpec) -> EventRef:
        response = self._call(
            "PATCH",
            f"{self._user(ref.calendar_id)}/events/{quote(ref.event_id, safe='')}",
            "event update",
            json=self._body(event),
        )
        return self._ref(ref.calendar_id, response.json())

    def delete_event(self, ref: EventRef) -> None:
        response = self._request(
            "DELETE",
            f"{self._user(ref.calendar_id)}/events/{quote(ref.event_id, safe='')}",
            "event delete",
        )
        if response.is_success or response.status_code == 410:
            return
        if response.status_code == 404 and self._code(response) != "ErrorInvalidUser":
            return  # the event is already gone: deleted (an unknown mailbox is not)
        raise self._error(response, "event delete")

    # ------------------------------------------------------- incremental sync
    # Additive (two-way sync, ``sync.calendar_sync``). Settings: ``delta_past_days`` (1)
    # and ``delta_future_days`` (90): the calendarView window a delta round follows;
    # ``sync_page_size`` (200, ``Prefer: odata.maxpagesize``); ``subscription_minutes``
    # (4320: three days, Graph allows 10,080 for events).

    def _path_of(self, link: str) -> str:
        """A nextLink/deltaLink as a path under our Graph base: the token never goes
        to another host."""
        if not link.startswith(self.graph_url + "/"):
            raise Rejected(f"Graph returned a link outside {self.graph_url}: refused")
        return link[len(self.graph_url) :]

    def list_changes(self, calendar_id: str, cursor: str | None) -> tuple[list[EventChange], str]:
        """Events changed since ``cursor`` (a deltaLink; None: every event of the window)
        and the next deltaLink. A delta token Graph no longer knows: ``CursorExpired``."""
        settings = self.info.settings
        page_size = int(settings.get("sync_page_size", 200))
        if cursor:
            path = self._path_of(cursor)
        else:
            # the engine's window (its busy store's)
            lo, hi = self.changes_window(settings, self.runtime.now())  # type: ignore[misc]
            path = (
                f"{self._user(calendar_id)}/calendarView/delta?startDateTime="
                f"{quote(rfc3339(lo))}&endDateTime={quote(rfc3339(hi))}"
            )
        headers = {"Prefer": f'outlook.timezone="UTC", odata.maxpagesize={page_size}'}
        changes: list[EventChange] = []
        while True:
            response = self._request("GET", path, "calendarView delta", headers=headers)
            if response.status_code == 410:
                raise CursorExpired(
                    f"Graph: the delta token of {calendar_id} expired "
                    f"({self._code(response) or 'syncStateNotFound'})"
                )
            if not response.is_success:
                raise self._error(response, "calendarView delta")
            body = response.json()
            changes.extend(self._change(item) for item in body.get("value") or [])
            if body.get("@odata.nextLink"):
                path = self._path_of(str(body["@odata.nextLink"]))
                continue
            link = body.get("@odata.deltaLink")
            if not link:
                raise TransientError("Graph: the last delta page carried no deltaLink")
            self._path_of(str(link))
            return changes, str(link)

    @staticmethod
    def _change(item: dict[str, Any]) -> EventChange:
        if "@removed" in item:  # deleted, or moved out of the delta window: read_event says
            return EventChange(str(item["id"]), item.get("@odata.etag"), status="removed")
        if item.get("isCancelled"):
            return EventChange(str(item["id"]), item.get("@odata.etag"), status="cancelled")
        try:
            start = _parse_graph_time(item["start"]) if item.get("start") else None
            end = _parse_graph_time(item["end"]) if item.get("end") else None
        except (KeyError, TypeError, ValueError, ZoneInfoNotFoundError):
            start = end = None
        status = "tentative" if item.get("showAs") == "tentative" else "confirmed"
        body = item.get("body") if isinstance(item.get("body"), dict) else {}
        text = body.get("content") if str(body.get("contentType", "")).lower() == "text" else None
        try:
            updated = (
                _parse_graph_time({"dateTime": item["lastModifiedDateTime"]})
                if item.get("lastModifiedDateTime")
                else None
            )
        except (TypeError, ValueError, ZoneInfoNotFoundError):
            updated = None
        return EventChange(
            str(item["id"]),
            item.get("@odata.etag"),
            start,
            end,
            status,
            subject=item.get("subject"),
            description=text,
            updated=updated,
            transparent=item.get("showAs") in ("free", "workingElsewhere"),
            series_id=item.get("seriesMasterId"),
        )

    def read_event(self, calendar_id: str, event_id: str) -> EventChange | None:
        """The event as it is now, or None when it is gone (deleted)."""
        response = self._request(
            "GET",
            f"{self._user(calendar_id)}/events/{quote(event_id, safe='')}",
            "event read",
            headers={"Prefer": 'outlook.timezone="UTC"'},
        )
        if response.status_code in (404, 410) and self._code(response) != "ErrorInvalidUser":
            return None
        if not response.is_success:
            raise self._error(response, "event read")
        return self._change(response.json())

    # ---- the calendar protocol's channel methods (``sync.calendar_sync``)
    notifications_batched: ClassVar[bool] = True

    @staticmethod
    def changes_window(
        settings: Mapping[str, Any], now: datetime
    ) -> tuple[datetime, datetime] | None:
        """The calendarView window a delta round follows (``delta_past_days`` /
        ``delta_future_days`` around ``now``)."""
        lo = now - timedelta(days=float(settings.get("delta_past_days", 1)))
        return lo, now + timedelta(days=float(settings.get("delta_future_days", 90)))

    def open_channel(self, calendar_id: str, address: str, secret: str) -> Channel:
        return self.subscribe(calendar_id, address, secret)

    def renew_channel(self, channel_id: str) -> datetime | None:
        return self.renew_subscription(channel_id)

    def close_channel(self, channel_id: str, resource_id: str | None) -> None:
        self.delete_subscription(channel_id)

    @staticmethod
    def parse_notifications(headers: Mapping[str, str], body: Any) -> list[Notice]:
        """A batch in ``value``, each carrying its subscription's ``clientState``:
        https://learn.microsoft.com/graph/change-notifications-delivery-webhooks"""
        items = body.get("value") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise ValueError("no notifications in the body")
        return [
            Notice(
                channel_id=str(item.get("subscriptionId") or ""),
                secret=item.get("clientState") and str(item["clientState"]),
                lifecycle=item.get("lifecycleEvent"),
            )
            if isinstance(item, dict)
            else Notice("", None, well_formed=False)
            for item in items
        ]

    def subscribe(
        self, calendar_id: str, address: str, client_state: str, expires: datetime | None = None
    ) -> Channel:
        """A subscription to the mailbox's events; Graph first checks ``address`` with
        the validation handshake, then POSTs changes carrying ``client_state``."""
        minutes = float(self.info.settings.get("subscription_minutes", 4320))
        expires = expires or datetime.now(UTC) + timedelta(minutes=minutes)
        body = {
            "changeType": "created,updated,deleted",
            "notificationUrl": address,
            # Lifecycle events (subscriptionRemoved, missed, reauthorizationRequired) come
            # to the same endpoint, which tells them apart by ``lifecycleEvent``.
            "lifecycleNotificationUrl": address,
            "resource": f"{self._user(calendar_id).lstrip('/')}/events",
            "expirationDateTime": rfc3339(expires.replace(microsecond=0)),
            "clientState": client_state,
        }
        res = self._call("POST", "/subscriptions", "subscription create", json=body).json()
        return Channel(
            str(res["id"]), calendar_id, _parse_graph_time({"dateTime": res["expirationDateTime"]})
        )

    def renew_subscription(self, subscription_id: str, expires: datetime | None = None) -> datetime:
        minutes = float(self.info.settings.get("subscription_minutes", 4320))
        expires = expires or datetime.now(UTC) + timedelta(minutes=minutes)
        res = self._call(
            "PATCH",
            f"/subscriptions/{quote(subscription_id, safe='')}",
            "subscription renew",
            json={"expirationDateTime": rfc3339(expires.replace(microsecond=0))},
        ).json()
        return _parse_graph_time({"dateTime": res["expirationDateTime"]})

    def delete_subscription(self, subscription_id: str) -> None:
        self._call(
            "DELETE",
            f"/subscriptions/{quote(subscription_id, safe='')}",
            "subscription delete",
            ok=(404,),
        )
