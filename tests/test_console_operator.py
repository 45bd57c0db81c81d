"""The operator's console pages without a browser: OAuth app registrations (who
reaches them, register / replace / remove through the engine, the secret never
shown back), the deliveries' keyset paging, the failed-connect reasons in the
viewer's language, and the sign-in throttle shared across API processes (the
browser check of the apps page is in ``test_console_admin_browser.py``)."""

from __future__ import annotations

import hashlib
import html
import re
import socket
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from test_console_admin import T, client_of, tenant  # noqa: F401  (fixture)

from connectors.catalog import oauth_providers
from relais.api import create_app
from relais.api.engine_errors import CONNECT
from relais.console import admin, booking, connect_reasons, i18n
from relais.console.users import SignInFailure
from sync.booking import CODES as BOOKING_CODES
from sync.connections import CODES, set_credentials, start_authorization
from sync.store.db import session_scope
from sync.store.models import AuditEvent, Connection, Delivery
from sync.store.provider_apps import (
    ProviderApp,
    oauth_context,
    operator_client,
    register_app,
)

SECRET = "s3cr3t-operator-client-secret"


def test_only_the_operator_reaches_the_apps_page(tenant):  # noqa: F811
    for email in ("it@a.test", "s@a.test"):
        other, csrf = client_of(email)
        assert other.get("/operator/apps").status_code == 404
        assert other.post(f"/operator/apps/{oauth_providers()[0]}",
                          data={"csrf_token": csrf, "client_id": "x",
                                "client_secret": "y"}).status_code == 404
        assert other.post(f"/operator/apps/{oauth_providers()[0]}/remove",
                          data={"csrf_token": csrf}).status_code == 404
        assert 'href="/operator/apps"' not in other.get(f"/t/{T}/messages").text
    with session_scope(readonly=True) as session:
        assert session.query(ProviderApp).count() == 0
    ops, _ = client_of("ops@a.test")
    page = ops.get("/operator/apps")
    assert page.status_code == 200 and 'href="/operator/apps"' in page.text
    for name in oauth_providers():  # every OAuth provider of the catalogue, none registered
        assert f'id="app-{name}" data-registered="no"' in page.text
    # The tenant's HubSpot connection has no client of its own: it relies on this app.
    card = page.text.split('id="app-hubspot"')[1].split("</li>")[0]
    assert '<span class="count">1</span>' in card
    with session_scope() as session:  # a client of its own: it does not rely on the app
        set_credentials(session, T, "agenda", {"client_id": "own", "client_secret": "own-s"})
    card = ops.get("/operator/apps").text.split('id="app-google_calendar"')[1].split("</li>")[0]
    assert '<span class="count">0</span>' in card
    assert 'id="redirect-uri">http://127.0.0.1:8000/oauth/callback<' in page.text


def test_register_replace_and_remove_an_app(tenant):  # noqa: F811
    name = oauth_providers()[0]
    ops, csrf = client_of("ops@a.test")
    assert ops.post(f"/operator/apps/{name}", data={"client_id": "cid",
                                                    "client_secret": SECRET}).status_code == 403
    made = ops.post(f"/operator/apps/{name}", data={
        "csrf_token": csrf, "client_id": " cid-1 ", "client_secret": SECRET,
        "token_url": "https://sandbox.test/token"})
    assert made.status_code == 200, made.text
    assert f'id="app-{name}" data-registered="yes"' in made.text
    assert "application enregistrée" in made.text
    assert SECRET not in made.text and SECRET not in ops.get("/operator/apps").text
    assert hashlib.sha256(SECRET.encode()).hexdigest()[:8] in made.text
    with session_scope(readonly=True) as session:
        assert operator_client(session, name) == {"client_id": "cid-1", "client_secret": SECRET}
        settings, _ = oauth_context(session, name, {}, {})
        assert settings["token_url"] == "https://sandbox.test/token"
        kinds = [e.kind for e in session.query(AuditEvent).filter_by(subject_id=name)]
        assert kinds == ["provider_app.registered"]

    # Replaced with the secret left empty: the stored one is kept.
    kept = ops.post(f"/operator/apps/{name}", data={"csrf_token": csrf, "client_id": "cid-2",
                                                    "client_secret": ""})
    assert kept.status_code == 200 and "application remplacée" in kept.text
    with session_scope(readonly=True) as session:
        assert operator_client(session, name) == {"client_id": "cid-2", "client_secret": SECRET}
        assert "token_url" not in oauth_context(session, name, {}, {})[0]

    # Bad input: 422 naming the field, nothing changed.
    for data, field in (({"client_id": ""}, "Identifiant client"),
                        ({"client_id": "c", "token_url": "ftp://x"}, "Adresse des jetons"),
                        ({"client_id": "c" * 501}, "Identifiant client")):
        bad = ops.post(f"/operator/apps/{name}", data={"csrf_token": csrf, **data})
        assert bad.status_code == 422 and field in bad.text.split('id="outcome"')[1]
    other = oauth_providers()[1]
    no_secret = ops.post(f"/operator/apps/{other}", data={"csrf_token": csrf,
                                                          "client_id": "c"})
    assert no_secret.status_code == 422 and "Secret client" in no_secret.text
    assert ops.post("/operator/apps/webhook", data={"csrf_token": csrf, "client_id": "c",
                                                    "client_secret": "s"}).status_code == 404

    gone = ops.post(f"/operator/apps/{name}/remove", data={"csrf_token": csrf})
    assert gone.status_code == 200 and f'id="app-{name}" data-registered="no"' in gone.text
    assert ops.post(f"/operator/apps/{name}/remove",
                    data={"csrf_token": csrf}).status_code == 404
    with session_scope(readonly=True) as session:
        assert operator_client(session, name) is None


