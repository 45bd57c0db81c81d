"""Server-side request forgery guard: which addresses are inside the operator's network
(loopback, private, link-local…), and an HTTP transport that refuses to connect there.

``sync.tenants`` refuses such URLs when a tenant's configuration is applied; a name
can resolve elsewhere later (DNS rebinding, a record changed since). The guarded
transport checks again at the moment of connecting, on the addresses it is about to
use, and connects to the very address it checked, so no second lookup can differ.

Invariants:

- Every resolved address of the host is checked, not only the first one tried.
- The TLS handshake still names the URL's host (SNI and certificate check): only the
  TCP connect goes to the checked address.
- A refusal raises :class:`InternalAddress` before a byte is sent.
- Through a proxy (``HTTPS_PROXY``…), the proxy decides; the guard checks direct
  connections only.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import typing
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import httpcore
import httpx

RESOLVE_SECONDS = 2.0
_resolver = ThreadPoolExecutor(max_workers=8, thread_name_prefix="netguard")  # a burst of connects
IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_KINDS = ("loopback", "link_local", "private", "multicast", "reserved", "unspecified")


class InternalAddress(Exception):
    """The host is, or resolves to, an address inside the operator's network."""


def resolve(host: str, timeout: float = RESOLVE_SECONDS) -> list[IP]:
    """The host's addresses (a literal address is its own); [] when unknown now."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    future = _resolver.submit(socket.getaddrinfo, host, None, 0, socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=timeout)
    except (OSError, FutureTimeout):
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def address_kind(ip: IP) -> str | None:
    """``loopback``, ``private``… for an internal address; None for a public one."""
    mapped = getattr(ip, "ipv4_mapped", None) or ip
    for kind in _KINDS:
        if getattr(mapped, f"is_{kind}"):
            return kind.replace("_", "-")
    return None


def reason_for(host: str, addresses: typing.Iterable[IP]) -> str | None:
    """Why connecting to ``host`` at these addresses would reach inside; None if it would not."""
    for ip in addresses:
        kind = address_kind(ip)
        if kind:
            shown = "" if str(ip) == host.strip("[]") else f" resolves to {ip}, which"
            return f"{host}{shown} is a {kind} address"
    return None


def internal_reason(host: str) -> str | None:
    """Why ``host`` is internal (it is, or resolves to, such an address); None if public
    or unknown now (the connection itself fails, or the guarded transport checks then)."""
    return reason_for(host, resolve(host))


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves once, refuses internal addresses, connects to an address it checked."""

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: typing.Iterable[typing.Any] | None = None,
                    ) -> httpcore.NetworkStream:
        addresses = resolve(host, timeout or RESOLVE_SECONDS)
        if not addresses:
            raise httpcore.ConnectError(f"{host}: name not resolved")
        reason = reason_for(host, addresses)
        if reason:
            raise InternalAddress(reason)
        error: Exception | None = None
        for ip in addresses:
            try:
                return super().connect_tcp(str(ip), port, timeout, local_address,
                                           socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error


def guarded_transport(verify: ssl.SSLContext) -> httpx.HTTPTransport:
    """An httpx transport whose direct connections refuse internal addresses."""
    transport = httpx.HTTPTransport(verify=verify)
    # httpx builds its httpcore pool without a backend parameter: swap the pool for
    # the same one on the guarded backend (tests/test_ssrf.py proves it is used).
    transport._pool = httpcore.ConnectionPool(
        ssl_context=verify, max_connections=100, max_keepalive_connections=20,
        keepalive_expiry=5.0,  # httpx's default limits
        network_backend=_GuardedBackend())
    return transport
