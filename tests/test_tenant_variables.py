"""A tenant's YAML reads only its own ``RELAIS_TENANT_<ID>_…`` variables: tenant
B's admin cannot put tenant A's secret into B's own webhook headers."""

from __future__ import annotations

import pytest
from conftest import FIXTURES
from fastapi.testclient import TestClient

from mappings.config import load_tenant_config, tenant_variable_prefix
from mappings.errors import ConfigError
from relais.api import create_app
from relais.auth import create_key
from sync.store.db import session_scope
from sync.store.models import Tenant
from sync.tenants import apply_config

BETA = (FIXTURES / "acme.yaml").read_text().replace("id: acme", "id: beta").replace(
    "${RELAIS_TENANT_ACME_HOOK_URL}", "${RELAIS_TENANT_BETA_HOOK_URL}"
).replace("    timeout_seconds: 2\n",
          "    timeout_seconds: 2\n    headers: {X-Stolen: '${RELAIS_TENANT_ACME_SECRET}'}\n")
ENV = {"RELAIS_TENANT_ACME_SECRET": "sk_live_acme", "RELAIS_TENANT_ACME_HOOK_URL": "https://a.fr",
       "RELAIS_TENANT_BETA_HOOK_URL": "https://b.fr"}


def test_prefix_of_a_tenant():
    assert tenant_variable_prefix("cabinet-durand") == "RELAIS_TENANT_CABINET_DURAND_"


def test_another_tenants_variable_is_refused_with_file_and_line():
    with pytest.raises(ConfigError) as raised:
        load_tenant_config(BETA, "beta.yaml", env=ENV)
    [issue] = raised.value.issues
    line = BETA.splitlines().index(
        "    headers: {X-Stolen: '${RELAIS_TENANT_ACME_SECRET}'}") + 1
    assert (issue.file, issue.line, issue.code) == ("beta.yaml", line, "env_not_allowed")
    assert "RELAIS_TENANT_ACME_SECRET" in issue.message
    assert "RELAIS_TENANT_BETA_" in issue.hint and "sk_live" not in str(issue)


def test_with_a_fallback_too_and_not_in_comments():
    text = BETA.replace("'${RELAIS_TENANT_ACME_SECRET}'", "'${RELAIS_TENANT_ACME_SECRET:-x}'")
    with pytest.raises(ConfigError, match="RELAIS_TENANT_ACME_SECRET"):
        load_tenant_config(text, "beta.yaml", env=ENV)
    own = BETA.replace("    headers: {X-Stolen: '${RELAIS_TENANT_ACME_SECRET}'}\n",
                       "    # was ${RELAIS_TENANT_ACME_SECRET}\n")
    assert load_tenant_config(own, "beta.yaml", env=ENV).id == "beta"


def test_apply_and_put_config_refuse_it(env, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError), session_scope() as session:
        apply_config(session, BETA, "beta.yaml", actor="test")
    with session_scope() as session:
        operator = create_key(session, "operator", None, "ops")
    answer = TestClient(create_app()).put(
        "/v1/tenants/beta/config", content=BETA.encode(),
        headers={"Authorization": f"Bearer {operator}", "Content-Type": "application/yaml"})
    assert answer.status_code == 422, answer.text
    assert "RELAIS_TENANT_ACME_SECRET" in answer.text and "sk_live" not in answer.text
    with session_scope(readonly=True) as session:
        assert session.get(Tenant, "beta") is None
