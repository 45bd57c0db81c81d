"""Validation that protects the call: intake answers checked by their declared
type, a rule needing an unconfigured Relais sender refused when the file is
applied, and a call never refused because a destination is misconfigured."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mappings.errors import ConfigError
from relais.api import create_app
from relais.auth import create_key
from sync.settings import reset_settings
from sync.store.db import session_scope
from sync.store.models import Delivery
from sync.tenants import apply_config, load_checked_file

TENANT = """\
id: typed
name: Typed
timezone: Europe/Paris
phone_region: FR
staff:
  - {id: alice, name: Alice, email: alice@typed.example}
call_types:
  - id: fuite
    label: Fuite
    intake_fields:
      - {name: etage, label: Etage, type: number}
      - {name: eau_coupee, label: Eau coupee, type: bool}
      - {name: le, label: Date, type: date}
      - {name: nature, label: Nature, type: choice, choices: [fuite, bouchon]}
      - {name: note, label: Note}
connections:
  hook:
    provider: webhook
    url: https://hooks.typed.example/relais
rules:
  rules:
    - name: prevenir-alice
      when: {call_types: [fuite]}
      then:
        - connection: hook
        - email: {to: [alice]}
"""

CALL = {"call_type": "fuite", "caller": {"name": "J", "phone": "0612345678"},
        "subject": "Fuite", "taken_by": "Sophie", "taken_at": "2026-11-27T10:15:00+01:00"}


def _no_sender(monkeypatch) -> None:
    for name in ("RELAIS_EMAIL_HOST", "RELAIS_EMAIL_FROM_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()


def test_apply_and_validate_refuse_a_rule_needing_an_unconfigured_sender(
        env, monkeypatch, tmp_path):
    _no_sender(monkeypatch)
    with pytest.raises(ConfigError) as raised, session_scope() as session:
        apply_config(session, TENANT, "typed.yaml", actor="test")
    [issue] = raised.value.issues
    text = str(issue)
    assert "prevenir-alice" in text and "RELAIS_EMAIL_HOST" in text
    assert text.startswith("typed.yaml:") and issue.line == 26
    path = tmp_path / "typed.yaml"
    path.write_text(TENANT)
    with pytest.raises(ConfigError, match="RELAIS_EMAIL_HOST"):
        load_checked_file(path)
    from typer.testing import CliRunner

    from relais.cli import app

    shown = CliRunner().invoke(app, ["tenants", "validate", str(path)])
    assert shown.exit_code != 0 and "RELAIS_EMAIL_HOST" in shown.output, shown.output


@pytest.fixture
def api(env, monkeypatch):
    monkeypatch.setenv("RELAIS_EMAIL_HOST", "smtp.typed.example")
    monkeypatch.setenv("RELAIS_EMAIL_FROM_ADDRESS", "relais@typed.example")
    reset_settings()
    with session_scope() as session:
        apply_config(session, TENANT, "typed.yaml", actor="test")
        key = create_key(session, "secretary", "typed", "test")
    client = TestClient(create_app())
    client.headers["Authorization"] = f"Bearer {key}"
    return client


def test_a_call_is_accepted_when_its_sender_was_unset_later(api, monkeypatch):
    _no_sender(monkeypatch)
    answer = api.post("/v1/tenants/typed/messages", json=CALL)
    assert answer.status_code == 202, answer.text
    by_connection = {d["connection"]: d for d in answer.json()["deliveries"]}
    assert by_connection["hook"]["status"] == "pending"
    dead = by_connection["relais-email"]
    assert dead["status"] == "dead" and "RELAIS_EMAIL_HOST" in dead["last_error"]
    with session_scope(readonly=True) as session:
        assert session.get(Delivery, dead["id"]).status == "dead"


@pytest.mark.parametrize("intake, field", [
    ({"etage": "forte"}, "intake.etage"),
    ({"etage": True}, "intake.etage"),
    ({"eau_coupee": "oui"}, "intake.eau_coupee"),
    ({"le": "demain"}, "intake.le"),
    ({"le": "0001-01-01"}, "intake.le"),
    ({"nature": "inondation"}, "intake.nature"),
    ({"note": 12}, "intake.note"),
    ({"etag": 3}, "intake.etag"),
])  # fmt: skip
def test_intake_answers_are_checked_by_their_declared_type(api, intake, field):
    answer = api.post("/v1/tenants/typed/messages", json={**CALL, "intake": intake})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"][0]["field"] == field


def test_intake_answers_of_the_right_type_pass(api):
    intake = {"etage": "2,5", "eau_coupee": False, "le": "2026-12-24", "nature": "bouchon",
              "note": "porte B"}
    answer = api.post("/v1/tenants/typed/messages", json={**CALL, "intake": intake})
    assert answer.status_code == 202, answer.text


@pytest.mark.parametrize("taken_at", ["2026-11-27", "2026-11-27T10:15:00"])
def test_taken_at_must_be_an_aware_date_time(api, taken_at):
    answer = api.post("/v1/tenants/typed/messages", json={**CALL, "taken_at": taken_at})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"][0]["field"] == "taken_at"

