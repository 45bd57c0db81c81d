"""The screen-pop's server time as the answering service grows: one tenant (the
baseline, same run) against many, through the real HTTP app (``TestClient`` on
``relais.api.create_app``, SQLite in a temporary folder, a signed-in secretary).

Per size: the pop of the tenant that sorts last by name (the worst place for a
walk over the tenants), cold (the parsed-configuration cache emptied, as after a
restart or past its size) and warm (median, p95 and min-max of ``--runs``), and
the SQL statements of a warm pop (an SQLAlchemy event listener).

Usage: python bench/desk_tenants.py [--tenants 300] [--runs 20]
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

PASSWORD = "un-mot-de-passe-long"


def tenant_yaml(n: int) -> str:
    return (f"id: t{n:04d}\nname: Tenant {n:04d}\ntimezone: Europe/Paris\n"
            f"phone_region: FR\nforwarding_numbers: ['04 72 {n // 100:02d} {n % 100:02d} 00']\n"
            "greeting: Bonjour\n"
            "call_types:\n  - {id: message, label: Message}\n"
            "connections:\n  hook: {provider: webhook, url: http://127.0.0.1:9/h}\n"
            "rules:\n  default:\n    then: [{connection: hook}]\n")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(tenants: int, runs: int) -> tuple[float, list[float], int]:
    """(cold ms, warm ms per run, statements of a warm pop) for a hub of ``tenants``."""
    from fastapi.testclient import TestClient
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from relais.api import create_app
    from relais.console.users import create_user
    from relais.migrate import upgrade
    from sync.settings import reset_settings
    from sync.store.db import dispose_engines, session_scope
    from sync.tenants import _parse, apply_config

    with tempfile.TemporaryDirectory() as home:
        os.environ["RELAIS_HOME"] = home
        reset_settings()
        upgrade()
        with session_scope() as session:
            for n in range(1, tenants + 1):
                apply_config(session, tenant_yaml(n), f"t{n}.yaml", actor="bench")
            create_user(session, "s@bench.test", "S", "secretary", PASSWORD)
        client = TestClient(create_app(), base_url="https://testserver")
        token = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
        client.post("/login", data={"email": "s@bench.test", "password": PASSWORD,
                                    "csrf_token": token})
        pop = f"/desk?called=04%2072%20{tenants // 100:02d}%20{tenants % 100:02d}%2000"
        _parse.cache_clear()
        started = time.perf_counter()
        page = client.get(pop)
        cold = (time.perf_counter() - started) * 1000
        assert f"Tenant {tenants:04d}" in page.text, page.status_code
        warm = []
        for _ in range(runs):
            started = time.perf_counter()
            client.get(pop).raise_for_status()
            warm.append((time.perf_counter() - started) * 1000)
        statements: list[str] = []

        def count(*_args: object) -> None:
            statements.append("")

        event.listen(Engine, "before_cursor_execute", count)
        client.get(pop)
        event.remove(Engine, "before_cursor_execute", count)
        client.close()
        dispose_engines()
    return cold, warm, len(statements)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=300)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    os.environ["RELAIS_CONSOLE_INSECURE_COOKIES"] = "1"
    os.environ["RELAIS_ALLOW_PRIVATE_URLS"] = "1"  # the tenants' webhook is on 127.0.0.1
    load = os.getloadavg()[0]
    rows = [(size, *measure(size, args.runs)) for size in (1, args.tenants)]
    print(f"desk screen-pop, server time by number of tenants (load average {load:.1f} at "
          f"start, {os.getloadavg()[0]:.1f} at end)")
    for size, cold, warm, statements in rows:
        print(f"{size:>5} tenant(s): cold {cold:8.1f} ms   warm median "
              f"{statistics.median(warm):7.1f} ms  p95 {pct(warm, 0.95):7.1f} ms  "
              f"min-max {min(warm):.1f}-{max(warm):.1f} ms   {statements} statements")
    base, big = rows[0], rows[1]
    print(f"ratio {args.tenants} tenants / 1 (warm medians): "
          f"{statistics.median(big[2]) / statistics.median(base[2]):.2f}x; "
          f"cold: {big[1] / base[1]:.2f}x")


if __name__ == "__main__":
    main()
