"""One rate limiter per connection, shared by every worker process.

A rolling-window log, as HubSpot and most providers count: at most ``limit``
requests in any ``window`` seconds. Each caller *reserves* the earliest send
time that keeps the window legal and sleeps until then, so waiting callers are
served in order without retry storms. The window is stretched by a margin to
absorb clock and network jitter between our send and the provider's count.

Backends: Redis (a sorted set, one Lua script per reservation) when the broker
is Redis, the database otherwise (one row per key, locked for the reservation).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session

from sync.settings import get_settings
from sync.store.db import session_scope
from sync.store.models import RateWindow

# Network jitter between our send and the provider's count: tens of ms. (It was
# 0.5 s, which stretched a 1 s search window by half: 4/s became 2.7/s.)
MARGIN_SECONDS = 0.05
MARGIN_SHARE = 0.05  # of the window: a request queued behind a busy CPU arrives late


def margin(window: float) -> float:
    """How much longer than the provider's window we keep our own: 5 % of it
    (0.5 s of 10 s), at least the network's jitter."""
    return max(MARGIN_SECONDS, MARGIN_SHARE * window)


class WindowStore(Protocol):
    def reserve(self, key: str, limit: int, window: float, now: float) -> float:
        """Record a send at the earliest legal time >= now and return that time."""
        ...


def earliest_slot(stamps: list[float], limit: int, window: float, now: float) -> float:
    """The earliest t >= now such that no window of ``window`` seconds holds more
    than ``limit`` stamps once t is added. Stamps may lie in the future (other
    callers' reservations): all those after ``now - window`` count."""
    live = sorted(s for s in stamps if s > now - window)
    if len(live) < limit:
        return now
    return max(now, live[len(live) - limit] + window)


class DatabaseWindows:
    def reserve(self, key: str, limit: int, window: float, now: float) -> float:
        with session_scope() as session:
            row = self._row(session, key)
            slot = earliest_slot(row.stamps, limit, window, now)
            # Keep what is still inside a window ending now or later: reservations
            # are in the future, and a caller whose clock reads `now` counts them.
            keep = [s for s in row.stamps if s > now - window]
            row.stamps = sorted([*keep, slot])
            return slot

    @staticmethod
    def _row(session: Session, key: str) -> RateWindow:
        row = session.get(RateWindow, key, with_for_update=True)
        if row is None:
            # Two processes may create the key's row at once: the loser's insert
            # must not fail its transaction (PostgreSQL: ON CONFLICT DO NOTHING;
            # SQLite: BEGIN IMMEDIATE already serialises writers).
            if session.get_bind().dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert

                session.execute(
                    insert(RateWindow).values(key=key, stamps=[]).on_conflict_do_nothing()
                )
            else:
                session.add(RateWindow(key=key, stamps=[]))
                session.flush()
            row = session.get(RateWindow, key, with_for_update=True, populate_existing=True)
            assert row is not None
        return row


_RESERVE = """
local key, limit, window, now = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local slot = now
local n = redis.call('ZCARD', key)
if n >= limit then
  local nth = redis.call('ZRANGE', key, n - limit, n - limit, 'WITHSCORES')
  slot = math.max(now, tonumber(nth[2]) + window)
end
redis.call('ZADD', key, slot, string.format('%.6f:%s', slot, ARGV[4]))
redis.call('PEXPIRE', key, math.ceil((slot - now + window) * 1000) + 1000)
return tostring(slot)
"""


class RedisWindows:
    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.script = self.client.register_script(_RESERVE)

    def reserve(self, key: str, limit: int, window: float, now: float) -> float:
        token = uuid.uuid4().hex  # unique across forked processes (ids and counters are not)
        return float(self.script(keys=[f"relais:rate:{key}"], args=[limit, window, now, token]))


@dataclass
class RollingPacer:
    """The connection's shared limiter: implements ``connectors.base.Pacer`` (what a
    connector calls before each request) over a rolling window kept in a
    ``WindowStore``; blocks until the request may be sent."""

    key: str
    limit: int
    window: float
    store: WindowStore
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    waited: float = 0.0  # total seconds spent waiting, for benchmarks and logs

    def wait(self, cost: int = 1) -> None:
        for _ in range(cost):
            now = self.clock()
            slot = self.store.reserve(self.key, self.limit, self.window + margin(self.window), now)
            if slot > now:
                self.waited += slot - now
                self.sleep(slot - now)


_store: WindowStore | None = None


def default_store() -> WindowStore:
    """Redis when the broker is Redis, else the database."""
    global _store
    if _store is None:
        url = get_settings().resolved_broker_url
        _store = (
            RedisWindows(url) if url.startswith(("redis://", "rediss://")) else (DatabaseWindows())
        )
    return _store


def reset_store() -> None:
    global _store
    _store = None
