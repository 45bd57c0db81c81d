"""The access log: an append-only hash chain per tenant.

Invariants:

- Entry ``n`` of a tenant carries ``seq = n`` and ``prev_hash`` = the ``hash`` of
  entry ``n - 1`` (the head's ``base_hash`` for the first entry kept).
- ``hash = sha256(prev_hash "\\n" canonical JSON)`` where the canonical JSON is the
  entry's fields (tenant, seq, instant in UTC to the microsecond, actor, action,
  subject, detail) with sorted keys, no spaces, UTF-8 (:func:`entry_hash`).
- An append locks the tenant's head row (``SELECT … FOR UPDATE`` on PostgreSQL;
  SQLite's ``BEGIN IMMEDIATE`` serialises writers) and moves it in the same
  transaction: two appends never share a ``seq`` or a ``prev_hash``.
- Entries name ids (message, link, hashed subject), never content or a phone.

:func:`verify` walks a chain and names the first entry that is altered, missing
or out of place, and a tail cut off behind the head.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sync.store.models import utcnow
from sync.store.privacy_models import GENESIS, AccessLogEntry, AccessLogHead

ACTIONS = ("message.read", "link.opened", "link.revoked", "privacy.export", "privacy.erase")


def canonical(tenant_id: str, seq: int, at: datetime, actor: str, action: str,
              subject_type: str, subject_id: str, detail: dict[str, Any]) -> bytes:
    """The bytes an entry's hash covers (its ``prev_hash`` is prefixed by :func:`entry_hash`)."""
    if at.tzinfo is None:
        raise ValueError("naive datetime in the access log")
    doc = {
        "v": 1, "tenant": tenant_id, "seq": seq,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor, "action": action, "subject_type": subject_type,
        "subject_id": subject_id, "detail": detail,
    }  # fmt: skip
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(prev_hash: str, body: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + body).hexdigest()


def recompute(entry: AccessLogEntry) -> str:
    return entry_hash(entry.prev_hash, canonical(
        entry.tenant_id, entry.seq, entry.at, entry.actor, entry.action,
        entry.subject_type, entry.subject_id, entry.detail or {}))


def _locked_head(session: Session, tenant_id: str) -> AccessLogHead:
    """The tenant's head row, created if missing, locked until the transaction ends."""
    dialect = session.get_bind().dialect.name
    values = {"tenant_id": tenant_id, "seq": 0, "hash": GENESIS, "base_seq": 0,
              "base_hash": GENESIS}
    if dialect == "postgresql":
        session.execute(postgresql.insert(AccessLogHead).values(values).on_conflict_do_nothing())
    else:
        session.execute(sqlite.insert(AccessLogHead).values(values).on_conflict_do_nothing())
    head = session.get(AccessLogHead, tenant_id, with_for_update=True, populate_existing=True)
    assert head is not None
    return head


