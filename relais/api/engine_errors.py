"""The engine's refusals as HTTP answers: ``sync`` says what went wrong with a
code (and the offending field), the shell chooses the status and the public code.

- connecting (``sync.connections.ConnectError``): ``CONNECT``;
- change notifications (``sync.calendar_sync.NotificationRejected``): ``NOTIFICATION``;
- booking has its own table (``relais.api.booking_errors``).

Each table covers every code of its engine module (``tests/test_engine_errors.py``):
a code added in ``sync`` without its answer here fails there, not as a 500.
"""

from __future__ import annotations

from relais.api.errors import ApiError
from sync.calendar_sync import NotificationRejected
from sync.connections import ConnectError

CONNECT: dict[str, tuple[int, str]] = {  # engine code -> (status, public code)
    "not_found": (404, "not_found"),
    "ambiguous": (409, "cannot_connect"),  # several connections: name the one
    "invalid_state": (400, "invalid_request"),  # OAuth state unknown, used or expired
    "cannot_connect": (422, "cannot_connect"),
}

NOTIFICATION: dict[str, tuple[int, str]] = {
    "unknown_channel": (404, "not_found"),
    "unauthenticated": (401, "unauthenticated"),
    "invalid_notification": (400, "invalid_notification"),
}


def connect_error(exc: ConnectError) -> ApiError:
    """The API error for a refused connect/disconnect (the field named in details)."""
    status, code = CONNECT[exc.code]
    details = [{"field": exc.field, "problem": str(exc)}] if exc.field else []
    return ApiError(status, code, str(exc), details)


def notification_error(exc: NotificationRejected) -> ApiError:
    """The API error for a refused change notification."""
    status, code = NOTIFICATION[exc.code]
    return ApiError(status, code, f"notification refused: {exc.reason}")
