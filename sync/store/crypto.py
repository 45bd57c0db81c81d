"""Credentials and sealed message content at rest: MultiFernet so keys rotate
without downtime; keyed hashes for lookups by a sealed value."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from cryptography.fernet import Fernet, MultiFernet

from sync.settings import get_settings


def _cipher() -> MultiFernet:
    return MultiFernet([Fernet(k) for k in get_settings().fernet_keys()])


def encrypt_json(data: dict[str, Any]) -> bytes:
    return _cipher().encrypt(json.dumps(data, separators=(",", ":")).encode())


def decrypt_json(token: bytes | None) -> dict[str, Any]:
    if not token:
        return {}
    return json.loads(_cipher().decrypt(token))


def rotate(token: bytes) -> bytes:
    """Re-encrypt with the newest key (run after adding a key in front)."""
    return _cipher().rotate(token)


# ------------------------------------------------------------------ message content at rest

SEALED_PREFIX = "sealed1:"
_KEYED_HASH_CONTEXT = b"relais-keyed-hash-v1"


def seal_text(text: str) -> str:
    """``text`` encrypted with the newest key, as text (``sealed1:`` + Fernet token)."""
    return SEALED_PREFIX + _cipher().encrypt(text.encode()).decode()


def unseal_text(value: Any) -> Any:
    """The plaintext of a sealed value; anything else unchanged (plain rows stay readable)."""
    if isinstance(value, str) and value.startswith(SEALED_PREFIX):
        return _cipher().decrypt(value[len(SEALED_PREFIX):].encode()).decode()
    return value


def keyed_hashes(value: str) -> list[str]:
    """HMAC-SHA256 of ``value`` under each key, newest first: lookups by a sealed
    field's value (a phone) match the stored hash whichever key computed it."""
    out = []
    for key in get_settings().fernet_keys():
        derived = hmac.new(key, _KEYED_HASH_CONTEXT, hashlib.sha256).digest()
        out.append(hmac.new(derived, value.encode(), hashlib.sha256).hexdigest())
    return out


def seal_json(value: Any) -> dict[str, Any]:
    """Any JSON value sealed as ``{"sealed": token}`` (a JSON column keeps holding JSON)."""
    return {"sealed": seal_text(json.dumps(value, separators=(",", ":"), ensure_ascii=False))}


def unseal_json(value: Any) -> Any:
    """The value :func:`seal_json` sealed; anything else unchanged (plain rows stay readable)."""
    if isinstance(value, dict) and isinstance(value.get("sealed"), str):
        return json.loads(unseal_text(value["sealed"]))
    return value


def lookup_tokens(value: str, length: int = 64) -> list[str]:
    """:func:`keyed_hashes` as stored in a lookup column: ``k`` + the first ``length``
    hex digits, newest key first. The ``k`` keeps them apart from plain values in the
    same column (a phone's digits, an E.164 number): no range scan over digits or
    equality with a number ever meets one."""
    return ["k" + digest[:length] for digest in keyed_hashes(value)]
