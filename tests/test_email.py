"""Email connector against the SMTP sandbox (real sockets, TLS from the sandbox CA)."""

from __future__ import annotations

import base64
import socket

import pytest
from sandbox_connections import email_connection

from connectors.base import ConnectionInfo, DeliveryRequest, Rejected, TransientError
from connectors.email import EmailConnector, build_message, message_id_for
from connectors.registry import build_connector
from sandbox.smtp import SmtpSandbox
from sandbox.testing import (  # noqa: F401
    smtp_sandbox,
    smtp_server,
    smtps_sandbox,
    smtps_server,
)

HTML = "<p>Rappeler <b>Mme Martin</b></p>"


def request(n: int = 1, *, to: list[str] | None = None, html: str | None = HTML,
            attempt: int = 1, key: str | None = None) -> DeliveryRequest:
    return DeliveryRequest(
        delivery_id=f"dlv_{n}",
        idempotency_key=key or f"relais-dlv_{n}",
        action="message.created",
        payload={"email": {
            "to": to or ["dr.durand@cabinet.test"],
            "subject": f"Appel urgent n°{n}",
            "text": f"Rappeler Mme Martin au 06 12 34 56 78 (message {n}).",
            "html": html,
        }},
        attempt=attempt,
    )


def deliver(smtp: SmtpSandbox, *requests: DeliveryRequest, **settings: object):
    connector = build_connector(email_connection(smtp, **settings))
    try:
        return connector.deliver(list(requests)), connector
    finally:
        connector.close()


def test_starttls_auth_multipart_and_one_session_per_batch(smtp_sandbox: SmtpSandbox) -> None:
    results, connector = deliver(smtp_sandbox, request(1), request(2), request(3))
    assert [r.ok for r in results] == [True, True, True]
    assert isinstance(connector, EmailConnector) and connector.sessions == 1
    mails = smtp_sandbox.wait_for(3)
    first = mails[0]
    assert first.tls and first.auth_user == smtp_sandbox.username
    assert first.rcpt_tos == ["dr.durand@cabinet.test"]
    assert first.mail_from == "relais@relais-sandbox.test"
    message = first.message
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert first.part("plain").strip() == "Rappeler Mme Martin au 06 12 34 56 78 (message 1)."
    assert first.part("html").strip() == "<p>Rappeler <b>Mme Martin</b></p>"
    assert message["Subject"] == "Appel urgent n°1"
    assert message["Message-ID"] == "<relais-dlv_1@relais>" == results[0].external_id
    assert message["Date"] and message["From"] == "relais@relais-sandbox.test"
    assert message["To"] == "dr.durand@cabinet.test"
    assert message["Auto-Submitted"] == "auto-generated"
    assert smtp_sandbox.knobs.counters()["sessions"] == 1


def test_implicit_tls_text_only(smtps_sandbox: SmtpSandbox) -> None:
    results, _ = deliver(smtps_sandbox, request(7, html=None))
    assert results[0].ok
    mail = smtps_sandbox.wait_for(1)[0]
    assert mail.tls and mail.auth_user == smtps_sandbox.username
    assert mail.message.get_content_type() == "text/plain"
    assert mail.part("html") is None


def test_message_id_is_stable_across_a_retry(smtp_sandbox: SmtpSandbox) -> None:
    """The server stores the message then drops the connection: the client can't know."""
    smtp_sandbox.drop_after_data(store=True)
    first, _ = deliver(smtp_sandbox, request(4))
    assert isinstance(first[0].error, TransientError)
    second, _ = deliver(smtp_sandbox, request(4, attempt=2))
    assert second[0].ok
    copies = smtp_sandbox.by_message_id("<relais-dlv_4@relais>")
    assert len(copies) == 2  # at least once on the wire; receivers de-duplicate on Message-ID
    assert {c.message["Message-ID"] for c in copies} == {second[0].external_id}


def test_451_then_delivered(smtp_sandbox: SmtpSandbox) -> None:
    smtp_sandbox.fail_data(451, times=1)
    first, _ = deliver(smtp_sandbox, request(5))
    error = first[0].error
    assert isinstance(error, TransientError) and "451" in str(error)
    assert smtp_sandbox.messages == []
    second, _ = deliver(smtp_sandbox, request(5, attempt=2))
    assert second[0].ok
    assert len(smtp_sandbox.wait_for(1)) == 1


def test_550_recipient_is_rejected_by_name_and_the_batch_goes_on(
        smtp_sandbox: SmtpSandbox) -> None:
    smtp_sandbox.reject_recipient("parti@cabinet.test", 550)
    results, connector = deliver(smtp_sandbox, request(1, to=["parti@cabinet.test"]), request(2))
    error = results[0].error
    assert isinstance(error, Rejected)
    assert "parti@cabinet.test" in str(error) and "550" in str(error)
    assert results[1].ok and connector.sessions == 1  # the session survived the refusal
    assert [m.rcpt_tos for m in smtp_sandbox.wait_for(1)] == [["dr.durand@cabinet.test"]]


def test_partial_refusal_names_the_refused_and_the_delivered(smtp_sandbox: SmtpSandbox) -> None:
    smtp_sandbox.reject_recipient("parti@cabinet.test", 550)
    results, _ = deliver(smtp_sandbox,
                         request(1, to=["dr.durand@cabinet.test", "parti@cabinet.test"]))
    reason = str(results[0].error)
    assert isinstance(results[0].error, Rejected)
    assert "parti@cabinet.test (550" in reason and "delivered to the others" in reason


