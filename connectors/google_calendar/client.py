"""Google Calendar v3 through google-api-python-client: busy times of many
calendars at once, and events written exactly once.

Busy times: ``POST /freeBusy`` asks about up to 50 calendars per call
(``freebusy_max_calendars``) over at most ~90 days (``freebusy_max_days``,
unverified: Google answers ``timeRangeTooLong`` past about three months), so
60 calendars over a week cost 2 calls, run concurrently. A calendar answered
with ``errors`` (not found, no access, too many calendars) is *unknown*, never
free. Busy blocks come back merged, clipped to the range, in UTC.

Exactly once: an event's id is chosen by us, derived from the idempotency key
(base32hex of its SHA-256: 52 chars of ``[a-v0-9]``). Google refuses a second
insert with that id (409 ``duplicate``, deleted events included), which means
an earlier attempt landed: we read that event back and return it.

Auth: the connection's ``access_token`` only. The engine refreshes tokens
before calling (``sync.credentials.ensure_fresh``); the connector never
refreshes on its own, so a 401 is ``AuthExpired``.

Threads: httplib2 (under the SDK) is not thread-safe. The discovery service
is built once per connector; requests are built in the calling thread and
executed with one ``httplib2.Http`` per thread (kept per process, so
keep-alive connections survive from one query to the next).

Settings: ``api_base_url`` (default https://www.googleapis.com), ``timeout_seconds``
(10), ``ca_file`` (a CA bundle for a TLS emulator), ``send_updates`` (``none``:
Google's default; ``all`` mails invitations to attendees), ``max_concurrency``
(8 concurrent freeBusy calls), ``freebusy_max_calendars`` (50),
``freebusy_max_days`` (90), ``rate_limit`` / ``rate_limit_window_seconds``
(600 per 60 s: Google's default per-user quota), ``rate_limited_seconds`` (15).
Credentials: ``access_token`` (``refresh_token``, ``client_id``,
``client_secret`` and the ``token_url`` setting serve the engine's refresh).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from http.client import HTTPException, RemoteDisconnected
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import google_auth_httplib2
import httplib2
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest

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
from connectors.http import Classifier

DEFAULT_BASE = "https://www.googleapis.com"
_REASON_LIMIT = 300
# usageLimits reasons -> seconds to wait when Google sends no Retry-After (it
# usually does not). The per-user and per-project quotas are per minute,
# counted on a rolling window: a pause of a few seconds frees part of it.
# quotaExceeded ("Calendar usage limits exceeded": too many events created)
# and the daily limit last much longer (unverified: hours; we retry after 5 min / 1 h).
_RATE_REASONS = {
    "rateLimitExceeded": None,  # -> settings rate_limited_seconds (15 s)
    "userRateLimitExceeded": None,
    "quotaExceeded": 300.0,
    "dailyLimitExceeded": 3600.0,
}


def event_id_for(idempotency_key: str) -> str:
    """The event id Google will hold for this key: base32hex ``[a-v0-9]``, 52 chars."""
    digest = hashlib.sha256(idempotency_key.encode()).digest()
    return base64.b32hexencode(digest).decode().rstrip("=").lower()


# ----------------------------------------------------------------- transport

_local = threading.local()


def _thread_http(timeout: float, ca_file: str | None) -> httplib2.Http:
    """This thread's ``httplib2.Http`` for (timeout, CA): never shared between threads."""
    pid = os.getpid()
    if getattr(_local, "pid", None) != pid:
        _local.pid, _local.https = pid, {}
    key = (timeout, ca_file)
    client = _local.https.get(key)
    if client is None:
        client = httplib2.Http(timeout=timeout, ca_certs=ca_file)
        _local.https[key] = client
    return client


class _TransportError(TransientError):
    """No HTTP answer came (connection lost, timeout): a write may or may not have landed."""


# What a keep-alive connection closed by the server while idle raises on reuse.
_STALE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, RemoteDisconnected)


def _drop_connections(http: httplib2.Http) -> None:
    """Close this thread's pooled connections: the next request opens a fresh one."""
    for connection in list(http.connections.values()):
        connection.close()
    http.connections.clear()


