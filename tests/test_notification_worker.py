"""A provider's change notification makes a real worker pull: the HubSpot webhook
(signature v3) is answered by the API, which queues the pull (the default
``sync.pull_triggers.QUEUED``); a ``relais worker`` process takes the task from the
broker and pulls the contact directory from the sandbox. Nothing here runs the pull
in the test's process: without the enqueue no contact ever arrives."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
from conftest import wait_until
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_calendar_sync import HS, connection_id, hs, signed  # noqa: F401  (fixture)

from relais.api import create_app
from sandbox.testing import hubspot_emulator, hubspot_server  # noqa: F401  (fixtures)
from sync.store.db import session_scope
from sync.store.directory import DirectoryContact

WORKER_READY = "ready."


def directory_names(conn: str) -> list[str]:
    with session_scope(readonly=True) as session:
        return list(session.scalars(select(DirectoryContact.name).where(
            DirectoryContact.connection_id == conn)))  # fmt: skip


@pytest.mark.processes
def test_a_hubspot_webhook_makes_a_real_worker_pull_the_contacts(  # noqa: F811
    hs, env, spawn
):
    conn = connection_id("hubspot", HS)
    hs.insert("contacts", {"firstname": "Jeanne", "lastname": "Petit", "phone": "+33612345678"})
    worker_env = replace(env, vars={**env.vars, "RELAIS_TENANT_CRMCO_HS_URL": hs.url})
    spawn(["worker", "--concurrency", "1"], worker_env, ready=WORKER_READY)
    assert directory_names(conn) == []  # the worker pulls nothing on its own

    body = json.dumps([{"eventId": 1, "subscriptionType": "contact.creation", "objectId": 1,
                        "portalId": 62515, "occurredAt": int(time.time() * 1000)}]).encode()
    headers = signed(body, "http://testserver/v1/webhooks/hubspot")
    response = TestClient(create_app()).post("/v1/webhooks/hubspot", content=body,
                                             headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["pulls"] == 1
    names = wait_until(lambda: directory_names(conn), 60, "the worker's contacts pull")
    assert names == ["Jeanne Petit"]
