"""Typed, frozen inputs and outputs of the availability engine.

Everything here is validated on construction so the engine itself never sees a
naive datetime, an unknown zone or a negative duration.  Wall-clock values
(``time`` objects in :class:`TimeRange`, ``date`` keys of overrides and
closures) are interpreted in the staff member's IANA zone; instants
(``datetime``) must be timezone-aware.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ZERO = timedelta(0)
MAX_WINDOW = timedelta(days=400)
"""Longest query window the engine accepts (protects the process, not a business rule)."""

Align = Literal["range", "clock"]

_WEEKDAYS = {
    "mon": 0, "monday": 0, "tue": 1, "tuesday": 1, "wed": 2, "wednesday": 2,
    "thu": 3, "thursday": 3, "fri": 4, "friday": 4, "sat": 5, "saturday": 5,
    "sun": 6, "sunday": 6,
}  # fmt: skip


# --------------------------------------------------------------------------- helpers


def require_aware(value: object, name: str) -> datetime:
    """Return ``value`` if it is an aware datetime; raise naming ``name`` otherwise."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive datetime {value.isoformat()}")
    return value


def utc(value: datetime) -> datetime:
    """The same instant in UTC.

    Compare and subtract instants in UTC: Python compares and subtracts two
    datetimes sharing a tzinfo as *wall* times, ignoring ``fold``, which is
    wrong across a DST transition.
    """
    return value.astimezone(UTC)


def load_zone(key: object, name: str) -> ZoneInfo:
    """Load an IANA zone, turning every failure into a ``ValueError`` naming ``name``."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"{name} must be an IANA time zone name, got {key!r}")
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError) as exc:
        raise ValueError(f"{name}: unknown IANA time zone {key!r}") from exc


def _require_duration(value: object, name: str, *, positive: bool = False) -> timedelta:
    if not isinstance(value, timedelta):
        raise TypeError(f"{name} must be a timedelta, got {type(value).__name__}")
    if value < ZERO or (positive and value == ZERO):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value}")
    return value


def _parse_time(text: str) -> time:
    text = text.strip()
    if text in ("24:00", "24:00:00"):
        return time(0)
    if len(text.split(":")[0]) == 1:
        text = "0" + text
    return time.fromisoformat(text)


# --------------------------------------------------------------------------- schedule


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A wall-clock working range ``[start, end)`` of one local date.

    ``end <= start`` means the range crosses midnight and ends on the next
    local date: ``22:00–06:00`` is 22:00 that day to 06:00 the next day,
    ``18:00–00:00`` ends at midnight, and ``00:00–00:00`` is the whole day.
    """

    start: time
    end: time

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, time):
                raise TypeError(f"TimeRange.{name} must be a datetime.time, got {value!r}")
            if value.tzinfo is not None:
                raise ValueError(
                    f"TimeRange.{name} is a wall-clock time and must not carry tzinfo "
                    "(the staff member's zone applies)"
                )
            if value.fold:
                object.__setattr__(self, name, value.replace(fold=0))

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    @classmethod
    def parse(cls, text: str) -> TimeRange:
        """``"09:00-12:30"``, ``"22:00-06:00"`` (crosses midnight), ``"18:00-24:00"``."""
        try:
            start, end = text.replace("–", "-").split("-")
            return cls(_parse_time(start), _parse_time(end))
        except (ValueError, AttributeError) as exc:
            raise ValueError(f"invalid time range {text!r}; expected 'HH:MM-HH:MM'") from exc

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def _ranges(value: object, name: str) -> tuple[TimeRange, ...]:
    if isinstance(value, TimeRange | str):
        value = (value,)
    if not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a sequence of TimeRange, got {value!r}")
    out = []
    for item in value:
        if isinstance(item, str):
            item = TimeRange.parse(item)
        if not isinstance(item, TimeRange):
            raise TypeError(f"{name} must contain TimeRange values, got {item!r}")
        out.append(item)
    return tuple(out)


@lru_cache(maxsize=512)
def _holiday_dates(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    import holidays  # local import: the package is big and only needed with a country

    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year).keys())