class _GoogleErrors(Classifier):
    """Google answers 403 for usage limits too (``usageLimits`` domain or a rate
    reason); each reason has its own wait when Retry-After is absent. ``body`` is
    ``(is a usage limit, reasons)``."""

    def rate_limited(self, status: int, headers: Mapping[str, str], body: Any) -> bool:
        return status == 429 or (status == 403 and body[0])

    def limit_wait(self, status: int, headers: Mapping[str, str], body: Any) -> float:
        wait = self.retry_after(headers)
        if wait is not None:
            return wait
        waits = [_RATE_REASONS.get(r) for r in body[1] if r in _RATE_REASONS]
        return max([w for w in waits if w is not None], default=self.rate_limited_seconds)


def _details(exc: HttpError) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        body = json.loads(exc.content or b"{}")
    except (TypeError, ValueError):
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return {}, []
    return error, [e for e in error.get("errors") or [] if isinstance(e, dict)]


class GoogleCalendarConnector:
    provider: ClassVar[str] = "google_calendar"
    max_calendars_per_query: ClassVar[int] = 50

    @staticmethod
    def rate_limit(info: ConnectionInfo) -> tuple[int, float]:
        """Google's default quota: 600 requests per minute per user (per project)."""
        limit = catalogue("google_calendar").rate_limit(
            info.settings.get("rate_limit"), info.settings.get("rate_limit_window_seconds")
        )
        assert limit is not None  # the catalogue sets one
        return limit

    def __init__(self, info: ConnectionInfo, runtime: Runtime | None = None) -> None:
        self.info = info
        self.runtime = runtime or Runtime()
        settings = info.settings
        self.base_url = str(settings.get("api_base_url") or DEFAULT_BASE).rstrip("/")
        self.timeout = float(settings.get("timeout_seconds", 10))
        self.ca_file = settings.get("ca_file") or None
        self.send_updates = str(settings.get("send_updates", "none"))
        self.concurrency = int(settings.get("max_concurrency", 8))
        self.per_query = min(
            int(settings.get("freebusy_max_calendars", self.max_calendars_per_query)), 50
        )
        self.max_span = timedelta(days=float(settings.get("freebusy_max_days", 90)))
        self.rate_limited_seconds = float(settings.get("rate_limited_seconds", 15))
        self.credentials = Credentials(token=info.credentials.get("access_token"))
        self._meter = CallMeter(self.runtime)
        self._service: Any = None

    @property
    def calls(self) -> int:
        """API calls made by this connector (for benchmarks)."""
        return self._meter.calls

    @property
    def service(self) -> Any:
        if self._service is None:  # built once per connector: the discovery document is big
            self._service = build(
                "calendar",
                "v3",
                credentials=self.credentials,
                static_discovery=True,
                cache_discovery=False,
                client_options={"api_endpoint": f"{self.base_url}/calendar/v3/"},
            )
        return self._service

    def close(self) -> None:
        self._service = None

    # ------------------------------------------------------------- plumbing
    def _send(
        self, request: HttpRequest, what: str, repeatable: bool = True
    ) -> tuple[int, Any, HttpError | None]:
        """Execute one paced request: (status, body, HttpError or None).

        A keep-alive connection the server closed while idle fails the next request
        (reset, broken pipe, disconnected): a ``repeatable`` request (a read, or a write
        idempotent by its key) is sent once more on a fresh connection. Other transport
        failures, and a second one, raise ``_TransportError`` (transient)."""
        if not self.credentials.token:
            raise AuthExpired(f"Google Calendar {what}: the connection has no access token")
        for attempt in (1, 2):
            self._meter()
            http = _thread_http(self.timeout, self.ca_file)
            authed = google_auth_httplib2.AuthorizedHttp(
                self.credentials,
                http=http,
                refresh_status_codes=(),  # the engine refreshes, never the connector
            )
            try:
                body = request.execute(http=authed, num_retries=0)
            except HttpError as exc:
                return int(exc.resp.status), None, exc
            except (OSError, httplib2.HttpLib2Error, HTTPException) as exc:
                _drop_connections(http)
                if attempt == 1 and repeatable and isinstance(exc, _STALE):
                    continue
                raise _TransportError(
                    f"Google Calendar {what}: connection failed ({type(exc).__name__}: {exc})"
                ) from None
            return 200, body, None
        raise AssertionError("unreachable")

    def _error(self, exc: HttpError, what: str) -> DeliveryError:
        status = int(exc.resp.status)
        error, items = _details(exc)
        reasons = [str(e.get("reason")) for e in items if e.get("reason")]
        domains = {str(e.get("domain")) for e in items}
        message = str(error.get("message") or exc.reason or "")[:_REASON_LIMIT]
        reason = f"Google Calendar {what} answered {status}"
        if reasons:
            reason += f" {','.join(reasons)}"
        if message:
            reason += f": {message}"
        rate = "usageLimits" in domains or any(r in _RATE_REASONS for r in reasons)
        classifier = _GoogleErrors(self.rate_limited_seconds)
        return classifier.classify(status, exc.resp, (rate, reasons), reason)

    def _call(
        self, request: HttpRequest, what: str, ok: Sequence[int] = (), repeatable: bool = True
    ) -> tuple[int, Any]:
        status, body, exc = self._send(request, what, repeatable)
        if exc is not None and status not in ok:
            raise self._error(exc, what)
        return status, body

    # ------------------------------------------------------------- busy time
    def free_busy(
        self, calendar_ids: Sequence[str], start: datetime, end: datetime
    ) -> dict[str, CalendarBusy]:
        return gather_free_busy(
            calendar_ids,
            start,
            end,
            per_query=self.per_query,
            span=self.max_span,
            prepare=self._prepare_free_busy,
            concurrency=self.concurrency,
        )

    def _prepare_free_busy(
        self, ids: list[str], lo: datetime, hi: datetime
    ) -> Callable[[], JobAnswer]:
        request = self.service.freebusy().query(
            body={
                "timeMin": rfc3339(lo),
                "timeMax": rfc3339(hi),
                "timeZone": "UTC",
                "calendarExpansionMax": len(ids),
                "items": [{"id": cid} for cid in ids],
            }
        )
        return lambda: self._parse_free_busy(ids, self._call(request, "freeBusy")[1])

    @staticmethod
    def _parse_free_busy(ids: list[str], answer: dict[str, Any]) -> JobAnswer:
        calendars = answer.get("calendars") or {}
        lowered = {str(k).lower(): v for k, v in calendars.items()}
        out: JobAnswer = {}
        for cid in ids:
            entry = calendars.get(cid) or lowered.get(cid.lower())
            if not isinstance(entry, dict):
                out[cid] = ([], "Google freeBusy did not answer for this calendar")
                continue
            errors = entry.get("errors") or []
            if errors:
                reasons = ", ".join(
                    f"{e.get('domain', 'global')}/{e.get('reason', 'unknown')}" for e in errors
                )
                out[cid] = ([], f"Google freeBusy: {reasons}")
                continue
            try:
                blocks = [
                    BusyBlock(
                        datetime.fromisoformat(b["start"]).astimezone(UTC),
                        datetime.fromisoformat(b["end"]).astimezone(UTC),
                    )
                    for b in entry.get("busy") or []
                ]
            except (KeyError, TypeError, ValueError) as exc:
                out[cid] = ([], f"Google freeBusy: unreadable busy block ({exc})")
                continue
            out[cid] = (blocks, None)
        return out

    # ---------------------------------------------------------------- events
    def _body(self, event: EventSpec, *, for_patch: bool = False) -> dict[str, Any]:
        check_event(event)
        zone = ZoneInfo(event.time_zone)
        body: dict[str, Any] = {
            "summary": event.subject,
            "description": event.description,
            "start": {
                "dateTime": event.start.astimezone(zone).isoformat(),
                "timeZone": event.time_zone,
            },
            "end": {
                "dateTime": event.end.astimezone(zone).isoformat(),
                "timeZone": event.time_zone,
            },
            "attendees": [{"email": address} for address in event.attendees],
        }
        if event.location is not None or for_patch:
            body["location"] = event.location or ""
        return body

    @staticmethod
    def _ref(calendar_id: str, res: dict[str, Any]) -> EventRef:
        return EventRef(calendar_id, str(res["id"]), res.get("etag"))

    def create_event(self, calendar_id: str, event: EventSpec, idempotency_key: str) -> EventRef:
        """One insert under the id of our key. When its answer is lost (timeout, reset),
        the insert may or may not have landed, and Google does not promise to refuse a
        second insert of the same id: the id is read first (one GET) and inserted again
        only when absent."""
        event_id = event_id_for(idempotency_key)
        body = self._body(event) | {"id": event_id}
        events = self.service.events()

        def insert() -> tuple[int, Any]:
            return self._call(
                events.insert(calendarId=calendar_id, body=body, sendUpdates=self.send_updates),
                "event create",
                ok=(409,),
                repeatable=False,
            )

        try:
            status, res = insert()
        except _TransportError:
            status, res = self._call(
                events.get(calendarId=calendar_id, eventId=event_id), "event read", ok=(404,)
            )
            if status == 404:
                status, res = insert()
            else:
                status = 200  # the lost insert landed: ``res`` is our event
        if status == 409:  # an earlier attempt with this key landed: that is our event
            _, res = self._call(events.get(calendarId=calendar_id, eventId=event_id), "event read")
        if res.get("status") == "cancelled":
            raise Rejected(
                f"Google Calendar: the event of this idempotency key ({event_id}) was "
                "created then deleted; a new booking needs a new key"
            )
        return self._ref(calendar_id, res)

    def update_event(self, ref: EventRef, event: EventSpec) -> EventRef:
        _, res = self._call(
            self.service.events().patch(
                calendarId=ref.calendar_id,
                eventId=ref.event_id,
                body=self._body(event, for_patch=True),
                sendUpdates=self.send_updates,
            ),
            "event update",
        )
        if res.get("status") == "cancelled":  # Google patches deleted events without a word
            raise Rejected(
                f"Google Calendar: event {ref.event_id} was deleted from the calendar; "
                "it cannot be moved"
            )
        return self._ref(ref.calendar_id, res)

    def delete_event(self, ref: EventRef) -> None:
        self._call(
            self.service.events().delete(
                calendarId=ref.calendar_id, eventId=ref.event_id, sendUpdates=self.send_updates
            ),
            "event delete",
            ok=(404, 410),  # already gone: deleted
        )

    # ------------------------------------------------------- incremental sync
    # Additive (two-way sync, ``sync.calendar_sync``). Settings: ``sync_page_size``
    # (250 events per page), ``watch_ttl_seconds`` (604800: Google's default channel life).

    def list_changes(self, calendar_id: str, cursor: str | None) -> tuple[list[EventChange], str]:
        """Events changed since ``cursor`` (a syncToken; None: every event, deleted ones
        included) and the next cursor. A token Google no longer knows: ``CursorExpired``."""
        events = self.service.events()
        page_size = int(self.info.settings.get("sync_page_size", 250))
        changes: list[EventChange] = []
        page_token: str | None = None
        while True:
            params: dict[str, Any] = {
                "calendarId": calendar_id,
                "showDeleted": True,
                # recurring events as concrete instances (ids ``{series}_{start}``), so
                # the busy store holds real intervals; allowed with syncToken
                "singleEvents": True,
                "maxResults": page_size,
            }
            if cursor:
                params["syncToken"] = cursor
            if page_token:
                params["pageToken"] = page_token
            status, body = self._call(events.list(**params), "event changes", ok=(410,))
            if status == 410:
                raise CursorExpired(
                    f"Google Calendar: the sync token of {calendar_id} expired (fullSyncRequired)"
                )
            zone = str(body.get("timeZone") or "") or None
            changes.extend(self._change(item, zone) for item in body.get("items") or [])
            page_token = body.get("nextPageToken")
            if not page_token:
                token = body.get("nextSyncToken")
                if not token:
                    raise TransientError("Google Calendar: the last page carried no nextSyncToken")
                return changes, str(token)

    @staticmethod
    def _change(item: dict[str, Any], zone: str | None = None) -> EventChange:
        status = str(item.get("status") or "confirmed")

        def when(spec: Any) -> datetime | None:
            if not isinstance(spec, dict) or not spec.get("dateTime"):
                return None  # all-day (or absent): not one of our appointments
            return datetime.fromisoformat(str(spec["dateTime"]).replace("Z", "+00:00")).astimezone(
                UTC
            )

        cancelled = status == "cancelled"
        return EventChange(
            str(item["id"]),
            item.get("etag"),
            None if cancelled else when(item.get("start")),
            None if cancelled else when(item.get("end")),
            status,
            subject=None if cancelled else item.get("summary"),
            description=None if cancelled else item.get("description"),
            updated=_stamp(item.get("updated")),
            transparent=_shown_free(item),
            series_id=item.get("recurringEventId"),
            busy_span=None if cancelled else _all_day_span(item, zone),
        )

    def watch(
        self, calendar_id: str, address: str, token: str, channel_id: str | None = None
    ) -> Channel:
        """Open a ``web_hook`` channel on the calendar's events; Google then POSTs
        ``sync`` and, on every change, ``exists`` to ``address`` carrying ``token``."""
        import uuid

        ttl = int(self.info.settings.get("watch_ttl_seconds", 604_800))
        body = {
            "id": channel_id or uuid.uuid4().hex,
            "type": "web_hook",
            "address": address,
            "token": token,
            "params": {"ttl": str(ttl)},
        }
        _, res = self._call(
            self.service.events().watch(calendarId=calendar_id, body=body), "events watch"
        )
        expires = datetime.fromtimestamp(int(res.get("expiration") or 0) / 1000, UTC)
        return Channel(str(res["id"]), calendar_id, expires, res.get("resourceId"))

    # ---- the calendar protocol's channel methods (``sync.calendar_sync``)
    notifications_batched: ClassVar[bool] = False

    @staticmethod
    def changes_window(
        settings: Mapping[str, Any], now: datetime
    ) -> tuple[datetime, datetime] | None:
        return None  # events.list without a cursor reads every event

    def open_channel(self, calendar_id: str, address: str, secret: str) -> Channel:
        return self.watch(calendar_id, address, secret)

    def renew_channel(self, channel_id: str) -> datetime | None:
        return None  # a watch channel cannot be extended: a new one replaces it

    def close_channel(self, channel_id: str, resource_id: str | None) -> None:
        self.stop_watch(channel_id, resource_id)

    @staticmethod
    def parse_notifications(headers: Mapping[str, str], body: Any) -> list[Notice]:
        """A push message is all headers (``X-Goog-*``; the body is empty):
        https://developers.google.com/calendar/api/guides/push#receiving-notifications"""
        channel_id = headers.get("x-goog-channel-id") or ""
        if not channel_id:
            raise ValueError("X-Goog-Channel-ID is missing")
        try:
            number = int(headers.get("x-goog-message-number") or 0)
        except ValueError:
            number = 0
        return [Notice(
            channel_id=channel_id,
            secret=headers.get("x-goog-channel-token"),
            resource_id=headers.get("x-goog-resource-id"),
            message_number=number,
            state=headers.get("x-goog-resource-state") or "",
        )]  # fmt: skip

    def stop_watch(self, channel_id: str, resource_id: str | None) -> None:
        """Stop a channel; one Google no longer knows counts as stopped."""
        body: dict[str, Any] = {"id": channel_id}
        if resource_id:
            body["resourceId"] = resource_id
        self._call(self.service.channels().stop(body=body), "channel stop", ok=(404,))


