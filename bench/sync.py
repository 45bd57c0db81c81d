"""Contact directory sync: incremental pulls against a full re-read, at 10k and 100k.

For each CRM emulator (HubSpot, Salesforce), run **in this process** (the
emulators' HTTP servers on threads, real sockets, the real SDKs), and each
size (default 10,000 and 100,000 contacts, seeded straight into the emulator
with ``insert``, dated an hour ago), on a fresh SQLite store:

1. full sync (the first pull);
2. change 10 records through the CRM's API, then an incremental pull;
3. baseline in the same run: a full re-read (``full=True``), what a sync
   without cursors pays for the same 10 changes.

It prints API calls and seconds for each, and the incremental cost next to the
baseline: the incremental cost must stay flat from 10k to 100k while the
baseline grows with the data. Then caller lookup latency (p50/p99) on the
largest directory: in-process (``lookup_phone``, one SQL round trip each) and
through the HTTP API (FastAPI TestClient, auth included), full numbers in
varied formats and 6-digit partial numbers.

**Archived contacts (HubSpot).** A share of each size (``--archived-share``,
default 0.1: 1,000 of 10,000, 10,000 of 100,000) is archived (deleted) in the
CRM an hour before the first pull, as a real portal's recycle bin holds them.
Listing archived contacts has no date filter in HubSpot's API: a pull that
lists them all pays ``ceil(archived / 100)`` calls every time, so the
incremental cost grows with the archive, not with the changes. The table's
incremental column shows it (issue 16, item 7: the connector fix, on another
branch, makes it flat; this bench is how to see it).

The providers' rate limits are lifted in the emulators and the connection
(``rate_limit``, ``search_rate_limit``): the bench measures our cost, in API
calls; under HubSpot's real search limit (~4/s) every search call costs ~0.25 s
more. Seconds include the emulators' own CPU (they scan their whole store per
search), which is why incremental seconds still grow a little with size.

**Calendar half** (Google Calendar emulator, the real Google client): one staff
calendar seeded straight into the emulator with ``seed_events`` (default 2,000
and 20,000 events, 45-minute meetings spread over the next 80 days, one in 20
``transparent``), on a fresh SQLite store: full pull (first ``syncToken``, and
the busy store filled), 10 events moved in the calendar (``patch_event``, as a
user in Google's UI), incremental pull, and the baseline in the same run: a full
re-read (``full=True``). Then a warm availability query (a fresh process's view:
in-process cache cleared) answered from the busy store: provider calls 0.

Usage: python bench/sync.py [--sizes 10000,100000] [--only hubspot|salesforce|calendar]
                            [--lookups 2000] [--calendar-sizes 2000,20000]
                            [--archived-share 0.1] [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

CHANGES = 10
TENANT = "benchco"


def configure_store(home: Path) -> None:
    os.environ.update(
        {
            "RELAIS_HOME": str(home),
            "RELAIS_SECRET_KEYS": "kVvJ0x0b3Ckq6bQ1kXq3vP8s7mYkJ6V8o9Qf1m2n3o4=",
            "RELAIS_ALLOW_PRIVATE_URLS": "1",  # the emulators listen on loopback
        }
    )
    for key in ("RELAIS_DATABASE_URL", "RELAIS_BROKER_URL"):
        os.environ.pop(key, None)
    from relais.migrate import upgrade
    from sync.ratelimit import reset_store
    from sync.settings import reset_settings
    from sync.store.db import dispose_engines

    reset_settings()
    reset_store()
    dispose_engines()
    upgrade()


def tenant_yaml(provider: str, settings: dict[str, Any]) -> str:
    lines = "".join(f"      {k}: {v}\n" for k, v in settings.items())
    return (
        f"id: {TENANT}\nname: Bench\ntimezone: Europe/Paris\nphone_region: FR\n"
        "call_types:\n  - id: message\n    label: Message\n"
        f"connections:\n  crm:\n    provider: {provider}\n    settings:\n{lines}"
        "rules:\n  default:\n    then:\n      - connection: crm\n"
    )


def phone(n: int) -> str:
    return (
        f"06 {n // 1_000_000 % 100:02d} {n // 10_000 % 100:02d} {n // 100 % 100:02d} {n % 100:02d}"
    )


class HubSpotCase:
    name = "hubspot"
    archived_share = 0.1

    def start(self) -> None:
        from sandbox.hubspot import HubSpotConfig, HubSpotEmulator

        config = HubSpotConfig(
            rate_limit_max=10**9, search_rate_limit_per_second=10**9, daily_limit=10**9
        )
        self.emu = HubSpotEmulator(config=config).start()

    def stop(self) -> None:
        self.emu.stop()

    def settings(self) -> dict[str, Any]:
        return {"api_base_url": self.emu.url, "rate_limit": 10**6, "search_rate_limit": 10**6}

    def credentials(self) -> dict[str, Any]:
        return {"access_token": self.emu.private_app_token}

    def seed(self, count: int) -> list[str]:
        """``count`` contacts, the ``archived_share`` of them archived: the live ids."""
        from hubspot.crm.contacts import BatchInputSimplePublicObjectId

        from sandbox.testing import hubspot_client

        self.emu.clock.set_offset(-3600)
        try:
            ids = self.emu.seed(
                "contacts",
                count,
                lambda i: {
                    "firstname": f"Prenom{i}",
                    "lastname": f"Nom{i}",
                    "email": f"p{i}@exemple.fr",
                    "phone": phone(i),
                    "company": f"Société {i % 997}",
                },
            )
            archived = ids[: int(count * self.archived_share)]
            batch = hubspot_client(self.emu).crm.contacts.batch_api
            for at in range(0, len(archived), 100):  # the batch endpoint takes 100 ids
                batch.archive(BatchInputSimplePublicObjectId(
                    inputs=[{"id": i} for i in archived[at:at + 100]]))  # fmt: skip
            self.archived = len(archived)
            return ids[len(archived):]
        finally:
            self.emu.clock.set_offset(0)

    def change(self, ids: list[str]) -> None:
        from sandbox.testing import hubspot_client

        api = hubspot_client(self.emu).crm.contacts.basic_api
        for record_id in ids:
            api.update(record_id, {"properties": {"lastname": "Modifié"}})


class SalesforceCase:
    name = "salesforce"

    def start(self) -> None:
        from sandbox.salesforce import SalesforceConfig, SalesforceEmulator

        self.emu = SalesforceEmulator(config=SalesforceConfig(daily_api_limit=10**9)).start()

    def stop(self) -> None:
        self.emu.stop()

    def settings(self) -> dict[str, Any]:
        return {"instance_url": self.emu.url, "ca_file": str(self.emu.ca_file)}

    def credentials(self) -> dict[str, Any]:
        return {"access_token": self.emu.session_id}

    def seed(self, count: int) -> list[str]:
        self.emu.clock.set_offset(-3600)
        try:
            return [
                self.emu.insert(
                    "Contact",
                    {
                        "FirstName": f"Prenom{i}",
                        "LastName": f"Nom{i}",
                        "Email": f"p{i}@exemple.fr",
                        "Phone": phone(i),
                    },
                )
                for i in range(count)
            ]
        finally:
            self.emu.clock.set_offset(0)

    def change(self, ids: list[str]) -> None:
        from sandbox.testing import salesforce_client

        client = salesforce_client(self.emu)
        for record_id in ids:
            client.Contact.update(record_id, {"LastName": "Modifié"})


CALENDAR = "agenda@benchco.test"


def calendar_yaml(settings: dict[str, Any]) -> str:
    lines = "".join(f"      {k}: {v}\n" for k, v in settings.items())
    days = "".join(f"  {d}: [08:00-19:00]\n" for d in ("mon", "tue", "wed", "thu", "fri"))
    return (
        f"id: {TENANT}\nname: Bench\ntimezone: Europe/Paris\nphone_region: FR\n"
        f"business_hours:\n{days}"
        "staff:\n  - id: anne\n    name: Anne\n"
        f"    calendar: {{connection: agenda, id: {CALENDAR}}}\n"
        "call_types:\n  - id: message\n    label: Message\n"
        "appointment_types:\n  - id: rdv\n    label: Rendez-vous\n"
        "    duration_minutes: 30\n    align: clock\n    booking_horizon_days: 60\n"
        f"connections:\n  agenda:\n    provider: google_calendar\n    settings:\n{lines}"
    )


class CalendarCase:
    """A Google calendar of ``size`` events: full pull, 10 moved, incremental, re-read."""

    name = "google_calendar"

    def run(self, size: int) -> dict[str, Any]:
        from datetime import UTC, datetime, timedelta

        from crm_helpers import connection_id

        from sandbox.google_calendar import GoogleCalendarConfig, GoogleCalendarEmulator
        from sync import busy
        from sync.booking import find_availability
        from sync.calendar_sync import pull_connection
        from sync.connections import set_credentials
        from sync.store.db import session_scope
        from sync.store.models import Tenant
        from sync.tenants import apply_config, parsed_config

        config = GoogleCalendarConfig(
            quota_per_user_per_minute=10**9, quota_per_project_per_minute=10**9
        )
        emu = GoogleCalendarEmulator(config=config).start()
        try:
            with tempfile.TemporaryDirectory(prefix="relais-bench-cal-") as home:
                configure_store(Path(home))
                emu.add_calendar(CALENDAR, time_zone="Europe/Paris")
                creds = emu.credentials()
                settings = {"api_base_url": emu.url, "token_url": f"{emu.url}/token",
                            "watch": "false"}  # fmt: skip
                with session_scope() as session:
                    apply_config(session, calendar_yaml(settings), "bench.yaml", actor="bench")
                    keys = ("access_token", "refresh_token", "client_id", "client_secret")
                    set_credentials(session, TENANT, "agenda", {k: creds[k] for k in keys})
                conn = connection_id(TENANT, "agenda")
                now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
                rng = random.Random(size)
                bodies = []
                for i in range(size):
                    start = now + timedelta(
                        days=rng.randrange(80), hours=rng.randrange(-2, 10), minutes=15 * (i % 4)
                    )
                    body = {
                        "summary": f"Rendez-vous {i}",
                        "start": {"dateTime": start.isoformat()},
                        "end": {"dateTime": (start + timedelta(minutes=45)).isoformat()},
                    }
                    if i % 20 == 0:
                        body["transparency"] = "transparent"
                    bodies.append(body)
                t0 = time.perf_counter()
                seeded = emu.seed_events(CALENDAR, bodies, notify=False)
                seed_s = time.perf_counter() - t0
                full = pull_connection(conn)
                assert full.status == "ok" and full.changes == size, full
                for event in rng.sample(seeded, CHANGES):
                    moved = datetime.fromisoformat(event["start"]["dateTime"]) + timedelta(hours=1)
                    emu.patch_event(CALENDAR, event["id"], {
                        "start": {"dateTime": moved.isoformat()},
                        "end": {"dateTime": (moved + timedelta(minutes=45)).isoformat()}},
                        notify=False)  # fmt: skip
                incremental = pull_connection(conn)
                assert incremental.status == "ok" and incremental.changes == CHANGES, incremental
                busy.CACHE.clear()  # what another process sees: the shared busy store only
                with session_scope(readonly=True) as session:
                    tenant_config = parsed_config(session.get(Tenant, TENANT))
                t0 = time.perf_counter()
                warm = find_availability(
                    TENANT, tenant_config, staff="anne", type_id="rdv",
                    start=now + timedelta(days=1), end=now + timedelta(days=8),
                )  # fmt: skip
                warm_s = time.perf_counter() - t0
                baseline = pull_connection(conn, full=True)
                assert baseline.status == "ok" and baseline.changes == size, baseline
                return {
                    "provider": self.name, "size": size, "seed_s": seed_s, "full": full,
                    "incremental": incremental, "baseline": baseline,
                    "warm_calls": warm.provider_calls, "warm_s": warm_s,
                    "warm_slots": len(warm.result.slots),
                }  # fmt: skip
        finally:
            emu.stop()


def setup(case: Any, size: int) -> tuple[str, list[str]]:
    from crm_helpers import connection_id

    from sync.connections import set_credentials
    from sync.store.db import session_scope
    from sync.tenants import apply_config

    with session_scope() as session:
        apply_config(session, tenant_yaml(case.name, case.settings()), "bench.yaml", actor="bench")
        set_credentials(session, TENANT, "crm", case.credentials())
    ids = case.seed(size)
    return connection_id(TENANT, "crm"), ids


def run_case(case: Any, size: int, lookups: int, measure_lookups: bool) -> dict[str, Any]:
    from sync.contacts import pull_connection

    case.start()
    try:
        with tempfile.TemporaryDirectory(prefix="relais-bench-sync-") as home:
            configure_store(Path(home))
            t0 = time.perf_counter()
            conn, ids = setup(case, size)
            seeded = time.perf_counter() - t0
            full = pull_connection(conn)
            assert full.status == "ok" and full.records_in == len(ids), full
            case.change(random.Random(size).sample(ids, CHANGES))
            incremental = pull_connection(conn)
            assert incremental.status == "ok", incremental
            assert incremental.records_in == CHANGES, incremental
            baseline = pull_connection(conn, full=True)
            assert baseline.status == "ok", baseline
            row = {
                "provider": case.name,
                "size": size,
                "seed_s": seeded,
                "full": full,
                "incremental": incremental,
                "baseline": baseline,
                "archived": getattr(case, "archived", 0),
                "live": len(ids),
            }
            if measure_lookups:
                row["lookups"] = measure(size, lookups, first=row["archived"])
            return row
    finally:
        case.stop()


def measure(size: int, count: int, first: int = 0) -> dict[str, Any]:
    """Lookups of contacts ``first`` to ``size`` (the ones before are archived)."""
    from fastapi.testclient import TestClient

    from relais.api import create_app
    from relais.auth import create_key
    from sync.contacts import lookup_phone, parse_phone_query
    from sync.store.db import session_scope

    rng = random.Random(7)
    queries = []
    for _ in range(count):
        n = rng.randrange(first, size)
        digits = phone(n).replace(" ", "")
        style = rng.randrange(4)
        if style == 0:
            queries.append("+33 " + phone(n)[1:])
        elif style == 1:
            queries.append(digits)
        elif style == 2:
            queries.append(phone(n).replace(" ", "."))
        else:
            queries.append(digits[-6:])  # the last 6 digits only
    in_process = []
    for text in queries:
        start = time.perf_counter()
        with session_scope(readonly=True) as session:
            found = lookup_phone(session, TENANT, parse_phone_query(text, "FR"))
        in_process.append(time.perf_counter() - start)
        assert found, text
    with session_scope() as session:
        key = create_key(session, "secretary", TENANT, "bench")
    client = TestClient(create_app())
    auth = {"Authorization": f"Bearer {key}"}
    over_http = []
    for text in queries[: max(1, count // 4)]:
        start = time.perf_counter()
        answer = client.get(f"/v1/tenants/{TENANT}/contacts", params={"phone": text}, headers=auth)
        over_http.append(time.perf_counter() - start)
        assert answer.status_code == 200 and answer.json()["contacts"], answer.text
    return {"in_process": in_process, "http": over_http}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--only", choices=("hubspot", "salesforce", "calendar"))
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--calendar-sizes", default="2000,20000")
    parser.add_argument("--archived-share", type=float, default=HubSpotCase.archived_share,
                        help="HubSpot: share of the seeded contacts archived before the pulls")
    parser.add_argument("--quick", action="store_true",
                        help="sizes 2000,20000; calendar 500,5000; 500 lookups")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.calendar_sizes, args.lookups = "2000,20000", "500,5000", 500
    HubSpotCase.archived_share = args.archived_share
    sizes = [int(s) for s in args.sizes.split(",") if s]
    cases = [c for c in (HubSpotCase(), SalesforceCase()) if not args.only or c.name == args.only]
    calendar_rows = []
    if args.only in (None, "calendar"):
        for size in [int(s) for s in args.calendar_sizes.split(",") if s]:
            print(f"… google calendar: {size:,} events", flush=True)
            row = CalendarCase().run(size)
            calendar_rows.append(row)
            report_calendar_row(row)
    rows = []
    for case in cases:
        for size in sizes:
            print(f"… {case.name}: {size:,} contacts", flush=True)
            row = run_case(case, size, args.lookups, size == max(sizes))
            rows.append(row)
            report_row(row)
    if rows:
        print_crm_summary(cases, rows)
    if calendar_rows:
        print()
        print(
            f"{'calendar':<16}{'events':>8} | {'full: calls':>11}{'s':>8} | "
            f"{'incremental: calls':>18}{'s':>7} | {'re-read: calls':>14}{'s':>8} | "
            f"{'calls saved':>11} | {'warm availability: calls':>24}{'ms':>8}"
        )
        for r in calendar_rows:
            f, i, b = r["full"], r["incremental"], r["baseline"]
            print(
                f"{r['provider']:<16}{r['size']:>8,} | {f.calls:>11}{f.seconds:>8.1f} | "
                f"{i.calls:>18}{i.seconds:>7.2f} | {b.calls:>14}{b.seconds:>8.1f} | "
                f"{b.calls / max(1, i.calls):>10.0f}x | {r['warm_calls']:>24}"
                f"{r['warm_s'] * 1000:>8.1f}"
            )
        if len(calendar_rows) >= 2:
            small, big = calendar_rows[0], calendar_rows[-1]
            print(
                f"google calendar: incremental calls {small['incremental'].calls} at "
                f"{small['size']:,} vs {big['incremental'].calls} at {big['size']:,} events "
                f"(x{big['size'] / small['size']:.0f} data); re-read calls "
                f"{small['baseline'].calls} vs {big['baseline'].calls}"
            )
    for r in rows:
        if "lookups" in r:
            lk = r["lookups"]
            print(
                f"lookup at {r['size']:,} {r['provider']} contacts: in-process "
                f"p50 {pct(lk['in_process'], 50):.2f} ms, p99 {pct(lk['in_process'], 99):.2f} ms "
                f"({len(lk['in_process'])} lookups); HTTP API p50 {pct(lk['http'], 50):.2f} ms, "
                f"p99 {pct(lk['http'], 99):.2f} ms ({len(lk['http'])}); mean "
                f"{statistics.mean(lk['in_process']) * 1000:.2f} ms"
            )
    return 0


def print_crm_summary(cases: list[Any], rows: list[dict[str, Any]]) -> None:
    print()
    print(
        f"{'provider':<11}{'size':>9}{'archived':>9} | {'full: calls':>11}{'s':>8} | "
        f"{'incremental: calls':>18}{'s':>7} | {'re-read: calls':>14}{'s':>8} | "
        f"{'calls saved':>11}"
    )
    for r in rows:
        f, i, b = r["full"], r["incremental"], r["baseline"]
        print(
            f"{r['provider']:<11}{r['size']:>9,}{r['archived']:>9,} | "
            f"{f.calls:>11}{f.seconds:>8.1f} | "
            f"{i.calls:>18}{i.seconds:>7.2f} | {b.calls:>14}{b.seconds:>8.1f} | "
            f"{b.calls / max(1, i.calls):>10.0f}x"
        )
    for case in cases:
        mine = [r for r in rows if r["provider"] == case.name]
        if len(mine) >= 2:
            small, big = mine[0], mine[-1]
            print(
                f"{case.name}: incremental calls {small['incremental'].calls} at "
                f"{small['size']:,} vs {big['incremental'].calls} at {big['size']:,} "
                f"(x{big['size'] / small['size']:.0f} data); re-read calls "
                f"{small['baseline'].calls} vs {big['baseline'].calls}"
            )
            if big["archived"]:
                print(
                    f"{case.name}: with {small['archived']:,} then {big['archived']:,} archived "
                    f"contacts, the incremental pull made {small['incremental'].calls} then "
                    f"{big['incremental'].calls} calls for the same {CHANGES} changes "
                    "(flat = deletions read incrementally; growing = the whole archive "
                    "listed on every pull)"
                )


def report_calendar_row(row: dict[str, Any]) -> None:
    f, i, b = row["full"], row["incremental"], row["baseline"]
    print(
        f"  seeded in {row['seed_s']:.1f} s; full {f.calls} calls {f.seconds:.1f} s; "
        f"incremental ({CHANGES} moved) {i.calls} calls {i.seconds:.2f} s, {i.changes} in; "
        f"re-read {b.calls} calls {b.seconds:.1f} s; warm availability "
        f"{row['warm_calls']} provider calls, {row['warm_s'] * 1000:.0f} ms, "
        f"{row['warm_slots']} slots",
        flush=True,
    )


def report_row(row: dict[str, Any]) -> None:
    f, i, b = row["full"], row["incremental"], row["baseline"]
    print(
        f"  seeded in {row['seed_s']:.1f} s ({row['archived']:,} archived); full {f.calls} "
        f"calls {f.seconds:.1f} s; incremental ({CHANGES} changed) {i.calls} calls "
        f"{i.seconds:.2f} s, "
        f"{i.records_in} in; re-read {b.calls} calls {b.seconds:.1f} s",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
