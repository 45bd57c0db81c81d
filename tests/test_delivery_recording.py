"""A result landed twice (reported as it landed, then again in the batch's final
list, both before the recorder thread ran) is recorded once."""

from __future__ import annotations

import threading

from test_delivery import accept, acme, delivery, history  # noqa: F401  (fixture)

from connectors.base import DeliveryResult, Rejected
from sync.credentials import connection_info
from sync.delivery import _Recorder
from sync.links import ConnectionLinks
from sync.settings import get_settings
from sync.store.db import session_scope
from sync.store.models import Connection


def test_a_result_landed_twice_is_recorded_once(acme):  # noqa: F811
    _, [dlv], conn = accept()
    with session_scope(readonly=True) as session:
        info = connection_info(session.get(Connection, conn))
    recorder = _Recorder([dlv], ConnectionLinks(info.tenant_id, info.id), info,
                         get_settings(), threading.Lock())
    refused = DeliveryResult(dlv, error=Rejected("webhook hook answered 422"))
    recorder.write([refused, refused])
    assert recorder.outcome.dead == 1
    assert delivery(dlv).status == "dead"
    assert history(dlv).count("delivery.dead") == 1
