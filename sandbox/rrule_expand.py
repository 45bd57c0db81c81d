"""Recurrence expansion for the calendar emulators.

Two inputs, one engine (``dateutil.rrule``, always on *naive wall time* in the
event's zone so that a weekly 13:00 America/New_York meeting stays at 13:00
across DST changes, as Google and Outlook do):

* RFC 5545 lines as Google stores them in ``recurrence``: ``RRULE:``,
  ``EXRULE:``, ``RDATE`` and ``EXDATE`` (``TZID=``, ``VALUE=DATE`` and UTC
  ``Z`` forms; floating values are wall time in the event's zone).
* Graph ``patternedRecurrence`` (daily, weekly, absolute/relative monthly and
  yearly; endDate, noEnd, numbered ranges).

``Occurrences.between(start, end)`` yields the naive local start of every
occurrence whose ``[start, start + duration)`` overlaps the aware window.
A DTSTART that does not match its rule is not added as an extra occurrence
(RFC 5545 leaves that case undefined).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from dateutil import rrule as du

from sandbox.calendar_common import UnknownTimeZone, localize, resolve_tz

__all__ = ["Occurrences", "RecurrenceError", "from_graph_pattern", "from_rfc5545"]

MAX_OCCURRENCES = 20_000


class RecurrenceError(ValueError):
    pass


@dataclass
class Occurrences:
    rules: du.rruleset
    tz: tzinfo
    duration: timedelta
    all_day: bool
    excluded_dates: frozenset[date] = frozenset()

    def between(self, start: datetime, end: datetime) -> list[datetime]:
        """Naive local starts of the occurrences overlapping ``[start, end)`` (aware)."""
        margin = timedelta(days=2)
        lo = (start - self.duration).astimezone(self.tz).replace(tzinfo=None) - margin
        hi = end.astimezone(self.tz).replace(tzinfo=None) + margin
        out: list[datetime] = []
        for occ in self.rules.between(lo, hi, inc=True):
            if occ.date() in self.excluded_dates:
                continue
            begin = localize(occ, self.tz)
            if begin < end and begin + self.duration > start:
                out.append(occ)
            if len(out) >= MAX_OCCURRENCES:
                break
        return out

    def first(self) -> datetime | None:
        for occ in self.rules:
            if occ.date() not in self.excluded_dates:
                return occ
        return None

    def last(self, limit: int = MAX_OCCURRENCES) -> datetime | None:
        """Last occurrence of a bounded rule set; None when unbounded (or huge)."""
        for rule in self.rules._rrule:
            if rule._count is None and rule._until is None:
                return None
        last = None
        for n, occ in enumerate(self.rules):
            if n >= limit:
                return None
            if occ.date() not in self.excluded_dates:
                last = occ
        return last


# --------------------------------------------------------------- RFC 5545

_PROP = re.compile(r"^(?P<name>[A-Za-z-]+)(?P<params>(;[^:]*)?):(?P<value>.*)$", re.S)


def _params(raw: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in raw.split(";"):
        if "=" in part:
            key, _, value = part.partition("=")
            out[key.strip().upper()] = value.strip().strip('"')
    return out


def _parse_value(value: str, params: dict[str, str], tz: tzinfo) -> datetime | date:
    """An RDATE/EXDATE value -> naive wall time in ``tz`` (or a date)."""
    value = value.strip()
    if params.get("VALUE", "").upper() == "DATE" or re.fullmatch(r"\d{8}", value):
        return datetime.strptime(value[:8], "%Y%m%d").date()  # noqa: DTZ007 - a date only
    utc = value.endswith("Z")
    naive = datetime.strptime(value.rstrip("Z")[:15], "%Y%m%dT%H%M%S")  # noqa: DTZ007
    if utc:
        return naive.replace(tzinfo=UTC).astimezone(tz).replace(tzinfo=None)
    if "TZID" in params:
        try:
            src = resolve_tz(params["TZID"])
        except UnknownTimeZone as exc:
            raise RecurrenceError(f"unknown TZID {params['TZID']!r}") from exc
        return localize(naive, src).astimezone(tz).replace(tzinfo=None)
    return naive


def _rewrite_until(rule: str, tz: tzinfo, all_day: bool) -> str:
    """UNTIL must be comparable with the naive DTSTART: convert it to local wall time."""

    def repl(match: re.Match[str]) -> str:
        raw = match.group(1)
        if re.fullmatch(r"\d{8}", raw):
            day = datetime.strptime(raw, "%Y%m%d")  # noqa: DTZ007 - a date only
            local = day if all_day else day.replace(hour=23, minute=59, second=59)
        elif raw.endswith("Z"):
            utc = datetime.strptime(raw[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
            local = utc.astimezone(tz).replace(tzinfo=None)
        else:
            local = datetime.strptime(raw[:15], "%Y%m%dT%H%M%S")  # noqa: DTZ007 - wall time
        return "UNTIL=" + local.strftime("%Y%m%dT%H%M%S")

    return re.sub(r"UNTIL=([0-9TZ]+)", repl, rule, flags=re.I)


def from_rfc5545(lines: Iterable[str], dtstart: datetime, tz: tzinfo, duration: timedelta,
                 *, all_day: bool = False) -> Occurrences:
    """``recurrence`` lines + naive local DTSTART -> :class:`Occurrences`."""
    rset = du.rruleset()
    excluded_dates: set[date] = set()
    seen_rule = False
    for raw in lines:
        if not isinstance(raw, str):
            raise RecurrenceError("recurrence lines must be strings")
        match = _PROP.match(raw.strip())
        if not match:
            raise RecurrenceError(f"invalid recurrence line {raw!r}")
        name = match.group("name").upper()
        params = _params(match.group("params") or "")
        value = match.group("value")
        try:
            if name in ("RRULE", "EXRULE"):
                text = _rewrite_until(value, tz, all_day)
                rule = du.rrulestr(text, dtstart=dtstart)
                if not isinstance(rule, du.rrule):
                    raise RecurrenceError(f"unsupported rule {raw!r}")
                if name == "RRULE":
                    rset.rrule(rule)
                    seen_rule = True
                else:
                    rset.exrule(rule)
            elif name in ("RDATE", "EXDATE"):
                for item in value.split(","):
                    parsed = _parse_value(item, params, tz)
                    if isinstance(parsed, datetime):
                        (rset.rdate if name == "RDATE" else rset.exdate)(parsed)
                    elif name == "RDATE":
                        rset.rdate(datetime.combine(parsed, dtstart.time()))
                        seen_rule = True
                    elif all_day:
                        rset.exdate(datetime.combine(parsed, time()))
                    else:
                        excluded_dates.add(parsed)
                if name == "RDATE":
                    seen_rule = True
            else:
                raise RecurrenceError(f"unsupported recurrence property {name}")
        except (ValueError, TypeError) as exc:
            if isinstance(exc, RecurrenceError):
                raise
            raise RecurrenceError(f"invalid recurrence line {raw!r}: {exc}") from exc
    if not seen_rule:
        raise RecurrenceError("recurrence without RRULE or RDATE")
    return Occurrences(rset, tz, duration, all_day, frozenset(excluded_dates))


# ------------------------------------------------------------------ Graph

_DAYS = {"monday": du.MO, "tuesday": du.TU, "wednesday": du.WE, "thursday": du.TH,
         "friday": du.FR, "saturday": du.SA, "sunday": du.SU}
_INDEX = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}


def _days(pattern: dict[str, Any]) -> list[Any]:
    names = pattern.get("daysOfWeek") or []
    try:
        return [_DAYS[str(n).lower()] for n in names]
    except KeyError as exc:
        raise RecurrenceError(f"invalid daysOfWeek {names!r}") from exc


def from_graph_pattern(recurrence: dict[str, Any], start_local: datetime, tz: tzinfo,
                       duration: timedelta, *, all_day: bool = False) -> Occurrences:
    """Graph ``patternedRecurrence`` + the event's naive local start -> occurrences."""
    if not isinstance(recurrence, dict):
        raise RecurrenceError("recurrence must be an object")
    pattern = recurrence.get("pattern") or {}
    rng = recurrence.get("range") or {}
    ptype = str(pattern.get("type") or "").strip()
    interval = int(pattern.get("interval") or 1)
    if interval < 1:
        raise RecurrenceError("interval must be >= 1")
    kwargs: dict[str, Any] = {"interval": interval}
    wkst = str(pattern.get("firstDayOfWeek") or "sunday").lower()
    kwargs["wkst"] = _DAYS.get(wkst, du.SU)
    index = _INDEX.get(str(pattern.get("index") or "first").lower(), 1)
    if ptype == "daily":
        freq = du.DAILY
    elif ptype == "weekly":
        freq = du.WEEKLY
        days = _days(pattern)
        if not days:
            raise RecurrenceError("weekly pattern needs daysOfWeek")
        kwargs["byweekday"] = days
    elif ptype == "absoluteMonthly":
        freq = du.MONTHLY
        kwargs["bymonthday"] = int(pattern.get("dayOfMonth") or 0) or None
        if not kwargs["bymonthday"]:
            raise RecurrenceError("absoluteMonthly pattern needs dayOfMonth")
    elif ptype == "relativeMonthly":
        freq = du.MONTHLY
        kwargs["byweekday"] = _days(pattern)
        kwargs["bysetpos"] = index
    elif ptype == "absoluteYearly":
        freq = du.YEARLY
        kwargs["bymonth"] = int(pattern.get("month") or 0) or None
        kwargs["bymonthday"] = int(pattern.get("dayOfMonth") or 0) or None
        if not kwargs["bymonth"] or not kwargs["bymonthday"]:
            raise RecurrenceError("absoluteYearly pattern needs month and dayOfMonth")
    elif ptype == "relativeYearly":
        freq = du.YEARLY
        kwargs["bymonth"] = int(pattern.get("month") or 0) or None
        kwargs["byweekday"] = _days(pattern)
        kwargs["bysetpos"] = index
    else:
        raise RecurrenceError(f"unsupported pattern type {ptype!r}")
    try:
        first_day = date.fromisoformat(str(rng.get("startDate") or start_local.date()))
    except ValueError as exc:
        raise RecurrenceError("invalid range.startDate") from exc
    dtstart = datetime.combine(first_day, start_local.time())
    rtype = str(rng.get("type") or "noEnd")
    if rtype == "endDate":
        try:
            end_day = date.fromisoformat(str(rng.get("endDate")))
        except ValueError as exc:
            raise RecurrenceError("invalid range.endDate") from exc
        kwargs["until"] = datetime.combine(end_day, time(23, 59, 59))
    elif rtype == "numbered":
        count = int(rng.get("numberOfOccurrences") or 0)
        if count < 1:
            raise RecurrenceError("numbered range needs numberOfOccurrences >= 1")
        kwargs["count"] = count
    elif rtype != "noEnd":
        raise RecurrenceError(f"unsupported range type {rtype!r}")
    rtz = rng.get("recurrenceTimeZone")
    if rtz:
        try:
            tz = resolve_tz(rtz)
        except UnknownTimeZone as exc:
            raise RecurrenceError(f"unknown recurrenceTimeZone {rtz!r}") from exc
    rset = du.rruleset()
    rset.rrule(du.rrule(freq, dtstart=dtstart, **kwargs))
    return Occurrences(rset, tz, duration, all_day)
