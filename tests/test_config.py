"""Tenant configuration: YAML with positions, validation with hints, rule planning."""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mappings import (
    ConfigError,
    ConfigIssue,
    PlanError,
    TenantConfig,
    When,
    load_tenant_config,
    load_tenant_file,
    plan_deliveries,
)
from mappings.plan import MATCHERS

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_ENV = {"RELAIS_DEMO_WEBHOOK_BASE": "http://127.0.0.1:8765/hooks"}

BASE = """\
id: acme-plomberie
name: Acme Plomberie
timezone: Europe/Paris
phone_region: FR
business_hours:
  mon: [08:00-12:00, 14:00-18:00]
  fri: 22:00-06:00
  closures: [2025-12-26]
staff:
  - id: jean
    name: Jean
    phone: 06 12 34 56 78
  - id: lea
    name: Léa
    timezone: America/Montreal
call_types:
  - id: devis
    label: Devis
  - id: urgence
    label: Urgence
    urgency_default: urgent
  - id: spam
    label: Démarchage
    urgency_default: low
connections:
  crm:
    provider: webhook
    role: crm
    url: https://crm.example.fr/hook
  sms:
    provider: webhook
    url: https://sms.example.fr/hook
  mail:
    provider: webhook
    url: https://mail.example.fr/hook
rules:
  mode: first
  rules:
    - name: spam
      when: {call_types: [spam]}
      then: [{drop: true}]
    - name: urgent
      when: {urgency: [urgent, high]}
      then: [{connection: sms}, {connection: crm}]
    - name: devis
      when: {call_types: [devis]}
      then: [{connection: crm}, {connection: mail}]
  default:
    then: [{connection: mail}]
"""


def load(text: str, env: dict[str, str] | None = None) -> TenantConfig:
    return load_tenant_config(text, "t.yaml", env=env if env is not None else {})


def issues(text: str, env: dict[str, str] | None = None) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        load(text, env)
    return caught.value.issues


def only_issue(text: str, env: dict[str, str] | None = None) -> ConfigIssue:
    found = issues(text, env)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def line_of(text: str, needle: str) -> int:
    """1-based line of the only line containing ``needle``."""
    lines = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(lines) == 1, (needle, lines)
    return lines[0]


