"""Tenant configuration cannot point the worker inside the operator's network
(loopback, private, link-local addresses), unless the operator allows it."""

from __future__ import annotations

import pytest

from mappings.errors import ConfigError
from sync.settings import reset_settings
from sync.store.db import session_scope
from sync.tenants import apply_config

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
