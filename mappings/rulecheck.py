"""Load-time checks of the rule language that need the whole file.

Called by :func:`mappings.config.check_references`; every problem becomes a
file:line:column issue with a hint. Checked here: rule conditions naming
unknown windows, staff or intake fields (and intake values a field cannot
take); ``holiday`` without holidays or closures; ``webhook`` / ``crm`` actions
on the wrong kind of connection; recipients (unknown staff, staff without the
address the channel needs, ``on_call`` without a schedule, an email address
for an SMS…); unknown templates, ladders and ``via`` connections; on-call
rotations naming unknown staff, a ``start`` not on the handover day,
overrides ending before they start or overlapping; template variables reading
intake fields no call type has.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta

from mappings.errors import ConfigIssue, Path, did_you_mean, format_path
from mappings.fieldmap import ROOTS
from mappings.oncall import instant
from mappings.schema import (
    RESERVED_WINDOWS,
    WEEKDAYS,
    Action,
    IntakeField,
    IntakeMatch,
    TenantConfig,
    When,
    recipient_kind,
)
from mappings.templates import parse_template, references
from mappings.yamlpos import YamlDocument


def check_rules(config: TenantConfig, document: YamlDocument) -> list[ConfigIssue]:
    """Every cross-reference problem of windows, templates, on-call, ladders and rules."""
    return RuleChecker(config, document).run()


class RuleChecker:
    """The cross-reference checks of one tenant file; ``run()`` returns every issue found."""

    def __init__(self, config: TenantConfig, document: YamlDocument) -> None:
        self.config = config
        self.document = document
        self.issues: list[ConfigIssue] = []
        self.staff_ids = [s.id for s in config.staff]

    def issue(self, path: Path, message: str, hint: str, code: str, *, key: bool = False) -> None:
        self.issues.append(self.document.issue(path, message, hint, code, key=key))

    def staff_line(self, staff_id: str) -> str:
        index = self.staff_ids.index(staff_id)
        line, _ = self.document.locate(("staff", index, "id"))
        return f"staff[{index}], line {line}"

    def run(self) -> list[ConfigIssue]:
        self.check_on_call()
        self.check_templates()
        for name, escalation in self.config.escalations.items():
            for index, step in enumerate(escalation.steps):
                path: Path = ("escalations", name, "steps", index)
                self.check_message(path, step.channel, step.to, step.template, step.via)
            self.check_message(
                ("escalations", name, "dead_end"),
                escalation.dead_end.channel,
                escalation.dead_end.to,
                escalation.dead_end.template,
                escalation.dead_end.via,
            )
        rules = self.config.rules
        for index, rule in enumerate(rules.rules):
            base: Path = ("rules", "rules", index)
            self.check_when(base, rule.when)
            self.check_actions(base, rule.then)
        if rules.default is not None:
            self.check_actions(("rules", "default"), rules.default.then)
        return self.issues

    # ------------------------------------------------------------------ staff

    def known_staff(self, path: Path, staff_id: str) -> bool:
        if self.config.staff_member(staff_id) is not None:
            return True
        self.issue(
            path,
            f"unknown staff member {staff_id!r}",
            did_you_mean(staff_id, self.staff_ids)
            + "known staff: "
            + (", ".join(self.staff_ids) or "none yet (declare them under `staff:`)"),
            "unknown_staff",
        )
        return False

    # ------------------------------------------------------------------ on call

    def on_call_staff(self) -> list[str]:
        on_call = self.config.on_call
        if on_call is None:
            return []
        ids = [e.staff for e in on_call.rotation] + [o.staff for o in on_call.overrides]
        return [s for s in dict.fromkeys(ids) if self.config.staff_member(s) is not None]

    def check_on_call(self) -> None:
        on_call = self.config.on_call
        if on_call is None:
            return
        for index, entry in enumerate(on_call.rotation):
            self.known_staff(("on_call", "rotation", index, "staff"), entry.staff)
        handover, start = on_call.handover, on_call.start
        if handover is not None and start is not None and start.weekday() != handover.day:
            before = start - timedelta(days=(start.weekday() - handover.day) % 7)
            day = WEEKDAYS[handover.day]
            self.issue(
                ("on_call", "start"),
                f"{start.isoformat()} is a {WEEKDAYS[start.weekday()]}, but the rotation "
                f"changes hands on {day} ({handover})",
                f"write the {day} the first turn starts: {before.isoformat()} or "
                f"{(before + timedelta(days=7)).isoformat()}",
                "invalid_start",
            )
        spans: list[tuple[int, tuple[datetime, datetime]]] = []
        for index, override in enumerate(on_call.overrides):
            path: Path = ("on_call", "overrides", index)
            self.known_staff((*path, "staff"), override.staff)
            begin, end = instant(self.config, override.from_), instant(self.config, override.to)
            if end <= begin:
                self.issue(
                    (*path, "to"),
                    "this override ends before it starts",
                    "`to` must be after `from` (times without an offset are on the "
                    f"{self.config.timezone} clock)",
                    "invalid_override",
                )
                continue
            for other, (o_begin, o_end) in spans:
                if begin < o_end and o_begin < end:
                    line, _ = self.document.locate(("on_call", "overrides", other))
                    self.issue(
                        path,
                        f"this override overlaps overrides[{other}] (line {line})",
                        "make them follow each other: one's `to` is the next one's `from`",
                        "overlapping_override",
                    )
                    break
            spans.append((index, (begin, end)))

    # ------------------------------------------------------------------ templates

    def check_templates(self) -> None:
        intake_names = sorted({f.name for c in self.config.call_types for f in c.intake_fields})
        for name, template in self.config.templates.items():
            for part in ("subject", "body"):
                source = getattr(template, part)
                if source is None:
                    continue
                for ref in references(parse_template(source), frozenset(ROOTS)):
                    if ref.parts[:2] != ("message", "intake") or len(ref.parts) < 3:
                        continue
                    field = ref.parts[2]
                    if field in intake_names:
                        continue
                    path: Path = ("templates", name, part)
                    line, column = self.document.locate_in_scalar(path, ref.lineno)
                    known = ", ".join(intake_names) or "none yet"
                    self.issues.append(
                        ConfigIssue(
                            self.document.filename,
                            line,
                            column,
                            format_path(path),
                            f"no call type has an intake field {field!r}",
                            did_you_mean(field, intake_names)
                            + f"intake fields: {known} (declared under call_types[].intake_fields)",
                            "unknown_intake_field",
                        )
                    )

    def known_template(self, path: Path, name: str | None) -> None:
        if name is None or name in self.config.templates or name == "default":
            return
        known = list(self.config.templates)
        self.issue(
            path,
            f"unknown template {name!r}",
            did_you_mean(name, known)
            + "known templates: "
            + (", ".join(known) or "none yet")
            + " (declare it under `templates:`, or remove `template` for the built-in one)",
            "unknown_template",
        )

    # ------------------------------------------------------------------ recipients

    def check_message(
        self, path: Path, channel: str, to: Sequence[str], template: str | None, via: str | None
    ) -> None:
        """An email / SMS: its recipients, its template and the connection sending it."""
        self.check_recipients((*path, "to"), to, channel)
        self.known_template((*path, "template"), template)
        connections = self.config.connections
        if via is not None:
            connection = connections.get(via)
            if connection is None:
                names = list(connections)
                self.issue(
                    (*path, "via"),
                    f"unknown connection {via!r}",
                    did_you_mean(via, names)
                    + f"known connections: {', '.join(names) or 'none yet'}",
                    "unknown_connection",
                )
            elif connection.provider not in (channel, "webhook"):
                self.issue(
                    (*path, "via"),
                    f"connection {via!r} is a {connection.provider} connection and cannot "
                    f"send {'an email' if channel == 'email' else 'an SMS'}",
                    f"name a connection whose provider is {channel} (or a webhook), or remove "
                    "`via` to use Relais's own sender",
                    "wrong_connection",
                )
            return
        named = [n for n, c in connections.items() if c.provider == channel]
        if len(named) > 1:
            self.issue(
                path,
                f"the tenant has several {channel} connections ({', '.join(named)})",
                f"say which one sends it: `via: {named[0]}`",
                "ambiguous_connection",
            )

    def check_recipients(self, path: Path, to: Sequence[str], channel: str) -> None:
        what = "email address" if channel == "email" else "phone number"
        key = "email" if channel == "email" else "phone"
        for index, item in enumerate(to):
            item_path: Path = (*path, index)
            kind = recipient_kind(item)
            if kind in ("email", "phone") and (kind == "email") != (channel == "email"):
                self.issue(
                    item_path,
                    f"{'an SMS' if channel == 'sms' else 'an email'} cannot go to "
                    f"{'an email address' if kind == 'email' else 'a phone number'}",
                    f"write a {what}, a staff id or on_call",
                    "wrong_recipient",
                )
            elif kind == "staff":
                if self.known_staff(item_path, item):
                    member = self.config.staff_member(item)
                    assert member is not None
                    if not getattr(member, key):
                        self.issue(
                            item_path,
                            f"staff member {item!r} has no {what}",
                            f"add `{key}:` to {item} ({self.staff_line(item)})",
                            "no_address",
                        )
            elif kind == "on_call":
                if self.config.on_call is None:
                    self.issue(
                        item_path,
                        "on_call needs an on-call schedule",
                        "declare `on_call: {rotation: …}` at top level (see the examples), or "
                        "name staff ids instead",
                        "no_on_call",
                    )
                    continue
                lacking = [
                    s
                    for s in self.on_call_staff()
                    if not getattr(self.config.staff_member(s), key)
                ]
                if lacking:
                    self.issue(
                        item_path,
                        f"on-call staff without a {what}: {', '.join(lacking)}",
                        "; ".join(f"add `{key}:` to {s} ({self.staff_line(s)})" for s in lacking),
                        "no_address",
                    )

    # ------------------------------------------------------------------ rules

    def check_when(self, base: Path, when: When) -> None:
        config = self.config
        where: Path = (*base, "when")
        known_windows = [*RESERVED_WINDOWS, *config.windows]
        for index, name in enumerate(when.window or []):
            path: Path = (*where, "window", index)
            if name in RESERVED_WINDOWS:
                if config.business_hours is None:
                    self.issue(
                        path,
                        f"{name} needs business hours, and the tenant declares none",
                        "add `business_hours:` at top level, or use a window declared under "
                        "`windows:`",
                        "no_business_hours",
                    )
            elif name not in config.windows:
                self.issue(
                    path,
                    f"unknown window {name!r}",
                    did_you_mean(name, known_windows)
                    + "known windows: "
                    + ", ".join(known_windows)
                    + " (declare it under `windows:`)",
                    "unknown_window",
                )
        has_closures = config.business_hours is not None and bool(config.business_hours.closures)
        if when.holiday is not None and config.holidays is None and not has_closures:
            self.issue(
                (*where, "holiday"),
                "the tenant declares no holidays, so this condition can never tell",
                "add `holidays: {country: FR}` (public holidays) or `business_hours.closures`",
                "no_holidays",
            )
        for index, staff_id in enumerate(when.staff or []):
            self.known_staff((*where, "staff", index), staff_id)
        if when.intake:
            self.check_intake((*where, "intake"), when)

    def check_intake(self, path: Path, when: When) -> None:
        assert when.intake is not None
        wanted = when.call_types
        types = [c for c in self.config.call_types if not wanted or c.id in wanted]
        scope = "the call types of this rule" if when.call_types else "any call type"
        for name, condition in when.intake.items():
            specs = [f for c in types for f in c.intake_fields if f.name == name]
            if not specs:
                names = sorted({f.name for c in types for f in c.intake_fields})
                self.issue(
                    (*path, name),
                    f"no intake field {name!r} in {scope}",
                    did_you_mean(name, names) + "intake fields: " + (", ".join(names) or "none"),
                    "unknown_intake_field",
                    key=True,
                )
                continue
            self.check_intake_values((*path, name), condition, specs)

    def check_intake_values(
        self, path: Path, condition: IntakeMatch, specs: list[IntakeField]
    ) -> None:
        values = condition.values or ()
        for index, value in enumerate(values):
            problems = [p for p in (_value_problem(value, spec) for spec in specs) if p]
            if len(problems) == len(specs):  # no field of that name can take it
                item_path = (*path, index) if len(values) > 1 else path
                self.issue(item_path, problems[0][0], problems[0][1], "invalid_value")

    def check_actions(self, base: Path, then: list[Action]) -> None:
        config = self.config
        for index, action in enumerate(then):
            path: Path = (*base, "then", index, action.kind)
            kind = action.kind
            if kind in ("webhook", "crm"):
                name = action.target_connection
                connection = config.connections.get(name or "")
                if connection is None:
                    continue  # reported by check_references
                if kind == "webhook" and connection.provider != "webhook":
                    webhooks = [n for n, c in config.connections.items() if c.provider == "webhook"]
                    self.issue(
                        path,
                        f"connection {name!r} is a {connection.provider} connection, not a webhook",
                        f"write `- connection: {name}`, or name a webhook: "
                        + (", ".join(webhooks) or "none declared"),
                        "not_a_webhook",
                    )
                if kind == "crm" and connection.role != "crm":
                    crms = [n for n, c in config.connections.items() if c.role == "crm"]
                    self.issue(
                        path,
                        f"connection {name!r} has role {connection.role}, not crm",
                        f"write `- connection: {name}`, or name a CRM connection: "
                        + (", ".join(crms) or "none declared"),
                        "not_a_crm",
                    )
            elif kind in ("email", "sms"):
                spec = action.email or action.sms
                assert spec is not None
                self.check_message(path, kind, spec.to, spec.template, spec.via)
            elif kind == "digest":
                assert action.digest is not None
                digest = action.digest
                self.check_message(path, digest.channel, digest.to, digest.template, digest.via)
            elif kind == "escalate":
                assert action.escalate is not None
                if action.escalate not in config.escalations:
                    known = list(config.escalations)
                    self.issue(
                        path,
                        f"unknown escalation ladder {action.escalate!r}",
                        did_you_mean(action.escalate, known)
                        + "known ladders: "
                        + (", ".join(known) or "none yet")
                        + " (declare it under `escalations:`)",
                        "unknown_escalation",
                    )


def _value_problem(value: object, spec: IntakeField) -> tuple[str, str] | None:
    """``(message, hint)`` when intake field ``spec`` can never have ``value``."""
    shown = str(value).lower() if isinstance(value, bool) else repr(value)
    if spec.type == "choice" and spec.choices is not None:
        if str(value) not in spec.choices:
            return (
                f"{shown} is not a choice of intake field {spec.name!r}",
                did_you_mean(str(value), spec.choices) + "its choices: " + ", ".join(spec.choices),
            )
    elif spec.type == "bool" and not isinstance(value, bool):
        return f"intake field {spec.name!r} is true or false, not {shown}", "write true or false"
    elif spec.type == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return f"intake field {spec.name!r} is a number, not {shown}", "write a number such as 3"
    elif spec.type == "date" and not isinstance(value, date):
        return f"intake field {spec.name!r} is a date, not {shown}", "write it as YYYY-MM-DD"
    return None
