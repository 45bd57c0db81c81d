"""The transmission-rule language: conditions on a call, time windows, holidays, templates.

A rule's ``when`` holds conditions, all of which must hold (a missing one matches
anything)::

    when:
      call_types: [urgence-fuite]          # the call type
      urgency: [urgent, high]
      window: [after_hours, soiree]        # any of: business_hours, after_hours, or a
                                           # window declared under `windows:`
      holiday: true                        # a public holiday (`holidays:`) or a
                                           # business_hours.closures date
      known_contact: false                 # the caller is not in the CRM yet
      staff: [claire-durand]               # the staff member asked for
      intake:                              # the answers taken by the secretary
        domaine: [penal, famille]          # one of these values
        adversaire: {present: true}        # filled in

Named windows, at tenant level, in the tenant's zone (a range belongs to the day
it starts, ``22:00-06:00`` runs to the next morning)::

    windows:
      soiree: {mon-fri: "18:00-22:00", sat: "09:00-12:00"}
      nuit: {daily: "22:00-06:00"}         # days: mon, mon-fri, fri-mon, sat,sun, daily

Time is exact (see :mod:`mappings.wallclock`): a range is open from the first
instant the wall clock shows its start to the first instant it shows its end,
on DST nights too. ``business_hours`` is closed on ``business_hours.closures``
and on public holidays (``holidays: {country: FR}``); ``after_hours`` is its
opposite.

Each condition evaluates to ``(matched, reason)``; the reasons make the
explain trace. Without an instant (``CallContext.at is None``, what
:func:`mappings.plan.plan_deliveries` gives when not told the time),
``window`` and ``holiday`` conditions do not match, and say so.

Message templates (``templates: {name: {subject, body}}``) are compiled at load;
:func:`render_template` renders one for the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError

from mappings.fieldmap import RenderContext, RenderView, tenant_info
from mappings.schema import (
    WEEKDAYS,
    ClockRange,
    IntakeMatch,
    MessageTemplate,
    TenantConfig,
    parse_days,
)
from mappings.templates import compile_template
from mappings.wallclock import describe, local, wall_instant

# --------------------------------------------------------------------------- the call


@dataclass(frozen=True, kw_only=True)
class CallContext:
    """What rules look at. ``at`` is required: the instant of the call (aware), or None
    when unknown (time conditions then do not match, and the trace says so)."""

    call_type: str
    urgency: str | None = None  # None: the call type's urgency_default
    at: datetime | None
    known_contact: bool | None = None  # None: unknown (the CRM was not asked)
    staff_id: str | None = None  # the staff member the caller asked for
    intake: Mapping[str, Any] = field(default_factory=dict)


Matcher = Callable[[Any, CallContext, TenantConfig], tuple[bool, str]]


# --------------------------------------------------------------------------- holidays


@lru_cache(maxsize=64)
def _pick_language(language: str, supported: tuple[str, ...]) -> str | None:
    wanted = language.replace("-", "_")
    if wanted in supported:
        return wanted
    prefix = wanted.split("_")[0]
    if prefix in supported:
        return prefix
    return next((s for s in supported if s.split("_")[0] == prefix), None)


@lru_cache(maxsize=256)
def _public_holidays(
    country: str, subdivision: str | None, year: int, language: str
) -> dict[date, str]:
    import holidays  # big package: loaded only when a tenant names a country

    localized = holidays.list_localized_countries().get(country, [])
    chosen = _pick_language(language, tuple(localized)) if localized else None
    found = holidays.country_holidays(country, subdiv=subdivision, years=year, language=chosen)
    return dict(found.items())


def public_holiday(config: TenantConfig, day: date) -> str | None:
    """The name of the public holiday ``day`` is for the tenant (tenant's language), or None."""
    if config.holidays is None:
        return None
    found = _public_holidays(
        config.holidays.country, config.holidays.subdivision, day.year, config.language
    )
    return found.get(day)


def closed_day(config: TenantConfig, day: date) -> str | None:
    """Why ``day`` is a day off for the whole tenant (public holiday, closure), or None."""
    name = public_holiday(config, day)
    if name is not None:
        assert config.holidays is not None
        return f"{day.isoformat()} is a public holiday in {config.holidays.country} ({name})"
    if config.business_hours is not None and day in config.business_hours.closures:
        return f"{day.isoformat()} is a closure day (business_hours.closures)"
    return None


# --------------------------------------------------------------------------- windows

Weekly = tuple[tuple[ClockRange, ...], ...]  # Monday first


def weekly_ranges(days: Mapping[str, list[ClockRange]]) -> Weekly:
    """A window's ``{"mon-fri": [ranges]}`` spread over the seven weekdays, sorted."""
    out: list[list[ClockRange]] = [[] for _ in WEEKDAYS]
    for spec, ranges in days.items():
        for day in parse_days(spec):
            out[day].extend(ranges)
    return tuple(tuple(sorted(r, key=lambda x: x.start)) for r in out)


def window_weekly(config: TenantConfig, name: str) -> Weekly:
    """The ranges of ``business_hours`` / ``after_hours`` (the business hours) or a named window."""
    if name in ("business_hours", "after_hours"):
        hours = config.business_hours
        if hours is None:
            return tuple(() for _ in WEEKDAYS)
        return tuple(tuple(hours.day(d)) for d in range(7))
    return weekly_ranges(config.windows[name])


@dataclass(frozen=True)
class OpenRange:
    day: date  # the day the range starts
    range: ClockRange
    start: datetime  # UTC
    end: datetime

    def __str__(self) -> str:
        return f"{WEEKDAYS[self.day.weekday()]} {self.range} ({self.day.isoformat()})"


def open_range(
    weekly: Weekly,
    at: datetime,
    zone: Any,
    closed: Callable[[date], str | None] | None = None,
) -> OpenRange | None:
    """The range of ``weekly`` open at ``at``, if any. A range starting on a ``closed`` day
    does not open (the after-midnight tail of the evening before still counts)."""
    today = local(at, zone).date()
    for day in (today - timedelta(days=1), today, today + timedelta(days=1)):
        if closed is not None and closed(day):
            continue
        for r in weekly[day.weekday()]:
            start = wall_instant(day, r.start, zone)
            end_day = day + timedelta(days=1) if r.crosses_midnight else day
            end = wall_instant(end_day, r.end, zone)
            if start <= at < end:
                return OpenRange(day, r, start, end)
    return None


def in_window(config: TenantConfig, name: str, at: datetime) -> tuple[bool, str]:
    """Whether ``at`` is in window ``name`` (``after_hours``: outside business hours), and why."""
    zone = config.zone
    when = describe(at, zone)
    if name in ("business_hours", "after_hours"):
        found = open_range(window_weekly(config, name), at, zone, lambda d: closed_day(config, d))
        if found is not None:
            inside, reason = True, f"within business hours at {when}: {found}"
        else:
            today = closed_day(config, local(at, zone).date())
            inside, reason = (
                False,
                f"outside business hours at {when}" + (f": {today}" if today else ""),
            )
        return (inside if name == "business_hours" else not inside), reason
    found = open_range(window_weekly(config, name), at, zone)
    if found is not None:
        return True, f"window {name!r} is open at {when}: {found}"
    return False, f"window {name!r} is closed at {when}"


# --------------------------------------------------------------------------- matchers


def _listed(what: str, value: str, allowed: list[str]) -> tuple[bool, str]:
    shown = ", ".join(allowed)
    if value in allowed:
        return True, f"{what} {value!r} is in [{shown}]"
    return False, f"{what} {value!r} is not in [{shown}]"


def _match_call_types(
    allowed: list[str], ctx: CallContext, config: TenantConfig
) -> tuple[bool, str]:
    return _listed("call type", ctx.call_type, allowed)


def _match_urgency(allowed: list[str], ctx: CallContext, config: TenantConfig) -> tuple[bool, str]:
    return _listed("urgency", str(ctx.urgency), allowed)


def _match_window(names: list[str], ctx: CallContext, config: TenantConfig) -> tuple[bool, str]:
    if ctx.at is None:
        listed = " or ".join(repr(n) for n in names)
        return False, f"no time given: cannot tell whether the call is in {listed} (does not match)"
    results = [in_window(config, name, ctx.at) for name in names]
    for matched, reason in results:
        if matched:
            return True, reason
    return False, "; ".join(reason for _, reason in results)


def _match_holiday(expected: bool, ctx: CallContext, config: TenantConfig) -> tuple[bool, str]:
    if ctx.at is None:
        return False, "no time given: cannot tell whether it is a holiday (does not match)"
    day = local(ctx.at, config.zone).date()
    why = closed_day(config, day)
    if why is not None:
        return expected, f"{WEEKDAYS[day.weekday()]} {why}"
    return not expected, (
        f"{WEEKDAYS[day.weekday()]} {day.isoformat()} is neither a public holiday nor a closure day"
    )


def _match_known_contact(
    expected: bool, ctx: CallContext, config: TenantConfig
) -> tuple[bool, str]:
    if ctx.known_contact is None:
        return False, "unknown whether the caller is a known contact (does not match)"
    reason = (
        "the caller is a known contact"
        if ctx.known_contact
        else ("the caller is not a known contact")
    )
    return ctx.known_contact == expected, reason


def _match_staff(allowed: list[str], ctx: CallContext, config: TenantConfig) -> tuple[bool, str]:
    if ctx.staff_id is None:
        return False, "no staff member was asked for"
    return _listed("staff member asked for", ctx.staff_id, allowed)


_TRUE = frozenset({"true", "1", "yes", "oui", "vrai"})
_FALSE = frozenset({"false", "0", "no", "non", "faux"})


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().casefold()
    return True if text in _TRUE else False if text in _FALSE else None


def _same(value: Any, wanted: Any) -> bool:
    """Whether an intake answer equals a value of the rule (types as the secretary sends them)."""
    if isinstance(wanted, bool):
        return _as_bool(value) is wanted
    if isinstance(wanted, (int, float)):
        if isinstance(value, bool):
            return False
        try:
            return float(value) == float(wanted)
        except (TypeError, ValueError):
            return False
    if isinstance(wanted, date):
        return str(value).strip()[:10] == wanted.isoformat()
    return str(value).strip().casefold() == str(wanted).strip().casefold()


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _match_intake(
    conditions: dict[str, IntakeMatch], ctx: CallContext, config: TenantConfig
) -> tuple[bool, str]:
    matched, reasons = True, []
    for name, condition in conditions.items():
        value = ctx.intake.get(name)
        if condition.present is not None:
            ok = _empty(value) != condition.present
            reasons.append(f"intake {name} is {'empty' if _empty(value) else 'filled'}")
        elif _empty(value):
            ok = False
            reasons.append(f"intake {name} is empty")
        else:
            wanted = condition.values or ()
            ok = any(_same(value, w) for w in wanted)
            listed = ", ".join(_shown(w) for w in wanted)
            shown = repr(value) if isinstance(value, str) else _shown(value)
            reasons.append(f"intake {name} {shown} is {'' if ok else 'not '}in [{listed}]")
        matched = matched and ok
    return matched, "; ".join(reasons)


# One matcher per key of ``When`` (a test checks none is missing), in trace order.
MATCHERS: dict[str, Matcher] = {
    "call_types": _match_call_types,
    "urgency": _match_urgency,
    "window": _match_window,
    "holiday": _match_holiday,
    "known_contact": _match_known_contact,
    "staff": _match_staff,
    "intake": _match_intake,
}


def written(value: Any) -> str:
    """A condition's value as the YAML shows it: ``[penal, famille]``, ``true``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(written(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {written(v)}" for k, v in value.items()) + "}"
    if isinstance(value, IntakeMatch):
        if value.present is not None:
            return "{present: " + written(value.present) + "}"
        values = list(value.values or ())
        return written(values[0]) if len(values) == 1 else written(values)
    return _shown(value)


# --------------------------------------------------------------------------- templates

DEFAULT_TEMPLATE = "default"
_BUILTIN_SOURCES: dict[str, tuple[str, str]] = {
    "fr": (
        "{{ message.call_type_label }} : {{ message.subject }}",
        "{{ message.call_type_label }} ({{ message.urgency }})\n"
        "Appelant : {{ caller.name }} {{ caller.phone | phone_national }}\n"
        "{{ message.subject }}\n"
        "{{ message.body }}",
    ),
    "en": (
        "{{ message.call_type_label }}: {{ message.subject }}",
        "{{ message.call_type_label }} ({{ message.urgency }})\n"
        "Caller: {{ caller.name }} {{ caller.phone | phone_national }}\n"
        "{{ message.subject }}\n"
        "{{ message.body }}",
    ),
}
BUILTIN_TEMPLATES: dict[str, MessageTemplate] = {
    language: MessageTemplate(subject=subject, body=body)
    for language, (subject, body) in _BUILTIN_SOURCES.items()
}


class TemplateRenderError(ValueError):
    """A message template failed on this message's data (the message says the fix)."""


def _builtin(config: TenantConfig) -> MessageTemplate:
    return BUILTIN_TEMPLATES.get(config.language.split("-")[0], BUILTIN_TEMPLATES["en"])


def message_template(config: TenantConfig, name: str) -> MessageTemplate:
    """The tenant's template ``name``; ``default`` falls back to the built-in one in the
    tenant's language. KeyError for an unknown name (refused at load)."""
    if name in config.templates:
        return config.templates[name]
    if name == DEFAULT_TEMPLATE:
        return _builtin(config)
    raise KeyError(f"unknown template {name!r}")


def render_template(
    config: TenantConfig, name: str | None, context: RenderContext
) -> tuple[str, str]:
    """``(subject, body)`` of template ``name`` (None: ``default``) for one message.

    ``context`` is the one CRM mappings read (caller, message, staff, appointment;
    ``tenant`` is filled from ``config`` when empty); an intake field of the tenant's
    call types that the message lacks reads as empty. A template without ``subject``
    takes the one of the tenant's ``default`` template, else the built-in one. Raises
    :class:`TemplateRenderError` (and KeyError for an unknown name).
    """
    chosen = name or DEFAULT_TEMPLATE
    template = message_template(config, chosen)
    if not context.tenant:
        context = RenderContext(
            caller=context.caller,
            message=context.message,
            staff=context.staff,
            appointment=context.appointment,
            tenant=tenant_info(config),
        )
    roots = RenderView(context).roots
    # An intake field this message lacks reads as empty (names are checked at load).
    known = {f.name: None for c in config.call_types for f in c.intake_fields}
    roots["message"]["intake"] = {**known, **roots["message"]["intake"]}
    subject = template.subject
    if subject is None:
        own = config.templates.get(DEFAULT_TEMPLATE)
        subject = (own.subject if own is not None else None) or _builtin(config).subject
    out: list[str] = []
    for part, source in (("subject", subject or ""), ("body", template.body)):
        try:
            out.append(compile_template(source).render(roots).strip())
        except TemplateError as exc:
            raise TemplateRenderError(
                f"template {chosen!r} ({part}) failed: {exc.message or exc}"
            ) from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise TemplateRenderError(f"template {chosen!r} ({part}) failed: {exc}") from None
    return out[0], out[1]
