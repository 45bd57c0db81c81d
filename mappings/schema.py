"""The shape of one tenant configuration file (pydantic 2 models).

Every model forbids unknown keys, so a typo is an error instead of a setting
silently ignored. Validators raise :func:`fail` errors that carry a ``hint``
(what to write instead); :mod:`mappings.config` turns them into
file:line:column issues. Checks that need the whole file (unknown call type
in a rule, duplicate ids…) live in :mod:`mappings.config`, not here.

Phone numbers are normalised with the tenant's ``phone_region``, passed as
validation context: ``TenantConfig.model_validate(data, context={"phone_region": "FR"})``.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal, NoReturn
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mappings.fieldmap import (
    FieldMapping,
    HubSpotMapping,
    ResolvedMapping,
    SalesforceMapping,
    effective_mapping,
)

# --------------------------------------------------------------------------- helpers


def fail(code: str, message: str, hint: str = "") -> NoReturn:
    """Raise a validation error with a message and a hint (what to write instead)."""
    raise PydanticCustomError(code, "{message}", {"message": message, "hint": hint})


def did_you_mean(value: str, choices: list[str] | tuple[str, ...], *, prefix: str = "") -> str:
    """``"did you mean 'x'? "`` when ``value`` is close to one of ``choices``, else ``""``."""
    folded = {c.casefold(): c for c in choices}
    if value.casefold() in folded and folded[value.casefold()] != value:
        return f"did you mean {folded[value.casefold()]!r}? {prefix}"
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? {prefix}" if close else prefix


def slugify(text: str) -> str:
    """A valid id made from ``text``: ``"Nouveau Client"`` → ``"nouveau-client"``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:63].rstrip("-")
    return slug if len(slug) >= 2 else "my-id"


def _empty_list(value: Any) -> Any:
    """``staff:`` with every item commented out is an empty list, not an error."""
    return [] if value is None else value


def _empty_dict(value: Any) -> Any:
    return {} if value is None else value


def _listify(value: Any) -> Any:
    """Accept a single value where a list is expected: ``call_types: devis``."""
    return [value] if isinstance(value, str) else value


SLUG = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")


def _slug(value: str) -> str:
    if not SLUG.fullmatch(value):
        suggestion = slugify(value)
        example = f"{suggestion!r}" if suggestion != "my-id" else "'nouveau-client'"
        fail(
            "invalid_id",
            f"{value!r} is not a valid id",
            "use 2 to 63 lowercase letters, digits and dashes, starting with a letter or "
            f"digit, e.g. {example}",
        )
    return value


_CONNECTION_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def _connection_name(value: str) -> str:
    if not _CONNECTION_NAME.fullmatch(value):
        fail(
            "invalid_name",
            f"{value!r} is not a valid connection name",
            "use up to 63 lowercase letters, digits, dashes and underscores, "
            f"e.g. {slugify(value).replace('my-id', 'crm')!r}",
        )
    return value


@lru_cache(maxsize=1)
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def zone_suggestion(value: str) -> str:
    names = _zone_names()
    tail = value.strip().replace(" ", "_").casefold()
    by_city = [n for n in names if n.casefold().rsplit("/", 1)[-1] == tail]
    if by_city:
        return f"did you mean {by_city[0]!r}? "
    return did_you_mean(value, names)


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        fail(
            "invalid_timezone",
            f"{value!r} is not a known time zone",
            zone_suggestion(value) + "use an IANA zone such as Europe/Paris",
        )
    return value


def _region(value: str) -> str:
    region = value.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        fail(
            "invalid_region",
            f"{value!r} is not a supported phone region",
            "use a two-letter ISO country code such as FR, BE, CH or CA",
        )
    return region


def phone_example(region: str | None) -> str:
    """``"+33612345678 or 06 12 34 56 78"`` for FR: how to write a number in ``region``."""
    example = None
    if region:
        example = phonenumbers.example_number_for_type(
            region, phonenumbers.PhoneNumberType.MOBILE
        ) or phonenumbers.example_number(region)
    if example is None:
        return "in international form, e.g. +33612345678"
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    national = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL)
    return f"as {e164} or {national}"


