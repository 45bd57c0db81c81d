"""The Celery application and how the shell enqueues work.

Tasks are sent by name so the API never imports the worker module. A failure
to enqueue does not fail the request: the rows are already committed, and the
beat sweep re-enqueues what waits too long (transactional outbox). It is not
silent either: it is logged and marks the broker down in ``/healthz`` and
``/metrics`` until an enqueue succeeds again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from celery import Celery
from prometheus_client import Counter, Gauge

from sync import broker_fs
from sync.settings import Settings, get_settings

log = logging.getLogger(__name__)

DELIVER_TASK = "relais.deliver_connection"
SWEEP_TASK = "relais.sweep"
CONTACTS_DUE_TASK = "relais.contacts_sync_due"
CONTACTS_PULL_TASK = "relais.contacts_pull"
CONTACTS_BEAT_SECONDS = 60.0  # how often the beat looks for CRM directories due a pull
ESCALATION_TASK = "relais.escalation_step"
ESCALATION_SWEEP_TASK = "relais.escalation_sweep"
REPORTS_DUE_TASK = "relais.reports_due"

_app: Celery | None = None

ENQUEUE_FAILURES = Counter("relais_enqueue_failures_total",
                           "Tasks the API or beat could not hand to the broker.")
BROKER_UP = Gauge("relais_broker_up",
                  "1 when the last enqueue or health check reached the broker, else 0.")


@dataclass
class BrokerState:
    """The outcome of this process's last enqueue or broker check (for metrics)."""

    up: bool = True
    error: str = ""
    since: float = field(default_factory=time.time)

    def record(self, ok: bool, error: str = "") -> None:
        if ok != self.up:
            self.since = time.time()
        self.up, self.error = ok, error
        BROKER_UP.set(1 if ok else 0)


BROKER = BrokerState()
BROKER_UP.set(1)


def send(task: str, args: list[object], what: str, countdown: float = 0.0) -> bool:
    """Hand ``task`` to the broker; on failure log (no content, ids only), record the
    broker down, and return False: the rows are committed and the sweep recovers."""
    try:
        celery_app().send_task(
            task, args=args, countdown=countdown or None, retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.5},
        )
    except Exception as exc:  # noqa: BLE001 - see module doc
        ENQUEUE_FAILURES.inc()
        BROKER.record(False, type(exc).__name__)
        log.warning("could not enqueue %s: %s", what, exc)
        return False
    BROKER.record(True)
    return True


def check_broker(timeout: float = 2.0) -> str | None:
    """None when the broker accepts a connection now, else the reason (health checks)."""
    try:
        with celery_app().connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return type(exc).__name__
    return None


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
    # Scheduled reports (sync.reports.schedule): written once per period, then delivered.
    app.conf.beat_schedule["reports"] = {
        "task": REPORTS_DUE_TASK,
        "schedule": settings.reports_beat_seconds,
    }
    # Calendars: due pulls, and notification channels renewed before they expire.
    app.conf.beat_schedule["calendar-sync"] = {
        "task": CALENDAR_DUE_TASK,
        "schedule": CALENDAR_BEAT_SECONDS,
    }
    # Retention (sync.privacy.retention): expired data purged or redacted, hourly.
    app.conf.beat_schedule["privacy-retention"] = {
        "task": RETENTION_TASK,
        "schedule": RETENTION_BEAT_SECONDS,
    }
    return app


RETENTION_TASK = "relais.privacy_retention"
RETENTION_BEAT_SECONDS = 3600.0


def celery_app() -> Celery:
    global _app
    if _app is None:
        _app = make_celery()
    return _app


def reset_celery() -> None:
    global _app
    _app = None


def enqueue_connections(connection_ids: Iterable[str], countdown: float = 0.0) -> None:
    for connection_id in sorted(set(connection_ids)):
        send(DELIVER_TASK, [connection_id], f"delivery of {connection_id}", countdown)


def enqueue_escalation(escalation_id: str, countdown: float = 0.0) -> None:
    """Schedule the next check of an escalation (the beat sweep covers a lost message)."""
    send(ESCALATION_TASK, [escalation_id], f"escalation {escalation_id}", countdown)


def enqueue_contact_pulls(connection_ids: Iterable[str]) -> None:
    """One directory pull per connection (the pull lock refuses a second one)."""
    for connection_id in sorted(set(connection_ids)):
        send(CONTACTS_PULL_TASK, [connection_id], f"the contacts pull of {connection_id}")


# ------------------------------------------------------------------ calendar two-way sync

CALENDAR_DUE_TASK = "relais.calendar_sync_due"
CALENDAR_PULL_TASK = "relais.calendar_pull"
CONTACTS_PULL_NOW_TASK = "relais.contacts_pull_now"
CALENDAR_BEAT_SECONDS = 60.0  # due calendar pulls + channel renewals


def enqueue_calendar_pull(
    connection_id: str, calendar_ids: list[str] | None = None, countdown: float = 0.0
) -> None:
    """Pull a calendar connection now (all its calendars, or ``calendar_ids``)."""
    send(CALENDAR_PULL_TASK, [connection_id, calendar_ids],
         f"the calendar pull of {connection_id}", countdown)


def enqueue_contact_pull_now(connection_id: str) -> None:
    """A CRM webhook said contacts changed: pull that directory now (not only if due)."""
    send(CONTACTS_PULL_NOW_TASK, [connection_id], f"the contacts pull of {connection_id}")
