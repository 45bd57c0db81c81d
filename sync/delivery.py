"""The delivery engine: claim a batch for one connection, hand it to the
connector, record each result; sweep what was lost; replay what died.

Claims are atomic: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so workers take
disjoint batches, ``BEGIN IMMEDIATE`` on SQLite so they take turns. A claimed
delivery carries a lease; if its worker dies the sweep takes it back. Every
send carries the delivery's idempotency key, so a send repeated after a crash
is recognised by the destination.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.orm import Session

from connectors.base import (
    AuthExpired,
    ConnectionInfo,
    DeliveryError,
    DeliveryRequest,
    DeliveryResult,
    Held,
    RateLimited,
    Rejected,
    TransientError,
)
from connectors.registry import connector_class, delivers, max_batch
from mappings.rules import TemplateRenderError
from sync import metrics
from sync.calendar_notices import ACTION as NOTICE_ACTION
from sync.calendar_notices import notice_payload
from sync.connection_use import (
    ConnectionUnavailable,
    act_on_in,
    blocked,
    build,
    info_for,
    refresh,
    retry_later,
    runtime_for,
)
from sync.digest import ITEM as DIGEST_ITEM
from sync.digest import SUMMARY as DIGEST_SUMMARY
from sync.digest import items as digest_items
from sync.digest import settle as settle_digest
from sync.links import ConnectionLinks
from sync.payloads import (
    appointment_payload,
    channel_payload,
    digest_payload,
    message_payload,
    notice_form,
)
from sync.privacy.crm_erase import ERASE_ACTION, erase_payload
from sync.reports.schedule import ACTION as REPORT_ACTION
from sync.reports.schedule import report_payload
from sync.settings import Settings, get_settings
from sync.store.db import session_scope
from sync.store.models import AuditEvent, Connection, Delivery, Message, Tenant, utcnow
from sync.tenants import parsed_config

log = logging.getLogger(__name__)
# Delivery params kinds sent as email / SMS built by Relais (payload["email"|"sms"]).
CHANNEL_KINDS = ("email", "sms", "escalation")
URGENT = "urgent"  # the urgency that skips a connector's batching linger


@dataclass
class BatchOutcome:
    connection_id: str
    claimed: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    # Seconds until this connection should be looked at again, or None.
    run_again_in: float | None = None
    notes: list[str] = field(default_factory=list)


def backoff_seconds(attempt: int, settings: Settings, rng: random.Random | None = None) -> float:
    """Exponential backoff with equal jitter: half fixed, half random."""
    rng = rng or random.Random()  # noqa: S311 - jitter, not security
    exponential = settings.delivery_backoff_base * 2 ** (attempt - 1)
    ceiling = min(settings.delivery_backoff_max, exponential)
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


_EVENTS = "relais_delivery_events"


def _event(session: Session, delivery: Delivery, kind: str, **detail: Any) -> None:
    """One history row; queued in a batch transaction (see ``_batched_events``)."""
    row = {
        "tenant_id": delivery.tenant_id,
        "at": utcnow(),
        "kind": kind,
        "subject_type": "delivery",
        "subject_id": delivery.id,
        "detail": detail,
    }
    queued = session.info.get(_EVENTS)
    if queued is None:
        session.add(AuditEvent(**row))
    else:
        queued.append(row)


@contextmanager
def _batched_events(session: Session) -> Iterator[None]:
    """History rows written in this block go to the database in one INSERT."""
    session.info[_EVENTS] = []
    yield
    rows = session.info.pop(_EVENTS)
    if rows:
        session.execute(insert(AuditEvent), rows)


def _claim(
    session: Session, connection: Connection, now: datetime, settings: Settings, limit: int
) -> list[Delivery]:
    """Up to ``limit`` due deliveries of the connection (its row is locked by the
    caller), marked in flight under a lease."""
    if (connection.settings or {}).get("ordered"):
        claimed = _ordered_head(session, connection, now, limit)
    else:
        claimed = list(session.scalars(
            select(Delivery)
            .where(
                Delivery.connection_id == connection.id,
                Delivery.status == "pending",
                Delivery.next_attempt_at <= now,
                Delivery.action != DIGEST_ITEM,  # sent within their digest's summary
            )
            .order_by(Delivery.next_attempt_at, Delivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ))
    lease = now + timedelta(seconds=settings.delivery_lease_seconds)
    with _batched_events(session):
        for delivery in claimed:
            delivery.status = "in_flight"
            delivery.attempts += 1
            delivery.leased_until = lease
            _event(session, delivery, "delivery.attempt", attempt=delivery.attempts)
    return claimed


def _ordered_head(
    session: Session, connection: Connection, now: datetime, limit: int
) -> list[Delivery]:
    """An ordered connection (``ordered: true``) sends in the order the deliveries
    were written, and nothing overtakes a delivery waiting for its retry: nothing
    while one is in flight (another batch, or a worker whose lease has not expired
    yet), else the oldest pending ones that are due, stopping at the first that is
    not. A dead delivery no longer holds the line (replayed, it is first again)."""
    busy = session.scalar(select(Delivery.id).where(
        Delivery.connection_id == connection.id, Delivery.status == "in_flight").limit(1))
    if busy is not None:
        return []
    line = session.scalars(
        select(Delivery)
        .where(Delivery.connection_id == connection.id, Delivery.status == "pending",
               Delivery.action != DIGEST_ITEM)
        .order_by(Delivery.created_at, Delivery.id)
        .limit(limit)
        .with_for_update()
    )
    return list(itertools.takewhile(lambda d: d.next_attempt_at <= now, line))


def _requests(
    session: Session,
    deliveries: list[Delivery],
    failed: list[DeliveryResult] | None = None,
) -> list[DeliveryRequest]:
    """The payloads of a claimed batch. A delivery whose payload cannot be built (a
    template failing on this message) goes to ``failed`` as a rejection with the reason."""
    # One query per table for the whole batch, kept here: the session's identity
    # map holds rows weakly, so a discarded preload would be read again per delivery.
    messages = {
        m.id: m
        for m in session.scalars(
            select(Message).where(
                Message.id.in_({d.message_id for d in deliveries if d.message_id})
            )
        )
    }
    tenants = {
        t.id: t
        for t in session.scalars(
            select(Tenant).where(Tenant.id.in_({d.tenant_id for d in deliveries}))
        )
    }
    requests = []
    for delivery in deliveries:
        tenant = tenants[delivery.tenant_id]
        try:
            payload = _payload(session, tenant, delivery, messages)
        except TemplateRenderError as exc:
            if failed is None:
                raise
            failed.append(DeliveryResult(delivery.id, error=Rejected(str(exc))))
            continue
        if payload is None:
            requests.append(_appointment_request(tenant, delivery))
            continue
        requests.append(
            DeliveryRequest(
                delivery_id=delivery.id,
                idempotency_key=delivery.idempotency_key,
                action=delivery.action,
                payload=payload,
                attempt=delivery.attempts,
            )
        )
    return requests


def _payload(
    session: Session, tenant: Tenant, delivery: Delivery, messages: dict[str, Message]
) -> dict[str, Any] | None:
    """What the connector receives (None: an appointment change, built elsewhere)."""
    config = parsed_config(tenant)
    if delivery.action == DIGEST_SUMMARY:
        members = digest_items(session, delivery)
        return digest_payload(
            config, tenant, delivery, members, lambda m: _staff_label(config, m.staff_id)
        )
    if delivery.action == NOTICE_ACTION:  # a calendar change told to people (pre-rendered)
        return notice_payload(tenant.id, tenant.name, delivery)
    if delivery.action == REPORT_ACTION:  # a scheduled report (rendered when written)
        return report_payload(tenant.id, tenant.name, delivery)
    if delivery.action == ERASE_ACTION:  # a person's records deleted at the CRM
        return erase_payload(tenant, delivery)
    if delivery.message_id is None and delivery.appointment_id is not None:
        return None
    message = messages.get(delivery.message_id) if delivery.message_id else None
    assert message is not None
    staff = _staff_label(config, message.staff_id)
    if (delivery.params or {}).get("kind") in CHANNEL_KINDS:
        return channel_payload(config, tenant, message, delivery, staff)
    call_type = config.call_type(message.call_type)
    labels = {
        "call_type_label": call_type.label if call_type else message.call_type,
        "staff": staff,
        "tenant": {"timezone": config.timezone, "phone_region": config.phone_region},
    }
    payload = message_payload(tenant, message, delivery, labels)
    if (delivery.params or {}).get("redact"):  # the connection's ``content: notice``
        return notice_form(config, tenant, message, payload)
    return payload


def _staff_label(config: Any, staff_id: str | None) -> dict[str, Any] | None:
    staff = config.staff_member(staff_id) if staff_id else None
    if staff is None:
        return None
    return {
        "id": staff.id,
        "name": staff.name,
        "email": staff.email,
        "crm_owner_id": staff.crm_owner_id,
    }


def _appointment_request(tenant: Tenant, delivery: Delivery) -> DeliveryRequest:
    """An appointment change, from the snapshot written with the delivery (sync.booking)."""
    config = parsed_config(tenant)
    staff_id = ((delivery.params or {}).get("appointment") or {}).get("staff_id")
    labels = {
        "staff": _staff_label(config, staff_id),
        "tenant": {"timezone": config.timezone, "phone_region": config.phone_region},
    }
    return DeliveryRequest(
        delivery_id=delivery.id,
        idempotency_key=delivery.idempotency_key,
        action=delivery.action,
        payload=appointment_payload(tenant, delivery, labels),
        attempt=delivery.attempts,
    )


PIPELINE_SECONDS = 30.0  # one task sends full batches back to back for at most this long


def process_connection(
    connection_id: str,
    settings: Settings | None = None,
    wake: Callable[[str], None] | None = None,
) -> BatchOutcome:
    """Deliver due deliveries of one connection: one batch, or several full ones.

    When a batch is full, ``wake`` enqueues the next task *before* this batch
    is sent, so another worker process can claim a batch meanwhile; and this
    run claims and builds its next batch while the current one is out
    (pipelining: a rate-limited provider is never idle while we do database
    work), for up to ``PIPELINE_SECONDS``. A connector with a linger waits for
    its batch to fill, up to that long, unless an urgent message is due.
    Database cost per batch: one claim transaction, one read, and one write
    transaction per group of results landed (plus one lease renewal per third
    of the lease while the batch is out).
    """
    settings = settings or get_settings()
    outcome = BatchOutcome(connection_id)
    try:
        refresh(connection_id)
    except ConnectionUnavailable as exc:
        if exc.reason == "needs_reauth":
            outcome.notes.append(f"needs re-authorization: {exc.detail}")
            return outcome
        if retry_later(exc):  # the token endpoint is down: try again shortly
            outcome.notes.append(exc.detail)
            outcome.run_again_in = 30.0
            return outcome
        assert exc.error is not None
        raise exc.error from None
    opened = _open(connection_id, settings, outcome)
    if opened is None:
        return outcome
    info, kind, claimed = opened
    limit = max_batch(info.provider)
    if len(claimed) >= limit:
        if wake is not None:
            wake(connection_id)
        else:
            outcome.run_again_in = 0.0
    if not claimed:
        return outcome
    links = ConnectionLinks(info.tenant_id, info.id)
    write_lock = threading.Lock()  # one run's result writes go one after the other
    batch: _Batch | None = _prepare(claimed, limit, links, info, settings, write_lock)
    recorders: list[_Recorder] = []
    deadline = time.monotonic() + PIPELINE_SECONDS
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="claim-ahead") as ahead:
            while batch is not None:
                recorders.append(batch.recorder)
                outcome.claimed += len(batch.claimed)
                upcoming = None
                if batch.full and time.monotonic() < deadline:
                    upcoming = ahead.submit(
                        _claim_ahead, connection_id, limit, links, info, settings, write_lock
                    )
                try:
                    results = _send(batch, kind, info, links)
                except BaseException:  # the batch claimed ahead is given back
                    if upcoming is not None and (claimed_ahead := upcoming.result()):
                        _release(claimed_ahead)
                    raise
                batch.recorder.finish([*results, *batch.unbuilt])
                following = upcoming.result() if upcoming is not None else None
                if following is not None and _stopped(results):
                    _release(following)
                    following = None
                if following is None and batch.full:
                    _again(outcome, 0.0)  # more may be due: another run picks it up
                batch = following
    finally:
        for recorder in recorders:
            recorder.close()
            _merge(outcome, recorder.outcome)
    return outcome


def _open(
    connection_id: str, settings: Settings, outcome: BatchOutcome
) -> tuple[ConnectionInfo, Any, list[Delivery]] | None:
    """Lock the connection, check it may send, claim the first batch."""
    with session_scope() as session:
        connection = session.get(
            Connection, connection_id, with_for_update=True, populate_existing=True
        )
        now = utcnow()
        why = blocked(connection, now)
        if why is not None and why.reason == "paused":
            assert why.until is not None
            outcome.run_again_in = (why.until - now).total_seconds()
            outcome.notes.append("paused by provider limit")
            return None
        if why is not None or connection is None:
            outcome.notes.append(f"connection {connection.status if connection else 'gone'}")
            return None
        if not delivers(connection.provider):  # a calendar connection: booking writes events
            outcome.notes.append(f"{connection.provider} connections have no deliveries")
            connection.wake_queued = False
            return None
        info = info_for(session, connection)
        kind = connector_class(info.provider)
        limit = max_batch(info.provider)
        linger = _linger_left(session, kind, connection.id, now, limit)
        if linger:
            outcome.run_again_in = linger  # the wake flag stays set: one task waits
            outcome.notes.append("waiting for the batch to fill")
            return None
        connection.wake_queued = False  # see sync.outbox.mark_wake
        claimed = _claim(session, connection, now, settings, limit)
        if len(claimed) >= limit:
            connection.wake_queued = True
        # Retries waiting for a later time need a task then too: one countdown per
        # batch covers only the earliest of the retries it scheduled.
        later = session.scalar(
            select(func.min(Delivery.next_attempt_at)).where(
                Delivery.connection_id == connection.id,
                Delivery.status == "pending",
                Delivery.next_attempt_at > now,
                Delivery.action != DIGEST_ITEM,  # their summary is due at the same time
            )
        )
        if later is not None:
            later = later if later.tzinfo else later.replace(tzinfo=UTC)
            _again(outcome, (later - now).total_seconds())
    return info, kind, claimed


@dataclass
class _Batch:
    claimed: list[Delivery]
    requests: list[DeliveryRequest]
    unbuilt: list[DeliveryResult]  # payloads that could not be built: rejections
    recorder: _Recorder
    full: bool


def _prepare(
    claimed: list[Delivery],
    limit: int,
    links: ConnectionLinks,
    info: ConnectionInfo,
    settings: Settings,
    write_lock: threading.Lock,
) -> _Batch:
    """Build the payloads (outside the claim: its write lock is held only to claim)
    and start the batch's recorder, which keeps its lease alive from now on."""
    recorder = _Recorder([d.id for d in claimed], links, info, settings, write_lock)
    recorder.start()
    unbuilt: list[DeliveryResult] = []
    try:
        with session_scope(readonly=True) as session:
            requests = _requests(session, claimed, unbuilt)
    except BaseException:
        recorder.close()
        raise
    return _Batch(claimed, requests, unbuilt, recorder, len(claimed) >= limit)


