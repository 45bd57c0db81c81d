"""The CPU cost of one accepted post, in process: a tool for comparing two trees.

``POST /v1/tenants/acme/messages`` through the app (FastAPI's TestClient, no
network, no worker) on a fresh SQLite home set up as ``bench/pipeline.py`` does
(``bench/hub.Hub``), one post at a time after 30 unmeasured ones. Run it from
each tree's root with that tree's venv (the baseline is the other tree: before
and after a change), alternating; it prints the median and mean per post.

Usage: python bench/accept_cost.py [--posts 300] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from hub import Hub, call  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top 40")
    args = parser.parse_args()
    hub = Hub("sqlite")
    hub.apply((ROOT / "tests" / "fixtures" / "acme.yaml").read_text(),
              {"RELAIS_TENANT_ACME_HOOK_URL": "http://127.0.0.1:9/hooks/acme/hook"})
    key = hub.key("acme")
    from fastapi.testclient import TestClient

    from relais.api import create_app

    client = TestClient(create_app())
    headers = {"Authorization": f"Bearer {key}"}
    url = "/v1/tenants/acme/messages"
    for n in range(30):
        assert client.post(url, json=call(n), headers=headers).status_code == 202
    profile = cProfile.Profile() if args.profile else None
    times = []
    for n in range(args.posts):
        started = time.perf_counter()
        if profile:
            profile.enable()
        answer = client.post(url, json=call(1000 + n), headers=headers)
        if profile:
            profile.disable()
        times.append(time.perf_counter() - started)
        assert answer.status_code == 202, answer.text
    print(f"{ROOT.name}: {args.posts} posts one at a time, median "
          f"{1000 * statistics.median(times):.2f} ms, mean {1000 * statistics.mean(times):.2f} ms "
          f"[{1000 * min(times):.2f}-{1000 * max(times):.2f}]")
    if profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