def replace(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# --------------------------------------------------------------------------- examples


def test_examples_crm_defaults_to_the_real_provider() -> None:
    config = load_tenant_file(EXAMPLES / "plomberie-martin.yaml", env=DEMO_ENV)
    crm = config.connections["crm"]
    assert crm.provider == "hubspot" and crm.role == "crm"
    assert crm.connector_settings()["api_base_url"] == "https://api.hubapi.com"
    demo = load_tenant_file(EXAMPLES / "plomberie-martin.yaml",
                            env={**DEMO_ENV, "RELAIS_DEMO_HUBSPOT_URL": "http://127.0.0.1:9"})
    assert demo.connections["crm"].connector_settings()["token_url"] == (
        "http://127.0.0.1:9/oauth/v1/token")


@pytest.mark.parametrize("name", ["cabinet-durand", "plomberie-martin"])
def test_examples_load(name: str) -> None:
    config = load_tenant_file(EXAMPLES / f"{name}.yaml", env=DEMO_ENV)
    assert config.id == name
    assert config.timezone == "Europe/Paris"
    assert config.zone == ZoneInfo("Europe/Paris")
    for conn_name, connection in config.connections.items():
        if connection.provider in ("hubspot", "salesforce"):
            continue  # CRM accounts: checked in test_examples_crm
        assert connection.provider == "webhook"
        assert connection.connector_settings()["url"] == (
            f"http://127.0.0.1:8765/hooks/{name}/{conn_name}"
        )
    for call_type in config.call_types:  # every call type is either delivered or dropped
        plan = plan_deliveries(config, call_type.id)
        assert plan.deliveries or plan.dropped, call_type.id


def test_cabinet_durand_details() -> None:
    config = load_tenant_file(EXAMPLES / "cabinet-durand.yaml", env=DEMO_ENV)
    assert config.name == "Cabinet Durand Avocats"
    assert config.sensitive is True
    assert [s.phone for s in config.staff] == ["+33612345678", "+33698765432"]
    assert config.staff_member("paul-lefevre").name == "Maître Paul Lefèvre"
    assert config.staff_member("nobody") is None
    assert config.is_sensitive("nouveau-client") is True
    assert config.is_sensitive("demarchage") is False
    assert plan_deliveries(config, "demarchage").dropped is True
    urgent = plan_deliveries(config, "urgence-garde-a-vue")
    assert urgent.urgency == "urgent"
    assert [d.connection for d in urgent.deliveries] == ["sms-permanence", "crm"]
    assert config.business_hours is not None
    assert config.business_hours.closures == [
        date(2025, 8, 11),
        date(2025, 8, 12),
        date(2025, 12, 26),
    ]


def test_plomberie_martin_merge_keys_and_mode_all() -> None:
    config = load_tenant_file(EXAMPLES / "plomberie-martin.yaml", env=DEMO_ENV)
    assert {
        n: c.connector_settings()["timeout_seconds"]
        for n, c in config.connections.items()
        if c.provider == "webhook"
    } == {
        "sms-astreinte": 5,
        "email-bureau": 10,
    }
    assert config.connections["crm"].role == "crm"
    assert config.connections["sms-astreinte"].role == "notify"
    assert config.staff_member("jean-martin").crm_owner_id == "1001"
    plan = plan_deliveries(config, "urgence-fuite")
    assert [(d.rule, d.connection) for d in plan.deliveries] == [
        ("clients-au-crm", "crm"),
        ("urgences-sms-astreinte", "sms-astreinte"),
    ]


def test_examples_read_the_demo_variable_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAIS_DEMO_WEBHOOK_BASE", "http://demo:9000/in")
    config = load_tenant_file(EXAMPLES / "plomberie-martin.yaml")
    assert config.connections["email-bureau"].connector_settings()["url"] == (
        "http://demo:9000/in/plomberie-martin/email-bureau"
    )
    monkeypatch.delenv("RELAIS_DEMO_WEBHOOK_BASE")
    with pytest.raises(ConfigError) as caught:
        load_tenant_file(EXAMPLES / "plomberie-martin.yaml")
    first = caught.value.issues[0]
    text = (EXAMPLES / "plomberie-martin.yaml").read_text()
    assert first.file == str(EXAMPLES / "plomberie-martin.yaml")
    assert first.line == line_of(text, "/plomberie-martin/sms-astreinte")
    assert first.code == "env_unset"
    assert "RELAIS_DEMO_WEBHOOK_BASE" in first.message


# --------------------------------------------------------------------------- valid values


def test_base_config_loads_with_typed_values() -> None:
    config = load(BASE)
    hours = config.business_hours
    assert hours is not None
    assert [str(r) for r in hours.mon] == ["08:00-12:00", "14:00-18:00"]
    assert hours.mon[0].start == time(8, 0) and hours.mon[0].end == time(12, 0)
    assert hours.tue == []
    assert config.staff[0].phone == "+33612345678"
    assert config.staff[0].timezone == "Europe/Paris"  # the tenant's zone by default
    assert config.staff[1].timezone == "America/Montreal"
    assert config.language == "fr"
    assert config.sensitive is False
    assert config.call_type("urgence").urgency_default == "urgent"
    assert config.call_type("devis").urgency_default == "normal"
    assert config.call_type("nope") is None
    assert config.connections["sms"].role == "notify"
    assert config.connections["crm"].connector_settings() == {
        "url": "https://crm.example.fr/hook",
        "timeout_seconds": 10,
        "headers": {},
        "concurrency": 16,
        "ordered": False,
    }


def test_midnight_crossing_hours() -> None:
    config = load(BASE)
    hours = config.business_hours
    assert hours is not None
    (night,) = hours.fri
    assert (night.start, night.end) == (time(22, 0), time(6, 0))
    assert night.crosses_midnight is True
    assert night.minutes == 480
    paris = ZoneInfo("Europe/Paris")
    # Friday 2025-03-07 23:30 and Saturday 05:59 in Paris are open; 06:00 is closed.
    assert hours.is_open(datetime(2025, 3, 7, 23, 30, tzinfo=paris), paris) is True
    assert hours.is_open(datetime(2025, 3, 8, 5, 59, tzinfo=paris), paris) is True
    assert hours.is_open(datetime(2025, 3, 8, 6, 0, tzinfo=paris), paris) is False
    assert hours.is_open(datetime(2025, 3, 7, 21, 59, tzinfo=paris), paris) is False
    # Monday 06:30 UTC is 07:30 in Paris in winter (closed), 08:30 in summer (open).
    assert hours.is_open(datetime(2025, 1, 6, 6, 30, tzinfo=UTC), paris) is False
    assert hours.is_open(datetime(2025, 7, 7, 6, 30, tzinfo=UTC), paris) is True
    # A closure closes the ranges starting that day (Friday 2025-12-26).
    assert hours.is_open(datetime(2025, 12, 26, 23, 0, tzinfo=paris), paris) is False
    assert hours.is_open(datetime(2025, 12, 19, 23, 0, tzinfo=paris), paris) is True


def test_whole_day_and_24_00() -> None:
    config = load(replace("  fri: 22:00-06:00", "  fri: [00:00-24:00]\n  sat: [18:00-24:00]"))
    hours = config.business_hours
    assert hours is not None
    assert [str(r) for r in hours.fri] == ["00:00-24:00"]
    assert hours.fri[0].minutes == 1440
    assert hours.sat[0].minutes == 360
    paris = ZoneInfo("Europe/Paris")
    assert hours.is_open(datetime(2025, 3, 8, 23, 59, tzinfo=paris), paris) is True
    assert hours.is_open(datetime(2025, 3, 9, 0, 0, tzinfo=paris), paris) is False


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("06 12 34 56 78", "+33612345678"),
        ("0612345678", "+33612345678"),
        ("06.12.34.56.78", "+33612345678"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("+33612345678", "+33612345678"),
        ("'+32 2 555 12 12'", "+3225551212"),
        ("04 72 00 00 00", "+33472000000"),
    ],
)
def test_phone_normalised_to_e164(written: str, stored: str) -> None:
    config = load(replace("phone: 06 12 34 56 78", f"phone: {written}"))
    assert config.staff[0].phone == stored


