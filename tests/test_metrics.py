"""/metrics: delivery results by provider and outcome, accept-to-delivered latency,
rate-limit pauses, the oldest due pending delivery, open escalations; each a
counter where it happens or a gauge read through an index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from test_delivery import accept, acme, delivery  # noqa: F401 - acme is a fixture

from relais.api import create_app
from relais.api.ops import BACKLOG
from relais.auth import create_key
from sync.delivery import process_connection
from sync.store.db import session_scope

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def scrape() -> dict[tuple[str, tuple], float]:
    BACKLOG._at = 0.0  # no cached read from an earlier test's database
    with session_scope() as session:
        key = create_key(session, "operator", None, "ops")
    text = TestClient(create_app()).get("/metrics",
                                        headers={"Authorization": f"Bearer {key}"}).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_delivered_and_latency(acme, hub_clock):  # noqa: F811
    hub_clock(T0)
    before = scrape()
    _, [dlv], conn = accept()
    hub_clock(T0 + timedelta(seconds=90))
    waiting = scrape()
    assert value(waiting, "relais_oldest_due_pending_seconds") == 90.0
    hub_clock(T0 + timedelta(seconds=93))
    assert process_connection(conn).delivered == 1
    after = scrape()
    delivered = ("relais_delivery_results_total", {"provider": "webhook", "outcome": "delivered"})
    assert value(after, delivered[0], **delivered[1]) - value(before, delivered[0],
                                                              **delivered[1]) == 1
    count = "relais_accept_to_delivered_seconds_count"
    assert value(after, count, provider="webhook") - value(before, count, provider="webhook") == 1
    total = "relais_accept_to_delivered_seconds_sum"
    # approx: the sum already holds other tests' observations (float addition)
    added = value(after, total, provider="webhook") - value(before, total, provider="webhook")
    assert added == pytest.approx(93.0)
    bucket = "relais_accept_to_delivered_seconds_bucket"
    assert (value(after, bucket, provider="webhook", le="120.0")
            - value(before, bucket, provider="webhook", le="120.0")) == 1
    assert (value(after, bucket, provider="webhook", le="60.0")
            - value(before, bucket, provider="webhook", le="60.0")) == 0
    assert value(after, "relais_oldest_due_pending_seconds") == 0.0
    assert delivery(dlv).status == "delivered"


def test_rate_limit_pauses_show(acme, hub_clock):  # noqa: F811
    hub_clock(T0)
    before = scrape()
    _, [dlv], conn = accept()
    acme.status_override = 429
    process_connection(conn)
    after = scrape()
    name = "relais_connection_pauses_total"
    assert value(after, name, provider="webhook") - value(before, name, provider="webhook") == 1
    limited = {"provider": "webhook", "outcome": "rate_limited"}
    assert (value(after, "relais_delivery_results_total", **limited)
            - value(before, "relais_delivery_results_total", **limited)) == 1
    assert value(after, "relais_connections_paused") == 1
    assert value(after, "relais_escalations_open") == 0
