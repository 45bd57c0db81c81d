"""The access log page of the console (``/t/{tenant}/audit``) without a browser:
who reaches it, newest first with the API's entries, its filters and paging, a
bad filter named, the chain's status as ``relais audit verify`` reports it (the
browser and axe check is in ``test_console_audit_browser.py``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import sqlalchemy as sa
from fastapi.testclient import TestClient
from test_console_admin import T, client_of, tenant  # noqa: F401  (fixture)

import relais.console.audit as console_audit
from relais.api import create_app
from relais.auth import create_key
from relais.console.users import ConsoleUser
from sync.privacy import audit
from sync.store.db import get_engine, session_scope


def _seed(hub_clock) -> str:
    """Seven entries over three days (Paris time), one by the tenant admin; and one of
    another tenant. Returns the admin's user id."""
    with session_scope(readonly=True) as session:
        admin_id = session.scalar(sa.select(ConsoleUser.id).where(
            ConsoleUser.email == "it@a.test"))
    plan = [(datetime(2026, 11, 27, 9, tzinfo=UTC), "key k1 (admin)", "message.read"),
            (datetime(2026, 11, 27, 10, tzinfo=UTC), "signed link", "link.opened"),
            (datetime(2026, 11, 28, 9, tzinfo=UTC), f"user:{admin_id}", "privacy.export"),
            (datetime(2026, 11, 28, 10, tzinfo=UTC), "key k1 (admin)", "message.read"),
            (datetime(2026, 11, 29, 8, tzinfo=UTC), "key k2 (secretary)", "link.revoked"),
            (datetime(2026, 11, 29, 9, tzinfo=UTC), "key k1 (admin)", "privacy.erase"),
            (datetime(2026, 11, 29, 23, 30, tzinfo=UTC), "signed link", "link.opened")]
    for at, actor, action in plan:
        hub_clock(at)
        with session_scope() as session:
            audit.append(session, T, actor=actor, action=action, subject_type="message",
                         subject_id=f"msg_{at:%d%H%M}", detail={"via": "test"})
    with session_scope() as session:
        audit.append(session, "other", actor="key k9", action="message.read",
                     subject_type="message", subject_id="msg_other")
    return admin_id


def _seqs(html: str) -> list[int]:
    return [int(s) for s in re.findall(r'<tr id="e-(\d+)"', html)]


def test_only_the_tenant_admin_and_the_operator_see_the_access_log(tenant):  # noqa: F811
    secretary, _ = client_of("s@a.test")
    assert secretary.get(f"/t/{T}/audit").status_code == 404
    admin, _ = client_of("it@a.test")
    page = admin.get(f"/t/{T}/audit")
    assert page.status_code == 200 and 'aria-current="page">Journal des accès' in page.text
    assert admin.get("/t/elsewhere/audit").status_code == 404
    ops, _ = client_of("ops@a.test")
    assert ops.get(f"/t/{T}/audit").status_code == 200
    assert TestClient(create_app(), base_url="https://testserver").get(
        f"/t/{T}/audit", follow_redirects=False).status_code in (302, 303)


def test_entries_newest_first_as_the_api_lists_them_with_filters(tenant, hub_clock,  # noqa: F811
                                                                 monkeypatch):
    admin_id = _seed(hub_clock)
    admin, _ = client_of("it@a.test")
    page = admin.get(f"/t/{T}/audit")
    assert page.status_code == 200
    assert _seqs(page.text) == [7, 6, 5, 4, 3, 2, 1]  # not the other tenant's
    with session_scope() as session:
        key = create_key(session, "admin", T, "dpo")
    api = TestClient(create_app()).get(f"/v1/tenants/{T}/audit",
                                       headers={"Authorization": f"Bearer {key}"})
    assert [e["seq"] for e in api.json()["entries"]] == _seqs(page.text)
    filtered = TestClient(create_app()).get(
        f"/v1/tenants/{T}/audit", headers={"Authorization": f"Bearer {key}"},
        params={"action": "message.read", "actor": "K1", "start": "2026-11-28T00:00:00+01:00"})
    assert [e["seq"] for e in filtered.json()["entries"]] == [4]
    for params, field in (({"action": "message.deleted"}, "action"),
                          ({"start": "2026-11-28T00:00:00"}, "start")):
        refused = TestClient(create_app()).get(
            f"/v1/tenants/{T}/audit", headers={"Authorization": f"Bearer {key}"}, params=params)
        assert refused.status_code == 422 and refused.json()["error"]["details"][0][
            "field"] == field, refused.text
    row3 = page.text.split('<tr id="e-3"')[1].split("</tr>")[0]
    assert f"IT (user:{admin_id})" in row3 and "export des données" in row3
    assert 'id="chain-status" class="notice" role="status" data-ok="yes"' in page.text
    assert "7 entrées vérifiées" in page.text

    def seqs(**params: str) -> list[int]:
        response = admin.get(f"/t/{T}/audit", params=params)
        assert response.status_code == 200, response.text
        return _seqs(response.text)

    assert seqs(action="message.read") == [4, 1]
    assert seqs(actor="K1 (ADMIN)") == [6, 4, 1]
    assert seqs(actor="it") == []  # the actor as stored: user:<id>
    assert seqs(actor=f"user:{admin_id}") == [3]
    # days in the tenant's zone (Paris): 29 Nov 23:30 UTC is 30 Nov there
    assert seqs(start="2026-11-28", end="2026-11-29") == [6, 5, 4, 3]
    assert seqs(start="2026-11-30") == [7]
    assert seqs(action="link.opened", end="2026-11-28") == [2]

    monkeypatch.setattr(console_audit, "PAGE", 2)
    first = admin.get(f"/t/{T}/audit", params={"actor": "key k"})
    assert _seqs(first.text) == [6, 5]
    older = re.search(r'id="older" href="([^"]+)"', first.text).group(1).replace("&amp;", "&")
    assert "actor=key+k" in older and "before=5" in older
    second = admin.get(older)
    assert _seqs(second.text) == [4, 1]  # the filter kept across pages
    assert 'id="older"' not in second.text

    admin.cookies.set("relais_lang", "en")
    english = admin.get(f"/t/{T}/audit")
    assert "Access log" in english.text and "Chain intact:" in english.text


def test_a_bad_filter_is_named_and_a_broken_chain_shown(tenant, hub_clock):  # noqa: F811
    _seed(hub_clock)
    admin, _ = client_of("it@a.test")
    for params, field in (({"action": "message.deleted"}, "action"),
                          ({"start": "yesterday"}, "start"), ({"end": "2026-13-01"}, "end"),
                          ({"before": "abc"}, "before"), ({"before": "0"}, "before")):
        response = admin.get(f"/t/{T}/audit", params=params)
        assert response.status_code == 422, params
        assert f'id="filter-error">{field}:' in response.text, params
    with get_engine().begin() as conn:
        conn.execute(sa.text("UPDATE access_log SET actor = 'nobody' "
                             "WHERE tenant_id = :t AND seq = 4"), {"t": T})
    page = admin.get(f"/t/{T}/audit")
    assert page.status_code == 200
    status = page.text.split('id="chain-status"')[1].split("</p>")[0]
    assert 'data-ok="no"' in status and "entrée 4" in status and "altered" in status
    with session_scope(readonly=True) as session:  # the CLI's engine function agrees
        report = audit.verify(session, T)[0]
    assert report.problem in status
