"""The screen-pop's cost does not grow with the data: a fixed number of SQL statements
whatever the number of tenants, messages, appointments or directory contacts; one
tenant configuration parsed on a cold cache (not every tenant's); a new configuration
version shown at once (the parse cache is keyed by the stored text and version)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from conftest import make_env
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from relais.api import create_app
from relais.console.users import create_user
from sync import clock
from sync.store.db import dispose_engines, session_scope
from sync.store.directory import DirectoryContact, DirectoryPhone
from sync.store.models import Appointment, Connection, Message
from sync.tenants import _parse, apply_config

PASSWORD = "un-mot-de-passe-long"
CALLER = "+33612345678"
# The statements of one screen-pop (tenant known by its number, caller known, with
# history): the session (2), the number and the tenant (2), the directory (4: the exact
# number, the suffix, the prefix range, the contacts), the caller's messages and
# appointments (2), and on SQLite each transaction's BEGIN (2) — 10 on PostgreSQL, 12 on
# SQLite; then the access log entry of the history shown (issue 15: one per pop, through
# ``sync.privacy.audit.append``): the head made sure of, locked, the entry, the head
# moved (4), and on SQLite its ``BEGIN IMMEDIATE`` (1) — 14 and 17.
MAX_STATEMENTS = 17


def tenant_yaml(tenant_id: str, number: str, *, region: str = "FR",
                greeting: str = "Bonjour") -> str:
    return (f"id: {tenant_id}\nname: {tenant_id.title()}\ntimezone: Europe/Paris\n"
            f"phone_region: {region}\nforwarding_numbers: ['{number}']\n"
            f"greeting: {greeting}\n"
            "staff:\n  - {id: dr-morel, name: Dr Morel}\n"
            "call_types:\n  - {id: message, label: Message}\n"
            "connections:\n  hook: {provider: webhook, url: http://127.0.0.1:9/h}\n"
            "rules:\n  default:\n    then: [{connection: hook}]\n")


def add_tenants(first: int, count: int) -> None:
    with session_scope() as session:
        for n in range(first, first + count):
            number = f"04 72 00 {n // 100:02d} {n % 100:02d}"
            apply_config(session, tenant_yaml(f"t{n:03d}", number), f"t{n}.yaml", actor="test")


def add_history(tenant_id: str, batch: str, messages: int, appointments: int,
                contacts: int) -> None:
    """The caller's past messages and appointments, and directory contacts (one of them
    the caller) sharing the caller's last digits: rows a per-row query would multiply."""
    now = clock.now()
    with session_scope() as session:
        hook = session.scalar(select(Connection.id).where(Connection.tenant_id == tenant_id))
        for i in range(messages):
            session.add(Message(tenant_id=tenant_id, call_type="message", urgency="normal",
                                caller={"name": "Jeanne Martin", "phone": CALLER},
                                subject=f"Message {i}", body="", taken_by="test",
                                taken_at=now - timedelta(hours=i + 1)))
        for i in range(appointments):
            start = now + timedelta(days=i + 1)
            session.add(Appointment(tenant_id=tenant_id, staff_id="dr-morel", start=start,
                                    end=start + timedelta(minutes=30), status="confirmed",
                                    caller={"name": "Jeanne Martin", "phone": CALLER}))
        for i in range(contacts):
            cid = f"{tenant_id}-{batch}-{i}"
            caller = batch == "first" and i == 0
            phone = CALLER if caller else f"+3361{batch == 'first':d}{i:03d}5678"
            name = "Jeanne Martin" if caller else f"Contact {batch} {i}"
            session.add(DirectoryContact(id=cid, tenant_id=tenant_id, connection_id=hook,
                                         provider="hubspot", crm_object="contacts",
                                         crm_id=cid, name=name, name_key=name.lower(),
                                         company="Boulangerie", phones=[phone]))
            session.flush()
            session.add(DirectoryPhone(contact_id=cid, tenant_id=tenant_id, e164=phone,
                                       reversed_digits="".join(reversed(phone[1:]))))


