"""The client IT admin's console pages in a real browser (Debian's Chromium):
connections through the sandboxes' OAuth consent, the configuration's validate /
diff / apply / rollback, the deliveries' dead letters replayed. Each scenario
asserts on what the hub stored or what landed in the sandboxes, not on the page alone.
"""

from __future__ import annotations

import os

import pytest
from conftest import FIXTURES, ROOT, wait_until
from sqlalchemy import select
from test_console_browser import BROWSER, CHROMIUM, chromium, free_port, serious_violations, sign_in  # noqa: F401

from relais.console.users import create_user
from sandbox.testing import (  # noqa: F401  (fixtures)
    google_emulator,
    google_server,
    hubspot_emulator,
    hubspot_server,
)
from sync.settings import reset_settings
from sync.store.db import session_scope
from sync.store.models import Connection, Delivery, Tenant
from sync.store.provider_apps import register_app
from sync.tenants import apply_config

PASSWORD = "motdepasse-de-test"
TENANT = "admin-a"

pytestmark = BROWSER


@pytest.fixture
def admin_hub(env, monkeypatch, spawn, hubspot_emulator, google_emulator, receiver):  # noqa: F811
    """One tenant with HubSpot and Google (not connected: OAuth apps registered by the
    operator) and a webhook; its tenant admin; the API (its public URL is the OAuth
    callback's) and a worker."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    values = {"RELAIS_TENANT_ADMIN_A_HS_URL": hubspot_emulator.url,
              "RELAIS_TENANT_ADMIN_A_GOOGLE_URL": google_emulator.url,
              "RELAIS_TENANT_ADMIN_A_HOOK_URL": receiver.url + "/hooks/admin-a/hook",
              "RELAIS_PUBLIC_URL": base}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    env.vars.update(values)
    reset_settings()
    with session_scope() as session:
        result = apply_config(session, (FIXTURES / "console_admin.yaml").read_text(),
                              "console_admin.yaml", actor="test")
        receiver.secrets["/hooks/admin-a/hook"] = result.new_secrets["hook"]
        hs, g = hubspot_emulator, google_emulator
        register_app(session, "hubspot", hs.client_id, hs.client_secret, "test", {
            "authorization_url": hs.url + "/oauth/authorize",
            "token_url": hs.url + "/oauth/v1/token",
            "revocation_url": hs.url + "/oauth/v1/refresh-tokens/{token}"})
        register_app(session, "google_calendar", g.client_id, g.client_secret, "test", {
            "authorization_url": g.url + "/o/oauth2/v2/auth", "token_url": g.url + "/token",
            "revocation_url": g.url + "/revoke"})
        create_user(session, "it@admin.test", "Admin IT", "tenant_admin", PASSWORD,
                    tenant_id=TENANT)
        create_user(session, "sophie@permanence.test", "Sophie", "secretary", PASSWORD,
                    tenants=[TENANT])
        create_user(session, "ops@permanence.test", "Opérateur", "operator", PASSWORD)
    spawn(["serve", "--port", str(port)], env, ready="Uvicorn running")
    spawn(["worker", "--concurrency", "1"], env, ready="ready.")
    return base


def _statuses() -> dict[str, str]:
    with session_scope(readonly=True) as session:
        return {c.name: c.status for c in session.scalars(
            select(Connection).where(Connection.tenant_id == TENANT))}


def test_tenant_admin_connects_hubspot_and_google(admin_hub, chromium):  # noqa: F811
    """Scenario 3: Connect on each card goes through the sandbox's consent page and
    comes back to the connections page, which says so and shows both active."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    sign_in(page, admin_hub, "it@admin.test", f"/t/{TENANT}/connections")
    assert page.get_attribute("#conn-hubspot", "data-status") == "not_connected"
    assert serious_violations(page) == []
    for name in ("hubspot", "agenda"):
        page.click(f"#conn-{name} button.primary")
        page.wait_for_url(lambda url, n=name: f"outcome=connected&connection={n}" in url)
        assert f"{name} : connexion réussie" in page.inner_text("#outcome")
        assert page.get_attribute(f"#conn-{name}", "data-status") == "active"
    assert _statuses() == {"hubspot": "active", "agenda": "active", "hook": "active"}
    assert "active" in page.inner_text("#conn-hubspot") and "Reconnecter" in page.inner_text(
        "#conn-agenda")
    assert serious_violations(page) == []
    if os.environ.get("RELAIS_SCREENSHOTS"):  # the README's picture, on demand
        page.screenshot(path=str(ROOT / "docs" / "screenshots" / "console-connections.png"))

    # A refused consent comes back as a readable reason, never as JSON.
    page.goto(admin_hub + "/oauth/callback?state=forged&code=x")
    assert "/oauth/callback" in page.url and "{" in page.content()  # no return_to: JSON
    with session_scope() as session:  # a state that asked to come back, then refused
        from sync.connections import start_authorization
        started = start_authorization(session, TENANT, "hubspot",
                                      return_to=f"/t/{TENANT}/connections")
    page.goto(admin_hub + f"/oauth/callback?state={started.state}&error=access_denied"
              "&error_description=The+user+declined")
    assert page.url.startswith(admin_hub + f"/t/{TENANT}/connections?outcome=error")
    assert "The user declined" in page.inner_text("#outcome")

    # Disconnect: a CSRF-protected POST; the tokens are revoked at HubSpot.
    page.click("#conn-hubspot form[action$='/disconnect'] button")
    page.wait_for_selector("#conn-hubspot[data-status=not_connected]")
    assert "Le fournisseur a révoqué le jeton" in page.inner_text("#outcome")
    assert _statuses()["hubspot"] == "not_connected"
    refused = page.request.post(admin_hub + f"/t/{TENANT}/connections/agenda/disconnect",
                                form={})
    assert refused.status == 403 and _statuses()["agenda"] == "active"
    context.close()

    secretary = chromium.new_context().new_page()
    sign_in(secretary, admin_hub, "sophie@permanence.test", "/desk")
    for path in ("connections", "config", "deliveries"):
        assert secretary.goto(admin_hub + f"/t/{TENANT}/{path}").status == 404


