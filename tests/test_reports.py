"""Indicators against answers computed by hand: calls across midnight and across the
end of summer time (Europe/Paris, 2026-10-25: 02:00-03:00 happens twice), duplicate
and out-of-order events; the report route and the operator-wide view."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from test_calls import acme_yaml, apply

from relais.api import create_app
from relais.auth import create_key
from sync.reports.indicators import (
    DeliveryFacts,
    EscalationFacts,
    delivery_indicators,
    escalation_indicators,
    percentile,
)
from sync.reports.load import operator_report, tenant_report
from sync.reports.periods import local_range, parse_month, period
from sync.store.db import session_scope

PARIS = ZoneInfo("Europe/Paris")
Z = UTC


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=Z)


# (call id, [(event, UTC instant)]): the hand-computed answers below follow from these.
CALLS = {
    # 2026-10-24 23:59:50 CEST, answered after midnight (20 s), ended 300 s later
    "A": [("offered", utc(2026, 10, 24, 21, 59, 50)), ("answered", utc(2026, 10, 24, 22, 0, 10)),
          ("ended", utc(2026, 10, 24, 22, 5, 10))],
    # 10:00 CEST: 10 s to answer, 120 s
    "B": [("offered", utc(2026, 10, 24, 8, 0, 0)), ("answered", utc(2026, 10, 24, 8, 0, 10)),
          ("ended", utc(2026, 10, 24, 8, 2, 10))],
    # 02:30 CEST (first pass of 02:xx on the 25th): abandoned after 45 s
    "C": [("offered", utc(2026, 10, 25, 0, 30, 0)), ("abandoned", utc(2026, 10, 25, 0, 30, 45))],
    # 02:30 CET (second pass): 30 s to answer, transferred, ended 170 s after the answer
    "D": [("offered", utc(2026, 10, 25, 1, 30, 0)), ("answered", utc(2026, 10, 25, 1, 30, 30)),
          ("transferred", utc(2026, 10, 25, 1, 31, 30)), ("ended", utc(2026, 10, 25, 1, 33, 20))],
    # 23:30 CET on the 25th: still ringing
    "E": [("offered", utc(2026, 10, 25, 22, 30, 0))],
    # 2026-10-26 09:00 CET: 5 s, 60 s
    "F": [("offered", utc(2026, 10, 26, 8, 0, 0)), ("answered", utc(2026, 10, 26, 8, 0, 5)),
          ("ended", utc(2026, 10, 26, 8, 1, 5))],
    # 2026-10-27 00:00:00 CET exactly: the next period's
    "G": [("offered", utc(2026, 10, 26, 23, 0, 0))],
}


def post_acme_data(client, headers: dict[str, str]) -> None:
    """The data set above through the API: CALLS' events out of order, six sent twice,
    in posts of four; six messages, of which two qualify calls A and D."""
    events = [{"call_id": c, "event": k, "at": at.astimezone(PARIS).isoformat()}
              for c, evs in CALLS.items() for k, at in evs]
    rng = random.Random(14)
    shuffled = events + rng.sample(events, 6)  # out of order, six sent twice
    rng.shuffle(shuffled)
    for start in range(0, len(shuffled), 4):
        answer = client.post("/v1/tenants/acme/calls", json={"events": shuffled[start:start + 4]},
                             headers=headers)
        assert answer.status_code == 200, answer.text
    message = {"caller": {"name": "Jeanne", "phone": "0612345678"}, "subject": "Rappel",
               "taken_by": "Sophie", "taken_at": "2026-10-25T09:00:00+01:00"}
    for call_type, call_id in (("message", "A"), ("message", "D"), ("message", "D"),
                               ("demarchage", "F"), ("message", "nope"), ("message", None)):
        body = {**message, "call_type": call_type, **({"call_id": call_id} if call_id else {})}
        answer = client.post("/v1/tenants/acme/messages", json=body, headers=headers)
        assert answer.status_code == 202, answer.text


@pytest.fixture(params=["sqlite", "postgres"])
def reporting(request, monkeypatch, tmp_path, hub_clock):
    """The data set above through the API, on SQLite (calls grouped in Python) and on
    PostgreSQL (grouped in SQL, AT TIME ZONE the tenant's)."""
    from conftest import make_env
    from fastapi.testclient import TestClient

    from sync.store.db import dispose_engines

    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    make_env(monkeypatch, tmp_path, url, None)
    request.addfinalizer(dispose_engines)

    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", "http://127.0.0.1:9/hook")
    hub_clock(utc(2026, 10, 26, 12, 0, 0))
    apply(acme_yaml())
    with session_scope() as session:
        keys = {"secretary": create_key(session, "secretary", "acme", "t"),
                "admin": create_key(session, "admin", "acme", "t")}
    client = TestClient(create_app(), raise_server_exceptions=True)
    headers = {"Authorization": f"Bearer {keys['secretary']}"}
    post_acme_data(client, headers)
    client.headers.update({"Authorization": f"Bearer {keys['admin']}"})
    return client


def test_three_days_across_midnight_and_the_dst_change(reporting):
    answer = reporting.get("/v1/tenants/acme/report?from=2026-10-24&to=2026-10-27")
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["from"], report["to"]) == ("2026-10-23T22:00:00Z", "2026-10-26T23:00:00Z")
    assert report["complete"] is False  # the hub's clock stands on 2026-10-26 12:00 UTC
    calls = report["calls"]
    assert (calls["offered"], calls["answered"], calls["abandoned"], calls["ringing"]) == (
        6, 4, 1, 1)
    assert calls["answer_rate"] == 4 / 6
    assert calls["abandon_rate"] == 1 / 6
    assert calls["time_to_answer_seconds"] == {"mean": (20 + 10 + 30 + 5) / 4, "p90": 30.0}
    assert calls["time_to_abandon_seconds"] == {"mean": 45.0}
    assert calls["duration_seconds"] == {"mean": (300 + 120 + 170 + 60) / 4}
    # A and D named by accepted messages; F only by a dropped one; "nope" is no call.
    assert (calls["qualified"], calls["qualification_rate"]) == (2, 0.5)
    hours = {h: n for h, n in enumerate(calls["by_hour"]) if n}
    assert hours == {2: 2, 9: 1, 10: 1, 23: 2}  # both 02:30s, A and E at 23:xx
    assert calls["abandoned_by_hour"][2] == 1
    assert calls["by_day"] == [
        {"day": "2026-10-24", "offered": 2, "answered": 2, "abandoned": 0, "answer_rate": 1.0,
         "mean_time_to_answer_seconds": 15.0},
        {"day": "2026-10-25", "offered": 3, "answered": 1, "abandoned": 1,
         "answer_rate": 1 / 3, "mean_time_to_answer_seconds": 30.0},
        {"day": "2026-10-26", "offered": 1, "answered": 1, "abandoned": 0, "answer_rate": 1.0,
         "mean_time_to_answer_seconds": 5.0},
    ]
    # Six messages accepted on 2026-10-26 (the hub's day), by call type.
    assert report["messages"] == {"total": 6, "by_call_type": {"demarchage": 1, "message": 5}}
    assert report["appointments"] == {"booked": 0, "moved": 0, "cancelled": 0}


