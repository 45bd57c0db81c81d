"""CRM field mappings: expressions, transforms, templates, defaults, and their config errors."""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from mappings import (
    ConfigError,
    ConfigIssue,
    CrmConnection,
    FieldMapping,
    HubSpotConnection,
    MappingRenderError,
    ProviderConnection,
    RenderContext,
    SalesforceConnection,
    SalesforceMapping,
    TenantConfig,
    effective_mapping,
    load_tenant_config,
    load_tenant_file,
)
from mappings.fieldmap import DEFAULTS, KNOWN_PATHS, HubSpotMapping, tenant_info
from mappings.templates import compile_template, split_name

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_ENV = {"RELAIS_DEMO_WEBHOOK_BASE": "http://127.0.0.1:8765/hooks"}
PARIS = ZoneInfo("Europe/Paris")
TENANT = {"id": "plomberie", "name": "Plomberie Test", "timezone": "Europe/Paris",
          "phone_region": "FR"}  # fmt: skip
CALLER = {
    "name": "Marie DUPONT",
    "phone": "+33612345678",
    "email": "marie@example.fr",
    "company": "Dupont SARL",
}
MESSAGE = {
    "subject": "Fuite sous l'évier",
    "body": "Fuite importante.\nL'eau est coupée.",
    "urgency": "urgent",
    "call_type": "urgence",
    "call_type_label": "Urgence — fuite d'eau",
    "taken_by": "Julie",
    "taken_at": "2026-11-27T09:15:00Z",
    "callback_requested": True,
    "intake": {"adresse": "3 rue des Lilas", "piece": "sdb", "etage": 2},
}
STAFF = {"name": "Jean Martin", "email": "jean@example.fr", "crm_owner_id": "0055e000001AbCdEAA"}
APPOINTMENT = {
    "start": datetime(2026, 11, 30, 14, 0, tzinfo=PARIS),
    "end": "2026-11-30T14:30:00+01:00",
    "subject": "Devis sur place",
    "notes": "Code porte 1234B",
    "status": "confirmed",
}
TAKEN_AT_MS = 1795770900000  # 2026-11-27T09:15:00Z


def context(**parts: Any) -> RenderContext:
    """The full context, with parts replaced (``message=None``) or updated (``caller_name=``)."""
    values: dict[str, Any] = {
        "caller": dict(CALLER),
        "message": dict(MESSAGE),
        "staff": dict(STAFF),
        "appointment": dict(APPOINTMENT),
        "tenant": dict(TENANT),
    }
    for key, value in parts.items():
        root, _, name = key.partition("_")
        if key in values:
            values[key] = value
        else:
            values[root][name] = value
    return RenderContext(**values)


def render_field(spec: Any, ctx: RenderContext | None = None, provider: str = "salesforce") -> Any:
    """Render one tenant field ``Test__c`` / ``test_field`` of the call_log section."""
    name = "Test__c" if provider == "salesforce" else "test_field"
    model = SalesforceMapping if provider == "salesforce" else HubSpotMapping
    mapping = model.model_validate({"call_log": {"fields": {name: spec}}})
    out = effective_mapping(provider, mapping).section("call_log")
    assert out is not None
    return out.render(ctx or context()).get(name, "<omitted>")


# --------------------------------------------------------------------------- transforms


@pytest.mark.parametrize(
    ("phone", "transform", "expected"),
    [
        ("+33612345678", "national", "06 12 34 56 78"),
        ("06.12.34.56.78", "national", "06 12 34 56 78"),
        ("0472000000", "national", "04 72 00 00 00"),
        ("+32 470 12 34 56", "national", "+32 470 12 34 56"),  # foreign: stays dialable
        ("06 12 34 56 78", "e164", "+33612345678"),
        ("+33 6 12 34 56 78", "e164", "+33612345678"),
        ("0033612345678", "e164", "+33612345678"),
        ("0612345678", "international", "+33 6 12 34 56 78"),
        ("+33612345678", "international", "+33 6 12 34 56 78"),
        ("12", "e164", "12"),  # not a number: passed on as written
    ],
)
def test_phone_transforms(phone: str, transform: str, expected: str) -> None:
    spec = {"from": "caller.phone", "transform": transform}
    assert render_field(spec, context(caller_phone=phone)) == expected


def test_phone_transforms_read_the_tenant_region() -> None:
    belgian = context(tenant={**TENANT, "phone_region": "BE"}, caller_phone="0470 12 34 56")
    assert render_field({"from": "caller.phone", "transform": "e164"}, belgian) == "+32470123456"
    assert render_field({"from": "caller.phone", "transform": "national"}, belgian) == (
        "0470 12 34 56"
    )


