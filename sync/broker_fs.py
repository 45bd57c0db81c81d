"""The embedded broker: kombu's filesystem transport, made safe for several processes.

Kombu writes a message file in place and a consumer may move and read it
before the producer has written it (the consumer does not take the file's
lock): the worker then crashes on an empty message. Here a message is written
under a temporary name that no consumer picks up, flushed, and renamed into
place, which is atomic on POSIX: a consumer sees a whole message or none.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class AtomicFileChannel(filesystem.Channel):
    """Kombu's filesystem channel whose messages appear whole (written, then renamed)."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(partial, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(partial, final)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = AtomicFileChannel  # kombu's attribute name
    # No host to default to: kombu would log "No hostname was supplied" on every
    # connection made from a ``filesystem://`` URL (each CLI command that enqueues).
    default_connection_params: dict[str, Any] = {}


def install() -> None:
    """Make ``filesystem://`` URLs use this transport."""
    TRANSPORT_ALIASES["filesystem"] = "sync.broker_fs:Transport"
