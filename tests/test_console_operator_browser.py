"""The operator's OAuth app registrations in a real browser (Debian's Chromium),
with axe: the operator removes the app a tenant admin's Connect needs, the admin
is told why in words, the operator registers it again from the page (sandbox
endpoints), and the admin's consent then goes through the sandbox. Asserts on
what the hub stored and on the connection the sandbox authorised."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from test_console_admin_browser import TENANT, admin_hub  # noqa: F401  (fixture)
from test_console_browser import BROWSER, CHROMIUM, chromium, serious_violations, sign_in  # noqa: F401

from sandbox.testing import (  # noqa: F401  (fixtures)
    google_emulator,
    google_server,
    hubspot_emulator,
    hubspot_server,
)
from sync.store.db import session_scope
from sync.store.models import Connection
from sync.store.provider_apps import operator_client

pytestmark = BROWSER


def _status(name: str) -> str:
    with session_scope(readonly=True) as session:
        return session.scalar(select(Connection.status).where(
            Connection.tenant_id == TENANT, Connection.name == name))


def test_operator_registers_the_app_a_tenant_admin_then_connects_with(
        admin_hub, chromium, hubspot_emulator):  # noqa: F811
    hs = hubspot_emulator
    operator = chromium.new_context(viewport={"width": 1280, "height": 900},
                                    bypass_csp=True).new_page()
    sign_in(operator, admin_hub, "ops@permanence.test", "/tenants")
    operator.click("header nav a[href='/operator/apps']")  # from the operator's navigation
    operator.wait_for_selector("#app-hubspot")
    assert operator.inner_text("#redirect-uri") == admin_hub + "/oauth/callback"
    assert operator.get_attribute("#app-hubspot", "data-registered") == "yes"
    fingerprint = hashlib.sha256(hs.client_secret.encode()).hexdigest()[:8]
    assert fingerprint in operator.inner_text("#app-hubspot .fingerprint")
    assert hs.client_secret not in operator.content()
    assert serious_violations(operator) == []

    operator.click("#app-hubspot form[action$='/remove'] button")
    operator.wait_for_selector("#app-hubspot[data-registered=no]")
    with session_scope(readonly=True) as session:
        assert operator_client(session, "hubspot") is None

    admin = chromium.new_context(viewport={"width": 1280, "height": 900},
                                 bypass_csp=True).new_page()
    sign_in(admin, admin_hub, "it@admin.test", f"/t/{TENANT}/connections")
    admin.click("#conn-hubspot button.primary")
    admin.wait_for_selector("#outcome")
    assert "Aucune application OAuth n'est enregistrée" in admin.inner_text("#reason")
    assert _status("hubspot") == "not_connected"

    # Registered again from the page, by keyboard, with the sandbox's endpoints.
    operator.fill("#hubspot-client_id", hs.client_id)
    operator.fill("#hubspot-client_secret", hs.client_secret)
    operator.click("#app-hubspot summary")
    operator.fill("#hubspot-authorization_url", hs.url + "/oauth/authorize")
    operator.fill("#hubspot-token_url", hs.url + "/oauth/v1/token")
    operator.focus("#hubspot-token_url")
    operator.keyboard.press("Enter")
    operator.wait_for_selector("#app-hubspot[data-registered=yes]")
    assert "application enregistrée" in operator.inner_text("#outcome")
    assert hs.client_secret not in operator.content()
    assert serious_violations(operator) == []
    with session_scope(readonly=True) as session:
        assert operator_client(session, "hubspot") == {"client_id": hs.client_id,
                                                      "client_secret": hs.client_secret}

    admin.goto(admin_hub + f"/t/{TENANT}/connections")
    admin.click("#conn-hubspot button.primary")
    admin.wait_for_url(lambda url: "outcome=connected&connection=hubspot" in url)
    assert _status("hubspot") == "active"

    # In English, the same page and its state.
    operator.goto(admin_hub + "/lang/en?next=/operator/apps")
    assert operator.inner_text("#app-hubspot .state").strip() == "registered"
    assert serious_violations(operator) == []
