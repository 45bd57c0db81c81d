"""The desk as a secretary lives it, in Debian's Chromium on the demo's data.

Starts ``relais demo --serve`` (API, worker and beat as real processes, the
provider sandboxes, a day of calls), signs in as the demo's secretary, then per
run:

- screen-pop: from ``page.goto('/desk?called=…&caller=…')`` (the demo prints the
  URL: Cabinet Durand's forwarding number, a caller pulled from the Salesforce
  sandbox) until the desk shows the tenant (``#tenant-name``), the script
  (``#greeting``) and the recognised caller (``#caller-name``);
- baseline, in the same run and the same browser: the same actions on a static
  copy of that very desk page (its HTML as the hub sent it, with the console's
  static files) served by a bare ``http.server`` in this process: the browser's,
  Playwright's and the loopback's share of the figure, the floor our path sits on;
- the hub alone: the screen-pop's GET over HTTP (httpx, the secretary's session
  cookie), no browser;
- send: from pressing Ctrl+Enter on the filled form until the message's
  deliveries are shown (``#sent-status .delivery``), and until all have settled
  (``data-settled=yes``: every delivery landed in its sandbox or died).

Every figure is measured (``time.perf_counter`` around the browser's actions,
Playwright's round trips included); printed: median, p95, min-max per measure,
the screen-pop's ratio to its baseline, and the load average at start and end
(the machine is shared: repeat and compare the spread).

Usage: python bench/console.py [--runs 12] [--calls 10]
"""

from __future__ import annotations

import argparse
import http.server
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("RELAIS_TEST_CHROMIUM", "/usr/bin/chromium")


def start_demo(calls: int, home: str) -> tuple[subprocess.Popen[str], list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
    env["RELAIS_HOME"] = home
    proc = subprocess.Popen(
        [sys.executable, "-m", "relais", "demo", "--serve", "--calls", str(calls)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                     daemon=True).start()
    deadline = time.monotonic() + 400
    while not any(line.startswith("Console: ") for line in lines):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("demo did not come up:\n" + "".join(lines)[-3000:])
        time.sleep(0.5)
    return proc, lines


class StaticDesk:
    """The baseline's server: one page (the desk's HTML as the hub sent it) at
    ``/desk``, the console's static files at ``/static/…``, an empty 200 for the
    page's htmx POSTs (the rules' preview on load). No database, no template."""

    def __init__(self, html: bytes) -> None:
        static = ROOT / "relais" / "console" / "static"
        types = {".css": "text/css", ".js": "text/javascript"}

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, body: bytes, kind: str, cache: bool = False) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                if cache:
                    self.send_header("Cache-Control", "public, max-age=31536000, immutable")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?")[0]
                if path.startswith("/static/") and (static / path[8:]).is_file():
                    file = static / path[8:]
                    self._send(file.read_bytes(), types.get(file.suffix, "text/plain"), True)
                else:
                    self._send(html, "text/html; charset=utf-8")

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._send(b"", "text/html; charset=utf-8")

            def log_message(self, *_args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/desk"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(name: str, values: list[float]) -> str:
    return (f"{name:<38} n={len(values):<3} median {statistics.median(values):7.1f} ms   "
            f"p95 {pct(values, 0.95):7.1f} ms   min-max {min(values):.1f}-{max(values):.1f} ms")


FILL_REQUIRED = """() => {
  for (const el of document.querySelectorAll('#call-form [required]')) {
    if (el.value) continue;
    if (el.tagName === 'SELECT') {
      const opt = [...el.options].find(o => o.value); if (opt) el.value = opt.value;
    } else if (el.type === 'number') { el.value = '1'; }
    else if (el.type === 'email') { el.value = 'bench@example.org'; }
    else if (el.type === 'date') { el.value = '2026-12-03'; }
    else { el.value = 'Banc de mesure ' + Date.now(); }
    el.dispatchEvent(new Event('change', {bubbles: true}));
  }
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as home:
        proc, lines = start_demo(args.calls, home)
        try:
            out = "".join(lines)
            base = re.search(r"Console: (http://127\.0\.0\.1:\d+)/", out).group(1)
            pop = re.search(r"Screen-pop: (\S+)", out)
            if pop is None:
                raise SystemExit("the demo printed no screen-pop URL (known caller missing)")
            email, password = re.search(r"secretary\s+\S+\s+(\S+)\s+(\S+)", out).groups()
            pops, floor, hub, shown, settled = [], [], [], [], []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                     args=["--no-sandbox", "--disable-gpu"])
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                page.goto(base + "/login")
                page.fill("#email", email)
                page.fill("#password", password)
                page.keyboard.press("Enter")
                page.wait_for_url(lambda url: "/login" not in url)
                cookies = {c["name"]: c["value"] for c in context.cookies()}
                with httpx.Client(cookies=cookies) as client:
                    answer = client.get(pop.group(1))
                    if answer.status_code != 200 or 'id="caller-name"' not in answer.text:
                        raise SystemExit(f"the screen-pop answered {answer.status_code}")
                    static = StaticDesk(answer.content)
                    for run in range(args.runs + 1):  # the first one warms up, not counted
                        started = time.perf_counter()
                        client.get(pop.group(1)).raise_for_status()
                        alone = time.perf_counter() - started
                        opened = open_desk(page, pop.group(1))
                        bare = open_desk(page, static.url)
                        page.goto(pop.group(1), wait_until="commit")
                        page.wait_for_selector("#subject", state="visible")
                        page.fill("#subject", f"Mesure {run}")
                        page.evaluate(FILL_REQUIRED)
                        page.focus("#subject")
                        started = time.perf_counter()
                        page.keyboard.press("Control+Enter")
                        page.wait_for_selector("#sent-status .delivery")
                        seen = time.perf_counter() - started
                        page.wait_for_selector("#sent-status[data-settled=yes]", timeout=60_000)
                        done = time.perf_counter() - started
                        if run:
                            pops.append(opened * 1000)
                            floor.append(bare * 1000)
                            hub.append(alone * 1000)
                            shown.append(seen * 1000)
                            settled.append(done * 1000)
                    static.close()
                browser.close()
        finally:
            proc.send_signal(signal.SIGTERM)  # SIGINT is ignored when run in the background
            proc.wait(60)
    load_after = os.getloadavg()
    print(f"relais console bench: {args.runs} runs, demo with {args.calls} calls, {base}; "
          f"load average {load_before[0]:.1f} at start, {load_after[0]:.1f} at end "
          f"({os.cpu_count()} cores)")
    print(report("screen-pop -> tenant+script+caller", pops))
    print(report("  baseline: static copy of that page", floor))
    print(report("  the hub alone: the pop's GET (httpx)", hub))
    print(f"{'  ratio to the baseline (medians)':<38} "
          f"{statistics.median(pops) / statistics.median(floor):.2f}x")
    print(report("send -> deliveries shown", shown))
    print(report("send -> every delivery settled", settled))


def open_desk(page: Any, url: str) -> float:
    """Seconds from navigating to ``url`` until tenant, script and caller are visible."""
    started = time.perf_counter()
    page.goto(url, wait_until="commit")
    for selector in ("#tenant-name", "#greeting", "#caller-name"):
        page.wait_for_selector(selector, state="visible")
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
