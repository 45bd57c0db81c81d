"""The contact directory: CRM contacts pulled incrementally into Relais, so a
secretary recognises a caller in milliseconds (``GET /v1/tenants/{t}/contacts``).

**A pull** (``pull_connection``) reads one CRM connection through its reader
(``connectors.hubspot.reader``, ``connectors.salesforce.reader``): deletions since
the cursor first, then the records changed since it, page by page. Each page
is written in one transaction together with the reader's checkpoint, so a pull
cut short (429, crash, deploy) resumes where it stopped and loses nothing. A
record whose CRM modification stamp we already hold is not rewritten (the
lookback re-reads a few). The cursor is the instant the last successful pull
started; the next pull asks for changes since then minus ``sync_lookback_seconds``
(default 120 s: records committed late, search index lag, clock skew).

**Full pulls** (first pull, ``--full``, or a cursor the CRM can no longer
answer from, e.g. Salesforce's 15-day deleted window) read everything and then
sweep: a record of this connection that the full pull did not see is marked
deleted (``generation`` counts full pulls).

**The run** is :mod:`sync.pull_runner`'s (this module is its contacts stream).
**One pull per connection at a time**: ``directory_sync_state.running_since``
is set under the row's lock (``FOR UPDATE`` on PostgreSQL, the write lock on
SQLite) and cleared at the end; a pull older than ``sync_lock_minutes``
(default 30) is presumed dead and its lock taken over.

**Limits**: a ``RateLimited`` error stores ``paused_until`` (the provider's
reset) on the pull's state and, through :mod:`sync.connection_use`, on the
connection; the cursor and checkpoint are kept; the beat resumes after the reset.
A pull (unless forced) waits for the connection's pause like every other use.

**Scheduling**: ``due_connections`` lists the CRM connections whose
``sync_interval_minutes`` (connection setting, default 15; 0 disables) has
passed since their last pull; the beat task enqueues one pull each.

Phones are normalised to E.164 in the tenant's ``phone_region``; each is also
stored as its digits reversed, so "ends with 345678" is a prefix range scan.

A sensitive tenant's directory is written sealed (``sync.store.directory``: names,
companies, emails and phones encrypted, lookups through keyed hashes): an exact
number, the same last 9 digits, and whole words of a name still find a contact;
fewer final digits or the start of a word only find unsealed rows.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

import phonenumbers
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from connectors.base import CursorExpired
from connectors.catalog import with_part
from connectors.crm import CrmContact, CrmDeletion
from sync import pull_runner
from sync.connection_use import ClientPool, Part
from sync.links import caller_candidates, stored_caller_id
from sync.pull_runner import Page, Progress, PullContext, PullOutcome, Save
from sync.store.crypto import lookup_tokens
from sync.store.db import session_scope
from sync.store.directory import (
    SUFFIX_DIGITS,
    DirectoryContact,
    DirectoryPhone,
    DirectorySyncState,
    name_key,
    name_word_tokens,
    phone_row,
    sealed_contact_row,
)
from sync.store.models import Connection, ExternalLink, PullCursor, utcnow

log = logging.getLogger(__name__)

STREAM = "contacts"
PROVIDERS = with_part("contacts")  # the catalogue's providers with a contact reader
DEFAULT_INTERVAL_MINUTES = 15
DEFAULT_LOOKBACK_SECONDS = 120
DEFAULT_LOCK_MINUTES = 30
MIN_SUFFIX_DIGITS = 6
MAX_MATCHES = 20

@dataclass
class ContactsPull(PullOutcome):
    """A contacts pull's outcome (``sync.pull_runner.PullOutcome`` and its counters)."""

    mode: str = ""  # full | incremental (| resumed full/incremental)
    records_in: int = 0  # records written (new or changed)
    unchanged: int = 0  # read again but identical (lookback, full re-reads)
    deleted: int = 0
    pages: int = 0
    resumed: bool = False


# ------------------------------------------------------------------ phones and names


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text or "")


