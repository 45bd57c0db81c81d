"""Acceptance of issue 14: a scheduled report lands once at the SMTP sandbox per period,
with its charts and its PDF, after a worker restart in between — with real
``relais worker`` and ``relais beat`` processes on the hub's injected clock
(``RELAIS_CLOCK_OFFSET``), never the machine's date.

The week before is already written and sent (by this process, on a fixed clock: with
no backfill, the latest due week is the first thing a worker would send). Week 1:
the worker's clock stands 30 s before the weekly send time; the beat's ticks write
nothing until it passes, then the report is written and sent.
The sandbox holds the end of DATA (the whole message is on the wire, nothing is
stored yet) and the worker is SIGKILLed right there; a new worker takes the
delivery back after its lease and sends it: one email. Week 2: a worker restarted
a week later sends the next week's report, once, and never the first one again."""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest
from conftest import AMQP_URL, FIXTURES, make_env, need_service, wait_until
from sqlalchemy import select
from test_report_schedule import WEEK, paris, pdf_of, record_calls, use_sandbox

from sandbox.smtp import SmtpSandbox
from sandbox.testing import smtp_sandbox, smtp_server  # noqa: F401
from sync import clock
from sync.delivery import process_connection
from sync.reports.schedule import run_due
from sync.store.db import dispose_engines, session_scope
from sync.store.models import Delivery
from sync.tenants import apply_config

WORKER_READY = "ready."
WORKER = ["worker", "--concurrency", "1", "--loglevel", "DEBUG"]
WEEKLY = 'reports: {weekly: "mon 08:00", to: [direction@acme.example]}\n'
FAST = {"RELAIS_DELIVERY_LEASE_SECONDS": "4", "RELAIS_DELIVERY_STALE_SECONDS": "2",
        "RELAIS_SWEEP_INTERVAL_SECONDS": "1", "RELAIS_REPORTS_BEAT_SECONDS": "1"}


def reports() -> list[tuple[str, str, int, object]]:
    """``(idempotency key, status, attempts, created_at)`` of every report delivery."""
    with session_scope(readonly=True) as session:
        return [(d.idempotency_key, d.status, d.attempts, d.created_at)
                for d in session.scalars(select(Delivery).order_by(Delivery.idempotency_key))]


def at(env, when) -> float:
    """Put the spawned processes' (and this process's) hub clock at ``when`` now."""
    offset = clock.offset_for(when)
    env.vars["RELAIS_CLOCK_OFFSET"] = f"{offset:.3f}"
    clock.install(clock.OffsetClock(timedelta(seconds=offset)))
    return offset


@pytest.fixture(params=["sqlite", "pg-rabbitmq"])
def backend(request, monkeypatch, tmp_path):
    """The embedded default (SQLite, filesystem broker), and PostgreSQL with RabbitMQ
    (the killed worker's unacknowledged task is still the broker's)."""
    if request.param == "sqlite":
        yield request.getfixturevalue("env")
        return
    need_service("RabbitMQ", 5672)
    yield make_env(monkeypatch, tmp_path, request.getfixturevalue("pg_url"), AMQP_URL)
    dispose_engines()


@pytest.mark.processes
@pytest.mark.services
def test_a_report_lands_once_per_period_across_a_worker_killed_mid_send(  # noqa: F811
        backend, monkeypatch, smtp_sandbox: SmtpSandbox, spawn):
    previous = clock.current()
    try:
        _run(backend, monkeypatch, smtp_sandbox, spawn)
    finally:
        clock.install(previous)
    logs = "".join(p.read_text(errors="replace") for p in backend.home.parent.glob("*.log"))
    assert "reports_due" in logs
    for content in ("<svg", "Appels", "Dépannage", "direction@acme.example", "JVBERi0", "%PDF"):
        assert content not in logs, content  # nothing of the report, nor who gets it


