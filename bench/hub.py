"""Shared by the end-to-end benchmarks (pipeline, chaos): the hub as real
processes on loopback, a counting receiver in its own process, HTTP clients.

Nothing here is measured by itself; the benchmarks time what these start.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("RELAIS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("RELAIS_BENCH_REDIS", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("RELAIS_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
SECRET_KEYS = "kVvJ0x0b3Ckq6bQ1kXq3vP8s7mYkJ6V8o9Qf1m2n3o4="
BACKENDS = ("sqlite", "pg-redis", "pg-rabbitmq")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def call(n: int) -> dict[str, Any]:
    return {
        "call_type": "message",
        "caller": {"name": f"Client {n}", "phone": f"+3361{n % 10_000_000:07d}"},
        "subject": f"Message {n}",
        "body": "Merci de rappeler avant 18 h.",
        "taken_by": "Sophie",
        "taken_at": "2026-11-27T10:15:00+01:00",
    }


# ------------------------------------------------------------------ the receiver


def _serve_receiver(conn: Any, latency: float) -> None:
    from sandbox.webhook_receiver import WebhookReceiver

    receiver = WebhookReceiver(latency=latency)
    conn.send(receiver.start())
    while True:
        command, *args = conn.recv()
        if command == "secret":
            receiver.secrets[args[0]] = args[1]
        elif command == "set":
            setattr(receiver, args[0], args[1])
        elif command == "stats":
            with receiver._lock:  # noqa: SLF001 - a consistent snapshot
                conn.send({"unique": receiver.unique, "posts": sum(receiver.hits.values()),
                           "repeats": receiver.duplicates,
                           "bad_signatures": receiver.rejected_signatures})
        elif command == "stop":
            receiver.stop()
            conn.send(None)
            return


class ReceiverProcess:
    """sandbox.webhook_receiver in its own process: it counts each
    Idempotency-Key once, and every repeat of one."""

    def __init__(self, latency: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve_receiver, args=(child, latency), daemon=True)
        self.proc.start()
        self.url: str = self.conn.recv()

    def _ask(self, *command: Any) -> Any:
        self.conn.send(command)
        return self.conn.recv() if command[0] in ("stats", "stop") else None

    def secret(self, path: str, value: str) -> None:
        self._ask("secret", path, value)

    def set(self, name: str, value: Any) -> None:
        self._ask("set", name, value)

    def stats(self) -> dict[str, int]:
        return dict(self._ask("stats"))

    def stop(self) -> None:
        if self.proc.is_alive():
            self._ask("stop")
            self.proc.join(10)


# ------------------------------------------------------------------ the hub


@dataclass
class Hub:
    """One store + broker pair, and the hub's processes on it."""

    backend: str
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="relais-bench-")))
    env: dict[str, str] = field(default_factory=dict)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    pg_name: str | None = None

    def __post_init__(self) -> None:
        self.env = {"RELAIS_HOME": str(self.home), "RELAIS_SECRET_KEYS": SECRET_KEYS,
                    "RELAIS_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
                    "RELAIS_ALLOW_PRIVATE_URLS": "1"}  # loopback receivers and sandboxes
        if self.backend != "sqlite":
            import psycopg

            self.pg_name = f"relais_bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.pg_name}"')
            base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
            self.env["RELAIS_DATABASE_URL"] = f"{base}/{self.pg_name}"
            self.env["RELAIS_BROKER_URL"] = REDIS_URL if self.backend == "pg-redis" else AMQP_URL
        for key in ("RELAIS_DATABASE_URL", "RELAIS_BROKER_URL"):
            os.environ.pop(key, None)
        os.environ.update(self.env)
        from relais.migrate import upgrade
        from sync.queue import reset_celery
        from sync.settings import reset_settings
        from sync.store.db import dispose_engines

        reset_settings()
        reset_celery()
        dispose_engines()
        upgrade()

    @property
    def label(self) -> str:
        return {"sqlite": "SQLite + filesystem broker", "pg-redis": "PostgreSQL + Redis",
                "pg-rabbitmq": "PostgreSQL + RabbitMQ"}[self.backend]

    def apply(self, yaml_text: str, variables: dict[str, str]) -> dict[str, str]:
        """Apply a tenant's YAML; returns the new secrets (webhook signing secrets)."""
        from sync.store.db import session_scope
        from sync.tenants import apply_config

        os.environ.update(variables)
        self.env.update(variables)
        with session_scope() as session:
            return dict(apply_config(session, yaml_text, "bench.yaml", actor="bench").new_secrets)

    def key(self, tenant: str) -> str:
        from relais.auth import create_key
        from sync.store.db import session_scope

        with session_scope() as session:
            return str(create_key(session, "secretary", tenant, "bench"))

    def start(self, name: str, args: list[str], ready: str | None, **extra: str) -> (
            subprocess.Popen[bytes]):
        log = self.home / f"{name}-{len(self.procs)}.log"
        proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **self.env, **extra},
                                stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
                                start_new_session=True)
        self.procs.append((name, proc))
        deadline = time.monotonic() + 90
        while ready and ready not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        return proc

    def api(self, processes: int, port: int) -> subprocess.Popen[bytes]:
        return self.start("api", [sys.executable, "-m", "uvicorn", "relais.api:create_app",
                                  "--factory", "--host", "127.0.0.1", "--port", str(port),
                                  "--workers", str(processes), "--log-level", "warning",
                                  "--no-access-log"], None)

    def worker(self, concurrency: int = 2) -> subprocess.Popen[bytes]:
        return self.start("worker", [sys.executable, "-m", "relais", "worker", "--concurrency",
                                     str(concurrency), "--loglevel", "INFO"], "ready.")

    def beat(self) -> subprocess.Popen[bytes]:
        return self.start("beat", [sys.executable, "-m", "relais", "beat"], None)

    @staticmethod
    def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        self.kill(proc, signal.SIGTERM)
        self.procs = [(n, p) for n, p in self.procs if p is not proc]

    def close(self) -> None:
        for _name, proc in reversed(self.procs):
            self.kill(proc, signal.SIGTERM)
        self.procs.clear()
        from sync.store.db import dispose_engines

        dispose_engines()
        if self.pg_name:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')

    def wait_port(self, port: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"nothing listens on {port}")


