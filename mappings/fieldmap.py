"""Per-tenant CRM field mappings: which CRM field receives which value.

A Salesforce or HubSpot connection of the tenant file may carry a ``mapping:``
beside its ``settings:``. It has up to four sections, one per record Relais
writes, each naming the CRM object and its fields::

    connections:
      crm:
        provider: salesforce
        mapping:
          contact:                      # the caller
            object: Lead                # Salesforce: Contact (default) or Lead
            fields:
              Company: {from: caller.company, default: "Particulier"}
              LeadSource: {value: Phone Inquiry}
              Description: null         # null removes a default field
          call_log:                     # the logged call (Salesforce Task; HubSpot calls or notes)
            fields:
              Subject: {template: "{{ message.call_type_label }} : {{ message.subject }}"}
              Priority: {from: message.urgency, map: {urgent: High, high: High}, default: Normal}
          callback_task: {}             # a callback to make (Salesforce Task; HubSpot tasks)
          appointment: {}               # a booked appointment (Salesforce Event; HubSpot meetings)

A section the tenant leaves out, and every field it does not name, keep the
built-in defaults (:data:`DEFAULTS`); a tenant field overrides the default
field of the same name (case-insensitively), ``null`` removes it.

**Expressions** (the value of each CRM field):

* ``caller.phone`` — a source path (see :data:`KNOWN_PATHS`); ``message.intake.<name>``
  reads an intake field of the call type (it must exist in ``call_types``);
* ``{from: <path>, transform: <name>}`` — ``transform`` may be a list, applied in order:
  ``e164``, ``national``, ``international`` (phones in the tenant's ``phone_region``),
  ``first_name``, ``last_name`` (see :func:`mappings.templates.split_name`), ``upper``,
  ``lower``, ``date`` (``2026-11-27`` in the tenant's zone), ``datetime_utc``
  (``2026-11-27T09:15:00Z``), ``epoch_ms`` (milliseconds since 1970, HubSpot), ``truncate:N``
  (at most N characters, ``…`` marking a cut), ``html`` (escape ``<>&`` and turn line breaks
  into ``<br>``, for HubSpot rich-text bodies);
* ``{value: <constant>}`` — a fixed value (text, number, true/false);
* ``{from: <path>, map: {<our value>: <CRM value>}, default: <CRM value>}`` — a picklist;
  a value the map does not list takes ``default``, and without ``default`` it is an error
  at render time (and at load time when the values are known: urgency, call types,
  choice intake fields, true/false);
* ``{template: "<Jinja2>"}`` — sandboxed Jinja2 (see :mod:`mappings.templates`), with the
  variables ``caller``, ``message``, ``staff``, ``appointment``, ``tenant`` and the filters
  ``phone_national``, ``phone_international``, ``phone_e164``, ``datetime``, ``first_name``,
  ``last_name``.

Every expression may add ``transform`` (after the value), ``map`` (after the transforms),
``default`` (used when the result is empty, or not in ``map``) and ``keep_empty: true``
(send an empty result — ``None`` or ``""``, which clears the CRM field — instead of
leaving the field out of the record, the default). Template output is stripped.

Values come from a :class:`RenderContext`. A field the context does not have is
``None``; datetimes may be aware datetimes or ISO 8601 text (naive ones are read
on the tenant's wall clock). A datetime left untransformed is sent as ISO 8601 UTC.

Pure: no I/O. :func:`effective_mapping` merges the tenant's mapping with the
defaults into a :class:`ResolvedMapping`; :meth:`Section.render` builds one
CRM record's fields and raises :class:`MappingRenderError` when it cannot.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from typing import Annotated, Any, Literal, NoReturn, Protocol, get_args

from jinja2 import TemplateError, TemplateSyntaxError
from markupsafe import escape
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mappings.errors import did_you_mean
from mappings.templates import (
    compile_template,
    epoch_ms,
    format_phone,
    iso_utc,
    parse_template,
    references,
    region_of,
    split_name,
    to_datetime,
    unknown_names,
    unsafe_lookups,
    zone_of,
)


class TenantLike(Protocol):
    """What :func:`tenant_info` reads of a tenant (``mappings.schema.TenantConfig``)."""

    id: str
    name: str
    timezone: str
    phone_region: str


# --------------------------------------------------------------------------- sources

Urgency = Literal["low", "normal", "high", "urgent"]
URGENCY_LEVELS: tuple[str, ...] = get_args(Urgency)  # the values of ``message.urgency``

KNOWN_PATHS: tuple[str, ...] = (
    "caller.phone",
    "caller.name",
    "caller.email",
    "caller.company",
    "message.subject",
    "message.body",
    "message.urgency",
    "message.call_type",
    "message.call_type_label",
    "message.taken_by",
    "message.taken_at",
    "message.callback_requested",
    "message.intake.<field>",
    "staff.name",
    "staff.email",
    "staff.crm_owner_id",
    "appointment.start",
    "appointment.end",
    "appointment.subject",
    "appointment.notes",
    "appointment.status",
    "tenant.name",
)
ROOTS: tuple[str, ...] = ("caller", "message", "staff", "appointment", "tenant")
_KEYS: dict[str, tuple[str, ...]] = {
    root: tuple(p.split(".")[1] for p in KNOWN_PATHS if p.startswith(root + "."))
    for root in ROOTS
}
DATETIME_PATHS = frozenset({"message.taken_at", "appointment.start", "appointment.end"})
_INTAKE_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")

SECTIONS: tuple[str, ...] = ("contact", "call_log", "callback_task", "appointment")
TRANSFORMS: tuple[str, ...] = (
    "e164",
    "national",
    "international",
    "first_name",
    "last_name",
    "upper",
    "lower",
    "date",
    "datetime_utc",
    "epoch_ms",
    "truncate:N",
    "html",
)
_TRUNCATE = re.compile(r"truncate\s*:\s*(\d+)")


def _fail(code: str, message: str, hint: str = "", **extra: Any) -> NoReturn:
    """A validation error with a hint (as :func:`mappings.schema.fail`), plus ``extra`` context."""
    raise PydanticCustomError(code, "{message}", {"message": message, "hint": hint, **extra})


def _path_problem(parts: tuple[str, ...]) -> tuple[str, str] | None:
    """``(message, hint)`` when ``parts`` is not a known source, else None.

    ``parts`` may go past a known leaf (``caller.name.upper`` in a template).
    """
    dotted = ".".join(parts)
    listing = "known sources: " + ", ".join(KNOWN_PATHS)
    if parts[0] not in _KEYS:
        hint = did_you_mean(dotted, [p.replace(".<field>", "") for p in KNOWN_PATHS])
        if len(parts) == 1:
            hint += f"for a fixed value write {{value: {dotted}}}; "
        return f"unknown source {dotted!r}", hint + listing
    if len(parts) == 1:
        return None
    if parts[1] not in _KEYS[parts[0]]:
        candidates = [p for p in KNOWN_PATHS if not p.endswith("<field>")]
        return f"unknown source {dotted!r}", did_you_mean(dotted, candidates) + listing
    if parts[:2] == ("message", "intake") and len(parts) > 2:
        if not _INTAKE_NAME.fullmatch(parts[2]):
            return (
                f"{parts[2]!r} is not an intake field name",
                "write message.intake.<name> with the `name` of an intake field of your "
                "call types",
            )
    return None


def _leaf(parts: tuple[str, ...]) -> str:
    """The known source a reference reads: ``message.intake.x`` or ``caller.name``."""
    depth = 3 if parts[:2] == ("message", "intake") else 2
    return ".".join(parts[:depth])


def _check_source(path: str) -> str:
    parts = tuple(path.split("."))
    if "" in parts:
        _fail("unknown_path", f"{path!r} is not a source path", "write e.g. caller.phone")
    if parts[:2] == ("message", "intake") and len(parts) != 3:
        _fail(
            "unknown_path",
            f"{path!r} does not name an intake field",
            "write message.intake.<name>, e.g. message.intake.adresse",
        )
    problem = _path_problem(parts)
    if problem is None and len(parts) > len(_leaf(parts).split(".")):
        problem = (f"unknown source {path!r}", "known sources: " + ", ".join(KNOWN_PATHS))
    if problem is None and len(parts) == 1:
        problem = (
            f"{path!r} is a whole record, not a field",
            "name one of its fields: "
            + ", ".join(p for p in KNOWN_PATHS if p.startswith(path + ".")),
        )
    if problem is not None:
        _fail("unknown_path", *problem)
    return path


def _check_transform(name: str) -> str:
    text = name.strip()
    found = _TRUNCATE.fullmatch(text)
    if found:
        if int(found.group(1)) < 1:
            _fail("invalid_transform", f"{text!r} keeps nothing", "write truncate:N with N ≥ 1")
        return f"truncate:{int(found.group(1))}"
    if text in TRANSFORMS:
        return text
    hint = did_you_mean(text, TRANSFORMS)
    if text.startswith("truncate"):
        hint = "write truncate:N, e.g. truncate:255; "
    _fail("invalid_transform", f"unknown transform {text!r}", hint + "use " + ", ".join(TRANSFORMS))


# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    """Like :class:`mappings.schema.Model`: unknown keys are errors, text is stripped."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, coerce_numbers_to_str=True
    )


