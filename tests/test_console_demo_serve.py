"""``relais demo --serve``: the demo runs, then the hub, the sandboxes and the console
stay up, printing the console's URL and a login per role; a secretary and a client
sign in over HTTP; Ctrl-C (SIGINT) stops everything cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from conftest import ROOT


def _sign_in(base: str, email: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=15, follow_redirects=True) as client:
        page = client.get("/login")
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        signed = client.post("/login", data={"email": email, "password": password,
                                             "csrf_token": token})
        return signed


@pytest.mark.processes
@pytest.mark.slow
def test_demo_serve_keeps_the_console_up_until_ctrl_c(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
    env["RELAIS_HOME"] = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "relais", "demo", "--serve", "--at",
         "2026-12-01T10:05:00+01:00", "--calls", "6", "--timeout", "120"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 280
        while not any(line.startswith("Console: ") for line in lines):
            assert proc.poll() is None, "".join(lines)[-4000:]
            assert time.monotonic() < deadline, "".join(lines)[-4000:]
            time.sleep(0.5)
        out = "".join(lines)
        assert "OK: every delivery landed exactly once." in out
        base = re.search(r"Console: (http://127\.0\.0\.1:\d+)/", out).group(1)
        logins = dict(re.findall(r"^\s+(?:operator|secretary|tenant admin|client)\s+\S+\s+"
                                 r"(\S+@demo\.relais\.test)\s+(\S+)$", out, re.M))
        assert {"operator@demo.relais.test", "secretary@demo.relais.test"} <= set(logins)
        assert sum(e.startswith("client.") for e in logins) == 3  # one per sample tenant
        assert sum(e.startswith("admin.") for e in logins) == 3
        secretary = _sign_in(base, "secretary@demo.relais.test",
                             logins["secretary@demo.relais.test"])
        assert secretary.status_code == 200 and str(secretary.url).endswith("/desk")
        client_email = next(e for e in logins if e.startswith("client."))
        tenant = client_email.split("@")[0].removeprefix("client.")
        client = _sign_in(base, client_email, logins[client_email])
        assert client.status_code == 200 and f"/t/{tenant}/" in str(client.url)
        wrong = _sign_in(base, "secretary@demo.relais.test", "not-the-password")
        assert wrong.status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    reader.join(5)
    assert code == 0, "".join(lines)[-3000:]
    assert "stopping the demo" in "".join(lines)
    with pytest.raises(httpx.HTTPError):  # the hub is gone with it
        httpx.get(base + "/login", timeout=3)