def _claim_ahead(
    connection_id: str,
    limit: int,
    links: ConnectionLinks,
    info: ConnectionInfo,
    settings: Settings,
    write_lock: threading.Lock,
) -> _Batch | None:
    """Claim and build the next batch while the current one is out (None: nothing
    due, or the connection may not send now)."""
    with session_scope() as session:
        connection = session.get(
            Connection, connection_id, with_for_update=True, populate_existing=True
        )
        now = utcnow()
        if blocked(connection, now) is not None:
            return None
        assert connection is not None
        claimed = _claim(session, connection, now, settings, limit)
    if not claimed:
        return None
    return _prepare(claimed, limit, links, info, settings, write_lock)


def _send(
    batch: _Batch, kind: Any, info: ConnectionInfo, links: ConnectionLinks
) -> list[DeliveryResult]:
    """Hand the batch to a fresh connector; one result per request, never raises
    for a connector bug (the batch is retried)."""
    if not batch.requests:
        return []
    runtime = runtime_for("connector", info, links=links, report=batch.recorder.report)
    connector = build("connector", info, runtime)
    try:
        results = connector.deliver(batch.requests)
    except Exception as exc:  # a connector bug must not strand the batch
        log.exception("connector %s crashed on a batch", info.provider)
        error = TransientError(f"internal error in the {info.provider} connector: {exc!r}")
        results = [DeliveryResult(r.delivery_id, error=error) for r in batch.requests]
    finally:
        connector.close()
    if len(results) != len(batch.requests):
        raise RuntimeError(f"{info.provider} connector returned {len(results)} results")
    return results


