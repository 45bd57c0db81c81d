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

from mappings.errors import did_you_mean
from mappings.fieldmap import (
    FieldMapping,
    HubSpotMapping,
    ResolvedMapping,
    SalesforceMapping,
    Urgency,
    analyse_template,
    effective_mapping,
)
from mappings.wallclock import format_duration

# --------------------------------------------------------------------------- helpers


def fail(code: str, message: str, hint: str = "") -> NoReturn:
    """Raise a validation error with a message and a hint (what to write instead)."""
    raise PydanticCustomError(code, "{message}", {"message": message, "hint": hint})


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


class Model(BaseModel):
    """Base of every config model: unknown keys are errors, text is stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, coerce_numbers_to_str=True)


# --------------------------------------------------------------------------- business hours

_HHMM_RANGE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_RANGE_HINT = "write HH:MM-HH:MM, e.g. 09:00-12:30 (22:00-06:00 runs past midnight)"


class ClockRange(BaseModel):
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
    """``"09:00-12:30"`` → ClockRange; ``"22:00-06:00"`` crosses midnight."""
    if isinstance(value, ClockRange):
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
    return ClockRange(start=start, end=end)


def _day_ranges(value: Any) -> Any:
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


DayRanges = Annotated[
    list[Annotated[ClockRange, BeforeValidator(parse_time_range)]], BeforeValidator(_day_ranges)
]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _check_day_ranges(ranges: list[ClockRange]) -> list[ClockRange]:
    """One day's ranges, sorted; overlapping ones (or more than a day) are errors."""

    def span(r: ClockRange) -> tuple[int, int]:
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
    def _no_overlap(cls, ranges: list[ClockRange]) -> list[ClockRange]:
        return _check_day_ranges(ranges)

    @field_validator("closures")
    @classmethod
    def _sorted_dates(cls, closures: list[date]) -> list[date]:
        return sorted(set(closures))

    def day(self, weekday: int) -> list[ClockRange]:
        """Ranges of a weekday, Monday = 0 (as ``date.weekday()``)."""
        ranges: list[ClockRange] = getattr(self, WEEKDAYS[weekday])
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


class StaffCalendarRef(Model):
    connection: str  # a connection name whose role is calendar
    id: Text  # calendar id (Google) or mailbox (Outlook)


_CLOSED_WORDS = ("closed", "ferme", "fermé", "off")


def _override_ranges(value: Any) -> Any:
    """``closed`` (or nothing, or ``[]``) closes the date; else one range or a list."""
    if value is None or value is False:
        return []
    if isinstance(value, str) and value.strip().casefold() in _CLOSED_WORDS:
        return []
    return [value] if isinstance(value, str) else value


OverrideRanges = Annotated[
    list[Annotated[ClockRange, BeforeValidator(parse_time_range)]],
    BeforeValidator(_override_ranges),
    AfterValidator(_check_day_ranges),
]


class StaffMember(Model):
    id: Slug
    name: Text
    email: Email | None = None
    phone: str | None = None  # normalised to E.164 with the tenant's phone_region
    timezone: ZoneName | None = None  # filled with the tenant's zone after loading
    calendar: StaffCalendarRef | None = None
    crm_owner_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    # Bookable hours, in the staff member's zone; default: the tenant's business_hours.
    # Their `closures` are this person's own days off.
    working_hours: BusinessHours | None = None
    # One date's hours replaced: `2026-12-24: 09:00-12:00`, or `closed`.
    overrides: Annotated[dict[date, OverrideRanges], BeforeValidator(_empty_dict)] = {}

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
    # Read aloud or followed by the secretary when this call type is chosen (the desk).
    instructions: Annotated[str, Field(min_length=1, max_length=2000)] | None = None


def _forwarding_number(value: str, info: ValidationInfo) -> str:
    """A number callers dial that rings at the answering service for this tenant."""
    context = info.context or {}
    if context.get("phone_region_invalid"):
        return value  # the region is reported; reading numbers in it would only add noise
    return normalize_phone(value, context.get("phone_region"))


ForwardingNumber = Annotated[str, AfterValidator(_forwarding_number)]


# --------------------------------------------------------------------------- holidays


@lru_cache(maxsize=1)
def _holiday_countries() -> dict[str, tuple[str, ...]]:
    import holidays  # big package: loaded only when a tenant names a country

    return {k: tuple(v) for k, v in holidays.list_supported_countries().items()}


