"""Values for CRM fields: phone, name and date formatting, and sandboxed Jinja2 templates.

Pure helpers shared by the field-mapping transforms (:mod:`mappings.fieldmap`)
and the template filters.

**Templates** run in :class:`jinja2.sandbox.ImmutableSandboxedEnvironment`
(no ``__class__``-style attribute, no mutation of the data), with
:class:`jinja2.StrictUndefined` (a name or attribute that does not exist is an
error, never silently empty) and no HTML autoescaping (CRM text fields are
plain text). ``None`` prints as nothing. Block tags eat the newline after them
(``trim_blocks``, ``lstrip_blocks``). Compiled templates are cached by source
text, so each one is compiled once per process. Filters:

* ``phone_national``: ``06 12 34 56 78`` (numbers of another country stay international),
* ``phone_international``: ``+33 6 12 34 56 78``, ``phone_e164``: ``+33612345678``,
* ``datetime``: the instant on the tenant's wall clock, ``27/11/2026 10:15`` by
  default, or any ``strftime`` format: ``{{ appointment.start | datetime("%H:%M") }}``,
* ``first_name``, ``last_name``: see :func:`split_name`.

The tenant's ``timezone`` and ``phone_region`` come from the ``tenant``
variable of the render.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from jinja2 import StrictUndefined, Template, nodes, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

# --------------------------------------------------------------------------- phones


def parse_phone(value: Any, region: str | None) -> phonenumbers.PhoneNumber | None:
    """The number in ``value`` read in ``region``, or None when it is not a valid number."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        number = phonenumbers.parse(text, region or None)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def format_phone(value: Any, region: str | None, style: str) -> str | None:
    """``style`` is ``e164``, ``national`` or ``international``.

    ``national`` is the national form when the number belongs to ``region``
    (``06 12 34 56 78`` in FR) and the international form otherwise (a
    Belgian caller of a French office stays ``+32 470 12 34 56``, dialable from
    France). A value that is not a valid number is returned unchanged
    (stripped): a caller's odd number must not block the delivery.
    """
    if value is None:
        return None
    number = parse_phone(value, region)
    if number is None:
        text = str(value).strip()
        return text or None
    fmt = phonenumbers.PhoneNumberFormat
    if style == "e164":
        return phonenumbers.format_number(number, fmt.E164)
    if style == "national" and region and phonenumbers.region_code_for_number(number) == region:
        return phonenumbers.format_number(number, fmt.NATIONAL)
    return phonenumbers.format_number(number, fmt.INTERNATIONAL)


# --------------------------------------------------------------------------- names

# Civility titles dropped from the front of a name ("Mme Marie Dupont", "Maître Durand").
TITLES = frozenset(
    t.casefold()
    for t in (
        "M", "Mr", "Mme", "Mlle", "Mrs", "Ms", "Me", "Maître", "Maitre", "Dr", "Docteur",
        "Pr", "Prof", "Professeur", "Monsieur", "Madame", "Mademoiselle",
    )
)  # fmt: skip
# Particles that belong to the last name ("Jean de La Fontaine", "Ludwig van Beethoven").
PARTICLES = frozenset(
    (
        "de", "du", "des", "d'", "d’", "la", "le", "les", "van", "von", "der", "den",
        "ter", "ten", "da", "di", "del", "della", "dos", "das", "do", "y", "zu", "af",
        "st", "st.", "saint", "sainte", "mac", "bin", "ibn", "al", "el",
    )
)  # fmt: skip


def _is_upper_word(word: str) -> bool:
    """A word written in capitals, with at least two letters (``J.`` is an initial)."""
    return word.isupper() and sum(c.isalpha() for c in word) >= 2