def normalize_phone(raw: str, region: str | None) -> str:
    """E.164 form of ``raw`` read in ``region``; a :func:`fail` error if it is not valid."""
    where = f"for region {region}" if region else "(no phone_region to read it in)"
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        fail(
            "invalid_phone",
            f"{raw!r} is not a valid phone number {where}",
            "write it " + phone_example(region),
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        fail("invalid_email", f"{value!r} is not an email address", "write it as name@example.fr")
    return value


Slug = Annotated[str, AfterValidator(_slug)]
Text = Annotated[str, Field(min_length=1, max_length=200)]
ZoneName = Annotated[str, AfterValidator(_timezone)]
Email = Annotated[str, AfterValidator(_email)]
Urgency = Literal["low", "normal", "high", "urgent"]
URGENCY_LEVELS: tuple[str, ...] = ("low", "normal", "high", "urgent")


class Model(BaseModel):
    """Base of every config model: unknown keys are errors, text is stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, coerce_numbers_to_str=True)


# --------------------------------------------------------------------------- business hours

_HHMM_RANGE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_RANGE_HINT = "write HH:MM-HH:MM, e.g. 09:00-12:30 (22:00-06:00 runs past midnight)"


class TimeRange(BaseModel):
    """Opening hours within a day. ``end <= start`` means the range runs past midnight.

    ``00:00-24:00`` (the whole day) is stored as start 00:00, end 00:00.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: time
    end: time

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    @property
    def minutes(self) -> int:
        start = self.start.hour * 60 + self.start.minute
        end = self.end.hour * 60 + self.end.minute
        return end - start if end > start else end + 1440 - start

    def __str__(self) -> str:
        end = "24:00" if self.end == time(0) else self.end.strftime("%H:%M")
        return f"{self.start.strftime('%H:%M')}-{end}"


def parse_time_range(value: Any) -> Any:
    """``"09:00-12:30"`` → TimeRange; ``"22:00-06:00"`` crosses midnight."""
    if isinstance(value, TimeRange):
        return value
    if not isinstance(value, str):
        fail("invalid_time_range", f"{value!r} is not a time range", _RANGE_HINT)
    found = _HHMM_RANGE.fullmatch(value.strip())
    if not found:
        fail("invalid_time_range", f"{value!r} is not a time range", _RANGE_HINT)
    h1, m1, h2, m2 = (int(g) for g in found.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        fail(
            "invalid_time_range",
            f"{value!r} has an impossible time",
            "hours go from 00 to 23 and minutes from 00 to 59 (24:00 only as an end); "
            + _RANGE_HINT,
        )
    start, end = time(h1, m1), time(h2 % 24, m2)
    if start == end and not (h1 == 0 and m1 == 0 and h2 == 24):
        fail(
            "invalid_time_range",
            f"{value!r} is empty (it starts when it ends)",
            "for the whole day write 00:00-24:00",
        )
    return TimeRange(start=start, end=end)


def _day_ranges(value: Any) -> Any:
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


DayRanges = Annotated[
    list[Annotated[TimeRange, BeforeValidator(parse_time_range)]], BeforeValidator(_day_ranges)
]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class BusinessHours(Model):
    """Opening hours per weekday (missing day = closed), in the tenant's zone."""

    mon: DayRanges = []
    tue: DayRanges = []
    wed: DayRanges = []
    thu: DayRanges = []
    fri: DayRanges = []
    sat: DayRanges = []
    sun: DayRanges = []
    closures: Annotated[list[date], BeforeValidator(_empty_list)] = []

    @field_validator(*WEEKDAYS)
    @classmethod
    def _no_overlap(cls, ranges: list[TimeRange]) -> list[TimeRange]:
        def span(r: TimeRange) -> tuple[int, int]:
            start = r.start.hour * 60 + r.start.minute
            return start, start + r.minutes

        ordered = sorted(ranges, key=lambda r: r.start)
        for before, after in zip(ordered, ordered[1:], strict=False):
            if span(after)[0] < span(before)[1]:
                fail(
                    "overlapping_hours",
                    f"{before} and {after} overlap",
                    "merge them into one range, or correct one of the times",
                )
        if sum(r.minutes for r in ordered) > 1440:
            fail("overlapping_hours", "these ranges cover more than a day", "remove one")
        return ordered

    @field_validator("closures")
    @classmethod
    def _sorted_dates(cls, closures: list[date]) -> list[date]:
        return sorted(set(closures))

    def day(self, weekday: int) -> list[TimeRange]:
        """Ranges of a weekday, Monday = 0 (as ``date.weekday()``)."""
        ranges: list[TimeRange] = getattr(self, WEEKDAYS[weekday])
        return ranges

    def is_open(self, at: datetime, zone: ZoneInfo) -> bool:
        """Whether ``at`` (aware) falls in opening hours, read on the wall clock of ``zone``.

        A closure date closes every range that *starts* that day; the after-midnight
        tail of the previous evening's range stays open unless that day is closed too.
        """
        if at.tzinfo is None:
            raise ValueError("is_open needs an aware datetime")
        local = at.astimezone(zone)
        today, now = local.date(), local.time().replace(tzinfo=None)
        if today not in self.closures:
            for r in self.day(today.weekday()):
                if r.start <= now and (r.crosses_midnight or now < r.end):
                    return True
        yesterday = today - timedelta(days=1)
        if yesterday not in self.closures:
            for r in self.day(yesterday.weekday()):
                if r.crosses_midnight and now < r.end:
                    return True
        return False


# --------------------------------------------------------------------------- staff


class StaffCalendar(Model):
    connection: str  # a connection name whose role is calendar
    id: Text  # calendar id (Google) or mailbox (Outlook)


class StaffMember(Model):
    id: Slug
    name: Text
    email: Email | None = None
    phone: str | None = None  # normalised to E.164 with the tenant's phone_region
    timezone: ZoneName | None = None  # filled with the tenant's zone after loading
    calendar: StaffCalendar | None = None
    crm_owner_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value:
            return None
        context = info.context or {}
        if context.get("phone_region_invalid"):
            return value  # the region is reported; reading numbers in it would only add noise
        return normalize_phone(value, context.get("phone_region"))

    @property
    def zone(self) -> ZoneInfo:
        if self.timezone is None:
            raise ValueError(f"staff {self.id} has no time zone (load it through TenantConfig)")
        return ZoneInfo(self.timezone)


# --------------------------------------------------------------------------- call types

FieldType = Literal["text", "number", "date", "bool", "choice"]
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


def _field_name(value: str) -> str:
    if not _FIELD_NAME.fullmatch(value):
        suggestion = slugify(value).replace("-", "_")
        fail(
            "invalid_field_name",
            f"{value!r} is not a valid field name",
            "use lowercase letters, digits and underscores, starting with a letter, "
            f"e.g. {suggestion!r}",
        )
    return value


class IntakeField(Model):
    """A question the secretary asks for this call type."""

    name: Annotated[str, AfterValidator(_field_name)]
    label: Text
    type: FieldType = "text"
    required: bool = False
    choices: list[Annotated[str, Field(min_length=1)]] | None = None

    @model_validator(mode="after")
    def _choices(self) -> IntakeField:
        if self.type == "choice":
            if not self.choices:
                fail(
                    "missing_choices",
                    f"field {self.name!r} is a choice but lists no choices",
                    "add `choices: [first, second]`",
                )
            if len(set(self.choices)) != len(self.choices):
                fail("duplicate_choice", "a choice is listed twice", "list each choice once")
        elif self.choices is not None:
            fail(
                "unexpected_choices",
                f"field {self.name!r} has choices but its type is {self.type}",
                "set `type: choice`, or remove `choices`",
            )
        return self


class CallType(Model):
    id: Slug
    label: Text
    description: Annotated[str, Field(max_length=2000)] | None = None
    urgency_default: Urgency = "normal"
    sensitive: bool | None = None  # None: the tenant's setting
    intake_fields: Annotated[list[IntakeField], BeforeValidator(_empty_list)] = []


# --------------------------------------------------------------------------- connections

Provider = Literal["webhook", "salesforce", "hubspot", "google_calendar", "outlook", "email", "sms"]
PROVIDERS: tuple[str, ...] = (
    "webhook",
    "salesforce",
    "hubspot",
    "google_calendar",
    "outlook",
    "email",
    "sms",
)
Role = Literal["crm", "calendar", "notify"]
DEFAULT_ROLE: dict[str, str] = {
    "webhook": "notify",
    "salesforce": "crm",
    "hubspot": "crm",
    "google_calendar": "calendar",
    "outlook": "calendar",
    "email": "notify",
    "sms": "notify",
}
ALLOWED_ROLES: dict[str, tuple[str, ...]] = {
    provider: ("crm", "calendar", "notify") if provider == "webhook" else (role,)
    for provider, role in DEFAULT_ROLE.items()
}


class _ConnectionBase(Model):
    provider: str
    role: Role | None = Field(default=None, validate_default=True)

    @field_validator("role", mode="after")
    @classmethod
    def _role(cls, role: str | None, info: ValidationInfo) -> str | None:
        provider = info.data.get("provider")
        if provider not in DEFAULT_ROLE:
            return role
        if role is None:
            return DEFAULT_ROLE[provider]
        if role not in ALLOWED_ROLES[provider]:
            fail(
                "invalid_role",
                f"a {provider} connection cannot have role {role}",
                f"use role {DEFAULT_ROLE[provider]}, or remove `role`",
            )
        return role

    def connector_settings(self) -> dict[str, Any]:
        """What the connector needs (stored in the connection row's ``settings``)."""
        raise NotImplementedError


_RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "idempotency-key", "user-agent"}
)
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(
            "invalid_url",
            f"{value!r} is not an http(s) URL",
            "write a full URL such as https://crm.example.fr/hooks/relais",
        )
    if parts.username or parts.password:
        fail(
            "invalid_url",
            "the URL contains a user name or password",
            "put credentials in `headers` (e.g. Authorization), read from ${RELAIS_TENANT_…}",
        )
    return value


