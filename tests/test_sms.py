"""SMS connector against the Sinch SMS emulator (real sockets, signed callbacks)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from sandbox_connections import sms_connection

from connectors.base import (
    DeliveryRequest,
    RateLimited,
    Rejected,
    Runtime,
    TransientError,
)
from connectors.registry import build_connector
from connectors.sms import (
    DeliveryReceipt,
    InboundSms,
    SmsConnector,
    SmsDeliveryResult,
    fit_segments,
    normalize_number,
    parse_webhook,
    sms_segments,
    verify_webhook_signature,
)
from sandbox.sms_gateway import SmsGatewayEmulator
from sandbox.testing import (  # noqa: F401
    SMS_WEBHOOK_SECRET,
    NotificationReceiver,
    notification_receiver,
    sms_gateway,
    sms_server,
)

MOBILE = "+33612345678"


class MemoryLinks:
    """The engine's link store, in memory."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str, str], str] = {}

    def get_many(self, local_type: str, local_ids: Sequence[str],
                 remote_type: str) -> dict[str, str]:
        return {i: self.data[(local_type, i, remote_type)] for i in local_ids
                if (local_type, i, remote_type) in self.data}

    def put(self, local_type: str, local_id: str, remote_type: str, remote_id: str) -> None:
        self.data[(local_type, local_id, remote_type)] = remote_id


def request(n: int = 1, *, to: str = MOBILE, text: str = "Appel urgent: rappeler Mme Martin",
            attempt: int = 1) -> DeliveryRequest:
    return DeliveryRequest(delivery_id=f"dlv_{n}", idempotency_key=f"relais-dlv_{n}",
                           action="message.created", payload={"sms": {"to": to, "text": text}},
                           attempt=attempt)


def send(gateway: SmsGatewayEmulator, *requests: DeliveryRequest, links: MemoryLinks | None = None,
         api_token: str | None = None, **settings: object) -> list:
    connector = build_connector(sms_connection(gateway, api_token=api_token, **settings),
                                Runtime(links=links or MemoryLinks()))
    try:
        return connector.deliver(list(requests))
    finally:
        connector.close()


# ---------------------------------------------------------------- segments


@pytest.mark.parametrize(("text", "expected"), [
    ("", ("GSM-7", 0)),
    ("a" * 160, ("GSM-7", 1)),
    ("a" * 161, ("GSM-7", 2)),
    ("a" * 306, ("GSM-7", 2)),
    ("a" * 307, ("GSM-7", 3)),
    ("Rendez-vous à 14h30 chez le Dr Müller, 12 € la séance", ("GSM-7", 1)),
    ("€" * 80, ("GSM-7", 1)),  # extension characters: two septets each
    ("€" * 81, ("GSM-7", 2)),
    ("{}" * 40 + "a", ("GSM-7", 2)),
    ("a" * 152 + "€", ("GSM-7", 1)),  # 154 septets fit in one SMS
    ("a" * 152 + "€" + "a" * 10, ("GSM-7", 2)),  # the escape pair moves to segment 2
    ("a" * 305 + "[", ("GSM-7", 3)),  # 307 septets, "[" can't straddle 306
    ("ç", ("UCS-2", 1)),  # only the capital Ç is in GSM-7
    ("Ça" + "a" * 158, ("GSM-7", 1)),
    ("ç" * 70, ("UCS-2", 1)),
    ("ç" * 71, ("UCS-2", 2)),
    ("ç" * 134, ("UCS-2", 2)),
    ("ç" * 135, ("UCS-2", 3)),
    ("Rappelez-moi 🙏", ("UCS-2", 1)),
    ("😀" * 35, ("UCS-2", 1)),  # 70 UTF-16 units
    ("😀" * 36, ("UCS-2", 2)),
    ("a" * 66 + "😀", ("UCS-2", 1)),  # 68 units
    ("a" * 66 + "😀" + "a" * 4, ("UCS-2", 2)),  # the surrogate pair moves to segment 2
])
def test_segments(text: str, expected: tuple[str, int]) -> None:
    assert sms_segments(text) == expected


def test_fit_segments_uses_an_ellipsis_of_the_same_encoding() -> None:
    gsm, cut = fit_segments("Rappeler " * 50, 2)
    assert cut and gsm.endswith("...") and sms_segments(gsm) == ("GSM-7", 2)
    assert len(gsm) == 306
    ucs, cut = fit_segments("Déjà rappelé ça " * 20, 1)
    assert cut and ucs.endswith("…") and sms_segments(ucs) == ("UCS-2", 1)
    same, cut = fit_segments("court", 1)
    assert (same, cut) == ("court", False)


def test_numbers() -> None:
    assert normalize_number("+33 6 12 34 56 78") == MOBILE
    assert normalize_number("06 12 34 56 78", "FR") == MOBILE
    for bad in ("06 12 34 56 78", "+33 1", "+999 123", "pas un numéro", ""):
        with pytest.raises(ValueError):
            normalize_number(bad)