def split_name(name: Any) -> tuple[str | None, str | None]:
    """``(first name, last name)`` of a person's full name, as a secretary typed it.

    The rule, in order:

    1. Spaces are collapsed; leading civility titles (M., Mme, Maître, Dr…) are dropped.
    2. One word: it is the last name (Salesforce requires a last name, not a first one).
    3. Capitals mark the last name, French style: a leading run of words in capitals
       followed by other words is ``NOM Prénom`` (``DUPONT Marie`` → Marie / DUPONT);
       a trailing run is ``Prénom NOM`` (``Jean-Pierre DE LA FONTAINE``). A name all in
       capitals carries no such hint and falls through to rule 4.
    4. Otherwise the last word is the last name, together with the particles
       written just before it (de, du, des, d', le, la, van, von…):
       ``Jean-Pierre de La Fontaine`` → Jean-Pierre / de La Fontaine,
       ``Le Pen`` → (none) / Le Pen.

    Capitalisation is kept as written.
    """
    if name is None:
        return None, None
    words = str(name).split()
    while len(words) > 1 and words[0].casefold().rstrip(".") in TITLES:
        words = words[1:]
    if not words:
        return None, None
    if len(words) == 1:
        return None, words[0]
    upper = [_is_upper_word(w) for w in words]
    if any(upper) and not all(upper):
        lead = next(i for i, u in enumerate(upper) if not u)
        if lead > 0 and not any(upper[lead:]):  # NOM Prénom
            return " ".join(words[lead:]), " ".join(words[:lead])
        trail = next(i for i in range(len(words) - 1, -1, -1) if not upper[i]) + 1
        if trail < len(words) and not any(upper[:trail]):  # Prénom NOM
            return " ".join(words[:trail]), " ".join(words[trail:])
    start = len(words) - 1
    while start > 0 and words[start - 1].casefold() in PARTICLES:
        start -= 1
    first = " ".join(words[:start]) or None
    return first, " ".join(words[start:])


# --------------------------------------------------------------------------- dates


def zone_of(tenant: Any) -> tzinfo:
    """The tenant's zone from a ``{"timezone": ...}`` mapping (UTC when absent)."""
    name = tenant.get("timezone") if isinstance(tenant, dict) else None
    if not name:
        return UTC
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def region_of(tenant: Any) -> str | None:
    region = tenant.get("phone_region") if isinstance(tenant, dict) else None
    return str(region).upper() if region else None


def to_datetime(value: Any, zone: tzinfo) -> datetime | None:
    """An aware datetime from a datetime, a date or an ISO 8601 text.

    A naive value (no offset) is read on the wall clock of ``zone``; a date is
    midnight in ``zone``. Raises ValueError when the text is not ISO 8601.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        found = value
    elif isinstance(value, date):
        found = datetime.combine(value, time())
    elif isinstance(value, str):
        found = datetime.fromisoformat(value.strip())
    else:
        raise ValueError(f"{value!r} is not a date and time")
    return found if found.tzinfo is not None else found.replace(tzinfo=zone)


def is_date_only(value: Any) -> bool:
    """A date without a time of day (a ``date``, or a ``YYYY-MM-DD`` text)."""
    if isinstance(value, datetime):
        return False
    if isinstance(value, date):
        return True
    return isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()) is not None


def iso_utc(moment: datetime) -> str:
    """``2026-11-27T09:15:00Z`` (milliseconds only when there are some)."""
    utc = moment.astimezone(UTC)
    spec = "milliseconds" if utc.microsecond else "seconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since 1970-01-01T00:00:00Z (HubSpot timestamps), exact."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)

DEFAULT_DATETIME_FORMAT = "%d/%m/%Y %H:%M"
DEFAULT_DATE_FORMAT = "%d/%m/%Y"


# --------------------------------------------------------------------------- templates


def _finalize(value: Any) -> Any:
    return "" if value is None else value


def _tenant(context: Context) -> Any:
    return context.get("tenant")


@pass_context
def _phone_national(context: Context, value: Any) -> str:
    return format_phone(value, region_of(_tenant(context)), "national") or ""


@pass_context
def _phone_international(context: Context, value: Any) -> str:
    return format_phone(value, region_of(_tenant(context)), "international") or ""


@pass_context
def _phone_e164(context: Context, value: Any) -> str:
    return format_phone(value, region_of(_tenant(context)), "e164") or ""


@pass_context
def _datetime(context: Context, value: Any, format: str | None = None) -> str:
    zone = zone_of(_tenant(context))
    moment = to_datetime(value, zone)
    if moment is None:
        return ""
    if format is None:
        format = DEFAULT_DATE_FORMAT if is_date_only(value) else DEFAULT_DATETIME_FORMAT
    return moment.astimezone(zone).strftime(format)


def _first_name(value: Any) -> str:
    return split_name(value)[0] or ""


def _last_name(value: Any) -> str:
    return split_name(value)[1] or ""


FILTERS = ("phone_national", "phone_international", "phone_e164", "datetime", "first_name",
           "last_name")  # fmt: skip

ENVIRONMENT = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined,
    autoescape=False,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
    finalize=_finalize,
    auto_reload=False,
)
ENVIRONMENT.filters.update(
    phone_national=_phone_national,
    phone_international=_phone_international,
    phone_e164=_phone_e164,
    datetime=_datetime,
    first_name=_first_name,
    last_name=_last_name,
)


@lru_cache(maxsize=4096)
def compile_template(source: str) -> Template:
    """The compiled template (cached: compiled once per distinct text).

    Raises :class:`jinja2.TemplateSyntaxError` (``lineno`` is 1-based in ``source``).
    """
    return ENVIRONMENT.from_string(source)


def parse_template(source: str) -> nodes.Template:
    """The template's syntax tree; raises :class:`jinja2.TemplateSyntaxError`."""
    return ENVIRONMENT.parse(source)


