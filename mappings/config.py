"""Load and validate one tenant's YAML configuration.

    config = load_tenant_file("examples/cabinet-durand.yaml")
    plan = plan_deliveries(config, "urgence-garde-a-vue", "urgent")

Three passes, each reporting every problem it finds as a file:line:column
issue with a hint (:class:`mappings.errors.ConfigError`):

1. YAML (:mod:`mappings.yamlpos`): syntax, duplicate keys, ``${VAR}``;
2. shape (:mod:`mappings.schema`): unknown keys, types, zones, phones, hours…;
3. references across the file: rules naming unknown call types or
   connections, duplicate ids, staff calendars on a non-calendar connection,
   CRM field mappings reading intake fields no call type has…

Pure: no I/O besides reading the file given to :func:`load_tenant_file`.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import phonenumbers
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from mappings.errors import ConfigError, ConfigIssue, Path, did_you_mean, format_path
from mappings.fieldcheck import check_mapping_references
from mappings.recipients import RELAIS_SENDER, channel_connection
from mappings.rulecheck import RuleChecker, check_rules
from mappings.schema import (
    PROVIDERS,
    Action,
    CrmConnection,
    DefaultRule,
    ProviderConnection,
    TenantConfig,
)
from mappings.yamlpos import YamlDocument, load_yaml


def load_tenant_config(
    text: str, filename: str = "<config>", *, env: Mapping[str, str] | None = None,
    missing_senders: Mapping[str, Sequence[str]] | None = None,
) -> TenantConfig:
    """Parse and validate a tenant file's text; raise ConfigError listing every issue.

    ``env`` is the mapping ``${NAME}`` reads from; by default the process
    environment restricted to ``RELAIS_DEMO_*`` and ``RELAIS_TENANT_*``; of the
    latter, a file may name only its own tenant's ``RELAIS_TENANT_<ID>_*``.
    ``missing_senders`` (channel -> unset operator settings) refuses rules that
    would send through Relais's own sender of such a channel; None: not checked.
    """
    # The id is read first (a parse of its own) only when the file names a tenant
    # variable: a file without one cannot read another tenant's secrets.
    tenant_id = _tenant_id(text, filename) if _REFERENCE.search(text) else None
    if tenant_id is not None:
        foreign = foreign_variables(text, filename, tenant_id)
        if foreign:
            raise ConfigError(foreign)
    document = load_yaml(text, filename, env)
    if not isinstance(document.data, dict):
        raise ConfigError(
            [
                document.issue(
                    (),
                    "a tenant file must be a mapping of `key: value` lines",
                    "start with `id: my-company` on the first line; see examples/",
                    "not_a_mapping",
                )
            ]
        )
    # Top-level keys starting with "x-" are free: a place for YAML anchors (&name).
    data = {k: v for k, v in document.data.items() if not k.startswith("x-")}
    region = data.get("phone_region")
    region = region.strip().upper() if isinstance(region, str) else None
    context = {
        "phone_region": region,
        "phone_region_invalid": region not in phonenumbers.SUPPORTED_REGIONS,
    }
    try:
        config = TenantConfig.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(_translate(e, document) for e in exc.errors()) from None
    issues = check_references(config, document)
    if not issues and missing_senders:
        issues = check_senders(config, document, missing_senders)
    if issues:
        raise ConfigError(issues)
    return config


TENANT_PREFIX = "RELAIS_TENANT_"
_REFERENCE = re.compile(r"\$\{(" + TENANT_PREFIX + r"[A-Za-z0-9_]*)(?::-[^}]*)?\}")


def tenant_variable_prefix(tenant_id: str) -> str:
    """``RELAIS_TENANT_<ID>_``: the variables tenant ``tenant_id`` may read
    (``cabinet-durand`` → ``RELAIS_TENANT_CABINET_DURAND_``)."""
    return TENANT_PREFIX + re.sub(r"[^A-Z0-9]", "_", tenant_id.upper()) + "_"


class _AnyValue(dict):  # type: ignore[type-arg]
    """An environment where every variable is set: reading the id needs no value."""

    def get(self, key: Any, default: Any = None) -> Any:
        return "x"

    def __getitem__(self, key: Any) -> Any:
        return "x"

    def __contains__(self, key: object) -> bool:
        return True


def _tenant_id(text: str, filename: str) -> str | None:
    try:
        data = load_yaml(text, filename, _AnyValue()).data
    except ConfigError:
        return None  # reported by the real load
    found = data.get("id") if isinstance(data, dict) else None
    return found if isinstance(found, str) and found else None


def foreign_variables(text: str, filename: str, tenant_id: str) -> list[ConfigIssue]:
    """``${RELAIS_TENANT_…}`` references outside the tenant's own prefix: a tenant's
    admin must not read another tenant's secrets into their own file."""
    own = tenant_variable_prefix(tenant_id)
    issues = []
    for number, line in enumerate(text.splitlines(), start=1):
        code = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
        for match in _REFERENCE.finditer(code):
            name = match.group(1)
            if not name.startswith(own):
                issues.append(ConfigIssue(
                    filename, number, match.start() + 1, "",
                    f"environment variable {name} is not one of tenant {tenant_id}'s",
                    f"tenant {tenant_id} reads only {own}* variables: name it "
                    f"{own}{name.removeprefix(TENANT_PREFIX)}", "env_not_allowed"))
    return issues


