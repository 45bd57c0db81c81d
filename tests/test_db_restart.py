"""A PostgreSQL restart under load: a real ``relais serve``, worker and beat on a
throwaway cluster of the test's own; sixteen clients keep posting while the
cluster restarts (``pg_ctl restart -m fast``). No 5xx, every accepted message
stored once and delivered; an outage longer than the budget answers 503 with
Retry-After, never 500."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest
from conftest import REDIS_URL, apply_acme, make_env, need_service, wait_until
from pg_cluster import Cluster
from sqlalchemy import func, select
from test_api_concurrency import answer, call
from test_booking_concurrency import free_port

from sync.store.db import dispose_engines, session_scope
from sync.store.models import Delivery, Message

CLIENTS = 16


@pytest.fixture
def cluster():
    made = Cluster(free_port())
    yield made
    dispose_engines()
    made.destroy()


def serve(cluster, monkeypatch, tmp_path, spawn, receiver, **extra):
    env = make_env(monkeypatch, tmp_path, cluster.url, REDIS_URL, **extra)
    key = apply_acme(receiver, monkeypatch)
    port = free_port()
    spawn(["serve", "--port", str(port)], env, ready="Uvicorn running")
    return env, f"http://127.0.0.1:{port}/v1/tenants/acme/messages", {
        "Authorization": f"Bearer {key}"}


@pytest.mark.services
def test_sixteen_clients_ride_through_a_postgres_restart(cluster, monkeypatch, tmp_path, spawn,
                                                         receiver):
    need_service("Redis", 6379)
    # A delivery task cut by the restart keeps its claimed batch until the lease
    # ends (sync.delivery); short lease and sweep so the test sees the recovery.
    env, url, headers = serve(cluster, monkeypatch, tmp_path, spawn, receiver,
                              RELAIS_DELIVERY_LEASE_SECONDS="10",
                              RELAIS_DELIVERY_STALE_SECONDS="5",
                              RELAIS_SWEEP_INTERVAL_SECONDS="2")
    worker = spawn(["worker", "--concurrency", "2"], env, ready="ready.")
    beat = spawn(["beat"], env, ready="beat: Starting")  # past its migrations check
    results: list[tuple[str, int, dict]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(timeout=60, trust_env=False) as http:
            i = 0
            while not stop.is_set():
                subject = f"Rappel {n}-{i}"
                extra = {"Idempotency-Key": f"k{n}-{i}"} if n % 2 else {}  # half without a key
                status, body = answer(http.post(url, json={**call(0), "subject": subject},
                                                headers={**headers, **extra}))
                with lock:
                    results.append((subject, status, body))
                i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    cluster.restart()
    time.sleep(3)
    stop.set()
    for thread in threads:
        thread.join(120)

    statuses = Counter(status for _, status, _ in results)
    assert set(statuses) == {202}, (statuses, [b for _, s, b in results if s != 202][:3])
    dispose_engines()
    with session_scope(readonly=True) as session:
        stored = Counter(session.scalars(select(Message.subject)))
        ids = set(session.scalars(select(Message.id)))
    assert stored == Counter(subject for subject, _, _ in results)  # each accepted once
    assert ids == {body["id"] for _, _, body in results}

    # The worker and beat lived through it and deliver everything, each once.
    def delivered() -> bool:
        with session_scope(readonly=True) as session:
            return not session.scalar(select(func.count()).select_from(Delivery).where(
                Delivery.status != "delivered"))

    wait_until(delivered, 90, "every delivery delivered after the restart")
    assert receiver.unique == len(results)
    assert worker.proc.poll() is None and beat.proc.poll() is None


@pytest.mark.services
def test_an_outage_longer_than_the_budget_answers_503_with_retry_after(
        cluster, monkeypatch, tmp_path, spawn, receiver):
    _env, url, headers = serve(cluster, monkeypatch, tmp_path, spawn, receiver,
                               RELAIS_DB_OUTAGE_SECONDS="2")
    with httpx.Client(timeout=60, trust_env=False) as http:
        assert http.post(url, json=call(1), headers=headers).status_code == 202
        cluster.stop()
        started = time.monotonic()
        response = http.post(url, json=call(2), headers=headers)
        waited = time.monotonic() - started
        assert response.status_code == 503, (response.status_code, response.text[:300])
        assert response.json()["error"]["code"] == "database_unavailable"
        assert int(response.headers["Retry-After"]) >= 1
        assert 1 <= waited < 15, waited  # waited out the budget, not forever
        cluster.start()
        # Within the budget, a request made while the server is down waits for it.
        assert http.post(url, json=call(3), headers=headers).status_code == 202


@pytest.mark.services
def test_a_process_starting_while_the_database_restarts_waits_for_it(
        cluster, monkeypatch, tmp_path, spawn):
    """`relais db upgrade` (as serve, worker and beat do first) while the server is
    down: it waits and finishes once the server is back, instead of exiting 1 (a
    beat started during the restart above once died that way)."""
    env = make_env(monkeypatch, tmp_path, cluster.url, REDIS_URL)
    cluster.stop()
    upgrade = spawn(["db", "upgrade"], env)
    time.sleep(4)
    assert upgrade.proc.poll() is None, "exited while the database was down"
    cluster.start()
    assert upgrade.proc.wait(60) == 0
