"""Webhook destination: the message as signed JSON, POSTed to the tenant's URL.

Signature (documented in the README): header ``Relais-Signature: v1=<hex>``
where ``<hex>`` is HMAC-SHA256(secret, ``f"{timestamp}.{body}"``) and
``timestamp`` is the ``Relais-Timestamp`` header (Unix seconds). Receivers
should reject timestamps older than five minutes and de-duplicate on
``Idempotency-Key``, which is stable across retries of one delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from typing import ClassVar

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from connectors.base import (
    ConnectionInfo,
    DeliveryRequest,
    DeliveryResult,
    Rejected,
    Runtime,
    deliver_concurrently,
    deliver_each,
)
from connectors.http import error_for_exception, error_for_status, make_client
from connectors.netguard import InternalAddress

USER_AGENT = "Relais-Webhook/1"
# Requests of one batch in flight at once: a receiver answering in 100 ms gets
# ~100 messages/s from one worker process instead of ~10, without a flood.
DEFAULT_CONCURRENCY = 16


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + digest.hexdigest()


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, tolerance: float = 300
) -> bool:
    """Receiver side, used by the demo receiver and our tests."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= tolerance
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookConnector:
    provider: ClassVar[str] = "webhook"
    linger_seconds: ClassVar[float] = 0.0  # each message leaves at once

    def __init__(self, info: ConnectionInfo, runtime: Runtime | None = None) -> None:
        self.info = info
        self.url: str = info.settings["url"]
        self.secret: str = info.credentials.get("signing_secret", "")
        timeout = float(info.settings.get("timeout_seconds", 10))
        headers = {"User-Agent": USER_AGENT, **info.settings.get("headers", {})}
        # ``ordered``: the tenant's receiver needs messages in the order taken, so
        # a batch goes one request at a time, in claim order.
        self.ordered = bool(info.settings.get("ordered", False))
        self.concurrency = int(info.settings.get("concurrency", DEFAULT_CONCURRENCY))
        runtime = runtime or Runtime()
        # httpx pools up to 100 connections; each connect re-checks the address.
        self.client = make_client(timeout, headers, guarded=not runtime.internal_urls)
        self.report = runtime.report

    def deliver(self, batch: Sequence[DeliveryRequest]) -> list[DeliveryResult]:
        """One POST per request: up to ``concurrency`` at once, or one at a time
        when ``ordered``. Results are reported to the engine as they land."""
        if self.ordered:
            return deliver_each(batch, self._deliver_one, self.report, ordered=True)
        return deliver_concurrently(batch, self._deliver_one, self.concurrency, self.report)

    def _deliver_one(self, request: DeliveryRequest) -> DeliveryResult:
        body = json.dumps(request.payload, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": request.idempotency_key,
            "Relais-Delivery-Id": request.delivery_id,
            "Relais-Event": request.action,
            "Relais-Attempt": str(request.attempt),
            "Relais-Timestamp": timestamp,
            "Relais-Signature": sign(self.secret, timestamp, body),
        }
        what = f"webhook {self.info.name}"
        try:
            response = self._post(body, headers)
        except httpx.HTTPError as exc:
            return DeliveryResult(request.delivery_id, error=error_for_exception(exc, what))
        except InternalAddress as exc:  # nothing was sent; replay once the URL is fixed
            return DeliveryResult(request.delivery_id, error=Rejected(
                f"{what} points inside the network: {exc} (an operator may allow "
                "internal addresses with RELAIS_ALLOW_PRIVATE_URLS=1)"))
        if response.is_success:
            return DeliveryResult(request.delivery_id, external_id=_receipt(response))
        return DeliveryResult(request.delivery_id, error=error_for_status(response, what))

    # A refused connection never reached the receiver: retrying it at once is
    # safe and cheap. Anything that may have been received waits for the next
    # attempt, which carries the same Idempotency-Key.
    @retry(
        retry=retry_if_exception_type(httpx.ConnectError),
        wait=wait_random_exponential(multiplier=0.1, max=1.0),
        stop=stop_after_attempt(3),
        reraise=True,
    )
    def _post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.client.post(self.url, content=body, headers=headers)

    def close(self) -> None:
        self.client.close()


def _receipt(response: httpx.Response) -> str | None:
    """The receiver's id for what it stored, if it says one."""
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return str(value)[:200] if value is not None else None


