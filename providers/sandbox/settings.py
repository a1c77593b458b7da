"""How a sandbox authorization server is set up: one frozen value object."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from joserfc.jwk import RSAKey

DEFAULT_ISSUER = "http://127.0.0.1:8081"
DEFAULT_CLIENT_ID = "linkgate-demo"
DEFAULT_CLIENT_SECRET = "sandbox-secret"  # noqa: S105 - a published demo credential, never a real one
DEFAULT_REDIRECT_URI = "http://127.0.0.1:8080/oauth/callback"
DEFAULT_ACCESS_TOKEN_TTL = 3600  # seconds, like most real providers
DEFAULT_ID_TOKEN_TTL = 3600  # seconds
DEFAULT_CODE_TTL = 60  # seconds; RFC 6749 §4.1.2 recommends at most ten minutes
DEFAULT_CONSENT_TTL = 600  # seconds a rendered consent page stays answerable
DEFAULT_PAGE_SIZE = 5  # small on purpose, so that paging is exercised
MAX_PAGE_SIZE = 25


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientRegistration:
    """A registered OAuth client: its secret and the redirect URIs it may use (exact match)."""

    client_secret: str
    redirect_uris: tuple[str, ...]


def _default_clients() -> Mapping[str, ClientRegistration]:
    demo = ClientRegistration(
        client_secret=DEFAULT_CLIENT_SECRET, redirect_uris=(DEFAULT_REDIRECT_URI,)
    )
    return MappingProxyType({DEFAULT_CLIENT_ID: demo})


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxSettings:
    """Everything a sandbox server needs; every field has a default.

    ``issuer`` is the server's own base URL: every endpoint in discovery hangs
    off it and it is the ``iss`` of every ID token, so it must be the URL the
    client reaches the server at.
    """

    issuer: str = DEFAULT_ISSUER
    clients: Mapping[str, ClientRegistration] = field(default_factory=_default_clients)
    access_token_ttl: int = DEFAULT_ACCESS_TOKEN_TTL
    id_token_ttl: int = DEFAULT_ID_TOKEN_TTL
    code_ttl: int = DEFAULT_CODE_TTL
    consent_ttl: int = DEFAULT_CONSENT_TTL
    # RFC 9700 §4.14.2: every refresh hands out a new refresh token and retires the old one.
    rotate_refresh_tokens: bool = True
    # The first signing key; None generates a fresh RSA key at start.
    signing_key: RSAKey | None = None
    # Skip the consent page: /authorize answers at once with a code for the demo user.
    auto_approve: bool = False
    # Who auto_approve signs in as (a demo user id); None means the first demo user.
    auto_approve_user: str | None = None
    # The /_sandbox/ control surface (faults, stats, key rotation) for tests and demos.
    control_enabled: bool = True
    clock: Callable[[], float] = time.time

    @property
    def base_url(self) -> str:
        return self.issuer.rstrip("/")