def test_phone_region_of_the_tenant_is_used() -> None:
    text = replace("phone_region: FR", "phone_region: be")
    config = load(replace("phone: 06 12 34 56 78", "phone: 02 555 12 12", text))
    assert config.phone_region == "BE"
    assert config.staff[0].phone == "+3225551212"


def test_yaml_1_2_scalars() -> None:
    # NO is Norway (not false), 09:30 is text (not 570), yes is text.
    text = replace("phone: 06 12 34 56 78", "phone: 406 12 345")
    config = load(replace("phone_region: FR", "phone_region: NO", text))
    assert config.phone_region == "NO"
    assert config.staff[0].phone == "+4740612345"
    config = load(replace("    label: Devis", "    label: 09:30"))
    assert config.call_type("devis").label == "09:30"
    config = load(replace("    label: Devis", "    label: yes"))
    assert config.call_type("devis").label == "yes"


def test_env_interpolation_forms() -> None:
    text = replace(
        "    url: https://sms.example.fr/hook",
        "    url: ${RELAIS_TENANT_ACME_PLOMBERIE_SMS:-https://fallback.example.fr}/hook\n"
        "    headers: {Authorization: 'Bearer ${RELAIS_TENANT_ACME_PLOMBERIE_TOKEN}',"
        " X-Price: 'cost $$5'}",
    )
    config = load(text, {"RELAIS_TENANT_ACME_PLOMBERIE_TOKEN": "abc"})
    settings = config.connections["sms"].connector_settings()
    assert settings["url"] == "https://fallback.example.fr/hook"
    assert settings["headers"] == {"Authorization": "Bearer abc", "X-Price": "cost $5"}


