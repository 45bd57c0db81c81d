"""Health and metrics for the operator.

``/healthz`` (no key: load balancers call it) answers 503 when the database or
the broker is down. ``/metrics`` needs an operator key; it is the
``prometheus_client`` exposition of this process's counters (every process's
with ``PROMETHEUS_MULTIPROC_DIR``: see ``sync.metrics``) plus gauges read at most
every ``BACKLOG_TTL`` seconds, each an index range, never a table scan: the
delivery backlog by status and the oldest due pending delivery
(``ix_deliveries_status_due``), open escalations (``ix_escalations_open``),
connections paused by a rate limit (the connections table: one row per
destination, not per message).
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

from relais.api.deps import Caller
from relais.api.errors import ApiError
from sync import clock
from sync import metrics as _engine_metrics  # noqa: F401 - registers the engine's counters
from sync.queue import BROKER, check_broker
from sync.store.db import session_scope
from sync.store.models import Connection, Delivery, Escalation

router = APIRouter(tags=["operations"])

MESSAGES_ACCEPTED = Counter("relais_messages_accepted_total",
                            "Messages accepted by this API process.")
BACKLOG_STATUSES = ("pending", "in_flight", "dead")
BACKLOG_TTL = 10.0


class _Backlog(Collector):
    """Deliveries not yet delivered, by status; the oldest due pending one; open
    escalations; paused connections (index ranges, cached briefly)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = 0.0
        self._counts: dict[str, int] = {}
        self._oldest_due: datetime | None = None
        self._escalations = 0
        self._paused = 0

    def collect(self):  # type: ignore[no-untyped-def]
        database_up = GaugeMetricFamily("relais_database_up", "1 when the last read worked.")
        with self._lock:
            try:
                if time.monotonic() - self._at > BACKLOG_TTL:
                    with session_scope(readonly=True) as session:
                        rows = session.execute(
                            select(Delivery.status, func.count())
                            .where(Delivery.status.in_(BACKLOG_STATUSES))
                            .group_by(Delivery.status)
                        ).all()
                        self._oldest_due = session.scalar(
                            select(func.min(Delivery.next_attempt_at))
                            .where(Delivery.status == "pending"))
                        self._escalations = session.scalar(
                            select(func.count()).select_from(Escalation)
                            .where(Escalation.finished.is_(False))) or 0
                        self._paused = session.scalar(
                            select(func.count()).select_from(Connection)
                            .where(Connection.paused_until > clock.now())) or 0
                    self._counts = {status: 0 for status in BACKLOG_STATUSES} | dict(rows)
                    self._at = time.monotonic()
                database_up.add_metric([], 1)
            except Exception:  # noqa: BLE001 - a scrape reports, it does not fail
                database_up.add_metric([], 0)
            counts = dict(self._counts)
            oldest, escalations, paused = self._oldest_due, self._escalations, self._paused
        yield database_up
        late = GaugeMetricFamily(
            "relais_oldest_due_pending_seconds",
            "How long the oldest pending delivery has been due (0: none is late).")
        late.add_metric([], max(0.0, (clock.now() - oldest).total_seconds()) if oldest else 0.0)
        yield late
        yield GaugeMetricFamily("relais_escalations_open", "Escalation ladders running.",
                                value=escalations)
        yield GaugeMetricFamily("relais_connections_paused",
                                "Connections paused by a provider's rate limit now.",
                                value=paused)
        family = GaugeMetricFamily("relais_deliveries", "Deliveries not delivered, by status.",
                                   labels=["status"])
        for status, count in sorted(counts.items()):
            family.add_metric([status], count)
        yield family


BACKLOG = _Backlog()
REGISTRY.register(BACKLOG)


@router.get("/healthz")
def healthz() -> JSONResponse:
    body = {"status": "ok", "database": "ok", "broker": "ok"}
    try:
        with session_scope(readonly=True) as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - health reports, it does not raise
        body["database"] = type(exc).__name__
    problem = check_broker()
    BROKER.record(problem is None, problem or "")
    if problem:
        body["broker"] = problem
    if body["database"] != "ok" or body["broker"] != "ok":
        body["status"] = "error"
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)


@router.get("/metrics", response_class=Response)
def metrics(who: Caller) -> Response:
    """Prometheus text format, for the operator only (it covers every tenant)."""
    if who.role != "operator":
        raise ApiError(403, "forbidden", f"metrics need an operator key; your key is {who.role}")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()  # every process's counters, from the shared directory
        multiprocess.MultiProcessCollector(registry)
        registry.register(BACKLOG)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