def normalize_phone(raw: str, region: str | None) -> str | None:
    """E.164 of ``raw`` read in ``region``, or None when it is not a phone number."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _prefix_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (digits)."""
    stripped = prefix.rstrip("9")
    if not stripped:
        return None
    return stripped[:-1] + chr(ord(stripped[-1]) + 1)


# ------------------------------------------------------------------ cursor and lock


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _dump(cursor: dict[str, Any]) -> str:
    return json.dumps(cursor, sort_keys=True)


# ------------------------------------------------------------------ writing


@dataclass
class _Target:
    tenant_id: str
    connection_id: str
    provider: str
    region: str | None
    sealed: bool = False  # a sensitive tenant's directory: sealed at rest


def contact_key(connection_id: str, record: CrmContact | CrmDeletion) -> str:
    return f"{connection_id}:{record.object}:{record.id}"


def _apply_page(
    session: Session, target: _Target, records: Sequence[CrmContact], generation: int
) -> tuple[int, int]:
    """Upsert one page; returns (written, unchanged)."""
    by_key: dict[str, CrmContact] = {}
    for record in records:
        by_key[contact_key(target.connection_id, record)] = record  # the last copy wins
    if not by_key:
        return 0, 0
    existing = {
        row.id: (row.crm_updated_at, row.deleted)
        for row in session.execute(
            select(
                DirectoryContact.id, DirectoryContact.crm_updated_at, DirectoryContact.deleted
            ).where(DirectoryContact.id.in_(list(by_key)))
        )
    }
    same = [
        k
        for k, r in by_key.items()
        if k in existing and not existing[k][1] and existing[k][0] == r.updated_at
    ]
    if same:
        session.execute(
            update(DirectoryContact)
            .where(DirectoryContact.id.in_(same))
            .values(generation=generation)
        )
    changed = [k for k in by_key if k not in set(same)]
    if not changed:
        return 0, len(same)
    stale = [k for k in changed if k in existing]
    if stale:
        session.execute(delete(DirectoryPhone).where(DirectoryPhone.contact_id.in_(stale)))
        session.execute(delete(DirectoryContact).where(DirectoryContact.id.in_(stale)))
    now = utcnow()
    contacts, phones = [], []
    for key in changed:
        record = by_key[key]
        normalized: list[str] = []
        for raw in record.phones:
            e164 = normalize_phone(raw, target.region) or _digits(raw)
            if e164 and e164 not in normalized:
                normalized.append(e164)
        contacts.append(
            {
                "id": key,
                "tenant_id": target.tenant_id,
                "connection_id": target.connection_id,
                "provider": target.provider,
                "crm_object": record.object,
                "crm_id": record.id,
                "name": record.name[:300],
                "name_key": name_key(record.name)[:300],
                "company": (record.company or None) and record.company[:300],
                "owner": record.owner,
                "emails": list(record.emails),
                "phones": normalized,
                "crm_updated_at": record.updated_at,
                "deleted": False,
                "generation": generation,
                "synced_at": now,
            }
        )
        phones += phone_rows(key, target.tenant_id, normalized, target.sealed)
    _link_callers(session, target, contacts)  # (reads the plaintext rows)
    if target.sealed:
        contacts = [sealed_contact_row(row) for row in contacts]
    session.execute(insert(DirectoryContact), contacts)
    if phones:
        session.execute(insert(DirectoryPhone), phones)
    return len(changed), len(same)


def phone_rows(contact_id: str, tenant_id: str, numbers: Iterable[str],
               sealed: bool) -> list[dict[str, Any]]:
    """The ``directory_phones`` rows of a contact's numbers (6 digits or more)."""
    return [phone_row(contact_id, tenant_id, e164, sealed) for e164 in numbers
            if len(_digits(e164)) >= MIN_SUFFIX_DIGITS]


