"""The transmission-rule language: windows, holidays, on-call, ladders, recipients, explain."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from mappings import (
    CallContext,
    ConfigError,
    ConfigIssue,
    DeliveryPlan,
    NoOnCallSchedule,
    PlanError,
    RenderContext,
    RuleTrace,
    TemplateRenderError,
    TenantConfig,
    explain_text,
    ladder,
    ladders,
    load_tenant_config,
    on_call_at,
    on_call_shifts,
    plan_deliveries,
    plan_for,
    render_template,
    who_is_on_call,
)
from mappings.rules import in_window, open_range, window_weekly
from mappings.schema import parse_days
from mappings.wallclock import wall_instant

PARIS = ZoneInfo("Europe/Paris")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


LAW = """\
id: cabinet-test
name: Cabinet Test
timezone: Europe/Paris
phone_region: FR
language: fr
sensitive: true
business_hours:
  mon: [09:00-12:30, 14:00-19:00]
  tue: [09:00-12:30, 14:00-19:00]
  wed: [09:00-12:30, 14:00-19:00]
  thu: [09:00-12:30, 14:00-19:00]
  fri: [09:00-12:30, 14:00-18:00]
  closures: [2026-08-14]
holidays:
  country: FR
windows:
  soiree: {mon-fri: "19:00-22:00", sat: "09:00-12:00"}
  nuit: {daily: "22:00-06:00"}
staff:
  - id: claire-durand
    name: Maître Claire Durand
    email: c.durand@cabinet.example
    phone: 06 12 34 56 78
  - id: paul-lefevre
    name: Maître Paul Lefèvre
    email: p.lefevre@cabinet.example
    phone: 06 98 76 54 32
  - id: accueil
    name: Accueil
    email: accueil@cabinet.example
call_types:
  - id: nouveau-client
    label: Nouveau client
    intake_fields:
      - {name: domaine, label: Domaine, type: choice, choices: [famille, travail, penal, autre]}
      - {name: adversaire, label: Partie adverse}
  - id: garde-a-vue
    label: Garde à vue
    urgency_default: urgent
    intake_fields:
      - {name: lieu, label: Lieu, required: true}
  - id: suivi
    label: Suivi de dossier
  - id: demarchage
    label: Démarchage
    urgency_default: low
    sensitive: false
connections:
  crm: {provider: salesforce}
  hook: {provider: webhook, url: "https://hooks.example/cabinet"}
on_call:
  rotation: [claire-durand, paul-lefevre]
  handover: "mon 08:00"
  start: 2026-01-05
  overrides:
    - {staff: paul-lefevre, from: 2026-12-24T18:00, to: 2026-12-28T08:00}
templates:
  urgence:
    subject: "Garde à vue : {{ message.intake.lieu }}"
    body: |
      {{ caller.name }} ({{ caller.phone | phone_national }}) appelle pour une garde à vue.
      Lieu : {{ message.intake.lieu }}
  nouveau:
    body: "Nouveau client ({{ message.intake.domaine }}) : {{ caller.name }}"
escalations:
  astreinte:
    steps:
      - {to: on_call, channel: sms, wait: 10m}
      - {to: [claire-durand, paul-lefevre], channel: sms, wait: 15m}
    dead_end: {to: associes@cabinet.example}
rules:
  mode: first
  rules:
    - name: demarchage
      when: {call_types: demarchage}
      then: [{drop: true}]
    - name: garde-a-vue-nuit
      when: {call_types: garde-a-vue, window: [after_hours]}
      then:
        - escalate: astreinte
        - crm: crm
    - name: garde-a-vue-jour
      when: {call_types: garde-a-vue}
      then:
        - sms: {to: [on_call], template: urgence}
        - email: {to: [claire-durand, paul-lefevre], template: urgence}
        - crm: crm
    - name: penal-famille
      when:
        call_types: nouveau-client
        intake: {domaine: [penal, famille]}
      then:
        - email: {to: claire-durand, template: nouveau}
        - connection: crm
    - name: client-connu
      when: {known_contact: true, staff: [claire-durand, paul-lefevre]}
      then:
        - email: {to: [accueil]}
        - crm: crm
    - name: ferie
      when: {holiday: true}
      then:
        - digest: {to: [accueil], at: ["09:00"], channel: email}
  default:
    name: crm-par-defaut
    then: [{crm: crm}, {webhook: hook}]
"""

PLUMBER = """\
id: plombier-test
name: Plomberie Test
timezone: Europe/Paris
phone_region: FR
business_hours:
  mon: [07:30-12:00, 13:30-18:00]
  tue: [07:30-12:00, 13:30-18:00]
  wed: [07:30-12:00, 13:30-18:00]
  thu: [07:30-12:00, 13:30-18:00]
  fri: [07:30-12:00, 13:30-17:00]
  sat: 08:00-12:00
holidays: {country: FR}
windows:
  soiree: {mon-fri: "18:00-22:00"}
  nuit: {daily: "22:00-06:00"}
  tard: {sat: "23:00-02:30"}
  matin: {sun: "02:30-04:00"}
  fin: {fri: "20:00-24:00"}
  debut: {sat: "00:00-01:00"}
staff:
  - {id: jean-martin, name: Jean Martin, email: jean@plomberie.example, phone: 06 11 22 33 44}
  - {id: lucas-martin, name: Lucas Martin, email: lucas@plomberie.example, phone: 07 81 23 45 67}
  - {id: sophie-bernard, name: Sophie Bernard, email: bureau@plomberie.example,
     phone: 04 78 12 34 56}
call_types:
  - id: urgence-fuite
    label: Urgence fuite
    urgency_default: urgent
    intake_fields:
      - {name: adresse, label: Adresse, required: true}
      - {name: eau_coupee, label: Eau coupée, type: bool, required: true}
      - {name: etage, label: Étage, type: number}
  - id: devis
    label: Devis
    intake_fields:
      - {name: nature, label: Nature, type: choice, choices: [chauffe-eau, chaudiere, autre]}
  - id: sav
    label: SAV
  - id: fournisseur
    label: Fournisseur
    urgency_default: low
connections:
  crm: {provider: hubspot}
  sms-gateway: {provider: sms}
on_call:
  rotation:
    - {staff: jean-martin, from: "mon 08:00"}
    - {staff: lucas-martin, from: "fri 18:00"}
  overrides:
    - {staff: sophie-bernard, from: 2026-10-24T20:00, to: 2026-10-25T10:00}
templates:
  fuite:
    body: >-
      Fuite {{ message.intake.adresse }}
      ({% if message.intake.eau_coupee %}eau coupée{% else %}EAU NON COUPÉE{% endif %})
escalations:
  fuite:
    steps:
      - {to: on_call, channel: sms, wait: 10m}
      - {to: jean-martin, channel: sms, wait: 10m}
    dead_end: {to: bureau@plomberie.example}
