"""Escalation ladders end to end: real SMS gateway and SMTP sandboxes over sockets,
the API server as a process for the provider's webhook, steps driven in-process."""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from datetime import timedelta

import httpx
import pytest
from channels_helpers import accept, deliver_all, escalation_of, setup_vet, utc
from conftest import wait_until
from fastapi.testclient import TestClient

from connectors.sms import sign_webhook
from relais.api import create_app
from relais.auth import create_key
from sandbox.testing import (  # noqa: F401
    SMS_WEBHOOK_SECRET,
    sms_gateway,
    sms_server,
    smtp_sandbox,
    smtp_server,
)
from sync.escalation import is_ok_reply, ok_reference, run_due, run_step
from sync.store.db import session_scope

T0 = utc(2026, 11, 25, 9, 0)  # Wednesday 10:00 in Paris: Jean is on call
JEAN, LUCAS, CHEF = "+33611111111", "+33622222222", "+33633333333"
WAIT = timedelta(seconds=30)


def sms_numbers(gateway) -> list[str]:
    return [m.to for m in gateway.messages]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(env, monkeypatch, smtp_sandbox, sms_gateway, spawn):
    """The API as a real server; the gateway sends replies and receipts to its webhook."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    setup_vet(monkeypatch, env, smtp_sandbox, sms_gateway, public_url=url)
    sms_gateway.configure(inbound_url=f"{url}/v1/webhooks/sms")
    spawn(["serve", "--port", str(port)], env, ready="Uvicorn running")
    return url


@pytest.fixture
def vet(env, monkeypatch, smtp_sandbox, sms_gateway):
    setup_vet(monkeypatch, env, smtp_sandbox, sms_gateway)


def test_ok_replies():
    for text in ("OK", "ok", " Ok ! ", "ok merci", "OK, j'y vais", "OK 47", "ok #3 merci"):
        assert is_ok_reply(text), text
    for text in ("", "non", "okay?", "pas ok", "book"):
        assert not is_ok_reply(text), text
    assert [ok_reference(t) for t in ("OK 47", "ok #3 merci", "Ok, 12", "OK", "ok merci")] == [
        47, 3, 12, None, None]


def sms_from(number: str, text: str) -> dict:
    """A signed inbound SMS POSTed to the API (in-process), as the gateway sends it."""
    body = json.dumps({"type": "mo_text", "id": f"01{uuid.uuid4().hex[:20].upper()}",
                       "from": number.lstrip("+"), "to": "RelaisDesk", "body": text}).encode()
    nonce, now = uuid.uuid4().hex, str(int(time.time()))
    headers = {"x-sinch-webhook-signature-nonce": nonce,
               "x-sinch-webhook-signature-timestamp": now,
               "x-sinch-webhook-signature-algorithm": "HmacSHA256",
               "x-sinch-webhook-signature": sign_webhook(SMS_WEBHOOK_SECRET, body, nonce, now),
               "content-type": "application/json"}
    answer = TestClient(create_app()).post("/v1/webhooks/sms", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def two_ladders_to_jean(gateway) -> tuple[str, str]:
    first, _, _ = accept("nuit")
    second, _, _ = accept("nuit")
    deliver_all()
    assert [(m.to, m.body.split(" pour ")[0]) for m in gateway.messages] == [
        (JEAN, "Répondez OK 1"), (JEAN, "Répondez OK 2")]
    return first, second


def test_two_ladders_to_one_phone_each_acknowledged_by_its_reference(vet, sms_gateway,
                                                                     hub_clock):
    hub_clock(T0, ticking=True)  # Wednesday 10:00 Paris: Jean is on call
    first, second = two_ladders_to_jean(sms_gateway)
    assert sms_from(JEAN, "OK 1 merci") == {"receipts": 0, "acknowledged": 1, "ignored": 0}
    assert (escalation_of(first).outcome, escalation_of(second).outcome) == (
        "acknowledged", "running")
    deliver_all()
    assert sms_gateway.messages[-1].to == JEAN
    assert sms_gateway.messages[-1].body == (
        "Merci : alerte 1 (relais-garde, 10:00) prise en charge. Encore en cours : "
        "2 (relais-garde, 10:00). Répondez OK suivi du numéro pour chacune.")
    assert sms_from(JEAN, "ok 2") == {"receipts": 0, "acknowledged": 1, "ignored": 0}
    assert escalation_of(second).acknowledged_by == JEAN
    deliver_all()
    assert sms_gateway.messages[-1].body == (
        "Merci : alerte 2 (relais-garde, 10:00) prise en charge. Plus aucune alerte en cours.")
    assert sms_from(JEAN, "OK 2") == {"receipts": 0, "acknowledged": 0, "ignored": 1}
    assert len(sms_gateway.messages) == 4  # nothing open any more: no reply


def test_bare_ok_takes_the_latest_and_says_which_and_what_still_runs(vet, sms_gateway,
                                                                    hub_clock):
    hub_clock(T0, ticking=True)
    first, second = two_ladders_to_jean(sms_gateway)
    assert sms_from(JEAN, "OK")["acknowledged"] == 1
    assert (escalation_of(first).outcome, escalation_of(second).outcome) == (
        "running", "acknowledged")
    deliver_all()
    assert sms_gateway.messages[-1].body == (
        "Merci : alerte 2 (relais-garde, 10:00) prise en charge. Encore en cours : "
        "1 (relais-garde, 10:00). Répondez OK suivi du numéro pour chacune.")
    # a reference nobody holds acknowledges nothing, and says so
    assert sms_from(JEAN, "OK 7")["acknowledged"] == 0
    deliver_all()
    assert sms_gateway.messages[-1].body == (
        "Aucune alerte 7 en cours pour ce numéro. Encore en cours : "
        "1 (relais-garde, 10:00). Répondez OK suivi du numéro pour chacune.")
    # the ladder left open is not silent: it climbs on
    assert run_step(escalation_of(first).id, T0 + 2 * WAIT).deliveries
    # and a new ladder takes the smallest free reference again
    third, _, _ = accept("nuit")
    assert escalation_of(third).ref == 2


def test_acknowledged_at_step_2_by_sms_reply(served, smtp_sandbox, sms_gateway):
    message_id, _, accepted = accept("urgence", now=T0)
    assert accepted.escalations and accepted.escalations[0][1] == 30.0
    deliver_all()
    assert sms_numbers(sms_gateway) == [JEAN]  # step 1: whoever is on call
    esc = escalation_of(message_id)
    assert run_step(esc.id, T0 + WAIT / 2).deliveries == []  # not due yet: nothing
    step2 = run_step(esc.id, T0 + WAIT)
    assert step2.run_again_in == 30.0
    deliver_all()
    assert sms_numbers(sms_gateway) == [JEAN, CHEF]
    assert "Répondez OK 1 pour confirmer" in sms_gateway.messages[1].body

    sms_gateway.reply(CHEF, "ok merci")  # a signed mo_text POSTed to our webhook
    wait_until(lambda: escalation_of(message_id).outcome == "acknowledged", 10, "the ack")
    for later in (T0 + 2 * WAIT, T0 + 10 * WAIT):
        assert run_step(esc.id, later).deliveries == []
        assert run_due(later) == []
    deliver_all()
    time.sleep(0.3)
    assert sms_numbers(sms_gateway) == [JEAN, CHEF, CHEF]  # no step 3; the reply to Claire
    assert sms_gateway.messages[2].body.startswith("Merci : alerte 1 (astreinte, ")
    assert smtp_sandbox.messages == []  # step 3 (email) and the dead end never went
    done = escalation_of(message_id)
    assert (done.acknowledged_by, done.acknowledged_via, done.step) == (CHEF, "sms", 1)

    with session_scope() as session:
        key = create_key(session, "secretary", "vet", "test")
    shown = httpx.get(f"{served}/v1/tenants/vet/messages/{message_id}",
                      headers={"Authorization": f"Bearer {key}"}).json()
    [ladder] = shown["escalations"]
    events = [(h["event"], h.get("told"), h.get("by")) for h in ladder["history"]]
    assert events == [
        ("escalation.started", None, None),
        ("escalation.step", [f"{JEAN} (jean, on call)"], None),
        ("escalation.step", [f"{CHEF} (chef)"], None),
        ("escalation.acknowledged", None, CHEF),
    ]
    # delivery receipts came back through the same webhook into each SMS's history
    wait_until(lambda: any(
        h["event"] == "delivery.receipt" and h["status"] == "delivered"
        for d in httpx.get(f"{served}/v1/tenants/vet/messages/{message_id}",
                           headers={"Authorization": f"Bearer {key}"}).json()["deliveries"]
        for h in d["history"]), 10, "a delivery receipt in the history")


def test_forged_webhook_refused_and_not_acted_on(served, sms_gateway):
    message_id, _, _ = accept("urgence", now=T0)
    deliver_all()
    body = json.dumps({"type": "mo_text", "id": "01FORGED", "from": JEAN.lstrip("+"),
                       "to": "RelaisDesk", "body": "OK"}).encode()
    now = str(int(time.time()))
    good = {"x-sinch-webhook-signature-nonce": "n1", "x-sinch-webhook-signature-timestamp": now,
            "x-sinch-webhook-signature-algorithm": "HmacSHA256",
            "content-type": "application/json"}
    forged = {**good, "x-sinch-webhook-signature": sign_webhook("not-the-secret", body, "n1", now)}
    unsigned = {k: v for k, v in good.items()}
    stale_at = str(int(time.time()) - 3600)
    stale = {**good, "x-sinch-webhook-signature-timestamp": stale_at,
             "x-sinch-webhook-signature": sign_webhook(SMS_WEBHOOK_SECRET, body, "n1", stale_at)}
    for headers in (forged, unsigned, stale):
        answer = httpx.post(f"{served}/v1/webhooks/sms", content=body, headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "unauthenticated"
    assert escalation_of(message_id).outcome == "running"
    # the same body correctly signed is acted on
    signed = {**good, "x-sinch-webhook-signature": sign_webhook(SMS_WEBHOOK_SECRET, body, "n1",
                                                                 now)}
    answer = httpx.post(f"{served}/v1/webhooks/sms", content=body, headers=signed)
    assert answer.json() == {"receipts": 0, "acknowledged": 1, "ignored": 0}
    assert escalation_of(message_id).acknowledged_by == JEAN


def test_acknowledged_by_signed_link(vet, smtp_sandbox, sms_gateway):
    message_id, _, _ = accept("urgence", now=T0)
    deliver_all()
    esc = escalation_of(message_id)
    run_step(esc.id, T0 + WAIT)
    deliver_all()
    link = re.search(r"http\S+/v1/ack/(\S+)", sms_gateway.messages[1].body)
    assert link is not None
    api = TestClient(create_app())
    tampered = link.group(1)[:-3] + ("AAA" if not link.group(1).endswith("AAA") else "BBB")
    assert api.get(f"/v1/ack/{tampered}").status_code == 404
    assert escalation_of(message_id).outcome == "running"
    clicked = api.get(f"/v1/ack/{link.group(1)}").json()
    assert clicked["acknowledged"] is True and clicked["newly"] is True
    assert clicked["acknowledged_by"] == CHEF
    assert api.get(f"/v1/ack/{link.group(1)}").json()["newly"] is False  # second click
    assert run_step(esc.id, T0 + 5 * WAIT).deliveries == []
    deliver_all()
    assert sms_numbers(sms_gateway) == [JEAN, CHEF] and smtp_sandbox.messages == []


def test_never_acknowledged_runs_every_step_then_dead_end(vet, smtp_sandbox, sms_gateway):
    message_id, _, _ = accept("urgence", now=T0)
    deliver_all()
    esc = escalation_of(message_id)
    assert [run_step(esc.id, T0 + n * WAIT).note for n in (1, 2, 3)] == [
        "step 1", "step 2", "dead end"]
    deliver_all()
    assert sms_numbers(sms_gateway) == [JEAN, CHEF]
    smtp_sandbox.wait_for(3)
    got = {m.rcpt_tos[0]: m for m in smtp_sandbox.messages}
    assert sorted(got) == ["bureau@vet.example", "jean@vet.example", "lucas@vet.example"]
    assert got["jean@vet.example"].message["Subject"] == "Urgence : Jeanne Dupont"
    assert "/v1/ack/" in got["lucas@vet.example"].part("plain")
    dead = got["bureau@vet.example"].part("plain")
    assert dead.startswith("Personne n'a confirmé la prise en charge (escalade astreinte).")
    assert "/v1/ack/" not in dead
    done = escalation_of(message_id)
    assert (done.outcome, done.finished, done.step) == ("dead_end", True, 3)
    assert run_step(esc.id, T0 + 10 * WAIT).deliveries == []  # finished: nothing more
    deliver_all()
    assert len(smtp_sandbox.messages) == 3 and len(sms_gateway.messages) == 2


def test_on_call_resolved_when_each_step_is_sent(vet, sms_gateway):
    friday = utc(2026, 11, 27, 16, 59, 45)  # 17:59:45 in Paris: Jean until 18:00, then Lucas
    message_id, _, _ = accept("nuit", now=friday)
    esc = escalation_of(message_id)
    run_step(esc.id, friday + WAIT)  # 18:00:15: the handover happened meanwhile
    deliver_all()
    assert sms_numbers(sms_gateway) == [JEAN, LUCAS]


def test_beat_sweep_advances_overdue_ladders(vet, sms_gateway):
    """A lost broker message only delays: the sweep finds the overdue step."""
    message_id, _, _ = accept("urgence", now=T0)
    assert run_due(T0 + WAIT / 2) == []
    [advanced] = run_due(T0 + WAIT + timedelta(seconds=5))
    assert advanced.note == "step 1" and advanced.connection_ids
    deliver_all()
    assert sms_numbers(sms_gateway) == [JEAN, CHEF]


def test_missing_sender_accepts_the_call_with_a_dead_delivery(
        env, monkeypatch, smtp_sandbox, sms_gateway):
    """The call is never refused for a destination's setup (issue 9): the ladder's
    delivery is recorded dead with the rule and the missing setting."""
    setup_vet(monkeypatch, env, smtp_sandbox, sms_gateway)
    monkeypatch.delenv("RELAIS_SMS_API_TOKEN")
    from sync.settings import reset_settings

    reset_settings()
    with session_scope() as session:
        key = create_key(session, "secretary", "vet", "test")
    api = TestClient(create_app())
    answer = api.post("/v1/tenants/vet/messages", headers={"Authorization": f"Bearer {key}"},
                      json={"call_type": "urgence", "caller": {"name": "X", "phone": JEAN},
                            "subject": "s", "body": "b", "taken_by": "Sophie",
                            "taken_at": "2026-11-25T10:15:00+01:00"})
    assert answer.status_code == 202, answer.text
    [dead] = answer.json()["deliveries"]
    assert dead["status"] == "dead"
    assert "rule 'urgences' (escalate astreinte)" in dead["last_error"]
    assert "RELAIS_SMS_API_TOKEN" in dead["last_error"]


def test_real_worker_runs_the_ladder(env, monkeypatch, smtp_sandbox, sms_gateway, spawn):
    """Through the API and a Celery worker: step 1 at once, the next step from the
    escalation task (its wait shortened here by moving next_at), then the SMS."""
    setup_vet(monkeypatch, env, smtp_sandbox, sms_gateway)
    with session_scope() as session:
        key = create_key(session, "secretary", "vet", "test")
    spawn(["worker", "--concurrency", "1"], env, ready="ready.")
    api = TestClient(create_app())
    answer = api.post("/v1/tenants/vet/messages", headers={"Authorization": f"Bearer {key}"},
                      json={"call_type": "urgence", "caller": {"name": "X", "phone": JEAN},
                            "subject": "s", "body": "b", "taken_by": "Sophie",
                            "taken_at": "2026-11-25T10:15:00+01:00"})
    assert answer.status_code == 202, answer.text
    message_id = answer.json()["id"]
    wait_until(lambda: len(sms_gateway.messages) == 1, 20, "step 1 sent by the worker")
    from sync.queue import enqueue_escalation
    from sync.store.models import Escalation
    from sync.store.models import utcnow as now

    with session_scope() as session:
        row = session.get(Escalation, escalation_of(message_id).id)
        row.next_at = now()
    enqueue_escalation(row.id)
    wait_until(lambda: len(sms_gateway.messages) == 2, 20, "step 2 sent by the worker")
    assert sms_gateway.messages[1].to == CHEF
    assert escalation_of(message_id).step == 1
