"""SMS destination: a provider-neutral gateway interface and a Sinch implementation.

Payload contract
----------------
The engine renders the tenant's template and hands each delivery::

    payload["sms"] = {"to": "+33612345678", "text": "Urgent: call Mme Martin ..."}

``to`` should be E.164; a national number is accepted only when the
connection sets ``default_region`` (e.g. ``FR``). Bodies never reach the logs.

What the connector does, per delivery
-------------------------------------
1. validates ``to`` with ``phonenumbers`` (invalid → ``Rejected``);
2. counts segments (:func:`sms_segments`: GSM-7 160/153, UCS-2 70/67,
   GSM-7 extension characters count two septets); above ``max_segments`` the
   text is cut to fit with an ellipsis (``overflow: truncate``, the default:
   a shortened urgent SMS beats none) or the delivery is ``Rejected``
   (``overflow: reject``). The result (:class:`SmsDeliveryResult`) says
   ``truncated`` and carries a ``note``; the ellipsis is ``...`` in a GSM-7
   text (``…`` is not in GSM-7 and would turn the whole SMS into UCS-2) and
   ``…`` in a UCS-2 text;
3. never sends twice: the delivery's idempotency key is the provider's
   *client reference*; before sending it looks in the connection's link store
   (``Runtime.links``, persisted by the engine with the results), and, on a
   retry (``attempt > 1``: the previous attempt may have reached the
   provider before the worker died or the answer was lost), asks the provider
   for a batch with that client reference (Sinch has no idempotency key; see
   ``docs/SMS_PROVIDER.md``). ``lookup_before_send: always | retries |
   never`` (default ``retries``);
4. sends; the provider's id (Sinch batch id) is the external id.

Errors: 429 → ``RateLimited`` (until ``Retry-After``, else
``rate_limit_pause_seconds``); 5xx, 408, timeouts, connection errors →
``TransientError``; 401 → ``Rejected`` ("fix the API token": a static token
cannot be refreshed); other 4xx → ``Rejected`` naming the provider's error
code (``syntax_invalid_parameter_format`` ...).

Settings (``provider: sms``)
----------------------------
``gateway`` (``sinch``, the only one so far); ``region`` (``eu`` | ``us`` |
``au`` | ``br`` | ``ca``, default ``eu``) or ``base_url`` (the sandbox);
``service_plan_id``; ``from`` (sender: number, short code or alphanumeric);
``callback_url`` (where the provider POSTs delivery reports: the engine's
``/v1/webhooks/sms/...``; unset = the service plan's default);
``delivery_report`` (``per_recipient`` default, ``per_recipient_final``,
``summary``, ``full``, ``none``); ``max_segments`` (3); ``overflow``
(``truncate`` | ``reject``); ``default_region``; ``lookup_before_send``;
``lookup_window_days`` (14: Sinch lists batches of the last 14 days);
``timeout_seconds`` (10); ``rate_limit`` / ``rate_limit_window_seconds``
(20 requests per second, unverified default); ``rate_limit_pause_seconds``
(5); ``ca_file``. Credentials: ``api_token`` (the service plan's bearer
token) and ``webhook_secret`` (the HMAC secret of the callbacks; used by the
engine's webhook endpoint, not for sending).

Webhooks (the engine's side)
----------------------------
:func:`verify_webhook_signature` checks a callback's
``x-sinch-webhook-signature`` (base64 HMAC-SHA256 of ``body.nonce.timestamp``)
and its freshness; :func:`parse_webhook` turns the body into provider-neutral
:class:`DeliveryReceipt` / :class:`InboundSms` records.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol

import httpx
import phonenumbers

from connectors.base import (
    ConnectionInfo,
    DeliveryError,
    DeliveryRequest,
    DeliveryResult,
    RateLimited,
    Rejected,
    Runtime,
    TransientError,
    deliver_each,
)
from connectors.catalog import provider as catalogue
from connectors.http import Classifier, error_for_exception, shared_ssl_context

log = logging.getLogger("relais.connectors.sms")

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "DeliveryReceipt",
    "InboundSms",
    "SinchGateway",
    "SmsConnector",
    "SmsDeliveryResult",
    "SmsGateway",
    "fit_segments",
    "normalize_number",
    "parse_webhook",
    "sign_webhook",
    "sms_segments",
    "verify_webhook_signature",
]

# ------------------------------------------------------------------ encoding

# GSM 03.38 default alphabet (ESC, 0x1B, left out: it is not a character).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: ESC + one septet each, so two septets per character.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7, UCS2 = "GSM-7", "UCS-2"
_SINGLE = {GSM7: 160, UCS2: 70}
_PART = {GSM7: 153, UCS2: 67}  # a 6-octet concatenation header takes the rest


def _gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def _units(text: str, encoding: str) -> list[int]:
    """Cost of each character: septets (GSM-7) or UTF-16 code units (UCS-2)."""
    if encoding == GSM7:
        return [2 if c in GSM7_EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def sms_segments(text: str) -> tuple[str, int]:
    """``(encoding, segments)`` for ``text``: ``("GSM-7", n)`` or ``("UCS-2", n)``.

    GSM-7 when every character is in the GSM 03.38 default alphabet or its
    extension table (``^{}\\[~]|€`` and form feed count two septets), else
    UCS-2 (UTF-16 code units: characters outside the BMP count two). One
    segment holds 160 septets / 70 units; a concatenated message 153 / 67 per
    segment, and a two-unit character (escape sequence, surrogate pair) is
    never split across segments. The empty text is 0 segments.
    """
    encoding = GSM7 if _gsm7(text) else UCS2
    units = _units(text, encoding)
    total = sum(units)
    if total == 0:
        return encoding, 0
    if total <= _SINGLE[encoding]:
        return encoding, 1
    size, segments, fill = _PART[encoding], 1, 0
    for cost in units:
        if fill + cost > size:
            segments, fill = segments + 1, 0
        fill += cost
    return encoding, segments


def fit_segments(text: str, max_segments: int) -> tuple[str, bool]:
    """``text`` cut (with an ellipsis) to fit ``max_segments``; ``(text, truncated)``."""
    if max_segments < 1:
        raise ValueError("max_segments must be >= 1")
    if sms_segments(text)[1] <= max_segments:
        return text, False

    def candidate(n: int) -> str:
        head = text[:n].rstrip()
        return head + "..." if _gsm7(head) else head + "…"

    low, high = 0, len(text)  # candidate(low) fits; find the longest that does
    while low < high:
        mid = (low + high + 1) // 2
        if sms_segments(candidate(mid))[1] <= max_segments:
            low = mid
        else:
            high = mid - 1
    return candidate(low), True


# ------------------------------------------------------------------- numbers


def normalize_number(number: str, default_region: str | None = None) -> str:
    """E.164 (``+33612345678``) or ``ValueError`` with the reason."""
    raw = (number or "").strip()
    if not raw:
        raise ValueError("no phone number")
    try:
        parsed = phonenumbers.parse(raw, None if raw.startswith("+") else default_region)
    except phonenumbers.NumberParseException as exc:
        hint = "" if raw.startswith("+") or default_region else " (not in E.164: +<country>…)"
        raise ValueError(f"{raw!r} is not a phone number: {exc}{hint}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"{raw!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _plus(msisdn: str | None) -> str:
    """Provider MSISDNs come with or without ``+``: always E.164-looking out."""
    value = (msisdn or "").strip()
    return value if not value or value.startswith("+") or not value.isdigit() else "+" + value


# ------------------------------------------------------------ neutral records


@dataclass(frozen=True)
class DeliveryReceipt:
    """A status change of one sent SMS (provider-neutral)."""

    message_id: str  # the provider's id (Sinch: batch id), = the delivery's external id
    client_ref: str | None  # our idempotency key, when the provider echoes it
    to: str  # E.164
    status: str  # queued | sent | delivered | failed | unknown
    provider_status: str
    code: int | None
    at: datetime | None
    final: bool


@dataclass(frozen=True)
class InboundSms:
    """A message a phone sent to one of our numbers (e.g. the reply "OK")."""

    message_id: str
    from_number: str  # E.164
    to: str  # our number or short code
    text: str
    received_at: datetime | None
    client_ref: str | None  # the SMS it answers, if the provider knows (Sinch: opt-in)


class SmsGateway(Protocol):
    """What the SMS connector needs from a provider."""

    name: ClassVar[str]

    def send(self, to_e164: str, text: str, client_ref: str) -> str:
        """Send one SMS; the provider's message id. Raises ``DeliveryError`` kinds."""
        ...

    def find_sent(self, client_ref: str) -> str | None:
        """The id of an SMS already sent with this client reference, if any."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SmsDeliveryResult(DeliveryResult):
    """A ``DeliveryResult`` that also says how the SMS went out."""

    encoding: str | None = None
    segments: int = 0
    truncated: bool = False
    deduplicated: bool = False  # found already sent: nothing sent this time
    note: str | None = None


# ------------------------------------------------------------------- Sinch

SINCH_REGIONS = ("eu", "us", "au", "br", "ca")
_STATUS = {
    "queued": ("queued", False),
    "dispatched": ("sent", False),
    "delivered": ("delivered", True),
    "failed": ("failed", True),
    "rejected": ("failed", True),
    "aborted": ("failed", True),
    "expired": ("failed", True),
    "deleted": ("failed", True),
    "cancelled": ("failed", True),
    "unknown": ("unknown", True),
}
SIGNATURE_HEADER = "x-sinch-webhook-signature"
NONCE_HEADER = "x-sinch-webhook-signature-nonce"
TIMESTAMP_HEADER = "x-sinch-webhook-signature-timestamp"
ALGORITHM_HEADER = "x-sinch-webhook-signature-algorithm"


class SinchGateway:
    """Sinch SMS REST API (``/xms/v1/{service_plan_id}``), bearer-token auth."""

    name: ClassVar[str] = "sinch"

    def __init__(
        self,
        *,
        base_url: str,
        service_plan_id: str,
        api_token: str,
        sender: str | None,
        callback_url: str | None = None,
        delivery_report: str = "per_recipient",
        max_parts: int | None = None,
        timeout: float = 10.0,
        lookup_window_days: float = 14,
        rate_limit_pause: float = 5.0,
        ca_file: str | None = None,
    ) -> None:
        self.root = f"{base_url.rstrip('/')}/xms/v1/{service_plan_id}"
        self.sender = sender
        self.callback_url = callback_url
        self.delivery_report = delivery_report
        self.max_parts = max_parts
        self.lookup_window = timedelta(days=lookup_window_days)
        self.rate_limit_pause = rate_limit_pause
        verify: ssl.SSLContext = (
            ssl.create_default_context(cafile=ca_file) if ca_file else shared_ssl_context()
        )
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            headers={"Authorization": f"Bearer {api_token}", "User-Agent": "Relais-SMS/1"},
            verify=verify,
        )
        self.calls = 0

    def send(self, to_e164: str, text: str, client_ref: str) -> str:
        body: dict[str, Any] = {
            "to": [to_e164],
            "body": text,
            "type": "mt_text",
            "client_reference": client_ref,
            "delivery_report": self.delivery_report,
        }
        if self.sender:
            body["from"] = self.sender
        if self.callback_url:
            body["callback_url"] = self.callback_url
        if self.max_parts:
            body["max_number_of_message_parts"] = self.max_parts
        response = self._call("POST", "/batches", json=body)
        try:
            batch_id = response.json()["id"]
        except (ValueError, KeyError, TypeError):
            raise TransientError(
                f"Sinch answered {response.status_code} without a batch id") from None
        return str(batch_id)

    def find_sent(self, client_ref: str) -> str | None:
        since = datetime.now(UTC) - self.lookup_window
        params = {
            "client_reference": client_ref,
            "start_date": since.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "page_size": 10,
        }
        data = self._call("GET", "/batches", params=params).json()
        for batch in data.get("batches") or []:
            # the filter is the provider's; check it anyway (and skip cancelled ones)
            if batch.get("client_reference") == client_ref and not batch.get("canceled"):
                return str(batch["id"])
        return None

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        self.calls += 1
        what = f"Sinch {method} {path}"
        try:
            response = self.client.request(method, self.root + path, **kwargs)
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, what) from None
        if response.is_success:
            return response
        raise self._error(response, what)

    def _error(self, response: httpx.Response, what: str) -> DeliveryError:
        status = response.status_code
        code, text = "", response.text[:300].strip()
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            code = str(data.get("code") or "")
            text = str(data.get("text") or data.get("message") or text)[:300]
        detail = f"{status} {code}: {text}" if code else f"{status}: {text}"

        def reason(kind: type[DeliveryError]) -> str:
            if kind is RateLimited:
                return f"{what} rate-limited ({detail})"
            if kind is TransientError:
                return f"{what} failed ({detail})"
            if status == 401:
                return (f"Sinch refused the API token ({detail}): fix the api_token "
                        "of this SMS connection")
            return f"Sinch refused the SMS ({detail})"

        # A static API token: a 401 cannot be refreshed away.
        classifier = Classifier(rate_limited_seconds=self.rate_limit_pause, unauthorized=Rejected)
        return classifier.classify(status, response.headers, data, reason)

    def close(self) -> None:
        self.client.close()


def _sinch_base_url(settings: Mapping[str, Any]) -> str:
    if settings.get("base_url"):
        return str(settings["base_url"])
    region = str(settings.get("region", "eu")).lower()
    if region not in SINCH_REGIONS:
        raise ValueError(f"sms: region must be one of {SINCH_REGIONS}")
    return f"https://{region}.sms.api.sinch.com"


# ----------------------------------------------------------------- webhooks


def sign_webhook(secret: str, body: bytes, nonce: str, timestamp: str) -> str:
    """Sinch's callback signature: base64(HMAC-SHA256(secret, body.nonce.timestamp))."""
    signed = body + b"." + nonce.encode() + b"." + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()


