"""Shared HTTP behaviour for connectors: status codes to error kinds (``Classifier``,
which providers extend), Retry-After."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any

import certifi
import httpx

from connectors.base import AuthExpired, DeliveryError, RateLimited, Rejected, TransientError
from connectors.netguard import guarded_transport

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


Reason = str | Callable[[type[DeliveryError]], str]


class Classifier:
    """An HTTP answer as one of the error kinds of ``connectors.base``, written once.

    The rule: a rate limit (429, or what ``rate_limited`` adds) is ``RateLimited``
    until ``limit_wait`` (Retry-After, else ``rate_limited_seconds``); 401 is
    ``unauthorized`` (``AuthExpired``: the engine refreshes the token); 408, 5xx and
    0 (no answer) are ``TransientError`` (with Retry-After when given); any other
    status is ``Rejected``. A provider subclasses it for its quirks (Salesforce's
    403 REQUEST_LIMIT_EXCEEDED, Google's 403 rateLimitExceeded, HubSpot's DAILY
    policy). ``body`` is whatever the provider parsed; the base rule ignores it.
    """

    def __init__(
        self,
        rate_limited_seconds: float = 30.0,
        unauthorized: type[DeliveryError] = AuthExpired,
    ) -> None:
        self.rate_limited_seconds = rate_limited_seconds
        self.unauthorized = unauthorized

    def rate_limited(self, status: int, headers: Mapping[str, str], body: Any) -> bool:
        return status == 429

    def retry_after(self, headers: Mapping[str, str]) -> float | None:
        return retry_after_seconds(header(headers, "retry-after"))

    def limit_wait(self, status: int, headers: Mapping[str, str], body: Any) -> float:
        wait = self.retry_after(headers)
        return self.rate_limited_seconds if wait is None else wait

    def kind(self, status: int, headers: Mapping[str, str], body: Any) -> type[DeliveryError]:
        if self.rate_limited(status, headers, body):
            return RateLimited
        if status == 401:
            return self.unauthorized
        if status in (0, 408) or status >= 500:
            return TransientError
        return Rejected

    def classify(
        self, status: int, headers: Mapping[str, str], body: Any, reason: Reason
    ) -> DeliveryError:
        kind = self.kind(status, headers, body)
        text = reason if isinstance(reason, str) else reason(kind)
        if kind is RateLimited:
            wait = self.limit_wait(status, headers, body)
            return RateLimited(text, datetime.now(UTC) + timedelta(seconds=wait))
        if kind is TransientError:
            return TransientError(text, retry_after=self.retry_after(headers))
        return kind(text)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, whatever the case of the mapping's keys."""
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def classify(
    status: int, headers: Mapping[str, str], body: Any = None, reason: Reason = ""
) -> DeliveryError:
    """The base rule of ``Classifier``, for providers without quirks."""
    return Classifier().classify(status, headers, body, reason or f"answered {status}")


# A plain HTTP endpoint (a webhook receiver): a 401 is a refused signature, not a
# token to refresh.
_PLAIN = Classifier(unauthorized=Rejected)


def error_for_status(response: httpx.Response, what: str) -> DeliveryError:
    """The error kind a non-2xx answer means; the reason names status and a body excerpt."""
    excerpt = response.text[:_REASON_LIMIT].strip().replace("\n", " ")
    reason = f"{what} answered {response.status_code} {response.reason_phrase}"
    if excerpt:
        reason += f": {excerpt}"
    return _PLAIN.classify(response.status_code, response.headers, None, reason)


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


def make_client(timeout: float, headers: dict[str, str] | None = None, *,
                guarded: bool = False) -> httpx.Client:
    """A client on the shared TLS context; ``guarded``: its direct connections refuse
    internal addresses (``connectors.netguard``), for URLs a tenant chose."""
    context = shared_ssl_context()
    return httpx.Client(
        timeout=httpx.Timeout(timeout), headers=headers or {}, verify=context,
        transport=guarded_transport(context) if guarded else None,
    )