class Holidays(Model):
    """Public holidays closing every staff calendar (``holidays`` package)."""

    country: str
    subdivision: str | None = None

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        country = value.strip().upper()
        if country not in _holiday_countries():
            fail(
                "invalid_country",
                f"{value!r} is not a country with known public holidays",
                "use a two-letter ISO country code such as FR, BE, CH or CA",
            )
        return country

    @field_validator("subdivision")
    @classmethod
    def _subdivision(cls, value: str | None, info: ValidationInfo) -> str | None:
        country = info.data.get("country")
        if value is None or country is None:  # a bad country is reported on its own
            return value
        known = _holiday_countries().get(country, ())
        if value not in known:
            listed = ", ".join(known[:20]) + ("…" if len(known) > 20 else "")
            fail(
                "invalid_subdivision",
                f"{value!r} is not a subdivision of {country}",
                did_you_mean(value, list(known))
                + (f"use one of: {listed}" if known else f"{country} has none: remove it"),
            )
        return value


# --------------------------------------------------------------------------- appointment types

Minutes = Annotated[int, Field(ge=0, le=24 * 60)]


def _non_empty_staff(values: list[str] | None) -> list[str] | None:
    if values is not None and not values:
        fail(
            "empty_staff",
            "an empty list leaves nobody to book",
            "list at least one staff id, or remove `staff` to offer every staff member "
            "with a calendar",
        )
    return values


class AppointmentTypeSpec(Model):
    """What a secretary can book, and the rules its slots follow (see sync.availability)."""

    id: Slug
    label: Text
    duration_minutes: Annotated[int, Field(ge=5, le=24 * 60)]
    buffer_before_minutes: Minutes = 0
    buffer_after_minutes: Minutes = 0
    minimum_notice_minutes: Annotated[int, Field(ge=0, le=60 * 24 * 60)] = 0
    # Slots start before the end of the local date today + N days; 0 = today only.
    booking_horizon_days: Annotated[int, Field(ge=0, le=366)] = 60
    interval_minutes: Annotated[int, Field(ge=5, le=24 * 60)] | None = None  # default: duration
    align: Literal["range", "clock"] = "range"
    daily_limit: Annotated[int, Field(ge=1, le=1000)] | None = None
    # Who can take it (staff ids); default: every staff member with a calendar.
    staff: Annotated[
        list[str] | None, BeforeValidator(_listify), AfterValidator(_non_empty_staff)
    ] = None

    @property
    def step_minutes(self) -> int:
        return self.interval_minutes or self.duration_minutes


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


# Whether a webhook or CRM connection may receive what the caller said
# (``content: full|notice``); unset: ``notice`` for a sensitive call type, else ``full``.
# ``notice``: the delivery carries a notice and a signed link, no subject, body,
# intake answers, caller name or email (sync.payloads.notice_form).
ContentPermission = Literal["full", "notice"]


def content_of(connection: Any, sensitive: bool) -> ContentPermission:
    """What ``connection`` receives of a message (``sensitive``: its call type's)."""
    declared = getattr(connection, "content", None)
    if declared is not None:
        return declared  # type: ignore[no-any-return]
    if not isinstance(connection, (WebhookConnection, CrmConnection)):
        return "full"  # calendars, email, SMS: not a destination of message content here
    return "notice" if sensitive else "full"


class WebhookConnection(_ConnectionBase):
    """POST a signed JSON document to ``url`` (see connectors/webhook.py)."""

    provider: Literal["webhook"]
    content: ContentPermission | None = None
    url: Annotated[str, AfterValidator(_url)]
    timeout_seconds: Annotated[int, Field(ge=1, le=60)] = 10
    headers: Annotated[dict[str, str], BeforeValidator(_empty_dict)] = {}
    # Requests of one batch in flight at once; ``ordered`` sends one at a time,
    # in the order the messages were taken, for receivers that need it.
    concurrency: Annotated[int, Field(ge=1, le=32)] = 16
    ordered: bool = False

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
        return {"url": self.url, "timeout_seconds": self.timeout_seconds, "headers": self.headers,
                "concurrency": self.concurrency, "ordered": self.ordered}


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
    content: ContentPermission | None = None

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


