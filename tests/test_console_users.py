"""Console people: argon2 passwords, server-side sessions, the per-account lock and
the per-address throttle, CSRF on sign-in, cookie flags, the CLI, tenant scoping."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import FIXTURES
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from mappings.config import load_tenant_config
from mappings.errors import ConfigError
from relais.api import create_app
from relais.cli import app as cli
from relais.console.users import (
    LOCK_MINUTES,
    MAX_FAILURES,
    ConsoleSession,
    ConsoleUser,
    SignedIn,
    SignInFailure,
    SignInRefused,
    UserError,
    create_user,
    disable_user,
    find_user,
    reset_password,
    session_user,
    sign_in,
)
from relais.console.web import LoginThrottle
from sync.settings import reset_settings
from sync.store.db import session_scope
from sync.tenants import apply_config

PASSWORD = "un-mot-de-passe-long"
HOURS = timedelta(hours=1)
NOON = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def hook_tenant(tenant_id: str, number: str) -> str:
    return (f"id: {tenant_id}\nname: {tenant_id.title()}\ntimezone: Europe/Paris\n"
            f"phone_region: FR\nforwarding_numbers: [{number}]\n"
            "call_types:\n  - {id: message, label: Message}\n"
            "connections:\n  hook: {provider: webhook, url: http://127.0.0.1:9/h}\n"
            "rules:\n  default:\n    then: [{connection: hook}]\n")


@pytest.fixture
def tenants(env):
    with session_scope() as session:
        apply_config(session, hook_tenant("alpha", "04 72 00 00 11"), "alpha.yaml", actor="t")
        apply_config(session, hook_tenant("beta", "04 72 00 00 22"), "beta.yaml", actor="t")


def attempt(email: str, password: str) -> SignedIn | SignInRefused:
    with session_scope() as session:
        return sign_in(session, email, password, HOURS)


def test_passwords_are_argon2id_and_sessions_kept_as_hashes(tenants):
    with session_scope() as session:
        create_user(session, "Sophie@Permanence.test", "Sophie", "secretary", PASSWORD)
    with session_scope(readonly=True) as session:
        user = find_user(session, "sophie@permanence.test")
        assert user is not None and user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
    signed = attempt("sophie@permanence.test", PASSWORD)
    assert isinstance(signed, SignedIn)
    with session_scope(readonly=True) as session:
        stored = session.scalars(select(ConsoleSession.token_hash)).all()
        assert stored and signed.token not in stored  # only its SHA-256
        assert session_user(session, signed.token)[0].email == "sophie@permanence.test"
        assert session_user(session, signed.token + "x") is None
    assert isinstance(attempt("sophie@permanence.test", "wrong-password"), SignInRefused)
    assert isinstance(attempt("nobody@permanence.test", PASSWORD), SignInRefused)


def test_an_account_locks_after_failures_and_unlocks_later(tenants, hub_clock):
    hub_clock(NOON)
    with session_scope() as session:
        create_user(session, "nadia@permanence.test", "Nadia", "secretary", PASSWORD)
    for _ in range(MAX_FAILURES):
        assert isinstance(attempt("nadia@permanence.test", "guess-guess"), SignInRefused)
    locked = attempt("nadia@permanence.test", PASSWORD)  # the right password, too late
    assert isinstance(locked, SignInRefused) and locked.locked_until is not None
    hub_clock(NOON + timedelta(minutes=LOCK_MINUTES - 1))
    assert isinstance(attempt("nadia@permanence.test", PASSWORD), SignInRefused)
    hub_clock(NOON + timedelta(minutes=LOCK_MINUTES + 1))
    assert isinstance(attempt("nadia@permanence.test", PASSWORD), SignedIn)


def test_sessions_expire_and_end_on_disable_and_reset(tenants, hub_clock):
    hub_clock(NOON)
    with session_scope() as session:
        create_user(session, "karim@permanence.test", "Karim", "secretary", PASSWORD)
    first = attempt("karim@permanence.test", PASSWORD)
    hub_clock(NOON + HOURS + timedelta(seconds=1))
    with session_scope(readonly=True) as session:
        assert session_user(session, first.token) is None  # expired
    second = attempt("karim@permanence.test", PASSWORD)
    with session_scope() as session:
        reset_password(session, find_user(session, "karim@permanence.test"), "nouveau-secret-1")
    with session_scope(readonly=True) as session:
        assert session_user(session, second.token) is None
    assert isinstance(attempt("karim@permanence.test", PASSWORD), SignInRefused)
    third = attempt("karim@permanence.test", "nouveau-secret-1")
    with session_scope() as session:
        disable_user(session, find_user(session, "karim@permanence.test"))
    with session_scope(readonly=True) as session:
        assert session_user(session, third.token) is None
        assert session.scalar(select(func.count()).select_from(ConsoleSession)) == 0
    assert isinstance(attempt("karim@permanence.test", "nouveau-secret-1"), SignInRefused)


@pytest.mark.parametrize(("role", "kwargs", "problem"), [
    ("client", {}, "tenant: a client belongs to exactly one tenant"),
    ("tenant_admin", {"tenant_id": "gamma"}, "no tenant 'gamma'"),
    ("secretary", {"tenant_id": "alpha"}, "use --tenants"),
    ("secretary", {"tenants": ["alpha", "zeta"]}, "no tenant 'zeta'"),
    ("operator", {"tenants": ["alpha"]}, "an operator sees every tenant"),
    ("boss", {}, "is not one of"),
])
def test_roles_and_their_tenants_are_checked(tenants, role, kwargs, problem):
    with session_scope() as session, pytest.raises(UserError, match=problem):
        create_user(session, "x@y.test", "X", role, PASSWORD, **kwargs)


def test_scoping_rule(tenants):
    with session_scope() as session:
        users = {
            "op": create_user(session, "op@r.test", "Op", "operator", PASSWORD),
            "all": create_user(session, "all@r.test", "All", "secretary", PASSWORD),
            "some": create_user(session, "some@r.test", "Some", "secretary", PASSWORD,
                                tenants=["alpha"]),
            "admin": create_user(session, "ad@r.test", "Ad", "tenant_admin", PASSWORD,
                                 tenant_id="alpha"),
            "client": create_user(session, "cl@r.test", "Cl", "client", PASSWORD,
                                  tenant_id="beta"),
        }
        seen = {k: (u.can_see("alpha"), u.can_see("beta")) for k, u in users.items()}
    assert seen == {"op": (True, True), "all": (True, True), "some": (True, False),
                    "admin": (True, False), "client": (False, True)}


def test_login_page_cookies_and_csrf(tenants, monkeypatch):
    with session_scope() as session:
        create_user(session, "sophie@permanence.test", "Sophie", "secretary", PASSWORD)
    client = TestClient(create_app(), base_url="https://testserver")
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    assert client.get("/desk", follow_redirects=False).headers["location"].startswith(
        "/login?next=%2Fdesk")
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    form = {"email": "sophie@permanence.test", "password": PASSWORD}
    assert client.post("/login", data=form, follow_redirects=False).status_code == 403
    signed = client.post("/login", data={**form, "csrf_token": token}, follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"] == "/desk"
    cookie = next(c for c in signed.headers.get_list("set-cookie")
                  if c.startswith("relais_session="))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"secure", "httponly", "samesite=lax", "path=/"} <= flags
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    desk = client.get("/desk")
    assert desk.status_code == 200 and "Alpha" in desk.text
    csrf = desk.text.split('name="csrf_token" value="')[1].split('"')[0]
    assert client.post("/logout", data={}, follow_redirects=False).status_code == 403
    out = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/desk", follow_redirects=False).status_code == 303  # signed out

    monkeypatch.setenv("RELAIS_CONSOLE_INSECURE_COOKIES", "1")  # plain-http development
    reset_settings()
    plain = TestClient(create_app())
    page = plain.get("/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    signed = plain.post("/login", data={**form, "csrf_token": token}, follow_redirects=False)
    cookie = next(c for c in signed.headers.get_list("set-cookie")
                  if c.startswith("relais_session="))
    assert "secure" not in cookie.lower()


def test_desk_finds_the_tenant_by_number_and_hides_the_others(tenants):
    with session_scope() as session:
        create_user(session, "some@r.test", "Some", "secretary", PASSWORD, tenants=["alpha"])
    client = TestClient(create_app(), base_url="https://testserver")
    token = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    client.post("/login", data={"email": "some@r.test", "password": PASSWORD,
                                "csrf_token": token})
    assert "<h1 id=\"tenant-name\">Alpha</h1>" in client.get("/desk?called=%2B33472000011").text
    assert "<h1 id=\"tenant-name\">Alpha</h1>" in client.get("/desk?called=0472000011").text
    assert client.get("/desk?called=%2B33472000022").status_code == 404  # beta's number
    assert client.get("/desk?tenant=beta").status_code == 404
    assert client.get("/t/beta/messages").status_code == 404
    listed = client.get("/desk").text
    assert "Alpha" in listed and "Beta" not in listed


def test_throttle_per_address(env, hub_clock):
    hub_clock(NOON)
    throttle = LoginThrottle(limit=3, window=60)
    for _ in range(3):
        assert not throttle.blocked("10.0.0.1")
        throttle.failed("10.0.0.1")
    assert throttle.blocked("10.0.0.1") and not throttle.blocked("10.0.0.2")
    hub_clock(NOON + timedelta(seconds=61))  # the window passed: the address may try again
    assert not throttle.blocked("10.0.0.1")
    throttle.failed("10.0.0.2")  # and the old failures are gone from the table
    with session_scope(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(SignInFailure)) == 1
        assert "10.0.0" not in str(session.scalars(select(SignInFailure.address)).all())


def test_cli_users(tenants):
    runner = CliRunner()
    made = runner.invoke(cli, ["users", "create", "it@alpha.test", "--name", "IT Alpha",
                               "--role", "tenant_admin", "--tenant", "alpha"])
    assert made.exit_code == 0, made.output
    assert "password: " in made.output  # generated, shown once
    typed = runner.invoke(cli, ["users", "create", "s@p.test", "--name", "S", "--role",
                                "secretary", "--tenants", "alpha,beta", "--password-stdin"],
                          input="mon-mot-de-passe\n")
    assert typed.exit_code == 0 and "password:" not in typed.output
    bad = runner.invoke(cli, ["users", "create", "c@p.test", "--name", "C", "--role", "client"])
    assert bad.exit_code == 2 and "exactly one tenant" in bad.output
    table = runner.invoke(cli, ["users", "list"])
    assert "it@alpha.test" in table.output and "alpha,beta" in table.output
    assert runner.invoke(cli, ["users", "disable", "it@alpha.test"]).exit_code == 0
    rows = json.loads(runner.invoke(cli, ["users", "list", "--json"]).output)
    assert {r["email"]: r["disabled"] for r in rows} == {"it@alpha.test": True,
                                                          "s@p.test": False}
    assert all("password_hash" not in r for r in rows)
    assert runner.invoke(cli, ["users", "disable", "nobody@p.test"]).exit_code == 2
    reset = runner.invoke(cli, ["users", "reset-password", "s@p.test"])
    assert reset.exit_code == 0 and "password: " in reset.output
    with session_scope(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(ConsoleUser)) == 2


def test_forwarding_numbers_are_checked_at_their_line():
    text = hook_tenant("alpha", "04 72 00 00 11").replace(
        "forwarding_numbers: [04 72 00 00 11]",
        "forwarding_numbers:\n  - 04 72 00 00 11\n  - 01 23\n")
    with pytest.raises(ConfigError) as bad:
        load_tenant_config(text, "alpha.yaml")
    assert "alpha.yaml:7:5: forwarding_numbers[1]: '01 23' is not a valid phone number" in str(
        bad.value)
    twice = text.replace("  - 01 23\n", "  - +33 4 72 00 00 11\n")
    with pytest.raises(ConfigError, match=r"alpha.yaml:7:5: .*listed twice.*line 6"):
        load_tenant_config(twice, "alpha.yaml")
    assert load_tenant_config((FIXTURES / "console_desk_b.yaml").read_text()).forwarding_numbers \
        == ["+33472000022"]


def test_a_forwarding_number_rings_for_one_tenant_only(tenants):
    with session_scope() as session, pytest.raises(ConfigError) as clash:
        apply_config(session, hook_tenant("gamma", "+33 4 72 00 00 22"), "gamma.yaml",
                     actor="t")
    assert ("gamma.yaml:5:22: forwarding_numbers[0]: forwarding number +33472000022 "
            "already rings for tenant 'beta'") in str(clash.value)
    with session_scope() as session:  # re-applying a tenant keeps its own numbers
        apply_config(session, hook_tenant("beta", "04 72 00 00 22"), "beta.yaml", actor="t")


def signed_in_client(email: str) -> tuple[TestClient, str]:
    client = TestClient(create_app(), base_url="https://testserver")
    token = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token})
    return client, token


def csrf_of(page: str) -> str:
    return page.split('name="csrf_token" value="')[1].split('"')[0]


def test_desk_sends_once_per_opened_call_and_shows_the_caller_next_time(tenants):
    from sync.store.directory import DirectoryContact, DirectoryPhone
    from sync.store.models import Connection, Message

    with session_scope() as session:
        create_user(session, "s@r.test", "Sophie", "secretary", PASSWORD)
        hook = session.scalar(select(Connection.id).where(Connection.tenant_id == "alpha"))
        session.add(DirectoryContact(id="c1", tenant_id="alpha", connection_id=hook,
                                     provider="hubspot", crm_object="contacts", crm_id="1",
                                     name="Jeanne Martin", name_key="jeanne martin",
                                     company="Boulangerie", phones=["+33612345678"]))
        session.flush()
        session.add(DirectoryPhone(contact_id="c1", tenant_id="alpha", e164="+33612345678",
                                   reversed_digits="87654321633"))
    client, _ = signed_in_client("s@r.test")
    page = client.get("/desk?called=0472000011&caller=0612345678").text
    assert '<strong id="caller-name">Jeanne Martin</strong>' in page
    key = page.split('name="idempotency_key" value="')[1].split('"')[0]
    taken_at = page.split('name="taken_at" value="')[1].split('"')[0]
    form = {"csrf_token": csrf_of(page), "idempotency_key": key, "call_type": "message",
            "taken_at": taken_at,
            "urgency": "normal", "caller.name": "Jeanne Martin", "caller.phone": "0612345678",
            "subject": "Rappeler pour le devis"}
    preview = client.post("/t/alpha/desk/preview", data=form)
    assert "hook (webhook)" in preview.text
    missing = client.post("/t/alpha/desk/send", data={**form, "subject": ""})
    assert missing.status_code == 422 and "subject" in missing.text
    first = client.post("/t/alpha/desk/send", data=form)
    again = client.post("/t/alpha/desk/send", data=form)  # a double press: one message
    assert first.status_code == again.status_code == 200
    assert 'data-status="pending"' in first.text and "hook" in first.text
    with session_scope(readonly=True) as session:
        stored = session.scalars(select(Message)).all()
    assert len(stored) == 1 and stored[0].taken_by == "Sophie"
    assert stored[0].caller["phone"] == "+33612345678"
    status = client.get(f"/t/alpha/desk/messages/{stored[0].id}")
    assert "Rappeler pour le devis" in status.text
    assert client.get(f"/t/beta/desk/messages/{stored[0].id}").status_code == 404
    later = client.get("/desk?tenant=alpha&caller=%2B33612345678").text
    assert "Rappeler pour le devis" in later  # the caller's latest messages
    found = client.get("/t/alpha/desk/contacts?q=jean").text
    assert "Jeanne Martin" in found and "Boulangerie" in found


def test_operator_manages_people_in_the_console(tenants):
    with session_scope() as session:
        create_user(session, "op@r.test", "Op", "operator", PASSWORD)
        create_user(session, "s@r.test", "Sophie", "secretary", PASSWORD)
    secretary, _ = signed_in_client("s@r.test")
    assert secretary.get("/users").status_code == 404
    op, _ = signed_in_client("op@r.test")
    page = op.get("/users").text
    csrf = csrf_of(page)
    new = {"email": "n@r.test", "name": "Nadia", "role": "secretary", "tenants": "alpha",
           "tenant": ""}
    assert op.post("/users", data=new).status_code == 403  # no CSRF token
    made = op.post("/users", data={**new, "csrf_token": csrf})
    assert made.status_code == 200, made.text
    first = made.text.split('<code id="new-password">')[1].split("<")[0]
    bad = op.post("/users", data={**new, "csrf_token": csrf})
    assert bad.status_code == 422 and "Un utilisateur a déjà cette adresse" in bad.text
    assert "secrétaire" in made.text  # roles shown by their label, in the viewer's language
    op.get("/lang/en")
    bad = op.post("/users", data={**new, "csrf_token": csrf})
    assert "A user with this email address already exists" in bad.text
    assert "tenant admin" in bad.text and ">tenant_admin<" not in bad.text
    op.get("/lang/fr")
    with session_scope(readonly=True) as session:
        nadia = find_user(session, "n@r.test")
        assert nadia.tenants == ["alpha"] and nadia.role == "secretary"
    reset = op.post(f"/users/{nadia.id}/reset-password", data={"csrf_token": csrf})
    second = reset.text.split('<code id="new-password">')[1].split("<")[0]
    assert second != first
    assert isinstance(attempt("n@r.test", first), SignInRefused)
    assert isinstance(attempt("n@r.test", second), SignedIn)
    assert op.post(f"/users/{nadia.id}/disable", data={"csrf_token": csrf}).status_code == 200
    assert isinstance(attempt("n@r.test", second), SignInRefused)