@pytest.mark.parametrize(
    ("name", "first", "last"),
    [
        ("Jean-Pierre de La Fontaine", "Jean-Pierre", "de La Fontaine"),
        ("DUPONT Marie", "Marie", "DUPONT"),
        ("DE LA FONTAINE Jean-Pierre", "Jean-Pierre", "DE LA FONTAINE"),
        ("Marie DUPONT", "Marie", "DUPONT"),
        ("Marie-Claire VAN DER BERG", "Marie-Claire", "VAN DER BERG"),
        ("Ludwig van Beethoven", "Ludwig", "van Beethoven"),
        ("Charles d'Artagnan", "Charles", "d'Artagnan"),
        ("Anne Marie Durand", "Anne Marie", "Durand"),
        ("Le Pen", None, "Le Pen"),
        ("Dupont", None, "Dupont"),
        ("DUPONT", None, "DUPONT"),
        ("JEAN DUPONT", "JEAN", "DUPONT"),  # all capitals: no hint, last word
        ("  Mme   Marie   Dupont ", "Marie", "Dupont"),
        ("Maître Claire Durand", "Claire", "Durand"),
        ("M. DUPONT", None, "DUPONT"),
        ("J. DUPONT", "J.", "DUPONT"),
        ("", None, None),
        (None, None, None),
    ],
)
def test_name_split(name: str | None, first: str | None, last: str | None) -> None:
    assert split_name(name) == (first, last)
    ctx = context(caller_name=name)
    assert render_field({"from": "caller.name", "transform": "first_name"}, ctx) == (
        first if first is not None else "<omitted>"
    )
    assert render_field({"from": "caller.name", "transform": "last_name"}, ctx) == (
        last if last is not None else "<omitted>"
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"from": "caller.name", "transform": "upper"}, "MARIE DUPONT"),
        ({"from": "caller.email", "transform": "upper"}, "MARIE@EXAMPLE.FR"),
        ({"from": "caller.name", "transform": "lower"}, "marie dupont"),
        ({"from": "caller.name", "transform": ["last_name", "lower"]}, "dupont"),
        ({"from": "message.taken_at", "transform": "date"}, "2026-11-27"),
        ({"from": "message.taken_at", "transform": "datetime_utc"}, "2026-11-27T09:15:00Z"),
        ({"from": "message.taken_at", "transform": "epoch_ms"}, TAKEN_AT_MS),
        ({"from": "appointment.start", "transform": "datetime_utc"}, "2026-11-30T13:00:00Z"),
        ({"from": "appointment.end", "transform": "datetime_utc"}, "2026-11-30T13:30:00Z"),
        ({"from": "message.subject", "transform": "truncate:10"}, "Fuite sou…"),
        ({"from": "message.subject", "transform": "truncate: 18"}, "Fuite sous l'évier"),
        ({"from": "message.subject", "transform": {"truncate": 5}}, "Fuit…"),
        ({"from": "message.body", "transform": "html"},
         "Fuite importante.<br>L&#39;eau est coupée."),  # fmt: skip
        ({"from": "message.taken_at"}, "2026-11-27T09:15:00Z"),  # datetimes leave as UTC
        ({"from": "message.callback_requested"}, True),
        ({"from": "message.intake.etage"}, 2),
        ({"from": "message.intake.inconnu"}, "<omitted>"),
        ({"from": "caller.phone", "transform": "upper", "default": "x"}, "+33612345678"),
    ],
)
def test_transforms(spec: dict[str, Any], expected: Any) -> None:
    assert render_field(spec) == expected


def test_epoch_ms_is_exact() -> None:
    assert TAKEN_AT_MS == int(datetime(2026, 11, 27, 9, 15, tzinfo=UTC).timestamp()) * 1000
    ctx = context(message_taken_at=datetime(2026, 11, 27, 10, 15, 0, 123456, tzinfo=PARIS))
    assert render_field({"from": "message.taken_at", "transform": "epoch_ms"}, ctx) == (
        TAKEN_AT_MS + 123
    )


def test_dates_are_read_in_the_tenant_zone() -> None:
    # 23:30 UTC on 27 November is already the 28th in Paris, still the 27th in Montreal.
    late = context(message_taken_at="2026-11-27T23:30:00+00:00")
    assert render_field({"from": "message.taken_at", "transform": "date"}, late) == "2026-11-28"
    montreal = context(
        message_taken_at="2026-11-27T23:30:00Z",
        tenant={**TENANT, "timezone": "America/Montreal"},
    )
    assert render_field({"from": "message.taken_at", "transform": "date"}, montreal) == (
        "2026-11-27"
    )
    # A naive value is a wall-clock time of the tenant (summer time: UTC+2).
    naive = context(message_taken_at="2026-07-01T10:15:00")
    assert render_field({"from": "message.taken_at", "transform": "datetime_utc"}, naive) == (
        "2026-07-01T08:15:00Z"
    )
    aware = context(message_taken_at=datetime(2026, 7, 1, 10, 15, tzinfo=PARIS))
    assert render_field({"from": "message.taken_at", "transform": "datetime_utc"}, aware) == (
        "2026-07-01T08:15:00Z"
    )


def test_a_bad_date_is_a_render_error() -> None:
    with pytest.raises(MappingRenderError) as caught:
        render_field({"from": "appointment.start", "transform": "date"},
                     context(appointment_start="hier"))  # fmt: skip
    assert caught.value.field == "Test__c"
    assert str(caught.value) == (
        "mapping.call_log.fields.Test__c: 'hier' is not a date and time, so `date` cannot "
        "apply — remove `date`, or read a date field"
    )


