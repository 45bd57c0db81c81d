"""Which destinations a message goes to: evaluating a tenant's transmission rules.

Pure and deterministic: the same config and the same call always give the same
plan, deliveries in rule order then action order (then recipient order). The
plan also says *why* (``trace``: every rule considered, each condition's
reason), for ``POST /v1/tenants/{t}/rules/explain`` and :func:`explain_text`.

Semantics:

* ``mode: first`` — the first rule whose ``when`` matches gives the actions;
  later rules are not evaluated.
* ``mode: all`` — every matching rule contributes; a connection named by several
  rules is delivered once (the first rule naming it is recorded); so is an
  email / SMS / digest to the same address through the same sender, and a ladder.
* no rule matched → the ``default`` rule, if any; else an empty plan, which the
  caller rejects (see ``DeliveryPlan.explanation``).
* a ``drop`` action wins: the plan is ``dropped`` and has no delivery, even in
  mode ``all`` where another matching rule would deliver.

Actions (see :class:`mappings.schema.Action`): ``connection`` / ``webhook`` / ``crm``
give one delivery to that connection (``action == {}``, as before); ``email`` /
``sms`` give one delivery per resolved recipient (staff ids → their address,
``on_call`` → who is on call at ``ctx.at``, literal addresses as written);
``digest`` one per recipient too, with when it is due; ``escalate`` one delivery
running the ladder (:mod:`mappings.escalation`). Email and SMS deliveries of a
sensitive call type (``config.is_sensitive``) are marked ``redact``: the engine
sends a notice and a signed link instead of the content. So are deliveries to a
webhook or CRM connection whose ``content`` is ``notice`` (declared, or by default
for a sensitive call type: :func:`mappings.schema.content_of`).

The engine calls :func:`plan_for` with a :class:`mappings.rules.CallContext`
(``at`` = the instant of the call). :func:`plan_deliveries` is the short form
without context: ``at`` defaults to None, so ``window`` / ``holiday`` conditions
do not match and ``on_call`` is not resolved (each said in the trace).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from mappings.escalation import ladder as get_ladder
from mappings.fieldmap import URGENCY_LEVELS
from mappings.recipients import (
    RELAIS_SENDER,
    Recipient,
    channel_connection,
    resolve_recipients,
)
from mappings.rules import DEFAULT_TEMPLATE, MATCHERS, CallContext, written
from mappings.schema import (
    CONNECTION_KINDS,
    Action,
    DigestAction,
    TenantConfig,
    When,
    content_of,
)
from mappings.wallclock import describe, format_duration, local, wall_instant

__all__ = [
    "MATCHERS",
    "CallContext",
    "ConditionTrace",
    "DeliveryPlan",
    "DigestSchedule",
    "MatchContext",
    "PlanError",
    "PlannedDelivery",
    "Recipient",
    "RuleTrace",
    "evaluate_when",
    "explain_text",
    "plan_deliveries",
    "plan_for",
]

MatchContext = CallContext  # the former name


class PlanError(ValueError):
    """The call itself is invalid for this tenant (unknown call type, bad urgency…)."""


class DigestSchedule(BaseModel):
    model_config = ConfigDict(frozen=True)

    every: str | None = None  # "30m"
    at: list[str] = []  # ["12:00", "18:00"], tenant's wall clock
    due_at: datetime | None = None  # UTC: the send this message joins (None: no instant)


class PlannedDelivery(BaseModel):
    model_config = ConfigDict(frozen=True)

    rule: str  # name of the rule that asked for it
    connection: str  # "" (RELAIS_SENDER) for Relais's own email / SMS sender, and ladders
    provider: str  # the connection's provider; "email" / "sms" / "escalation" otherwise
    role: str
    action: dict[str, Any] = {}  # JSON-ready parameters stored with the delivery
    kind: str = "connection"  # connection | webhook | crm | email | sms | digest | escalate
    recipients: list[Recipient] = []  # email, sms, digest: exactly one; escalate: step 0
    template: str | None = None
    redact: bool = False  # sensitive: send a notice and a signed link, not the content
    # webhook / CRM: "notice" (no content), "full" where a sensitive call type's
    # connection declares it; None: full content, nothing to say
    content: str | None = None
    ladder: str | None = None
    digest: DigestSchedule | None = None

    @property
    def target(self) -> str:
        """Where it goes, in one word: the connection, the address or the ladder."""
        if self.kind in CONNECTION_KINDS:
            return self.connection
        if self.kind == "escalate":
            return f"escalate {self.ladder}"
        return f"{self.kind} {self.recipients[0].address}"


class ConditionTrace(BaseModel):
    model_config = ConfigDict(frozen=True)

    condition: str  # the key under `when`
    expected: str  # its value as written: "[urgent, high]", "true"
    matched: bool
    reason: str


class RuleTrace(BaseModel):
    model_config = ConfigDict(frozen=True)

    rule: str
    matched: bool
    reason: str
    conditions: list[ConditionTrace] = []  # every condition, evaluated (empty if not evaluated)
    evaluated: bool = True
    default: bool = False


class DeliveryPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    call_type: str
    urgency: str
    mode: str
    deliveries: list[PlannedDelivery] = []
    dropped: bool = False
    used_default: bool = False
    trace: list[RuleTrace] = []
    explanation: str = ""  # one sentence: what happened and why
    at: datetime | None = None  # the instant the rules were evaluated at
    timezone: str = ""  # the tenant's, to show ``at``
    sensitive: bool = False
    notes: list[str] = []  # recipients that could not be resolved, and why

    @property
    def empty(self) -> bool:
        """No delivery and not dropped: nobody would receive the message."""
        return not self.deliveries and not self.dropped


def evaluate_when(
    when: When, ctx: CallContext, config: TenantConfig
) -> tuple[bool, str, list[ConditionTrace]]:
    """Whether every condition holds; the reason names the failing conditions (or, when
    matched, every condition checked); the traces give each condition's own reason."""
    traces: list[ConditionTrace] = []
    for key in type(when).model_fields:
        expected = getattr(when, key)
        if expected is None:
            continue
        matched, reason = MATCHERS[key](expected, ctx, config)
        traces.append(ConditionTrace(condition=key, expected=written(expected),
                                     matched=matched, reason=reason))  # fmt: skip
    if not traces:
        return True, "no conditions: matches every call", traces
    failed = [t.reason for t in traces if not t.matched]
    if failed:
        return False, "; ".join(failed), traces
    return True, "; ".join(t.reason for t in traces), traces


