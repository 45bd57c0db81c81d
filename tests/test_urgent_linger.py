"""A lone urgent message skips a batching connector's linger (Salesforce waits
0.5 s for a batch to fill); an ordinary one waits. Real Salesforce emulator."""

from __future__ import annotations

from crm_helpers import accept, call, statuses
from test_salesforce import T, sf, static_token  # noqa: F401 - fixtures

from sandbox.testing import salesforce_emulator, salesforce_server  # noqa: F401
from sync.delivery import process_connection


def test_lone_urgent_message_leaves_at_once(sf):  # noqa: F811
    conn = static_token(sf)
    accept(T, call(1))
    waiting = process_connection(conn)
    assert waiting.claimed == 0 and "waiting for the batch to fill" in waiting.notes
    accept(T, call(2, urgency="urgent"))
    outcome = process_connection(conn)  # the urgent one takes the waiting one along
    assert (outcome.claimed, outcome.delivered) == (2, 2)
    assert statuses(T) == {"delivered": 2}
