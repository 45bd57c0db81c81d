"""The provider catalogue (``providers.yaml``) as typed records."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict


class ProviderSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    auth_mode: str
    authorization_url: str
    token_url: str
    api_base_url: str | None = None
    scopes: list[str] = []
    pkce: bool = False
    # Extra query parameters of the authorize URL, per provider (Google: offline access).
    authorize_params: dict[str, str] = {}
    # Scopes sent again on code redemption and refresh (Microsoft identity requires them).
    token_scopes: bool = False
    default_token_lifetime: int = 3600
    api_version: str | None = None
    limits: dict[str, Any] = {}
    batch: dict[str, int] = {}

    def url(self, which: str, settings: dict[str, Any]) -> str:
        """``authorization_url`` / ``token_url`` / ``api_base_url``, unless the
        connection's settings override it (sandbox, Salesforce My Domain)."""
        value = settings.get(which) or getattr(self, which)
        if not value:
            raise LookupError(f"{self.name}: no {which} in the catalogue or the settings")
        return str(value).format(tenant=settings.get("directory_tenant", "common"))


@lru_cache(maxsize=1)
def _catalogue() -> dict[str, ProviderSpec]:
    data = yaml.safe_load((Path(__file__).parent / "providers.yaml").read_text())
    return {name: ProviderSpec(name=name, **spec) for name, spec in data.items()}


def provider(name: str) -> ProviderSpec:
    try:
        return _catalogue()[name]
    except KeyError:
        raise LookupError(f"unknown provider {name!r}") from None