def _stopped(results: Sequence[DeliveryResult]) -> bool:
    """The provider said stop (rate limit) or the token died: send nothing more now."""
    return any(isinstance(r.error, RateLimited | AuthExpired) for r in results)


def _release(batch: _Batch) -> None:
    """Give back a batch claimed ahead that will not be sent now: pending again,
    its attempt not counted."""
    batch.recorder.abandon()
    with session_scope() as session, _batched_events(session):
        rows = session.scalars(
            select(Delivery)
            .where(Delivery.id.in_([d.id for d in batch.claimed]), Delivery.status == "in_flight")
            .with_for_update()
        )
        for row in rows:
            row.status, row.leased_until = "pending", None
            row.attempts = max(0, row.attempts - 1)
            _event(session, row, "delivery.released", reason="the connection must wait")


def _merge(total: BatchOutcome, part: BatchOutcome) -> None:
    total.delivered += part.delivered
    total.retried += part.retried
    total.dead += part.dead
    total.notes += part.notes
    if part.run_again_in is not None:
        _again(total, part.run_again_in)


class _Recorder:
    """Records a batch's results while the connector is still sending it.

    Invariants: a result is recorded at most once per run (the first report
    wins; ``_record`` also skips rows already delivered); the deliveries not
    yet recorded keep a live lease, renewed every third of the lease from the
    claim until recorded, so the sweep never re-queues a batch that is still
    being sent to a slow but healthy destination. A worker killed mid-batch
    re-sends only what was in flight or landed during the last commit (a group
    commit per wake-up: one transaction, however many results arrived).
    """

    # Stop renewing after this many: a batch wedged this long is taken back.
    MAX_RENEWALS = 30

    def __init__(
        self,
        delivery_ids: Sequence[str],
        links: ConnectionLinks,
        info: ConnectionInfo,
        settings: Settings,
        write_lock: threading.Lock,
    ) -> None:
        self.unrecorded = set(delivery_ids)
        self.links, self.info, self.settings = links, info, settings
        self.write_lock = write_lock
        self.outcome = BatchOutcome(info.id)
        self.landed: list[DeliveryResult] = []
        self.final: list[DeliveryResult] = []
        self.done = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="delivery-recorder", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def report(self, results: Sequence[DeliveryResult]) -> None:
        with self.cond:
            self.landed.extend(results)
            self.cond.notify()

    def finish(self, results: Sequence[DeliveryResult]) -> None:
        """All results are in: record what is left, in the background."""
        with self.cond:
            self.final = list(results)
            self.landed.extend(results)
            self.done = True
            self.cond.notify()

    def abandon(self) -> None:
        """Stop without recording anything (the batch was released)."""
        with self.cond:
            self.unrecorded.clear()
            self.done = True
            self.cond.notify()
        self.thread.join()

    def close(self) -> None:
        """Wait for the background writes; write here what they could not."""
        with self.cond:
            self.done = True
            self.cond.notify()
        self.thread.join()
        self.write(self.final)

    def _run(self) -> None:
        every = self.settings.delivery_lease_seconds / 3
        renew_at, renewals = time.monotonic() + every, 0
        while True:
            with self.cond:
                self.cond.wait_for(
                    lambda: self.landed or self.done, max(0.0, renew_at - time.monotonic())
                )
                landed, self.landed = self.landed, []
                done = self.done
            try:
                if landed:
                    self.write(landed)
                if not done and time.monotonic() >= renew_at and renewals < self.MAX_RENEWALS:
                    self._renew()
                    renewals += 1
                    renew_at = time.monotonic() + every
            except Exception:  # noqa: BLE001 - close() records what is left
                log.exception("recording results of connection %s failed", self.info.id)
                if done:
                    return
                with self.cond:
                    self.landed[:0] = landed
                time.sleep(0.5)
            if done:
                return

    def _renew(self) -> None:
        ids = sorted(self.unrecorded)
        if not ids:
            return
        lease = utcnow() + timedelta(seconds=self.settings.delivery_lease_seconds)
        with session_scope() as session:
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids), Delivery.status == "in_flight")
                .values(leased_until=lease)
            )

    def write(self, results: Sequence[DeliveryResult]) -> None:
        """Record the results not recorded yet, in one transaction."""
        with self.write_lock:
            # Once each: a result reported as it landed may come again in the final list.
            unique: dict[str, DeliveryResult] = {}
            for result in results:
                if result.delivery_id in self.unrecorded:
                    unique.setdefault(result.delivery_id, result)  # the first report wins
            results = list(unique.values())
            if not results:
                return
            with session_scope() as session, _batched_events(session):
                links = self.links.flush(session)
                rows = {
                    d.id: d
                    for d in session.scalars(
                        select(Delivery)
                        .where(Delivery.id.in_([r.delivery_id for r in results]))
                        .with_for_update()
                    )
                }
                with session.no_autoflush:
                    for result in results:
                        row = rows[result.delivery_id]
                        _record(session, row, result, self.info, self.settings, self.outcome)
                        settle_digest(session, row)
            self.links.forget(links)
            self.unrecorded.difference_update(r.delivery_id for r in results)


