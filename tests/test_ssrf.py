"""Tenant configuration cannot point the worker inside the operator's network
(loopback, private, link-local addresses), unless the operator allows it."""

from __future__ import annotations

import ipaddress

import pytest
from conftest import apply_acme
from test_delivery import CALL

from connectors import netguard
from connectors.base import ConnectionInfo, DeliveryRequest, DeliveryResult, Rejected, Runtime
from connectors.webhook import WebhookConnector
from mappings.errors import ConfigError
from sync.delivery import process_connection, replay
from sync.domain import CallMessage
from sync.outbox import accept_message
from sync.settings import reset_settings
from sync.store.db import session_scope
from sync.store.models import Delivery
from sync.tenants import apply_config, get_tenant, parsed_config

TENANT = """\
id: ssrf
name: SSRF
timezone: Europe/Paris
phone_region: FR
call_types: [{{id: message, label: Message}}]
connections:
  target:
{connection}
rules:
  default: {{name: tout, then: [{{connection: target}}]}}
"""

INTERNAL = [
    ("    provider: webhook\n    url: http://127.0.0.1:8080/admin", "loopback"),
    ("    provider: webhook\n    url: http://localhost/x", "loopback"),
    ("    provider: webhook\n    url: http://[::1]:9/x", "loopback"),
    ("    provider: webhook\n    url: http://10.0.0.7/hook", "private"),
    ("    provider: hubspot\n    settings:\n      api_base_url: http://169.254.169.254/latest",
     "link-local"),
    ("    provider: salesforce\n    settings:\n      token_url: https://192.168.1.10/token",
     "private"),
    ("    provider: email\n    settings:\n      host: 10.1.2.3\n      from_address: a@b.fr",
     "private"),
]


def apply(connection: str) -> None:
    with session_scope() as session:
        apply_config(session, TENANT.format(connection=connection), "ssrf.yaml", actor="test")


@pytest.fixture
def strict(env, monkeypatch):
    monkeypatch.setenv("RELAIS_ALLOW_PRIVATE_URLS", "0")
    reset_settings()


@pytest.mark.parametrize("connection, kind", INTERNAL)
def test_internal_targets_are_refused_with_file_and_line(strict, connection, kind):
    with pytest.raises(ConfigError) as raised:
        apply(connection)
    [issue] = raised.value.issues
    assert issue.file == "ssrf.yaml" and issue.line >= 8, issue
    assert kind in issue.message and "RELAIS_ALLOW_PRIVATE_URLS" in issue.hint


def test_public_targets_pass(strict):
    apply("    provider: webhook\n    url: https://93.184.216.34/hook")


def test_the_operator_may_allow_internal_targets(env, monkeypatch):
    monkeypatch.setenv("RELAIS_ALLOW_PRIVATE_URLS", "1")
    reset_settings()
    apply(INTERNAL[0][0])


# At send time: the URL was checked when applied, but a name may resolve elsewhere
# since (DNS rebinding, a changed record). The webhook connector checks again at each
# connect, on the address it then connects to.

def _hook(url: str) -> ConnectionInfo:
    return ConnectionInfo(id="con_1", tenant_id="acme", name="hook", provider="webhook",
                          settings={"url": url}, credentials={"signing_secret": "s"})


def _send(url: str, runtime: Runtime) -> DeliveryResult:
    connector = WebhookConnector(_hook(url), runtime)
    try:
        [result] = connector.deliver([DeliveryRequest("dlv_1", "idem-1", "message.created",
                                                      {"n": 1})])
    finally:
        connector.close()
    return result


@pytest.mark.parametrize("host, words", [
    ("127.0.0.1", "127.0.0.1 is a loopback address"),
    ("localhost", "localhost resolves to 127.0.0.1, which is a loopback address"),
])
def test_the_webhook_refuses_an_internal_address_when_it_connects(receiver, host, words):
    receiver.secrets["/hooks/acme/hook"] = "s"
    url = receiver.url.replace("127.0.0.1", host) + "/hooks/acme/hook"
    refused = _send(url, Runtime())
    assert isinstance(refused.error, Rejected), refused.error
    assert words in str(refused.error) and "RELAIS_ALLOW_PRIVATE_URLS" in str(refused.error)
    assert receiver.hits == {}  # nothing was sent
    allowed = _send(url, Runtime(internal_urls=True))
    assert allowed.ok, allowed.error
    assert receiver.unique == 1


def test_public_addresses_pass_the_guard():
    assert netguard.reason_for("hooks.example", [ipaddress.ip_address("93.184.216.34")]) is None
    assert netguard.reason_for("x", [ipaddress.ip_address("::ffff:10.0.0.1")]) == (
        "x resolves to ::ffff:a00:1, which is a private address")


def test_a_delivery_to_an_address_that_turned_internal_goes_dead_and_replays(
        env, receiver, monkeypatch):
    """Applied while allowed (as if the name were public then); the operator's rule
    in force at send time decides: dead with the reason, nothing received; replayed
    once allowed, it lands."""
    apply_acme(receiver, monkeypatch)
    with session_scope() as session:
        config = parsed_config(get_tenant(session, "acme"))
        msg = CallMessage.model_validate(CALL, context={"region": "FR"})
        accepted = accept_message(session, "acme", config, msg, None)
        [delivery_id] = [d.id for d in accepted.deliveries]
        connection_id = accepted.connection_ids[0]
    monkeypatch.setenv("RELAIS_ALLOW_PRIVATE_URLS", "0")
    reset_settings()
    process_connection(connection_id)
    with session_scope(readonly=True) as session:
        dead = session.get(Delivery, delivery_id)
        assert dead.status == "dead" and "loopback address" in dead.last_error, dead.last_error
    assert receiver.hits == {}
    monkeypatch.setenv("RELAIS_ALLOW_PRIVATE_URLS", "1")
    reset_settings()
    with session_scope() as session:
        replay(session, session.get(Delivery, delivery_id), actor="test")
    process_connection(connection_id)
    with session_scope(readonly=True) as session:
        assert session.get(Delivery, delivery_id).status == "delivered"
    assert receiver.unique == 1
