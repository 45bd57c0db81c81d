"""The operator's console pages without a browser: OAuth app registrations (who
reaches them, register / replace / remove through the engine, the secret never
shown back), the deliveries' keyset paging, the failed-connect reasons in the
viewer's language, and the sign-in throttle shared across API processes (the
browser check of the apps page is in ``test_console_admin_browser.py``)."""

from __future__ import annotations

import hashlib

from test_console_admin import PASSWORD, T, client_of, tenant  # noqa: F401  (fixture)

from connectors.catalog import oauth_providers
from sync.store.db import session_scope
from sync.store.models import AuditEvent
from sync.store.provider_apps import ProviderApp, oauth_context, operator_client

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
    assert "Operator's OAuth apps" in page and "not registered" in page