def _linger_left(
    session: Session, kind: Any, connection_id: str, now: datetime, limit: int
) -> float:
    """Seconds to wait for more deliveries before sending a partial batch (0: send).
    An urgent message due now never waits: it leaves with whatever is due."""
    linger = float(getattr(kind, "linger_seconds", 0.0))
    if linger <= 0:
        return 0.0
    count, oldest, urgent = session.execute(
        select(
            func.count(),
            func.min(Delivery.next_attempt_at),
            func.max(case((Message.urgency == URGENT, 1), else_=0)),
        )
        .select_from(Delivery)
        .outerjoin(Message, Message.id == Delivery.message_id)
        .where(
            Delivery.connection_id == connection_id,
            Delivery.status == "pending",
            Delivery.next_attempt_at <= now,
            Delivery.action != DIGEST_ITEM,
        )
    ).one()
    if not count or count >= limit or oldest is None or urgent:
        return 0.0
    if oldest.tzinfo is None:  # an aggregate skips the column type on SQLite
        oldest = oldest.replace(tzinfo=UTC)
    return max(0.0, linger - (now - oldest).total_seconds())


def _record(
    session: Session,
    delivery: Delivery,
    result: DeliveryResult,
    info: ConnectionInfo,
    settings: Settings,
    outcome: BatchOutcome,
) -> None:
    """Store one result. A whole batch is recorded in one transaction: if the
    worker dies before it commits, the batch is sent again under the same
    idempotency keys, which destinations de-duplicate on."""
    now = utcnow()
    if delivery.status == "delivered":
        return  # a duplicate run after a lease expiry; the first one recorded it
    if result.ok:
        delivery.status, delivery.delivered_at = "delivered", now
        delivery.external_id, delivery.last_error = result.external_id, None
        delivery.leased_until = None
        _event(session, delivery, "delivery.delivered", external_id=result.external_id)
        outcome.delivered += 1
        metrics.delivered(info.provider, (now - delivery.created_at).total_seconds())
        return
    error = result.error
    assert error is not None
    _fail(session, delivery, error, info, settings, outcome, now)


