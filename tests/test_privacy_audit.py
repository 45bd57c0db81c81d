"""The access log: reads of message content, link openings, exports and erasures
chained per tenant by hashes; ``relais audit verify`` finds an altered, deleted or
reordered row; concurrent appends on PostgreSQL never fork the chain."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import FIXTURES, apply_acme, make_env
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from relais.api import create_app
from relais.auth import create_key
from relais.cli import app as cli_app
from sync.privacy import audit
from sync.signed_links import message_link
from sync.store.db import get_engine, session_scope
from sync.store.models import Appointment
from sync.store.privacy_models import AccessLogEntry, AccessLogHead

CALL = {
    "call_type": "message",
    "caller": {"name": "Jeanne Dupont", "phone": "06 12 34 56 78"},
    "subject": "Rappel devis", "body": "Souhaite un rappel.",
    "taken_by": "Sophie", "taken_at": "2026-11-27T10:15:00+01:00",
}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def api(env, receiver, monkeypatch, hub_clock):
    hub_clock(datetime(2026, 11, 27, 9, 30, tzinfo=UTC), ticking=True)
    key = apply_acme(receiver, monkeypatch)
    with session_scope() as session:
        admin = create_key(session, "admin", "acme", "admin")
    client = TestClient(create_app(), raise_server_exceptions=True)
    client.keys = {"secretary": key, "admin": admin}
    return client


def _append(n: int, tenant: str = "acme") -> None:
    for i in range(n):
        with session_scope() as session:
            audit.append(session, tenant, actor=f"key k{i}", action="message.read",
                         subject_type="message", subject_id=f"msg_{i}")


def _sql(statement: str) -> None:
    with get_engine().begin() as conn:
        conn.execute(sa.text(statement))


def _verify(tenant: str | None = "acme") -> list[audit.ChainReport]:
    with session_scope(readonly=True) as session:
        return audit.verify(session, tenant)


def test_reads_and_link_openings_are_logged_and_listed_for_the_admin(api):
    accepted = api.post("/v1/tenants/acme/messages", json=CALL,
                        headers=auth(api.keys["secretary"])).json()
    msg = accepted["id"]
    assert api.get(f"/v1/tenants/acme/messages/{msg}",
                   headers=auth(api.keys["secretary"])).status_code == 200
    token = message_link("acme", msg).rsplit("/", 1)[1]
    assert api.get(f"/v1/m/{token}").json()["body"] == "Souhaite un rappel."
    listed = api.get("/v1/tenants/acme/audit", headers=auth(api.keys["admin"]))
    assert listed.status_code == 200, listed.text
    entries = listed.json()["entries"]
    assert [(e["seq"], e["action"], e["subject_id"]) for e in entries] == [
        (2, "link.opened", msg), (1, "message.read", msg)]
    assert entries[1]["actor"].endswith("(secretary)")
    # no content, no phone in the trail
    assert "Jeanne" not in listed.text and "612345678" not in listed.text
    assert api.get("/v1/tenants/acme/audit?before=2",
                   headers=auth(api.keys["admin"])).json()["entries"][0]["seq"] == 1
    refused = api.get("/v1/tenants/acme/audit", headers=auth(api.keys["secretary"]))
    assert refused.status_code == 403
    assert _verify()[0].ok and _verify()[0].entries == 2



def test_api_lists_and_appointment_reads_are_logged_once_per_view(api):
    """A list costs one entry naming the ids it showed (never their content); an empty
    page none; a person's export finds the entries that showed their records."""
    sec = auth(api.keys["secretary"])
    first = api.post("/v1/tenants/acme/messages", json=CALL, headers=sec).json()["id"]
    other = {**CALL, "caller": {"name": "Paul Roux", "phone": "06 98 76 54 32"},
             "taken_at": "2026-11-27T10:20:00+01:00"}
    second = api.post("/v1/tenants/acme/messages", json=other, headers=sec).json()["id"]
    with session_scope() as session:
        start = datetime(2026, 11, 30, 9, tzinfo=UTC)
        booked = Appointment(tenant_id="acme", staff_id="x", appointment_type="rdv",
                             start=start, end=start + timedelta(hours=1), status="confirmed",
                             caller={"name": "Jeanne Dupont", "phone": "+33612345678"},
                             subject="RDV", notes="", booked_by="Sophie")
        session.add(booked)
        session.flush()
        appointment = booked.id
    listed = api.get("/v1/tenants/acme/messages", headers=sec)
    assert [m["id"] for m in listed.json()["messages"]] == [second, first]
    assert api.get("/v1/tenants/acme/messages?caller=0600000000",
                   headers=sec).json()["messages"] == []
    assert len(api.get("/v1/tenants/acme/appointments", headers=sec).json()["appointments"]) == 1
    assert api.get(f"/v1/tenants/acme/appointments/{appointment}",
                   headers=sec).status_code == 200
    with session_scope(readonly=True) as session:
        entries = [(e.subject_type, e.subject_id, e.detail)
                   for e in audit.listing(session, "acme")]
    assert entries == [  # newest first; the empty page appended nothing
        ("appointment", appointment, {"via": "api", "page": "appointment",
                                      "appointments": [appointment]}),
        ("appointment", appointment, {"via": "api", "page": "appointments",
                                      "appointments": [appointment]}),
        ("api", "messages", {"via": "api", "page": "messages", "messages": [second, first]}),
    ]
    assert _verify()[0].ok and _verify()[0].entries == 3
    exported = CliRunner().invoke(cli_app, ["privacy", "export", "--tenant", "acme",
                                            "--phone", "+33 6 98 76 54 32"])
    assert exported.exit_code == 0, exported.output
    doc = json.loads(exported.output)
    assert [(e["subject_type"], e["subject_id"]) for e in doc["access_log"]] == [
        ("api", "messages")]

