"""Pieces shared by the calendar emulators: time zones, timestamps, webhook delivery.

* :func:`resolve_tz` accepts IANA names and the common Windows names Graph
  uses (``"Pacific Standard Time"``); ``UnknownTimeZone`` otherwise.
* ``*_stamp`` / ``*_dt`` format instants the way each provider prints them.
* :class:`Notifier` POSTs change notifications from a background thread (in
  order, one at a time) and keeps a log of every delivery for tests.
"""

from __future__ import annotations

import collections
import itertools
import logging
import queue
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

__all__ = [
    "WINDOWS_ZONES",
    "Delivery",
    "Notifier",
    "UnknownTimeZone",
    "google_dt",
    "google_stamp",
    "graph_local",
    "graph_stamp",
    "localize",
    "parse_rfc3339",
    "resolve_tz",
]

log = logging.getLogger("sandbox.calendar")

# Windows time zone ids Graph accepts (and prints back) -> IANA. Not the full
# CLDR table: the zones a French answering service and its tests meet.
WINDOWS_ZONES: dict[str, str] = {
    "UTC": "UTC",
    "Coordinated Universal Time": "UTC",
    "tzone://Microsoft/Utc": "UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "W. Europe Standard Time": "Europe/Berlin",
    "Romance Standard Time": "Europe/Paris",
    "Central Europe Standard Time": "Europe/Budapest",
    "Central European Standard Time": "Europe/Warsaw",
    "E. Europe Standard Time": "Europe/Chisinau",
    "FLE Standard Time": "Europe/Kiev",
    "GTB Standard Time": "Europe/Bucharest",
    "Turkey Standard Time": "Europe/Istanbul",
    "Russian Standard Time": "Europe/Moscow",
    "Morocco Standard Time": "Africa/Casablanca",
    "W. Central Africa Standard Time": "Africa/Lagos",
    "South Africa Standard Time": "Africa/Johannesburg",
    "Egypt Standard Time": "Africa/Cairo",
    "E. Africa Standard Time": "Africa/Nairobi",
    "Israel Standard Time": "Asia/Jerusalem",
    "Arabian Standard Time": "Asia/Dubai",
    "Mauritius Standard Time": "Indian/Mauritius",
    "Pakistan Standard Time": "Asia/Karachi",
    "India Standard Time": "Asia/Kolkata",
    "Bangladesh Standard Time": "Asia/Dhaka",
    "SE Asia Standard Time": "Asia/Bangkok",
    "China Standard Time": "Asia/Shanghai",
    "Singapore Standard Time": "Asia/Singapore",
    "Taipei Standard Time": "Asia/Taipei",
    "Tokyo Standard Time": "Asia/Tokyo",
    "Korea Standard Time": "Asia/Seoul",
    "W. Australia Standard Time": "Australia/Perth",
    "Cen. Australia Standard Time": "Australia/Adelaide",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "Tasmania Standard Time": "Australia/Hobart",
    "New Zealand Standard Time": "Pacific/Auckland",
    "Fiji Standard Time": "Pacific/Fiji",
    "Azores Standard Time": "Atlantic/Azores",
    "Cape Verde Standard Time": "Atlantic/Cape_Verde",
    "Newfoundland Standard Time": "America/St_Johns",
    "Atlantic Standard Time": "America/Halifax",
    "SA Western Standard Time": "America/La_Paz",
    "E. South America Standard Time": "America/Sao_Paulo",
    "Argentina Standard Time": "America/Buenos_Aires",
    "Pacific SA Standard Time": "America/Santiago",
    "Venezuela Standard Time": "America/Caracas",
    "SA Pacific Standard Time": "America/Bogota",
    "Eastern Standard Time": "America/New_York",
    "Central Standard Time": "America/Chicago",
    "Central Standard Time (Mexico)": "America/Mexico_City",
    "Canada Central Standard Time": "America/Regina",
    "Mountain Standard Time": "America/Denver",
    "US Mountain Standard Time": "America/Phoenix",
    "Pacific Standard Time": "America/Los_Angeles",
    "Alaskan Standard Time": "America/Anchorage",
    "Hawaiian Standard Time": "Pacific/Honolulu",
}
_WINDOWS_LOWER = {k.lower(): v for k, v in WINDOWS_ZONES.items()}


class UnknownTimeZone(ValueError):
    pass


def resolve_tz(name: str | None) -> tzinfo:
    """An IANA or Windows time zone name -> tzinfo (``UnknownTimeZone`` if neither)."""
    if not name or not isinstance(name, str):
        raise UnknownTimeZone(str(name))
    iana = _WINDOWS_LOWER.get(name.strip().lower(), name.strip())
    if iana.upper() in ("UTC", "Z", "ETC/UTC", "GMT"):
        return UTC
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UnknownTimeZone(name) from exc


def localize(naive: datetime, tz: tzinfo) -> datetime:
    """Wall time in ``tz`` -> aware instant.

    Ambiguous wall times (the repeated autumn hour) take the first
    occurrence; nonexistent ones (the skipped spring hour) keep the offset
    in force before the gap, i.e. 02:30 on a spring-forward day lands at
    03:30 local (what Google and Outlook show).
    """
    return naive.replace(tzinfo=tz, fold=0)


_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def parse_rfc3339(value: str, *, default_tz: tzinfo | None = None) -> datetime:
    """Parse ``2026-03-08T13:00:00Z`` / ``...-05:00`` / 7-digit fractions.

    Without an offset the value is wall time in ``default_tz``; with neither,
    ``ValueError``.
    """
    if not isinstance(value, str) or not value:
        raise ValueError("missing date-time")
    text = _FRACTION.sub(lambda m: m.group(1), value.strip())
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        if default_tz is None:
            raise ValueError(f"date-time without offset: {value!r}")
        dt = localize(dt, default_tz)
    return dt


