"""Open a connection and use it: the one sequence every engine path follows.

1. **Refresh** the token once, if it expires soon (:func:`refresh`, over
   :func:`sync.credentials.ensure_fresh`: one worker per connection refreshes).
2. **Check** the connection may be used now (:func:`blocked`): active, and not
   paused by the provider's limit (``paused_until``).
3. **Describe** it (:func:`info_for`): decrypted credentials, and the tenant's
   field mapping for a CRM connection.
4. **Lend** it the engine's parts (:func:`runtime_for`): the connection's shared
   limiter (the pacer; ``sync.ratelimit``, sized by what the provider's class
   declares from the catalogue), the limiters of endpoints with a limit of their
   own, the hub's clock.
5. **Build** the provider's client through the catalogue (:func:`build`): the
   ``connector`` (deliveries), ``calendar`` or ``contacts`` class.
6. **Act on the error kinds** (decided in ``connectors/base.py``) once
   (:func:`act_on`, :func:`act_on_in`): ``AuthExpired`` makes the next use refresh
   the token; ``RateLimited`` pauses the connection until the provider's reset.
   The error is then raised again: what it means for the caller's own record
   (a delivery retried, a busy state unknown, a pull paused) is the caller's.

:func:`open_connection` is steps 1-6 as one context manager. The delivery engine
(``sync.delivery``) runs the same steps, split around its claim: 2-3 under the
connection's row lock with the claim, 4-5 per batch, 6 in the transaction that
records the batch's results (:func:`act_on_in`).

Invariants: no call leaves on a connection that is paused or not active (unless
the caller says ``ignore_pause``); a pause only ever moves later (two workers
hitting the same limit keep the later reset); a pause is stored on the hub's
clock (the provider's reset converted with ``clock.from_machine``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from connectors.base import (
    AuthExpired,
    ConnectionInfo,
    DeliveryError,
    DeliveryResult,
    LinkStore,
    RateLimited,
    Runtime,
    TransientError,
)
from connectors.base import Pacer as PacerProtocol
from sync import clock
from sync.settings import get_settings
from sync.store.db import session_scope
from sync.store.models import Connection, Tenant, utcnow

log = logging.getLogger(__name__)

Part = Literal["connector", "calendar", "contacts"]
"""Which of the provider's classes (the catalogue's ``connector``, ``calendar``,
``contacts``) a use needs."""

EXPIRED_BY = timedelta(minutes=10)
"""How far back a token refused early is dated: the next use refreshes it."""


class ConnectionUnavailable(Exception):
    """The connection cannot be used now; ``str()`` says why, for people.

    ``reason``: ``needs_reauth`` (the refresh was refused: an admin reconnects),
    ``token_endpoint`` (the provider's token endpoint failed: ``error`` holds the
    error kind), ``inactive`` (the connection is not active) or ``paused`` (the
    provider's limit; ``until`` on the hub's clock)."""

    def __init__(
        self,
        message: str,
        reason: str,
        *,
        error: DeliveryError | None = None,
        until: datetime | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.reason, self.error, self.until = reason, error, until
        self.detail = detail or message  # the cause alone, without our sentence


# --------------------------------------------------------------------------- steps


def refresh(connection_id: str, what: str = "") -> None:
    """Step 1: refresh the token if it expires soon. Raises ``ConnectionUnavailable``
    (``needs_reauth`` or ``token_endpoint``); ``what`` names the connection for
    people ("calendar")."""
    from sync.credentials import NeedsReauth, ensure_fresh

    label = f"the {what} connection" if what else "the connection"
    try:
        ensure_fresh(connection_id)
    except NeedsReauth as exc:
        raise ConnectionUnavailable(
            f"{label} needs to be re-authorized by an admin ({exc})", "needs_reauth",
            detail=str(exc),
        ) from exc
    except DeliveryError as exc:
        provider = f"the {what} provider's" if what else "the provider's"
        raise ConnectionUnavailable(
            f"{provider} token endpoint failed: {exc}", "token_endpoint", error=exc,
            detail=str(exc),
        ) from exc


def blocked(
    row: Connection | None, now: datetime, what: str = "", *, ignore_pause: bool = False
) -> ConnectionUnavailable | None:
    """Step 2: why the connection may not be used at ``now`` (None: it may)."""
    label = f"the {what} connection" if what else "the connection"
    if row is None or row.status != "active":
        status = row.status if row is not None else "removed"
        return ConnectionUnavailable(
            f"{label} is {status.replace('_', ' ')}", "inactive", detail=status
        )
    if not ignore_pause and row.paused_until is not None and row.paused_until > now:
        provider = f"the {what} provider" if what else "the provider"
        return ConnectionUnavailable(
            f"{provider} asked us to wait until {row.paused_until:%H:%M:%S} UTC (rate limit)",
            "paused",
            until=row.paused_until,
        )
    return None


def info_for(session: Session, row: Connection) -> ConnectionInfo:
    """Step 3: the connection's info, with the tenant's field mapping when its
    configuration gives one (CRM connections)."""
    from sync.credentials import connection_info
    from sync.crm_mapping import crm_mapping
    from sync.tenants import parsed_config

    info = connection_info(row)
    tenant = session.get(Tenant, row.tenant_id)
    if tenant is None:
        return info
    spec = parsed_config(tenant).connections.get(row.name)
    if spec is not None and hasattr(spec, "resolved_mapping"):
        info = replace(info, mapping=crm_mapping(info.provider, spec.resolved_mapping()))
    return info


def provider_class(part: Part, provider: str) -> Any:
    """The provider's class for ``part``, from the catalogue."""
    from connectors import registry

    if part == "calendar":
        return registry.calendar_connector_class(provider)
    if part == "contacts":
        return registry.contact_reader_class(provider)
    return registry.connector_class(provider)