rules:
  mode: all
  rules:
    - name: crm
      when: {call_types: [urgence-fuite, devis, sav]}
      then: [{crm: crm}]
    - name: fuite-hors-heures
      when: {call_types: urgence-fuite, window: after_hours}
      then: [{escalate: fuite}]
    - name: eau-non-coupee
      when: {call_types: urgence-fuite, intake: {eau_coupee: false}}
      then:
        - sms: {to: [on_call, "06 99 88 77 66"], template: fuite}
    - name: fuite-journee
      when: {call_types: urgence-fuite, window: business_hours}
      then:
        - sms: {to: sophie-bernard, template: fuite}
    - name: devis-resume
      when: {call_types: devis}
      then:
        - digest: {to: sophie-bernard, every: 2h}
    - name: soiree-etage
      when: {window: soiree, intake: {etage: {present: true}}}
      then:
        - email: {to: jean-martin}
  default:
    then:
      - email: {to: bureau@plomberie.example}
"""


def load(text: str) -> TenantConfig:
    return load_tenant_config(text, "t.yaml", env={})


@pytest.fixture(scope="module")
def law() -> TenantConfig:
    return load(LAW)


@pytest.fixture(scope="module")
def plumber() -> TenantConfig:
    return load(PLUMBER)


def replace(old: str, new: str, text: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def line_of(text: str, needle: str) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(lines) == 1, (needle, lines)
    return lines[0]


def issues(text: str) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        load(text)
    return caught.value.issues


def only_issue(text: str) -> ConfigIssue:
    found = issues(text)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def open_at(config: TenantConfig, window: str, at: datetime) -> bool:
    return in_window(config, window, at)[0]


# --------------------------------------------------------------------------- wall clock


def test_wall_instants_on_dst_nights() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 never shows: the jump is its instant.
    assert wall_instant(date(2026, 3, 29), time(2, 30), PARIS) == utc(2026, 3, 29, 1, 0)
    assert wall_instant(date(2026, 3, 29), time(3, 0), PARIS) == utc(2026, 3, 29, 1, 0)
    assert wall_instant(date(2026, 3, 29), time(1, 59), PARIS) == utc(2026, 3, 29, 0, 59)
    # 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 shows twice: the first one.
    assert wall_instant(date(2026, 10, 25), time(2, 30), PARIS) == utc(2026, 10, 25, 0, 30)
    assert wall_instant(date(2026, 10, 25), time(3, 0), PARIS) == utc(2026, 10, 25, 2, 0)


def test_day_specs() -> None:
    assert parse_days("mon-fri") == (0, 1, 2, 3, 4)
    assert parse_days("fri-mon") == (0, 4, 5, 6)
    assert parse_days("sat,sun") == (5, 6)
    assert parse_days("mon-wed, sun") == (0, 1, 2, 6)
    assert parse_days("daily") == (0, 1, 2, 3, 4, 5, 6)


# --------------------------------------------------------------------------- windows


def test_night_window_on_the_spring_forward_night(plumber: TenantConfig) -> None:
    # 22:00 CET on Saturday 28 March to 06:00 CEST on Sunday: 7 hours.
    assert not open_at(plumber, "nuit", utc(2026, 3, 28, 20, 59, 59))
    assert open_at(plumber, "nuit", utc(2026, 3, 28, 21, 0))
    assert open_at(plumber, "nuit", utc(2026, 3, 29, 1, 0))  # 03:00 CEST, just after the jump
    assert open_at(plumber, "nuit", utc(2026, 3, 29, 3, 59, 59))
    assert not open_at(plumber, "nuit", utc(2026, 3, 29, 4, 0))
    found = open_range(window_weekly(plumber, "nuit"), utc(2026, 3, 28, 23, 0), PARIS)
    assert found is not None and found.end - found.start == timedelta(hours=7)
    assert in_window(plumber, "nuit", utc(2026, 3, 28, 21, 0))[1] == (
        "window 'nuit' is open at sat 2026-03-28 22:00 (CET): sat 22:00-06:00 (2026-03-28)"
    )
    assert in_window(plumber, "nuit", utc(2026, 3, 29, 4, 0))[1] == (
        "window 'nuit' is closed at sun 2026-03-29 06:00 (CEST)"
    )


def test_night_window_on_the_fall_back_night(plumber: TenantConfig) -> None:
    # 22:00 CEST on Saturday 24 October to 06:00 CET on Sunday: 9 hours.
    assert not open_at(plumber, "nuit", utc(2026, 10, 24, 19, 59, 59))
    assert open_at(plumber, "nuit", utc(2026, 10, 24, 20, 0))
    first, second = utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)  # 02:30 twice
    assert in_window(plumber, "nuit", first)[1].startswith(
        "window 'nuit' is open at sun 2026-10-25 02:30 (CEST)"
    )
    assert in_window(plumber, "nuit", second)[1] == (
        "window 'nuit' is open at sun 2026-10-25 02:30 (CET): sat 22:00-06:00 (2026-10-24)"
    )
    assert open_at(plumber, "nuit", utc(2026, 10, 25, 4, 59, 59))
    assert not open_at(plumber, "nuit", utc(2026, 10, 25, 5, 0))
    found = open_range(window_weekly(plumber, "nuit"), first, PARIS)
    assert found is not None and found.end - found.start == timedelta(hours=9)


def test_window_ends_inside_the_gap_and_starts_inside_the_fold(plumber: TenantConfig) -> None:
    # sat 23:00-02:30 on 28 March: 02:30 never shows, the window closes at the jump.
    assert open_at(plumber, "tard", utc(2026, 3, 29, 0, 59, 59))
    assert not open_at(plumber, "tard", utc(2026, 3, 29, 1, 0))
    # sun 02:30-04:00 on 25 October: opens at the first 02:30, stays open through the
    # repeated hour, closes at 04:00 CET.
    assert not open_at(plumber, "matin", utc(2026, 10, 25, 0, 29, 59))
    assert open_at(plumber, "matin", utc(2026, 10, 25, 0, 30))
    assert open_at(plumber, "matin", utc(2026, 10, 25, 1, 15))  # 02:15 CET, second pass
    assert open_at(plumber, "matin", utc(2026, 10, 25, 2, 59, 59))
    assert not open_at(plumber, "matin", utc(2026, 10, 25, 3, 0))


def test_midnight_is_exact(plumber: TenantConfig) -> None:
    midnight = utc(2026, 3, 27, 23, 0)  # Saturday 28 March 00:00 CET
    assert open_at(plumber, "fin", midnight - timedelta(seconds=1))  # fri 20:00-24:00
    assert not open_at(plumber, "fin", midnight)
    assert not open_at(plumber, "debut", midnight - timedelta(seconds=1))
    assert open_at(plumber, "debut", midnight)  # sat 00:00-01:00
    assert in_window(plumber, "nuit", midnight)[1] == (
        "window 'nuit' is open at sat 2026-03-28 00:00 (CET): fri 22:00-06:00 (2026-03-27)"
    )


def test_business_hours_and_after_hours(law: TenantConfig) -> None:
    at = utc(2026, 3, 31, 8, 15)  # tue 10:15 CEST
    assert in_window(law, "business_hours", at) == (
        True,
        "within business hours at tue 2026-03-31 10:15 (CEST): tue 09:00-12:30 (2026-03-31)",
    )
    assert in_window(law, "after_hours", at)[0] is False
    lunch = utc(2026, 3, 31, 10, 30)  # 12:30 CEST: the morning range has just ended
    assert in_window(law, "after_hours", lunch) == (
        True, "outside business hours at tue 2026-03-31 12:30 (CEST)")  # fmt: skip
    christmas = utc(2026, 12, 25, 9, 0)  # a Friday, 10:00 CET
    assert in_window(law, "after_hours", christmas) == (
        True,
        "outside business hours at fri 2026-12-25 10:00 (CET): "
        "2026-12-25 is a public holiday in FR (Noël)",
    )
    closure = utc(2026, 8, 14, 8, 0)
    assert in_window(law, "business_hours", closure) == (
        False,
        "outside business hours at fri 2026-08-14 10:00 (CEST): "
        "2026-08-14 is a closure day (business_hours.closures)",
    )


# --------------------------------------------------------------------------- holidays


def _condition(trace: list[RuleTrace], rule: str, condition: str) -> tuple[bool, str]:
    found = next(t for t in trace if t.rule == rule)
    cond = next(c for c in found.conditions if c.condition == condition)
    return cond.matched, cond.reason


def test_holiday_condition_at_midnight(law: TenantConfig) -> None:
    def holiday(at: datetime) -> tuple[bool, str]:
        plan = plan_for(law, CallContext(call_type="suivi", at=at))
        return _condition(plan.trace, "ferie", "holiday")

    assert holiday(utc(2026, 12, 24, 22, 59, 59)) == (
        False, "thu 2026-12-24 is neither a public holiday nor a closure day")  # fmt: skip
    assert holiday(utc(2026, 12, 24, 23, 0)) == (  # 00:00 CET on the 25th
        True, "fri 2026-12-25 is a public holiday in FR (Noël)")  # fmt: skip
    assert holiday(utc(2026, 12, 25, 22, 59, 59))[0] is True
    assert holiday(utc(2026, 12, 25, 23, 0))[0] is False
    assert holiday(utc(2026, 8, 14, 12, 0)) == (
        True, "fri 2026-08-14 is a closure day (business_hours.closures)")  # fmt: skip


def test_holiday_names_follow_the_tenant_language() -> None:
    config = load(replace("language: fr", "language: en", LAW))
    assert in_window(config, "after_hours", utc(2026, 12, 25, 9, 0))[1].endswith(
        "2026-12-25 is a public holiday in FR (Christmas Day)"
    )


def test_holiday_false_and_without_time(law: TenantConfig) -> None:
    text = replace("when: {holiday: true}", "when: {holiday: false}", LAW)
    config = load(text)
    plan = plan_for(config, CallContext(call_type="suivi", at=utc(2026, 12, 24, 12, 0)))
    assert plan.deliveries[0].target == "digest accueil@cabinet.example"
    plan = plan_deliveries(law, "suivi")
    assert _condition(plan.trace, "ferie", "holiday") == (
        False, "no time given: cannot tell whether it is a holiday (does not match)")  # fmt: skip


# --------------------------------------------------------------------------- on call


def test_weekly_turns_change_hands_exactly_at_the_handover(law: TenantConfig) -> None:
    # Turns of a week from Monday 2026-01-05 08:00: Claire, Paul, Claire…
    # The week of 2026-03-23 (11th turn) is Paul's, the week of 2026-03-30 Claire's;
    # summer time started in between, so the handover is 06:00 UTC instead of 07:00.
    assert who_is_on_call(law, utc(2026, 3, 23, 6, 59, 59)).id == "claire-durand"
    assert who_is_on_call(law, utc(2026, 3, 23, 7, 0)).id == "paul-lefevre"
    assert who_is_on_call(law, utc(2026, 3, 30, 5, 59, 59)).id == "paul-lefevre"
    assert who_is_on_call(law, utc(2026, 3, 30, 6, 0)).id == "claire-durand"
    shift = on_call_at(law, utc(2026, 3, 29, 12, 0))
    assert (shift.staff.id, shift.source) == ("paul-lefevre", "rotation")
    assert (shift.start, shift.end) == (utc(2026, 3, 23, 7, 0), utc(2026, 3, 30, 6, 0))
    assert shift.end - shift.start == timedelta(days=7) - timedelta(hours=1)
    assert who_is_on_call(law, utc(2025, 12, 29, 7, 0)).id == "paul-lefevre"  # before start


def test_on_call_override_cuts_the_rotation(law: TenantConfig) -> None:
    assert who_is_on_call(law, utc(2026, 12, 24, 16, 59, 59)).id == "claire-durand"
    assert who_is_on_call(law, utc(2026, 12, 24, 17, 0)).id == "paul-lefevre"
    shifts = on_call_shifts(law, utc(2026, 12, 21, 12, 0), utc(2027, 1, 5))
    assert [(s.staff.id, s.source, s.start, s.end) for s in shifts] == [
        ("claire-durand", "rotation", utc(2026, 12, 21, 7, 0), utc(2026, 12, 24, 17, 0)),
        ("paul-lefevre", "override", utc(2026, 12, 24, 17, 0), utc(2026, 12, 28, 7, 0)),
        ("paul-lefevre", "rotation", utc(2026, 12, 28, 7, 0), utc(2027, 1, 4, 7, 0)),
        ("claire-durand", "rotation", utc(2027, 1, 4, 7, 0), utc(2027, 1, 11, 7, 0)),
    ]
    assert shifts[1].describe(law) == (
        "paul-lefevre (override, thu 2026-12-24 18:00 (CET) → mon 2026-12-28 08:00 (CET))"
    )


def test_timetable_rotation_over_the_fall_back_weekend(plumber: TenantConfig) -> None:
    shifts = on_call_shifts(plumber, utc(2026, 10, 23), utc(2026, 10, 27))
    assert [(s.staff.id, s.source, s.start, s.end) for s in shifts] == [
        ("jean-martin", "rotation", utc(2026, 10, 19, 6, 0), utc(2026, 10, 23, 16, 0)),
        ("lucas-martin", "rotation", utc(2026, 10, 23, 16, 0), utc(2026, 10, 24, 18, 0)),
        ("sophie-bernard", "override", utc(2026, 10, 24, 18, 0), utc(2026, 10, 25, 9, 0)),
        ("lucas-martin", "rotation", utc(2026, 10, 25, 9, 0), utc(2026, 10, 26, 7, 0)),
        ("jean-martin", "rotation", utc(2026, 10, 26, 7, 0), utc(2026, 10, 30, 17, 0)),
    ]


def test_handover_at_a_time_the_dst_night_skips_or_repeats() -> None:
    text = replace('from: "mon 08:00"', 'from: "sun 02:30"', PLUMBER)
    text = replace('from: "fri 18:00"', 'from: "wed 12:00"', text)
    config = load(text)
    # 29 March: 02:30 does not exist; Jean takes over when the clock jumps (01:00 UTC).
    assert who_is_on_call(config, utc(2026, 3, 29, 0, 59, 59)).id == "lucas-martin"
    assert who_is_on_call(config, utc(2026, 3, 29, 1, 0)).id == "jean-martin"
    # 25 October: 02:30 happens twice; Jean takes over at the first, and keeps it.
    assert who_is_on_call(config, utc(2026, 10, 24, 17, 59, 59)).id == "lucas-martin"
    assert who_is_on_call(config, utc(2026, 10, 25, 0, 29, 59)).id == "sophie-bernard"
    no_override = load(text.split("  overrides:")[0] + "templates:" + text.split("templates:")[1])
    assert who_is_on_call(no_override, utc(2026, 10, 25, 0, 29, 59)).id == "lucas-martin"
    shift = on_call_at(no_override, utc(2026, 10, 25, 1, 30))  # the second 02:30
    assert (shift.staff.id, shift.start) == ("jean-martin", utc(2026, 10, 25, 0, 30))


def test_one_person_rotation_and_errors(plumber: TenantConfig) -> None:
    config = load(
        replace(
            "  rotation:\n    - {staff: jean-martin, from: \"mon 08:00\"}\n"
            "    - {staff: lucas-martin, from: \"fri 18:00\"}\n",
            "  rotation: [lucas-martin]\n",
            PLUMBER,
        )
    )
    assert who_is_on_call(config, utc(2026, 7, 1, 12, 0)).id == "lucas-martin"
    assert who_is_on_call(config, utc(2026, 10, 25, 0, 0)).id == "sophie-bernard"
    without = load(LAW.split("on_call:")[0] + "rules: {}\n")
    with pytest.raises(NoOnCallSchedule):
        who_is_on_call(without, utc(2026, 7, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        who_is_on_call(plumber, datetime(2026, 7, 1, 12, 0))  # noqa: DTZ001


# --------------------------------------------------------------------------- ladders


def test_ladders_are_ready_to_run(law: TenantConfig) -> None:
    assert list(ladders(law)) == ["astreinte"]
    found = ladder(law, "astreinte")
    assert [(s.index, s.to, s.channel, s.wait, s.template) for s in found.steps] == [
        (0, ("on_call",), "sms", timedelta(minutes=10), "default"),
        (1, ("claire-durand", "paul-lefevre"), "sms", timedelta(minutes=15), "default"),
    ]
    end = found.step(2)
    assert (end.dead_end, end.to, end.channel, end.connection) == (
        True, ("associes@cabinet.example",), "email", "")  # fmt: skip
    assert found.total_wait == timedelta(minutes=25)
    with pytest.raises(IndexError):
        found.step(3)
    with pytest.raises(LookupError, match="unknown escalation ladder 'x'; known: astreinte"):
        ladder(law, "x")
    # Waits are elapsed time: 01:55 CET + 10 min is 03:05 CEST on 29 March.
    fired = found.fire_times(datetime(2026, 3, 29, 1, 55, tzinfo=PARIS))
    assert fired == [utc(2026, 3, 29, 0, 55), utc(2026, 3, 29, 1, 5), utc(2026, 3, 29, 1, 20)]
    assert [t.astimezone(PARIS).strftime("%H:%M") for t in fired] == ["01:55", "03:05", "03:20"]
    # on_call is resolved when the step is sent: the Monday handover reaches Claire.
    first = found.steps[0]
    assert [r.address for r in first.recipients(law, utc(2026, 3, 30, 5, 59))] == ["+33698765432"]
    assert [r.address for r in first.recipients(law, utc(2026, 3, 30, 6, 0))] == ["+33612345678"]
    assert [str(r) for r in found.steps[1].recipients(law, utc(2026, 3, 30, 6, 0))] == [
        "+33612345678 (claire-durand)",
        "+33698765432 (paul-lefevre)",
    ]


LADDER = "      - {to: on_call, channel: sms, wait: 10m}"


@pytest.mark.parametrize(
    ("old", "new", "needle", "path", "code", "message"),
    [
        (LADDER, "      - {to: on_call, channel: sms, wait: 0m}", "wait: 0m",
         "escalations.astreinte.steps[0].wait", "invalid_duration", "0m is too short"),
        (LADDER, "      - {to: on_call, channel: sms, wait: 10}", "wait: 10}",
         "escalations.astreinte.steps[0].wait", "invalid_duration", "10 has no unit"),
        (LADDER, "      - {to: paul, channel: sms, wait: 10m}", "to: paul,",
         "escalations.astreinte.steps[0].to[0]", "unknown_staff",
         "unknown staff member 'paul'"),
        (LADDER, "      - {to: accueil, channel: sms, wait: 10m}", "to: accueil,",
         "escalations.astreinte.steps[0].to[0]", "no_address",
         "staff member 'accueil' has no phone number"),
        (LADDER, "      - {to: on_call, channel: fax, wait: 10m}", "channel: fax",
         "escalations.astreinte.steps[0].channel", "invalid_choice",
         "'fax' is not a valid channel"),
        ("    dead_end: {to: associes@cabinet.example}\n", "", "  astreinte:",
         "escalations.astreinte.dead_end", "missing_key", "missing required key 'dead_end'"),
        ("    steps:\n" + LADDER + "\n      - {to: [claire-durand, paul-lefevre], channel: sms, "
         "wait: 15m}\n", "    steps: []\n", "steps: []", "escalations.astreinte.steps",
         "too_short", "needs at least 1 item(s)"),
    ],
)  # fmt: skip
def test_ladders_validated(
    old: str, new: str, needle: str, path: str, code: str, message: str
) -> None:
    text = replace(old, new, LAW)
    issue = only_issue(text)
    assert (issue.path, issue.code, issue.line) == (path, code, line_of(text, needle))
    assert issue.message.startswith(message), issue.message


def test_ladder_on_call_needs_a_schedule_and_reachable_staff() -> None:
    text = replace("    - {staff: paul-lefevre, from: 2026-12-24T18:00, to: 2026-12-28T08:00}",
                   "    - {staff: accueil, from: 2026-12-24T18:00, to: 2026-12-28T08:00}", LAW)
    found = issues(text)
    assert [(i.path, i.code, i.line) for i in found] == [
        ("escalations.astreinte.steps[0].to[0]", "no_address", line_of(text, LADDER.strip())),
        ("rules.rules[2].then[0].sms.to[0]", "no_address", line_of(text, "sms: {to: [on_call]")),
    ]
    assert found[0].message == "on-call staff without a phone number: accueil"
    line = line_of(text, "id: accueil")
    assert found[0].hint == f"add `phone:` to accueil (staff[2], line {line})"
    text = LAW.replace(LAW[LAW.index("on_call:"): LAW.index("templates:")], "")
    found = issues(text)
    assert {(i.code, i.message) for i in found} == {
        ("no_on_call", "on_call needs an on-call schedule")}  # fmt: skip
    assert len(found) == 2


# --------------------------------------------------------------------------- recipients


def test_recipients_resolved_and_deliveries_redacted(law: TenantConfig) -> None:
    plan = plan_for(law, CallContext(call_type="garde-a-vue", at=utc(2026, 3, 31, 8, 0),
                                     intake={"lieu": "Commissariat Lyon 3"}))  # fmt: skip
    assert [
        (d.kind, d.connection, d.provider, [r.address for r in d.recipients], d.redact)
        for d in plan.deliveries
    ] == [
        ("sms", "", "sms", ["+33612345678"], True),
        ("email", "", "email", ["c.durand@cabinet.example"], True),
        ("email", "", "email", ["p.lefevre@cabinet.example"], True),
        # a sensitive call type: the CRM gets the notice too unless it declares
        # ``content: full`` (issue 15)
        ("crm", "crm", "salesforce", [], True),
    ]
    assert plan.deliveries[3].content == "notice"
    assert plan.deliveries[0].action == {
        "kind": "sms",
        "channel": "sms",
        "to": "+33612345678",
        "template": "urgence",
        "redact": True,
        "staff_id": "claire-durand",
        "on_call": True,
    }
    assert plan.deliveries[3].action == {"redact": True}  # the notice form, kept with it
    assert plan.sensitive is True


def test_literal_addresses_dedup_and_via(plumber: TenantConfig) -> None:
    plan = plan_for(plumber, CallContext(call_type="urgence-fuite", at=utc(2026, 7, 1, 8, 0),
                                         intake={"eau_coupee": False}))  # fmt: skip
    sms = [d for d in plan.deliveries if d.kind == "sms"]
    # on_call (Jean this Wednesday), the literal number in E.164, and Sophie (business hours).
    assert [(d.rule, d.connection, d.recipients[0].address, d.recipients[0].written,
             d.redact) for d in sms] == [
        ("eau-non-coupee", "sms-gateway", "+33611223344", "on_call", False),
        ("eau-non-coupee", "sms-gateway", "+33699887766", "+33699887766", False),
        ("fuite-journee", "sms-gateway", "+33478123456", "sophie-bernard", False),
    ]  # fmt: skip
    text = replace("- email: {to: claire-durand, template: nouveau}",
                   "- email: {to: [claire-durand, c.durand@cabinet.example, on_call]}", LAW)
    plan = plan_for(load(text), CallContext(call_type="nouveau-client", at=utc(2026, 3, 31, 8),
                                            intake={"domaine": "penal"}))  # fmt: skip
    assert [d.target for d in plan.deliveries] == ["email c.durand@cabinet.example", "crm"]


def test_sensitivity_follows_the_call_type() -> None:
    text = replace("      then: [{drop: true}]", "      then: [{email: {to: accueil}}]", LAW)
    config = load(text)
    plan = plan_for(config, CallContext(call_type="demarchage", at=utc(2026, 3, 31, 8)))
    assert (plan.sensitive, [d.redact for d in plan.deliveries]) == (False, [False])
    plan = plan_for(config, CallContext(call_type="suivi", at=utc(2026, 12, 25, 8)))
    assert (plan.sensitive, [(d.kind, d.redact) for d in plan.deliveries]) == (
        True, [("digest", True)])  # fmt: skip
    plan = plan_for(config, CallContext(call_type="garde-a-vue", at=utc(2026, 3, 28, 22, 30)))
    assert [(d.kind, d.redact) for d in plan.deliveries] == [("escalate", True), ("crm", True)]


# --------------------------------------------------------------------------- explain: law firm


def test_explain_law_spam_is_dropped(law: TenantConfig) -> None:
    plan = plan_for(law, CallContext(call_type="demarchage", at=utc(2026, 3, 31, 8)))
    assert (plan.dropped, plan.deliveries, plan.urgency) == (True, [], "low")
    assert plan.explanation == "dropped by rule 'demarchage': no delivery"
    assert plan.trace[0].reason == "call type 'demarchage' is in [demarchage]"


def test_explain_law_night_custody_escalates(law: TenantConfig) -> None:
    plan = plan_for(law, CallContext(call_type="garde-a-vue", at=utc(2026, 3, 28, 22, 30)))
    assert [(t.rule, t.matched, t.evaluated) for t in plan.trace[:3]] == [
        ("demarchage", False, True), ("garde-a-vue-nuit", True, True),
        ("garde-a-vue-jour", False, False)]  # fmt: skip
    assert _condition(plan.trace, "garde-a-vue-nuit", "window") == (
        True, "outside business hours at sat 2026-03-28 23:30 (CET)")  # fmt: skip
    assert [d.target for d in plan.deliveries] == ["escalate astreinte", "crm"]
    # Paul is on call that week; the ladder's first step goes to him.
    assert [str(r) for r in plan.deliveries[0].recipients] == [
        "+33698765432 (paul-lefevre, on call)"]  # fmt: skip
    assert plan.deliveries[0].action == {"kind": "escalate", "ladder": "astreinte", "redact": True}
    assert plan.explanation == (
        "2 delivery(ies) by rule 'garde-a-vue-nuit': escalate astreinte, crm")  # fmt: skip


def test_explain_law_day_custody_texts_the_lawyer_on_call(law: TenantConfig) -> None:
    plan = plan_for(law, CallContext(call_type="garde-a-vue", at=utc(2026, 3, 31, 8, 0)))
    assert _condition(plan.trace, "garde-a-vue-nuit", "window") == (
        False,
        "within business hours at tue 2026-03-31 10:00 (CEST): tue 09:00-12:30 (2026-03-31)",
    )
    assert plan.trace[1].reason == _condition(plan.trace, "garde-a-vue-nuit", "window")[1]
    assert [d.target for d in plan.deliveries] == [
        "sms +33612345678", "email c.durand@cabinet.example", "email p.lefevre@cabinet.example",
        "crm"]  # fmt: skip


def test_explain_law_new_client_by_practice_area(law: TenantConfig) -> None:
    def plan(domaine: str) -> DeliveryPlan:
        return plan_for(law, CallContext(call_type="nouveau-client", at=utc(2026, 3, 31, 8),
                                         intake={"domaine": domaine}))  # fmt: skip

    penal = plan("penal")
    assert _condition(penal.trace, "penal-famille", "intake") == (
        True, "intake domaine 'penal' is in [penal, famille]")  # fmt: skip
    assert [(d.target, d.template) for d in penal.deliveries] == [
        ("email c.durand@cabinet.example", "nouveau"), ("crm", None)]  # fmt: skip
    travail = plan("Travail")
    assert _condition(travail.trace, "penal-famille", "intake") == (
        False, "intake domaine 'Travail' is not in [penal, famille]")  # fmt: skip
    assert travail.used_default is True
    assert [d.target for d in travail.deliveries] == ["crm", "hook"]
    assert travail.explanation == "2 delivery(ies) by the default rule: crm, hook"
    assert plan("FAMILLE").deliveries[0].target == "email c.durand@cabinet.example"


def test_explain_law_known_client_asking_for_a_lawyer(law: TenantConfig) -> None:
    ctx = CallContext(call_type="suivi", at=utc(2026, 12, 25, 9), known_contact=True,
                      staff_id="paul-lefevre")  # fmt: skip
    plan = plan_for(law, ctx)
    rule = next(t for t in plan.trace if t.rule == "client-connu")
    assert [(c.condition, c.expected, c.matched, c.reason) for c in rule.conditions] == [
        ("known_contact", "true", True, "the caller is a known contact"),
        ("staff", "[claire-durand, paul-lefevre]", True,
         "staff member asked for 'paul-lefevre' is in [claire-durand, paul-lefevre]"),
    ]  # fmt: skip
    assert [d.target for d in plan.deliveries] == ["email accueil@cabinet.example", "crm"]
    unknown = plan_for(law, CallContext(call_type="suivi", at=utc(2026, 3, 31, 9),
                                        staff_id="paul-lefevre"))  # fmt: skip
    assert _condition(unknown.trace, "client-connu", "known_contact") == (
        False, "unknown whether the caller is a known contact (does not match)")  # fmt: skip
    assert unknown.used_default is True


def test_explain_law_holiday_digest(law: TenantConfig) -> None:
    plan = plan_for(law, CallContext(call_type="suivi", at=utc(2026, 12, 25, 9),
                                     known_contact=False))  # fmt: skip
    [digest] = plan.deliveries
    assert (digest.rule, digest.kind, digest.recipients[0].address) == (
        "ferie", "digest", "accueil@cabinet.example")  # fmt: skip
    assert digest.digest is not None
    assert (digest.digest.at, digest.digest.every) == (["09:00"], None)
    assert digest.digest.due_at == utc(2026, 12, 26, 8, 0)  # next 09:00 CET
    assert digest.action["digest"] == {"at": ["09:00"], "due_at": "2026-12-26T08:00:00Z"}


def test_explain_law_without_a_time(law: TenantConfig) -> None:
    plan = plan_deliveries(law, "garde-a-vue")
    assert _condition(plan.trace, "garde-a-vue-nuit", "window") == (
        False,
        "no time given: cannot tell whether the call is in 'after_hours' (does not match)",
    )
    assert [d.target for d in plan.deliveries] == [
        "email c.durand@cabinet.example", "email p.lefevre@cabinet.example", "crm"]  # fmt: skip
    assert plan.notes == [
        "rule 'garde-a-vue-jour': sms on_call: no time given, so nobody is on call (not sent)"
    ]
    assert plan.at is None


# --------------------------------------------------------------------------- explain: plumber


def test_explain_plumber_saturday_night_leak(plumber: TenantConfig) -> None:
    ctx = CallContext(call_type="urgence-fuite", at=utc(2026, 10, 24, 21, 30),
                      intake={"adresse": "3 rue des Lilas", "eau_coupee": False})  # fmt: skip
    plan = plan_for(plumber, ctx)
    assert [(t.rule, t.matched) for t in plan.trace] == [
        ("crm", True), ("fuite-hors-heures", True), ("eau-non-coupee", True),
        ("fuite-journee", False), ("devis-resume", False), ("soiree-etage", False),
        ("default", False)]  # fmt: skip
    assert [d.target for d in plan.deliveries] == [
        "crm", "escalate fuite", "sms +33478123456", "sms +33699887766"]  # fmt: skip
    assert [r.staff_id for r in plan.deliveries[1].recipients] == ["sophie-bernard"]  # override
    assert explain_text(plan) == "\n".join([
        "call_type: urgence-fuite · urgency: urgent · at: sat 2026-10-24 23:30 (CEST)",
        "rules (mode all):",
        "  ✓ crm",
        "      ✓ call_types: [urgence-fuite, devis, sav] — call type 'urgence-fuite' is in"
        " [urgence-fuite, devis, sav]",
        "  ✓ fuite-hors-heures",
        "      ✓ call_types: [urgence-fuite] — call type 'urgence-fuite' is in [urgence-fuite]",
        "      ✓ window: [after_hours] — outside business hours at sat 2026-10-24 23:30 (CEST)",
        "  ✓ eau-non-coupee",
        "      ✓ call_types: [urgence-fuite] — call type 'urgence-fuite' is in [urgence-fuite]",
        "      ✓ intake: {eau_coupee: false} — intake eau_coupee false is in [false]",
        "  ✗ fuite-journee",
        "      ✓ call_types: [urgence-fuite] — call type 'urgence-fuite' is in [urgence-fuite]",
        "      ✗ window: [business_hours] — outside business hours at sat 2026-10-24 23:30"
        " (CEST)",
        "  ✗ devis-resume",
        "      ✗ call_types: [devis] — call type 'urgence-fuite' is not in [devis]",
        "  ✗ soiree-etage",
        "      ✗ window: [soiree] — window 'soiree' is closed at sat 2026-10-24 23:30 (CEST)",
        "      ✗ intake: {etage: {present: true}} — intake etage is empty",
        "  – default (default): not needed: a rule matched",
        "deliveries (4):",
        "  1. crm crm (hubspot, crm) · rule crm",
        "  2. escalate fuite (step 1: +33478123456 (sophie-bernard, on call)) · rule"
        " fuite-hors-heures",
        "  3. sms → +33478123456 (sophie-bernard, on call) via sms-gateway · template fuite"
        " · rule eau-non-coupee",
        "  4. sms → +33699887766 via sms-gateway · template fuite · rule eau-non-coupee",
        "→ 4 delivery(ies) by rules 'crm', 'fuite-hors-heures', 'eau-non-coupee': crm,"
        " escalate fuite, sms +33478123456, sms +33699887766",
    ])  # fmt: skip


def test_explain_plumber_weekday_leak_water_cut(plumber: TenantConfig) -> None:
    ctx = CallContext(call_type="urgence-fuite", at=utc(2026, 10, 20, 8, 0),
                      intake={"adresse": "3 rue des Lilas", "eau_coupee": "oui", "etage": 3})
    plan = plan_for(plumber, ctx)
    assert _condition(plan.trace, "eau-non-coupee", "intake") == (
        False, "intake eau_coupee 'oui' is not in [false]")  # fmt: skip
    assert _condition(plan.trace, "soiree-etage", "intake") == (True, "intake etage is filled")
    assert [d.target for d in plan.deliveries] == ["crm", "sms +33478123456"]


def test_explain_plumber_quote_digest_on_the_dst_night(plumber: TenantConfig) -> None:
    plan = plan_for(plumber, CallContext(call_type="devis", at=utc(2026, 3, 29, 0, 30)))
    [crm, digest] = plan.deliveries
    assert (crm.target, digest.target) == ("crm", "digest bureau@plomberie.example")
    assert digest.digest is not None and digest.digest.every == "2h"
    # Every 2 h from local midnight: 02:00 does not exist that night, so 03:00 CEST.
    assert digest.digest.due_at == utc(2026, 3, 29, 1, 0)
    late = plan_for(plumber, CallContext(call_type="devis", at=utc(2026, 3, 29, 21, 0)))
    assert late.deliveries[1].digest.due_at == utc(2026, 3, 29, 22, 0)  # type: ignore[union-attr]


def test_explain_plumber_evening_call_with_a_floor(plumber: TenantConfig) -> None:
    plan = plan_for(plumber, CallContext(call_type="sav", at=utc(2026, 3, 27, 17, 30),
                                         intake={"etage": "2"}))  # fmt: skip
    assert _condition(plan.trace, "soiree-etage", "window") == (
        True,
        "window 'soiree' is open at fri 2026-03-27 18:30 (CET): fri 18:00-22:00 (2026-03-27)",
    )
    assert [d.target for d in plan.deliveries] == ["crm", "email jean@plomberie.example"]
    assert plan.deliveries[1].connection == ""  # Relais's own email sender


def test_explain_plumber_default_rule(plumber: TenantConfig) -> None:
    plan = plan_for(plumber, CallContext(call_type="fournisseur", at=utc(2026, 3, 31, 8)))
    assert plan.used_default is True
    assert [(d.rule, d.target, d.template) for d in plan.deliveries] == [
        ("default", "email bureau@plomberie.example", "default")]  # fmt: skip
    assert plan.trace[-1].reason == "no rule matched, so the default rule applies"


def test_plan_for_rejects_bad_contexts(law: TenantConfig) -> None:
    with pytest.raises(PlanError, match="timezone-aware"):
        plan_for(law, CallContext(call_type="suivi", at=datetime(2026, 1, 1)))  # noqa: DTZ001
    with pytest.raises(PlanError, match="unknown staff member 'nobody'"):
        plan_for(law, CallContext(call_type="suivi", at=None, staff_id="nobody"))
    with pytest.raises(TypeError):
        CallContext(call_type="suivi")  # type: ignore[call-arg]  # `at` is required


# --------------------------------------------------------------------------- templates


def test_render_templates(law: TenantConfig) -> None:
    context = RenderContext(
        caller={"name": "Mme Martin", "phone": "+33612345678"},
        message={"call_type_label": "Garde à vue", "subject": "Fils en garde à vue",
                 "urgency": "urgent", "body": "Rappeler vite", "intake": {"lieu": "Lyon 3"}},
    )  # fmt: skip
    assert render_template(law, "urgence", context) == (
        "Garde à vue : Lyon 3",
        "Mme Martin (06 12 34 56 78) appelle pour une garde à vue.\nLieu : Lyon 3",
    )
    assert render_template(law, "nouveau", context) == (  # no subject: the built-in one
        "Garde à vue : Fils en garde à vue", "Nouveau client () : Mme Martin")  # fmt: skip
    assert render_template(law, None, context) == (
        "Garde à vue : Fils en garde à vue",
        "Garde à vue (urgent)\nAppelant : Mme Martin 06 12 34 56 78\nFils en garde à vue\n"
        "Rappeler vite",
    )
    with pytest.raises(KeyError):
        render_template(law, "nope", context)
    broken = load(replace("Lieu : {{ message.intake.lieu }}",
                          "Lieu : {{ message.intake.lieu.upper() + 1 }}", LAW))  # fmt: skip
    with pytest.raises(TemplateRenderError, match=r"template 'urgence' \(body\) failed"):
        render_template(broken, "urgence", context)


# --------------------------------------------------------------------------- YAML errors


@pytest.mark.parametrize(
    ("old", "new", "needle", "path", "code", "message"),
    [
        ('soiree: {mon-fri: "19:00-22:00", sat: "09:00-12:00"}',
         'soiree: {mon-fry: "19:00-22:00", sat: "09:00-12:00"}', "mon-fry",
         "windows.soiree.mon-fry", "invalid_days",
         "'mon-fry' is not a set of days: 'fry' is not a day"),
        ('soiree: {mon-fri: "19:00-22:00", sat: "09:00-12:00"}',
         'soiree: {mon-fri: "19:00-22:00", fri: "21:00-23:00"}', "soiree:",
         "windows.soiree", "overlapping_hours", "fri: 19:00-22:00 and 21:00-23:00 overlap"),
        ('  nuit: {daily: "22:00-06:00"}', '  nuit: {daily: "22:00-06:00"}\n'
         '  after_hours: {sat: "10:00-11:00"}', "after_hours:", "windows.after_hours",
         "reserved_name", "'after_hours' is a built-in window"),
        ("window: [after_hours]", "window: [after_hour]", "after_hour]",
         "rules.rules[1].when.window[0]", "unknown_window", "unknown window 'after_hour'"),
        ("when: {known_contact: true, staff: [claire-durand, paul-lefevre]}",
         "when: {known_contact: true, staff: [claire, paul-lefevre]}", "staff: [claire,",
         "rules.rules[4].when.staff[0]", "unknown_staff", "unknown staff member 'claire'"),
        ("intake: {domaine: [penal, famille]}", "intake: {domaine: [penal, famile]}",
         "famile", "rules.rules[3].when.intake.domaine[1]", "invalid_value",
         "'famile' is not a choice of intake field 'domaine'"),
        ("intake: {domaine: [penal, famille]}", "intake: {lieu: {present: true}}",
         "present: true", "rules.rules[3].when.intake.lieu", "unknown_intake_field",
         "no intake field 'lieu' in the call types of this rule"),
        ("intake: {domaine: [penal, famille]}", "intake: {domaine: {present: maybe}}",
         "present: maybe", "rules.rules[3].when.intake.domaine", "invalid_condition",
         "an intake condition is a value, a list of values, or {present: true|false}"),
        ('handover: "mon 08:00"', 'handover: "lun 08:00"', "lun 08:00", "on_call.handover",
         "invalid_week_time", "'lun 08:00' is not a day and a time"),
        ("start: 2026-01-05", "start: 2026-01-06", "start: 2026-01-06", "on_call.start",
         "invalid_start", "2026-01-06 is a tue, but the rotation changes hands on mon"),
        ("rotation: [claire-durand, paul-lefevre]", "rotation: [claire-durand, paul-lefevr]",
         "paul-lefevr]", "on_call.rotation[1].staff", "unknown_staff",
         "unknown staff member 'paul-lefevr'"),
        ("  start: 2026-01-05\n", "", "on_call:", "on_call", "invalid_rotation",
         "a rotation of whole weeks needs `start`"),
        ("to: 2026-12-28T08:00}", "to: 2026-12-20T08:00}", "2026-12-20T08:00",
         "on_call.overrides[0].to", "invalid_override", "this override ends before it starts"),
        ("to: 2026-12-28T08:00}", "to: noel}", "to: noel", "on_call.overrides[0].to",
         "invalid_datetime", "'noel' is not a date and time"),
        ("template: nouveau}", "template: nouveaux}", "nouveaux",
         "rules.rules[3].then[0].email.template", "unknown_template",
         "unknown template 'nouveaux'"),
        ("Lieu : {{ message.intake.lieu }}", "Lieu : {{ message.intake.lieu }",
         "Lieu : {{", "templates.urgence.body", "template_syntax",
         "template syntax error: unexpected '}'"),
        ("Lieu : {{ message.intake.lieu }}", "Lieu : {{ message.intake.lie }}",
         "Lieu : {{", "templates.urgence.body", "unknown_intake_field",
         "no call type has an intake field 'lie'"),
        ("- email: {to: [accueil]}", "- sms: {to: [accueil]}", "sms: {to: [accueil]}",
         "rules.rules[4].then[0].sms.to[0]", "no_address",
         "staff member 'accueil' has no phone number"),
        ("- sms: {to: [on_call], template: urgence}",
         "- sms: {to: [on_call, x@y.fr], template: urgence}", "x@y.fr",
         "rules.rules[2].then[0].sms.to[1]", "wrong_recipient",
         "an SMS cannot go to an email address"),
        ("- sms: {to: [on_call], template: urgence}",
         "- sms: {to: [on_call, 06 12], template: urgence}", "06 12]",
         "rules.rules[2].then[0].sms.to[1]", "invalid_phone",
         "'06 12' is not a valid phone number for region FR"),
        ("- sms: {to: [on_call], template: urgence}",
         "- sms: {to: [on_call], template: urgence, via: crm}", "via: crm",
         "rules.rules[2].then[0].sms.via", "wrong_connection",
         "connection 'crm' is a salesforce connection and cannot send an SMS"),
        ("- escalate: astreinte", "- escalate: astreint", "escalate: astreint",
         "rules.rules[1].then[0].escalate", "unknown_escalation",
         "unknown escalation ladder 'astreint'"),
        ("then: [{crm: crm}, {webhook: hook}]", "then: [{webhook: crm}]",
         "webhook: crm", "rules.default.then[0].webhook", "not_a_webhook",
         "connection 'crm' is a salesforce connection, not a webhook"),
        ("then: [{crm: crm}, {webhook: hook}]", "then: [{crm: hook}]", "crm: hook",
         "rules.default.then[0].crm", "not_a_crm", "connection 'hook' has role notify, not crm"),
        ("then: [{crm: crm}, {webhook: hook}]", "then: [{webhook: hok}]", "webhook: hok",
         "rules.default.then[0].webhook", "unknown_connection", "unknown connection 'hok'"),
        ("- digest: {to: [accueil], at: [\"09:00\"], channel: email}",
         "- digest: {to: [accueil], at: [\"09:00\"], every: 1h}", "digest:",
         "rules.rules[5].then[0].digest", "invalid_digest",
         "a digest needs exactly one of `every` or `at`"),
        ("- digest: {to: [accueil], at: [\"09:00\"], channel: email}",
         "- digest: {to: [accueil], at: [\"9h\"]}", "9h", "rules.rules[5].then[0].digest.at[0]",
         "invalid_time", "'9h' is not a time of day"),
        ("      then:\n        - escalate: astreinte\n        - crm: crm\n",
         "      then:\n        - escalate: astreinte\n          crm: crm\n", "escalate: astreinte",
         "rules.rules[1].then[0]", "invalid_action",
         "an action needs exactly one of `crm` or `escalate`"),
        ("when: {holiday: true}", "when: {holidays: true}", "holidays: true",
         "rules.rules[5].when.holidays", "unknown_key", "unknown key 'holidays'"),
    ],
)  # fmt: skip
def test_yaml_errors_point_at_the_line(
    old: str, new: str, needle: str, path: str, code: str, message: str
) -> None:
    text = replace(old, new, LAW)
    issue = only_issue(text)
    assert (issue.path, issue.code, issue.line) == (path, code, line_of(text, needle)), str(issue)
    assert issue.message.startswith(message), issue.message


def test_yaml_error_columns_and_hints() -> None:
    text = replace("window: [after_hours]", "window: [after_hour]", LAW)
    issue = only_issue(text)
    assert (issue.line, issue.column) == (line_of(text, "after_hour]"), 48)
    assert issue.hint == (
        "did you mean 'after_hours'? known windows: business_hours, after_hours, soiree, nuit "
        "(declare it under `windows:`)"
    )
    text = replace("Lieu : {{ message.intake.lieu }}", "Lieu : {{ message.intake.lie }}", LAW)
    issue = only_issue(text)
    assert (issue.line, issue.column) == (line_of(text, "Lieu : {{"), 7)
    assert issue.hint.startswith("did you mean 'lieu'?")
    text = replace("when: {holiday: true}", "when: {holidays: true}", LAW)
    assert "holiday, intake, known_contact, staff, urgency, window" in only_issue(text).hint


def test_holiday_condition_needs_holidays_or_closures() -> None:
    text = replace("holidays:\n  country: FR\n", "", LAW)
    load(text)  # the closure date is enough
    text = replace("  closures: [2026-08-14]\n", "", text)
    issue = only_issue(text)
    assert (issue.path, issue.code, issue.line) == (
        "rules.rules[5].when.holiday", "no_holidays", line_of(text, "holiday: true"))  # fmt: skip


def test_business_hours_windows_need_business_hours() -> None:
    text = LAW.replace(LAW[LAW.index("business_hours:"): LAW.index("holidays:")], "")
    issue = only_issue(text)
    assert (issue.path, issue.code) == ("rules.rules[1].when.window[0]", "no_business_hours")


def test_several_email_connections_need_via() -> None:
    text = replace(
        "  hook: {provider: webhook, url: \"https://hooks.example/cabinet\"}\n",
        "  hook: {provider: webhook, url: \"https://hooks.example/cabinet\"}\n"
        "  mail-a: {provider: email}\n  mail-b: {provider: email}\n",
        LAW,
    )
    found = issues(text)
    assert {i.code for i in found} == {"ambiguous_connection"}
    assert found[0].hint == "say which one sends it: `via: mail-a`"
    text = replace("- email: {to: [accueil]}", "- email: {to: [accueil], via: mail-b}", text)
    assert len(issues(text)) == len(found) - 1


def test_ladder_steps_name_their_sender_when_there_are_several() -> None:
    text = replace(
        "  hook: {provider: webhook, url: \"https://hooks.example/cabinet\"}\n",
        "  hook: {provider: webhook, url: \"https://hooks.example/cabinet\"}\n"
        "  sms-a: {provider: sms}\n  sms-b: {provider: sms}\n",
        LAW,
    )
    found = issues(text)
    assert [(i.path, i.code) for i in found] == [
        ("escalations.astreinte.steps[0]", "ambiguous_connection"),
        ("escalations.astreinte.steps[1]", "ambiguous_connection"),
        ("rules.rules[2].then[0].sms", "ambiguous_connection"),
    ]
    text = replace(LADDER, "      - {to: on_call, channel: sms, wait: 10m, via: sms-b}", text)
    text = replace("wait: 15m}", "wait: 15m, via: sms-a}", text)
    text = replace("sms: {to: [on_call], template: urgence}",
                   "sms: {to: [on_call], template: urgence, via: sms-a}", text)  # fmt: skip
    config = load(text)
    steps = ladder(config, "astreinte").steps
    assert [(s.connection, s.provider) for s in steps] == [("sms-b", "sms"), ("sms-a", "sms")]