def _fail(
    session: Session,
    delivery: Delivery,
    error: DeliveryError,
    info: ConnectionInfo,
    settings: Settings,
    outcome: BatchOutcome,
    now: datetime,
) -> None:
    reason = str(error)
    delivery.last_error, delivery.leased_until = reason, None
    if isinstance(error, Rejected):
        delivery.status = "dead"
        _event(session, delivery, "delivery.dead", reason=reason)
        outcome.dead += 1
        metrics.failed(info.provider, "dead")
        return
    if isinstance(error, Held):
        # Never sent (an ordered batch stopped before it): pending again, no attempt
        # spent, still due; the line waits for the delivery that failed before it.
        delivery.attempts = max(0, delivery.attempts - 1)
        delivery.status = "pending"
        _event(session, delivery, "delivery.held", reason=reason)
        return
    if isinstance(error, RateLimited):
        # The provider's limit, not this record's fault: no attempt is spent.
        delivery.attempts = max(0, delivery.attempts - 1)
        until = act_on_in(session, info.id, error)  # the connection waits for the reset
        assert until is not None
        delivery.status, delivery.next_attempt_at = "pending", until
        _event(session, delivery, "delivery.rate_limited", resume_at=until.isoformat())
        _again(outcome, (until - now).total_seconds())
        outcome.retried += 1
        metrics.failed(info.provider, "rate_limited")
        return
    if isinstance(error, AuthExpired):
        # The token died early (revoked session, clock skew): refresh, then retry.
        # A refresh that is refused parks the connection in needs_reauth.
        delivery.attempts = max(0, delivery.attempts - 1)
        delivery.status, delivery.next_attempt_at = "pending", now
        act_on_in(session, info.id, error)  # the next run refreshes the token first
        _event(session, delivery, "delivery.token_expired", reason=reason)
        _again(outcome, 1.0)
        outcome.retried += 1
        metrics.failed(info.provider, "token_expired")
        return
    if delivery.attempts >= settings.delivery_max_attempts:
        delivery.status = "dead"
        delivery.last_error = f"gave up after {delivery.attempts} attempts: {reason}"
        _event(session, delivery, "delivery.dead", reason=delivery.last_error)
        outcome.dead += 1
        metrics.failed(info.provider, "dead")
        return
    wait = backoff_seconds(delivery.attempts, settings)
    if isinstance(error, TransientError) and error.retry_after:
        wait = max(wait, error.retry_after)
    delivery.status = "pending"
    delivery.next_attempt_at = now + timedelta(seconds=wait)
    _event(session, delivery, "delivery.retry_scheduled", reason=reason, in_seconds=round(wait, 1))
    _again(outcome, wait)
    outcome.retried += 1
    metrics.failed(info.provider, "retry")


