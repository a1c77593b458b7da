"""Any OIDC issuer, configured by its issuer URL alone (discovery + issuer equality)."""

from __future__ import annotations

import secrets
from dataclasses import replace

import httpx
import pytest

from gateway.app import create_app
from gateway.callers import CallerKind, create_caller
from gateway.config import ProviderSettings
from gateway.errors import ConfigError
from gateway.runtime import open_runtime
from gateway.storage import create_engine
from providers.sandbox.server import create_sandbox_app
from providers.sandbox.settings import ClientRegistration, SandboxSettings
from tests.conftest import Servers, make_settings


def _sso(issuer: str, secret: str) -> ProviderSettings:
    return ProviderSettings(
        name="corp-sso", kind="oidc", issuer=issuer, client_id="linkgate-test", client_secret=secret
    )


async def test_an_oidc_issuer_is_linked_by_discovery(database_url: str, servers: Servers) -> None:
    """With only kind, issuer and client credentials, an admin links the account."""
    secret = secrets.token_urlsafe(16)
    gateway_url, issuer = servers.reserve(), servers.reserve()
    registration = ClientRegistration(
        client_secret=secret, redirect_uris=(f"{gateway_url}/oauth/callback",)
    )
    servers.serve(
        issuer,
        create_sandbox_app(
            SandboxSettings(
                issuer=issuer, clients={"linkgate-test": registration}, auto_approve=True
            )
        ),
    )
    settings = replace(
        make_settings(database_url, public_url=gateway_url),
        providers={"corp-sso": _sso(issuer, secret)},
    )
    servers.serve(gateway_url, create_app(settings))
    engine = create_engine(database_url)
    try:
        _, key = await create_caller(
            engine, kind=CallerKind.SERVICE, name="crm", customers=["acme"],
            purposes=["essential.service"],
        )  # fmt: skip
    finally:
        await engine.dispose()

    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=gateway_url, headers=headers) as api:
        session = (await api.post("/v1/connect-sessions", json={"customer_id": "acme"})).json()
        async with httpx.AsyncClient() as browser:
            start = await browser.get(session["connect_url"] + "/corp-sso")
            answer = await browser.get(start.headers["location"])
            result = await browser.get(answer.headers["location"])
        [connection] = (await api.get("/v1/connections", params={"customer_id": "acme"})).json()[
            "connections"
        ]

    assert result.status_code == 200, result.text
    assert connection["provider"] == "corp-sso"
    assert connection["account"]["issuer"] == issuer
    assert connection["status"] == "active"


async def test_an_issuer_mismatch_in_discovery_fails_start_up(
    database_url: str, servers: Servers
) -> None:
    """A discovery document naming another issuer stops start-up (OIDC Discovery §4.3)."""
    served = servers.reserve()
    servers.serve(served, create_sandbox_app(SandboxSettings(issuer=served)))
    configured = served.replace("127.0.0.1", "localhost")
    settings = replace(make_settings(database_url), providers={"corp-sso": _sso(configured, "x")})

    with pytest.raises(ConfigError, match="issuer mismatch"):
        async with open_runtime(settings):
            pass