def test_constants_and_empty_values() -> None:
    assert render_field({"value": "Completed"}) == "Completed"
    assert render_field({"value": False}) is False
    assert render_field({"value": 3}) == 3
    no_email = context(caller_email=None)
    assert render_field("caller.email", no_email) == "<omitted>"
    assert render_field({"from": "caller.email", "keep_empty": True}, no_email) is None
    assert render_field({"from": "caller.email", "default": "inconnu@x.fr"}, no_email) == (
        "inconnu@x.fr"
    )
    assert render_field("staff.name", context(staff=None)) == "<omitted>"
    assert render_field("message.subject", context(message=None)) == "<omitted>"
    assert render_field("tenant.name") == "Plomberie Test"


# --------------------------------------------------------------------------- picklists

URGENCY = {"from": "message.urgency", "map": {"low": "Low", "normal": "Normal", "high": "High"}}


def test_picklist_map() -> None:
    assert render_field(URGENCY, context(message_urgency="high")) == "High"
    assert render_field(URGENCY, context(message_urgency="HIGH")) == "High"  # case-insensitive
    assert render_field({**URGENCY, "default": "Normal"}) == "Normal"  # urgent is unmapped
    assert render_field(URGENCY, context(message_urgency=None)) == "<omitted>"
    assert render_field({**URGENCY, "default": "Normal"}, context(message_urgency=None)) == (
        "Normal"
    )
    callback = {"from": "message.callback_requested", "map": {"true": "Oui", "false": "Non"}}
    assert render_field(callback) == "Oui"
    assert render_field(callback, context(message_callback_requested=False)) == "Non"


def test_unmapped_picklist_value_without_default_is_a_render_error() -> None:
    with pytest.raises(MappingRenderError) as caught:
        render_field(URGENCY)  # urgency urgent
    error = caught.value
    assert error.field == "Test__c"
    assert error.section == "call_log"
    assert str(error) == (
        "mapping.call_log.fields.Test__c: message.urgency is 'urgent', which `map` does not "
        "list, and there is no `default` — add `urgent: <CRM value>` under `map`, or a "
        "`default:`"
    )
    again = pickle.loads(pickle.dumps(error))
    assert (again.field, str(again)) == ("Test__c", str(error))


# --------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Appel : {{ message.subject }}", "Appel : Fuite sous l'évier"),
        ("{{ caller.phone | phone_national }}", "06 12 34 56 78"),
        ("{{ caller.phone | phone_international }}", "+33 6 12 34 56 78"),
        ("{{ '06 12 34 56 78' | phone_e164 }}", "+33612345678"),
        ("{{ message.taken_at | datetime }}", "27/11/2026 10:15"),
        ("{{ appointment.start | datetime('%H:%M') }}", "14:00"),
        ("{{ appointment.end | datetime('%d/%m %Hh%M') }}", "30/11 14h30"),
        ("{{ '2026-12-24' | datetime }}", "24/12/2026"),
        ("{{ caller.name | first_name }} / {{ caller.name | last_name }}", "Marie / DUPONT"),
        ("{{ message.intake.adresse }} ({{ message.intake.etage }}e)", "3 rue des Lilas (2e)"),
        ("  {{ caller.email }}\n\n", "marie@example.fr"),  # stripped
        ("{% if message.urgency == 'urgent' %}URGENT {% endif %}{{ staff.name }}",
         "URGENT Jean Martin"),  # fmt: skip
        ("{{ caller.company or 'Particulier' }}", "Dupont SARL"),
        ("<b>{{ caller.name }}</b>", "<b>Marie DUPONT</b>"),  # no HTML escaping
    ],
)
def test_templates(template: str, expected: str) -> None:
    assert render_field({"template": template}) == expected


def test_template_empty_values_print_nothing() -> None:
    ctx = context(caller_email=None, staff=None)
    assert render_field({"template": "[{{ caller.email }}|{{ staff.name }}]"}, ctx) == "[|]"
    assert render_field({"template": "{{ caller.email }}"}, ctx) == "<omitted>"


def test_template_sandbox_refuses_internals() -> None:
    with pytest.raises(ValidationError, match="'__class__', which templates may not access"):
        SalesforceMapping.model_validate(
            {"call_log": {"fields": {"X__c": {"template": "{{ ''.__class__.__mro__ }}"}}}}
        )
    # Hidden from the load-time check, the sandbox still refuses it when rendering.
    with pytest.raises(MappingRenderError) as caught:
        render_field({"template": "{{ caller.name | attr('__cl' ~ 'ass__') }}"})
    assert caught.value.field == "Test__c"
    assert "access to attribute '__class__' of 'str' object is unsafe" in str(caught.value)
    # Data is immutable in templates.
    with pytest.raises(MappingRenderError, match="unsafe"):
        render_field({"template": "{{ message.intake.update({'a': 1}) }}"})


def test_template_undefined_at_render_time_is_a_clear_error() -> None:
    with pytest.raises(MappingRenderError) as caught:
        render_field({"template": "Bonjour {{ caller.name.prenom }}"})
    assert caught.value.field == "Test__c"
    assert str(caught.value) == (
        "mapping.call_log.fields.Test__c: the template failed: 'str object' has no attribute "
        "'prenom' — fix the template (a field that may be empty can be tested with "
        "{% if … %})"
    )


