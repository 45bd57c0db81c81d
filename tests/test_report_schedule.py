"""Scheduled reports: due periods in the tenant's zone, written once per period and
recipient (however often the beat runs, a worker restart included), delivered by
email through the SMTP sandbox with the HTML page, its SVG charts and its PDF,
read back with pypdf: the tenant's figures and the period are in it."""

from __future__ import annotations

import base64
import io
import logging
import sys
from datetime import UTC, date, datetime, timedelta

import pypdf
import pytest
from conftest import FIXTURES
from sqlalchemy import select

from mappings.config import load_tenant_config
from mappings.errors import ConfigError
from sandbox.testing import smtp_sandbox, smtp_server  # noqa: F401
from sync.calls import CallEventIn, record_events
from sync.delivery import process_connection
from sync.reports.schedule import due_periods, pdf_filename, run_due
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


# (call id, offered at Paris wall clock, seconds to answer or None: abandoned after 30 s)
CALLS = [
    ("oct-05", (2026, 10, 5, 10, 0), 4),  # October, before the week
    ("w-1", (2026, 10, 26, 9, 0), 10),
    ("w-2", (2026, 10, 27, 14, 0), 20),
    ("w-3", (2026, 10, 29, 23, 59), None),
    ("w-4", (2026, 11, 1, 8, 30), 6),  # Sunday: the week's, not October's
]
# Hand-computed: the week of 26/10 has w-1..w-4 (3 of 4 answered, mean 12 s), October
# has oct-05 and w-1..w-3 (3 of 4 answered, mean 34/3 s).
WEEK = {"offered": 4, "rate": "75.0 %", "mean": "12.0 s"}
MONTH = {"offered": 4, "rate": "75.0 %", "mean": "11.3 s"}


def record_calls(tenant_id: str = "acme") -> None:
    events = []
    for call_id, wall, answer in CALLS:
        offered = paris(*wall)
        events.append(CallEventIn(call_id=call_id, event="offered", at=offered))
        if answer is None:
            events.append(CallEventIn(call_id=call_id, event="abandoned",
                                      at=offered + timedelta(seconds=30)))
        else:
            answered = offered + timedelta(seconds=answer)
            events += [CallEventIn(call_id=call_id, event="answered", at=answered),
                       CallEventIn(call_id=call_id, event="ended",
                                   at=answered + timedelta(seconds=60))]
    with session_scope() as session:
        record_events(session, tenant_id, events)


def use_sandbox(monkeypatch, smtp) -> dict[str, str]:
    """Relais's own email sender pointed at the SMTP sandbox (the SMS one unused)."""
    from channels_helpers import sender_env

    values = sender_env(smtp, type("G", (), {
        "url": "http://127.0.0.1:9", "api_token": "t",
        "config": type("C", (), {"service_plan_id": "p"})()})())
    values["RELAIS_TENANT_ACME_HOOK_URL"] = "http://127.0.0.1:9/hook"
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    return values


def pdf_of(mail) -> tuple[str, str]:
    """``(file name, text)`` of the mail's one PDF attachment, read with pypdf."""
    attachments = [p for p in mail.message.iter_attachments()
                   if p.get_content_type() == "application/pdf"]
    assert len(attachments) == 1, [p.get_content_type() for p in mail.message.iter_parts()]
    data = attachments[0].get_content()
    assert data.startswith(b"%PDF-")
    reader = pypdf.PdfReader(io.BytesIO(data))
    return attachments[0].get_filename(), "\n".join(p.extract_text() for p in reader.pages)


def test_a_report_lands_once_per_period_and_recipient(env, monkeypatch, smtp_sandbox,  # noqa: F811
                                                      hub_clock):
    use_sandbox(monkeypatch, smtp_sandbox)
    with session_scope() as session:
        apply_config(session, (FIXTURES / "acme.yaml").read_text() + REPORTS, "acme.yaml",
                     actor="test")
    record_calls()
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
        written = {r.idempotency_key: r.params["notice"]["attachments"][0]["data_base64"]
                   for r in rows}
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
        assert mail.message.get_content_type() == "multipart/mixed"
        assert mail.part("html").count("<svg") == 4
        weekly = "semaine" in mail.message["Subject"]
        figures = WEEK if weekly else MONTH
        assert f"Appels présentés : {figures['offered']}" in mail.part("plain")
        name, text = pdf_of(mail)
        assert name == ("rapport-acme-semaine-2026-10-26.pdf" if weekly
                        else "rapport-acme-mois-2026-10.pdf")
        assert str(mail.message["Subject"]) in text  # the tenant and the period
        # the period's first and last days in the tenant's zone (October holds the DST end)
        stated = ("du 26/10/2026 au 01/11/2026" if weekly else "du 01/10/2026 au 31/10/2026")
        assert f"Période : {stated} (jours de Europe/Paris)" in text.replace("\n", " ")
        assert f"Période : {stated}" in mail.part("html")
        assert f"Appels présentés {figures['offered']}" in text
        assert f"Taux de décroché {figures['rate']}" in text
        assert f"Temps moyen de réponse {figures['mean']}" in text
        for chart in ("Appels par jour", "Taux de décroché par jour", "Temps moyen de réponse "
                      "par jour", "Appels par heure"):
            assert chart in text  # the four charts' titles, drawn in the PDF
        # the bytes sent are the ones written with the delivery (a retry sends them again)
        key = mail.message_id.strip("<>").split("@")[0]
        sent = next(p for p in mail.message.iter_attachments()).get_content()
        assert base64.b64decode(written[key]) == sent
    week = [m for m in mails if "semaine" in m.message["Subject"]]
    assert pdf_of(week[0])[1] != pdf_of([m for m in mails if m not in week][0])[1]