# --------------------------------------------------------------- delivery


def test_send_then_signed_receipts_arrive(sms_gateway: SmsGatewayEmulator,
                                          notification_receiver: NotificationReceiver) -> None:
    sms_gateway.configure(callback_url=notification_receiver.url + "/v1/webhooks/sms")
    results = send(sms_gateway, request(1))
    result = results[0]
    assert isinstance(result, SmsDeliveryResult) and result.ok
    assert (result.encoding, result.segments, result.truncated) == ("GSM-7", 1, False)
    [sms] = sms_gateway.sent_to(MOBILE)
    assert sms.batch_id == result.external_id and sms.client_reference == "relais-dlv_1"
    assert sms.sender == "RelaisDesk" and sms.body == "Appel urgent: rappeler Mme Martin"

    posts = notification_receiver.wait_for(3)
    receipts = []
    for post in posts:
        assert verify_webhook_signature(SMS_WEBHOOK_SECRET, post.headers, post.body)
        receipts.extend(parse_webhook(post.body))
    assert [r.status for r in receipts] == ["queued", "sent", "delivered"]
    last = receipts[-1]
    assert isinstance(last, DeliveryReceipt) and last.final
    assert (last.message_id, last.client_ref, last.to) == (result.external_id, "relais-dlv_1",
                                                           MOBILE)
    assert last.provider_status == "Delivered" and last.code == 0


def test_failed_number_gets_a_final_failed_receipt(
        sms_gateway: SmsGatewayEmulator, notification_receiver: NotificationReceiver) -> None:
    sms_gateway.configure(callback_url=notification_receiver.url + "/dlr")
    sms_gateway.fail_number(MOBILE, 402)
    assert send(sms_gateway, request(1), delivery_report="per_recipient_final")[0].ok
    [post] = notification_receiver.wait_for(1)
    time.sleep(0.1)  # per_recipient_final: nothing else comes
    assert len(notification_receiver.received) == 1
    [receipt] = parse_webhook(post.body)
    assert isinstance(receipt, DeliveryReceipt)
    assert (receipt.status, receipt.code, receipt.final) == ("failed", 402, True)


def test_inbound_reply_is_signed_and_forgeries_fail(
        sms_gateway: SmsGatewayEmulator, notification_receiver: NotificationReceiver) -> None:
    sms_gateway.configure(inbound_url=notification_receiver.url + "/v1/webhooks/sms/inbound",
                          mo_client_reference=True)
    assert send(sms_gateway, request(1))[0].ok
    sms_gateway.reply(MOBILE, "OK")
    [post] = notification_receiver.wait_for(1, where=lambda r: r.path.endswith("/inbound"))
    headers, body = post.headers, post.body
    assert verify_webhook_signature(SMS_WEBHOOK_SECRET, headers, body)
    [inbound] = parse_webhook(body)
    assert isinstance(inbound, InboundSms)
    assert (inbound.from_number, inbound.text, inbound.to) == (MOBILE, "OK", "RelaisDesk")
    assert inbound.client_ref == "relais-dlv_1"
    assert inbound.received_at is not None and inbound.received_at.tzinfo is not None

    forged = json.dumps({**json.loads(body), "body": "OK, and cancel the others"}).encode()
    assert not verify_webhook_signature(SMS_WEBHOOK_SECRET, headers, forged)
    assert not verify_webhook_signature("another-secret", headers, body)
    stale = float(headers["x-sinch-webhook-signature-timestamp"]) + 3600
    assert not verify_webhook_signature(SMS_WEBHOOK_SECRET, headers, body, now=stale)
    unsigned = {k: v for k, v in headers.items() if k != "x-sinch-webhook-signature"}
    assert not verify_webhook_signature(SMS_WEBHOOK_SECRET, unsigned, body)
    upper = {k.upper(): v for k, v in headers.items()}
    assert verify_webhook_signature(SMS_WEBHOOK_SECRET, upper, body)


def test_invalid_number_is_rejected_before_any_call(sms_gateway: SmsGatewayEmulator) -> None:
    results = send(sms_gateway, request(1, to="+33 1"), request(2, to="0612345678"))
    assert all(isinstance(r.error, Rejected) for r in results)
    assert "invalid 'to'" in str(results[0].error)
    assert sms_gateway.knobs.calls() == 0
    national = send(sms_gateway, request(3, to="06 12 34 56 78"), default_region="FR")
    assert national[0].ok and len(sms_gateway.sent_to(MOBILE)) == 1