def parse_date(value: str) -> date:
    return date.fromisoformat(value)


def google_stamp(dt: datetime) -> str:
    """``updated``/``created`` style: ``2026-03-01T10:00:00.123Z``."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def google_dt(dt: datetime, tz: tzinfo) -> str:
    """RFC 3339 in ``tz``: ``2026-03-08T13:00:00-04:00`` (``Z`` in UTC)."""
    local = dt.astimezone(tz)
    off = local.utcoffset() or timedelta(0)
    if off == timedelta(0) and tz is UTC:
        return local.strftime("%Y-%m-%dT%H:%M:%SZ")
    text = local.strftime("%Y-%m-%dT%H:%M:%S%z")
    return text[:-2] + ":" + text[-2:]


def graph_stamp(dt: datetime) -> str:
    """``createdDateTime`` style: ``2026-03-01T10:00:00.1234567Z``."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}0Z"


def graph_local(dt: datetime, tz: tzinfo) -> str:
    """dateTimeTimeZone.dateTime: ``2026-03-08T13:00:00.0000000`` (wall time in ``tz``)."""
    local = dt.astimezone(tz)
    return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond:06d}0"


def merge_intervals(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


# ---------------------------------------------------------------- webhooks

_delivery_ids = itertools.count(1)


@dataclass
class Delivery:
    """One outgoing notification (or validation) request and its outcome."""

    kind: str
    url: str
    headers: dict[str, str]
    body: str
    meta: dict[str, Any] = field(default_factory=dict)
    id: int = field(default_factory=lambda: next(_delivery_ids))
    queued_at: float = field(default_factory=time.time)
    status: int | None = None
    error: str | None = None
    attempts: int = 0
    response_body: str = ""
    response_content_type: str = ""
    elapsed_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Notifier:
    """Posts notifications from one background thread, in order, with retries.

    ``verify`` is handed to httpx (a CA path, True or False). A delivery is
    successful on any 2xx; otherwise it is retried ``retries`` times after
    ``retry_delay`` seconds (doubling), then given up and logged.
    """

    def __init__(self, name: str, *, verify: Any = True, timeout: float = 10.0,
                 retries: int = 0, retry_delay: float = 0.5) -> None:
        self.name = name
        self.verify = verify
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._log: collections.deque[Delivery] = collections.deque(maxlen=5000)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._client: httpx.Client | None = None
        self.on_result: Callable[[Delivery], None] | None = None

    # ---------------------------------------------------------------- API
    def post(self, kind: str, url: str, *, headers: dict[str, str] | None = None,
             body: str = "", meta: dict[str, Any] | None = None) -> Delivery:
        delivery = Delivery(kind, url, dict(headers or {}), body, dict(meta or {}))
        with self._lock:
            self._log.append(delivery)
            self._pending += 1
            self._idle.clear()
            self._ensure_thread()
        self._queue.put(delivery)
        return delivery

    def send_now(self, kind: str, url: str, *, params: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None, body: str = "",
                 timeout: float | None = None, meta: dict[str, Any] | None = None) -> Delivery:
        """Synchronous one-shot request (validation handshakes); logged like the rest."""
        delivery = Delivery(kind, url, dict(headers or {}), body, dict(meta or {}))
        with self._lock:
            self._log.append(delivery)
        self._attempt(delivery, params=params, timeout=timeout)
        return delivery

    def deliveries(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [d.to_dict() for d in self._log if kind is None or d.kind == kind]

    def wait_idle(self, timeout: float = 10.0) -> bool:
        return self._idle.wait(timeout)

    def clear(self) -> None:
        with self._lock:
            self._log.clear()

    def close(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(5)
        self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None

    # ------------------------------------------------------------ internal
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=f"{self.name}-notifier",
                                            daemon=True)
            self._thread.start()

    def _http(self) -> httpx.Client:
        if self._client is None:
            verify = self.verify
            if isinstance(verify, str):  # a CA file path
                verify = ssl.create_default_context(cafile=verify)
            self._client = httpx.Client(verify=verify, timeout=self.timeout, trust_env=False)
        return self._client

    def _attempt(self, delivery: Delivery, *, params: dict[str, str] | None = None,
                 timeout: float | None = None) -> bool:
        delivery.attempts += 1
        started = time.monotonic()
        try:
            response = self._http().post(delivery.url, params=params, headers=delivery.headers,
                                         content=delivery.body.encode(),
                                         timeout=timeout or self.timeout)
            delivery.status = response.status_code
            delivery.response_body = response.text[:2000]
            delivery.response_content_type = response.headers.get("content-type", "")
            delivery.error = None
            ok = 200 <= response.status_code < 300
        except httpx.HTTPError as exc:
            delivery.status = None
            delivery.error = f"{type(exc).__name__}: {exc}"
            ok = False
        delivery.elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        return ok

    def _run(self) -> None:
        while True:
            delivery = self._queue.get()
            if delivery is None:
                return
            try:
                delay = self.retry_delay
                for attempt in range(self.retries + 1):
                    if self._attempt(delivery):
                        break
                    if attempt < self.retries:
                        time.sleep(delay)
                        delay *= 2
                if self.on_result is not None:
                    self.on_result(delivery)
            except Exception:  # a notifier must never die
                log.exception("%s notifier failed on delivery %s", self.name, delivery.id)
            finally:
                with self._lock:
                    self._pending -= 1
                    if self._pending <= 0:
                        self._pending = 0
                        self._idle.set()
