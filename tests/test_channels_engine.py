"""Email and SMS through the engine: Relais's own senders as system connections,
templates rendered at send time, sensitive mode, signed links, explain."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from channels_helpers import (
    SECRET_BODY,
    VET,
    accept,
    deliver_all,
    deliveries_of,
    escalation_of,
    setup_vet,
    utc,
)
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from relais.api import create_app
from relais.auth import create_key
from relais.cli import app as cli
from sandbox.testing import sms_gateway, sms_server, smtp_sandbox, smtp_server  # noqa: F401
from sync.escalation import run_step
from sync.signed_links import BadLink, sign, verify
from sync.store.db import session_scope
from sync.store.models import Connection
from sync.tenants import apply_config

# Every form the caller's details could take in what leaves Relais.
LEAKS = [SECRET_BODY, "Rex", "chocolat", "Jeanne", "Dupont", "j.dupont", "Rappel urgent",
         "+33612345678", "33612345678", "06 12 34 56 78", "0612345678", "6 12 34 56 78",
         "Dossier patient"]


T0 = utc(2026, 11, 25, 9, 0)


@pytest.fixture
def vet(env, monkeypatch, smtp_sandbox, sms_gateway):
    setup_vet(monkeypatch, env, smtp_sandbox, sms_gateway)


def assert_no_leak(raw: bytes | str) -> None:
    """No secret as a word of its own: a signed link's random signature may hold "Rex"
    by chance (it did once in CI: ...SpuesRexDzyr...), which is no leak."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    for secret in LEAKS:
        found = re.search(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", text)
        assert found is None, f"{secret!r} leaked"


def assert_mail_no_leak(mail) -> None:
    """The raw bytes (readable: the notice's link shows in them) and every decoded part."""
    assert b"/v1/" in mail.raw  # not an opaque transfer encoding: the check below bites
    assert_no_leak(mail.raw)
    for part in (mail.part("plain"), mail.part("html"), str(mail.message["Subject"])):
        assert_no_leak(part or "")


def test_system_senders_and_rendering(vet, smtp_sandbox, sms_gateway, hub_clock):
    hub_clock(T0, ticking=True)  # a Wednesday morning: the rotation names +33611111111
    message_id, ids, _ = accept("urgence", body="Fuite au sous-sol")
    rows = deliveries_of(message_id)
    assert [(r.action, r.params["to"]) for r in rows] == [("escalation.step", "+33611111111")]
    with session_scope(readonly=True) as session:
        names = {c.name: c.provider for c in session.scalars(
            select(Connection).where(Connection.tenant_id == "vet"))}
    assert names == {"relais-sms": "sms"}  # created on first use, per tenant
    deliver_all()
    [sms] = sms_gateway.messages
    assert "Jeanne Dupont (+33612345678) : Fuite au sous-sol" in sms.body
    assert sms.client_reference == rows[0].idempotency_key
    # the default rule: one email, the tenant's built-in template in French
    message_id, _, _ = accept("suivi")
    deliver_all()
    [mail] = smtp_sandbox.wait_for(1)
    assert mail.rcpt_tos == ["chef@vet.example"]
    assert "Appelant : Jeanne Dupont 06 12 34 56 78" in mail.part("plain")
    assert "<br>" in mail.part("html")
    # a new version of the tenant's file does not disable Relais's own senders
    with session_scope() as session:
        result = apply_config(session, VET.replace("Clinique Test", "Clinique Test 2"),
                              "vet.yaml", actor="test")
        assert result.connections_disabled == []
        statuses = {c.name: c.status for c in session.scalars(
            select(Connection).where(Connection.tenant_id == "vet"))}
    assert statuses == {"relais-email": "active", "relais-sms": "active"}


def test_sensitive_mode_never_leaks(vet, smtp_sandbox, sms_gateway):
    message_id, ids, _ = accept("dossier")
    rows = deliveries_of(message_id)
    assert [(r.params["kind"], r.params["to"], r.params["redact"]) for r in rows] == [
        ("email", "jean@vet.example", True), ("sms", "+33611111111", True)]
    deliver_all()
    [mail] = smtp_sandbox.wait_for(1)
    [sms] = sms_gateway.messages
    assert_mail_no_leak(mail)
    assert_no_leak(sms.body)
    for sent in sms_gateway.batches.values():
        assert_no_leak(repr(sent))
    text = mail.part("plain")
    assert text.startswith("Nouveau message pour vous (urgence : normal).")
    assert mail.message["Subject"] == "Nouveau message (Clinique Test)"
    # the signed link opens the message, without an API key
    api = TestClient(create_app())
    for body in (text, sms.body):
        token = re.search(r"/v1/m/(\S+)", body).group(1)
        shown = api.get(f"/v1/m/{token}")
        assert shown.status_code == 200 and shown.json()["body"] == SECRET_BODY
    assert api.get(f"/v1/m/{token[:-2]}xx").status_code == 404
    assert api.get("/v1/m/garbage").status_code == 404


def test_sensitive_escalation_never_leaks(vet, smtp_sandbox, sms_gateway):
    message_id, _, _ = accept("dossier-urgent", now=T0)
    esc = escalation_of(message_id)
    for n in (1, 2, 3):
        run_step(esc.id, T0 + n * timedelta(seconds=30))
    deliver_all()
    assert len(sms_gateway.messages) == 2 and len(smtp_sandbox.wait_for(3)) == 3
    for sms in sms_gateway.messages:
        assert_no_leak(sms.body)
        assert "/v1/ack/" in sms.body and "/v1/m/" in sms.body
    for mail in smtp_sandbox.messages:
        assert_mail_no_leak(mail)


def test_links_expire_and_are_bound_to_their_kind(env):
    token = sign("m", {"t": "vet", "m": "msg_1"}, ttl=60, now=1000)
    assert verify("m", token, now=1030)["m"] == "msg_1"
    with pytest.raises(BadLink, match="expired"):
        verify("m", token, now=1061)
    with pytest.raises(BadLink, match="kind"):
        verify("ack", token, now=1030)


def test_template_failure_is_dead_lettered_with_reason(vet, smtp_sandbox):
    message_id, _, _ = accept("fragile")
    deliver_all()
    [row] = deliveries_of(message_id)
    assert row.status == "dead"
    assert row.last_error.startswith("template 'fragile' (body) failed")
    assert smtp_sandbox.messages == []


def runner_explain(*args: str):
    return CliRunner().invoke(cli, ["rules", "explain", "--tenant", "vet", *args])


def test_explain_cli(vet):
    night = runner_explain("--call-type", "urgence", "--at", "2026-12-24T21:30")
    assert night.exit_code == 0, night.output
    assert "(--at 2026-12-24T21:30 read in the tenant's zone, Europe/Paris)" in night.output
    assert "✓ urgences" in night.output
    assert "escalate astreinte (step 1: +33611111111 (jean, on call))" in night.output
    weekend = runner_explain("--call-type", "urgence", "--at", "2026-12-26T10:00+01:00")
    assert "step 1: +33622222222 (lucas, on call)" in weekend.output  # Lucas has the weekend
    assert "read in the tenant's zone" not in weekend.output
    sensitive = runner_explain("--call-type", "dossier", "--at", "2026-12-24T09:00")
    assert "sensitive" in sensitive.output and "redacted" in sensitive.output
    digest = runner_explain("--call-type", "message", "--at", "2026-12-24T09:10")
    assert "digest → chef@vet.example" in digest.output and "every 30m" in digest.output
    assert "next thu 2026-12-24 09:30" in digest.output
    default = runner_explain("--call-type", "unknown-type")
    assert default.exit_code == 2 and "unknown call type" in default.output
    bad = runner_explain("--call-type", "urgence", "--intake", "novalue")
    assert bad.exit_code == 2 and "name=value" in bad.output


def test_explain_api_full_trace(vet):
    with session_scope() as session:
        key = create_key(session, "secretary", "vet", "test")
    api = TestClient(create_app())
    answer = api.post("/v1/tenants/vet/rules/explain",
                      headers={"Authorization": f"Bearer {key}"},
                      json={"call_type": "urgence", "at": "2026-12-26T10:00:00"})
    body = answer.json()
    assert answer.status_code == 200, body
    assert body["at"] == "2026-12-26T09:00:00Z"  # naive: read in Europe/Paris
    [delivery] = body["deliveries"]
    assert delivery["kind"] == "escalate" and delivery["ladder"] == "astreinte"
    assert delivery["recipients"][0]["address"] == "+33622222222"
    assert [r["rule"] for r in body["rules"]][:2] == ["urgences", "nuit"]
    assert body["rules"][0]["conditions"][0]["matched"] is True
    assert "✓ urgences" in body["text"]
    bad = api.post("/v1/tenants/vet/rules/explain", headers={"Authorization": f"Bearer {key}"},
                   json={"call_type": "urgence", "staff_id": "nobody"})
    assert bad.status_code == 422