def test_x_keys_and_merge_keys() -> None:
    text = replace(
        "connections:\n  crm:\n    provider: webhook\n",
        "x-hook: &hook\n  provider: webhook\n  timeout_seconds: 30\n"
        "connections:\n  crm:\n    <<: *hook\n",
    )
    config = load(text)
    assert config.connections["crm"].connector_settings()["timeout_seconds"] == 30


def test_intake_fields() -> None:
    text = replace(
        "  - id: devis\n    label: Devis\n",
        "  - id: devis\n    label: Devis\n    intake_fields:\n"
        "      - {name: adresse, label: Adresse, required: true}\n"
        "      - {name: piece, label: Pièce, type: choice, choices: [cuisine, sdb]}\n",
    )
    fields = load(text).call_type("devis").intake_fields
    assert [(f.name, f.type, f.required, f.choices) for f in fields] == [
        ("adresse", "text", True, None),
        ("piece", "choice", False, ["cuisine", "sdb"]),
    ]


# --------------------------------------------------------------------------- errors


def test_typo_key_points_at_the_key_and_suggests() -> None:
    text = replace("    role: crm", "    rol: crm")
    issue = only_issue(text)
    assert (issue.line, issue.column) == (line_of(text, "rol: crm"), 5)
    assert issue.path == "connections.crm.rol"
    assert issue.code == "unknown_key"
    assert issue.message == "unknown key 'rol'"
    assert issue.hint.startswith("did you mean 'role'? allowed keys here: ")
    assert "timeout_seconds" in issue.hint


def test_typo_top_level_key() -> None:
    text = replace("timezone: Europe/Paris", "timezone: Europe/Paris\nlangage: fr")
    issue = only_issue(text)
    assert (issue.file, issue.line, issue.column) == ("t.yaml", 4, 1)
    assert issue.hint.startswith("did you mean 'language'?")


def test_bad_zone() -> None:
    issue = only_issue(replace("timezone: Europe/Paris", "timezone: Paris"))
    assert (issue.line, issue.column, issue.path) == (3, 11, "timezone")
    assert issue.message == "'Paris' is not a known time zone"
    assert issue.hint == "did you mean 'Europe/Paris'? use an IANA zone such as Europe/Paris"


def test_bad_staff_zone() -> None:
    issue = only_issue(replace("America/Montreal", "Mars/Olympus"))
    assert issue.path == "staff[1].timezone"
    assert issue.line == line_of(BASE, "America/Montreal")
    assert issue.hint.endswith("use an IANA zone such as Europe/Paris")


def test_bad_phone_message_format() -> None:
    text = replace("    phone: 06 12 34 56 78", "    phone: 06 12")
    issue = only_issue(text)
    assert str(issue) == (
        f"t.yaml:{line_of(text, '06 12')}:12: staff[0].phone: '06 12' is not a valid phone "
        "number for region FR — write it as +33612345678 or 06 12 34 56 78"
    )
    assert issue.code == "invalid_phone"


def test_bad_region() -> None:
    found = issues(replace("phone_region: FR", "phone_region: XX"))
    assert [(i.path, i.code) for i in found] == [("phone_region", "invalid_region")]
    assert found[0].hint == "use a two-letter ISO country code such as FR, BE, CH or CA"


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("8h-12h", "'8h-12h' is not a time range"),
        ("08:00-25:00", "'08:00-25:00' has an impossible time"),
        ("08:60-12:00", "'08:60-12:00' has an impossible time"),
        ("10:00-10:00", "'10:00-10:00' is empty (it starts when it ends)"),
    ],
)
def test_bad_time_range(written: str, message: str) -> None:
    text = replace("[08:00-12:00, 14:00-18:00]", f"[08:00-12:00, {written}]")
    issue = only_issue(text)
    assert (issue.line, issue.column) == (6, 22)
    assert issue.path == "business_hours.mon[1]"
    assert issue.message == message
    assert "HH:MM-HH:MM" in issue.hint or "00:00-24:00" in issue.hint