def load_tenant_file(
    path: str | PathLike[str], *, env: Mapping[str, str] | None = None,
    missing_senders: Mapping[str, Sequence[str]] | None = None,
) -> TenantConfig:
    """Read ``path`` (UTF-8) and :func:`load_tenant_config` it, naming the file in errors."""
    filename = str(path)
    raw = FsPath(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [
                ConfigIssue(
                    filename,
                    line,
                    1,
                    "",
                    "the file is not valid UTF-8",
                    "save it as UTF-8 (most editors offer it in 'Save as')",
                    "encoding",
                )
            ]
        ) from None
    return load_tenant_config(text, filename, env=env, missing_senders=missing_senders)


def check_senders(config: TenantConfig, document: YamlDocument,
                  missing: Mapping[str, Sequence[str]]) -> list[ConfigIssue]:
    """Rules, ladders and notices that would send through Relais's own sender of a
    channel the operator has not configured: every such call would fail to send."""
    uses: list[tuple[Path, str, str | None, str]] = []  # (path, channel, via, what)
    rule_lists = [(("rules", "rules", n), r.name, r.then)
                  for n, r in enumerate(config.rules.rules)]
    if config.rules.default is not None:
        rule_lists.append((("rules", "default"), config.rules.default.name,
                           config.rules.default.then))
    for where, name, then in rule_lists:
        for index, action in enumerate(then):
            spec = action.email or action.sms or action.digest
            if spec is not None:
                channel = action.digest.channel if action.digest is not None else action.kind
                uses.append(((*where, "then", index, action.kind), channel, spec.via,
                             f"rule {name!r}"))
    for ladder, spec in config.escalations.items():
        for index, step in enumerate(spec.steps):
            uses.append((("escalations", ladder, "steps", index, "channel"), step.channel,
                         step.via, f"escalation {ladder!r} step {index + 1}"))
        uses.append((("escalations", ladder, "dead_end"), spec.dead_end.channel,
                     spec.dead_end.via, f"escalation {ladder!r} dead end"))
    notice = config.notify_on_calendar_change
    if notice is not None:
        uses.append((("notify_on_calendar_change",), notice.channel, notice.via,
                     "notify_on_calendar_change"))
    issues = []
    for path, channel, via, what in uses:
        connection, _ = channel_connection(config, channel, via)
        if connection == RELAIS_SENDER and missing.get(channel):
            issues.append(document.issue(
                path,
                f"{what} sends {channel} through Relais's own {channel} sender, which this "
                f"deployment has not configured ({', '.join(missing[channel])} unset)",
                f"ask the operator to set {', '.join(missing[channel])}, or add an {channel} "
                if channel == "email" else
                f"ask the operator to set {', '.join(missing[channel])}, or add an SMS "
                "connection and name it with `via:`",
                "sender_not_configured",
            ))
    return issues


