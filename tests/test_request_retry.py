"""A request retried after its connection died: the attempt whose COMMIT did
reach the server is found again, never stored twice (sync.outbox.accept_message
``request_key``), and the outage classifier retries only connection failures."""

from __future__ import annotations

import psycopg
from conftest import apply_acme
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from test_delivery import CALL

from sync.domain import CallMessage
from sync.outbox import accept_message
from sync.store.db import is_outage, session_scope
from sync.store.models import Message
from sync.tenants import get_tenant, parsed_config


def _accept(token: str, retried: bool, key: str | None = None):
    with session_scope() as session:
        config = parsed_config(get_tenant(session, "acme"))
        msg = CallMessage.model_validate(CALL, context={"region": "FR"})
        return accept_message(session, "acme", config, msg, key, request_key=token,
                              retried=retried)


def test_a_retried_attempt_finds_the_message_its_first_attempt_committed(env, receiver,
                                                                          monkeypatch):
    apply_acme(receiver, monkeypatch)
    first = _accept("relais-request-t1", retried=False)
    again = _accept("relais-request-t1", retried=True)
    assert again.created and again.message.id == first.message.id  # answered 202 again
    assert again.to_wake == first.connection_ids  # its wake-up was lost with the connection
    other = _accept("relais-request-t2", retried=True)  # nothing committed: stored now
    assert other.message.id != first.message.id
    with session_scope(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 2


def test_only_connection_failures_count_as_an_outage():
    def wrapped(orig: BaseException, cls=OperationalError):
        return cls("SELECT 1", {}, orig)

    assert is_outage(wrapped(psycopg.OperationalError("connection refused")))
    assert is_outage(wrapped(psycopg.errors.AdminShutdown()))
    assert is_outage(wrapped(psycopg.errors.CannotConnectNow()))
    assert not is_outage(wrapped(psycopg.errors.QueryCanceled()))
    assert not is_outage(wrapped(psycopg.errors.UniqueViolation(), IntegrityError))
    assert not is_outage(ValueError("no database error"))
