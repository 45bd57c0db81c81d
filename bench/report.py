"""Monthly report: from the per-call aggregates vs from the raw call events.

A fresh PostgreSQL database (dropped afterwards) holds a year (2026) of calls for
``--tenants`` tenants (default 200, zone Europe/Paris): one large tenant with
``--big-calls`` calls (default 172,000: about 500,000 events) and the others with
``--small-calls`` each; about 60 % of answered calls carry a message naming the
call (``call_id``). Events and aggregates are bulk-loaded with COPY, the
aggregates computed by ``sync.calls.aggregate`` (the function ingest uses); the
ingest path itself is timed on ``--ingest`` events through ``record_events``.

Measured, per round (``--rounds``, default 5), alternating the two paths in the
same run, for ``--month`` of the large tenant:
- aggregates: ``tenant_report`` (calls read through ``ix_calls_tenant_offered``,
  grouped by local day, hour and outcome in SQL, plus the answered waits for the p90);
- raw: ``tenant_report(from_raw=True)`` (the month's events, plus a day each
  side, read through ``ix_call_events_tenant_at`` and folded per call);
the two reports are checked equal. Then the operator-wide monthly report over
every tenant (aggregates). Printed: every round's time, the median with
[min-max], and the ratio of the medians.

Usage: python bench/report.py [--rounds 5] [--tenants 200] [--big-calls 172000]
                              [--small-calls 1000] [--month 2026-11] [--ingest 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("RELAIS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PARIS = ZoneInfo("Europe/Paris")
YEAR_START = datetime(2026, 1, 1, tzinfo=PARIS).astimezone(UTC)
YEAR_SECONDS = 365 * 86400


def tenant_yaml(tenant_id: str) -> str:
    return (f"id: {tenant_id}\nname: Tenant {tenant_id}\ntimezone: Europe/Paris\n"
            "phone_region: FR\ncall_types:\n  - {id: message, label: Message}\n"
            "  - {id: rdv, label: Rendez-vous}\n  - {id: urgence, label: Urgence}\n")


def one_call(rng: random.Random) -> list[tuple[str, datetime]]:
    """A call's events: mostly in office hours, 88 % answered, 10 % abandoned, 2 %
    still ringing; 5 % of answered calls transferred."""
    day = rng.randrange(365)
    hour = rng.choices(range(24), weights=[1] * 7 + [6, 10, 10, 10, 9, 6, 8, 10, 10, 9, 7, 3]
                       + [1] * 5)[0]
    offered = YEAR_START + timedelta(days=day, hours=hour, seconds=rng.randrange(3600))
    events = [("offered", offered)]
    roll = rng.random()
    if roll < 0.88:
        answered = offered + timedelta(seconds=rng.expovariate(1 / 12))
        events.append(("answered", answered))
        talk = timedelta(seconds=30 + rng.expovariate(1 / 150))
        if rng.random() < 0.05:
            events.append(("transferred", answered + talk / 2))
        events.append(("ended", answered + talk))
    elif roll < 0.98:
        events.append(("abandoned", offered + timedelta(seconds=rng.expovariate(1 / 25))))
    return events


def load(url: str, tenants: list[str], calls_per: dict[str, int], seed: int) -> int:
    """COPY the year's events, their aggregates and the messages; returns events."""
    import psycopg

    from sync.calls import EventRow, aggregate

    rng = random.Random(seed)
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    received = datetime(2026, 12, 1, tzinfo=UTC)
    total = 0
    with psycopg.connect(plain) as conn, conn.cursor() as cur:
        for tenant in tenants:
            events_rows, call_rows, message_rows = [], [], []
            for n in range(calls_per[tenant]):
                call_id = f"{tenant}-{n}"
                events = one_call(rng)
                for kind, at in events:
                    events_rows.append((tenant, call_id, kind, at, "+33478123456",
                                        "+33612345678", "sophie", received))
                agg = aggregate(EventRow(k, at) for k, at in events)
                call_rows.append((tenant, call_id, agg["offered_at"], agg["answered_at"],
                                  agg["transferred_at"], agg["abandoned_at"], agg["ended_at"],
                                  agg["outcome"], agg["wait_seconds"], agg["talk_seconds"],
                                  "+33478123456", "+33612345678", "sophie", agg["events"]))
                if agg["outcome"] == "answered" and rng.random() < 0.6:
                    at = agg["ended_at"] or agg["answered_at"]
                    message_rows.append((
                        f"msg_{uuid.uuid4().hex}", tenant, call_id,
                        rng.choice(("message", "message", "rdv", "urgence")), "normal",
                        json.dumps({"name": "X", "phone": "+33612345678"}), "s", "", "sophie",
                        at, False, "{}", "accepted", at))
            total += len(events_rows)
            with cur.copy("COPY call_events (tenant_id, call_id, kind, at, called, caller, "
                          "secretary, received_at) FROM STDIN") as copy:
                for row in events_rows:
                    copy.write_row(row)
            with cur.copy("COPY calls (tenant_id, call_id, offered_at, answered_at, "
                          "transferred_at, abandoned_at, ended_at, outcome, wait_seconds, "
                          "talk_seconds, called, caller, secretary, events) FROM STDIN") as copy:
                for row in call_rows:
                    copy.write_row(row)
            with cur.copy("COPY messages (id, tenant_id, call_id, call_type, urgency, caller, "
                          "subject, body, taken_by, taken_at, callback_requested, intake, "
                          "status, created_at) FROM STDIN") as copy:
                for row in message_rows:
                    copy.write_row(row)
        conn.commit()
        cur.execute("ANALYZE")
    return total


