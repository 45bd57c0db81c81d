"""A tenant's webhook endpoint, for the demo and the tests.

It checks each request's Relais signature, counts deliveries by
``Idempotency-Key`` (what a careful receiver de-duplicates on), and can answer
with injected failures so retries are exercised. An endpoint without a known
signing secret answers 404; ``PUT /__sandbox__/secrets/<endpoint path>`` with the
secret as body teaches it one (``relais sandbox``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class BackloggedHTTPServer(ThreadingHTTPServer):
    """A listen backlog like a real web server's: socketserver's default of 5 drops
    connections beyond it, and the client's TCP retry (1 s) then exceeds a webhook's
    short timeout when a batch opens 16 connections at once on a loaded machine."""

    request_queue_size = 128



def verify(
    secret: str, timestamp: str, body: bytes, signature: str, tolerance: float = 300
) -> bool:
    """A Relais webhook signature as the README documents it for receivers (written from
    that text, not from the sender's code): ``Relais-Signature: v1=<hex>``, hex of
    HMAC-SHA256(secret, ``"{timestamp}.{body}"``), ``Relais-Timestamp`` within five
    minutes."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= tolerance
    except ValueError:
        return False
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return fresh and hmac.compare_digest("v1=" + digest.hexdigest(), signature)

SECRETS_PATH = "/__sandbox__/secrets"  # PUT here + endpoint path: teach it a signing secret


@dataclass
class Received:
    key: str
    path: str
    payload: dict[str, Any]


@dataclass
class WebhookReceiver:
    """``secrets`` maps a path such as ``/hooks/t/conn`` to its signing secret.

    ``fail_first`` is the share of keys whose first attempt gets a 503.
    """

    secrets: dict[str, str] = field(default_factory=dict)
    fail_first: float = 0.0
    status_override: int | None = None
    latency: float = 0.0  # seconds to wait before answering, like a slow endpoint
    seed: int = 7
    first: dict[str, Received] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    rejected_signatures: int = 0
    failures_sent: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)  # noqa: S311 - test fault injection
        self._server: ThreadingHTTPServer | None = None

    @property
    def unique(self) -> int:
        return len(self.first)

    def landed(self) -> Counter[str]:
        """Records per idempotency key, as a careful receiver stores them: one."""
        return Counter(dict.fromkeys(self.first, 1))

    @property
    def duplicates(self) -> int:
        """Repeated posts of one key: allowed (at-least-once), never a second record."""
        return sum(self.hits.values()) - len(self.hits)

    def handle(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        secret = self.secrets.get(path)
        if secret is None:
            return 404, {"error": f"no endpoint {path}"}
        if not verify(
            secret, headers.get("Relais-Timestamp", ""), body, headers.get("Relais-Signature", "")
        ):
            with self._lock:
                self.rejected_signatures += 1
            return 401, {"error": "bad signature"}
        key = headers.get("Idempotency-Key", "")
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            if self.status_override:
                return self.status_override, {"error": "configured failure"}
            seen = key in self.hits
            if not seen and self._rng.random() < self.fail_first:
                self.hits[key] += 0  # remember the key without counting a delivery
                self.failures_sent += 1
                return 503, {"error": "temporarily unavailable"}
            self.hits[key] += 1
            if key not in self.first:
                self.first[key] = Received(key, path, json.loads(body))
        return 200, {"id": f"rcv-{key[-12:]}", "duplicate": key in self.first and seen}

    def start(self, port: int = 0) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes: without this, Nagle plus the
            # client's delayed ACK stalls every keep-alive response by ~40 ms.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - stdlib naming
                length = int(self.headers.get("Content-Length", 0))
                status, answer = receiver.handle(self.path, self.headers, self.rfile.read(length))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:  # noqa: N802 - stdlib naming
                # PUT /__sandbox__/secrets/hooks/t/conn, body: that endpoint's signing secret
                length = int(self.headers.get("Content-Length", 0))
                secret = self.rfile.read(length).decode().strip()
                path = self.path.removeprefix(SECRETS_PATH)
                ok = self.path.startswith(SECRETS_PATH + "/") and bool(secret)
                if ok:
                    receiver.secrets[path] = secret
                self.send_response(204 if ok else 400)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:  # bodies never reach logs
                pass

        self._server = BackloggedHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
