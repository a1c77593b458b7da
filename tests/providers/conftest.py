"""A live gateway whose real providers are respx stand-ins at the far edge.

The gateway runs over real HTTP on an ephemeral port; only its outbound
clients (OAuth and upstream) talk to a respx router, injected through
``create_app(settings, oauth_transport=..., upstream_transport=...)``, and the
provider's endpoints are pointed at the stand-in host with the ordinary
``ProviderSettings`` endpoint overrides.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from gateway.app import create_app
from gateway.callers import CallerKind, create_caller
from gateway.config import ProviderSettings
from gateway.storage import create_engine
from gateway.upstream import RetryPolicy
from policies.vocabulary import CallerClass
from tests.conftest import Servers, make_settings

CUSTOMER = "acme"
CLIENT_ID = "linkgate-client"
CLIENT_SECRET = "s3cr3t-client-value"


@dataclass
class ProviderGateway:
    """A gateway with one real provider configured against ``router``."""

    url: str
    key: str
    router: respx.MockRouter
    provider: str
    database_url: str

    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=15
        )

    async def authorize(self, browser: httpx.AsyncClient) -> dict[str, str]:
        """Open a connect link and click Connect: the provider authorize request's query."""
        async with self.api() as api:
            session = (
                await api.post("/v1/connect-sessions", json={"customer_id": CUSTOMER})
            ).json()
        start = await browser.get(f"{session['connect_url']}/{self.provider}")
        assert start.status_code == 303, start.text
        location = start.headers["location"]
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()} | {
            "_url": location.split("?")[0]
        }

    async def link(self) -> dict[str, Any]:
        """The whole round trip (the provider 'approves' with code ``c0de``): the connection."""
        async with httpx.AsyncClient(timeout=15) as browser:
            query = await self.authorize(browser)
            result = await browser.get(
                f"{self.url}/oauth/callback", params={"code": "c0de", "state": query["state"]}
            )
            assert result.status_code == 200, result.text
        async with self.api() as api:
            [connection] = (
                await api.get("/v1/connections", params={"customer_id": CUSTOMER})
            ).json()["connections"]
        return dict(connection)

    async def records(self, connection_id: str, resource: str, **params: str) -> httpx.Response:
        async with self.api() as api:
            return await api.get(
                f"/v1/connections/{connection_id}/records/{resource}",
                params={"purpose": "essential.service", **params},
            )

    async def all_records(
        self, connection_id: str, resource: str, **params: str
    ) -> tuple[list[dict[str, Any]], int]:
        """Every page to the end: the records and the number of pages read."""
        records: list[dict[str, Any]] = []
        pages, cursor = 0, None
        while True:
            extra = {"cursor": cursor} if cursor else {}
            response = await self.records(connection_id, resource, **params, **extra)
            assert response.status_code == 200, response.text
            body = response.json()
            records.extend(body["records"])
            pages += 1
            cursor = body["next_cursor"]
            if not cursor:
                return records, pages


Factory = Callable[..., Any]


@pytest.fixture
async def provider_gateway(database_url: str, servers: Servers) -> Callable[..., Any]:
    """``await provider_gateway(name, endpoints, api_version=...)``: a live gateway for that
    provider, with the operator's ``api_version`` when one is given."""

    async def build(
        name: str, endpoints: Mapping[str, str], *, api_version: str = ""
    ) -> ProviderGateway:
        router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
        transport = httpx.MockTransport(router.async_handler)
        url = servers.reserve()
        settings = replace(
            make_settings(database_url, public_url=url),
            providers={
                name: ProviderSettings(
                    name=name,
                    client_id=CLIENT_ID,
                    client_secret=CLIENT_SECRET,
                    endpoints=dict(endpoints),
                    api_version=api_version,
                )
            },
        )
        app = create_app(
            settings,
            oauth_transport=transport,
            upstream_transport=transport,
            upstream_retry=RetryPolicy(attempts=2, deadline=2.0, initial_backoff=0.01),
        )
        servers.serve(url, app)
        engine = create_engine(database_url)
        try:
            _, key = await create_caller(
                engine,
                kind=CallerKind.SERVICE,
                name="crm",
                customers=[CUSTOMER],
                purposes=["essential.service"],
                caller_class=CallerClass.INTERNAL,
            )
        finally:
            await engine.dispose()
        return ProviderGateway(url, key, router, name, database_url)

    return build


def form(request: httpx.Request) -> dict[str, str]:
    """A urlencoded request body as a dict."""
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
