"""The embedded broker as it ships, against the SQLAlchemy transport and Redis.

What ships: ``sync.queue.make_celery`` with ``filesystem://``, i.e. Relais's
own transport (``sync.broker_fs``: each message written to a temporary file,
fsynced and renamed into place) with Relais's Celery settings (acks late,
prefetch 1, 0.1 s polling). The same Celery app, only the broker URL changed,
on kombu's SQLAlchemy transport (``sqla+sqlite``, the other server-less choice;
its polling interval set to the same 0.1 s) and on Redis (if it answers on
127.0.0.1:6379; database 15).

Per transport and round (``--rounds``, default 3; transports interleaved), a
real Celery worker (``--concurrency 2``, prefork, as ``relais worker`` runs)
consumes a no-op task that appends one line to a file; this process publishes
with ``send_task`` as ``enqueue_connections`` does, and measures:

- throughput: ``--messages`` tasks published back to back, from the first
  publish until the worker ran them all (tasks/s), and the publish rate alone;
- latency: ``--probes`` single tasks, one at a time, from publish to the
  task's start in the worker (p50 and max).

Printed per round, then the median [min-max] over rounds, and the ratios of
the embedded broker to the others.

Usage: python bench/broker.py [--messages 1000] [--probes 20] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TASK = "bench.broker.noop"
SECRET = "kVvJ0x0b3Ckq6bQ1kXq3vP8s7mYkJ6V8o9Qf1m2n3o4="
POLLING = 0.1  # the embedded broker's polling interval (Settings.broker_polling_interval)


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


def environment(kind: str, home: Path) -> dict[str, str]:
    env = {"RELAIS_HOME": str(home), "RELAIS_SECRET_KEYS": SECRET,
           "RELAIS_QUEUE": f"bench-broker-{uuid.uuid4().hex[:8]}"}  # fmt: skip
    if kind == "sqlalchemy":
        env["RELAIS_BROKER_URL"] = f"sqla+sqlite:///{home / 'broker.db'}"
    elif kind == "redis":
        env["RELAIS_BROKER_URL"] = "redis://127.0.0.1:6379/15"
    return env  # filesystem: the default, under RELAIS_HOME


def celery_app(env: dict[str, str]):  # noqa: ANN201 - a Celery app
    """Relais's Celery app for ``env``: ``make_celery`` exactly as the shell builds it."""
    os.environ.update(env)
    if "RELAIS_BROKER_URL" not in env:
        os.environ.pop("RELAIS_BROKER_URL", None)
    from kombu.transport import sqlalchemy

    from sync.queue import make_celery
    from sync.settings import get_settings, reset_settings

    # kombu hands the SQLAlchemy transport's options to create_engine: set its polling
    # interval on the class, to the embedded broker's, for a like-for-like comparison
    sqlalchemy.Transport.polling_interval = POLLING
    reset_settings()
    return make_celery(get_settings())


# --------------------------------------------------------------------------- the worker


def consume(out: str) -> None:
    """Child process (``--consume FILE``): a Celery worker running the no-op task."""
    app = celery_app(dict(os.environ))
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    @app.task(name=TASK)
    def noop(i: int, sent: float) -> None:
        # one short line per task: O_APPEND writes this small are atomic across processes
        os.write(fd, f"{i} {sent} {time.time()}\n".encode())

    app.worker_main(["worker", "--concurrency=2", "--loglevel=INFO", "--pool=prefork",
                     "--without-gossip", "--without-mingle"])  # fmt: skip


def start_worker(env: dict[str, str], home: Path, out: Path) -> subprocess.Popen[bytes]:
    log_path = home / "worker.log"
    inherited = {k: v for k, v in os.environ.items() if k != "RELAIS_BROKER_URL"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--consume", str(out)], cwd=ROOT,
            env={**inherited, **env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while "ready." not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(log_path.read_text()[-2000:])
        time.sleep(0.02)
    return proc


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# --------------------------------------------------------------------------- measuring


@dataclass
class Round:
    publish: float  # tasks/s
    through: float  # tasks/s, first publish to last task run
    latency: list[float]  # ms, publish to task start


def lines(out: Path) -> list[str]:
    return out.read_text().splitlines() if out.exists() else []


def wait_for(out: Path, count: int, timeout: float = 600) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(seen := lines(out)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(seen)} of {count} tasks ran in {timeout:.0f} s")
        time.sleep(0.001)
    return seen


def one_round(kind: str, messages: int, probes: int) -> Round:
    home = Path(tempfile.mkdtemp(prefix=f"relais-broker-{kind}-"))
    env = environment(kind, home)
    out = home / "ran.txt"
    proc = start_worker(env, home, out)
    try:
        app = celery_app(env)
        with app.producer_or_acquire() as producer:
            app.send_task(TASK, args=[-1, time.time()], producer=producer)  # connect first
            wait_for(out, 1, timeout=60)
            start = time.perf_counter()
            for i in range(messages):
                app.send_task(TASK, args=[i, time.time()], producer=producer)
            published = time.perf_counter() - start
            wait_for(out, messages + 1)
            through = time.perf_counter() - start
            latency = []
            for p in range(probes):
                app.send_task(TASK, args=[messages + p, time.time()], producer=producer)
                _i, sent, ran = wait_for(out, messages + 2 + p)[-1].split()
                latency.append((float(ran) - float(sent)) * 1000)
                time.sleep(0.05)  # idle between probes, as between real calls
        app.close()
    finally:
        stop_worker(proc)
    return Round(messages / published, messages / through, latency)


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return (f"{fmt.format(statistics.median(values))} "
            f"[{fmt.format(min(values))}-{fmt.format(max(values))}]")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="300 messages, 10 probes")
    parser.add_argument("--consume", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        consume(args.consume)
        return
    if args.quick:
        args.messages, args.probes = 300, 10
    kinds = ["filesystem", "sqlalchemy"] + (["redis"] if redis_up() else [])
    print(f"broker benchmark: Relais's Celery app, {args.messages} tasks + {args.probes} "
          f"single-task probes per round, a worker of 2 processes; {args.rounds} rounds of "
          f"{', '.join(kinds)}", flush=True)  # fmt: skip
    results: dict[str, list[Round]] = {k: [] for k in kinds}
    for r in range(args.rounds):
        for kind in kinds:
            got = one_round(kind, args.messages, args.probes)
            results[kind].append(got)
            print(f"  round {r + 1} {kind:<11} publish {got.publish:7.0f}/s   publish->run "
                  f"{got.through:7.0f} tasks/s   latency p50 {statistics.median(got.latency):6.1f}"
                  f" ms  max {max(got.latency):6.1f} ms", flush=True)  # fmt: skip
    print("median [min-max] over rounds:")
    for kind, rounds in results.items():
        name = "filesystem (sync.broker_fs, ships)" if kind == "filesystem" else kind
        print(f"  {name:<37} publish {spread([x.publish for x in rounds])}/s   "
              f"publish->run {spread([x.through for x in rounds])} tasks/s   latency p50 "
              f"{spread([statistics.median(x.latency) for x in rounds], '{:.1f}')} ms   max "
              f"{spread([max(x.latency) for x in rounds], '{:.1f}')} ms")
    fs = results["filesystem"]
    for kind in kinds[1:]:
        ratio = [a.through / b.through for a, b in zip(fs, results[kind], strict=True)]
        print(f"  filesystem / {kind}: {spread(ratio, '{:.2f}')}x tasks/s (paired rounds)")


if __name__ == "__main__":
    main()
