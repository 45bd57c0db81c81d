"""`relais demo`, the README's main job, passes at any hour of any day.

Each clock runs the whole scenario (API, worker and beat as real processes, a day of
calls, the night emergency acknowledged by SMS) with the hub's clock injected by
``--at``; the machine's clock is left alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT

CLOCKS = {
    "weekday-morning": "2026-12-01T09:05:00+01:00",  # Tuesday, office hours starting
    "wednesday-afternoon": "2026-12-02T16:18:00+01:00",  # the medical centre is closed
    "sunday-night": "2026-12-06T23:30:00+01:00",
    "christmas": "2026-12-25T10:00:00+01:00",  # public holiday (FR)
    "dst-night": "2027-03-28T03:10:00+02:00",  # 40 min after 02:00 CET became 03:00 CEST
}


@pytest.mark.processes
@pytest.mark.slow
@pytest.mark.parametrize("at", list(CLOCKS.values()), ids=list(CLOCKS))
def test_demo_passes_at(at, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
    env["RELAIS_HOME"] = str(tmp_path)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "relais", "demo", "--at", at, "--calls", "16",
         "--timeout", "120"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "OK: every delivery landed exactly once." in out
    assert "acknowledged by +33" in out  # the night emergency's ladder, by SMS
    assert "centre-medical-lumiere" in out and "…" not in out  # piped: tables never cut
    print(f"demo at {at}: {time.monotonic() - started:.1f} s")


def test_demo_at_refuses_a_date_without_offset(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
    env["RELAIS_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "relais", "demo", "--at", "2026-12-02T16:18"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "needs a UTC offset" in done.stderr
