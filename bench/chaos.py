"""Chaos: nothing accepted is lost or applied twice while processes and services die.

For each production broker (PostgreSQL + Redis, PostgreSQL + RabbitMQ) it starts
the hub as real processes on loopback: the API (uvicorn, 2 processes), two
Celery workers (2 processes each) and beat; a webhook receiver answering in
``--latency-ms`` (>= 50 ms) in its own process, counting each Idempotency-Key
once and every repeat; the HubSpot emulator (``python -m sandbox``) in its own
process. Every message goes to both.

For ``--seconds``, 16 concurrent clients post messages (each with its own
Idempotency-Key, retried with it on failure) while:
- a worker is SIGKILLed (and restarted) ``--kills`` times, evenly spaced;
- the broker restarts once (Redis: shutdown + start; RabbitMQ: stop_app /
  start_app), then PostgreSQL (``pg_ctlcluster 15 main restart``);
- provider faults through the sandbox knobs: the receiver answers 503 to the
  first attempt of 5 % of keys; HubSpot gets 503 on ~5 % of requests, ~2 %
  hang past the client's patience (half of them after applying the write),
  ~1 % applied then reset before the answer, and one storm of 30 429s.
Then it waits for every delivery to settle and prints accepted, delivered,
lost (accepted, never landed), repeats at the destinations (same key received
again), duplicates applied (HubSpot call records created twice), 5xx answered
to clients, p99 accept latency. Exit status 1 if lost, duplicates applied or
5xx are not 0, or repeats exceed ``REPEATS_PER_KILL`` per kill.

It restarts the machine's shared PostgreSQL, Redis and RabbitMQ: run it where
nothing else uses them (``--no-restarts`` skips that part). Loopback only.

Usage: python bench/chaos.py [--seconds 120] [--kills 12] [--latency-ms 60]
         [--brokers pg-redis,pg-rabbitmq] [--no-restarts]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hub import (  # noqa: E402 - the path above
    Hub,
    Posted,
    ReceiverProcess,
    free_port,
    percentile,
    post_concurrently,
)

# A worker killed re-sends at most its in-flight requests (16 per process, 2
# processes) plus what landed during its last commit.
REPEATS_PER_KILL = 36
SETTLE_SECONDS = 300.0
CLIENTS = 16

TENANT_YAML = """\
id: crmco
name: Cabinet Chaos
timezone: Europe/Paris
phone_region: FR
call_types:
  - id: message
    label: Message
connections:
  hook:
    provider: webhook
    url: ${RELAIS_TENANT_CRMCO_HOOK_URL}
    timeout_seconds: 5
  hubspot:
    provider: hubspot
    settings:
      api_base_url: ${RELAIS_TENANT_CRMCO_HS_URL}
      token_url: ${RELAIS_TENANT_CRMCO_HS_URL}/oauth/v1/token
      authorization_url: ${RELAIS_TENANT_CRMCO_HS_URL}/oauth/authorize
rules:
  default:
    then:
      - connection: hook
      - connection: hubspot