def test_template_unknown_variables_are_refused_at_load() -> None:
    for template, message in [
        ("{{ appelant.nom }}", "unknown variable 'appelant' in the template"),
        ("{{ caller.nom }}", "unknown source 'caller.nom' in the template"),
        ("{{ message.intake['Bad Name'] }}", "'Bad Name' is not an intake field name"),
    ]:
        with pytest.raises(ValidationError, match=message):
            SalesforceMapping.model_validate(
                {"call_log": {"fields": {"X__c": {"template": template}}}}
            )
    # Loop variables and names the template sets are its own.
    ok = "{% set n = caller.name %}{% for c in [n] %}{{ c }}{% endfor %}"
    assert render_field({"template": ok}) == "Marie DUPONT"


def test_templates_are_compiled_once() -> None:
    source = "Compiled once: {{ caller.name }}"
    before = compile_template.cache_info()
    SalesforceMapping.model_validate({"call_log": {"fields": {"X__c": {"template": source}}}})
    for _ in range(3):
        render_field({"template": source})
    after = compile_template.cache_info()
    assert after.misses - before.misses == 1
    assert compile_template(source) is compile_template(source)


# --------------------------------------------------------------------------- defaults


def test_salesforce_defaults_render_realistic_records() -> None:
    resolved = effective_mapping("salesforce", None)
    ctx = context()
    contact = resolved.section("contact")
    assert contact is not None and contact.object == "Contact"
    assert contact.render(ctx) == {
        "FirstName": "Marie",
        "LastName": "DUPONT",
        "Phone": "06 12 34 56 78",
        "Email": "marie@example.fr",
    }
    summary = (
        "Fuite importante.\nL'eau est coupée.\n\n"
        "Appelant : Marie DUPONT, 06 12 34 56 78\n"
        "Société : Dupont SARL\n"
        "E-mail : marie@example.fr\n"
        "Motif : Urgence — fuite d'eau\n"
        "Message pris par Julie le 27/11/2026 10:15."
    )
    call_log = resolved.section("call_log")
    assert call_log is not None and call_log.object == "Task"
    assert call_log.render(ctx) == {
        "Subject": "Appel : Fuite sous l'évier",
        "Description": summary,
        "ActivityDate": "2026-11-27",
        "Status": "Completed",
        "Priority": "High",
        "OwnerId": "0055e000001AbCdEAA",
        "TaskSubtype": "Call",
        "CallType": "Inbound",
    }
    callback = resolved.section("callback_task")
    assert callback is not None and callback.object == "Task"
    assert callback.render(ctx) == {
        "Subject": "Rappeler Marie DUPONT",
        "Description": "Numéro à rappeler : 06 12 34 56 78\nObjet : Fuite sous l'évier\n\n"
        + summary,
        "ActivityDate": "2026-11-27",
        "Status": "Not Started",
        "Priority": "High",
        "OwnerId": "0055e000001AbCdEAA",
        "TaskSubtype": "Task",
    }
    event = resolved.section("appointment")
    assert event is not None and event.object == "Event"
    assert event.render(ctx) == {
        "Subject": "Devis sur place",
        "StartDateTime": "2026-11-30T13:00:00Z",
        "EndDateTime": "2026-11-30T13:30:00Z",
        "Description": "Code porte 1234B\n\n"
        "Rendez-vous pris pour Marie DUPONT, 06 12 34 56 78 (marie@example.fr).",
        "OwnerId": "0055e000001AbCdEAA",
    }


def test_salesforce_defaults_with_little_known() -> None:
    resolved = effective_mapping("salesforce", None)
    ctx = RenderContext(
        caller={"phone": "0612345678"},
        message={"urgency": "low", "taken_at": "2026-11-27T09:15:00Z"},
        tenant=TENANT,
    )
    contact = resolved.section("contact")
    assert contact is not None
    assert contact.render(ctx) == {"LastName": "[non renseigné]", "Phone": "06 12 34 56 78"}
    call_log = resolved.section("call_log")
    assert call_log is not None
    assert call_log.render(ctx) == {
        "Subject": "Appel :",
        "Description": "Appelant : inconnu, 06 12 34 56 78\nMessage pris le 27/11/2026 10:15.",
        "ActivityDate": "2026-11-27",
        "Status": "Completed",
        "Priority": "Low",
        "TaskSubtype": "Call",
        "CallType": "Inbound",
    }
    callback = resolved.section("callback_task")
    assert callback is not None
    assert callback.render(ctx)["Subject"] == "Rappeler 06 12 34 56 78"
    event = resolved.section("appointment")
    assert event is not None
    with pytest.raises(MappingRenderError) as caught:
        event.render(ctx)  # no appointment: Salesforce needs a start
    assert caught.value.field == "StartDateTime"
    assert "Event needs StartDateTime, but it is empty" in str(caught.value)


def test_salesforce_lead_defaults() -> None:
    lead = effective_mapping(
        "salesforce", SalesforceMapping.model_validate({"contact": {"object": "Lead"}})
    ).section("contact")
    assert lead is not None and lead.object == "Lead"
    assert lead.fields_used() == [
        "FirstName", "LastName", "Phone", "Email", "Company", "LeadSource",
    ]  # fmt: skip
    rendered = lead.render(context(caller_company=None))
    assert rendered["Company"] == "[non renseigné]"  # Salesforce requires a Lead's Company
    assert rendered["LeadSource"] == "Phone Inquiry"
    assert lead.required == ("LastName", "Company")


