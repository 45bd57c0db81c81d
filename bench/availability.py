"""Live availability: our hub against a naive per-staff scan.

Ten staff members, each with a Google calendar (the sandbox, in its own
process, with ``--latency-ms`` on every call) holding 500 events (a tenth of
them weekly series) around a 14-day window; 30-minute slots. Measured in the
same run:

- ours, cold: ``GET /v1/tenants/{t}/availability?staff=<10 ids>`` through the
  real API (in-process ASGI), with the busy cache emptied before each query:
  one freeBusy call for the ten calendars, plus our own bookings from the
  database and the availability engine;
- ours, warm: the same query again within the cache's 30 s: no provider call;
- the baseline: what a hand-written integration does: for each staff member,
  ``events.list`` (singleEvents, every page) over the window, then scan the
  events against every candidate slot of the working hours.

It prints provider calls per query and time per query (p50 and p99) for all
three, and the ratios against the baseline; the slot lists are checked equal.

Usage: python bench/availability.py [--queries 40] [--warm-queries 200] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PARIS = ZoneInfo("Europe/Paris")
STAFF = 10
DAYS = 14
EVENTS = 500
TENANT = "bench-cabinet"
HOURS = [("09:00", "12:30"), ("14:00", "18:00")]  # Monday to Friday


def window() -> tuple[datetime, datetime]:
    """The next Monday 00:00 (Paris) that is at least two days away, for 14 days."""
    today = datetime.now(PARIS).date() + timedelta(days=2)
    monday = today + timedelta(days=(7 - today.weekday()) % 7)
    start = datetime(monday.year, monday.month, monday.day, tzinfo=PARIS)
    return start, start + timedelta(days=DAYS)


def calendar_id(n: int) -> str:
    return f"avocat{n:02d}@bench-cabinet.test"


def events_for(n: int, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """500 events from 14 days before the window to 14 days after it; 50 weekly series."""
    rng = random.Random(1000 + n)  # noqa: S311 - reproducible test data
    lo, span_days = start - timedelta(days=DAYS), 3 * DAYS
    out = []
    for i in range(EVENTS):
        day = (lo + timedelta(days=rng.randrange(span_days))).date()
        minute = rng.randrange(7 * 60, 20 * 60, 15)
        begin = datetime(day.year, day.month, day.day, minute // 60, minute % 60)  # noqa: DTZ001 - wall time, zone given below
        finish = begin + timedelta(minutes=rng.choice((15, 30, 45, 60, 90)))
        body: dict[str, Any] = {
            "summary": f"Rendez-vous {i}",
            "start": {"dateTime": begin.isoformat(), "timeZone": "Europe/Paris"},
            "end": {"dateTime": finish.isoformat(), "timeZone": "Europe/Paris"},
        }
        if i % 10 == 0:
            body["recurrence"] = ["RRULE:FREQ=WEEKLY;COUNT=6"]
        out.append(body)
    return out


# ------------------------------------------------------------------ the provider


def serve_google(latency_ms: float, start: datetime, end: datetime, conn: Any) -> None:
    """Child process: the Google Calendar sandbox, seeded, until told to stop."""
    from sandbox.google_calendar import GoogleCalendarEmulator

    emu = GoogleCalendarEmulator().start()
    emu.configure(quota_per_user_per_minute=1_000_000, quota_per_project_per_minute=1_000_000)
    for n in range(STAFF):
        emu.add_calendar(calendar_id(n), time_zone="Europe/Paris")
        emu.seed_events(calendar_id(n), events_for(n, start, end), notify=False)
    emu.knobs.set_latency(latency_ms)
    conn.send({"url": emu.url, **emu.credentials()})
    conn.recv()  # stop
    emu.stop()


def provider_calls(url: str) -> int:
    import httpx

    counters = httpx.get(f"{url}/__sandbox__/counters", trust_env=False).json()["counters"]
    return sum(n for key, n in counters.items() if key.startswith(("GET /calendar", "POST /")))


# ------------------------------------------------------------------ the hub


TENANT_YAML = """\
id: bench-cabinet
name: Cabinet (benchmark)
timezone: Europe/Paris
phone_region: FR
business_hours: {{mon: &h [09:00-12:30, 14:00-18:00], tue: *h, wed: *h, thu: *h, fri: *h}}
staff:
{staff}
call_types:
  - id: message
    label: Message
appointment_types:
  - id: rdv
    label: Rendez-vous
    duration_minutes: 30
    align: clock
    booking_horizon_days: 60
connections:
  agenda:
    provider: google_calendar
    settings:
      api_base_url: {url}
      token_url: {url}/token
      rate_limit: 1000000
