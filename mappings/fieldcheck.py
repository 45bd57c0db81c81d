"""Load-time checks of the CRM field mappings that need the whole tenant file.

Intake fields that no call type declares, picklist maps that miss a value of a
known list, required CRM fields removed, HubSpot engagement properties written
on the wrong object. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator

from mappings.errors import ConfigIssue, Path, did_you_mean, format_path
from mappings.fieldmap import (
    OBJECTS,
    PROVIDER_NAMES,
    REQUIRED,
    URGENCY_LEVELS,
    Expression,
    FieldMapping,
)
from mappings.schema import TenantConfig
from mappings.yamlpos import YamlDocument

_HS_PREFIXES = {"hs_call_": "calls", "hs_note_": "notes", "hs_task_": "tasks",
                "hs_meeting_": "meetings"}  # fmt: skip


def _value_domain(config: TenantConfig, path: str) -> tuple[str, ...] | None:
    """Every value ``path`` can take for this tenant, when that is a known finite list."""
    if path == "message.urgency":
        return URGENCY_LEVELS
    if path == "message.call_type":
        return tuple(dict.fromkeys(c.id for c in config.call_types))
    if path == "message.callback_requested":
        return ("true", "false")
    if path.startswith("message.intake."):
        name = path.removeprefix("message.intake.")
        found = [f for c in config.call_types for f in c.intake_fields if f.name == name]
        if found and all(f.type == "choice" for f in found):
            return tuple(dict.fromkeys(choice for f in found for choice in f.choices or []))
        if found and all(f.type == "bool" for f in found):
            return ("true", "false")
    return None


def _object_name(provider: str, obj: str) -> str:
    """``a Lead`` (Salesforce objects are singular), ``notes`` (HubSpot's are plural)."""
    return obj if provider == "hubspot" else f"a {obj}"


def check_mapping_references(config: TenantConfig, document: YamlDocument) -> list[ConfigIssue]:
    """Mapping problems that need the whole file: intake fields that no call type has,
    picklist maps missing values of a known list, required CRM fields removed,
    HubSpot engagement properties on the wrong object."""
    issues: list[ConfigIssue] = []
    intake_names = list(
        dict.fromkeys(f.name for c in config.call_types for f in c.intake_fields)
    )
    for conn_name, connection in config.connections.items():
        mapping = getattr(connection, "mapping", None)
        if not isinstance(mapping, FieldMapping):
            continue
        provider = connection.provider
        for section_name, section in mapping.sections().items():
            obj = section.object or OBJECTS[provider][section_name][0]
            required = {r.casefold(): r for r in REQUIRED.get((provider, obj), ())}
            for crm_field, expression in section.fields.items():
                path: Path = ("connections", conn_name, "mapping", section_name, "fields",
                              crm_field)  # fmt: skip
                if expression is None:
                    if crm_field.casefold() in required:
                        issues.append(
                            document.issue(
                                path,
                                f"{PROVIDER_NAMES[provider]} requires "
                                f"{required[crm_field.casefold()]} on "
                                f"{_object_name(provider, obj)}, so it cannot be removed",
                                "delete this line to keep the default, or map the field "
                                "to another source (with a `default:` when it may be empty)",
                                "required_field",
                            )
                        )
                    continue
                issues.extend(
                    _expression_issues(config, document, path, expression, intake_names)
                )
                if provider == "hubspot":
                    for prefix, owner in _HS_PREFIXES.items():
                        if crm_field.startswith(prefix) and owner != obj:
                            issues.append(
                                document.issue(
                                    path,
                                    f"{crm_field} is a property of HubSpot {owner}, "
                                    f"but this section writes {obj}",
                                    f"use the {obj} properties, or set `object: {owner}` "
                                    "if the section allows it",
                                    "wrong_object",
                                    key=True,
                                )
                            )
    return issues


def _expression_issues(
    config: TenantConfig,
    document: YamlDocument,
    path: Path,
    expression: Expression,
    intake_names: list[str],
) -> Iterator[ConfigIssue]:
    for ref in expression.source_references():
        if not ref.path.startswith("message.intake."):
            continue
        name = ref.path.removeprefix("message.intake.")
        if name in intake_names:
            continue
        known = ", ".join(intake_names) if intake_names else "none yet"
        message = f"no call type has an intake field {name!r}"
        hint = (
            did_you_mean(name, intake_names)
            + f"intake fields: {known} (declared under call_types[].intake_fields)"
        )
        if ref.key == "template":
            line, column = document.locate_in_scalar((*path, "template"), ref.template_line)
            yield ConfigIssue(
                document.filename, line, column, format_path((*path, "template")), message, hint,
                "unknown_intake_field",
            )  # fmt: skip
        else:
            yield document.issue((*path, "from"), message, hint, "unknown_intake_field")
    if expression.map is None or expression.source is None or expression.transform:
        return
    domain = _value_domain(config, expression.source)
    if domain is None:
        return
    for key in expression.map:
        if key not in domain and key.casefold() not in {d.casefold() for d in domain}:
            yield document.issue(
                (*path, "map", key),
                f"{key!r} is not a value of {expression.source}",
                did_you_mean(key, domain) + "its values: " + ", ".join(domain),
                "unknown_value",
                key=True,
            )
    if not expression.has_default:
        listed = {k.casefold() for k in expression.map}
        missing = [d for d in domain if d.casefold() not in listed]
        if missing:
            yield document.issue(
                (*path, "map"),
                f"the map does not list {', '.join(repr(m) for m in missing)} of "
                f"{expression.source}, and there is no default",
                "add " + ", ".join(f"`{m}: <CRM value>`" for m in missing)
                + " under map, or a `default:`",
                "unmapped_value",
                key=True,
            )