def _link_callers(session: Session, target: _Target, contacts: list[dict[str, Any]]) -> None:
    """Teach the delivery connectors the callers this directory knows: a link from the
    caller key (``tel:+33…``, ``mail:…``, as ``connectors.crm.caller_key`` makes it) to
    the CRM record, whatever format the number was typed in. A link already there (one a
    connector wrote, or an older record) is kept. One query and one insert per page."""
    wanted: dict[tuple[str, str], str] = {}
    for row in contacts:
        keys = [f"tel:{p}" for p in row["phones"] if p.startswith("+")]
        keys += [f"mail:{e}" for e in row["emails"]]
        for key in keys:
            wanted.setdefault((key, row["crm_object"]), row["crm_id"])
    if not wanted:
        return
    # a sensitive tenant's links are stored by keyed hash (sync.links), found in any form
    forms = {key: caller_candidates(key) for key, _ in wanted}
    have = set(session.execute(
        select(ExternalLink.local_id, ExternalLink.remote_type).where(
            ExternalLink.connection_id == target.connection_id,
            ExternalLink.local_type == "caller",
            ExternalLink.local_id.in_({f for fs in forms.values() for f in fs}),
        )
    ).all())  # fmt: skip
    rows = [
        {"tenant_id": target.tenant_id, "connection_id": target.connection_id,
         "local_type": "caller", "local_id": stored_caller_id(key, target.sealed)[:200],
         "remote_type": remote_type, "remote_id": crm_id}
        for (key, remote_type), crm_id in wanted.items()
        if not any((form, remote_type) in have for form in forms[key])
    ]  # fmt: skip
    if rows:
        session.execute(insert(ExternalLink), rows)


def _apply_deletions(session: Session, target: _Target, items: Iterable[CrmDeletion]) -> int:
    """Mark deleted what the CRM deleted after our copy was modified (not a restored one)."""
    stamps = {contact_key(target.connection_id, d): d.deleted_at for d in items}
    if not stamps:
        return 0
    gone = []
    for key, updated_at in session.execute(
        select(DirectoryContact.id, DirectoryContact.crm_updated_at).where(
            DirectoryContact.id.in_(list(stamps)), DirectoryContact.deleted.is_(False)
        )
    ):
        deleted_at = stamps[key]
        if deleted_at is None or updated_at is None or deleted_at >= updated_at:
            gone.append(key)
    return _mark_deleted(session, gone)


def _mark_deleted(session: Session, keys: list[str]) -> int:
    """Mark directory contacts deleted, and forget the caller links to them (a link to a
    deleted record would send the next call to it)."""
    for start in range(0, len(keys), 500):
        part = keys[start : start + 500]
        records: dict[tuple[str, str], list[str]] = {}
        for connection_id, crm_object, crm_id in session.execute(
            select(DirectoryContact.connection_id, DirectoryContact.crm_object,
                   DirectoryContact.crm_id).where(DirectoryContact.id.in_(part))
        ).all():  # fmt: skip
            records.setdefault((connection_id, crm_object), []).append(crm_id)
        for (connection_id, crm_object), crm_ids in records.items():
            session.execute(
                delete(ExternalLink).where(
                    ExternalLink.connection_id == connection_id,
                    ExternalLink.local_type == "caller",
                    ExternalLink.remote_type == crm_object,
                    ExternalLink.remote_id.in_(crm_ids),
                )
            )
        session.execute(delete(DirectoryPhone).where(DirectoryPhone.contact_id.in_(part)))
        session.execute(
            update(DirectoryContact)
            .where(DirectoryContact.id.in_(part))
            .values(deleted=True, synced_at=utcnow())
        )
    return len(keys)


def _sweep(session: Session, connection_id: str, generation: int) -> int:
    keys = list(
        session.scalars(
            select(DirectoryContact.id).where(
                DirectoryContact.connection_id == connection_id,
                DirectoryContact.generation < generation,
                DirectoryContact.deleted.is_(False),
            )
        )
    )
    return _mark_deleted(session, keys)


# ------------------------------------------------------------------ the pull