# ------------------------------------------------------------------ the clients


@dataclass
class Posted:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0  # no answer at all (connection refused, timeout)
    started: float = 0.0
    ended: float = 0.0
    accepted_ids: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return len(self.accepted_ids)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def post_concurrently(url: str, key: str, clients: int, total: int, first: int,
                      stop_at: float | None = None) -> Posted:
    """``clients`` concurrent HTTP clients post ``total`` messages (numbered from
    ``first``, each with its own Idempotency-Key; a client retries a failed post
    with the same key, as a careful client does, at most 5 times)."""
    import httpx

    out = Posted()
    numbers = iter(range(first, first + total))

    async def client() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            for n in numbers:
                if stop_at is not None and time.monotonic() > stop_at:
                    return
                headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"bench-{n}"}
                for _attempt in range(5):
                    start = time.perf_counter()
                    try:
                        response = await http.post(url, json=call(n), headers=headers)
                    except httpx.HTTPError:
                        out.errors += 1
                        await asyncio.sleep(0.2)
                        continue
                    out.latencies.append(time.perf_counter() - start)
                    out.statuses[response.status_code] = out.statuses.get(
                        response.status_code, 0) + 1
                    if response.status_code in (200, 201, 202):
                        out.accepted_ids.append(response.json()["id"])
                        break
                    if response.status_code < 500 and response.status_code != 429:
                        break  # refused for good: not retried
                    await asyncio.sleep(0.2)

    async def main() -> None:
        out.started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        out.ended = time.perf_counter()

    asyncio.run(main())
    return out


# ------------------------------------------------------------------ the baseline relay


async def relay_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """What a hand-written integration does: take the POST, forward it to the
    destination (signed as Relais signs), answer once the destination has.
    Run with ``uvicorn hub:relay_app --app-dir bench``; RELAY_TARGET, RELAY_SECRET."""
    import json

    import httpx

    from connectors.webhook import sign

    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    status, answer = 202, {"id": uuid.uuid4().hex}
    try:
        payload = json.dumps(json.loads(body), separators=(",", ":")).encode()
    except ValueError:
        status, answer = 400, {"error": "invalid json"}
    else:
        global _relay_client
        if _relay_client is None:
            _relay_client = httpx.AsyncClient(timeout=30)
        headers = dict((k.decode().lower(), v.decode()) for k, v in scope["headers"])
        stamp = str(int(time.time()))
        try:
            response = await _relay_client.post(os.environ["RELAY_TARGET"], content=payload,
                                                 headers={
                "Content-Type": "application/json",
                "Idempotency-Key": headers.get("idempotency-key") or answer["id"],
                "Relais-Timestamp": stamp,
                "Relais-Signature": sign(os.environ["RELAY_SECRET"], stamp, payload)})
            if not response.is_success:
                status, answer = 502, {"error": f"destination answered {response.status_code}"}
        except httpx.HTTPError as exc:
            status, answer = 502, {"error": f"destination unreachable: {exc!r}"}
    data = json.dumps(answer).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


_relay_client: Any = None
