"""The hub's one clock: every part of Relais that asks "what time is it?" asks here.

Invariants:

* :func:`now` is always an aware UTC datetime.
* The clock in use is chosen once per process from ``RELAIS_CLOCK_OFFSET``
  (seconds, may be negative or fractional; ``relais demo --at`` sets it for the
  API, worker and beat it starts), and can be replaced in-process with
  :func:`install` / :func:`using` (tests). Nobody patches module attributes.
* An :class:`OffsetClock` keeps ticking: it is the machine's time shifted, so
  leases, backoffs and waits elapse as they would at the real time. A
  :class:`FixedClock` stands still until moved (tests that need an exact now).

Only the hub's notion of time is shifted: what goes on the wire to a provider
(signature timestamps, JWT expiry) keeps the machine's time, because the other
side checks it against its own clock.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol

ENV_OFFSET = "RELAIS_CLOCK_OFFSET"


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, aware UTC."""
        ...


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"the clock needs an aware datetime, got {at.isoformat()}")
    return at.astimezone(UTC)


class SystemClock:
    """The machine's time (the default)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class OffsetClock:
    """The machine's time plus a fixed offset: stands at a chosen instant and keeps ticking."""

    def __init__(self, offset: timedelta = timedelta()) -> None:
        self.offset = offset

    @classmethod
    def starting_at(cls, at: datetime) -> OffsetClock:
        return cls(_aware(at) - datetime.now(UTC))

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class FixedClock:
    """A clock that stands still at ``at`` until :meth:`set` or :meth:`advance` moves it."""

    def __init__(self, at: datetime) -> None:
        self._at = _aware(at)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        self._at = _aware(at)

    def advance(self, by: timedelta) -> None:
        self._at += by


def from_environment(environ: os._Environ[str] | dict[str, str] = os.environ) -> Clock:
    """``OffsetClock`` when ``RELAIS_CLOCK_OFFSET`` is set, else the system clock."""
    raw = environ.get(ENV_OFFSET, "").strip()
    if not raw:
        return SystemClock()
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{ENV_OFFSET} must be a number of seconds, got {raw!r}") from None
    return OffsetClock(timedelta(seconds=seconds))


_current: Clock = from_environment()


def now() -> datetime:
    """The hub's current instant (aware UTC)."""
    return _current.now()


def machine_now() -> datetime:
    """The machine's time, which providers share: for instants a provider set or checks
    (channel and subscription expiry, rate-limit resets), never for business rules."""
    return datetime.now(UTC)


def to_machine(at: datetime) -> datetime:
    """An instant read on the hub's clock, as the machine's clock read it (to compare it
    with a provider's instant, e.g. the calendar's last-modified stamp)."""
    return _aware(at) - (now() - machine_now())


def from_machine(at: datetime) -> datetime:
    """A provider's instant (on the machine's clock, e.g. a rate-limit reset) on the hub's
    clock, to store and compare it with the hub's now."""
    return _aware(at) + (now() - machine_now())


def current() -> Clock:
    return _current


def install(clock: Clock) -> Clock:
    """Make ``clock`` the process's clock; returns the previous one (to restore it)."""
    global _current
    previous, _current = _current, clock
    return previous


@contextmanager
def using(clock: Clock) -> Iterator[Clock]:
    """``with using(FixedClock(t)):`` — the hub reads ``t`` inside the block."""
    previous = install(clock)
    try:
        yield clock
    finally:
        install(previous)


def offset_for(at: datetime) -> float:
    """Seconds to put in ``RELAIS_CLOCK_OFFSET`` so the hub's now is ``at`` at this instant."""
    return (_aware(at) - datetime.now(UTC)).total_seconds()