def verify_webhook_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """True when a callback carries a valid, fresh ``x-sinch-webhook-signature``.

    ``body`` must be the raw request body (never re-serialized JSON). The
    timestamp (Unix seconds) must be within ``tolerance`` of ``now``: a
    replayed old callback fails. Header names are matched case-insensitively.
    """
    if not secret:
        return False
    lower = {k.lower(): v for k, v in headers.items()}
    signature = lower.get(SIGNATURE_HEADER)
    nonce = lower.get(NONCE_HEADER)
    timestamp = lower.get(TIMESTAMP_HEADER)
    if not signature or not nonce or not timestamp:
        return False
    algorithm = lower.get(ALGORITHM_HEADER)
    if algorithm and algorithm.lower() != "hmacsha256":
        return False
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    expected = sign_webhook(secret, body, nonce, timestamp)
    return hmac.compare_digest(expected.encode(), signature.strip().encode())


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_webhook(body: bytes | str | Mapping[str, Any]) -> list[DeliveryReceipt | InboundSms]:
    """Provider-neutral records from a Sinch callback body (verify it first).

    ``recipient_delivery_report_sms`` → one receipt; ``delivery_report_sms``
    (summary/full) → one receipt per listed recipient (none for a summary);
    ``mo_text`` → one inbound message. Anything else → ``ValueError``.
    """
    data = json.loads(body) if isinstance(body, (bytes, str)) else dict(body)
    kind = data.get("type")
    if kind == "recipient_delivery_report_sms":
        return [_receipt(data, str(data.get("recipient", "")), data.get("status"),
                         data.get("code"), data.get("at"))]
    if kind == "delivery_report_sms":
        out: list[DeliveryReceipt | InboundSms] = []
        for group in data.get("statuses") or []:
            for recipient in group.get("recipients") or []:
                out.append(_receipt(data, str(recipient), group.get("status"),
                                    group.get("code"), None))
        return out
    if kind == "mo_text":
        return [InboundSms(
            message_id=str(data.get("id", "")),
            from_number=_plus(data.get("from")),
            to=_plus(data.get("to")),
            text=str(data.get("body", "")),
            received_at=_when(data.get("received_at")),
            client_ref=data.get("client_reference"),
        )]
    raise ValueError(f"not an SMS callback this connector understands: type={kind!r}")


