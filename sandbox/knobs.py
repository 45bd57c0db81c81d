"""Knobs shared by every sandbox emulator: clock, latency, faults, counters.

Each emulator owns one :class:`Knobs`. Tests drive it in-process (Python
methods) or from another process over HTTP, through the control endpoints
that :class:`KnobsMiddleware` serves under ``/__sandbox__/``:

=======  ============================  =========================================
GET      /__sandbox__/                 name, config, knob state
GET      /__sandbox__/counters         per-endpoint call counters
GET      /__sandbox__/requests         the last requests seen (method, path, status)
POST     /__sandbox__/faults           queue fault(s): one object or {"faults": [...]}
GET      /__sandbox__/faults           pending faults
DELETE   /__sandbox__/faults           drop pending faults
POST     /__sandbox__/latency          {"ms": 250, "jitter_ms": 0}
GET/POST /__sandbox__/clock            {"advance_seconds": 3600} or {"offset_seconds": 0}
GET/POST /__sandbox__/config           emulator settings (POST merges)
GET      /__sandbox__/state            emulator data snapshot
POST     /__sandbox__/reset            {"data": true} also wipes the emulator's data
=======  ============================  =========================================

Fault kinds (each consumed ``times`` times by the requests it matches, in
queue order; ``method``/``path`` restrict the match, ``path`` is a regular
expression searched in the request path):

``error``
    answer ``status`` (default 503) with ``body``/``headers`` or the
    emulator's own error body for that status; the request is not processed.
``hang``
    hold the request ``seconds`` (past the client's timeout), then reset the
    connection. With ``apply: true`` the request is processed first (the write
    lands, the answer never comes).
``drop_after_write``
    process the request (the write is applied), then abort the TCP connection
    with a RST instead of answering: the client sees a connection reset.
``drop_before``
    read the request and reset the connection without processing it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import itertools
import json
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

__all__ = [
    "CONTROL_PREFIX",
    "FAULT_KINDS",
    "Clock",
    "ControlHandler",
    "Fault",
    "Knobs",
    "KnobsMiddleware",
    "control_routes",
]

CONTROL_PREFIX = "/__sandbox__"
FAULT_KINDS = ("error", "hang", "drop_after_write", "drop_before")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Clock:
    """Wall clock with a settable offset ("time travel"), always UTC-aware."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    @property
    def offset(self) -> float:
        return self._offset

    def time(self) -> float:
        """Epoch seconds, offset applied."""
        return time.time() + self._offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._offset += float(seconds)
        return self.now()

    def set_offset(self, seconds: float) -> datetime:
        with self._lock:
            self._offset = float(seconds)
        return self.now()

    def reset(self) -> None:
        self.set_offset(0.0)


_fault_ids = itertools.count(1)


@dataclass
class Fault:
    kind: str = "error"
    times: int = 1
    status: int = 503
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 30.0
    apply: bool = False
    method: str | None = None
    path: str | None = None
    id: int = field(default_factory=lambda: next(_fault_ids))

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")
        if self.times < 1:
            raise ValueError("times must be >= 1")
        if self.method:
            self.method = self.method.upper()
        self._path_re = re.compile(self.path) if self.path else None

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method != method.upper():
            return False
        return not (self._path_re and not self._path_re.search(path))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "times": self.times,
            "status": self.status,
            "body": self.body,
            "headers": self.headers,
            "seconds": self.seconds,
            "apply": self.apply,
            "method": self.method,
            "path": self.path,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        allowed = {
            "kind", "times", "status", "body", "headers", "seconds", "apply", "method", "path",
        }
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**data)


