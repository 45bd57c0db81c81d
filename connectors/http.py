"""Shared HTTP behaviour for connectors: status codes to error kinds, Retry-After."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache

import certifi
import httpx

from connectors.base import DeliveryError, RateLimited, Rejected, TransientError

_REASON_LIMIT = 300


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: both the delta-seconds and the HTTP-date forms."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_for_status(response: httpx.Response, what: str) -> DeliveryError:
    """The error kind a non-2xx answer means; the reason names status and a body excerpt."""
    excerpt = response.text[:_REASON_LIMIT].strip().replace("\n", " ")
    reason = f"{what} answered {response.status_code} {response.reason_phrase}"
    if excerpt:
        reason += f": {excerpt}"
    wait = retry_after_seconds(response.headers.get("Retry-After"))
    if response.status_code == 429:
        return RateLimited(reason, datetime.now(UTC) + timedelta(seconds=wait or 30.0))
    if response.status_code == 408 or response.status_code >= 500:
        return TransientError(reason, retry_after=wait)
    return Rejected(reason)


def error_for_exception(exc: httpx.HTTPError, what: str) -> DeliveryError:
    if isinstance(exc, httpx.TimeoutException):
        return TransientError(f"{what} timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.TransportError):
        return TransientError(f"{what} unreachable ({type(exc).__name__}: {exc})")
    return Rejected(f"{what}: {type(exc).__name__}: {exc}")


@lru_cache(maxsize=1)
def shared_ssl_context() -> ssl.SSLContext:
    """One verified TLS context per process: building one reads the CA bundle (~30 ms)."""
    return ssl.create_default_context(cafile=certifi.where())


def make_client(timeout: float, headers: dict[str, str] | None = None) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(timeout), headers=headers or {}, verify=shared_ssl_context()
    )
