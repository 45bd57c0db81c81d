"""Prove a production broker from a plain install (no test extras): a tenant,
one accepted message, a real ``relais worker`` consuming its task through the
broker and delivering to a local webhook receiver.

    python .ci/broker_smoke.py redis://127.0.0.1:6379/0
    python .ci/broker_smoke.py amqp://guest:guest@127.0.0.1:5672//
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

TENANT = """\
id: smoke
name: Smoke
timezone: Europe/Paris
phone_region: FR
call_types: [{id: message, label: Message}]
connections:
  hook: {provider: webhook, url: "${RELAIS_TENANT_SMOKE_HOOK}"}
rules:
  default: {name: tout, then: [{connection: hook}]}
"""


def main(broker: str) -> int:
    from sandbox.webhook_receiver import WebhookReceiver

    home = Path(tempfile.mkdtemp(prefix="relais-smoke-"))
    receiver = WebhookReceiver()
    receiver.start()
    env = {**os.environ, "RELAIS_HOME": str(home), "RELAIS_BROKER_URL": broker,
           "RELAIS_QUEUE": f"smoke-{uuid.uuid4().hex[:8]}", "RELAIS_ALLOW_PRIVATE_URLS": "1",
           "RELAIS_SECRET_KEYS": "kVvJ0x0b3Ckq6bQ1kXq3vP8s7mYkJ6V8o9Qf1m2n3o4=",
           "RELAIS_TENANT_SMOKE_HOOK": receiver.url + "/hooks/smoke/hook"}
    os.environ.update(env)
    from relais.migrate import upgrade
    from sync.domain import CallMessage
    from sync.outbox import accept_message, enqueue_accepted
    from sync.store.db import session_scope
    from sync.tenants import apply_config, parsed_config

    upgrade()
    with session_scope() as session:
        result = apply_config(session, TENANT, "smoke.yaml", actor="ci")
        receiver.secrets["/hooks/smoke/hook"] = result.new_secrets["hook"]
    worker = subprocess.Popen([sys.executable, "-m", "relais", "worker", "--concurrency", "1"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with session_scope() as session:
            from sync.tenants import get_tenant

            config = parsed_config(get_tenant(session, "smoke"))
            msg = CallMessage.model_validate({
                "call_type": "message", "caller": {"name": "CI", "phone": "0612345678"},
                "subject": "smoke", "taken_by": "ci", "taken_at": "2026-11-27T10:00:00+01:00"},
                context={"region": "FR"})
            accepted = accept_message(session, "smoke", config, msg)
        enqueue_accepted(accepted)
        deadline = time.monotonic() + 90
        while receiver.unique < 1 and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0].decode(errors="replace")
        receiver.stop()
    if receiver.unique != 1:
        print(output[-4000:])
        print(f"broker smoke FAILED on {broker.split('@')[-1]}: nothing delivered")
        return 1
    print(f"broker smoke ok on {broker.split('@')[-1]}: the worker consumed and delivered")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
