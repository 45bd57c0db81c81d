"""Upgrading a database created by the FIRST release: 0001 as it was released
(tests/fixtures/migrations/r0001_as_released.py, from commit 19a6662, before it
was edited), filled with a tenant, a connection, a message and its pending
delivery, then ``relais db upgrade``: the data is kept and the app works (a
new call is accepted, the old delivery is sent)."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from conftest import FIXTURES, make_env
from fastapi.testclient import TestClient

from mappings.config import load_tenant_config
from relais.api import create_app
from relais.auth import create_key
from sync.delivery import process_connection
from sync.settings import reset_settings
from sync.store.crypto import encrypt_json
from sync.store.db import session_scope
from sync.store.models import Delivery, Message

RELEASED = FIXTURES / "migrations" / "r0001_as_released.py"
SECRET = "whsec_released"


def build_released_database(url: str, hook_url: str) -> None:
    spec = importlib.util.spec_from_file_location("r0001_as_released", RELEASED)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    engine = sa.create_engine(url)
    sqlite = url.startswith("sqlite")
    now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    at = now.replace(tzinfo=None) if sqlite else now
    text = (FIXTURES / "acme.yaml").read_text()
    env = {"RELAIS_TENANT_ACME_HOOK_URL": hook_url}
    hook = load_tenant_config(text, "acme.yaml", env=env).connections["hook"]
    with engine.begin() as conn:
        with Operations.context(MigrationContext.configure(conn)):
            module.upgrade()
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL "
                             "PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('0001')"))
        meta = sa.MetaData()
        meta.reflect(conn)
        assert "wake_queued" not in meta.tables["connections"].c  # truly the released schema
        conn.execute(meta.tables["tenants"].insert(), {
            "id": "acme", "name": "ACME", "timezone": "Europe/Paris", "config_yaml": text,
            "config_env": env, "config_version": 1, "created_at": at, "updated_at": at})
        conn.execute(meta.tables["connections"].insert(), {
            "id": "con_released", "tenant_id": "acme", "name": "hook", "provider": "webhook",
            "role": "delivery", "status": "active", "settings": hook.connector_settings(),
            "credentials": encrypt_json({"signing_secret": SECRET}),
            "created_at": at, "updated_at": at})
        conn.execute(meta.tables["messages"].insert(), {
            "id": "msg_released", "tenant_id": "acme", "call_type": "message",
            "urgency": "normal", "caller": {"name": "Jeanne", "phone": "+33612345678"},
            "subject": "Avant la mise à jour", "body": "b", "taken_by": "S", "taken_at": at,
            "callback_requested": False, "intake": {}, "status": "accepted", "created_at": at})
        conn.execute(meta.tables["deliveries"].insert(), {
            "id": "dlv_released", "tenant_id": "acme", "message_id": "msg_released",
            "connection_id": "con_released", "rule": "tout-au-webhook",
            "action": "message.created", "params": {}, "status": "pending", "attempts": 0,
            "next_attempt_at": at, "idempotency_key": "relais-dlv_released",
            "created_at": at, "updated_at": at})
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_database_of_the_first_release_upgrades_and_works(
        backend, request, monkeypatch, tmp_path, receiver):
    if backend == "sqlite":
        (tmp_path / "home").mkdir()
        url = f"sqlite:///{tmp_path / 'home' / 'released.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    receiver.secrets["/hooks/acme/hook"] = SECRET
    monkeypatch.setenv("RELAIS_TENANT_ACME_HOOK_URL", receiver.url + "/hooks/acme/hook")
    monkeypatch.setenv("RELAIS_SECRET_KEYS", "kVvJ0x0b3Ckq6bQ1kXq3vP8s7mYkJ6V8o9Qf1m2n3o4=")
    reset_settings()  # the key make_env sets: the released data is encrypted with it
    build_released_database(url, receiver.url + "/hooks/acme/hook")

    make_env(monkeypatch, tmp_path, url, None)  # relais db upgrade

    with session_scope() as session:
        assert session.get(Message, "msg_released").subject == "Avant la mise à jour"
        assert session.get(Delivery, "dlv_released").status == "pending"
        key = create_key(session, "secretary", "acme", "test")
    api = TestClient(create_app())
    answer = api.post("/v1/tenants/acme/messages", headers={"Authorization": f"Bearer {key}"},
                      json={"call_type": "message", "caller": {"name": "J", "phone": "0612345678"},
                            "subject": "Après", "taken_by": "S",
                            "taken_at": "2026-11-27T10:15:00+01:00"})
    assert answer.status_code == 202, answer.text
    while process_connection("con_released").claimed:
        pass
    assert receiver.unique == 2
    with session_scope(readonly=True) as session:
        assert session.get(Delivery, "dlv_released").status == "delivered"


# A merged migration is never edited (databases were created from it): a change
# goes into a new revision. Add each new revision here once it is merged.
MERGED = {
    "0001_initial_schema.py": "1d81a57bb1fdcd21",
    "0002_appointments_booking.py": "95cc3253d6184c4f",
    "0003_escalations_digests.py": "192489a861afdf71",
    "0004_contact_directory.py": "6e7b51c7d0297f84",
    "0005_calendar_sync.py": "eee0fa577bca89af",
    "0006_sync_conflicts.py": "e00aa78214ade321",
    "0007_busy_store.py": "4bddcc811f3d3dfe",
    "0008_restore_released_0001.py": "0d8fe83014781503",
    "0009_deliveries_status_index.py": "7d4c344c8a2a963c",
    "0010_webhook_replays.py": "391a3905e6927c0b",
    "0011_escalation_ref.py": "0a7d7f96f868a447",
    "0012_console_users.py": "97ee30a0cee4b428",
    "0016_pull_cursors.py": "ca350cfbf22df105",
    "0013_admin_lists_versions_apps.py": "6c6347f52a4243e2",
    "0014_calls_and_reports.py": "a81f2342f1480322",
    "0015_privacy.py": "1b752829fdadd228",
    "0017_console_message_marks.py": "5ac7cfc8120369c9",
    "0018_console_sign_in_failures.py": "c8c0a54a9b544eaf",
    "0019_sealed_directory_conflicts.py": "11fbd6f8b75decb2",
    "0020_caller_phone_kh.py": "d4f0396dc6502989",
}


def test_merged_migrations_are_never_edited():
    import hashlib

    from relais.migrate import MIGRATIONS

    for name, digest in MERGED.items():
        found = hashlib.sha256((MIGRATIONS / "versions" / name).read_bytes()).hexdigest()
        assert found[:16] == digest, f"{name} was edited after merge: add a new revision instead"