def test_the_25_hour_day_holds_both_half_past_twos_and_not_the_call_before_midnight(reporting):
    day = reporting.get("/v1/tenants/acme/report?from=2026-10-25&to=2026-10-26").json()
    assert (day["from"], day["to"]) == ("2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z")
    assert day["calls"]["offered"] == 3  # C, D, E; not A (offered 23:59:50 the day before)
    before = reporting.get("/v1/tenants/acme/report?from=2026-10-24&to=2026-10-25").json()
    assert before["calls"]["offered"] == 2
    assert before["calls"]["duration_seconds"]["mean"] == (300 + 120) / 2


def test_aggregates_and_raw_events_give_the_same_report(reporting):
    start, end = local_range(date(2026, 10, 1), date(2026, 11, 1), PARIS)
    now = utc(2026, 12, 1)
    with session_scope(readonly=True) as session:
        fast = tenant_report(session, "acme", PARIS, start, end, now=now)
        slow = tenant_report(session, "acme", PARIS, start, end, now=now, from_raw=True)
    assert fast == slow
    assert fast["calls"]["offered"] == 7 and fast["complete"] is True


def test_operator_wide(reporting):
    with session_scope(readonly=True) as session:
        both = operator_report(session, date(2026, 10, 24), date(2026, 10, 27),
                               now=utc(2026, 10, 26, 12))
    assert both["calls"]["offered"] == 6
    assert [t["tenant"] for t in both["tenants"]] == ["acme"]
    assert both["tenants"][0]["calls"] == both["calls"]


