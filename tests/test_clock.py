"""The hub's one clock (sync.clock): injected, never patched."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from sync import clock
from sync.store.models import utcnow

AT = datetime(2027, 3, 28, 3, 10, tzinfo=UTC)


def test_the_environment_offset_moves_the_hub_and_time_keeps_running():
    ticking = clock.from_environment({clock.ENV_OFFSET: str(clock.offset_for(AT))})
    first = ticking.now()
    assert abs((first - AT).total_seconds()) < 1
    time.sleep(0.02)
    assert ticking.now() > first  # an offset, not a frozen instant
    assert isinstance(clock.from_environment({}), clock.SystemClock)
    with pytest.raises(ValueError, match="RELAIS_CLOCK_OFFSET must be a number of seconds"):
        clock.from_environment({clock.ENV_OFFSET: "tomorrow"})


def test_every_reader_of_the_store_time_reads_the_installed_clock(hub_clock):
    fixed = hub_clock(AT)
    assert utcnow() == clock.now() == AT
    fixed.advance(timedelta(minutes=5))
    assert utcnow() == AT + timedelta(minutes=5)
    # a provider's instant (machine time) and the hub's, converted both ways
    real = clock.machine_now()
    assert abs((clock.from_machine(real) - clock.now()).total_seconds()) < 1
    assert abs((clock.to_machine(clock.now()) - real).total_seconds()) < 1


def test_naive_instants_are_refused():
    with pytest.raises(ValueError, match="aware"):
        clock.FixedClock(datetime(2027, 1, 1))  # noqa: DTZ001
