"""Health and metrics for the operator.

``/healthz`` (no key: load balancers call it) answers 503 when the database or
the broker is down. ``/metrics`` needs an operator key; it is the
``prometheus_client`` exposition of this process's counters plus the delivery
backlog, read through ``ix_deliveries_status`` (only unfinished and dead rows,
never the whole table) at most every ``BACKLOG_TTL`` seconds.
"""

from __future__ import annotations

import threading
import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

from relais.api.deps import Caller
from relais.api.errors import ApiError
from sync.queue import BROKER, check_broker
from sync.store.db import session_scope
from sync.store.models import Delivery

router = APIRouter(tags=["operations"])

MESSAGES_ACCEPTED = Counter("relais_messages_accepted_total",
                            "Messages accepted by this API process.")
BACKLOG_STATUSES = ("pending", "in_flight", "dead")
BACKLOG_TTL = 10.0


class _Backlog(Collector):
    """Deliveries not yet delivered, by status (an index range, cached briefly)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = 0.0
        self._counts: dict[str, int] = {}

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
                    self._counts = {status: 0 for status in BACKLOG_STATUSES} | dict(rows)
                    self._at = time.monotonic()
                database_up.add_metric([], 1)
            except Exception:  # noqa: BLE001 - a scrape reports, it does not fail
                database_up.add_metric([], 0)
            counts = dict(self._counts)
        yield database_up
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
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
