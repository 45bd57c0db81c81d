"""One runner for every incremental pull (CRM contacts, staff calendars).

A *stream* (:class:`Stream`) supplies only what is its own: which partitions a
connection has (the contacts stream: one, ``""``; the calendar stream: one per
staff calendar), **"read pages since the cursor"** (``read``: a generator of
:class:`Page`, each carrying the cursor to store once it is applied) and
**"apply a page"** (``apply``: writes the page and calls ``save(session)`` in the
same transaction, so the cursor moves with what it covers). The shape of a Singer
stream or dlt's ``incremental``.

The runner does the rest, once:

- **checks** — the provider has the stream's part in the catalogue, the connection
  is active, the pull is due (``only_if_due``: ``sync_interval_minutes``);
- **the lock and run record** (``sync.pull_lock`` on the stream's state table):
  one pull per connection at a time, a lock older than ``sync_lock_minutes`` taken
  over, the pause after a limit, the last run's figures, counters adding up;
- **the connection** (``sync.connection_use.open_connection``): a fresh token, the
  connection's pause (``force`` ignores it, as it ignores the pull's), the tenant's
  mapping, the pacers, the client from the catalogue; ``AuthExpired`` refreshes
  and goes on with the partitions not done yet (once); ``RateLimited`` pauses the
  connection and the pull;
- **cursors** keyed by (connection, stream, partition) (:class:`CursorKey`): loaded
  before the read; after a ``CursorExpired`` (``connectors.base``) the partition is
  read in full again (from what the stream's ``expired`` says);
- **the outcome** (:class:`PullOutcome`, which each stream extends with its
  counters): a provider's refusal or failure on one partition (``Rejected``,
  ``TransientError``) fails that partition only; a bug is recorded, then raised.

Cursors are rows of ``pull_cursors`` (``sync.store.models.PullCursor``), keyed
(connection, stream, partition); only this module writes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol

from sqlalchemy.orm import Session

from connectors.base import (
    AuthExpired,
    CursorExpired,
    DeliveryError,
    RateLimited,
    Rejected,
    TransientError,
)
from mappings.schema import TenantConfig
from sync import clock, pull_lock
from sync.connection_use import ClientPool, ConnectionUnavailable, Part, open_connection
from sync.store.db import session_scope
from sync.store.models import Connection, PullCursor, Tenant, utcnow
from sync.tenants import parsed_config

log = logging.getLogger(__name__)


@dataclass
class PullOutcome:
    """What one pull did. Streams extend it with their counters (``ContactsPull``,
    ``CalendarPull``); ``as_dict`` is the run record shown by the sync status."""

    connection_id: str
    tenant_id: str = ""
    name: str = ""
    provider: str = ""
    status: str = "ok"  # ok | skipped | paused | error | needs_reauth
    calls: int = 0  # provider API calls
    seconds: float = 0.0
    note: str = ""
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


Progress = Callable[[Any], None]


# ------------------------------------------------------------------ cursors


@dataclass(frozen=True)
class CursorKey:
    connection_id: str
    stream: str
    partition: str = ""


CALENDAR_STREAM = "calendar"


def _cursor_row(
    session: Session, key: CursorKey, *, create: bool, lock: bool = False
) -> PullCursor | None:
    row = session.get(PullCursor, (key.connection_id, key.stream, key.partition),
                      with_for_update=lock)  # fmt: skip
    if row is None and create:
        row = PullCursor(connection_id=key.connection_id, stream=key.stream,
                         partition=key.partition, cursor=None, full_syncs=0)  # fmt: skip
        session.add(row)
    return row


def load_cursor(key: CursorKey) -> str | None:
    with session_scope(readonly=True) as session:
        row = _cursor_row(session, key, create=False)
        return row.cursor if row is not None else None


def save_cursor(session: Session, key: CursorKey, cursor: str | None, *, full: bool) -> None:
    """Store the partition's cursor in the caller's transaction (``full``: it ends a
    full read, counted in ``full_syncs``)."""
    row = _cursor_row(session, key, create=True, lock=True)
    assert row is not None
    row.cursor = cursor
    row.updated_at = utcnow()
    if full:
        row.full_syncs = (row.full_syncs or 0) + 1


def wipe_cursor(key: CursorKey) -> None:
    with session_scope() as session:
        row = _cursor_row(session, key, create=False, lock=True)
        if row is not None:
            row.cursor = None
            row.updated_at = utcnow()


# ------------------------------------------------------------------ streams


@dataclass
class Page:
    """One page read: ``cursor`` is stored when it is applied; ``full`` says it ends a
    full read; ``data`` is the stream's; ``report`` calls the progress callback."""

    cursor: str | None
    full: bool = False
    data: Any = None
    report: bool = False


