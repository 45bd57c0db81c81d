"""Pipeline: accepted over HTTP -> delivered, with concurrent clients.

For each store + broker pair, with the hub as real processes on loopback:
- API: ``uvicorn relais.api:create_app`` with 1 and then 2 processes;
- one Celery worker (``relais worker --concurrency 2``);
- a webhook receiver answering in ``--latency-ms`` (100 ms), in its own process,
  counting each Idempotency-Key once and every repeat;
- ``--clients`` (16) concurrent HTTP clients posting ``--messages`` per run.

Per run it measures: accepted/s and p50/p99 accept latency (client side),
5xx answers, and end-to-end throughput (accepted -> landed at the receiver,
from the first POST to the last delivery). Each figure is taken over
``--repeats`` runs (median, min-max).

The baseline, like with like: the same clients post the same messages to a
hand-written relay (2 uvicorn processes, no store, no queue) that forwards each
POST to the same receiver, signed, and answers once the receiver has. It
accepts only as fast as the destination answers, and loses what it holds when
it dies; Relais answers after a durable write and delivers in the background.

Usage: python bench/pipeline.py [--messages 400] [--repeats 3] [--clients 16]
         [--latency-ms 100] [--backends sqlite,pg-redis]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hub import (  # noqa: E402 - the path above
    ROOT,
    Hub,
    Posted,
    ReceiverProcess,
    free_port,
    percentile,
    post_concurrently,
)

TENANT_YAML = (ROOT / "tests" / "fixtures" / "acme.yaml").read_text()
HOOK_PATH = "/hooks/acme/hook"


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    return (f"{fmt.format(statistics.median(values))} "
            f"({fmt.format(min(values))}-{fmt.format(max(values))})")


def wait_landed(receiver: ReceiverProcess, target: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while receiver.stats()["unique"] < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {receiver.stats()['unique']} of {target} landed")
        time.sleep(0.01)
    return time.perf_counter()


class Runs:
    def __init__(self) -> None:
        self.accept_rate: list[float] = []
        self.p50: list[float] = []
        self.p99: list[float] = []
        self.e2e: list[float] = []
        self.server_errors = 0
        self.refused = 0

    def add(self, posted: Posted, landed_at: float) -> None:
        self.accept_rate.append(posted.accepted / (posted.ended - posted.started))
        self.p50.append(1000 * percentile(posted.latencies, 50))
        self.p99.append(1000 * percentile(posted.latencies, 99))
        self.e2e.append(posted.accepted / (landed_at - posted.started))
        self.server_errors += posted.server_errors
        self.refused += posted.errors

    def line(self, label: str) -> str:
        return (f"  {label:<34} accepted {spread(self.accept_rate)} msg/s  "
                f"p50 {spread(self.p50)} ms  p99 {spread(self.p99)} ms  "
                f"delivered end-to-end {spread(self.e2e)} msg/s  "
                f"5xx {self.server_errors}  no answer {self.refused}")


def run(receiver: ReceiverProcess, url: str, key: str, args: argparse.Namespace,
        first: int, runs: Runs) -> int:
    """Warm up (not measured), then ``--repeats`` measured runs; returns the next number."""
    base = receiver.stats()["unique"]
    warm = post_concurrently(url, key, args.clients, args.clients, first)
    base = wait_landed(receiver, base + warm.accepted, 120) and receiver.stats()["unique"]
    first += args.clients
    for _ in range(args.repeats):
        posted = post_concurrently(url, key, args.clients, args.messages, first)
        first += args.messages
        landed = wait_landed(receiver, base + posted.accepted, 600)
        base += posted.accepted
        runs.add(posted, landed)
    return first


def bench_backend(backend: str, args: argparse.Namespace) -> None:
    hub = Hub(backend)
    receiver = ReceiverProcess(args.latency_ms / 1000)
    print(f"{hub.label}: {args.clients} clients x {args.messages} messages per run, "
          f"{args.repeats} runs, receiver latency {args.latency_ms:.0f} ms; "
          f"median (min-max); {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at start", flush=True)
    try:
        secrets = hub.apply(TENANT_YAML, {"RELAIS_TENANT_ACME_HOOK_URL": receiver.url + HOOK_PATH})
        receiver.secret(HOOK_PATH, secrets["hook"])
        key = hub.key("acme")
        hub.worker(concurrency=2)
        first = 0
        for processes in (1, 2):
            port = free_port()
            api = hub.api(processes, port)
            hub.wait_port(port)
            runs = Runs()
            first = run(receiver, f"http://127.0.0.1:{port}/v1/tenants/acme/messages", key,
                        args, first, runs)
            hub.stop(api)
            print(runs.line(f"Relais, {processes} API process(es)"), flush=True)
        port = free_port()
        relay = hub.start("relay", [sys.executable, "-m", "uvicorn", "hub:relay_app",
                                    "--app-dir", str(ROOT / "bench"), "--host", "127.0.0.1",
                                    "--port", str(port), "--workers", "2", "--log-level",
                                    "warning", "--no-access-log"], None,
                          RELAY_TARGET=receiver.url + HOOK_PATH, RELAY_SECRET=secrets["hook"])
        hub.wait_port(port)
        base_runs = Runs()
        run(receiver, f"http://127.0.0.1:{port}/", key, args, first, base_runs)
        hub.stop(relay)
        print(base_runs.line("baseline: synchronous relay (2 proc)"), flush=True)
        med = statistics.median
        print(f"  ratio Relais (2 API) / baseline (medians): accepted/s "
              f"{med(runs.accept_rate) / med(base_runs.accept_rate):.2f}x, p99 accept latency "
              f"{med(runs.p99) / med(base_runs.p99):.2f}x, "
              f"end-to-end {med(runs.e2e) / med(base_runs.e2e):.2f}x", flush=True)
        stats = receiver.stats()
        print(f"  receiver: {stats['unique']} distinct keys, {stats['repeats']} repeats, "
              f"{stats['bad_signatures']} bad signatures", flush=True)
    finally:
        hub.close()
        receiver.stop()


def sending(args: argparse.Namespace) -> None:
    """One worker step in-process on the embedded store: the same batches to the
    same receiver, sent concurrently (the default) and one at a time
    (``ordered: true``, what every webhook did before)."""
    from sync.delivery import process_connection
    from sync.domain import CallMessage
    from sync.outbox import accept_message
    from sync.store.db import session_scope
    from sync.tenants import get_tenant, parsed_config

    hub = Hub("sqlite")
    receiver = ReceiverProcess(args.latency_ms / 1000)
    n = 100
    print(f"Sending one connection's batches ({n} messages, webhook answering in "
          f"{args.latency_ms:.0f} ms), one worker step in-process; median (min-max)", flush=True)
    try:
        rates: dict[bool, list[float]] = {False: [], True: []}
        for repeat in range(args.repeats):
            for ordered in (False, True):
                text = TENANT_YAML.replace("    timeout_seconds: 2\n", "    timeout_seconds: 2\n"
                                           f"    ordered: {'true' if ordered else 'false'}\n")
                secrets = hub.apply(text, {"RELAIS_TENANT_ACME_HOOK_URL":
                                           receiver.url + HOOK_PATH})
                if "hook" in secrets:
                    receiver.secret(HOOK_PATH, secrets["hook"])
                with session_scope() as session:
                    config = parsed_config(get_tenant(session, "acme"))
                    for i in range(n):
                        msg = CallMessage.model_validate(call_for(repeat, ordered, i),
                                                         context={"region": "FR"})
                        connection = accept_message(session, "acme", config,
                                                    msg).connection_ids[0]
                start = time.perf_counter()
                sent = 0
                while sent < n:
                    sent += process_connection(connection).delivered
                rates[ordered].append(n / (time.perf_counter() - start))
        print(f"  concurrent (default):     {spread(rates[False])} msg/s", flush=True)
        print(f"  one at a time (ordered):  {spread(rates[True])} msg/s", flush=True)
        print(f"  ratio: {statistics.median(rates[False]) / statistics.median(rates[True]):.1f}x",
              flush=True)
    finally:
        hub.close()
        receiver.stop()


def call_for(repeat: int, ordered: bool, i: int) -> dict:
    from hub import call

    return call(1_000_000 + repeat * 10_000 + (5_000 if ordered else 0) + i)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--backends", default="sqlite,pg-redis")
    parser.add_argument("--skip-sending", action="store_true")
    args = parser.parse_args()
    if not args.skip_sending:
        sending(args)
    for backend in filter(None, (b.strip() for b in args.backends.split(","))):
        bench_backend(backend, args)


if __name__ == "__main__":
    main()
