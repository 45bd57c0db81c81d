"""Credentials at rest: MultiFernet so keys rotate without downtime."""

from __future__ import annotations

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