# --------------------------------------------------------------------------- rule language
# Named windows, message templates, recipients, on-call schedules and escalation
# ladders (tenant-level keys), used by the `when` conditions and `then` actions
# below. Evaluated by mappings/rules.py, mappings/oncall.py, mappings/escalation.py.

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
RESERVED_WINDOWS: tuple[str, ...] = ("business_hours", "after_hours")
ON_CALL = "on_call"


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        fail(
            "invalid_name",
            f"{value!r} is not a valid name",
            "use up to 63 lowercase letters, digits, dashes and underscores, "
            f"e.g. {slugify(value)!r}",
        )
    return value


def _window_name(value: str) -> str:
    if value in RESERVED_WINDOWS:
        fail(
            "reserved_name",
            f"{value!r} is a built-in window",
            "it follows business_hours already; give your window another name",
        )
    return _name(value)


Name = Annotated[str, AfterValidator(_name)]
WindowName = Annotated[str, AfterValidator(_window_name)]

_DAY_HINT = (
    "write a day (mon tue wed thu fri sat sun), a range such as mon-fri (fri-mon wraps "
    "around the weekend), several separated by commas (sat,sun), or daily"
)


def parse_days(spec: str) -> tuple[int, ...]:
    """``mon-fri`` → (0, 1, 2, 3, 4); ``fri-mon`` wraps; ``sat,sun``; ``daily``. Sorted."""
    days: set[int] = set()
    for part in spec.replace(" ", "").lower().split(","):
        if part == "daily":
            days.update(range(7))
            continue
        first, dash, last = part.partition("-")
        for name in (first, last) if dash else (first,):
            if name not in WEEKDAYS:
                fail(
                    "invalid_days",
                    f"{spec!r} is not a set of days" + (f": {name!r} is not a day" if name else ""),
                    did_you_mean(name, WEEKDAYS) + _DAY_HINT,
                )
        start = WEEKDAYS.index(first)
        end = WEEKDAYS.index(last) if dash else start
        days.update((start + i) % 7 for i in range((end - start) % 7 + 1))
    return tuple(sorted(days))


def _day_spec(value: str) -> str:
    parse_days(value)
    return value


def _check_window(days: dict[str, list[ClockRange]]) -> dict[str, list[ClockRange]]:
    if not days:
        fail("empty_window", "this window has no hours", "add e.g. `mon-fri: 18:00-22:00`")
    weekly: list[list[ClockRange]] = [[] for _ in WEEKDAYS]
    for spec, ranges in days.items():
        for day in parse_days(spec):
            weekly[day].extend(ranges)
    for day, ranges in enumerate(weekly):
        try:
            _check_day_ranges(ranges)
        except PydanticCustomError as exc:
            context = exc.context or {}
            fail(
                exc.type,
                f"{WEEKDAYS[day]}: {context.get('message', exc.message())}",
                str(context.get("hint", "")),
            )
    return days


WindowDays = Annotated[
    dict[Annotated[str, AfterValidator(_day_spec)], DayRanges], AfterValidator(_check_window)
]

_DURATION = re.compile(r"(?:(\d+)\s*h)?\s*(?:(\d+)\s*m(?:in)?)?\s*(?:(\d+)\s*s)?")
_DURATION_HINT = "write a duration such as 10m, 1h or 1h30m"


def parse_duration(value: Any) -> timedelta:
    """``"10m"``, ``"1h30m"``, ``"45s"`` → timedelta; a bare number is refused (unit unclear)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        fail("invalid_duration", f"{value!r} is not a duration", _DURATION_HINT)
    if not isinstance(value, str):
        fail("invalid_duration", f"{value!r} has no unit", f"write {value}m for minutes")
    found = _DURATION.fullmatch(value.strip().lower())
    if not value.strip() or not found or not any(found.groups()):
        fail("invalid_duration", f"{value!r} is not a duration", _DURATION_HINT)
    hours, minutes, seconds = (int(g or 0) for g in found.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _duration_between(low: timedelta, high: timedelta) -> Any:
    def check(value: timedelta) -> timedelta:
        if not low <= value <= high:
            fail(
                "invalid_duration",
                f"{format_duration(value)} is {'too short' if value < low else 'too long'}",
                f"write a duration from {format_duration(low)} to {format_duration(high)}",
            )
        return value

    return AfterValidator(check)


Wait = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    _duration_between(timedelta(seconds=30), timedelta(hours=24)),
]
Every = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    _duration_between(timedelta(minutes=5), timedelta(hours=24)),
]


def parse_clock(value: Any) -> time:
    """``"18:00"`` → time(18, 0)."""
    if isinstance(value, time):
        return value
    found = re.fullmatch(r"(\d{1,2}):(\d{2})", str(value).strip())
    if not found or int(found.group(1)) > 23 or int(found.group(2)) > 59:
        fail("invalid_time", f"{value!r} is not a time of day", "write HH:MM, e.g. 18:00")
    return time(int(found.group(1)), int(found.group(2)))


Clock = Annotated[time, BeforeValidator(parse_clock)]


class WeekTime(BaseModel):
    """A weekday and a time of day, written ``mon 08:00``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    day: Annotated[int, Field(ge=0, le=6)]
    clock: time

    def __str__(self) -> str:
        return f"{WEEKDAYS[self.day]} {self.clock:%H:%M}"

    @property
    def minute_of_week(self) -> int:
        return self.day * 1440 + self.clock.hour * 60 + self.clock.minute