@dataclass(frozen=True)
class HolidayRules:
    """Tenant-wide closed days: public holidays (``holidays`` package) plus own closures.

    ``country`` is an ISO 3166-1 alpha-2 code understood by the ``holidays``
    package (``"FR"``), ``subdivision`` one of its subdivisions (``"NY"`` for
    the US, ``"Zone A"`` or ``"971"`` for France).  Dates are local calendar
    dates in the staff member's zone.
    """

    country: str | None = None
    subdivision: str | None = None
    closures: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        closures = frozenset(self.closures)
        for d in closures:
            if not isinstance(d, date) or isinstance(d, datetime):
                raise TypeError(f"HolidayRules.closures must contain dates, got {d!r}")
        object.__setattr__(self, "closures", closures)
        if self.country is None:
            if self.subdivision is not None:
                raise ValueError("HolidayRules.subdivision needs a country")
            return
        try:
            _holiday_dates(self.country, self.subdivision, 2000)
        except (NotImplementedError, KeyError, ValueError) as exc:
            raise ValueError(
                f"HolidayRules: unsupported country/subdivision "
                f"{self.country!r}/{self.subdivision!r}: {exc}"
            ) from exc

    def is_public_holiday(self, day: date) -> bool:
        if self.country is None:
            return False
        return day in _holiday_dates(self.country, self.subdivision, day.year)


def _weekday_key(key: object) -> int:
    if isinstance(key, bool):
        raise TypeError(f"invalid weekday {key!r}")
    if isinstance(key, int) and 0 <= key <= 6:
        return key
    if isinstance(key, str) and key.strip().lower() in _WEEKDAYS:
        return _WEEKDAYS[key.strip().lower()]
    raise ValueError(f"invalid weekday {key!r}; use 0=Monday..6=Sunday or 'mon'..'sun'")


@dataclass(frozen=True)
class StaffSchedule:
    """Working hours of one staff member, all wall-clock values in ``timezone``.

    * ``weekly``: weekday (0 = Monday … 6 = Sunday, or ``"mon"``…) → ranges;
      several per day, a range may cross midnight (see :class:`TimeRange`).
    * ``overrides``: local date → ranges replacing that date's hours; an empty
      sequence closes the date.
    * ``holidays``: the tenant's public holidays and closure dates.

    Precedence for one local date: tenant closure > staff override >
    public holiday > weekly hours.  A closed date, and a date with an
    override, is a whole local calendar day: a previous day's range crossing
    midnight is cut at the start of that day.
    """

    timezone: str
    weekly: Mapping[Any, Any] = field(default_factory=dict)
    overrides: Mapping[date, Any] = field(default_factory=dict)
    holidays: HolidayRules = field(default_factory=HolidayRules)
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", load_zone(self.timezone, "StaffSchedule.timezone"))
        weekly: dict[int, tuple[TimeRange, ...]] = {}
        for key, value in dict(self.weekly).items():
            day = _weekday_key(key)
            weekly[day] = weekly.get(day, ()) + _ranges(value, f"weekly[{key!r}]")
        object.__setattr__(self, "weekly", MappingProxyType(weekly))
        overrides: dict[date, tuple[TimeRange, ...]] = {}
        for key, value in dict(self.overrides).items():
            if not isinstance(key, date) or isinstance(key, datetime):
                raise TypeError(f"overrides keys must be dates, got {key!r}")
            overrides[key] = _ranges(value if value is not None else (), f"overrides[{key}]")
        object.__setattr__(self, "overrides", MappingProxyType(overrides))
        if not isinstance(self.holidays, HolidayRules):
            raise TypeError("StaffSchedule.holidays must be a HolidayRules")

    def ranges_for(self, day: date) -> tuple[bool, tuple[TimeRange, ...]]:
        """``(whole_day_rule, ranges)`` for a local date.

        ``whole_day_rule`` is true when the date is closed or overridden, i.e.
        when nothing from the previous day may spill into it.
        """
        if day in self.holidays.closures:
            return True, ()
        if day in self.overrides:
            return True, self.overrides[day]
        if self.holidays.is_public_holiday(day):
            return True, ()
        return False, self.weekly.get(day.weekday(), ())


# --------------------------------------------------------------------------- busy state


class BusyKind(enum.StrEnum):
    EXTERNAL = "external"
    """Any event of the staff member's calendar (not counted toward the daily limit)."""
    OWN = "own"
    """An appointment booked through Relais (counted toward the daily limit)."""