def test_two_runs_at_once_write_each_report_once_with_the_same_pdf(env, monkeypatch,  # noqa: F811
                                                                  smtp_sandbox, hub_clock):
    """Two beats prepare the same reports side by side (read-only: rendering holds no
    write lock); the second to write finds the keys taken and writes nothing."""
    from sync.reports.schedule import prepare_due_reports, write_due_reports
    from sync.tenants import get_tenant, parsed_config

    use_sandbox(monkeypatch, smtp_sandbox)
    with session_scope() as session:
        apply_config(session, (FIXTURES / "acme.yaml").read_text() + REPORTS, "acme.yaml",
                     actor="test")
    record_calls()
    now = paris(2026, 11, 2, 8, 5).astimezone(UTC)
    hub_clock(now)
    prepared = []
    for _ in range(2):
        with session_scope(readonly=True) as session:
            config = parsed_config(get_tenant(session, "acme"))
            prepared.append(prepare_due_reports(session, "acme", config, now))
    first, second = prepared
    assert [(r.kind, r.first) for r in first] == [("weekly", date(2026, 10, 26)),
                                                 ("monthly", date(2026, 10, 1))]
    assert [r.notice for r in first] == [r.notice for r in second]  # same page, same bytes
    with session_scope() as session:
        assert len(write_due_reports(session, "acme", first, now)) == 4
    with session_scope() as session:
        assert write_due_reports(session, "acme", second, now) == []
    with session_scope(readonly=True) as session:
        config = parsed_config(get_tenant(session, "acme"))
        assert prepare_due_reports(session, "acme", config, now) == []


def test_without_weasyprint_the_report_goes_without_its_pdf(env, monkeypatch, smtp_sandbox,  # noqa: F811
                                                            hub_clock, caplog):
    use_sandbox(monkeypatch, smtp_sandbox)
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # what a missing package does
    with session_scope() as session:
        apply_config(session, (FIXTURES / "acme.yaml").read_text()
                     + 'reports: {weekly: "mon 08:00", to: [direction@acme.example]}\n',
                     "acme.yaml", actor="test")
    record_calls()
    now = paris(2026, 11, 2, 8, 5).astimezone(UTC)
    hub_clock(now)
    with caplog.at_level(logging.INFO):
        woken = run_due(now)
        while process_connection(woken[0]).claimed:
            pass
    [mail] = smtp_sandbox.messages
    assert mail.message.get_content_type() == "multipart/alternative"
    assert "Appels présentés : 4" in mail.part("plain")
    assert "sent without its PDF" in caplog.text
    assert "Appels" not in caplog.text and "Dépannage" not in caplog.text


def test_pdf_file_names():
    assert pdf_filename("acme", "weekly", date(2026, 12, 28)) == \
        "rapport-acme-semaine-2026-12-28.pdf"
    assert pdf_filename("acme", "monthly", date(2026, 12, 1)) == "rapport-acme-mois-2026-12.pdf"
    assert pdf_filename("a/b c", "monthly", date(2026, 1, 1)) == "rapport-a-b-c-mois-2026-01.pdf"


def test_the_pdf_fetches_nothing_and_logs_nothing_of_the_page(caplog, tmp_path):
    """A page naming outside resources renders without them (no file read, no network),
    and WeasyPrint's complaint about them reaches the log without the page's text."""
    from sync.reports.pdf import report_pdf

    secret = tmp_path / "secret-7731.png"
    secret.write_bytes(b"not an image")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'/>"
            "<link rel='stylesheet' href='http://127.0.0.1:9/x.css'/></head><body>"
            f"<h1>Confidentiel-9924</h1><img src='file://{secret}'/>"
            "<img src='http://127.0.0.1:9/y.png'/></body></html>")
    with caplog.at_level(logging.DEBUG):
        pdf = report_pdf(page)
    text = pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert "Confidentiel-9924" in text
    said = [r for r in caplog.records if r.name.startswith("weasyprint")]
    assert said, "WeasyPrint says what it could not load"
    assert {r.getMessage() for r in said} == {"PDF rendering problem (details withheld)"}
    assert "7731" not in caplog.text and "127.0.0.1" not in caplog.text
    assert "Confidentiel" not in caplog.text
