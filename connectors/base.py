"""The connector protocol and the error kinds every connector speaks.

The engine (``sync/``) only sees these: it hands a connector a batch of
delivery requests and gets one result per request. What an error *means* for
the delivery is decided here, once, by its kind:

- ``TransientError``: retry later with backoff (5xx, timeouts, connection loss).
- ``RateLimited``: the provider said stop until ``reset_at``; pause the whole
  connection until then, and do not count it as a failed attempt.
- ``AuthExpired``: refresh the token and retry; if refreshing fails the
  connection needs the tenant admin to reconnect (nothing is dropped).
- ``Rejected``: the provider refused this record for good (4xx); dead-letter
  it with the provider's reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol


class DeliveryError(Exception):
    """Base of the error kinds; ``str()`` is the reason shown to people."""

    kind: ClassVar[str] = "error"


class TransientError(DeliveryError):
    kind = "transient"

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class RateLimited(DeliveryError):
    kind = "rate_limited"

    def __init__(self, reason: str, reset_at: datetime) -> None:
        super().__init__(reason)
        self.reset_at = reset_at


class AuthExpired(DeliveryError):
    kind = "auth_expired"


class Rejected(DeliveryError):
    kind = "rejected"


class Held(DeliveryError):
    """Not sent: an earlier request of an ordered batch failed, and order is kept by
    sending nothing after it (the engine gives it back, no attempt spent)."""

    kind = "held"


class CursorExpired(Exception):
    """The provider can no longer answer from an incremental cursor (Google 410
    ``fullSyncRequired``, Graph 410 ``syncStateNotFound``, Salesforce's 15-day deleted
    window): the cursor is wiped and the stream read in full again. Raised by calendar
    connectors (``list_changes``) and contact readers alike; not an error kind of a
    delivery (a pull acts on it, never ``sync.connection_use``)."""


@dataclass(frozen=True)
class ConnectionInfo:
    """What a connector needs to know about its connection; secrets decrypted."""

    id: str
    tenant_id: str
    name: str
    provider: str
    settings: dict[str, Any]
    credentials: dict[str, Any] = field(repr=False)
    # The tenant's field mapping for this connection (mappings.fieldmap), if any.
    mapping: Any = None


@dataclass(frozen=True)
class DeliveryRequest:
    delivery_id: str
    idempotency_key: str
    action: str  # e.g. "message.created"
    payload: dict[str, Any] = field(repr=False)  # carries message bodies: never log it
    attempt: int = 1


@dataclass(frozen=True)
class DeliveryResult:
    delivery_id: str
    external_id: str | None = None
    error: DeliveryError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Pacer(Protocol):
    """The connection's shared rate limiter: call before every request."""

    def wait(self, cost: int = 1) -> None: ...


class LinkStore(Protocol):
    """Our record <-> the provider's record, for this connection.

    Connectors look up before they create (a second create is a duplicate) and
    record what they created; the engine persists the records with the results.
    """

    def get_many(
        self, local_type: str, local_ids: Sequence[str], remote_type: str
    ) -> dict[str, str]: ...

    def put(self, local_type: str, local_id: str, remote_type: str, remote_id: str) -> None: ...


class _NoPacing:
    def wait(self, cost: int = 1) -> None:
        return None


def _no_report(results: Sequence[DeliveryResult]) -> None:
    return None


class _NoLinks:
    def get_many(
        self, local_type: str, local_ids: Sequence[str], remote_type: str
    ) -> dict[str, str]:
        return {}

    def put(self, local_type: str, local_id: str, remote_type: str, remote_id: str) -> None:
        return None