def limits_class(part: Part, provider: str) -> Any:
    """The class whose ``rate_limit`` / ``extra_rate_limits`` size the connection's
    limiters: a contact reader shares the delivery connector's (one API, one quota)."""
    return provider_class("calendar" if part == "calendar" else "connector", provider)


def pacer_for(kind: Any, info: ConnectionInfo) -> PacerProtocol:
    """The connection's shared limiter, if ``kind`` declares a limit."""
    from sync.ratelimit import RollingPacer, default_store

    declared = getattr(kind, "rate_limit", None)
    spec = declared(info) if declared else None
    if spec is None:
        return Runtime().pacer
    limit, window = spec
    return RollingPacer(
        key=f"{info.id}:requests", limit=limit, window=window, store=default_store()
    )


def extra_pacers(kind: Any, info: ConnectionInfo) -> dict[str, PacerProtocol]:
    """Shared limiters for endpoints with limits of their own, keyed ``<id>:<name>``."""
    from sync.ratelimit import RollingPacer, default_store

    declared = getattr(kind, "extra_rate_limits", None)
    limits = declared(info) if declared else {}
    return {
        name: RollingPacer(key=f"{info.id}:{name}", limit=limit, window=window,
                           store=default_store())
        for name, (limit, window) in limits.items()
    }  # fmt: skip


def runtime_for(
    part: Part,
    info: ConnectionInfo,
    *,
    links: LinkStore | None = None,
    report: Callable[[Sequence[DeliveryResult]], None] | None = None,
) -> Runtime:
    """Step 4: what the engine lends the client: pacers, clock, and for deliveries
    the link store and the result reporter."""
    kind = limits_class(part, info.provider)
    runtime = Runtime(pacer=pacer_for(kind, info), pacers=extra_pacers(kind, info), now=clock.now,
                      internal_urls=get_settings().allow_private_urls)
    if links is not None:
        runtime.links = links
    if report is not None:
        runtime.report = report
    return runtime


def build(part: Part, info: ConnectionInfo, runtime: Runtime | None = None) -> Any:
    """Step 5: the provider's client for ``part``, built through the catalogue."""
    return provider_class(part, info.provider)(info, runtime or runtime_for(part, info))


def act_on_in(session: Session, connection_id: str, error: BaseException) -> datetime | None:
    """Step 6, in the caller's transaction: ``AuthExpired`` → the token is dated
    back so the next use refreshes it; ``RateLimited`` → the connection is paused
    until the provider's reset (a pause only moves later), and that reset on the
    hub's clock is returned (for the caller's own records). Other errors: nothing."""
    if isinstance(error, AuthExpired):
        session.execute(
            update(Connection)
            .where(Connection.id == connection_id, Connection.token_expires_at.is_not(None))
            .values(token_expires_at=utcnow() - EXPIRED_BY)
        )
    elif isinstance(error, RateLimited):
        until = clock.from_machine(error.reset_at)  # the provider's instant → the hub's
        session.execute(
            update(Connection)
            .where(
                Connection.id == connection_id,
                or_(Connection.paused_until.is_(None), Connection.paused_until < until),
            )
            .values(paused_until=until)
        )
        return until
    return None


def act_on(connection_id: str, error: BaseException) -> None:
    """Step 6 in a transaction of its own."""
    if isinstance(error, AuthExpired | RateLimited):
        with session_scope() as session:
            act_on_in(session, connection_id, error)