def test_report_query_refusals(reporting):
    bad = reporting.get("/v1/tenants/acme/report?from=2026-10-24&to=2026-10-24")
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "to"
    bad = reporting.get("/v1/tenants/acme/report?from=24/10/2026&to=2026-10-25")
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "from"


def test_percentiles_are_nearest_rank():
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.9) == 7.0
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert percentile(values, 0.5) == 10.0
    assert percentile(values, 0.9) == 18.0
    assert percentile(values, 0.95) == 19.0
    assert percentile(list(reversed(values)), 0.95) == 19.0


def test_delivery_and_escalation_indicators():
    deliveries = [DeliveryFacts("crm", "delivered", s) for s in (1.0, 2.0, 3.0, 10.0)]
    deliveries += [DeliveryFacts("sms", "delivered", 4.0), DeliveryFacts("sms", "dead", None)]
    assert delivery_indicators(deliveries) == {"dead": 1, "by_destination": {
        "crm": {"delivered": 4, "dead": 0, "latency_seconds": {"p50": 2.0, "p95": 10.0}},
        "sms": {"delivered": 1, "dead": 1, "latency_seconds": {"p50": 4.0, "p95": 4.0}}}}
    escalations = [EscalationFacts("acknowledged", 120.0), EscalationFacts("acknowledged", 60.0),
                   EscalationFacts("acknowledged", 600.0), EscalationFacts("dead_end", None),
                   EscalationFacts("running", None)]
    assert escalation_indicators(escalations) == {
        "opened": 5, "acknowledged": 3, "dead_end": 1, "open": 1,
        "time_to_ack_seconds": {"mean": 260.0, "p50": 120.0}}


def test_periods_in_the_zone():
    assert period("week", date(2026, 10, 28)) == (date(2026, 10, 26), date(2026, 11, 2))
    assert period("month", date(2026, 12, 9)) == (date(2026, 12, 1), date(2027, 1, 1))
    assert parse_month("2026-11") == (date(2026, 11, 1), date(2026, 12, 1))
    with pytest.raises(ValueError, match="YYYY-MM"):
        parse_month("11/2026")
    start, end = local_range(*period("day", date(2026, 10, 25)), PARIS)
    assert end - start == timedelta(hours=25)
    start, end = local_range(*period("day", date(2026, 3, 29)), PARIS)
    assert end - start == timedelta(hours=23)


def test_delivery_latency_and_dead_letters_from_the_store(env, receiver, monkeypatch, hub_clock):
    """Accepted at T, delivered at T+93 s and T+7 s; one refused (400): dead."""
    from conftest import apply_acme
    from test_delivery import accept

    from sync.delivery import process_connection

    t0 = utc(2026, 11, 10, 9, 0, 0)
    hub_clock(t0)
    apply_acme(receiver, monkeypatch)
    _, _, conn = accept()
    hub_clock(t0 + timedelta(seconds=93))
    assert process_connection(conn).delivered == 1
    accept()
    hub_clock(t0 + timedelta(seconds=100))
    assert process_connection(conn).delivered == 1
    accept()
    receiver.status_override = 400
    assert process_connection(conn).dead == 1
    start, end = local_range(date(2026, 11, 1), date(2026, 12, 1), PARIS)
    with session_scope(readonly=True) as session:
        report = tenant_report(session, "acme", PARIS, start, end, now=t0)
    assert report["deliveries"] == {"dead": 1, "by_destination": {"hook": {
        "delivered": 2, "dead": 1, "latency_seconds": {"p50": 7.0, "p95": 93.0}}}}
    assert report["messages"]["total"] == 3


