"""Calls in: the telephony's events, stored once, folded into one row per call.

Invariants:
- an event is identified by (tenant, call id, kind): sent again with the same
  instant it is a duplicate (stored once, reported ``duplicate``); with another
  instant it is a conflict (``EventConflict``: nothing of the batch is stored);
- the call's aggregate (``calls``) is a pure function of the set of its events
  (:func:`aggregate`), recomputed while the call's row is locked: whatever the
  order, the repetition or the concurrency of the events, it is the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from sqlalchemy import false as sa_false
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mappings.schema import normalize_phone
from sync.domain import Instant, Record
from sync.store.calls_models import EVENT_KINDS, Call, CallEvent
from sync.store.db import is_postgres

MAX_EVENTS = 1000
EventKind = Literal["offered", "answered", "transferred", "abandoned", "ended"]
# Which event's secretary names the call's secretary, first found wins.
_SECRETARY_ORDER = ("answered", "transferred", "ended", "offered", "abandoned")


class CallEventIn(Record):
    """One event of one call, as the telephony sends it (README: "Calls in")."""

    call_id: Annotated[str, Field(min_length=1, max_length=200)]
    event: EventKind
    at: Instant
    called: Annotated[str | None, Field(min_length=1, max_length=40)] = None
    caller: Annotated[str | None, Field(min_length=1, max_length=64)] = None
    secretary: Annotated[str | None, Field(min_length=1, max_length=200)] = None

    @field_validator("called")
    @classmethod
    def _called(cls, value: str | None, info: ValidationInfo) -> str | None:
        region = (info.context or {}).get("region")
        return normalize_phone(value, region) if value else None


@dataclass(frozen=True)
class EventRow:
    """What :func:`aggregate` needs of a stored event."""

    kind: str
    at: datetime
    called: str | None = None
    caller: str | None = None
    secretary: str | None = None


class EventConflict(ValueError):
    """The same (call, kind) was stored with another instant."""

    def __init__(self, index: int, call_id: str, kind: str, stored: datetime) -> None:
        super().__init__(f"call {call_id!r} already has its {kind!r} event at "
                         f"{stored.isoformat()}")
        self.index = index


def aggregate(events: Iterable[EventRow]) -> dict[str, Any]:
    """The ``calls`` columns for a call with these events (at most one per kind).

    offered_at: the offered event, else the earliest event. outcome: answered if
    answered; abandoned if abandoned, or ended without an answer; else ringing.
    wait_seconds: offered -> answered (answered) or offered -> hang-up
    (abandoned), never negative. talk_seconds: answered -> ended, else ->
    transferred, while neither: None.
    """
    by_kind = {e.kind: e for e in events}
    at = {kind: e.at for kind, e in by_kind.items()}
    if not at:
        raise ValueError("a call has at least one event")
    offered = at.get("offered", min(at.values()))
    answered, ended = at.get("answered"), at.get("ended")
    abandoned = at.get("abandoned")
    if answered is not None:
        outcome = "answered"
        wait: float | None = max(0.0, (answered - offered).total_seconds())
    elif abandoned is not None or ended is not None:
        outcome = "abandoned"
        hang_up = abandoned if abandoned is not None else ended
        assert hang_up is not None
        wait = max(0.0, (hang_up - offered).total_seconds())
    else:
        outcome, wait = "ringing", None
    talk = None
    finish = ended if ended is not None else at.get("transferred")
    if answered is not None and finish is not None:
        talk = max(0.0, (finish - answered).total_seconds())

    def first(field: str, order: Sequence[str]) -> str | None:
        for kind in order:
            event = by_kind.get(kind)
            if event is not None and getattr(event, field):
                return str(getattr(event, field))
        return None

    return {
        "offered_at": offered, "answered_at": answered, "transferred_at": at.get("transferred"),
        "abandoned_at": abandoned, "ended_at": ended, "outcome": outcome,
        "wait_seconds": wait, "talk_seconds": talk,
        "called": first("called", EVENT_KINDS), "caller": first("caller", EVENT_KINDS),
        "secretary": first("secretary", _SECRETARY_ORDER), "events": len(by_kind),
    }


@dataclass
class Recorded:
    call_id: str
    event: str
    status: Literal["created", "duplicate"]


def _insert(session: Session) -> Any:
    if is_postgres(session.get_bind()):  # type: ignore[arg-type]
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _lock_calls(session: Session, tenant_id: str, call_ids: list[str]) -> None:
    """The calls' aggregate rows, created if new, locked until the transaction ends:
    on PostgreSQL one ``INSERT … ON CONFLICT DO UPDATE`` (it locks each row, in the
    sorted order given, so two batches never wait on each other in a cycle); on
    SQLite ``BEGIN IMMEDIATE`` already serialises writers."""
    insert = _insert(session)
    rows = [{"tenant_id": tenant_id, "call_id": c, "outcome": "ringing", "events": 0}
            for c in call_ids]
    statement = insert(Call).values(rows)
    if is_postgres(session.get_bind()):  # type: ignore[arg-type]
        statement = statement.on_conflict_do_update(
            index_elements=["tenant_id", "call_id"], set_={"events": statement.excluded.events},
            where=sa_false())
        # DO UPDATE … WHERE false locks each existing row without writing it ("all
        # rows will be locked when the ON CONFLICT DO UPDATE action is taken").
        session.execute(statement)
    else:
        session.execute(statement.on_conflict_do_nothing())


def record_events(session: Session, tenant_id: str,
                  events: Sequence[CallEventIn]) -> list[Recorded]:
    """Store ``events`` of ``tenant_id`` and refresh their calls' aggregates.

    A batch costs four statements whatever its size: lock (or create) the calls,
    insert the events (duplicates skipped), read the calls' events back, write the
    aggregates. Raises :class:`EventConflict` (roll the transaction back) when an
    event contradicts a stored one.
    """
    if not events:
        return []
    insert = _insert(session)
    call_ids = sorted({e.call_id for e in events})
    _lock_calls(session, tenant_id, call_ids)
    now = _now()
    fresh = {(e.call_id, e.event): e for e in reversed(events)}  # the first of twins wins
    inserted = {tuple(row) for row in session.execute(
        insert(CallEvent).values([
            {"tenant_id": tenant_id, "call_id": e.call_id, "kind": e.event, "at": e.at,
             "called": e.called, "caller": e.caller, "secretary": e.secretary,
             "received_at": now}
            for e in fresh.values()
        ]).on_conflict_do_nothing(index_elements=["tenant_id", "call_id", "kind"])
        .returning(CallEvent.call_id, CallEvent.kind)
    )}
    stored: dict[str, list[EventRow]] = {c: [] for c in call_ids}
    for call_id, kind, at, called, caller, secretary in session.execute(
        select(CallEvent.call_id, CallEvent.kind, CallEvent.at, CallEvent.called,
               CallEvent.caller, CallEvent.secretary)
        .where(CallEvent.tenant_id == tenant_id, CallEvent.call_id.in_(call_ids))
    ):
        stored[call_id].append(EventRow(kind, at, called, caller, secretary))
    results = []
    for index, event in enumerate(events):
        kept = next(r for r in stored[event.call_id] if r.kind == event.event)
        if kept.at != event.at:
            raise EventConflict(index, event.call_id, event.event, kept.at)
        first = (event.call_id, event.event) in inserted and fresh[
            (event.call_id, event.event)] is event
        results.append(Recorded(event.call_id, event.event, "created" if first else "duplicate"))
    session.execute(  # ORM bulk UPDATE by primary key: one executemany
        update(Call),
        [{"tenant_id": tenant_id, "call_id": c, **aggregate(stored[c])} for c in call_ids],
    )
    return results


def _now() -> datetime:
    from sync import clock

    return clock.now()
