"""Pipeline throughput: accepted -> delivered on the webhook channel.

Measures, in one run and on the same store:
- the pipeline: messages accepted through the outbox, delivered by a real
  Celery worker with 1 and then 2 worker processes (peak worker memory too);
- the baseline: the same messages accepted and delivered synchronously, one
  after the other, in one process (what a hand-written integration does).

Usage: python bench/pipeline.py [--messages 1000] [--database-url URL --broker-url URL]
Defaults to the embedded default (SQLite + filesystem broker).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def configure(home: Path, database_url: str | None, broker_url: str | None, queue: str) -> dict:
    env = {
        "RELAIS_HOME": str(home),
        "RELAIS_QUEUE": queue,
        "RELAIS_SECRET_KEYS": "kVvJ0x0b3Ckq6bQ1kXq3vP8s7mYkJ6V8o9Qf1m2n3o4=",
    }
    if database_url:
        env["RELAIS_DATABASE_URL"] = database_url
    if broker_url:
        env["RELAIS_BROKER_URL"] = broker_url
    os.environ.update(env)
    from relais.db import dispose_engines
    from relais.queue import reset_celery
    from relais.settings import reset_settings

    reset_settings()
    reset_celery()
    dispose_engines()
    return env


def call(n: int) -> dict:
    return {
        "call_type": "message",
        "caller": {"name": f"Client {n}", "phone": f"+3361234{n % 10000:04d}"},
        "subject": f"Message {n}",
        "body": "Merci de rappeler avant 18 h.",
        "taken_by": "Sophie",
        "taken_at": "2026-11-27T10:15:00+01:00",
    }


def setup_tenant(receiver, tenant: str) -> None:
    from relais.db import session_scope
    from relais.migrate import upgrade
    from relais.tenants import apply_config

    upgrade()
    text = (ROOT / "tests" / "fixtures" / "acme.yaml").read_text().replace(
        "id: acme", f"id: {tenant}", 1)
    os.environ["RELAIS_TENANT_ACME_HOOK_URL"] = f"{receiver.url}/hooks/{tenant}/hook"
    with session_scope() as session:
        result = apply_config(session, text, "bench.yaml", actor="bench")
    receiver.secrets[f"/hooks/{tenant}/hook"] = result.new_secrets["hook"]


def accept_all(tenant: str, n: int, offset: int) -> list[str]:
    from relais.db import session_scope
    from relais.domain import CallMessage
    from relais.queue import enqueue_connections
    from relais.tenants import get_tenant, parsed_config
    from sync.outbox import accept_message

    ids = []
    for i in range(offset, offset + n):
        with session_scope() as session:
            config = parsed_config(get_tenant(session, tenant))
            msg = CallMessage.model_validate(call(i), context={"region": "FR"})
            accepted = accept_message(session, tenant, config, msg)
            ids.append(accepted.message.id)
        enqueue_connections(accepted.to_wake)
    return ids


def delivered_count(tenant: str) -> int:
    from sqlalchemy import func, select

    from relais.db import session_scope
    from relais.models import Delivery

    with session_scope(readonly=True) as session:
        return session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.tenant_id == tenant, Delivery.status == "delivered")) or 0


def tree_peak_rss_mib(pid: int) -> float:
    """Sum of VmHWM (peak RSS) over the worker's process tree."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            for task in Path(f"/proc/{p}/task").iterdir():
                pids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return total / 1024


def run_pipeline(env: dict, tenant: str, n: int, processes: int) -> tuple[float, float, float]:
    """Accept ``n`` messages (tasks wait in the broker), then start the worker and
    time the drain from its first task to the last delivery."""
    start = time.perf_counter()
    accept_all(tenant, n, 0)
    accept_rate = n / (time.perf_counter() - start)
    log_path = Path(env["RELAIS_HOME"]) / f"worker-{processes}.log"
    log = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "relais", "worker", "--concurrency", str(processes),
         "--loglevel", "INFO"],
        cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        while "ready." not in log_path.read_text(errors="replace"):
            if proc.poll() is not None:
                raise RuntimeError(log_path.read_text()[-2000:])
            time.sleep(0.01)
        start = time.perf_counter()
        peak = 0.0
        while delivered_count(tenant) < n:
            peak = max(peak, tree_peak_rss_mib(proc.pid))
            if time.perf_counter() - start > 600:
                raise RuntimeError("pipeline did not finish in 10 minutes")
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        peak = max(peak, tree_peak_rss_mib(proc.pid))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:  # measured already: don't wait for a warm shutdown
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return n / elapsed, peak, accept_rate


def run_baseline(tenant: str, n: int) -> float:
    """Accept then deliver each message synchronously in this process."""
    from relais.db import session_scope
    from relais.domain import CallMessage
    from relais.tenants import get_tenant, parsed_config
    from sync.delivery import process_connection
    from sync.outbox import accept_message

    start = time.perf_counter()
    for i in range(n):
        with session_scope() as session:
            config = parsed_config(get_tenant(session, tenant))
            msg = CallMessage.model_validate(call(i), context={"region": "FR"})
            accepted = accept_message(session, tenant, config, msg)
        for connection_id in accepted.connection_ids:
            process_connection(connection_id)
    elapsed = time.perf_counter() - start
    assert delivered_count(tenant) == n
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--database-url")
    parser.add_argument("--broker-url")
    args = parser.parse_args()
    from sandbox.webhook_receiver import WebhookReceiver

    receiver = WebhookReceiver()
    receiver.start()
    home = Path(tempfile.mkdtemp(prefix="relais-bench-"))
    env = configure(home, args.database_url, args.broker_url, f"bench-{os.getpid()}")
    store = "SQLite + filesystem broker" if not args.database_url else "custom URLs"
    print(f"pipeline benchmark: {args.messages} messages, webhook channel, {store}")

    results = {}
    for processes in (1, 2):
        tenant = f"bench-p{processes}"
        setup_tenant(receiver, tenant)
        rate, peak, accept_rate = run_pipeline(env, tenant, args.messages, processes)
        results[processes] = rate
        print(f"  pipeline, {processes} worker process(es): {rate:8.1f} msg/s delivered "
              f"(accepted at {accept_rate:6.1f} msg/s)  peak worker RSS {peak:6.1f} MiB")
    setup_tenant(receiver, "bench-base")
    base = run_baseline("bench-base", args.messages)
    print(f"  baseline, accept + deliver synchronously in one process: {base:8.1f} msg/s")
    for processes, rate in results.items():
        print(f"  ratio pipeline({processes}) / baseline: {rate / base:5.2f}x")
    assert receiver.unique == 3 * args.messages, "a delivery was lost"
    receiver.stop()


if __name__ == "__main__":
    main()