@dataclass
class Runtime:
    """What the engine lends a connector for one batch."""

    pacer: Pacer = field(default_factory=_NoPacing)
    links: LinkStore = field(default_factory=_NoLinks)
    # Limiters of endpoints with a limit of their own (HubSpot search: ~4/s),
    # declared by the connector's ``extra_rate_limits``.
    pacers: dict[str, Pacer] = field(default_factory=dict)
    # The engine's clock (aware UTC), for windows the engine chooses (e.g. the Graph
    # delta window). Wire stamps (signatures, token expiry) keep the machine's time.
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Called with results as they land, before ``deliver`` returns, so the engine
    # records them at once: a worker killed mid-batch then re-sends only what
    # was in flight, not the whole batch. Optional for connectors.
    report: Callable[[Sequence[DeliveryResult]], None] = _no_report
    # May a tenant-given URL reach loopback/private addresses (the operator's
    # RELAIS_ALLOW_PRIVATE_URLS)? If not, the webhook checks each connect
    # (connectors.netguard): its URL was checked when applied, DNS may change since.
    internal_urls: bool = False

    def pacer_named(self, name: str) -> Pacer:
        return self.pacers.get(name) or _NoPacing()


class Connector(Protocol):
    """One instance per connection, reused for a batch, then closed."""

    provider: ClassVar[str]
    # How many deliveries are claimed at once is the catalogue's ``batch.claim``.
    # Wait up to this long for a batch to fill before sending a partial one.
    linger_seconds: ClassVar[float]

    def deliver(self, batch: Sequence[DeliveryRequest]) -> list[DeliveryResult]:
        """One result per request, same order. Never raises for one bad record."""
        ...

    def close(self) -> None: ...


def deliver_each(
    batch: Sequence[DeliveryRequest],
    one: Callable[[DeliveryRequest], DeliveryResult],
    report: Callable[[Sequence[DeliveryResult]], None] = _no_report,
    ordered: bool = False,
) -> list[DeliveryResult]:
    """Deliver one request at a time; after a rate limit, send nothing more.

    The rest of the batch gets the same ``RateLimited`` so the engine pauses the
    connection instead of hammering a provider that already said stop. With
    ``ordered``, any failure stops the batch too: the rest is ``Held`` (nothing after
    a failed request may arrive before it). Each result is passed to ``report`` as
    soon as it lands.
    """
    results: list[DeliveryResult] = []
    for position, request in enumerate(batch):
        result = one(request)
        results.append(result)
        report([result])
        rest = batch[position + 1 :]
        if isinstance(result.error, RateLimited):
            results.extend(DeliveryResult(r.delivery_id, error=result.error) for r in rest)
            break
        if ordered and result.error is not None and rest:
            held = Held(f"held behind {request.delivery_id}, which failed: order is kept")
            results.extend(DeliveryResult(r.delivery_id, error=held) for r in rest)
            break
    return results


def deliver_concurrently(
    batch: Sequence[DeliveryRequest],
    one: Callable[[DeliveryRequest], DeliveryResult],
    cap: int,
    report: Callable[[Sequence[DeliveryResult]], None] = _no_report,
) -> list[DeliveryResult]:
    """Like ``deliver_each`` with up to ``cap`` requests in flight (started in
    batch order). After a rate limit no new request starts; those in flight
    finish; the unsent ones get the same ``RateLimited``. ``one`` must be
    thread-safe. ``report`` is called from this thread as results land."""
    if cap <= 1 or len(batch) <= 1:
        return deliver_each(batch, one, report)
    results: dict[int, DeliveryResult] = {}
    stop: RateLimited | None = None
    running: dict[Future[DeliveryResult], int] = {}

    def harvest(block: bool) -> None:
        nonlocal stop
        done, _ = wait(list(running), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        landed = []
        for future in done:
            result = future.result()
            results[running.pop(future)] = result
            landed.append(result)
            if isinstance(result.error, RateLimited) and stop is None:
                stop = result.error
        if landed:
            report(landed)

    with ThreadPoolExecutor(max_workers=cap, thread_name_prefix="deliver") as pool:
        for position, request in enumerate(batch):
            while len(running) >= cap:
                harvest(block=True)
            if stop is not None:
                break
            running[pool.submit(one, request)] = position
        while running:
            harvest(block=True)
    for position, request in enumerate(batch):
        if position not in results:
            assert stop is not None
            results[position] = DeliveryResult(request.delivery_id, error=stop)
    return [results[position] for position in range(len(batch))]
