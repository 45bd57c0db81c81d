"""Migration 0016: the contacts cursors (``sync_cursors``) and the calendar cursors
(``calendar_cursors``) move into ``pull_cursors`` keyed by (connection, stream,
partition), and back on downgrade — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from conftest import make_env

from relais.migrate import alembic_config
from sync.store.db import dispose_engines

AT = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


def _rows(conn: sa.Connection, query: str) -> set[tuple]:
    return {tuple(r) for r in conn.execute(sa.text(query))}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_cursors_move_into_pull_cursors_and_back(backend, request, monkeypatch, tmp_path):
    url = None if backend == "sqlite" else request.getfixturevalue("pg_url")
    env = make_env(monkeypatch, tmp_path, url, None)  # migrated to head
    cfg = alembic_config(env.database_url)
    command.downgrade(cfg, "0011")
    engine = sa.create_engine(env.database_url)
    at = AT.replace(tzinfo=None) if backend == "sqlite" else AT
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO tenants (id, name, timezone, config_yaml, config_env, config_version, "
            "created_at, updated_at) VALUES ('t', 'T', 'Europe/Paris', '', '{}', 1, :at, :at)"
        ), {"at": at})  # fmt: skip
        for cid, provider in (("c-crm", "hubspot"), ("c-cal", "google_calendar")):
            conn.execute(sa.text(
                "INSERT INTO connections (id, tenant_id, name, provider, role, status, settings, "
                "wake_queued, created_at, updated_at) VALUES (:id, 't', :id, :p, 'delivery', "
                "'active', '{}', false, :at, :at)"),
                {"id": cid, "p": provider, "at": at})  # fmt: skip
        conn.execute(sa.text(
            "INSERT INTO sync_cursors (connection_id, stream, cursor, updated_at) "
            "VALUES ('c-crm', 'contacts', '{\"generation\": 3}', :at)"), {"at": at})  # fmt: skip
        conn.execute(sa.text(
            "INSERT INTO calendar_cursors (connection_id, calendar_id, cursor, full_syncs, "
            "updated_at) VALUES ('c-cal', 'claire@x', 'token-1', 2, :at), "
            "('c-cal', 'paul@x', NULL, 1, :at)"), {"at": at})  # fmt: skip
    command.upgrade(cfg, "head")
    with engine.begin() as conn:
        tables = sa.inspect(conn).get_table_names()
        assert "sync_cursors" not in tables and "calendar_cursors" not in tables
        assert _rows(conn, "SELECT connection_id, stream, partition, cursor, full_syncs "
                           "FROM pull_cursors") == {
            ("c-crm", "contacts", "", '{"generation": 3}', 0),
            ("c-cal", "calendar", "claire@x", "token-1", 2),
            ("c-cal", "calendar", "paul@x", None, 1),
        }  # fmt: skip
        stamps = {r[0] for r in conn.execute(sa.text("SELECT updated_at FROM pull_cursors"))}
        assert len(stamps) == 1  # the stamps are carried over
    command.downgrade(cfg, "0011")
    with engine.begin() as conn:
        assert _rows(conn, "SELECT connection_id, stream, cursor FROM sync_cursors") == {
            ("c-crm", "contacts", '{"generation": 3}')}
        assert _rows(conn, "SELECT connection_id, calendar_id, cursor, full_syncs "
                           "FROM calendar_cursors") == {
            ("c-cal", "claire@x", "token-1", 2), ("c-cal", "paul@x", None, 1)}  # fmt: skip
    engine.dispose()
    dispose_engines()