def test_overlapping_ranges() -> None:
    issue = only_issue(replace("14:00-18:00", "11:00-18:00"))
    assert (issue.line, issue.path) == (6, "business_hours.mon")
    assert issue.message == "08:00-12:00 and 11:00-18:00 overlap"


def test_unknown_weekday_suggests() -> None:
    issue = only_issue(replace("  fri: 22:00-06:00", "  friday: 22:00-06:00"))
    assert (issue.line, issue.column) == (7, 3)
    assert issue.hint.startswith("did you mean 'fri'?")


def test_unknown_call_type_in_rule() -> None:
    text = replace("{call_types: [devis]}", "{call_types: [devis, urgense]}")
    issue = only_issue(text)
    assert issue.path == "rules.rules[2].when.call_types[1]"
    assert (issue.line, issue.column) == (line_of(text, "urgense"), 34)
    assert issue.message == "unknown call type 'urgense'"
    assert issue.hint == "did you mean 'urgence'? known call types: devis, urgence, spam"


def test_unknown_connection_in_rule_and_default() -> None:
    text = replace("then: [{connection: sms}, {connection: crm}]", "then: [{connection: smss}]")
    text = replace("    then: [{connection: mail}]", "    then: [{connection: email}]", text)
    found = issues(text)
    assert [(i.path, i.line, i.code) for i in found] == [
        ("rules.rules[1].then[0].connection", line_of(text, "smss"), "unknown_connection"),
        ("rules.default.then[0].connection", line_of(text, "email"), "unknown_connection"),
    ]
    assert found[0].hint == (
        "did you mean 'sms'? known connections: crm, sms, mail (declare it under `connections:`)"
    )
    assert found[1].hint.startswith("did you mean 'mail'?")


def test_staff_calendar_references() -> None:
    text = replace(
        "    name: Jean\n", "    name: Jean\n    calendar: {connection: agenda, id: jean@x.fr}\n"
    )
    issue = only_issue(text)
    assert issue.path == "staff[0].calendar.connection"
    assert issue.line == line_of(text, "agenda")
    assert issue.code == "unknown_connection"
    issue = only_issue(text.replace("connection: agenda", "connection: crm"))
    assert issue.code == "not_a_calendar"
    assert issue.message == "connection 'crm' is a crm connection, not a calendar"
    calendar = text.replace("connection: agenda", "connection: sms").replace(
        "  sms:\n    provider: webhook\n", "  sms:\n    provider: webhook\n    role: calendar\n"
    )
    assert load(calendar).staff[0].calendar.connection == "sms"


def test_duplicate_ids() -> None:
    text = replace("  - id: lea", "  - id: jean")
    issue = only_issue(text)
    assert (issue.path, issue.line, issue.code) == ("staff[1].id", 13, "duplicate_id")
    assert issue.hint == "staff[0] (line 10) already uses it; give each one its own id"

    text = replace("  - id: spam\n", "  - id: devis\n")
    found = issues(text)
    assert [(i.path, i.code) for i in found] == [
        ("call_types[2].id", "duplicate_id"),
        ("rules.rules[0].when.call_types[0]", "unknown_call_type"),  # spam is gone
    ]


def test_duplicate_yaml_key() -> None:
    text = replace("    url: https://sms.example.fr/hook", "    url: a\n    url: b")
    issue = only_issue(text)
    assert (issue.line, issue.column) == (line_of(text, "url: b"), 5)
    assert issue.path == "connections.sms.url"
    assert issue.code == "duplicate_key"
    assert issue.message == "duplicate key 'url'"
    assert (
        issue.hint
        == f"'url' is already set on line {line_of(text, 'url: a')}; keep only one of them"
    )


def test_yaml_syntax_error() -> None:
    text = replace("    name: Léa", "    name: Léa: la patronne")
    issue = only_issue(text)
    assert (issue.line, issue.column) == (line_of(text, "Léa"), 14)  # the second colon
    assert issue.code == "yaml_syntax"
    assert issue.message.startswith("YAML syntax error: mapping values are not allowed here")
    assert issue.hint == "quote values that contain ': ', or check the indentation"