@contextmanager
def counted() -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", count)


def signed_in() -> TestClient:
    with session_scope() as session:
        create_user(session, "sophie@r.test", "Sophie", "secretary", PASSWORD)
    client = TestClient(create_app(), base_url="https://testserver")
    token = client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    client.post("/login", data={"email": "sophie@r.test", "password": PASSWORD,
                                "csrf_token": token})
    return client


POP = "/desk?called=0472000007&caller=06%2012%2034%2056%2078"


@pytest.fixture(params=["sqlite", "postgresql"])
def desk(request, monkeypatch, tmp_path):
    """Both stores: the number's ending is a LIKE, the caller's history the indexed
    ``caller ->> 'phone'``, on each."""
    database_url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    make_env(monkeypatch, tmp_path, database_url, None)
    add_tenants(1, 8)
    add_history("t007", "first", messages=3, appointments=2, contacts=3)
    yield signed_in()
    dispose_engines()


def pop_statements(client: TestClient) -> list[str]:
    client.get(POP)  # warm: the count is of a secretary's every pop, not the first
    with counted() as statements:
        page = client.get(POP)
    assert page.status_code == 200
    assert '<h1 id="tenant-name">T007</h1>' in page.text
    assert '<strong id="caller-name">Jeanne Martin</strong>' in page.text
    return statements


def test_a_screen_pop_runs_a_fixed_number_of_statements(desk):
    before = pop_statements(desk)
    assert len(before) <= MAX_STATEMENTS, "\n".join(before)
    page = desk.get(POP).text
    assert "Message 0" in page and "Message 2" in page  # the caller's latest messages
    assert page.count("· Dr Morel</li>") == 2  # and appointments
    # Ten times the tenants, messages, appointments and look-alike contacts: the same count.
    add_tenants(9, 72)
    add_history("t007", "more", messages=30, appointments=20, contacts=30)
    after = pop_statements(desk)
    assert len(after) == len(before), "\n".join(after)


def test_a_cold_screen_pop_parses_only_the_answering_tenant(desk):
    _parse.cache_clear()
    assert desk.get(POP).status_code == 200
    assert _parse.cache_info().misses == 1  # not the 8 tenants' YAML, one by one
    assert desk.get(POP).status_code == 200
    assert _parse.cache_info().misses == 1


def test_a_new_configuration_version_shows_at_once(desk):
    assert "« Bonjour »" in desk.get(POP).text
    with session_scope() as session:
        apply_config(session, tenant_yaml("t007", "04 72 00 00 07", greeting="Allô, T007"),
                     "t7.yaml", actor="test")
    assert "« Allô, T007 »" in desk.get(POP).text
    with session_scope() as session:  # and back: the first text, a newer version
        apply_config(session, tenant_yaml("t007", "04 72 00 00 07"), "t7.yaml", actor="test")
    assert "« Bonjour »" in desk.get(POP).text


def test_a_national_number_is_read_in_each_candidates_own_region(desk):
    """Two tenants whose numbers end alike, in France and in Britain: a number written
    without +country opens the tenant of the plan it belongs to, and only that one."""
    with session_scope() as session:
        apply_config(session, tenant_yaml("london", "020 7900 0007", region="GB"),
                     "london.yaml", actor="test")
    national = desk.get("/desk?called=04%2072%2000%2000%2007").text
    assert '<h1 id="tenant-name">T007</h1>' in national
    assert '<h1 id="tenant-name">London</h1>' in desk.get("/desk?called=020%207900%200007").text
    assert '<h1 id="tenant-name">London</h1>' in desk.get("/desk?called=%2B442079000007").text
    assert '<h1 id="tenant-name">T007</h1>' in desk.get("/desk?called=0033472000007").text
    unknown = desk.get("/desk?called=0199000007")  # same ending, no tenant's number
    assert unknown.status_code == 404
