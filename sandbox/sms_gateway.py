"""Sinch SMS REST API emulator (``/xms/v1/{service_plan_id}``), for the SMS connector.

Wire format as written down in ``docs/SMS_PROVIDER.md`` (unverified details
are settings there and here). What it honours:

* ``Authorization: Bearer <api_token>`` on every API call; a wrong token or
  service plan → 401.
* ``POST /xms/v1/{plan}/batches`` (``mt_text``): ``to`` (1..1000 MSISDNs),
  ``from`` (required unless ``default_originator``), ``body`` (1..2000
  characters), ``client_reference``, ``callback_url``, ``delivery_report``
  (``none`` | ``summary`` | ``full`` | ``per_recipient`` |
  ``per_recipient_final``), ``max_number_of_message_parts`` → 201 with the
  batch (``id`` is a 26-character ULID-like string). Validation errors → 400
  ``{"code": "syntax_invalid_parameter_format" | "syntax_constraint_violation"
  | "syntax_invalid_json", "text": ...}``.
* ``GET /xms/v1/{plan}/batches?client_reference=&start_date=&end_date=&from=&page=&page_size=``
  → ``{count, page, page_size, batches}`` (newest first, 14 days at most);
  ``GET .../batches/{id}``; ``GET .../batches/{id}/delivery_report/{msisdn}``.
* Delivery reports: per recipient ``Queued`` (code 400) → ``Dispatched`` (401)
  → ``Delivered`` (0), or ``Failed`` with the code chosen for that number
  (``fail_number``), ``receipt_delay_seconds`` apart; POSTed (JSON) to the
  batch's ``callback_url`` or the plan's ``callback_url``, as
  ``recipient_delivery_report_sms`` (per_recipient: every status;
  per_recipient_final: the last) or one ``delivery_report_sms`` (summary /
  full) at the end. A message that needs more parts than
  ``max_number_of_message_parts`` fails (code 412, unverified).
* Inbound replies: ``reply(from_number, body)`` (or ``POST
  /__sandbox__/reply``) POSTs a ``mo_text`` to ``inbound_url``.
* Every callback is signed like Sinch's HMAC callback signing when
  ``webhook_secret`` is set: ``x-sinch-webhook-signature-nonce``,
  ``-timestamp`` (Unix seconds), ``-algorithm: HmacSHA256`` and
  ``x-sinch-webhook-signature`` = base64(HMAC-SHA256(secret,
  ``body.nonce.timestamp``)). Failed callbacks (non-2xx, connection error)
  are retried after ``callback_retry_delays``.
* Rate limit: ``rate_limit_per_second`` API calls per plan per rolling second
  → 429 ``{"code": "too_many_requests", ...}`` with ``Retry-After`` (unverified).

Knobs: the shared ones (``knobs.fail(503)``, latency, drops, counters) plus
``fail_number(msisdn, code)``, ``configure(...)``. Counters: ``sms.sent``
(messages accepted), ``sms.batches``, ``sms.rate_limited``,
``callbacks.sent`` / ``callbacks.failed``, ``mo.sent``. ``messages`` lists
what was accepted; ``callbacks`` what was POSTed (url, headers, body, status).
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import itertools
import json
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import gsm0338  # noqa: F401 - registers the "gsm03.38" codec
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.knobs import ASGIApp, Clock, control_routes
from sandbox.server import Emulator

# Written from the providers' documents, not from our connector (a bug there must not be
# copied here): Sinch "Callback request signing" (HMAC-SHA256 over body.nonce.timestamp,
# base64; https://developers.sinch.com/docs/sms/api-reference/sms/tag/Webhooks) and
# 3GPP TS 23.038 / 23.040 for segments (GSM 03.38 septets, escape sequences count two;
# 160 septets or 70 UCS-2 units in one message, 153 / 67 per part of a concatenated one).


def sign_webhook(secret: str, body: bytes, nonce: str, timestamp: str) -> str:
    signed = b".".join((body, nonce.encode(), timestamp.encode()))
    return base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()


def sms_segments(text: str) -> tuple[str, int]:
    """(encoding, parts) of ``text``: GSM-7 septets when the alphabet holds every
    character, else UCS-2 code units; a two-unit character never straddles parts."""
    try:
        costs = [len(ch.encode("gsm03.38")) for ch in text]
        encoding, single, part = "GSM-7", 160, 153
    except UnicodeEncodeError:
        costs = [len(ch.encode("utf-16-be")) // 2 for ch in text]
        encoding, single, part = "UCS-2", 70, 67
    total = sum(costs)
    if total <= single:
        return encoding, 1 if total else 0
    parts, fill = 1, 0
    for cost in costs:
        if fill + cost > part:
            parts, fill = parts + 1, 0
        fill += cost
    return encoding, parts

__all__ = ["SentSms", "SmsGatewayConfig", "SmsGatewayEmulator"]

JSON_CT = "application/json"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_FINAL_STATUSES = {"Delivered", "Failed", "Rejected", "Aborted", "Expired", "Deleted", "Cancelled"}
REPORT_TYPES = ("none", "summary", "full", "per_recipient", "per_recipient_final")


@dataclass
class SmsGatewayConfig:
    service_plan_id: str = "relaissandboxplan0001"
    default_originator: str | None = None
    callback_url: str | None = None  # the plan's default delivery report URL
    inbound_url: str | None = None  # where mo_text callbacks go
    webhook_secret: str | None = None  # None: callbacks unsigned
    mo_client_reference: bool = False  # Sinch: needs account setup (opt-in)
    rate_limit_per_second: int = 0  # 0: unlimited
    retry_after_seconds: int = 1
    receipt_delay_seconds: float = 0.02
    failing_numbers: dict[str, int] = field(default_factory=dict)  # E.164 -> DLR code
    max_body_length: int = 2000
    max_recipients: int = 1000
    list_max_days: int = 14
    callback_retry_delays: list[float] = field(default_factory=lambda: [0.1, 0.5])
    callback_timeout_seconds: float = 5.0


@dataclass
class SentSms:
    """One accepted message (one recipient of a batch)."""

    batch_id: str
    to: str
    sender: str | None
    body: str
    client_reference: str | None
    encoding: str
    parts: int
    created_at: datetime
    status: str = "Queued"
    code: int = 400
    history: list[tuple[str, int, datetime]] = field(default_factory=list)


def _ulid(now: float) -> str:
    millis = int(now * 1000)
    head = "".join(_CROCKFORD[(millis >> shift) & 31] for shift in range(45, -5, -5))
    tail = "".join(secrets.choice(_CROCKFORD) for _ in range(16))
    return head + tail


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _msisdn(value: str) -> str:
    """Sinch reports MSISDNs without ``+`` (as in its tutorials' output; unverified)."""
    return value[1:] if value.startswith("+") else value


class _Invalid(Exception):
    def __init__(self, code: str, text: str, status: int = 400) -> None:
        super().__init__(text)
        self.code, self.text, self.status = code, text, status


class SmsGatewayEmulator(Emulator):
    name = "sms"
    label = "SMS gateway"
    default_tls = False

    def __init__(self, *, config: SmsGatewayConfig | None = None, clock: Clock | None = None,
                 api_token: str | None = None) -> None:
        super().__init__(clock=clock)
        self.config = config or SmsGatewayConfig()
        self.api_token = api_token or secrets.token_hex(16)
        self._events: list[tuple[float, int, str, tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition(self.lock)
        self._dispatcher: threading.Thread | None = None
        self._stopping = False
        self._hits: deque[float] = deque()
        self._generation = 0
        self.reset_data()

    # ------------------------------------------------------------ lifecycle
    def start(self, **kwargs: Any) -> Self:
        super().start(**kwargs)
        with self.lock:
            self._stopping = False
        self._http = httpx.Client(timeout=self.config.callback_timeout_seconds)
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="sandbox-sms-dlr",
                                            daemon=True)
        self._dispatcher.start()
        return self

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._dispatcher is not None:
            self._dispatcher.join(5)
            self._dispatcher = None
            self._http.close()
        super().stop()

    def reset_data(self) -> None:
        self.batches: dict[str, dict[str, Any]] = {}
        self.messages: list[SentSms] = []
        self.inbounds: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []
        self._events = []
        self._hits = deque()
        self._generation = getattr(self, "_generation", 0) + 1  # in-flight callbacks: ignored

    # --------------------------------------------------------------- public
    def credentials(self) -> dict[str, Any]:
        return {"api_token": self.api_token, "webhook_secret": self.config.webhook_secret}

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The SMS connector's connection settings for this emulator."""
        settings: dict[str, Any] = {
            "gateway": "sinch",
            "base_url": self.url,
            "service_plan_id": self.config.service_plan_id,
            "from": "RelaisDesk",
            "timeout_seconds": 5,
        }
        settings.update(overrides)
        return settings


    def fail_number(self, msisdn: str, code: int = 402) -> None:
        """Messages to ``msisdn`` end ``Failed`` with ``code`` (402: unroutable, unverified)."""
        with self.lock:
            self.config.failing_numbers[msisdn] = code

    def sent_to(self, msisdn: str) -> list[SentSms]:
        with self.lock:
            return [m for m in self.messages if m.to == msisdn]

    def reply(self, from_number: str, body: str, to: str | None = None) -> dict[str, Any]:
        """Simulate a phone answering: a signed ``mo_text`` POSTed to ``inbound_url``."""
        with self.lock:
            last = next((m for m in reversed(self.messages) if m.to == from_number), None)
            recipient = to or (last.sender if last and last.sender else None) \
                or self.config.default_originator or "RelaisDesk"
            now = self.clock.now()
            mo: dict[str, Any] = {
                "type": "mo_text",
                "id": _ulid(self.clock.time()),
                "from": _msisdn(from_number),
                "to": _msisdn(recipient),
                "body": body,
                "received_at": _iso(now),
                "operator_id": "20801",
            }
            if self.config.mo_client_reference and last and last.client_reference:
                mo["client_reference"] = last.client_reference
            self.inbounds.append(mo)
            url = self.config.inbound_url
            if url:
                self._schedule(0.0, "post", (url, mo, "mo"))
        return mo

    def wait_callbacks(self, count: int, *, timeout: float = 5.0, kind: str | None = None
                       ) -> list[dict[str, Any]]:
        """Block until ``count`` callbacks (of ``kind``: dlr | mo) were POSTed successfully."""
        deadline = time.monotonic() + timeout
        with self._wake:
            while True:
                done = [c for c in self.callbacks
                        if c["ok"] and (kind is None or c["kind"] == kind)]
                if len(done) >= count:
                    return done
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"expected {count} callback(s), got {len(done)}")
                self._wake.wait(min(left, 0.05))

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"batches": list(self.batches.values()), "inbounds": list(self.inbounds),
                    "messages": [{**asdict(m), "created_at": _iso(m.created_at), "history": [
                        (s, c, _iso(t)) for s, c, t in m.history]} for m in self.messages]}

    def fault_response(self, status: int) -> tuple[int, dict[str, str], bytes]:
        code = {400: "syntax_invalid_parameter_format", 401: "unauthorized",
                403: "forbidden", 404: "not_found", 429: "too_many_requests"}.get(
            status, "internal_error" if status >= 500 else "error")
        headers = {"content-type": JSON_CT}
        if status == 429:
            headers["Retry-After"] = str(self.config.retry_after_seconds)
        body = json.dumps({"code": code, "text": f"sandbox injected {status}"}).encode()
        return status, headers, body

    def control_routes(self) -> list[BaseRoute]:
        def fail_number(data: dict[str, Any], request: Request) -> dict[str, Any]:
            self.fail_number(data["number"], int(data.get("code", 402)))
            return {"failing_numbers": self.config.failing_numbers}

        return control_routes({
            "/reply": ("POST", lambda data, request: self.reply(
                data["from"], data.get("body", ""), data.get("to"))),
            "/credentials": ("GET", lambda data, request: self.credentials()),
            "/fail_number": ("POST", fail_number),
        })

    # ------------------------------------------------------------------ API
    def build_app(self) -> ASGIApp:
        base = "/xms/v1/{plan}"
        return Starlette(routes=[
            Route(base + "/batches", self._batches, methods=["GET", "POST"]),
            Route(base + "/batches/{batch_id}", self._batch, methods=["GET"]),
            Route(base + "/batches/{batch_id}/delivery_report/{msisdn}", self._recipient_report,
                  methods=["GET"]),
        ])

    def _error(self, status: int, code: str, text: str,
               headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"code": code, "text": text}, status_code=status, headers=headers)

    def _gate(self, request: Request) -> JSONResponse | None:
        """Auth and rate limit, in Sinch's order (unverified: auth first)."""
        token = request.headers.get("authorization", "")
        if (request.path_params["plan"] != self.config.service_plan_id
                or not secrets.compare_digest(token, f"Bearer {self.api_token}")):
            return self._error(401, "unauthorized", "Invalid credentials or service plan")
        limit = self.config.rate_limit_per_second
        if limit:
            now = time.monotonic()
            with self.lock:
                while self._hits and now - self._hits[0] >= 1.0:
                    self._hits.popleft()
                if len(self._hits) >= limit:
                    self.knobs.count("sms.rate_limited")
                    return self._error(429, "too_many_requests",
                                       f"Too many requests: {limit} per second allowed",
                                       {"Retry-After": str(self.config.retry_after_seconds)})
                self._hits.append(now)
        return None

    async def _batches(self, request: Request) -> Response:
        refused = self._gate(request)
        if refused is not None:
            return refused
        if request.method == "GET":
            return self._list(request)
        raw = await request.body()
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            return self._error(400, "syntax_invalid_json", f"The JSON structure is invalid: {exc}")
        try:
            batch = self._create(data)
        except _Invalid as exc:
            return self._error(exc.status, exc.code, exc.text)
        return JSONResponse(batch, status_code=201)

    def _create(self, data: dict[str, Any]) -> dict[str, Any]:
        config = self.config
        kind = data.get("type", "mt_text")
        if kind != "mt_text":
            raise _Invalid("syntax_constraint_violation", f"type {kind!r} is not emulated")
        to = data.get("to")
        if not isinstance(to, list) or not to:
            raise _Invalid("syntax_constraint_violation", "to: must contain at least 1 element")
        if len(to) > config.max_recipients:
            raise _Invalid("syntax_constraint_violation",
                           f"to: at most {config.max_recipients} recipients")
        for number in to:
            digits = str(number)[1:] if str(number).startswith("+") else str(number)
            if not (isinstance(number, str) and digits.isdigit() and 7 <= len(digits) <= 15
                    and not digits.startswith("0")):
                raise _Invalid("syntax_invalid_parameter_format",
                               f"Invalid MSISDN format: {number!r}")
        body = data.get("body")
        if not isinstance(body, str) or not body:
            raise _Invalid("syntax_constraint_violation", "body: must not be empty")
        if len(body) > config.max_body_length:
            raise _Invalid("syntax_constraint_violation",
                           f"body: at most {config.max_body_length} characters")
        sender = data.get("from") or config.default_originator
        if not sender:
            raise _Invalid("syntax_constraint_violation", "from: must be set "
                           "(no default originator on this service plan)")
        report = data.get("delivery_report", "none")
        if report not in REPORT_TYPES:
            raise _Invalid("syntax_invalid_parameter_format",
                           f"delivery_report: unknown value {report!r}")
        max_parts = data.get("max_number_of_message_parts")
        if max_parts is not None and (not isinstance(max_parts, int) or max_parts < 1):
            raise _Invalid("syntax_invalid_parameter_format",
                           "max_number_of_message_parts: must be a positive integer")
        client_ref = data.get("client_reference")
        encoding, parts = sms_segments(body)
        with self.lock:
            now = self.clock.now()
            batch_id = _ulid(self.clock.time())
            batch: dict[str, Any] = {
                "id": batch_id,
                "to": list(to),
                "from": sender,
                "canceled": False,
                "body": body,
                "type": "mt_text",
                "created_at": _iso(now),
                "modified_at": _iso(now),
                "delivery_report": report,
                "expire_at": _iso(now + timedelta(days=3)),
                "flash_message": False,
            }
            if client_ref is not None:
                batch["client_reference"] = client_ref
            if data.get("callback_url"):
                batch["callback_url"] = data["callback_url"]
            if max_parts is not None:
                batch["max_number_of_message_parts"] = max_parts
            self.batches[batch_id] = batch
            self.knobs.count("sms.batches")
            delay = config.receipt_delay_seconds
            for number in to:
                e164 = number if number.startswith("+") else "+" + number
                sms = SentSms(batch_id, e164, sender, body, client_ref, encoding, parts, now)
                sms.history.append(("Queued", 400, now))
                self.messages.append(sms)
                self.knobs.count("sms.sent")
                if max_parts is not None and parts > max_parts:
                    final = ("Failed", 412)  # too many parts (code unverified)
                elif e164 in config.failing_numbers:
                    final = ("Failed", int(config.failing_numbers[e164]))
                else:
                    final = ("Delivered", 0)
                self._schedule(delay, "status", (batch_id, e164, "Queued", 400))
                if final[0] == "Delivered":
                    self._schedule(2 * delay, "status", (batch_id, e164, "Dispatched", 401))
                self._schedule(3 * delay, "status", (batch_id, e164, *final))
        return dict(batch)

    def _list(self, request: Request) -> Response:
        q = request.query_params
        try:
            page = int(q.get("page", 0))
            size = min(100, max(1, int(q.get("page_size", 30))))
        except ValueError:
            return self._error(400, "syntax_invalid_parameter_format", "page/page_size")
        now = self.clock.now()
        start = _parse(q.get("start_date")) or now - timedelta(hours=24)
        start = max(start, now - timedelta(days=self.config.list_max_days))
        end = _parse(q.get("end_date"))
        senders = set(filter(None, (q.get("from") or "").split(",")))
        ref = q.get("client_reference")
        with self.lock:
            hits = [b for b in self.batches.values()
                    if _parse(b["created_at"]) >= start  # type: ignore[operator]
                    and (end is None or _parse(b["created_at"]) < end)  # type: ignore[operator]
                    and (not senders or b["from"] in senders)
                    and (ref is None or b.get("client_reference") == ref)]
        hits.sort(key=lambda b: b["created_at"], reverse=True)
        chunk = hits[page * size:(page + 1) * size]
        return JSONResponse({"count": len(hits), "page": page, "page_size": len(chunk),
                             "batches": chunk})

    async def _batch(self, request: Request) -> Response:
        refused = self._gate(request)
        if refused is not None:
            return refused
        with self.lock:
            batch = self.batches.get(request.path_params["batch_id"])
        if batch is None:
            return self._error(404, "not_found", "Batch not found")
        return JSONResponse(batch)

    async def _recipient_report(self, request: Request) -> Response:
        refused = self._gate(request)
        if refused is not None:
            return refused
        batch_id = request.path_params["batch_id"]
        want = _msisdn(request.path_params["msisdn"])
        with self.lock:
            sms = next((m for m in self.messages
                        if m.batch_id == batch_id and _msisdn(m.to) == want), None)
            if sms is None:
                return self._error(404, "not_found", "No delivery report for this recipient")
            return JSONResponse(self._recipient_dlr(sms, sms.status, sms.code, sms.history[-1][2]))

    # ------------------------------------------------------- delivery reports
    def _recipient_dlr(self, sms: SentSms, status: str, code: int, at: datetime
                       ) -> dict[str, Any]:
        report: dict[str, Any] = {
            "type": "recipient_delivery_report_sms",
            "batch_id": sms.batch_id,
            "recipient": _msisdn(sms.to),
            "code": code,
            "status": status,
            "at": _iso(at),
        }
        if status in ("Delivered", "Failed"):
            report["operator_status_at"] = _iso(at)
        if sms.client_reference is not None:
            report["client_reference"] = sms.client_reference
        batch = self.batches.get(sms.batch_id, {})
        if "max_number_of_message_parts" in batch:
            report["number_of_message_parts"] = sms.parts
        return report

    def _schedule(self, delay: float, kind: str, args: tuple[Any, ...]) -> None:
        """Queue a timed event (caller holds ``self.lock``)."""
        heapq.heappush(self._events, (time.monotonic() + delay, next(self._seq), kind, args))
        self._wake.notify_all()

    def _dispatch_loop(self) -> None:
        while True:
            with self._wake:
                while True:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    if self._events and self._events[0][0] <= now:
                        _, _, kind, args = heapq.heappop(self._events)
                        break
                    wait = self._events[0][0] - now if self._events else 0.5
                    self._wake.wait(min(wait, 0.5))
                generation = self._generation
                if kind == "status":
                    post = self._apply_status(*args)
                else:
                    post = args
            if post is not None:
                self._post(*post, generation=generation)

    def _apply_status(self, batch_id: str, to: str, status: str, code: int
                      ) -> tuple[str, dict[str, Any], str, int] | None:
        """Record a status; the callback to send, if the batch asked for one."""
        sms = next((m for m in self.messages if m.batch_id == batch_id and m.to == to), None)
        batch = self.batches.get(batch_id)
        if sms is None or batch is None:
            return None  # wiped by a reset meanwhile
        at = self.clock.now()
        if status != "Queued":  # Queued was recorded at creation
            sms.status, sms.code = status, code
            sms.history.append((status, code, at))
        url = batch.get("callback_url") or self.config.callback_url
        report = batch["delivery_report"]
        if not url or report == "none":
            return None
        final = status in _FINAL_STATUSES
        if report == "per_recipient" or (report == "per_recipient_final" and final):
            return url, self._recipient_dlr(sms, status, code, at), "dlr", 0
        if report in ("summary", "full") and final:
            group = [m for m in self.messages if m.batch_id == batch_id]
            if all(m.status in _FINAL_STATUSES for m in group):
                return url, self._batch_dlr(batch, group, full=report == "full"), "dlr", 0
        return None

    def _batch_dlr(self, batch: dict[str, Any], group: list[SentSms], full: bool
                   ) -> dict[str, Any]:
        statuses: dict[tuple[str, int], list[str]] = {}
        for m in group:
            statuses.setdefault((m.status, m.code), []).append(_msisdn(m.to))
        report: dict[str, Any] = {
            "type": "delivery_report_sms",
            "batch_id": batch["id"],
            "total_message_count": len(group),
            "statuses": [
                {"code": code, "status": status, "count": len(who),
                 **({"recipients": who} if full else {})}
                for (status, code), who in statuses.items()
            ],
        }
        if "client_reference" in batch:
            report["client_reference"] = batch["client_reference"]
        return report

    def _post(self, url: str, payload: dict[str, Any], kind: str, attempt: int = 0, *,
              generation: int = 0) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"content-type": JSON_CT, "user-agent": "Sinch-SMS-Sandbox/1"}
        secret = self.config.webhook_secret
        if secret:
            nonce = uuid.uuid4().hex
            stamp = str(int(self.clock.time()))
            headers.update({
                "x-sinch-webhook-signature-nonce": nonce,
                "x-sinch-webhook-signature-timestamp": stamp,
                "x-sinch-webhook-signature-algorithm": "HmacSHA256",
                "x-sinch-webhook-signature": sign_webhook(secret, body, nonce, stamp),
            })
        try:
            status: int | str = self._http.post(url, content=body, headers=headers).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        ok = isinstance(status, int) and 200 <= status < 300
        with self._wake:
            if generation != self._generation:
                return  # the emulator was reset meanwhile
            self.callbacks.append({"url": url, "kind": kind, "payload": payload, "body": body,
                                   "headers": headers, "status": status, "ok": ok,
                                   "attempt": attempt + 1})
            self.knobs.count("callbacks.sent" if ok else "callbacks.failed")
            if kind == "mo" and ok:
                self.knobs.count("mo.sent")
            # Sinch retries 5xx and 429 (and unreachable endpoints); other 4xx are final
            retry = not ok and (not isinstance(status, int) or status >= 500 or status == 429)
            delays = self.config.callback_retry_delays
            if retry and attempt < len(delays) and not self._stopping:
                heapq.heappush(self._events, (time.monotonic() + delays[attempt],
                                              next(self._seq), "post",
                                              (url, payload, kind, attempt + 1)))
            self._wake.notify_all()


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
