"""The desk's and the client's lists on PostgreSQL: ``sync.lists.list_messages``
over one tenant with ``--messages`` messages (default 200,000; 50,000 callers),
50 rows a page, each query 30 times in its own read transaction.

Printed per query: median and p95 milliseconds, rows found; then the plan of
the "number ends with" query (it must use ``ix_messages_caller_phone_rev``).

    .venv/bin/python -m bench.lists [--messages N] [--pg postgresql://…/test]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    name = f"relais_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ.update({
        "RELAIS_DATABASE_URL": args.pg.replace("postgresql://", "postgresql+psycopg://")
        .rsplit("/", 1)[0] + "/" + name,
        "RELAIS_HOME": f"/tmp/{name}",
        "RELAIS_SECRET_KEYS": "kVvJ0x0b3Ckq6bQ1kXq3vP8s7mYkJ6V8o9Qf1m2n3o4=",
        "RELAIS_TENANT_ACME_HOOK_URL": "https://hooks.example.fr/acme",
    })
    try:
        run(args.messages)
    finally:
        from sync.store.db import dispose_engines

        dispose_engines()
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(count: int) -> None:
    from sqlalchemy import text

    from relais.migrate import upgrade
    from sync.contacts import parse_phone_query
    from sync.lists import Filters, list_messages
    from sync.store.db import get_engine, session_scope
    from sync.tenants import apply_config

    upgrade()
    with session_scope() as session:
        apply_config(session, (ROOT / "tests/fixtures/acme.yaml").read_text(), "acme.yaml",
                     actor="bench")
    with get_engine().begin() as conn:
        conn.execute(text(
            "INSERT INTO messages (id, tenant_id, call_type, urgency, caller, subject, body,"
            " taken_by, taken_at, staff_id, callback_requested, intake, status, created_at)"
            " SELECT 'msg_' || g, 'acme', 'message', 'normal', json_build_object('name', 'X',"
            " 'phone', '+336' || lpad((g % 50000)::text, 8, '0')), 's', '', 'b',"
            " now() - (g || ' seconds')::interval, CASE WHEN g % 3 = 0 THEN 'alice' END,"
            " false, '{}'::json, 'accepted', now() FROM generate_series(1, :n) g"), {"n": count})
        conn.execute(text("ANALYZE messages"))

    def measure(label: str, filters: Filters, cursor: str | None = None) -> str | None:
        times, found = [], None
        for _ in range(30):
            start = time.perf_counter()
            with session_scope(readonly=True) as session:
                found = list_messages(session, "acme", filters, limit=50, cursor=cursor)
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        assert found is not None
        print(f"{label:28} median {statistics.median(times):6.2f} ms  "
              f"p95 {times[int(len(times) * 0.95) - 1]:6.2f} ms  {len(found.items)} rows")
        return found.next_cursor

    print(f"{count} messages, one tenant")
    after = measure("newest 50", Filters())
    measure("next page (cursor)", Filters(), after)
    measure("caller, full number", Filters(caller=parse_phone_query("06 00 01 23 45", "FR")))
    measure("caller, last 6 digits", Filters(caller=parse_phone_query("012345", "FR")))
    now = datetime.now(UTC)
    measure("one day + staff", Filters(start=now - timedelta(days=1), end=now, staff_id="alice"))
    with get_engine().connect() as conn:
        plan = conn.execute(text(
            "EXPLAIN SELECT * FROM messages WHERE tenant_id = 'acme' AND"
            " reverse(messages.caller ->> 'phone') LIKE '543210%'"
            " ORDER BY taken_at DESC, id DESC LIMIT 51")).scalars().all()
    print("\n".join(plan))


if __name__ == "__main__":
    main()
