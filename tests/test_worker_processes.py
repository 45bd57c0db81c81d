"""Worker processes side by side: two on one host, and one restarted after a
SIGKILL while the broker still holds the dead one's connection (RabbitMQ)."""

from __future__ import annotations

import pytest
from conftest import AMQP_URL, make_env, need_service

from sync.store.db import dispose_engines

WORKER_READY = "ready."


@pytest.fixture
def rabbit_env(monkeypatch, tmp_path, pg_url):
    need_service("RabbitMQ", 5672)
    yield make_env(monkeypatch, tmp_path, pg_url, AMQP_URL)
    dispose_engines()


@pytest.mark.services
def test_two_workers_on_one_host_and_a_restart_after_kill(rabbit_env, spawn):
    first = spawn(["worker", "--concurrency", "1"], rabbit_env, ready=WORKER_READY)
    # Same host, same default node name: with remote control on, RabbitMQ's
    # exclusive pidbox queue refused the second (405 RESOURCE_LOCKED).
    spawn(["worker", "--concurrency", "1"], rabbit_env, ready=WORKER_READY)
    first.kill()
    spawn(["worker", "--concurrency", "1"], rabbit_env, ready=WORKER_READY)