def test_yaml_tab_and_unclosed_quote() -> None:
    issue = only_issue("id: a\n\tname: x\n")
    assert (issue.line, issue.column, issue.hint) == (2, 1, "indent with spaces, never tabs")
    issue = only_issue("id: a\nname: 'open\ntimezone: x\n")
    assert (issue.line, issue.column) == (2, 7)  # where the quote was opened


def test_unset_env_var() -> None:
    text = replace("    url: https://mail.example.fr/hook",
                   "    url: ${RELAIS_TENANT_ACME_PLOMBERIE_MAIL}/h")
    issue = only_issue(text)
    assert (issue.line, issue.column) == (line_of(text, "RELAIS_TENANT_ACME_PLOMBERIE_MAIL"), 10)
    assert issue.path == "connections.mail.url"
    assert issue.code == "env_unset"
    assert issue.message == "environment variable RELAIS_TENANT_ACME_PLOMBERIE_MAIL is not set"
    assert "${RELAIS_TENANT_ACME_PLOMBERIE_MAIL:-value}" in issue.hint
    assert (
        load(text, {"RELAIS_TENANT_ACME_PLOMBERIE_MAIL": "https://m.fr"})
        .connections["mail"]
        .connector_settings()["url"]
        == "https://m.fr/h"
    )


def test_server_secrets_are_not_readable() -> None:
    text = replace("    url: https://mail.example.fr/hook", "    url: https://x.fr/${HOME}")
    issue = only_issue(text, {})
    assert issue.code == "env_not_allowed"
    assert issue.message == "environment variable HOME cannot be used in a tenant file"


def test_missing_key_points_at_the_parent() -> None:
    text = replace("    url: https://sms.example.fr/hook\n", "")
    issue = only_issue(text)
    assert (issue.line, issue.column) == (line_of(text, "  sms:"), 3)
    assert issue.path == "connections.sms.url"
    assert issue.message == "missing required key 'url'"
    assert issue.hint.startswith("add `url: ")


def test_missing_top_level_key() -> None:
    issue = only_issue(replace("timezone: Europe/Paris\n", ""))
    assert (issue.line, issue.column, issue.path) == (1, 1, "timezone")
    assert issue.hint == "add `timezone: Europe/Paris`"


def test_bad_enum_suggests() -> None:
    issue = only_issue(replace("urgency_default: urgent", "urgency_default: urgnt"))
    assert issue.path == "call_types[1].urgency_default"
    assert issue.hint == "did you mean 'urgent'? use one of 'low', 'normal', 'high' or 'urgent'"


def test_unknown_provider() -> None:
    text = replace("    role: crm\n", "").replace(
        "provider: webhook\n", "provider: salesforse\n", 1
    )
    issue = only_issue(text)
    assert (issue.path, issue.line) == ("connections.crm.provider", line_of(text, "salesforse"))
    assert issue.hint.startswith("did you mean 'salesforce'? use one of: webhook, salesforce")


def test_webhook_settings_validated() -> None:
    found = issues(
        replace(
            "    url: https://mail.example.fr/hook",
            "    url: ftp://x\n    timeout_seconds: 120\n    headers: {Idempotency-Key: x}",
        )
    )
    assert [(i.path, i.code) for i in found] == [
        ("connections.mail.url", "invalid_url"),
        ("connections.mail.timeout_seconds", "out_of_range"),
        ("connections.mail.headers", "reserved_header"),
    ]
    assert found[1].message == "120 is above the maximum of 60"


def test_actions_validated() -> None:
    text = replace("[{drop: true}]", "[{drop: true}, {connection: crm}]")
    issue = only_issue(text)
    assert issue.path == "rules.rules[0].then"
    assert issue.message == "a rule that drops the message cannot also deliver it"
    issue = only_issue(replace("[{drop: true}]", "[{drop: true, connection: crm}]"))
    assert issue.path == "rules.rules[0].then[0]"
    assert issue.message == "an action needs exactly one of `connection` or `drop`"