def test_the_apps_page_speaks_english(tenant):  # noqa: F811
    ops, _ = client_of("ops@a.test")
    ops.get("/lang/en")
    page = ops.get("/operator/apps").text
    assert "Operator&#39;s OAuth apps" in page and "not registered" in page




# ------------------------------------------------------------------ deliveries paging

def _deliveries(count: int) -> dict[str, list[str]]:
    """``count`` deliveries to the webhook a minute apart from 2026-11-20 08:00 UTC
    (every other one dead), and 5 to HubSpot; their ids by connection, newest first."""
    base = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    made: dict[str, list[str]] = {}
    with session_scope() as session:
        ids = {c.name: c.id for c in session.scalars(
            select(Connection).where(Connection.tenant_id == T))}
        for i in range(count + 5):
            name = "hook" if i < count else "hubspot"
            row = Delivery(tenant_id=T, connection_id=ids[name], action="post",
                           status="dead" if i % 2 == 0 else "delivered",
                           idempotency_key=f"page-{i}",
                           created_at=base + timedelta(minutes=i),
                           last_error="HTTP 400" if i % 2 == 0 else None)
            session.add(row)
            session.flush()
            made.setdefault(name, []).insert(0, row.id)
    return made


def _walk(client, url: str, link: str) -> list[list[str]]:
    """Every page from ``url`` on, following the ``link`` (older/newer) each shows."""
    pages = []
    while url:
        answer = client.get(url)
        assert answer.status_code == 200, answer.text
        pages.append(re.findall(r'id="d-(dlv_[^"]+)"', answer.text))
        found = re.search(rf'href="([^"]+)" id="page-{link}"', answer.text)
        url = html.unescape(found.group(1)) if found else ""
    return pages


def test_deliveries_page_both_ways_keeping_the_filters(tenant):  # noqa: F811
    made = _deliveries(230)
    admin, _ = client_of("it@a.test")
    first = admin.get(f"/t/{T}/deliveries", params={"connection": "hook"}).text
    assert 'id="page-newer"' not in first
    older = _walk(admin, f"/t/{T}/deliveries?connection=hook", "older")
    assert [len(p) for p in older] == [100, 100, 30]
    assert [i for p in older for i in p] == made["hook"]  # newest first, none twice or lost
    last = re.search(r'href="([^"]+)" id="page-older"', admin.get(
        f"/t/{T}/deliveries?connection=hook").text).group(1)
    assert "connection=hook" in html.unescape(last)
    # From the oldest page back to the newest by the "newer" links: the same pages.
    tail = _walk(admin, html.unescape(re.search(r'href="([^"]+)" id="page-older"', admin.get(
        html.unescape(last)).text).group(1)), "newer")
    assert tail == older[::-1]
    # Status and dates are kept from page to page.
    dead = _walk(admin, f"/t/{T}/deliveries?status=dead&connection=hook", "older")
    assert [len(p) for p in dead] == [100, 15]
    assert [i for p in dead for i in p] == made["hook"][1::2]
    day = _walk(admin, f"/t/{T}/deliveries?connection=hook&start=2026-11-20&end=2026-11-20",
                "older")
    assert sum(len(p) for p in day) == 230 and len(day) == 3
    everything = _walk(admin, f"/t/{T}/deliveries", "older")
    assert sum(len(p) for p in everything) == 235
    assert admin.get(f"/t/{T}/deliveries", params={"before": "garbage"}).status_code == 422
    assert admin.get(f"/t/{T}/deliveries", params={"after": "garbage"}).status_code == 422


