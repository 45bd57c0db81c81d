"""The engine's LinkStore: external_links rows of one connection.

Reads go to the database at once (read-only); writes are buffered and saved
with the batch's results, in the same transaction. A connector may ``put``
from its sending threads while the engine flushes results from another.

A caller link's local id is the caller's key (``tel:+33…``, ``mail:…``): a phone or
an email. For a sensitive tenant it is stored as ``kh:`` + the keyed hash of the key
under the newest secret key (:func:`caller_link_ids`), and found under any key's
hash or in clear, whatever the tenant is now (a row written before the tenant became
sensitive, until ``relais privacy reseal`` rewrites it). Connectors keep using the
plain key.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.store.crypto import keyed_hashes
from sync.store.db import session_scope
from sync.store.models import ExternalLink
from sync.tenants import get_tenant, parsed_config

CALLER = "caller"
HASHED = "kh:"


def caller_link_ids(key: str) -> list[str]:
    """A caller key as a sensitive tenant stores it: its keyed hash under each secret
    key, newest first (the first is what is written)."""
    return [HASHED + h for h in keyed_hashes(key)]


def stored_caller_id(key: str, sealed: bool) -> str:
    """The ``local_id`` a caller link is written with."""
    return caller_link_ids(key)[0] if sealed and not key.startswith(HASHED) else key


def caller_candidates(key: str) -> list[str]:
    """The ``local_id`` values a caller link may be found under, hashed first (the
    tenant may have been sensitive then, or be now with rows not resealed yet)."""
    return [*caller_link_ids(key), key]


class ConnectionLinks:
    def __init__(self, tenant_id: str, connection_id: str, sealed: bool | None = None) -> None:
        self.tenant_id, self.connection_id = tenant_id, connection_id
        self.pending: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()
        self._sealed = sealed  # None: read from the tenant when a caller link is used

    def sealed(self) -> bool:
        if self._sealed is None:
            with session_scope(readonly=True) as session:
                self._sealed = bool(parsed_config(get_tenant(session, self.tenant_id)).sensitive)
        return self._sealed

    def _candidates(self, local_type: str, local_id: str) -> list[str]:
        if local_type != CALLER:
            return [local_id]
        return caller_candidates(local_id)

    def get_many(
        self, local_type: str, local_ids: Sequence[str], remote_type: str
    ) -> dict[str, str]:
        # each asked id -> the stored ids it may be under, preferred first
        asked = {lid: self._candidates(local_type, lid) for lid in set(local_ids)}
        with self._lock:
            pending = dict(self.pending)
        found: dict[str, str] = {}
        for lid, candidates in asked.items():
            rid = next((pending[(local_type, c, remote_type)] for c in candidates
                        if (local_type, c, remote_type) in pending), None)
            if rid is not None:
                found[lid] = rid
        missing = sorted({c for lid, cs in asked.items() if lid not in found for c in cs})
        if missing:
            with session_scope(readonly=True) as session:
                stored = {lid: rid for lid, rid in session.execute(
                    select(ExternalLink.local_id, ExternalLink.remote_id).where(
                        ExternalLink.connection_id == self.connection_id,
                        ExternalLink.local_type == local_type,
                        ExternalLink.remote_type == remote_type,
                        ExternalLink.local_id.in_(missing),
                    )
                )}
            for lid, candidates in asked.items():
                rid = next((stored[c] for c in candidates if c in stored), None)
                if lid not in found and rid is not None:
                    found[lid] = rid
        return found

    def put(self, local_type: str, local_id: str, remote_type: str, remote_id: str) -> None:
        if local_type == CALLER:
            local_id = stored_caller_id(local_id, self.sealed())
        with self._lock:
            self.pending[(local_type, local_id, remote_type)] = remote_id

    def flush(self, session: Session) -> dict[tuple[str, str, str], str]:
        """Add the buffered links to ``session``'s transaction and return them; they
        stay buffered (a later flush writes them again) until ``forget`` after commit."""
        with self._lock:
            pending = dict(self.pending)
        if not pending:
            return pending
        existing = {
            (row.local_type, row.local_id, row.remote_type): row
            for row in session.scalars(
                select(ExternalLink).where(
                    ExternalLink.connection_id == self.connection_id,
                    ExternalLink.local_id.in_({lid for _lt, lid, _rt in pending}),
                )
            )
        }
        for key, remote_id in sorted(pending.items()):
            row = existing.get(key)
            if row is None:
                local_type, local_id, remote_type = key
                session.add(
                    ExternalLink(
                        tenant_id=self.tenant_id,
                        connection_id=self.connection_id,
                        local_type=local_type,
                        local_id=local_id,
                        remote_type=remote_type,
                        remote_id=remote_id,
                    )
                )
            else:
                row.remote_id = remote_id
        return pending

    def forget(self, written: dict[tuple[str, str, str], str]) -> None:
        """Drop from the buffer what a committed flush wrote (unless put again since)."""
        with self._lock:
            for key, remote_id in written.items():
                if self.pending.get(key) == remote_id:
                    del self.pending[key]
