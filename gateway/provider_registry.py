"""The providers this deployment offers: built-ins with their overrides, and OIDC issuers.

Built once at start-up from the settings. A generic OIDC provider is
discovered from its issuer URL, and its document's ``issuer`` must equal the
configured one exactly (OIDC Discovery §4.3, RFC 8414 §3.3), or start-up fails.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.config import ProviderSettings, Settings
from gateway.errors import ConfigError, LinkgateError, NotFound
from gateway.oauth import ClientCredentials, fetch_json
from providers import BUILTIN_PROVIDERS
from providers.base import Provider
from providers.oidc import discovery_url, provider_from_discovery


@dataclass(frozen=True, slots=True)
class ConfiguredProvider:
    provider: Provider
    client: ClientCredentials

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def issuer(self) -> str:
        """The identity a connection's subject is scoped to (iss, or the provider's name)."""
        return self.provider.oauth.endpoints.issuer or self.provider.name


class ProviderRegistry(Mapping[str, ConfiguredProvider]):
    def __init__(self, providers: Mapping[str, ConfiguredProvider]):
        self._providers = dict(providers)

    def __getitem__(self, name: str) -> ConfiguredProvider:
        return self._providers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._providers)

    def __len__(self) -> int:
        return len(self._providers)

    def require(self, name: str) -> ConfiguredProvider:
        try:
            return self._providers[name]
        except KeyError:
            raise NotFound(f"provider {name!r} is not configured") from None


async def load_providers(settings: Settings, http: httpx.AsyncClient) -> ProviderRegistry:
    providers: dict[str, ConfiguredProvider] = {}
    problems: list[str] = []
    for name, section in settings.providers.items():
        try:
            provider = await _resolve(section, http)
        except (LinkgateError, KeyError) as exc:
            problems.append(f"[providers.{name}]: discovery at {section.issuer} failed ({exc})")
            continue
        if provider is None:
            problems.append(f"[providers.{name}]: issuer mismatch in the discovery document")
            continue
        providers[name] = ConfiguredProvider(
            provider=provider,
            client=ClientCredentials(
                section.client_id,
                section.client_secret,
                team_id=section.team_id,
                key_id=section.key_id,
                private_key_pem=_private_key_pem(section),
            ),
        )
    if problems:
        raise ConfigError(problems)
    return ProviderRegistry(providers)


def _private_key_pem(section: ProviderSettings) -> str:
    """The client-secret signing key; validated at start-up (gateway.config), read once here."""
    return Path(section.private_key_file).read_text() if section.private_key_file else ""


async def _resolve(section: ProviderSettings, http: httpx.AsyncClient) -> Provider | None:
    if section.kind == "oidc":
        metadata = await fetch_json(http, discovery_url(section.issuer))
        if metadata.get("issuer") != section.issuer:
            return None
        return provider_from_discovery(section.name, metadata, section.scopes).with_endpoints(
            section.endpoints
        )
    provider = BUILTIN_PROVIDERS[section.name]
    if section.api_version:  # validated at start-up: a provider pinned to a version
        provider = provider.with_api_version(section.api_version)
    # After the version: an endpoint the operator sets is used as written, version and all.
    provider = provider.with_endpoints(section.endpoints)
    return provider.with_scopes(section.scopes) if section.scopes else provider