class Knobs:
    """Latency, fault queue and counters of one emulator. Thread-safe."""

    def __init__(self, name: str, clock: Clock | None = None) -> None:
        self.name = name
        self.clock = clock or Clock()
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._counts: collections.Counter[str] = collections.Counter()
        self._log: collections.deque[dict[str, Any]] = collections.deque(maxlen=2000)
        self.latency_ms = 0.0
        self.jitter_ms = 0.0
        self._release = threading.Event()
        self.connections: Any = None  # set by KnobsMiddleware: the server's connections

    def close_idle_after(self, seconds: float | None, reset: bool = False) -> None:
        """Close every keep-alive connection left idle ``seconds`` (None: never), as a
        server or proxy idle timeout does, without a ``Connection: close`` warning; with
        ``reset``, by a RST (a proxy that drops its state), which the client's next write
        meets as a broken pipe or a reset."""
        if self.connections is not None:
            self.connections.idle_timeout, self.connections.idle_reset = seconds, reset

    def close_idle_connections(self, reset: bool = False) -> int:
        """Close every keep-alive connection between two requests, as a server's idle
        timeout does (uvicorn closes after 5 s; load balancers after their own): FIN, or
        RST with ``reset``. The client's next request on one fails (broken pipe,
        connection reset, disconnected) unless it opens a fresh connection."""
        return self.connections.close_idle(reset) if self.connections is not None else 0

    # ---------------------------------------------------------------- faults
    def add_fault(self, kind: str = "error", **kwargs: Any) -> Fault:
        fault = Fault(kind=kind, **kwargs)
        with self._lock:
            self._faults.append(fault)
        return fault

    def fail(self, status: int = 503, times: int = 1, **kwargs: Any) -> Fault:
        """Answer ``status`` to the next ``times`` matching requests."""
        return self.add_fault("error", status=status, times=times, **kwargs)

    def hang(self, seconds: float = 30.0, times: int = 1, apply: bool = False, **kw: Any) -> Fault:
        """Hold matching requests ``seconds`` then reset (``apply``: write first)."""
        return self.add_fault("hang", seconds=seconds, times=times, apply=apply, **kw)

    def drop_after_write(self, times: int = 1, **kwargs: Any) -> Fault:
        """Apply the write, then reset the connection without answering."""
        return self.add_fault("drop_after_write", times=times, **kwargs)

    def drop_before(self, times: int = 1, **kwargs: Any) -> Fault:
        return self.add_fault("drop_before", times=times, **kwargs)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_dict() for f in self._faults]

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # --------------------------------------------------------------- latency
    def set_latency(self, ms: float = 0.0, jitter_ms: float = 0.0) -> None:
        if ms < 0 or jitter_ms < 0:
            raise ValueError("latency must be >= 0")
        self.latency_ms = float(ms)
        self.jitter_ms = float(jitter_ms)

    async def delay(self) -> None:
        ms = self.latency_ms
        if self.jitter_ms:
            ms += random.uniform(0, self.jitter_ms)
        if ms > 0:
            await self.sleep(ms / 1000.0)

    async def sleep(self, seconds: float) -> None:
        """Sleep, cut short when the server stops (so hangs never block a stop)."""
        deadline = time.monotonic() + seconds
        while not self._release.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, 0.05))

    def release_hangs(self) -> None:
        self._release.set()

    def arm(self) -> None:
        self._release.clear()

    # -------------------------------------------------------------- counters
    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    def calls(self, method: str | None = None, path_prefix: str = "") -> int:
        """Requests seen (faulted ones included), filtered by method and path prefix."""
        total = 0
        with self._lock:
            for key, n in self._counts.items():
                if " " not in key or not key[0].isupper():
                    continue
                m, _, p = key.partition(" ")
                if method and m != method.upper():
                    continue
                if p.startswith(path_prefix):
                    total += n
        return total

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._log)

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._log.append(entry)

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self._counts.clear()
            self._log.clear()
        self.latency_ms = 0.0
        self.jitter_ms = 0.0

    def state(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "jitter_ms": self.jitter_ms,
            "faults": self.faults(),
            "clock": {"now": self.clock.now().isoformat(), "offset_seconds": self.clock.offset},
        }


class Emulator(Protocol):
    """What the control endpoints and the middleware use of an emulator
    (:class:`sandbox.server.Emulator` is one): a protocol, so this module needs no
    import of the server."""

    name: str
    knobs: Knobs

    @property
    def url(self) -> str: ...
    @property
    def running(self) -> bool: ...
    def config_dict(self) -> dict[str, Any]: ...
    def configure(self, **settings: Any) -> dict[str, Any]: ...
    def snapshot(self) -> dict[str, Any]: ...
    def reset(self, data: bool = True) -> None: ...
    def control_routes(self) -> list[BaseRoute]: ...
    def fault_response(self, status: int) -> tuple[int, dict[str, str], bytes]: ...


# ---------------------------------------------------------------- middleware


