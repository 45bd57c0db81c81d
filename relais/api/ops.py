"""Health and metrics for the operator."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import func, select, text

from relais.db import session_scope
from relais.models import Delivery, Message

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> JSONResponse:
    try:
        with session_scope(readonly=True) as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - health reports, it does not raise
        return JSONResponse({"status": "error", "database": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/metrics", response_class=PlainTextResponse)
def metrics() -> str:
    """Prometheus text format: counts only, no tenant data beyond ids."""
    with session_scope(readonly=True) as session:
        by_status = session.execute(
            select(Delivery.tenant_id, Delivery.status, func.count()).group_by(
                Delivery.tenant_id, Delivery.status
            )
        ).all()
        messages = session.execute(
            select(Message.tenant_id, func.count()).group_by(Message.tenant_id)
        ).all()
    lines = [
        "# HELP relais_deliveries Deliveries by tenant and status.",
        "# TYPE relais_deliveries gauge",
    ]
    lines += [f'relais_deliveries{{tenant="{t}",status="{s}"}} {n}' for t, s, n in by_status]
    lines += [
        "# HELP relais_messages_total Messages accepted.",
        "# TYPE relais_messages_total counter",
    ]
    lines += [f'relais_messages_total{{tenant="{t}"}} {n}' for t, n in messages]
    return "\n".join(lines) + "\n"