class WebhookConnection(_ConnectionBase):
    """POST a signed JSON document to ``url`` (see connectors/webhook.py)."""

    provider: Literal["webhook"]
    url: Annotated[str, AfterValidator(_url)]
    timeout_seconds: Annotated[int, Field(ge=1, le=60)] = 10
    headers: Annotated[dict[str, str], BeforeValidator(_empty_dict)] = {}

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if not _HEADER_NAME.fullmatch(name):
                fail("invalid_header", f"{name!r} is not a valid HTTP header name", "")
            if name.lower() in _RESERVED_HEADERS or name.lower().startswith("relais-"):
                fail(
                    "reserved_header",
                    f"header {name!r} is set by Relais itself",
                    "remove it; Relais sends Content-Type, Idempotency-Key and Relais-* headers",
                )
        return headers

    def connector_settings(self) -> dict[str, Any]:
        return {"url": self.url, "timeout_seconds": self.timeout_seconds, "headers": self.headers}


class _SettingsConnection(_ConnectionBase):
    settings: Annotated[dict[str, Any], BeforeValidator(_empty_dict)] = {}

    def connector_settings(self) -> dict[str, Any]:
        return dict(self.settings)


class ProviderConnection(_SettingsConnection):
    """Google Calendar, Outlook, email, SMS: free-form settings for now."""

    provider: Literal["google_calendar", "outlook", "email", "sms"]


