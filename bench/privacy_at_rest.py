"""The cost of encrypting sensitive message content at rest (issue 15).

Accepts N calls into a tenant twice — once with a plain call type, once with a
sensitive one (content sealed with the credential keys) — on a fresh SQLite
store (or ``--database-url``), then looks a caller up by phone (a full scan of
the tenant's messages matching phones, or keyed hashes for sealed rows) and
loads every message (decryption). Prints the medians per call.

    python bench/privacy_at_rest.py [--calls 300] [--database-url postgresql+psycopg://…]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TENANT = """\
id: bench
name: Bench
timezone: Europe/Paris
phone_region: FR
call_types:
  - {id: plain, label: Plain}
  - {id: secret, label: Secret, sensitive: true}
rules:
  default:
    then: [{drop: true}]
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="relais-bench-")
    os.environ["RELAIS_HOME"] = home
    os.environ.setdefault("RELAIS_SECRET_KEYS", "kVvJ0x0b3Ckq6bQ1kXq3vP8s7mYkJ6V8o9Qf1m2n3o4=")
    if args.database_url:
        os.environ["RELAIS_DATABASE_URL"] = args.database_url
    from sqlalchemy import select

    from relais.migrate import upgrade
    from sync.domain import CallMessage
    from sync.outbox import accept_message
    from sync.privacy.subject import Person, find
    from sync.store.db import session_scope
    from sync.store.models import Message
    from sync.tenants import apply_config, get_tenant, parsed_config

    upgrade()
    with session_scope() as session:
        apply_config(session, TENANT, "bench.yaml", actor="bench")
    results: dict[str, dict[str, float]] = {}
    for call_type in ("plain", "secret"):
        accept_times = []
        for n in range(args.calls):
            msg = CallMessage.model_validate({
                "call_type": call_type, "subject": f"Sujet {n}", "body": "x" * 400,
                "caller": {"name": f"Appelant {n}", "phone": f"+336{n:08d}",
                           "email": f"a{n}@example.org"},
                "taken_by": "S", "taken_at": "2026-11-27T10:15:00+01:00"},
                context={"region": "FR"})
            started = time.perf_counter()
            with session_scope() as session:
                config = parsed_config(get_tenant(session, "bench"))
                accept_message(session, "bench", config, msg, None,
                               request_key=f"{call_type}-{n}")
            accept_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        with session_scope(readonly=True) as session:
            person = Person.parse(f"+336{args.calls // 2:08d}", None, "FR")
            found = find(session, "bench", person, "FR")
            assert len(found.messages) == 2 if call_type == "secret" else 1, found.messages
        lookup = time.perf_counter() - started
        started = time.perf_counter()
        with session_scope(readonly=True) as session:
            rows = list(session.scalars(select(Message).where(Message.call_type == call_type)))
            assert all(not r.body.startswith("sealed1:") for r in rows)
        load = time.perf_counter() - started
        results[call_type] = {"accept_ms": statistics.median(accept_times) * 1000,
                              "lookup_ms": lookup * 1000,
                              "load_each_ms": load * 1000 / len(rows)}
    for name, r in results.items():
        print(f"{name:6s}: accept median {r['accept_ms']:.2f} ms, lookup by phone "
              f"{r['lookup_ms']:.1f} ms, load {r['load_each_ms']:.3f} ms/message")
    ratio = results["secret"]["accept_ms"] / results["plain"]["accept_ms"]
    print(f"sealed/plain accept: {ratio:.2f}x")


if __name__ == "__main__":
    main()
