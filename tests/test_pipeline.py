"""The pipeline with real processes: API accepts, a Celery worker delivers.

Runs on every store + broker pair (SQLite + filesystem broker, PostgreSQL +
Redis, PostgreSQL + RabbitMQ), and survives a worker killed with SIGKILL.
"""

from __future__ import annotations

import signal

import httpx
import pytest
from conftest import apply_acme, wait_until
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from relais.api import create_app
from sandbox.webhook_receiver import WebhookReceiver
from sync.store.db import session_scope
from sync.store.models import Delivery

WORKER_READY = "ready."


class WholeBodies(WebhookReceiver):
    """A request cut by a SIGKILL mid-send (body shorter than its Content-Length)
    is an aborted request, not a forged one: answered 400, counted apart."""

    truncated = 0

    def handle(self, path, headers, body):
        if len(body) < int(headers.get("Content-Length", 0)):
            self.truncated += 1
            return 400, {"error": "incomplete body"}
        return super().handle(path, headers, body)


@pytest.fixture
def whole_receiver():
    rcv = WholeBodies()
    rcv.start()
    yield rcv
    rcv.stop()


def call(n: int) -> dict:
    return {
        "call_type": "message",
        "caller": {"name": f"Client {n}", "phone": f"+3361234{n % 10000:04d}"},
        "subject": f"Message {n}",
        "body": "Merci de rappeler.",
        "taken_by": "Sophie",
        "taken_at": "2026-11-27T10:15:00+01:00",
    }


def counts() -> dict[str, int]:
    with session_scope(readonly=True) as session:
        rows = session.execute(select(Delivery.status, func.count()).group_by(Delivery.status))
        return dict(rows.all())


def post_many(client: TestClient, key: str, n: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        response = client.post("/v1/tenants/acme/messages", json=call(i),
                               headers={"Authorization": f"Bearer {key}",
                                        "Idempotency-Key": f"call-{i}"})
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    return ids


@pytest.mark.services
def test_worker_delivers_on_each_backend(any_env, receiver, monkeypatch, spawn):
    key = apply_acme(receiver, monkeypatch)
    receiver.fail_first = 0.3  # some first attempts fail: retries go through the broker
    spawn(["worker", "--concurrency", "2", "--loglevel", "INFO"], any_env, ready=WORKER_READY)
    client = TestClient(create_app())
    ids = post_many(client, key, 40)
    wait_until(lambda: counts().get("delivered") == 40, 90, "40 deliveries")
    assert receiver.unique == 40 and receiver.failures_sent > 0
    shown = client.get(f"/v1/tenants/acme/messages/{ids[0]}",
                       headers={"Authorization": f"Bearer {key}"}).json()
    events = [h["event"] for h in shown["deliveries"][0]["history"]]
    assert events[-1] == "delivery.delivered"


@pytest.mark.slow
def test_worker_killed_mid_run_loses_and_duplicates_nothing(env, whole_receiver, monkeypatch,
                                                            spawn):
    """500 messages; SIGKILL the worker mid-run; a new worker and beat finish the job."""
    receiver = whole_receiver
    monkeypatch.setenv("RELAIS_DELIVERY_LEASE_SECONDS", "4")
    monkeypatch.setenv("RELAIS_DELIVERY_STALE_SECONDS", "2")
    monkeypatch.setenv("RELAIS_SWEEP_INTERVAL_SECONDS", "1")
    env.vars.update({"RELAIS_DELIVERY_LEASE_SECONDS": "4", "RELAIS_DELIVERY_STALE_SECONDS": "2",
                     "RELAIS_SWEEP_INTERVAL_SECONDS": "1"})
    key = apply_acme(receiver, monkeypatch)
    receiver.latency = 0.01  # a realistic endpoint: the run lasts long enough to be cut
    client = TestClient(create_app())
    post_many(client, key, 500)
    first = spawn(["worker", "--concurrency", "2"], env, ready=WORKER_READY)
    wait_until(lambda: counts().get("delivered", 0) >= 100, 120, "the first 100 deliveries")
    first.kill(signal.SIGKILL)
    stranded = counts()
    assert stranded.get("delivered", 0) < 450, "the worker finished before it could be killed"
    assert stranded.get("in_flight", 0) > 0, "the kill should strand a claimed batch"
    spawn(["worker", "--concurrency", "2"], env, ready=WORKER_READY)
    spawn(["beat"], env)
    wait_until(lambda: counts() == {"delivered": 500}, 180, "all 500 delivered")
    assert receiver.unique == 500  # every message arrived, each key once as a record
    with session_scope() as session:
        keys = set(session.scalars(select(Delivery.idempotency_key)))
    assert keys == set(receiver.first)
    assert receiver.rejected_signatures == 0


def test_api_server_process_accepts(env, receiver, monkeypatch, spawn):
    """``relais serve`` as a process: the real ASGI server, over a socket."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = apply_acme(receiver, monkeypatch)
    spawn(["serve", "--port", str(port)], env, ready="Uvicorn running")
    response = httpx.post(f"http://127.0.0.1:{port}/v1/tenants/acme/messages", json=call(1),
                          headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 202
    bad = httpx.post(f"http://127.0.0.1:{port}/v1/tenants/acme/messages", content=b"{",
                     headers={"Authorization": f"Bearer {key}"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
