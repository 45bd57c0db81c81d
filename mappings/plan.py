"""Which destinations a message goes to: evaluating a tenant's transmission rules.

Pure and deterministic: the same config and the same call always give the same
plan, deliveries in rule order then action order. The plan also says *why*
(``trace``), for ``POST /v1/tenants/{t}/rules/explain``.

Semantics:

* ``mode: first`` — the first rule whose ``when`` matches gives the actions;
  later rules are not evaluated.
* ``mode: all`` — every matching rule contributes; a connection named by several
  rules is delivered once (the first rule naming it is recorded).
* no rule matched → the ``default`` rule, if any; else an empty plan, which the
  caller rejects (see ``DeliveryPlan.explanation``).
* a ``drop`` action wins: the plan is ``dropped`` and has no delivery, even in
  mode ``all`` where another matching rule would deliver.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from mappings.schema import URGENCY_LEVELS, Action, TenantConfig, When


class PlanError(ValueError):
    """The call itself is invalid for this tenant (unknown call type, bad urgency)."""


class PlannedDelivery(BaseModel):
    model_config = ConfigDict(frozen=True)

    rule: str  # name of the rule that asked for it
    connection: str
    provider: str
    role: str
    action: dict[str, Any] = {}  # extra action options (template, recipients… later)


class RuleTrace(BaseModel):
    model_config = ConfigDict(frozen=True)

    rule: str
    matched: bool
    reason: str


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

    @property
    def empty(self) -> bool:
        """No delivery and not dropped: nobody would receive the message."""
        return not self.deliveries and not self.dropped


@dataclass(frozen=True)
class MatchContext:
    """What rules can look at. Later: the instant, the caller's contact, staff, intake."""

    call_type: str
    urgency: str


Matcher = Callable[[Any, MatchContext], tuple[bool, str]]


def _listed(what: str, value: str, allowed: list[str]) -> tuple[bool, str]:
    shown = ", ".join(allowed)
    if value in allowed:
        return True, f"{what} {value!r} is in [{shown}]"
    return False, f"{what} {value!r} is not in [{shown}]"


def _match_call_types(allowed: list[str], ctx: MatchContext) -> tuple[bool, str]:
    return _listed("call type", ctx.call_type, allowed)


def _match_urgency(allowed: list[str], ctx: MatchContext) -> tuple[bool, str]:
    return _listed("urgency", ctx.urgency, allowed)


# One matcher per key of ``When`` (a test checks none is missing).
MATCHERS: dict[str, Matcher] = {
    "call_types": _match_call_types,
    "urgency": _match_urgency,
}


def evaluate_when(when: When, ctx: MatchContext) -> tuple[bool, str]:
    """Whether every condition holds; the reason names each condition checked."""
    reasons: list[str] = []
    for key in type(when).model_fields:
        expected = getattr(when, key)
        if expected is None:
            continue
        matched, reason = MATCHERS[key](expected, ctx)
        if not matched:
            return False, reason
        reasons.append(reason)
    return True, "; ".join(reasons) if reasons else "no conditions: matches every call"


def plan_deliveries(
    config: TenantConfig, call_type: str, urgency: str | None = None
) -> DeliveryPlan:
    """The deliveries a message of ``call_type`` / ``urgency`` gets under ``config``.

    ``urgency=None`` uses the call type's ``urgency_default``. Raises
    :class:`PlanError` for an unknown call type or urgency level.
    """
    found = config.call_type(call_type)
    if found is None:
        known = ", ".join(c.id for c in config.call_types)
        raise PlanError(f"unknown call type {call_type!r}; known call types: {known}")
    level = str(urgency) if urgency is not None else found.urgency_default
    if level not in URGENCY_LEVELS:
        raise PlanError(f"unknown urgency {level!r}; use one of {', '.join(URGENCY_LEVELS)}")
    ctx = MatchContext(call_type=call_type, urgency=level)
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
                )
            )
            continue
        matched, reason = evaluate_when(rule.when, ctx)
        trace.append(RuleTrace(rule=rule.name, matched=matched, reason=reason))
        if matched:
            chosen.append((rule.name, rule.then))

    used_default = False
    if ruleset.default is not None:
        if chosen:
            trace.append(
                RuleTrace(
                    rule=ruleset.default.name, matched=False, reason="not needed: a rule matched"
                )
            )
        else:
            used_default = True
            chosen.append((ruleset.default.name, ruleset.default.then))
            trace.append(
                RuleTrace(
                    rule=ruleset.default.name,
                    matched=True,
                    reason="no rule matched, so the default rule applies",
                )
            )

    dropping = [name for name, actions in chosen if any(a.drop for a in actions)]
    deliveries: list[PlannedDelivery] = []
    if not dropping:
        seen: set[str] = set()
        for name, actions in chosen:
            for action in actions:
                if action.connection is None or action.connection in seen:
                    continue
                seen.add(action.connection)
                connection = config.connections[action.connection]
                deliveries.append(
                    PlannedDelivery(
                        rule=name,
                        connection=action.connection,
                        provider=connection.provider,
                        role=connection.role or "",
                        action=action.options(),
                    )
                )

    if dropping:
        explanation = f"dropped by rule {dropping[0]!r}: no delivery"
    elif deliveries:
        targets = ", ".join(d.connection for d in deliveries)
        names = ", ".join(repr(name) for name, _ in chosen)
        if used_default:
            source = "the default rule"
        else:
            source = ("rules " if len(chosen) > 1 else "rule ") + names
        explanation = f"{len(deliveries)} delivery(ies) by {source}: {targets}"
    else:
        explanation = (
            f"no rule matched call type {call_type!r} with urgency {level!r} "
            "and there is no default rule"
        )
    return DeliveryPlan(
        call_type=call_type,
        urgency=level,
        mode=ruleset.mode,
        deliveries=deliveries,
        dropped=bool(dropping),
        used_default=used_default,
        trace=trace,
        explanation=explanation,
    )
