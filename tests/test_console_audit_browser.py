"""The access log page in a real browser (Debian's Chromium): reached by its tab,
filtered by keyboard, paged, the chain's status shown; axe finds nothing serious."""

from __future__ import annotations

import pytest
from conftest import FIXTURES
from test_console_browser import (  # noqa: F401  (fixtures)
    BROWSER,
    chromium,
    free_port,
    serious_violations,
    sign_in,
)

from relais.console.users import create_user
from sync.privacy import audit
from sync.settings import reset_settings
from sync.store.db import session_scope
from sync.tenants import apply_config

PASSWORD = "motdepasse-de-test"
TENANT = "admin-a"

pytestmark = BROWSER


@pytest.fixture
def audit_hub(env, monkeypatch, spawn):
    """The admin tenant (its connections never used), its admin, 60 access log entries
    (more than a page), and the API serving the console."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    values = {f"RELAIS_TENANT_ADMIN_A_{k}_URL": "http://127.0.0.1:9/x"
              for k in ("HS", "GOOGLE", "HOOK")}
    values["RELAIS_PUBLIC_URL"] = base
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    env.vars.update(values)
    reset_settings()
    with session_scope() as session:
        apply_config(session, (FIXTURES / "console_admin.yaml").read_text(),
                     "console_admin.yaml", actor="test")
        create_user(session, "it@admin.test", "Admin IT", "tenant_admin", PASSWORD,
                    tenant_id=TENANT)
    for i in range(60):
        with session_scope() as session:
            audit.append(session, TENANT, actor="signed link" if i % 3 else "key k (admin)",
                         action="link.opened" if i % 3 else "privacy.export",
                         subject_type="message", subject_id=f"msg_{i}")
    spawn(["serve", "--port", str(port)], env, ready="Uvicorn running")
    return base


def test_tenant_admin_reads_filters_and_pages_the_access_log(audit_hub, chromium):  # noqa: F811
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    sign_in(page, audit_hub, "it@admin.test", f"/t/{TENANT}/deliveries")
    page.click(".tabs a[href$='/audit']")
    page.wait_for_selector("#access-log")
    assert page.get_attribute(".tabs a[href$='/audit']", "aria-current") == "page"
    assert page.get_attribute("#chain-status", "data-ok") == "yes"
    assert "60 entrées vérifiées" in page.inner_text("#chain-status")
    rows = page.locator("#access-log tbody tr")
    assert rows.count() == 50 and rows.first.get_attribute("id") == "e-60"
    assert serious_violations(page) == []

    # The kind filter by keyboard: focus the select, choose, submit with Enter.
    page.focus("#f-action")
    page.select_option("#f-action", "privacy.export")
    page.focus("#f-actor")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "action=privacy.export" in url)
    kinds = {rows.nth(i).get_attribute("data-action") for i in range(rows.count())}
    assert kinds == {"privacy.export"} and rows.count() == 20
    assert page.locator("#older").count() == 0

    page.goto(audit_hub + f"/t/{TENANT}/audit")
    page.click("#older")
    page.wait_for_url(lambda url: "before=11" in url)
    assert [rows.nth(i).get_attribute("id") for i in range(rows.count())] == [
        f"e-{n}" for n in range(10, 0, -1)]
    assert serious_violations(page) == []
    context.close()