def spread(values: list[float]) -> str:
    return (f"{statistics.median(values) * 1000:.1f} ms "
            f"[{min(values) * 1000:.1f}-{max(values) * 1000:.1f}]")


def in_scratch_database(kind: str, run: Callable[[str], None]) -> None:
    """Run ``run(url)`` on a PostgreSQL database of its own, dropped afterwards."""
    import psycopg

    name = f"relais_bench_{kind}_{uuid.uuid4().hex[:8]}"
    admin = PG_ADMIN.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    os.environ["RELAIS_DATABASE_URL"] = url
    os.environ.setdefault("RELAIS_SECRET_KEYS", "kVvJ0x0b3Ckq6bQ1kXq3vP8s7mYkJ6V8o9Qf1m2n3o4=")
    try:
        run(url)
    finally:
        from sync.store.db import dispose_engines

        dispose_engines()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--big-calls", type=int, default=172_000)
    parser.add_argument("--small-calls", type=int, default=1000)
    parser.add_argument("--month", default="2026-11")
    parser.add_argument("--ingest", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()

    in_scratch_database("report", lambda url: run(args, url))


def run(args: argparse.Namespace, url: str) -> None:
    from relais.migrate import upgrade
    from sync.calls import CallEventIn, record_events
    from sync.reports.load import operator_report, tenant_report
    from sync.reports.periods import local_range, parse_month
    from sync.store.db import session_scope
    from sync.tenants import apply_config

    upgrade(url)
    tenants = [f"t-{n:03d}" for n in range(args.tenants)]
    started = time.perf_counter()
    with session_scope() as session:
        for tenant in tenants:
            apply_config(session, tenant_yaml(tenant), f"{tenant}.yaml", actor="bench")
    calls_per = {t: args.small_calls for t in tenants}
    calls_per[tenants[0]] = args.big_calls
    events = load(url, tenants, calls_per, args.seed)
    with session_scope(readonly=True) as session:
        big_events = session.execute(
            __import__("sqlalchemy").text("SELECT count(*) FROM call_events WHERE tenant_id = :t"),
            {"t": tenants[0]}).scalar()
    print(f"loaded {events:,} events of {sum(calls_per.values()):,} calls for {len(tenants)} "
          f"tenants ({tenants[0]}: {big_events:,} events, {args.big_calls:,} calls) "
          f"in {time.perf_counter() - started:.1f} s")

    # The ingest path, on top of the loaded year (new calls, December).
    rng = random.Random(args.seed + 1)
    batch: list[CallEventIn] = []
    n = 0
    while len(batch) < args.ingest:
        for kind, at in one_call(rng):
            batch.append(CallEventIn(call_id=f"ingest-{n}", event=kind, at=at))
        n += 1
    started = time.perf_counter()
    for first in range(0, len(batch), 100):
        with session_scope() as session:
            record_events(session, tenants[0], batch[first:first + 100])
    took = time.perf_counter() - started
    print(f"ingest: {len(batch):,} events through record_events (batches of 100) in "
          f"{took:.2f} s: {len(batch) / took:,.0f} events/s")

    first, end = parse_month(args.month)
    start, stop = local_range(first, end, PARIS)
    now = datetime(2027, 1, 1, tzinfo=UTC)
    fast: list[float] = []
    slow: list[float] = []
    for round_ in range(args.rounds):
        timings = {}
        reports = {}
        order = (False, True) if round_ % 2 == 0 else (True, False)
        for raw in order:
            t0 = time.perf_counter()
            with session_scope(readonly=True) as session:
                reports[raw] = tenant_report(session, tenants[0], PARIS, start, stop, now=now,
                                             from_raw=raw)
            timings[raw] = time.perf_counter() - t0
        assert reports[False] == reports[True], "aggregates and raw events disagree"
        fast.append(timings[False])
        slow.append(timings[True])
        print(f"round {round_ + 1}: aggregates {timings[False] * 1000:.1f} ms, raw "
              f"{timings[True] * 1000:.1f} ms ({reports[False]['calls']['offered']:,} calls "
              f"offered in {args.month})")
    print(f"{tenants[0]} {args.month}, median [min-max] of {args.rounds} rounds: aggregates "
          f"{spread(fast)}, raw events {spread(slow)}; raw / aggregates = "
          f"{statistics.median(slow) / statistics.median(fast):.1f}x")
    every: list[float] = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        with session_scope(readonly=True) as session:
            body = operator_report(session, first, end, now=now)
        every.append(time.perf_counter() - t0)
    print(f"operator-wide {args.month} ({len(body['tenants'])} tenants, "
          f"{body['calls']['offered']:,} calls): {spread(every)}")


if __name__ == "__main__":
    main()