"""
HOOK_PATH = "/hooks/crmco/hook"


def run(what: list[str]) -> None:
    subprocess.run(what, check=True, capture_output=True, timeout=120)


def restart_broker(backend: str) -> None:
    if backend == "pg-redis":
        # Redis runs here without a config file or persistence (queued tasks are
        # lost: the beat's sweep finds the deliveries they were for).
        subprocess.run(["redis-cli", "shutdown", "nosave"], capture_output=True, timeout=30)
        run(["redis-server", "--bind", "127.0.0.1", "--port", "6379", "--daemonize", "yes",
             "--save", "", "--appendonly", "no"])
    else:
        run(["rabbitmqctl", "stop_app"])
        run(["rabbitmqctl", "start_app"])


def restart_postgres() -> None:
    run(["pg_ctlcluster", "15", "main", "restart"])


class Faults(threading.Thread):
    """Queues HubSpot faults in proportion to the requests it has seen."""

    def __init__(self, emu, stop: threading.Event) -> None:  # noqa: ANN001
        super().__init__(daemon=True)
        self.emu, self.stop = emu, stop
        self.queued = {"503": 0, "hang": 0, "drop_after_write": 0, "429": 0}
        self.rng = random.Random(11)  # noqa: S311 - fault injection

    def storm(self) -> None:
        self.emu.control("POST", "faults", {"kind": "error", "status": 429, "times": 30,
                                            "headers": {"Retry-After": "2"}})
        self.queued["429"] += 30

    def run(self) -> None:
        seen = 0
        while not self.stop.wait(1.0):
            try:
                counters = self.emu.control("GET", "counters")["counters"]
            except Exception:  # noqa: BLE001 - the emulator is busy: next second
                continue
            total = sum(n for k, n in counters.items() if " " in k and k[0].isupper())
            for _ in range(total - seen):
                roll = self.rng.random()
                if roll < 0.05:
                    self._add({"kind": "error", "status": 503}, "503")
                elif roll < 0.07:
                    self._add({"kind": "hang", "seconds": 12, "apply": roll < 0.06}, "hang")
                elif roll < 0.08:
                    self._add({"kind": "drop_after_write"}, "drop_after_write")
            seen = total

    def _add(self, fault: dict, name: str) -> None:
        try:
            self.emu.control("POST", "faults", {**fault, "path": "^/crm/"})
            self.queued[name] += 1
        except Exception:  # noqa: BLE001
            pass


def chaos_run(backend: str, args: argparse.Namespace) -> bool:
    from crm_push import RemoteEmulator

    hub = Hub(backend)
    hub.env.update({"RELAIS_DELIVERY_LEASE_SECONDS": "30", "RELAIS_DELIVERY_STALE_SECONDS": "5",
                    "RELAIS_SWEEP_INTERVAL_SECONDS": "2"})
    receiver = ReceiverProcess(args.latency_ms / 1000)
    emu = RemoteEmulator("hubspot")
    print(f"{hub.label}: {args.seconds:.0f} s of posting by {CLIENTS} clients, {args.kills} "
          f"worker kills, broker and PostgreSQL restarts: {not args.no_restarts}, "
          f"receiver latency {args.latency_ms:.0f} ms", flush=True)
    try:
        secrets = hub.apply(TENANT_YAML, {
            "RELAIS_TENANT_CRMCO_HOOK_URL": receiver.url + HOOK_PATH,
            "RELAIS_TENANT_CRMCO_HS_URL": emu.url})
        receiver.secret(HOOK_PATH, secrets["hook"])
        receiver.set("fail_first", 0.05)
        from sync.connections import set_credentials
        from sync.store.db import session_scope

        with session_scope() as session:
            set_credentials(session, "crmco", "hubspot",
                            {"access_token": emu.details["private_app_token"]})
        key = hub.key("crmco")
        port = free_port()
        hub.api(2, port)
        hub.wait_port(port)
        workers = [hub.worker(2), hub.worker(2)]
        hub.beat()

        stop = threading.Event()
        faults = Faults(emu, stop)
        faults.start()
        posted: list[Posted] = []
        end = time.monotonic() + args.seconds
        poster = threading.Thread(target=lambda: posted.append(post_concurrently(
            f"http://127.0.0.1:{port}/v1/tenants/crmco/messages", key, CLIENTS, 10**6, 0,
            stop_at=end)))
        poster.start()
        kills, events = 0, []
        start = time.monotonic()
        plan = sorted([(args.seconds * (i + 0.5) / args.kills, "kill") for i in range(args.kills)]
                      + ([(args.seconds * 0.3, "broker"), (args.seconds * 0.45, "storm"),
                          (args.seconds * 0.6, "postgres")] if not args.no_restarts
                         else [(args.seconds * 0.45, "storm")]))
        for at, what in plan:
            time.sleep(max(0.0, start + at - time.monotonic()))
            t = time.monotonic() - start
            if what == "kill":
                victim = random.randrange(len(workers))  # noqa: S311
                hub.kill(workers[victim])
                kills += 1
                workers[victim] = hub.worker(2)
            elif what == "broker":
                restart_broker(backend)
            elif what == "postgres":
                restart_postgres()
            else:
                faults.storm()
            events.append(f"{what}@{t:.0f}s")
        poster.join()
        stop.set()
        print(f"  events: {' '.join(events)}", flush=True)
        print(f"  faults queued at HubSpot: {faults.queued}", flush=True)
        result = posted[0]
        settled = settle(SETTLE_SECONDS)
        return report(result, receiver, emu, kills, settled)
    finally:
        hub.close()
        receiver.stop()
        emu.stop()


def settle(timeout: float) -> dict[str, int]:
    """Wait until no delivery is pending or in flight; return the counts by status."""
    from sqlalchemy import func, select

    from sync.store.db import dispose_engines, session_scope
    from sync.store.models import Delivery

    dispose_engines()  # PostgreSQL restarted: the pool's connections are gone
    deadline = time.monotonic() + timeout
    while True:
        with session_scope(readonly=True) as session:
            counts = dict(session.execute(
                select(Delivery.status, func.count()).group_by(Delivery.status)).all())
        if not counts.get("pending") and not counts.get("in_flight"):
            return counts
        if time.monotonic() > deadline:
            return counts
        time.sleep(1.0)


def report(posted: Posted, receiver: ReceiverProcess, emu, kills: int,  # noqa: ANN001
           counts: dict[str, int]) -> bool:
    from collections import Counter

    from sqlalchemy import select

    from sync.store.db import session_scope
    from sync.store.models import Connection, Delivery

    accepted = set(posted.accepted_ids)
    with session_scope(readonly=True) as session:
        rows = session.execute(select(Delivery.message_id, Connection.name, Delivery.status,
                                      Delivery.idempotency_key)
                               .join(Connection, Connection.id == Delivery.connection_id)).all()
    delivered = {(m, name) for m, name, status, _k in rows if status == "delivered"}
    keys = {k: m for m, _n, _s, k in rows}
    calls = emu.control("GET", "objects/calls")["results"]
    contacts = emu.control("GET", "objects/contacts")["results"]
    # relais_id is unique at HubSpot: a second record of one call would carry
    # another; the title holds the message's subject, unique per message here,
    # and each message has its own caller phone.
    titles = Counter(str(c["properties"].get("hs_call_title")) for c in calls)
    phones = Counter(str(c["properties"].get("phone")) for c in contacts)
    duplicates = (sum(n - 1 for n in titles.values() if n > 1)
                  + sum(n - 1 for n in phones.values() if n > 1))
    traces = {str(c["properties"].get("relais_id")) for c in calls}
    landed_hs = {keys[t] for t in traces if t in keys}
    stats = receiver.stats()
    landed_hook = stats["unique"]
    lost_hook = sum(1 for m in accepted if (m, "hook") not in delivered)
    lost_hs = sum(1 for m in accepted if m not in landed_hs)
    lost = lost_hook + lost_hs
    p99 = 1000 * percentile(posted.latencies, 99)
    print(f"  accepted {len(accepted)} messages ({2 * len(accepted)} deliveries); deliveries by "
          f"status {counts}", flush=True)
    print(f"  landed: webhook {landed_hook} keys, HubSpot {len(landed_hs)} call records",
          flush=True)
    print(f"  lost {lost} (webhook {lost_hook}, HubSpot {lost_hs}); repeats at the webhook "
          f"{stats['repeats']} after {kills} kills (limit {REPEATS_PER_KILL * kills}); "
          f"duplicates applied at HubSpot (calls, contacts) {duplicates}; "
          f"5xx to clients {posted.server_errors}"
          f" (answers {dict(sorted(posted.statuses.items()))}, no answer {posted.errors}); "
          f"p99 accept latency {p99:.0f} ms", flush=True)
    return (lost == 0 and duplicates == 0 and posted.server_errors == 0
            and stats["repeats"] <= REPEATS_PER_KILL * kills)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--latency-ms", type=float, default=60.0)
    parser.add_argument("--brokers", default="pg-redis,pg-rabbitmq")
    parser.add_argument("--no-restarts", action="store_true")
    args = parser.parse_args()
    if args.latency_ms < 50:
        parser.error("--latency-ms must be at least 50 (a realistic endpoint)")
    ok = True
    for backend in args.brokers.split(","):
        ok = chaos_run(backend.strip(), args) and ok
    print("chaos: PASS" if ok else "chaos: FAIL", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
