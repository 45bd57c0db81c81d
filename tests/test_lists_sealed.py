"""``sync.lists`` finds a sensitive tenant's sealed messages and appointments by their
caller's number (``GET …/messages?caller=``, the desk's caller history) through the
keyed hash, whatever the format the number is written in and after a key rotation,
on SQLite and PostgreSQL; an ending (partial number) finds only plain rows, as
the module's docstring says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import make_env
from fastapi.testclient import TestClient
from test_console_users import hook_tenant
from test_privacy_at_rest import NEW_KEY

from relais.api import create_app
from relais.auth import create_key
from sync.contacts import parse_phone_query
from sync.lists import Filters, list_appointments, list_messages
from sync.settings import reset_settings
from sync.store.db import dispose_engines, get_engine, session_scope
from sync.store.models import Appointment, Message
from sync.tenants import apply_config

CALLER = "+33612345678"
AT = datetime(2026, 12, 1, 9, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, monkeypatch, tmp_path):
    database_url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    env = make_env(monkeypatch, tmp_path, database_url, None)
    with session_scope() as session:
        apply_config(session, hook_tenant("alpha", "04 72 00 00 11"), "alpha.yaml", actor="t")
    yield env
    dispose_engines()


def _message(subject: str, phone: str, sealed: bool, hours: int) -> str:
    with session_scope() as session:
        row = Message(tenant_id="alpha", call_type="message", urgency="normal",
                      caller={"name": "Jeanne Martin", "phone": phone}, subject=subject,
                      body="", taken_by="t", taken_at=AT - timedelta(hours=hours),
                      sealed=sealed)
        session.add(row)
        session.flush()
        return row.id


def _appointment(phone: str, sealed: bool) -> str:
    with session_scope() as session:
        row = Appointment(tenant_id="alpha", staff_id="x", start=AT, end=AT + timedelta(hours=1),
                          status="confirmed", caller={"name": "Jeanne Martin", "phone": phone},
                          sealed=sealed)
        session.add(row)
        session.flush()
        return row.id


def _found(typed: str) -> tuple[list[str], list[str]]:
    with session_scope(readonly=True) as session:
        f = Filters(caller=parse_phone_query(typed, "FR"))
        return ([m.id for m in list_messages(session, "alpha", f).items],
                [a.id for a in list_appointments(session, "alpha", f).items])


def test_a_sealed_callers_history_is_found_by_the_keyed_hash(store, monkeypatch):
    sealed = _message("Résultats", CALLER, True, 1)
    plain = _message("Devis", CALLER, False, 2)
    _message("Autre", "+33698765432", True, 3)
    apt = _appointment(CALLER, True)
    with get_engine().connect() as conn:  # the sealed row holds no readable number
        caller = conn.execute(sa.text("SELECT CAST(caller AS text) FROM messages WHERE id = :i"),
                              {"i": sealed}).scalar()
    assert "612345678" not in caller and "phone_kh" in caller

    for typed in ("06 12 34 56 78", "+33 6 12 34 56 78", "0033612345678", "06.12.34.56.78"):
        assert _found(typed) == ([sealed, plain], [apt]), typed
    # An ending cannot match a hash of the whole number: only the plain row.
    assert _found("12345678") == ([plain], [])

    # A new key in front: rows hashed under the old one are still found.
    monkeypatch.setenv("RELAIS_SECRET_KEYS", NEW_KEY + "," + store.vars["RELAIS_SECRET_KEYS"])
    reset_settings()
    newer = _message("Après rotation", CALLER, True, 0)
    assert _found("06 12 34 56 78") == ([newer, sealed, plain], [apt])

    with session_scope() as session:
        key = create_key(session, "secretary", "alpha", "desk")
    api = TestClient(create_app()).get("/v1/tenants/alpha/messages",
                                       params={"caller": "06 12 34 56 78"},
                                       headers={"Authorization": f"Bearer {key}"})
    assert api.status_code == 200, api.text
    assert [m["id"] for m in api.json()["messages"]] == [newer, sealed, plain]
    assert api.json()["messages"][1]["subject"] == "Résultats"
