"""Erasure at the CRM (issue 15): with ``privacy: {erase_in_crm: true}`` an erase
also deletes the person's contact at the tenant's HubSpot (GDPR delete) and
Salesforce (delete of the Contact/Lead), through the outbox, over real sockets to
the sandboxes. Exactly once: a lost answer is retried and the record already gone
counts as erased; the other caller's contact stays."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import FIXTURES
from crm_helpers import accept, call, connection_id, drain, force_due
from sqlalchemy import select
from typer.testing import CliRunner

from relais.cli import app as cli_app
from sandbox.testing import (  # noqa: F401
    hubspot_emulator,
    hubspot_server,
    salesforce_emulator,
    salesforce_server,
)
from sync.connections import set_credentials
from sync.delivery import replay
from sync.privacy.crm_erase import status as erase_status
from sync.privacy.subject import Person, erase, find
from sync.store.db import session_scope
from sync.store.models import Delivery, ExternalLink
from sync.tenants import apply_config

GDPR = "/crm/v3/objects/contacts/gdpr-delete"


def _apply(name: str, tenant_file: str, extra: str) -> None:
    with session_scope() as session:
        apply_config(session, (FIXTURES / tenant_file).read_text() + extra, name, actor="test")


def _erase(tenant: str, phone: str) -> dict:
    with session_scope() as session:
        found = find(session, tenant, Person.parse(phone, None, "FR"), "FR")
        return erase(session, found, tenant, actor="test")


@pytest.fixture
def hs(env, hubspot_emulator, monkeypatch):
    monkeypatch.setenv("RELAIS_TENANT_CRMCO_HS_URL", hubspot_emulator.url)
    return hubspot_emulator


def _hubspot(hs, extra: str = "privacy:\n  erase_in_crm: true\n") -> str:
    _apply("crm.yaml", "crm.yaml", extra)
    with session_scope() as session:
        set_credentials(session, "crmco", "hubspot", {"access_token": hs.private_app_token})
    conn = connection_id("crmco", "hubspot")
    accept("crmco", call(1))
    accept("crmco", call(2))
    assert drain(conn, "crmco") == {"delivered": 2}
    assert len(hs.objects("contacts")) == 2
    return conn


def _phones(hs) -> set[str]:
    return {c["properties"]["phone"] for c in hs.objects("contacts")}


def test_erase_deletes_the_hubspot_contact_through_the_outbox(hs):
    conn = _hubspot(hs)
    result = _erase("crmco", "+33612340001")
    assert [(c["connection"], c["records"]) for c in result["crm_erasure"]] == [("hubspot", 1)]
    with session_scope(readonly=True) as session:  # the caller link (tel:+33…) is gone too
        assert not session.scalars(select(ExternalLink).where(
            ExternalLink.local_id.like("%612340001%"))).all()
        assert erase_status(session, "crmco") == {"pending": 1}
    assert drain(conn, "crmco") == {"delivered": 3}
    assert _phones(hs) == {"+33612340002"}  # the other caller stays
    assert "+33612340001" not in {c["properties"]["phone"]
                                  for c in hs.objects("contacts", archived=True)}
    assert hs.knobs.counters().get("hs.gdpr_delete") == 1
    assert _erase("crmco", "+33612340001")["crm_erasure"] == []  # nothing left to erase
    shown = CliRunner().invoke(cli_app, ["privacy", "status", "--tenant", "crmco", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)[0]["crm_erasures"] == {"delivered": 1}


def test_a_lost_answer_is_retried_and_the_contact_erased_once(hs):
    conn = _hubspot(hs)
    hs.knobs.drop_after_write(path=GDPR)
    _erase("crmco", "+33612340001")
    drain(conn, "crmco", until=lambda c: not c.get("in_flight") and c.get("pending") == 1
          and hs.knobs.calls("POST", GDPR) >= 1)
    force_due("crmco")
    assert drain(conn, "crmco") == {"delivered": 3}  # the retry met a 404: erased
    assert hs.knobs.calls("POST", GDPR) == 2
    assert hs.knobs.counters().get("hs.gdpr_delete") == 1
    assert _phones(hs) == {"+33612340002"}
    with session_scope() as session:  # replayed by an operator: still fine
        delivery = session.scalar(select(Delivery).where(Delivery.action == "person.erase"))
        replay(session, delivery, actor="test")
    assert drain(conn, "crmco") == {"delivered": 3}


def test_without_the_key_nothing_is_erased_at_the_crm(hs):
    conn = _hubspot(hs, extra="")
    result = _erase("crmco", "+33612340001")
    assert result["crm_erasure"] == []
    assert any(r["kind"] == "record" and r["remote_type"] == "contacts"
               for r in result["sent_to"])  # listed for the client to erase
    assert drain(conn, "crmco") == {"delivered": 2}
    assert len(hs.objects("contacts")) == 2


def test_the_hubspot_sandbox_gdpr_delete_is_strict(hs):
    auth = {"Authorization": f"Bearer {hs.private_app_token}"}
    with httpx.Client(base_url=hs.url, headers=auth) as http:
        made = http.post("/crm/v3/objects/contacts", json={"properties": {
            "email": "jeanne@exemple.fr", "firstname": "Jeanne"}}).json()
        assert http.post(GDPR, json={}).status_code == 400  # objectId is required
        assert http.post(GDPR, json={"objectId": 12}).status_code == 400  # a string
        assert http.post("/crm/v3/objects/companies/gdpr-delete",
                         json={"objectId": "1"}).status_code == 400  # contacts only
        assert http.post(GDPR, json={"objectId": "999999"}).status_code == 404
        answer = http.post(GDPR, json={"objectId": made["id"]})
        assert answer.status_code == 204 and answer.content == b""
        assert http.get(f"/crm/v3/objects/contacts/{made['id']}").status_code == 404
        assert http.get(f"/crm/v3/objects/contacts/{made['id']}",
                        params={"archived": "true"}).status_code == 404  # not archived: gone
        assert http.post(GDPR, json={"objectId": "paul@exemple.fr", "idProperty": "email"}
                         ).status_code == 204  # unknown email: blocklisted
    assert {"jeanne@exemple.fr", "paul@exemple.fr"} <= hs.gdpr_blocklist


# ---------------------------------------------------------------- Salesforce


@pytest.fixture
def sf(env, salesforce_emulator, monkeypatch):
    monkeypatch.setenv("RELAIS_TENANT_SFCO_SF_URL", salesforce_emulator.url)
    monkeypatch.setenv("RELAIS_TENANT_SFCO_SF_CA", str(salesforce_emulator.ca_file))
    return salesforce_emulator


def test_erase_deletes_the_salesforce_contact_through_the_outbox(sf):
    _apply("crm_salesforce.yaml", "crm_salesforce.yaml", "privacy:\n  erase_in_crm: true\n")
    with session_scope() as session:
        set_credentials(session, "sfco", "salesforce", {"access_token": sf.session_id})
    conn = connection_id("sfco", "salesforce")
    accept("sfco", call(1))
    accept("sfco", call(2))
    assert drain(conn, "sfco") == {"delivered": 2}
    assert len(sf.records("Contact")) == 2
    result = _erase("sfco", "+33612340001")
    assert [(c["provider"], c["records"]) for c in result["crm_erasure"]] == [("salesforce", 1)]
    counts = drain(conn, "sfco")
    with session_scope(readonly=True) as session:
        errors = [d.last_error for d in session.scalars(select(Delivery))]
    assert counts == {"delivered": 3}, errors
    assert [c["Phone"] for c in sf.records("Contact")] == ["06 12 34 00 02"]  # the other
    assert len(sf.records("Contact", include_deleted=True)) == 2  # one in the Recycle Bin
    with session_scope() as session:  # a second delete meets ENTITY_IS_DELETED: erased
        delivery = session.scalar(select(Delivery).where(Delivery.action == "person.erase"))
        replay(session, delivery, actor="test")
    assert drain(conn, "sfco") == {"delivered": 3}