class ContactsStream:
    """The CRM contacts as a :class:`sync.pull_runner.Stream`: one partition; the
    cursor is a JSON object (``since``: when the last successful pull started,
    ``generation``: full pulls done, ``run``: the pull under way with the reader's
    checkpoint, ``deleted_since`` / ``deleted_checked_at``: the deletions log)."""

    name: ClassVar[str] = STREAM
    part: ClassVar[Part] = "contacts"
    what: ClassVar[str] = ""
    state: ClassVar[Any] = DirectorySyncState
    zeros: ClassVar[dict[str, int]] = {"records_in": 0, "records_out": 0, "deleted_in": 0}
    lock_minutes: ClassVar[float] = DEFAULT_LOCK_MINUTES
    interval_minutes: ClassVar[float] = DEFAULT_INTERVAL_MINUTES
    pool: ClassVar[ClientPool | None] = None

    def providers(self) -> Sequence[str]:
        return PROVIDERS

    def not_mine(self, provider: str) -> str:
        return f"{provider} has no contact directory"

    def outcome(self, row: Connection) -> ContactsPull:
        return ContactsPull(row.id, row.tenant_id, row.name, row.provider)

    def counts(self, outcome: ContactsPull) -> dict[str, int]:
        return {"records_in": outcome.records_in, "deleted_in": outcome.deleted}

    def partitions(self, ctx: PullContext, only: Sequence[str] | None) -> list[str]:
        return [""]

    def summary(self, outcome: ContactsPull) -> str:
        return (f"{outcome.mode}, {outcome.records_in} in, {outcome.deleted} deleted, "
                f"{outcome.calls} calls")  # fmt: skip

    def expired(self, ctx: PullContext, key: pull_runner.CursorKey, exc: CursorExpired,
                outcome: ContactsPull) -> str | None:  # fmt: skip
        """A full run from the stored cursor (its generation goes on: the sweep needs it).
        The deletions log's expiry is handled in ``read`` (the run goes on in full)."""
        outcome.note = f"full resync: {exc}"
        return pull_runner.load_cursor(key)

    def finish(self, ctx: PullContext, done: list[str], outcome: ContactsPull) -> None:
        return None

    def read(
        self, client: Any, ctx: PullContext, partition: str, cursor_text: str | None,
        full: bool, outcome: ContactsPull,
    ) -> Iterator[Page]:  # fmt: skip
        """Deletions since the cursor first, then the records changed since it; a
        cursor the CRM cannot answer from any more turns the run into a full one
        (the generation goes on: the sweep needs it)."""
        reader = client
        lookback = timedelta(seconds=float(
            ctx.settings.get("sync_lookback_seconds", DEFAULT_LOOKBACK_SECONDS)))  # fmt: skip
        cursor: dict[str, Any] = json.loads(cursor_text) if cursor_text else {}
        run = cursor.get("run")
        if run is None or full:
            run = _new_run(cursor, full, lookback)
        else:
            outcome.resumed = True
        cursor["run"] = run
        yield Page(_dump(cursor))  # the run is recorded before any read
        outcome.mode = run["mode"]
        every = getattr(reader, "deletions_every", None)  # a listing that grows with the archive
        checked = _dt(cursor.get("deleted_checked_at"))
        if not run["deletes_done"] and every is not None and checked is not None \
                and _dt(run["started"]) - checked < every:
            run["deletes_done"], run["deletions_skipped"] = True, True  # bounded: not due yet
        if not run["deletes_done"]:
            try:
                deleted_since = _dt(run.get("deleted_since") or run["since"])
                for batch in reader.deleted(deleted_since, _dt(run["started"])):
                    yield Page(_dump(cursor), data=("deleted", list(batch)))
                covered = getattr(reader, "deletions_covered_until", None)
                if covered is not None:
                    run["deleted_until"] = _iso(covered)
            except CursorExpired as exc:
                outcome.note = f"full resync: {exc}"
                run = _new_run(cursor, True, lookback)
                outcome.mode = "full"
            run["deletes_done"] = True
            cursor["run"] = run
            yield Page(_dump(cursor))
        for page in reader.changed(_dt(run["since"]), run["checkpoint"]):
            run["checkpoint"] = page.checkpoint
            cursor["run"] = run
            yield Page(_dump(cursor), data=("changed", page, run["generation"]), report=True)
        done = {
            "since": run["started"], "generation": run["generation"], "run": None,
            "last_mode": run["mode"],
            "deleted_since": run.get("deleted_until") or run["started"],
            "deleted_checked_at": cursor.get("deleted_checked_at")
            if run.get("deletions_skipped") else run["started"],
        }  # fmt: skip
        yield Page(_dump(done), full=run["mode"] == "full",
                   data=("end", run["mode"], run["generation"]))  # fmt: skip

    def apply(
        self, ctx: PullContext, partition: str, page: Page, outcome: ContactsPull, save: Save
    ) -> None:
        target = _Target(ctx.row.tenant_id, ctx.row.id, ctx.row.provider,
                         ctx.config.phone_region, bool(ctx.config.sensitive))
        kind = page.data[0] if page.data else None
        with session_scope() as session:
            if kind == "deleted":
                outcome.deleted += _apply_deletions(session, target, page.data[1])
            elif kind == "changed":
                _, records, generation = page.data
                written, same = _apply_page(session, target, records.records, generation)
                outcome.records_in += written
                outcome.unchanged += same
                outcome.pages += 1
            elif kind == "end" and page.data[1] == "full":  # what the full pull did not see
                outcome.deleted += _sweep(session, target.connection_id, page.data[2])
            save(session)


