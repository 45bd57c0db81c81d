"""The accept path's shortcuts keep their promises: a key verified moments ago
skips the store but never admits another secret, and one revoked in this
process stops at once; a body streamed past the limit is refused, not buffered."""

from __future__ import annotations

from test_api import api, auth  # noqa: F401 - the fixture

from relais.auth import revoke_key
from sync.store.db import session_scope


def test_a_recently_verified_key_admits_only_its_own_secret_until_revoked(api):  # noqa: F811
    key = api.keys["secretary"]
    url = "/v1/tenants/acme/messages/msg_none"
    assert api.get(url, headers=auth(key)).status_code == 404  # verified, now remembered
    forged = key[: key.rindex("_") + 1] + "x" * 43
    assert api.get(url, headers=auth(forged)).status_code == 401
    assert api.get(url, headers=auth(key)).status_code == 404
    with session_scope() as session:
        assert revoke_key(session, key.split("_")[1])
    assert api.get(url, headers=auth(key)).status_code == 401


def test_a_chunked_body_past_the_limit_is_refused(api):  # noqa: F811
    def chunks():
        for _ in range(40):
            yield b" " * 100_000

    response = api.post("/v1/tenants/acme/messages", content=chunks(),
                        headers=auth(api.keys["secretary"]))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