def _receipt(data: Mapping[str, Any], recipient: str, status: Any, code: Any,
             at: Any) -> DeliveryReceipt:
    provider_status = str(status or "Unknown")
    neutral, final = _STATUS.get(provider_status.lower(), ("unknown", False))
    try:
        numeric = int(code) if code is not None else None
    except (TypeError, ValueError):
        numeric = None
    return DeliveryReceipt(
        message_id=str(data.get("batch_id", "")),
        client_ref=data.get("client_reference"),
        to=_plus(recipient),
        status=neutral,
        provider_status=provider_status,
        code=numeric,
        at=_when(at),
        final=final,
    )


# ---------------------------------------------------------------- connector

LINK_LOCAL, LINK_REMOTE = "sms", "sms_message"


class SmsConnector:
    provider: ClassVar[str] = "sms"
    linger_seconds: ClassVar[float] = 0.0  # an urgent SMS leaves at once

    @staticmethod
    def rate_limit(info: ConnectionInfo) -> tuple[int, float]:
        """Requests per window (lookups included); 20/s unless the plan says otherwise."""
        limit = catalogue("sms").rate_limit(
            info.settings.get("rate_limit"), info.settings.get("rate_limit_window_seconds")
        )
        assert limit is not None  # the catalogue sets one
        return limit

    def __init__(self, info: ConnectionInfo, runtime: Runtime | None = None,
                 gateway: SmsGateway | None = None) -> None:
        self.info = info
        self.runtime = runtime or Runtime()
        settings = info.settings
        self.max_segments = int(settings.get("max_segments", 3))
        self.overflow = str(settings.get("overflow", "truncate"))
        if self.overflow not in ("truncate", "reject"):
            raise ValueError("sms: overflow must be 'truncate' or 'reject'")
        self.lookup = str(settings.get("lookup_before_send", "retries"))
        if self.lookup not in ("always", "retries", "never"):
            raise ValueError("sms: lookup_before_send must be always, retries or never")
        self.default_region: str | None = settings.get("default_region") or None
        self._known: dict[str, str] = {}
        self.gateway: SmsGateway = gateway or self._gateway(info)

    @staticmethod
    def _gateway(info: ConnectionInfo) -> SmsGateway:
        settings = info.settings
        kind = str(settings.get("gateway", "sinch"))
        if kind != "sinch":
            raise ValueError(f"sms: unknown gateway {kind!r} (known: sinch)")
        return SinchGateway(
            base_url=_sinch_base_url(settings),
            service_plan_id=str(settings["service_plan_id"]),
            api_token=str(info.credentials.get("api_token", "")),
            sender=settings.get("from") or None,
            callback_url=settings.get("callback_url") or None,
            delivery_report=str(settings.get("delivery_report", "per_recipient")),
            max_parts=int(settings.get("max_segments", 3)),
            timeout=float(settings.get("timeout_seconds", 10)),
            lookup_window_days=float(settings.get("lookup_window_days", 14)),
            rate_limit_pause=float(settings.get("rate_limit_pause_seconds", 5)),
            ca_file=settings.get("ca_file") or None,
        )

    def deliver(self, batch: Sequence[DeliveryRequest]) -> list[DeliveryResult]:
        # one link-store query for the batch (a replay is answered without any call)
        self._known = dict(self.runtime.links.get_many(
            LINK_LOCAL, [r.idempotency_key for r in batch], LINK_REMOTE))
        return deliver_each(batch, self._deliver_one)

    def _deliver_one(self, request: DeliveryRequest) -> DeliveryResult:
        spec = request.payload.get("sms")
        if not isinstance(spec, dict):
            return DeliveryResult(request.delivery_id, error=Rejected(
                "payload has no 'sms' section (the engine must render the template)"))
        text = spec.get("text")
        if not isinstance(text, str) or not text.strip():
            return DeliveryResult(request.delivery_id,
                                  error=Rejected("sms payload: 'text' is empty"))
        try:
            to = normalize_number(str(spec.get("to") or ""), self.default_region)
        except ValueError as exc:
            return DeliveryResult(request.delivery_id,
                                  error=Rejected(f"sms payload: invalid 'to': {exc}"))
        encoding, segments = sms_segments(text)
        note = None
        truncated = False
        if segments > self.max_segments:
            if self.overflow == "reject":
                return DeliveryResult(request.delivery_id, error=Rejected(
                    f"SMS text is {segments} {encoding} segments, more than max_segments="
                    f"{self.max_segments} (overflow: reject)"))
            text, truncated = fit_segments(text, self.max_segments)
            note = (f"text truncated from {segments} to {self.max_segments} {encoding} "
                    f"segment(s) (max_segments)")
            encoding, segments = sms_segments(text)
        key = request.idempotency_key
        try:
            existing = self._already_sent(key, request.attempt)
            if existing is not None:
                return SmsDeliveryResult(request.delivery_id, external_id=existing,
                                         encoding=encoding, segments=segments,
                                         truncated=truncated, deduplicated=True,
                                         note="already sent under this client reference")
            self.runtime.pacer.wait()
            message_id = self.gateway.send(to, text, key)
        except DeliveryError as exc:
            log.info("sms delivery %s not sent: %s", request.delivery_id, exc.kind)
            return DeliveryResult(request.delivery_id, error=exc)
        self.runtime.links.put(LINK_LOCAL, key, LINK_REMOTE, message_id)
        self._known[key] = message_id  # the same key twice in one batch: sent once
        return SmsDeliveryResult(request.delivery_id, external_id=message_id, encoding=encoding,
                                 segments=segments, truncated=truncated, note=note)

    def _already_sent(self, key: str, attempt: int) -> str | None:
        known = self._known.get(key)
        if known:
            return known
        if self.lookup == "never" or (self.lookup == "retries" and attempt <= 1):
            return None
        self.runtime.pacer.wait()
        found = self.gateway.find_sent(key)
        if found:
            self.runtime.links.put(LINK_LOCAL, key, LINK_REMOTE, found)
            self._known[key] = found
        return found

    def close(self) -> None:
        self.gateway.close()