def test_hubspot_defaults_render_realistic_records() -> None:
    resolved = effective_mapping("hubspot", None)
    ctx = context()
    names = ("contact", "call_log", "callback_task", "appointment")
    sections = {name: resolved.section(name) for name in names}
    assert {n: s.object for n, s in sections.items() if s} == {
        "contact": "contacts",
        "call_log": "calls",
        "callback_task": "tasks",
        "appointment": "meetings",
    }
    assert sections["contact"] and sections["contact"].render(ctx) == {
        "firstname": "Marie",
        "lastname": "DUPONT",
        "phone": "+33612345678",
        "email": "marie@example.fr",
        "company": "Dupont SARL",
    }
    html_summary = (
        "Fuite importante.<br>L&#39;eau est coupée.<br><br>"
        "Appelant : Marie DUPONT, 06 12 34 56 78<br>"
        "Société : Dupont SARL<br>"
        "E-mail : marie@example.fr<br>"
        "Motif : Urgence — fuite d&#39;eau<br>"
        "Message pris par Julie le 27/11/2026 10:15."
    )
    assert sections["call_log"] and sections["call_log"].render(ctx) == {
        "hs_timestamp": TAKEN_AT_MS,
        "hs_call_title": "Appel : Fuite sous l'évier",
        "hs_call_body": html_summary,
        "hs_call_direction": "INBOUND",
        "hs_call_status": "COMPLETED",
        "hs_call_from_number": "+33612345678",
        "hubspot_owner_id": "0055e000001AbCdEAA",
    }
    task = sections["callback_task"]
    assert task is not None
    rendered = task.render(ctx)
    assert {k: v for k, v in rendered.items() if k != "hs_task_body"} == {
        "hs_timestamp": TAKEN_AT_MS,
        "hs_task_subject": "Rappeler Marie DUPONT",
        "hs_task_status": "NOT_STARTED",
        "hs_task_priority": "HIGH",
        "hs_task_type": "CALL",
        "hubspot_owner_id": "0055e000001AbCdEAA",
    }
    assert rendered["hs_task_body"].startswith("Numéro à rappeler : 06 12 34 56 78<br>Objet")
    assert task.render(context(message_urgency="normal"))["hs_task_priority"] == "MEDIUM"
    start_ms = int(datetime(2026, 11, 30, 13, 0, tzinfo=UTC).timestamp()) * 1000
    meeting = sections["appointment"]
    assert meeting is not None
    assert meeting.render(ctx) == {
        "hs_timestamp": start_ms,
        "hs_meeting_title": "Devis sur place",
        "hs_meeting_body": "Code porte 1234B<br><br>"
        "Rendez-vous pris pour Marie DUPONT, 06 12 34 56 78 (marie@example.fr).",
        "hs_meeting_start_time": start_ms,
        "hs_meeting_end_time": start_ms + 30 * 60_000,
        "hs_meeting_outcome": "SCHEDULED",
        "hubspot_owner_id": "0055e000001AbCdEAA",
    }
    cancelled = context(appointment_status="cancelled", appointment_subject=None)
    rendered = meeting.render(cancelled)
    assert rendered["hs_meeting_outcome"] == "CANCELED"
    assert rendered["hs_meeting_title"] == "Rendez-vous avec Marie DUPONT"


def test_hubspot_notes_defaults() -> None:
    notes = effective_mapping(
        "hubspot", HubSpotMapping.model_validate({"call_log": {"object": "notes"}})
    ).section("call_log")
    assert notes is not None and notes.object == "notes"
    assert notes.fields_used() == ["hs_timestamp", "hs_note_body", "hubspot_owner_id"]
    body = notes.render(context())["hs_note_body"]
    assert body.startswith("Appel : Fuite sous l&#39;évier<br><br>Fuite importante.<br>")


def test_tenant_fields_merge_with_defaults() -> None:
    mapping = SalesforceMapping.model_validate(
        {
            "contact": {
                "fields": {
                    "phone": {"from": "caller.phone", "transform": "e164"},  # other case
                    "Email": None,
                    "Societe__c": "caller.company",
                }
            },
            "call_log": {"fields": {"CallType": None, "Priority": {"value": "Normal"}}},
        }
    )
    resolved = effective_mapping("salesforce", mapping)
    contact = resolved.section("contact")
    assert contact is not None
    assert contact.fields_used() == ["FirstName", "LastName", "Phone", "Societe__c"]
    assert contact.render(context()) == {
        "FirstName": "Marie",
        "LastName": "DUPONT",
        "Phone": "+33612345678",
        "Societe__c": "Dupont SARL",
    }
    call_log = resolved.section("call_log")
    assert call_log is not None
    assert "CallType" not in call_log.fields_used()
    assert call_log.render(context())["Priority"] == "Normal"
    assert resolved.section("nope") is None
    assert resolved.fields_by_object() == {
        "Contact": ["FirstName", "LastName", "Phone", "Societe__c"],
        "Task": ["Subject", "Description", "ActivityDate", "Status", "Priority", "OwnerId",
                 "TaskSubtype"],
        "Event": ["Subject", "StartDateTime", "EndDateTime", "Description", "OwnerId"],
    }  # fmt: skip
    assert resolved.fields_used()[:5] == ["FirstName", "LastName", "Phone", "Societe__c",
                                          "Subject"]  # fmt: skip
    # The defaults themselves are untouched.
    default_contact = effective_mapping("salesforce", None).section("contact")
    assert default_contact is not None
    assert default_contact.fields_used() == ["FirstName", "LastName", "Phone", "Email"]