def test_too_long_is_truncated_or_rejected(sms_gateway: SmsGatewayEmulator) -> None:
    long_text = "Mme Martin a appelé pour le dossier 42. " * 20  # 800 GSM-7 characters
    [cut] = send(sms_gateway, request(1, text=long_text), max_segments=2)
    assert isinstance(cut, SmsDeliveryResult) and cut.ok and cut.truncated
    assert cut.segments == 2 and "truncated from 6 to 2" in (cut.note or "")
    [sms] = sms_gateway.sent_to(MOBILE)
    assert sms.body.endswith("...") and sms.parts == 2
    [refused] = send(sms_gateway, request(2, text=long_text), max_segments=2, overflow="reject")
    assert isinstance(refused.error, Rejected) and "6 GSM-7 segments" in str(refused.error)
    assert len(sms_gateway.messages) == 1


def test_429_is_rate_limited_until_retry_after(sms_gateway: SmsGatewayEmulator) -> None:
    sms_gateway.configure(rate_limit_per_second=1, retry_after_seconds=7)
    before = datetime.now(UTC)
    results = send(sms_gateway, request(1), request(2), request(3))
    assert results[0].ok
    limited = results[1].error
    assert isinstance(limited, RateLimited) and "too_many_requests" in str(limited)
    assert 6.5 <= (limited.reset_at - before).total_seconds() <= 8.5
    assert results[2].error is limited  # nothing more is sent after a 429
    assert len(sms_gateway.messages) == 1


def test_idempotent_resend_after_a_lost_answer(sms_gateway: SmsGatewayEmulator) -> None:
    """The gateway accepts the SMS but the answer is lost; the retry finds it."""
    sms_gateway.knobs.drop_after_write(method="POST", path="/batches$")
    [lost] = send(sms_gateway, request(1))
    assert isinstance(lost.error, TransientError)
    assert len(sms_gateway.messages) == 1  # it did go out
    links = MemoryLinks()
    [retry] = send(sms_gateway, request(1, attempt=2), links=links)
    assert retry.ok and isinstance(retry, SmsDeliveryResult) and retry.deduplicated
    assert retry.external_id == sms_gateway.messages[0].batch_id
    assert len(sms_gateway.sent_to(MOBILE)) == 1  # one SMS at the gateway
    # recorded: a replay (attempt 1 again) is answered from the link store, no call at all
    calls = sms_gateway.knobs.calls()
    [replay] = send(sms_gateway, request(1, attempt=1), links=links)
    assert replay.ok and replay.external_id == retry.external_id
    assert sms_gateway.knobs.calls() == calls and len(sms_gateway.messages) == 1


def test_same_client_ref_twice_in_a_row_sends_once(sms_gateway: SmsGatewayEmulator) -> None:
    links = MemoryLinks()
    first = send(sms_gateway, request(5), links=links)[0]
    again = send(sms_gateway, request(5, attempt=2), links=MemoryLinks())[0]  # links lost
    assert first.ok and again.ok and again.external_id == first.external_id
    assert len(sms_gateway.messages) == 1
    other = send(sms_gateway, request(6), links=links)[0]  # another delivery: a new SMS
    assert other.ok and len(sms_gateway.messages) == 2


def test_provider_errors(sms_gateway: SmsGatewayEmulator) -> None:
    sms_gateway.knobs.fail(503, times=1, method="POST")
    [down] = send(sms_gateway, request(1))
    assert isinstance(down.error, TransientError) and "503" in str(down.error)
    [token] = send(sms_gateway, request(2), api_token="not-the-token")
    assert isinstance(token.error, Rejected) and "fix the api_token" in str(token.error)
    [sender] = send(sms_gateway, request(3), **{"from": ""})  # no default originator
    assert isinstance(sender.error, Rejected)
    assert "400 syntax_constraint_violation" in str(sender.error)
    sms_gateway.knobs.hang(seconds=5, method="POST")
    [slow] = send(sms_gateway, request(4), timeout_seconds=0.3)
    assert isinstance(slow.error, TransientError) and "timed out" in str(slow.error)
    assert sms_gateway.messages == []


def test_callbacks_are_retried_when_the_endpoint_fails(
        sms_gateway: SmsGatewayEmulator, notification_receiver: NotificationReceiver) -> None:
    sms_gateway.configure(callback_url=notification_receiver.url + "/dlr",
                          callback_retry_delays=[0.05, 0.05])
    notification_receiver.status = 503
    assert send(sms_gateway, request(1), delivery_report="per_recipient_final")[0].ok
    notification_receiver.wait_for(2)
    notification_receiver.status = 202
    sms_gateway.wait_callbacks(1, kind="dlr")
    counters = sms_gateway.knobs.counters()
    assert counters["callbacks.failed"] == 2 and counters["callbacks.sent"] == 1


def test_registered_and_payload_contract(sms_gateway: SmsGatewayEmulator) -> None:
    connector = build_connector(sms_connection(sms_gateway))
    assert isinstance(connector, SmsConnector)
    connector.close()
    missing = DeliveryRequest("d", "k", "message.created", {})
    [result] = send(sms_gateway, missing)
    assert isinstance(result.error, Rejected) and "no 'sms' section" in str(result.error)