# --------------------------------------------------------------------------- pydantic errors

_MISSING_EXAMPLES = {
    "id": "id: cabinet-durand",
    "name": "name: Cabinet Durand Avocats",
    "timezone": "timezone: Europe/Paris",
    "phone_region": "phone_region: FR",
    "call_types": "call_types: with at least one `- id: … label: …` item",
    "label": "label: Nouveau client",
    "url": "url: https://crm.example.fr/hooks/relais",
    "provider": "provider: webhook (or " + ", ".join(PROVIDERS[1:]) + ")",
    "then": "then: with a list of actions such as `- connection: crm`",
    "connection": "connection: <one of the names under connections>",
    "duration_minutes": "duration_minutes: 30",
    "country": "country: FR",
    "to": "to: [<staff id>, on_call, or an address]",
    "body": "body: the text of the message",
    "rotation": "rotation: [<staff id>, …] or [{staff: <id>, from: \"mon 08:00\"}, …]",
    "steps": "steps: with at least one `- {to: on_call, channel: sms, wait: 10m}`",
    "dead_end": "dead_end: {to: admin@example.fr}",
    "channel": "channel: sms (or email)",
    "wait": "wait: 10m",
    "staff": "staff: <a staff id>",
    "from": "from: 2026-12-24T18:00",
}

_EXTRA_HINTS: dict[tuple[type[BaseModel], str], str] = {
    (DefaultRule, "when"): "the default rule applies when no other rule matched; "
    "it has no `when` (move this rule into `rules:` instead)",
}

_TYPE_HINTS = {
    "string": "write text on the same line as the key; quote it if it contains ': ' or '#'",
    "bool": "write true or false",
    "int": "write a whole number such as 10",
    "float": "write a number such as 10 or 2.5",
    "list": "write one `- item` per line under the key, or [a, b] on one line",
    "dict": "write `key: value` lines indented under the key",
    "date": "write dates as YYYY-MM-DD, e.g. 2025-12-25",
    "time": "write times as HH:MM",
}


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()} (true/false)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}"
    return repr(value)


def _expected(error_type: str) -> str | None:
    for prefix, family in (
        ("string", "string"),
        ("bool", "bool"),
        ("int", "int"),
        ("float", "float"),
        ("list", "list"),
        ("dict", "dict"),
        ("model", "dict"),
        ("date", "date"),
        ("time", "time"),
    ):
        if error_type.startswith(prefix) and error_type != "string_pattern_mismatch":
            return family
    return None


_BOUNDS = {
    "less_than_equal": ("above the maximum of", "le"),
    "greater_than_equal": ("below the minimum of", "ge"),
    "less_than": ("not less than", "lt"),
    "greater_than": ("not more than", "gt"),
}

_NOUNS = {
    "string": "text",
    "bool": "true or false",
    "int": "a whole number",
    "float": "a number",
    "list": "a list",
    "dict": "a mapping",
    "date": "a date",
    "time": "a time",
}