# --------------------------------------------------------- failed connect, two languages

def test_every_connect_code_has_a_sentence():
    assert set(connect_reasons.ENGINE) == set(CODES)
    assert {code for _status, code in CONNECT.values()} <= set(connect_reasons.CALLBACK)
    english = i18n.translations("en").gettext
    for sentence in [*connect_reasons.ENGINE.values(), *connect_reasons.CALLBACK.values(),
                     *connect_reasons.FIELDS.values(), connect_reasons.UNKNOWN]:
        assert english(sentence) != sentence, sentence  # translated


def test_a_failed_connect_reads_in_the_viewers_language(tenant, hub_clock):  # noqa: F811
    admin, csrf = client_of("it@a.test")
    refused = admin.post(f"/t/{T}/connections/hubspot/connect", data={"csrf_token": csrf})
    assert refused.status_code == 422  # no OAuth app registered for the provider
    assert "Aucune application OAuth n&#39;est enregistrée" in _outcome(refused.text)
    admin.get("/lang/en")
    refused = admin.post(f"/t/{T}/connections/hubspot/connect", data={"csrf_token": csrf})
    assert "No OAuth app is registered for this provider" in _outcome(refused.text)
    assert "client_id" not in _outcome(refused.text)  # no engine English

    # The provider refused the consent: the callback sends the admin back, told why.
    with session_scope() as session:
        register_app(session, "hubspot", "cid", SECRET, "test", {
            "authorization_url": "https://sandbox.test/authorize",
            "token_url": "https://sandbox.test/token"})
    noon = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    hub_clock(noon)
    api = TestClient(create_app(), base_url="https://testserver")
    with session_scope() as session:
        refused_state = start_authorization(session, T, "hubspot",
                                            return_to=f"/t/{T}/connections").state
        expired_state = start_authorization(session, T, "hubspot",
                                            return_to=f"/t/{T}/connections").state
    back = api.get("/oauth/callback", params={"state": refused_state, "error": "access_denied",
                                              "error_description": "The user declined"},
                   follow_redirects=False)
    assert back.status_code == 303
    page = admin.get(back.headers["location"])
    assert "The provider refused the authorization" in _outcome(page.text)
    assert 'id="provider-detail">The user declined<' in page.text
    admin.get("/lang/fr")
    page = admin.get(back.headers["location"])
    assert "Le fournisseur a refusé l&#39;autorisation" in _outcome(page.text)
    assert "the provider refused" not in page.text  # the English reason is not shown

    hub_clock(noon + timedelta(minutes=16))  # the authorization link expired
    back = api.get("/oauth/callback", params={"state": expired_state, "code": "c"},
                   follow_redirects=False)
    assert back.status_code == 303 and "field=state" in back.headers["location"]
    assert "n&#39;est plus valable" in _outcome(admin.get(back.headers["location"]).text)
    unknown = admin.get(f"/t/{T}/connections", params={"outcome": "error", "code": "weird"})
    assert "La connexion n&#39;a pas abouti" in _outcome(unknown.text)


def _outcome(page: str) -> str:
    return page.split('id="outcome"')[1].split("</p>")[0]


# ------------------------------------------------------- sign-in throttle, two processes

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wrong_sign_in(base: str, number: int) -> int:
    with httpx.Client(base_url=base) as web:
        page = web.get("/login").text
        token = page.split('name="csrf_token" value="')[1].split('"')[0]
        return web.post("/login", data={"email": f"nobody{number}@a.test",
                                         "password": "wrong-password", "csrf_token": token}
                        ).status_code


@pytest.mark.processes
def test_two_api_processes_share_the_sign_in_throttle(env, spawn):
    """Three failures on one API process, then the other refuses that address too:
    the count is in the database, not in either process."""
    values = {"RELAIS_CONSOLE_SIGN_IN_LIMIT": "3", "RELAIS_CONSOLE_INSECURE_COOKIES": "1"}
    env.vars.update(values)
    bases = []
    for _ in range(2):
        port = _free_port()
        spawn(["serve", "--port", str(port)], env, ready="Uvicorn running")
        bases.append(f"http://127.0.0.1:{port}")
    assert [_wrong_sign_in(bases[0], n) for n in range(3)] == [401, 401, 401]
    assert _wrong_sign_in(bases[1], 3) == 429  # the other process counts them too
    assert _wrong_sign_in(bases[0], 4) == 429
    with session_scope(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(SignInFailure)) == 3


