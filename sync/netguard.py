"""Server-side request forgery guard on tenant configuration: every URL (and SMTP
host) of a connection's settings, checked with ``connectors.netguard.internal_reason``
when the configuration is applied (the webhook connector checks again when it
connects).

``RELAIS_ALLOW_PRIVATE_URLS=1`` lifts the rule (the demo and the tests, whose
sandboxes listen on 127.0.0.1; an operator whose CRM is on the LAN).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from connectors.netguard import internal_reason

__all__ = ["hosts_in", "internal_reason"]


def hosts_in(settings: dict[str, Any], path: tuple[str | int, ...] = ()
             ) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """``(path, host)`` of every URL (and SMTP ``host``) in a connection's settings."""
    for key, value in settings.items():
        where = (*path, key)
        if isinstance(value, dict):
            yield from hosts_in(value, where)
        elif isinstance(value, str):
            parts = urlsplit(value.strip())
            if parts.scheme in ("http", "https") and parts.hostname:
                yield where, parts.hostname
            elif key == "host" and value.strip():
                yield where, value.strip()
