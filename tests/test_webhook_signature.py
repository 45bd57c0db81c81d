"""The outgoing webhook signature, pinned to the format the README documents for
receivers: ``Relais-Signature: v1=<hex>`` with ``<hex>`` = HMAC-SHA256(secret,
``"{timestamp}.{body}"``). The expected values are computed here with ``hmac``
and ``hashlib`` (and the literal was cross-checked with ``openssl dgst -sha256
-hmac``), never with our ``sign()``: a change of format fails here even if the
receiver in the sandbox were changed the same way."""

from __future__ import annotations

import hashlib
import hmac
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from connectors.base import ConnectionInfo, DeliveryRequest, Runtime
from connectors.webhook import WebhookConnector, sign

SECRET = "whsec_5WbX2kq9"
TIMESTAMP = "1764669600"
BODY = b'{"event":"message.created","id":"msg_1"}'
# printf '%s' '1764669600.{"event":"message.created","id":"msg_1"}' \
#   | openssl dgst -sha256 -hmac whsec_5WbX2kq9
VECTOR = "v1=ac625ff3328e1aaa9d537c46b5f965c76a760ec46d79a0e0e2a91cb80dae4eab"


def expected(secret: str, timestamp: str, body: bytes) -> str:
    """The README's formula, written independently of ``connectors.webhook.sign``."""
    message = timestamp.encode("ascii") + b"." + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def test_the_fixed_vector_is_the_documented_formula() -> None:
    assert expected(SECRET, TIMESTAMP, BODY) == VECTOR


def test_sign_matches_the_fixed_vector() -> None:
    assert sign(SECRET, TIMESTAMP, BODY) == VECTOR


def test_a_delivered_request_carries_the_documented_signature() -> None:
    """End to end: the connector's real POST, read raw off the socket."""
    seen: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - stdlib naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        info = ConnectionInfo(
            id="con_1", tenant_id="acme", name="hook", provider="webhook",
            settings={"url": f"http://127.0.0.1:{server.server_port}/hook"},
            credentials={"signing_secret": SECRET},
        )  # fmt: skip
        connector = WebhookConnector(info, Runtime(internal_urls=True))  # a local server
        try:
            [result] = connector.deliver([DeliveryRequest(
                "dlv_1", "idem-1", "message.created", {"event": "message.created", "n": "é"})])
        finally:
            connector.close()
    finally:
        server.shutdown()
        server.server_close()
    assert result.ok, result.error
    [(headers, body)] = seen
    timestamp = headers["relais-timestamp"]
    assert timestamp.isdigit()
    assert headers["relais-signature"] == expected(SECRET, timestamp, body)
    assert not hmac.compare_digest(headers["relais-signature"],
                                   expected("another-secret", timestamp, body))