def test_default_rule_cannot_have_when() -> None:
    text = replace("  default:\n", "  default:\n    when: {urgency: [low]}\n")
    issue = only_issue(text)
    assert (issue.path, issue.line) == ("rules.default.when", line_of(text, "urgency: [low]"))
    assert issue.hint.startswith("the default rule applies when no other rule matched")


def test_catch_all_rule_before_others_is_refused_in_mode_first() -> None:
    text = replace("      when: {call_types: [spam]}\n", "")
    issue = only_issue(text)
    assert issue.code == "unreachable_rule"
    assert issue.path == "rules.rules[0].name"
    load(text.replace("mode: first", "mode: all"))  # fine when every rule applies


def test_many_issues_at_once_sorted_and_as_json() -> None:
    text = replace("timezone: Europe/Paris", "timezone: Nowhere")
    text = replace("    phone: 06 12 34 56 78", "    phone: 12", text)
    with pytest.raises(ConfigError) as caught:
        load(text)
    err = caught.value
    assert [i.path for i in err.issues] == ["timezone", "staff[0].phone"]
    assert str(err).splitlines()[0].startswith("t.yaml:3:11: timezone: 'Nowhere' is not")
    assert len(str(err).splitlines()) == 2
    assert err.as_json()[1] == {
        "file": "t.yaml",
        "line": 12,
        "column": 12,
        "path": "staff[0].phone",
        "message": "'12' is not a valid phone number for region FR",
        "hint": "write it as +33612345678 or 06 12 34 56 78",
        "code": "invalid_phone",
    }


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "empty"),
        ("- a\n- b\n", "not_a_mapping"),
        ("a: 1\n---\nb: 2\n", "yaml_syntax"),
        ("a: !!python/object:os.system x\n", "yaml"),
        ("a: &x [*x]\n", "yaml"),
        ("a: \x07\n", "yaml_syntax"),
    ],
)
def test_malformed_documents(text: str, code: str) -> None:
    assert only_issue(text).code == code


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("id: a\nname: Léa\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_tenant_file(path)
    assert (caught.value.issues[0].line, caught.value.issues[0].code) == (2, "encoding")


# --------------------------------------------------------------------------- planning


def test_plan_mode_first() -> None:
    config = load(BASE)
    plan = plan_deliveries(config, "urgence")  # urgency defaults to the call type's: urgent
    assert plan.urgency == "urgent"
    assert [(d.rule, d.connection, d.provider, d.action) for d in plan.deliveries] == [
        ("urgent", "sms", "webhook", {}),
        ("urgent", "crm", "webhook", {}),
    ]
    assert [(t.rule, t.matched) for t in plan.trace] == [
        ("spam", False),
        ("urgent", True),
        ("devis", False),
        ("default", False),
    ]
    assert plan.trace[0].reason == "call type 'urgence' is not in [spam]"
    assert plan.trace[1].reason == "urgency 'urgent' is in [urgent, high]"
    assert plan.trace[2].reason == "not evaluated: rule 'urgent' already matched (mode first)"
    assert plan.dropped is False and plan.used_default is False

    devis = plan_deliveries(config, "devis", "high")  # first match wins: urgent, not devis
    assert [d.connection for d in devis.deliveries] == ["sms", "crm"]


def test_plan_mode_all_deduplicates_by_connection() -> None:
    config = load(replace("mode: first", "mode: all"))
    plan = plan_deliveries(config, "devis", "high")
    assert [(d.rule, d.connection) for d in plan.deliveries] == [
        ("urgent", "sms"),
        ("urgent", "crm"),
        ("devis", "mail"),
    ]
    assert [(t.rule, t.matched) for t in plan.trace] == [
        ("spam", False),
        ("urgent", True),
        ("devis", True),
        ("default", False),
    ]
    assert plan.explanation == "3 delivery(ies) by rules 'urgent', 'devis': sms, crm, mail"


def test_plan_default_rule() -> None:
    config = load(BASE)
    plan = plan_deliveries(config, "devis", "low")
    assert [(d.rule, d.connection) for d in plan.deliveries] == [
        ("devis", "crm"),
        ("devis", "mail"),
    ]
    plan = plan_deliveries(config, "urgence", "normal")
    assert plan.used_default is True
    assert [(d.rule, d.connection) for d in plan.deliveries] == [("default", "mail")]
    assert plan.trace[-1].matched is True


def test_plan_drop() -> None:
    config = load(BASE)
    plan = plan_deliveries(config, "spam", "urgent")
    assert plan.dropped is True
    assert plan.deliveries == []
    assert plan.empty is False
    # In mode all a drop wins over the other matching rules.
    config = load(replace("mode: first", "mode: all"))
    plan = plan_deliveries(config, "spam", "urgent")
    assert (plan.dropped, plan.deliveries) == (True, [])
    assert [t.matched for t in plan.trace[:2]] == [True, True]


def test_plan_without_default_is_empty() -> None:
    config = load(replace("  default:\n    then: [{connection: mail}]\n", ""))
    plan = plan_deliveries(config, "urgence", "low")
    assert plan.empty is True
    assert (plan.deliveries, plan.dropped, plan.used_default) == ([], False, False)
    assert plan.explanation == (
        "no rule matched call type 'urgence' with urgency 'low' and there is no default rule"
    )


def test_plan_rejects_unknown_inputs() -> None:
    config = load(BASE)
    with pytest.raises(PlanError, match="unknown call type 'nope'; known call types: devis"):
        plan_deliveries(config, "nope", "low")
    with pytest.raises(PlanError, match="unknown urgency 'asap'"):
        plan_deliveries(config, "devis", "asap")


def test_plan_is_deterministic() -> None:
    config = load(replace("mode: first", "mode: all"))
    plans = {plan_deliveries(config, "devis", "urgent").model_dump_json() for _ in range(5)}
    assert len(plans) == 1


def test_every_condition_has_a_matcher() -> None:
    assert set(When.model_fields) == set(MATCHERS)


def test_error_example_in_the_sample_file_is_exact() -> None:
    path = EXAMPLES / "cabinet-durand.yaml"
    text = path.read_text()
    documented = " ".join(
        line.removeprefix("#").strip() for line in text.splitlines()[11:13]
    ).replace("cabinet-durand.yaml", str(path))
    broken = replace('phone: "+33 6 98 76 54 32"', "phone: 06 12", text)
    with pytest.raises(ConfigError) as caught:
        load_tenant_config(broken, str(path), env=DEMO_ENV)
    assert str(caught.value) == documented


def test_empty_sections_are_empty() -> None:
    text = replace(BASE.split("call_types:")[0].split("staff:")[1], "\n#  - id: jean\n")
    config = load(text.replace("  closures: [2025-12-26]", "  closures:"))
    assert config.staff == []
    assert config.business_hours is not None and config.business_hours.closures == []


def test_config_error_pickles() -> None:
    with pytest.raises(ConfigError) as caught:
        load(replace("timezone: Europe/Paris", "timezone: Nowhere"))
    again = pickle.loads(pickle.dumps(caught.value))
    assert again.issues == caught.value.issues
    assert str(again) == str(caught.value)


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    issue = only_issue("\n".join(lines) + "\n")
    assert issue.message == "the document expands to more than 50000 values"


def test_webhook_concurrency_and_order() -> None:
    text = replace("    url: https://crm.example.fr/hook\n",
                   "    url: https://crm.example.fr/hook\n    ordered: true\n    concurrency: 4\n")
    settings = load(text).connections["crm"].connector_settings()
    assert (settings["ordered"], settings["concurrency"]) == (True, 4)
    bad = replace("    url: https://crm.example.fr/hook\n",
                  "    url: https://crm.example.fr/hook\n    concurrency: 0\n")
    issue = only_issue(bad)
    assert issue.path == "connections.crm.concurrency"
    assert issue.line == line_of(bad, "concurrency: 0")
