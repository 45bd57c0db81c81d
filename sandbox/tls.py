"""Test certificate authority for the sandbox emulators.

One CA per process (``shared_tls()``) signs a server certificate for
``127.0.0.1``, ``::1`` and ``localhost``; clients trust the CA through
``ca_file`` (a PEM path). With ``requests`` remember ``session.trust_env =
False``: ``REQUESTS_CA_BUNDLE`` otherwise overrides ``session.verify``.
"""

from __future__ import annotations

import atexit
import shutil
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TLSMaterial", "create_tls", "shared_tls"]

SERVER_IDENTITIES = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class TLSMaterial:
    """Paths to a CA certificate and a server certificate/key signed by it."""

    directory: Path
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """An SSL context trusting only the sandbox CA (for httpx, urllib3...)."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def create_tls(directory: str | Path | None = None) -> TLSMaterial:
    """Create a fresh CA and a server certificate; write the PEM files.

    ``directory`` defaults to a temporary folder removed at interpreter exit.
    """
    if directory is None:
        path = Path(tempfile.mkdtemp(prefix="relais-sandbox-tls-"))
        atexit.register(shutil.rmtree, path, True)
    else:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
    import trustme  # only needed once TLS is asked for

    ca = trustme.CA(organization_name="Relais sandbox CA")
    leaf = ca.issue_cert(*SERVER_IDENTITIES, common_name="relais-sandbox")
    ca_file = path / "sandbox-ca.pem"
    cert_file = path / "sandbox-server.pem"
    key_file = path / "sandbox-server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    # full chain (leaf first), so clients that need intermediates get them
    cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o600)
    return TLSMaterial(directory=path, ca_file=ca_file, cert_file=cert_file, key_file=key_file)


_shared: TLSMaterial | None = None
_shared_lock = threading.Lock()


def shared_tls() -> TLSMaterial:
    """The process-wide sandbox CA (created on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = create_tls()
        return _shared
