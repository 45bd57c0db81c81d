"""Server-side request forgery guard: tenant configuration may not point Relais
at loopback, private, link-local or otherwise internal addresses (the worker
would call them from inside the operator's network).

``RELAIS_ALLOW_PRIVATE_URLS=1`` lifts the rule (the demo and the tests, whose
sandboxes listen on 127.0.0.1; an operator whose CRM is on the LAN).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any
from urllib.parse import urlsplit

RESOLVE_SECONDS = 2.0
_resolver = ThreadPoolExecutor(max_workers=2, thread_name_prefix="netguard")


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    future = _resolver.submit(socket.getaddrinfo, host, None)
    try:
        infos = future.result(timeout=RESOLVE_SECONDS)
    except (OSError, FutureTimeout):
        return []  # unknown now: the connection itself fails or is checked then
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def internal_reason(host: str) -> str | None:
    """Why ``host`` is internal (it is, or resolves to, such an address); None if public."""
    for ip in _addresses(host):
        mapped = getattr(ip, "ipv4_mapped", None) or ip
        for kind in ("loopback", "link_local", "private", "multicast", "reserved",
                     "unspecified"):
            if getattr(mapped, f"is_{kind}"):
                shown = "" if str(ip) == host.strip("[]") else f" resolves to {ip}, which"
                return f"{host}{shown} is a {kind.replace('_', '-')} address"
    return None


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
