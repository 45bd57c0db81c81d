"""The engine's LinkStore: external_links rows of one connection.

Reads go to the database at once (read-only); writes are buffered and saved
with the batch's results, in the same transaction. A connector may ``put``
from its sending threads while the engine flushes results from another.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.store.db import session_scope
from sync.store.models import ExternalLink


class ConnectionLinks:
    def __init__(self, tenant_id: str, connection_id: str) -> None:
        self.tenant_id, self.connection_id = tenant_id, connection_id
        self.pending: dict[tuple[str, str, str], str] = {}
        self._lock = threading.Lock()

    def get_many(
        self, local_type: str, local_ids: Sequence[str], remote_type: str
    ) -> dict[str, str]:
        wanted = set(local_ids)
        with self._lock:
            pending = dict(self.pending)
        found = {
            lid: rid
            for (lt, lid, rt), rid in pending.items()
            if lt == local_type and rt == remote_type and lid in wanted
        }
        missing = sorted(wanted - set(found))
        if missing:
            with session_scope(readonly=True) as session:
                rows = session.execute(
                    select(ExternalLink.local_id, ExternalLink.remote_id).where(
                        ExternalLink.connection_id == self.connection_id,
                        ExternalLink.local_type == local_type,
                        ExternalLink.remote_type == remote_type,
                        ExternalLink.local_id.in_(missing),
                    )
                )
                found.update({lid: rid for lid, rid in rows})
        return found

    def put(self, local_type: str, local_id: str, remote_type: str, remote_id: str) -> None:
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