CONTACTS = ContactsStream()


def pull_connection(
    connection_id: str,
    *,
    full: bool = False,
    force: bool = False,
    only_if_due: bool = False,
    progress: Progress | None = None,
) -> ContactsPull:
    """Pull one CRM connection's contacts into the directory (see the module doc;
    the lock, pause, cursor and outcome are :mod:`sync.pull_runner`'s).

    ``force`` ignores a pause; ``only_if_due`` skips a connection pulled less than
    its interval ago (the beat's tasks); ``progress`` is called after each page."""
    outcome: ContactsPull = pull_runner.run(
        CONTACTS, connection_id, full=full, force=force, only_if_due=only_if_due,
        progress=progress,
    )  # fmt: skip
    return outcome


def _new_run(cursor: dict[str, Any], full: bool, lookback: timedelta) -> dict[str, Any]:
    since = _dt(cursor.get("since"))
    generation = int(cursor.get("generation") or 0)
    started = utcnow()
    if full or since is None:
        return {"mode": "full", "since": None, "started": started.isoformat(),
                "generation": generation + 1, "checkpoint": None, "deletes_done": True}  # fmt: skip
    # Deletions resume where the provider's log said it stopped covering (Salesforce's
    # latestDateCovered), which may be earlier than the last pull's start.
    deleted_since = _dt(cursor.get("deleted_since")) or since
    return {"mode": "incremental", "since": _iso(since - lookback),
            "deleted_since": _iso(min(deleted_since, since) - lookback),
            "started": started.isoformat(), "generation": generation, "checkpoint": None,
            "deletes_done": False}  # fmt: skip


# ------------------------------------------------------------------ scheduling


def due_connections(now: datetime | None = None) -> list[str]:
    """Active CRM connections whose pull interval has passed (beat)."""
    return pull_runner.due_connections(CONTACTS, now)


def crm_connections(tenant: str | None = None, name: str | None = None) -> list[str]:
    with session_scope(readonly=True) as session:
        query = select(Connection.id).where(Connection.provider.in_(PROVIDERS))
        if tenant:
            query = query.where(Connection.tenant_id == tenant)
        if name:
            query = query.where(Connection.name == name)
        return list(session.scalars(query.order_by(Connection.tenant_id, Connection.name)))


# ------------------------------------------------------------------ status


