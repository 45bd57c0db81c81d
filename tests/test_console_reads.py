"""Console reads of message content on the access log (issue 15): the client's inbox,
the secretary's screen-pop with a known caller's history, the messages and
appointments lists and the sent message each append one ``message.read`` entry
naming who and which messages; the page's own poll does not; the chain still
verifies (``relais audit verify``) and the admin's access log page shows them."""

from __future__ import annotations

from datetime import UTC, datetime

from test_console_client import take
from test_console_users import PASSWORD, hook_tenant, signed_in_client
from typer.testing import CliRunner

from relais.cli import app as cli_app
from relais.console.users import ConsoleUser, create_user
from sync.privacy import audit
from sync.store.db import session_scope
from sync.store.models import Appointment
from sync.tenants import apply_config

DEC1 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DEC2 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def _users() -> dict[str, str]:
    with session_scope(readonly=True) as session:
        return {u.email: u.id for u in session.query(ConsoleUser)}


def _entries(tenant_id: str = "alpha") -> list[audit.AccessLogEntry]:
    with session_scope(readonly=True) as session:
        found = audit.listing(session, tenant_id)
        session.expunge_all()
    return found


def test_console_reads_are_on_the_access_log(env, hub_clock):
    hub_clock(DEC2)
    with session_scope() as session:
        apply_config(session, hook_tenant("alpha", "04 72 00 00 11"), "alpha.yaml", actor="t")
        apply_config(session, hook_tenant("beta", "04 72 00 00 22"), "beta.yaml", actor="t")
        create_user(session, "c@alpha.test", "Client Alpha", "client", PASSWORD,
                    tenant_id="alpha")
        create_user(session, "s@alpha.test", "Sophie", "secretary", PASSWORD)
        create_user(session, "it@alpha.test", "IT", "tenant_admin", PASSWORD,
                    tenant_id="alpha")
    older = take("alpha", "Devis cuisine", DEC1)
    newer = take("alpha", "Rappeler Jeanne", DEC2)
    take("beta", "Secret de beta", DEC2)
    with session_scope() as session:
        booked = Appointment(tenant_id="alpha", staff_id="x", appointment_type="rdv",
                             start=DEC2, end=DEC2.replace(hour=10), status="confirmed",
                             caller={"name": "Jeanne Martin", "phone": "+33612345678"},
                             subject="RDV", notes="", booked_by="Sophie")
        session.add(booked)
        session.flush()
        appointment = booked.id
    users = _users()
    assert _entries() == []

    client, _ = signed_in_client("c@alpha.test")  # lands on the messages: a first read
    assert len(_entries()) == 1
    assert "Rappeler Jeanne" in client.get("/t/alpha/inbox").text
    inbox, landing = _entries()
    assert landing.detail["page"] == "messages"
    assert inbox.actor == f"user:{users['c@alpha.test']}" and inbox.action == "message.read"
    assert (inbox.subject_type, inbox.subject_id) == ("console", "inbox")
    assert inbox.detail == {"via": "console", "page": "inbox", "messages": [newer, older],
                            "appointments": [appointment]}
    # A filter that shows nothing appends nothing.
    assert client.get("/t/alpha/inbox?day_from=2030-01-01").status_code == 200
    assert len(_entries()) == 2

    secretary, _ = signed_in_client("s@alpha.test")
    pop = secretary.get("/desk?called=0472000011&caller=06%2012%2034%2056%2078")
    assert pop.status_code == 200 and "Devis cuisine" in pop.text
    desk = _entries()[0]
    assert desk.actor == f"user:{users['s@alpha.test']}"
    assert desk.detail == {"via": "console", "page": "desk", "messages": [newer, older],
                           "appointments": [appointment]}
    # An unknown caller: no history shown, no entry.
    assert secretary.get("/desk?called=0472000011&caller=0699999999").status_code == 200
    assert len(_entries()) == 3

    # One message shown: it is the entry's subject, as the API's single read.
    sent = secretary.get(f"/t/alpha/desk/messages/{newer}")
    assert "Rappeler Jeanne" in sent.text
    single = _entries()[0]
    assert (single.subject_type, single.subject_id) == ("message", newer)
    assert single.detail == {"via": "console", "page": "desk.sent", "messages": [newer]}
    # The fragment's poll re-shows it to the same viewer: not one entry per second.
    polled = secretary.get(f"/t/alpha/desk/messages/{newer}",
                           headers={"HX-Request": "true", "HX-Trigger": "sent-status"})
    assert polled.status_code == 200 and len(_entries()) == 4

    assert "Devis cuisine" in secretary.get("/t/alpha/messages").text
    assert _entries()[0].detail["messages"] == [newer, older]
    assert secretary.get("/t/alpha/appointments").status_code == 200
    assert _entries()[0].detail == {"via": "console", "page": "appointments",
                                    "appointments": [appointment]}
    assert _entries("beta") == []  # another tenant's chain is untouched

    result = CliRunner().invoke(cli_app, ["audit", "verify"])
    assert result.exit_code == 0 and "alpha: ok, 6 entries" in result.output, result.output

    admin, _ = signed_in_client("it@alpha.test")
    page = admin.get("/t/alpha/audit")
    assert page.status_code == 200
    first = page.text.split('<tr id="e-2"')[1].split("</tr>")[0]
    assert f"Client Alpha (user:{users['c@alpha.test']})" in first
    assert f"messages={newer} {older}" in first and "page=inbox" in first
    second = page.text.split('<tr id="e-3"')[1].split("</tr>")[0]
    assert f"Sophie (user:{users['s@alpha.test']})" in second and "page=desk" in second
    assert 'data-ok="yes"' in page.text
    assert "Jeanne" not in page.text.split('id="chain-status"')[1]  # ids, never content
