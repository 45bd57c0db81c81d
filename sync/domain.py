"""Domain records exchanged with the API and the engine (pydantic).

Phone numbers are normalised to E.164 with the tenant's default region, which
is passed as validation context: ``CallMessage.model_validate(data,
context={"region": "FR"})``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mappings.schema import normalize_phone

# Instants Relais accepts: wide enough for any call or appointment, narrow
# enough that converting between zones never leaves datetime's range (year 1
# at +14:00 has no UTC equivalent).
FIRST_YEAR, LAST_YEAR = 1971, 2199


def check_instant(value: datetime) -> datetime:
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"must lie between the years {FIRST_YEAR} and {LAST_YEAR}")
    return value


Instant = Annotated[AwareDatetime, AfterValidator(check_instant)]


class Urgency(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"


def _region(info: ValidationInfo) -> str | None:
    ctx = info.context or {}
    return ctx.get("region")


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Caller(Record):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    phone: str | None = None
    email: EmailStr | None = None
    company: Annotated[str | None, Field(max_length=200)] = None

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        return normalize_phone(value, _region(info)) if value else None

    @model_validator(mode="after")
    def _reachable(self) -> Caller:
        if not self.phone and not self.email:
            raise ValueError("a caller needs a phone or an email so someone can call back")
        return self


class CallMessage(Record):
    """A qualified call, as a secretary or the telephony system submits it."""

    call_type: Annotated[str, Field(min_length=1, max_length=64)]
    urgency: Urgency | None = None  # None: the call type's default
    caller: Caller
    subject: Annotated[str, Field(min_length=1, max_length=300)]
    body: Annotated[str, Field(max_length=20_000)] = ""
    taken_by: Annotated[str, Field(min_length=1, max_length=200)]
    taken_at: Instant
    staff_id: Annotated[str | None, Field(max_length=64)] = None
    callback_requested: bool = False
    intake: dict[str, Any] = Field(default_factory=dict)
    # The telephony's id of the call this message qualifies (POST /v1/calls):
    # the qualification rate counts exactly the calls that have one.
    call_id: Annotated[str | None, Field(min_length=1, max_length=200)] = None


class AppointmentRequest(Record):
    staff_id: Annotated[str, Field(min_length=1, max_length=64)]
    start: Instant
    end: Instant
    caller: Caller
    subject: Annotated[str, Field(min_length=1, max_length=300)]
    notes: Annotated[str, Field(max_length=5000)] = ""

    @model_validator(mode="after")
    def _ordered(self) -> AppointmentRequest:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


def as_utc_iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