# --------------------------------------------------------------------------- actions


def _digest_due(config: TenantConfig, digest: DigestAction, at: datetime | None) -> datetime | None:
    """The next send of ``digest`` strictly after ``at``: a listed time, or the next
    multiple of ``every`` counted from local midnight (wall clock, first instant)."""
    if at is None:
        return None
    zone = config.zone
    today = local(at, zone).date()
    candidates: list[datetime] = []
    for day in (today, today + timedelta(days=1)):
        if digest.at is not None:
            candidates += [wall_instant(day, t, zone) for t in digest.at]
        elif digest.every is not None:
            step, minute = digest.every, timedelta()
            while minute < timedelta(days=1):
                seconds = int(minute.total_seconds())
                clock = time(seconds // 3600, seconds // 60 % 60, seconds % 60)
                candidates.append(wall_instant(day, clock, zone))
                minute += step
    candidates.append(wall_instant(today + timedelta(days=2), time(0), zone))
    return min(c for c in candidates if c > at)


def _channel_deliveries(
    config: TenantConfig, rule: str, action: Action, ctx: CallContext, sensitive: bool
) -> tuple[list[PlannedDelivery], list[str]]:
    kind = action.kind
    spec = action.email or action.sms or action.digest
    assert spec is not None
    channel = action.digest.channel if action.digest is not None else kind
    connection, provider = channel_connection(config, channel, spec.via)
    recipients, notes = resolve_recipients(config, spec.to, channel, ctx.at)
    template = spec.template or DEFAULT_TEMPLATE
    schedule = None
    if action.digest is not None:
        due = _digest_due(config, action.digest, ctx.at)
        schedule = DigestSchedule(
            every=format_duration(action.digest.every) if action.digest.every else None,
            at=[t.strftime("%H:%M") for t in action.digest.at or []],
            due_at=due,
        )
    out = []
    for recipient in recipients:
        params: dict[str, Any] = {
            "kind": kind,
            "channel": channel,
            "to": recipient.address,
            "template": template,
            "redact": sensitive,
        }
        if recipient.staff_id is not None:
            params["staff_id"] = recipient.staff_id
        if recipient.on_call:
            params["on_call"] = True
        if schedule is not None:
            params["digest"] = schedule.model_dump(mode="json", exclude_none=True)
        out.append(
            PlannedDelivery(
                rule=rule,
                connection=connection,
                provider=provider,
                role="notify",
                action=params,
                kind=kind,
                recipients=[recipient],
                template=template,
                redact=sensitive,
                digest=schedule,
            )
        )
    return out, [f"{kind} {note}" for note in notes]


def _escalation_delivery(
    config: TenantConfig, rule: str, name: str, ctx: CallContext, sensitive: bool
) -> tuple[PlannedDelivery, list[str]]:
    found = get_ladder(config, name)
    first = found.steps[0]
    recipients, notes = resolve_recipients(config, first.to, first.channel, ctx.at)
    delivery = PlannedDelivery(
        rule=rule,
        connection=RELAIS_SENDER,
        provider="escalation",
        role="notify",
        action={"kind": "escalate", "ladder": name, "redact": sensitive},
        kind="escalate",
        recipients=recipients,
        redact=sensitive,
        ladder=name,
    )
    return delivery, [f"escalate {name} step 1: {note}" for note in notes]


def _key(delivery: PlannedDelivery) -> tuple[Any, ...]:
    if delivery.kind in CONNECTION_KINDS:
        return ("connection", delivery.connection)
    if delivery.kind == "escalate":
        return ("escalate", delivery.ladder)
    digest = delivery.digest
    schedule = (digest.every, tuple(digest.at), digest.due_at) if digest is not None else None
    return (delivery.kind, delivery.connection, delivery.recipients[0].address, schedule)


# --------------------------------------------------------------------------- planning


def plan_for(config: TenantConfig, ctx: CallContext) -> DeliveryPlan:
    """The deliveries a call gets under ``config``, with the trace of every rule.

    ``ctx.urgency=None`` uses the call type's ``urgency_default``. Raises
    :class:`PlanError` for an unknown call type, urgency or staff member, or a naive ``at``.
    """
    found = config.call_type(ctx.call_type)
    if found is None:
        known = ", ".join(c.id for c in config.call_types)
        raise PlanError(f"unknown call type {ctx.call_type!r}; known call types: {known}")
    level = str(ctx.urgency) if ctx.urgency is not None else found.urgency_default
    if level not in URGENCY_LEVELS:
        raise PlanError(f"unknown urgency {level!r}; use one of {', '.join(URGENCY_LEVELS)}")
    if ctx.at is not None and (ctx.at.tzinfo is None or ctx.at.utcoffset() is None):
        raise PlanError(f"the instant of the call must be timezone-aware (got {ctx.at})")
    if ctx.staff_id is not None and config.staff_member(ctx.staff_id) is None:
        known = ", ".join(s.id for s in config.staff) or "none"
        raise PlanError(f"unknown staff member {ctx.staff_id!r}; known staff: {known}")
    ctx = replace(ctx, urgency=level)
    ruleset = config.rules

    trace: list[RuleTrace] = []
    chosen: list[tuple[str, list[Action]]] = []
    for rule in ruleset.rules:
        if chosen and ruleset.mode == "first":
            trace.append(
                RuleTrace(
                    rule=rule.name,
                    matched=False,
                    reason=f"not evaluated: rule {chosen[0][0]!r} already matched (mode first)",
                    evaluated=False,
                )
            )
            continue
        matched, reason, conditions = evaluate_when(rule.when, ctx, config)
        trace.append(
            RuleTrace(rule=rule.name, matched=matched, reason=reason, conditions=conditions)
        )
        if matched:
            chosen.append((rule.name, rule.then))

    used_default = False
    if ruleset.default is not None:
        name = ruleset.default.name
        if chosen:
            trace.append(RuleTrace(rule=name, matched=False, reason="not needed: a rule matched",
                                   evaluated=False, default=True))  # fmt: skip
        else:
            used_default = True
            chosen.append((name, ruleset.default.then))
            trace.append(
                RuleTrace(
                    rule=name,
                    matched=True,
                    reason="no rule matched, so the default rule applies",
                    default=True,
                )
            )

    sensitive = config.is_sensitive(ctx.call_type)
    dropping = [name for name, actions in chosen if any(a.drop for a in actions)]
    deliveries: list[PlannedDelivery] = []
    notes: list[str] = []
    if not dropping:
        seen: set[tuple[Any, ...]] = set()
        for name, actions in chosen:
            for action in actions:
                made: list[PlannedDelivery] = []
                target = action.target_connection
                if target is not None:
                    connection = config.connections[target]
                    content = content_of(connection, sensitive)
                    notice = content == "notice"
                    made = [
                        PlannedDelivery(
                            rule=name,
                            connection=target,
                            provider=connection.provider,
                            role=connection.role or "",
                            # ``content: notice``: stored with the delivery, so a retry
                            # sends what was decided at acceptance
                            action={**action.options(), **({"redact": True} if notice else {})},
                            kind=action.kind,
                            redact=notice,
                            content="notice" if notice else (
                                "full" if sensitive and getattr(connection, "content", None)
                                else None),
                        )
                    ]
                elif action.escalate is not None:
                    delivery, found_notes = _escalation_delivery(
                        config, name, action.escalate, ctx, sensitive
                    )
                    made = [delivery]
                    notes += [f"rule {name!r}: {n}" for n in found_notes]
                else:
                    made, found_notes = _channel_deliveries(config, name, action, ctx, sensitive)
                    notes += [f"rule {name!r}: {n}" for n in found_notes]
                for delivery in made:
                    key = _key(delivery)
                    if key not in seen:
                        seen.add(key)
                        deliveries.append(delivery)

    if dropping:
        explanation = f"dropped by rule {dropping[0]!r}: no delivery"
    elif deliveries:
        targets = ", ".join(d.target for d in deliveries)
        names = ", ".join(repr(name) for name, _ in chosen)
        if used_default:
            source = "the default rule"
        else:
            source = ("rules " if len(chosen) > 1 else "rule ") + names
        explanation = f"{len(deliveries)} delivery(ies) by {source}: {targets}"
    elif chosen:
        names = ", ".join(repr(name) for name, _ in chosen)
        explanation = f"rule(s) {names} matched but no recipient could be resolved"
    else:
        explanation = (
            f"no rule matched call type {ctx.call_type!r} with urgency {level!r} "
            "and there is no default rule"
        )
    return DeliveryPlan(
        call_type=ctx.call_type,
        urgency=level,
        mode=ruleset.mode,
        deliveries=deliveries,
        dropped=bool(dropping),
        used_default=used_default,
        trace=trace,
        explanation=explanation,
        at=ctx.at.astimezone(UTC) if ctx.at is not None else None,
        timezone=config.timezone,
        sensitive=sensitive,
        notes=notes,
    )


def plan_deliveries(
    config: TenantConfig,
    call_type: str,
    urgency: str | None = None,
    at: datetime | None = None,
) -> DeliveryPlan:
    """The deliveries a message of ``call_type`` / ``urgency`` gets under ``config``.

    ``urgency=None`` uses the call type's ``urgency_default``. ``at=None`` (the
    instant is unknown): ``window`` / ``holiday`` conditions do not match and
    ``on_call`` recipients are not resolved, each said in the trace; ``known_contact``,
    ``staff`` and ``intake`` conditions do not match either (use :func:`plan_for`
    with a full :class:`CallContext`). Raises :class:`PlanError` for an unknown call
    type or urgency level.
    """
    return plan_for(config, CallContext(call_type=call_type, urgency=urgency, at=at))


# --------------------------------------------------------------------------- explain


def _mark(matched: bool) -> str:
    return "✓" if matched else "✗"


def explain_text(plan: DeliveryPlan) -> str:
    """The plan as readable lines for the CLI: the call, every rule with each condition's
    reason, the deliveries with their recipients, notes, and the outcome."""
    zone = ZoneInfo(plan.timezone) if plan.timezone else UTC
    at = describe(plan.at, zone) if plan.at is not None else "— (not given)"
    lines = [
        f"call_type: {plan.call_type} · urgency: {plan.urgency} · at: {at}"
        + (" · sensitive" if plan.sensitive else ""),
        f"rules (mode {plan.mode}):",
    ]
    for rule in plan.trace:
        label = rule.rule + (" (default)" if rule.default else "")
        if not rule.evaluated:
            lines.append(f"  – {label}: {rule.reason}")
            continue
        lines.append(f"  {_mark(rule.matched)} {label}")
        if rule.default:
            lines.append(f"      {rule.reason}")
        elif not rule.conditions:
            lines.append(f"      {rule.reason}")
        for condition in rule.conditions:
            lines.append(
                f"      {_mark(condition.matched)} {condition.condition}: {condition.expected}"
                f" — {condition.reason}"
            )
    if plan.deliveries:
        lines.append(f"deliveries ({len(plan.deliveries)}):")
        for number, delivery in enumerate(plan.deliveries, 1):
            lines.append(f"  {number}. {_delivery_line(delivery, zone)}")
    if plan.notes:
        lines.append("notes:")
        lines += [f"  ! {note}" for note in plan.notes]
    lines.append(f"→ {plan.explanation}")
    return "\n".join(lines)


def _delivery_line(delivery: PlannedDelivery, zone: ZoneInfo | timezone) -> str:
    if delivery.kind in CONNECTION_KINDS:
        head = f"{delivery.kind} {delivery.connection} ({delivery.provider}, {delivery.role})"
    elif delivery.kind == "escalate":
        first = ", ".join(str(r) for r in delivery.recipients) or "—"
        head = f"escalate {delivery.ladder} (step 1: {first})"
    else:
        sender = delivery.connection or "relais"
        head = f"{delivery.kind} → {delivery.recipients[0]} via {sender}"
        if delivery.template:
            head += f" · template {delivery.template}"
        if delivery.digest is not None:
            every = delivery.digest.every or ", ".join(delivery.digest.at)
            head += f" · every {every}" if delivery.digest.every else f" · at {every}"
            if delivery.digest.due_at is not None:
                head += f" · next {describe(delivery.digest.due_at, zone)}"
    if delivery.content == "notice":
        head += " · content notice (no subject, body or caller name)"
    elif delivery.content == "full":
        head += " · content full (declared)"
    elif delivery.redact:
        head += " · redacted"
    return f"{head} · rule {delivery.rule}"
