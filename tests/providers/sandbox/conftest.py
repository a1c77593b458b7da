"""Fixtures for the sandbox provider: an app with a hand-driven clock and a PKCE flow helper."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from providers.sandbox.pkce import s256
from providers.sandbox.server import SandboxState, create_sandbox_app
from providers.sandbox.settings import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REDIRECT_URI,
    SandboxSettings,
)

ISSUER = "http://sandbox.test"
SCOPE = "openid email profile posts.read messages.read calendar.read"


@dataclass
class Clock:
    """A clock tests move by hand."""

    now: float = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Authorization:
    """What one run of /authorize produced, and what the token request needs."""

    code: str
    state: str
    nonce: str
    verifier: str
    query: dict[str, str] = field(default_factory=dict)


def basic_auth(client_id: str = DEFAULT_CLIENT_ID, secret: str = DEFAULT_CLIENT_SECRET) -> str:
    raw = f"{client_id}:{secret}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def redirect_query(response: httpx.Response) -> dict[str, str]:
    location = response.headers["location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Flow:
    """Drives the authorization-code + PKCE flow against a sandbox through an httpx client."""

    client: httpx.AsyncClient
    basic_auth = staticmethod(basic_auth)
    redirect_query = staticmethod(redirect_query)

    def authorize_params(self, **overrides: str | None) -> dict[str, str]:
        verifier = secrets.token_urlsafe(48)
        params: dict[str, str | None] = {
            "response_type": "code",
            "client_id": DEFAULT_CLIENT_ID,
            "redirect_uri": DEFAULT_REDIRECT_URI,
            "scope": SCOPE,
            "state": secrets.token_urlsafe(16),
            "nonce": secrets.token_urlsafe(16),
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
            "_verifier": verifier,
        }
        params.update(overrides)
        return {k: v for k, v in params.items() if v is not None}

    async def authorize(self, **overrides: str | None) -> Authorization:
        params = self.authorize_params(**overrides)
        verifier = params.pop("_verifier")
        response = await self.client.get("/authorize", params=params)
        assert response.status_code == 302, response.text
        query = redirect_query(response)
        return Authorization(
            code=query["code"],
            state=params["state"],
            nonce=params.get("nonce", ""),
            verifier=verifier,
            query=query,
        )

    async def exchange(self, auth: Authorization, **overrides: str) -> httpx.Response:
        form = {
            "grant_type": "authorization_code",
            "code": auth.code,
            "redirect_uri": DEFAULT_REDIRECT_URI,
            "code_verifier": auth.verifier,
            **overrides,
        }
        return await self.client.post("/token", data=form, headers={"Authorization": basic_auth()})

    async def tokens(self, **overrides: str | None) -> dict[str, Any]:
        response = await self.exchange(await self.authorize(**overrides))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def refresh(self, refresh_token: str) -> httpx.Response:
        return await self.client.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            headers={"Authorization": basic_auth()},
        )

    async def api(self, path: str, access_token: str, **params: str) -> httpx.Response:
        return await self.client.get(
            path, params=params, headers={"Authorization": f"Bearer {access_token}"}
        )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(clock: Clock) -> SandboxSettings:
    return SandboxSettings(issuer=ISSUER, auto_approve=True, clock=clock)


@pytest.fixture
def app(settings: SandboxSettings) -> Starlette:
    return create_sandbox_app(settings)


@pytest.fixture
def state(app: Starlette) -> SandboxState:
    sandbox: SandboxState = app.state.sandbox
    return sandbox


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        yield client


@pytest.fixture
def flow(client: httpx.AsyncClient) -> Flow:
    return Flow(client)


@pytest.fixture
async def flow_for(settings: SandboxSettings) -> AsyncIterator[Callable[..., Flow]]:
    """Factory: a Flow against a fresh sandbox whose settings differ by the given fields."""
    async with AsyncExitStack() as stack:

        def make(**changes: Any) -> Flow:
            app = create_sandbox_app(replace(settings, **changes))
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=settings.issuer
            )
            stack.push_async_callback(client.aclose)
            return Flow(client)

        yield make
