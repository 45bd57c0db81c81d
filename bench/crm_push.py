"""CRM push: our batched, paced delivery against a naive one-call-per-record script.

For each CRM sandbox (HubSpot at 100 requests per 10 s; Salesforce with its
daily allocation), with 50 ms of latency on every call, it measures in the same
run:
- ours: N messages accepted into the outbox, then delivered by the engine
  (``process_connection``, the worker's step) until all have landed;
- the baseline: what a hand-written script does: for each message, look the
  caller up, create the contact if missing, create the call log (and the
  callback task), one SDK call per record, sleeping on 429 as told.

It prints records per second, API calls per record, and 429s received, for
both, and our throughput against what the provider's limit allows.

Usage: python bench/crm_push.py [--messages 5000] [--baseline-messages 200]
                                [--only hubspot|salesforce]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from math import ceil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

LATENCY_MS = 50
CALLBACK_SHARE = 3  # every third call asks for a callback


def configure_store(home: Path) -> None:
    os.environ.update({
        "RELAIS_HOME": str(home),
        "RELAIS_SECRET_KEYS": "kVvJ0x0b3Ckq6bQ1kXq3vP8s7mYkJ6V8o9Qf1m2n3o4=",
    })
    for key in ("RELAIS_DATABASE_URL", "RELAIS_BROKER_URL"):
        os.environ.pop(key, None)
    from relais.db import dispose_engines
    from relais.migrate import upgrade
    from relais.settings import reset_settings
    from sync.ratelimit import reset_store

    reset_settings()
    reset_store()
    dispose_engines()
    upgrade()


def message(n: int) -> dict[str, Any]:
    from crm_helpers import call

    return call(n, callback_requested=(n % CALLBACK_SHARE == 0))


def callbacks(n: int) -> int:
    return sum(1 for i in range(n) if message(i)["callback_requested"])


def accept_all(tenant: str, n: int) -> None:
    from crm_helpers import accept

    for i in range(n):
        accept(tenant, message(i))


def drain(connection: str, tenant: str, n: int) -> float:
    from crm_helpers import statuses

    from sync.delivery import process_connection

    start = time.perf_counter()
    while True:
        counts = statuses(tenant)
        if counts.get("delivered", 0) + counts.get("dead", 0) >= n:
            break
        outcome = process_connection(connection)
        if outcome.claimed == 0:
            time.sleep(min(outcome.run_again_in or 0.02, 0.5))
    elapsed = time.perf_counter() - start
    if counts.get("dead"):
        raise RuntimeError(f"{counts['dead']} deliveries died: the benchmark is not valid")
    return elapsed


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

    def count(self, prefix: str) -> tuple[int, int]:
        """(requests under ``prefix``, 429 answers) so far."""
        counters = self.control("GET", "counters")["counters"]
        calls = sum(n for k, n in counters.items()
                    if " " in k and k.split(" ", 1)[1].startswith(prefix))
        return calls, counters.get("status:429", 0)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# --------------------------------------------------------------------------- HubSpot
def hubspot(n: int, baseline_n: int) -> None:
    limit, window = 100, 10.0
    print(f"HubSpot sandbox: {limit} requests / {window:.0f} s, {LATENCY_MS} ms latency")
    emu = RemoteEmulator("hubspot")
    emu.control("POST", "config", {"rate_limit_max": limit,
                                   "rate_limit_interval_ms": int(window * 1000),
                                   "daily_limit": 10_000_000})
    emu.control("POST", "latency", {"ms": LATENCY_MS})
    token = emu.details["private_app_token"]
    try:
        configure_store(Path(tempfile.mkdtemp(prefix="relais-crm-bench-")))
        from crm_helpers import connection_id

        from relais.connections import set_credentials
        from relais.db import session_scope
        from relais.tenants import apply_config

        os.environ["RELAIS_TENANT_HS_URL"] = emu.url
        text = (ROOT / "tests" / "fixtures" / "crm.yaml").read_text()
        with session_scope() as session:
            apply_config(session, text, "crm.yaml", actor="bench")
            set_credentials(session, "crmco", "hubspot", {"access_token": token})
        accept_all("crmco", n)
        before_calls, before_429 = emu.count("/crm")
        elapsed = drain(connection_id("crmco", "hubspot"), "crmco", n)
        after_calls, after_429 = emu.count("/crm")
        calls, got_429 = after_calls - before_calls, after_429 - before_429
        records = len(emu.control("GET", "objects/calls")["results"])
        assert records == n, f"{records} call records for {n} messages"
        sustained = limit / window / (calls / n)  # records/s the limit allows at our calls/record
        lower = 3 * ceil(n / 100) + ceil(callbacks(n) / 100)  # lookup, contacts, calls, tasks
        print(f"  ours:     {n / elapsed:8.1f} records/s  {calls / n:.4f} calls/record "
              f"(batch lower bound {lower / n:.4f}, {calls / lower - 1:+.0%})  "
              f"429s: {got_429}  {elapsed:.1f} s; the limit allows {sustained:.0f} records/s "
              f"sustained -> {n / elapsed / sustained:.0%} of it")
        ours_rate = n / elapsed
        emu.control("POST", "reset", {"data": True})
        emu.control("POST", "config", {"rate_limit_max": limit,
                                       "rate_limit_interval_ms": int(window * 1000),
                                       "daily_limit": 10_000_000})
        emu.control("POST", "latency", {"ms": LATENCY_MS})
        base_rate, base_calls, base_429 = hubspot_baseline(emu.url, token, baseline_n)
        print(f"  baseline: {base_rate:8.1f} records/s  {base_calls:.4f} calls/record  "
              f"429s: {base_429}  ({baseline_n} messages)")
        print(f"  ratio ours / baseline: {ours_rate / base_rate:.1f}x records/s, "
              f"{base_calls / (calls / n):.0f}x fewer calls per record")
    finally:
        emu.stop()


def hubspot_baseline(url: str, token: str, n: int) -> tuple[float, float, int]:
    """One SDK call per record, sleeping on 429 as a careful script would."""
    from hubspot import HubSpot
    from hubspot.crm.contacts import Filter, FilterGroup, PublicObjectSearchRequest
    from hubspot.crm.objects import (
        AssociationSpec,
        PublicAssociationsForObject,
        PublicObjectId,
        SimplePublicObjectInputForCreate,
    )

    client = HubSpot(access_token=token, host=url)
    calls = throttled = 0

    def send(fn: Any) -> Any:
        nonlocal calls, throttled
        while True:
            calls += 1
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001
                if getattr(exc, "status", None) != 429:
                    raise
                throttled += 1
                time.sleep(1.0)

    def assoc(contact: str, type_id: int) -> list[Any]:
        return [PublicAssociationsForObject(to=PublicObjectId(id=contact), types=[
            AssociationSpec(association_category="HUBSPOT_DEFINED",
                            association_type_id=type_id)])]

    start = time.perf_counter()
    for i in range(n):
        msg = message(10_000 + i)
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
    return n / elapsed, calls / n, throttled


# --------------------------------------------------------------------------- Salesforce
def salesforce(n: int, baseline_n: int) -> None:
    print(f"Salesforce sandbox: rolling 24 h allocation, {LATENCY_MS} ms latency")
    emu = RemoteEmulator("salesforce")
    emu.control("POST", "config", {"daily_api_limit": 1_000_000})
    emu.control("POST", "latency", {"ms": LATENCY_MS})
    try:
        configure_store(Path(tempfile.mkdtemp(prefix="relais-crm-bench-")))
        from crm_helpers import connection_id

        from relais.connections import set_credentials
        from relais.db import session_scope
        from relais.tenants import apply_config

        os.environ["RELAIS_TENANT_SF_URL"] = emu.url
        os.environ["RELAIS_TENANT_SF_CA"] = str(emu.ca_file)
        text = (ROOT / "tests" / "fixtures" / "crm_salesforce.yaml").read_text()
        with session_scope() as session:
            apply_config(session, text, "crm_salesforce.yaml", actor="bench")
            set_credentials(session, "sfco", "salesforce", {
                "access_token": emu.details["session_id"], "instance_url": emu.url})
        accept_all("sfco", n)
        before_calls, _ = emu.count("/services/data")
        elapsed = drain(connection_id("sfco", "salesforce"), "sfco", n)
        after_calls, _ = emu.count("/services/data")
        calls = after_calls - before_calls
        tasks = emu.control("GET", "records/Task")["records"]
        logged = [t for t in tasks if not str(t.get("Relais_Id__c", "")).endswith(":callback")]
        assert len(logged) == n, f"{len(logged)} call Tasks for {n} messages"
        # contacts, call Tasks, callback Tasks: one Collections call per 200 each; the
        # lookup: one Composite call of up to 25 queries (~20 callers each) per 500 callers.
        lower = 2 * ceil(n / 200) + ceil(callbacks(n) / 200) + ceil(n / 500)
        print(f"  ours:     {n / elapsed:8.1f} records/s  {calls / n:.4f} calls/record "
              f"(batch lower bound {lower / n:.4f}, {calls / lower - 1:+.0%})  "
              f"403 REQUEST_LIMIT_EXCEEDED: 0  {elapsed:.1f} s")
        ours_rate = n / elapsed
        base_rate, base_calls = salesforce_baseline(emu, baseline_n)
        print(f"  baseline: {base_rate:8.1f} records/s  {base_calls:.4f} calls/record  "
              f"({baseline_n} messages)")
        print(f"  ratio ours / baseline: {ours_rate / base_rate:.1f}x records/s, "
              f"{base_calls / (calls / n):.0f}x fewer calls per record (each call spends "
              "the org's daily allocation)")
    finally:
        emu.stop()


def salesforce_baseline(emu: RemoteEmulator, n: int) -> tuple[float, float]:
    """One simple-salesforce call per record, as a hand-written script would."""
    import requests
    from simple_salesforce import Salesforce

    session = requests.Session()
    session.trust_env = False
    session.verify = emu.ca_file
    sf = Salesforce(instance_url=emu.url, session_id=emu.details["session_id"], session=session,
                    version="59.0")
    contacts, tasks = sf.Contact, sf.Task
    calls = 0
    start = time.perf_counter()
    for i in range(n):
        msg = message(20_000 + i)
        phone = msg["caller"]["phone"]
        calls += 1
        found = sf.query(f"SELECT Id FROM Contact WHERE Phone = '{phone}' LIMIT 1")
        if found["records"]:
            who = found["records"][0]["Id"]
        else:
            first, last = msg["caller"]["name"].split(" ", 1)
            calls += 1
            who = contacts.create({"FirstName": first, "LastName": last, "Phone": phone})["id"]
        calls += 1
        tasks.create({"Subject": msg["subject"], "Description": msg["body"], "WhoId": who,
                      "Status": "Completed"})
        if msg["callback_requested"]:
            calls += 1
            tasks.create({"Subject": f"Rappeler {msg['subject']}", "WhoId": who,
                          "Status": "Not Started"})
    elapsed = time.perf_counter() - start
    return n / elapsed, calls / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--baseline-messages", type=int, default=100)
    parser.add_argument("--only", choices=("hubspot", "salesforce"))
    args = parser.parse_args()
    print(f"CRM push benchmark: {args.messages} messages (baseline: {args.baseline_messages}), "
          f"one callback task every {CALLBACK_SHARE} calls")
    if args.only in (None, "hubspot"):
        hubspot(args.messages, args.baseline_messages)
    if args.only in (None, "salesforce"):
        salesforce(args.messages, args.baseline_messages)


if __name__ == "__main__":
    main()
