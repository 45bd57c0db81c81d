"""Scheduled reports: due periods in the tenant's zone, written once per period and
recipient (however often the beat runs, a worker restart included), delivered by
email through the SMTP sandbox with the HTML page and its SVG charts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from conftest import FIXTURES
from sqlalchemy import select

from mappings.config import load_tenant_config
from mappings.errors import ConfigError
from sandbox.testing import smtp_sandbox, smtp_server  # noqa: F401
from sync.delivery import process_connection
from sync.reports.schedule import due_periods, run_due
from sync.settings import reset_settings
from sync.store.db import session_scope
from sync.store.models import Connection, Delivery
from sync.tenants import apply_config

REPORTS = ('reports: {weekly: "mon 08:00", monthly: true, '
           'to: [direction@acme.example, compta@acme.example]}\n')


def config(extra: str = REPORTS):
    text = (FIXTURES / "acme.yaml").read_text() + extra
    return load_tenant_config(text, "acme.yaml",
                              env={"RELAIS_TENANT_ACME_HOOK_URL": "http://127.0.0.1:9/h"})


def paris(*parts: int) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(*parts, tzinfo=ZoneInfo("Europe/Paris"))


def test_due_periods_in_the_tenant_zone():
    acme = config()
    # Monday 2026-11-02 07:59 Paris: this week's send is ahead, so the last one sent was
    # the week of 2026-10-19; October's went on Sunday 1st at 08:00.
    assert due_periods(acme, paris(2026, 11, 2, 7, 59)) == [
        ("weekly", date(2026, 10, 19), date(2026, 10, 26)),
        ("monthly", date(2026, 10, 1), date(2026, 11, 1))]
    assert due_periods(acme, paris(2026, 11, 2, 8, 0)) == [
        ("weekly", date(2026, 10, 26), date(2026, 11, 2)),
        ("monthly", date(2026, 10, 1), date(2026, 11, 1))]
    assert due_periods(acme, paris(2026, 11, 1, 7, 59))[1] == (
        "monthly", date(2026, 9, 1), date(2026, 10, 1))
    assert due_periods(config(""), paris(2026, 11, 2, 9, 0)) == []
    with pytest.raises(ConfigError, match="weekly"):
        config('reports: {weekly: "lundi 8h", to: [a@b.fr]}\n')
    with pytest.raises(ConfigError, match="to"):
        config("reports: {monthly: true, to: []}\n")


def test_a_report_lands_once_per_period_and_recipient(env, monkeypatch, smtp_sandbox,  # noqa: F811
                                                      hub_clock):
    from channels_helpers import sender_env

    for key, value in sender_env(smtp_sandbox, type("G", (), {
            "url": "http://127.0.0.1:9", "api_token": "t",
            "config": type("C", (), {"service_plan_id": "p"})()})()).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", "http://127.0.0.1:9/hook")
    reset_settings()
    with session_scope() as session:
        apply_config(session, (FIXTURES / "acme.yaml").read_text() + REPORTS, "acme.yaml",
                     actor="test")
    now = paris(2026, 11, 2, 8, 5).astimezone(UTC)
    hub_clock(now)
    woken = run_due(now)
    assert len(woken) == 1 and run_due(now) == []  # the second beat finds them written
    with session_scope(readonly=True) as session:
        rows = list(session.scalars(select(Delivery).order_by(Delivery.idempotency_key)))
        assert [r.idempotency_key for r in rows] == [
            "relais-report-acme-monthly-2026-10-01-0", "relais-report-acme-monthly-2026-10-01-1",
            "relais-report-acme-weekly-2026-10-26-0", "relais-report-acme-weekly-2026-10-26-1"]
        sender = session.get(Connection, woken[0])
        assert sender.name == "relais-email"
    while process_connection(woken[0]).claimed:
        pass
    # A worker restart, a beat a minute later: nothing new is written nor sent.
    hub_clock(now + timedelta(minutes=1))
    assert run_due(now + timedelta(minutes=1)) == []
    assert process_connection(woken[0]).claimed == 0
    mails = smtp_sandbox.messages
    assert sorted((m.rcpt_tos[0], m.message["Subject"]) for m in mails) == [
        ("compta@acme.example", "ACME Dépannage : mois du 01/10/2026"),
        ("compta@acme.example", "ACME Dépannage : semaine du 26/10/2026"),
        ("direction@acme.example", "ACME Dépannage : mois du 01/10/2026"),
        ("direction@acme.example", "ACME Dépannage : semaine du 26/10/2026")]
    for mail in mails:
        assert mail.part("html").count("<svg") == 4
        assert "Appels présentés : 0" in mail.part("plain")
