"""The console's report pages against the engine they show.

A fresh PostgreSQL database (dropped afterwards) is loaded as ``bench/report.py``
loads it (``--tenants`` tenants, one with ``--big-calls`` calls over 2026, the
others ``--small-calls``). Measured, per round (``--rounds``), in one process:
- engine: ``tenant_report`` of the large tenant's ``--month``;
- page: ``GET /t/{t}/report?period=month`` (signed-in operator, in-process ASGI
  client): the same report, plus the table, the four SVG charts and the HTML;
- and the operator's side by side: ``operator_report`` vs ``GET /reports``.
Printed: median [min-max] and the page / engine ratio (the console's own cost).

Usage: python bench/console_report.py [--rounds 5] [--tenants 20] [--big-calls 40000]
                                      [--small-calls 500] [--month 2026-11]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from report import PARIS, in_scratch_database, load, spread, tenant_yaml  # noqa: E402

PASSWORD = "un-mot-de-passe-de-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--big-calls", type=int, default=40_000)
    parser.add_argument("--small-calls", type=int, default=500)
    parser.add_argument("--month", default="2026-11")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()

    in_scratch_database("console_report", lambda url: run(args, url))


def timed(rounds: int, fn) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def run(args: argparse.Namespace, url: str) -> None:
    from fastapi.testclient import TestClient

    from relais.api import create_app
    from relais.console.users import create_user
    from relais.migrate import upgrade
    from sync.reports.load import operator_report, tenant_report
    from sync.reports.periods import local_range, parse_month
    from sync.store.db import session_scope
    from sync.tenants import apply_config

    upgrade(url)
    tenants = [f"t-{n:03d}" for n in range(args.tenants)]
    with session_scope() as session:
        for tenant in tenants:
            apply_config(session, tenant_yaml(tenant), f"{tenant}.yaml", actor="bench")
        create_user(session, "ops@bench.test", "Ops", "operator", PASSWORD)
    calls_per = {t: args.small_calls for t in tenants}
    calls_per[tenants[0]] = args.big_calls
    events = load(url, tenants, calls_per, args.seed)
    print(f"loaded {events:,} events of {sum(calls_per.values()):,} calls for "
          f"{len(tenants)} tenants ({tenants[0]}: {args.big_calls:,} calls)")

    client = TestClient(create_app(), base_url="https://testserver")
    token = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    client.post("/login", data={"email": "ops@bench.test", "password": PASSWORD,
                                "csrf_token": token})
    first, end = parse_month(args.month)
    start, stop = local_range(first, end, PARIS)
    now = datetime(2027, 1, 1, tzinfo=UTC)

    def engine() -> None:
        with session_scope(readonly=True) as session:
            tenant_report(session, tenants[0], PARIS, start, stop, now=now)

    def page() -> None:
        answer = client.get(f"/t/{tenants[0]}/report?period=month&day={first}")
        assert answer.status_code == 200 and 'data-key="calls.offered"' in answer.text

    def everyone() -> None:
        with session_scope(readonly=True) as session:
            operator_report(session, first, end, now=now)

    def side_by_side() -> None:
        answer = client.get(f"/reports?month={args.month}&sort=answer_rate&dir=desc")
        assert answer.status_code == 200 and answer.text.count('<tr id="tenant-') == len(tenants)

    engine(), page(), everyone(), side_by_side()  # warm: templates, plans, catalogues
    rounds = {"engine": [], "page": [], "everyone": [], "side": []}
    for _ in range(args.rounds):  # interleaved, so a busy moment hits both sides
        rounds["engine"] += timed(1, engine)
        rounds["page"] += timed(1, page)
        rounds["everyone"] += timed(1, everyone)
        rounds["side"] += timed(1, side_by_side)
    med = {k: statistics.median(v) for k, v in rounds.items()}
    print(f"{tenants[0]} {args.month}, median [min-max] of {args.rounds} rounds: "
          f"tenant_report {spread(rounds['engine'])}, GET /t/{{t}}/report "
          f"{spread(rounds['page'])}; page / engine = {med['page'] / med['engine']:.2f}x")
    print(f"every tenant ({len(tenants)}): operator_report {spread(rounds['everyone'])}, "
          f"GET /reports {spread(rounds['side'])}; page / engine = "
          f"{med['side'] / med['everyone']:.2f}x")


if __name__ == "__main__":
    main()