def _again(outcome: BatchOutcome, seconds: float) -> None:
    seconds = max(0.0, seconds)
    if outcome.run_again_in is None or seconds < outcome.run_again_in:
        outcome.run_again_in = seconds


def sweep(settings: Settings | None = None) -> list[str]:
    """Take back expired leases; return connections with deliveries waiting too long.

    Run by beat. A broker message lost to a crash or restart only delays a
    delivery by at most the stale delay plus one sweep interval.
    """
    settings = settings or get_settings()
    now = utcnow()
    with session_scope() as session:
        expired = list(
            session.scalars(
                select(Delivery)
                .where(Delivery.status == "in_flight", Delivery.leased_until < now)
                .with_for_update(skip_locked=True)
            )
        )
        for delivery in expired:
            delivery.status, delivery.leased_until = "pending", None
            delivery.next_attempt_at = now
            _event(session, delivery, "delivery.lease_expired", attempt=delivery.attempts)
        stale_before = now - timedelta(seconds=settings.delivery_stale_seconds)
        waiting = session.scalars(
            select(Delivery.connection_id)
            .join(Connection, Connection.id == Delivery.connection_id)
            .where(
                Delivery.status == "pending",
                Delivery.next_attempt_at <= stale_before,
                Delivery.action != DIGEST_ITEM,
                Connection.status == "active",
            )
            .distinct()
        )
        connection_ids = set(waiting) | {d.connection_id for d in expired}
    return sorted(connection_ids)


