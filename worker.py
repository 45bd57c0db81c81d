"""Celery wiring: ``celery -A worker worker`` and ``celery -A worker beat``.

Only wiring lives here; the work is in ``sync/``.
"""

from __future__ import annotations

import logging

from celery.signals import worker_process_init

from relais.db import dispose_engines
from relais.queue import DELIVER_TASK, SWEEP_TASK, celery_app, enqueue_connections
from sync.delivery import process_connection, sweep

log = logging.getLogger("relais.worker")

app = celery_app()


@worker_process_init.connect
def _fresh_pools(**_kwargs: object) -> None:
    # Database connections must not cross a fork.
    dispose_engines()


def _wake(connection_id: str) -> None:
    enqueue_connections([connection_id])


@app.task(name=DELIVER_TASK)
def deliver_connection(connection_id: str) -> dict[str, object]:
    outcome = process_connection(connection_id, wake=_wake)
    if outcome.run_again_in is not None:
        enqueue_connections([connection_id], countdown=outcome.run_again_in)
    log.info(
        "connection %s: claimed %d, delivered %d, retry %d, dead %d",
        connection_id,
        outcome.claimed,
        outcome.delivered,
        outcome.retried,
        outcome.dead,
    )
    return {"claimed": outcome.claimed, "delivered": outcome.delivered}


@app.task(name=SWEEP_TASK)
def sweep_deliveries() -> list[str]:
    connection_ids = sweep()
    if connection_ids:
        log.info("sweep re-enqueues %d connection(s)", len(connection_ids))
        enqueue_connections(connection_ids)
    return connection_ids