def test_wrong_password_is_rejected_with_a_clear_reason(smtp_sandbox: SmtpSandbox) -> None:
    results, connector = deliver_with_password(smtp_sandbox, "not-the-password",
                                               request(1), request(2))
    assert all(isinstance(r.error, Rejected) for r in results)
    reason = str(results[0].error)
    assert reason.startswith("SMTP authentication failed: fix the password")
    assert "535" in reason
    assert connector.sessions == 1  # one login attempt for the whole batch
    assert smtp_sandbox.messages == []


def deliver_with_password(smtp: SmtpSandbox, password: str, *requests: DeliveryRequest):
    connector = build_connector(email_connection(smtp, password=password))
    try:
        return connector.deliver(list(requests)), connector
    finally:
        connector.close()


def test_dropped_connection_is_transient_and_the_next_message_reconnects(
        smtp_sandbox: SmtpSandbox) -> None:
    smtp_sandbox.drop_after_data(store=False)
    results, connector = deliver(smtp_sandbox, request(1), request(2))
    assert isinstance(results[0].error, TransientError)
    assert "closed the connection" in str(results[0].error)
    assert results[1].ok and connector.sessions == 2
    assert [m.message_id for m in smtp_sandbox.wait_for(1)] == ["<relais-dlv_2@relais>"]


def test_unreachable_server_is_transient_for_the_whole_batch() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = SmtpSandbox("starttls")  # not started: only its CA is used
    info = ConnectionInfo("c", "t", "email", "email", {
        "host": "127.0.0.1", "port": port, "security": "starttls", "username": "relais",
        "from_address": "relais@relais-sandbox.test", "ca_file": smtp.ca_file,
        "timeout_seconds": 2}, {"password": "x"})
    connector = build_connector(info)
    results = connector.deliver([request(1), request(2)])
    connector.close()
    assert all(isinstance(r.error, TransientError) for r in results)
    assert "unreachable" in str(results[0].error)


def test_untrusted_certificate_is_a_configuration_error(smtp_sandbox: SmtpSandbox) -> None:
    results, _ = deliver(smtp_sandbox, request(1), ca_file=None)  # public CAs only
    assert isinstance(results[0].error, Rejected)
    assert "certificate verification failed" in str(results[0].error)


def test_no_password_over_a_clear_connection() -> None:
    with SmtpSandbox("none") as plain:
        results, _ = deliver(plain, request(1), username="relais")
        assert isinstance(results[0].error, Rejected)
        assert "without TLS" in str(results[0].error)
        ok, _ = deliver(plain, request(2))  # a local relay without AUTH is fine
        assert ok[0].ok and not plain.wait_for(1)[0].tls


def test_attachments_make_a_mixed_message_with_the_bytes_as_given(
        smtp_sandbox: SmtpSandbox) -> None:
    pdf = b"%PDF-1.7\n\x00\xff binary body\n%%EOF\n"
    sent = request(9)
    sent.payload["email"]["attachments"] = [
        {"filename": "rapport-acme-mois-2026-10.pdf", "content_type": "application/pdf",
         "data_base64": base64.b64encode(pdf).decode()}]
    results, _ = deliver(smtp_sandbox, sent)
    assert results[0].ok
    message = smtp_sandbox.wait_for(1)[0].message
    assert message.get_content_type() == "multipart/mixed"
    body, attached = message.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in body.iter_parts()] == ["text/plain", "text/html"]
    assert attached.get_content_type() == "application/pdf"
    assert attached.get_content_disposition() == "attachment"
    assert attached.get_filename() == "rapport-acme-mois-2026-10.pdf"
    assert attached.get_content() == pdf


def test_malformed_attachments_are_rejected() -> None:
    def build(attachments: object) -> None:
        build_message({"email": {"to": ["a@b.test"], "subject": "s", "text": "t",
                                 "attachments": attachments}},
                      idempotency_key="k", from_address="a@b.test")

    good = {"filename": "r.pdf", "content_type": "application/pdf", "data_base64": "JVBERg=="}
    build([good])
    with pytest.raises(Rejected, match="must be a list"):
        build(good)
    with pytest.raises(Rejected, match=r"attachments\[0\]\.filename"):
        build([{**good, "filename": "../etc/passwd"}])
    with pytest.raises(Rejected, match=r"attachments\[0\]\.content_type"):
        build([{**good, "content_type": "pdf"}])
    with pytest.raises(Rejected, match="not base64"):
        build([{**good, "data_base64": "pas du base64 !"}])


def test_payload_contract_errors_are_rejected() -> None:
    with pytest.raises(Rejected, match="no 'email' section"):
        build_message({}, idempotency_key="k", from_address="a@b.test")
    with pytest.raises(Rejected, match="invalid address"):
        build_message({"email": {"to": ["pas-une-adresse"], "subject": "s", "text": "t"}},
                      idempotency_key="k", from_address="a@b.test")
    with pytest.raises(Rejected, match="'text'"):
        build_message({"email": {"to": ["a@b.test"], "subject": "s"}},
                      idempotency_key="k", from_address="a@b.test")


def test_message_id_derivation() -> None:
    assert message_id_for("relais-dlv_123") == "<relais-dlv_123@relais>"
    odd = message_id_for("clé avec espaces")
    assert odd == message_id_for("clé avec espaces") and " " not in odd
    assert odd.startswith("<k") and odd.endswith("@relais>")
