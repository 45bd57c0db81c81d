"""The console in a real browser: Debian's Chromium driven by Playwright.

The hub runs as real processes (``relais serve``, ``relais worker``); the CRM is the
HubSpot emulator and Relais's SMS sender talks to the SMS-gateway emulator, both over
sockets. Each scenario asserts on what lands in the sandboxes, not on the page alone.
Chromium is Debian's (``/usr/bin/chromium``, installed by ``.ci/run``): Playwright
never downloads a browser here.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from channels_helpers import sender_env
from conftest import FIXTURES
from sqlalchemy import select

from relais.console.users import create_user
from sandbox.testing import (  # noqa: F401  (fixtures)
    hubspot_emulator,
    hubspot_server,
    sms_gateway,
    sms_server,
    smtp_sandbox,
    smtp_server,
)
from sync.connections import set_credentials
from sync.contacts import pull_connection
from sync.settings import reset_settings
from sync.store.db import session_scope
from sync.store.models import Connection
from sync.tenants import apply_config

CHROMIUM = os.environ.get("RELAIS_TEST_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "motdepasse-de-test"
CALLED_A, CALLED_B = "+33472000011", "+33472000022"
CALLER = "+33612345678"
ON_CALL_PHONE = "+33620304050"  # Dr Morel, on call (the rotation's only turn)

# Every browser test module: processes (a real `relais serve`), and Chromium or a skip
# (never a skip when services are required, as in CI).
BROWSER = [pytest.mark.processes,
           pytest.mark.skipif(not Path(CHROMIUM).exists()
                              and os.environ.get("RELAIS_REQUIRE_SERVICES") != "1",
                              reason=f"no {CHROMIUM} (apt-get install chromium)")]
pytestmark = BROWSER


def _axe_source() -> str:
    """axe-core as shipped by the axe-playwright-python wheel (pinned in pyproject)."""
    import axe_playwright_python

    return (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hub(env, monkeypatch, spawn, hubspot_emulator, sms_gateway, smtp_sandbox):  # noqa: F811
    """Two tenants, a known caller pulled from the CRM, users, the API and a worker."""
    values = {**sender_env(smtp_sandbox, sms_gateway),
              "RELAIS_TENANT_DESK_A_HS_URL": hubspot_emulator.url}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    env.vars.update(values)
    reset_settings()
    with session_scope() as session:
        for name in ("console_desk.yaml", "console_desk_b.yaml"):
            apply_config(session, (FIXTURES / name).read_text(), name, actor="test")
        set_credentials(session, "desk-a", "hubspot",
                        {"access_token": hubspot_emulator.private_app_token})
        create_user(session, "sophie@permanence.test", "Sophie Permanence", "secretary",
                    PASSWORD, tenants=["desk-a"])
        create_user(session, "it@alpha.test", "Admin Alpha", "tenant_admin", PASSWORD,
                    tenant_id="desk-a")
        hubspot_id = session.scalar(select(Connection.id).where(
            Connection.tenant_id == "desk-a", Connection.name == "hubspot"))
    hubspot_emulator.insert("contacts", {"firstname": "Jeanne", "lastname": "Martin",
                                         "phone": "06 12 34 56 78",
                                         "company": "Boulangerie Martin"})
    assert pull_connection(hubspot_id, full=True, force=True).error is None
    port = free_port()
    spawn(["serve", "--port", str(port)], env, ready="Uvicorn running")
    spawn(["worker", "--concurrency", "1"], env, ready="ready.")
    return f"http://127.0.0.1:{port}"


def sign_in(page, base: str, email: str, target: str) -> None:
    page.goto(base + target)
    assert "/login" in page.url  # no session: the screen-pop asks for one, then goes on
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/login" not in url)


def serious_violations(page) -> list[str]:
    page.add_script_tag(content=_axe_source())
    result = page.evaluate("async () => await axe.run(document, "
                           "{resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']}" for v in result["violations"]
            if v["impact"] in ("serious", "critical")]


def test_secretary_takes_an_urgent_call_from_a_screen_pop(hub, chromium, hubspot_emulator,
                                                          sms_gateway):  # noqa: F811
    """Scenario A: /desk?called=…&caller=… for a known caller; an urgent call with its
    intake fields, sent by keyboard; the CRM record and the on-call SMS arrive."""
    # bypass_csp: axe-core is injected as an inline script, which the console's CSP refuses.
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    sign_in(page, hub, "sophie@permanence.test", f"/desk?called={CALLED_A}&caller={CALLER}")
    assert page.inner_text("#tenant-name") == "Cabinet Alpha"
    assert "Cabinet Alpha, bonjour" in page.inner_text("#greeting")
    assert page.inner_text("#caller-name") == "Jeanne Martin"  # from the CRM directory
    assert "Boulangerie Martin" in page.inner_text("#caller-card")
    assert "Dr Hélène Morel" in page.inner_text("#on-call")
    assert serious_violations(page) == []
    started = time.monotonic()  # a second screen-pop, signed in: what a secretary waits
    page.goto(hub + f"/desk?called={CALLED_A}&caller={CALLER}")
    page.wait_for_selector("#caller-name")
    print(f"screen-pop to desk shown: {(time.monotonic() - started) * 1000:.0f} ms")

    page.select_option("#call_type", "urgence")
    page.wait_for_selector("#intake-adresse")  # the call type's intake form
    assert "adresse exacte" in page.inner_text("#call-instructions")
    assert page.input_value("#urgency") == "urgent"
    assert page.input_value("#caller-name-input") == "Jeanne Martin"
    page.fill("#intake-adresse", "12 rue des Lilas, Lyon")
    page.select_option("#intake-motif", "fuite")
    page.fill("#subject", "Fuite d'eau importante")
    page.fill("#body", "L'eau coule du plafond.")
    page.wait_for_function("document.querySelector('#preview').innerText.includes('SMS')")
    preview = page.inner_text("#preview")
    assert "hubspot" in preview and "Dr Hélène Morel" in preview, preview

    page.focus("#body")
    started = time.monotonic()
    page.keyboard.press("Control+Enter")  # send, without the mouse
    page.wait_for_selector("#sent-status")
    print(f"send to message shown: {(time.monotonic() - started) * 1000:.0f} ms")
    page.wait_for_selector("#sent-status[data-settled=yes]", timeout=60_000)
    print(f"send to every delivery landed: {(time.monotonic() - started) * 1000:.0f} ms")
    assert page.evaluate("document.activeElement.id") == "new-call"  # next call: one key
    assert serious_violations(page) == []  # the desk with its intake form and sent message
    statuses = page.eval_on_selector_all(".delivery", "els => els.map(e => e.dataset.status)")
    assert statuses == ["delivered", "delivered"], page.inner_text("#sent")

    calls = hubspot_emulator.objects("calls")
    assert len(calls) == 1
    assert "Fuite d'eau importante" in json.dumps(calls[0]["properties"], ensure_ascii=False)
    texts = sms_gateway.sent_to(ON_CALL_PHONE)
    assert len(texts) == 1 and "Fuite d'eau importante" in texts[0].body
    context.close()


def test_tenant_scoping_csrf_and_sign_in_page(hub, chromium):
    """Scenario B: tenant A's users get 404 for tenant B, by any URL; a form posted
    without its CSRF token is refused with 403. Then the sign-in page's accessibility."""
    context = chromium.new_context()
    page = context.new_page()
    sign_in(page, hub, "sophie@permanence.test", "/desk")
    for path in ("/desk?tenant=desk-b", f"/desk?called={CALLED_B}", "/t/desk-b/messages",
                 "/t/desk-b/desk/form?call_type=message", "/t/nowhere/messages"):
        response = page.goto(hub + path)
        assert response.status == 404, path
    token = page.goto(hub + "/desk?tenant=desk-a") and page.get_attribute(
        "input[name=csrf_token]", "value")
    form = {"call_type": "message", "caller.name": "X", "caller.phone": CALLER,
            "subject": "Test", "csrf_token": token}
    assert page.request.post(hub + "/t/desk-b/desk/send", form=form).status == 404
    without = {k: v for k, v in form.items() if k != "csrf_token"}
    refused = page.request.post(hub + "/t/desk-a/desk/send", form=without)
    assert refused.status == 403
    forged = page.request.post(hub + "/t/desk-a/desk/send", form={**form, "csrf_token": "x"})
    assert forged.status == 403
    assert page.request.post(hub + "/logout", form={}).status == 403

    admin = chromium.new_context().new_page()
    sign_in(admin, hub, "it@alpha.test", "/")
    assert admin.url.endswith("/t/desk-a/messages")
    assert admin.goto(hub + "/t/desk-b/messages").status == 404
    assert admin.goto(hub + f"/desk?called={CALLED_A}").status == 404  # takes no calls
    context.close()

    # The sign-in page, in both languages: no serious or critical axe-core violation.
    page = chromium.new_context(bypass_csp=True).new_page()
    page.goto(hub + "/login")
    assert serious_violations(page) == []
    page.goto(hub + "/lang/en?next=/login")
    assert page.inner_text("h1") == "Sign in"
    assert serious_violations(page) == []
