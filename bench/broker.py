"""Which embedded broker: kombu's filesystem transport or its SQLAlchemy one?

Both need no server, survive a restart and work across processes. This
publishes N messages from one process and drains them from another, for each,
in the same run, and prints round-trip throughput and the ratio.

Usage: python bench/broker.py [--messages 2000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

from kombu import Connection, Consumer, Exchange, Producer, Queue


def transport(kind: str, folder: Path) -> tuple[str, dict]:
    if kind == "filesystem":
        for sub in ("in", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return "filesystem://", {"data_folder_in": str(folder / "in"),
                                 "control_folder": str(folder / "control"),
                                 "data_folder_out": str(folder / "in"),
                                 "processed_folder": str(folder / "processed"),
                                 "polling_interval": 0.1}
    # Its transport options go to create_engine: the interval is set on the transport.
    return f"sqla+sqlite:///{folder / 'broker.db'}", {}


def connect(url: str, options: dict) -> Connection:
    conn = Connection(url, transport_options=options)
    conn.transport.polling_interval = 0.1  # the same for both transports
    return conn


def consume(kind: str, folder: str, n: int, done) -> None:  # noqa: ANN001
    url, options = transport(kind, Path(folder))
    queue = Queue("bench", Exchange("bench", type="direct"), routing_key="bench")
    got = 0

    def on_message(_body, message) -> None:  # noqa: ANN001
        nonlocal got
        message.ack()
        got += 1

    with connect(url, options) as conn:
        with Consumer(conn, [queue], callbacks=[on_message], accept=["json"]):
            while got < n:
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    pass
    done.set()


def run(kind: str, n: int) -> tuple[float, float]:
    folder = Path(tempfile.mkdtemp(prefix=f"relais-broker-{kind}-"))
    url, options = transport(kind, folder)
    queue = Queue("bench", Exchange("bench", type="direct"), routing_key="bench")
    with connect(url, options) as conn:
        queue(conn.default_channel).declare()
    done = multiprocessing.Event()
    consumer = multiprocessing.Process(target=consume, args=(kind, str(folder), n, done))
    consumer.start()
    start = time.perf_counter()
    with connect(url, options) as conn:
        producer = Producer(conn.default_channel, exchange=queue.exchange, routing_key="bench")
        for i in range(n):
            producer.publish({"connection_id": f"con_{i % 20}"}, serializer="json",
                             declare=[queue])
    published = time.perf_counter() - start
    done.wait(600)
    elapsed = time.perf_counter() - start
    consumer.join(10)
    return n / published, n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    print(f"embedded broker benchmark: {args.messages} messages, 1 producer, 1 consumer process")
    rates = {}
    for kind in ("filesystem", "sqlalchemy"):
        publish, total = run(kind, args.messages)
        rates[kind] = total
        print(f"  {kind:11s} publish {publish:8.0f} msg/s   publish+consume {total:8.0f} msg/s")
    print(f"  ratio filesystem / sqlalchemy: {rates['filesystem'] / rates['sqlalchemy']:.2f}x")


if __name__ == "__main__":
    main()