def parse_week_time(value: Any) -> Any:
    if isinstance(value, (WeekTime, dict)):
        return value
    text = str(value).strip()
    day, _, clock = text.partition(" ")
    if day.lower()[:3] not in WEEKDAYS or not clock.strip():
        fail(
            "invalid_week_time",
            f"{value!r} is not a day and a time",
            did_you_mean(day.lower(), WEEKDAYS) + "write the day and the time, e.g. `mon 08:00`",
        )
    return WeekTime(day=WEEKDAYS.index(day.lower()[:3]), clock=parse_clock(clock))


WeekTimeField = Annotated[WeekTime, BeforeValidator(parse_week_time)]


def parse_local_datetime(value: Any) -> Any:
    """A datetime, a date (its midnight) or ISO 8601 text; without an offset it is read on
    the tenant's wall clock (see mappings.wallclock)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time())
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    fail(
        "invalid_datetime",
        f"{value!r} is not a date and time",
        "write 2026-12-24T18:00 (on the tenant's clock) or 2026-12-24T18:00+01:00",
    )


LocalDateTime = Annotated[datetime, BeforeValidator(parse_local_datetime)]

# ---- recipients

_PHONE_LIKE = re.compile(r"\+?[0-9][0-9 .()/-]*")


def recipient_kind(value: str) -> str:
    """``on_call``, ``email``, ``phone`` (only digits and + . ( ) / - spaces) or ``staff``
    (a staff id, checked against the file)."""
    if value == ON_CALL:
        return "on_call"
    if "@" in value:
        return "email"
    if _PHONE_LIKE.fullmatch(value):
        return "phone"
    return "staff"


def _recipient(value: str, info: ValidationInfo) -> str:
    kind = recipient_kind(value)
    if kind == "email":
        return _email(value)
    if kind == "phone":
        context = info.context or {}
        if context.get("phone_region_invalid"):
            return value
        return normalize_phone(value, context.get("phone_region"))
    if kind == "staff" and not SLUG.fullmatch(value):
        fail(
            "invalid_recipient",
            f"{value!r} is not a recipient",
            "write a staff id, on_call, an email address or a phone number",
        )
    return value


Recipients = Annotated[
    list[Annotated[str, AfterValidator(_recipient)]],
    BeforeValidator(_listify),
    Field(min_length=1),
]
Channel = Literal["email", "sms"]


# ---- message templates


def _template_text(value: str | None) -> str | None:
    if value is not None:
        analyse_template(value)  # sandboxed, compiled once
    return value


class MessageTemplate(Model):
    """An email or SMS text (sandboxed Jinja2, the variables of CRM field templates).

    SMS use the ``body`` only; an email without ``subject`` gets the built-in one.
    """

    subject: Annotated[
        Annotated[str, Field(min_length=1, max_length=1000)] | None,
        AfterValidator(_template_text),
    ] = None
    body: Annotated[str, Field(min_length=1, max_length=20_000), AfterValidator(_template_text)]


# ---- on-call schedule


class RotationEntry(Model):
    """One turn of the rotation: who, and (timetable form) from which weekly time."""

    staff: str
    from_: WeekTimeField | None = Field(default=None, alias="from")


def _turn_start(entry: RotationEntry) -> int:
    return entry.from_.minute_of_week if entry.from_ is not None else -1


def _rotation_entry(value: Any) -> Any:
    return {"staff": value} if isinstance(value, str) else value


class OnCallOverride(Model):
    """``staff`` is on call from ``from`` to ``to`` instead of the rotation."""

    staff: str
    from_: LocalDateTime = Field(alias="from")
    to: LocalDateTime


class OnCall(Model):
    """Who is on call, in the tenant's zone. Two forms of ``rotation``:

    * a weekly timetable: ``[{staff: jean, from: "mon 08:00"}, {staff: lucas, from:
      "fri 18:00"}]`` — each turn lasts until the next one's ``from``, round the week;
    * turns of a week each: ``[jean, lucas]`` with ``handover: "mon 08:00"`` (when the
      week changes hands) and ``start: 2026-01-05`` (the handover date of the first turn).

    ``overrides`` replace the rotation for a while (holidays, swaps).
    """

    rotation: Annotated[
        list[Annotated[RotationEntry, BeforeValidator(_rotation_entry)]], Field(min_length=1)
    ]
    handover: WeekTimeField | None = None
    start: date | None = None
    overrides: Annotated[list[OnCallOverride], BeforeValidator(_empty_list)] = []

    @property
    def timetable(self) -> bool:
        """True for the weekly-timetable form (entries with ``from``)."""
        return self.rotation[0].from_ is not None

    @model_validator(mode="after")
    def _one_form(self) -> OnCall:
        timed = [e.from_ is not None for e in self.rotation]
        if any(timed) and not all(timed):
            fail(
                "invalid_rotation",
                "some turns of the rotation have `from` and others do not",
                "either give every turn a `from: \"mon 08:00\"` (a weekly timetable), or list "
                "staff ids only with `handover:` and `start:` (a week each)",
            )
        if all(timed):
            for key in ("handover", "start"):
                if getattr(self, key) is not None:
                    fail(
                        "invalid_rotation",
                        f"`{key}` goes with a rotation of whole weeks, but these turns have "
                        "`from` times",
                        f"remove `{key}`: each turn starts at its `from`",
                    )
            starts = [e.from_ for e in self.rotation]
            if len(set(starts)) != len(starts):
                fail("invalid_rotation", "two turns start at the same time", "give each its own")
            self.rotation = sorted(self.rotation, key=_turn_start)
        elif len(self.rotation) > 1 and (self.handover is None or self.start is None):
            missing = " and ".join(
                f"`{k}`" for k in ("handover", "start") if getattr(self, k) is None
            )
            fail(
                "invalid_rotation",
                f"a rotation of whole weeks needs {missing}",
                "add e.g. `handover: \"mon 08:00\"` and `start: 2026-01-05` (the date the first "
                "person's week starts)",
            )
        return self


# ---- escalation ladders


class EscalationStep(Model):
    """Send to ``to`` by ``channel``; nobody acknowledged after ``wait``: next step."""

    to: Recipients
    channel: Channel
    wait: Wait
    template: Name | None = None
    via: str | None = None  # as in `email:` / `sms:` actions


class DeadEnd(Model):
    """Who learns that every step went unanswered."""

    to: Recipients
    channel: Channel = "email"
    template: Name | None = None
    via: str | None = None


class EscalationLadder(Model):
    steps: Annotated[list[EscalationStep], Field(min_length=1)]
    dead_end: DeadEnd


# ---- rule conditions and actions

Scalar = bool | int | float | str | date


class IntakeMatch(BaseModel):
    """``intake`` condition on one field: one of ``values``, or ``present`` (non-empty) or not."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    values: tuple[Scalar, ...] | None = None
    present: bool | None = None