@dataclass(frozen=True)
class PullContext:
    """The connection being pulled (row detached from its session) and its tenant's
    parsed configuration."""

    row: Connection
    config: TenantConfig

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.row.settings or {})


Save = Callable[[Session], None]


class Stream(Protocol):
    name: ClassVar[str]
    part: ClassVar[Part]  # the catalogue's class the stream reads through
    what: ClassVar[str]  # for people: "calendar", "CRM"
    state: ClassVar[Any]  # the lock and run-record table (sync.pull_lock)
    zeros: ClassVar[dict[str, int]]  # its counters, zero
    lock_minutes: ClassVar[float]
    interval_minutes: ClassVar[float]
    pool: ClassVar[ClientPool | None]

    def providers(self) -> Sequence[str]: ...
    def not_mine(self, provider: str) -> str: ...
    def outcome(self, row: Connection) -> PullOutcome: ...
    def counts(self, outcome: Any) -> dict[str, int]: ...
    def partitions(self, ctx: PullContext, only: Sequence[str] | None) -> list[str]: ...

    def read(
        self, client: Any, ctx: PullContext, partition: str, cursor: str | None, full: bool,
        outcome: Any,
    ) -> Iterator[Page]: ...

    def apply(
        self, ctx: PullContext, partition: str, page: Page, outcome: Any, save: Save
    ) -> None: ...

    def expired(
        self, ctx: PullContext, key: CursorKey, exc: CursorExpired, outcome: Any
    ) -> str | None:
        """The provider no longer answers from the partition's cursor: what to read
        in full from (the calendar stream wipes its cursor: None; the contacts stream
        keeps its own, whose generation the sweep needs)."""
        ...

    def finish(self, ctx: PullContext, done: list[str], outcome: Any) -> None: ...
    def summary(self, outcome: Any) -> str: ...


# ------------------------------------------------------------------ the run


def load_connection(connection_id: str) -> PullContext:
    with session_scope(readonly=True) as session:
        row = session.get(Connection, connection_id)
        if row is None:
            raise LookupError(f"no connection {connection_id!r}")
        tenant = session.get(Tenant, row.tenant_id)
        assert tenant is not None
        config = parsed_config(tenant)
        session.expunge(row)
    return PullContext(row, config)


