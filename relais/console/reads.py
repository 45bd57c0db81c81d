"""Console reads of message content on the access log (issue 15, "who saw what").

Every console page that shows message content (subject, body, intake, the caller's
name or number of a message or appointment) calls :func:`record_reads` once per
page view, before the page is rendered: the read is on the record before any
content leaves, as ``GET /v1/tenants/{t}/messages/{id}`` does.

Invariants:

- The entry goes through :func:`sync.privacy.audit.record_reads`, as the API's lists
  do (its single reads and the signed links use ``audit.append``): the same per-tenant
  hash chain, append-only, checked by ``relais audit verify``.
- One entry per page view, whatever the number of rows shown (a list costs one
  append, not one per message); the ids shown are in its detail (``messages``,
  ``appointments``), never their content. A single message shown is the entry's
  subject (``message <id>``), as the API's single read, so a person's export
  (``sync.privacy.subject``, which matches subject ids) finds it; a list is
  ``console <page>``.
- The actor is ``user:<id>`` (the audit page adds the user's current name; the id
  stays when names change).
- A page that shows no message or appointment appends nothing.
- The append is its own short write transaction (the pages read in a read-only one).
"""

from __future__ import annotations

from collections.abc import Sequence

from relais.console.web import Viewer
from sync.privacy import audit
from sync.store.db import session_scope


def actor_of(viewer: Viewer) -> str:
    return f"user:{viewer.id}"


def record_reads(viewer: Viewer, tenant_id: str, page: str, messages: Sequence[str] = (),
                 appointments: Sequence[str] = ()) -> None:
    """One ``message.read`` entry for ``page`` listing the message and appointment ids
    shown (nothing when none is)."""
    if not messages and not appointments:
        return
    with session_scope() as writer:
        audit.record_reads(writer, tenant_id, actor=actor_of(viewer), via="console",
                           page=page, messages=messages, appointments=appointments)