def _resolve(loc: tuple[int | str, ...], data: Any, error_type: str) -> tuple[Path, bool]:
    """The data path of a pydantic ``loc`` (internal union tags dropped), and whether
    the error is about a mapping key (``[key]`` parts)."""
    path: list[str | int] = []
    current: Any = data
    on_key = False
    for index, part in enumerate(loc):
        if part == "[key]":
            on_key = True
            continue
        if isinstance(current, dict) and isinstance(part, str) and part in current:
            current = current[part]
            path.append(part)
        elif (
            isinstance(current, list)
            and isinstance(part, int)
            and not isinstance(part, bool)
            and 0 <= part < len(current)
        ):
            current = current[part]
            path.append(part)
        elif index == len(loc) - 1 and error_type == "missing":
            path.append(part)
    return tuple(path), on_key


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class validating the value at ``loc`` (to list its allowed keys)."""
    tp: Any = TenantConfig
    for part in loc:
        tp = _unwrap(tp)
        origin = get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return None
            tp = field.annotation
        elif origin is list:
            tp = get_args(tp)[0]
        elif origin is dict:
            tp = get_args(tp)[1]
        elif origin in (Union, types.UnionType):  # a tagged union: ``part`` is the tag
            tp = next(
                (m for m in get_args(tp) if _has_tag(m, part)),
                None,
            )
            if tp is None:
                return None
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _has_tag(member: Any, tag: int | str) -> bool:
    if not (isinstance(member, type) and issubclass(member, BaseModel)):
        return False
    for field in member.model_fields.values():
        if get_origin(field.annotation) is Literal and tag in get_args(field.annotation):
            return True
    return False


def _translate(error: ErrorDetails, document: YamlDocument) -> ConfigIssue:
    error_type = error["type"]
    loc = tuple(error["loc"])
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")
    path, on_key = _resolve(loc, document.data, error_type)
    field = next((p for p in reversed(path) if isinstance(p, str)), "value")

    if "message" in ctx and "hint" in ctx:  # our own validators (schema.fail)
        message, hint, code = str(ctx["message"]), str(ctx["hint"]), error_type
        if "template_line" in ctx:  # a template: point at its line inside the YAML value
            line, column = document.locate_in_scalar(path, int(ctx["template_line"]))
            return ConfigIssue(
                document.filename, line, column, format_path(path), message, hint, code
            )
    elif error_type == "extra_forbidden":
        key = str(loc[-1])
        model = _model_at(loc[:-1])
        allowed = (
            sorted(f.alias or name for name, f in model.model_fields.items())
            if model is not None
            else []
        )
        message, code = f"unknown key {key!r}", "unknown_key"
        if model is not None and (model, key) in _EXTRA_HINTS:
            hint = _EXTRA_HINTS[(model, key)]
        elif model is ProviderConnection:
            hint = "provider settings go under `settings:`; allowed keys here: " + ", ".join(
                allowed
            )
        elif model is not None and issubclass(model, CrmConnection):
            hint = (
                did_you_mean(key, allowed)
                + "provider settings go under `settings:` and field mappings under "
                "`mapping:`; allowed keys here: " + ", ".join(allowed)
            )
        else:
            hint = did_you_mean(key, allowed) + "allowed keys here: " + ", ".join(allowed)
            if model is TenantConfig:
                hint += " (top-level keys starting with x- are ignored, e.g. for anchors)"
        return document.issue(path, message, hint, code, key=True)
    elif error_type == "missing":
        name = str(loc[-1])
        message, code = f"missing required key {name!r}", "missing_key"
        hint = f"add `{_MISSING_EXAMPLES.get(name, name + ': …')}`"
        parent = path[:-1]
        if parent:
            hint += f" under {format_path(parent)}"
    elif error_type == "union_tag_invalid":
        tag = str(ctx.get("tag"))
        message, code = f"unknown provider {tag!r}", "unknown_provider"
        hint = did_you_mean(tag, PROVIDERS) + "use one of: " + ", ".join(PROVIDERS)
        path = (*path, "provider")
    elif error_type == "union_tag_not_found":
        message, code = "missing required key 'provider'", "missing_key"
        hint = f"add `{_MISSING_EXAMPLES['provider']}`"
    elif error_type == "literal_error":
        expected = str(ctx.get("expected", ""))
        options = [o.strip().strip("'") for o in expected.replace(" or ", ", ").split(",")]
        message, code = f"{value!r} is not a valid {field}", "invalid_choice"
        hint = did_you_mean(str(value), options) + f"use one of {expected}"
    elif error_type == "string_pattern_mismatch" and field == "language":
        message, code = f"{value!r} is not a language code", "invalid_language"
        hint = "use a lowercase ISO 639 code such as fr, en or nl, optionally with a region: fr-BE"
    elif error_type == "too_short" and isinstance(value, list):
        needed = ctx.get("min_length", 1)
        message, code = f"needs at least {needed} item(s)", "too_short"
        hint = f"add an item to {field}"
    elif error_type in _BOUNDS:
        word, key = _BOUNDS[error_type]
        message, code = f"{value!r} is {word} {ctx.get(key)}", "out_of_range"
        hint = {
            "less_than_equal": f"write at most {ctx.get(key)}",
            "greater_than_equal": f"write at least {ctx.get(key)}",
            "less_than": f"write less than {ctx.get(key)}",
            "greater_than": f"write more than {ctx.get(key)}",
        }[error_type]
    elif error_type == "string_too_short":
        message, code = "must not be empty", "empty"
        hint = f"write a value for {field}, or remove the key if it is optional"
    elif (family := _expected(error_type)) is not None:
        noun = _NOUNS[family]
        if value is None:
            message = f"no value given, expected {noun}"
        else:
            message = f"expected {noun}, got {_kind(value)}"
        code = "wrong_type"
        hint = _TYPE_HINTS[family]
        if family == "string" and isinstance(value, bool):
            hint = f"quote it: {field}: '{str(value).lower()}'"
    else:
        message, code = f"{error['msg']} (got {_kind(value)})", error_type
        hint = ""
    return document.issue(path, message, hint, code, key=on_key)


# --------------------------------------------------------------------------- references


def check_references(config: TenantConfig, document: YamlDocument) -> list[ConfigIssue]:
    """Problems that need the whole file: unknown names, duplicates, unreachable rules."""
    issues: list[ConfigIssue] = []
    call_type_ids = list(dict.fromkeys(c.id for c in config.call_types))
    connection_names = list(config.connections)

    def duplicates(section: str, ids: list[str], attr: str, what: str) -> None:
        first: dict[str, int] = {}
        for index, item_id in enumerate(ids):
            if item_id in first:
                line, _ = document.locate((section, first[item_id], attr))
                issues.append(
                    document.issue(
                        (section, index, attr),
                        f"duplicate {what} {item_id!r}",
                        f"{section}[{first[item_id]}] (line {line}) already uses it; "
                        "give each one its own id",
                        "duplicate_id",
                    )
                )
            else:
                first[item_id] = index

    duplicates("staff", [s.id for s in config.staff], "id", "staff id")
    seen_numbers: dict[str, int] = {}
    for index, number in enumerate(config.forwarding_numbers):
        if number in seen_numbers:
            line, _ = document.locate(("forwarding_numbers", seen_numbers[number]))
            issues.append(document.issue(
                ("forwarding_numbers", index), f"forwarding number {number} is listed twice",
                f"forwarding_numbers[{seen_numbers[number]}] (line {line}) already has it; "
                "list each number once", "duplicate_number"))
        else:
            seen_numbers[number] = index
    duplicates("call_types", [c.id for c in config.call_types], "id", "call type id")
    duplicates(
        "appointment_types", [t.id for t in config.appointment_types], "id", "appointment type id"
    )
    staff_ids = [s.id for s in config.staff]
    for t_index, appointment_type in enumerate(config.appointment_types):
        listed: set[str] = set()
        for s_index, staff_id in enumerate(appointment_type.staff or []):
            path = ("appointment_types", t_index, "staff", s_index)
            member = config.staff_member(staff_id)
            if member is None:
                issues.append(
                    document.issue(
                        path,
                        f"unknown staff member {staff_id!r}",
                        did_you_mean(staff_id, staff_ids)
                        + "known staff: "
                        + (", ".join(staff_ids) or "none yet (declare them under `staff:`)"),
                        "unknown_staff",
                    )
                )
            elif member.calendar is None:
                issues.append(
                    document.issue(
                        path,
                        f"staff member {staff_id!r} has no calendar, so nobody can see when "
                        "they are free",
                        f"give {staff_id} a `calendar: {{connection: …, id: …}}`, or remove "
                        "them from this list",
                        "no_calendar",
                    )
                )
            elif staff_id in listed:
                issues.append(
                    document.issue(
                        path,
                        f"{staff_id!r} is listed twice",
                        "list each person once",
                        "duplicate_staff",
                    )
                )
            listed.add(staff_id)

    for c_index, call_type in enumerate(config.call_types):
        seen: set[str] = set()
        for f_index, intake in enumerate(call_type.intake_fields):
            if intake.name in seen:
                issues.append(
                    document.issue(
                        ("call_types", c_index, "intake_fields", f_index, "name"),
                        f"duplicate intake field {intake.name!r} in call type {call_type.id!r}",
                        "give each field its own name",
                        "duplicate_id",
                    )
                )
            seen.add(intake.name)

    def unknown_connection(path: Path, name: str) -> ConfigIssue:
        known = ", ".join(connection_names) if connection_names else "none yet"
        return document.issue(
            path,
            f"unknown connection {name!r}",
            did_you_mean(name, connection_names)
            + f"known connections: {known} (declare it under `connections:`)",
            "unknown_connection",
        )

    for s_index, member in enumerate(config.staff):
        if member.calendar is None:
            continue
        name = member.calendar.connection
        calendar_path: Path = ("staff", s_index, "calendar", "connection")
        connection = config.connections.get(name)
        if connection is None:
            issues.append(unknown_connection(calendar_path, name))
        elif connection.role != "calendar":
            calendars = [n for n, c in config.connections.items() if c.role == "calendar"]
            issues.append(
                document.issue(
                    calendar_path,
                    f"connection {name!r} is a {connection.role} connection, not a calendar",
                    "use a connection with role calendar"
                    + (f": {', '.join(calendars)}" if calendars else " (none declared yet)"),
                    "not_a_calendar",
                )
            )

    rules = config.rules
    first_rule: dict[str, int] = {}
    for r_index, rule in enumerate(rules.rules):
        base: Path = ("rules", "rules", r_index)
        if rule.name in first_rule:
            issues.append(
                document.issue(
                    (*base, "name"),
                    f"duplicate rule name {rule.name!r}",
                    "give each rule its own name: the name shows in delivery history",
                    "duplicate_id",
                )
            )
        first_rule.setdefault(rule.name, r_index)
        for t_index, call_type_id in enumerate(rule.when.call_types or []):
            if call_type_id not in call_type_ids:
                issues.append(
                    document.issue(
                        (*base, "when", "call_types", t_index),
                        f"unknown call type {call_type_id!r}",
                        did_you_mean(call_type_id, call_type_ids)
                        + "known call types: "
                        + ", ".join(call_type_ids),
                        "unknown_call_type",
                    )
                )
        if rules.mode == "first" and rule.when.is_empty() and r_index < len(rules.rules) - 1:
            issues.append(
                document.issue(
                    (*base, "name"),
                    f"rule {rule.name!r} matches every call, so the rules after it never apply",
                    "move it last, make it the `default:` rule, or add a `when:`",
                    "unreachable_rule",
                )
            )
    actions: list[tuple[Path, list[Action]]] = [
        (("rules", "rules", i), r.then) for i, r in enumerate(rules.rules)
    ]
    if rules.default is not None:
        actions.append((("rules", "default"), rules.default.then))
    for base, then in actions:
        named: set[str] = set()
        for a_index, action in enumerate(then):
            target = action.target_connection  # connection, webhook or crm
            if target is None:
                continue
            action_path: Path = (*base, "then", a_index, action.kind)
            if target not in config.connections:
                issues.append(unknown_connection(action_path, target))
            elif target in named:
                issues.append(
                    document.issue(
                        action_path,
                        f"connection {target!r} is listed twice in this rule",
                        "list it once",
                        "duplicate_action",
                    )
                )
            named.add(target)
    issues.extend(check_rules(config, document))
    if config.notify_on_calendar_change is not None:  # recipients, template, via
        notice = config.notify_on_calendar_change
        checker = RuleChecker(config, document)
        checker.check_message(("notify_on_calendar_change",), notice.channel, notice.to,
                              notice.template, notice.via)  # fmt: skip
        issues.extend(checker.issues)
    issues.extend(check_mapping_references(config, document))
    return issues
