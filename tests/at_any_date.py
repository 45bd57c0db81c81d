"""Run the in-process tests at four shifted machine clocks (CI: ``.ci/run``).

The suite must pass on any day of the year. Each run travels the whole pytest session
(time-machine, ticking) to: the next Sunday night, the next 25 December, the next
spring-forward night in Paris (starting two minutes before 02:00 CET, so the run
crosses the jump) and a day a year ahead. Tests that start processes are skipped in
these runs (the processes keep the real clock; see ``conftest.py``).

    python tests/at_any_date.py [pytest args…]
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")


def _next(today: date, month: int, day: int) -> date:
    this_year = date(today.year, month, day)
    return this_year if this_year > today else date(today.year + 1, month, day)


def clocks(today: date) -> dict[str, datetime]:
    """The four machine clocks of a run made on ``today`` (all in the future)."""
    sunday = today + timedelta(days=(6 - today.weekday()) or 7)
    march_end = _next(today, 3, 31)
    spring = march_end - timedelta(days=(march_end.weekday() + 1) % 7)  # last Sunday
    if spring <= today:
        spring = date(spring.year + 1, 3, 31)
        spring -= timedelta(days=(spring.weekday() + 1) % 7)
    return {
        "sunday-night": datetime(sunday.year, sunday.month, sunday.day, 23, 30, tzinfo=PARIS),
        "christmas": datetime.combine(_next(today, 12, 25), datetime.min.time(), PARIS)
        .replace(hour=10),
        "dst-night": datetime(spring.year, spring.month, spring.day, 1, 58, tzinfo=PARIS),
        "a-year-ahead": datetime.combine(today + timedelta(days=366), datetime.min.time(), PARIS)
        .replace(hour=12),
    }


def main(args: list[str]) -> int:
    """Two clocks at a time (each run is one process; CI has 2 cores), each run's output
    printed whole when it ends. Test databases and queues are per test, so runs don't meet."""
    root = Path(__file__).resolve().parent.parent

    def run(name: str, at: datetime) -> tuple[str, int, str]:
        env = {**os.environ, "RELAIS_TEST_MACHINE_CLOCK": at.isoformat()}
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-m", "not processes and not slow", *args],
            cwd=root, env=env, check=False, capture_output=True, text=True)
        header = f"== in-process tests at {name}: {at.isoformat()}\n"
        return name, done.returncode, header + done.stdout + done.stderr

    failed = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [pool.submit(run, name, at)
                for name, at in clocks(datetime.now(PARIS).date()).items()]
        for future in runs:
            name, returncode, output = future.result()
            print(output, flush=True)
            if returncode != 0:
                failed.append(name)
    if failed:
        print(f"failed at: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
