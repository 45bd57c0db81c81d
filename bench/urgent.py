"""A lone urgent message: from the secretary's POST to the destination holding it.

Issue 16.3's target: the provider's round trip + 1 s at p99. The hub runs as real
processes on loopback (``uvicorn relais.api:create_app``, ``relais worker``), on the
embedded default (SQLite + filesystem broker) and on PostgreSQL + Redis:

- webhook (tenant ``acme``): one signed POST per message to a receiver answering in
  ``--latency-ms`` in its own process. Baseline, measured in the same run: that very
  POST sent straight to the same receiver, i.e. the provider round trip itself.
- HubSpot (tenant ``crmco``, a batching connector that lingers to fill a batch): an
  urgent message against a normal one, so the linger an urgent message skips shows.
  The HubSpot emulator runs in its own process with ``--latency-ms`` per call.

Each sample is one message posted while the hub is idle (a random pause of
0.3-0.8 s before it); the clock stops when the destination holds it (receiver's
distinct keys; HubSpot's call records). Figures: median, p99 and max over
``--samples`` per series.

Usage: python bench/urgent.py [--samples 20] [--latency-ms 50] [--backends sqlite,pg-redis]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from crm_push import RemoteEmulator  # noqa: E402 - the path above
from hub import ROOT, Hub, ReceiverProcess, call, free_port, percentile  # noqa: E402

HOOK_PATH = "/hooks/acme/hook"


def line(label: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"  {label:<48} p50 {statistics.median(ms):7.1f} ms   p99 {percentile(ms, 99):7.1f}"
            f" ms   max {max(ms):7.1f} ms   (n={len(ms)})")


def until(check: Callable[[], bool], timeout: float = 30.0, step: float = 0.002) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("the message never reached its destination")
        time.sleep(step)


def post_one(http, url: str, key: str, urgency: str) -> None:  # type: ignore[no-untyped-def]
    body = {**call(random.randrange(10**6)), "urgency": urgency}  # noqa: S311
    response = http.post(url, json=body, headers={"Authorization": f"Bearer {key}",
                                                   "Idempotency-Key": uuid.uuid4().hex})
    response.raise_for_status()


def webhook_series(hub: Hub, receiver: ReceiverProcess, url: str, key: str, secret: str,
                   samples: int) -> tuple[list[float], list[float]]:
    """(ours, direct POSTs), interleaved so both see the same machine."""
    import httpx

    from connectors.webhook import sign

    ours: list[float] = []
    direct: list[float] = []
    with httpx.Client(timeout=30) as http:
        for _ in range(samples):
            time.sleep(random.uniform(0.3, 0.8))  # noqa: S311 - the hub idle: a lone message
            seen = receiver.stats()["unique"]
            start = time.perf_counter()
            post_one(http, url, key, "urgent")
            until(lambda seen=seen: receiver.stats()["unique"] > seen)
            ours.append(time.perf_counter() - start)
            payload = b'{"event":"bench.direct"}'
            stamp = str(int(time.time()))
            start = time.perf_counter()
            answer = http.post(receiver.url + HOOK_PATH, content=payload, headers={
                "Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex,
                "Relais-Timestamp": stamp, "Relais-Signature": sign(secret, stamp, payload)})
            direct.append(time.perf_counter() - start)
            answer.raise_for_status()
    return ours, direct


def hubspot_series(emu: RemoteEmulator, url: str, key: str, samples: int
                   ) -> dict[str, list[float]]:
    import httpx

    def records() -> int:
        return len(emu.control("GET", "objects/calls")["results"])

    out: dict[str, list[float]] = {"urgent": [], "normal": []}
    with httpx.Client(timeout=30) as http:
        for i in range(2 * samples):
            urgency = "urgent" if i % 2 == 0 else "normal"
            time.sleep(random.uniform(0.3, 0.8))  # noqa: S311
            seen = records()
            start = time.perf_counter()
            post_one(http, url, key, urgency)
            until(lambda seen=seen: records() > seen, step=0.005)
            out[urgency].append(time.perf_counter() - start)
    return out


def bench_backend(backend: str, args: argparse.Namespace) -> None:
    hub = Hub(backend)
    receiver = ReceiverProcess(args.latency_ms / 1000)
    emu = RemoteEmulator("hubspot")
    print(f"{hub.label}: receiver and HubSpot emulator at {args.latency_ms:.0f} ms per call; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    try:
        emu.control("POST", "latency", {"ms": args.latency_ms})
        secret = hub.apply((ROOT / "tests" / "fixtures" / "acme.yaml").read_text(),
                           {"RELAIS_TENANT_ACME_HOOK_URL": receiver.url + HOOK_PATH})["hook"]
        receiver.secret(HOOK_PATH, secret)
        hub.apply((ROOT / "tests" / "fixtures" / "crm.yaml").read_text(),
                  {"RELAIS_TENANT_CRMCO_HS_URL": emu.url})
        from sync.connections import set_credentials
        from sync.store.db import session_scope

        with session_scope() as session:
            set_credentials(session, "crmco", "hubspot",
                            {"access_token": emu.details["private_app_token"]})
        acme, crmco = hub.key("acme"), hub.key("crmco")
        hub.worker(concurrency=2)
        port = free_port()
        hub.api(1, port)
        hub.wait_port(port)
        base = f"http://127.0.0.1:{port}/v1/tenants"
        ours, direct = webhook_series(hub, receiver, f"{base}/acme/messages", acme, secret,
                                      args.samples)
        print(line("webhook, urgent: POST -> received", ours))
        print(line("baseline: the same POST straight to the receiver", direct))
        print(f"  p99 above the provider round trip: "
              f"{(percentile(ours, 99) - percentile(direct, 99)) * 1000:.0f} ms "
              f"(target: at most 1000 ms)")
        crm = hubspot_series(emu, f"{base}/crmco/messages", crmco, args.samples)
        print(line("HubSpot, urgent: POST -> call record", crm["urgent"]))
        print(line("HubSpot, normal (may wait for its batch)", crm["normal"]))
        print(f"  normal / urgent, medians: "
              f"{statistics.median(crm['normal']) / statistics.median(crm['urgent']):.2f}x",
              flush=True)
    finally:
        hub.close()
        receiver.stop()
        emu.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--backends", default="sqlite,pg-redis")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        bench_backend(backend, args)


if __name__ == "__main__":
    main()
