"""The engine refuses with codes; the shell alone turns them into HTTP answers.

Connecting (``sync.connections.ConnectError``) and change notifications
(``sync.calendar_sync.NotificationRejected``) carry a code from their module's
``CODES``; ``relais.api.engine_errors`` maps every one of them (a code without
an answer would be a 500), and nothing in ``sync/`` raises them with a status."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from relais.api.engine_errors import CONNECT, NOTIFICATION, connect_error, notification_error
from sync import calendar_sync, connections
from sync.calendar_sync import NotificationRejected
from sync.connections import ConnectError

SYNC = Path(connections.__file__).resolve().parent


def test_every_connect_code_has_an_answer() -> None:
    assert set(CONNECT) == connections.CODES
    # the answers the API gave when the engine still carried statuses
    assert CONNECT == {
        "not_found": (404, "not_found"), "ambiguous": (409, "cannot_connect"),
        "invalid_state": (400, "invalid_request"), "cannot_connect": (422, "cannot_connect"),
    }  # fmt: skip


def test_every_notification_code_has_an_answer() -> None:
    assert set(NOTIFICATION) == calendar_sync.NOTIFICATION_CODES
    assert NOTIFICATION == {
        "unknown_channel": (404, "not_found"), "unauthenticated": (401, "unauthenticated"),
        "invalid_notification": (400, "invalid_notification"),
    }  # fmt: skip


def test_a_connect_error_names_its_field_in_the_answer() -> None:
    exc = ConnectError("this authorization link expired", code=connections.INVALID_STATE,
                       field="state")
    assert not hasattr(exc, "status")
    error = connect_error(exc)
    assert (error.status, error.code, error.details) == (
        400, "invalid_request", [{"field": "state", "problem": "this authorization link expired"}])
    assert connect_error(ConnectError("no app")).status == 422  # the default code


def test_a_refused_notification_keeps_its_reason() -> None:
    exc = NotificationRejected(calendar_sync.UNAUTHENTICATED, "wrong channel secret")
    assert not hasattr(exc, "status")
    error = notification_error(exc)
    assert (error.status, error.code, error.message) == (
        401, "unauthenticated", "notification refused: wrong channel secret")


@pytest.mark.parametrize("make", [
    lambda: ConnectError("x", code="404"),
    lambda: NotificationRejected("401", "x"),
])  # fmt: skip
def test_an_unknown_code_is_refused_when_raised(make: object) -> None:
    with pytest.raises(ValueError, match="code"):
        make()  # type: ignore[operator]


def test_no_engine_refusal_is_given_a_status() -> None:
    found = []
    for path in sorted(SYNC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in {"ConnectError", "NotificationRejected"}):
                continue
            values = [*node.args, *(k.value for k in node.keywords)]
            if any(k.arg == "status" for k in node.keywords) or any(
                    isinstance(v, ast.Constant) and type(v.value) is int for v in values):
                found.append(f"{path.relative_to(SYNC)}:{node.lineno}")
    assert found == []