def _stamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp from Google (``updated``) as aware UTC, or None."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _shown_free(item: dict[str, Any]) -> bool:
    """Not busy time, as freeBusy counts it: transparent (out-of-office always blocks),
    a working-location event, or declined by the calendar's owner."""
    kind = item.get("eventType")
    if kind == "workingLocation":
        return True
    if item.get("transparency") == "transparent" and kind != "outOfOffice":
        return True
    return any(
        isinstance(a, dict) and a.get("self") and a.get("responseStatus") == "declined"
        for a in item.get("attendees") or []
    )


def _all_day_span(item: dict[str, Any], zone: str | None) -> tuple[datetime, datetime] | None:
    """An all-day event's span in UTC (midnights in the calendar's zone), else None."""
    start, end = item.get("start"), item.get("end")
    if not (isinstance(start, dict) and isinstance(end, dict)):
        return None
    if not (start.get("date") and end.get("date")) or not zone:
        return None
    from datetime import date
    from zoneinfo import ZoneInfo

    try:
        tz = ZoneInfo(zone)
        lo = datetime.combine(date.fromisoformat(str(start["date"])), datetime.min.time(), tz)
        hi = datetime.combine(date.fromisoformat(str(end["date"])), datetime.min.time(), tz)
    except (ValueError, KeyError):
        return None
    return lo.astimezone(UTC), hi.astimezone(UTC)
