"""The report pages in a real browser (Debian's Chromium, axe-core): a tenant's
indicators with their inline SVG charts and the operator's side-by-side table,
used by keyboard only, with no serious or critical accessibility violation. The
hub runs as a real process (``relais serve``) over the data set of
tests/test_console_reports.py."""

from __future__ import annotations

import pytest
from test_console_browser import BROWSER, CHROMIUM, chromium, free_port, serious_violations  # noqa: F401
from test_console_reports import PASSWORD, seed

pytestmark = BROWSER


@pytest.fixture
def report_hub(env, monkeypatch, spawn):
    seed(monkeypatch)
    env.vars.update({"RELAIS_TENANT_ACME_HOOK_URL": "http://127.0.0.1:9/hook",
                     "RELAIS_TENANT_OTHER_HOOK_URL": "http://127.0.0.1:9/hook"})
    port = free_port()
    spawn(["serve", "--port", str(port)], env, ready="Uvicorn running")
    return f"http://127.0.0.1:{port}"


def sign_in(page, base: str, email: str, target: str) -> None:
    page.goto(base + target)
    assert "/login" in page.url
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/login" not in url)


def test_report_pages_by_keyboard_with_charts_and_no_serious_violation(
        report_hub, chromium):  # noqa: F811
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    sign_in(page, report_hub, "ops@relais.test", "/t/acme/report?period=month&day=2026-10-24")
    assert page.get_attribute("td[data-key='calls.offered']", "data-value") == "7"
    charts = page.locator("figure.chart svg[role=img]")
    assert charts.count() == 4
    for i in range(4):  # each chart is named and described for assistive technology
        svg = charts.nth(i)
        assert svg.get_attribute("aria-label")
        described = svg.get_attribute("aria-describedby")
        assert page.locator(f"[id='{described}']").count() == 1
    assert page.locator("figure.chart").first.bounding_box()["width"] <= 1280
    assert serious_violations(page) == []

    # By keyboard: the period picker (a week, a day typed in), then the previous period.
    page.focus("#period")
    page.keyboard.press("ArrowUp")  # month -> week
    page.focus("#day")
    page.fill("#day", "2026-10-25")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "period=week" in url and "day=2026-10-25" in url)
    assert page.get_attribute("td[data-key='calls.offered']", "data-value") == "5"
    page.focus("#previous")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "day=2026-10-12" in url)
    assert page.get_attribute("#report-period", "data-from") == "2026-10-12"

    # The operator's table: sorted by a column from the keyboard, links to each tenant.
    page.goto(report_hub + "/reports?month=2026-10")
    assert page.locator("#tenants-report tbody tr").count() == 3
    assert serious_violations(page) == []
    page.focus("th[data-sort='offered'] a")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "sort=offered" in url)
    assert page.get_attribute("th[data-sort='offered']", "aria-sort") == "descending"
    rows = page.locator("#tenants-report tbody tr")
    assert [rows.nth(i).get_attribute("data-tenant") for i in range(3)] == [
        "acme", "other", "quiet"]
    page.focus("#tenant-other th a")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/t/other/report" in url)
    assert page.get_attribute("td[data-key='calls.offered']", "data-value") == "2"
    context.close()
