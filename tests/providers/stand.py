"""A stand-in for a real OIDC provider at the far edge: respx routes, a test JWKS, a live gateway.

Each provider test builds a :class:`Stand` with the provider's endpoints
overridden to ``https://<name>.stand.test/…`` (the ProviderSettings overrides
an operator would use for staging), answers the provider's HTTP with respx
using the documented shapes, and drives the admin's browser through the
gateway's real connect flow.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import respx
from joserfc import jwt
from joserfc.jwk import RSAKey

from gateway.app import create_app
from gateway.callers import CallerKind, create_caller
from gateway.config import ProviderSettings, Settings
from gateway.storage import create_engine
from gateway.upstream import RetryPolicy
from providers import BUILTIN_PROVIDERS
from tests.conftest import LiveServer, Servers, make_settings

CUSTOMER = "acme"
CLIENT_ID = "linkgate-client"
FIXTURES = Path(__file__).parent
MAX_PAGES = 20
FAST_RETRY = RetryPolicy(attempts=3, deadline=5.0, initial_backoff=0.01, max_backoff=0.05)


def fixture(provider: str, name: str) -> Any:
    """A JSON fixture from tests/providers/<provider>/."""
    return json.loads((FIXTURES / provider / f"{name}.json").read_text())


def stand_endpoints(name: str, *, issuer: str | None = None) -> dict[str, str]:
    base = f"https://{name}.stand.test"
    return {
        "authorize_url": f"{base}/authorize",
        "token_url": f"{base}/token",
        "revoke_url": f"{base}/revoke",
        "userinfo_url": f"{base}/userinfo",
        "jwks_url": f"{base}/jwks",
        "api_base_url": f"{base}/api",
        "issuer": issuer or base,
    }


@dataclass
class Stand:
    name: str
    router: respx.MockRouter
    key: RSAKey
    gateway: LiveServer
    settings: Settings
    service_key: str
    endpoints: dict[str, str]
    authorize_params: dict[str, str] = field(default_factory=dict)

    def url(self, key: str) -> str:
        return self.endpoints.get(key) or stand_endpoints(self.name)[key]

    def api(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.service_key}"}
        return httpx.AsyncClient(base_url=self.gateway.url, headers=headers, timeout=15)

    def id_token(self, claims: dict[str, Any]) -> str:
        now = int(time.time())
        body = {
            "iss": self.endpoints["issuer"],
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 600,
            "nonce": self.authorize_params.get("nonce", ""),
            **claims,
        }
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, body, self.key)

    def answer_token(self, body: Callable[[], dict[str, Any]]) -> respx.Route:
        """The token endpoint answers ``body()`` (called when the request arrives)."""
        return self.router.post(self.url("token_url")).mock(
            side_effect=lambda request: httpx.Response(200, json=body())
        )

    async def link(
        self,
        token_body: Callable[[], dict[str, Any]],
        *,
        form_post: bool = False,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Click Connect, consent at the stand-in, come back: the gateway's callback answer."""
        self.answer_token(token_body)
        async with self.api() as api:
            created = await api.post("/v1/connect-sessions", json={"customer_id": CUSTOMER})
            session = created.json()
        async with httpx.AsyncClient(timeout=15) as browser:
            start = await browser.get(f"{session['connect_url']}/{self.name}")
            assert start.status_code == 303, start.text
            location = start.headers["location"]
            assert location.startswith(self.url("authorize_url"))
            self.authorize_params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
            answer = {"code": "code-123", "state": self.authorize_params["state"], **(extra or {})}
            callback = self.authorize_params["redirect_uri"]
            if form_post:
                return await browser.post(callback, data=answer)
            return await browser.get(callback, params=answer)

    async def connection(self) -> dict[str, Any]:
        async with self.api() as api:
            listed = (await api.get("/v1/connections", params={"customer_id": CUSTOMER})).json()
        [connection] = listed["connections"]
        return dict(connection)

    async def records(self, connection_id: str, resource: str, **params: str) -> httpx.Response:
        async with self.api() as api:
            return await api.get(
                f"/v1/connections/{connection_id}/records/{resource}",
                params={"purpose": "essential.service", **params},
            )

    async def all_records(self, connection_id: str, resource: str, **params: str) -> list[Any]:
        """Every page, following next_cursor to the end."""
        kept: list[Any] = []
        cursor: str | None = None
        for _page in range(MAX_PAGES):
            extra = {"cursor": cursor} if cursor else {}
            page = await self.records(connection_id, resource, **params, **extra)
            assert page.status_code == 200, page.text
            body = page.json()
            kept.extend(body["records"])
            cursor = body["next_cursor"]
            if not cursor:
                return kept
        raise AssertionError(f"still paging after {MAX_PAGES} pages")


async def open_stand(
    servers: Servers,
    database_url: str,
    name: str,
    *,
    issuer: str | None = None,
    section: dict[str, str] | None = None,
    refresh_margin: int = 300,
    settings_overrides: dict[str, Any] | None = None,
) -> Stand:
    """A live gateway whose only provider ``name`` points at respx routes."""
    router = respx.MockRouter(assert_all_called=False)
    transport = httpx.MockTransport(router.async_handler)
    key = RSAKey.generate_key(2048, parameters={"kid": "stand-1"})
    endpoints = stand_endpoints(name, issuer=issuer)
    if BUILTIN_PROVIDERS[name].oauth.endpoints.revoke_url is None:
        del endpoints["revoke_url"]  # no revocation to point elsewhere
    router.get(endpoints["jwks_url"]).respond(
        200, json={"keys": [key.as_dict(private=False) | {"alg": "RS256", "use": "sig"}]}
    )
    gateway_url = servers.reserve()
    provider = ProviderSettings(
        name=name,
        client_id=CLIENT_ID,
        client_secret="stand-secret",
        endpoints=endpoints,
        **(section or {}),
    )
    settings = replace(
        make_settings(
            database_url,
            public_url=gateway_url,
            refresh_margin=refresh_margin,
            **(settings_overrides or {}),
        ),
        providers={name: provider},
    )
    gateway = servers.serve(
        gateway_url,
        create_app(
            settings,
            oauth_transport=transport,
            upstream_transport=transport,
            upstream_retry=FAST_RETRY,
        ),
    )
    engine = create_engine(database_url)
    try:
        _, service_key = await create_caller(
            engine,
            kind=CallerKind.SERVICE,
            name="crm",
            customers=[CUSTOMER],
            purposes=["essential.service"],
        )
    finally:
        await engine.dispose()
    return Stand(
        name=name,
        router=router,
        key=key,
        gateway=gateway,
        settings=settings,
        service_key=service_key,
        endpoints=endpoints,
    )
