"""The store: migrations match the models, on SQLite and PostgreSQL; aware times."""

from __future__ import annotations

from datetime import datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from relais.migrate import upgrade
from sync.store.crypto import decrypt_json, encrypt_json, rotate
from sync.store.db import get_engine, session_scope
from sync.store.models import Base, Tenant


def _no_drift(url: str) -> None:
    upgrade(url)
    upgrade(url)  # idempotent
    with get_engine(url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        assert "deliveries" in inspect(conn).get_table_names()


def test_migrations_match_models_sqlite(env):
    _no_drift(env.database_url)


@pytest.mark.services
def test_migrations_match_models_postgres(pg_url, monkeypatch, tmp_path):
    monkeypatch.setenv("RELAIS_HOME", str(tmp_path))
    _no_drift(pg_url)


def test_naive_datetime_refused_and_aware_returned(env):
    with pytest.raises(Exception, match="naive datetime"):
        with session_scope() as session:
            session.add(Tenant(id="t", name="T", timezone="UTC", config_yaml="",
                               created_at=datetime(2026, 1, 1)))
    with session_scope() as session:
        session.add(Tenant(id="t", name="T", timezone="UTC", config_yaml=""))
    with session_scope(readonly=True) as session:
        assert session.get(Tenant, "t").created_at.tzinfo is not None


def test_credentials_encrypted_and_keys_rotate(env, monkeypatch):
    from cryptography.fernet import Fernet

    from sync.settings import reset_settings

    token = encrypt_json({"refresh_token": "secret-value"})
    assert b"secret-value" not in token
    new_key = Fernet.generate_key().decode()
    old_key = env.vars["RELAIS_SECRET_KEYS"]
    monkeypatch.setenv("RELAIS_SECRET_KEYS", f"{new_key},{old_key}")
    reset_settings()
    assert decrypt_json(token) == {"refresh_token": "secret-value"}  # old key still reads
    rotated = rotate(token)
    monkeypatch.setenv("RELAIS_SECRET_KEYS", new_key)
    reset_settings()
    assert decrypt_json(rotated) == {"refresh_token": "secret-value"}
