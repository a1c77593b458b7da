"""The sandbox over real HTTP: uvicorn on an ephemeral port, driven like a real provider."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from providers.base import NormalizeContext, Provider, dig
from providers.sandbox import PROVIDER
from providers.sandbox.pkce import s256
from providers.sandbox.runner import RunningSandbox, serve_in_thread
from providers.sandbox.settings import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REDIRECT_URI,
    SandboxSettings,
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    with serve_in_thread(SandboxSettings()) as running:
        yield running


@pytest.fixture(scope="module")
def provider(sandbox: RunningSandbox) -> Provider:
    """The sandbox declaration pointed at the running server, as the gateway's config would."""
    base = sandbox.url
    return PROVIDER.with_endpoints(
        {"issuer": base, "authorize_url": f"{base}/authorize", "token_url": f"{base}/token",
         "revoke_url": f"{base}/revoke", "userinfo_url": f"{base}/userinfo",
         "jwks_url": f"{base}/jwks", "api_base_url": f"{base}/api"}
    )  # fmt: skip


def link_account(provider: Provider) -> dict[str, str]:
    """Run the whole code + PKCE flow through the consent page, as a browser and a client."""
    endpoints = provider.oauth.endpoints
    verifier, state, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(), "n-1"
    with httpx.Client() as browser:
        page = browser.get(
            endpoints.authorize_url,
            params={"response_type": "code", "client_id": DEFAULT_CLIENT_ID,
                    "redirect_uri": DEFAULT_REDIRECT_URI, "scope": " ".join(provider.oauth.scopes),
                    "state": state, "nonce": nonce, "code_challenge": s256(verifier),
                    "code_challenge_method": "S256"},
        )  # fmt: skip
        action = re.search(r'action="([^"]+)"', page.text)
        request_id = re.search(r'name="request_id" value="([^"]+)"', page.text)
        assert action is not None
        assert request_id is not None
        answer = browser.post(
            action.group(1),
            data={"request_id": request_id.group(1), "decision": "approve", "user_id": "usr_ada"},
        )
    assert answer.status_code == 302
    query = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["location"]).query).items()}
    assert query["state"] == state
    assert query["iss"] == endpoints.issuer
    token = httpx.post(
        endpoints.token_url,
        data={"grant_type": "authorization_code", "code": query["code"],
              "redirect_uri": DEFAULT_REDIRECT_URI, "code_verifier": verifier},
        auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
    )  # fmt: skip
    assert token.status_code == 200, token.text
    body: dict[str, str] = token.json()
    assert endpoints.jwks_url is not None
    keys = KeySet.import_key_set(httpx.get(endpoints.jwks_url).json())
    claims = jwt.decode(body["id_token"], keys, algorithms=["RS256"]).claims
    assert (claims["iss"], claims["aud"], claims["nonce"]) == (
        endpoints.issuer,
        DEFAULT_CLIENT_ID,
        nonce,
    )
    return body


def test_discovery_over_http_names_the_real_url(sandbox: RunningSandbox) -> None:
    """Over real HTTP the issuer in discovery is the server's actual URL."""
    meta = httpx.get(f"{sandbox.url}/.well-known/openid-configuration").json()
    assert meta["issuer"] == sandbox.url
    assert meta["token_endpoint"] == f"{sandbox.url}/token"


def test_full_flow_then_every_resource_normalizes(provider: Provider) -> None:
    """Link through the consent page, then page every resource and normalize each item."""
    tokens = link_account(provider)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    ctx_at = datetime.now(UTC)
    counts: dict[str, int] = {}
    for name, resource in provider.resources.items():
        path = resource.path.format(post_id="post_1001")
        url = provider.oauth.endpoints.api_base_url + path
        params: dict[str, str] = {}
        records = []
        while True:
            body = httpx.get(url, params=params, headers=headers).json()
            items = [body] if resource.items_path == () else dig(body, resource.items_path)
            ctx = NormalizeContext(
                customer_id="cus_1",
                connection_id="con_1",
                provider=provider.name,
                resource=name,
                fetched_at=ctx_at,
            )
            records.extend(resource.normalize(item, ctx) for item in items)
            token = (
                dig(body, resource.pagination.token_path)
                if resource.pagination.token_path
                else None
            )
            if not token:
                break
            params = {resource.pagination.token_param: token}
        counts[name] = len(records)
        assert all(record.customer_id == "cus_1" for record in records)
    assert counts == {"profile": 1, "posts": 12, "comments": 5, "conversations": 3, "events": 7}


def test_refresh_rotation_and_revocation_over_http(provider: Provider) -> None:
    """Over HTTP: refresh rotates, reuse is invalid_grant, revocation ends the API access."""
    tokens = link_account(provider)
    endpoints = provider.oauth.endpoints
    auth = (DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    rotated = httpx.post(endpoints.token_url, data=refresh, auth=auth).json()
    reuse = httpx.post(endpoints.token_url, data=refresh, auth=auth)
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert reuse.json()["error"] == "invalid_grant"
    fresh = link_account(provider)
    assert endpoints.revoke_url is not None
    httpx.post(endpoints.revoke_url, data={"token": fresh["refresh_token"]}, auth=auth)
    me = httpx.get(f"{endpoints.api_base_url}/me",
                   headers={"Authorization": f"Bearer {fresh['access_token']}"})  # fmt: skip
    assert me.status_code == 401


def test_api_fault_over_http(sandbox: RunningSandbox, provider: Provider) -> None:
    """A 429 fault armed over HTTP reaches the next API call with its Retry-After."""
    tokens = link_account(provider)
    httpx.post(f"{sandbox.url}/_sandbox/faults", json={"api": "rate_limited", "retry_after": 3})
    response = httpx.get(f"{sandbox.url}/api/posts",
                         headers={"Authorization": f"Bearer {tokens['access_token']}"})  # fmt: skip
    assert (response.status_code, response.headers["retry-after"]) == (429, "3")
