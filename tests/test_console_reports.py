"""The indicators in the console and the operator-wide report over HTTP.

One data set (tests/test_reports.py's calls across midnight and the end of summer
time, sent shuffled and partly twice, plus two more tenants) is read three ways:
the tenant's console page, the operator's side-by-side page and ``GET /v1/report``.
Each must show the engine's figures exactly (the page's ``data-value``s), some
also checked against answers computed by hand; ``GET /v1/report`` must equal
``relais report --all --json``. Viewers who may not see a tenant get 404.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from test_calls import acme_yaml, apply
from test_console_users import PASSWORD, hook_tenant, signed_in_client
from test_reports import post_acme_data
from typer.testing import CliRunner

from relais.api import create_app
from relais.auth import create_key
from relais.cli import app as cli
from relais.console.users import create_user
from sync.reports.load import operator_report, tenant_report
from sync.reports.periods import local_range
from sync.store.db import session_scope
from sync.tenants import apply_config

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 10, 26, 12, 0, tzinfo=UTC)
USERS = {  # email -> (role, tenant, tenants)
    "admin@acme.test": ("tenant_admin", "acme", None),
    "client@acme.test": ("client", "acme", None),
    "sec@acme.test": ("secretary", None, ["acme"]),
    "ops@relais.test": ("operator", None, None),
    "client@other.test": ("client", "other", None),
    "admin@other.test": ("tenant_admin", "other", None),
    "sec@other.test": ("secretary", None, ["other"]),
}


def seed(monkeypatch) -> dict[str, str]:
    """acme: the calls of tests/test_reports.py and six messages (two qualify A and
    D); other: two calls (one answered after 10 s, one abandoned); quiet: none; the
    console users of ``USERS``. The API keys made, by name."""
    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("RELAIS_TENANT_OTHER_HOOK_URL", "http://127.0.0.1:9/hook")
    apply(acme_yaml())
    apply(acme_yaml('["01 23 45 67 00"]', tenant="other").replace(
        "name: ACME Dépannage", "name: Other Plomberie", 1))
    with session_scope() as session:
        apply_config(session, hook_tenant("quiet", "04 72 00 00 33"), "quiet.yaml", actor="t")
        keys = {"acme": create_key(session, "secretary", "acme", "t"),
                "other": create_key(session, "secretary", "other", "t"),
                "admin": create_key(session, "admin", "acme", "t"),
                "operator": create_key(session, "operator", None, "ops")}
        for email, (role, tenant, tenants) in USERS.items():
            create_user(session, email, email.split("@")[0], role, PASSWORD,
                        tenant_id=tenant, tenants=tenants)
    api = TestClient(create_app(), raise_server_exceptions=True)
    post_acme_data(api, {"Authorization": f"Bearer {keys['acme']}"})
    other = [{"call_id": "o1", "event": "offered", "at": "2026-10-20T10:00:00+02:00"},
             {"call_id": "o1", "event": "answered", "at": "2026-10-20T10:00:10+02:00"},
             {"call_id": "o2", "event": "offered", "at": "2026-10-21T10:00:00+02:00"},
             {"call_id": "o2", "event": "abandoned", "at": "2026-10-21T10:00:30+02:00"}]
    assert api.post("/v1/tenants/other/calls", json={"events": other},
                    headers={"Authorization": f"Bearer {keys['other']}"}).status_code == 200
    return keys


def _api(monkeypatch, hub_clock) -> TestClient:
    hub_clock(NOW)
    keys = seed(monkeypatch)
    api = TestClient(create_app(), raise_server_exceptions=True)
    api.keys = keys
    return api


@pytest.fixture
def seeded(env, monkeypatch, hub_clock):
    """The data set of :func:`seed` on SQLite, the hub's clock on 2026-10-26 12:00 UTC;
    the API."""
    return _api(monkeypatch, hub_clock)


@pytest.fixture(params=["sqlite", "postgres"])
def stored(request, monkeypatch, tmp_path, hub_clock):
    """The same on SQLite (calls grouped in Python) and on PostgreSQL (in SQL)."""
    from conftest import make_env

    from sync.store.db import dispose_engines

    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    make_env(monkeypatch, tmp_path, url, None)
    request.addfinalizer(dispose_engines)
    return _api(monkeypatch, hub_clock)


def cells(page: str, table: str) -> dict[str, str]:
    """``data-key`` -> ``data-value`` of the cells in the table ``id=table``."""
    body = page[page.index(f'id="{table}"'):]
    body = body[:body.index("</table>")]
    return {k: html.unescape(v) for k, v in re.findall(
        r'data-key="([^"]+)" data-value="([^"]*)"', body)}


def shown_raw(value) -> str:
    return "" if value is None else str(value)


def engine(first: date, end: date) -> dict:
    start, stop = local_range(first, end, PARIS)
    with session_scope(readonly=True) as session:
        return tenant_report(session, "acme", PARIS, start, stop, now=NOW)


def at(body: dict, key: str):
    for part in key.split("."):
        body = body[part]
    return body


def test_the_tenant_page_shows_the_engine_figures_with_charts(stored):
    client, _ = signed_in_client("client@acme.test")
    page = client.get("/t/acme/report?period=month&day=2026-10-24")
    assert page.status_code == 200, page.text
    text = page.text
    body = engine(date(2026, 10, 1), date(2026, 11, 1))
    figures = cells(text, "indicators")
    assert len(figures) == 20
    assert figures == {k: shown_raw(at(body, k)) for k in figures}
    # Against hand-computed answers: the seven October calls, four answered (20, 10,
    # 30, 5 s to answer), one abandoned, two still ringing; A and D qualified.
    assert (figures["calls.offered"], figures["calls.answered"], figures["calls.ringing"]) == (
        "7", "4", "2")
    assert float(figures["calls.answer_rate"]) == 4 / 7
    assert float(figures["calls.time_to_answer_seconds.mean"]) == (20 + 10 + 30 + 5) / 4
    assert float(figures["calls.qualification_rate"]) == 0.5
    assert "57,1 %" in text and "16,2 s" in text  # French figures
    assert "Mois du 01/10/2026 au 31/10/2026" in text

    # The charts: four inline SVG pictures, titled and described, then their tables.
    assert text.count('role="img"') == 4 and text.count("<desc id=") == 4
    assert '<title>Appels par jour (présentés, répondus)</title>' in text
    days = re.findall(r'<tr data-day="([^"]+)"><th scope="row">[^<]+</th>'
                      r'<td data-value="(\d+)">', text)
    assert days == [(d["day"], str(d["offered"])) for d in body["calls"]["by_day"]]
    hours = dict(re.findall(r'<tr data-hour="(\d+)"><th scope="row">[^<]+</th>'
                            r'<td data-value="(\d+)">', text))
    assert {int(h): int(n) for h, n in hours.items() if n != "0"} == {
        h: n for h, n in enumerate(body["calls"]["by_hour"]) if n} == {
        0: 1, 2: 2, 9: 1, 10: 1, 23: 2}
    assert 'data-call-type="demarchage"' in text

    # In English: the same figures, English labels and decimal points.
    client.cookies.set("relais_lang", "en")
    english = client.get("/t/acme/report?period=month&day=2026-10-24").text
    assert "57.1 %" in english and "Answer rate" in english
    assert "<title>Calls by day (offered, answered)</title>" in english


def test_the_period_picker_days_weeks_and_neighbours(seeded):
    client, _ = signed_in_client("sec@acme.test")
    week = client.get("/t/acme/report?period=week&day=2026-10-25").text
    assert cells(week, "indicators")["calls.offered"] == "5"  # Mon 19 – Sun 25: A-E
    assert 'data-from="2026-10-19" data-to="2026-10-26"' in week
    assert "period=week&amp;day=2026-10-12" in week and "period=week&amp;day=2026-10-26" in week
    day = client.get("/t/acme/report?period=day&day=2026-10-25").text  # the 25-hour day
    assert cells(day, "indicators") == {
        k: shown_raw(at(engine(date(2026, 10, 25), date(2026, 10, 26)), k))
        for k in cells(day, "indicators")}
    assert cells(day, "indicators")["calls.offered"] == "3"
    today = client.get("/t/acme/report").text  # this month by the hub's clock, not over
    assert 'data-from="2026-10-01" data-to="2026-11-01"' in today
    assert "chiffres provisoires" in today
    assert client.get("/t/acme/report?period=year").status_code == 422
    assert client.get("/t/acme/report?day=25/10/2026").status_code == 422
    for far in ("0001-01-01", "9999-12-31"):  # their neighbours would overflow: refused
        assert client.get(f"/t/acme/report?day={far}").status_code == 422


@pytest.mark.parametrize("email", ["admin@acme.test", "client@acme.test", "sec@acme.test",
                                   "ops@relais.test"])
def test_whoever_may_see_the_tenant_sees_its_report(seeded, email):
    client, _ = signed_in_client(email)
    page = client.get("/t/acme/report")
    assert page.status_code == 200
    admin = USERS[email][0] in ("tenant_admin", "operator")
    assert ('href="/t/acme/report" aria-current="page"' in page.text) is admin  # the tab
    assert client.get("/t/nobody/report").status_code == 404


@pytest.mark.parametrize("email", ["client@other.test", "admin@other.test", "sec@other.test"])
def test_anyone_else_gets_404(seeded, email):
    client, _ = signed_in_client(email)
    assert client.get("/t/acme/report").status_code == 404
    assert client.get("/t/other/report").status_code == 200  # their own
    assert client.get("/reports").status_code == 404  # the operator's only


def test_links_to_the_report(seeded):
    client, _ = signed_in_client("client@acme.test")
    assert 'href="/t/acme/report"' in client.get("/t/acme/inbox").text
    admin, _ = signed_in_client("admin@acme.test")
    assert 'href="/t/acme/report"' in admin.get("/t/acme/connections").text
    ops, _ = signed_in_client("ops@relais.test")
    assert 'href="/reports"' in ops.get("/tenants").text
    # the secretary's desk, beside the tenant's card; a new tab keeps the call's form
    secretary, _ = signed_in_client("sec@acme.test")
    desk = secretary.get("/desk?tenant=acme").text
    assert '<a href="/t/acme/report" target="_blank" rel="noopener">' in desk
    assert "Indicateurs de ce client" in desk
    assert secretary.get("/t/acme/report").status_code == 200
    secretary.cookies.set("relais_lang", "en")
    assert "This client&#39;s indicators (new tab)" in secretary.get("/desk?tenant=acme").text
    assert client.get("/reports").status_code == 404


def run_cli(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_the_operator_route_is_the_cli_report(stored):
    api = stored
    ops = {"Authorization": f"Bearer {api.keys['operator']}"}
    answer = api.get("/v1/report?from=2026-10-01&to=2026-11-01", headers=ops)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    printed = run_cli("report", "--all", "--from", "2026-10-01", "--to", "2026-11-01", "--json")
    assert printed.exit_code == 0, printed.output
    assert body == json.loads(printed.output)
    assert [t["tenant"] for t in body["tenants"]] == ["acme", "other", "quiet"]
    assert (body["calls"]["offered"], body["calls"]["answered"]) == (9, 5)  # 7 + 2, 4 + 1
    with session_scope(readonly=True) as session:
        assert body == json.loads(json.dumps(operator_report(
            session, date(2026, 10, 1), date(2026, 11, 1), now=NOW)))
    for role in ("admin", "acme"):
        refused = api.get("/v1/report?from=2026-10-01&to=2026-11-01",
                          headers={"Authorization": f"Bearer {api.keys[role]}"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert api.get("/v1/report?from=2026-10-01&to=2026-11-01").status_code == 401
    bad = api.get("/v1/report?from=01/10/2026&to=2026-11-01", headers=ops)
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "from"
    bad = api.get("/v1/report?from=2026-10-01&to=2026-10-01", headers=ops)
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "to"
    bad = api.get("/v1/report?from=0001-01-01&to=0001-02-01", headers=ops)
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "from"


def test_the_operator_sees_every_tenant_side_by_side_sorted(seeded):
    api = seeded
    body = api.get("/v1/report?from=2026-10-01&to=2026-11-01",
                   headers={"Authorization": f"Bearer {api.keys['operator']}"}).json()
    client, _ = signed_in_client("ops@relais.test")
    page = client.get("/reports?month=2026-10")
    assert page.status_code == 200, page.text
    text = page.text
    from relais.console.reports import COLUMNS

    rows = {t["tenant"]: t for t in body["tenants"]}
    for tenant, row in rows.items():
        chunk = text[text.index(f'id="tenant-{tenant}"'):]
        chunk = chunk[:chunk.index("</tr>")]
        shown = dict(re.findall(r'data-key="([^"]+)" data-value="([^"]*)"', chunk))
        assert shown == {k: shown_raw(at(row, path)) for k, (_, path, _) in COLUMNS.items()}
        assert f'href="/t/{tenant}/report?period=month&amp;day=2026-10-01"' in chunk
    assert cells(text, "totals") == {k: shown_raw(at(body, path))
                                     for k, (_, path, _) in COLUMNS.items()}
    assert cells(text, "totals")["offered"] == "9"

    def order(query: str) -> list[str]:
        answer = client.get("/reports?month=2026-10&" + query)
        assert answer.status_code == 200
        return re.findall(r'<tr id="tenant-([^"]+)"', answer.text)

    assert order("") == ["acme", "other", "quiet"]
    assert order("sort=offered&dir=desc") == ["acme", "other", "quiet"]
    assert order("sort=offered&dir=asc") == ["quiet", "other", "acme"]
    # acme answered 4/7, other 1/2, quiet nothing to measure: last either way.
    assert order("sort=answer_rate&dir=desc") == ["acme", "other", "quiet"]
    assert order("sort=answer_rate&dir=asc") == ["other", "acme", "quiet"]
    assert order("sort=tenant&dir=desc") == ["quiet", "other", "acme"]
    sorted_page = client.get("/reports?month=2026-10&sort=answer_rate&dir=desc").text
    assert 'data-sort="answer_rate" aria-sort="descending"' in sorted_page
    assert "month=2026-09" in sorted_page and "month=2026-11" in sorted_page
    for bad in ("sort=bogus", "dir=up", "month=2026-13", "month=octobre", "month=0001-01",
                "month=9999-12"):
        assert client.get("/reports?" + bad).status_code == 422