def test_the_html_report_draws_the_figures(reporting):
    import xml.etree.ElementTree as ET

    from sync.reports.render import html_report

    body = reporting.get("/v1/tenants/acme/report?from=2026-10-24&to=2026-10-27").json()
    page = html_report(body, "ACME <octobre>")
    assert "<octobre>" not in page and "ACME &lt;octobre&gt;" in page
    root = ET.fromstring(page.split("\n", 1)[1])
    svg = "{http://www.w3.org/2000/svg}"
    charts = root.findall(f".//{svg}svg")
    assert len(charts) == 4
    hours = {r.find(f"{svg}title").text: float(r.get("height"))
             for r in charts[3].findall(f"{svg}rect") if r.get("class") == "calls"}
    assert len(hours) == 24
    assert hours["02 calls: 2"] == hours["23 calls: 2"] == 2 * hours["09 calls: 1"] > 0
    assert hours["00 calls: 0"] == 0
    rates = [r.find(f"{svg}title").text for r in charts[1].findall(f"{svg}rect")]
    assert rates == ["10-24 answer_rate: 100 %", "10-25 answer_rate: 33.3 %",
                     "10-26 answer_rate: 100 %"]
    waits = [r.find(f"{svg}title").text for r in charts[2].findall(f"{svg}rect")]
    assert waits == ["10-24 time_to_answer: 15 s", "10-25 time_to_answer: 30 s",
                     "10-26 time_to_answer: 5 s"]
    assert "66.7 %" in page  # the answer rate in the headline table
    # the period in the tenant's days: 24 to 26 October (the 25th is 25 hours long)
    stated = root.find(".//p[@id='period']")
    assert (stated.get("data-from"), stated.get("data-last")) == ("2026-10-24", "2026-10-26")
    assert stated.text.startswith("Période : du 24/10/2026 au 26/10/2026 (jours de Europe/Paris)")
    one_day = reporting.get("/v1/tenants/acme/report?from=2026-10-25&to=2026-10-26").json()
    assert "Période : le 25/10/2026 (" in html_report(one_day, "ACME")


def test_period_days_and_titles():
    from sync.reports.render import period_days, period_text, report_title

    # Auckland's midnight is the previous day in UTC: the days are the zone's
    body = {"zone": "Pacific/Auckland", "from": "2026-10-31T11:00:00Z",
            "to": "2026-11-30T11:00:00Z"}
    assert period_days(body) == (date(2026, 11, 1), date(2026, 11, 30))
    assert period_days({"from": "2026-11-01", "to": "2026-12-01"}) == (
        date(2026, 11, 1), date(2026, 11, 30))
    assert period_text(date(2026, 12, 28), date(2027, 1, 3)) == "du 28/12/2026 au 03/01/2027"
    first, last = date(2026, 10, 26), date(2026, 11, 1)
    assert report_title("ACME", "weekly", first, last) == "ACME : semaine du 26/10/2026"
    assert report_title("ACME", "monthly", date(2026, 10, 1), date(2026, 10, 31)) == \
        "ACME : mois du 01/10/2026"
    assert report_title("ACME", "days", first, last) == "ACME : du 26/10/2026 au 01/11/2026"


def test_aggregates_and_raw_events_agree_on_postgres(pg_url, monkeypatch, tmp_path):
    """The raw path's PostgreSQL query (one array parameter) finds the same qualified calls."""
    from conftest import make_env
    from test_calls import CALL

    from sync.calls import CallEventIn, record_events
    from sync.domain import CallMessage
    from sync.outbox import accept_message
    from sync.store.db import dispose_engines
    from sync.tenants import get_tenant, parsed_config

    make_env(monkeypatch, tmp_path, pg_url, None)
    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", "http://127.0.0.1:9/hook")
    apply(acme_yaml())
    t0 = utc(2026, 11, 3, 9)
    with session_scope() as session:
        for n in range(30):
            record_events(session, "acme", [
                CallEventIn(call_id=f"c{n}", event=kind, at=t0 + timedelta(hours=n, seconds=s))
                for kind, s in CALL[: 1 + n % 4]])
        config = parsed_config(get_tenant(session, "acme"))
        for n in range(0, 30, 3):
            accept_message(session, "acme", config, CallMessage.model_validate(
                {"call_type": "message", "caller": {"name": "J", "phone": "0612345678"},
                 "subject": "s", "taken_by": "S", "taken_at": t0.isoformat(),
                 "call_id": f"c{n}"}, context={"region": "FR"}), None)
    start, end = local_range(date(2026, 11, 1), date(2026, 12, 1), PARIS)
    with session_scope(readonly=True) as session:
        fast = tenant_report(session, "acme", PARIS, start, end, now=t0)
        slow = tenant_report(session, "acme", PARIS, start, end, now=t0, from_raw=True)
    assert fast == slow
    # Answered: n % 4 in (1, 2, 3); qualified among them: n % 3 == 0.
    answered = [n for n in range(30) if n % 4]
    assert fast["calls"]["answered"] == len(answered)
    assert fast["calls"]["qualified"] == len([n for n in answered if n % 3 == 0])
    dispose_engines()
