"""Celery wiring: ``celery -A worker worker`` and ``celery -A worker beat``.

Only wiring lives here; the work is in ``sync/``.
"""

from __future__ import annotations

import gc
import logging

from celery.signals import worker_process_init, worker_ready

from sync.delivery import process_connection, sweep, warm_up
from sync.escalation import Advanced, run_due, run_step
from sync.queue import (
    DELIVER_TASK,
    ESCALATION_SWEEP_TASK,
    ESCALATION_TASK,
    REPORTS_DUE_TASK,
    RETENTION_TASK,
    SWEEP_TASK,
    celery_app,
    enqueue_connections,
    enqueue_escalation,
)
from sync.store.db import dispose_engines

log = logging.getLogger("relais.worker")

app = celery_app()
# No remote control: nothing of ours uses it, and its per-node queue is exclusive
# on RabbitMQ, so two workers on one host (same default node name), or a worker
# restarted after a SIGKILL before the broker noticed the dead connection, died
# at start with 405 RESOURCE_LOCKED.
app.conf.worker_enable_remote_control = False


warm_up()  # in the parent, before the pool forks


@worker_process_init.connect
def _fresh_pools(**_kwargs: object) -> None:
    # Database connections must not cross a fork.
    dispose_engines()
    gc.freeze()  # the inherited heap lives on: keep it out of every full collection


@worker_ready.connect
def _say_what_is_off(**_kwargs: object) -> None:
    from sync.calendar_sync import public_url_not_https

    reason = public_url_not_https()
    if reason:  # watch channels and subscriptions are skipped: never silently
        log.warning("calendar connections without notification_url: %s", reason)


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


@app.task(name=ESCALATION_TASK)
def escalation_step(escalation_id: str) -> dict[str, object]:
    result = run_step(escalation_id)
    _follow(result)
    return {"note": result.note, "connections": result.connection_ids}


def _follow(result: Advanced) -> None:
    enqueue_connections(result.connection_ids)
    if result.run_again_in is not None:
        enqueue_escalation(result.escalation_id, countdown=result.run_again_in)


@app.task(name=ESCALATION_SWEEP_TASK)
def escalation_sweep() -> list[str]:
    advanced = run_due()
    for result in advanced:
        _follow(result)
    if advanced:
        log.info("escalation sweep advanced %d ladder(s)", len(advanced))
    return [r.escalation_id for r in advanced]


# ------------------------------------------------------------------ contact directory


@app.task(name="relais.contacts_sync_due")
def contacts_sync_due() -> list[str]:
    from sync.contacts import due_connections
    from sync.queue import enqueue_contact_pulls

    due = due_connections()
    if due:
        log.info("contacts sync: %d connection(s) due", len(due))
        enqueue_contact_pulls(due)
    return due


@app.task(name="relais.contacts_pull")
def contacts_pull(connection_id: str) -> dict[str, object]:
    from sync.contacts import pull_connection

    outcome = pull_connection(connection_id, only_if_due=True)
    return {"status": outcome.status, "records_in": outcome.records_in,
            "deleted": outcome.deleted, "calls": outcome.calls}


# ------------------------------------------------------------------ calendar two-way sync


@app.task(name="relais.calendar_sync_due")
def calendar_sync_due() -> dict[str, object]:
    from sync.calendar_sync import due_connections, renew_channels
    from sync.queue import enqueue_calendar_pull

    due = due_connections()
    for connection_id in due:
        enqueue_calendar_pull(connection_id)
    renewed = renew_channels()
    if due or renewed:
        log.info("calendar sync: %d pull(s) due, %d channel(s) renewed", len(due), len(renewed))
    return {"due": due, "renewed": renewed}


@app.task(name="relais.calendar_pull")
def calendar_pull(connection_id: str, calendar_ids: list[str] | None = None) -> dict[str, object]:
    from sync.calendar_sync import pull_connection

    outcome = pull_connection(connection_id, calendar_ids=calendar_ids)
    if calendar_ids and outcome.status == "skipped" and "already running" in outcome.note:
        from sync.queue import enqueue_calendar_pull

        # a notification's pull must not be lost behind a running one: try again shortly
        enqueue_calendar_pull(connection_id, calendar_ids, countdown=30)
    return {"status": outcome.status, "changes": outcome.changes, "moved": outcome.moved,
            "cancelled": outcome.cancelled, "calls": outcome.calls}


@app.task(name="relais.contacts_pull_now")
def contacts_pull_now(connection_id: str) -> dict[str, object]:
    from sync.contacts import pull_connection

    outcome = pull_connection(connection_id)
    return {"status": outcome.status, "records_in": outcome.records_in}


@app.task(name=REPORTS_DUE_TASK)
def reports_due() -> list[str]:
    from sync import clock
    from sync.reports.schedule import run_due

    connection_ids = run_due(clock.now())
    if connection_ids:
        log.info("scheduled reports written for %d connection(s)", len(connection_ids))
        enqueue_connections(connection_ids)
    return connection_ids
# ------------------------------------------------------------------ privacy retention


@app.task(name=RETENTION_TASK)
def privacy_retention() -> dict[str, object]:
    from sync.privacy.retention import run_all

    outcomes = run_all()
    return {o.tenant_id: {"counts": o.counts, "error": o.error} for o in outcomes}
