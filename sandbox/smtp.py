"""A local SMTP submission server (aiosmtpd) for the email connector.

``SmtpSandbox(mode="starttls")`` listens on ``127.0.0.1`` on a free port and
serves, depending on ``mode``:

``starttls``
    plain connection, ``STARTTLS`` offered (certificate from the shared
    sandbox CA, ``sandbox.tls``); ``AUTH PLAIN LOGIN`` advertised and accepted
    only after STARTTLS (538 before), like a port-587 submission server.
``tls``
    implicit TLS from the first byte (port-465 style, "SMTPS").
``none``
    no TLS at all, no AUTH (a local relay).

Every ``MAIL`` needs a successful AUTH (530 otherwise) unless
``auth_required=False``; a wrong password answers ``535 5.7.8``. The known
credentials are ``username`` / ``password`` (``credentials()``), and
``settings()`` gives the email connector's connection settings for this
server.

Received messages are kept as :class:`ReceivedMail` (envelope, raw bytes and
the parsed ``email.message.EmailMessage``) in ``messages``; ``wait_for(n)``
blocks until ``n`` arrived.

Knobs (``self.knobs`` is the shared :class:`sandbox.knobs.Knobs`; an SMTP
fault's ``method`` is the SMTP command ``MAIL``/``RCPT``/``DATA`` and its
``path`` a regular expression searched in the sender (MAIL), the recipient
(RCPT) or the recipients joined by commas (DATA)):

* ``reject_recipient(address, code=550)`` - refuse that RCPT (every time, or
  ``times`` times);
* ``fail_data(code=451, times=1)`` - answer the end of DATA with a temporary
  (4xx) or permanent (5xx) error, nothing stored;
* ``drop_after_data(times=1, store=True)`` - store the message (or not), then
  cut the connection instead of answering the end of DATA: the client cannot
  know whether it was accepted;
* ``knobs.set_latency(ms)`` - delay every command answer;
* counters: ``sessions``, ``auth.ok``, ``auth.failed``, ``messages``,
  ``rcpt.refused``, ``fault:<kind>``, one per command (``MAIL``, ``RCPT``,
  ``DATA``).

Start and stop take a few milliseconds; use it as a context manager.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from sandbox.knobs import Clock, Knobs
from sandbox.tls import TLSMaterial, shared_tls

__all__ = ["ReceivedMail", "SmtpSandbox"]

MODES = ("starttls", "tls", "none")


class _QuietDeprecation(logging.Filter):
    """aiosmtpd warns about its own legacy ``login_data`` on every AUTH."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_QuietDeprecation())
SERVER_NAME = "smtp.relais-sandbox.test"  # no getfqdn(): it can take seconds


@dataclass
class ReceivedMail:
    """One message as the server stored it."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    peer: Any
    tls: bool
    auth_user: str | None
    received_at: datetime

    @property
    def message_id(self) -> str | None:
        return self.message.get("Message-ID")

    def part(self, subtype: str) -> str | None:
        """The decoded ``text/<subtype>`` body, if the message has one."""
        body = self.message.get_body(preferencelist=(subtype,))
        if body is None or body.get_content_subtype() != subtype:
            return None
        return str(body.get_content())


class _Handler:
    """aiosmtpd hooks: faults, storage, counters."""

    def __init__(self, sandbox: SmtpSandbox) -> None:
        self.sandbox = sandbox

    async def handle_EHLO(  # noqa: N802 - aiosmtpd naming
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        return responses

    async def handle_MAIL(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        mail_options: list[str],
    ) -> str:
        sandbox = self.sandbox
        sandbox.knobs.count("MAIL")
        await sandbox.knobs.delay()
        if sandbox.auth_required and not session.authenticated:
            return "530 5.7.0 Authentication required"
        fault = await sandbox._fault(server, "MAIL", address)
        if fault is not None:
            return fault
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        sandbox = self.sandbox
        sandbox.knobs.count("RCPT")
        await sandbox.knobs.delay()
        fault = await sandbox._fault(server, "RCPT", address)
        if fault is not None:
            sandbox.knobs.count("rcpt.refused")
            return fault
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        sandbox = self.sandbox
        sandbox.knobs.count("DATA")
        await sandbox.knobs.delay()
        fault = sandbox.knobs.take_fault("DATA", ",".join(envelope.rcpt_tos))
        if fault is not None:
            sandbox.knobs.count(f"fault:{fault.kind}")
            if fault.kind == "error":
                return _reply(fault.status, fault.body)
            if fault.kind == "drop_after_write" or (fault.kind == "hang" and fault.apply):
                sandbox._store(session, envelope)
            if fault.kind == "hang":
                await sandbox.knobs.sleep(fault.seconds)
            _abort(server)
            return "421 4.3.0 connection dropped by the sandbox"  # never reaches the client
        sandbox._store(session, envelope)
        return "250 2.0.0 OK: queued"


def _reply(status: int, text: Any) -> str:
    if text:
        return f"{status} {text}"
    if status >= 500:
        return f"{status} 5.0.0 sandbox injected permanent failure"
    return f"{status} 4.3.0 sandbox injected temporary failure, try again later"


def _abort(server: SMTP) -> None:
    """Cut the TCP connection without an answer (RST where possible)."""
    for transport in (getattr(server, "_original_transport", None), server.transport):
        if transport is None:
            continue
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        transport.abort()


class _Controller(Controller):
    """aiosmtpd's threaded controller, on a free port, with per-mode SMTP options."""

    def __init__(self, sandbox: SmtpSandbox, **kwargs: Any) -> None:
        self.sandbox = sandbox
        super().__init__(_Handler(sandbox), **kwargs)

    def _create_server(self) -> Any:
        created = super()._create_server()

        async def bound() -> asyncio.AbstractServer:
            server = await created
            self.port = server.sockets[0].getsockname()[1]
            return server

        return bound()

    def factory(self) -> SMTP:
        self.sandbox.knobs.count("sessions")
        return super().factory()