class CrmConnection(_SettingsConnection):
    """A CRM (Salesforce, HubSpot): free-form ``settings`` and an optional field ``mapping``.

    ``mapping`` is what the tenant wrote (see :mod:`mappings.fieldmap`);
    :meth:`resolved_mapping` merges it with the built-in defaults.
    """

    mapping: FieldMapping | None = None

    def resolved_mapping(self) -> ResolvedMapping:
        return effective_mapping(self.provider, self.mapping)


class SalesforceConnection(CrmConnection):
    provider: Literal["salesforce"]
    mapping: SalesforceMapping | None = None


class HubSpotConnection(CrmConnection):
    provider: Literal["hubspot"]
    mapping: HubSpotMapping | None = None


AnyConnection = WebhookConnection | SalesforceConnection | HubSpotConnection | ProviderConnection
Connection = Annotated[AnyConnection, Field(discriminator="provider")]
ConnectionName = Annotated[str, AfterValidator(_connection_name)]


# --------------------------------------------------------------------------- rules


def _non_empty(values: list[Any] | None) -> list[Any] | None:
    if values is not None and not values:
        fail(
            "empty_condition",
            "an empty list matches nothing",
            "list at least one value, or remove the key to match every call",
        )
    return values


class When(Model):
    """Conditions of a rule; all given keys must match, a missing key matches anything.

    Later matchers (time windows, holidays, known contact, staff, intake fields)
    are added here as more optional keys, each with a matcher in mappings/plan.py.
    """

    call_types: Annotated[
        list[str] | None, BeforeValidator(_listify), AfterValidator(_non_empty)
    ] = None
    urgency: Annotated[
        list[Urgency] | None, BeforeValidator(_listify), AfterValidator(_non_empty)
    ] = None

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in type(self).model_fields)


