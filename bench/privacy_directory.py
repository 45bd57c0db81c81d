"""The cost of sealing a sensitive tenant's contact directory at rest (issue 15).

Writes N CRM contacts into two tenants' directories through the pull's write
path (``sync.contacts._apply_page``, pages of 100) — one plain tenant, one
sensitive (names, companies, emails, phones encrypted; lookups by keyed hash) —
then times the caller lookups a secretary uses: an exact number, the same number
written another way (last 9 digits), a full name (plain: its prefix; sealed: each
word by keyed hash), "is this a known caller".
Prints the medians.

    python bench/privacy_directory.py [--contacts 2000] [--lookups 200]
        [--database-url postgresql+psycopg://…]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TENANT = """\
id: {id}
name: Bench
timezone: Europe/Paris
phone_region: FR
sensitive: {sensitive}
call_types:
  - {{id: plain, label: Plain}}
rules:
  default:
    then: [{{drop: true}}]
"""
WORDS = ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand",
         "Leroy", "Moreau", "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David"]


def phone(n: int) -> str:
    return f"+336{n:08d}"


def run(tenant: str, sensitive: bool, contacts: int, picks: list[int]) -> dict[str, float]:
    """Write ``contacts`` into ``tenant``'s directory, then time the lookups of ``picks``."""
    from connectors.crm import CrmContact
    from sync.contacts import (
        _apply_page,
        _Target,
        is_known_caller,
        lookup_phone,
        parse_phone_query,
        search_name,
    )
    from sync.store.db import session_scope
    from sync.store.directory import DirectorySyncState
    from sync.store.models import Connection
    from sync.tenants import apply_config

    stamp = datetime(2026, 11, 1, tzinfo=UTC)
    with session_scope() as session:
        apply_config(session, TENANT.format(id=tenant, sensitive=str(sensitive).lower()),
                     f"{tenant}.yaml", actor="bench")
        conn = Connection(tenant_id=tenant, name="crm", provider="hubspot", role="crm")
        session.add(conn)
        session.flush()
        session.add(DirectorySyncState(connection_id=conn.id, tenant_id=tenant,
                                       last_success_at=stamp))
        target = _Target(tenant, conn.id, "hubspot", "FR", sealed=sensitive)
    pages = []
    for start in range(0, contacts, 100):
        records = [CrmContact("contacts", str(n), f"{WORDS[n % 16]} {WORDS[n // 16 % 16]}{n}",
                              "Société", None, (f"p{n}@example.org",),
                              (f"06 {n // 1000000 % 100:02d} {n // 10000 % 100:02d} "
                               f"{n // 100 % 100:02d} {n % 100:02d}",), stamp)
                   for n in range(start, min(start + 100, contacts))]
        started = time.perf_counter()
        with session_scope() as session:
            _apply_page(session, target, records, 1)
        pages.append(time.perf_counter() - started)

    def timed(fn: Callable[[Any, int], Any]) -> float:
        times = []
        for n in picks:
            started = time.perf_counter()
            with session_scope(readonly=True) as session:
                assert fn(session, n), n
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1000

    return {
        "write_page_ms": statistics.median(pages) * 1000,
        "exact_ms": timed(lambda s, n: lookup_phone(
            s, tenant, parse_phone_query(phone(n), "FR"))),
        "nine_digits_ms": timed(lambda s, n: lookup_phone(
            s, tenant, parse_phone_query(f"0033 6{n:08d}", None))),
        "name_word_ms": timed(lambda s, n: search_name(
            s, tenant, f"{WORDS[n % 16]} {WORDS[n // 16 % 16]}{n}")),
        "known_ms": timed(lambda s, n: is_known_caller(s, tenant, phone(n))),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=2000)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    os.environ["RELAIS_HOME"] = tempfile.mkdtemp(prefix="relais-bench-")
    os.environ.setdefault("RELAIS_SECRET_KEYS", "kVvJ0x0b3Ckq6bQ1kXq3vP8s7mYkJ6V8o9Qf1m2n3o4=")
    if args.database_url:
        os.environ["RELAIS_DATABASE_URL"] = args.database_url
    from relais.migrate import upgrade

    upgrade()
    rng = random.Random(15)
    picks = [rng.randrange(args.contacts) for _ in range(args.lookups)]
    results = {tenant: run(tenant, sensitive, args.contacts, picks)
               for tenant, sensitive in (("plain", False), ("sealed", True))}
    for name, r in results.items():
        print(f"{name:6s}: write {r['write_page_ms']:.1f} ms/100 contacts; lookup median: "
              f"exact {r['exact_ms']:.2f} ms, 9 digits {r['nine_digits_ms']:.2f} ms, "
              f"name {r['name_word_ms']:.2f} ms, known caller {r['known_ms']:.2f} ms")


if __name__ == "__main__":
    main()
