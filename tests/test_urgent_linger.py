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


def test_worker_parent_imports_connectors_before_forking():
    """The pool's children inherit the provider SDKs imported by the parent: a
    lone message is not held up by ~0.2-0.6 s of imports in a fresh child."""
    import subprocess
    import sys

    from conftest import ROOT

    probe = ("import sys, worker; "
             "print(all(m in sys.modules for m in ('hubspot', 'simple_salesforce', "
             "'connectors.webhook', 'connectors.sms')))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "True"