def pause(connection_id: str, until: datetime) -> None:
    """The provider said stop: no call on this connection before ``until`` (the
    provider's instant, on the machine's clock; stored on the hub's)."""
    act_on(connection_id, RateLimited("paused", until))


def expire_token(connection_id: str) -> None:
    """The provider refused our token before its expiry: make the next use refresh it."""
    act_on(connection_id, AuthExpired("refused"))


# --------------------------------------------------------------------------- clients kept


def _fingerprint(info: ConnectionInfo) -> str:
    raw = json.dumps([info.settings, info.credentials], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def _close(client: Any) -> None:
    try:
        client.close()
    except Exception:  # noqa: BLE001 - closing must never fail a request
        log.debug("closing a %s client failed", type(client).__name__, exc_info=True)


class ClientPool:
    """Clients kept between uses (building one may parse a discovery document,
    open TLS…). A client is lent to one caller at a time; a new token (another
    fingerprint) gets new clients and the old ones are closed. A client whose use
    raised is closed, not kept."""

    def __init__(self, part: Part, idle_per_key: int = 4) -> None:
        self.part, self.idle_per_key = part, idle_per_key
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str], list[Any]] = {}

    @contextlib.contextmanager
    def borrow(self, info: ConnectionInfo) -> Iterator[Any]:
        key = (info.id, _fingerprint(info))
        stale: list[Any] = []
        with self._lock:
            for other in [k for k in self._idle if k[0] == info.id and k != key]:
                stale.extend(self._idle.pop(other))
            idle = self._idle.get(key)
            client = idle.pop() if idle else None
        for old in stale:
            _close(old)
        if client is None:
            client = build(self.part, info)
        ok = False
        try:
            yield client
            ok = True
        finally:
            with self._lock:
                idle = self._idle.setdefault(key, [])
                keep = ok and len(idle) < self.idle_per_key
                if keep:
                    idle.append(client)
            if not keep:
                _close(client)

    def clear(self) -> None:
        with self._lock:
            clients = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for client in clients:
            _close(client)


# --------------------------------------------------------------------------- the sequence


@dataclass(frozen=True)
class Opened:
    """A connection opened for use: its info (mapping applied) and its client."""

    info: ConnectionInfo
    client: Any


def load(connection_id: str, what: str = "", *, ignore_pause: bool = False) -> ConnectionInfo:
    """Steps 1-3: a fresh token, the connection usable now, its info."""
    refresh(connection_id, what)
    with session_scope(readonly=True) as session:
        row = session.get(Connection, connection_id)
        why = blocked(row, utcnow(), what, ignore_pause=ignore_pause)
        if why is not None:
            raise why
        assert row is not None
        return info_for(session, row)


@contextlib.contextmanager
def open_connection(
    connection_id: str,
    part: Part,
    *,
    what: str = "",
    pool: ClientPool | None = None,
    ignore_pause: bool = False,
) -> Iterator[Opened]:
    """Steps 1-6: the connection's client, on a fresh token, paced; an error kind
    raised while it is used is acted on (expire / pause) and raised again.
    ``pool`` lends a kept client instead of building one. Raises
    ``ConnectionUnavailable`` before any provider call when it may not be used."""
    info = load(connection_id, what, ignore_pause=ignore_pause)
    borrowed = pool.borrow(info) if pool is not None else _built(part, info)
    try:
        with borrowed as client:
            yield Opened(info, client)
    except (AuthExpired, RateLimited) as exc:
        act_on(connection_id, exc)
        raise


@contextlib.contextmanager
def _built(part: Part, info: ConnectionInfo) -> Iterator[Any]:
    client = build(part, info)
    try:
        yield client
    finally:
        _close(client)


def use(
    connection_id: str,
    part: Part,
    call: Callable[[Any], Any],
    *,
    what: str = "",
    pool: ClientPool | None = None,
) -> Any:
    """``call(client)`` on an opened connection; after an early ``AuthExpired`` (the
    token refused before its expiry) the token is refreshed and the call tried once
    more."""
    for attempt in (1, 2):
        try:
            with open_connection(connection_id, part, what=what, pool=pool) as opened:
                return call(opened.client)
        except AuthExpired:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def retry_later(error: ConnectionUnavailable) -> bool:
    """Whether a failed refresh is worth trying again shortly (the token endpoint
    answered with a transient error), as opposed to waiting for an admin."""
    return error.reason == "token_endpoint" and isinstance(error.error, TransientError)
