"""A sensitive tenant's link asks for a second factor: the first opening sends a
one-time code by SMS (through the SMS gateway emulator) to the recipient's phone
on file, and only that code shows the content; five wrong tries spend it."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from channels_helpers import SECRET_BODY, VET, accept, deliver_all, setup_vet
from fastapi.testclient import TestClient

from relais.api import create_app
from sandbox.testing import sms_gateway, sms_server, smtp_sandbox, smtp_server  # noqa: F401
from sync.privacy import audit
from sync.store.db import session_scope
from sync.store.models import Delivery
from sync.tenants import apply_config


@pytest.fixture
def vet2fa(env, monkeypatch, smtp_sandbox, sms_gateway):
    setup_vet(monkeypatch, env, smtp_sandbox, sms_gateway)
    with session_scope() as session:
        apply_config(session, VET + "link_second_factor: sms\n", "vet.yaml", actor="test")


def test_the_content_shows_only_after_the_code_sent_to_the_recipients_phone(
        vet2fa, smtp_sandbox, sms_gateway):
    message_id, _, _ = accept("dossier")  # sensitive: email + SMS notices to jean
    deliver_all()
    [mail] = smtp_sandbox.wait_for(1)
    token = re.search(r"/v1/m/(\S+)", mail.part("plain")).group(1)
    api = TestClient(create_app())
    first = api.get(f"/v1/m/{token}")
    assert first.status_code == 401, first.text
    error = first.json()["error"]
    assert error["code"] == "second_factor_required" and "+33•••••••11" in error["message"]
    assert SECRET_BODY not in first.text
    assert api.get(f"/v1/m/{token}").status_code == 401  # no second SMS within a minute
    before = len(sms_gateway.messages)
    deliver_all()
    codes = [m for m in sms_gateway.messages[before:] if "code" in m.body]
    assert [m.to for m in codes] == ["+33611111111"]  # jean's phone on file
    code = re.search(r"code (\d{6})", codes[0].body).group(1)
    with session_scope(readonly=True) as session:  # the outbox row holds it sealed
        params = session.scalars(sa.select(Delivery.params).where(
            Delivery.action == "link.code")).one()
        assert code not in str(params) and params["reply"].startswith("sealed1:")
    wrong = "000000" if code != "000000" else "111111"
    bad = api.post(f"/v1/m/{token}", json={"code": wrong})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "bad_code"
    assert api.post(f"/v1/m/{token}", json={"code": "abc"}).status_code == 422
    shown = api.post(f"/v1/m/{token}", json={"code": code})
    assert shown.status_code == 200, shown.text
    assert shown.json()["body"] == SECRET_BODY
    assert api.post(f"/v1/m/{token}", json={"code": code}).status_code == 401  # spent
    with session_scope(readonly=True) as session:
        [entry] = audit.listing(session, "vet")
        assert (entry.action, entry.subject_id) == ("link.opened", message_id)
        assert entry.detail["second_factor"] == "sms"


def test_five_wrong_codes_spend_it(vet2fa, smtp_sandbox, sms_gateway):
    accept("dossier")
    deliver_all()
    [mail] = smtp_sandbox.wait_for(1)
    token = re.search(r"/v1/m/(\S+)", mail.part("plain")).group(1)
    api = TestClient(create_app())
    assert api.get(f"/v1/m/{token}").status_code == 401
    deliver_all()
    code = re.search(r"code (\d{6})", sms_gateway.messages[-1].body).group(1)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(5):
        assert api.post(f"/v1/m/{token}", json={"code": wrong}).status_code == 401
    assert api.post(f"/v1/m/{token}", json={"code": code}).status_code == 401


def test_expired_codes_are_purged_by_retention(vet2fa, smtp_sandbox, sms_gateway, hub_clock):
    from datetime import UTC, datetime, timedelta

    from sync.privacy import retention

    t0 = datetime(2026, 11, 25, 9, 20, tzinfo=UTC)
    hub_clock(t0, ticking=True)
    accept("dossier", now=t0)
    deliver_all()
    [mail] = smtp_sandbox.wait_for(1)
    token = re.search(r"/v1/m/(\S+)", mail.part("plain")).group(1)
    assert TestClient(create_app()).get(f"/v1/m/{token}").status_code == 401
    assert retention.run_tenant("vet").counts["link_codes_deleted"] == 0  # still valid
    hub_clock(t0 + timedelta(minutes=11), ticking=True)
    assert retention.run_tenant("vet").counts["link_codes_deleted"] == 1