class Action(Model):
    """Deliver to one connection, or drop the message (spam: no delivery at all)."""

    connection: str | None = None
    drop: bool | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Action:
        if self.drop is False:
            fail("invalid_action", "`drop: false` does nothing", "remove it, or write `drop: true`")
        if (self.connection is None) == (self.drop is None):
            fail(
                "invalid_action",
                "an action needs exactly one of `connection` or `drop`",
                "write `- connection: <name>` to deliver, or `- drop: true` to discard spam",
            )
        return self

    def options(self) -> dict[str, Any]:
        """Extra action options (template, recipients… in later versions)."""
        return self.model_dump(exclude={"connection", "drop"}, exclude_none=True)


def _no_mixed_drop(then: list[Action]) -> list[Action]:
    if any(a.drop for a in then) and len(then) > 1:
        fail(
            "invalid_action",
            "a rule that drops the message cannot also deliver it",
            "keep `- drop: true` alone in this rule",
        )
    return then


Actions = Annotated[list[Action], Field(min_length=1), AfterValidator(_no_mixed_drop)]


class Rule(Model):
    name: Text
    when: Annotated[When, BeforeValidator(_empty_dict)] = Field(default_factory=When)
    then: Actions


class DefaultRule(Model):
    """Applies when no rule matched; it has no ``when``."""

    name: Text = "default"
    then: Actions


class RuleSet(Model):
    mode: Literal["first", "all"] = "first"
    rules: Annotated[list[Rule], BeforeValidator(_empty_list)] = []
    default: DefaultRule | None = None


# --------------------------------------------------------------------------- tenant


class TenantConfig(Model):
    """One tenant's whole configuration."""

    id: Slug
    name: Text
    timezone: ZoneName
    phone_region: Annotated[str, AfterValidator(_region)]
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$")] = "fr"
    sensitive: bool = False
    business_hours: BusinessHours | None = None
    staff: Annotated[list[StaffMember], BeforeValidator(_empty_list)] = []
    call_types: Annotated[list[CallType], Field(min_length=1)]
    connections: Annotated[dict[ConnectionName, Connection], BeforeValidator(_empty_dict)] = {}
    rules: Annotated[RuleSet, BeforeValidator(_empty_dict)] = Field(default_factory=RuleSet)

    @model_validator(mode="after")
    def _staff_zone(self) -> TenantConfig:
        for member in self.staff:
            if member.timezone is None:
                member.timezone = self.timezone
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def call_type(self, call_type_id: str) -> CallType | None:
        return next((c for c in self.call_types if c.id == call_type_id), None)

    def staff_member(self, staff_id: str) -> StaffMember | None:
        return next((s for s in self.staff if s.id == staff_id), None)

    def connection(self, name: str) -> AnyConnection | None:
        return self.connections.get(name)

    def is_sensitive(self, call_type_id: str) -> bool:
        """The call type's ``sensitive`` override, else the tenant's setting."""
        found = self.call_type(call_type_id)
        if found is not None and found.sensitive is not None:
            return found.sensitive
        return self.sensitive
