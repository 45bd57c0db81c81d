"""The sandbox is written from the providers' documents, not from our code (issue 11):
a bug in a connector's signing or encoding must not be copied into its emulator."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from connectors.sms import sign_webhook as connector_sign
from connectors.sms import sms_segments as connector_segments
from connectors.webhook import sign as webhook_sign
from sandbox.sms_gateway import sign_webhook as sandbox_sign
from sandbox.sms_gateway import sms_segments as sandbox_segments
from sandbox.webhook_receiver import verify as receiver_verify

SANDBOX = Path(__file__).resolve().parent.parent / "sandbox"
OURS = ("connectors", "sync", "mappings", "relais", "worker")


def test_the_sandbox_imports_nothing_of_ours() -> None:
    found = []
    for path in sorted(SANDBOX.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            found += [f"{path.name}:{node.lineno} {n}" for n in names
                      if n.split(".")[0] in OURS]  # fmt: skip
    assert found == []


@pytest.mark.parametrize("text", [
    "", "Bonjour", "x" * 160, "x" * 161, "é" * 153 + "ç", "{" * 80, "{" * 81, "€" * 77,
    "Rappel 😀", "ç" * 70, "ç" * 71, "a" * 152 + "€", "😀" * 34, "😀" * 35,
])  # fmt: skip
def test_sandbox_and_connector_count_sms_segments_alike(text: str) -> None:
    """Two independent readings of GSM 03.38 / TS 23.040 must agree."""
    assert sandbox_segments(text) == connector_segments(text)


def test_signatures_agree_with_the_documented_formats() -> None:
    body, nonce, stamp = b'{"type":"recipient_delivery_report_sms"}', "n0nce", "1764660000"
    assert sandbox_sign("s3cret", body, nonce, stamp) == connector_sign("s3cret", body, nonce,
                                                                        stamp)  # fmt: skip
    import time

    now = str(int(time.time()))
    assert receiver_verify("s3cret", now, body, webhook_sign("s3cret", now, body))
    assert not receiver_verify("s3cret", now, body, webhook_sign("other", now, body))