def sync_status(session: Session, tenant_id: str | None = None) -> list[dict[str, Any]]:
    """Per CRM connection: last success, cursor age, records in/out, errors."""
    now = utcnow()
    query = select(Connection).where(Connection.provider.in_(PROVIDERS))
    if tenant_id:
        query = query.where(Connection.tenant_id == tenant_id)
    out = []
    for conn in session.scalars(query.order_by(Connection.tenant_id, Connection.name)):
        state = session.get(DirectorySyncState, conn.id)
        cursor_row = session.get(PullCursor, (conn.id, STREAM, ""))
        cursor = json.loads(cursor_row.cursor) if cursor_row and cursor_row.cursor else {}
        since = _dt(cursor.get("since"))
        live = session.scalar(
            select(func.count()).where(
                DirectoryContact.connection_id == conn.id, DirectoryContact.deleted.is_(False)
            )
        )
        running = bool(state and state.running_since)
        paused = bool(state and state.paused_until and state.paused_until > now)
        out.append(
            {
                "tenant": conn.tenant_id,
                "connection": conn.name,
                "provider": conn.provider,
                "connection_status": conn.status,
                "state": "running" if running else "paused" if paused else "idle",
                "interval_minutes": max(
                    0.0,
                    float(
                        (conn.settings or {}).get("sync_interval_minutes", DEFAULT_INTERVAL_MINUTES)
                    ),
                ),
                "last_started_at": _iso(state.last_started_at) if state else None,
                "last_success_at": _iso(state.last_success_at) if state else None,
                "cursor": _iso(since),
                "cursor_age_seconds": round((now - since).total_seconds(), 1) if since else None,
                "resumable": bool(cursor.get("run")),
                "contacts": int(live or 0),
                "records_in": state.records_in if state else 0,
                "records_out": state.records_out if state else 0,
                "deleted_in": state.deleted_in if state else 0,
                "last_error": state.last_error if state else None,
                "last_error_at": _iso(state.last_error_at) if state else None,
                "paused_until": _iso(state.paused_until) if paused and state else None,
                "last_run": (state.last_run if state else None) or None,
            }
        )
    return out


# ------------------------------------------------------------------ lookup


@dataclass
class PhoneQuery:
    digits: str
    e164: str | None
    suffix: str = field(default="")


def parse_phone_query(text: str, region: str | None) -> PhoneQuery:
    """What the secretary typed: a full number in any format, or its last digits.
    Raises ValueError when it holds fewer than 6 digits."""
    digits = _digits(text)
    if len(digits) < MIN_SUFFIX_DIGITS:
        raise ValueError(
            f"{text!r} has {len(digits)} digit(s); give at least {MIN_SUFFIX_DIGITS} "
            "(the end of the number is enough)"
        )
    e164 = None
    stripped = text.strip()
    if stripped.startswith("+") or stripped.startswith("00") or len(digits) >= 9:
        candidate = normalize_phone(stripped, region)
        if candidate is not None:
            try:
                valid = phonenumbers.is_valid_number(phonenumbers.parse(candidate, None))
            except phonenumbers.NumberParseException:
                valid = False
            e164 = candidate if valid else None
    basis = _digits(e164) if e164 else digits
    return PhoneQuery(digits, e164, basis[-SUFFIX_DIGITS:])


def lookup_phone(
    session: Session, tenant_id: str, query: PhoneQuery, limit: int = MAX_MATCHES
) -> list[dict[str, Any]]:
    """Matches best first: the exact E.164 number, then the same last 9 digits
    (the number written another way), then numbers ending with what was typed.
    Sealed rows (a sensitive tenant's) match the first two by keyed hash."""
    ranks: dict[str, tuple[int, str]] = {}
    if query.e164:
        for cid, e164 in session.execute(
            select(DirectoryPhone.contact_id, DirectoryPhone.e164)
            .where(DirectoryPhone.tenant_id == tenant_id,
                   DirectoryPhone.e164.in_([query.e164, *lookup_tokens(query.e164)]))
            .limit(limit)
        ):
            ranks.setdefault(cid, (0, query.e164 if e164.startswith("k") else e164))
    if len(query.suffix) >= SUFFIX_DIGITS:  # sealed rows: the keyed hash of the last 9
        for cid in session.scalars(
            select(DirectoryPhone.contact_id).where(
                DirectoryPhone.tenant_id == tenant_id,
                DirectoryPhone.reversed_digits.in_(lookup_tokens(query.suffix)))
            .limit(limit)
        ):
            ranks.setdefault(cid, (1, "suffix:" + query.suffix))
    prefix = query.suffix[::-1]
    condition = [DirectoryPhone.tenant_id == tenant_id, DirectoryPhone.reversed_digits >= prefix]
    bound = _prefix_bound(prefix)
    if bound is not None:
        condition.append(DirectoryPhone.reversed_digits < bound)
    rank = 1 if len(query.suffix) >= SUFFIX_DIGITS else 2
    for cid, e164 in session.execute(
        select(DirectoryPhone.contact_id, DirectoryPhone.e164).where(*condition).limit(limit * 5)
    ):
        ranks.setdefault(cid, (rank, e164))
    return _contacts(session, tenant_id, ranks, limit)


