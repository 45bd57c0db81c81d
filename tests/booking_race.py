"""A secretary in her own process: wait at the barrier, then POST one booking.

Kept free of project imports so that 20 spawned processes start quickly."""

from __future__ import annotations

import json
from typing import Any


def post_booking(url: str, key: str, idempotency_key: str, body: dict[str, Any],
                 barrier: Any, results: Any) -> None:
    import httpx

    with httpx.Client(timeout=60, trust_env=False) as client:
        client.get(url.split("/v1/")[0] + "/healthz")  # connect before the start signal
        barrier.wait(60)
        response = client.post(url, json=body, headers={
            "Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key})
    results.put((response.status_code, json.dumps(response.json())))
