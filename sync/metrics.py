"""The engine's Prometheus metrics (``prometheus_client``), counted where things happen.

Counted by the process that records a delivery result (a worker): set
``PROMETHEUS_MULTIPROC_DIR`` to one directory for the API and the workers of a
host and ``/metrics`` adds up every process (prometheus_client's multiprocess
mode); without it, ``/metrics`` shows the API process's own. A batch whose
recording transaction rolls back is sent and counted again (at-least-once
counting, as the deliveries themselves are at-least-once sent).

No tenant label: a scrape never reveals which clients exist.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DELIVERY_OUTCOMES = ("delivered", "retry", "rate_limited", "token_expired", "dead")

DELIVERIES = Counter(
    "relais_delivery_results_total",
    "Delivery results recorded, by provider and outcome "
    "(delivered, retry, rate_limited, token_expired, dead).",
    ["provider", "outcome"],
)
ACCEPT_TO_DELIVERED = Histogram(
    "relais_accept_to_delivered_seconds",
    "From the delivery's creation (the message's accept) to its delivery, by provider.",
    ["provider"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600, 14400),
)
PAUSES = Counter(
    "relais_connection_pauses_total",
    "A provider's rate limit (HTTP 429 or its own limit error) paused a connection.",
    ["provider"],
)


def delivered(provider: str, seconds: float) -> None:
    DELIVERIES.labels(provider, "delivered").inc()
    ACCEPT_TO_DELIVERED.labels(provider).observe(max(0.0, seconds))


def failed(provider: str, outcome: str) -> None:
    DELIVERIES.labels(provider, outcome).inc()
    if outcome == "rate_limited":
        PAUSES.labels(provider).inc()