def append(session: Session, tenant_id: str, *, actor: str, action: str, subject_type: str,
           subject_id: str, detail: dict[str, Any] | None = None) -> AccessLogEntry:
    """Add one entry to the tenant's chain (in the caller's transaction)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown access log action {action!r}")
    head = _locked_head(session, tenant_id)
    seq = head.seq + 1
    at = utcnow().astimezone(UTC)
    detail = dict(detail or {})
    digest = entry_hash(head.hash, canonical(tenant_id, seq, at, actor, action, subject_type,
                                             subject_id, detail))
    entry = AccessLogEntry(tenant_id=tenant_id, seq=seq, at=at, actor=actor[:200],
                           action=action, subject_type=subject_type, subject_id=subject_id,
                           detail=detail, prev_hash=head.hash, hash=digest)
    session.add(entry)
    head.seq, head.hash = seq, digest
    session.flush()
    return entry


def record_reads(session: Session, tenant_id: str, *, actor: str, via: str, page: str,
                 messages: Sequence[str] = (), appointments: Sequence[str] = ()) -> None:
    """One ``message.read`` entry for a view showing these messages and appointments
    (nothing when it shows none): one append per view, however many rows, naming their
    ids in ``detail``, never their content. A single message or appointment shown is the
    entry's subject (``message <id>`` / ``appointment <id>``, so a person's export finds
    it); a list is ``<via> <page>``."""
    if not messages and not appointments:
        return
    detail: dict[str, Any] = {"via": via, "page": page}
    if messages:
        detail["messages"] = list(messages)
    if appointments:
        detail["appointments"] = list(appointments)
    if len(messages) + len(appointments) == 1:
        subject_type, subject_id = ("message", messages[0]) if messages else (
            "appointment", appointments[0])
    else:
        subject_type, subject_id = via, page
    append(session, tenant_id, actor=actor, action="message.read",
           subject_type=subject_type, subject_id=subject_id, detail=detail)


@dataclass(frozen=True)
class ChainReport:
    tenant_id: str
    entries: int
    ok: bool
    # The first bad entry: its id and seq (None when the tail is missing) and why.
    bad_id: int | None = None
    bad_seq: int | None = None
    problem: str = ""

    def line(self) -> str:
        if self.ok:
            return f"{self.tenant_id}: ok, {self.entries} entries"
        where = f"entry id {self.bad_id} (seq {self.bad_seq})" if self.bad_id else "chain end"
        return f"{self.tenant_id}: BROKEN at {where}: {self.problem}"


def verify_tenant(session: Session, tenant_id: str) -> ChainReport:
    head = session.get(AccessLogHead, tenant_id)
    rows: Iterable[AccessLogEntry] = session.scalars(
        select(AccessLogEntry).where(AccessLogEntry.tenant_id == tenant_id)
        .order_by(AccessLogEntry.seq, AccessLogEntry.id).execution_options(yield_per=1000))
    if head is None:
        first = next(iter(rows), None)
        if first is None:
            return ChainReport(tenant_id, 0, True)
        return ChainReport(tenant_id, 0, False, first.id, first.seq,
                           "the chain head is missing (deleted)")
    expected_seq, expected_prev, count = head.base_seq + 1, head.base_hash, 0
    for entry in rows:
        if entry.seq != expected_seq:
            problem = (f"seq {entry.seq} where {expected_seq} was expected: "
                       + ("an entry before it was deleted" if entry.seq > expected_seq
                          else "a duplicate or reordered entry"))
            return ChainReport(tenant_id, count, False, entry.id, entry.seq, problem)
        if entry.prev_hash != expected_prev:
            return ChainReport(tenant_id, count, False, entry.id, entry.seq,
                               "its previous hash is not the previous entry's: "
                               "entries were deleted, replaced or reordered")
        if recompute(entry) != entry.hash:
            return ChainReport(tenant_id, count, False, entry.id, entry.seq,
                               "its content does not match its hash: the row was altered")
        expected_seq, expected_prev, count = expected_seq + 1, entry.hash, count + 1
    if expected_seq - 1 != head.seq or expected_prev != head.hash:
        return ChainReport(tenant_id, count, False, None, None,
                           f"the head is at seq {head.seq} but the chain stops at seq "
                           f"{expected_seq - 1}: the last entries were deleted or the head altered")
    return ChainReport(tenant_id, count, True)


def verify(session: Session, tenant_id: str | None = None) -> list[ChainReport]:
    """Each tenant's chain checked (``tenant_id``: only that one)."""
    if tenant_id is not None:
        return [verify_tenant(session, tenant_id)]
    tenants = set(session.scalars(select(AccessLogHead.tenant_id)))
    tenants |= set(session.scalars(select(AccessLogEntry.tenant_id).distinct()))
    return [verify_tenant(session, t) for t in sorted(tenants)]


def entry_view(entry: AccessLogEntry) -> dict[str, Any]:
    return {
        "id": entry.id, "seq": entry.seq,
        "at": entry.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "actor": entry.actor, "action": entry.action, "subject_type": entry.subject_type,
        "subject_id": entry.subject_id, "detail": entry.detail, "hash": entry.hash,
    }  # fmt: skip


def listing(session: Session, tenant_id: str, *, limit: int = 100,
            before_seq: int | None = None, subject_ids: list[str] | None = None,
            actions: list[str] | None = None, start: datetime | None = None,
            end: datetime | None = None, actor: str | None = None
            ) -> list[AccessLogEntry]:
    """The tenant's entries, newest first (by ``seq``: the chain's order).

    Filters (all optional, combined with AND): ``actions`` among :data:`ACTIONS`,
    ``start`` included and ``end`` excluded (aware instants), ``actor`` a
    case-insensitive part of the actor. Paging: ``before_seq`` is the smallest
    ``seq`` of the previous page. Used by the API and the console alike."""
    query = select(AccessLogEntry).where(AccessLogEntry.tenant_id == tenant_id)
    if before_seq is not None:
        query = query.where(AccessLogEntry.seq < before_seq)
    if subject_ids is not None:
        query = query.where(AccessLogEntry.subject_id.in_(subject_ids))
    if actions:
        unknown = sorted(set(actions) - set(ACTIONS))
        if unknown:
            raise ValueError(f"unknown access log action {unknown[0]!r}")
        query = query.where(AccessLogEntry.action.in_(actions))
    for bound in (start, end):
        if bound is not None and bound.tzinfo is None:
            raise ValueError("naive datetime in an access log filter")
    if start is not None:
        query = query.where(AccessLogEntry.at >= start)
    if end is not None:
        query = query.where(AccessLogEntry.at < end)
    if actor:
        pattern = "%" + actor.lower().replace("\\", "\\\\").replace("%", "\\%").replace(
            "_", "\\_") + "%"
        query = query.where(func.lower(AccessLogEntry.actor).like(pattern, escape="\\"))
    return list(session.scalars(query.order_by(AccessLogEntry.seq.desc()).limit(limit)))
