"""Replays inside the signature window are refused (remembered in the shared
store, so a second API process refuses them too)."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient
from test_calendar_sync import hs, signed  # noqa: F401  (fixture)

from connectors.sms import sign_webhook
from relais.api import create_app
from sandbox.testing import hubspot_emulator, hubspot_server  # noqa: F401  (fixtures)
from sync.pull_triggers import PullTriggers
from sync.settings import reset_settings


def test_the_same_hubspot_signature_twice_is_refused(hs):  # noqa: F811
    pulled: list[str] = []
    triggers = PullTriggers(contacts=pulled.append)
    body = json.dumps([{"eventId": 1, "subscriptionType": "contact.creation", "objectId": 1,
                        "portalId": 62515, "occurredAt": int(time.time() * 1000)}]).encode()
    headers = signed(body, "http://testserver/v1/webhooks/hubspot")
    first = TestClient(create_app(triggers)).post("/v1/webhooks/hubspot", content=body,
                                                headers=headers)
    assert first.status_code == 200, first.text
    again = TestClient(create_app(triggers)).post("/v1/webhooks/hubspot", content=body,
                                                headers=headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "replayed"
    assert len(pulled) == 1
    later = signed(body, "http://testserver/v1/webhooks/hubspot", at=time.time() + 1)
    assert TestClient(create_app(triggers)).post("/v1/webhooks/hubspot", content=body,
                                         headers=later).status_code == 200


def test_the_same_sms_nonce_twice_is_refused(env, monkeypatch):
    monkeypatch.setenv("RELAIS_SMS_WEBHOOK_SECRET", "sms-secret")
    reset_settings()
    body = json.dumps({"type": "mo_text", "id": "01X", "from": "33612345678",
                       "to": "RelaisDesk", "body": "bonjour"}).encode()

    def headers(nonce: str) -> dict[str, str]:
        now = str(int(time.time()))
        return {"x-sinch-webhook-signature-nonce": nonce,
                "x-sinch-webhook-signature-timestamp": now,
                "x-sinch-webhook-signature-algorithm": "HmacSHA256",
                "x-sinch-webhook-signature": sign_webhook("sms-secret", body, nonce, now),
                "content-type": "application/json"}

    first = headers("nonce-1")
    assert TestClient(create_app()).post("/v1/webhooks/sms", content=body,
                                         headers=first).status_code == 200
    again = TestClient(create_app()).post("/v1/webhooks/sms", content=body, headers=first)
    assert again.status_code == 409 and again.json()["error"]["code"] == "replayed"
    assert TestClient(create_app()).post("/v1/webhooks/sms", content=body,
                                         headers=headers("nonce-2")).status_code == 200


def test_a_google_notification_without_a_message_number_is_refused(env):
    client = TestClient(create_app())
    for number in (None, "", "0", "abc", "9" * 40):
        headers = {"X-Goog-Channel-ID": "ch-1", "X-Goog-Channel-Token": "t",
                   "X-Goog-Resource-State": "exists", "X-Goog-Resource-ID": "r"}
        if number is not None:
            headers["X-Goog-Message-Number"] = number
        answer = client.post("/v1/webhooks/google", headers=headers)
        assert answer.status_code == 400, (number, answer.text)
        assert answer.json()["error"]["details"][0]["field"] == "X-Goog-Message-Number"
