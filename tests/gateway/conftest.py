"""A live gateway linked to a live sandbox provider, both on ephemeral ports."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.trace import TracerProvider

from gateway.app import create_app
from gateway.callers import CallerKind, create_caller
from gateway.config import Settings
from gateway.observability import GatewayMetrics
from gateway.storage import create_engine
from policies.vocabulary import CallerClass
from providers.sandbox.server import create_sandbox_app
from providers.sandbox.settings import ClientRegistration, SandboxSettings
from tests.conftest import LiveServer, Servers, make_settings, sandbox_provider_settings

CUSTOMER = "acme"
OTHER_CUSTOMER = "globex"


@dataclass
class Stack:
    """What a test of the whole gateway talks to."""

    gateway: LiveServer
    sandbox: LiveServer
    settings: Settings
    service_key: str
    other_key: str  # a service of another customer
    tracer_provider: TracerProvider
    instruments: GatewayMetrics
    reader: InMemoryMetricReader

    def metrics(self) -> MetricsData | None:
        """What the gateway's instruments hold now, as its OTLP export would send it."""
        return self.instruments.collected(self.reader.get_metrics_data())

    def api(self, key: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key or self.service_key}"}
        return httpx.AsyncClient(base_url=self.gateway.url, headers=headers, timeout=15)

    def browser(self) -> httpx.AsyncClient:
        """An admin's browser: keeps cookies, follows no redirects on its own."""
        return httpx.AsyncClient(timeout=15, follow_redirects=False)

    async def sandbox_faults(self, **faults: Any) -> None:
        async with httpx.AsyncClient(base_url=self.sandbox.url) as client:
            (await client.post("/_sandbox/faults", json=faults)).raise_for_status()

    async def connect_session(self, **body: Any) -> dict[str, Any]:
        async with self.api() as api:
            response = await api.post(
                "/v1/connect-sessions", json={"customer_id": CUSTOMER, **body}
            )
            assert response.status_code == 201, response.text
            return dict(response.json())

    async def begin(self, browser: httpx.AsyncClient, session: dict[str, Any]) -> httpx.Response:
        """Click Connect: returns the sandbox's answer to the authorize redirect."""
        start = await browser.get(f"{session['connect_url']}/sandbox")
        assert start.status_code == 303, start.text
        return await browser.get(start.headers["location"])

    async def link(self, browser: httpx.AsyncClient | None = None) -> httpx.Response:
        """The whole round trip; returns the gateway's callback response."""
        own = browser is None
        browser = browser or self.browser()
        try:
            answer = await self.begin(browser, await self.connect_session())
            assert answer.status_code in (302, 303), answer.text
            return await browser.get(answer.headers["location"])
        finally:
            if own:
                await browser.aclose()


@pytest.fixture
async def stack(database_url: str, servers: Servers) -> Stack:
    """Gateway + sandbox; the sandbox approves at once (no consent page)."""
    return await build_stack(database_url, servers, auto_approve=True)


async def build_stack(
    database_url: str, servers: Servers, *, auto_approve: bool, **overrides: Any
) -> Stack:
    """``overrides`` are settings for the gateway (e.g. a webhook receiver)."""
    secret = secrets.token_urlsafe(16)
    gateway_url = servers.reserve()
    sandbox_url = servers.reserve()
    sandbox = servers.serve(
        sandbox_url,
        create_sandbox_app(
            SandboxSettings(
                issuer=sandbox_url,
                clients={
                    "linkgate-test": ClientRegistration(
                        client_secret=secret, redirect_uris=(f"{gateway_url}/oauth/callback",)
                    )
                },
                auto_approve=auto_approve,
            )
        ),
    )
    settings = replace(
        make_settings(database_url, public_url=gateway_url),
        return_url_allowlist=("https://crm.example/after-connect",),
        providers={"sandbox": sandbox_provider_settings(sandbox_url, secret)},
        **overrides,
    )
    tracer_provider = TracerProvider()
    reader = InMemoryMetricReader()
    instruments = GatewayMetrics(MeterProvider(metric_readers=[reader], shutdown_on_exit=False))
    gateway = servers.serve(
        gateway_url, create_app(settings, tracer_provider=tracer_provider, metrics=instruments)
    )
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
        _, other = await create_caller(
            engine,
            kind=CallerKind.SERVICE,
            name="other",
            customers=[OTHER_CUSTOMER],
            purposes=["essential.service"],
        )
    finally:
        await engine.dispose()
    return Stack(
        gateway=gateway,
        sandbox=sandbox,
        settings=settings,
        service_key=key,
        other_key=other,
        tracer_provider=tracer_provider,
        instruments=instruments,
        reader=reader,
    )