class ReplayRefused(ValueError):
    pass


def replay(session: Session, delivery: Delivery, actor: str) -> Delivery:
    """Send a dead (or delivered) delivery again, with the same idempotency key."""
    if delivery.action == DIGEST_ITEM:
        raise ReplayRefused(
            f"delivery {delivery.id} went out in the digest {delivery.digest_key}: replay that one"
        )
    if delivery.status in ("pending", "in_flight"):
        raise ReplayRefused(f"delivery {delivery.id} is {delivery.status}: it is already queued")
    previous = delivery.status
    delivery.status, delivery.attempts = "pending", 0
    delivery.next_attempt_at, delivery.leased_until = utcnow(), None
    _event(session, delivery, "delivery.replayed", actor=actor, previous=previous)
    return delivery


def warm_up() -> None:
    """Pay once, in the worker's parent before the pool forks, what each child would
    otherwise pay on its first delivery (~0.2-0.6 s: the provider SDKs' imports,
    the TLS trust store): a lone urgent message must not wait for it."""
    from connectors.http import shared_ssl_context
    from connectors.registry import load_delivery_connectors

    load_delivery_connectors()
    shared_ssl_context()


@dataclass
class ReplayOutcome:
    """Per delivery asked for: replayed, or refused with a code and the reason."""

    replayed: list[Delivery] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)

    @property
    def connection_ids(self) -> list[str]:
        return sorted({d.connection_id for d in self.replayed})