def search_name(
    session: Session, tenant_id: str, text: str, limit: int = MAX_MATCHES
) -> list[dict[str, Any]]:
    """Names starting with ``text``; sealed rows (a sensitive tenant's): names holding
    each word of ``text`` as a whole word (keyed hashes, whatever the key)."""
    key = name_key(text)
    if not key:
        return []
    ids = list(session.scalars(
        select(DirectoryContact.id)
        .where(
            DirectoryContact.tenant_id == tenant_id,
            DirectoryContact.name_key >= key,
            DirectoryContact.name_key < key + "\uffff",
            DirectoryContact.deleted.is_(False),
        )
        .order_by(DirectoryContact.name_key)
        .limit(limit)
    ))
    words = [or_(*(DirectoryContact.name_kh.contains(token, autoescape=True)
                   for token in name_word_tokens(word))) for word in key.split()]
    ids += session.scalars(
        select(DirectoryContact.id)
        .where(DirectoryContact.tenant_id == tenant_id, DirectoryContact.sealed.is_(True),
               DirectoryContact.deleted.is_(False), *words)
        .limit(limit)
    )
    return _contacts(session, tenant_id, {cid: (3, "") for cid in ids}, limit)


def _contacts(
    session: Session, tenant_id: str, ranks: dict[str, tuple[int, str]], limit: int
) -> list[dict[str, Any]]:
    if not ranks:
        return []
    rows = session.scalars(
        select(DirectoryContact).where(
            DirectoryContact.id.in_(list(ranks)),
            DirectoryContact.tenant_id == tenant_id,
            DirectoryContact.deleted.is_(False),
        )
    ).all()
    labels = {0: "exact", 1: "number", 2: "suffix", 3: "name"}
    rows = sorted(rows, key=lambda c: (ranks[c.id][0], name_key(c.name), c.id))[:limit]
    return [
        {
            "name": c.name,
            "company": c.company,
            "phones": list(c.phones or []),
            "emails": list(c.emails or []),
            "owner": c.owner,
            "crm": {"provider": c.provider, "object": c.crm_object, "id": c.crm_id},
            "match": labels[ranks[c.id][0]],
            "matched_phone": _matched(ranks[c.id][1], c.phones) or None,
            "updated_at": _iso(c.crm_updated_at),
        }
        for c in rows
    ]


def _matched(phone: str, phones: list[str] | None) -> str:
    """The number that matched; for a sealed row matched by its last digits
    (``suffix:…``), the contact's number ending with them."""
    if not phone.startswith("suffix:"):
        return phone
    return next((p for p in phones or [] if _digits(p).endswith(phone[7:])), "")


def is_known_caller(session: Session, tenant_id: str, phone: str | None) -> bool | None:
    """Whether the caller's number is in the tenant's CRM directory.

    None (unknown) while no CRM directory of the tenant has completed a pull: a
    rule on ``known_contact`` must not treat every caller as new before then.
    """
    synced = session.scalar(
        select(DirectorySyncState.connection_id)
        .where(
            DirectorySyncState.tenant_id == tenant_id,
            DirectorySyncState.last_success_at.is_not(None),
        )
        .limit(1)
    )
    if synced is None:
        return None
    if not phone:
        return False
    found = session.scalar(
        select(DirectoryContact.id)
        .join(DirectoryPhone, DirectoryPhone.contact_id == DirectoryContact.id)
        .where(
            DirectoryPhone.tenant_id == tenant_id,
            DirectoryPhone.e164.in_([phone, *lookup_tokens(phone)]),  # sealed: keyed hash
            DirectoryContact.deleted.is_(False),
        )
        .limit(1)
    )
    return found is not None
