"""The Celery application and how the shell enqueues work.

Tasks are sent by name so the API never imports the worker module. A failure
to enqueue is logged and ignored on purpose: the rows are already committed,
and the beat sweep re-enqueues what waits too long (transactional outbox).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import Celery

from relais import broker_fs
from relais.settings import Settings, get_settings

log = logging.getLogger(__name__)

DELIVER_TASK = "relais.deliver_connection"
SWEEP_TASK = "relais.sweep"
CONTACTS_DUE_TASK = "relais.contacts_sync_due"
CONTACTS_PULL_TASK = "relais.contacts_pull"
CONTACTS_BEAT_SECONDS = 60.0  # how often the beat looks for CRM directories due a pull
ESCALATION_TASK = "relais.escalation_step"
ESCALATION_SWEEP_TASK = "relais.escalation_sweep"

_app: Celery | None = None


def broker_options(settings: Settings) -> dict[str, object]:
    url = settings.resolved_broker_url
    if url.startswith("filesystem"):
        folder = settings.broker_folder
        return {
            "data_folder_in": str(folder / "in"),
            "data_folder_out": str(folder / "in"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),  # default is ./control in the cwd
            "store_processed": False,
            "polling_interval": settings.broker_polling_interval,
        }
    if url.startswith("redis"):
        # Unacked messages come back after this long if a worker died holding them.
        return {"visibility_timeout": 3600}
    return {}


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    broker_fs.install()
    app = Celery("relais", broker=settings.resolved_broker_url)
    app.conf.update(
        broker_transport_options=broker_options(settings),
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=settings.queue,
        worker_hijack_root_logger=False,
        beat_schedule={
            "sweep": {"task": SWEEP_TASK, "schedule": settings.sweep_interval_seconds},
            "escalations": {
                "task": ESCALATION_SWEEP_TASK,
                "schedule": settings.sweep_interval_seconds,
            },
        },
        beat_schedule_filename=str(settings.resolved_home / "celerybeat-schedule"),
        broker_pool_limit=4,
        # Publishing must not hang an API request when the broker is down.
        broker_connection_timeout=3,
    )
    # The contact directory: each CRM connection is pulled at its own interval.
    app.conf.beat_schedule["contacts-sync"] = {
        "task": CONTACTS_DUE_TASK,
        "schedule": CONTACTS_BEAT_SECONDS,
    }
    # Calendars: due pulls, and notification channels renewed before they expire.
    app.conf.beat_schedule["calendar-sync"] = {
        "task": CALENDAR_DUE_TASK,
        "schedule": CALENDAR_BEAT_SECONDS,
    }
    return app


def celery_app() -> Celery:
    global _app
    if _app is None:
        _app = make_celery()
    return _app


def reset_celery() -> None:
    global _app
    _app = None


def enqueue_connections(connection_ids: Iterable[str], countdown: float = 0.0) -> None:
    app = celery_app()
    for connection_id in sorted(set(connection_ids)):
        try:
            app.send_task(
                DELIVER_TASK,
                args=[connection_id],
                countdown=countdown or None,
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.5},
            )
        except Exception as exc:  # noqa: BLE001 - the sweep recovers; see module doc
            log.warning("could not enqueue delivery of %s: %s", connection_id, exc)


def enqueue_escalation(escalation_id: str, countdown: float = 0.0) -> None:
    """Schedule the next check of an escalation (the beat sweep covers a lost message)."""
    try:
        celery_app().send_task(
            ESCALATION_TASK,
            args=[escalation_id],
            countdown=countdown or None,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.5},
        )
    except Exception as exc:  # noqa: BLE001 - the sweep recovers
        log.warning("could not schedule escalation %s: %s", escalation_id, exc)


def enqueue_contact_pulls(connection_ids: Iterable[str]) -> None:
    """One directory pull per connection (the pull lock refuses a second one)."""
    app = celery_app()
    for connection_id in sorted(set(connection_ids)):
        try:
            app.send_task(CONTACTS_PULL_TASK, args=[connection_id], retry=True,
                          retry_policy={"max_retries": 2, "interval_start": 0.1})
        except Exception as exc:  # noqa: BLE001 - the next beat tick tries again
            log.warning("could not enqueue the contacts pull of %s: %s", connection_id, exc)


# ------------------------------------------------------------------ calendar two-way sync

CALENDAR_DUE_TASK = "relais.calendar_sync_due"
CALENDAR_PULL_TASK = "relais.calendar_pull"
CONTACTS_PULL_NOW_TASK = "relais.contacts_pull_now"
CALENDAR_BEAT_SECONDS = 60.0  # due calendar pulls + channel renewals


def enqueue_calendar_pull(
    connection_id: str, calendar_ids: list[str] | None = None, countdown: float = 0.0
) -> None:
    """Pull a calendar connection now (all its calendars, or ``calendar_ids``)."""
    try:
        celery_app().send_task(CALENDAR_PULL_TASK, args=[connection_id, calendar_ids],
                               countdown=countdown or None, retry=True,
                               retry_policy={"max_retries": 2, "interval_start": 0.1})
    except Exception as exc:  # noqa: BLE001 - the beat's interval pull catches up
        log.warning("could not enqueue the calendar pull of %s: %s", connection_id, exc)


def enqueue_contact_pull_now(connection_id: str) -> None:
    """A CRM webhook said contacts changed: pull that directory now (not only if due)."""
    try:
        celery_app().send_task(CONTACTS_PULL_NOW_TASK, args=[connection_id], retry=True,
                               retry_policy={"max_retries": 2, "interval_start": 0.1})
    except Exception as exc:  # noqa: BLE001 - the beat's interval pull catches up
        log.warning("could not enqueue the contacts pull of %s: %s", connection_id, exc)