def _intake_match(value: Any) -> Any:
    if isinstance(value, IntakeMatch):
        return value
    if isinstance(value, dict):
        if set(value) != {"present"} or not isinstance(value["present"], bool):
            fail(
                "invalid_condition",
                "an intake condition is a value, a list of values, or {present: true|false}",
                "write e.g. `domaine: penal`, `domaine: [penal, famille]` or "
                "`adversaire: {present: true}`",
            )
        return IntakeMatch(present=value["present"])
    values = value if isinstance(value, list) else [value]
    if not values:
        fail("empty_condition", "an empty list matches nothing", "list at least one value")
    for item in values:
        if item is None or isinstance(item, (dict, list)):
            fail(
                "invalid_condition",
                f"{_plain_text(item)} is not a value to compare with",
                "write text, a number, true/false or a date; {present: true} tests that the "
                "field was filled",
            )
    return IntakeMatch(values=tuple(values))


def _plain_text(value: Any) -> str:
    return "nothing" if value is None else ("a mapping" if isinstance(value, dict) else "a list")


def _non_empty_dict(values: dict[str, Any] | None) -> dict[str, Any] | None:
    if values is not None and not values:
        fail(
            "empty_condition",
            "an empty mapping tests nothing",
            "add `field: value` lines, or remove the key",
        )
    return values