A = "tenant_id = 'acme'"
SWAP = [f"UPDATE access_log SET seq = -1 WHERE {A} AND seq = 2",  # through a free seq:
        f"UPDATE access_log SET seq = 2 WHERE {A} AND seq = 3",   # (tenant, seq) is unique
        f"UPDATE access_log SET seq = 3 WHERE {A} AND seq = -1"]


@pytest.mark.parametrize("tamper, seq, words", [
    ([f"UPDATE access_log SET actor = 'someone else' WHERE {A} AND seq = 3"], 3, "altered"),
    ([f"UPDATE access_log SET detail = '{{\"via\": \"console\"}}' WHERE {A} AND seq = 2"], 2,
     "altered"),
    ([f"DELETE FROM access_log WHERE {A} AND seq = 2"], 3, "deleted"),
    (SWAP, 2, "reordered"),
    ([f"UPDATE access_log SET prev_hash = (SELECT hash FROM access_log WHERE {A} AND seq = 1) "
      f"WHERE {A} AND seq = 3"], 3, "previous hash"),
], ids=["actor", "detail", "deleted", "swapped", "rechained"])
def test_verify_names_the_first_bad_entry(env, tamper, seq, words):
    _append(5)
    _append(2, tenant="other")
    assert all(r.ok for r in _verify(None))
    for statement in tamper:
        _sql(statement)
    report = _verify()[0]
    assert not report.ok and report.bad_seq == seq and words in report.problem, report
    result = CliRunner().invoke(cli_app, ["audit", "verify"])
    assert result.exit_code == 1
    assert f"acme: BROKEN at entry id {report.bad_id} (seq {seq})" in result.output
    assert "other: ok, 2 entries" in result.output


def test_a_deleted_tail_or_head_is_found(env):
    _append(3)
    _sql("DELETE FROM access_log WHERE seq = 3")
    report = _verify()[0]
    assert not report.ok and "head is at seq 3" in report.problem
    _sql("DELETE FROM access_log_heads")
    assert "head is missing" in _verify()[0].problem
    result = CliRunner().invoke(cli_app, ["audit", "verify"])
    assert result.exit_code == 1 and "BROKEN" in result.output


