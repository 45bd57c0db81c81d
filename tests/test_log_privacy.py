"""No message content in any log line: a whole run (API and worker processes on
PostgreSQL, deliveries failing then retried, a failed insert) is grepped for the
caller's name, phone, subject and body."""

from __future__ import annotations

import httpx
import pytest
from conftest import apply_acme, make_env, wait_until
from sqlalchemy.exc import IntegrityError
from test_booking_concurrency import free_port

from sync.store.db import session_scope
from sync.store.models import Message, utcnow

NAME, PHONE, E164 = "Zéphyrine Quatremare", "06 98 76 54 32", "+33698765432"
SUBJECT, BODY = "Sujet-confidentiel-7731", "Corps-confidentiel-9924 diabète"
SECRETS = [NAME, PHONE, E164, "698765432", SUBJECT, BODY, "Quatremare"]


def test_a_failed_insert_hides_its_parameters(env):
    row = {"tenant_id": "nobody", "call_type": "x", "urgency": "normal", "subject": SUBJECT,
           "caller": {"name": NAME, "phone": E164}, "body": BODY, "taken_by": "S",
           "taken_at": utcnow()}
    with pytest.raises(IntegrityError) as raised, session_scope() as session:
        session.add(Message(**row))  # no such tenant: the foreign key fails
    text = str(raised.value)
    assert "hidden" in text and not [s for s in SECRETS if s in text], text


@pytest.mark.services
def test_no_message_content_in_the_logs_of_a_whole_run(
        pg_url, monkeypatch, tmp_path, spawn, receiver):
    env = make_env(monkeypatch, tmp_path, pg_url, None)
    key = apply_acme(receiver, monkeypatch)
    receiver.fail_first = 0.5  # the worker logs retries
    port = free_port()
    procs = [spawn(["serve", "--port", str(port)], env, ready="Uvicorn running"),
             spawn(["worker", "--concurrency", "1", "--loglevel", "DEBUG"], env, ready="ready.")]
    url = f"http://127.0.0.1:{port}/v1/tenants/acme/messages"
    call = {"call_type": "message", "caller": {"name": NAME, "phone": PHONE},
            "subject": SUBJECT, "body": BODY, "taken_by": "Sophie",
            "taken_at": "2026-11-27T10:15:00+01:00"}
    with httpx.Client(trust_env=False, timeout=30) as http:
        headers = {"Authorization": f"Bearer {key}"}
        for n in range(6):
            answer = http.post(url, json=call, headers={**headers, "Idempotency-Key": f"k{n}"})
            assert answer.status_code == 202, answer.text
        # refused calls too: bad intake, a reused key, a missing field
        assert http.post(url, json={**call, "intake": {"x": 1}}, headers=headers
                         ).status_code == 422
        assert http.post(url, json={**call, "body": "autre"},
                         headers={**headers, "Idempotency-Key": "k0"}).status_code == 422
        assert http.post(url, json={**call, "taken_by": ""}, headers=headers).status_code == 422
    wait_until(lambda: receiver.unique == 6, 60, "six deliveries")
    assert receiver.failures_sent > 0
    for proc in procs:
        proc.stop()
    logs = "".join(proc.log.read_text(errors="replace") for proc in procs)
    assert "POST" in logs or "ready" in logs  # the logs were captured
    assert not [s for s in SECRETS if s in logs], [s for s in SECRETS if s in logs]