IntakeConditions = Annotated[
    dict[
        Annotated[str, AfterValidator(_field_name)],
        Annotated[IntakeMatch, BeforeValidator(_intake_match)],
    ]
    | None,
    AfterValidator(_non_empty_dict),
]


class MessageAction(Model):
    """``email:`` / ``sms:`` action: the message, rendered with ``template``, to ``to``.

    ``via`` names the email (or sms) connection to send through; by default the
    tenant's only one, else Relais's own sender.
    """

    to: Recipients
    template: Name | None = None
    via: str | None = None


class DigestAction(Model):
    """Collect messages and send one summary ``every`` period or ``at`` given times."""

    to: Recipients
    every: Every | None = None
    at: Annotated[list[Clock], BeforeValidator(_listify), Field(min_length=1)] | None = None
    channel: Channel = "email"
    template: Name | None = None
    via: str | None = None

    @model_validator(mode="after")
    def _one_schedule(self) -> DigestAction:
        if (self.every is None) == (self.at is None):
            fail(
                "invalid_digest",
                "a digest needs exactly one of `every` or `at`",
                "write `every: 30m`, or `at: [\"12:00\", \"18:00\"]`",
            )
        if self.at is not None:
            self.at = sorted(set(self.at))
        return self


ACTION_KINDS: tuple[str, ...] = (
    "connection", "webhook", "crm", "email", "sms", "digest", "escalate", "drop",
)  # fmt: skip
CONNECTION_KINDS: tuple[str, ...] = ("connection", "webhook", "crm")


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

    Each key has a matcher in mappings/rules.py (``MATCHERS``). ``window``: any of
    business_hours, after_hours or a name under ``windows``; ``holiday``: a public
    holiday (``holidays``) or a ``business_hours.closures`` date; ``known_contact``:
    the caller is in the CRM; ``staff``: the staff member asked for; ``intake``:
    ``field: value | [values] | {present: true|false}``.
    """

    call_types: Annotated[
        list[str] | None, BeforeValidator(_listify), AfterValidator(_non_empty)
    ] = None
    urgency: Annotated[
        list[Urgency] | None, BeforeValidator(_listify), AfterValidator(_non_empty)
    ] = None
    window: Annotated[
        list[Name] | None, BeforeValidator(_listify), AfterValidator(_non_empty)
    ] = None
    holiday: bool | None = None
    known_contact: bool | None = None
    staff: Annotated[
        list[str] | None, BeforeValidator(_listify), AfterValidator(_non_empty)
    ] = None
    intake: IntakeConditions = None

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in type(self).model_fields)


class Action(Model):
    """One thing to do with the message (exactly one key):

    ``connection: <name>`` (any connection), ``webhook: <name>`` (a webhook connection),
    ``crm: <name>`` (a connection with role crm), ``email: {to, template, via}``,
    ``sms: {to, template, via}``, ``digest: {to, every | at, channel, template, via}``,
    ``escalate: <ladder name>``, or ``drop: true`` (spam: no delivery at all).
    """

    connection: str | None = None
    webhook: str | None = None
    crm: str | None = None
    email: MessageAction | None = None
    sms: MessageAction | None = None
    digest: DigestAction | None = None
    escalate: Name | None = None
    drop: bool | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Action:
        if self.drop is False:
            fail("invalid_action", "`drop: false` does nothing", "remove it, or write `drop: true`")
        given = [k for k in ACTION_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            listed = given or list(ACTION_KINDS)
            names = ", ".join(f"`{k}`" for k in listed[:-1]) + f" or `{listed[-1]}`"
            fail(
                "invalid_action",
                f"an action needs exactly one of {names}",
                "write `- connection: <name>` to deliver, or `- drop: true` to discard spam"
                if set(given) <= {"connection", "drop"}
                else "write each action on its own `- ` line",
            )
        return self

    @property
    def kind(self) -> str:
        """Which key this action is: one of ``ACTION_KINDS``."""
        return next(k for k in ACTION_KINDS if getattr(self, k) is not None)

    @property
    def target_connection(self) -> str | None:
        """The connection named by ``connection``, ``webhook`` or ``crm``; else None."""
        return self.connection or self.webhook or self.crm

    def options(self) -> dict[str, Any]:
        """Extra options of a connection action (none yet)."""
        return self.model_dump(exclude=set(ACTION_KINDS), exclude_none=True)


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


# --------------------------------------------------------------------------- two-way sync

ConflictPolicy = Literal["calendar", "relais", "latest"]


class ConflictPolicies(Model):
    """Which side owns each appointment field when BOTH sides changed it since the last
    calendar pull (``sync.conflicts``). ``calendar``: the staff's calendar wins;
    ``relais``: Relais's value wins and is written back to the event; ``latest`` (the
    default, also for a field left out): the later modification wins, compared on the
    provider's clock (see ``sync.conflicts`` for how the two clocks are compared).
    ``start`` covers the end too (an appointment moves as a whole)."""

    start: ConflictPolicy | None = None
    subject: ConflictPolicy | None = None
    notes: ConflictPolicy | None = None


class SyncSettings(Model):
    """``sync:`` — two-way calendar sync settings of the tenant."""

    conflicts: Annotated[ConflictPolicies, BeforeValidator(_empty_dict)] = Field(
        default_factory=ConflictPolicies
    )


class CalendarChangeNotice(Model):
    """``notify_on_calendar_change:`` — who hears about an appointment the office moved
    or cancelled in its calendar (``sync.calendar_notices``), through Relais's own
    email/SMS sender unless ``via`` names a connection. ``template`` (optional) renders
    with ``message.subject``/``message.body`` holding the built-in notice and ``caller``
    the appointment's caller; sensitive tenants always get the built-in notice without
    the caller's name."""

    to: Recipients
    channel: Channel = "email"
    template: Name | None = None
    via: str | None = None


