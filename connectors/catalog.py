"""The provider catalogue (``providers.yaml``) as typed records.

The catalogue is the one source of every provider's limits, batch sizes, auth
URLs and connector classes: code reads them from here, never from a constant of
its own. ``overridden`` swaps an entry for a block of code (tests, a bench).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict


class ProviderSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    # Who receives the data, in words (the tenant's record of processing, GDPR art. 30).
    recipient: str = ""
    # The CRM objects that hold a person, first the default (an erasure deletes them).
    person_objects: list[str] = []
    auth_mode: str  # "oauth2" or "none"
    authorization_url: str | None = None
    token_url: str | None = None
    # Where a token is revoked when a tenant disconnects (RFC 7009 style: a form
    # POST of ``token``; ``revocation: delete``: DELETE with the token in the URL's
    # ``{token}``). None: the provider offers no revocation endpoint.
    revocation_url: str | None = None
    revocation: str = "form"
    api_base_url: str | None = None
    scopes: list[str] = []
    pkce: bool = False
    # Extra query parameters of the authorize URL, per provider (Google: offline access).
    authorize_params: dict[str, str] = {}
    # Scopes sent again on code redemption and refresh (Microsoft identity requires them).
    token_scopes: bool = False
    default_token_lifetime: int = 3600
    api_version: str | None = None
    # "module:Class" paths, imported by connectors.registry on first use.
    connector: str | None = None  # deliveries (connectors.base.Connector)
    calendar: str | None = None  # busy times and events (connectors.calendar)
    contacts: str | None = None  # incremental contact reader (connectors.crm)
    # Our notification endpoint for this provider: ``/v1/webhooks/<webhook>``.
    webhook: str | None = None
    limits: dict[str, Any] = {}
    batch: dict[str, int] = {}

    def url(self, which: str, settings: dict[str, Any]) -> str:
        """``authorization_url`` / ``token_url`` / ``api_base_url``, unless the
        connection's settings override it (sandbox, Salesforce My Domain)."""
        value = settings.get(which) or getattr(self, which)
        if not value:
            raise LookupError(f"{self.name}: no {which} in the catalogue or the settings")
        return str(value).replace("{tenant}", str(settings.get("directory_tenant", "common")))

    def rate_limit(self, count: Any = None, window: Any = None) -> tuple[int, float] | None:
        """Requests per window for a connection's shared limiter: ``count`` / ``window``
        (a connection's own settings, when given), else the catalogue's
        ``limits.requests`` / ``limits.window_seconds``; None if neither sets a count."""
        count = count or self.limits.get("requests")
        if not count:
            return None
        window = window if window is not None else self.limits.get("window_seconds", 1)
        return int(count), float(window)

    def batch_size(self, which: str, default: int) -> int:
        return int(self.batch.get(which, default))


_OVERRIDES: dict[str, ProviderSpec] = {}


@lru_cache(maxsize=1)
def _catalogue() -> dict[str, ProviderSpec]:
    data = yaml.safe_load((Path(__file__).parent / "providers.yaml").read_text())
    return {name: ProviderSpec(name=name, **spec) for name, spec in data.items()}


def provider(name: str) -> ProviderSpec:
    if name in _OVERRIDES:
        return _OVERRIDES[name]
    try:
        return _catalogue()[name]
    except KeyError:
        raise LookupError(f"unknown provider {name!r}") from None


def providers() -> list[ProviderSpec]:
    """Every provider, in the catalogue's order."""
    return [provider(name) for name in _catalogue()]


def oauth_providers() -> tuple[str, ...]:
    return tuple(spec.name for spec in providers() if spec.auth_mode == "oauth2")


def with_part(part: str) -> tuple[str, ...]:
    """Providers that have a ``connector`` / ``calendar`` / ``contacts`` class."""
    return tuple(spec.name for spec in providers() if getattr(spec, part))


def by_webhook(route: str) -> ProviderSpec:
    """The provider whose notifications come to ``/v1/webhooks/<route>``."""
    for spec in providers():
        if spec.webhook == route:
            return spec
    raise LookupError(f"no provider notifies /v1/webhooks/{route}")


@contextmanager
def overridden(name: str, **changes: Any) -> Iterator[ProviderSpec]:
    """Within the block, ``provider(name)`` has these fields replaced (dicts such
    as ``limits`` are merged key by key). For tests and benches; not thread-local."""
    base = provider(name)
    merged = {
        key: {**getattr(base, key), **value} if isinstance(value, dict) else value
        for key, value in changes.items()
    }
    spec = base.model_copy(update=merged)
    previous = _OVERRIDES.get(name)
    _OVERRIDES[name] = spec
    try:
        yield spec
    finally:
        if previous is None:
            _OVERRIDES.pop(name, None)
        else:
            _OVERRIDES[name] = previous