def test_tenant_admin_fixes_applies_and_rolls_back_the_yaml(admin_hub, chromium):  # noqa: F811
    """Scenario 4: an error shown at its line and column (the link puts the caret
    there), fixed, the diff, applied (a new version by this user), rolled back."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    sign_in(page, admin_hub, "it@admin.test", f"/t/{TENANT}/config")
    original = page.input_value("#yaml")
    assert "name: Cabinet Admin" in original
    assert serious_violations(page) == []
    broken = original.replace("phone_region: FR", "phone_region: FR\ncolour: blue")
    line = broken.splitlines().index("colour: blue") + 1
    page.fill("#yaml", broken)
    page.click("#validate")
    page.wait_for_selector("#config-errors")
    link = page.locator(f".config-error a[data-line='{line}']")
    assert f"ligne {line}, colonne 1" in link.inner_text()
    assert "colour" in page.inner_text("#config-errors")
    assert page.locator("#apply").count() == 0  # nothing to apply while invalid
    assert serious_violations(page) == []
    link.click()
    assert page.evaluate("document.activeElement.id") == "yaml"
    caret_line = page.evaluate("(() => { const a = document.getElementById('yaml');"
                               " return a.value.slice(0, a.selectionStart).split('\\n').length"
                               " })()")
    assert caret_line == line

    fixed = original.replace("name: Cabinet Admin", "name: Cabinet Admin & associés")
    page.fill("#yaml", fixed)
    page.click("#validate")
    page.wait_for_selector("#config-valid")
    assert "+name: Cabinet Admin & associés" in page.inner_text("#config-diff")
    assert "-name: Cabinet Admin" in page.inner_text("#config-diff")
    page.click("#apply")
    page.wait_for_selector("#outcome")
    assert "version 2" in page.inner_text("#outcome")
    with session_scope(readonly=True) as session:
        tenant = session.get(Tenant, TENANT)
        assert tenant.name == "Cabinet Admin & associés" and tenant.config_version == 2
    rows = page.locator("#versions tbody tr")
    assert rows.count() == 2
    assert "user:" in rows.nth(0).inner_text() and "test" in rows.nth(1).inner_text()

    page.click("#versions tr[data-version='1'] button")
    page.wait_for_selector("#outcome")
    assert "1 → " in page.inner_text("#outcome")
    with session_scope(readonly=True) as session:
        tenant = session.get(Tenant, TENANT)
        assert tenant.name == "Cabinet Admin" and tenant.config_version == 3
    assert "rétablit la version 1" in page.inner_text("#versions tr[data-version='3']")

    # The rules tester and the API keys page, by keyboard-reachable forms; axe on both.
    page.click(".tabs a[href$='/rules']")
    page.select_option("#r-call-type", "message")
    page.fill("#r-at", "2026-12-02T10:00")
    page.click("#rules-form button")
    page.wait_for_selector("#explain")
    assert "hook" in page.inner_text("#explain") and "tout-au-webhook" in page.inner_text(
        "#trace")
    assert serious_violations(page) == []
    page.click(".tabs a[href$='/keys']")
    page.fill("#key-name", "export")
    page.click("form[action$='/keys'] button")
    assert page.inner_text("#new-key").startswith("rls_")
    assert serious_violations(page) == []
    context.close()


def test_dead_delivery_is_replayed_from_the_page_and_lands(admin_hub, chromium,
                                                           receiver):  # noqa: F811
    """Scenario 5: the webhook refused a message (a 400: dead at once); the admin
    finds it by status, sees the reason, replays it; it lands at the receiver."""
    from sync.domain import CallMessage
    from sync.outbox import accept_message
    from sync.queue import enqueue_connections
    from sync.tenants import get_tenant, parsed_config

    receiver.status_override = 400
    with session_scope() as session:
        config = parsed_config(get_tenant(session, TENANT))
        msg = CallMessage.model_validate(
            {"call_type": "message", "caller": {"name": "Jeanne Martin", "phone": "0612345678"},
             "subject": "Rappel devis", "taken_by": "Sophie",
             "taken_at": "2026-11-27T10:15:00+01:00"}, context={"region": "FR"})
        accepted = accept_message(session, TENANT, config, msg, "admin-replay-1")
        delivery_id, connection_ids = accepted.deliveries[0].id, accepted.connection_ids
    enqueue_connections(connection_ids)

    def status() -> str:
        with session_scope(readonly=True) as session:
            return session.get(Delivery, delivery_id).status

    wait_until(lambda: status() == "dead", 30, "the delivery dead")
    assert receiver.unique == 0
    receiver.status_override = None

    operator = chromium.new_context(bypass_csp=True).new_page()  # the tenants' health
    sign_in(operator, admin_hub, "ops@permanence.test", "/tenants")
    row = operator.locator(f"#tenant-{TENANT}")
    assert row.get_attribute("data-healthy") == "no"
    cells = row.locator("td")
    assert cells.nth(1).inner_text() == "1"  # one dead letter
    assert cells.nth(3).inner_text() == "agenda, hubspot"  # never connected
    assert serious_violations(operator) == []

    context = chromium.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    sign_in(page, admin_hub, "it@admin.test", f"/t/{TENANT}/deliveries?status=dead")
    row = page.locator(f"#d-{delivery_id}")
    assert row.get_attribute("data-status") == "dead"
    assert "400" in row.inner_text()  # the reason it died
    assert serious_violations(page) == []
    assert page.goto(admin_hub + f"/t/{TENANT}/deliveries?status=delivered").ok
    assert page.locator(f"#d-{delivery_id}").count() == 0
    page.goto(admin_hub + f"/t/{TENANT}/deliveries?status=dead&connection=hook")
    page.check(f"#pick-{delivery_id}")
    page.click("#replay-selected")
    page.wait_for_selector("#outcome")
    assert "Relancées : 1" in page.inner_text("#outcome")
    wait_until(lambda: status() == "delivered", 30, "the replayed delivery landed")
    assert receiver.unique == 1
    context.close()