def run(
    stream: Stream,
    connection_id: str,
    *,
    full: bool = False,
    force: bool = False,
    only_if_due: bool = False,
    partitions: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> Any:
    """Pull one connection's stream (all partitions, or ``partitions``); see the module
    doc. ``force`` ignores the pauses; ``only_if_due`` skips a pull not due yet."""
    began = time.monotonic()
    ctx = load_connection(connection_id)
    row = ctx.row
    outcome = stream.outcome(row)
    if row.provider not in stream.providers():
        outcome.status, outcome.note = "skipped", stream.not_mine(row.provider)
        return outcome
    if row.status != "active":
        outcome.status, outcome.note = "skipped", f"connection is {row.status}"
        return outcome
    if only_if_due and not is_due(stream, connection_id, ctx.settings, utcnow()):
        outcome.status, outcome.note = "skipped", "not due"
        return outcome
    expiry = timedelta(
        minutes=float(ctx.settings.get("sync_lock_minutes", stream.lock_minutes))
    )
    token, why = pull_lock.acquire(
        stream.state, connection_id, row.tenant_id, expiry, force, **stream.zeros
    )
    if token is None:
        outcome.status, outcome.note = "skipped", why
        return outcome
    pause: datetime | None = None
    try:
        _pull(stream, ctx, outcome, full, force, partitions, progress)
    except ConnectionUnavailable as exc:
        if exc.reason == "needs_reauth":
            outcome.status, outcome.error = "needs_reauth", f"needs re-authorization: {exc.detail}"
        elif exc.reason == "paused":
            pause = exc.until
            outcome.status, outcome.error = "paused", str(exc)
        elif exc.reason == "token_endpoint":  # the token endpoint is down: the next tick retries
            outcome.status, outcome.error = "error", f"token refresh failed: {exc.detail}"
        else:
            outcome.status, outcome.error = "error", str(exc)
    except RateLimited as exc:  # the connection is paused too (sync.connection_use)
        pause = clock.from_machine(exc.reset_at)  # the provider's instant
        outcome.status, outcome.error = "paused", str(exc)
    except DeliveryError as exc:  # AuthExpired twice, Rejected, TransientError
        outcome.status, outcome.error = "error", str(exc)
    except Exception as exc:  # a bug: record it, then let it surface
        outcome.status, outcome.error = "error", f"internal error: {exc!r}"
        raise
    finally:
        outcome.seconds = round(time.monotonic() - began, 3)
        pull_lock.release(
            stream.state, connection_id, token, status=outcome.status, error=outcome.error,
            pause=pause, last_run=outcome.as_dict(), counts=stream.counts(outcome),
        )  # fmt: skip
    log.info("%s pull %s/%s: %s, %s", stream.name, outcome.tenant_id, outcome.name,
             outcome.status, stream.summary(outcome))  # fmt: skip
    return outcome


def _pull(
    stream: Stream,
    ctx: PullContext,
    outcome: Any,
    full: bool,
    force: bool,
    only: Sequence[str] | None,
    progress: Progress | None,
) -> None:
    wanted = stream.partitions(ctx, only)
    done: list[str] = []
    failed: dict[str, str] = {}
    for attempt in (1, 2):
        try:
            with open_connection(ctx.row.id, stream.part, what=stream.what,
                                 ignore_pause=force, pool=stream.pool) as opened:  # fmt: skip
                client = opened.client
                before = int(getattr(client, "calls", 0))
                try:
                    for partition in [p for p in wanted if p not in done and p not in failed]:
                        try:
                            _partition(stream, client, ctx, partition, full, outcome, progress)
                            done.append(partition)
                        except (Rejected, TransientError) as exc:  # this one; the others go on
                            failed[partition] = str(exc)
                finally:
                    outcome.calls += int(getattr(client, "calls", 0)) - before
            break
        except AuthExpired:  # refused before its expiry: the token was dated back
            if attempt == 2:
                raise
    if failed:
        outcome.status = "error"
        outcome.error = "; ".join(f"{p}: {why}" if p else why for p, why in failed.items())
    stream.finish(ctx, done, outcome)


def _partition(
    stream: Stream,
    client: Any,
    ctx: PullContext,
    partition: str,
    full: bool,
    outcome: Any,
    progress: Progress | None,
) -> None:
    key = CursorKey(ctx.row.id, stream.name, partition)
    cursor = load_cursor(key)
    try:
        _read_and_apply(stream, client, ctx, key, cursor, full, outcome, progress)
    except CursorExpired as exc:
        log.info("%s %s/%s %s: %s; full resync", stream.name, ctx.row.tenant_id, ctx.row.name,
                 partition, exc)  # fmt: skip
        restart = stream.expired(ctx, key, exc, outcome)
        _read_and_apply(stream, client, ctx, key, restart, True, outcome, progress)


def _read_and_apply(
    stream: Stream,
    client: Any,
    ctx: PullContext,
    key: CursorKey,
    cursor: str | None,
    full: bool,
    outcome: Any,
    progress: Progress | None,
) -> None:
    for page in stream.read(client, ctx, key.partition, cursor, full, outcome):
        saved = False

        def save(session: Session, page: Page = page) -> None:
            nonlocal saved
            save_cursor(session, key, page.cursor, full=page.full)
            saved = True

        stream.apply(ctx, key.partition, page, outcome, save)
        if not saved:
            raise RuntimeError(f"the {stream.name} stream applied a page without its cursor")
        if page.report and progress is not None:
            progress(outcome)


# ------------------------------------------------------------------ scheduling


def is_due(stream: Stream, connection_id: str, settings: dict[str, Any], now: datetime) -> bool:
    return pull_lock.is_due(stream.state, connection_id, settings, now, stream.interval_minutes)


def due_connections(stream: Stream, now: datetime | None = None) -> list[str]:
    """Active connections of the stream's providers whose pull interval has passed."""
    return pull_lock.due_connections(
        stream.state, stream.providers(), now or utcnow(), stream.interval_minutes
    )

