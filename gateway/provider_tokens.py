"""Tokens a provider issues beside the OAuth grant: exchanged tokens and per-object tokens.

Two provider-declared steps (``providers.base``) that RFC 6749 does not cover:

* :func:`exchange_token` trades an access token for another at a provider grant
  (Meta ``fb_exchange_token``/``ig_exchange_token`` for a long-lived token right
  after the code exchange; Instagram ``ig_refresh_token`` instead of a refresh).
* :func:`fetch_scoped_tokens` lists per-object tokens under the user's token
  (Meta Page access tokens from ``/me/accounts``), and :class:`ScopedTokenStore`
  keeps them sealed by the vault, one row per connection and object, bound to
  that row as associated data like every other token.

Token values never reach a log line or an error message: errors name the
provider's error code only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import httpx
import structlog
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cursor import same_origin
from gateway.errors import UpstreamError, UpstreamMalformed, UpstreamUnavailable
from gateway.oauth import ClientCredentials, OAuthError, TokenSet, fetch_json, parse_token_response
from gateway.storage import provider_tokens, writer
from gateway.vault import KeyRing, token_row
from providers.base import Provider, ScopedTokens, TokenExchange, dig

__all__ = ["ScopedTokenStore", "exchange_token", "fetch_scoped_tokens", "scoped_token_name"]

log = structlog.get_logger(__name__)

MAX_BODY = 256 * 1024


def scoped_token_name(object_id: str) -> str:
    """The vault's associated-data name of one object's token (``scoped:{id}``)."""
    return f"scoped:{object_id}"


async def exchange_token(
    http: httpx.AsyncClient,
    provider: Provider,
    client: ClientCredentials,
    token: str,
    spec: TokenExchange,
) -> TokenSet:
    """Trade ``token`` at the provider's exchange grant; raises :class:`OAuthError` on refusal.

    Meta documents these as GET requests with query parameters ("Long-Lived Access
    Tokens"; Instagram "Access Token", "Refresh Access Token").
    """
    url = urljoin(provider.oauth.endpoints.api_base_url.rstrip("/") + "/", spec.path)
    params = {"grant_type": spec.grant_type, spec.token_param: token}
    if spec.send_client_id:
        params["client_id"] = client.client_id
    if spec.send_client_secret:
        params["client_secret"] = client.client_secret
    try:
        response = await http.get(url, params=params, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(f"token exchange unreachable ({type(exc).__name__})") from None
    body = _json_object(response)
    if response.status_code >= 500:
        raise UpstreamUnavailable(f"token exchange answered HTTP {response.status_code}")
    if response.status_code >= 400 or "error" in body:
        error = body.get("error")
        # Graph errors are objects ({"type": "OAuthException", "code": 190, ...});
        # RFC 6749 §5.2 errors are strings. The provider's ErrorTable reads ``body``.
        code = error.get("type") if isinstance(error, Mapping) else error
        if not isinstance(code, str):
            raise UpstreamMalformed(f"token exchange answered HTTP {response.status_code}")
        raise OAuthError(code, "", response.status_code, body)
    return parse_token_response(body, now=int(time.time()))


async def fetch_scoped_tokens(
    http: httpx.AsyncClient, provider: Provider, spec: ScopedTokens, user_token: str
) -> dict[str, str]:
    """Object id -> token, following the listing's next links within the API origin."""
    base = provider.oauth.endpoints.api_base_url.rstrip("/")
    query = "&".join(f"{k}={v}" for k, v in spec.query.items())
    url: str | None = base + spec.path + (f"?{query}" if query else "")
    found: dict[str, str] = {}
    for _page in range(spec.max_pages):
        if url is None:
            break
        body = await fetch_json(http, url, bearer=user_token)
        items = dig(body, spec.items_path)
        if not isinstance(items, list):
            raise UpstreamMalformed(f"{provider.name} listed its scoped tokens without a list")
        for item in items:
            if not isinstance(item, Mapping):
                continue
            object_id, token = item.get(spec.id_field), item.get(spec.token_field)
            if isinstance(object_id, str | int) and isinstance(token, str) and token:
                found[str(object_id)] = token
        link = dig(body, spec.next_path)
        # A next link elsewhere would carry the user's token to another origin.
        url = link if isinstance(link, str) and same_origin(link, base) else None
    return found


class ScopedTokenStore:
    """Per-object tokens of a connection, sealed; replaced as a whole on each link."""

    def __init__(self, engine: AsyncEngine, vault: KeyRing) -> None:
        self._engine = engine
        self._vault = vault

    async def replace(self, connection_id: str, tokens: Mapping[str, str]) -> None:
        now = datetime.now(UTC)
        rows = [
            {
                "connection_id": connection_id,
                "object_id": object_id,
                "token": self._vault.seal(
                    token, row=token_row(connection_id, scoped_token_name(object_id))
                ),
                "created_at": now,
            }
            for object_id, token in tokens.items()
        ]
        async with writer(self._engine).begin() as conn:
            await conn.execute(
                delete(provider_tokens).where(provider_tokens.c.connection_id == connection_id)
            )
            if rows:
                await conn.execute(provider_tokens.insert(), rows)
        log.info("scoped_tokens.stored", connection_id=connection_id, count=len(rows))

    async def get(self, connection_id: str, object_id: str) -> str | None:
        async with self._engine.connect() as conn:
            sealed = (
                await conn.execute(
                    select(provider_tokens.c.token).where(
                        provider_tokens.c.connection_id == connection_id,
                        provider_tokens.c.object_id == object_id,
                    )
                )
            ).scalar()
        if sealed is None:
            return None
        return self._vault.open(sealed, row=token_row(connection_id, scoped_token_name(object_id)))

    async def object_ids(self, connection_id: str) -> list[str]:
        """The objects this connection holds a token for (ids only; nothing is unsealed)."""
        async with self._engine.connect() as conn:
            found = await conn.execute(
                select(provider_tokens.c.object_id)
                .where(provider_tokens.c.connection_id == connection_id)
                .order_by(provider_tokens.c.object_id)
            )
            return [str(object_id) for object_id in found.scalars()]

    async def forget(self, connection_id: str) -> None:
        async with writer(self._engine).begin() as conn:
            await conn.execute(
                delete(provider_tokens).where(provider_tokens.c.connection_id == connection_id)
            )


def _json_object(response: httpx.Response) -> dict[str, Any]:
    if len(response.content) > MAX_BODY:
        raise UpstreamMalformed("the provider's answer is too large")
    try:
        body = response.json()
    except ValueError:
        raise UpstreamMalformed(
            f"the provider answered HTTP {response.status_code} without JSON"
        ) from None
    if not isinstance(body, dict):
        raise UpstreamError("the provider's answer is not a JSON object")
    return body
