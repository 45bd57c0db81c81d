"""Run an ASGI app with uvicorn in a background thread, on 127.0.0.1.

``SandboxServer`` binds an ephemeral port itself (so ``.url`` is known
before the first request), optionally serves TLS from the sandbox CA, and
stops cleanly (hung requests are released first). ``Emulator`` is the small
base class every provider emulator builds on: it owns the clock and the
knobs, and ``start()`` returns the emulator itself with ``.url`` and
``.ca_file`` filled in.

Writing another emulator (Google Calendar, Microsoft Graph...)::

    class GraphEmulator(Emulator):
        name = "graph"
        default_tls = True                      # msal insists on https

        def build_app(self):                    # any ASGI app (Starlette, FastAPI)
            return Starlette(routes=[...])

        def reset_data(self):                   # records only; called under self.lock
            self.events = {}

        def fault_response(self, status):       # injected errors in the provider's shape
            return status, {"content-type": "application/json"}, b'{"error": {...}}'

    emu = GraphEmulator().start()               # .url, .ca_file, .stop(), context manager
    emu.knobs.fail(429, times=2, path="/calendar")
    emu.clock.advance(3600)                     # use self.clock for every timestamp

Keep state changes under ``self.lock`` (tests read it from another thread),
name custom counters in lower case (``self.knobs.count("graph.events")``) and
add provider-specific control endpoints with ``control_routes()``.

What every emulator shares: dispatch through a :class:`sandbox.routing.RouteTable`
(raw-path segments, the provider's own 404), the OAuth server pieces and the
credential knobs in :mod:`sandbox.oauth`, control endpoints as a table with
:func:`sandbox.knobs.control_routes`, settings as a dataclass in ``self.config``
(``configure()`` here; override ``reconfigured()`` to re-apply a change).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, Self

import uvicorn
from starlette.routing import BaseRoute

from sandbox.knobs import ASGIApp, Clock, Knobs, KnobsMiddleware
from sandbox.tls import TLSMaterial, shared_tls

__all__ = ["Emulator", "EmulatorGroup", "SandboxServer"]

log = logging.getLogger("sandbox")


class SandboxServer:
    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TLSMaterial | None = None,
        name: str = "sandbox",
        log_level: str = "warning",
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.tls = tls
        self.name = name
        self.log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``https://127.0.0.1:41234``."""
        if self._sock is None:
            raise RuntimeError(f"{self.name} sandbox is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} sandbox already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP, and without it every keep-alive answer stalls ~40 ms (Nagle +
        # delayed ACK between the header and body writes)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        sock.setblocking(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_level=self.log_level,
            access_log=False,
            timeout_graceful_shutdown=0.5,  # type: ignore[arg-type]
            ssl_certfile=str(self.tls.cert_file) if self.tls else None,
            ssl_keyfile=str(self.tls.key_file) if self.tls else None,
        )
        self._server = uvicorn.Server(config)
        started = threading.Event()

        server = self._server

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await server.serve(sockets=[sock])

        def run() -> None:
            try:
                asyncio.run(serve())
            except BaseException as exc:  # surfaced by start()
                self._error = exc
            finally:
                started.set()

        self._thread = threading.Thread(target=run, name=f"sandbox-{self.name}", daemon=True)
        self._thread.start()
        waited = 0.0
        while not self._server.started and waited < timeout:
            if started.wait(0.01):
                break
            waited += 0.01
        if not self._server.started:
            self.stop()
            raise RuntimeError(f"{self.name} sandbox failed to start") from self._error
        log.info("%s sandbox listening on %s", self.name, self.url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        server, loop = self._server, self._loop
        if server is not None:
            if loop is not None and not loop.is_closed():
                # idle keep-alive (and TLS) connections would hold the graceful
                # shutdown until its timeout: cut them first
                def abort_all() -> None:
                    for conn in list(server.server_state.connections):
                        transport = getattr(conn, "transport", None)
                        if transport is not None:
                            transport.abort()

                try:
                    loop.call_soon_threadsafe(abort_all)
                except RuntimeError:  # loop closed meanwhile
                    pass
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._thread = None
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Emulator:
    """Base of the provider emulators: clock, knobs, control hooks, lifecycle."""

    name = "emulator"
    label = ""  # the provider's name in messages ("unknown HubSpot settings")
    default_tls = False
    config: Any = None  # the settings, a dataclass, when the emulator has any

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.knobs = Knobs(self.name, clock=self.clock)
        self.lock = threading.RLock()
        self._server: SandboxServer | None = None
        self._tls: TLSMaterial | None = None
        self._asgi: ASGIApp | None = None

    # ------------------------------------------------------------ overrides
    def build_app(self) -> ASGIApp:
        raise NotImplementedError

    def reset_data(self) -> None:
        """Wipe the emulator's records (credentials survive)."""

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config) if is_dataclass(self.config) else {}

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Set fields of ``self.config`` (unknown names: KeyError, nothing set), then let
        :meth:`reconfigured` apply them; returns :meth:`config_dict`."""
        with self.lock:
            known = {f.name for f in fields(self.config)} if is_dataclass(self.config) else set()
            unknown = set(settings) - known
            if unknown:
                what = " ".join(filter(None, ["unknown", self.label, "settings"]))
                raise KeyError(f"{what}: {sorted(unknown)}")
            for key, value in settings.items():
                setattr(self.config, key, value)
            self.reconfigured(settings)
        return self.config_dict()

    def reconfigured(self, settings: dict[str, Any]) -> None:
        """Apply new ``settings`` (already set on ``self.config``); called under the lock."""

    def snapshot(self) -> dict[str, Any]:
        return {}

    def credentials(self) -> dict[str, Any]:
        """What a client needs to connect (ids, secrets, tokens)."""
        return {}

    def control_routes(self) -> list[BaseRoute]:
        """Extra routes mounted under ``/__sandbox__`` (full paths)."""
        return []

    def fault_response(self, status: int) -> tuple[int, dict[str, str], bytes]:
        """Body an injected ``error`` fault answers with, in the provider's shape."""
        body = json.dumps({"error": "sandbox injected fault", "status": status}).encode()
        return status, {"content-type": "application/json"}, body

    # ------------------------------------------------------------- provided
    @property
    def asgi(self) -> ASGIApp:
        if self._asgi is None:
            self._asgi = KnobsMiddleware(self.build_app(), self)
        return self._asgi

    def start(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool | TLSMaterial | None = None,
        log_level: str = "warning",
    ) -> Self:
        """Serve in a background thread; ``tls=None`` uses the emulator's default."""
        if tls is None:
            tls = self.default_tls
        if tls is True:
            tls = shared_tls()
        self._tls = tls or None
        self.knobs.arm()
        self._server = SandboxServer(
            self.asgi, host=host, port=port, tls=self._tls, name=self.name, log_level=log_level
        )
        self._server.start()
        return self

    def stop(self) -> None:
        self.knobs.release_hangs()
        if self._server is not None:
            self._server.stop()
        self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.running

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{self.name} emulator is not started")
        return self._server.url

    @property
    def ca_file(self) -> Path | None:
        """CA to trust for this emulator (None when it serves plain HTTP)."""
        return self._tls.ca_file if self._tls else None

    def reset(self, data: bool = True) -> None:
        """Clear faults, latency, counters and clock offset; ``data`` also wipes records."""
        self.knobs.reset()
        self.clock.reset()
        if data:
            with self.lock:
                self.reset_data()

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmulatorGroup:
    """Emulators started together (a dataclass of ``Emulator | None`` fields and ``tls``):
    one ``describe``, ``reset`` and ``stop`` for all of them."""

    tls: TLSMaterial

    def members(self) -> dict[str, Emulator]:
        """The running emulators by field name, in field order."""
        return {f.name: value for f in fields(self)  # type: ignore[arg-type]
                if isinstance(value := getattr(self, f.name), Emulator)}  # fmt: skip

    @property
    def ca_file(self) -> Path:
        """PEM of the CA that signs the HTTPS emulators' certificates."""
        return self.tls.ca_file

    def describe(self) -> dict[str, Any]:
        """URLs, credentials and control endpoints, JSON-serialisable."""
        out: dict[str, Any] = {"ca_file": str(self.ca_file)}
        for name, emu in self.members().items():
            out[name] = {"url": emu.url, "control": emu.url + "/__sandbox__/",
                         **emu.credentials()}  # fmt: skip
        return out

    def reset(self, data: bool = True) -> None:
        for emu in self.members().values():
            emu.reset(data=data)

    def stop(self) -> None:
        for emu in self.members().values():
            emu.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