class SmtpSandbox:
    """An SMTP server in a background thread; see the module docstring."""

    name = "smtp"

    def __init__(
        self,
        mode: str = "starttls",
        *,
        username: str = "relais",
        password: str | None = None,
        auth_required: bool = True,
        tls: TLSMaterial | None = None,
        clock: Clock | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self.username = username
        self.password = password or "sandbox-" + secrets.token_urlsafe(12)
        self.auth_required = auth_required and mode != "none"
        self.clock = clock or Clock()
        self.knobs = Knobs(self.name, clock=self.clock)
        self.lock = threading.Lock()
        self._arrived = threading.Condition(self.lock)
        self.messages: list[ReceivedMail] = []
        self._tls = tls if tls is not None else (shared_tls() if mode != "none" else None)
        self._controller: _Controller | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> Self:
        if self._controller is not None:
            raise RuntimeError("smtp sandbox already started")
        self.knobs.arm()
        context = self._tls.server_context() if self._tls else None
        options: dict[str, Any] = {
            "hostname": "127.0.0.1",
            "port": 0,
            "server_hostname": SERVER_NAME,
            "ready_timeout": 5.0,
            "authenticator": self._authenticate,
            "auth_required": False,  # checked in handle_MAIL, with a clearer reply
            "timeout": 30,
        }
        if self.mode == "starttls":
            options["tls_context"] = context
        elif self.mode == "tls":
            options["ssl_context"] = context
            # the whole connection is TLS already (aiosmtpd only knows STARTTLS)
            options["auth_require_tls"] = False
        else:
            options["auth_exclude_mechanism"] = ["PLAIN", "LOGIN"]
        controller = _Controller(self, **options)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        self.knobs.release_hangs()
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        if self._controller is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._controller is not None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        if self._controller is None:
            raise RuntimeError("smtp sandbox is not started")
        return int(self._controller.port)

    @property
    def ca_file(self) -> str | None:
        return str(self._tls.ca_file) if self._tls else None

    def credentials(self) -> dict[str, str]:
        return {"password": self.password}

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """Connection settings of the email connector for this server."""
        settings: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": self.mode,
            "from_address": "relais@relais-sandbox.test",
            "timeout_seconds": 5,
        }
        if self.mode != "none":
            settings["username"] = self.username
            settings["ca_file"] = self.ca_file
        settings.update(overrides)
        return settings

    def reset(self) -> None:
        """Forget messages, faults, counters, latency and clock offset."""
        self.knobs.reset()
        self.clock.reset()
        with self.lock:
            self.messages.clear()

    # --------------------------------------------------------------- knobs
    def reject_recipient(self, address: str, code: int = 550, times: int = 1_000_000,
                         text: str | None = None) -> None:
        """Refuse ``RCPT TO:<address>`` with ``code`` (550: mailbox unavailable)."""
        reason = text or ("5.1.1 <%s>: Recipient address rejected: mailbox unavailable"
                          if code >= 500 else "4.2.0 <%s>: Recipient temporarily deferred")
        self.knobs.fail(code, times=times, method="RCPT", path=f"^{re.escape(address)}$",
                        body=reason % address if "%s" in reason else reason)

    def fail_data(self, code: int = 451, times: int = 1, text: str | None = None) -> None:
        """Answer the end of DATA with ``code`` ``times`` times; nothing is stored."""
        self.knobs.fail(code, times=times, method="DATA", body=text)

    def drop_after_data(self, times: int = 1, store: bool = True) -> None:
        """Cut the connection at the end of DATA, after storing the message or not."""
        kind = "drop_after_write" if store else "drop_before"
        self.knobs.add_fault(kind, times=times, method="DATA")

    # ------------------------------------------------------------ assertions
    def wait_for(self, count: int = 1, *, where: Callable[[ReceivedMail], bool] | None = None,
                 timeout: float = 5.0) -> list[ReceivedMail]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                hits = [m for m in self.messages if where is None or where(m)]
                if len(hits) >= count:
                    return hits
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"expected {count} message(s), got {len(hits)}")
                self._arrived.wait(left)

    def by_message_id(self, message_id: str) -> list[ReceivedMail]:
        with self.lock:
            return [m for m in self.messages if m.message_id == message_id]

    # -------------------------------------------------------------- internals
    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode("utf-8", "replace")
            given = auth_data.password.decode("utf-8", "replace")
            if user == self.username and secrets.compare_digest(given, self.password):
                self.knobs.count("auth.ok")
                return AuthResult(success=True, auth_data=user)
        self.knobs.count("auth.failed")
        return AuthResult(success=False, handled=False)

    async def _fault(self, server: SMTP, command: str, subject: str) -> str | None:
        fault = self.knobs.take_fault(command, subject)
        if fault is None:
            return None
        self.knobs.count(f"fault:{fault.kind}")
        if fault.kind == "error":
            return _reply(fault.status, fault.body)
        if fault.kind == "hang":
            await self.knobs.sleep(fault.seconds)
        _abort(server)
        return "421 4.3.0 connection dropped by the sandbox"

    def _store(self, session: Session, envelope: Envelope) -> None:
        raw = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not raw:
            raw = envelope.content
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            raw=raw,
            message=parsed,
            peer=session.peer,
            tls=self.mode == "tls" or session.ssl is not None,
            auth_user=session.auth_data if session.authenticated else None,
            received_at=self.clock.now(),
        )
        with self._arrived:
            self.messages.append(mail)
            self._arrived.notify_all()
        self.knobs.count("messages")