def test_verify_of_an_intact_chain_exits_0(api):
    _append(4)
    result = CliRunner().invoke(cli_app, ["audit", "verify"])
    assert result.exit_code == 0 and "acme: ok, 4 entries" in result.output
    result = CliRunner().invoke(cli_app, ["audit", "list", "--tenant", "acme", "--json"])
    assert result.exit_code == 0 and '"seq": 4' in result.output


def test_concurrent_appends_on_postgresql_never_fork_the_chain(pg_url, monkeypatch, tmp_path):
    make_env(monkeypatch, tmp_path, pg_url, None)
    threads, each = 8, 25
    barrier = threading.Barrier(threads)
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait()
            for i in range(each):
                with session_scope() as session:
                    audit.append(session, "acme", actor=f"t{n}", action="message.read",
                                 subject_type="message", subject_id=f"msg_{n}_{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert failures == []
    with session_scope(readonly=True) as session:
        seqs = list(session.scalars(sa.select(AccessLogEntry.seq).order_by(AccessLogEntry.seq)))
        prevs = list(session.scalars(sa.select(AccessLogEntry.prev_hash)))
        head = session.get(AccessLogHead, "acme")
    assert seqs == list(range(1, threads * each + 1))
    assert len(set(prevs)) == len(prevs)  # no two entries chained to the same one
    assert head is not None and head.seq == threads * each
    report = _verify()[0]
    assert report.ok and report.entries == threads * each


def test_sensitive_links_are_short_lived_revocable_and_each_opening_is_logged(api, hub_clock):
    t0 = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    msg = api.post("/v1/tenants/acme/messages", json=CALL,
                   headers=auth(api.keys["secretary"])).json()["id"]
    hub_clock(t0)
    sensitive = message_link("acme", msg, sensitive=True).rsplit("/", 1)[1]
    ordinary = message_link("acme", msg).rsplit("/", 1)[1]
    hub_clock(t0 + timedelta(hours=23))
    assert api.get(f"/v1/m/{sensitive}").status_code == 200
    hub_clock(t0 + timedelta(hours=25))
    assert api.get(f"/v1/m/{sensitive}").status_code == 404  # a day, not a week
    assert api.get(f"/v1/m/{ordinary}").status_code == 200
    revoked = api.delete(f"/v1/tenants/acme/messages/{msg}/links",
                         headers=auth(api.keys["secretary"]))
    assert revoked.status_code == 200, revoked.text
    assert api.get(f"/v1/m/{ordinary}").status_code == 404
    assert api.delete("/v1/tenants/acme/messages/msg_nope/links",
                      headers=auth(api.keys["secretary"])).status_code == 404
    hub_clock(t0 + timedelta(hours=25, seconds=1))
    fresh = message_link("acme", msg, sensitive=True).rsplit("/", 1)[1]
    assert api.get(f"/v1/m/{fresh}").status_code == 200  # a new notice opens again
    with session_scope(readonly=True) as session:
        actions = [e.action for e in reversed(audit.listing(session, "acme"))]
        assert actions == ["link.opened", "link.opened", "link.revoked", "link.opened"]
        assert audit.verify(session, "acme")[0].ok


def test_a_sensitive_notice_carries_the_short_lived_link(env, hub_clock):
    from sync.payloads import channel_payload
    from sync.signed_links import verify as verify_link

    class Row:  # only the fields channel_payload reads
        def __init__(self, **kw):
            self.__dict__.update(kw)

    hub_clock(datetime(2026, 11, 27, 9, 30, tzinfo=UTC))
    from mappings import load_tenant_config
    config = load_tenant_config((FIXTURES / "acme.yaml").read_text(), "acme.yaml",
                                env={"RELAIS_TENANT_ACME_HOOK_URL": "https://h.example.org/x"})
    payload = channel_payload(
        config, Row(id="acme", name="ACME"), Row(id="msg_1", urgency="high"),
        Row(id="dlv_1", action="message.created", rule="r",
            params={"channel": "email", "to": "a@acme.example", "redact": True}), None)
    token = payload["email"]["text"].split("/v1/m/")[1].split()[0]
    claims = verify_link("m", token)
    assert claims["exp"] - claims["iat"] == 24 * 3600
