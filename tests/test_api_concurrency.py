"""Concurrent posting over real HTTP on PostgreSQL: a real ``relais serve``
process, sixteen client threads. No 500 (no deadlock, no unique violation),
and one Idempotency-Key retried at once stores one message."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest
from conftest import apply_acme, make_env
from sqlalchemy import func, select
from test_booking_concurrency import free_port

from sync.store.db import session_scope
from sync.store.models import Message

CLIENTS = 16
POSTS_EACH = 8


def call(n: int) -> dict:
    return {
        "call_type": "message",
        "caller": {"name": "Client", "phone": "06 12 34 56 78"},
        "subject": f"Rappel {n}",
        "body": "Souhaite un rappel.",
        "taken_by": "Sophie",
        "taken_at": "2026-11-27T10:15:00+01:00",
    }


@pytest.fixture
def served(pg_url, monkeypatch, tmp_path, spawn, receiver):
    env = make_env(monkeypatch, tmp_path, pg_url, None)
    key = apply_acme(receiver, monkeypatch)
    port = free_port()
    spawn(["serve", "--port", str(port)], env, ready="Uvicorn running")
    return f"http://127.0.0.1:{port}/v1/tenants/acme/messages", key


def answer(response: httpx.Response) -> tuple[int, dict]:
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {"text": response.text[:200]}


def run_clients(count: int, work) -> list[tuple[int, dict]]:
    barrier = threading.Barrier(count)
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client(timeout=60, trust_env=False) as http:
            barrier.wait(30)
            for status, body in work(http, n):
                with lock:
                    results.append((status, body))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


@pytest.mark.services
def test_sixteen_clients_post_without_a_single_error_on_postgres(served):
    url, key = served
    headers = {"Authorization": f"Bearer {key}"}

    def work(http, n):
        for i in range(POSTS_EACH):
            response = http.post(url, json=call(n * 100 + i), headers={
                **headers, "Idempotency-Key": f"c{n}-{i}"})
            yield answer(response)

    started = time.monotonic()
    results = run_clients(CLIENTS, work)
    elapsed = time.monotonic() - started
    statuses = Counter(status for status, _ in results)
    assert statuses == {202: CLIENTS * POSTS_EACH}, (statuses, [
        body for status, body in results if status != 202][:3])
    with session_scope(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == CLIENTS * POSTS_EACH
    assert elapsed < 60, elapsed  # no retry storm


@pytest.mark.services
def test_one_idempotency_key_retried_at_once_stores_one_message(served):
    url, key = served
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "tel-retry-1"}

    def work(http, _n):
        response = http.post(url, json=call(1), headers=headers)
        yield answer(response)

    results = run_clients(20, work)
    statuses = Counter(status for status, _ in results)
    assert set(statuses) <= {200, 202} and statuses[202] == 1, (statuses, results[:3])
    assert len({body["id"] for _, body in results}) == 1
    with session_scope(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 1
