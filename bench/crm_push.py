"""CRM push: our batched, paced delivery through Celery against a naive script.

For each CRM sandbox (HubSpot at 100 requests per 10 s; Salesforce with its
daily allocation), in its own process with 50 ms of latency on every call, and
for each of ``--rounds`` rounds (default 3), in the same run:

- ours: ``--messages`` (default 5000) messages accepted into the outbox, then
  delivered by a real Celery worker (``relais worker --concurrency 2``, the
  embedded default: SQLite and the filesystem broker) until all have landed;
  timed from the worker's "ready" to the last delivery;
- the baseline: the first ``--baseline-messages`` (default 100) of the same
  messages sent by what a hand-written script does: for each message, look the
  caller up, create the contact if missing, create the call log (and the
  callback task), one SDK call per record, sleeping on 429 as told (it runs at
  ~3 requests per record, so 5000 messages would take half an hour on HubSpot).

Before every run, ours and the baseline alike, the emulator is reset to the
same state (no records, fresh rate-limit windows, the same limits and latency).
Every figure printed is measured: records per second, API calls per record
(counted by the emulator), 429 (HubSpot) and 403 ``REQUEST_LIMIT_EXCEEDED``
(Salesforce) answers counted by the emulator, per round and as the median
[min-max] over rounds, with ours / baseline.

Usage: python bench/crm_push.py [--messages 5000] [--baseline-messages 100]
                                [--rounds 3] [--only hubspot|salesforce] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from math import ceil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

LATENCY_MS = 50
CALLBACK_SHARE = 3  # every third call asks for a callback
SECRET = "kVvJ0x0b3Ckq6bQ1kXq3vP8s7mYkJ6V8o9Qf1m2n3o4="


def configure_store(home: Path) -> dict[str, str]:
    env = {"RELAIS_HOME": str(home), "RELAIS_SECRET_KEYS": SECRET,
           "RELAIS_QUEUE": f"crm-bench-{os.getpid()}",
           "RELAIS_ALLOW_PRIVATE_URLS": "1"}  # fmt: skip
    os.environ.update(env)
    for key in ("RELAIS_DATABASE_URL", "RELAIS_BROKER_URL"):
        os.environ.pop(key, None)
    from relais.migrate import upgrade
    from sync.queue import reset_celery
    from sync.ratelimit import reset_store
    from sync.settings import reset_settings
    from sync.store.db import dispose_engines

    reset_settings()
    reset_celery()
    reset_store()
    dispose_engines()
    upgrade()
    return env


def message(n: int) -> dict[str, Any]:
    from crm_helpers import call

    return call(n, callback_requested=(n % CALLBACK_SHARE == 0))


def callbacks(n: int) -> int:
    return sum(1 for i in range(n) if message(i)["callback_requested"])


@dataclass
class Run:
    seconds: float
    records: int
    calls: int
    refused: int  # 429 (HubSpot) or 403 (Salesforce) answers

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def per_record(self) -> float:
        return self.calls / self.records


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return (f"{fmt.format(statistics.median(values))} "
            f"[{fmt.format(min(values))}-{fmt.format(max(values))}]")  # fmt: skip


# --------------------------------------------------------------------------- ours


def prepare(setup: Callable[[], str], tenant: str, n: int) -> tuple[Path, str]:
    """A store (SQLite + broker folder) with ``n`` messages accepted and nothing
    enqueued yet, kept as a template each round copies: (folder, connection id)."""
    home = Path(tempfile.mkdtemp(prefix="relais-crm-bench-"))
    configure_store(home)
    from crm_helpers import accept

    name = setup()
    from crm_helpers import connection_id

    for i in range(n):
        accept(tenant, message(i))
    from sync.store.db import dispose_engines

    dispose_engines()
    return home, connection_id(tenant, name)


def run_ours(template: Path, connection: str, tenant: str, n: int, emu: Any, prefix: str,
             refusal: str) -> Run:
    """Copy the template store, enqueue the connection, start a Celery worker and
    time it from "ready" to the last of ``n`` deliveries."""
    home = Path(tempfile.mkdtemp(prefix="relais-crm-round-"))
    shutil.copytree(template, home, dirs_exist_ok=True)
    env = configure_store(home)
    from crm_helpers import statuses

    from sync.queue import enqueue_connections

    enqueue_connections([connection])  # what the API does after accepting
    before_calls, before_refused = emu.count(prefix, refusal)
    log_path = home / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relais", "worker", "--concurrency", "2", "--loglevel", "INFO"],
            cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)  # fmt: skip
    try:
        while "ready." not in log_path.read_text(errors="replace"):
            if proc.poll() is not None:
                raise RuntimeError(log_path.read_text()[-2000:])
            time.sleep(0.01)
        start = time.perf_counter()
        while True:
            counts = statuses(tenant)
            if counts.get("delivered", 0) + counts.get("dead", 0) >= n:
                break
            if time.perf_counter() - start > 900:
                raise RuntimeError(f"not delivered after 15 minutes: {counts}")
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:  # measured already: no need for a warm shutdown
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if counts.get("dead"):
        raise RuntimeError(f"{counts['dead']} deliveries died: the benchmark is not valid")
    after_calls, after_refused = emu.count(prefix, refusal)
    shutil.rmtree(home, ignore_errors=True)
    return Run(elapsed, n, after_calls - before_calls, after_refused - before_refused)


class RemoteEmulator:
    """An emulator in its own process (``python -m sandbox``), so its work does not
    share our interpreter's time; driven through its ``/__sandbox__/`` endpoints."""

    def __init__(self, only: str) -> None:
        import json
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "--only", only, "--json"], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        text = ""
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the sandbox did not start")
            text += line
            try:
                self.info = json.loads(text)
                break
            except ValueError:
                continue
        self.details = self.info[only]
        self.url = self.details["url"]
        self.ca_file = self.info.get("ca_file")

    def control(self, method: str, path: str, body: dict | None = None) -> Any:
        import httpx

        response = httpx.request(method, f"{self.url}/__sandbox__/{path}", json=body,
                                 verify=self.ca_file or True, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else None

    def count(self, prefix: str, refusal: str) -> tuple[int, int]:
        """(requests under ``prefix``, answers counted under ``refusal``) so far."""
        counters = self.control("GET", "counters")["counters"]
        calls = sum(n for k, n in counters.items()
                    if " " in k and k.split(" ", 1)[1].startswith(prefix))
        return calls, counters.get(refusal, 0)

    def fresh(self, config: dict[str, Any]) -> None:
        """No records, counters and rate windows reset; the same limits and latency."""
        self.control("POST", "reset", {"data": True})
        self.control("POST", "config", config)
        self.control("POST", "latency", {"ms": LATENCY_MS})

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def report(name: str, ours: list[Run], base: list[Run], refusal: str, lower: int,
           allows: Callable[[Run], float] | None = None) -> None:
    n = ours[0].records
    for label, runs in (("ours", ours), ("baseline", base)):
        print(f"  {label:<9} {runs[0].records:>5} messages: "
              f"{spread([r.rate for r in runs]):>20} records/s   "
              f"{spread([r.per_record for r in runs], '{:.4f}')} calls/record   "
              f"{refusal}: {spread([r.refused for r in runs], '{:.0f}')}   "
              f"{spread([r.seconds for r in runs])} s")
    calls = statistics.median(r.calls for r in ours)
    print(f"  ours: calls/record against the batch lower bound {lower / n:.4f}: "
          f"{calls / lower - 1:+.0%} (median)")
    if allows is not None:
        share = [r.rate / allows(r) for r in ours]
        print(f"  ours: share of what the rate limit allows at our calls/record: "
              f"{spread([100 * x for x in share], '{:.0f}')} %")
    speed = [o.rate / b.rate for o, b in zip(ours, base, strict=True)]
    fewer = [b.per_record / o.per_record for o, b in zip(ours, base, strict=True)]
    print(f"  ours / baseline: {spread(speed)}x records/s, {spread(fewer, '{:.0f}')}x fewer "
          "calls per record (median [min-max] over rounds, paired)")


def rounds(label: str, count: int, once: Callable[[], Run]) -> list[Run]:
    runs = []
    for r in range(count):
        runs.append(once())
        print(f"    {label} round {r + 1}: {runs[-1].rate:8.1f} records/s, "
              f"{runs[-1].per_record:.4f} calls/record, {runs[-1].refused} refused, "
              f"{runs[-1].seconds:.1f} s", flush=True)
    return runs


# --------------------------------------------------------------------------- HubSpot
def hubspot(n: int, baseline_n: int, count: int) -> None:
    limit, window = 100, 10.0
    print(f"HubSpot sandbox: {limit} requests / {window:.0f} s, {LATENCY_MS} ms latency")
    emu = RemoteEmulator("hubspot")
    config = {"rate_limit_max": limit, "rate_limit_interval_ms": int(window * 1000),
              "daily_limit": 10_000_000}  # fmt: skip
    token = emu.details["private_app_token"]
    try:
        def setup() -> str:
            from sync.connections import set_credentials
            from sync.store.db import session_scope
            from sync.tenants import apply_config

            os.environ["RELAIS_TENANT_CRMCO_HS_URL"] = emu.url
            text = (ROOT / "tests" / "fixtures" / "crm.yaml").read_text()
            with session_scope() as session:
                apply_config(session, text, "crm.yaml", actor="bench")
                set_credentials(session, "crmco", "hubspot", {"access_token": token})
            return "hubspot"

        template, connection = prepare(setup, "crmco", n)

        def ours_once() -> Run:
            emu.fresh(config)
            run = run_ours(template, connection, "crmco", n, emu, "/crm", "status:429")
            records = len(emu.control("GET", "objects/calls")["results"])
            assert records == n, f"{records} call records for {n} messages"
            return run

        def base_once() -> Run:
            emu.fresh(config)
            return hubspot_baseline(emu, token, baseline_n)

        ours = rounds("ours", count, ours_once)
        base = rounds("baseline", count, base_once)
        lower = 3 * ceil(n / 100) + ceil(callbacks(n) / 100)  # lookup, contacts, calls, tasks
        report("HubSpot", ours, base, "429s", lower,
               allows=lambda r: limit / window / r.per_record)  # records/s at our calls/record
    finally:
        emu.stop()


def hubspot_baseline(emu: RemoteEmulator, token: str, n: int) -> Run:
    """One SDK call per record, sleeping on 429 as a careful script would; calls
    and 429s as the emulator counted them."""
    from hubspot import HubSpot
    from hubspot.crm.contacts import Filter, FilterGroup, PublicObjectSearchRequest
    from hubspot.crm.objects import (
        AssociationSpec,
        PublicAssociationsForObject,
        PublicObjectId,
        SimplePublicObjectInputForCreate,
    )

    client = HubSpot(access_token=token, host=emu.url)

    def send(fn: Any) -> Any:
        while True:
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001
                if getattr(exc, "status", None) != 429:
                    raise
                time.sleep(1.0)

    def assoc(contact: str, type_id: int) -> list[Any]:
        return [PublicAssociationsForObject(to=PublicObjectId(id=contact), types=[
            AssociationSpec(association_category="HUBSPOT_DEFINED",
                            association_type_id=type_id)])]

    before_calls, before_429 = emu.count("/crm", "status:429")
    start = time.perf_counter()
    for i in range(n):
        msg = message(i)
        phone = msg["caller"]["phone"]
        search = PublicObjectSearchRequest(filter_groups=[FilterGroup(filters=[
            Filter(property_name="phone", operator="EQ", value=phone)])], limit=1)
        found = send(lambda s=search: client.crm.contacts.search_api.do_search(
            public_object_search_request=s))
        if found.results:
            contact = found.results[0].id
        else:
            first, last = msg["caller"]["name"].split(" ", 1)
            contact = send(lambda f=first, la=last, p=phone: client.crm.contacts.basic_api.create(
                SimplePublicObjectInputForCreate(
                    properties={"firstname": f, "lastname": la, "phone": p}))).id
        ts = str(int(time.time() * 1000))
        send(lambda c=contact, m=msg, ts=ts: client.crm.objects.calls.basic_api.create(
            SimplePublicObjectInputForCreate(
                properties={"hs_timestamp": ts, "hs_call_title": m["subject"],
                            "hs_call_body": m["body"]}, associations=assoc(c, 194))))
        if msg["callback_requested"]:
            send(lambda c=contact, m=msg, ts=ts: client.crm.objects.tasks.basic_api.create(
                SimplePublicObjectInputForCreate(
                    properties={"hs_timestamp": ts, "hs_task_subject": f"Rappeler {m['subject']}"},
                    associations=assoc(c, 204))))
    elapsed = time.perf_counter() - start
    calls, got_429 = emu.count("/crm", "status:429")
    return Run(elapsed, n, calls - before_calls, got_429 - before_429)


# --------------------------------------------------------------------------- Salesforce
def salesforce(n: int, baseline_n: int, count: int) -> None:
    print(f"Salesforce sandbox: rolling 24 h allocation, {LATENCY_MS} ms latency")
    emu = RemoteEmulator("salesforce")
    config = {"daily_api_limit": 1_000_000}
    try:
        def setup() -> str:
            from sync.connections import set_credentials
            from sync.store.db import session_scope
            from sync.tenants import apply_config

            os.environ["RELAIS_TENANT_SFCO_SF_URL"] = emu.url
            os.environ["RELAIS_TENANT_SFCO_SF_CA"] = str(emu.ca_file)
            text = (ROOT / "tests" / "fixtures" / "crm_salesforce.yaml").read_text()
            with session_scope() as session:
                apply_config(session, text, "crm_salesforce.yaml", actor="bench")
                set_credentials(session, "sfco", "salesforce", {
                    "access_token": emu.details["session_id"], "instance_url": emu.url})
            return "salesforce"

        template, connection = prepare(setup, "sfco", n)

        def ours_once() -> Run:
            emu.fresh(config)
            run = run_ours(template, connection, "sfco", n, emu, "/services/data", "status:403")
            tasks = emu.control("GET", "records/Task")["records"]
            logged = [t for t in tasks if not str(t.get("Relais_Id__c", "")).endswith(":callback")]
            assert len(logged) == n, f"{len(logged)} call Tasks for {n} messages"
            return run

        def base_once() -> Run:
            emu.fresh(config)
            return salesforce_baseline(emu, baseline_n)

        ours = rounds("ours", count, ours_once)
        base = rounds("baseline", count, base_once)
        # contacts, call Tasks, callback Tasks: one Collections call per 200 each; the
        # lookup: one Composite call of up to 25 queries (~20 callers each) per 500 callers.
        lower = 2 * ceil(n / 200) + ceil(callbacks(n) / 200) + ceil(n / 500)
        report("Salesforce", ours, base, "403 REQUEST_LIMIT_EXCEEDED", lower)
        print("  (each call spends the org's daily API allocation)")
    finally:
        emu.stop()


def salesforce_baseline(emu: RemoteEmulator, n: int) -> Run:
    """One simple-salesforce call per record, as a hand-written script would; calls
    and 403s as the emulator counted them."""
    import requests
    from simple_salesforce import Salesforce

    session = requests.Session()
    session.trust_env = False
    session.verify = emu.ca_file
    sf = Salesforce(instance_url=emu.url, session_id=emu.details["session_id"], session=session,
                    version="59.0")
    contacts, tasks = sf.Contact, sf.Task
    before_calls, before_403 = emu.count("/services/data", "status:403")
    start = time.perf_counter()
    for i in range(n):
        msg = message(i)
        phone = msg["caller"]["phone"]
        found = sf.query(f"SELECT Id FROM Contact WHERE Phone = '{phone}' LIMIT 1")
        if found["records"]:
            who = found["records"][0]["Id"]
        else:
            first, last = msg["caller"]["name"].split(" ", 1)
            who = contacts.create({"FirstName": first, "LastName": last, "Phone": phone})["id"]
        tasks.create({"Subject": msg["subject"], "Description": msg["body"], "WhoId": who,
                      "Status": "Completed"})
        if msg["callback_requested"]:
            tasks.create({"Subject": f"Rappeler {msg['subject']}", "WhoId": who,
                          "Status": "Not Started"})
    elapsed = time.perf_counter() - start
    calls, got_403 = emu.count("/services/data", "status:403")
    return Run(elapsed, n, calls - before_calls, got_403 - before_403)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--baseline-messages", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("hubspot", "salesforce"))
    parser.add_argument("--quick", action="store_true", help="1000 messages, baseline 30")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.baseline_messages = 1000, 30
    print(f"CRM push benchmark: {args.messages} messages (baseline: {args.baseline_messages}), "
          f"one callback task every {CALLBACK_SHARE} calls, {args.rounds} rounds each")
    if args.only in (None, "hubspot"):
        hubspot(args.messages, args.baseline_messages, args.rounds)
    if args.only in (None, "salesforce"):
        salesforce(args.messages, args.baseline_messages, args.rounds)


if __name__ == "__main__":
    main()