def _run(env, monkeypatch, smtp: SmtpSandbox, spawn) -> None:
    env.vars.update(use_sandbox(monkeypatch, smtp))
    env.vars.update(FAST)
    with session_scope() as session:
        apply_config(session, (FIXTURES / "acme.yaml").read_text() + WEEKLY, "acme.yaml",
                     actor="test")
    record_calls()
    due = paris(2026, 11, 2, 8, 0)
    with clock.using(clock.FixedClock(due - timedelta(days=1))):
        [sender] = run_due(clock.now())
        while process_connection(sender).claimed:
            pass
    assert [str(m.message["Subject"]) for m in smtp.wait_for(1)] == [
        "ACME Dépannage : semaine du 19/10/2026"]
    before = reports()

    # Week of 26/10, due Monday 2 November 08:00 in Paris: the clock starts 30 s before.
    at(env, due - timedelta(seconds=30))
    smtp.knobs.hang(seconds=120, method="DATA")  # hold the end of DATA, store nothing
    first = spawn(WORKER, env, ready=WORKER_READY)
    spawn(["beat"], env)
    wait_until(lambda: smtp.knobs.counters().get("DATA", 0) >= 2, 90,
               "the worker sending the report")
    first.kill(signal.SIGKILL)
    log = first.log.read_text()
    assert ran(log[:log.index("scheduled reports written")]) >= 1  # ticks before it was due
    [(key, status, attempts, created)] = [r for r in reports() if r not in before]
    assert key == "relais-report-acme-weekly-2026-10-26-0"
    assert status == "in_flight" and attempts == 1  # killed mid-send: not recorded
    assert created >= due  # written once the period fell due, not before
    assert len(smtp.messages) == 1  # the week before only

    second = spawn(WORKER, env, ready=WORKER_READY)
    wait_until(lambda: row(key)[1] == "delivered", 90, "the report delivered after restart")
    assert row(key)[2] == 2  # the same delivery, taken back after its lease
    [mail] = smtp.wait_for(2)[1:]
    assert mail.message["Subject"] == "ACME Dépannage : semaine du 26/10/2026"
    assert mail.message_id == f"<{key}@relais>"
    assert mail.part("html").count("<svg") == 4
    name, text = pdf_of(mail)
    assert name == "rapport-acme-semaine-2026-10-26.pdf"
    assert f"Appels présentés {WEEK['offered']}" in text
    assert f"Taux de décroché {WEEK['rate']}" in text

    # Week of 02/11: the worker restarted a week later (the beat keeps running).
    second.stop()
    at(env, due + timedelta(days=7, seconds=1))
    third = spawn(WORKER, env, ready=WORKER_READY)
    later_key = "relais-report-acme-weekly-2026-11-02-0"
    wait_until(lambda: row(later_key) and row(later_key)[1] == "delivered", 90,
               "the second week's report")
    # Three more beats: nothing else is written nor sent.
    ran_then = ran(third.log.read_text())
    wait_until(lambda: ran(third.log.read_text()) >= ran_then + 3, 60, "three more beats")
    assert [k for k, *_ in reports()] == [
        "relais-report-acme-weekly-2026-10-19-0", key, later_key]
    assert sorted(str(m.message["Subject"]) for m in smtp.messages) == [  # once a period
        "ACME Dépannage : semaine du 02/11/2026", "ACME Dépannage : semaine du 19/10/2026",
        "ACME Dépannage : semaine du 26/10/2026"]
    later = next(m for m in smtp.messages if "02/11" in str(m.message["Subject"]))
    name, text = pdf_of(later)
    assert name == "rapport-acme-semaine-2026-11-02.pdf"
    assert "Appels présentés 0" in text and "semaine du 02/11/2026" in text


def row(key: str) -> tuple | None:
    return next((r for r in reports() if r[0] == key), None)


def ran(log: str) -> int:
    """Beat ticks of the reports task a worker has run, from its log."""
    return sum("relais.reports_due[" in line and "succeeded" in line
               for line in log.splitlines())