@dataclass(frozen=True, slots=True)
class BusyInterval:
    """A busy period ``[start, end)``.

    ``buffer_before``/``buffer_after`` are the existing event's *own* buffers
    (e.g. an own booking made with an appointment type that has buffers); they
    default to zero, i.e. buffers of existing events are not applied unless the
    caller supplies them.  The candidate appointment type's buffers are always
    applied around every candidate slot.
    """

    start: datetime
    end: datetime
    kind: BusyKind = BusyKind.EXTERNAL
    buffer_before: timedelta = ZERO
    buffer_after: timedelta = ZERO

    def __post_init__(self) -> None:
        require_aware(self.start, "BusyInterval.start")
        require_aware(self.end, "BusyInterval.end")
        if utc(self.end) < utc(self.start):
            raise ValueError(f"BusyInterval.end {self.end} is before start {self.start}")
        object.__setattr__(self, "kind", BusyKind(self.kind))
        _require_duration(self.buffer_before, "BusyInterval.buffer_before")
        _require_duration(self.buffer_after, "BusyInterval.buffer_after")

    @classmethod
    def external(cls, start: datetime, end: datetime) -> BusyInterval:
        """An EXTERNAL interval without buffers, as ``cls(start, end)`` builds it.

        A warm availability query turns thousands of calendar blocks (aware UTC
        datetimes) into intervals: for UTC bounds in order, the checks of
        ``__post_init__`` cannot fail and are skipped (about 3x cheaper); any
        other input goes through them.
        """
        if start.tzinfo is not UTC or end.tzinfo is not UTC or end < start:
            return cls(start, end, BusyKind.EXTERNAL)
        interval = object.__new__(cls)
        put = object.__setattr__  # frozen: the way __init__ itself sets fields
        put(interval, "start", start)
        put(interval, "end", end)
        put(interval, "kind", BusyKind.EXTERNAL)
        put(interval, "buffer_before", ZERO)
        put(interval, "buffer_after", ZERO)
        return interval


@dataclass(frozen=True)
class StaffCalendar:
    """One staff member as the engine sees it: schedule plus busy state.

    ``unknown_reason`` set means the busy state could not be read (calendar
    error, expired token …): the staff member gets no slot and is reported as
    unavailable with that reason.  Never treat an unknown state as free.
    """

    staff_id: str
    schedule: StaffSchedule
    busy: Sequence[BusyInterval] = ()
    unknown_reason: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.staff_id, str) or not self.staff_id:
            raise ValueError(
                f"StaffCalendar.staff_id must be a non-empty str, got {self.staff_id!r}"
            )
        if not isinstance(self.schedule, StaffSchedule):
            raise TypeError("StaffCalendar.schedule must be a StaffSchedule")
        busy = tuple(self.busy)
        for item in busy:
            if not isinstance(item, BusyInterval):
                raise TypeError(f"StaffCalendar.busy must contain BusyInterval, got {item!r}")
        object.__setattr__(self, "busy", busy)
        if self.unknown_reason is not None and not str(self.unknown_reason).strip():
            object.__setattr__(self, "unknown_reason", "busy state unknown")

    @classmethod
    def unknown(cls, staff_id: str, schedule: StaffSchedule, reason: str) -> StaffCalendar:
        return cls(staff_id, schedule, (), reason or "busy state unknown")

    @property
    def busy_known(self) -> bool:
        return self.unknown_reason is None


# --------------------------------------------------------------------------- appointment type