def _abort_connection(send: Send) -> bool:
    """Reset the client's TCP connection (RST) without an HTTP answer.

    Works with uvicorn's h11/httptools protocols, whose ``send`` is a bound
    method of a request cycle that holds the asyncio transport.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        return False
    if transport.is_closing():  # the client already went away
        return True
    try:
        sock = transport.get_extra_info("socket")
    except AttributeError:  # SSL transport torn down underneath
        sock = None
    if sock is not None:
        try:  # linger 0: close() sends RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()
    if hasattr(cycle, "disconnected"):
        cycle.disconnected = True  # no "500 after return" from uvicorn
    return True


async def _drain(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _swallow(message: Message) -> None:
    return None


class _Connections:
    """The keep-alive connections the server holds, to close the idle ones on demand:
    what a server's idle timeout (or a proxy's) does between two requests of a client."""

    def __init__(self) -> None:
        self.idle: dict[Any, asyncio.AbstractEventLoop] = {}  # transport -> its loop
        self.lock = threading.Lock()
        self.idle_timeout: float | None = None  # close connections idle this long (s)
        self.idle_reset = False  # ... with a RST rather than a FIN

    def busy(self, send: Send) -> Any:
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if transport is not None:
            with self.lock:
                self.idle.pop(transport, None)
        return transport

    def rest(self, transport: Any) -> None:
        if transport is not None and not transport.is_closing():
            loop = asyncio.get_running_loop()
            with self.lock:
                self.idle[transport] = loop
            if self.idle_timeout is not None:
                loop.call_later(self.idle_timeout, self._expire, transport)

    def _expire(self, transport: Any) -> None:
        with self.lock:
            still_idle = self.idle.pop(transport, None) is not None
        if still_idle:  # no request came on it meanwhile
            _close_transport(transport, reset=self.idle_reset)

    def close_idle(self, reset: bool) -> int:
        with self.lock:
            idle, self.idle = self.idle, {}
        for transport, loop in idle.items():
            loop.call_soon_threadsafe(_close_transport, transport, reset)
        return len(idle)


def _close_transport(transport: Any, reset: bool) -> None:
    if transport.is_closing():
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


class KnobsMiddleware:
    """Outermost ASGI layer: control endpoints, latency, faults, counters."""

    def __init__(self, app: ASGIApp, emulator: Emulator) -> None:
        self.app = app
        self.emulator = emulator
        self.knobs = emulator.knobs
        self.control = build_control_app(emulator)
        self.knobs.connections = _Connections()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._serve(scope, receive, send)
            return
        connections = self.knobs.connections
        transport = connections.busy(send)

        async def send_then_rest(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                connections.rest(transport)  # idle from the moment the client has the answer
            await send(message)

        if transport is not None:
            send_then_rest.__self__ = send.__self__  # type: ignore[attr-defined]
        await self._serve(scope, receive, send_then_rest)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            await self.control(scope, receive, send)
            return
        knobs = self.knobs
        method: str = scope["method"]
        knobs.count(f"{method} {path}")
        fault = knobs.take_fault(method, path)
        entry: dict[str, Any] = {
            "t": knobs.clock.now().isoformat(),
            "method": method,
            "path": path,
            "query": scope.get("query_string", b"").decode("latin-1"),
            "status": None,
            "fault": fault.kind if fault else None,
        }
        knobs._record(entry)
        await knobs.delay()

        async def send_recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
                knobs.count(f"status:{message['status']}")
            await send(message)

        if fault is None:
            await self.app(scope, receive, send_recording)
            return
        knobs.count(f"fault:{fault.kind}")
        if fault.kind == "error":
            await _drain(receive)
            status, headers, body = self._error_response(fault)
            response = Response(body, status_code=status, headers=headers)
            await response(scope, receive, send_recording)
            return
        if fault.kind == "drop_before":
            await _drain(receive)
        elif fault.kind == "drop_after_write":
            await self.app(scope, receive, _swallow)
        elif fault.kind == "hang":
            if fault.apply:
                await self.app(scope, receive, _swallow)
            else:
                await _drain(receive)
            await knobs.sleep(fault.seconds)
        entry["status"] = "reset"
        if not _abort_connection(send):  # not under uvicorn: best effort, truncated answer
            await send({"type": "http.response.start", "status": 200, "headers": []})
            raise ConnectionAbortedError("sandbox fault: connection dropped")
        for _ in range(3):  # let the transport's connection_lost run
            await asyncio.sleep(0)

    def _error_response(self, fault: Fault) -> tuple[int, dict[str, str], bytes]:
        if fault.body is None:
            status, headers, body = self.emulator.fault_response(fault.status)
        else:
            status = fault.status
            if isinstance(fault.body, (bytes, str)):
                body = fault.body.encode() if isinstance(fault.body, str) else fault.body
                headers = {"content-type": "text/plain; charset=utf-8"}
            else:
                body = json.dumps(fault.body).encode()
                headers = {"content-type": "application/json;charset=UTF-8"}
        merged = dict(headers)
        merged.update(fault.headers)
        return status, merged, body


# ------------------------------------------------------------ control routes


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    return json.loads(raw)


# A control endpoint: (JSON body, {} for a GET; the request) -> a JSON-able result or a
# Response, sync or async.
ControlHandler = Callable[[dict[str, Any], Request], Any]


def control_routes(
    table: Mapping[str, tuple[str, ControlHandler]],
    *,
    errors: tuple[type[Exception], Callable[[Any], tuple[int, Any]]] | None = None,
) -> list[BaseRoute]:
    """Routes under ``/__sandbox__`` from ``{path: ("GET|POST", handler)}``.

    Bad input (unparsable JSON, a missing key, a wrong type) answers 400
    ``{"error": ...}``; ``errors=(ProviderError, render)`` answers a provider error
    raised by a handler as ``render(exc) -> (status, body)``."""

    def endpoint(handler: ControlHandler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                data = await _json_body(request) if request.method != "GET" else {}
                result = handler(data if isinstance(data, dict) else {}, request)
                if inspect.isawaitable(result):
                    result = await result
            except (ValueError, KeyError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            except Exception as exc:
                if errors is None or not isinstance(exc, errors[0]):
                    raise
                status, body = errors[1](exc)
                return JSONResponse(body, status_code=status)
            return result if isinstance(result, Response) else JSONResponse(result)

        return run

    return [
        Route(CONTROL_PREFIX + path, endpoint(handler), methods=methods.split("|"))
        for path, (methods, handler) in table.items()
    ]


def build_control_app(emulator: Emulator) -> Starlette:
    knobs = emulator.knobs

    def bad(message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=400)

    async def info(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "name": emulator.name,
                "url": emulator.url if emulator.running else None,
                "config": emulator.config_dict(),
                "knobs": knobs.state(),
            }
        )

    async def counters(request: Request) -> JSONResponse:
        return JSONResponse({"counters": knobs.counters(), "total": knobs.calls()})

    async def requests_log(request: Request) -> JSONResponse:
        return JSONResponse({"requests": knobs.requests()})

    async def faults(request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse({"faults": knobs.faults()})
        if request.method == "DELETE":
            knobs.clear_faults()
            return JSONResponse({"faults": []})
        try:
            data = await _json_body(request)
            specs = data.get("faults", [data]) if isinstance(data, dict) else data
            created = [Fault.from_dict(spec) for spec in specs]
        except (ValueError, TypeError) as exc:
            return bad(str(exc))
        for fault in created:
            with knobs._lock:
                knobs._faults.append(fault)
        return JSONResponse({"faults": knobs.faults()}, status_code=201)

    async def latency(request: Request) -> JSONResponse:
        try:
            data = await _json_body(request)
            knobs.set_latency(float(data.get("ms", 0)), float(data.get("jitter_ms", 0)))
        except (ValueError, TypeError) as exc:
            return bad(str(exc))
        return JSONResponse({"latency_ms": knobs.latency_ms, "jitter_ms": knobs.jitter_ms})

    async def clock(request: Request) -> JSONResponse:
        if request.method == "POST":
            try:
                data = await _json_body(request)
                if "offset_seconds" in data:
                    knobs.clock.set_offset(float(data["offset_seconds"]))
                if "advance_seconds" in data:
                    knobs.clock.advance(float(data["advance_seconds"]))
            except (ValueError, TypeError) as exc:
                return bad(str(exc))
        return JSONResponse(
            {"now": knobs.clock.now().isoformat(), "offset_seconds": knobs.clock.offset}
        )

    async def config(request: Request) -> JSONResponse:
        if request.method == "POST":
            try:
                data = await _json_body(request)
                return JSONResponse(emulator.configure(**data))
            except (ValueError, TypeError, KeyError) as exc:
                return bad(str(exc))
        return JSONResponse(emulator.config_dict())

    async def state(request: Request) -> JSONResponse:
        return JSONResponse(emulator.snapshot())

    async def reset(request: Request) -> JSONResponse:
        try:
            data = await _json_body(request)
        except ValueError as exc:
            return bad(str(exc))
        emulator.reset(data=bool(data.get("data", True)))
        return JSONResponse({"reset": True})

    p = CONTROL_PREFIX
    routes: list[BaseRoute] = [
        Route(p, info, methods=["GET"]),
        Route(p + "/", info, methods=["GET"]),
        Route(p + "/counters", counters, methods=["GET"]),
        Route(p + "/requests", requests_log, methods=["GET"]),
        Route(p + "/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route(p + "/latency", latency, methods=["POST"]),
        Route(p + "/clock", clock, methods=["GET", "POST"]),
        Route(p + "/config", config, methods=["GET", "POST"]),
        Route(p + "/state", state, methods=["GET"]),
        Route(p + "/reset", reset, methods=["POST"]),
    ]
    routes.extend(emulator.control_routes())
    return Starlette(routes=routes)
