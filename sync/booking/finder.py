"""Availability: the tenant's configuration and the live calendars turned into
free slots (:func:`find_availability`).

Working hours, overrides, holidays, buffers and notice come from the tenant's
YAML (:mod:`sync.booking.adapters`); busy time from the calendars (one provider
call per connection per chunk, cached briefly: :mod:`sync.busy`) plus our own
pending and confirmed appointments from the database, read on every query; the
pure engine (:mod:`sync.availability`) does the rest. A calendar whose busy
state is unknown gives no slot and is listed as unavailable.

The answer is in the engine's terms (slots, unavailable staff, the cost in
provider calls); the shell renders it (``relais.api.availability``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from mappings.schema import AppointmentTypeSpec, TenantConfig
from sync import busy as busy_mod
from sync.availability import (
    AvailabilityQuery,
    AvailabilityResult,
    busy_window,
    compute_any_staff_availability,
    compute_availability,
)
from sync.booking.adapters import (
    appointment_type,
    bookable_members,
    check_window,
    check_zone,
    engine_type,
    staff_calendar,
    staff_schedule,
)
from sync.store.db import session_scope
from sync.store.models import utcnow

DEFAULT_DAYS = 7
"""Default window: from ``start`` (now) over this many days, or the horizon if shorter."""


@dataclass(frozen=True)
class AvailabilityAnswer:
    """One availability query answered: what was asked (resolved), what is free, the cost.

    ``staff`` is ``None`` in any-staff mode, else the ids asked for in order.
    ``provider_calls``/``cache_hits``: calendar reads this query made or saved.
    """

    spec: AppointmentTypeSpec
    timezone: str
    start: datetime
    end: datetime
    staff: list[str] | None
    result: AvailabilityResult
    provider_calls: int
    cache_hits: int


def find_availability(
    tenant_id: str,
    config: TenantConfig,
    *,
    staff: str,
    type_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    tz: str | None = None,
) -> AvailabilityAnswer:
    """Free slots of ``type_id`` whose start lies in ``[start, end)``, in zone ``tz``.

    Defaults: from now, over ``DEFAULT_DAYS`` (or the booking horizon if shorter).
    Cost: one provider call per calendar connection per chunk of the window,
    none when the busy cache (or the pulled busy store) answers.
    """
    spec = appointment_type(config, type_id)
    members, any_mode = bookable_members(config, spec, staff, "staff")
    tz = tz or config.timezone
    check_zone(tz, "tz")
    now = utcnow()
    start = start or now
    end = end or start + timedelta(days=min(DEFAULT_DAYS, spec.booking_horizon_days + 1))
    check_window(spec, start, end, now)
    etype = engine_type(spec)
    schedules = {m.id: staff_schedule(config, m) for m in members}
    query = AvailabilityQuery(start, end, now=now, timezone=tz)
    lo, hi = busy_window(query, etype, schedules.values())
    fetched = busy_mod.fetch_calendar_busy(tenant_id, config, members, lo, hi)
    ids = [m.id for m in members]
    with session_scope(readonly=True) as session:
        own = busy_mod.own_busy(session, tenant_id, config, ids, lo, hi)
        stats = busy_mod.fairness(session, tenant_id, ids) if any_mode else None
    calendars = [
        staff_calendar(m, schedules[m.id], fetched.by_staff[m.id], own[m.id]) for m in members
    ]
    if any_mode:
        result = compute_any_staff_availability(query, etype, calendars, stats)
    else:
        result = compute_availability(query, etype, calendars)
    return AvailabilityAnswer(
        spec=spec,
        timezone=tz,
        start=start,
        end=end,
        staff=None if any_mode else ids,
        result=result,
        provider_calls=fetched.provider_calls,
        cache_hits=fetched.cache_hits,
    )