# --------------------------------------------------- the console's refusals, in French

def test_engine_codes_each_have_a_french_sentence():
    assert set(booking.BOOKING_PROBLEMS) == set(BOOKING_CODES)
    assert set(admin.DISCONNECTED) == {"revoked", "no_token", "not_revocable"}
    english = i18n.translations("en").gettext
    for sentence in [*booking.BOOKING_PROBLEMS.values(), *admin.DISCONNECTED.values(),
                     *admin.FILTER_PROBLEMS.values()]:
        assert english(sentence) != sentence, sentence


def test_admin_refusals_read_in_the_viewers_language(tenant):  # noqa: F811
    admin_client, csrf = client_of("it@a.test")
    checks = [
        (lambda: admin_client.get(f"/t/{T}/deliveries", params={"start": "2026-13-01"}),
         "Date de début invalide", "Invalid start date"),
        (lambda: admin_client.get(f"/t/{T}/deliveries", params={"status": "lost"}),
         "Statut inconnu", "Unknown status"),
        (lambda: admin_client.get(f"/t/{T}/deliveries", params={"start": "2026-12-02",
                                                               "end": "2026-12-01"}),
         "La date de fin doit suivre", "The end date must come after"),
        (lambda: admin_client.get(f"/t/{T}/rules", params={"call_type": "fax"}),
         "Type d&#39;appel inconnu", "Unknown call type"),
        (lambda: admin_client.get(f"/t/{T}/rules", params={"call_type": "message",
                                                          "at": "tomorrow"}),
         "Date et heure invalides", "Invalid date and time"),
        (lambda: admin_client.post(f"/t/{T}/keys", data={"role": "operator",
                                                         "csrf_token": csrf}),
         "Rôle inconnu", "Unknown role"),
        (lambda: admin_client.post(f"/t/{T}/config/rollback", data={"version": "x",
                                                                    "csrf_token": csrf}),
         "Version invalide", "Invalid version"),
    ]
    for lang in ("fr", "en"):
        admin_client.get(f"/lang/{lang}")
        for call, french, english in checks:
            answer = call()
            assert answer.status_code == 422, (french, answer.status_code)
            assert (french if lang == "fr" else english) in answer.text, (lang, french)
            assert "is not" not in answer.text and "must be" not in answer.text


@pytest.mark.parametrize("any_env", ["sqlite", "pg-redis"], indirect=True)
def test_keyset_pages_walk_back_through_ties(any_env):
    """``newer`` pages are the ``cursor`` pages read backwards, even when many rows
    share one instant (the id breaks the tie), on SQLite and PostgreSQL."""
    from test_console_users import hook_tenant

    from sync.lists import Filters, list_deliveries
    from sync.tenants import apply_config

    at = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    with session_scope() as session:
        apply_config(session, hook_tenant("ties", "04 72 00 00 33"), "ties.yaml", actor="t")
        hook = session.scalar(select(Connection.id).where(Connection.tenant_id == "ties"))
        for i in range(25):  # five instants, five rows each
            session.add(Delivery(tenant_id="ties", connection_id=hook, action="post",
                                 idempotency_key=f"tie-{i}",
                                 created_at=at + timedelta(minutes=i // 5)))
    with session_scope(readonly=True) as session:
        def page(**cursor: str | None) -> tuple[list[str], str | None, str | None]:
            found = list_deliveries(session, "ties", Filters(), limit=10, **cursor)
            return [d.id for d in found.items], found.prev_cursor, found.next_cursor

        forward, cursor = [], None
        while True:
            ids, _newer, cursor = page(cursor=cursor)
            forward.append(ids)
            if cursor is None:
                break
        assert [len(p) for p in forward] == [10, 10, 5] and len(set(sum(forward, []))) == 25
        ids, newer, _older = page(cursor=page(cursor=page()[2])[2])  # the last page
        backward = [ids]
        while newer:
            ids, newer, _older = page(newer=newer)
            backward.append(ids)
        assert backward == forward[::-1]
        assert page()[1] is None  # the first page has nothing newer