def test_effective_mapping_refuses_what_the_provider_cannot_write() -> None:
    with pytest.raises(ValueError, match="no field mapping for provider 'webhook'"):
        effective_mapping("webhook", None)
    generic = FieldMapping.model_validate({"contact": {"object": "Lead"}})
    assert effective_mapping("salesforce", generic).sections["contact"].object == "Lead"
    with pytest.raises(ValueError, match="a hubspot contact cannot be a 'Lead'"):
        effective_mapping("hubspot", generic)


def test_defaults_only_use_known_sources_and_valid_expressions() -> None:
    for provider, sections in DEFAULTS.items():
        for section, objects in sections.items():
            for obj in objects:
                mapping = FieldMapping.model_validate({section: {"object": obj}})
                resolved = effective_mapping(provider, mapping).sections[section]
                for _, expression in resolved.fields:
                    for ref in expression.source_references():
                        leaf = ref.path if not ref.path.startswith("message.intake.") else (
                            "message.intake.<field>"
                        )
                        assert leaf in KNOWN_PATHS, (provider, section, ref)
                assert resolved.render(context())  # every default renders on a full context


def test_mapping_round_trips_as_plain_data() -> None:
    raw = {
        "contact": {"object": "Lead", "fields": {"Email": None, "Phone": "caller.phone"}},
        "call_log": {"fields": {"Subject": {"template": "{{ caller.name }}", "transform":
                                            ["truncate:80"], "keep_empty": True}}},
    }  # fmt: skip
    mapping = SalesforceMapping.model_validate(raw)
    data = mapping.as_data()
    assert data == {
        "contact": {"object": "Lead", "fields": {"Email": None, "Phone": {"from": "caller.phone"}}},
        "call_log": {"fields": {"Subject": {"template": "{{ caller.name }}",
                                            "transform": ["truncate:80"], "keep_empty": True}}},
    }  # fmt: skip
    assert SalesforceMapping.model_validate(data) == mapping


# --------------------------------------------------------------------------- the tenant file

TENANT_YAML = """\
id: plomberie
name: Plomberie Test
timezone: Europe/Paris
phone_region: FR
staff:
  - id: jean
    name: Jean Martin
    crm_owner_id: 0055e000001AbCdEAA
call_types:
  - id: devis
    label: Devis
    intake_fields:
      - {name: adresse, label: Adresse}
      - {name: piece, label: Pièce, type: choice, choices: [cuisine, sdb]}
  - id: urgence
    label: Urgence
    urgency_default: urgent
connections:
  sf:
    provider: salesforce
    settings: {api_version: "59.0"}
    mapping:
      contact:
        fields:
          Phone: {from: caller.phone, transform: e164}
      call_log:
        fields:
          Priority:
            from: message.urgency
            map: {low: Low, normal: Normal, high: High, urgent: High}
          Piece__c: {from: message.intake.piece, map: {cuisine: Cuisine, sdb: Salle de bain}}
          Resume__c:
            template: |
              {{ message.subject }}
              {% if message.intake.adresse %}
              Adresse : {{ message.intake.adresse }}
              {% endif %}
  hs:
    provider: hubspot
    mapping:
      call_log:
        object: notes
  agenda:
    provider: google_calendar
rules:
  default:
    then: [{connection: sf}, {connection: hs}]
"""


def load(text: str) -> TenantConfig:
    return load_tenant_config(text, "t.yaml", env={})


def only_issue(text: str) -> ConfigIssue:
    with pytest.raises(ConfigError) as caught:
        load(text)
    found = caught.value.issues
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def line_of(text: str, needle: str) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(lines) == 1, (needle, lines)
    return lines[0]


