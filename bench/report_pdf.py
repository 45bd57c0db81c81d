"""A month's report PDF through the CLI: ``relais report --pdf`` vs the same command
without it.

A fresh SQLite home (a temporary directory, removed afterwards) gets the test
tenant ``acme`` (tests/fixtures/acme.yaml, zone Europe/Paris) and ``--calls``
calls spread over ``--month`` (an Asterisk Master.csv imported with ``relais calls
import``: about 80 % answered, every day and hour used, so the four charts are
full). Then, alternating in the same run for ``--rounds`` rounds, the wall time of
a fresh process running
- ``relais report --tenant acme --month M`` (the table: start-up, the query), and
- ``relais report --tenant acme --month M --pdf FILE`` (the same plus the page and
  its PDF, WeasyPrint loaded in that process: what a cold report costs);
every call is checked to be in the month's report and the PDF to start
with ``%PDF``. Printed: each round, the medians with
[min-max], and the PDF's share (the difference of the medians).

Usage: python bench/report_pdf.py [--rounds 7] [--calls 3000] [--month 2026-11]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent


def master_csv(path: Path, calls: int, month: str) -> None:
    """``calls`` Asterisk CDR rows to the tenant's number over ``month`` (local times)."""
    rng = random.Random(14)
    first = datetime.fromisoformat(month + "-01").replace(tzinfo=ZoneInfo("Europe/Paris"))
    days = ((first.replace(day=28) + timedelta(days=4)).replace(day=1) - first).days
    with path.open("w", newline="") as fh:
        out = csv.writer(fh, quoting=csv.QUOTE_NONNUMERIC)
        for n in range(calls):
            start = first + timedelta(days=rng.randrange(days), hours=rng.randrange(24),
                                      seconds=rng.randrange(3600))
            answered = rng.random() < 0.8
            wait = rng.randrange(2, 40)
            talk = rng.randrange(30, 400) if answered else 0
            answer = (start + timedelta(seconds=wait)).strftime("%F %T") if answered else ""
            end = start + timedelta(seconds=wait + talk)
            out.writerow(["", f"06{n:08d}", "0123456789", "from-trunk", "", "SIP/trunk-1",
                          "SIP/sophie-2" if answered else "", "Dial", "SIP/sophie,30",
                          start.strftime("%F %T"), answer, end.strftime("%F %T"),
                          wait + talk, talk, "ANSWERED" if answered else "NO ANSWER",
                          "DOCUMENTATION", f"{1700000000 + n}.{n}", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--month", default="2026-11")
    args = parser.parse_args()
    relais = [sys.executable, "-m", "relais"]
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "RELAIS_HOME": home,
               "RELAIS_TENANT_ACME_HOOK_URL": "http://127.0.0.1:9/hook",
               "RELAIS_ALLOW_PRIVATE_URLS": "1"}  # the hook is never called
        env.pop("RELAIS_DATABASE_URL", None)
        yaml = Path(home) / "acme.yaml"
        yaml.write_text((ROOT / "tests/fixtures/acme.yaml").read_text()
                        + 'forwarding_numbers: ["01 23 45 67 89"]\n')
        cdr = Path(home) / "Master.csv"
        master_csv(cdr, args.calls, args.month)
        for step in (["tenants", "apply", str(yaml)],
                     ["calls", "import", str(cdr), "--zone", "Europe/Paris"]):
            subprocess.run([*relais, *step], env=env, check=True, capture_output=True)
        table = [*relais, "report", "--tenant", "acme", "--month", args.month]
        body = json.loads(subprocess.run([*table, "--json"], env=env, check=True,
                                         capture_output=True, text=True).stdout)
        assert body["calls"]["offered"] == args.calls, body["calls"]["offered"]
        pdf = Path(home) / "report.pdf"
        times: dict[str, list[float]] = {"table": [], "pdf": []}
        for n in range(args.rounds):
            for name, command in (("table", table), ("pdf", [*table, "--pdf", str(pdf)])):
                began = time.perf_counter()
                subprocess.run(command, env=env, check=True, capture_output=True)
                times[name].append(time.perf_counter() - began)
            assert pdf.read_bytes().startswith(b"%PDF")
            print(f"round {n + 1}: table {times['table'][-1] * 1000:.0f} ms, "
                  f"--pdf {times['pdf'][-1] * 1000:.0f} ms")
        size = pdf.stat().st_size
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values) * 1000:.0f} ms "
              f"[{min(values) * 1000:.0f}-{max(values) * 1000:.0f}] of {len(values)}")
    extra = statistics.median(times["pdf"]) - statistics.median(times["table"])
    print(f"the page and its PDF add {extra * 1000:.0f} ms (median difference); "
          f"PDF {size:,} bytes, {args.calls} calls in {args.month}")


if __name__ == "__main__":
    main()