# --------------------------------------------------------------------------- retention

_PERIOD = re.compile(r"(\d+)\s*(d|w|y)")
_PERIOD_HINT = "write a period in days, weeks or years such as 90d, 12w or 1y"
_PERIOD_DAYS = {"d": 1, "w": 7, "y": 365}


def parse_period(value: Any) -> timedelta:
    """``"90d"``, ``"12w"``, ``"1y"`` (365 days) → timedelta; months are refused (unclear)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        fail("invalid_period", f"{value!r} is not a period", _PERIOD_HINT)
    if not isinstance(value, str):
        fail("invalid_period", f"{value!r} has no unit", f"write {value}d for days")
    text = value.strip().lower()
    if re.fullmatch(r"\d+\s*(m|mo|months?|mois)", text):
        fail("invalid_period", f"{value!r}: months have no fixed length",
             "write days instead: 180d for six months")
    found = _PERIOD.fullmatch(text)
    if not found:
        fail("invalid_period", f"{value!r} is not a period", _PERIOD_HINT)
    days = int(found.group(1)) * _PERIOD_DAYS[found.group(2)]
    if not 1 <= days <= 3650:
        fail("invalid_period", f"{value!r} is {'too short' if days < 1 else 'too long'}",
             "write a period from 1d to 10y")
    return timedelta(days=days)


Period = Annotated[timedelta, BeforeValidator(parse_period)]


class Retention(Model):
    """``retention:`` — how long Relais keeps what it holds (``sync.privacy.retention``).

    Defaults follow CNIL guidance (README, "Personal data"): ``bodies`` (what the call
    said: subject, body, intake answers) 180 days, like call recordings; ``messages``
    (the record, with the caller's identity, then anonymised) one year, like the
    documents analysing calls; ``call_events`` (delivery histories) 180 days and
    ``audit`` (the access log) one year, the CNIL's six months to one year for logs.
    """

    messages: Period = timedelta(days=365)
    bodies: Period = timedelta(days=180)
    call_events: Period = timedelta(days=180)
    audit: Period = timedelta(days=365)

    @model_validator(mode="after")
    def _bodies_within_messages(self) -> Retention:
        if self.bodies > self.messages:
            fail("invalid_period",
                 f"bodies ({self.bodies.days}d) outlive messages ({self.messages.days}d): "
                 "an anonymised message keeps no body",
                 f"write bodies: {self.messages.days}d or less")
        return self


class PrivacySettings(Model):
    """``privacy:`` — ``erase_in_crm: true``: ``relais privacy erase`` also deletes the
    person's records in the tenant's HubSpot and Salesforce connections (HubSpot's GDPR
    delete, Salesforce's delete of the Contact/Lead), through the outbox
    (``sync.privacy.crm_erase``)."""

    erase_in_crm: bool = False


# --------------------------------------------------------------------------- tenant


class ReportSchedule(Model):
    """``reports: {weekly: "mon 08:00", monthly: true, to: [...]}``: the indicators of
    the last week (sent at that day and time) and of the last month (sent on the
    1st at the weekly time, else 08:00), by email through Relais's own sender."""

    weekly: WeekTimeField | None = None
    monthly: bool = False
    to: Annotated[list[Email], Field(min_length=1)]


class TenantConfig(Model):
    """One tenant's whole configuration."""

    id: Slug
    name: Text
    timezone: ZoneName
    phone_region: Annotated[str, AfterValidator(_region)]
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$")] = "fr"
    sensitive: bool = False
    # The secretary's desk: the numbers that ring for this tenant (a screen-pop
    # ``/desk?called=`` finds the tenant by them), the greeting read when answering,
    # and standing instructions (per call type: ``call_types[].instructions``).
    forwarding_numbers: Annotated[list[ForwardingNumber], BeforeValidator(_listify),
                                  BeforeValidator(_empty_list)] = []
    greeting: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    instructions: Annotated[str, Field(min_length=1, max_length=4000)] | None = None
    business_hours: BusinessHours | None = None
    holidays: Holidays | None = None
    staff: Annotated[list[StaffMember], BeforeValidator(_empty_list)] = []
    call_types: Annotated[list[CallType], Field(min_length=1)]
    appointment_types: Annotated[list[AppointmentTypeSpec], BeforeValidator(_empty_list)] = []
    connections: Annotated[dict[ConnectionName, Connection], BeforeValidator(_empty_dict)] = {}
    rules: Annotated[RuleSet, BeforeValidator(_empty_dict)] = Field(default_factory=RuleSet)
    # The rule language (see mappings/rules.py): named windows, message templates,
    # on-call schedule, escalation ladders.
    windows: Annotated[dict[WindowName, WindowDays], BeforeValidator(_empty_dict)] = {}
    templates: Annotated[dict[Name, MessageTemplate], BeforeValidator(_empty_dict)] = {}
    on_call: OnCall | None = None
    escalations: Annotated[dict[Name, EscalationLadder], BeforeValidator(_empty_dict)] = {}
    # Two-way calendar sync (additive): conflict policies, and who is told when the
    # office moves or cancels an appointment in its calendar.
    sync: Annotated[SyncSettings, BeforeValidator(_empty_dict)] = Field(
        default_factory=SyncSettings
    )
    notify_on_calendar_change: CalendarChangeNotice | None = None
    reports: ReportSchedule | None = None
    retention: Annotated[Retention, BeforeValidator(_empty_dict)] = Field(
        default_factory=Retention
    )
    # ``sms``: a signed link of a sensitive notice shows the message only after a
    # one-time code sent by SMS to the recipient's phone on file (sync.privacy.links).
    link_second_factor: Literal["none", "sms"] = "none"
    privacy: Annotated[PrivacySettings, BeforeValidator(_empty_dict)] = Field(
        default_factory=PrivacySettings
    )

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

    def appointment_type(self, type_id: str) -> AppointmentTypeSpec | None:
        return next((t for t in self.appointment_types if t.id == type_id), None)

    def bookable_staff(self, appointment_type: AppointmentTypeSpec) -> list[StaffMember]:
        """Who can take ``appointment_type``: its ``staff`` list, else everyone with a calendar."""
        if appointment_type.staff is None:
            return [s for s in self.staff if s.calendar is not None]
        members = (self.staff_member(staff_id) for staff_id in appointment_type.staff)
        return [m for m in members if m is not None]

    def working_hours(self, member: StaffMember) -> BusinessHours | None:
        """The staff member's bookable hours: their own, else the tenant's business hours."""
        return member.working_hours if member.working_hours is not None else self.business_hours

    def connection(self, name: str) -> AnyConnection | None:
        return self.connections.get(name)

    def is_sensitive(self, call_type_id: str) -> bool:
        """The call type's ``sensitive`` override, else the tenant's setting."""
        found = self.call_type(call_type_id)
        if found is not None and found.sensitive is not None:
            return found.sensitive
        return self.sensitive