def where(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of ``needle`` (on the only line containing it)."""
    line = line_of(text, needle)
    return line, text.splitlines()[line - 1].index(needle) + 1


def replace(old: str, new: str, text: str = TENANT_YAML) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def test_connections_with_a_mapping() -> None:
    config = load(TENANT_YAML)
    sf, hs, agenda = (config.connections[n] for n in ("sf", "hs", "agenda"))
    assert isinstance(sf, SalesforceConnection) and isinstance(sf, CrmConnection)
    assert isinstance(hs, HubSpotConnection)
    assert isinstance(agenda, ProviderConnection)
    assert sf.role == "crm" and hs.role == "crm"
    assert sf.connector_settings() == {"api_version": "59.0"}
    assert isinstance(sf.mapping, SalesforceMapping)
    resolved = sf.resolved_mapping()
    call_log = resolved.section("call_log")
    assert call_log is not None
    ctx = RenderContext(
        caller=CALLER,
        message={**MESSAGE, "urgency": "normal"},
        staff={"name": "Jean Martin", "crm_owner_id": config.staff[0].crm_owner_id},
        tenant=tenant_info(config),
    )
    rendered = call_log.render(ctx)
    assert rendered["Priority"] == "Normal"
    assert rendered["Piece__c"] == "Salle de bain"
    assert rendered["Resume__c"] == "Fuite sous l'évier\nAdresse : 3 rue des Lilas"
    assert rendered["OwnerId"] == "0055e000001AbCdEAA"
    contact = resolved.section("contact")
    assert contact is not None and contact.render(ctx)["Phone"] == "+33612345678"
    notes = hs.resolved_mapping().section("call_log")
    assert notes is not None and notes.object == "notes"
    # No mapping: the defaults.
    bare = load(replace("    mapping:\n      call_log:\n        object: notes\n", ""))
    hubspot = bare.connections["hs"]
    assert isinstance(hubspot, HubSpotConnection) and hubspot.mapping is None
    call = hubspot.resolved_mapping().section("call_log")
    assert call is not None and call.object == "calls"


def test_bad_source_path_points_at_it() -> None:
    text = replace("Phone: {from: caller.phone,", "Phone: {from: caller.phon,")
    issue = only_issue(text)
    assert (issue.line, issue.column) == where(text, "caller.phon,")
    assert issue.path == "connections.sf.mapping.contact.fields.Phone.from"
    assert issue.code == "unknown_path"
    assert issue.message == "unknown source 'caller.phon'"
    assert issue.hint.startswith("did you mean 'caller.phone'? known sources: caller.phone, ")
    assert "message.intake.<field>" in issue.hint


def test_shorthand_path_and_constant_mistakes() -> None:
    phone = "          Phone: {from"
    text = replace(phone, "          Status__c: Completed\n" + phone)
    issue = only_issue(text)
    assert (issue.line, issue.column) == where(text, "Completed")
    assert issue.path == "connections.sf.mapping.contact.fields.Status__c"
    assert issue.message == "unknown source 'Completed'"
    assert issue.hint.startswith("for a fixed value write {value: Completed}; known sources:")
    text = replace(phone, "          Actif__c: true\n" + phone)
    issue = only_issue(text)
    assert issue.line == line_of(text, "Actif__c")
    assert issue.message == "true is not a field expression"
    assert issue.hint.startswith("for a fixed value write {value: true}")


def test_bad_transform_points_at_it() -> None:
    text = replace("transform: e164}", "transform: [e164, lowr]}")
    issue = only_issue(text)
    assert (issue.line, issue.column) == where(text, "lowr")
    assert issue.path == "connections.sf.mapping.contact.fields.Phone.transform[1]"
    assert issue.code == "invalid_transform"
    assert issue.message == "unknown transform 'lowr'"
    assert issue.hint.startswith("did you mean 'lower'? use e164, national, international")
    issue = only_issue(replace("transform: e164}", "transform: truncate}"))
    assert issue.hint.startswith("write truncate:N, e.g. truncate:255;")


def test_template_syntax_error_points_at_the_template_line() -> None:
    adresse = "Adresse : {{ message.intake.adresse }}"
    text = replace(adresse, adresse.removesuffix("}"))
    issue = only_issue(text)
    assert (issue.line, issue.column) == where(text, "Adresse : {{")
    assert issue.path == "connections.sf.mapping.call_log.fields.Resume__c.template"
    assert issue.code == "template_syntax"
    assert issue.message == "template syntax error: unexpected '}'"
    text = replace(
        "          Phone: {from",
        '          Sujet__c: {template: "Appel {% if caller.name %}{{ caller.name }}"}\n'
        "          Phone: {from",
    )
    issue = only_issue(text)
    assert (issue.line, issue.column) == where(text, '"Appel {%')
    assert issue.message.startswith("template syntax error: Unexpected end of template")


def test_template_reading_unknown_fields_points_at_the_template_line() -> None:
    text = replace("{{ message.subject }}\n", "{{ message.subjet }}\n")
    issue = only_issue(text)
    assert (issue.line, issue.column) == where(text, "{{ message.subjet")
    assert issue.message == "unknown source 'message.subjet' in the template"
    assert issue.hint.startswith("did you mean 'message.subject'?")
    # An intake field no call type has (checked against call_types).
    adresse = "Adresse : {{ message.intake.adresse }}"
    text = replace(adresse, adresse.replace("adresse", "adrese"))
    issue = only_issue(text)
    assert (issue.line, issue.column) == where(text, "Adresse : {{ message.intake.adrese")
    assert issue.code == "unknown_intake_field"
    assert issue.message == "no call type has an intake field 'adrese'"
    assert issue.hint == (
        "did you mean 'adresse'? intake fields: adresse, piece "
        "(declared under call_types[].intake_fields)"
    )


def test_unknown_intake_field_in_a_source() -> None:
    text = replace("{from: message.intake.piece,", "{from: message.intake.pieces,")
    issue = only_issue(text)
    assert (issue.line, issue.path) == (
        line_of(text, "intake.pieces"),
        "connections.sf.mapping.call_log.fields.Piece__c.from",
    )
    assert issue.message == "no call type has an intake field 'pieces'"


def test_picklist_without_default_must_cover_known_values() -> None:
    text = replace(", urgent: High}", "}")
    issue = only_issue(text)
    assert (issue.line, issue.column) == where(text, "map: {low: Low")
    assert issue.path == "connections.sf.mapping.call_log.fields.Priority.map"
    assert issue.code == "unmapped_value"
    assert issue.message == (
        "the map does not list 'urgent' of message.urgency, and there is no default"
    )
    assert issue.hint == "add `urgent: <CRM value>` under map, or a `default:`"
    load(replace(", urgent: High}", "}\n            default: Normal"))  # a default covers it
    # With a transform the values are not known in advance: checked when rendering only.
    load(replace(", urgent: High}", "}\n            transform: lower"))

    text = replace(", sdb: Salle de bain}", "}")
    issue = only_issue(text)
    assert (issue.line, issue.column) == where(text, "map: {cuisine")
    assert issue.message == (
        "the map does not list 'sdb' of message.intake.piece, and there is no default"
    )


def test_picklist_keys_must_be_known_values() -> None:
    text = replace("urgent: High}", "urgnt: High}\n            default: High")
    issue = only_issue(text)
    assert (issue.line, issue.column) == where(text, "urgnt")
    assert issue.path == "connections.sf.mapping.call_log.fields.Priority.map.urgnt"
    assert issue.code == "unknown_value"
    assert issue.hint == "did you mean 'urgent'? its values: low, normal, high, urgent"


def test_required_crm_fields_cannot_be_removed() -> None:
    text = replace("          Phone: {from", "          LastName: null\n          Phone: {from")
    issue = only_issue(text)
    assert (issue.line, issue.code) == (line_of(text, "LastName: null"), "required_field")
    assert issue.message == "Salesforce requires LastName on a Contact, so it cannot be removed"
    fields = "        fields:\n          hs_timestamp: null\n          hs_call_title: caller.name\n"
    text = replace("        object: notes\n", "        object: notes\n" + fields)
    with pytest.raises(ConfigError) as caught:
        load(text)
    assert [(i.line, i.code, i.message) for i in caught.value.issues] == [
        (line_of(text, "hs_timestamp"), "required_field",
         "HubSpot requires hs_timestamp on notes, so it cannot be removed"),
        (line_of(text, "hs_call_title"), "wrong_object",
         "hs_call_title is a property of HubSpot calls, but this section writes notes"),
    ]  # fmt: skip


def test_mapping_shape_errors() -> None:
    issue = only_issue(replace("        object: notes", "        object: note"))
    assert issue.path == "connections.hs.mapping.call_log.object"
    assert issue.hint == "did you mean 'notes'? use one of 'calls' or 'notes'"
    issue = only_issue(replace("      contact:\n", "      contacts:\n"))
    assert issue.path == "connections.sf.mapping.contacts"
    assert issue.hint.startswith("did you mean 'contact'? allowed keys here: appointment,")
    settings = "    settings: {api_version"
    issue = only_issue(replace(settings, "    mapings: {}\n" + settings))
    assert issue.hint.startswith("did you mean 'mapping'? provider settings go under `settings:`")
    issue = only_issue(replace("Phone: {from: caller.phone,", "Phone: {form: caller.phone,"))
    assert issue.message == "unknown key 'form'"
    assert issue.hint.startswith(
        "did you mean 'from'? allowed keys here: default, from, keep_empty"
    )
    issue = only_issue(replace("Phone: {from:", "Phone: {value: x, from:"))
    assert issue.message == "give exactly one of `from`, `value` or `template` (found from, value)"
    issue = only_issue(replace("          Phone: {from", "          phone number: caller.phone\n"
                                                        "          Phone: {from"))  # fmt: skip
    assert issue.code == "invalid_field_name"
    assert issue.path == 'connections.sf.mapping.contact.fields["phone number"]'
    issue = only_issue(replace("object: notes", "fields: {Note_Body: message.body}"))
    assert issue.message == "'Note_Body' is not a HubSpot property internal name"
    assert "e.g. 'note_body'" in issue.hint


# --------------------------------------------------------------------------- the examples


@pytest.mark.parametrize("name", ["cabinet-durand", "plomberie-martin"])
def test_examples_still_load(name: str) -> None:
    config = load_tenant_file(EXAMPLES / f"{name}.yaml", env=DEMO_ENV)
    assert config.id == name


def test_documented_salesforce_example_is_valid() -> None:
    """The commented `crm-salesforce` connection of cabinet-durand.yaml, uncommented, loads."""
    path = EXAMPLES / "cabinet-durand.yaml"
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  # crm-salesforce:"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("  #"))
    block = [line.replace("  # ", "  ", 1) for line in lines[start:end]]
    text = "\n".join(lines[:start] + block + lines[end:]) + "\n"
    config = load_tenant_config(text, str(path), env=DEMO_ENV)
    connection = config.connections["crm-salesforce"]
    assert isinstance(connection, SalesforceConnection)
    resolved = connection.resolved_mapping()
    contact = resolved.section("contact")
    assert contact is not None and contact.object == "Lead"
    ctx = RenderContext(
        caller={"name": "LEBLANC Sophie", "phone": "01 23 45 67 89"},
        message={"subject": "Divorce", "call_type_label": "Nouveau client",
                 "intake": {"domaine": "famille"}, "taken_at": date(2025, 3, 4)},
        tenant=tenant_info(config),
    )  # fmt: skip
    assert contact.render(ctx) == {
        "FirstName": "Sophie",
        "LastName": "LEBLANC",
        "Phone": "01 23 45 67 89",
        "Company": "Particulier",
        "LeadSource": "Phone Inquiry",
        "Domaine__c": "Famille",
    }
    call_log = resolved.section("call_log")
    assert call_log is not None and "CallType" not in call_log.fields_used()
    rendered = call_log.render(ctx)
    assert rendered["Subject"] == "Nouveau client : Divorce"
    assert rendered["ActivityDate"] == "2025-03-04"