@dataclass(frozen=True)
class AppointmentType:
    """What is being booked.

    * ``duration``: length of the appointment.
    * ``buffer_before``/``buffer_after``: free time required around a slot;
      ``[start - buffer_before, end + buffer_after)`` must not overlap busy
      time.  Buffers need not lie inside working hours.
    * ``minimum_notice``: a slot starts at or after ``now + minimum_notice``.
    * ``booking_horizon_days``: a slot starts before the end of the local
      date ``today + booking_horizon_days`` (staff zone); ``0`` = today only,
      ``None`` = unlimited.
    * ``interval``: step between slot starts (default: ``duration``).
    * ``align``: ``"range"`` — starts at ``range start + k × interval`` for
      each continuous working range (absolute time, so DST-safe);
      ``"clock"`` — starts where the staff member's wall clock shows a
      multiple of ``interval`` counted from local midnight (:00/:30 for 30
      minutes), consecutive starts never closer than ``interval`` (see
      :func:`~sync.availability.date_ranges.clock_grid`).
    * ``daily_limit``: max own bookings per staff member per local date
      (staff zone), existing own bookings included; ``None`` = unlimited.
    """

    duration: timedelta
    buffer_before: timedelta = ZERO
    buffer_after: timedelta = ZERO
    minimum_notice: timedelta = ZERO
    booking_horizon_days: int | None = None
    interval: timedelta | None = None
    align: Align = "range"
    daily_limit: int | None = None

    def __post_init__(self) -> None:
        _require_duration(self.duration, "AppointmentType.duration", positive=True)
        _require_duration(self.buffer_before, "AppointmentType.buffer_before")
        _require_duration(self.buffer_after, "AppointmentType.buffer_after")
        _require_duration(self.minimum_notice, "AppointmentType.minimum_notice")
        if self.interval is not None:
            _require_duration(self.interval, "AppointmentType.interval", positive=True)
        if self.align not in ("range", "clock"):
            raise ValueError(
                f"AppointmentType.align must be 'range' or 'clock', got {self.align!r}"
            )
        for name in ("booking_horizon_days", "daily_limit"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ValueError(
                    f"AppointmentType.{name} must be an int >= 0 or None, got {value!r}"
                )

    @property
    def step(self) -> timedelta:
        return self.interval if self.interval is not None else self.duration


# --------------------------------------------------------------------------- query and results


@dataclass(frozen=True)
class AvailabilityQuery:
    """Slots whose *start* lies in ``[start, end)``; ``now`` is injected.

    ``timezone`` is the caller's zone: returned datetimes are rendered in it.
    """

    start: datetime
    end: datetime
    now: datetime
    timezone: str = "UTC"
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        require_aware(self.start, "start")
        require_aware(self.end, "end")
        require_aware(self.now, "now")
        if utc(self.end) < utc(self.start):
            raise ValueError(
                f"end ({self.end.isoformat()}) is before start ({self.start.isoformat()})"
            )
        if utc(self.end) - utc(self.start) > MAX_WINDOW:
            raise ValueError(f"query window longer than {MAX_WINDOW.days} days")
        object.__setattr__(self, "zone", load_zone(self.timezone, "timezone"))


@dataclass(frozen=True, slots=True)
class FairnessStats:
    """Round-robin input for one staff member over the caller's lookback period."""

    bookings: int
    last_booking: datetime | None = None

    def __post_init__(self) -> None:
        if isinstance(self.bookings, bool) or not isinstance(self.bookings, int):
            raise TypeError("FairnessStats.bookings must be an int")
        if self.last_booking is not None:
            require_aware(self.last_booking, "FairnessStats.last_booking")


@dataclass(frozen=True, slots=True)
class Slot:
    """A bookable slot, rendered in the caller's zone.

    In any-staff mode ``staff_id`` is the fairest available staff member and
    ``alternatives`` the other available ones, fairest first (fallbacks for the
    booking module if the live re-check fails for ``staff_id``).

    ``start``/``end`` share the caller's tzinfo, so Python compares and
    subtracts them as wall times (two slots at 01:30 on a fall-back night
    compare equal): use ``start_utc``/``end_utc`` for instants.
    """

    start: datetime
    end: datetime
    staff_id: str
    alternatives: tuple[str, ...] = ()

    @property
    def start_utc(self) -> datetime:
        return utc(self.start)

    @property
    def end_utc(self) -> datetime:
        return utc(self.end)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "staff_id": self.staff_id,
        }
        if self.alternatives:
            out["alternatives"] = list(self.alternatives)
        return out


@dataclass(frozen=True, slots=True)
class StaffUnavailable:
    """A staff member for whom no slot could be computed, with a stable code."""

    staff_id: str
    code: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"staff_id": self.staff_id, "code": self.code, "reason": self.reason}


@dataclass(frozen=True)
class AvailabilityResult:
    """Slots sorted by ``(start, staff_id)`` plus staff whose state is unknown."""

    slots: tuple[Slot, ...]
    unavailable: tuple[StaffUnavailable, ...] = ()

    def for_staff(self, staff_id: str) -> tuple[Slot, ...]:
        return tuple(s for s in self.slots if s.staff_id == staff_id)

    def by_staff(self) -> dict[str, tuple[Slot, ...]]:
        out: dict[str, list[Slot]] = {}
        for s in self.slots:
            out.setdefault(s.staff_id, []).append(s)
        return {k: tuple(v) for k, v in out.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "slots": [s.to_dict() for s in self.slots],
            "unavailable": [u.to_dict() for u in self.unavailable],
        }


@dataclass(frozen=True, slots=True)
class SlotCheck:
    """Answer of :func:`check_slot`; ``code`` is ``None`` when available.

    Codes: ``calendar_unknown``, ``invalid_window``, ``minimum_notice``,
    ``booking_horizon``, ``outside_working_hours``, ``not_aligned``, ``busy``,
    ``daily_limit``.
    """

    available: bool
    code: str | None = None
    reason: str = ""