def _transforms(value: Any) -> Any:
    """``transform: upper`` is a list of one; ``transform: {truncate: 40}`` (what YAML makes
    of ``truncate: 40`` on its own line) is ``truncate:40``."""
    if isinstance(value, dict) and list(value) == ["truncate"]:
        return [f"truncate:{value['truncate']}"]
    return [value] if isinstance(value, str) else value


def _empty_dict(value: Any) -> Any:
    return {} if value is None else value


_SCALARS = (str, int, float, bool)


def _scalar(value: Any) -> Any:
    if value is not None and not isinstance(value, _SCALARS):
        _fail(
            "invalid_value",
            "expected a single value (text, number, true or false)",
            "write the value on the same line as the key",
        )
    return value


Scalar = Annotated[Any, AfterValidator(_scalar)]
Transform = Annotated[str, AfterValidator(_check_transform)]


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


class _ExpressionError(Exception):
    """A render problem of one expression; the section adds the field's name."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem, fix)
        self.problem, self.fix = problem, fix


@dataclass(frozen=True)
class SourceReference:
    """A source an expression reads, and where: under ``from`` or line N of ``template``."""

    path: str  # e.g. "message.intake.adresse"
    key: str  # "from" or "template"
    template_line: int = 0


class Expression(_Model):
    """How one CRM field gets its value (see the module documentation)."""

    model_config = ConfigDict(populate_by_name=True)

    source: str | None = Field(default=None, alias="from")
    value: Scalar = None
    template: str | None = None
    transform: Annotated[list[Transform], BeforeValidator(_transforms)] = []
    map: dict[str, Scalar] | None = None
    default: Scalar = None
    keep_empty: bool = False

    @field_validator("source")
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        return None if value is None else _check_source(value)

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            analyse_template(value)
        return value

    @field_validator("map")
    @classmethod
    def _map(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and not value:
            _fail(
                "empty_map",
                "an empty map translates nothing",
                "list `our value: CRM value` pairs, or remove `map`",
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Expression:
        given = [k for k in ("source", "value", "template") if k in self.model_fields_set]
        if len(given) != 1:
            _fail(
                "invalid_expression",
                "give exactly one of `from`, `value` or `template`"
                + (f" (found {', '.join('from' if g == 'source' else g for g in given)})"
                   if given else ""),
                "write {from: caller.phone}, {value: Completed} or {template: \"Appel : "
                "{{ message.subject }}\"}; write `Field: null` to remove a default field",
            )
        return self

    # ------------------------------------------------------------------ reading

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set

    def source_references(self) -> Iterator[SourceReference]:
        """The sources this expression reads (``from`` and the template's variables)."""
        if self.source is not None:
            yield SourceReference(self.source, "from")
        if self.template is not None:
            tree = parse_template(self.template)
            for ref in references(tree, frozenset(ROOTS)):
                if len(ref.parts) > 1:
                    yield SourceReference(_leaf(ref.parts), "template", ref.lineno)

    def evaluate(self, view: RenderView) -> Any:
        if self.source is not None:
            value = view.lookup(self.source)
        elif self.template is not None:
            value = view.render(self.template)
        else:
            value = self.value
        for name in self.transform:
            value = _apply(name, value, view)
        if self.map is not None and not _is_empty(value):
            value = self._mapped(value)
        if _is_empty(value) and self.has_default:
            value = self.default
        return _plain(value)

    def _mapped(self, value: Any) -> Any:
        assert self.map is not None
        key = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if key in self.map:
            return self.map[key]
        folded = {k.casefold(): v for k, v in self.map.items()}
        if key.casefold() in folded:
            return folded[key.casefold()]
        if self.has_default:
            return self.default
        what = self.source or "the value"
        raise _ExpressionError(
            f"{what} is {key!r}, which `map` does not list, and there is no `default`",
            f"add `{key}: <CRM value>` under `map`, or a `default:`",
        )


def _shorthand(value: Any) -> Any:
    """``caller.phone`` is ``{from: caller.phone}``; ``null`` removes a default field."""
    if value is None or isinstance(value, (dict, Expression)):
        return value
    if isinstance(value, str):
        return {"from": value}
    shown = str(value).lower() if isinstance(value, bool) else repr(value)
    _fail(
        "invalid_expression",
        f"{shown} is not a field expression",
        f"for a fixed value write {{value: {shown}}}; for a source write e.g. caller.phone",
    )


FieldExpression = Annotated[Expression | None, BeforeValidator(_shorthand)]


def analyse_template(source: str) -> None:
    try:
        tree = parse_template(source)
    except TemplateSyntaxError as exc:
        _fail(
            "template_syntax",
            f"template syntax error: {exc.message}",
            "check the {{ }} and {% %} pairs on this line; write {{ '{{' }} for a literal {{",
            template_line=exc.lineno or 1,
        )
    for attr, lineno in unsafe_lookups(tree):
        _fail(
            "template_unsafe",
            f"the template reads {attr!r}, which templates may not access",
            "use only the fields of caller, message, staff, appointment and tenant",
            template_line=lineno,
        )
    for name, lineno in unknown_names(tree, frozenset(ROOTS)):
        _fail(
            "template_unknown",
            f"unknown variable {name!r} in the template",
            did_you_mean(name, ROOTS) + "variables: " + ", ".join(ROOTS),
            template_line=lineno,
        )
    for ref in references(tree, frozenset(ROOTS)):
        problem = _path_problem(ref.parts)
        if problem is not None:
            _fail("template_unknown", problem[0] + " in the template", problem[1],
                  template_line=ref.lineno)  # fmt: skip
    compile_template(source)  # compiled once, at load


class SectionMapping(_Model):
    """One CRM record: its ``object`` (where the CRM offers a choice) and its ``fields``."""

    object: str | None = None
    fields: Annotated[dict[str, FieldExpression], BeforeValidator(_empty_dict)] = {}


_HS_FIELD = re.compile(r"[a-z][a-z0-9_]{0,99}")


def _sf_field(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,79}", name) or "___" in name:
        _fail(
            "invalid_field_name",
            f"{name!r} is not a Salesforce field API name",
            "use the API name from Setup › Object Manager › Fields, e.g. Phone or "
            "Numero_dossier__c",
        )
    return name


def _hs_field(name: str) -> str:
    if not _HS_FIELD.fullmatch(name):
        lowered = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
        _fail(
            "invalid_field_name",
            f"{name!r} is not a HubSpot property internal name",
            "internal names are lowercase letters, digits and underscores"
            + (f", e.g. {lowered!r}" if lowered else "")
            + " (Settings › Properties › the property › internal name)",
        )
    return name


SalesforceField = Annotated[str, AfterValidator(_sf_field)]
HubSpotField = Annotated[str, AfterValidator(_hs_field)]


class _SalesforceSection(SectionMapping):
    fields: Annotated[dict[SalesforceField, FieldExpression], BeforeValidator(_empty_dict)] = {}


class _HubSpotSection(SectionMapping):
    fields: Annotated[dict[HubSpotField, FieldExpression], BeforeValidator(_empty_dict)] = {}


class SalesforceContactSection(_SalesforceSection):
    object: Literal["Contact", "Lead"] | None = None


class SalesforceTaskSection(_SalesforceSection):
    object: Literal["Task"] | None = None


class SalesforceEventSection(_SalesforceSection):
    object: Literal["Event"] | None = None


class HubSpotContactSection(_HubSpotSection):
    object: Literal["contacts"] | None = None


class HubSpotCallLogSection(_HubSpotSection):
    object: Literal["calls", "notes"] | None = None


class HubSpotTaskSection(_HubSpotSection):
    object: Literal["tasks"] | None = None


class HubSpotMeetingSection(_HubSpotSection):
    object: Literal["meetings"] | None = None


class FieldMapping(_Model):
    """What a connection's ``mapping:`` becomes: the tenant's sections (defaults not merged)."""

    contact: SectionMapping | None = None
    call_log: SectionMapping | None = None
    callback_task: SectionMapping | None = None
    appointment: SectionMapping | None = None

    def sections(self) -> dict[str, SectionMapping]:
        """The sections the tenant wrote, by name."""
        found = {name: getattr(self, name) for name in SECTIONS}
        return {name: section for name, section in found.items() if section is not None}

    def as_data(self) -> dict[str, Any]:
        """Plain JSON-ready data that validates back into the same mapping (``null``s kept)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class SalesforceMapping(FieldMapping):
    contact: SalesforceContactSection | None = None
    call_log: SalesforceTaskSection | None = None
    callback_task: SalesforceTaskSection | None = None
    appointment: SalesforceEventSection | None = None


class HubSpotMapping(FieldMapping):
    contact: HubSpotContactSection | None = None
    call_log: HubSpotCallLogSection | None = None
    callback_task: HubSpotTaskSection | None = None
    appointment: HubSpotMeetingSection | None = None


MAPPING_MODELS: dict[str, type[FieldMapping]] = {
    "salesforce": SalesforceMapping,
    "hubspot": HubSpotMapping,
}

# --------------------------------------------------------------------------- defaults

OBJECTS: dict[str, dict[str, tuple[str, ...]]] = {
    "salesforce": {
        "contact": ("Contact", "Lead"),
        "call_log": ("Task",),
        "callback_task": ("Task",),
        "appointment": ("Event",),
    },
    "hubspot": {
        "contact": ("contacts",),
        "call_log": ("calls", "notes"),
        "callback_task": ("tasks",),
        "appointment": ("meetings",),
    },
}
"""Objects each section may write; the first is the default."""

REQUIRED: dict[tuple[str, str], tuple[str, ...]] = {
    ("salesforce", "Contact"): ("LastName",),
    ("salesforce", "Lead"): ("LastName", "Company"),
    ("salesforce", "Event"): ("StartDateTime", "EndDateTime"),
    ("hubspot", "calls"): ("hs_timestamp",),
    ("hubspot", "notes"): ("hs_timestamp",),
    ("hubspot", "tasks"): ("hs_timestamp",),
    ("hubspot", "meetings"): ("hs_timestamp",),
}
"""Fields the CRM refuses to create the object without: never removable, never sent empty."""

NOT_GIVEN = "[non renseigné]"
PROVIDER_NAMES = {"salesforce": "Salesforce", "hubspot": "HubSpot"}

# Plain-text summary of a call, shared by the Salesforce Task and HubSpot bodies.
CALL_SUMMARY = (
    "{{ message.body }}\n"
    "\n"
    'Appelant : {{ caller.name or "inconnu" }}'
    '{{ ", " ~ caller.phone | phone_national if caller.phone else "" }}\n'
    "{% if caller.company %}\nSociété : {{ caller.company }}\n{% endif %}"
    "{% if caller.email %}\nE-mail : {{ caller.email }}\n{% endif %}"
    "{% if message.call_type_label %}\nMotif : {{ message.call_type_label }}\n{% endif %}"
    'Message pris{{ " par " ~ message.taken_by if message.taken_by else "" }}'
    '{{ " le " ~ message.taken_at | datetime if message.taken_at else "" }}.'
)
CALL_TITLE = "Appel : {{ message.subject or message.call_type_label }}"
CALLBACK_TITLE = "Rappeler {{ caller.name or caller.phone | phone_national }}"
CALLBACK_BODY = (
    '{{ "Numéro à rappeler : " ~ caller.phone | phone_national if caller.phone '
    'else "Numéro non communiqué" }}\n'
    "{% if message.subject %}\nObjet : {{ message.subject }}\n{% endif %}\n"
    "\n" + CALL_SUMMARY  # trim_blocks eats the first newline after endif
)
APPOINTMENT_TITLE = (
    '{{ appointment.subject or "Rendez-vous avec " ~ (caller.name or caller.phone | '
    "phone_national) }}"
)
APPOINTMENT_BODY = (
    "{{ appointment.notes }}\n"
    "\n"
    'Rendez-vous pris pour {{ caller.name or "un appelant" }}'
    '{{ ", " ~ caller.phone | phone_national if caller.phone else "" }}'
    '{{ " (" ~ caller.email ~ ")" if caller.email else "" }}.'
)

_SF_PRIORITY = {
    "from": "message.urgency",
    "map": {"low": "Low", "normal": "Normal", "high": "High", "urgent": "High"},
    "default": "Normal",
}
_HS_PRIORITY = {
    "from": "message.urgency",
    "map": {"low": "LOW", "normal": "MEDIUM", "high": "HIGH", "urgent": "HIGH"},
    "default": "MEDIUM",
}
_SF_PERSON: dict[str, Any] = {
    "FirstName": {"from": "caller.name", "transform": ["first_name", "truncate:40"]},
    "LastName": {
        "from": "caller.name",
        "transform": ["last_name", "truncate:80"],
        "default": NOT_GIVEN,
    },
    "Phone": {"from": "caller.phone", "transform": "national"},
    "Email": "caller.email",
}
_TAKEN_DATE = {"from": "message.taken_at", "transform": "date"}
_HS_TAKEN_AT = {"from": "message.taken_at", "transform": "epoch_ms"}

DEFAULTS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "salesforce": {
        "contact": {
            "Contact": dict(_SF_PERSON),
            "Lead": {
                **_SF_PERSON,
                "Company": {"from": "caller.company", "default": NOT_GIVEN},
                "LeadSource": {"value": "Phone Inquiry"},
            },
        },
        "call_log": {
            "Task": {
                "Subject": {"template": CALL_TITLE, "transform": "truncate:255"},
                "Description": {"template": CALL_SUMMARY},
                "ActivityDate": _TAKEN_DATE,
                "Status": {"value": "Completed"},
                "Priority": _SF_PRIORITY,
                "OwnerId": "staff.crm_owner_id",
                "TaskSubtype": {"value": "Call"},
                "CallType": {"value": "Inbound"},
            }
        },
        "callback_task": {
            "Task": {
                "Subject": {"template": CALLBACK_TITLE, "transform": "truncate:255"},
                "Description": {"template": CALLBACK_BODY},
                "ActivityDate": _TAKEN_DATE,
                "Status": {"value": "Not Started"},
                "Priority": _SF_PRIORITY,
                "OwnerId": "staff.crm_owner_id",
                "TaskSubtype": {"value": "Task"},
            }
        },
        "appointment": {
            "Event": {
                "Subject": {"template": APPOINTMENT_TITLE, "transform": "truncate:255"},
                "StartDateTime": {"from": "appointment.start", "transform": "datetime_utc"},
                "EndDateTime": {"from": "appointment.end", "transform": "datetime_utc"},
                "Description": {"template": APPOINTMENT_BODY},
                "OwnerId": "staff.crm_owner_id",
            }
        },
    },
    "hubspot": {
        "contact": {
            "contacts": {
                "firstname": {"from": "caller.name", "transform": "first_name"},
                "lastname": {"from": "caller.name", "transform": "last_name"},
                "phone": {"from": "caller.phone", "transform": "e164"},
                "email": "caller.email",
                "company": "caller.company",
            }
        },
        "call_log": {
            "calls": {
                "hs_timestamp": _HS_TAKEN_AT,
                "hs_call_title": {"template": CALL_TITLE},
                "hs_call_body": {"template": CALL_SUMMARY, "transform": "html"},
                "hs_call_direction": {"value": "INBOUND"},
                "hs_call_status": {"value": "COMPLETED"},
                "hs_call_from_number": {"from": "caller.phone", "transform": "e164"},
                "hubspot_owner_id": "staff.crm_owner_id",
            },
            "notes": {
                "hs_timestamp": _HS_TAKEN_AT,
                "hs_note_body": {"template": CALL_TITLE + "\n\n" + CALL_SUMMARY,
                                 "transform": "html"},  # fmt: skip
                "hubspot_owner_id": "staff.crm_owner_id",
            },
        },
        "callback_task": {
            "tasks": {
                "hs_timestamp": _HS_TAKEN_AT,
                "hs_task_subject": {"template": CALLBACK_TITLE},
                "hs_task_body": {"template": CALLBACK_BODY, "transform": "html"},
                "hs_task_status": {"value": "NOT_STARTED"},
                "hs_task_priority": _HS_PRIORITY,
                "hs_task_type": {"value": "CALL"},
                "hubspot_owner_id": "staff.crm_owner_id",
            }
        },
        "appointment": {
            "meetings": {
                "hs_timestamp": {"from": "appointment.start", "transform": "epoch_ms"},
                "hs_meeting_title": {"template": APPOINTMENT_TITLE},
                "hs_meeting_body": {"template": APPOINTMENT_BODY, "transform": "html"},
                "hs_meeting_start_time": {"from": "appointment.start", "transform": "epoch_ms"},
                "hs_meeting_end_time": {"from": "appointment.end", "transform": "epoch_ms"},
                "hs_meeting_outcome": {
                    "from": "appointment.status",
                    "map": {
                        "scheduled": "SCHEDULED",
                        "confirmed": "SCHEDULED",
                        "rescheduled": "RESCHEDULED",
                        "completed": "COMPLETED",
                        "no_show": "NO_SHOW",
                        "cancelled": "CANCELED",
                        "canceled": "CANCELED",
                    },
                    "default": "SCHEDULED",
                },
                "hubspot_owner_id": "staff.crm_owner_id",
            }
        },
    },
}
"""Built-in mappings: provider → section → object → CRM field → expression (YAML form)."""


@cache
def default_fields(provider: str, section: str, obj: str) -> tuple[tuple[str, Expression], ...]:
    """The default fields of ``section`` written as ``obj`` (validated, templates compiled)."""
    raw = DEFAULTS[provider][section][obj]
    out: list[tuple[str, Expression]] = []
    for name, spec in raw.items():
        expression = Expression.model_validate(_shorthand(spec))
        out.append((name, expression))
    return tuple(out)


# --------------------------------------------------------------------------- rendering


@dataclass
class RenderContext:
    """What a mapping reads. Missing keys read as ``None``.

    ``caller``: phone, name, email, company. ``message``: subject, body, urgency,
    call_type, call_type_label, taken_by, taken_at, callback_requested, intake (a
    dict). ``staff``: name, email, crm_owner_id. ``appointment``: start, end,
    subject, notes, status. ``tenant``: id, name, timezone, phone_region.
    Datetimes are aware datetimes or ISO 8601 text.
    """

    caller: dict[str, Any]
    message: dict[str, Any] | None = None
    staff: dict[str, Any] | None = None
    appointment: dict[str, Any] | None = None
    tenant: dict[str, Any] = field(default_factory=dict)


def tenant_info(config: TenantLike) -> dict[str, Any]:
    """The ``tenant`` part of a :class:`RenderContext` for a loaded tenant configuration."""
    return {
        "id": config.id,
        "name": config.name,
        "timezone": config.timezone,
        "phone_region": config.phone_region,
    }


class MappingRenderError(ValueError):
    """A CRM field could not be rendered; ``field`` is the CRM field, the message says the fix."""

    def __init__(self, field: str, message: str, section: str | None = None) -> None:
        super().__init__(field, message, section)
        self.field = field
        self.message = message
        self.section = section

    def __str__(self) -> str:
        return self.message


class RenderView:
    """The render context as template variables: every known key present (``None`` if absent)."""

    def __init__(self, context: RenderContext) -> None:
        self.tenant = dict(context.tenant or {})
        self.zone = zone_of(self.tenant)
        self.region = region_of(self.tenant)
        self.roots: dict[str, dict[str, Any]] = {
            "caller": self._root("caller", context.caller),
            "message": self._root("message", context.message),
            "staff": self._root("staff", context.staff),
            "appointment": self._root("appointment", context.appointment),
            "tenant": self._root("tenant", self.tenant),
        }

    def _root(self, name: str, data: dict[str, Any] | None) -> dict[str, Any]:
        out: dict[str, Any] = dict.fromkeys(_KEYS[name])
        out.update(data or {})
        if name == "message":
            out["intake"] = dict(out.get("intake") or {})
        for key in _KEYS[name]:
            if f"{name}.{key}" in DATETIME_PATHS and isinstance(out[key], str):
                try:
                    out[key] = to_datetime(out[key], self.zone)
                except ValueError:
                    pass  # kept as text: a transform reading it says what is wrong
        return out

    def lookup(self, path: str) -> Any:
        parts = path.split(".")
        current: Any = self.roots.get(parts[0])
        for part in parts[1:]:
            current = current.get(part) if isinstance(current, dict) else None
        return current

    def render(self, source: str) -> str:
        try:
            return compile_template(source).render(self.roots).strip()
        except TemplateError as exc:
            raise _ExpressionError(
                f"the template failed: {exc.message or exc}",
                "fix the template (a field that may be empty can be tested with "
                "{% if … %})",
            ) from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise _ExpressionError(f"the template failed: {exc}", "fix the template") from None


def _moment(value: Any, view: RenderView, transform: str) -> Any:
    try:
        return to_datetime(value, view.zone)
    except ValueError:
        raise _ExpressionError(
            f"{value!r} is not a date and time, so `{transform}` cannot apply",
            f"remove `{transform}`, or read a date field",
        ) from None


def _apply(name: str, value: Any, view: RenderView) -> Any:
    if _is_empty(value):
        return None
    if name in ("e164", "national", "international"):
        return format_phone(value, view.region, name)
    if name == "first_name":
        return split_name(value)[0]
    if name == "last_name":
        return split_name(value)[1]
    if name == "upper":
        return str(value).upper()
    if name == "lower":
        return str(value).lower()
    if name == "html":
        return str(escape(str(value))).replace("\r\n", "\n").replace("\n", "<br>")
    if name == "date":
        moment = _moment(value, view, name)
        return moment.astimezone(view.zone).date().isoformat()
    if name == "datetime_utc":
        return iso_utc(_moment(value, view, name))
    if name == "epoch_ms":
        return epoch_ms(_moment(value, view, name))
    found = _TRUNCATE.fullmatch(name)
    if found:
        limit, text = int(found.group(1)), str(value)
        return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
    raise AssertionError(f"unknown transform {name}")  # validated at load


def _plain(value: Any) -> Any:
    """JSON-ready: datetimes as ISO 8601 UTC, dates as YYYY-MM-DD."""
    if isinstance(value, datetime):
        return iso_utc(value) if value.tzinfo is not None else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


@dataclass(frozen=True)
class Section:
    """One CRM record to write: the object, and each field's expression (defaults merged)."""

    name: str  # contact, call_log, callback_task, appointment
    provider: str
    object: str  # Contact, Lead, Task, Event, contacts, calls, notes, tasks, meetings
    fields: tuple[tuple[str, Expression], ...]
    required: tuple[str, ...] = ()

    def fields_used(self) -> list[str]:
        """The CRM field names this section may write (to check against describe/properties)."""
        return [name for name, _ in self.fields]

    def expression(self, crm_field: str) -> Expression | None:
        return next((e for n, e in self.fields if n.casefold() == crm_field.casefold()), None)

    def render(self, context: RenderContext) -> dict[str, Any]:
        """The record's fields; empty values are left out unless ``keep_empty``.

        Raises :class:`MappingRenderError` naming the CRM field and the fix.
        """
        view = RenderView(context)
        out: dict[str, Any] = {}
        for name, expression in self.fields:
            where = f"mapping.{self.name}.fields.{name}"
            try:
                value = expression.evaluate(view)
            except _ExpressionError as exc:
                raise MappingRenderError(
                    name, f"{where}: {exc.problem} — {exc.fix}", self.name
                ) from None
            if _is_empty(value):
                if name in self.required:
                    raise MappingRenderError(
                        name,
                        f"{where}: {self.object} needs {name}, but it is empty for this "
                        f"message — give the field a `default:` or read another source",
                        self.name,
                    )
                if not expression.keep_empty:
                    continue
            out[name] = value
        return out


@dataclass(frozen=True)
class ResolvedMapping:
    """A connection's mapping with the defaults merged in: one :class:`Section` per record."""

    provider: str
    sections: dict[str, Section]

    def section(self, name: str) -> Section | None:
        """``contact``, ``call_log``, ``callback_task`` or ``appointment`` (None otherwise)."""
        return self.sections.get(name)

    def fields_used(self) -> list[str]:
        """Every CRM field name of every section, once each (see :meth:`fields_by_object`)."""
        return list(dict.fromkeys(n for s in self.sections.values() for n in s.fields_used()))

    def fields_by_object(self) -> dict[str, list[str]]:
        """CRM object → the field names written on it, over all sections."""
        out: dict[str, list[str]] = {}
        for section in self.sections.values():
            names = out.setdefault(section.object, [])
            names.extend(n for n in section.fields_used() if n not in names)
        return out


def effective_mapping(provider: str, mapping: FieldMapping | None) -> ResolvedMapping:
    """The defaults of ``provider`` (``salesforce`` or ``hubspot``) merged with ``mapping``.

    Per section: the object is the tenant's or the default one; the fields are
    the defaults for that object, then the tenant's fields in order — a field
    named like a default one (case-insensitively) replaces it in place, ``null``
    removes it. Raises ValueError for another provider or an object the
    provider's section cannot write.
    """
    if provider not in OBJECTS:
        raise ValueError(
            f"no field mapping for provider {provider!r}; mappings exist for "
            + ", ".join(OBJECTS)
        )
    sections: dict[str, Section] = {}
    for name in SECTIONS:
        given = getattr(mapping, name) if mapping is not None else None
        allowed = OBJECTS[provider][name]
        obj = given.object if given is not None and given.object else allowed[0]
        if obj not in allowed:
            raise ValueError(
                f"a {provider} {name} cannot be a {obj!r}; use one of {', '.join(allowed)}"
            )
        fields = dict(default_fields(provider, name, obj))
        if given is not None:
            spelled = {n.casefold(): n for n in fields}
            for crm_field, expression in given.fields.items():
                existing = spelled.get(crm_field.casefold())
                if expression is None:
                    if existing is not None:
                        del fields[existing]
                    continue
                fields[existing or crm_field] = expression
                spelled.setdefault(crm_field.casefold(), crm_field)
        sections[name] = Section(
            name=name,
            provider=provider,
            object=obj,
            fields=tuple(fields.items()),
            required=REQUIRED.get((provider, obj), ()),
        )
    return ResolvedMapping(provider=provider, sections=sections)
