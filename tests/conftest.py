"""Shared fixtures: a fresh store and broker per test, real worker processes.

Backends: ``sqlite`` (SQLite file + filesystem broker: the embedded default),
``pg-redis`` and ``pg-rabbitmq``. A missing service skips its tests, or fails
them when ``RELAIS_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from sandbox.webhook_receiver import WebhookReceiver
from sync import clock
from sync.queue import reset_celery
from sync.settings import reset_settings
from sync.store.db import dispose_engines, session_scope

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PG_ADMIN_URL = os.environ.get("RELAIS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("RELAIS_TEST_REDIS", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("RELAIS_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")


# The whole session at a shifted *machine* clock (time_machine, ticking), e.g.
# RELAIS_TEST_MACHINE_CLOCK=2027-12-25T03:00:00+01:00: the suite must pass on any day.
# Child processes do not share it, so tests that start them are skipped then.
MACHINE_CLOCK = os.environ.get("RELAIS_TEST_MACHINE_CLOCK", "").strip()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "processes: starts processes (skipped at a shifted machine clock)")
    if MACHINE_CLOCK:
        import time_machine

        at = datetime.fromisoformat(MACHINE_CLOCK)
        if at.tzinfo is None:
            raise pytest.UsageError("RELAIS_TEST_MACHINE_CLOCK needs an offset, e.g. +01:00")
        config.stash[_TRAVEL] = traveller = time_machine.travel(at, tick=True)
        traveller.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    traveller = config.stash.get(_TRAVEL, None)
    if traveller is not None:
        traveller.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not MACHINE_CLOCK:
        return
    skip = pytest.mark.skip(reason="starts processes, which keep the real machine clock")
    for item in items:
        if "spawn" in getattr(item, "fixturenames", ()) or item.get_closest_marker("processes"):
            item.add_marker(skip)


_TRAVEL = pytest.StashKey()


@pytest.fixture
def hub_clock() -> Iterator[Callable[..., clock.Clock]]:
    """``hub_clock(at)``: the hub's clock stands at ``at`` (``ticking=True``: and runs on)."""
    previous = clock.current()

    def install(at: datetime, ticking: bool = False) -> clock.Clock:
        chosen = clock.OffsetClock.starting_at(at) if ticking else clock.FixedClock(at)
        clock.install(chosen)
        return chosen

    yield install
    clock.install(previous)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need_service(name: str, port: int) -> None:
    if _port_open("127.0.0.1", port):
        return
    message = f"{name} is not running on 127.0.0.1:{port}"
    if os.environ.get("RELAIS_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " and RELAIS_REQUIRE_SERVICES=1")
    pytest.skip(message)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    need_service("PostgreSQL", 5432)
    import psycopg

    name = f"relais_t_{uuid.uuid4().hex[:10]}"
    admin = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    dispose_engines()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Env:
    home: Path
    database_url: str
    broker_url: str | None
    queue: str
    vars: dict[str, str]


def _activate(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    reset_celery()
    dispose_engines()


def make_env(monkeypatch, tmp_path: Path, database_url: str | None, broker_url: str | None,
             **extra: str) -> Env:
    queue = f"relais-test-{uuid.uuid4().hex[:8]}"
    values = {
        "RELAIS_HOME": str(tmp_path / "home"),
        "RELAIS_QUEUE": queue,
        "RELAIS_SECRET_KEYS": "kVvJ0x0b3Ckq6bQ1kXq3vP8s7mYkJ6V8o9Qf1m2n3o4=",
        "RELAIS_DELIVERY_BACKOFF_BASE": "0.2",
        "RELAIS_DELIVERY_BACKOFF_MAX": "2",
        "RELAIS_ALLOW_PRIVATE_URLS": "1",  # the sandboxes listen on 127.0.0.1
        **extra,
    }
    if database_url:
        values["RELAIS_DATABASE_URL"] = database_url
    else:
        monkeypatch.delenv("RELAIS_DATABASE_URL", raising=False)
    if broker_url:
        values["RELAIS_BROKER_URL"] = broker_url
    else:
        monkeypatch.delenv("RELAIS_BROKER_URL", raising=False)
    _activate(monkeypatch, values)
    from relais.migrate import upgrade
    from sync.settings import get_settings

    upgrade()
    return Env(tmp_path / "home", get_settings().resolved_database_url, broker_url, queue,
               values)


@pytest.fixture
def env(monkeypatch, tmp_path) -> Iterator[Env]:
    """The embedded default: SQLite and the filesystem broker."""
    yield make_env(monkeypatch, tmp_path, None, None)
    dispose_engines()


@pytest.fixture(params=["sqlite", "pg-redis", "pg-rabbitmq"])
def any_env(request, monkeypatch, tmp_path) -> Iterator[Env]:
    """Each supported store + broker pair."""
    kind = request.param
    if kind == "sqlite":
        yield make_env(monkeypatch, tmp_path, None, None)
        dispose_engines()
        return
    database_url = request.getfixturevalue("pg_url")
    if kind == "pg-redis":
        need_service("Redis", 6379)
        broker = REDIS_URL
    else:
        need_service("RabbitMQ", 5672)
        broker = AMQP_URL
    yield make_env(monkeypatch, tmp_path, database_url, broker)
    dispose_engines()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    rcv = WebhookReceiver()
    rcv.start()
    yield rcv
    rcv.stop()


def apply_acme(receiver: WebhookReceiver, monkeypatch) -> str:
    """Apply tests/fixtures/acme.yaml pointing at ``receiver``; return a secretary key."""
    from relais.auth import create_key
    from sync.tenants import apply_config

    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", receiver.url + "/hooks/acme/hook")
    with session_scope() as session:
        result = apply_config(session, (FIXTURES / "acme.yaml").read_text(), "acme.yaml",
                              actor="test")
        receiver.secrets["/hooks/acme/hook"] = result.new_secrets["hook"]
        return create_key(session, "secretary", "acme", "test")


class Proc:
    """A ``relais`` subcommand as a real process (worker, beat, serve)."""

    def __init__(self, args: list[str], env: Env, log: Path, ready: str | None) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relais", *args], cwd=ROOT,
            env={**os.environ, **env.vars}, stdout=open(log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT, start_new_session=True)
        if ready:
            self.wait_for(ready, 60)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"process exited: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{text!r} not seen in {self.log}: {self.log.read_text()[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def spawn(tmp_path) -> Iterator:
    procs: list[Proc] = []

    def start(args: list[str], env: Env, ready: str | None = None) -> Proc:
        proc = Proc(args, env, tmp_path / f"{args[0]}-{len(procs)}.log", ready)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