def replay_dead(session: Session, tenant_id: str, delivery_ids: Sequence[str],
                actor: str) -> ReplayOutcome:
    """Put a selection of a tenant's dead deliveries back in the outbox, each once.

    The rows are locked (``FOR UPDATE``, in id order: two selections that overlap
    never deadlock) before their status is read, so of two replays racing for the
    same delivery one finds it dead and requeues it, the other finds it pending
    and is refused ``already_queued``. Another tenant's id is ``not_found``, as
    a missing one. The caller enqueues ``connection_ids`` after commit.
    """
    wanted = sorted(set(delivery_ids))
    rows = {
        d.id: d
        for d in session.scalars(
            select(Delivery)
            .where(Delivery.id.in_(wanted), Delivery.tenant_id == tenant_id)
            .order_by(Delivery.id)
            .with_for_update()
        )
    }
    outcome = ReplayOutcome()
    for delivery_id in wanted:
        delivery = rows.get(delivery_id)
        if delivery is None:
            outcome.refused.append({"id": delivery_id, "code": "not_found",
                                    "reason": f"delivery {delivery_id!r} not found"})
        elif delivery.status != "dead":
            code = "already_queued" if delivery.status in ("pending", "in_flight") else "not_dead"
            outcome.refused.append({"id": delivery_id, "code": code,
                                    "reason": f"delivery {delivery_id} is {delivery.status}: "
                                              "only dead deliveries are replayed here"})
        else:
            try:
                outcome.replayed.append(replay(session, delivery, actor))
            except ReplayRefused as exc:
                outcome.refused.append({"id": delivery_id, "code": "digest_item",
                                        "reason": str(exc)})
    return outcome