@dataclass(frozen=True)
class Reference:
    """``caller.phone`` in a template: the names read, and the template line."""

    parts: tuple[str, ...]
    lineno: int

    @property
    def dotted(self) -> str:
        return ".".join(self.parts)


def _outer_lookups(tree: nodes.Node) -> Iterator[nodes.Getattr | nodes.Getitem]:
    inner: set[int] = set()
    found: list[nodes.Getattr | nodes.Getitem] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            found.append(node)
            inner.add(id(node.node))
    return (n for n in found if id(n) not in inner)


def references(tree: nodes.Template, roots: frozenset[str]) -> list[Reference]:
    """Every ``root.attr.attr…`` read in the template whose root is one of ``roots``.

    A dynamic lookup (``x[name]``) ends the part that can be checked. Names the
    template assigns itself (``{% set %}``, loop variables) are not reported.
    """
    declared_outside = _undeclared(tree)
    out: list[Reference] = []
    seen_roots: set[int] = set()
    for lookup in _outer_lookups(tree):
        parts: list[str] = []
        node: nodes.Node = lookup
        while isinstance(node, (nodes.Getattr, nodes.Getitem)):
            if isinstance(node, nodes.Getattr):
                parts.insert(0, node.attr)
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                parts.insert(0, node.arg.value)
            else:
                parts = []
            node = node.node
        if isinstance(node, nodes.Name) and node.name in roots and node.name in declared_outside:
            seen_roots.add(id(node))
            out.append(Reference((node.name, *parts), lookup.lineno))
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name in roots and id(name) not in seen_roots:
            if name.name in declared_outside:
                out.append(Reference((name.name,), name.lineno))
    return sorted(out, key=lambda r: r.lineno)


def _undeclared(tree: nodes.Template) -> set[str]:
    from jinja2 import meta

    return set(meta.find_undeclared_variables(tree))


def unknown_names(tree: nodes.Template, roots: frozenset[str]) -> list[tuple[str, int]]:
    """Variables read from outside the template that are neither ``roots`` nor Jinja globals."""
    undeclared = _undeclared(tree) - set(roots) - set(ENVIRONMENT.globals)
    out: list[tuple[str, int]] = []
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name in undeclared:
            out.append((name.name, name.lineno))
            undeclared.discard(name.name)
    return out


def unsafe_lookups(tree: nodes.Template) -> list[tuple[str, int]]:
    """Attribute reads the sandbox refuses anyway (``__class__``, ``_private``)."""
    found: list[tuple[int, int, str]] = []  # (line, depth in its chain, attribute)
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            attr: Any = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            attr = node.arg.value
        else:
            continue
        if isinstance(attr, str) and attr.startswith("_"):
            depth, inner = 0, node.node
            while isinstance(inner, (nodes.Getattr, nodes.Getitem)):
                depth, inner = depth + 1, inner.node
            found.append((node.lineno, depth, attr))
    return [(attr, line) for line, _, attr in sorted(found)]  # first read first
