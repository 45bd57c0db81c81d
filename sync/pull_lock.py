"""The pull lock and run record shared by every incremental pull (contacts,
calendars): one pull per connection at a time, a lock that expires if its
process died, a pause after the provider's limit, and the last run's figures.

``model`` is a state table keyed by ``connection_id`` with the columns
``running_since``, ``run_token``, ``paused_until``, ``last_started_at``,
``last_success_at``, ``last_error``, ``last_error_at`` and ``last_run``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from sync.store.db import session_scope
from sync.store.models import utcnow


def ensure_state(model: Any, connection_id: str, tenant_id: str, **zeros: Any) -> None:
    with session_scope(readonly=True) as session:
        if session.get(model, connection_id) is not None:
            return
    try:
        with session_scope() as session:
            session.add(
                model(connection_id=connection_id, tenant_id=tenant_id, last_run={}, **zeros)
            )
    except IntegrityError:
        pass  # another process created it first


def acquire(
    model: Any,
    connection_id: str,
    tenant_id: str,
    expiry: timedelta,
    force: bool,
    **zeros: Any,
) -> tuple[str | None, str]:
    """Take the connection's pull lock: (token, "") or (None, why not)."""
    ensure_state(model, connection_id, tenant_id, **zeros)
    with session_scope() as session:
        state = session.get(model, connection_id, with_for_update=True, populate_existing=True)
        assert state is not None
        now = utcnow()
        if state.running_since is not None and state.running_since > now - expiry:
            return None, f"a pull is already running (since {state.running_since:%H:%M:%S} UTC)"
        if not force and state.paused_until is not None and state.paused_until > now:
            return None, f"paused by the provider's limit until {state.paused_until:%H:%M:%S} UTC"
        state.running_since, state.run_token = now, uuid.uuid4().hex
        state.last_started_at = now
        return state.run_token, ""


def release(
    model: Any,
    connection_id: str,
    token: str,
    *,
    status: str,
    error: str | None,
    pause: datetime | None,
    last_run: dict[str, Any],
    counts: dict[str, int],
) -> None:
    """Free the lock (if still ours) and record the run: counters add up."""
    with session_scope() as session:
        state = session.get(model, connection_id, with_for_update=True, populate_existing=True)
        if state is None:
            return
        now = utcnow()
        if state.run_token == token:
            state.running_since, state.run_token = None, None
        for column, value in counts.items():
            setattr(state, column, (getattr(state, column) or 0) + value)
        if status == "ok":
            state.last_success_at, state.last_error, state.paused_until = now, None, None
        elif error:
            state.last_error, state.last_error_at = error, now
        if pause is not None:
            state.paused_until = pause
        state.last_run = {
            k: v for k, v in last_run.items() if k not in ("connection_id", "tenant_id")
        } | {"finished_at": now.isoformat()}


def is_due(
    model: Any, connection_id: str, settings: dict[str, Any], now: datetime, default_minutes: float
) -> bool:
    """Whether the connection's pull interval (``sync_interval_minutes``; 0 = never
    on schedule) has passed since its last pull started, and it is not paused."""
    minutes = float(settings.get("sync_interval_minutes", default_minutes))
    if minutes <= 0:
        return False
    with session_scope(readonly=True) as session:
        state = session.get(model, connection_id)
    if state is None or state.last_started_at is None:
        return True
    if state.paused_until is not None and state.paused_until > now:
        return False
    return bool(state.last_started_at + timedelta(minutes=minutes) <= now)


def due_connections(model: Any, providers: Any, now: datetime, default_minutes: float) -> list[str]:
    """Active connections of ``providers`` whose pull interval has passed (beat)."""
    from sqlalchemy import select

    from sync.store.models import Connection

    with session_scope(readonly=True) as session:
        rows = session.execute(
            select(Connection.id, Connection.settings).where(
                Connection.provider.in_(providers), Connection.status == "active"
            )
        ).all()
    return [
        cid
        for cid, settings in rows
        if is_due(model, cid, dict(settings or {}), now, default_minutes)
    ]