"""


def setup_hub(home: Path, google: dict[str, Any]) -> tuple[Any, str]:
    os.environ.update({
        "RELAIS_HOME": str(home),
        "RELAIS_SECRET_KEYS": "kVvJ0x0b3Ckq6bQ1kXq3vP8s7mYkJ6V8o9Qf1m2n3o4=",
    })  # fmt: skip
    for key in ("RELAIS_DATABASE_URL", "RELAIS_BROKER_URL"):
        os.environ.pop(key, None)
    from fastapi.testclient import TestClient

    from relais.api import create_app
    from relais.auth import create_key
    from relais.connections import set_credentials
    from relais.db import session_scope
    from relais.migrate import upgrade
    from relais.tenants import apply_config

    upgrade()
    staff = "\n".join(
        f"  - {{id: avocat{n:02d}, name: Avocat {n}, "
        f"calendar: {{connection: agenda, id: '{calendar_id(n)}'}}}}"
        for n in range(STAFF)
    )
    with session_scope() as session:
        apply_config(session, TENANT_YAML.format(staff=staff, url=google["url"]), "bench.yaml",
                     actor="bench")  # fmt: skip
    with session_scope() as session:
        set_credentials(
            session,
            TENANT,
            "agenda",
            {k: google[k] for k in ("access_token", "refresh_token", "client_id", "client_secret")},
        )
        key = create_key(session, "secretary", TENANT, "bench")
    return TestClient(create_app()), key


def hub_query(client: Any, key: str, start: datetime, end: datetime) -> list[tuple[str, str]]:
    response = client.get(
        f"/v1/tenants/{TENANT}/availability",
        params={"staff": ",".join(f"avocat{n:02d}" for n in range(STAFF)), "type": "rdv",
                "start": start.isoformat(), "end": end.isoformat()},
        headers={"Authorization": f"Bearer {key}"},
    )  # fmt: skip
    response.raise_for_status()
    body = response.json()
    assert not body["unavailable"], body["unavailable"]
    return [(s["staff_id"], s["start"]) for s in body["slots"]]


# ------------------------------------------------------------------ the baseline


def baseline_query(google: dict[str, Any], start: datetime, end: datetime) -> list[tuple[str, str]]:
    """One events.list per staff member (every page), then a scan of every candidate slot."""
    from sandbox.testing import google_credentials, google_service

    class Emu:  # what google_service needs from an emulator
        url = google["url"]

        @staticmethod
        def credentials() -> dict[str, Any]:
            return google

    service = google_service(Emu, google_credentials(Emu))  # type: ignore[arg-type]
    slots: list[tuple[str, str]] = []
    for n in range(STAFF):
        events, page = [], None
        while True:
            answer = service.events().list(
                calendarId=calendar_id(n), timeMin=start.isoformat(), timeMax=end.isoformat(),
                singleEvents=True, maxResults=2500, pageToken=page).execute()  # fmt: skip
            events.extend(answer.get("items", []))
            page = answer.get("nextPageToken")
            if not page:
                break
        parse = datetime.fromisoformat
        busy = [
            (parse(e["start"]["dateTime"]), parse(e["end"]["dateTime"]))
            for e in events
            if e.get("status") != "cancelled" and e.get("transparency") != "transparent"
        ]  # fmt: skip
        day = start.date()
        while day < end.date():
            if day.weekday() < 5:
                for lo, hi in HOURS:
                    slot = _at(day, lo)
                    while slot + timedelta(minutes=30) <= _at(day, hi):
                        finish = slot + timedelta(minutes=30)
                        if slot >= start and not any(b < finish and e > slot for b, e in busy):
                            slots.append((f"avocat{n:02d}", slot.isoformat()))
                        slot = finish
            day += timedelta(days=1)
    return sorted(slots, key=lambda s: (s[1], s[0]))


def _at(day: date, clock: str) -> datetime:
    hour, minute = map(int, clock.split(":"))
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS)


# ------------------------------------------------------------------ measuring


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def measure(label: str, runs: int, once: Any, calls: Any) -> dict[str, Any]:
    times, used = [], []
    for _ in range(runs):
        before = calls()
        t0 = time.perf_counter()
        result = once()
        times.append((time.perf_counter() - t0) * 1000)
        used.append(calls() - before)
    row = {"label": label, "p50": statistics.median(times), "p99": percentile(times, 99),
           "calls": statistics.mean(used), "result": result}  # fmt: skip
    print(f"  {label:<34} {row['calls']:>6.1f} calls/query   p50 {row['p50']:8.1f} ms   "
          f"p99 {row['p99']:8.1f} ms", flush=True)  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=40, help="cold and baseline queries")
    parser.add_argument("--warm-queries", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="per provider call")
    args = parser.parse_args()
    start, end = window()
    print(
        f"{STAFF} staff x {DAYS} days ({start:%Y-%m-%d} → {end:%Y-%m-%d}), {EVENTS} events "
        f"each, 30-minute slots, {args.latency_ms:.0f} ms per provider call",
        flush=True,
    )

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    provider = ctx.Process(target=serve_google, args=(args.latency_ms, start, end, child))
    provider.start()
    try:
        google = parent.recv()
        with tempfile.TemporaryDirectory(prefix="relais-bench-") as home:
            client, key = setup_hub(Path(home), google)
            from sync import busy

            def count() -> int:
                return provider_calls(google["url"])

            def cold() -> list[tuple[str, str]]:
                busy.CACHE.clear()
                return hub_query(client, key, start, end)

            hub_query(client, key, start, end)  # build the connector, open connections
            print("measuring…", flush=True)
            ours_cold = measure("ours, cold (cache emptied)", args.queries, cold, count)
            ours_warm = measure("ours, warm (within 30 s)", args.warm_queries,
                                lambda: hub_query(client, key, start, end), count)  # fmt: skip
            base = measure("baseline: events.list per staff", args.queries,
                           lambda: baseline_query(google, start, end), count)  # fmt: skip
    finally:
        parent.send("stop")
        provider.join(10)

    assert ours_cold["result"] == ours_warm["result"] == base["result"], "slot lists differ"
    slots = len(base["result"])
    weekdays = sum(1 for d in range(DAYS) if (start + timedelta(days=d)).weekday() < 5)
    print(
        f"\nsame {slots} free slots from all three ({slots / STAFF:.0f} per staff member "
        f"out of {weekdays * 15} candidates)"
    )
    for row in (ours_cold, ours_warm):
        print(f"{row['label']:<28} vs baseline: {base['p50'] / row['p50']:6.1f}x faster (p50), "
              f"{base['p99'] / row['p99']:6.1f}x (p99), provider calls "
              f"{row['calls']:.1f} vs {base['calls']:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
